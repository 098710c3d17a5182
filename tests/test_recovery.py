"""Connection state recovery with the stock socket.io-client: nothing lost,
nothing twice, in order; across a restart; without an offset; again and again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import trio
from conftest import CLIENTS, make_config
from support.proxy import Proxy

from rtserver import App, serve

RECOVERY = {"enabled": True, "max_disconnection": 30, "flush_interval": 0.05}


def room_app() -> App:
    app = App()

    @app.on("join")
    def join(socket, room):
        socket.join(room)
        return True

    return app


class NodeClient:
    """A running tests/clients/recovery.js whose JSON lines are read as they come."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._buffer = b""
        self._new = trio.Event()

    async def read(self) -> None:
        assert self.process.stdout is not None
        async for chunk in self.process.stdout:
            self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"{"):
                    self.events.append(json.loads(line))
            self._new.set()
            self._new = trio.Event()

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 15) -> dict[str, Any]:
        with trio.move_on_after(timeout):
            while True:
                found = [e for e in self.events if e["type"] in (kind, "timeout")]
                if len(found) >= count or any(e["type"] == "timeout" for e in found):
                    assert found[-1]["type"] == kind, self.events
                    return found[-1]
                await self._new.wait()
        raise AssertionError(f"no {count} x {kind!r} in time: {self.events}")

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


async def start_client(nursery: trio.Nursery, url: str, expect: int, **extra: Any) -> NodeClient:
    options = {"url": url, "room": "r", "expect": expect, "timeoutMs": 30000, **extra}
    process = await trio.lowlevel.open_process(
        [shutil.which("node"), str(CLIENTS / "recovery.js"), json.dumps(options)],
        stdout=subprocess.PIPE,
        cwd=CLIENTS,
        env=dict(os.environ),
    )
    client = NodeClient(process)
    nursery.start_soon(client.read)
    return client


async def run_server(nursery: trio.Nursery, data_dir, app: App, port: int = 0):
    config = make_config(data_dir, server={"port": port}, recovery=RECOVERY)
    stopped = trio.Event()

    async def run(task_status=trio.TASK_STATUS_IGNORED):
        try:
            await serve(config, app, task_status=task_status)
        finally:
            stopped.set()

    running = await nursery.start(run)
    return running, stopped


def assert_complete(done: dict[str, Any], total: int) -> None:
    received = done["received"]
    assert received == list(range(total)), f"missing or out of order: {len(received)} of {total}"


async def test_network_drop_during_a_burst(tmp_path):
    app = room_app()
    async with trio.open_nursery() as nursery:
        server, _ = await run_server(nursery, tmp_path / "data", app)
        proxy = Proxy(server.port)
        await nursery.start(proxy.serve)
        client = await start_client(nursery, f"http://127.0.0.1:{proxy.port}", expect=1000)
        await client.wait_for("joined")
        for n in range(1000):
            app.emit("msg", n, to="r")
            if n == 300:
                await proxy.cut()
            if n % 50 == 0:
                await trio.sleep(0.01)
        done = await client.wait_for("done", timeout=20)
        assert_complete(done, 1000)
        connects = client.of("connect")
        assert len(connects) >= 2 and all(c["recovered"] for c in connects[1:])
        assert len({c["id"] for c in connects}) == 1, "the socket id is recovered too"
        proxy.close()
        nursery.cancel_scope.cancel()


async def test_recovery_without_any_offset(tmp_path):
    """socket.io issue 5538: no event received before the drop, so no offset."""
    app = room_app()
    async with trio.open_nursery() as nursery:
        server, _ = await run_server(nursery, tmp_path / "data", app)
        proxy = Proxy(server.port)
        await nursery.start(proxy.serve)
        client = await start_client(nursery, f"http://127.0.0.1:{proxy.port}", expect=5)
        await client.wait_for("joined")
        await proxy.cut()
        await client.wait_for("disconnect")
        for n in range(5):
            app.emit("msg", n, to="r")
        done = await client.wait_for("done")
        assert_complete(done, 5)
        assert client.of("connect")[-1]["recovered"] is True
        proxy.close()
        nursery.cancel_scope.cancel()


