"""Engine.IO answers that follow the reference server exactly, on the wire."""

from __future__ import annotations

import orjson
import trio
import trio_websocket
from support.nodes import wait_until
from support.wire import EIO, WAIT, Polling, Witness, http

from rtserver import App


def echo_app() -> App:
    app = App()

    @app.on("echo")
    def echo(socket, *args):
        return args

    return app


async def test_open_packet_lists_upgrades_only_for_polling(start_server, nursery):
    server = await start_server(echo_app())
    status, body = await http(server.port, "GET", f"{EIO}&transport=polling")
    assert status == 200 and orjson.loads(body[1:])["upgrades"] == ["websocket"]
    ws = await trio_websocket.connect_websocket_url(nursery, f"ws://127.0.0.1:{server.port}{EIO}&transport=websocket")
    with trio.fail_after(WAIT):
        opened = await ws.get_message()
    assert opened[0] == "0"
    fields = orjson.loads(opened[1:])
    assert fields["upgrades"] == [] and set(fields) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    await ws.aclose()


async def test_client_close_answers_the_pending_poll_with_a_noop(start_server, nursery):
    server = await start_server(echo_app())
    client = await Polling(server.port).open()
    answers: list[tuple[int, bytes]] = []

    async def pending_get() -> None:
        answers.append(await client.get())

    nursery.start_soon(pending_get)
    await wait_until(lambda: server.engine.sessions[client.sid]._polling)
    assert await client.post(b"1") == (200, b"ok")
    await wait_until(lambda: bool(answers))
    assert answers == [(200, b"6")]
    # The session is over: the next request does not know it.
    status, body = await client.get()
    assert (status, orjson.loads(body)) == (400, {"code": 1, "message": "Session ID unknown"})


async def upgrade(port: int, sid: str, nursery: trio.Nursery) -> trio_websocket.WebSocketConnection:
    ws = await trio_websocket.connect_websocket_url(
        nursery, f"ws://127.0.0.1:{port}{EIO}&transport=websocket&sid={sid}"
    )
    with trio.fail_after(WAIT):
        await ws.send_message("2probe")
        assert await ws.get_message() == "3probe"
        await ws.send_message("5")
    return ws


async def accepted_then_closed(port: int, sid: str, nursery: trio.Nursery) -> None:
    """A WebSocket for ``sid``: the handshake succeeds (101), then the server closes it."""
    ws = await trio_websocket.connect_websocket_url(nursery, f"ws://127.0.0.1:{port}{EIO}&transport=websocket&sid={sid}")
    with trio.fail_after(WAIT):
        try:
            await ws.get_message()
            raise AssertionError("the second WebSocket got a message")
        except trio_websocket.ConnectionClosed as closed:
            assert closed.reason.code == 1000


async def test_second_websocket_for_an_upgraded_session_is_accepted_then_closed(start_server, nursery):
    server = await start_server(echo_app())
    client = await Polling(server.port).open()
    first = await upgrade(server.port, client.sid, nursery)
    await wait_until(lambda: server.engine.sessions[client.sid].transport == "websocket")
    await accepted_then_closed(server.port, client.sid, nursery)
    # The upgraded session is undisturbed.
    with trio.fail_after(WAIT):
        await first.send_message('421["echo","upgraded"]')
        while (message := await first.get_message()) in ("6", "2"):
            if message == "2":
                await first.send_message("3")
        assert message == '431["upgraded"]'
    assert server.engine.sessions[client.sid].transport == "websocket"
    await first.aclose()


async def test_websocket_for_a_session_opened_over_websocket_is_accepted_then_closed(start_server, nursery):
    server = await start_server(echo_app())
    witness = await Witness.connect(nursery, server.port)
    await accepted_then_closed(server.port, witness.sid, nursery)
    await witness.check(server)


async def test_second_websocket_while_upgrading_is_accepted_then_closed(start_server, nursery):
    server = await start_server(echo_app())
    client = await Polling(server.port).open()
    probing = await trio_websocket.connect_websocket_url(
        nursery, f"ws://127.0.0.1:{server.port}{EIO}&transport=websocket&sid={client.sid}"
    )
    with trio.fail_after(WAIT):
        await probing.send_message("2probe")
        assert await probing.get_message() == "3probe"
    await accepted_then_closed(server.port, client.sid, nursery)
    with trio.fail_after(WAIT):  # the first upgrade completes
        await probing.send_message("5")
    await wait_until(lambda: server.engine.sessions[client.sid].transport == "websocket")
    await probing.aclose()
