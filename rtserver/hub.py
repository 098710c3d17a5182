"""In-process pub/sub: room membership and fan-out to session outboxes.

The hub owns room membership.  ``publish`` receives frames already encoded
once for every recipient and does a non-blocking ``send`` into each member's
outbox; a full outbox triggers the session's slow-consumer policy, never a
wait.  Another hub (Redis-backed, for several nodes) implements the same
methods.

Across nodes, rtserver.cluster's bus (when ``[cluster]`` is on) carries a
broadcast to the other nodes, where it is fanned out by their hubs.

Every socket is in the room named by its sid, as with the reference server;
that room is the socket itself (found through the sid index), not a set of
one kept for every connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .engineio.packets import Frame, Outgoing
from .metrics import Stats


class Member(Protocol):
    """A Socket.IO socket as the hub sees it."""

    sid: str
    namespace_name: str
    rooms: set[str]

    def deliver(self, item: Outgoing | tuple[Frame, ...], volatile: bool) -> bool: ...

    # What another node may ask of a socket here (the cluster bus).
    def join(self, *rooms: str) -> None: ...

    def leave(self, *rooms: str) -> None: ...

    def disconnect(self) -> None: ...

    def close_connection(self, reason: str = ...) -> None: ...

    def details(self) -> dict[str, Any]: ...


class Hub:
    def __init__(self, stats: Stats | None = None) -> None:
        self.stats = stats if stats is not None else Stats()
        self._rooms: dict[str, dict[str, set[Member]]] = {}
        self._members: dict[str, dict[str, Member]] = {}

    # -------------------------------------------------------- membership
    def add(self, member: Member) -> None:
        """Register a connected socket; it is in the room named by its sid."""
        self._members.setdefault(member.namespace_name, {})[member.sid] = member
        member.rooms.add(member.sid)

    def remove(self, member: Member) -> None:
        """Forget a socket and take it out of every room."""
        for room in list(member.rooms):
            self.leave(member, room)
        member.rooms.clear()
        members = self._members.get(member.namespace_name)
        if members is not None:
            members.pop(member.sid, None)
            if not members:
                del self._members[member.namespace_name]

    def join(self, member: Member, room: str) -> None:
        if room == member.sid:
            return
        self._rooms.setdefault(member.namespace_name, {}).setdefault(room, set()).add(member)
        member.rooms.add(room)

    def leave(self, member: Member, room: str) -> None:
        if room == member.sid:
            return  # a socket stays in its own room while connected
        member.rooms.discard(room)
        rooms = self._rooms.get(member.namespace_name)
        if rooms is None:
            return
        members = rooms.get(room)
        if members is not None:
            members.discard(member)
            if not members:
                del rooms[room]
        if not rooms:
            del self._rooms[member.namespace_name]

    # ------------------------------------------------------------ queries
    def member(self, namespace: str, sid: str) -> Member | None:
        return self._members.get(namespace, {}).get(sid)

    def _in_room(self, namespace: str, room: str) -> Iterable[Member]:
        members = self._rooms.get(namespace, {}).get(room)
        owner = self._members.get(namespace, {}).get(room)
        if owner is None:
            return () if members is None else members
        # A sid's room is its socket, and whoever the server put in a room of that name.
        return (owner,) if members is None else members | {owner}

    def has_room(self, namespace: str, room: str) -> bool:
        """Whether any socket of ``namespace`` here is in ``room`` (its own sid room included)."""
        return room in self._rooms.get(namespace, ()) or room in self._members.get(namespace, ())

    def members(self, namespace: str, rooms: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> set[Member]:
        """Sockets of ``namespace`` in any of ``rooms`` (all when None), less ``exclude`` rooms."""
        if rooms is None:
            chosen = set(self._members.get(namespace, {}).values())
        else:
            chosen = set()
            for room in rooms:
                chosen.update(self._in_room(namespace, room))
        for room in exclude:
            chosen.difference_update(self._in_room(namespace, room))
        return chosen

    def rooms(self, namespace: str) -> dict[str, int]:
        """Room name -> member count, sid rooms included."""
        counts = {room: len(members) for room, members in self._rooms.get(namespace, {}).items()}
        for sid in self._members.get(namespace, {}):
            counts[sid] = counts.get(sid, 0) + 1
        return counts

    def namespaces(self) -> dict[str, int]:
        return {name: len(members) for name, members in self._members.items()}

    # ----------------------------------------------------------- fan-out
    def publish(
        self,
        namespace: str,
        frames: tuple[Frame, ...],
        rooms: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
        volatile: bool = False,
        plain: Callable[[], tuple[Frame, ...]] | None = None,
    ) -> int:
        """Deliver pre-encoded frames; returns how many sockets took them.

        ``plain`` builds the frames for members that take the plain form
        (see :meth:`Outgoing.plain`), once, if any of them is a recipient.
        """
        started = time.perf_counter()
        if rooms is not None and not exclude:
            rooms = list(rooms)
            if len(rooms) == 1:
                # The common case: one room, no set arithmetic.
                targets: Iterable[Member] = list(self._in_room(namespace, rooms[0]))
            else:
                targets = self.members(namespace, rooms)
        else:
            targets = self.members(namespace, rooms, exclude)
        item = Outgoing(frames, plain=plain)  # its WebSocket bytes are built once, for everyone
        delivered = sum(1 for member in targets if member.deliver(item, volatile))
        self.stats.sent(delivered, frames)
        self.stats.observe_publish(delivered, time.perf_counter() - started)
        return delivered
