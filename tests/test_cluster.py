"""Several nodes as one server through a real redis-server: rtserver nodes
together, and with the reference's Node.js packages (a socket.io 4.8 server
with @socket.io/redis-adapter 8, a back end with @socket.io/redis-emitter 5,
from tests/cluster's lock file), reached by stock clients."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from support.clients import API_KEY, LiveClient, auth_section, http, token
from support.interactive import NodeClient, spawn
from support.nodes import Background, Node, StartServer, events, in_background, ok, scripted, wait_until
from support.redis import RedisServer, free_port, needs_redis

from rtserver import App, RunningServer
from rtserver.cluster.link import ClusterSetupError

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


# ------------------------------------------- with the reference's emitter
async def test_redis_emitter_back_end_reaches_rtserver_clients(start_server, redis, tmp_path, nursery, node):
    sections = {"auth": {"enabled": False}, "socketio": {"namespaces": ["/", "/chat"]}}
    a = await start_node(start_server, redis, tmp_path, "a", joining_app(), **sections)
    b = await start_node(start_server, redis, tmp_path, "b", joining_app(), **sections)
    emitter = await spawn(nursery, "emitter.js", redis.url, name="redis-emitter", where=PEERS)
    await emitter.expect(lambda e: e["type"] == "ready")
    first, second = await joined(a.port, "r"), await joined(b.port, "r")
    outside = await joined(b.port, "elsewhere")
    chat = stock_client(nursery, node, a.port, "/chat", {"emit": ["join", "r"], "ack": True}, {"wait": "bye"})
    await wait_until(lambda: a.sio.hub.has_room("/chat", "r"))

    await emitter.run("emitter.to('r').emit('to-room', {n: 1}, Buffer.from('bin'))")
    for client in (first, second):
        assert await client.next("to-room") == ({"n": 1}, b"bin")
    await emitter.run("emitter.emit('to-all', 2)")
    for client in (first, second, outside):
        assert await client.next("to-all") == 2
    await emitter.run(f"emitter.to('r').except({json.dumps(first.sio.get_sid())}).emit('but-one', 3)")
    assert await second.next("but-one") == 3
    await emitter.run("emitter.of('/chat').to('r').emit('chat-only', 4)")
    await emitter.run("emitter.of('/chat').emit('bye')")
    assert events(ok(await chat.wait()), "chat-only") == [[4]]
    await settle()
    assert await first.quiet("but-one", 0) == [] and await outside.quiet("to-room", 0) == []
    assert await first.quiet("chat-only", 0) == []

    # socketsJoin, socketsLeave, disconnectSockets(close) reach every node's sockets.
    await emitter.run("emitter.in('r').socketsJoin('vip')")
    await wait_until(lambda: a.sio.hub.has_room("/", "vip") and b.sio.hub.has_room("/", "vip"))
    await emitter.run("emitter.to('vip').emit('vip-news', 5)")
    assert await first.next("vip-news") == 5 and await second.next("vip-news") == 5
    await emitter.run(f"emitter.in({json.dumps(second.sio.get_sid())}).socketsLeave('vip')")
    await wait_until(lambda: not b.sio.hub.has_room("/", "vip"))
    await emitter.run("emitter.in('vip').disconnectSockets()")
    assert await first.next("disconnect") == "server disconnect"
    await emitter.run("emitter.in('elsewhere').disconnectSockets(true)")
    assert await outside.next("disconnect") in ("transport close", "transport error")  # dropped, not told to stay away
    assert second.sio.connected
    await second.disconnect()
    await emitter.close()


# ------------------------------------------------ cluster-wide API and App
async def test_revoke_rooms_and_disconnect_act_on_every_node(start_server, redis, tmp_path):
    a = await start_node(start_server, redis, tmp_path, "a", auth=auth_section())
    b = await start_node(start_server, redis, tmp_path, "b", auth=auth_section())
    alice_a = await LiveClient(a.port).connect(auth={"token": token("alice", "acme")})
    alice_b = await LiveClient(b.port).connect(auth={"token": token("alice", "acme")})
    bob_b = await LiveClient(b.port).connect(auth={"token": token("bob", "acme")})
    carol_a = await LiveClient(a.port).connect(auth={"token": token("carol", "acme")})

    # /rooms on node a moves bob, who is on node b; the count is the cluster's.
    status, body = await http(a.port, "POST", "/api/v1/rooms", {"user": "bob", "join": ["team"]})
    assert (status, body) == (200, {"sockets": 1})
    await wait_until(lambda: b.sio.hub.has_room("/", "team"))
    await http(a.port, "POST", "/api/v1/emit", {"event": "team-news", "data": 1, "room": "team"})
    assert await bob_b.next("team-news") == 1
    status, body = await http(b.port, "POST", "/api/v1/rooms", {"tenant": "acme", "except": ["user:carol"], "leave": ["team"]})
    assert (status, body) == (200, {"sockets": 3})
    await wait_until(lambda: not b.sio.hub.has_room("/", "team"))

    # Revocation on node b kicks alice on both nodes and counts both.
    status, body = await http(b.port, "POST", "/api/v1/admin/revoke", {"user": "alice"})
    assert (status, body) == (200, {"user": "alice", "tokenVersion": 1, "disconnected": 2})
    for client in (alice_a, alice_b):
        assert (await client.next("error"))["code"] == "token_revoked"
    # Node a now refuses alice's old token too.
    refused = LiveClient(a.port)
    with pytest.raises(Exception):
        await refused.connect(auth={"token": token("alice", "acme")})
    error = await refused.next("connect_error")
    assert "revoked" in json.dumps(error), error

    # /disconnect on node a ends bob's socket on node b.
    status, body = await http(a.port, "POST", "/api/v1/disconnect", {"user": "bob"})
    assert (status, body) == (200, {"disconnected": 1})
    assert await bob_b.next("disconnect") == "server disconnect"
    assert carol_a.sio.connected
    await carol_a.disconnect()


async def test_fetch_sockets_and_server_side_emit_between_nodes(start_server, redis, tmp_path):
    apps = {name: App() for name in ("a", "b", "c")}
    for name, app in apps.items():
        app.on_server_side("whoami", lambda prefix, name=name: f"{prefix} {name}")
    seen: list[Any] = []
    apps["b"].on_server_side("note", lambda *args: seen.append(args))
    nodes = {name: await start_node(start_server, redis, tmp_path, name, app, auth=auth_section())
             for name, app in apps.items()}
    dana = await LiveClient(nodes["b"].port).connect(auth={"token": token("dana", "acme", roles=["ops"])})
    erin = await LiveClient(nodes["c"].port).connect(auth={"token": token("erin", "acme")})
    await LiveClient(nodes["a"].port).connect(auth={"token": token("finn", "other")})

    found = await apps["a"].fetch_sockets("tenant:acme")
    assert sorted((f.node, f.identity["user"], f.local) for f in found) == [("b", "dana", False), ("c", "erin", False)]
    [d] = [f for f in found if f.node == "b"]
    assert d.sid == dana.sio.get_sid() and d.rooms == {d.sid, "user:dana", "tenant:acme"}
    assert d.identity["roles"] == ["ops"] and "token" not in d.handshake["auth"]
    assert "authorization" not in d.handshake["headers"]
    assert [f.identity["user"] for f in await apps["c"].fetch_sockets("tenant:acme", skip="user:dana")] == ["erin"]
    everyone = await apps["b"].fetch_sockets()
    assert sorted(f.identity["user"] for f in everyone) == ["dana", "erin", "finn"]
    # Emitting to an id fetched from another node reaches that socket.
    apps["a"].emit("hello", "there", to=d.sid)
    assert await dana.next("hello") == "there"

    assert sorted(await apps["a"].server_side_emit_with_ack("whoami", "node")) == ["node b", "node c"]
    apps["c"].server_side_emit("note", 1, [2])
    await wait_until(lambda: seen == [(1, [2])])
    await erin.disconnect()


async def test_feature_sends_reach_users_on_other_nodes(start_server, redis, tmp_path):
    sections = {"auth": auth_section(), "features": {"enabled": ["chat", "notifications"]}}
    a = await start_node(start_server, redis, tmp_path, "a", **sections)
    b = await start_node(start_server, redis, tmp_path, "b", **sections)
    bob = await LiveClient(b.port).connect(auth={"token": token("bob", "acme")})
    bob_elsewhere = await LiveClient(a.port).connect(auth={"token": token("bob", "globex")})  # another tenant's bob
    alice = await LiveClient(a.port).connect(auth={"token": token("alice", "acme")})

    # The notifications back end calls node a; bob is on node b: delivered there, not queued.
    status, body = await http(a.port, "POST", "/api/v1/notifications",
                              {"tenant": "acme", "user": "bob", "notification": {"text": "hi"}})
    assert (status, body) == (200, {"delivered": 0, "queued": []})  # 0: none of bob's sockets is on node a
    assert await bob.next("newNotification") == {"text": "hi"}
    # Typing from node a reaches bob of acme on node b only.
    assert (await alice.call("typing", {"userId": "bob", "isTyping": True}))["delivered"] == 0
    assert (await bob.next("userTyping"))["userId"] == "alice"
    # A chat private message from node a to bob on node b ("recipient offline" is cluster-wide).
    answer = await alice.call("send_message", {"to": "bob", "message": "psst"})
    assert answer["status"] == "ok", answer
    assert (await bob.next("new_message"))["message"] == "psst"
    await settle()
    received = {name for name, _ in list(bob_elsewhere.received.queue)}
    assert not received & {"newNotification", "userTyping", "new_message"}, received
    for client in (bob, bob_elsewhere, alice):
        await client.disconnect()


# ------------------------------------------------------------------- faults
def metric(server: RunningServer, name: str, **labels: str) -> float:
    """A sample's value from the node's /metrics exposition."""
    for family in text_string_to_metric_families(server.sio.hub.stats.render().decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


async def test_redis_stopped_and_restarted_under_load(start_server, redis, tmp_path, caplog):
    caplog.set_level("INFO", logger="rtserver.cluster")
    a = await start_node(start_server, redis, tmp_path, "a", joining_app(), auth={"enabled": False})
    b = await start_node(start_server, redis, tmp_path, "b", joining_app(), auth={"enabled": False})
    remote, local = await joined(a.port, "load"), await joined(b.port, "load")
    ticks: dict[str, list[int]] = {"remote": [], "local": []}
    remote.sio.on("tick", ticks["remote"].append)
    local.sio.on("tick", ticks["local"].append)
    sent = 0

    async def publish(task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal sent
        with trio.CancelScope() as scope:
            task_status.started(scope)
            while True:
                b.sio.app.emit("tick", sent, to="load")
                sent += 1
                await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        publishing = await nursery.start(publish)
        await wait_until(lambda: len(ticks["remote"]) >= 10)
        await redis.stop()
        await wait_until(lambda: not a.sio.bus.link.up and not b.sio.bus.link.up)
        status, health = await http(b.port, "GET", "/healthz")
        assert status == 200 and health["status"] == "degraded" and health["cluster"]["redis"] == "down", health
        assert health["cluster"]["url"] == redis.url
        down_at = sent
        await trio.sleep(0.5)
        assert metric(b, "rtserver_cluster_messages_dropped_total", reason="disconnected") > 0
        await redis.start()
        await wait_until(lambda: a.sio.bus.link.up and b.sio.bus.link.up, timeout=15)
        up_at = sent
        with trio.fail_after(15):  # the shared store's own link is back too
            while (await http(a.port, "GET", "/healthz"))[1]["status"] != "ok":
                await trio.sleep(0.05)
        await wait_until(lambda: any(n > up_at for n in ticks["remote"]))  # cross-node traffic resumed
        publishing.cancel()
    await settle()
    # The client on the publishing node never noticed: every tick, in order.
    assert ticks["local"] == list(range(sent))
    # Across, in order, with a gap while Redis was away.
    across = ticks["remote"]
    assert across == sorted(across) and len(across) < sent and across[0] == 0 and down_at > 0
    messages = [r.getMessage() for r in caplog.records if r.name == "rtserver.cluster"]
    assert sum(m.startswith("redis unreachable") for m in messages) == 2, messages  # once per node
    assert sum(m.startswith("redis connection restored") for m in messages) == 2, messages
    await remote.disconnect()
    await local.disconnect()


async def test_garbage_on_the_channels_is_counted_and_ignored(start_server, redis, tmp_path, caplog):
    caplog.set_level("WARNING", logger="rtserver.cluster")
    a = await start_node(start_server, redis, tmp_path, "a", joining_app(), auth={"enabled": False},
                         engineio={"max_payload": 10_000})
    client = await joined(a.port, "r")
    event = {"type": 2, "nsp": "/", "data": ["ok", 1]}
    nested = b"\x91" * 2000 + b"\xc0"  # [[[...]]] 2,000 deep
    garbage = [
        ("socket.io#/#", b"\xc1", "bad msgpack"),
        ("socket.io#/#", b"\xc1\xc1", "bad msgpack"),  # the same kind again: counted, not logged again
        ("socket.io#/#", msgpack.packb([1, 2]), "bad broadcast"),
        ("socket.io#/#", msgpack.packb(msgpack.ExtType(5, b"x")), "msgpack extension"),
        ("socket.io#/#", msgpack.packb(["x", event, {}]) + b"\x00" * 20_000, "too large"),
        ("socket.io#/#", msgpack.packb(["x", {**event, "data": ["disconnect"]}, {}]), "reserved event"),
        ("socket.io#/#", msgpack.packb(["x", {**event, "type": 3}, {}]), "not an event"),
        ("socket.io#/#", msgpack.packb(["x", {**event, "data": ["ok", {b"k": 1}]}, {}]), "unprocessable"),
        ("socket.io#/#", msgpack.packb(["x", event, {"rooms": [{"a": 1}]}]), "bad options"),
        ("socket.io#/#", nested, "bad msgpack"),
        ("socket.io-request#/#", b'{"type": 99}', "unknown request type"),
        ("socket.io-request#/#", b"{not json", "bad JSON"),
        ("socket.io-request#/#", msgpack.packb({"type": 5, "opts": {}}), "bad request"),  # no requestId to answer
        ("socket.io-rtserver#", b'{"type": "revoke", "uid": "x", "requestId": "1", "user": 5}', "failed command"),
        ("socket.io-rtserver#", b'{"type": "format-disk", "uid": "x", "requestId": "1"}', "unknown command"),
    ]
    for channel, payload, _ in garbage:
        assert await redis.publish(channel, payload) == 1
    # The node is alive, and a well-formed broadcast still gets through.
    assert await redis.publish("socket.io#/#r#", msgpack.packb(["x", event, {"rooms": ["r"]}])) == 1
    assert await client.next("ok") == 1
    await wait_until(lambda: sum(a.sio.bus.malformed.values()) == len(garbage))
    expected = Counter(kind for _, _, kind in garbage)
    assert a.sio.bus.malformed == expected
    for kind, count in expected.items():
        assert metric(a, "rtserver_cluster_messages_malformed_total", kind=kind) == count
    warnings = [r for r in caplog.records if r.name == "rtserver.cluster" and r.levelname == "WARNING"]
    assert len(warnings) == len(expected), [r.__dict__.get("fields") for r in warnings]
    assert await client.call("join", "still-serving") == "ok"
    await client.disconnect()


async def test_a_node_starts_degraded_without_redis_and_joins_when_it_appears(start_server, tmp_path, caplog):
    caplog.set_level("INFO", logger="rtserver.cluster")
    redis = RedisServer(tmp_path / "late-redis")
    a = await start_node(start_server, redis, tmp_path, "a", joining_app(), auth={"enabled": False})
    client = await joined(a.port, "r")  # local service from the start
    status, health = await http(a.port, "GET", "/healthz")
    assert status == 200 and health["status"] == "degraded" and health["cluster"]["redis"] == "down"
    a.sio.app.emit("local", 1, to="r")
    assert await client.next("local") == 1
    try:
        await redis.start()
        await wait_until(lambda: a.sio.bus.link.up, timeout=15)
        b = await start_node(start_server, redis, tmp_path, "b", auth={"enabled": False})
        b.sio.app.emit("across", 2, to="r")
        assert await client.next("across") == 2
    finally:
        await redis.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "rtserver.cluster"]
    assert sum(m.startswith("redis unreachable") for m in messages) == 1, messages
    await client.disconnect()


async def test_credentials_redis_refuses_are_a_start_up_error(tmp_path):
    redis = RedisServer(tmp_path / "locked")
    await redis.start()
    try:
        await redis.command("CONFIG", "SET", "requirepass", "right")
        config = tmp_path / "config.toml"
        config.write_text(f'[server]\nport = 0\ndata_dir = "{tmp_path / "data"}"\n[auth]\nenabled = false\n'
                          f'[cluster]\nredis_url = "redis://:wrong@127.0.0.1:{redis.port}/0"\n')
        with trio.fail_after(30):
            done = await trio.run_process([sys.executable, "-m", "rtserver", "serve", "--config", str(config)],
                                          capture_stdout=True, capture_stderr=True, check=False)
        [line] = done.stderr.decode().strip().splitlines()
        assert done.returncode == 2, line
        assert line.startswith(f"start-up error: Redis at redis://***@127.0.0.1:{redis.port}/0 refused this node"), line
        assert "wrong" not in line  # the password stays out of the message
    finally:
        await redis.stop()


async def test_two_nodes_with_one_node_id_is_a_start_up_error(start_server, redis, tmp_path):
    await start_node(start_server, redis, tmp_path, "same")
    with pytest.raises(BaseExceptionGroup) as info:
        with trio.fail_after(10):
            await start_node(start_server, redis, tmp_path / "other", "same")
    assert info.group_contains(ClusterSetupError, match="'same' is already used", depth=None)
