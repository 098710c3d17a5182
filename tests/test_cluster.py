"""Several nodes as one server through a real redis-server: rtserver nodes
together, and with the reference's Node.js packages (a socket.io 4.8 server
with @socket.io/redis-adapter 8, a back end with @socket.io/redis-emitter 5,
from tests/cluster's lock file), reached by stock clients."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from support.clients import API_KEY, LiveClient, auth_section, http, token
from support.interactive import NodeClient, spawn
from support.nodes import Background, Node, StartServer, events, in_background, ok, scripted, wait_until
from support.redis import RedisServer, free_port, needs_redis

from rtserver import App, ClusterIncomplete, RunningServer

pytestmark = needs_redis

PEERS = Path(__file__).parent / "cluster"


async def start_node(
    start_server: StartServer, redis: RedisServer, tmp_path: Path, name: str, app: App | None = None, **sections: Any
) -> RunningServer:
    """An rtserver node named ``name`` on ``redis``, with its own data directory."""
    cluster = {"redis_url": redis.url, "node_id": name, "request_timeout": 2.0, **sections.pop("cluster", {})}
    server = {"data_dir": str(tmp_path / name), **sections.pop("server", {})}
    return await start_server(app, cluster=cluster, server=server, **sections)


def joining_app() -> App:
    """``join`` (room) -> "ok", on "/" and "/chat"."""
    app = App()
    for namespace in ("/", "/chat"):
        app.on("join", lambda socket, room: socket.join(room) or "ok", namespace=namespace)
    return app


async def joined(port: int, room: str, **connect: Any) -> LiveClient:
    """A python-socketio client in ``room`` of "/"."""
    client = await LiveClient(port).connect(**connect)
    assert await client.call("join", room) == "ok"
    return client


def stock_client(nursery: trio.Nursery, node: Node, port: int, namespace: str, *steps: dict[str, Any]) -> Background:
    """A stock socket.io-client (tests/clients/scripted.js) in the background."""
    return in_background(nursery, node, "scripted.js", f"http://127.0.0.1:{port}{namespace}",
                         scripted(options={"transports": ["websocket"]}, steps=list(steps)))


async def node_peer(nursery: trio.Nursery, redis: RedisServer) -> tuple[NodeClient, int]:
    port = free_port()
    peer = await spawn(nursery, "server.js", str(port), redis.url, name="node socket.io server", where=PEERS)
    await peer.expect(lambda e: e["type"] in ("listening", "fatal"))
    assert not [e for e in peer.lines if e["type"] == "fatal"], peer.lines
    return peer, port


async def settle(seconds: float = 0.3) -> None:
    """Let messages cross Redis (a few ms) before checking that none arrived."""
    await trio.sleep(seconds)


# ------------------------------------------------------------ rtserver nodes
async def test_room_broadcast_crosses_nodes_with_except_and_namespaces(start_server, redis, tmp_path, nursery, node):
    sections = {"auth": {"enabled": False, "api_keys": [API_KEY]}, "socketio": {"namespaces": ["/", "/chat"]}}
    a = await start_node(start_server, redis, tmp_path, "a", joining_app(), **sections)
    b = await start_node(start_server, redis, tmp_path, "b", joining_app(), **sections)
    on_a = await joined(a.port, "r")
    skipped = await joined(a.port, "r")
    on_b = await joined(b.port, "r")
    elsewhere = await joined(a.port, "other")
    chat = stock_client(nursery, node, a.port, "/chat", {"emit": ["join", "r"], "ack": True}, {"wait": "chat-news"})
    await wait_until(lambda: a.sio.hub.has_room("/chat", "r"))

    status, body = await http(b.port, "POST", "/api/v1/emit",
                              {"event": "news", "data": {"n": 1}, "room": "r", "except": [skipped.sio.get_sid()]})
    assert (status, body) == (200, {"delivered": 1})  # this node's (b's) sockets
    assert await on_a.next("news") == {"n": 1}
    assert await on_b.next("news") == {"n": 1}
    b.sio.app.emit("chat-news", "hi", to="r", namespace="/chat")
    assert events(ok(await chat.wait()), "chat-news") == [["hi"]]
    b.sio.app.emit("everyone", 2)
    for client in (on_a, skipped, on_b, elsewhere):
        assert await client.next("everyone") == 2
    await settle()
    assert await skipped.quiet("news", 0) == [] and await elsewhere.quiet("news", 0) == []
    assert await on_a.quiet("chat-news", 0) == []
    # A socket's own id is a room on its node only, reached from any node.
    b.sio.app.emit("direct", 3, to=elsewhere.sio.get_sid())
    assert await elsewhere.next("direct") == 3
    for client in (on_a, skipped, on_b, elsewhere):
        await client.disconnect()


# ------------------------------------------- with the reference's Node.js server
async def test_node_socketio_server_and_rtserver_share_rooms(start_server, redis, tmp_path, nursery, node):
    app = joining_app()
    heard: list[tuple[Any, ...]] = []
    app.on_server_side("tell-nodes", lambda *args: heard.append(args))
    app.on_server_side("ask-nodes", lambda *args: {"node": "rtserver", "args": list(args)})
    rt = await start_node(start_server, redis, tmp_path, "rt", app, auth={"enabled": False, "api_keys": [API_KEY]})
    peer, port = await node_peer(nursery, redis)
    # A stock client on the Node server, one on rtserver (python-socketio), both in room "r".
    on_node = stock_client(nursery, node, port, "/", {"emit": ["join", "r"], "ack": True}, {"wait": "bye"})
    on_rt = await joined(rt.port, "r")
    on_rt.sio.on("ask", lambda *args: {"answer": list(args)})
    assert await peer.run("(async () => { for (let i = 0; i < 100; i++) { "
                          "if ((await io.in('r').fetchSockets()).length === 2) return true; "
                          "await new Promise((r) => setTimeout(r, 20)); } return false; })()") is True

    # rtserver -> Node's client: the HTTP API and App.emit, binary included.
    status, body = await http(rt.port, "POST", "/api/v1/emit", {"event": "from-rtserver", "data": {"n": 1}, "room": "r"})
    assert (status, body) == (200, {"delivered": 1})
    rt.sio.app.emit("from-rtserver", b"\x00\xffbytes", {"n": 2}, to="r")

    # Node -> rtserver's client, binary included.
    await peer.run("io.to('r').emit('from-node', {n: 3}, Buffer.from([1, 2, 3]))")
    assert await on_rt.next("from-node") == ({"n": 3}, b"\x01\x02\x03")

    # The reference's cross-node requests, both ways.
    sockets = await peer.run("(await io.in('r').fetchSockets()).map((s) => ({id: s.id, rooms: [...s.rooms]}))")
    [seen] = [s for s in sockets if s["id"] == on_rt.sio.get_sid()]
    assert {on_rt.sio.get_sid(), "r"} <= set(seen["rooms"])
    found = await rt.sio.app.fetch_sockets("r")
    assert len(found) == 2
    [mine] = [f for f in found if f.local]
    assert mine.sid == on_rt.sio.get_sid() and mine.node == "rt" and {mine.sid, "r"} <= mine.rooms
    [theirs] = [f for f in found if not f.local]
    assert theirs.identity is None and theirs.node is None and "r" in theirs.rooms

    rt.sio.app.server_side_emit("tell-nodes", 1, {"two": 2})
    await peer.expect(lambda e: e["type"] == "server_side" and e["args"] == [1, {"two": 2}])
    assert await rt.sio.app.server_side_emit_with_ack("ask-nodes", "x") == [{"node": "node", "args": ["x"]}]
    await peer.run("io.serverSideEmit('tell-nodes', 'from node')")
    await wait_until(lambda: heard == [("from node",)])
    assert await peer.run("io.serverSideEmitWithAck('ask-nodes', 'y')") == [{"node": "rtserver", "args": ["y"]}]

    # A broadcast with acks from Node reaches rtserver's client, whose ack goes back.
    acks = await peer.run("io.timeout(3000).to('r').except(" + json.dumps(sockets_of_node(sockets, on_rt)) +
                          ").emitWithAck('ask', 7)")
    assert acks == [{"answer": [7]}]

    # Node's socketsJoin / disconnectSockets act on rtserver's sockets.
    await peer.run(f"io.in({json.dumps(on_rt.sio.get_sid())}).socketsJoin('joined-by-node')")
    await wait_until(lambda: rt.sio.hub.has_room("/", "joined-by-node"))
    await peer.run("io.in('joined-by-node').disconnectSockets()")
    assert await on_rt.next("disconnect") == "server disconnect"
    rt.sio.app.emit("bye", to="r")
    got = events(ok(await on_node.wait()), "from-rtserver")
    assert got == [[{"n": 1}], [{"$bin": "AP9ieXRlcw=="}, {"n": 2}]]
    await peer.close()


def sockets_of_node(sockets: list[dict[str, Any]], rt_client: LiveClient) -> list[str]:
    """The ids of the Node server's own sockets among ``sockets``."""
    return [s["id"] for s in sockets if s["id"] != rt_client.sio.get_sid()]
