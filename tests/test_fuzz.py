"""Fuzzing the real server: nothing a client sends may stop it or reach another client.

``rtserver serve`` runs as a child process with the shipped config.toml
(every seed feature on; auth on with a test secret; short timeouts so that
abandoned connections end within seconds).  Several fuzz tasks, each from its
own loopback address, throw random and mutated input at every layer (see
support/fuzz.py): raw TCP, HTTP heads and bodies with every method and
framing, slowloris, long-polling handshakes and bodies, WebSocket upgrades
and frames, Engine.IO and Socket.IO packets over authenticated sockets (the
built-in and feature event names, ack ids, attachments, nesting, namespaces,
``__proto__``), and the HTTP API's bodies.  Meanwhile two stock
socket.io-clients (tests/clients/canary.js, one upgraded to WebSocket, one on
long-polling) stay connected and ask for acks, and /healthz is asked every
0.5 s from outside this process.

The test fails on: the process ending; /healthz not answering within 1 s; a
canary disconnected or an ack late; an ERROR line or a traceback in the
server's log; a 5xx answer or a 1011 close; connections or what the caps count
(/api/v1/status, /metrics) or file descriptors (/proc/PID/fd) not back
to where they were once every fuzz client is gone; a fuzz address locked out.

Environment:
  RTSERVER_FUZZ_SECONDS   fuzzing time (default 50; the test takes ~15 s more)
  RTSERVER_FUZZ_SEED      the run's seed (default: random; always printed)
  RTSERVER_FUZZ_TASKS     concurrent fuzz tasks (default 6)
  RTSERVER_FUZZ_REPLAY    case ids ``task/n,...`` to run alone, with the same seed
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from support.fuzz import Case, Env, Findings, run_case
from support.fuzz_inputs import vocabulary
from support.interactive import NodeClient, spawn
from support.process import ServerProcess, shipped_tables, write_config
from support.wire import request

pytestmark = pytest.mark.usefixtures("spawned")

SECRET = "fuzz-secret-0123456789-abcdefghijklmnop"
API_KEY = "fuzz-api-key"
SECONDS = float(os.environ.get("RTSERVER_FUZZ_SECONDS", "50"))
TASKS = int(os.environ.get("RTSERVER_FUZZ_TASKS", "6"))
READ_TIMEOUT = 2.0
#: How long abandoned connections may take to end: a poll or a socket left
#: open (ping interval + timeout), a CONNECT never sent, a slow request.
SETTLE = 20.0


def fuzz_tables(data_dir: Path) -> dict[str, Any]:
    return shipped_tables(
        server={"port": 0, "data_dir": str(data_dir), "log_format": "json", "log_level": "info", "shutdown_grace": 1.0},
        http={"read_timeout": READ_TIMEOUT, "keepalive_timeout": 2.0},
        engineio={"ping_interval": 2.0, "ping_timeout": 3.0},
        socketio={"connect_timeout": 2.0, "ack_timeout": 2.0},
        auth={"secret": SECRET, "api_keys": [API_KEY]},
        # Limits high enough that most fuzz input reaches the handlers.
        limits={"handshakes_per_second": 200.0, "handshake_burst": 200, "events_per_second": 500.0,
                "event_burst": 500, "max_connections_per_address": 300},
        presence={"grace": 0.5},
        recovery={"max_disconnection": 5.0},
    )


def say(request: pytest.FixtureRequest, text: str) -> None:
    """A line on the terminal whatever the capture mode (the seed must always be seen)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(text)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(text)


async def api(port: int, method: str, target: str) -> tuple[int, bytes]:
    status, _, body = await request(port, method, target, headers=[("X-API-Key", API_KEY)], timeout=5)
    return status, body


async def gauges(port: int) -> dict[str, Any]:
    """What the server says is still connected."""
    _, body = await api(port, "GET", "/api/v1/status")
    status = orjson.loads(body)
    _, text = await api(port, "GET", "/metrics")
    connections = 0.0
    for family in text_string_to_metric_families(text.decode()):
        if family.name == "rtserver_connections":
            connections = sum(sample.value for sample in family.samples)
    return {"connections": status["connections"]["total"], "metrics": connections, "counted": status["counted"]}


class Watch:
    """The monitor: the process, its log, the canaries."""

    def __init__(self, server: ServerProcess, canary: NodeClient, findings: Findings) -> None:
        self.server = server
        self.canary = canary
        self.findings = findings
        self._seen = 0

    def check(self) -> bool:
        """Record what went wrong since the last look; False once the server is gone."""
        for line in self.server.problems():
            self.findings.add(f"server log: {line[:3000]}{self._attribution(line)}")
        for entry in self.canary.lines[self._seen :]:
            if entry.get("type") == "problem":
                self.findings.add(f"canary: {entry['what']}: {entry['detail']}{self._near(entry['at'], None)}")
        self._seen = len(self.canary.lines)
        if not self.server.running():
            self.findings.add(f"the server process ended (status {self.server.process.returncode})")
            return False
        return True

    def _attribution(self, line: str) -> str:
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            return self._near(time.time(), None)
        return self._near(entry.get("ts", time.time()), entry.get("remote"))

    def _near(self, when: float, remote: str | None) -> str:
        cases = self.findings.cases_near(when, remote)[-12:]
        return f" [cases: {', '.join(str(c) for c in cases)}]" if cases else ""


