"""Handing an accepted connection to another worker process of this server.

With ``--workers N`` every worker accepts on the same listening socket, so
the kernel spreads one long-polling client's requests over them, while its
Engine.IO session lives in one worker only.  A worker that reads a request
for a session another worker owns passes that worker the connection itself:
the socket's file descriptor (``SCM_RIGHTS``) and the bytes already read
from it (the request head, rebuilt, and whatever followed it), in one
datagram over a local Unix socket.  The owner serves the connection from
there as if it had accepted it; the sender closes its copy of the descriptor
(a close, not a shutdown: the connection stays open in the owner).

Each worker binds ``<directory>/worker-<index>.sock`` and keeps one
connected datagram socket per peer it has handed something to (connected,
so a peer slow to take them makes the sender wait instead of failing).
"""

from __future__ import annotations

import array
import errno
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import h11
import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("rtserver.http")

#: The largest hand-off: a request head (``http.max_header_bytes``, at most
#: 128 KiB with several workers) and what one read brought after it (64 KiB).
#: A Unix datagram may be as large as the sender's buffer (net.core.wmem_default,
#: 208 KiB by default).
MAX_MESSAGE = 256 * 1024

Serve = Callable[[trio.SocketStream, bytes], Awaitable[None]]


_FD_SIZE = array.array("i").itemsize


def _descriptors(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """The file descriptors an ``SCM_RIGHTS`` message carried."""
    found = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            found.frombytes(payload[: len(payload) - len(payload) % _FD_SIZE])
    return list(found)


def socket_path(directory: str, index: int) -> str:
    return str(Path(directory) / f"worker-{index}.sock")


def request_bytes(event: h11.Request) -> bytes:
    """The request head as the client sent it (h11 keeps the headers' own case)."""
    lines = [b"%s %s HTTP/%s" % (event.method, event.target, event.http_version)]
    lines += [name + b": " + value for name, value in event.headers.raw_items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class Handoff:
    """This worker's end: receives connections from its peers, passes them theirs."""

    def __init__(self, directory: str, index: int) -> None:
        self.directory = directory
        self.index = index
        self._peers: dict[int, tuple[trio.socket.SocketType, trio.Lock]] = {}
        #: Connections passed to another worker, and received from one.
        self.passed = 0
        self.received = 0

    async def receive(self, serve: Serve, nursery: trio.Nursery, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind this worker's socket and serve every connection handed to it
        in ``nursery`` (``serve(stream, already_read)``) until cancelled."""
        path = socket_path(self.directory, self.index)
        Path(path).unlink(missing_ok=True)  # left by this worker's previous life
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            await sock.bind(path)
            task_status.started()
            while True:
                data, ancillary, _flags, _ = await sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(_FD_SIZE))
                received = _descriptors(ancillary)
                if len(received) != 1:
                    for fd in received:
                        os.close(fd)
                    continue
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(socket.socket(fileno=received[0])))
                self.received += 1
                nursery.start_soon(serve, stream, data)
        finally:
            sock.close()
            self.close()

    async def pass_connection(self, owner: int, connection: trio.socket.SocketType, already_read: bytes) -> bool:
        """Send ``connection`` and the bytes read from it to worker ``owner``.

        False when that worker is not there (it died, or is starting again):
        then the sessions it owned are gone, and this worker answers the
        request itself.
        """
        if len(already_read) > MAX_MESSAGE:
            return False
        for attempt in (1, 2):
            peer, lock = await self._peer(owner)
            if peer is None:
                return False
            try:
                async with lock:
                    await peer.sendmsg(
                        [already_read], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [connection.fileno()]))]
                    )
            except OSError as exc:
                # The peer restarted since we connected (its old socket is
                # gone): connect to the new one once.
                self._drop(owner)
                if attempt == 2 or exc.errno not in (errno.ECONNREFUSED, errno.ENOTCONN, errno.ENOENT):
                    return False
                continue
            self.passed += 1
            return True
        return False

    async def _peer(self, owner: int) -> tuple[trio.socket.SocketType | None, trio.Lock]:
        found = self._peers.get(owner)
        if found is not None:
            return found
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            await sock.connect(socket_path(self.directory, owner))
        except OSError:
            sock.close()
            return None, trio.Lock()
        if owner in self._peers:  # another task connected meanwhile
            sock.close()
            return self._peers[owner]
        found = self._peers[owner] = (sock, trio.Lock())
        return found

    def _drop(self, owner: int) -> None:
        found = self._peers.pop(owner, None)
        if found is not None:
            found[0].close()

    def close(self) -> None:
        for owner in list(self._peers):
            self._drop(owner)

    def collector(self) -> Collector:
        return _Metrics(self)


class _Metrics(Collector):
    def __init__(self, handoff: Handoff) -> None:
        self._handoff = handoff

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        h = self._handoff
        yield GaugeMetricFamily("rtserver_worker", "This worker's index among the server's workers", value=h.index)
        handed = CounterMetricFamily(
            "rtserver_worker_handoffs", "Connections handed to the worker owning their session, and from others", labels=["direction"]
        )
        handed.add_metric(["passed"], h.passed)
        handed.add_metric(["received"], h.received)
        yield handed
