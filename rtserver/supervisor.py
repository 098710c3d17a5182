"""``rtserver serve --workers N``: one supervisor process and N workers.

The supervisor opens the listening sockets (or takes systemd's, socket
activation) and starts N copies of the same ``rtserver serve`` command that
inherit them: every worker accepts on the same sockets, and while a worker
starts again after dying, the others (and the kernel's accept queue) keep
taking connections.  Each worker is a node of the cluster (``[cluster]`` is
required) with a node id of its own, so broadcasts, rooms and cross-node
requests reach every worker through Redis as they reach other machines.

A worker learns its place from ``RTSERVER_WORKER`` (:class:`WorkerSpec`):
its index, the inherited descriptors, and a private directory where each
worker binds the socket its peers hand it connections on
(:mod:`rtserver.http.handoff`).

Workers speak systemd's notify protocol to the supervisor (each gets a
``NOTIFY_SOCKET`` of its own and a ``WATCHDOG_USEC``), and the supervisor
speaks for all of them to systemd: ``READY=1`` once every worker is ready,
``STATUS=`` with the workers up and the connections they hold, ``WATCHDOG=1``
while its own loop runs, ``STOPPING=1``.  A worker that dies is started
again (after 0.1 s, doubling up to 5 s while it keeps dying within 10 s of
its start); one whose watchdog pings stop is killed and started again.
SIGTERM and SIGINT are forwarded (each worker drains) and the supervisor
exits once they all have; a second one is forwarded too (stop at once).
SIGHUP is forwarded (each worker reloads).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import orjson
import trio

from . import systemd

log = logging.getLogger("rtserver.supervisor")

WORKER_ENV = "RTSERVER_WORKER"
#: systemd's variables, meant for the supervisor alone.
_SYSTEMD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
#: A worker's watchdog when systemd sets none for the supervisor.
DEFAULT_WORKER_WATCHDOG = 10.0
_RESTART_FIRST, _RESTART_MAX, _STABLE_AFTER = 0.1, 5.0, 10.0


@attrs.frozen
class WorkerSpec:
    """What a worker process is told by its supervisor."""

    index: int
    count: int
    directory: str
    fds: tuple[int, ...]

    def environ(self) -> str:
        return orjson.dumps(attrs.asdict(self)).decode()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> WorkerSpec | None:
        raw = (os.environ if environ is None else environ).get(WORKER_ENV)
        if not raw:
            return None
        data = orjson.loads(raw)
        return cls(int(data["index"]), int(data["count"]), str(data["directory"]), tuple(int(fd) for fd in data["fds"]))

    def listeners(self) -> list[trio.SocketListener]:
        """The listening sockets inherited from the supervisor."""
        return systemd.listeners_from_fds(self.fds)

    def node_id(self, configured: str) -> str:
        """This worker's node id: the configured one with ``-<index>``, or
        empty (a random one) when none is configured."""
        return f"{configured}-{self.index}" if configured else ""


@attrs.define
class _Worker:
    index: int
    process: trio.Process | None = None
    ready: bool = False
    #: Ever ready: a worker that dies before its first READY is a start-up failure.
    served: bool = False
    last_ping: float = 0.0
    connections: int = 0
    settled: trio.Event = attrs.Factory(trio.Event)


class Supervisor:
    def __init__(self, count: int, command: Sequence[str]) -> None:
        self.count = count
        self.command = list(command)
        self.workers = [_Worker(i) for i in range(count)]
        self.stopping = False
        self._stop = trio.Event()
        #: The exit status of a worker that failed to start (then the supervisor stops).
        self.failed: int | None = None
        self._all_ready = False
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.worker_watchdog = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 else DEFAULT_WORKER_WATCHDOG

    async def run(self, listeners: list[trio.SocketListener]) -> int:
        """Supervise until stopped by a signal; the exit status."""
        directory = tempfile.mkdtemp(prefix="rtserver-workers-")
        fds = tuple(listener.socket.fileno() for listener in listeners)
        try:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
                async with trio.open_nursery() as nursery:
                    for worker in self.workers:
                        await nursery.start(self._hear, worker, directory)
                    nursery.start_soon(self._signals, signals)
                    nursery.start_soon(self._watch)
                    async with trio.open_nursery() as keepers:
                        # The first worker alone: a configuration or Redis
                        # problem is then reported once, not by every worker.
                        keepers.start_soon(self._keep, self.workers[0], directory, fds)
                        await self.workers[0].settled.wait()
                        if self.workers[0].served:
                            for worker in self.workers[1:]:
                                keepers.start_soon(self._keep, worker, directory, fds)
                    nursery.cancel_scope.cancel()
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return self.failed or 0

    def _environ(self, worker: _Worker, directory: str, fds: tuple[int, ...]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_ENV}
        env[WORKER_ENV] = WorkerSpec(worker.index, self.count, directory, fds).environ()
        env["NOTIFY_SOCKET"] = _notify_path(directory, worker.index)
        env["WATCHDOG_USEC"] = str(int(self.worker_watchdog * 1e6))
        return env

    async def _keep(self, worker: _Worker, directory: str, fds: tuple[int, ...]) -> None:
        """Run worker ``index``, and again each time it dies, until stopping."""
        delay = _RESTART_FIRST
        while not self.stopping:
            started = trio.current_time()
            worker.ready = False
            worker.process = await trio.lowlevel.open_process(
                self.command, env=self._environ(worker, directory, fds), pass_fds=fds
            )
            log.info("worker started", extra={"fields": {"worker": worker.index, "pid": worker.process.pid}})
            code = await worker.process.wait()
            worker.ready = False
            worker.connections = 0
            if self.stopping:
                break
            if not worker.served:
                # Never ready: a start-up error (the worker printed it); stop everything.
                self.failed = code if code > 0 else 1
                worker.settled.set()
                self._begin_stop(signal.SIGTERM)
                break
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
            log.warning("worker died, starting it again", extra={"fields": {"worker": worker.index, "pid": worker.process.pid, "exit": how}})
            delay = _RESTART_FIRST if trio.current_time() - started > _STABLE_AFTER else min(delay * 2, _RESTART_MAX)
            with trio.move_on_after(delay):
                await self._stop.wait()

    async def _hear(self, worker: _Worker, directory: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Read what worker ``index`` tells systemd (sd_notify) on its own socket."""
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with sock:
            await sock.bind(_notify_path(directory, worker.index))
            task_status.started()
            while True:
                message = (await sock.recv(4096)).decode(errors="replace")
                for line in message.splitlines():
                    name, _, value = line.partition("=")
                    if name == "READY" and value == "1":
                        self._ready(worker)
                    elif name == "WATCHDOG" and value == "1":
                        worker.last_ping = trio.current_time()
                    elif name == "STATUS":
                        count = value.split(" ", 1)[0]
                        if value.endswith(" connections") and count.isdigit():
                            worker.connections = int(count)

    def _ready(self, worker: _Worker) -> None:
        first = not worker.served
        worker.ready = worker.served = True
        worker.last_ping = trio.current_time()
        worker.settled.set()
        if not first:
            log.info("worker ready again", extra={"fields": {"worker": worker.index}})
        if not self._all_ready and all(w.ready for w in self.workers):
            self._all_ready = True
            log.info("all workers ready", extra={"fields": {"workers": self.count}})
            systemd.notify(f"READY=1\nSTATUS={self._status()}")

    def _status(self) -> str:
        ready = sum(w.ready for w in self.workers)
        return f"{ready}/{self.count} workers, {sum(w.connections for w in self.workers)} connections"

    async def _watch(self) -> None:
        """Kill a worker whose watchdog pings stopped (it is then started
        again), and keep systemd's watchdog and STATUS fed."""
        interval = systemd.watchdog_interval()
        period = min(interval or 1.0, 1.0)
        while True:
            now = trio.current_time()
            for worker in self.workers:
                if worker.ready and worker.process is not None and now - worker.last_ping > self.worker_watchdog:
                    log.error("worker stopped answering its watchdog, killing it", extra={"fields": {"worker": worker.index, "pid": worker.process.pid}})
                    worker.ready = False
                    worker.process.kill()
            if self._all_ready and not self.stopping:
                systemd.notify(("WATCHDOG=1\n" if interval else "") + f"STATUS={self._status()}")
            await trio.sleep(period)

    async def _signals(self, signals: Any) -> None:
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("reloading every worker")
                self._forward(signum)
            elif self.stopping:
                log.info("second signal: stopping every worker now")
                self._forward(signum)
            else:
                log.info("shutting down every worker", extra={"fields": {"signal": signal.Signals(signum).name}})
                self._begin_stop(signum)

    def _begin_stop(self, signum: int) -> None:
        self.stopping = True
        self._stop.set()
        for worker in self.workers:
            worker.settled.set()
        systemd.notify("STOPPING=1")
        self._forward(signum)

    def _forward(self, signum: int) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.send_signal(signum)


def _notify_path(directory: str, index: int) -> str:
    return str(Path(directory) / f"notify-{index}.sock")


async def supervise(count: int, command: Sequence[str], host: str, port: int) -> int:
    """Open (or inherit) the listening sockets and supervise ``count`` workers."""
    listeners = systemd.inherited_listeners() or await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    log.info("supervising workers", extra={"fields": {"workers": count, "port": bound, "pid": os.getpid()}})
    try:
        return await Supervisor(count, command).run(listeners)
    finally:
        for listener in listeners:
            await listener.aclose()
