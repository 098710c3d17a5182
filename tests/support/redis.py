"""A real redis-server (Debian's) of a test's own: a free loopback port, a
temporary directory, no persistence unless asked (``appendonly``: every
write fsynced before Redis answers, as a store that must lose nothing needs);
stopped and started again on the same port to cut a cluster off Redis and
bring it back."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

REDIS_SERVER = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)

#: Outside CI a machine without redis-server skips these tests; CI installs it (.ci/run) and never skips.
needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None and not os.environ.get("CI"), reason="redis-server is not installed (CI installs it)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, directory: Path, appendonly: bool = False) -> None:
        assert REDIS_SERVER is not None, "redis-server is required in CI (.ci/run installs it)"
        self.directory = directory
        self.appendonly = appendonly
        self.port = free_port()
        self.process: trio.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = await trio.lowlevel.open_process(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
             "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        with trio.fail_after(10):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", self.port)
                except OSError:
                    await trio.sleep(0.02)
                    continue
                await stream.send_all(b"PING\r\n")
                reply = await stream.receive_some(64)
                await stream.aclose()
                if reply.startswith(b"+PONG"):
                    return
                await trio.sleep(0.02)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        with trio.move_on_after(5):
            await process.wait()
            return
        process.kill()
        await process.wait()

    async def command(self, *args: str | bytes) -> bytes:
        """One command over a plain connection (a raw client, for garbage and checks); the raw reply."""
        stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        parts = [a.encode() if isinstance(a, str) else a for a in args]
        request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        await stream.send_all(request)
        reply = await stream.receive_some(65536)
        await stream.aclose()
        return reply

    async def publish(self, channel: str, payload: bytes) -> int:
        """PUBLISH; how many subscribers got it."""
        reply = await self.command("PUBLISH", channel, payload)
        return int(reply[1:].split(b"\r\n")[0])


@asynccontextmanager
async def running(directory: Path, appendonly: bool = False) -> AsyncIterator[RedisServer]:
    """A started :class:`RedisServer`, stopped at the end (even when cancelled)."""
    server = RedisServer(directory, appendonly)
    await server.start()
    try:
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await server.stop()
