"""Long-running Node client scripts driven over stdin (tests/clients/*.js
built on lib.js's ``interactive``): each prints JSON lines as things happen
and evaluates the JavaScript sent to it."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import trio

CLIENTS = Path(__file__).resolve().parent.parent / "clients"
WAIT = 10.0


class NodeClient:
    """A Node script that prints JSON lines and takes commands on stdin."""

    def __init__(self, process: trio.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.lines: list[dict[str, Any]] = []
        self.closed = False
        self._changed = trio.Event()
        self._ids = itertools.count()

    async def pump(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            self.lines += [json.loads(line) for line in complete if line.startswith(b"{")]
            self._changed.set()
            self._changed = trio.Event()
        self.closed = True
        self._changed.set()

    async def expect(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> dict[str, Any]:
        """The first line (so far or to come) for which ``predicate`` holds."""
        with trio.move_on_after(timeout):
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                if self.closed:
                    break
                await self._changed.wait()
        raise AssertionError(f"{self.name}: nothing matched; got {self.lines}")

    async def console(self, text: str) -> None:
        """Wait for ``console.log(text)``."""
        await self.expect(lambda e: e["type"] == "console" and e["text"] == text)

    def texts(self, prefix: str = "") -> list[str]:
        """What the script printed with console.log, starting with ``prefix``."""
        return [e["text"] for e in self.lines if e["type"] == "console" and e["text"].startswith(prefix)]

    def events(self, name: str) -> list[Any]:
        """First argument of each ``name`` event received."""
        return [e["args"][0] for e in self.lines if e["type"] == "event" and e["event"] == name]

    async def event(self, name: str, predicate: Callable[[Any], bool] = lambda _: True) -> Any:
        """First argument of the first ``name`` event for which ``predicate`` holds."""
        line = await self.expect(lambda e: e["type"] == "event" and e["event"] == name and predicate(e["args"][0]))
        return line["args"][0]

    def errors(self) -> list[dict[str, Any]]:
        return self.events("error")

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line.encode() + b"\n")

    async def run(self, js: str) -> Any:
        """Evaluate JavaScript in the script; its (awaited) value."""
        ident = next(self._ids)
        await self.send(json.dumps({"id": ident, "js": js}))
        result = await self.expect(lambda e: e["type"] == "result" and e["id"] == ident)
        assert "error" not in result, result
        return result.get("value")

    async def close(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.aclose()
        with trio.fail_after(WAIT):
            await self.process.wait()


async def spawn(
    nursery: trio.Nursery, script: str, *args: str, name: str | None = None, where: Path = CLIENTS
) -> NodeClient:
    """Start ``tests/clients/<script>`` (or ``where``'s; named ``name`` in failures)."""
    process = await nursery.start(partial(
        trio.run_process, ["node", str(where / script), *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, check=False, cwd=where,
    ))
    client = NodeClient(process, name if name is not None else f"{script} {args[1:] if len(args) > 1 else ''}")
    nursery.start_soon(client.pump)
    return client
