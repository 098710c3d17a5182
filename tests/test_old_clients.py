"""socket.io-client 2.x (Engine.IO v3, Socket.IO protocol v4) against the real
server with ``engineio.allow_eio3``: tests/clients/v2.js runs the stock 2.x
client from npm (the package alias ``socket.io-client-v2``), beside the stock
4.8 client where both meet."""

from __future__ import annotations

import base64
import gc
from typing import Any

import orjson
import pytest
import trio
from support.clients import auth_section, token
from support.garbage import cyclic_garbage
from support.nodes import (
    FAST_RECONNECT,
    Node,
    StartServer,
    acks,
    events,
    in_background,
    ok,
    run_scripted,
    scripted,
    url,
    wait_until,
)
from support.wire import EIO3, RawWS, http

from rtserver import App, Socket
from rtserver.engineio.session import Session
from rtserver.socketio.client import Client

V2 = {"allow_eio3": True}


def b(data: bytes) -> dict[str, str]:
    """How scripts spell binary in JSON."""
    return {"$bin": base64.b64encode(data).decode()}


def old_app() -> tuple[App, dict[str, Any]]:
    """echo, hello (a server emit with binary), ask (a server call the client
    answers), join, kick (a transport close); on / and /chat."""
    app = App()
    seen: dict[str, Any] = {"connects": [], "reasons": [], "answers": [], "binary": []}

    for namespace in ("/", "/chat"):

        @app.on("connect", namespace=namespace)
        def connect(socket: Socket, auth: Any) -> None:
            seen["connects"].append(
                {
                    "sid": socket.sid,
                    "namespace": socket.namespace_name,
                    "auth": auth,
                    "engine": socket.client.session.sid,
                    "user": socket.identity.user if socket.identity else None,
                }
            )

        @app.on("disconnect", namespace=namespace)
        def disconnect(socket: Socket, reason: str) -> None:
            seen["reasons"].append(reason)

        @app.on("echo", namespace=namespace)
        def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
            return args

    @app.on("hello")
    def hello(socket: Socket, name: str) -> str:
        socket.emit("greeting", {"text": f"hello {name}", "sid": socket.sid}, b"\x00\xffbin")
        return "ok"

    @app.on("ask")
    async def ask(socket: Socket) -> Any:
        answer = await socket.call("question", "why", b"\x01\x02")
        seen["answers"].append(answer)
        seen["binary"].append(socket.client.session.binary)  # type: ignore[attr-defined]
        return answer

    @app.on("join")
    def join(socket: Socket, room: str) -> bool:
        socket.join(room)
        return True

    @app.on("kick")
    def kick(socket: Socket) -> None:
        socket.close_connection()

    return app, seen


ECHO_ARGS = ["hi", 42, {"nested": [1, 2, {"x": None}], "blob": b(b"\x00\x01\xfe")}, True]
#: What every transport test does once connected.
ROUND_TRIP = [
    {"emit": ["echo", *ECHO_ARGS], "ack": True},
    {"emit": ["hello", "v2"], "ack": True},
    {"wait": "greeting"},
    {"emit": ["ask"], "ack": True},
    {"report": "transport"},
]


# -------------------------------------------------------------- transports
@pytest.mark.parametrize(
    ("options", "first", "last", "binary"),
    [
        # Node's 2.x client polls without XHR2 (base64, b64=1), then sends binary over WebSocket.
        ({}, "polling", "websocket", True),
        ({"transports": ["websocket"]}, "websocket", "websocket", True),
        ({"transports": ["polling"]}, "polling", "polling", False),
        ({"forceBase64": True}, "polling", "websocket", False),
    ],
    ids=["polling-then-websocket", "websocket-only", "polling-only", "base64"],
)
async def test_stock_2x_client_round_trips(start_server: StartServer, node: Node, options, first, last, binary) -> None:
    gc.collect()  # what earlier tests left
    app, seen = old_app()
    server = await start_server(app, engineio=V2)
    wait = [{"waitTransport": "websocket"}] if last == "websocket" and first == "polling" else []
    result = await run_scripted(node, server, script="v2.js", options=options, answers={"question": "$echo"}, steps=wait + ROUND_TRIP)
    assert [e["transport"] for e in result.of("open")] == [first]
    assert [e["transport"] for e in result.of("upgrade")] == ([last] if first != last else [])
    assert [e["name"] for e in result.of("transport")] == [last]
    # The 2.x client makes up its socket's id from the engine's sid; the server agrees.
    [connect] = result.of("connect")
    [connected] = seen["connects"]
    assert connect["id"] == connected["sid"] == connected["engine"]
    assert connected["auth"] == {}
    assert acks(result, "echo") == [ECHO_ARGS]
    assert acks(result, "hello") == [["ok"]]
    assert events(result, "greeting") == [[{"text": "hello v2", "sid": connect["id"]}, b(b"\x00\xffbin")]]
    assert acks(result, "ask") == [["why", b(b"\x01\x02")]]
    assert seen["answers"] == [("why", b"\x01\x02")]
    assert seen["binary"] == [binary]
    assert result.of("disconnect") == [{"type": "disconnect", "reason": "io client disconnect"}]
    await wait_until(lambda: not server.engine.sessions)
    assert seen["reasons"] == ["client namespace disconnect"]
    if not options:
        # An old client's session and sockets are freed as a new one's are.
        await trio.testing.wait_all_tasks_blocked()
        assert cyclic_garbage(Session, Client, Socket) == []


