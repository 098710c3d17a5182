"""However a connection ends, its tasks end and its sockets leave every room.

Each scenario connects a client that joins rooms and leaves an event handler
running, ends the connection one way, then checks that the handler task was
cancelled, the disconnect handler saw the expected reason, the session is
gone from the engine and no room remembers the socket.
"""

from __future__ import annotations

import gc
import struct
from typing import Any

import orjson
import pytest
import trio
import trio_websocket
from conftest import make_config
from support.garbage import cyclic_garbage
from support.wire import EIO, WAIT, Polling, RawWS

from rtserver import App, serve
from rtserver.engineio.session import Session
from rtserver.socketio.client import Client
from rtserver.socketio.socket import Socket


# ---------------------------------------------------------------- helpers
class Recorder:
    """An app that joins rooms, parks a handler, and records how sockets end."""

    def __init__(self) -> None:
        self.app = App()
        self.reasons: dict[str, str] = {}
        self.parked: set[str] = set()
        self.cancelled: set[str] = set()
        self.connected: list[str] = []
        app = self.app

        @app.on("connect")
        def connect(socket, auth):
            socket.join("lobby", f"user:{socket.sid}")
            self.connected.append(socket.sid)

        @app.on("park")
        async def park(socket):
            # Runs until the connection ends: the session must cancel it.
            self.parked.add(socket.sid)
            try:
                await trio.sleep_forever()
            finally:
                self.cancelled.add(socket.sid)

        @app.on("echo")
        def echo(socket, *args):
            return args

        @app.on("disconnect")
        async def disconnect(socket, reason):
            await trio.lowlevel.checkpoint()
            self.reasons[socket.sid] = reason

    async def ended(self, server, socket_sid: str, reason: str) -> None:
        """Wait until the socket is fully gone, then check how."""
        with trio.fail_after(WAIT):
            while socket_sid not in self.reasons or socket_sid not in self.cancelled:
                await trio.sleep(0.01)
        assert self.reasons[socket_sid] == reason
        assert_gone(server, socket_sid)


def assert_gone(server, socket_sid: str, namespace: str = "/") -> None:
    rooms = server.sio.hub.rooms(namespace)
    assert "lobby" not in rooms
    assert f"user:{socket_sid}" not in rooms
    assert socket_sid not in rooms
    assert server.sio.socket(socket_sid, namespace) is None


async def wait_until(predicate, timeout: float = WAIT) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def parked_ws(rec: Recorder, server) -> RawWS:
    ws = await RawWS.open(server.port)
    await ws.send_text('42["park"]')
    await wait_until(lambda: ws.socket_sid in rec.parked)
    assert server.sio.hub.rooms("/")["lobby"] >= 1
    assert ws.sid in server.engine.sessions
    return ws


async def parked_polling(rec: Recorder, server) -> Polling:
    client = await Polling(server.port).open()
    assert await client.post(b'42["park"]') == (200, b"ok")
    await wait_until(lambda: client.socket_sid in rec.parked)
    assert client.sid in server.engine.sessions
    return client


SHORT = {"engineio": {"ping_interval": 0.3, "ping_timeout": 0.3}}


# ------------------------------------------------------------ client side
@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("41", "client namespace disconnect"),
        ("1", "transport close"),
        (None, "transport close"),  # a WebSocket close frame
    ],
    ids=["socketio-disconnect", "engineio-close", "websocket-close"],
)
async def test_client_close_websocket(start_server, frame, reason):
    rec = Recorder()
    server = await start_server(rec.app)
    ws = await parked_ws(rec, server)
    if frame is None:
        await ws.send_frame(8, struct.pack("!H", 1000))
    else:
        await ws.send_text(frame)
    await rec.ended(server, ws.socket_sid, reason)
    if frame != "41":
        await wait_until(lambda: ws.sid not in server.engine.sessions)
    await ws.stream.aclose()
    await wait_until(lambda: not server.engine.sessions)
    assert server.sio.hub.rooms("/") == {}


async def test_client_close_polling(start_server):
    rec = Recorder()
    server = await start_server(rec.app)
    client = await parked_polling(rec, server)
    assert await client.post(b"1") == (200, b"ok")
    await rec.ended(server, client.socket_sid, "transport close")
    await wait_until(lambda: not server.engine.sessions)


async def test_namespace_disconnect_keeps_other_namespaces(start_server):
    rec = Recorder()

    @rec.app.on("connect", namespace="/chat")
    def chat_connect(socket, auth):
        socket.join("lobby")

    server = await start_server(rec.app)
    ws = await parked_ws(rec, server)
    await ws.send_text("40/chat,")
    assert (await ws.recv_text()).startswith("40/chat,{")
    assert server.sio.hub.rooms("/chat")["lobby"] == 1
    await ws.send_text("41")
    await rec.ended(server, ws.socket_sid, "client namespace disconnect")
    # The session and its /chat socket live on.
    assert ws.sid in server.engine.sessions
    assert server.sio.hub.rooms("/chat")["lobby"] == 1
    await ws.send_text("1")
    await wait_until(lambda: not server.engine.sessions)
    assert server.sio.hub.rooms("/chat") == {}


# ----------------------------------------------------------- network drop
@pytest.mark.parametrize("how", ["rst", "fin"])
async def test_network_drop(start_server, how):
    rec = Recorder()
    server = await start_server(rec.app)
    ws = await parked_ws(rec, server)
    if how == "rst":
        await ws.reset()
    else:
        await ws.stream.aclose()  # FIN, but no close frame
    await rec.ended(server, ws.socket_sid, "transport close")
    await wait_until(lambda: not server.engine.sessions)


