"""``rtserver serve`` in a child process, as an operator runs it.

For tests where the process itself is what is watched: that it is still
running, what it logs, its descriptors and memory, and what survives a
``kill -9``.  The log (stdout and stderr) goes to a file the test reads.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import tomllib
from pathlib import Path
from typing import Any, ClassVar

import orjson
import tomli_w
import trio

REPO = Path(__file__).resolve().parents[2]
#: The configuration `make run` serves: every seed feature on.
SHIPPED_CONFIG = REPO / "config.toml"

_LISTENING = re.compile(rb"listening.*?https?://[^:\s\"]+:(\d+)")


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in, tables key by key."""
    result = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def shipped_tables(**overrides: dict[str, Any]) -> dict[str, Any]:
    """The shipped config.toml's tables with ``overrides`` merged in."""
    return merged(tomllib.loads(SHIPPED_CONFIG.read_text()), overrides)


def write_config(path: Path, tables: dict[str, Any]) -> Path:
    path.write_text(tomli_w.dumps(tables))
    return path


class ServerProcess:
    """One ``rtserver serve`` process; every one started is killed by
    :func:`kill_started` (the ``spawned`` fixtures) whatever the test did."""

    started: ClassVar[list[trio.Process]] = []

    def __init__(self, process: trio.Process, log: Path, log_start: int) -> None:
        self.process = process
        self.log = log
        #: Where this process's lines start in ``log`` (restarts append to it).
        self.log_start = log_start
        self._scanned = log_start

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(
        cls,
        config: Path,
        *,
        log: Path | None = None,
        env: dict[str, str] | None = None,
        fd: int | None = None,
        args: tuple[str, ...] = (),
    ) -> ServerProcess:
        """Start serving ``config``; with ``fd``, on that inherited listening
        socket (systemd socket activation)."""
        command = [sys.executable, "-m", "rtserver", "serve", "--config", str(config), *args]
        kwargs: dict[str, Any] = {}
        if fd is not None:
            # As systemd does: the listening socket is fd 3, LISTEN_PID is the server's pid.
            command = ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@" 3<&0 0</dev/null', "sh", *command]
            kwargs["stdin"] = fd
        log = log if log is not None else config.with_suffix(".log")
        with open(log, "ab") as out:
            start = out.tell()
            process = await trio.lowlevel.open_process(
                command, env={**os.environ, **(env or {})}, stdout=out, stderr=out, **kwargs
            )
        cls.started.append(process)
        return cls(process, log, start)

    def lines(self) -> list[bytes]:
        """This process's log lines so far."""
        with open(self.log, "rb") as f:
            f.seek(self.log_start)
            return f.read().splitlines()

    async def listening(self, timeout: float = 15) -> int:
        """The port from the "listening" log line, once it is there."""
        with trio.fail_after(timeout):
            while True:
                for line in self.lines():
                    match = _LISTENING.search(line)
                    if match:
                        return int(match.group(1))
                if self.process.returncode is not None:
                    raise AssertionError(f"server exited with {self.process.returncode}: {self.lines()[-20:]}")
                await trio.sleep(0.05)

    def problems(self) -> list[str]:
        """Log lines at ERROR or above or with a traceback, and blocks of lines
        that are not log lines of ours (what the interpreter prints when
        something escapes: one entry per block, its last 30 lines), among the
        lines not looked at by an earlier call.  Needs ``server.log_format = "json"``."""
        with open(self.log, "rb") as f:
            f.seek(self._scanned)
            data = f.read()
        complete, _, _ = data.rpartition(b"\n")
        self._scanned += len(complete) + (1 if complete else 0)
        found: list[str] = []
        foreign: list[bytes] = []
        for line in [*complete.splitlines(), b"{}"]:
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                foreign.append(line)
                continue
            if foreign:
                found.append(b"\n".join(foreign[-30:]).decode(errors="replace"))
                foreign = []
            if not isinstance(entry, dict) or entry.get("level") in ("error", "critical") or "exc" in entry:
                found.append(line.decode(errors="replace"))
        return found

    def fds(self) -> dict[str, str]:
        """Open file descriptors of the process: number -> what it is."""
        found = {}
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                found[fd] = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except FileNotFoundError:
                continue  # closed meanwhile
        return found

    def rss(self) -> int:
        """Resident memory in bytes."""
        with open(f"/proc/{self.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def running(self) -> bool:
        return self.process.returncode is None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def kill(self) -> None:
        """``kill -9`` and wait for it to be gone."""
        self.signal(signal.SIGKILL)
        await self.exited()

    async def exited(self, timeout: float = 15) -> int:
        with trio.fail_after(timeout):
            return await self.process.wait()


def children(pid: int) -> list[int]:
    """The processes ``pid`` started, listed under the thread that started
    each (trio starts processes from worker threads)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def kill_started() -> None:
    """``kill -9`` every process started through :class:`ServerProcess` (or
    added to its ``started`` list) that still runs.  Synchronous, for a plain
    fixture: an async fixture's teardown does not run when a trio test fails
    with an error from its nursery, and the servers would outlive the test.
    (Outside trio a :class:`trio.Process` cannot be asked about its state, so
    the pid is checked to still run the same command line.)"""
    for process in ServerProcess.started:
        try:
            with open(f"/proc/{process.pid}/cmdline", "rb") as f:
                running = f.read().split(b"\0")[:-1]
            args = [os.fsencode(a) for a in process.args]
            # A command run through ``sh -c 'exec "$@"'`` runs as its tail.
            if running and args[-len(running) :] == running:
                workers = children(process.pid)  # a supervisor's (serve --workers)
                os.kill(process.pid, signal.SIGKILL)
                for pid in workers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone already
    ServerProcess.started.clear()
