"""The real server against the real Node socket.io-client (tests/clients/*.js)."""

from __future__ import annotations

import base64
import gc
import json
from typing import Any

import pytest
import trio
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

from rtserver import App, ConnectionRefused, Socket
from rtserver.engineio.session import Session
from rtserver.socketio.client import Client


# ------------------------------------------------------------------ helpers
def b(data: bytes) -> dict[str, str]:
    """How scripts spell binary in JSON."""
    return {"$bin": base64.b64encode(data).decode()}


def basic_app() -> tuple[App, dict[str, Any]]:
    """echo (ack = the args), hello (server emit + ack), transport tracking."""
    app = App()
    seen: dict[str, Any] = {"sids": [], "auth": [], "transports": [], "handshake_transports": []}

    @app.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        seen["sids"].append(socket.sid)
        seen["handshake_transports"].append(socket.handshake.query.get("transport"))
        seen["auth"].append(auth)

    @app.on("echo")
    def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @app.on("hello")
    def hello(socket: Socket, name: str) -> str:
        seen["transports"].append(socket.transport)
        socket.emit("greeting", {"text": f"hello {name}", "sid": socket.sid})
        return "ok"

    return app, seen


ECHO_ARGS = ["hi", 42, {"nested": [1, 2, {"x": None}]}, True]


# -------------------------------------------------------------- transports
async def test_default_options_upgrade_to_websocket(start_server: StartServer, node: Node) -> None:
    gc.collect()  # what earlier tests left
    app, seen = basic_app()
    server = await start_server(app)
    result = await run_scripted(
        node,
        server,
        steps=[
            {"waitTransport": "websocket"},
            {"report": "transport"},
            {"emit": ["echo", *ECHO_ARGS], "ack": True},
            {"emit": ["hello", "node"], "ack": True},
            {"wait": "greeting"},
        ]
    )
    [connect] = result.of("connect")
    # The handshake is over polling; the upgrade may finish before or after CONNECT.
    assert [e["transport"] for e in result.of("open")] == ["polling"]
    assert seen["handshake_transports"] == ["polling"]
    assert connect["id"] == seen["sids"][0]
    assert [e["transport"] for e in result.of("upgrade")] == ["websocket"]
    assert [e["name"] for e in result.of("transport")] == ["websocket"]
    assert acks(result, "echo") == [ECHO_ARGS]
    assert acks(result, "hello") == [["ok"]]
    assert events(result, "greeting") == [[{"text": "hello node", "sid": connect["id"]}]]
    assert seen["transports"] == ["websocket"]
    assert result.of("disconnect") == [{"type": "disconnect", "reason": "io client disconnect", "active": False}]
    # The upgraded session is freed when it ends, not left for a full GC.
    await wait_until(lambda: not server.engine.sessions)
    await trio.testing.wait_all_tasks_blocked()
    assert cyclic_garbage(Session, Client, Socket) == []


async def test_websocket_only(start_server: StartServer, node: Node) -> None:
    app, seen = basic_app()
    server = await start_server(app)
    result = await run_scripted(
        node,
        server,
        options={"transports": ["websocket"]},
        steps=[
            {"emit": ["echo", *ECHO_ARGS], "ack": True},
            {"emit": ["hello", "ws"], "ack": True},
            {"wait": "greeting"},
            {"report": "transport"},
        ],
    )
    [connect] = result.of("connect")
    assert connect["transport"] == "websocket"
    assert [e["transport"] for e in result.of("open")] == ["websocket"]
    assert seen["handshake_transports"] == ["websocket"]
    assert connect["id"] == seen["sids"][0]
    assert result.of("upgrade") == []
    assert [e["name"] for e in result.of("transport")] == ["websocket"]
    assert acks(result, "echo") == [ECHO_ARGS]
    assert acks(result, "hello") == [["ok"]]
    assert events(result, "greeting") == [[{"text": "hello ws", "sid": connect["id"]}]]
    assert seen["transports"] == ["websocket"]


async def test_polling_only(start_server: StartServer, node: Node) -> None:
    app, seen = basic_app()
    server = await start_server(app)
    result = await run_scripted(
        node,
        server,
        options={"transports": ["polling"]},
        steps=[
            {"emit": ["echo", *ECHO_ARGS], "ack": True},
            {"emit": ["hello", "poll"], "ack": True},
            {"wait": "greeting"},
            {"report": "transport"},
        ],
    )
    [connect] = result.of("connect")
    assert connect["transport"] == "polling"
    assert result.of("upgrade") == []
    assert [e["name"] for e in result.of("transport")] == ["polling"]
    assert acks(result, "echo") == [ECHO_ARGS]
    assert events(result, "greeting") == [[{"text": "hello poll", "sid": connect["id"]}]]
    assert seen["transports"] == ["polling"]


