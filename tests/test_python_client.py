"""python-socketio's own (sync) client against the real server.

The client blocks, so each scenario runs in a worker thread; the client's
event handlers run in the client's threads, so results go through
thread-safe queues and every wait is bounded.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

import pytest
import socketio
import trio

from rtserver import App

WAIT = 10.0

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def in_thread(fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Run a blocking client scenario in a worker thread, bounded in time."""
    with trio.fail_after(timeout):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


def new_client() -> socketio.Client:
    return socketio.Client(reconnection=False, request_timeout=5)


def chat_app() -> tuple[App, list[Any]]:
    app = App()
    seen: list[Any] = []

    @app.on("connect")
    def connect(socket, auth):
        # The transport the connection was opened with (the handshake request).
        seen.append(("connect", socket.handshake.query.get("transport"), auth))
        if isinstance(auth, dict) and auth.get("token") == "bad":
            return False
        socket.data["name"] = auth.get("name") if isinstance(auth, dict) else None
        return None

    @app.on("whoami")
    def whoami(socket):
        return socket.data["name"], socket.transport

    @app.on("echo")
    def echo(socket, *args):
        return args

    @app.on("push")
    def push(socket, event, payload):
        socket.emit(event, payload)
        return "pushed"

    @app.on("ask")
    async def ask(socket, value):
        # A server-to-client call answered by the client's handler return value.
        return await socket.call("question", value, timeout=5)

    @app.on("join")
    def join(socket, room):
        socket.join(room)
        return sorted(socket.rooms - {socket.sid})

    @app.on("shout")
    def shout(socket, room, text):
        return app.emit("news", text, to=room)

    return app, seen


def url(server) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.mark.parametrize("transports", [None, ["websocket"]], ids=["polling-upgrade", "websocket-only"])
async def test_connect_with_auth_and_ack(start_server, transports):
    app, seen = chat_app()
    server = await start_server(app, engineio={"ping_interval": 5, "ping_timeout": 5})

    def scenario():
        client = new_client()
        client.connect(url(server), auth={"name": "ada"}, transports=transports, wait_timeout=WAIT)
        try:
            assert client.connected
            name, _ = client.call("whoami", timeout=WAIT)
            echoed = client.call("echo", {"a": [1, 2, None]}, timeout=WAIT)
            return name, echoed, client.transport()
        finally:
            client.disconnect()

    name, echoed, transport = await in_thread(scenario)
    assert name == "ada"
    assert echoed == {"a": [1, 2, None]}
    assert transport == "websocket"
    assert seen[0][2] == {"name": "ada"}
    if transports == ["websocket"]:
        assert seen[0][1] == "websocket"
    else:
        assert seen[0][1] == "polling"
    with trio.fail_after(5):
        while server.engine.sessions:
            await trio.sleep(0.02)


async def test_connect_refused(start_server):
    app, _ = chat_app()
    server = await start_server(app)

    def scenario():
        client = new_client()
        with pytest.raises(socketio.exceptions.ConnectionError):
            client.connect(url(server), auth={"token": "bad"}, wait_timeout=WAIT)
        assert not client.connected
        client.disconnect()

    await in_thread(scenario)


async def test_server_to_client_event_and_call(start_server):
    app, _ = chat_app()
    server = await start_server(app)

    def scenario():
        client = new_client()
        events: queue.Queue[Any] = queue.Queue()

        @client.on("note")
        def note(payload):
            events.put(payload)

        @client.on("question")
        def question(value):
            return value * 2

        client.connect(url(server), auth={"name": "bob"}, wait_timeout=WAIT)
        try:
            pushed = client.call("push", ("note", {"n": 1}), timeout=WAIT)
            received = events.get(timeout=WAIT)
            answer = client.call("ask", 21, timeout=WAIT)
            return pushed, received, answer
        finally:
            client.disconnect()

    pushed, received, answer = await in_thread(scenario)
    assert pushed == "pushed"
    assert received == {"n": 1}
    assert answer == 42


@pytest.mark.parametrize("transports", [["polling"], ["websocket"]])
async def test_binary_both_ways(start_server, transports):
    app, _ = chat_app()
    got: list[Any] = []

    @app.on("blob")
    def blob(socket, data, meta):
        got.append((data, meta))
        socket.emit("blob-back", {"raw": data[::-1], "parts": [b"\x00", b"\xff" * 3]})
        return data + b"!"

    server = await start_server(app)
    payload = bytes(range(256)) * 4

    def scenario():
        client = new_client()
        events: queue.Queue[Any] = queue.Queue()
        client.on("blob-back", events.put)
        client.connect(url(server), transports=transports, wait_timeout=WAIT)
        try:
            ack = client.call("blob", (payload, {"kind": "bytes"}), timeout=WAIT)
            back = events.get(timeout=WAIT)
            return ack, back
        finally:
            client.disconnect()

    ack, back = await in_thread(scenario)
    assert got == [(payload, {"kind": "bytes"})]
    assert ack == payload + b"!"
    assert back == {"raw": payload[::-1], "parts": [b"\x00", b"\xff" * 3]}


