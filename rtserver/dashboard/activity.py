"""What the dashboard remembers beyond the live state: each room's last event,
and where a device was connected from before it went away.

Rooms' last events are seen by an observer that is registered only while a
dashboard socket is connected (a dict write per emit, not per recipient,
while someone watches; nothing otherwise), so they are the last events since
the first dashboard opened.  Gone devices are noted by a socket listener
whenever the dashboard is enabled (a device socket's close, once);
:meth:`prune` (called with each sample) forgets rooms that no longer exist.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import attrs

from ..auth.guard import remote_host

if TYPE_CHECKING:
    from ..hub import Hub
    from ..socketio.server import SocketIOServer
    from ..socketio.socket import Socket


def address(socket: Socket) -> str:
    """Where a socket connects from: its peer, and what a proxy said it forwarded."""
    request = socket.handshake
    forwarded = request.headers.get("x-forwarded-for")
    host = remote_host(request)
    return f"{forwarded} via {host}" if forwarded else host


@attrs.frozen
class DeviceTrace:
    address: str
    channels: tuple[str, ...]
    at: float


class Activity:
    """An observer (``sent`` only, while watched) and a socket listener."""

    def __init__(self, sio: SocketIOServer, dashboard_namespace: str) -> None:
        self._sio = sio
        self._namespace = dashboard_namespace
        #: (namespace, room) -> (event, time.time()) of the last emit to it.
        self.room_events: dict[tuple[str, str], tuple[str, float]] = {}
        #: (tenant, device) -> its last socket's address and channels, once that closed.
        self.devices: dict[tuple[str, str], DeviceTrace] = {}
        self._watchers = 0

    # ------------------------------------------------------------ observer
    def joined(self, socket: Socket, room: str) -> None:
        pass

    def left(self, socket: Socket, room: str) -> None:
        pass

    def received(self, socket: Socket, event: str, args: list[Any]) -> None:
        pass

    def sent(self, namespace: str, event: str, args: tuple[Any, ...], rooms: list[str] | None) -> None:
        if rooms and namespace != self._namespace:
            stamp = (event, time.time())
            for room in rooms:
                self.room_events[(namespace, room)] = stamp

    # ------------------------------------------------------------ listener
    def connected(self, socket: Socket) -> None:
        if socket.namespace_name == self._namespace:
            self._watchers += 1
            if self._watchers == 1:
                self._sio.observers.append(self)

    def disconnected(self, socket: Socket, reason: str) -> None:
        if socket.namespace_name == self._namespace:
            self._watchers -= 1
            if self._watchers == 0:
                self._sio.observers.remove(self)
                self.room_events.clear()
            return
        identity = socket.identity
        if identity is not None and identity.device and identity.tenant:
            channels = tuple(sorted(socket.rooms - {socket.sid}))
            self.devices[(identity.tenant, identity.device)] = DeviceTrace(address(socket), channels, time.time())

    def prune(self, hub: Hub) -> None:
        """Forget the last events of rooms nobody is in any more (and of
        single sockets, which are not rooms anyone joined)."""
        live = {(namespace, room) for namespace in hub.namespaces() for room in hub.rooms(namespace)}
        for key in [k for k in self.room_events if k not in live or hub.member(*k) is not None]:
            del self.room_events[key]