# -------------------------------------------------------------------- auth
def auth_app() -> tuple[App, dict[str, Any]]:
    app = App()
    seen: dict[str, Any] = {"auth": [], "disconnects": []}

    @app.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        seen["auth"].append(auth)
        if not isinstance(auth, dict) or auth.get("token") != "secret":
            raise ConnectionRefused("nope", {"code": "x"})
        socket.data["user"] = auth["user"]

    @app.on("whoami")
    def whoami(socket: Socket) -> dict[str, Any]:
        return {"user": socket.data["user"], "auth": socket.auth}

    @app.on("disconnect")
    def disconnect(socket: Socket, reason: str) -> None:
        seen["disconnects"].append(reason)

    return app, seen


async def test_auth_payload_reaches_connect_handler(start_server: StartServer, node: Node) -> None:
    app, seen = auth_app()
    server = await start_server(app)
    auth = {"token": "secret", "user": "ada", "extra": [1, {"k": "v"}]}
    result = await run_scripted(node, server, options={"auth": auth}, steps=[{"emit": ["whoami"], "ack": True}])
    assert seen["auth"] == [auth]
    assert len(result.of("connect")) == 1
    assert result.of("connect_error") == []
    assert acks(result, "whoami") == [[{"user": "ada", "auth": auth}]]


async def test_refused_connect(start_server: StartServer, node: Node) -> None:
    app, seen = auth_app()
    server = await start_server(app)
    result = await run_scripted(node, server, options={"auth": {"token": "wrong"}}, steps=[{"emit": ["whoami"], "ack": True}])
    assert seen["auth"] == [{"token": "wrong"}]
    assert result.of("connect") == []
    assert result.of("connect_error") == [{"type": "connect_error", "message": "nope", "data": {"code": "x"}}]
    # A refused socket never counted as connected: no disconnect, no leftovers.
    assert seen["disconnects"] == []
    assert app.sockets() == []
    assert app.rooms() == {}


# -------------------------------------------------------------- namespaces
async def test_custom_namespaces(start_server: StartServer, node: Node) -> None:
    app = App()
    connects: list[tuple[str, str]] = []

    @app.on("connect", namespace="/admin")
    def admin_connect(socket: Socket, auth: Any) -> None:
        connects.append((socket.namespace_name, socket.sid))

    @app.on("where", namespace="/admin")
    def admin_where(socket: Socket) -> str:
        return f"admin:{socket.namespace_name}"

    @app.on("where")
    def root_where(socket: Socket) -> str:
        return f"root:{socket.namespace_name}"

    # "/config" exists only in the configuration, with no handlers at all.
    server = await start_server(app, socketio={"namespaces": ["/", "/config"]})

    admin = await run_scripted(node, server, "/admin", steps=[{"emit": ["where"], "ack": True}])
    [connect] = admin.of("connect")
    assert connects == [("/admin", connect["id"])]
    assert acks(admin, "where") == [["admin:/admin"]]

    root = await run_scripted(node, server, steps=[{"emit": ["where"], "ack": True}])
    assert acks(root, "where") == [["root:/"]]

    configured = await run_scripted(node, server, "/config", steps=[{"emit": ["where"], "ack": True, "timeoutMs": 300}])
    assert len(configured.of("connect")) == 1
    # No handler there: the event is dropped, so no ack ever comes.
    assert configured.of("ack_error") == [{"type": "ack_error", "event": "where", "message": "operation has timed out"}]

    unknown = await run_scripted(node, server, "/nope", steps=[{"emit": ["where"], "ack": True}])
    assert unknown.of("connect") == []
    assert unknown.of("connect_error") == [{"type": "connect_error", "message": "Invalid namespace", "data": None}]