async def test_namespaces_besides_the_root(start_server: StartServer, node: Node) -> None:
    app, seen = old_app()
    server = await start_server(app, engineio=V2, socketio={"namespaces": ["/", "/chat"]})
    result = await run_scripted(
        node,
        server,
        "/chat",
        script="v2.js",
        options={"query": {"room": "blue", "n": "1"}, "transports": ["websocket"]},
        steps=[{"emit": ["echo", "in chat"], "ack": True}],
    )
    [connect] = result.of("connect")
    # The root namespace is connected too, on open, as the reference does.
    by_namespace = {c["namespace"]: c for c in seen["connects"]}
    assert set(by_namespace) == {"/", "/chat"}
    chat = by_namespace["/chat"]
    assert connect["id"] == chat["sid"] == f"/chat#{chat['engine']}"
    # The socket's query option arrives as the auth payload (the v4 protocol has no other).
    assert chat["auth"] == {"room": "blue", "n": "1"}
    assert by_namespace["/"]["auth"] == {}
    assert acks(result, "echo") == [["in chat"]]


async def test_unknown_namespace(start_server: StartServer, node: Node) -> None:
    app, _ = old_app()
    server = await start_server(app, engineio=V2)
    result = ok(await node("v2.js", url(server, "/nowhere"), scripted(options={"transports": ["websocket"]})))
    assert result.of("error") == [{"type": "error", "data": {"message": "Invalid namespace"}}]


# ------------------------------------------------------------------- auth
async def test_token_in_the_query_or_a_header_and_a_bad_one(start_server: StartServer, node: Node) -> None:
    app, seen = old_app()
    server = await start_server(app, engineio=V2, auth=auth_section(), socketio={"namespaces": ["/", "/chat"]})
    good = token("ada", "acme")
    by_query = await run_scripted(
        node, server, script="v2.js", options={"query": {"token": good}}, steps=[{"emit": ["echo", 1], "ack": True}]
    )
    by_header = await run_scripted(
        node,
        server,
        script="v2.js",
        options={"extraHeaders": {"Authorization": f"Bearer {good}"}},
        steps=[{"waitTransport": "websocket"}, {"emit": ["echo", 2], "ack": True}],
    )
    assert acks(by_query, "echo") == [[1]] and acks(by_header, "echo") == [[2]]
    assert [c["user"] for c in seen["connects"]] == ["ada", "ada"]
    # A bad token: the 2.x client's "error" event gets the code and the message.
    refused = ok(await node("v2.js", url(server), scripted(options={"query": {"token": "not-a-jwt"}})))
    assert refused.of("error") == [{"type": "error", "data": {"message": "token is invalid", "code": "token_invalid"}}]
    assert refused.of("connect") == []
    missing = ok(await node("v2.js", url(server, "/chat"), scripted(options={"transports": ["websocket"]})))
    # Refused on "/" (connected on open) and on /chat: the 2.x client shows the first.
    assert missing.of("error")[0]["data"] == {"message": "a token is required", "code": "auth_required"}
    assert len(seen["connects"]) == 2


async def test_engineio_v3_is_refused_unless_allowed(start_server: StartServer, node: Node) -> None:
    app, seen = old_app()
    server = await start_server(app)
    result = await node(
        "v2.js", url(server), scripted(options={"reconnection": False, "transports": ["websocket"]}, timeoutMs=1500)
    )
    # 400 "Unsupported protocol version": the 2.x client never opens.
    assert result.of("open") == [] and result.of("connect") == []
    assert len(result.of("connect_error")) == 1
    assert seen["connects"] == [] and not server.engine.sessions


