"""The Socket.IO runtime: binds an App, the hub and the engine sessions."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attrs
import trio

from ..app import App, room_names
from ..auth.errors import Refusal
from ..auth.guard import Guard
from ..cluster.bus import RedisBus
from ..cluster.history import SharedRecovery
from ..config import SocketIOConfig
from ..engineio.session import Session
from ..hub import Hub
from ..recovery import Recovery
from ..retention import Retention
from .client import Client
from .client_v2 import V2Client
from .packets import check_event_name
from .socket import Socket, event_frames

log = logging.getLogger("rtserver.socketio")


@attrs.frozen
class SocketInfo:
    """A socket on some node, as :meth:`App.fetch_sockets` reports it.
    ``app.emit(event, to=info.sid)`` reaches it wherever it is."""

    sid: str
    namespace: str
    rooms: frozenset[str]
    #: ``{user, tenant, roles, devices, device, session}``; None for a
    #: socket of a node that is not rtserver (a Node.js socket.io server).
    identity: dict[str, Any] | None
    #: The node holding it (its ``cluster.node_id``); None when unknown or
    #: when the cluster is off.
    node: str | None
    local: bool
    #: The socket's ``data`` (free for the application).
    data: Any = None
    handshake: dict[str, Any] = attrs.field(factory=dict, repr=False)

    @classmethod
    def of(cls, details: dict[str, Any], namespace: str, node: str | None, local: bool) -> SocketInfo:
        """From a socket's description (this node's, or another node's answer: untrusted shapes)."""
        rooms = details.get("rooms")
        identity = details.get("identity")
        handshake = details.get("handshake")
        remote_node = details.get("node")
        return cls(
            sid=details["id"],
            namespace=namespace,
            rooms=frozenset(r for r in rooms if isinstance(r, str)) if isinstance(rooms, list) else frozenset(),
            identity=identity if isinstance(identity, dict) else None,
            node=node if local else remote_node if isinstance(remote_node, str) else None,
            local=local,
            data=details.get("data"),
            handshake=handshake if isinstance(handshake, dict) else {},
        )


class SocketListener(Protocol):
    def connected(self, socket: Socket) -> None: ...

    def disconnected(self, socket: Socket, reason: str) -> None: ...


class Observer(Protocol):
    """Watches rooms and events pass through this node (admin UI, dashboard).

    Called synchronously where it happens: an observer must not block, and
    should be cheap (it runs on the hot path while registered).  A socket
    that disconnects leaves its rooms without ``left`` calls; the listeners'
    ``disconnected`` says so.
    """

    def joined(self, socket: Socket, room: str) -> None: ...

    def left(self, socket: Socket, room: str) -> None: ...

    def received(self, socket: Socket, event: str, args: list[Any]) -> None:
        """A client event, once admitted by the guard, before its handler runs."""

    def sent(self, namespace: str, event: str, args: tuple[Any, ...], rooms: list[str] | None) -> None:
        """An emit from the server: to ``rooms`` (a socket's own sid for one
        socket), or the whole namespace when None."""


#: ``(socket, refusal, event, ack_id)``: answer a refused client event.
RefusalShaper = Callable[[Socket, Refusal, Any, int | None], None]