# -------------------------------------------------------------------- acks
async def test_acks_both_ways(start_server: StartServer, node: Node) -> None:
    app = App()
    results: dict[str, Any] = {}

    @app.on("add")
    def add(socket: Socket, a: int, b: int) -> tuple[int, str]:
        return a + b, "sum"

    @app.on("start")
    async def start(socket: Socket) -> str:
        results["echoed"] = await socket.call("ask", 1, "two", {"three": [3]}, timeout=5)
        results["single"] = await socket.call("single", timeout=5)
        try:
            await socket.call("ignored", "x", timeout=0.5)
        except trio.TooSlowError:
            results["timed_out"] = True
        return "finished"

    server = await start_server(app)
    result = await run_scripted(
        node,
        server,
        options={"transports": ["websocket"]},
        answers={"ask": "$echo", "single": [{"answer": 42}]},
        steps=[
            {"emit": ["add", 2, 3], "ack": True},
            {"emit": ["start"], "ack": True},
        ],
    )
    assert acks(result, "add") == [[5, "sum"]]
    assert acks(result, "start") == [["finished"]]
    assert results == {"echoed": (1, "two", {"three": [3]}), "single": {"answer": 42}, "timed_out": True}
    by_event = {e["event"]: e for e in result.of("event")}
    assert by_event["ask"]["args"] == [1, "two", {"three": [3]}] and by_event["ask"]["acked"]
    assert by_event["ignored"]["args"] == ["x"] and not by_event["ignored"]["acked"]


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_handlers_start_in_arrival_order(start_server: StartServer, node: Node, transport: str) -> None:
    """A burst of events mixing plain and coroutine handlers: each handler
    begins in the order its event arrived; a coroutine handler that waits
    (here until the last event) holds back neither the events after it nor
    their acks."""
    app = App()
    started: list[str] = []
    finished: list[str] = []
    release = trio.Event()

    @app.on("plain")
    def plain(socket: Socket, tag: str) -> str:
        started.append(tag)
        return tag

    @app.on("waits")
    async def waits(socket: Socket, tag: str) -> str:
        started.append(tag)
        await release.wait()
        finished.append(tag)
        return tag

    @app.on("release")
    def release_all(socket: Socket, tag: str) -> str:
        started.append(tag)
        release.set()
        return tag

    server = await start_server(app)
    kinds = ["plain", "waits", "plain", "plain", "waits", "plain", "release"]
    tags = [f"{kind}-{i}" for i, kind in enumerate(kinds)]
    result = await run_scripted(
        node,
        server,
        options={"transports": [transport]},
        steps=[{"emit": [kind, tag]} for kind, tag in zip(kinds, tags)] + [{"emit": ["plain", "last"], "ack": True}],
    )
    with trio.fail_after(5):
        while len(finished) < 2:
            await trio.sleep(0.01)
    assert started == [*tags, "last"]
    assert acks(result, "plain") == [["last"]]
    assert sorted(finished) == ["waits-1", "waits-4"]  # both woke together: any order


# ------------------------------------------------------------------ binary
@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_binary_round_trip(start_server: StartServer, node: Node, transport: str) -> None:
    app = App()
    received: list[tuple[Any, ...]] = []
    blob = bytes(range(256))

    @app.on("bin")
    def on_bin(socket: Socket, first: Any, nested: Any) -> tuple[Any, ...]:
        received.append((first, nested))
        socket.emit("bin_back", {"deep": {"data": b"\x00\xffserver"}, "list": [b"a", 1, b"b"]}, b"\x01")
        return first[::-1], {"echo": nested}

    server = await start_server(app)
    result = await run_scripted(
        node,
        server,
        options={"transports": [transport]},
        steps=[
            {
                "emit": ["bin", b(blob), {"n": {"data": b(b"\x00\x01\x02"), "list": [b(b""), 7, "s"]}}],
                "ack": True,
            },
            {"wait": "bin_back"},
            {"report": "transport"},
        ],
    )
    assert [e["name"] for e in result.of("transport")] == [transport]
    assert received == [(blob, {"n": {"data": b"\x00\x01\x02", "list": [b"", 7, "s"]}})]
    assert isinstance(received[0][0], bytes)
    assert acks(result, "bin") == [
        [b(blob[::-1]), {"echo": {"n": {"data": b(b"\x00\x01\x02"), "list": [b(b""), 7, "s"]}}}]
    ]
    assert events(result, "bin_back") == [
        [{"deep": {"data": b(b"\x00\xffserver")}, "list": [b(b"a"), 1, b(b"b")]}, b(b"\x01")]
    ]


