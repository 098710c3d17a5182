"""The live event tail: events in and out of this node, for dashboard watchers.

The tail is a Socket.IO observer (``SocketIOServer.observers``) that is
registered only while at least one dashboard socket runs it, so it costs
nothing when nobody watches.  While registered, it only appends a tuple per
event to a bounded deque; a task that lives as long as the watchers does the
rest every quarter second: it matches each event against each watcher's
filters (tenant, room, event name), masks secrets and cuts payloads
(:mod:`.redaction`) for the events someone wants, and sends each watcher one
batch, volatile (a dashboard that cannot keep up loses tail lines, never its
connection).  A watcher gets at most ``rate`` events per second; the rest
are counted in the batch's ``dropped``.  Events of the dashboard's own
namespace are not shown.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..auth.limits import TokenBucket
from ..faults import guarded
from .redaction import preview

if TYPE_CHECKING:
    from ..socketio.server import SocketIOServer
    from ..socketio.socket import Socket

#: Seconds between batches.
FLUSH_INTERVAL = 0.25
#: Events kept between two batches; beyond it the oldest are dropped (and counted).
PENDING_LIMIT = 5000
_MAX_FILTER = 256


def _filter_text(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and len(value) > _MAX_FILTER:
        raise ValueError(f"'{attribute.name}' is at most {_MAX_FILTER} characters", attribute)


@attrs.frozen
class TailFilter:
    """What a watcher wants; an empty field matches everything."""

    #: Events from a socket of this tenant, or sent to a room of it (or to everyone).
    tenant: str | None = attrs.field(default=None, validator=_filter_text)
    #: Events from a socket in this room, or sent to it (or to everyone): the exact name.
    room: str | None = attrs.field(default=None, validator=_filter_text)
    #: Event names containing this text.
    event: str | None = attrs.field(default=None, validator=_filter_text)


@attrs.define(eq=False)
class _Event:
    at: float
    direction: str
    namespace: str
    event: str
    args: Any
    #: Rooms it was sent to (None: the whole namespace), or the sender's rooms.
    rooms: frozenset[str] | None
    tenants: frozenset[str]
    #: ``*``: sent to the whole namespace, so every tenant's concern.
    everyone: bool
    sender: dict[str, Any] | None

    def matches(self, wanted: TailFilter) -> bool:
        if wanted.event and wanted.event not in self.event:
            return False
        if wanted.tenant and not (self.everyone or wanted.tenant in self.tenants):
            return False
        return not wanted.room or self.everyone or (self.rooms is not None and wanted.room in self.rooms)

    def public(self, payload_chars: int) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "t": round(self.at, 3),
            "dir": self.direction,
            "namespace": self.namespace,
            "event": self.event,
            "tenants": sorted(self.tenants),
            "payload": preview(self.args, payload_chars),
        }
        if self.direction == "in":
            entry["from"] = self.sender
        else:
            entry["to"] = None if self.rooms is None else sorted(self.rooms)
        return entry


@attrs.define(eq=False)
class _Watcher:
    socket: Socket
    wanted: TailFilter
    bucket: TokenBucket
    dropped: int = 0


class Tail:
    def __init__(
        self, sio: SocketIOServer, namespace: str, payload_chars: int, rate: int, nursery: trio.Nursery,
        faults: Counter[str],
    ) -> None:
        self._sio = sio
        self._faults = faults
        self._namespace = namespace
        self._payload_chars = payload_chars
        self._rate = rate
        self._nursery = nursery
        self._watchers: dict[Socket, _Watcher] = {}
        self._pending: deque[tuple[float, Socket | None, str, str, Any, list[str] | None]] = deque()
        self._lost = 0
        self._running = False

    @property
    def watching(self) -> bool:
        return bool(self._watchers)

    def watch(self, socket: Socket, wanted: TailFilter) -> None:
        """Start (or refilter) ``socket``'s tail; the first watcher registers the observer."""
        watcher = self._watchers.get(socket)
        if watcher is not None:
            watcher.wanted = wanted
            return
        self._watchers[socket] = _Watcher(socket, wanted, TokenBucket(self._rate, self._rate))
        if len(self._watchers) == 1:
            self._sio.observers.append(self)
        if not self._running:
            self._running = True
            self._nursery.start_soon(guarded, self._faults, "dashboard event tail", self._run)

    def unwatch(self, socket: Socket) -> None:
        """Stop ``socket``'s tail; the last one unregisters the observer."""
        if self._watchers.pop(socket, None) is not None and not self._watchers:
            self._sio.observers.remove(self)
            self._pending.clear()
            self._lost = 0

    # ------------------------------------------------------------ observer
    def joined(self, socket: Socket, room: str) -> None:
        pass

    def left(self, socket: Socket, room: str) -> None:
        pass

    def received(self, socket: Socket, event: str, args: list[Any]) -> None:
        if socket.namespace_name != self._namespace:
            self._keep((time.time(), socket, socket.namespace_name, event, args, None))

    def sent(self, namespace: str, event: str, args: tuple[Any, ...], rooms: list[str] | None) -> None:
        if namespace != self._namespace:
            self._keep((time.time(), None, namespace, event, args, rooms))

    def _keep(self, item: tuple[float, Socket | None, str, str, Any, list[str] | None]) -> None:
        if len(self._pending) >= PENDING_LIMIT:
            self._pending.popleft()
            self._lost += 1
        self._pending.append(item)

    # ------------------------------------------------------------- batches
    async def _run(self) -> None:
        """Send batches while anyone watches (a new first watcher starts it
        again, also after a failure, which is contained and reported)."""
        try:
            while self._watchers:
                await trio.sleep(FLUSH_INTERVAL)
                self.flush()
        finally:
            self._running = False

    def flush(self) -> None:
        events = [self._describe(*item) for item in self._pending]
        lost, self._lost = self._lost, 0
        self._pending.clear()
        shown: dict[_Event, dict[str, Any]] = {}
        for watcher in list(self._watchers.values()):
            batch = []
            watcher.dropped += lost
            for event in events:
                if not event.matches(watcher.wanted):
                    continue
                if not watcher.bucket.take():
                    watcher.dropped += 1
                    continue
                if event not in shown:
                    shown[event] = event.public(self._payload_chars)
                batch.append(shown[event])
            if batch or watcher.dropped:
                watcher.socket.emit("tail", {"events": batch, "dropped": watcher.dropped}, volatile=True)
                watcher.dropped = 0

    def _describe(
        self, at: float, sender: Socket | None, namespace: str, event: str, args: Any, rooms: list[str] | None
    ) -> _Event:
        if sender is not None:
            identity = sender.identity
            tenant = identity.tenant if identity is not None else None
            who = {"sid": sender.sid, "user": None if identity is None else identity.user, "tenant": tenant}
            own = frozenset(sender.rooms - {sender.sid})
            return _Event(at, "in", namespace, event, args, own, frozenset({tenant} - {None}), False, who)
        if rooms is None:
            return _Event(at, "out", namespace, event, args, None, frozenset(), True, None)
        return _Event(at, "out", namespace, event, args, frozenset(rooms), tenants_of(self._sio, namespace, rooms), False, None)


def tenants_of(sio: SocketIOServer, namespace: str, rooms: list[str]) -> frozenset[str]:
    """The tenants an emit to ``rooms`` reaches, as far as the room names and
    this node's sockets tell."""
    found: set[str | None] = set()
    for room in rooms:
        kind, _, rest = room.partition(":")
        if kind == "tenant":
            found.add(rest.partition(":")[0])
        elif kind == "user":
            found.update(s.identity.tenant for s in sio.guard.sockets_of(rest.partition(":")[0]) if s.identity)
        elif kind == "device":
            found.add(sio.guard.device_tenants.get(rest))
        else:
            member = sio.socket(room, namespace)
            if member is not None and member.identity is not None:
                found.add(member.identity.tenant)
    return frozenset(t for t in found if t is not None)
