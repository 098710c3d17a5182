"""Engine.IO answers that follow the reference server exactly, on the wire."""

from __future__ import annotations

import orjson
import trio
import trio_websocket
from support.nodes import wait_until
from support.wire import EIO, WAIT, Polling, Witness, http, request

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


async def echoes(ws: trio_websocket.WebSocketConnection) -> None:
    """An event round-trips over the upgraded WebSocket ``ws`` (noops and
    pings on the way are skipped, pings answered)."""
    with trio.fail_after(WAIT):
        await ws.send_message('421["echo","upgraded"]')
        while (message := await ws.get_message()) in ("6", "2"):
            if message == "2":
                await ws.send_message("3")
    assert message == '431["upgraded"]'


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
    await echoes(first)
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


# ------------------------------------------------- long-polling requests
async def test_polling_answers_are_never_cached(start_server):
    """Content types and Cache-Control of every long-polling answer, as the
    reference sends them (its sample session)."""
    server = await start_server(echo_app())
    status, headers, body = await request(server.port, "GET", f"{EIO}&transport=polling")
    assert (status, headers["content-type"], headers["cache-control"]) == (200, "text/plain; charset=UTF-8", "no-store")
    target = f"{EIO}&transport=polling&sid={orjson.loads(body[1:])['sid']}"
    status, headers, body = await request(server.port, "POST", target, b"40")
    assert (status, body, headers["content-type"], headers["cache-control"]) == (200, b"ok", "text/html", "no-store")
    status, headers, body = await request(server.port, "GET", target)
    assert (status, headers["content-type"], headers["cache-control"]) == (200, "text/plain; charset=UTF-8", "no-store")
    assert body.startswith(b"40{")
    status, headers, body = await request(server.port, "GET", f"{EIO}&transport=polling&sid=nope")
    assert (status, headers["content-type"], "cache-control" in headers) == (400, "application/json", False)


async def test_overlapping_posts_end_the_session(start_server, nursery):
    """The protocol: a client MUST NOT have two POSTs at once; the server
    answers the second with 400 and closes the session."""
    app = echo_app()

    @app.on("connect")
    async def slow_connect(socket, auth):
        await trio.sleep(0.3)

    server = await start_server(app)
    client = await Polling(server.port).open(connect=False)
    answers: list[tuple[int, bytes]] = []

    async def first_post() -> None:
        answers.append(await client.post(b"40"))

    nursery.start_soon(first_post)
    await wait_until(lambda: server.engine.sessions[client.sid]._posting)
    status, body = await client.post(b'42["echo","meanwhile"]')
    assert (status, orjson.loads(body)) == (400, {"code": 3, "message": "Bad request"})
    await wait_until(lambda: client.sid not in server.engine.sessions)
    await wait_until(lambda: bool(answers))
    assert answers == [(200, b"ok")]  # the first POST was read whole; its CONNECT finds the session over
    assert (await client.get())[0] == 400


