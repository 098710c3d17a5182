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
    from .socketio.server import SocketIOServer

log = logging.getLogger("rtserver.app")

Handler = Callable[..., Any]

#: Event names with a meaning of their own rather than a client event.
SPECIAL_EVENTS = ("connect", "disconnect", "*")


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class App:
    def __init__(self) -> None:
        self._handlers: dict[str, dict[str, Handler]] = {}
        self._middleware: dict[str, list[Handler]] = {}
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
    ) -> int:
        """Send an event to rooms or socket ids (``to``), or the whole namespace.

        ``skip`` leaves out rooms or socket ids.  Returns the number of
        sockets on this node that took the event.
        """
        return self.server.emit(event, *args, to=to, namespace=namespace, skip=skip, volatile=volatile)

    def socket(self, sid: str, namespace: str = "/") -> Socket | None:
        return self.server.socket(sid, namespace)

    def sockets(self, room: str | None = None, namespace: str = "/") -> list[Socket]:
        """Connected sockets of a namespace, or of one room in it."""
        members = self.server.hub.members(namespace, None if room is None else [room])
        return [m for m in members if isinstance(m, Socket)]

    def rooms(self, namespace: str = "/") -> dict[str, int]:
        """Room name -> member count (each socket's own sid room included)."""
        return self.server.hub.rooms(namespace)


__all__ = ["App", "ConnectionRefused", "Socket"]
