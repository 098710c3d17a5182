"""Being a good systemd citizen: the notify protocol and socket activation.

Both are plain environment-variable protocols (sd_notify(3),
sd_listen_fds(3)), so no binding is needed: a datagram to $NOTIFY_SOCKET,
and the listening sockets passed as file descriptors 3.. when $LISTEN_FDS is
set for this process.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping

import trio

SD_LISTEN_FDS_START = 3


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``READY=1``, ``STOPPING=1``, ``STATUS=...`` etc.; False when not under systemd."""
    path = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half the timeout), when the watchdog is on."""
    env = environ if environ is not None else os.environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


async def keep_alive(status: Callable[[], str], environ: Mapping[str, str] | None = None) -> None:
    """Ping the watchdog (when on) and refresh STATUS= until cancelled."""
    interval = watchdog_interval(environ)
    period = min(interval, 5.0) if interval else 5.0
    while True:
        message = f"STATUS={status()}"
        if interval:
            message = "WATCHDOG=1\n" + message
        notify(message, environ)
        await trio.sleep(period)


def inherited_listeners(environ: Mapping[str, str] | None = None) -> list[trio.SocketListener]:
    """The listening sockets systemd passed us (socket activation), if any."""
    env = environ if environ is not None else os.environ
    count = env.get("LISTEN_FDS")
    pid = env.get("LISTEN_PID")
    if not count or not count.isdigit() or (pid and pid != str(os.getpid())):
        return []
    return listeners_from_fds(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)))


def listeners_from_fds(fds: Iterable[int]) -> list[trio.SocketListener]:
    """Listening sockets from inherited descriptors (systemd's, or a supervisor's)."""
    listeners = []
    for fd in fds:
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
    return listeners