async def test_a_pending_poll_closed_by_the_client_ends_the_session(start_server):
    """The reference ends a session whose pending GET the client aborts
    ("poll connection closed prematurely"); what was queued next would
    otherwise be written to a connection nobody reads."""
    app = echo_app()
    reasons: list[str] = []
    app.on("disconnect", lambda socket, reason: reasons.append(reason))
    server = await start_server(app)
    witness = await Polling(server.port).open()
    client = await Polling(server.port).open()
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    await stream.send_all(f"GET {client.target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await wait_until(lambda: server.engine.sessions[client.sid]._polling)
    await stream.aclose()
    await wait_until(lambda: client.sid not in server.engine.sessions)
    assert reasons == ["transport error"]  # recoverable, as in the reference
    assert (await client.get())[0] == 400
    assert await witness.post(b'421["echo","still here"]') == (200, b"ok")
    assert await witness.get() == (200, b'431["still here"]')


async def test_a_binary_post_body_ends_the_session(start_server):
    """Engine.IO v4 POST bodies are text; the reference closes a session
    that sends application/octet-stream (v3's binary payloads)."""
    server = await start_server(echo_app())
    client = await Polling(server.port).open()
    status, _, body = await request(
        server.port, "POST", client.target, b'421["echo","x"]', [("Content-Type", "application/octet-stream")]
    )
    assert (status, orjson.loads(body)) == (400, {"code": 3, "message": "Bad request"})
    await wait_until(lambda: client.sid not in server.engine.sessions)


async def test_packets_before_a_malformed_one_in_a_payload_are_handled(start_server):
    app = App()
    seen: list[str] = []
    app.on("note", lambda socket, text: seen.append(text))
    server = await start_server(app)
    client = await Polling(server.port).open()
    status, _ = await client.post(b'42["note","before"]\x1e9not-a-packet\x1e42["note","after"]')
    assert status == 400
    await wait_until(lambda: client.sid not in server.engine.sessions)
    assert seen == ["before"]


async def test_open_noop_and_upgrade_from_the_client_are_ignored(start_server, nursery):
    """The reference ignores them outside the upgrade (a PING from a client
    is an error: see test_bad_input)."""
    server = await start_server(echo_app())
    client = await Polling(server.port).open()
    assert await client.post(b"0\x1e6\x1e5\x1e421[\"echo\",\"polling\"]") == (200, b"ok")
    assert await client.get() == (200, b'431["polling"]')
    witness = await Witness.connect(nursery, server.port)
    for frame in ("0", "6", "5", "0{}"):
        await witness.ws.send_message(frame)
    await witness.check(server)


async def test_a_request_pipelined_behind_a_pending_poll_is_answered_after_it(start_server):
    """Watching a pending poll's connection must not eat what the client
    sends next on it: a pipelined request is answered after the poll."""
    app = echo_app()
    server = await start_server(app)
    client = await Polling(server.port).open()
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(f"GET {client.target} HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await wait_until(lambda: server.engine.sessions[client.sid]._polling)
        await trio.sleep(0.1)
        assert app.emit("news", "x") == 1
        received = b""
        with trio.fail_after(WAIT):
            while received.count(b"HTTP/1.1 200") < 2 or not received.endswith(b'{"status":"ok"}'):
                received += await stream.receive_some(65536)
    assert b'42["news","x"]' in received
    assert client.sid in server.engine.sessions


# ------------------------------------------------------------- cookie
async def websocket_handshake_head(port: int) -> bytes:
    """The head of the 101 answer to a WebSocket opened without polling."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(
            f"GET {EIO}&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        received = b""
        with trio.fail_after(WAIT):
            while b"\r\n\r\n" not in received:
                received += await stream.receive_some(65536)
        return received.partition(b"\r\n\r\n")[0]


async def test_session_cookie_when_configured(start_server):
    """engineio.cookie is the reference's `cookie` option (for load balancers
    that stick a session to a node by cookie): set on the handshake's answer
    only, over either transport."""
    server = await start_server(echo_app(), engineio={"cookie": "io"})
    status, headers, body = await request(server.port, "GET", f"{EIO}&transport=polling")
    sid = orjson.loads(body[1:])["sid"]
    assert headers["set-cookie"] == f"io={sid}; Path=/; HttpOnly; SameSite=Lax"
    target = f"{EIO}&transport=polling&sid={sid}"
    for method, body in (("POST", b"40"), ("GET", b"")):
        status, headers, _ = await request(server.port, method, target, body, [("Cookie", f"io={sid}")])
        assert status == 200 and "set-cookie" not in headers
    head = await websocket_handshake_head(server.port)
    assert head.startswith(b"HTTP/1.1 101 ")
    [cookie] = [line for line in head.split(b"\r\n") if line.lower().startswith(b"set-cookie:")]
    assert cookie.split(b": ", 1)[1].startswith(b"io=") and cookie.endswith(b"; Path=/; HttpOnly; SameSite=Lax")
    assert cookie.split(b"=", 1)[1].split(b";")[0].decode() in server.engine.sessions


async def test_no_cookie_by_default(start_server):
    server = await start_server(echo_app())
    _, headers, _ = await request(server.port, "GET", f"{EIO}&transport=polling")
    assert "set-cookie" not in headers
    assert b"set-cookie" not in (await websocket_handshake_head(server.port)).lower()


# ------------------------------------------------------------- upgrade
async def test_polls_during_and_after_an_upgrade(start_server, nursery):
    """The v4 test suite's upgrade: a GET while the probe is done is answered
    with a noop; after the UPGRADE, a request over polling for that sid is
    400 and the WebSocket goes on."""
    server = await start_server(echo_app())
    client = await Polling(server.port).open()
    ws = await trio_websocket.connect_websocket_url(nursery, f"ws://127.0.0.1:{server.port}{EIO}&transport=websocket&sid={client.sid}")
    with trio.fail_after(WAIT):
        await ws.send_message("2probe")
        assert await ws.get_message() == "3probe"
    assert await client.get() == (200, b"6")
    await ws.send_message("5")
    await wait_until(lambda: server.engine.sessions[client.sid].transport == "websocket")
    status, body = await client.get()
    assert (status, orjson.loads(body)) == (400, {"code": 3, "message": "Bad request"})
    await echoes(ws)
    await ws.aclose()


# ---------------------------------------------------------------- CORS
async def test_cors_headers_on_answers_and_errors(start_server):
    """An allowed origin gets its CORS headers on errors too (the reference
    applies its cors middleware before anything else); another origin is
    refused with 403, code 4."""
    server = await start_server(echo_app(), engineio={"cors_origins": ["http://app.example"]})
    allowed = [("Origin", "http://app.example")]
    for target in (f"{EIO}&transport=polling", f"{EIO}&transport=polling&sid=nope", "/socket.io/?EIO=9&transport=polling"):
        status, headers, _ = await request(server.port, "GET", target, headers=allowed)
        assert headers["access-control-allow-origin"] == "http://app.example", (target, status)
        assert headers["access-control-allow-credentials"] == "true"
    status, headers, body = await request(server.port, "GET", f"{EIO}&transport=polling", headers=[("Origin", "http://evil.example")])
    assert (status, orjson.loads(body)) == (403, {"code": 4, "message": "Forbidden"})
    assert "access-control-allow-origin" not in headers
    status, headers, _ = await request(
        server.port, "OPTIONS", f"{EIO}&transport=polling", headers=[*allowed, ("Access-Control-Request-Headers", "content-type")]
    )
    assert status == 204 and headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert headers["access-control-allow-headers"] == "content-type"


async def test_ping_pong_over_polling(start_server):
    """The test suites' heartbeat over long-polling: each poll brings a
    ping, each pong POSTed keeps the session."""
    server = await start_server(echo_app(), engineio={"ping_interval": 0.2, "ping_timeout": 0.5})
    client = await Polling(server.port).open()
    for _ in range(3):
        assert await client.get() == (200, b"2")
        assert await client.post(b"3") == (200, b"ok")
    assert client.sid in server.engine.sessions


async def test_websocket_for_a_closing_session_is_accepted_then_closed(start_server, nursery):
    """A session the server is closing is not upgraded: the WebSocket gets
    its 101 and is closed, and the CLOSE waits for the next poll."""
    server = await start_server(echo_app())
    client = await Polling(server.port).open()
    server.engine.sessions[client.sid].close("server close")
    await accepted_then_closed(server.port, client.sid, nursery)
    assert await client.get() == (200, b"1")
    await wait_until(lambda: client.sid not in server.engine.sessions)
