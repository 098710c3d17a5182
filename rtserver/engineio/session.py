"""One Engine.IO session: its transport, outbox and heartbeat.

A session runs in its own nursery (:meth:`Session.run`).  Over WebSocket its
main task is the reader, which hands each message to the Socket.IO layer, and
a writer task runs only while something is queued.  Over long-polling the
HTTP requests play reader (POST) and writer (GET) while the main task waits
for an upgrade, after which it reads the WebSocket.  The heartbeat (pings,
ping timeout) and one-off timers are kept by the server's :class:`Clock`, so
an idle connection has one task and no timer of its own.

Everything bound for the client goes through one bounded queue, the outbox,
unless it can go straight to an idle WebSocket (see :meth:`send`).  Its items
are frames that must travel together (a binary event and its attachments).
``send`` never blocks: a full outbox means the client is not keeping up, and
the slow-consumer policy applies.  The outbox is a plain deque made on first
use (a trio memory channel, with its task queues, cost about 1.5 KiB of every
idle connection): the session's own tasks are its only readers.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ..config import EngineIOConfig
from ..faults import report
from ..http.messages import Request
from ..http.server import PeerGone
from ..http.stream import ConnectionStream
from . import packets
from .clock import Ticket
from .packets import EngineProtocolError, Frame, Outgoing, PacketType
from .websocket import WebSocket, WebSocketClosed

if TYPE_CHECKING:
    from .server import EngineServer

log = logging.getLogger("rtserver.engineio")

#: Marks the end of the stream in the outbox: flush what is before it, then close.
_CLOSE_MARK = Outgoing((packets.CLOSE,))
#: Seconds between noops to a pending poll while an upgrade completes.
_UPGRADE_NOOP_INTERVAL = 0.1
#: Scheduling rounds without a new frame a poll that has frames waits before
#: it answers.  A burst (a publisher's events, a back end's HTTP emits)
#: reaches the outbox one message per round, or per three when the handler
#: is a coroutine (its task is started with ``nursery.start``); a poll that
#: answered at once would carry one message per HTTP request.  Rounds are
#: counted, not timed: under load both a round and the burst take longer.
#: Measured (`make bench` long-polling, async handlers): 3 rounds, 5 messages
#: a poll and 8,300/s; 4 rounds, 16 a poll and 21,000/s.  A round is a task
#: switch (microseconds); a request costs some hundreds of them.
_POLL_QUIET_ROUNDS = 4
#: Most queued items one WebSocket write takes at once.
_WRITE_BATCH = 256


class SessionHandler(Protocol):
    """What the layer above (Socket.IO) provides for each session."""

    def opened(self) -> None:
        """Called once the session's nursery runs (tasks may be started)."""

    async def message(self, data: str | bytes) -> None: ...

    def closed(self, reason: str) -> None: ...

    def busy(self) -> bool:
        """Whether work started by the client (an event handler) is still running."""
        ...


#: The Content-Type of a polling answer in text.
TEXT_PLAIN = "text/plain; charset=UTF-8"