async def test_custom_namespace(start_server):
    app, _ = chat_app()
    connects: list[Any] = []

    @app.on("connect", namespace="/admin")
    def admin_connect(socket, auth):
        connects.append((socket.namespace_name, auth))

    @app.on("stats", namespace="/admin")
    def stats(socket):
        return {"namespace": socket.namespace_name}

    server = await start_server(app)

    def scenario():
        client = new_client()
        client.connect(url(server), namespaces=["/admin"], auth={"role": "admin"}, wait_timeout=WAIT)
        try:
            assert "/admin" in client.namespaces
            result = client.call("stats", namespace="/admin", timeout=WAIT)
            # "/" was not connected by this client: its events are not answered.
            with pytest.raises(socketio.exceptions.BadNamespaceError):
                client.call("whoami", timeout=1)
            return result
        finally:
            client.disconnect()

    result = await in_thread(scenario)
    assert result == {"namespace": "/admin"}
    assert connects == [("/admin", {"role": "admin"})]


async def test_unknown_namespace_refused(start_server):
    app, _ = chat_app()
    server = await start_server(app)

    def scenario():
        client = new_client()
        with pytest.raises(socketio.exceptions.ConnectionError):
            client.connect(url(server), namespaces=["/nope"], wait_timeout=WAIT)
        client.disconnect()

    await in_thread(scenario)


async def test_room_broadcast(start_server):
    app, _ = chat_app()
    server = await start_server(app)

    def scenario():
        member, outsider = new_client(), new_client()
        member_news: queue.Queue[Any] = queue.Queue()
        outsider_news: queue.Queue[Any] = queue.Queue()
        member.on("news", member_news.put)
        outsider.on("news", outsider_news.put)
        member.connect(url(server), wait_timeout=WAIT)
        outsider.connect(url(server), transports=["websocket"], wait_timeout=WAIT)
        try:
            rooms = member.call("join", "lobby", timeout=WAIT)
            delivered = outsider.call("shout", ("lobby", "hello lobby"), timeout=WAIT)
            news = member_news.get(timeout=WAIT)
            # A second broadcast to a room nobody is in reaches no one.
            nobody = outsider.call("shout", ("empty", "echo?"), timeout=WAIT)
            try:
                stray = outsider_news.get(timeout=0.5)
            except queue.Empty:
                stray = None
            return rooms, delivered, news, nobody, stray
        finally:
            member.disconnect()
            outsider.disconnect()

    rooms, delivered, news, nobody, stray = await in_thread(scenario)
    assert "lobby" in rooms
    assert delivered == 1
    assert news == "hello lobby"
    assert nobody == 0
    assert stray is None
    with trio.fail_after(5):
        while "lobby" in app.rooms():
            await trio.sleep(0.02)


# ------------------------------------------- recovery offsets and python-socketio
def recovery_app() -> App:
    app = App()

    @app.on("join")
    def join(socket, room):
        socket.join(room)
        return "joined"

    @app.on("shout")
    def shout(socket, room, text):
        return app.emit("news", text, to=room)

    return app


async def test_recovery_offsets_can_be_refused_in_auth(start_server):
    """With recovery on, every event carries its offset as a last argument;
    a python-socketio client whose handlers take a fixed number of
    arguments connects with ``auth={"offsets": False}`` and gets plain
    events (and no pid: it has nothing to recover), while a client that did
    not ask keeps getting offsets in the same broadcast."""
    server = await start_server(recovery_app(), recovery={"enabled": True})

    def scenario():
        plain, full = new_client(), new_client()
        got: queue.Queue[Any] = queue.Queue()

        @plain.on("news")
        def on_plain(text):  # exactly one argument
            got.put(("plain", text))

        @full.on("news")
        def on_full(*args):
            got.put(("full", args))

        plain.connect(url(server), auth={"offsets": False}, wait_timeout=WAIT)
        full.connect(url(server), wait_timeout=WAIT)
        try:
            for client in (plain, full):
                assert client.call("join", "lobby", timeout=WAIT) == "joined"
            assert plain.call("shout", ("lobby", "hello"), timeout=WAIT) == 2
            return sorted([got.get(timeout=WAIT), got.get(timeout=WAIT)])
        finally:
            plain.disconnect()
            full.disconnect()

    [(full_kind, full_args), plain_got] = await in_thread(scenario)
    assert plain_got == ("plain", "hello")
    assert full_kind == "full" and full_args[0] == "hello" and isinstance(full_args[1], str)


async def test_async_client(start_server):
    """python-socketio's asyncio client (aiohttp), run in its own event loop
    in a worker thread: connect over polling then the upgrade, call, receive."""
    import asyncio

    app, _ = chat_app()
    server = await start_server(app)

    async def scenario():
        client = socketio.AsyncClient(reconnection=False, request_timeout=5)
        pushed = asyncio.get_running_loop().create_future()
        client.on("note", lambda payload: pushed.set_result(payload))
        await client.connect(url(server), auth={"name": "asy"}, wait_timeout=WAIT)
        try:
            name, _ = await client.call("whoami", timeout=WAIT)
            assert await client.call("push", ("note", {"n": 1}), timeout=WAIT) == "pushed"
            return name, await asyncio.wait_for(pushed, WAIT), client.transport()
        finally:
            await client.disconnect()

    assert await in_thread(lambda: asyncio.run(scenario())) == ("asy", {"n": 1}, "websocket")