async def fuzz_task(index: int, seed: int, env: Env, counts: Counter[str], only: list[str] | None) -> None:
    ids = only if only is not None else (f"{index}/{n}" for n in range(10**9))
    for case_id in ids:
        case = Case(case_id)
        await run_case(seed, case, env)
        counts[case.scenario] += 1


async def test_fuzz(tmp_path: Path, nursery: trio.Nursery, request: pytest.FixtureRequest) -> None:
    seed = int(os.environ.get("RTSERVER_FUZZ_SEED") or random.randrange(2**32))
    replay = [c for c in os.environ.get("RTSERVER_FUZZ_REPLAY", "").split(",") if c]
    say(request, f"fuzz: RTSERVER_FUZZ_SEED={seed}, {SECONDS:g} s, {TASKS} tasks" + (f", replaying {replay}" if replay else ""))
    tables = fuzz_tables(tmp_path / "data")
    server = await ServerProcess.start(write_config(tmp_path / "fuzz.toml", tables))
    port = await server.listening()
    assert (await api(port, "GET", "/healthz"))[0] == 200
    fds_before = server.fds()  # what the server holds with no client at all
    canary = await spawn(nursery, "canary.js", json.dumps({
        "url": f"http://127.0.0.1:{port}", "auth": {"token": canary_jwt()}, "intervalMs": 500,
    }), name="canary")
    await canary.expect(lambda e: e["type"] in ("ready", "problem"))
    assert canary.lines[-1]["type"] == "ready", canary.lines
    # The two canaries' connections (one address, one user).
    baseline = {"connections": 2, "metrics": 2.0, "counted": {"sessionsByAddress": 2, "socketsByUser": 2}}
    assert await settled(port, baseline, deadline=5) == baseline

    findings = Findings()
    watch = Watch(server, canary, findings)
    counts: Counter[str] = Counter()
    vocab = vocabulary(tables)
    addresses = [f"127.0.0.{10 + index}" for index in range(TASKS)]
    started = time.monotonic()
    async with trio.open_nursery() as fuzzing:
        for index, address in enumerate(addresses):
            env = Env(port, vocab, address, SECRET, API_KEY, findings, READ_TIMEOUT)
            only = [c for c in replay if c.split("/")[0] == str(index)] if replay else None
            fuzzing.start_soon(fuzz_task, index, seed, env, counts, only)
        with trio.move_on_after(SECONDS if not replay else 60):
            while watch.check():
                await trio.sleep(0.5)
                if replay and sum(counts.values()) == len(replay):
                    break
        fuzzing.cancel_scope.cancel()
    elapsed = time.monotonic() - started
    say(request, f"fuzz: {sum(counts.values())} cases in {elapsed:.0f} s: {dict(sorted(counts.items()))}")

    if server.running():
        after = await settled(port, baseline, deadline=SETTLE)
        if after != baseline:
            findings.add(f"not back to the baseline once every fuzz client left: {after} (before: {baseline})")
        for address in addresses:
            status, body = await first_handshake(port, address)
            if status != 200:
                findings.add(f"{address} locked out after the run: {status} {body[:200]!r}")
    watch.check()
    await canary.close()
    stats = [e for e in canary.lines if e["type"] == "stats"][-1]
    if server.running():
        # With every client gone, the server holds what it held before the first.
        empty = {"connections": 0, "metrics": 0.0, "counted": {"sessionsByAddress": 0, "socketsByUser": 0}}
        after = await settled(port, empty, deadline=SETTLE)
        if after != empty:
            findings.add(f"not back to zero once every client left: {after}")
        # (A descriptor open before and closed since is no leak: the first request's socket.)
        leaked = {}
        with trio.move_on_after(5):
            while leaked := {fd: what for fd, what in server.fds().items() if fds_before.get(fd) != what}:
                await trio.sleep(0.2)
        if leaked:
            findings.add(f"file descriptors left open: {leaked}")
    say(request, f"fuzz: canary {stats}")
    assert not findings.items, (
        f"fuzz seed {seed} found {len(findings.items)} problem(s) (replay: RTSERVER_FUZZ_SEED={seed} "
        "RTSERVER_FUZZ_REPLAY=<case ids> pytest tests/test_fuzz.py):\n" + "\n".join(findings.items)
    )
    if not replay:
        # The run did what it says (a loaded CI machine runs some 10-20 cases a second).
        assert stats["acks"] >= SECONDS and stats["health"] >= SECONDS, f"the canary hardly ran: {stats}"
        assert sum(counts.values()) >= 3 * SECONDS, f"too few cases ran: {counts}"
        assert len(counts) == 8 or SECONDS < 30, f"a scenario never ran: {counts}"


def canary_jwt() -> str:
    claims = {"sub": "canary", "tenantId": "canary-co", "exp": int(time.time()) + 7200}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def settled(port: int, target: dict[str, Any], deadline: float) -> dict[str, Any]:
    """The gauges once they equal ``target``, else as they are after ``deadline`` s."""
    now: dict[str, Any] = {}
    with trio.move_on_after(deadline):
        while (now := await gauges(port)) != target:
            await trio.sleep(0.5)
    return now


async def first_handshake(port: int, address: str) -> tuple[int, bytes]:
    """A long-polling handshake from ``address``."""
    head = f"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    with trio.fail_after(5):
        async with await trio.open_tcp_stream("127.0.0.1", port, local_address=address) as stream:
            await stream.send_all(head.encode())
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data.partition(b"\r\n\r\n")[2]