# -------------------------------------------------------------- heartbeat
FAST_PINGS = {**V2, "ping_interval": 0.2, "ping_timeout": 0.2}


@pytest.mark.parametrize("transports", [["polling"], ["polling", "websocket"]], ids=["polling", "upgrade"])
async def test_client_pings_keep_the_session_alive(start_server: StartServer, node: Node, transports) -> None:
    app, seen = old_app()
    server = await start_server(app, engineio=FAST_PINGS)
    # Several times pingInterval + pingTimeout: only the client's pings keep it open.
    result = await run_scripted(
        node,
        server,
        script="v2.js",
        options={"transports": transports},
        steps=[{"waitPong": 8}, {"emit": ["echo", "still"], "ack": True}, {"report": "transport"}],
    )
    assert [e["name"] for e in result.of("transport")] == [transports[-1]]
    assert len(result.of("pong")) >= 8
    assert acks(result, "echo") == [["still"]]
    assert result.of("disconnect") == [{"type": "disconnect", "reason": "io client disconnect"}]
    await wait_until(lambda: not server.engine.sessions)
    assert seen["reasons"] == ["client namespace disconnect"]


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_a_silent_client_is_dropped(start_server: StartServer, node: Node, transports) -> None:
    app, seen = old_app()
    server = await start_server(app, engineio=FAST_PINGS)
    result = await run_scripted(
        node,
        server,
        script="v2.js",
        silent=True,
        options={"transports": transports, "reconnection": False},
        steps=[{"waitDisconnect": 1}],
    )
    assert result.of("pong") == []
    assert [e["reason"] for e in result.of("disconnect")] == ["transport close"]
    assert seen["reasons"] == ["ping timeout"]


async def test_reconnect_after_a_transport_close(start_server: StartServer, node: Node) -> None:
    app, seen = old_app()
    server = await start_server(app, engineio=V2)
    result = await run_scripted(
        node,
        server,
        script="v2.js",
        options=FAST_RECONNECT,
        steps=[{"waitTransport": "websocket"}, {"emit": ["kick"]}, {"waitConnect": 2}, {"emit": ["echo", "back"], "ack": True}],
    )
    first, second = result.of("connect")
    assert [e["reason"] for e in result.of("disconnect")][:1] == ["transport close"]
    assert first["id"] != second["id"] and second["id"] == seen["connects"][1]["engine"]
    assert acks(result, "echo") == [["back"]]
    assert seen["reasons"][0] == "forced close"


# ------------------------------------------------------ old and new together
ROOM_STEPS = [{"emit": ["join", "lobby"], "ack": True}, {"wait": "news", "count": 2}, {"wait": "blob"}]
BROADCASTS = [("news", ({"n": 1},)), ("news", ("two", 2)), ("blob", (b"\x00\x01", {"x": b"\xff"}))]


@pytest.mark.parametrize("recovery", [False, True], ids=["plain", "recovery"])
async def test_a_2x_and_a_4x_client_in_one_room(start_server: StartServer, node: Node, nursery: trio.Nursery, recovery) -> None:
    app, _ = old_app()
    server = await start_server(app, engineio=V2, recovery={"enabled": recovery})
    old = in_background(nursery, node, "v2.js", url(server), scripted(steps=ROOM_STEPS))
    new = in_background(nursery, node, "scripted.js", url(server), scripted(steps=ROOM_STEPS))
    await wait_until(lambda: app.rooms().get("lobby") == 2)
    for event, args in BROADCASTS:
        assert app.emit(event, *args, to="lobby") == 2
    old_result, new_result = ok(await old.wait()), ok(await new.wait())
    expected = {"news": [[{"n": 1}], ["two", 2]], "blob": [[b(b"\x00\x01"), {"x": b(b"\xff")}]]}
    assert {name: events(old_result, name) for name in expected} == expected
    new_events = {name: events(new_result, name) for name in expected}
    if recovery:
        # The 4.x client's handlers see the offset as a last argument, as
        # with the reference server; the 2.x client never gets one.
        offsets = [args.pop() for name in expected for args in new_events[name]]
        assert all(isinstance(offset, str) and offset.isdigit() for offset in offsets), offsets
    assert new_events == expected