# ------------------------------------------------------------------- rooms
async def test_room_broadcast_with_skip(start_server: StartServer, node: Node, nursery: trio.Nursery) -> None:
    app = App()
    sids: dict[int, str] = {}

    @app.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        sids[auth["index"]] = socket.sid
        socket.join("room1")

    server = await start_server(app)
    bg = in_background(nursery, node, "many.js", url(server), "3", json.dumps({"transports": ["websocket"]}))
    await wait_until(lambda: len(app.sockets("room1")) == 3 or bg.finished.is_set())
    assert app.rooms()["room1"] == 3

    assert app.emit("news", {"n": 1}, to="room1", skip=sids[0]) == 2
    assert app.emit("done", to="room1") == 3
    result = await bg.wait(15)
    assert result.returncode == 0, result
    assert result.of("done") == [{"type": "done", "count": 3}]
    ids = {e["index"]: e["id"] for e in result.of("connect")}
    assert ids == sids
    news = sorted((e["index"], e["id"]) for e in result.of("event") if e["event"] == "news")
    assert news == [(1, sids[1]), (2, sids[2])]
    assert all(e["args"] == [{"n": 1}] for e in result.of("event") if e["event"] == "news")
    assert sorted(e["index"] for e in result.of("event") if e["event"] == "done") == [0, 1, 2]


async def test_broadcast_to_200_clients(start_server: StartServer, node: Node, nursery: trio.Nursery) -> None:
    app = App()
    count = 200
    server = await start_server(app)
    bg = in_background(
        nursery, node, "many.js", url(server), str(count), json.dumps({"transports": ["websocket"]}), timeout=40
    )
    await wait_until(lambda: len(app.sockets()) == count or bg.finished.is_set(), timeout=30)
    assert len(app.sockets()) == count, bg.result
    sids = {s.sid for s in app.sockets()}

    assert app.emit("broadcast", {"payload": "x" * 100}, [1, 2, 3]) == count
    assert app.emit("done") == count
    result = await bg.wait(30)
    assert result.returncode == 0, result
    assert result.of("done") == [{"type": "done", "count": count}]
    got = [e for e in result.of("event") if e["event"] == "broadcast"]
    assert sorted(e["index"] for e in got) == list(range(count))
    assert all(e["args"] == [{"payload": "x" * 100}, [1, 2, 3]] for e in got)
    assert {e["id"] for e in got} == sids


# ------------------------------------------------------------- disconnects
def disconnect_app() -> tuple[App, list[tuple[str, str]]]:
    app = App()
    disconnects: list[tuple[str, str]] = []

    @app.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        socket.join("lobby")

    @app.on("whoami")
    def whoami(socket: Socket) -> str:
        return socket.sid

    @app.on("kick")
    def kick(socket: Socket) -> None:
        socket.close_connection()

    @app.on("part")
    def part(socket: Socket) -> None:
        socket.disconnect()

    @app.on("disconnect")
    def disconnect(socket: Socket, reason: str) -> None:
        disconnects.append((socket.sid, reason))

    return app, disconnects


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_server_closes_transport_client_reconnects(start_server: StartServer, node: Node, transport: str) -> None:
    app, disconnects = disconnect_app()
    server = await start_server(app)
    result = await run_scripted(
        node,
        server,
        options={"transports": [transport], **FAST_RECONNECT},
        steps=[
            {"emit": ["kick"]},
            {"waitDisconnect": 1},
            {"waitConnect": 2},
            {"emit": ["whoami"], "ack": True},
        ],
    )
    first, second = result.of("connect")
    assert first["id"] != second["id"]
    assert second["transport"] == transport
    assert result.of("disconnect")[0] == {"type": "disconnect", "reason": "transport close", "active": True}
    assert len(result.of("reconnect_attempt")) >= 1
    assert acks(result, "whoami") == [[second["id"]]]
    with trio.fail_after(5):
        while len(disconnects) < 2:
            await trio.sleep(0.02)
    assert disconnects[0] == (first["id"], "forced close")
    assert disconnects[1][0] == second["id"]
    assert app.rooms() == {}


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_server_namespace_disconnect_no_reconnect(start_server: StartServer, node: Node, transport: str) -> None:
    app, disconnects = disconnect_app()
    server = await start_server(app)
    result = await run_scripted(
        node,
        server,
        options={"transports": [transport], **FAST_RECONNECT},
        steps=[{"emit": ["part"]}, {"waitDisconnect": 1}, {"sleep": 600}],
    )
    [connect] = result.of("connect")
    assert result.of("disconnect") == [{"type": "disconnect", "reason": "io server disconnect", "active": False}]
    assert result.of("reconnect_attempt") == []
    with trio.fail_after(5):
        while not disconnects:
            await trio.sleep(0.02)
    assert disconnects == [(connect["id"], "server namespace disconnect")]
    assert app.sockets() == []
    assert app.rooms() == {}


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_silent_client_ping_timeout(
    start_server: StartServer, node: Node, nursery: trio.Nursery, transport: str
) -> None:
    app = App()
    reasons: dict[str, str] = {}
    gone = trio.Event()

    @app.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        socket.join("lobby", "quiet")

    @app.on("disconnect")
    def disconnect(socket: Socket, reason: str) -> None:
        reasons[socket.sid] = reason
        gone.set()

    server = await start_server(app, engineio={"ping_interval": 0.3, "ping_timeout": 0.3})
    bg = in_background(
        nursery,
        node,
        "scripted.js",
        url(server),
        scripted(
            options={"transports": [transport], "reconnection": False},
            dropPongs=True,
            steps=[{"waitDisconnect": 1}],
        ),
    )
    await wait_until(lambda: len(app.sockets()) == 1 or bg.finished.is_set())
    [socket] = app.sockets()
    rooms = app.rooms()
    assert (rooms["lobby"], rooms["quiet"], rooms[socket.sid]) == (1, 1, 1)
    assert socket.rooms >= {"lobby", "quiet", socket.sid}
    with trio.fail_after(5):
        await gone.wait()
    assert reasons == {socket.sid: "ping timeout"}
    assert app.rooms() == {}
    assert app.sockets() == []
    assert server.engine.sessions == {}
    result = ok(await bg.wait(10))
    assert len(result.of("pong_dropped")) >= 1
    assert [e["reason"] for e in result.of("disconnect")] == ["transport close"]


