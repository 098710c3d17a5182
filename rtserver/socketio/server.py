"""The Socket.IO runtime: binds an App, the hub and the engine sessions."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import trio

from ..app import App
from ..auth.errors import Refusal
from ..auth.guard import Guard
from ..config import SocketIOConfig
from ..engineio.session import Session
from ..hub import Hub
from ..recovery import Recovery
from ..retention import Retention
from .client import Client
from .packets import check_event_name
from .socket import Socket, event_frames


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


def _names(value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return list(value)


class SocketIOServer:
    def __init__(
        self, config: SocketIOConfig, app: App, hub: Hub, guard: Guard, nursery: trio.Nursery, recovery: Recovery
    ) -> None:
        self.config = config
        self.recovery = recovery
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

    def open_client(self, session: Session) -> Client:
        return Client(self, session)

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
    ) -> int:
        check_event_name(event)
        rooms, exclude = _names(to), _names(skip) or ()
        plain = None
        if self.recovery.enabled and not volatile and self.recovery.keeps(event):
            # The offset rides as the last argument: the client keeps the last
            # one seen.  Sockets that asked for none get the plain event.
            seq, offset = self.recovery.next_offset()
            frames = event_frames(namespace, event, (*args, offset))
            self.recovery.record(seq, namespace, rooms, exclude, frames)
            plain = functools.partial(event_frames, namespace, event, args)
        else:
            frames = event_frames(namespace, event, args)
        if self.retention is not None:
            self.retention.emitted(namespace, event, args, rooms)
        for observer in self.observers:
            observer.sent(namespace, event, args, rooms)
        return self.hub.publish(namespace, frames, rooms, exclude, volatile, plain)

    def socket(self, sid: str, namespace: str = "/") -> Socket | None:
        member = self.hub.member(namespace, sid)
        return member if isinstance(member, Socket) else None
