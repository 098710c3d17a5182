"""A Socket.IO socket: one client connected to one namespace."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ..auth.errors import Refusal
from ..auth.identity import Identity
from ..engineio.clock import Ticket
from ..engineio.packets import Frame, Outgoing
from ..http.messages import Request
from .packets import Packet, PacketType, check_event_name, encode

if TYPE_CHECKING:
    from .client import Client


def to_frames(packet: Packet) -> tuple[Frame, ...]:
    """Encode a Socket.IO packet as Engine.IO MESSAGE frames."""
    text, *attachments = encode(packet)
    return ("4" + text, *attachments)


def event_frames(namespace: str, event: str, args: tuple[Any, ...], ack_id: int | None = None) -> tuple[Frame, ...]:
    return to_frames(Packet(PacketType.EVENT, namespace, [event, *args], ack_id))


def ack_args(result: Any) -> list[Any]:
    """A handler's return value as ack arguments: a tuple spreads, None is none."""
    if result is None:
        return []
    if isinstance(result, tuple):
        return list(result)
    return [result]


class Socket:
    """What handlers receive: identity, rooms, and ways to talk back.

    ``data`` is free for the application (the user, the tenant, ...).
    """

    def __init__(self, client: Client, namespace: str, auth: Any) -> None:
        self.sid = secrets.token_urlsafe(15)
        self.namespace_name = namespace
        self.client = client
        self.auth = auth
        self.rooms: set[str] = set()
        self.data: dict[str, Any] = {}
        self.connected = False
        #: Who the socket is (set when it connects; anonymous with auth off).
        self.identity: Identity | None = None
        #: Ends the socket when its token expires (set by the guard).
        self.expiry: Ticket | None = None
        #: Connection state recovery: private session id, where its replay
        #: would start, and whether this connection recovered an earlier one.
        self.pid: str | None = None
        self.start_seq: int | str = 0
        self.recovered = False
        #: False: events reach this socket without their recovery offset
        #: (the client asked so in its auth payload; it cannot recover).
        self.offsets = True
        self._ack_ids = itertools.count()
        #: Ack id -> called with the client's ack arguments, or None when
        #: the socket went away first.
        self._acks: dict[int, Callable[[list[Any] | None], None]] = {}
        #: While connect handlers run, what is sent to the socket waits here so
        #: it reaches the client after the CONNECT answer; None once decided.
        self._held: list[tuple[Outgoing | tuple[Frame, ...], bool]] | None = []

    def __repr__(self) -> str:
        return f"<Socket {self.sid} {self.namespace_name}>"

    @property
    def handshake(self) -> Request:
        """The HTTP request that opened the connection (headers, query, remote)."""
        return self.client.session.request

    @property
    def transport(self) -> str:
        return self.client.session.transport

    # ------------------------------------------------------------- hub side
    def deliver(self, frames: Outgoing | tuple[Frame, ...], volatile: bool) -> bool:
        if not self.offsets and isinstance(frames, Outgoing):
            frames = frames.plain()
        if self._held is not None:
            self._held.append((frames, volatile))
            return True
        return self.client.session.send(frames, volatile)

    def release_held(self, send: bool) -> None:
        """End the connecting phase: send (or, when refused, drop) what waited."""
        held, self._held = self._held, None
        if send and held:
            for frames, volatile in held:
                self.client.session.send(frames, volatile)

    # ------------------------------------------------------------ app side
    def when_sent(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once what was sent so far has reached the client
        (see :meth:`Session.when_sent`); never if the connection ends first."""
        self.client.session.when_sent(callback)

    def emit(self, event: str, *args: Any, volatile: bool = False) -> bool:
        """Send an event to this socket; never blocks.  Raises ValueError
        for a reserved name (``connect``, ``disconnect``, ...)."""
        check_event_name(event)
        if not self.connected and self._held is None:
            return False
        server = self.client.server
        if server.recovery.enabled and not volatile and server.recovery.keeps(event):
            # Numbered like any emit, so a recovering client gets it again.
            return server.emit(event, *args, to=self.sid, namespace=self.namespace_name) > 0
        frames = event_frames(self.namespace_name, event, args)
        if not self.deliver(frames, volatile):
            return False
        server.hub.stats.sent(1, frames)
        for observer in server.observers:
            observer.sent(self.namespace_name, event, args, [self.sid])
        return True

    async def call(self, event: str, *args: Any, timeout: float | None = None) -> Any:
        """Emit and wait for the client's ack; raises ``trio.TooSlowError`` on timeout.

        Returns the single ack argument, or a tuple when there are several.
        """
        check_event_name(event)
        ack_id = next(self._ack_ids)
        send, receive = trio.open_memory_channel[list[Any]](1)
        self._acks[ack_id] = lambda values: send.close() if values is None else send.send_nowait(values)
        try:
            if not self.deliver(event_frames(self.namespace_name, event, args, ack_id), False):
                raise ConnectionError("socket is not connected")
            with trio.fail_after(timeout if timeout is not None else self.client.server.config.ack_timeout):
                try:
                    values = await receive.receive()
                except trio.EndOfChannel:
                    raise ConnectionError("socket disconnected before acknowledging") from None
        finally:
            self._acks.pop(ack_id, None)
        return values[0] if len(values) == 1 else tuple(values)

    def emit_with_ack(self, event: str, args: tuple[Any, ...], on_ack: Callable[[list[Any]], None], timeout: float) -> bool:
        """Send an event asking for an ack; ``on_ack(args)`` once the client
        answers within ``timeout`` seconds (for a cluster broadcast with acks)."""
        ack_id = next(self._ack_ids)
        if not self.deliver(event_frames(self.namespace_name, event, args, ack_id), False):
            return False
        self._acks[ack_id] = lambda values: None if values is None else on_ack(values)
        self.client.session.call_later(timeout, lambda: self._acks.pop(ack_id, None))
        return True

    def details(self) -> dict[str, Any]:
        """This socket as another node sees it (a cluster-wide fetch): the
        reference's ``id``, ``handshake``, ``rooms`` and ``data``, plus
        ``identity``.  Credentials (the token's auth field, the
        Authorization and Cookie headers) stay on this node."""
        request = self.handshake
        field = self.client.server.guard.auth.auth_field
        identity = self.identity
        return {
            "id": self.sid,
            "handshake": {
                "headers": {k: v for k, v in request.headers.items() if k not in ("authorization", "cookie")},
                "query": dict(request.query),
                "address": request.remote,
                "url": request.target,
                "auth": {k: v for k, v in self.auth.items() if k != field} if isinstance(self.auth, dict) else {},
            },
            "rooms": sorted(self.rooms),
            "data": self.data,
            "identity": None if identity is None else {
                "user": identity.user,
                "tenant": identity.tenant,
                "roles": sorted(identity.roles),
                "devices": sorted(identity.devices),
                "device": identity.device,
                "session": identity.session,
            },
        }

    def refuse(self, refusal: Refusal, event: Any, ack_id: int | None) -> None:
        """Answer a refused client event (rate limit, roles, bad arguments, a
        handler's Refusal): the event's refusal shaper if a feature set one,
        else in its ack when it asked for one, else with the error event."""
        server = self.client.server
        server.hub.stats.refusals[refusal.code] += 1
        shaper = server.refusal_shapers.get(event) if isinstance(event, str) else None
        if shaper is not None:
            shaper(self, refusal, event, ack_id)
            return
        if ack_id is not None:
            self.deliver(to_frames(Packet(PacketType.ACK, self.namespace_name, [{"error": refusal.as_dict()}], ack_id)), False)
        else:
            self.emit(self.client.server.guard.auth.error_event, {**refusal.as_dict(), "event": event})

    def join(self, *rooms: str) -> None:
        server = self.client.server
        for room in rooms:
            if room in self.rooms:
                continue
            server.hub.join(self, room)
            if server.retention is not None:
                server.retention.joined(self, room)
            for observer in server.observers:
                observer.joined(self, room)

    def leave(self, *rooms: str) -> None:
        server = self.client.server
        for room in rooms:
            if room != self.sid and room in self.rooms:
                server.hub.leave(self, room)
                for observer in server.observers:
                    observer.left(self, room)

    def disconnect(self) -> None:
        """Disconnect from this namespace; the stock client does not reconnect."""
        if self.connected:
            self.deliver(to_frames(Packet(PacketType.DISCONNECT, self.namespace_name)), False)
            self.client.remove(self, "server namespace disconnect")

    def close_connection(self, reason: str = "forced close") -> None:
        """Close the underlying connection; the stock client reconnects by itself."""
        self.client.session.close(reason)

    # --------------------------------------------------------- client side
    def resolve_ack(self, ack_id: int, values: list[Any]) -> bool:
        waiting = self._acks.pop(ack_id, None)
        if waiting is None:
            return False
        waiting(values)
        return True

    def fail_acks(self) -> None:
        acks, self._acks = self._acks, {}
        for waiting in acks.values():
            waiting(None)