async def test_the_4x_client_recovers_beside_a_2x_one(start_server: StartServer, node: Node, nursery: trio.Nursery) -> None:
    app, _ = old_app()
    server = await start_server(app, engineio=V2, recovery={"enabled": True, "max_disconnection": 30})
    old = in_background(nursery, node, "v2.js", url(server), scripted(steps=[{"emit": ["join", "r"], "ack": True}, {"wait": "msg", "count": 10}]))
    new = in_background(nursery, node, "recovery.js", f'{{"url": "{url(server)}", "room": "r", "expect": 10}}')
    await wait_until(lambda: app.rooms().get("r") == 2)
    for n in range(5):
        app.emit("msg", n, to="r")
    [modern] = [s for s in app.sockets("r") if s.client.session.protocol == 4]
    modern.close_connection()  # a transport close: recoverable
    for n in range(5, 10):
        app.emit("msg", n, to="r")
    old_result, new_result = ok(await old.wait()), await new.wait()
    assert new_result.returncode == 0, new_result
    [done] = new_result.of("done")
    assert done["received"] == list(range(10))
    first, again = new_result.of("connect")
    assert again["recovered"] is True and again["id"] == first["id"]
    # The old client stayed connected and got every event, without offsets.
    assert events(old_result, "msg") == [[n] for n in range(10)]


# ------------------------------------------------------------ on the wire
async def test_v3_heartbeat_on_the_wire(start_server: StartServer) -> None:
    app, seen = old_app()
    server = await start_server(app, engineio=FAST_PINGS)
    status, body = await http(server.port, "GET", f"{EIO3}&transport=polling")
    length, _, packet = body.partition(b":")
    assert status == 200 and int(length) == len(packet) and packet[:1] == b"0"
    assert set(orjson.loads(packet[1:])) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    ws = await RawWS.open(server.port, eio=EIO3)
    # The server sends no pings to a v3 client; it answers the client's.
    for _ in range(4):
        with trio.move_on_after(0.15):
            assert await ws.recv() is None, "the server sent something unasked"
        await ws.send_text("2")
        assert await ws.recv() == (1, b"3")
    assert ws.sid in server.engine.sessions
    # Without pings it ends after pingInterval + pingTimeout.
    assert await ws.close_code() == 1000
    await wait_until(lambda: bool(seen["reasons"]))
    assert seen["reasons"] == ["ping timeout"]
    await ws.aclose()


async def test_v3_binary_frames_on_the_wire(start_server: StartServer) -> None:
    app, _ = old_app()
    server = await start_server(app, engineio=V2)
    ws = await RawWS.open(server.port, eio=EIO3)
    # A binary attachment over WebSocket carries the MESSAGE type byte first, both ways.
    await ws.send_text('451-0["echo",{"_placeholder":true,"num":0}]')
    await ws.send_frame(2, b"\x04\x00\xff")
    assert await ws.recv_text() == '461-0[{"_placeholder":true,"num":0}]'
    assert await ws.recv() == (2, b"\x04\x00\xff")
    await ws.aclose()


async def test_an_explicit_root_connect_is_ignored(start_server: StartServer) -> None:
    app, seen = old_app()
    server = await start_server(app, engineio=V2)
    ws = await RawWS.open(server.port, eio=EIO3)  # "/" connected on open
    # 2.x never sends a CONNECT for "/"; one sent anyway makes no second socket.
    await ws.send_text("40")
    await ws.send_text('421["echo","x"]')
    assert await ws.recv_text() == '431["x"]'
    assert [c["namespace"] for c in seen["connects"]] == ["/"]
    await ws.aclose()


async def test_gone_during_the_implicit_connect(start_server: StartServer) -> None:
    """The root connect runs beside the reader: a client gone while a connect
    handler awaits cancels it, and its socket is forgotten, not left behind."""
    app = App()
    started = trio.Event()

    @app.on("connect")
    async def connect(socket: Socket, auth: Any) -> None:
        started.set()
        await trio.sleep(30)

    server = await start_server(app, engineio=V2)
    ws = await RawWS.open(server.port, connect=False, eio=EIO3)
    with trio.fail_after(5):
        await started.wait()
    await ws.reset()
    await wait_until(lambda: not server.engine.sessions)
    await trio.testing.wait_all_tasks_blocked()
    assert app.sockets() == [] and server.sio.hub.namespaces() == {}