# ----------------------------------------------------------- ping timeout
async def test_ping_timeout_websocket(start_server):
    rec = Recorder()
    server = await start_server(rec.app, **SHORT)
    ws = await parked_ws(rec, server)
    # The client is connected but never answers the server's pings.
    assert await ws.recv_text() == "2"
    await rec.ended(server, ws.socket_sid, "ping timeout")
    await wait_until(lambda: not server.engine.sessions)
    await ws.stream.aclose()


async def test_ping_timeout_polling(start_server):
    rec = Recorder()
    server = await start_server(rec.app, **SHORT)
    client = await parked_polling(rec, server)
    # The client simply stops polling.
    await rec.ended(server, client.socket_sid, "ping timeout")
    await wait_until(lambda: not server.engine.sessions)


async def test_answered_pings_keep_connection(start_server):
    rec = Recorder()
    server = await start_server(rec.app, **SHORT)
    ws = await parked_ws(rec, server)
    for _ in range(4):  # well past ping_interval + ping_timeout
        assert await ws.recv_text() == "2"
        await ws.send_text("3")
    assert ws.sid in server.engine.sessions
    # One heartbeat booking however many pings (and the cancelled connect deadline).
    assert len(server.engine.clock) <= 2
    assert rec.reasons == {}
    await ws.send_text("1")
    await rec.ended(server, ws.socket_sid, "transport close")


# --------------------------------------------------------- protocol error
@pytest.mark.parametrize("frame", ["9", '42["a"'], ids=["engineio", "socketio"])
async def test_protocol_error(start_server, frame):
    rec = Recorder()
    server = await start_server(rec.app)
    ws = await parked_ws(rec, server)
    await ws.send_text(frame)
    assert await ws.close_code() == 1002
    await rec.ended(server, ws.socket_sid, "parse error")
    await wait_until(lambda: not server.engine.sessions)


# ---------------------------------------------------------- server close
async def test_server_side_close(start_server):
    rec = Recorder()

    @rec.app.on("kick-me")
    def kick_me(socket):
        socket.close_connection("kicked")

    server = await start_server(rec.app)
    ws = await parked_ws(rec, server)
    await ws.send_text('42["kick-me"]')
    assert await ws.close_code() == 1000
    await rec.ended(server, ws.socket_sid, "kicked")
    await wait_until(lambda: not server.engine.sessions)


# --------------------------------------------------------- server shutdown
async def test_server_shutdown(tmp_path):
    rec = Recorder()
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve, make_config(tmp_path / "data"), rec.app)
            ws = await parked_ws(rec, server)
            polling = await parked_polling(rec, server)
            async with trio_websocket.open_websocket_url(
                f"ws://127.0.0.1:{server.port}{EIO}&transport=websocket"
            ) as tws:
                assert (await tws.get_message()).startswith("0{")
                await tws.send_message("40")
                tws_sid = orjson.loads((await tws.get_message())[2:])["sid"]
                assert len(server.engine.sessions) == 3
                assert server.sio.hub.rooms("/")["lobby"] == 3
                sessions = list(server.engine.sessions.values())

                server.shutdown()
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    while True:
                        await tws.get_message()
                assert closed.value.reason.code in (1001, 1006)
        # Leaving the nursery means the serve() task returned.
    assert server.engine.sessions == {}
    assert all(s.finished.is_set() for s in sessions)
    assert server.sio.hub.rooms("/") == {}
    assert rec.reasons == {
        ws.socket_sid: "server shutting down",
        polling.socket_sid: "server shutting down",
        tws_sid: "server shutting down",
    }
    assert rec.cancelled == {ws.socket_sid, polling.socket_sid}
    with pytest.raises(RuntimeError):
        rec.app.rooms()  # unbound once the server is gone


async def test_every_way_at_once_leaves_nothing(start_server):
    """Many clients ending in different ways at the same time leave no trace,
    not even garbage for the cyclic collector: a server that runs for months
    with raised GC thresholds must free a connection as soon as it ends."""
    gc.collect()  # what earlier tests left
    rec = Recorder()
    server = await start_server(rec.app, **SHORT)
    clients: list[Any] = [await parked_ws(rec, server) for _ in range(6)]
    polls = [await parked_polling(rec, server) for _ in range(2)]
    assert server.sio.hub.rooms("/")["lobby"] == 8
    await clients[0].send_text("41")
    await clients[1].send_text("1")
    await clients[2].reset()
    await clients[3].send_text("9")
    await clients[4].stream.aclose()
    await polls[0].post(b"1")
    # clients[5] and polls[1] go silent: ping timeout.
    await wait_until(lambda: len(rec.reasons) == 8 and len(rec.cancelled) == 8)
    assert sorted(rec.reasons.values()) == sorted(
        [
            "client namespace disconnect",
            "transport close",
            "transport close",
            "parse error",
            "transport close",
            "transport close",
            "ping timeout",
            "ping timeout",
        ]
    )
    await clients[0].send_text("1")
    await wait_until(lambda: not server.engine.sessions)
    assert server.sio.hub.rooms("/") == {}
    for client in clients:
        await client.stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert cyclic_garbage(Session, Client, Socket) == []
