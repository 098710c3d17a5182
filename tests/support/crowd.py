"""tests/clients/crowd.js: many stock clients with default transports, and
what they report (connected, upgraded, by worker, disconnects, errors,
broadcast rounds received)."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import trio

from .interactive import CLIENTS


class Crowd:
    """tests/clients/crowd.js: its last state line."""

    @classmethod
    async def start(cls, nursery: trio.Nursery, url: str, count: int, **options: Any) -> Crowd:
        """``count`` clients of ``url``, their output read in ``nursery``; they
        close when the process's stdin does."""
        process = await trio.lowlevel.open_process(
            [shutil.which("node"), str(CLIENTS / "crowd.js"), json.dumps({"url": url, "count": count, **options})],
            stdout=subprocess.PIPE, stdin=subprocess.PIPE, cwd=CLIENTS,
        )
        crowd = cls(process)
        nursery.start_soon(crowd.pump)
        return crowd

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.state: dict[str, Any] = {}
        self.timed_out = False

    async def pump(self) -> None:
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"{"):
                    entry = json.loads(line)
                    self.timed_out |= entry["type"] == "timeout"
                    self.state = entry

    async def until(self, predicate, timeout: float = 60) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while not (self.state and predicate(self.state)):
                assert not self.timed_out, self.state
                await trio.sleep(0.05)
        return self.state
