"""Presence across rtserver nodes through a real redis-server: one online and
one offline event per real change whichever nodes a user's tabs are on, a
node killed with SIGKILL announced offline by the others, and Redis lost
and back (re-announce, converge)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import trio
from support.clients import SECRET, LiveClient, auth_section, http, token
from support.nodes import StartServer, wait_until
from support.proxy import Proxy
from support.redis import RedisServer, free_port, needs_redis

from rtserver import RunningServer

pytestmark = needs_redis

GRACE = 0.5
SECTIONS: dict[str, Any] = {
    "auth": auth_section(),
    "presence": {"grace": GRACE, "user_events": [["user:online", "user:offline"]]},
}


async def start_node(start_server: StartServer, redis: RedisServer, tmp_path: Path, name: str, **cluster: Any) -> RunningServer:
    return await start_server(
        cluster={"redis_url": redis.url, "node_id": name, "request_timeout": 2.0, **cluster},
        server={"data_dir": str(tmp_path / name)}, **SECTIONS,
    )


async def connected(port: int, user: str, tenant: str = "acme", device: str | None = None) -> LiveClient:
    auth = {"token": token(user, tenant, devices=[device])} if device else {"token": token(user, tenant)}
    return await LiveClient(port).connect(auth={**auth, "deviceId": device} if device else auth)


def about(user: str) -> Any:
    return lambda data: data.get("userId") == user


async def events_about(client: LiveClient, event: str, user: str, seconds: float) -> list[Any]:
    return [e for e in await client.quiet(event, seconds) if e.get("userId") == user]


async def presence_of(port: int, user: str) -> str:
    status, body = await http(port, "GET", f"/api/v1/presence?tenant=acme&user={user}")
    assert status == 200, body
    return body["status"]


async def test_one_online_and_one_offline_per_real_change_across_nodes(start_server, redis, tmp_path):
    a = await start_node(start_server, redis, tmp_path, "a")
    b = await start_node(start_server, redis, tmp_path, "b")
    watch_a = await connected(a.port, "bob")
    watch_b = await connected(b.port, "carol")
    await wait_until(lambda: b.sio.bus is not None and ("acme", "bob") in _known(b, "users"))

    tab_a = await connected(a.port, "alice")
    tab_b = await connected(b.port, "alice")
    assert (await watch_a.next("user:online", where=about("alice")))["status"] == "online"
    assert (await watch_b.next("user:online", where=about("alice")))["status"] == "online"
    # Online through either node; the socket query and the API answer for the cluster.
    assert await presence_of(a.port, "alice") == "online" and await presence_of(b.port, "alice") == "online"
    users = (await watch_b.call("presence"))["users"]
    assert [u["userId"] for u in users] == ["alice", "bob", "carol"]

    # One tab closes, then reconnects on the other node within the grace period: no event at all.
    await tab_a.disconnect()
    await tab_b.disconnect()
    tab_again = await connected(a.port, "alice")
    assert await events_about(watch_a, "user:offline", "alice", GRACE + 0.8) == []
    assert await events_about(watch_b, "user:online", "alice", 0) == []
    assert await presence_of(b.port, "alice") == "online"

    # The last tab closes: one offline event, heard once on each node, after the grace period.
    await tab_again.disconnect()
    assert (await watch_b.next("user:offline", where=about("alice")))["status"] == "offline"
    assert (await watch_a.next("user:offline", where=about("alice")))["status"] == "offline"
    assert await events_about(watch_a, "user:offline", "alice", 0.8) == []
    assert await events_about(watch_b, "user:offline", "alice", 0) == []
    assert await presence_of(a.port, "alice") == "offline" and await presence_of(b.port, "alice") == "offline"
    # The status text travels too.
    await watch_a.call("presence:status", "lunch")
    await wait_until(lambda: b.sio.bus is not None and _status(b, "bob") == "lunch")
    await watch_a.disconnect()
    await watch_b.disconnect()


def _presence(server: RunningServer) -> Any:
    [listener] = [x for x in server.sio.listeners if type(x).__name__ == "Presence"]
    return listener


def _known(server: RunningServer, tracker: str) -> set[tuple[str, str]]:
    return getattr(_presence(server), tracker).online_keys()


def _status(server: RunningServer, user: str) -> str | None:
    return _presence(server).user_entry("acme", user).get("statusText")


async def test_killed_node_has_its_users_and_devices_announced_offline(start_server, redis, tmp_path, nursery):
    timeout = 1.2
    a = await start_node(start_server, redis, tmp_path, "a", node_timeout=timeout)
    watcher = await connected(a.port, "bob")
    port = free_port()
    config = tmp_path / "doomed.toml"
    config.write_text(
        f'[server]\nport = {port}\nhost = "127.0.0.1"\ndata_dir = "{tmp_path / "doomed"}"\n'
        f'[auth]\nenabled = true\nsecret = "{SECRET}"\n'
        f'[presence]\ngrace = {GRACE}\n'
        f'[cluster]\nredis_url = "{redis.url}"\nnode_id = "doomed"\nnode_timeout = {timeout}\n'
    )
    process = await trio.lowlevel.open_process([sys.executable, "-m", "rtserver", "serve", "--config", str(config)])
    try:
        with trio.fail_after(20):
            while True:
                try:
                    await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await trio.sleep(0.05)
        await connected(port, "alice")
        await connected(port, "dave", device="screen-1")
        assert (await watcher.next("user:online", where=about("alice")))["status"] == "online"
        assert (await watcher.next("device_status", where=lambda d: d["deviceId"] == "screen-1"))["status"] == "online"
        assert await presence_of(a.port, "alice") == "online"

        process.send_signal(signal.SIGKILL)
        await process.wait()
        killed = trio.current_time()
        offline = await watcher.next("user:offline", where=about("alice"), timeout=10)
        assert offline["status"] == "offline"
        device = await watcher.next("device_status", where=lambda d: d["deviceId"] == "screen-1", timeout=10)
        assert device["status"] == "offline"
        # Within the heartbeat's bound (timeout + a third of it), plus the grace-free reap and delivery.
        assert trio.current_time() - killed < timeout * 4 / 3 + 2.0
        assert await presence_of(a.port, "alice") == "offline"
        assert await events_about(watcher, "user:offline", "alice", 0.5) == []
        # Written to the shared device table by the node that announced it
        # (its owner read from the store: this node never saw the device's socket).
        with trio.fail_after(10):
            while [row[3] for row in await a.sio.guard.store.devices("acme") if row[0] == "screen-1"] != ["offline"]:
                await trio.sleep(0.05)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    await watcher.disconnect()


async def test_redis_lost_sockets_stay_and_presence_converges_when_back(start_server, redis, tmp_path):
    a = await start_node(start_server, redis, tmp_path, "a")
    b = await start_node(start_server, redis, tmp_path, "b")
    watch_a = await connected(a.port, "bob")
    alice = await connected(b.port, "alice")
    await wait_until(lambda: ("acme", "alice") in _known(a, "users"))

    await redis.stop()
    await wait_until(lambda: not a.sio.bus.link.up and not b.sio.bus.link.up)
    status, health = await http(a.port, "GET", "/healthz", key=None)
    assert status == 200 and health["status"] == "degraded" and health["cluster"]["redis"] == "down"
    # The sockets stay; presence answers from what each node knows.
    assert alice.sio.connected and watch_a.sio.connected
    assert await presence_of(a.port, "alice") == "online"
    assert await presence_of(b.port, "alice") == "online"
    # Meanwhile a user arrives on b, and alice leaves.
    erin = await connected(b.port, "erin")
    await alice.disconnect()

    await redis.start()  # empty: every node tells it again what it holds
    await wait_until(lambda: a.sio.bus.link.up and b.sio.bus.link.up, timeout=15)
    await wait_until(lambda: ("acme", "erin") in _known(a, "users"), timeout=10)
    await wait_until(lambda: ("acme", "alice") not in _known(a, "users"), timeout=10)
    assert await presence_of(a.port, "erin") == "online"
    assert await presence_of(a.port, "alice") == "offline"
    assert await presence_of(b.port, "bob") == "online"
    users = (await http(a.port, "GET", "/api/v1/presence?tenant=acme"))[1]["users"]
    assert [u["userId"] for u in users] == ["bob", "erin"]
    # erin's arrival is announced once to a's sockets after the outage.
    assert (await watch_a.next("user:online", where=about("erin")))["status"] == "online"
    assert await events_about(watch_a, "user:online", "erin", 0.5) == []
    await erin.disconnect()
    await watch_a.disconnect()


async def test_node_cut_off_redis_is_declared_offline_then_converges(start_server, redis, tmp_path, nursery):
    """Node b alone loses Redis (a TCP proxy in front of Redis cuts it): a
    declares b's users offline after node_timeout; b's sockets stay, and when
    b is back it re-announces them."""
    timeout = 1.0
    cable = Proxy(redis.port)
    await nursery.start(cable.serve)
    a = await start_node(start_server, redis, tmp_path, "a", node_timeout=timeout)
    b = await start_server(
        cluster={"redis_url": f"redis://127.0.0.1:{cable.port}/0", "node_id": "b", "node_timeout": timeout},
        server={"data_dir": str(tmp_path / "b")}, **SECTIONS,
    )
    watcher = await connected(a.port, "bob")
    alice = await connected(b.port, "alice")
    assert (await watcher.next("user:online", where=about("alice")))["status"] == "online"

    cable.upstream_port = free_port()  # nothing listens there: b cannot reconnect
    await cable.cut()
    assert (await watcher.next("user:offline", where=about("alice"), timeout=10))["status"] == "offline"
    assert await presence_of(a.port, "alice") == "offline"
    # b still serves alice and answers from what it knows.
    assert alice.sio.connected
    assert (await http(b.port, "GET", "/healthz", key=None))[1]["status"] == "degraded"
    assert await presence_of(b.port, "alice") == "online"

    cable.upstream_port = redis.port
    assert (await watcher.next("user:online", where=about("alice"), timeout=15))["status"] == "online"
    assert await presence_of(a.port, "alice") == "online"
    assert await events_about(watcher, "user:online", "alice", 0.5) == []
    await alice.disconnect()
    await watcher.disconnect()
    cable.close()