class SocketIOServer:
    def __init__(
        self, config: SocketIOConfig, app: App, hub: Hub, guard: Guard, nursery: trio.Nursery, recovery: Recovery
    ) -> None:
        self.config = config
        #: This node's history, or (clustered) the one every node shares.
        self.recovery: Recovery | SharedRecovery = recovery
        #: Live sockets by private session id (connection state recovery).
        self.by_pid: dict[str, Socket] = {}
        #: Keeps events by name ([retention]); set by the server when configured.
        self.retention: Retention | None = None
        self.app = app
        self.hub = hub
        self.guard = guard
        #: Handlers rtserver itself provides; the application's take precedence.
        self.builtins = App()
        #: Runs disconnect handlers, which outlive the session that ended.
        self.nursery = nursery
        #: Told of every socket that connects or disconnects (presence, ...).
        self.listeners: list[SocketListener] = []
        #: Told of every room joined or left and every event in and out.
        self.observers: list[Observer] = []
        #: Event name -> how a refused event of that name is answered, for
        #: vocabularies with an error shape of their own (see Socket.refuse).
        self.refusal_shapers: dict[str, RefusalShaper] = {}
        #: The cluster bus when ``[cluster]`` is on: emits reach every node.
        self.bus: RedisBus | None = None

    def open_client(self, session: Session) -> Client:
        return Client(self, session) if session.protocol == 4 else V2Client(self, session)

    def namespace_allowed(self, namespace: str) -> bool:
        return (
            namespace in self.config.namespaces
            or namespace in self.app.namespaces
            or namespace in self.builtins.namespaces
        )

    def handler_for(self, namespace: str, event: str) -> tuple[Any, bool] | None:
        """The application's handler, else a built-in one (channels, features)."""
        return self.app.handler_for(namespace, event) or self.builtins.handler_for(namespace, event)

    async def run_connect(self, socket: Socket) -> None:
        await self.builtins.run_connect(socket)
        await self.app.run_connect(socket)

    def emit(
        self,
        event: str,
        *args: Any,
        to: str | Iterable[str] | None = None,
        namespace: str = "/",
        skip: str | Iterable[str] | None = None,
        volatile: bool = False,
        local: bool = False,
    ) -> int:
        """Send to this node's matching sockets, and (clustered, unless
        ``local``) to every other node's; returns how many sockets on this
        node took it."""
        check_event_name(event)
        rooms, exclude = room_names(to), room_names(skip) or ()
        if self.retention is not None:
            self.retention.emitted(namespace, event, args, rooms)
        recovery = self.recovery
        if (
            not recovery.numbers_locally and not local and not volatile and recovery.keeps(event)
            and recovery.append(namespace, event, args, rooms, exclude)
        ):
            # Every node (this one too) delivers it from the shared history, numbered there.
            return len(self.hub.members(namespace, rooms, exclude))
        delivered = self._deliver(namespace, event, args, rooms, exclude, volatile)
        bus = self.bus
        if bus is not None and not local:
            bus.broadcast(namespace, [event, *args], rooms, exclude, volatile)
        return delivered

    def _deliver(
        self,
        namespace: str,
        event: str,
        args: tuple[Any, ...],
        rooms: list[str] | None,
        exclude: Iterable[str],
        volatile: bool,
        offset: str | None = None,
    ) -> int:
        """Fan out here; numbered for recovery (``offset``: the shared history's number)."""
        plain = seq = None
        recovery = self.recovery
        if offset is None and recovery.enabled and recovery.numbers_locally and not volatile and recovery.keeps(event):
            seq, offset = recovery.next_offset()
        if offset is not None:
            # The offset rides as the last argument: the client keeps the last
            # one seen.  Sockets that asked for none get the plain event.
            frames = event_frames(namespace, event, (*args, offset))
            plain = functools.partial(event_frames, namespace, event, args)
            if seq is not None:
                recovery.record(seq, namespace, rooms, exclude, frames)
        else:
            frames = event_frames(namespace, event, args)
        for observer in self.observers:
            observer.sent(namespace, event, args, rooms)
        return self.hub.publish(namespace, frames, rooms, exclude, volatile, plain)

    def release(self, pid: str) -> bool:
        """End the socket that still holds ``pid`` (its old transport not yet
        timed out), keeping its session for the reconnect that presents it."""
        old = self.by_pid.get(pid)
        if old is None:
            return False
        old.client.remove(old, "transport close")
        old.client.session.abort("replaced by a new connection")
        return True

    def history_entry(
        self, namespace: str, event: str, args: tuple[Any, ...], rooms: list[str] | None, exclude: list[str],
        offset: str | None, remote: bool,
    ) -> None:
        """An event read from the cluster's shared history (any node's emit,
        this one's too), or one of this node's that Redis lost on the way (no offset)."""
        if remote and self.retention is not None:
            self.retention.emitted(namespace, event, args, rooms, remote=True)
        self._deliver(namespace, event, args, rooms, exclude, False, offset)

    # ------------------------------------------------- from other nodes (Receiver)
    def remote_broadcast(
        self, namespace: str, data: list[Any], rooms: list[str] | None, exclude: list[str], volatile: bool
    ) -> None:
        """Another node's emit: numbered for recovery here, the latest values
        kept ([retention] latest; inboxes are the emitting node's), fanned out."""
        event, args = data[0], tuple(data[1:])
        if self.retention is not None:
            self.retention.emitted(namespace, event, args, rooms, remote=True)
        self._deliver(namespace, event, args, rooms, exclude, volatile)

    def remote_broadcast_with_ack(
        self,
        namespace: str,
        data: list[Any],
        rooms: list[str] | None,
        exclude: list[str],
        timeout: float,
        on_count: Callable[[int], None],
        on_ack: Callable[[Any], None],
    ) -> None:
        """Another node's emit that wants each client's ack (the reference's
        ``io.timeout(ms).emit(..., callback)``)."""
        event, args = data[0], tuple(data[1:])
        count = 0
        for member in self.hub.members(namespace, rooms, exclude):
            if isinstance(member, Socket) and member.emit_with_ack(
                event, args, lambda values: on_ack(values[0] if values else None), timeout
            ):
                count += 1
        on_count(count)

    def server_side_event(self, namespace: str, data: list[Any], reply: Callable[[Any], None] | None) -> bool:
        """Run the app's server-side handler for another node's event."""
        found = self.app.server_side_handler(namespace, data[0])
        if found is None:
            return False

        async def run() -> None:
            try:
                result = found(*data[1:])
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                log.exception("server-side event handler failed", extra={"fields": {"event": data[0]}})
                return
            if reply is not None:
                reply(result)

        self.nursery.start_soon(run)
        return True

    # ---------------------------------------------------- cluster-wide operations
    async def fetch_sockets(
        self, namespace: str, rooms: list[str] | None, exclude: Iterable[str] = ()
    ) -> tuple[list[SocketInfo], bool]:
        """Matching sockets on every node, and whether every node answered."""
        exclude = list(exclude)
        node = self.bus.uid if self.bus is not None else None
        found = [
            SocketInfo.of(m.details(), namespace, node, local=True)
            for m in self.hub.members(namespace, rooms, exclude)
            if isinstance(m, Socket)
        ]
        if self.bus is None:
            return found, True
        remote, complete = await self.bus.fetch(namespace, rooms, exclude)
        return found + [SocketInfo.of(d, namespace, None, local=False) for d in remote], complete

    def move_sockets(
        self, namespace: str, rooms: list[str] | None, exclude: Iterable[str], join: list[str], leave: list[str]
    ) -> None:
        """The matching sockets of every node join ``join``, then leave ``leave``."""
        exclude = list(exclude)
        for member in self.hub.members(namespace, rooms, exclude):
            member.join(*join)
            member.leave(*leave)
        if self.bus is not None:
            if join:
                self.bus.sockets_join(namespace, rooms, exclude, join)
            if leave:
                self.bus.sockets_leave(namespace, rooms, exclude, leave)

    def disconnect_sockets(self, namespace: str, rooms: list[str] | None, exclude: Iterable[str], close: bool) -> None:
        """``close``: drop the connections (stock clients reconnect); else a
        namespace disconnect (they stay away)."""
        exclude = list(exclude)
        for member in self.hub.members(namespace, rooms, exclude):
            if close:
                member.close_connection("disconnected by the server")
            else:
                member.disconnect()
        if self.bus is not None:
            self.bus.disconnect_sockets(namespace, rooms, exclude, close)

    def socket(self, sid: str, namespace: str = "/") -> Socket | None:
        member = self.hub.member(namespace, sid)
        return member if isinstance(member, Socket) else None
