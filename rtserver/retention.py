"""Retention by event name: latest values per room, and inboxes for offline users.

``[retention] latest`` names events whose last payload per room is kept: a
socket joining that room (a subscription, or its own rooms at connect)
receives it first, so a screen back from a power cut shows the latest layout
without the publisher repeating it.  ``[retention] inbox`` names events that,
sent to ``user:{u}`` while the user has no connected socket, wait in the
store and are delivered in order at the user's next connect.

Writes go through one task in order; a publisher that must know its event is
kept awaits :meth:`Retention.flushed` (the HTTP API does before answering),
after which a crash loses nothing.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

import trio

from .config import RetentionConfig
from .faults import report
from .retained import Retained, Write

if TYPE_CHECKING:
    from .socketio.server import SocketIOServer
    from .socketio.socket import Socket

log = logging.getLogger("rtserver.retention")


class StoreFailed(Exception):
    """What a publisher waited to see kept was not written."""

_LATEST = "latest:"
_INBOX = "inbox:"
_QUEUE = 10_000


class Retention:
    def __init__(self, config: RetentionConfig, retained: Retained, sio: SocketIOServer) -> None:
        self.config = config
        self._retained = retained
        self._latest = frozenset(config.latest)
        self._inbox = frozenset(config.inbox)
        self._send, self._receive = trio.open_memory_channel[Any](_QUEUE)
        self._sio = sio
        #: Writes that failed so far (publishers waiting for theirs compare).
        self._failures = 0

    def retains(self, event: str) -> bool:
        return event in self._latest or event in self._inbox

    # ---------------------------------------------------------- publishing
    def emitted(
        self, namespace: str, event: str, args: tuple[Any, ...], rooms: list[str] | None, remote: bool = False
    ) -> None:
        """Called for every emit: keep what the configuration names.  An emit
        from another node (``remote``) updates the latest values kept here,
        and is written by every node (the same value: a shared store ends
        with the last one either way, and an emit from a Node.js server or
        an emitter, which writes nothing, is kept too); an inbox is kept by
        the node the emit came from only."""
        if namespace != "/" or not rooms:
            return
        if event in self._latest:
            for room in rooms:
                if self._sio.hub.member("/", room) is not None:
                    continue  # a socket's own address, not a room to keep
                self._queue(self._retained.keep_nowait(_LATEST + room, event, list(args)))
        if event in self._inbox and not remote:
            for room in rooms:
                if not room.startswith("user:") or self._sio.hub.members("/", [room]):
                    continue
                if self._sio.bus is None:
                    self._queue(self._retained.append_nowait(_INBOX + room, event, list(args), self.config.inbox_size))
                else:
                    self._queue(functools.partial(self._keep_unless_elsewhere, room, event, list(args)))

    async def _keep_unless_elsewhere(self, room: str, event: str, args: list[Any]) -> None:
        """Clustered: keep an inbox event only if no node has a socket of the
        user (one that did got it through the bus); a node that does not
        answer in time counts as having none, so nothing is lost."""
        found, _ = await self._sio.fetch_sockets("/", [room])
        if not found:
            await self._retained.append(_INBOX + room, event, args, self.config.inbox_size)

    def _queue(self, write: Write | None) -> None:
        """Memory is already up to date; the store write happens in order."""
        if write is None:
            return
        try:
            self._send.send_nowait(write)
        except trio.WouldBlock:
            log.error("retention: the store is far behind; an event was not written")

    async def flushed(self) -> None:
        """Return once everything queued so far is in the store; raise
        :class:`StoreFailed` if a write queued before failed meanwhile."""
        failures = self._failures
        done = trio.Event()
        await self._send.send(done.set)
        await done.wait()
        if self._failures != failures:
            raise StoreFailed("the store failed to keep a retained event")

    async def run(self) -> None:
        """Write in order; a write that fails is reported and counted (the
        publisher waiting in :meth:`flushed` hears of it), and the next goes on."""
        async for job in self._receive:
            try:
                result = job()
                if result is not None:
                    await result
            except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
                self._failures += 1
                report(self._sio.hub.stats.faults, "background", "retention write")

    # ------------------------------------------------------------ replays
    def joined(self, socket: Socket, room: str) -> None:
        """A socket joined ``room``: send it the room's latest values (kept
        for the default namespace only, so replayed there only)."""
        if socket.namespace_name != "/":
            return
        for event, args in self._retained.latest(_LATEST + room).items():
            socket.emit(event, *args)

    def connected(self, socket: Socket) -> None:
        """Deliver what waited for this user; empty their inbox once the
        client has it (:meth:`Socket.when_sent`).  A client that drops first
        leaves the inbox as it was, to be delivered again at its next connect:
        at least once, never lost to a connection that died with the notes in
        its outbox."""
        identity = socket.identity
        if identity is None or socket.namespace_name != "/":
            return
        room = _INBOX + f"user:{identity.user}"
        waiting = self._retained.backlog(room)
        if not waiting:
            return
        for event, args in waiting:
            socket.emit(event, *args)
        upto = self._retained.last_seq(room)
        socket.when_sent(lambda: self._queue(self._retained.trim_nowait(room, upto)))

    def disconnected(self, socket: Socket, reason: str) -> None:
        """Nothing to do: a user's inbox fills only while they are away."""