async def test_recovery_again_and_again_and_over_a_half_dead_transport(tmp_path):
    """socket.io issue 4880: recovery works every time, including when the
    server still holds the old transport when the client comes back."""
    app = room_app()
    async with trio.open_nursery() as nursery:
        server, _ = await run_server(nursery, tmp_path / "data", app)
        proxy = Proxy(server.port)
        await nursery.start(proxy.serve)
        client = await start_client(nursery, f"http://127.0.0.1:{proxy.port}", expect=40)
        await client.wait_for("joined")
        n = 0
        for round_ in range(4):
            for _ in range(5):
                app.emit("msg", n, to="r")
                n += 1
            # Rounds 1 and 3: only the client side drops; the server keeps a silent transport.
            await proxy.cut(server_side=round_ % 2 == 0)
            await client.wait_for("disconnect", count=round_ + 1)
            for _ in range(5):
                app.emit("msg", n, to="r")
                n += 1
            await client.wait_for("connect", count=round_ + 2)
        done = await client.wait_for("done")
        assert_complete(done, 40)
        assert [c["recovered"] for c in client.of("connect")] == [False, True, True, True, True]
        proxy.close()
        nursery.cancel_scope.cancel()


async def test_recovery_across_a_restart(tmp_path):
    """socket.io issue 5413: the reference keeps recovery state in memory only."""
    app = room_app()
    data = tmp_path / "data"
    async with trio.open_nursery() as nursery:
        first, first_stopped = await run_server(nursery, data, app)
        proxy = Proxy(first.port)
        await nursery.start(proxy.serve)
        client = await start_client(nursery, f"http://127.0.0.1:{proxy.port}", expect=20)
        await client.wait_for("joined")
        for n in range(10):
            app.emit("msg", n, to="r")
        await trio.sleep(0.2)
        # The network drops, more happens, then the server restarts.
        proxy.upstream_port = 1  # nothing listens there: reconnects fail for now
        await proxy.cut()
        with trio.fail_after(5):
            while first.sio.hub.members("/", ["r"]):
                await trio.sleep(0.02)
        for n in range(10, 20):
            app.emit("msg", n, to="r")
        await first.drain(1)
        with trio.fail_after(5):
            await first_stopped.wait()
        second, _ = await run_server(nursery, data, app)
        proxy.upstream_port = second.port
        done = await client.wait_for("done", timeout=20)
        assert_complete(done, 20)
        assert client.of("connect")[-1]["recovered"] is True
        proxy.close()
        nursery.cancel_scope.cancel()


async def test_no_recovery_for_another_user_or_after_the_window(tmp_path):
    """A stolen pid does not recover someone else's session; an old one expires."""
    from support.clients import auth_section, token

    app = room_app()
    async with trio.open_nursery() as nursery:
        config = make_config(tmp_path / "data", recovery={**RECOVERY, "max_disconnection": 0.5}, auth=auth_section())
        server = await nursery.start(serve, config, app)
        proxy = Proxy(server.port)
        await nursery.start(proxy.serve)
        client = await start_client(
            nursery, f"http://127.0.0.1:{proxy.port}", expect=1, auth={"token": token("alice", "acme")}
        )
        await client.wait_for("joined")
        await proxy.cut()
        await client.wait_for("disconnect")
        proxy.upstream_port = 1
        await proxy.cut()
        await trio.sleep(0.8)  # past max_disconnection
        proxy.upstream_port = server.port
        await client.wait_for("connect", count=2)
        assert client.of("connect")[-1]["recovered"] is False
        pids = [s for s in server.sio.recovery._sessions]
        assert pids == []
        proxy.close()
        nursery.cancel_scope.cancel()


async def test_only_the_configured_events_are_kept_for_replay(tmp_path):
    """recovery.events: a typing indicator need not be replayed, a message must."""
    app = room_app()
    async with trio.open_nursery() as nursery:
        config = make_config(tmp_path / "data", recovery={**RECOVERY, "events": ["msg"]})
        server = await nursery.start(serve, config, app)
        proxy = Proxy(server.port)
        await nursery.start(proxy.serve)
        client = await start_client(nursery, f"http://127.0.0.1:{proxy.port}", expect=3)
        await client.wait_for("joined")
        await proxy.cut()
        await client.wait_for("disconnect")
        app.emit("typing", "someone", to="r")
        for n in range(3):
            app.emit("msg", n, to="r")
        done = await client.wait_for("done")
        assert_complete(done, 3)
        kept = [entry.frames[0] for entry in server.sio.recovery._history]
        assert kept and all('"msg"' in frame for frame in kept)
        proxy.close()
        nursery.cancel_scope.cancel()
