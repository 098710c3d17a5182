"""``rtserver serve --workers N``: the supervisor, its workers on one port,
and the hand-off of a request to the worker that owns its session."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio_websocket
from conftest import make_config
from support.clients import API_KEY, http
from support.crowd import Crowd
from support.process import ServerProcess, children
from support.redis import free_port, needs_redis
from test_service import free_listener, write_config

from rtserver import App, serve
from rtserver import config as config_mod
from rtserver.config import ConfigError
from rtserver.engineio.server import sid_worker
from rtserver.supervisor import WorkerSpec

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
EIO = "/socket.io/?EIO=4&transport="


def test_a_session_id_names_its_worker():
    assert sid_worker("w3.AbC-dEf_0123456789xy") == 3
    assert sid_worker("w12.x") == 12
    # A single process's ids (token_urlsafe: no '.') and garbage name none.
    for sid in ("wAbCdEf0123456789xyz", "w3AbC", "x3.abc", "w.abc", "w-1.abc", "", "."):
        assert sid_worker(sid) is None


def _rtserver(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rtserver", *args], capture_output=True, text=True, timeout=30, check=False)


def test_more_than_one_worker_needs_the_cluster_and_no_in_process_tls(tmp_path):
    alone = write_config(tmp_path)
    refused = "config error: server.workers: 2 workers need [cluster] redis_url (each worker is a node of the cluster)"
    done = _rtserver("serve", "--config", str(alone), "--workers", "2")
    assert (done.returncode, done.stderr.splitlines()) == (2, [refused])
    alone.write_text(alone.read_text() + "workers = 2\n")  # the last table is [server]
    done = _rtserver("check-config", str(alone))
    assert (done.returncode, done.stderr.splitlines()) == (2, [refused])
    tls = write_config(
        tmp_path, tls={"cert_file": "cert.pem", "key_file": "key.pem"}, cluster={"redis_url": "redis://127.0.0.1:1/0"}
    )
    done = _rtserver("serve", "--config", str(tls), "--workers", "3")
    assert (done.returncode, done.stderr.splitlines()) == (
        2, ["config error: server.workers: 3 workers cannot share in-process TLS connections; terminate TLS in a proxy in front"]
    )
    done = _rtserver("serve", "--config", str(tls), "--workers", "0")
    assert done.returncode == 2 and "'0' is not a number of workers from 1 to 64" in done.stderr
    # A request head must fit one hand-off between workers.
    cluster = {"redis_url": "redis://127.0.0.1:1/0"}
    with pytest.raises(ConfigError) as refused:
        config_mod.structure({"server": {"workers": 2}, "cluster": cluster, "http": {"max_header_bytes": 131073}})
    assert refused.value.problems == ["http.max_header_bytes: at most 131072 with several workers"]
    config_mod.structure({"server": {"workers": 2}, "cluster": cluster, "http": {"max_header_bytes": 131072}})
    config_mod.structure({"http": {"max_header_bytes": 131073}})  # one process: no hand-off


# ---------------------------------------------------------------- hand-off


async def _request(port: int, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 request on a connection of its own; (status, body)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(head.encode() + f"Host: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        data = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head_bytes, _, content = data.partition(b"\r\n\r\n")
    return int(head_bytes.split()[1]), content


@pytest.fixture
async def two_workers(nursery, tmp_path):
    """Two workers of one server in this process, each on a listening socket
    of its own, so a test chooses which one a request reaches."""
    directory = tmp_path / "workers"
    directory.mkdir()
    servers = []
    for index in range(2):
        sock = socket.create_server(("127.0.0.1", 0))
        app = App()
        spec = WorkerSpec(index, 2, str(directory), (sock.detach(),))
        config = make_config(tmp_path / f"data{index}", http={"max_header_bytes": 131072})
        servers.append((await nursery.start(functools.partial(serve, config, app, worker=spec)), app))
    return servers


async def test_polling_requests_and_the_upgrade_reach_the_worker_owning_the_session(two_workers):
    (zero, zero_app), (one, _) = two_workers
    status, body = await _request(zero.port, f"GET {EIO}polling HTTP/1.1\r\n")
    assert status == 200
    sid = json.loads(body[1:])["sid"]
    assert sid.startswith("w0.")
    # Through worker 1's socket: each request is answered by worker 0.
    status, body = await _request(one.port, f"POST {EIO}polling&sid={sid} HTTP/1.1\r\n", b"40")
    assert (status, body) == (200, b"ok")
    status, body = await _request(one.port, f"GET {EIO}polling&sid={sid} HTTP/1.1\r\n")
    assert status == 200 and body.startswith(b"40{")
    assert len(zero_app.sockets()) == 1
    assert one.http.handoff.passed == 2 and zero.http.handoff.received == 2
    # A body larger than one read (the hand-off carries what was read of it).
    big = b"42" + json.dumps(["big", "x" * 200_000]).encode()
    status, body = await _request(one.port, f"POST {EIO}polling&sid={sid} HTTP/1.1\r\n", big)
    assert (status, body) == (200, b"ok")
    # The largest head allowed with several workers, and a body after it.
    padded = f"POST {EIO}polling&sid={sid} HTTP/1.1\r\nX-Pad: {'p' * 130_000}\r\n"
    assert await _request(one.port, padded, b"42" + json.dumps(["pad", "y" * 60_000]).encode()) == (200, b"ok")
    # The upgrade too: worker 0 then writes to the WebSocket that reached worker 1.
    async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{one.port}{EIO}websocket&sid={sid}") as ws:
        await ws.send_message("2probe")
        assert await ws.get_message() == "3probe"
        await ws.send_message("5")
        with trio.fail_after(10):
            while zero.engine.sessions[sid].transport != "websocket":
                await trio.sleep(0.01)
        assert zero_app.emit("hello", {"from": "worker 0"}) == 1
        with trio.fail_after(10):
            while not (message := await ws.get_message()).startswith("42"):
                assert message in ("6", "2"), message  # noop, ping
        assert json.loads(message[2:]) == ["hello", {"from": "worker 0"}]
    assert one.http.handoff.passed == 5


async def test_a_session_of_a_worker_that_is_not_there_is_unknown(two_workers):
    (zero, _), _ = two_workers
    status, body = await _request(zero.port, f"GET {EIO}polling&sid=w5.AAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\n")
    assert (status, json.loads(body)) == (400, {"code": 1, "message": "Session ID unknown"})
    assert zero.http.handoff.passed == 0


# ------------------------------------------------------------- supervisor


def _children(pid: int) -> dict[int, int]:
    """The supervisor's workers: pid -> index (from each one's RTSERVER_WORKER)."""
    found = {}
    for child in children(pid):
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        for entry in environ:
            if entry.startswith(b"RTSERVER_WORKER="):
                found[int(child)] = json.loads(entry.split(b"=", 1)[1])["index"]
    return found


@needs_redis
@pytest.mark.usefixtures("spawned")
async def test_200_stock_clients_on_4_workers_survive_a_killed_worker(tmp_path, nursery, redis):
    port = free_port()
    notify_path = str(tmp_path / "notify.sock")
    notify = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await notify.bind(notify_path)
    messages: list[str] = []
    hearing = trio.CancelScope()

    async def hear() -> None:
        with hearing:
            while True:
                messages.append((await notify.recv(4096)).decode())

    nursery.start_soon(hear)
    config = write_config(
        tmp_path, port, auth={"enabled": False, "api_keys": [API_KEY]}, cluster={"redis_url": redis.url, "node_id": "box"}
    )
    supervisor = await ServerProcess.start(
        config, env={"NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "2000000"}, args=("--workers", "4")
    )
    with trio.fail_after(60):
        while not any("READY=1" in m for m in messages):
            await trio.sleep(0.05)
    # READY once all four are up, and the supervisor alone speaks to systemd.
    assert sorted(_children(supervisor.pid).values()) == [0, 1, 2, 3]
    assert "STATUS=4/4 workers, 0 connections" in next(m for m in messages if "READY=1" in m)
    await _wait_messages(messages, lambda m: m.startswith("WATCHDOG=1\nSTATUS=4/4 workers"))

    clients = await Crowd.start(nursery, f"http://127.0.0.1:{port}", 200)
    ServerProcess.started.append(clients.process)
    state = await clients.until(lambda s: s["connected"] == 200 and s["upgraded"] == 200)
    # Polling first, the kernel spreading each client's requests over the
    # workers: not one request was refused or dropped.
    assert (state["errors"], state["disconnects"], state["connects"]) == ({}, 0, 200), state
    assert sorted(state["byWorker"]) == ["0", "1", "2", "3"], state
    status, _ = await http(port, "POST", "/api/v1/emit", {"event": "news", "data": {"round": 1}, "broadcast": True})
    assert status == 200
    await clients.until(lambda s: s["received"].get("1") == 200)
    await _wait_messages(messages, lambda m: "STATUS=4/4 workers, 200 connections" in m)
    handed = await _handoffs(port)
    assert handed["passed"] == handed["received"] > 0, handed

    workers = _children(supervisor.pid)
    victim = next(pid for pid, index in workers.items() if index == 1)
    on_victim = state["byWorker"]["1"]
    os.kill(victim, signal.SIGKILL)
    # Its clients come back (on any worker), the others never noticed; the
    # supervisor started worker 1 again.
    state = await clients.until(lambda s: s["disconnects"] >= on_victim and s["connected"] == 200 and s["upgraded"] == 200)
    assert state["disconnects"] == on_victim and state["reasons"] == {"transport close": on_victim}, state
    assert state["connects"] == 200 + on_victim
    with trio.fail_after(30):
        while sorted(_children(supervisor.pid).values()) != [0, 1, 2, 3]:
            await trio.sleep(0.1)
    assert victim not in _children(supervisor.pid)
    seen = len(messages)  # from here on, 4/4 means the new worker 1 is ready
    await _wait_messages(messages, lambda m: "STATUS=4/4 workers" in m, seen)
    status, _ = await http(port, "POST", "/api/v1/emit", {"event": "news", "data": {"round": 2}, "broadcast": True})
    assert status == 200
    await clients.until(lambda s: s["received"].get("2") == 200)

    # SIGTERM: every worker drains, the supervisor exits 0 and says STOPPING.
    await clients.process.stdin.aclose()
    supervisor.signal(signal.SIGTERM)
    assert await supervisor.exited(30) == 0
    assert any("STOPPING=1" in m for m in messages)
    assert _all_gone(workers)
    hearing.cancel()
    notify.close()


async def _handoffs(port: int, workers: int = 4) -> dict[str, int]:
    """Connections the workers handed to one another, summed over all of
    them (each scrape of /metrics reaches whichever worker accepts it)."""
    seen: dict[str, dict[str, int]] = {}
    with trio.fail_after(30):
        while len(seen) < workers:
            status, text = await http(port, "GET", "/metrics")
            assert status == 200
            worker = re.search(r"^rtserver_worker ([0-9.]+)$", text, re.MULTILINE).group(1)
            seen[worker] = {
                direction: int(float(count))
                for direction, count in re.findall(r'^rtserver_worker_handoffs_total\{direction="(\w+)"\} ([0-9.]+)$', text, re.MULTILINE)
            }
    return {direction: sum(counts[direction] for counts in seen.values()) for direction in ("passed", "received")}


async def _wait_messages(messages: list[str], predicate, start: int = 0, timeout: float = 15) -> None:
    """Until one of ``messages`` from ``start`` on (more keep coming) matches."""
    with trio.fail_after(timeout):
        while not any(predicate(m) for m in messages[start:]):
            await trio.sleep(0.05)


def _all_gone(pids) -> bool:
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        return False
    return True


@needs_redis
async def test_a_worker_that_cannot_start_stops_the_supervisor_with_its_one_error(tmp_path, redis):
    await redis.command("CONFIG", "SET", "requirepass", "right")
    config = write_config(
        tmp_path, auth={"enabled": False}, cluster={"redis_url": f"redis://:wrong@127.0.0.1:{redis.port}/0"}
    )
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-m", "rtserver", "serve", "--config", str(config), "--workers", "3"],
            capture_stdout=True, capture_stderr=True, check=False,
        )
    # The first worker alone met the problem; the others were never started.
    assert done.returncode == 2
    [line] = done.stderr.decode().strip().splitlines()
    assert line.startswith(f"start-up error: Redis at redis://***@127.0.0.1:{redis.port}/0 refused this node"), line
    assert done.stdout.decode().count("worker started") == 1


@needs_redis
@pytest.mark.usefixtures("spawned")
async def test_reload_a_hung_worker_and_a_killed_supervisor(tmp_path, redis):
    """SIGHUP reaches every worker; a worker that stops answering its
    watchdog is killed and started again; workers leave with their supervisor."""
    port = free_port()
    config = write_config(tmp_path, port, auth={"enabled": False}, cluster={"redis_url": redis.url})
    supervisor = await ServerProcess.start(config, env={"WATCHDOG_USEC": "1500000"}, args=("--workers", "2"))

    def count(text: str) -> int:
        return sum(text.encode() in line for line in supervisor.lines())

    async def logged(text: str, times: int = 1) -> None:
        with trio.fail_after(30):
            while count(text) < times:
                await trio.sleep(0.05)

    await logged("all workers ready")
    supervisor.signal(signal.SIGHUP)
    await logged("configuration reloaded", 2)
    workers = _children(supervisor.pid)
    hung = next(pid for pid, index in workers.items() if index == 0)
    os.kill(hung, signal.SIGSTOP)
    await logged("worker stopped answering its watchdog, killing it")
    await logged("worker ready again")
    now = _children(supervisor.pid)
    assert sorted(now.values()) == [0, 1] and hung not in now
    os.kill(supervisor.pid, signal.SIGKILL)
    with trio.fail_after(20):
        while not _all_gone(now):
            await trio.sleep(0.1)
    assert count("the supervisor is gone, shutting down") == 2


@needs_redis
@pytest.mark.usefixtures("spawned")
async def test_workers_under_socket_activation(tmp_path, redis):
    """systemd's socket unit: the supervisor takes the inherited socket and
    its workers serve on it."""
    listener = free_listener()
    port = listener.getsockname()[1]
    config = write_config(tmp_path, auth={"enabled": False}, cluster={"redis_url": redis.url})
    supervisor = await ServerProcess.start(config, fd=listener.fileno(), args=("--workers", "2"))
    with trio.fail_after(30):
        while not any(b"all workers ready" in line for line in supervisor.lines()):
            await trio.sleep(0.05)
    status, body = await _request(port, f"GET {EIO}polling HTTP/1.1\r\n")
    assert status == 200
    sid = json.loads(body[1:])["sid"]
    for packet in (b"40", *[b'42["hello"]'] * 5):  # each on a connection of its own, accepted by either worker
        assert await _request(port, f"POST {EIO}polling&sid={sid} HTTP/1.1\r\n", packet) == (200, b"ok")
    status, body = await _request(port, f"GET {EIO}polling&sid={sid} HTTP/1.1\r\n")
    assert status == 200 and body.startswith(b"40{")
    await _handoffs(port, workers=2)  # both workers answer on the inherited socket
    supervisor.signal(signal.SIGTERM)
    assert await supervisor.exited() == 0
    listener.close()
