"""The application API: handlers per namespace, and emits from anywhere.

::

    app = rtserver.App()

    @app.on("connect")
    async def connect(socket, auth):
        socket.join("lobby")

    @app.on("chat")
    async def chat(socket, text):
        app.emit("chat", text, to="lobby", skip=socket.sid)
        return "ok"          # becomes the ack

Handlers may be plain functions or coroutines.  ``emit`` never blocks and may
be called from any trio task once the server runs.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .faults import report
from .socketio.client import ConnectionRefused
from .socketio.socket import Socket

if TYPE_CHECKING:
    from .socketio.server import SocketInfo, SocketIOServer

log = logging.getLogger("rtserver.app")

Handler = Callable[..., Any]

#: Event names with a meaning of their own rather than a client event.
SPECIAL_EVENTS = ("connect", "disconnect", "*")


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class ClusterIncomplete(Exception):
    """Not every node answered a cluster-wide request in time (or Redis is
    unreachable); ``partial`` holds what did come in, this node's included."""

    def __init__(self, partial: list[Any]) -> None:
        super().__init__("not every node answered in time")
        self.partial = partial


class App:
    def __init__(self) -> None:
        self._handlers: dict[str, dict[str, Handler]] = {}
        self._middleware: dict[str, list[Handler]] = {}
        self._server_side: dict[str, dict[str, Handler]] = {}
        self._server: SocketIOServer | None = None

    # ---------------------------------------------------------- wiring
    def on(self, event: str, handler: Handler | None = None, *, namespace: str = "/") -> Any:
        """Register a handler (use as ``@app.on("event")`` or ``app.on("event", fn)``).

        ``connect``: ``(socket, auth)``, may raise :class:`ConnectionRefused`
        or return False.  ``disconnect``: ``(socket, reason)``.  ``*``:
        ``(socket, event, *args)`` for events with no handler of their own.
        Any other name: ``(socket, *args)``; the return value is the ack.
        """

        def register(fn: Handler) -> Handler:
            self._handlers.setdefault(namespace, {})[event] = fn
            return fn

        return register(handler) if handler is not None else register

    def on_server_side(self, event: str, handler: Handler | None = None, *, namespace: str = "/") -> Any:
        """Register a handler for ``event`` sent by another node with
        :meth:`server_side_emit` (or a Node.js server's ``io.serverSideEmit``):
        ``(*args)``; its return value answers :meth:`server_side_emit_with_ack`."""

        def register(fn: Handler) -> Handler:
            self._server_side.setdefault(namespace, {})[event] = fn
            return fn

        return register(handler) if handler is not None else register

    def server_side_handler(self, namespace: str, event: str) -> Handler | None:
        return self._server_side.get(namespace, {}).get(event)

    def use(self, middleware: Handler, *, namespace: str = "/") -> Handler:
        """Add connect middleware ``(socket, auth)``; runs before ``connect``, in order."""
        self._middleware.setdefault(namespace, []).append(middleware)
        return middleware

    @property
    def namespaces(self) -> frozenset[str]:
        return frozenset(self._handlers) | frozenset(self._middleware)

    def handler_for(self, namespace: str, event: str) -> tuple[Handler, bool] | None:
        """The handler for a client event and whether it is the catch-all."""
        handlers = self._handlers.get(namespace)
        if not handlers:
            return None
        if event not in SPECIAL_EVENTS and event in handlers:
            return handlers[event], False
        if "*" in handlers:
            return handlers["*"], True
        return None

    async def run_connect(self, socket: Socket) -> None:
        for middleware in self._middleware.get(socket.namespace_name, ()):
            if await _maybe_await(middleware(socket, socket.auth)) is False:
                raise ConnectionRefused()
        handler = self._handlers.get(socket.namespace_name, {}).get("connect")
        if handler is not None and await _maybe_await(handler(socket, socket.auth)) is False:
            raise ConnectionRefused()

    def run_disconnect(self, socket: Socket, reason: str) -> None:
        handler = self._handlers.get(socket.namespace_name, {}).get("disconnect")
        if handler is None or self._server is None:
            return

        async def call() -> None:
            try:
                await _maybe_await(handler(socket, reason))
            except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
                report(stats.faults, "event", "disconnect handler", sid=socket.sid)

        stats = self._server.hub.stats
        self._server.nursery.start_soon(call)

    def bind(self, server: SocketIOServer | None) -> None:
        """Attach to (or, with None, detach from) a running server."""
        self._server = server

    # --------------------------------------------------------- runtime
    @property
    def server(self) -> SocketIOServer:
        if self._server is None:
            raise RuntimeError("the server is not running")
        return self._server

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
        """Send an event to rooms or socket ids (``to``), or the whole namespace.

        ``skip`` leaves out rooms or socket ids.  With ``[cluster]`` on it
        reaches the matching sockets of every node (``local``: this node's
        only, as the reference's ``io.local``).  Returns the number of
        sockets on this node that took the event.
        """
        return self.server.emit(event, *args, to=to, namespace=namespace, skip=skip, volatile=volatile, local=local)

    # ------------------------------------------------------- cluster-wide
    async def fetch_sockets(
        self, room: str | Iterable[str] | None = None, *, namespace: str = "/", skip: str | Iterable[str] | None = None
    ) -> list[SocketInfo]:
        """The matching sockets of every node (``sid``, ``rooms``, ``identity``,
        ``node``, ...); this node's alone when the cluster is off.  Raises
        :class:`ClusterIncomplete` when a node did not answer within
        ``cluster.request_timeout``."""
        found, complete = await self.server.fetch_sockets(namespace, room_names(room), room_names(skip) or ())
        if not complete:
            raise ClusterIncomplete(found)
        return found

    def sockets_join(
        self, rooms: str | Iterable[str], *, to: str | Iterable[str] | None = None, namespace: str = "/",
        skip: str | Iterable[str] | None = None,
    ) -> None:
        """Make the matching sockets of every node join ``rooms``."""
        self.server.move_sockets(namespace, room_names(to), room_names(skip) or (), room_names(rooms) or [], [])

    def sockets_leave(
        self, rooms: str | Iterable[str], *, to: str | Iterable[str] | None = None, namespace: str = "/",
        skip: str | Iterable[str] | None = None,
    ) -> None:
        """Make the matching sockets of every node leave ``rooms``."""
        self.server.move_sockets(namespace, room_names(to), room_names(skip) or (), [], room_names(rooms) or [])

    def disconnect_sockets(
        self, *, to: str | Iterable[str] | None = None, namespace: str = "/", skip: str | Iterable[str] | None = None,
        close: bool = False,
    ) -> None:
        """Disconnect the matching sockets of every node: a namespace
        disconnect (stock clients stay away), or with ``close`` their
        connections (stock clients reconnect)."""
        self.server.disconnect_sockets(namespace, room_names(to), room_names(skip) or (), close)

    def server_side_emit(self, event: str, *args: Any, namespace: str = "/") -> None:
        """Send ``event`` to the other nodes' :meth:`on_server_side` handlers
        (and Node.js servers' ``io.on(event)``); none when the cluster is off."""
        bus = self.server.bus
        if bus is not None:
            bus.server_side_emit(namespace, [event, *args])

    async def server_side_emit_with_ack(self, event: str, *args: Any, namespace: str = "/") -> list[Any]:
        """As :meth:`server_side_emit`, and wait for every other node's answer
        (its handler's return value); :class:`ClusterIncomplete` on timeout."""
        bus = self.server.bus
        if bus is None:
            return []
        answers, complete = await bus.server_side_emit_with_ack(namespace, [event, *args])
        if not complete:
            raise ClusterIncomplete(answers)
        return answers

    def socket(self, sid: str, namespace: str = "/") -> Socket | None:
        return self.server.socket(sid, namespace)

    def sockets(self, room: str | None = None, namespace: str = "/") -> list[Socket]:
        """Connected sockets of this node, in a namespace or one room of it
        (:meth:`fetch_sockets` for every node's)."""
        members = self.server.hub.members(namespace, None if room is None else [room])
        return [m for m in members if isinstance(m, Socket)]

    def rooms(self, namespace: str = "/") -> dict[str, int]:
        """Room name -> member count on this node (each socket's own sid room included)."""
        return self.server.hub.rooms(namespace)


def room_names(value: str | Iterable[str] | None) -> list[str] | None:
    """One room name or several as a list; None stays None (every socket)."""
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


__all__ = ["App", "ClusterIncomplete", "ConnectionRefused", "Socket"]
