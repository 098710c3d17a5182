"""The shared store of a cluster (Redis): a client reconnecting to another
node finds the same token versions, users, retained state, inboxes and
signage registrations; Redis lost, a node answers from what it knows and
acknowledges no write it could not keep.  Real redis-server, real clients
(python-socketio, and the stock socket.io-client through tests/clients)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from support.clients import SECRET, LiveClient, auth_section, http, token
from support.nodes import Node, events, run_scripted, wait_until
from support.redis import free_port, needs_redis, running
from test_auth_clients import cli, write_config
from support.interactive import spawn
from test_cluster import PEERS, metric, start_node
from test_feature_signage import BOB, DAVE, P, success
from test_feature_signage import sections as signage_sections

from rtserver import RunningServer

pytestmark = needs_redis

DEPLOYMENTS = {"features": {"enabled": ["deployments"]}}


async def refusal(port: int, auth: dict[str, Any]) -> str:
    """The code of the connect_error a python-socketio client gets on ``port``."""
    client = LiveClient(port)
    with pytest.raises(Exception):
        await client.connect(auth=auth)
    error = await client.next("connect_error")
    return error["data"]["code"]


async def subscribe(port: int, user: str, deployment: str) -> LiveClient:
    client = await LiveClient(port).connect(auth={"token": token(user, "acme")})
    await client.call("deployment:subscribe", deployment)
    return client


async def healthy(server: RunningServer) -> dict[str, Any]:
    status, body = await http(server.port, "GET", "/healthz")
    assert status == 200, body
    return body


async def store_becomes(server: RunningServer, state: str, timeout: float) -> None:
    """Until /healthz says the store is ``state`` ("up" or "down")."""
    with trio.fail_after(timeout):
        while (await healthy(server)).get("store", {}).get("store") != state:
            await trio.sleep(0.05)


# --------------------------------------------------------------- revocation and users
async def test_revocation_and_users_are_the_same_on_every_node(start_server, redis, tmp_path):
    auth = auth_section(check_user_exists=True)
    a = await start_node(start_server, redis, tmp_path, "a", auth=auth)
    b = await start_node(start_server, redis, tmp_path, "b", auth=auth)
    # A user added through node a may connect to node b; removed through b, a refuses them.
    assert (await http(a.port, "POST", "/api/v1/admin/users", {"user": "alice", "tenant": "acme"}))[0] == 201
    assert (await http(a.port, "POST", "/api/v1/admin/users", {"user": "zoe", "tenant": "acme"}))[0] == 201
    alice = await LiveClient(b.port).connect(auth={"token": token("alice", "acme")})
    assert (await http(b.port, "GET", "/api/v1/admin/users"))[1]["users"] == [
        {"user": "alice", "tenant": "acme"}, {"user": "zoe", "tenant": "acme"}]
    assert (await http(b.port, "DELETE", "/api/v1/admin/users/zoe"))[0] == 200
    assert await refusal(a.port, {"token": token("zoe", "acme")}) == "user_unknown"

    # Revoked through node a: alice's socket on node b is ended, and her token refused everywhere...
    status, body = await http(a.port, "POST", "/api/v1/admin/revoke", {"user": "alice"})
    assert (status, body) == (200, {"user": "alice", "tokenVersion": 1, "disconnected": 1})
    assert (await alice.next("error"))["code"] == "token_revoked"
    assert await refusal(b.port, {"token": token("alice", "acme")}) == "token_revoked"
    # ... including by a node that was not there when it happened.
    c = await start_node(start_server, redis, tmp_path, "c", auth=auth)
    assert await refusal(c.port, {"token": token("alice", "acme")}) == "token_revoked"
    fresh = await LiveClient(c.port).connect(auth={"token": token("alice", "acme", tokenVersion=1)})
    await fresh.disconnect()


async def test_command_line_users_and_offline_revoke_use_the_cluster_store(start_server, redis, tmp_path):
    a = await start_node(start_server, redis, tmp_path, "a", auth=auth_section(check_user_exists=True))
    config = write_config(tmp_path, None, f'secret = "{SECRET}"')
    config.write_text(config.read_text() + f'\n[cluster]\nredis_url = "{redis.url}"\n')
    code, _, err = await cli("users", "add", "gina", "--tenant", "acme", "--config", str(config))
    assert code == 0, err
    gina = await LiveClient(a.port).connect(auth={"token": token("gina", "acme")})
    code, out, err = await cli("users", "list", "--config", str(config))
    assert (code, out.splitlines()) == (0, ["gina\tacme"]), err
    # No server at --url: the version is raised in Redis, and the running node hears of it.
    code, out, err = await cli("revoke", "--user", "gina", "--url", f"http://127.0.0.1:{free_port()}", "--config", str(config))
    assert code == 0 and '"server":"not running"' in out, (out, err)
    assert (await gina.next("error"))["code"] == "token_revoked"
    assert await refusal(a.port, {"token": token("gina", "acme")}) == "token_revoked"


# --------------------------------------------------------------- retained state
async def test_signage_screen_reconnecting_to_another_node_gets_the_layout(start_server, redis, tmp_path, node: Node):
    a = await start_node(start_server, redis, tmp_path, "a", **signage_sections(grace=0.1))
    b = await start_node(start_server, redis, tmp_path, "b", **signage_sections(grace=0.1))
    # The screen registers through node a and connects there (the stock client)...
    reg = success(await http(a.port, "POST", f"{P}/connect", {"deviceId": "screen-1"}, key=DAVE))
    auth = {"token": DAVE, "connectionId": reg["connectionId"]}
    options = {"transports": ["websocket"], "auth": auth}
    first = await run_scripted(node, a, options=options, steps=[{"sleep": 100}])
    assert first.of("connect"), first
    await wait_until(lambda: not a.sio.hub.members("/", ["device:screen-1"]))
    # ... the power goes; meanwhile a designer pushes a layout through node a.
    sent = success(await http(a.port, "POST", f"{P}/layout-update", {"layoutId": "spring", "deviceIds": ["screen-1"],
                                                                        "layoutData": {"zones": 3}}, key=BOB))
    assert sent["delivered"] == 0
    # The screen comes back through node b with its registration: accepted, and shown the layout at once.
    back = await run_scripted(node, b, options=options, steps=[{"wait": "layout_update", "count": 1}])
    [[layout]] = events(back, "layout_update")
    assert (layout["layoutId"], layout["layoutData"], layout["deviceId"]) == ("spring", {"zones": 3}, "screen-1")
    # Registered through node b, accepted by node a.
    again = success(await http(b.port, "POST", f"{P}/connect", {"deviceId": "screen-1"}, key=DAVE))
    through_a = await run_scripted(node, a, options={"transports": ["websocket"],
                                                     "auth": {"token": DAVE, "connectionId": again["connectionId"]}},
                                   steps=[{"wait": "layout_update", "count": 1}])
    assert [e[0]["layoutId"] for e in events(through_a, "layout_update")] == ["spring"]
    # Ended through node b, the registration's socket on node a is disconnected, and no node accepts it again.
    for server in (a, b):  # the screens' stock clients are gone
        await wait_until(lambda server=server: not server.sio.hub.members("/", ["device:screen-1"]))
    held = await LiveClient(a.port).connect(auth=auth)
    assert success(await http(b.port, "POST", f"{P}/disconnect", {"connectionId": reg["connectionId"]}, key=DAVE)) == {
        "connectionId": reg["connectionId"], "disconnected": 0}  # (the count is node b's)
    assert await held.next("disconnect") == "server disconnect"
    for server in (a, b):
        assert await refusal(server.port, auth) == "unknown_connection"


async def test_deployment_status_and_backlog_seen_from_every_node(start_server, redis, tmp_path):
    a = await start_node(start_server, redis, tmp_path, "a", auth=auth_section(), **DEPLOYMENTS)
    b = await start_node(start_server, redis, tmp_path, "b", auth=auth_section(), **DEPLOYMENTS)
    assert (await http(a.port, "POST", "/api/v1/deployments/d1/status", {"tenant": "acme", "status": "building"}))[0] == 200
    assert (await http(a.port, "POST", "/api/v1/deployments/d1/log", {"tenant": "acme", "lines": ["one", "two"]}))[0] == 200
    assert (await http(b.port, "POST", "/api/v1/deployments/d1/log", {"tenant": "acme", "log": "three"}))[0] == 200
    for server in (a, b):
        late = await subscribe(server.port, "carol", "d1")
        assert (await late.next("deployment:status"))["status"] == "building"
        assert [(await late.next("deployment:log"))["log"] for _ in range(3)] == ["one", "two", "three"]
        await late.disconnect()
    # The first tenant to publish an id owns it on every node.
    status, body = await http(b.port, "POST", "/api/v1/deployments/d1/status", {"tenant": "globex", "status": "x"})
    assert (status, body["code"]) == (409, "deployment_conflict")
    # Forgotten through node b: a subscriber on node a gets nothing.
    assert (await http(b.port, "DELETE", "/api/v1/deployments/d1?tenant=acme"))[0] == 200
    await trio.sleep(0.3)  # the change crosses Redis (a few ms)
    quiet = await subscribe(a.port, "carol", "d1")
    assert await quiet.quiet("deployment:log", 0.3) == []
    await quiet.disconnect()


async def test_offline_inbox_filled_through_one_node_is_delivered_by_another(start_server, redis, tmp_path):
    sections = {"auth": auth_section(), "retention": {"inbox": ["note"]}}
    a = await start_node(start_server, redis, tmp_path, "a", **sections)
    b = await start_node(start_server, redis, tmp_path, "b", **sections)
    # Online on node b: an event sent through node a reaches bob there and is not kept.
    online = await LiveClient(b.port).connect(auth={"token": token("bob", "acme")})
    assert await http(a.port, "POST", "/api/v1/emit", {"event": "note", "user": "bob", "data": 0}) == (
        200, {"delivered": 0})
    assert await online.next("note") == 0
    await online.disconnect()
    await wait_until(lambda: not b.sio.hub.members("/", ["user:bob"]))
    for n in (1, 2):
        assert await http(a.port, "POST", "/api/v1/emit", {"event": "note", "user": "bob", "data": n}) == (
            200, {"delivered": 0})
    bob = await LiveClient(b.port).connect(auth={"token": token("bob", "acme")})
    assert [await bob.next("note"), await bob.next("note")] == [1, 2]
    assert await bob.quiet("note") == []
    # Delivered once: the inbox is empty on node a too.
    await bob.disconnect()
    again = await LiveClient(a.port).connect(auth={"token": token("bob", "acme")})
    assert await again.quiet("note") == []
    await again.disconnect()


# --------------------------------------------------------------- Redis lost
@pytest.fixture
async def durable_redis(tmp_path: Path) -> Any:
    """A redis-server that fsyncs every write (appendonly): what it acknowledged survives its restart."""
    async with running(tmp_path / "durable-redis", appendonly=True) as server:
        yield server


async def test_redis_lost_answers_from_memory_refuses_writes_and_loses_nothing(start_server, durable_redis, tmp_path):
    redis = durable_redis
    a = await start_node(start_server, redis, tmp_path, "a", auth=auth_section(), **DEPLOYMENTS)
    b = await start_node(start_server, redis, tmp_path, "b", auth=auth_section(), **DEPLOYMENTS)
    assert (await http(a.port, "POST", "/api/v1/deployments/d1/status", {"tenant": "acme", "status": "building"}))[0] == 200
    assert (await http(a.port, "POST", "/api/v1/admin/revoke", {"user": "mallory"}))[0] == 200
    watcher = await subscribe(b.port, "carol", "d1")
    assert (await watcher.next("deployment:status"))["status"] == "building"

    await redis.stop()
    for server in (a, b):
        await store_becomes(server, "down", 10)
        health = await healthy(server)
        assert health["status"] == "degraded" and health["store"]["store"] == "down", health
        assert metric(server, "rtserver_store_redis_up") == 0
    # Writes are refused, not acknowledged.
    for method, path, body in (
        ("POST", "/api/v1/deployments/d1/status", {"tenant": "acme", "status": "lost"}),
        ("POST", "/api/v1/admin/revoke", {"user": "carol"}),
        ("POST", "/api/v1/admin/users", {"user": "eve"}),
    ):
        status, answer = await http(a.port, method, path, body)
        assert (status, answer["code"]) == (503, "store_unavailable"), (path, answer)
    # Reads answer from what each node knows: the status, the revocation; sockets stay.
    late = await subscribe(b.port, "dave", "d1")
    assert (await late.next("deployment:status"))["status"] == "building"
    assert await refusal(b.port, {"token": token("mallory", "acme")}) == "token_revoked"
    assert watcher.sio.connected

    await redis.start()
    for server in (a, b):
        await store_becomes(server, "up", 15)
        with trio.fail_after(15):  # the cluster's messages come back too
            while (await healthy(server))["status"] != "ok":
                await trio.sleep(0.05)
        assert (metric(server, "rtserver_store_redis_up"), metric(server, "rtserver_store_redis_outages_total")) == (1, 1)
    # Nothing acknowledged was lost; nothing refused was kept; writes go on.
    c = await start_node(start_server, redis, tmp_path, "c", auth=auth_section(), **DEPLOYMENTS)
    assert await refusal(c.port, {"token": token("mallory", "acme")}) == "token_revoked"
    on_c = await subscribe(c.port, "erin", "d1")
    assert (await on_c.next("deployment:status"))["status"] == "building"
    assert (await http(c.port, "GET", "/api/v1/admin/users"))[1]["users"] == []
    assert (await http(a.port, "POST", "/api/v1/deployments/d1/status", {"tenant": "acme", "status": "done"}))[0] == 200
    for client in (watcher, late, on_c):
        assert (await client.next("deployment:status", where=lambda s: s["status"] != "building"))["status"] == "done"
        await client.disconnect()



async def test_a_redis_that_lost_its_data_gets_the_revocations_back(start_server, redis, tmp_path):
    """Redis restarted without persistence comes back empty: the nodes write
    back the token versions they hold, so no revoked token works again."""
    a = await start_node(start_server, redis, tmp_path, "a", auth=auth_section())
    assert (await http(a.port, "POST", "/api/v1/admin/revoke", {"user": "mallory"}))[1]["tokenVersion"] == 1
    await redis.stop()
    await store_becomes(a, "down", 10)
    await redis.start()  # empty
    await store_becomes(a, "up", 15)
    with trio.fail_after(10):  # node a writes it back as it reloads
        while await redis.command("HGET", "socket.io-rtserver-store#tokens", "mallory") != b"$1\r\n1\r\n":
            await trio.sleep(0.05)
    c = await start_node(start_server, redis, tmp_path, "c", auth=auth_section())
    assert await refusal(c.port, {"token": token("mallory", "acme")}) == "token_revoked"


async def test_a_latest_value_published_by_the_redis_emitter_is_kept_for_every_node(start_server, redis, tmp_path, nursery):
    """@socket.io/redis-emitter writes nothing to the store: the node that
    delivers its emit keeps the latest value, and a screen joining through
    another node gets it."""
    sections = {"auth": {"enabled": False}, "retention": {"latest": ["layout"]}}
    a = await start_node(start_server, redis, tmp_path, "a", **sections)
    b = await start_node(start_server, redis, tmp_path, "b", **sections)
    watching = await LiveClient(a.port).connect()
    assert (await watching.call("subscribe", "screens"))["rooms"] == ["screens"]
    emitter = await spawn(nursery, "emitter.js", redis.url, name="redis-emitter", where=PEERS)
    await emitter.expect(lambda e: e["type"] == "ready")
    await emitter.run("emitter.to('screens').emit('layout', {id: 'autumn'})")
    assert await watching.next("layout") == {"id": "autumn"}
    with trio.fail_after(10):  # node a writes it (node b had nobody in the room: it skipped the emit)
        while b"autumn" not in await redis.command("HGET", "socket.io-rtserver-store#latest#latest:screens", "layout"):
            await trio.sleep(0.05)
    late = await LiveClient(b.port).connect()
    await late.call("subscribe", "screens")
    assert await late.next("layout") == {"id": "autumn"}
    for client in (watching, late):
        await client.disconnect()
