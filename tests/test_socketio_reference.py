"""Socket.IO answers that follow the reference server (and the v5 protocol
document) exactly, on the wire.  Each test keeps a witness client connected
and checks it is untouched (conftest's setup)."""

from __future__ import annotations

import orjson
import pytest
import trio
from support.nodes import wait_until
from support.wire import WAIT, Polling, RawWS, make_app, request

from rtserver import App, ConnectionRefused

API_KEY = "k" * 32


def reference_app() -> tuple[App, dict[str, str]]:
    """support.wire's echo app, with a namespace "/other" that echoes too
    and one, "/picky", whose connect handler refuses everyone."""
    app, reasons = make_app()

    @app.on("echo", namespace="/other")
    def echo_other(socket, *args):
        return args

    @app.on("connect", namespace="/picky")
    def picky(socket, auth):
        raise ConnectionRefused("not today", {"code": "closed", "retry": 60})

    return app, reasons


async def closed_by_server(ws: RawWS) -> int | None:
    """The close code the server ends ``ws`` with (it answers pings meanwhile)."""
    while True:
        opcode, payload = await ws.recv()
        if opcode == 8:
            await ws.send_frame(8, payload[:2])
            return int.from_bytes(payload[:2], "big")
        if payload == b"2":
            await ws.send_text("3")


# ------------------------------------------------ packets in the wrong state
@pytest.mark.parametrize(
    "frame",
    [
        '42["echo","before any CONNECT"]',
        '421["echo"]',
        "41",  # DISCONNECT from a namespace never joined
        '431["x"]',  # an ACK
    ],
)
async def test_packet_before_connect_ends_the_connection(setup, frame):
    """The protocol: a server that does not receive a CONNECT first closes
    the connection (the reference does, with "forced server close")."""
    server, _, witness = await setup(reference_app())
    ws = await RawWS.open(server.port, connect=False)
    await ws.send_text(frame)
    with trio.fail_after(WAIT):
        assert await closed_by_server(ws) == 1000
    await wait_until(lambda: ws.sid not in server.engine.sessions)
    await witness.check(server)


@pytest.mark.parametrize(
    "frame",
    [
        '42/other,["echo","not joined"]',  # a namespace not joined
        "40",  # a second CONNECT to a namespace joined
    ],
)
async def test_packet_in_the_wrong_state_ends_the_connection(setup, frame):
    server, reasons, witness = await setup(reference_app())
    ws = await RawWS.open(server.port)  # connected to "/" only
    await ws.send_text(frame)
    with trio.fail_after(WAIT):
        assert await closed_by_server(ws) == 1000
    # The socket it had in "/" goes with the connection; a client may recover it.
    await wait_until(lambda: ws.socket_sid in reasons)
    assert reasons[ws.socket_sid] == "forced server close"
    await witness.check(server)


async def test_packet_before_connect_over_polling(setup):
    server, _, witness = await setup(reference_app())
    client = await Polling(server.port).open(connect=False)
    assert await client.post(b'42["echo","too early"]') == (200, b"ok")
    assert await client.get() == (200, b"1")  # the session's CLOSE
    assert (await client.get())[0] == 400
    await witness.check(server)


async def test_namespaces_connect_and_disconnect_independently(setup):
    """After a DISCONNECT from one namespace the connection and the other
    namespace go on (the v5 test suite's "connect then disconnect")."""
    server, _, witness = await setup(reference_app())
    app = server.sio.app
    ws = await RawWS.open(server.port)
    await ws.send_text("40/other,")
    reply = await ws.recv_text()
    assert reply.startswith("40/other,{")
    assert [s.sid for s in app.sockets(namespace="/other")] == [orjson.loads(reply[len("40/other,") :])["sid"]]
    await ws.send_text("41/other,")
    await ws.send_text('421["echo","main"]')
    assert await ws.recv_text() == '431["main"]'
    assert app.sockets(namespace="/other") == []
    await ws.send_text("41")  # the last namespace: the Engine.IO session stays
    await trio.sleep(0.1)
    assert ws.sid in server.engine.sessions
    await witness.check(server)


# ------------------------------------------------------------- connect
async def test_connect_answers(setup):
    server, _, witness = await setup(reference_app())
    ws = await RawWS.open(server.port, connect=False)
    # A namespace written without the closing comma, and one with a query
    # string (a v5 client never sends one: the query goes to Engine.IO).
    await ws.send_text("40/random")
    assert await ws.recv_text() == '44/random,{"message":"Invalid namespace"}'
    await ws.send_text("40/other?x=1,")
    assert await ws.recv_text() == '44/other?x=1,{"message":"Invalid namespace"}'
    # A refusal from a connect handler: message and data, as the reference sends them.
    await ws.send_text('40/picky,{"token":"x"}')
    assert orjson.loads((await ws.recv_text())[len("44/picky,") :]) == {
        "message": "not today",
        "data": {"code": "closed", "retry": 60},
    }
    # The main namespace written out ("/,") is the main namespace.
    await ws.send_text("40/,")
    reply = await ws.recv_text()
    assert reply.startswith('40{"sid":"') and set(orjson.loads(reply[2:])) == {"sid"}
    await witness.check(server)


# ----------------------------------------------------- reserved event names
@pytest.mark.parametrize("event", ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"])
async def test_the_server_never_emits_a_reserved_name(setup, event):
    """The reference server throws for these; rtserver raises ValueError in
    the Python API and answers 400 over HTTP.  A client would take such an
    event for its own (a false "connect")."""
    server, _, witness = await setup(reference_app(), auth={"enabled": False, "api_keys": [API_KEY]})
    app = server.sio.app
    with pytest.raises(ValueError, match="reserved event name"):
        app.emit(event, "x")
    [socket] = app.sockets()
    with pytest.raises(ValueError, match="reserved event name"):
        socket.emit(event)
    with pytest.raises(ValueError, match="reserved event name"):
        await socket.call(event)
    body = orjson.dumps({"event": event, "broadcast": True})
    status, _, answer = await request(server.port, "POST", "/api/v1/emit", body, [("X-API-Key", API_KEY)])
    assert status == 400 and orjson.loads(answer)["code"] == "invalid_body"
    assert event in orjson.loads(answer)["message"]
    await witness.check(server)  # it received nothing of the above
