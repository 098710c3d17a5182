"""Connection state recovery across nodes through a real redis-server: a
stock socket.io-client whose transport drops on node A reconnects to node B
(the TCP proxy of tests/support routes it there) and gets its id, rooms and
exactly the events it missed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from support.nodes import StartServer
from support.proxy import Proxy
from support.redis import RedisServer, needs_redis
from test_recovery import RECOVERY, assert_complete, room_app, start_client

from rtserver import App, RunningServer

pytestmark = needs_redis


async def start_node(start_server: StartServer, redis: RedisServer, tmp_path: Path, name: str, app: App) -> RunningServer:
    return await start_server(
        app, cluster={"redis_url": redis.url, "node_id": name, "request_timeout": 2.0},
        server={"data_dir": str(tmp_path / name)}, auth={"enabled": False}, recovery=RECOVERY,
    )


async def client_through_a(
    start_server: StartServer, redis: RedisServer, tmp_path: Path, nursery: trio.Nursery, expect: int
) -> tuple[App, RunningServer, RunningServer, list[tuple[str, bool, frozenset[str]]], Proxy, Any]:
    """Nodes a and b, and a stock client in room "r" of a through the proxy;
    the list gets (sid, recovered, rooms) of each socket connecting to b."""
    app = room_app()
    a = await start_node(start_server, redis, tmp_path, "a", app)
    on_b = room_app()
    seen_by_b: list[tuple[str, bool, frozenset[str]]] = []
    on_b.on("connect", lambda socket, auth: seen_by_b.append((socket.sid, socket.recovered, frozenset(socket.rooms))))
    b = await start_node(start_server, redis, tmp_path, "b", on_b)
    proxy = Proxy(a.port)
    await nursery.start(proxy.serve)
    client = await start_client(nursery, f"http://127.0.0.1:{proxy.port}", expect=expect)
    await client.wait_for("joined")
    return app, a, b, seen_by_b, proxy, client


def recovered_once_on_b(client: Any, seen_by_b: list[tuple[str, bool, frozenset[str]]]) -> None:
    connects = client.of("connect")
    assert [c["recovered"] for c in connects] == [False, True], connects
    sid = connects[0]["id"]
    assert connects[1]["id"] == sid, "the socket id is recovered too"
    [(on_b, recovered, rooms)] = seen_by_b
    assert (on_b, recovered) == (sid, True) and {sid, "r"} <= rooms  # on b, in its room again


async def test_dropped_on_a_mid_stream_recovered_on_b(start_server, redis, tmp_path, nursery):
    app, a, b, seen_by_b, proxy, client = await client_through_a(start_server, redis, tmp_path, nursery, 1000)
    for n in range(1000):
        app.emit("msg", n, to="r")  # node a goes on publishing to the room after the cut
        if n == 300:
            proxy.upstream_port = b.port  # the reconnect lands on node b
            await proxy.cut()
        if n % 50 == 0:
            await trio.sleep(0.01)
    done = await client.wait_for("done", timeout=20)
    assert_complete(done, 1000)
    recovered_once_on_b(client, seen_by_b)
    assert not a.sio.hub.members("/", ["r"])
    proxy.close()


async def test_recovered_on_b_while_a_still_holds_the_old_transport(start_server, redis, tmp_path, nursery):
    """Only the client side drops: node a keeps a silent transport (until its
    ping timeout); b asks the other nodes to let the session go."""
    app, a, b, seen_by_b, proxy, client = await client_through_a(start_server, redis, tmp_path, nursery, 20)
    for n in range(10):
        app.emit("msg", n, to="r")
    proxy.upstream_port = b.port
    await proxy.cut(server_side=False)
    await client.wait_for("disconnect")
    for n in range(10, 20):
        app.emit("msg", n, to="r")
    done = await client.wait_for("done", timeout=20)
    assert_complete(done, 20)
    recovered_once_on_b(client, seen_by_b)
    assert not a.sio.hub.members("/", ["r"])  # a let the session go
    proxy.close()


async def test_redis_lost_events_still_reach_this_nodes_sockets(start_server, redis, tmp_path, nursery):
    """Local delivery never waits for Redis: without it an event goes to this
    node's sockets alone, without an offset; with it back, through the stream again."""
    app, a, _, _, proxy, client = await client_through_a(start_server, redis, tmp_path, nursery, 6)
    app.emit("msg", 0, to="r")
    await redis.stop()
    with trio.fail_after(10):
        while a.sio.bus.link.up:
            await trio.sleep(0.02)
    for n in (1, 2, 3):
        app.emit("msg", n, to="r")
    await redis.start()
    with trio.fail_after(15):
        while not a.sio.bus.link.up:
            await trio.sleep(0.05)
    for n in (4, 5):
        app.emit("msg", n, to="r")
    done = await client.wait_for("done", timeout=20)
    assert_complete(done, 6)
    assert [c["recovered"] for c in client.of("connect")] == [False]  # never dropped
    proxy.close()


async def test_node_a_drains_and_its_client_recovers_on_b(start_server, redis, tmp_path, nursery):
    """A rolling restart: a drains (SIGTERM), saving the sessions it closes;
    b's events published meanwhile reach the client through the replay."""
    app, a, b, seen_by_b, proxy, client = await client_through_a(start_server, redis, tmp_path, nursery, 10)
    for n in range(5):
        app.emit("msg", n, to="r")
    proxy.upstream_port = b.port
    await a.drain(2)
    for n in range(5, 10):
        b.sio.app.emit("msg", n, to="r")
    done = await client.wait_for("done", timeout=20)
    assert_complete(done, 10)
    recovered_once_on_b(client, seen_by_b)
    proxy.close()