class Session:
    """An Engine.IO v4 session (:class:`~.session_v3.SessionV3` for v3)."""

    #: The Engine.IO protocol revision the client speaks.
    protocol = 4

    __slots__ = (
        "_arrived",
        "_attached",
        "_client_closed",
        "_close_held",
        "_closing",
        "_config",
        "_ended",
        "_finished",
        "_marks",
        "_next_ping",
        "_nursery",
        "_outbox",
        "_over",
        "_polling",
        "_pong_due",
        "_posting",
        "_queued",
        "_queued",
        "_taken",
        "_ticket",
        "_upgrading",
        "_wire",
        "_writing",
        "_ws",
        "_ws_close_code",
        "close_reason",
        "handler",
        "opened_at",
        "request",
        "server",
        "sid",
        "transport",
    )

    def __init__(self, server: EngineServer, sid: str, request: Request, transport: str) -> None:
        self.server = server
        self.sid = sid
        self.request = request
        self.transport = transport
        self.opened_at = time.monotonic()
        self.close_reason: str | None = None
        self.handler: SessionHandler | None = None
        self._config: EngineIOConfig = server.config
        #: What waits to be written, oldest first; an item stays until it is
        #: written, so while any is here nothing goes straight through.
        self._outbox: deque[Outgoing] | None = None
        #: Cancelled when something is queued, while a poll waits for it.
        self._arrived: trio.CancelScope | None = None
        #: Set when a polling session upgrades (its main task then reads the WebSocket).
        self._attached: trio.Event | None = None
        #: The session's place on the server's clock (heartbeat).
        self._ticket = Ticket(self._due)
        self._ended = False
        #: Set once :meth:`run` has cleaned up; ``finished`` is made on demand.
        self._over = False
        self._finished: trio.Event | None = None
        #: Heartbeat: when the next ping is due, and when the pong for the last
        #: one is overdue (None: not waiting for one).
        self._next_ping = 0.0
        self._pong_due: float | None = None
        self._closing = False
        self._polling = False
        #: A POST's packets are being handled (a second one at once is refused).
        self._posting = False
        #: A graceful close's CLOSE packet, kept for the poll after the last frames.
        self._close_held = False
        #: The client sent CLOSE (a poll still pending is answered with a noop).
        self._client_closed = False
        self._upgrading = False
        self._ws: WebSocket | None = None
        #: The WebSocket's byte stream while this session writes to it.
        self._wire: ConnectionStream | None = None
        self._writing = False
        self._ws_close_code = 1000
        self._nursery: trio.Nursery | None = None
        #: Items ever queued and ever taken out of the outbox (by the writer
        #: once written, or by a poll), and the callbacks of :meth:`when_sent`
        #: waiting for a count of taken items.
        self._queued = 0
        self._taken = 0
        self._marks: list[tuple[int, Callable[[], None]]] | None = None

    @property
    def finished(self) -> trio.Event:
        """Set once the session is over and cleaned up (made when first asked for)."""
        if self._finished is None:
            self._finished = trio.Event()
            if self._over:
                self._finished.set()
        return self._finished

    # ----------------------------------------------------------- outbound
    def send(self, item: Outgoing | tuple[Frame, ...], volatile: bool = False) -> bool:
        """Send frames to the client without blocking; False if not taken.

        Over an idle WebSocket the frame goes straight to the socket (no task
        switch: the cost of a broadcast is then one write per recipient);
        whatever the socket does not take, or anything while earlier frames
        wait, is queued for the writer task.  A volatile message is dropped
        when the outbox is full; any other overflow closes the session (the
        slow-consumer policy).
        """
        if self._closing:
            return False
        if not isinstance(item, Outgoing):
            item = Outgoing(item)
        wire = self._wire
        if wire is not None and not self._outbox:
            data = item.wire
            try:
                written = wire.write_nowait(data)
            except trio.BrokenResourceError:
                self.abort("transport close")
                return False
            if written == len(data):
                return True
            if written:
                item = Outgoing((), data[written:])
        if self._queue(item):
            return True
        if not volatile:
            log.warning("slow consumer: outbox full, closing", extra={"fields": {"sid": self.sid}})
            self.server.stats.overflows += 1
            self.abort("slow consumer", ws_code=1008)
        return False

    def _queue(self, item: Outgoing) -> bool:
        """Queue for the writer (or the next poll); False when the outbox is full."""
        outbox = self._outbox
        if outbox is None:
            outbox = self._outbox = deque()
        elif len(outbox) >= self._config.outbox_size:
            return False
        outbox.append(item)
        self._queued += 1
        if self._arrived is not None:
            self._arrived.cancel()
        self._start_writer()
        return True

    def when_sent(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once everything sent so far has reached the
        client: written to the WebSocket, or carried by a poll the client has
        since answered with its next GET (or with its upgrade).  Never called
        if the session ends first: a caller that deletes what it sent (an
        inbox) keeps it then, and the client gets it again.  Lets an
        acknowledged message outlive a client that drops before reading it.
        """
        if self._wire is not None and not self._outbox:
            callback()  # all written already (straight to the socket)
            return
        if self._marks is None:
            self._marks = []
        self._marks.append((self._queued, callback))

    def _confirm(self) -> None:
        """Call the :meth:`when_sent` callbacks whose items are all out."""
        marks = self._marks
        if not marks or self._ended:
            return
        due = [callback for count, callback in marks if count <= self._taken]
        if not due:
            return
        self._marks = [mark for mark in marks if mark[0] > self._taken] or None
        for callback in due:
            try:
                callback()
            except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
                report(self.server.stats.faults, "session", "sent callback", sid=self.sid)

    def start_soon(self, fn: Any, *args: Any) -> None:
        """Run a task in this session's nursery; it ends when the session does."""
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

    async def start(self, fn: Any, *args: Any) -> Any:
        """Start a task in this session's nursery and wait until it has started."""
        assert self._nursery is not None
        return await self._nursery.start(fn, *args)

    def close(self, reason: str = "server close") -> None:
        """Close after flushing what is queued (the client sees a transport close)."""
        if self._closing:
            return
        self.close_reason = self.close_reason or reason
        if not self._queue(_CLOSE_MARK):
            self.abort(reason)
            return
        self._closing = True
        if self._nursery is not None:
            self._nursery.start_soon(self._linger)

    def abort(self, reason: str, ws_code: int = 1000) -> None:
        """End the session now, dropping whatever is still queued."""
        if self.close_reason is None:
            self.close_reason = reason
        self._closing = True
        self._wire = None
        self._ws_close_code = ws_code
        self._outbox = None
        if self._arrived is not None:
            self._arrived.cancel()  # a waiting poll answers with CLOSE
        self._end()

    def _fault(self, what: str) -> None:
        """Contain an unexpected exception (call from ``except``): report it,
        end this session alone (WebSocket close 1011)."""
        report(self.server.stats.faults, "session", what, sid=self.sid, remote=self.request.remote)
        self.abort("internal error", ws_code=1011)

    def _end(self) -> None:
        """The session is over: stop its tasks now (:meth:`run` cleans up)."""
        self._ended = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _linger(self) -> None:
        # A graceful close waits for the flush, but never longer than this.
        await trio.sleep(self._config.write_timeout)
        self._end()

    # ------------------------------------------------------------ inbound
    decode_text = staticmethod(packets.decode_text)

    async def receive_frame(self, frame: str | bytes) -> None:
        """Handle one frame from the client (either transport)."""
        stats = self.server.stats
        stats.messages_in += 1
        stats.bytes_in += len(frame)
        if isinstance(frame, bytes):
            await self._to_handler(frame)
        else:
            await self._receive_packet(self.decode_text(frame))

    async def _to_handler(self, data: str | bytes) -> None:
        # Nothing more is read once the session is over, or ending: after a
        # malformed packet, the frames that came with it are dropped unread.
        if self.handler is None or self._ended:
            return
        try:
            await self.handler.message(data)
        except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
            self._fault("Socket.IO message")

    async def _receive_packet(self, packet: packets.Packet) -> None:
        if packet.type is PacketType.MESSAGE:
            await self._to_handler(packet.data)
        elif packet.type is PacketType.PONG:
            self._pong_due = None
            self._next_ping = trio.current_time() + self._config.ping_interval
        elif packet.type is PacketType.CLOSE:
            self._client_closed = True
            self.abort("transport close")
        elif packet.type is PacketType.PING:
            # Engine.IO v4 pings go from the server to the client only.
            raise EngineProtocolError("PING from client (the server pings in Engine.IO v4)")
        # OPEN, and UPGRADE and NOOP outside the upgrade handshake, carry
        # nothing: ignored, as the reference ignores them.

    #: A POST body's packets (Engine.IO v3 sessions decode theirs otherwise).
    iter_payload = staticmethod(packets.iter_payload)

    async def receive_payload(self, body: bytes) -> bool:
        """A long-polling POST body: one or more packets, handled in order up
        to a malformed one (which raises).  False, with nothing handled, while
        another POST of this session is still being handled."""
        if self._posting:
            return False
        stats = self.server.stats
        stats.bytes_in += len(body)
        self._posting = True
        try:
            for packet in self.iter_payload(body):
                if self._ended:
                    break  # ended by an earlier packet of this payload
                stats.messages_in += 1
                await self._receive_packet(packet)
        finally:
            self._posting = False
        return True

    # ------------------------------------------------------- long-polling
    def encode_poll(self, frames: list[Frame]) -> tuple[bytes, str]:
        """A polling answer's body and Content-Type for ``frames``."""
        return packets.encode_payload(frames).encode(), TEXT_PLAIN

    async def poll(self, peer_gone: PeerGone | None = None) -> list[Frame] | None:
        """Wait for frames for a polling GET; None when a poll is already open.

        While it waits, ``peer_gone`` (when given) watches the request's
        connection: a client that closes it ends the session, as the
        reference ends it ("poll connection closed prematurely"), rather
        than the next frames being written to a connection nobody reads.
        """
        if self._polling:
            return None
        # A new GET: the client read the answers to its earlier ones.
        self._confirm()
        if self._close_held:
            self._end()
            return [packets.CLOSE]
        self._polling = True
        try:
            while not self._outbox:
                if self._closing:
                    self._end()
                    # The client's own close: its pending GET gets a noop, as
                    # the reference answers it (the client is not listening).
                    return [packets.NOOP if self._client_closed else packets.CLOSE]
                if await self._wait_for_frames(peer_gone):
                    log.info("poll connection closed by the client", extra={"fields": {"sid": self.sid}})
                    self.abort("transport error")
            outbox = self._outbox
            frames = list(outbox.popleft().frames)
            self._taken += 1
            size = sum(len(f) for f in frames)
            quiet = 0
            while size < self._config.max_payload and quiet < _POLL_QUIET_ROUNDS:
                if not outbox:
                    # Nothing more yet: let the running tasks go a round in
                    # case a burst is still arriving (shielded: these frames
                    # are out of the outbox already).
                    quiet += 1
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    if outbox is not self._outbox:
                        break  # aborted meanwhile
                    continue
                quiet = 0
                item = outbox.popleft()
                self._taken += 1
                frames.extend(item.frames)
                size += sum(len(f) for f in item.frames)
            self._drop_if_empty(outbox)
            if frames[-1] == packets.CLOSE and self._closing:
                if len(frames) > 1:
                    # The close goes in the next poll: socket.io-client handles the
                    # messages of a payload after a CLOSE in it as arriving while
                    # disconnected and never shows them (e.g. a kick's reason).
                    frames.pop()
                    self._close_held = True
                else:
                    self._end()
            return frames
        finally:
            self._polling = False

    async def _wait_for_frames(self, peer_gone: PeerGone | None) -> bool:
        """Wait until something is queued (or the session ends); True when
        the polling client went away first."""
        with trio.CancelScope() as arrived:
            self._arrived = arrived
            try:
                if peer_gone is not None and await peer_gone():
                    return True
                await trio.sleep_forever()
            finally:
                self._arrived = None
        return False

    # ---------------------------------------------------------- websocket
    @property
    def upgradable(self) -> bool:
        return self.transport == "polling" and not self._upgrading and not self._closing

    async def probe(self, ws: WebSocket) -> bool:
        """Run the upgrade handshake on ``ws``; True once the client sent UPGRADE."""
        self._upgrading = True
        try:
            with trio.move_on_after(self._config.ping_timeout):
                if await ws.receive() != "2probe":
                    return False
                await ws.send_text(packets.PONG_PROBE)
                # The client pauses polling once its GET in flight returns:
                # answer that GET (and one that may still be on its way) with
                # a noop until the client sends UPGRADE, as the reference does.
                upgraded = False
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._release_polls)
                    try:
                        upgraded = await ws.receive() == "5"
                    except WebSocketClosed:
                        pass  # the client gave up on the upgrade: not upgraded
                    nursery.cancel_scope.cancel()
                return upgraded
            return False
        finally:
            self._upgrading = False

    async def _release_polls(self) -> None:
        self.send((packets.NOOP,))
        while True:
            await trio.sleep(_UPGRADE_NOOP_INTERVAL)
            if self._polling and not self._outbox:
                self.send((packets.NOOP,))

    def attach_websocket(self, ws: WebSocket) -> None:
        """Upgrade to ``ws``; queued frames continue there in order, and the
        session's main task reads it."""
        assert self._attached is not None
        self.transport = "websocket"
        self._ws = ws
        self._wire = ws.stream
        self._attached.set()
        # The client upgrades once its last poll has returned.
        self._confirm()
        self._start_writer()

    async def _ws_reader(self, ws: WebSocket) -> None:
        try:
            while True:
                await self.receive_frame(await ws.receive())
        except WebSocketClosed as exc:
            self.abort("message too big" if exc.code == 1009 else "transport close", ws_code=exc.code)
        except EngineProtocolError as exc:
            log.info("protocol error: %s", exc, extra={"fields": {"sid": self.sid}})
            self.abort("parse error", ws_code=1002)

    def _start_writer(self) -> None:
        """Run the writer while anything is queued; an idle connection has none."""
        if self._wire is not None and not self._writing and self._nursery is not None and self._outbox:
            self._writing = True
            self._nursery.start_soon(self._ws_writer, self._wire, self._outbox)

    async def _ws_writer(self, stream: ConnectionStream, outbox: deque[Outgoing]) -> None:
        """Write what is queued, as many items as are waiting in one write, and
        stop once nothing is (the next queued item starts it again)."""
        try:
            while outbox and outbox is self._outbox:
                batch = list(islice(outbox, _WRITE_BATCH))
                taken = len(batch)
                closing = _CLOSE_MARK in batch
                if closing:
                    del batch[batch.index(_CLOSE_MARK) :]
                data = b"".join(item.wire for item in batch)
                with trio.move_on_after(self._config.write_timeout) as scope:
                    try:
                        await stream.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self.abort("transport close")
                        return
                if scope.cancelled_caught:
                    self.abort("write timeout", ws_code=1008)
                    return
                if closing:
                    self._end()
                    return
                for _ in range(taken):
                    outbox.popleft()
                self._taken += taken
                self._confirm()
            self._drop_if_empty(outbox)
        finally:
            self._writing = False

    def _drop_if_empty(self, outbox: deque[Outgoing]) -> None:
        """Let an emptied outbox go; it is made again when next needed (a deque is 0.7 KiB)."""
        if not outbox and outbox is self._outbox:
            self._outbox = None

    # ----------------------------------------------------------- lifetime
    def call_later(self, seconds: float, callback: Callable[[], None]) -> Ticket:
        """Call ``callback`` in ``seconds`` on the server's clock; the caller
        cancels the ticket when it no longer applies (the session ended)."""
        return self.server.clock.call_later(seconds, callback)

    def _due(self) -> float | None:
        """The clock's call: ping, or end on a ping timeout; when to call again.

        One booking at a time: after a ping the session looks again at the
        earlier of the pong's deadline and the next ping were the pong to come
        at once, so a pong books nothing (it only moves ``_next_ping``)."""
        if self._ended:
            return None
        now = trio.current_time()
        config = self._config
        if self._pong_due is not None:
            if now >= self._pong_due:
                self.abort("ping timeout")
                return None
            return min(self._pong_due, now + config.ping_interval)
        if now < self._next_ping:
            return self._next_ping
        self._next_ping = now + config.ping_interval  # also when it cannot go (closing)
        if self.send((packets.PING,)):
            self._pong_due = now + config.ping_timeout
            return min(self._pong_due, self._next_ping)
        return self._next_ping

    async def run(self, handler: SessionHandler, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the session until it closes; cleans up however it ends."""
        self.handler = handler
        try:
            await self._serve(handler, task_status)
        except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
            self._fault("Engine.IO session")
        finally:
            await self._cleanup(handler)

    async def _serve(self, handler: SessionHandler, task_status: Any) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._next_ping = trio.current_time() + self._config.ping_interval
            self.server.clock.book(self._ticket, self._next_ping)
            ws = self._ws
            if ws is None:
                self._attached = trio.Event()
            else:
                self.transport = "websocket"
                self._wire = ws.stream
                self._start_writer()
            handler.opened()
            task_status.started()
            if ws is None and not self._ended:
                await self._attached.wait()  # long-polling until an upgrade
                self._attached = None
                ws = self._ws
            if not self._ended:
                await self._ws_reader(ws)
            nursery.cancel_scope.cancel()

    async def _cleanup(self, handler: SessionHandler) -> None:
        """However the session ended: close, forget, tell the layer above.

        Shielded, and contained step by step: the layer above is told even
        when the close fails, and nothing raised here leaves the session.
        """
        if self.close_reason is None:
            self.close_reason = "server shutting down"
            self._ws_close_code = 1001
        self._closing = True
        self._ended = True
        self._ticket.cancel()
        self._outbox = None
        with trio.CancelScope(shield=True):
            try:
                if self._ws is not None:
                    await self._ws.close(self._ws_close_code, self.close_reason)
            except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
                report(self.server.stats.faults, "session", "WebSocket close", sid=self.sid)
            self.server.forget(self)
            try:
                handler.closed(self.close_reason)
            except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
                report(self.server.stats.faults, "session", "Socket.IO close", sid=self.sid)
            # Nothing here refers back to the session once it is over, so
            # it is freed when its last user lets go, not by a full
            # garbage collection (long-lived objects wait for those).
            self.handler = None
            self._nursery = None
            self._over = True
            if self._finished is not None:
                self._finished.set()
            log.info(
                "connection closed",
                extra={
                    "fields": {
                        "sid": self.sid,
                        "transport": self.transport,
                        "remote": self.request.remote,
                        "reason": self.close_reason,
                        "duration": round(time.monotonic() - self.opened_at, 3),
                    }
                },
            )

    def use_websocket(self, ws: WebSocket) -> None:
        """For a session opened directly over WebSocket: set before :meth:`run`."""
        self._ws = ws