async def test_messages_keep_order_across_upgrade(start_server: StartServer, node: Node) -> None:
    """Traffic both ways while the polling -> websocket upgrade happens: nothing lost or reordered."""
    app = App()
    got: list[int] = []
    count = 60  # under the default per-connection event burst (100)

    @app.on("seq")
    def seq(socket: Socket, i: int) -> None:
        got.append(i)

    @app.on("burst")
    def burst(socket: Socket, n: int) -> str:
        for i in range(n):
            socket.emit("seq_back", i, {"blob": bytes([i])} if i % 10 == 0 else i)
        return socket.transport

    server = await start_server(app)
    result = await run_scripted(
        node,
        server,
        steps=[{"emit": ["burst", count]}]
        + [{"emit": ["seq", i]} for i in range(count)]
        + [
            {"wait": "seq_back", "count": count},
            {"waitTransport": "websocket"},
            {"emit": ["seq", -1], "ack": True},
        ]
    )
    assert [e["transport"] for e in result.of("upgrade")] == ["websocket"]
    back = events(result, "seq_back")
    assert [args[0] for args in back] == list(range(count))
    assert all(args[1] == ({"blob": b(bytes([i]))} if i % 10 == 0 else i) for i, args in enumerate(back))
    assert acks(result, "seq") == [[]]
    assert sorted(got) == [-1, *range(count)]


async def test_namespaces_multiplexed_on_one_connection(start_server: StartServer, node: Node) -> None:
    app = App()

    @app.on("where")
    def root_where(socket: Socket) -> list[str]:
        return [socket.namespace_name, socket.sid]

    @app.on("where", namespace="/admin")
    def admin_where(socket: Socket) -> list[str]:
        return [socket.namespace_name, socket.sid]

    server = await start_server(app)
    result = ok(
        await node(
            "multiplex.js",
            url(server),
            json.dumps(["/", "/admin", "/nope"]),
            json.dumps({"transports": ["websocket"]}),
        )
    )
    connects = {e["namespace"]: e for e in result.of("connect")}
    assert set(connects) == {"/", "/admin"}
    assert connects["/"]["engine"] == connects["/admin"]["engine"]
    assert connects["/"]["id"] != connects["/admin"]["id"]
    assert {e["namespace"]: e["args"] for e in result.of("ack")} == {
        ns: [[ns, connects[ns]["id"]]] for ns in ("/", "/admin")
    }
    assert result.of("connect_error") == [
        {"type": "connect_error", "namespace": "/nope", "message": "Invalid namespace"}
    ]
