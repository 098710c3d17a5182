"""``rtserver serve`` as a child process, as systemd or an operator runs it:
its config file, the process (killed at the end of the test whatever
happens), and waiting for it to listen."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio


def write_config(tmp_path: Path, port: int = 0, **sections: dict[str, Any]) -> Path:
    """A config file: ``sections`` as TOML tables (simple values and lists only)."""
    tables = {"server": {"host": "127.0.0.1", "port": port, "data_dir": str(tmp_path / "data")}, **sections}
    lines = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Server:
    """``rtserver serve`` in a child process (killed at the end of the test
    whatever happens: see the ``spawned`` fixture)."""

    started: ClassVar[list[trio.Process]] = []

    def __init__(self, process: trio.Process) -> None:
        self.process = process

    @classmethod
    async def start(
        cls, nursery: trio.Nursery, config: Path, env: dict[str, str] | None = None, fd: int | None = None,
        args: tuple[str, ...] = (), **kwargs: Any,
    ) -> Server:
        """``kwargs``: for the process (``stdout=subprocess.PIPE``...)."""
        command = [sys.executable, "-m", "rtserver", "serve", "--config", str(config), *args]
        if fd is not None:
            # As systemd does: the listening socket is fd 3, LISTEN_PID is the server's pid.
            command = ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@" 3<&0 0</dev/null', "sh", *command]
            kwargs["stdin"] = fd
        # A session of its own: the fixture kills its workers with it.
        process = await trio.lowlevel.open_process(
            command, env={**os.environ, **(env or {})}, start_new_session=True, **kwargs
        )
        cls.started.append(process)
        return cls(process)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def exited(self, timeout: float = 15) -> int:
        with trio.fail_after(timeout):
            return await self.process.wait()


@pytest.fixture
async def spawned():
    """Kill every server process a test started, even when it failed midway
    (a module using :class:`Server` imports it and marks its tests with it)."""
    yield
    for process in Server.started:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # a server and its workers (its own session)
        if process.returncode is None:
            process.kill()
            await process.wait()
    Server.started.clear()


async def wait_listening(port: int, timeout: float = 15) -> None:
    with trio.fail_after(timeout):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


def free_listener() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock
