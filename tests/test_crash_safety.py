"""Crash safety under load: what the HTTP API acknowledged survives ``kill -9``.

Stock socket.io-clients (tests/clients/receivers.js; a quarter start on
long-polling and upgrade, the rest use WebSocket), one per user, are
subscribed to a feed whose ``tick`` is retained (``retention.latest``) and
receive ``note``s sent to their user (``retention.inbox``), published over
HTTP by four publishers as fast as the server answers.  Meanwhile the server
is killed with SIGKILL at random moments, 20 times, and restarted at once on
the same port and data directory; the clients reconnect by themselves.

Bounded for CI (about 90 s on two cores): 1,000 clients take part in the
first 6 kills; then 800 of them leave and 200 stay for the other 14, while
notes keep going to all 1,000 users and to 20 who never connected.  Checked:

- after every restart, a new client joining the feed first gets a tick at
  least as new as the last one acknowledged before the kill (still retained);
- every note the API acknowledged reached its user: live, from the inbox when
  they came back after a restart, or, for those who left or never connected,
  from the inbox when they connect at the end (still queued after the kills).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import h11
import jwt
import orjson
import pytest
import trio
from support.clients import LiveClient
from support.interactive import NodeClient, spawn
from support.process import ServerProcess, write_config
from support.wire import request

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("spawned")]

SECRET = "crash-secret-0123456789-abcdefghijklmnop"
API_KEY = "crash-api-key"
CLIENTS = 1000
#: Clients that stay for the kills after the first FULL_KILLS.
STAYING = 200
FULL_KILLS = 6
AWAY = 20
KILLS = 20
#: Publishers at once (each waits for its answer before the next publish).
PUBLISHERS = 4
TENANT = "acme"


def token(user: str) -> str:
    return jwt.encode({"sub": user, "tenantId": TENANT, "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")


def tables(data_dir: Path) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": 0, "data_dir": str(data_dir), "log_format": "json"},
        "auth": {"secret": SECRET, "api_keys": [API_KEY]},
        "limits": {"handshakes_per_second": 10000.0, "handshake_burst": 10000, "max_connections_per_address": 10000},
        "retention": {"latest": ["tick"], "inbox": ["note"], "inbox_size": 10000},
        # 1,000 users of one tenant coming and going would be a million presence events.
        "presence": {"enabled": False},
    }


class Publisher:
    """Publishes ticks and notes; remembers what the API acknowledged."""

    def __init__(self, port: int, rng: random.Random) -> None:
        self.port = port
        self.rng = rng
        self.seq = 0
        self.last_tick = 0
        #: user -> seqs of the notes acknowledged for them.
        self.notes: dict[str, list[int]] = {}
        #: seq -> how many sockets the API said took it (0: it went to the inbox).
        self.delivered: dict[int, int] = {}
        self.attempts = 0
        self.ticks = 0
        self.ticking = trio.Lock()

    async def publish_one(self) -> bool:
        """One publish; whether the API acknowledged it."""
        if self.rng.random() < 0.4:
            # One tick at a time: of two ticks in flight together the server
            # may take the newer first, and the older is then rightly latest.
            async with self.ticking:
                return await self._send(None)
        return await self._send(f"away{self.rng.randrange(AWAY)}" if self.rng.random() < 0.3 else f"u{self.rng.randrange(CLIENTS)}")

    async def _send(self, user: str | None) -> bool:
        self.seq += 1
        seq = self.seq
        if user is None:
            body = {"room": f"tenant:{TENANT}:feed", "event": "tick", "data": {"seq": seq}}
        else:
            body = {"user": user, "event": "note", "data": {"seq": seq}}
        self.attempts += 1
        try:
            status, _, answer = await request(
                self.port, "POST", "/api/v1/emit", orjson.dumps(body), [("X-API-Key", API_KEY)], timeout=3
            )
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, h11.ProtocolError, AssertionError):
            return False  # not acknowledged (the server died, or was down)
        if status != 200:
            raise AssertionError(f"publish answered {status} {answer!r}")
        if user is None:
            self.ticks += 1
            self.last_tick = max(self.last_tick, seq)
        else:
            self.notes.setdefault(user, []).append(seq)
            self.delivered[seq] = orjson.loads(answer)["delivered"]
        return True

    async def run(self) -> None:
        while True:
            if not await self.publish_one():
                await trio.sleep(0.02)  # down: try again soon


async def wait_connected(receivers: NodeClient, count: int, timeout: float) -> None:
    def statuses() -> list[dict[str, Any]]:
        return [e for e in receivers.lines if e["type"] == "status"]

    with trio.fail_after(timeout):
        while True:
            asked = len(statuses())
            await receivers.send("status")
            await receivers.expect(lambda _: len(statuses()) > asked)  # noqa: B023 (awaited at once)
            if statuses()[-1]["connected"] == count:
                return
            await trio.sleep(0.2)


async def report(receivers: NodeClient) -> list[dict[str, Any]]:
    await receivers.send("report")
    return (await receivers.expect(lambda e: e["type"] == "report", timeout=30))["sockets"]


async def receiving(nursery: trio.Nursery, tmp_path: Path, port: int, users: list[str], name: str) -> NodeClient:
    """receivers.js with one socket per user, once all are connected."""
    tokens_file = tmp_path / f"{name}.json"
    tokens_file.write_text(json.dumps([token(user) for user in users]))
    client = await spawn(nursery, "receivers.js", json.dumps({
        "url": f"http://127.0.0.1:{port}", "tokensFile": str(tokens_file), "channels": ["feed"],
        "websocketShare": 0.75, "events": ["tick", "note"],
    }), name=name)
    await wait_connected(client, len(users), timeout=30)
    return client


async def test_kill_minus_nine_under_load_loses_no_acknowledged_publish(tmp_path: Path, nursery: trio.Nursery) -> None:
    rng = random.Random()
    config = write_config(tmp_path / "crash.toml", tables(tmp_path / "data"))
    server = await ServerProcess.start(config)
    port = await server.listening()
    users = [f"u{i}" for i in range(CLIENTS)]
    started = time.monotonic()
    receivers = await receiving(nursery, tmp_path, port, users, "receivers")
    publisher = Publisher(port, rng)
    stale: list[str] = []
    problems: list[str] = []
    restarts: list[float] = []
    probed = 0
    acknowledged = 0
    async with trio.open_nursery() as publishing:
        for _ in range(PUBLISHERS):
            publishing.start_soon(publisher.run)
        for kill in range(KILLS):
            if kill == FULL_KILLS:
                await receivers.send(f"close {STAYING}")
            # Killed at a random moment (often while clients still reconnect),
            # but only once a new client has seen what was retained.
            up_at = trio.current_time()
            if publisher.last_tick:
                probe = await LiveClient(port).connect({"token": token("probe"), "channels": ["feed"]})
                first = await probe.next("tick")
                await probe.disconnect()
                probed += 1
                if first["seq"] < acknowledged:
                    stale.append(f"restart {kill}: the feed's tick was {first['seq']}, {acknowledged} was acknowledged")
            await trio.sleep_until(up_at + rng.uniform(0.2, 1.2))
            problems += server.problems()
            await server.kill()
            # Every publish answered so far was answered before the kill.
            acknowledged = publisher.last_tick
            restarting = time.monotonic()
            server = await ServerProcess.start(config, args=("--port", str(port)))
            assert await server.listening() == port
            restarts.append(time.monotonic() - restarting)
        publishing.cancel_scope.cancel()
    # Those who stayed come back; those who left, and those never seen, connect now.
    await wait_connected(receivers, STAYING, timeout=30)
    late = await receiving(nursery, tmp_path, port, users[STAYING:] + [f"away{k}" for k in range(AWAY)], "late")
    await trio.sleep(1)  # the inboxes and the last notes in flight
    reports = [(users, await report(receivers)), (users[STAYING:] + [f"away{k}" for k in range(AWAY)], await report(late))]
    await receivers.close()
    await late.close()
    elapsed = time.monotonic() - started

    seen: dict[str, set[int]] = {}
    connects = 0
    for names, sockets in reports:
        for user, entry in zip(names, sockets, strict=True):
            seen.setdefault(user, set()).update(entry["seen"]["note"])
            connects += entry["connects"]
    lost = [
        f"{user} never got notes {sorted(set(notes) - seen.get(user, set()))} "
        f"(the API said delivered to {[publisher.delivered[n] for n in sorted(set(notes) - seen.get(user, set()))]} sockets)"
        for user, notes in sorted(publisher.notes.items())
        if set(notes) - seen.get(user, set())
    ]
    too_old = [e["index"] for e in reports[0][1][:STAYING] if max(e["seen"]["tick"], default=0) < publisher.last_tick]
    acknowledged_notes = sum(len(v) for v in publisher.notes.values())
    summary = (
        f"{KILLS} kills in {elapsed:.0f} s; {publisher.attempts} publishes tried, {acknowledged_notes} notes to "
        f"{len(publisher.notes)} users and {publisher.ticks} ticks (the last {publisher.last_tick}) acknowledged; {probed} restarts probed; "
        f"{connects} client connects; a restart took {min(restarts):.1f}-{max(restarts):.1f} s"
    )
    print(summary)
    problems += server.problems()
    if too_old:
        stale.append(f"sockets whose last tick is older than the last acknowledged {publisher.last_tick}: {too_old[:20]}")
    assert not (problems or stale or lost), "\n".join([summary, *problems, *stale, *lost[:50]])
    assert acknowledged_notes >= 50 and publisher.ticks >= 50 and probed >= KILLS // 2, summary
    await server.kill()
