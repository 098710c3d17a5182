"""The Socket.IO side of one Engine.IO session: its sockets by namespace."""

from __future__ import annotations

import functools
import inspect
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import trio

from ..auth.errors import Refusal
from ..engineio.clock import Ticket
from ..engineio.session import Session
from ..faults import report
from ..recovery import RECOVERABLE
from .packets import Decoder, Packet, PacketType, PayloadTooDeep, SocketProtocolError
from .socket import Socket, ack_args, to_frames

if TYPE_CHECKING:
    from .server import SocketIOServer

log = logging.getLogger("rtserver.socketio")

#: The auth field a client sets to false to get events without recovery offsets.
NO_OFFSETS_FIELD = "offsets"

#: What ``_call_handler`` returns for an event nobody handles.
_NO_HANDLER = object()


class ConnectionRefused(Exception):
    """Raise from a connect handler or middleware to refuse the connection.

    The client receives CONNECT_ERROR ``{"message": message, "data": data}``
    (its ``connect_error`` event gets an Error whose ``data`` is ``data``).
    """

    def __init__(self, message: str = "Connection refused", data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.data is not None:
            body["data"] = self.data
        return body


class Client:
    """Implements the engine's SessionHandler for Socket.IO (protocol v5;
    :class:`~.client_v2.V2Client` for socket.io-client 2.x)."""

    #: Whether this client's sockets take part in connection state recovery.
    recovers = True

    def __init__(self, server: SocketIOServer, session: Session) -> None:
        self.server = server
        self.session = session
        self.sockets: dict[str, Socket] = {}
        self._decoder = Decoder(server.config.max_attachments)
        #: Made on the first event: many connections (screens) never send one.
        self._handler_slots: trio.Semaphore | None = None
        self._bucket = server.guard.new_event_bucket()
        #: When this client's recent events were refused (made on the first).
        self._refusals: deque[float] | None = None
        #: Cancel scopes of running event handlers, by socket: they end with it.
        self._running: dict[Socket, set[trio.CancelScope]] = {}
        #: Ends the session unless a namespace connects in time (cancelled
        #: by the first namespace that does).
        self._connect_deadline: Ticket | None = None

    # -------------------------------------------------- SessionHandler
    def opened(self) -> None:
        self._connect_deadline = self.session.call_later(self.server.config.connect_timeout, self._connect_expired)

    async def message(self, data: str | bytes) -> None:
        try:
            packet = self._decoder.feed(data)
        except PayloadTooDeep as exc:
            self._too_deep(exc.packet, str(exc))
            return
        except SocketProtocolError as exc:
            log.info("protocol error: %s", exc, extra={"fields": {"sid": self.session.sid}})
            self.session.abort("parse error", ws_code=1002)
            return
        if packet is None:
            return
        socket = self.sockets.get(packet.namespace)
        if packet.type is PacketType.CONNECT and socket is None:
            await self._connect(packet)
        elif socket is None or packet.type is PacketType.CONNECT:
            self._invalid_state(packet)
        elif packet.type is PacketType.EVENT:
            refusal = self.server.guard.check_event(socket, packet.data[0], self._bucket)
            if refusal is not None:
                socket.refuse(refusal, packet.data[0], packet.id)
                if self._refusals is None:
                    self._refusals = deque()
                if self.server.guard.abusive(self._refusals):
                    log.info("abusive client disconnected", extra={"fields": {"sid": self.session.sid}})
                    for each in list(self.sockets.values()):
                        each.disconnect()
                return
            await self._dispatch(socket, packet)
        elif packet.type is PacketType.ACK:
            assert packet.id is not None
            socket.resolve_ack(packet.id, packet.data)
        elif packet.type is PacketType.DISCONNECT:
            self.remove(socket, "client namespace disconnect")
        else:
            log.info("unexpected %s from client", packet.type.name, extra={"fields": {"sid": self.session.sid}})
            self.session.abort("parse error", ws_code=1002)

    def _invalid_state(self, packet: Packet) -> None:
        """A CONNECT for a namespace already joined, or any other packet for
        one not joined: the connection ends, as the reference server ends it
        (the protocol: a client that does not CONNECT first is closed)."""
        log.info(
            "invalid state: %s for namespace %s",
            packet.type.name,
            packet.namespace,
            extra={"fields": {"sid": self.session.sid}},
        )
        self.session.close("forced server close")

    def _too_deep(self, packet: Packet, message: str) -> None:
        """Refuse a packet nested too deeply (the session goes on)."""
        log.info("refused: %s", message, extra={"fields": {"sid": self.session.sid, "type": packet.type.name}})
        refusal = Refusal("invalid_message", message, 400)
        if packet.type is PacketType.CONNECT:
            self._refuse_connect(packet.namespace, refusal.code, refusal.connect_error())
            return
        socket = self.sockets.get(packet.namespace)
        if socket is not None and packet.type is PacketType.EVENT:
            # Beyond the parser's own depth the event's name is not known.
            event = packet.data[0] if packet.data else None
            socket.refuse(refusal, event if isinstance(event, str) else None, packet.id)
        # An ack nested too deeply is dropped: the server's call times out.

    def busy(self) -> bool:
        return any(self._running.values())

    def closed(self, reason: str) -> None:
        self._cancel_connect_deadline()
        for socket in list(self.sockets.values()):
            self.remove(socket, reason)

    # --------------------------------------------------------- sockets
    def send_packet(self, packet: Packet) -> None:
        self.session.send(to_frames(packet))

    def _connect_expired(self) -> None:
        self._connect_deadline = None
        self.session.abort("connect timeout")

    def _cancel_connect_deadline(self) -> None:
        if self._connect_deadline is not None:
            self._connect_deadline.cancel()
            self._connect_deadline = None

    def _target(self, packet: Packet) -> tuple[str, Any]:
        """The namespace a CONNECT asks for, and its auth payload."""
        return packet.namespace, packet.data if packet.data is not None else {}

    def _new_socket(self, namespace: str, auth: Any) -> Socket:
        return Socket(self, namespace, auth)

    def _connected(self, socket: Socket) -> Packet:
        """The CONNECT answer: the socket's id, and its pid for recovery."""
        answer = {"sid": socket.sid} if socket.pid is None else {"sid": socket.sid, "pid": socket.pid}
        return Packet(PacketType.CONNECT, socket.namespace_name, answer)

    def _connect_error(self, namespace: str, payload: dict[str, Any]) -> Packet:
        """A refusal's CONNECT_ERROR (``payload``: ``{message, data?}``)."""
        return Packet(PacketType.CONNECT_ERROR, namespace, payload)

    async def _connect(self, packet: Packet) -> None:
        namespace, auth = self._target(packet)
        if not self.server.namespace_allowed(namespace):
            self.send_packet(Packet(PacketType.CONNECT_ERROR, namespace, {"message": "Invalid namespace"}))
            return
        if namespace in self.sockets:
            self._invalid_state(packet)  # a namespace with a query (2.x) already joined
            return
        recovery = self.server.recovery
        pid = offset = None
        if recovery.enabled and self.recovers and "pid" in auth:
            auth = dict(auth)
            pid, offset = auth.pop("pid"), auth.pop("offset", None)
        socket = self._new_socket(namespace, auth)
        guard = self.server.guard
        try:
            identity = await guard.authenticate(socket)
        except Refusal as refusal:
            self._refuse_connect(namespace, refusal.code, refusal.connect_error())
            return
        except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
            report(self.server.hub.stats.faults, "event", "authentication", sid=self.session.sid)
            self._refuse_connect(namespace, "internal_error", {"message": "Internal server error"})
            return
        missed: list[tuple[Any, ...]] = []
        if recovery.enabled and (not self.recovers or (isinstance(auth, dict) and auth.get(NO_OFFSETS_FIELD) is False)):
            # A client whose handlers take a fixed number of arguments
            # (python-socketio), or one without recovery (2.x): plain events,
            # and nothing to recover.
            socket.offsets = False
        elif recovery.enabled:
            restored = None
            if pid is not None:
                self._take_over(pid)
                restored = await recovery.restore(pid, offset, identity.user, namespace, identity.anonymous)
            if restored is not None:
                saved, missed = restored
                socket.sid, socket.pid, socket.recovered = saved.sid, saved.pid, True
            else:
                socket.pid = recovery.new_pid()
            socket.start_seq = recovery.seq
        self.server.hub.add(socket)
        guard.attach(socket, identity)
        if socket.recovered:
            socket.join(*saved.rooms)
        refused: tuple[str, dict[str, Any]] | None = None
        try:
            await self.server.run_connect(socket)
        except Refusal as refusal:
            refused = refusal.code, refusal.connect_error()
        except ConnectionRefused as exc:
            refused = "refused", exc.payload()
        except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
            report(self.server.hub.stats.faults, "event", "connect handler", sid=self.session.sid)
            refused = "internal_error", {"message": "Internal server error"}
        except BaseException:
            # Cancelled: the session ended while its connect handlers ran.
            self._unregister(socket)
            raise
        if refused is not None or self.session.close_reason is not None:
            self._unregister(socket)
            if refused is not None:
                self._refuse_connect(namespace, *refused)
            return
        socket.connected = True
        self._cancel_connect_deadline()
        self.sockets[namespace] = socket
        self.send_packet(self._connected(socket))
        if socket.pid is not None:
            self.server.by_pid[socket.pid] = socket
        for frames in missed:
            self.session.send(frames)
        socket.release_held(send=True)
        for listener in self.server.listeners:
            listener.connected(socket)

    def _unregister(self, socket: Socket) -> None:
        """Undo a connect that did not complete (what waited for it is dropped)."""
        self.server.guard.detach(socket)
        self.server.hub.remove(socket)
        socket.release_held(send=False)

    def _take_over(self, pid: Any) -> None:
        """A reconnect presenting the pid of a socket the server still holds
        (its old transport not yet timed out): end the old one so its session
        can be recovered now rather than refused."""
        old = self.server.by_pid.get(pid) if isinstance(pid, str) else None
        if old is not None and old.client is not self:
            self.server.release(pid)

    def _refuse_connect(self, namespace: str, code: str, payload: dict[str, Any]) -> None:
        self.server.hub.stats.refusals[code] += 1
        log.info(
            "connection refused",
            extra={"fields": {"sid": self.session.sid, "namespace": namespace, "code": code}},
        )
        self.send_packet(self._connect_error(namespace, payload))

    async def _dispatch(self, socket: Socket, packet: Packet) -> None:
        """Call an event's handler in the reader, in arrival order.

        A plain function runs to completion here: no task, no scheduling
        round, so a burst of events is handled in one go (a publish loop
        over polling clients then fills each pending poll with the whole
        burst instead of one message per request). A coroutine handler gets
        its own task, started before the next event is read (``start``
        returns once it runs), so one awaiting an ack or sleeping does not
        hold back later events; at most ``handler_concurrency`` run at once.
        """
        event, *args = packet.data
        for observer in self.server.observers:
            observer.received(socket, event, args)
        try:
            result = self._call_handler(socket, packet, event, args)
        except Refusal as refusal:
            socket.refuse(refusal, event, packet.id)
            return
        except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
            self._handler_failed(socket, packet)
            return
        if result is _NO_HANDLER:
            return
        if not inspect.isawaitable(result):
            self._ack(socket, packet, result)
            return
        if self._handler_slots is None:
            self._handler_slots = trio.Semaphore(self.server.config.handler_concurrency)
        try:
            # acquire() always yields; a free slot is taken without a round.
            self._handler_slots.acquire_nowait()
        except trio.WouldBlock:
            try:
                await self._handler_slots.acquire()
            except BaseException:
                _discard(result)
                raise
        # The new task reaches started() before any checkpoint, so once the
        # slot is held the coroutine is always awaited (or closed by Cancelled).
        await self.session.start(self._run_event, socket, packet, result)

    def _call_handler(self, socket: Socket, packet: Packet, event: str, args: list[Any]) -> Any:
        handler = self.server.handler_for(socket.namespace_name, event)
        if handler is None:
            return _NO_HANDLER
        func, catch_all = handler
        call_args = (event, *args) if catch_all else tuple(args)
        if not _accepts(func, len(call_args) + 1):
            log.info(
                "event %r: handler does not take %d argument(s)",
                event,
                len(call_args),
                extra={"fields": {"sid": self.session.sid}},
            )
            raise Refusal("bad_arguments", f"wrong number of arguments for {event!r}", 400)
        return func(socket, *call_args)

    def _handler_failed(self, socket: Socket, packet: Packet) -> None:
        """A handler raised something unexpected (call from ``except``):
        report it, and answer the event with ``internal_error``."""
        event = packet.data[0]
        report(self.server.hub.stats.faults, "event", "event handler", sid=self.session.sid, event=event)
        if socket.connected:
            socket.refuse(Refusal("internal_error", "the server failed to handle this event", 500), event, packet.id)

    def _ack(self, socket: Socket, packet: Packet, result: Any) -> None:
        if packet.id is not None and socket.connected:
            self.send_packet(Packet(PacketType.ACK, socket.namespace_name, ack_args(result), packet.id))

    async def _run_event(
        self, socket: Socket, packet: Packet, pending: Any, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Await a coroutine handler; it is cancelled if its socket disconnects."""
        scopes = self._running.setdefault(socket, set())
        with trio.CancelScope() as scope:
            scopes.add(scope)
            task_status.started()
            try:
                self._ack(socket, packet, await pending)
            except Refusal as refusal:
                socket.refuse(refusal, packet.data[0], packet.id)
            except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
                self._handler_failed(socket, packet)
            finally:
                assert self._handler_slots is not None
                self._handler_slots.release()
                scopes.discard(scope)
                if not scopes and self._running.get(socket) is scopes:
                    del self._running[socket]

    def remove(self, socket: Socket, reason: str) -> None:
        if self.sockets.get(socket.namespace_name) is socket:
            del self.sockets[socket.namespace_name]
        if not socket.connected:
            return
        socket.connected = False
        if socket.pid is not None:
            if self.server.by_pid.get(socket.pid) is socket:
                del self.server.by_pid[socket.pid]
            if reason in RECOVERABLE:
                self.server.recovery.persist(socket)
        for scope in self._running.pop(socket, ()):
            scope.cancel()
        self.server.guard.detach(socket)
        for listener in self.server.listeners:
            listener.disconnected(socket, reason)
        socket.fail_acks()
        self.server.hub.remove(socket)
        self.server.app.run_disconnect(socket, reason)


@functools.lru_cache(maxsize=1024)
def _signature(func: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def _discard(pending: Any) -> None:
    """Close a handler's coroutine that will never run (its session ended)."""
    close = getattr(pending, "close", None)
    if close is not None:
        close()


def _accepts(func: Any, count: int) -> bool:
    """Whether ``func`` can be called with ``count`` positional arguments."""
    signature = _signature(func)
    if signature is None:
        return True
    try:
        signature.bind(*([None] * count))
    except TypeError:
        return False
    return True
