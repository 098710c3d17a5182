"""One Engine.IO session: its transport, outbox and heartbeat.

A session runs in its own nursery (:meth:`Session.run`).  Over WebSocket it
holds a reader task, which hands each message to the Socket.IO layer and also
keeps the heartbeat (its read waits only until the next ping or ping timeout
is due), and a writer task that runs only while something is queued.  Over
long-polling the HTTP requests play reader (POST) and writer (GET), and a
heartbeat task keeps time; it stays when the session upgrades.

Everything bound for the client goes through one bounded memory channel, the
outbox, unless it can go straight to an idle WebSocket (see :meth:`send`).
Its items are frames that must travel together (a binary event and its
attachments).  ``send`` never blocks: a full outbox means the client is not
keeping up, and the slow-consumer policy applies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ..config import EngineIOConfig
from ..http.messages import Request
from ..http.stream import ConnectionStream
from . import packets
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


class Session:
    def __init__(self, server: EngineServer, sid: str, request: Request, transport: str) -> None:
        self.server = server
        self.sid = sid
        self.request = request
        self.transport = transport
        self.opened_at = time.monotonic()
        self.close_reason: str | None = None
        self.handler: SessionHandler | None = None
        config = server.config
        self._config: EngineIOConfig = config
        self._out_send, self._out_recv = trio.open_memory_channel[Outgoing](config.outbox_size)
        #: Items queued and not yet written: while any are, nothing is written
        #: straight through, so order is kept.
        self._queued = 0
        #: One-off timers the heartbeat also keeps, by key: (when, callback).
        self._timers: dict[object, tuple[float, Callable[[], None]]] = {}
        #: The scope the heartbeat is waiting in, moved earlier by a new timer.
        self._wait_scope: trio.CancelScope | None = None
        self._done = trio.Event()
        self.finished = trio.Event()
        #: Heartbeat: when the next ping is due, and when the pong for the last
        #: one is overdue (None: not waiting for one).  Kept by one task: the
        #: WebSocket reader, or for long-polling a heartbeat task of its own.
        self._next_ping = 0.0
        self._pong_due: float | None = None
        self._clock_task = False
        self._closing = False
        self._polling = False
        #: A graceful close's CLOSE packet, kept for the poll after the last frames.
        self._close_held = False
        self._upgrading = False
        self._ws: WebSocket | None = None
        #: The WebSocket's byte stream while this session writes to it.
        self._wire: ConnectionStream | None = None
        self._writing = False
        self._ws_close_code = 1000
        self._nursery: trio.Nursery | None = None

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
        if wire is not None and self._queued == 0:
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
        try:
            self._out_send.send_nowait(item)
            self._queued += 1
            self._start_writer()
            return True
        except trio.WouldBlock:
            if not volatile:
                log.warning("slow consumer: outbox full, closing", extra={"fields": {"sid": self.sid}})
                self.server.stats.overflows += 1
                self.abort("slow consumer", ws_code=1008)
            return False
        except trio.ClosedResourceError:
            return False

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
        self._closing = True
        try:
            self._out_send.send_nowait(_CLOSE_MARK)
            self._queued += 1
            self._start_writer()
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.abort(reason)
            return
        self._out_send.close()
        if self._nursery is not None:
            self._nursery.start_soon(self._linger)

    def abort(self, reason: str, ws_code: int = 1000) -> None:
        """End the session now, dropping whatever is still queued."""
        if self.close_reason is None:
            self.close_reason = reason
        self._closing = True
        self._wire = None
        self._ws_close_code = ws_code
        self._out_send.close()
        self._end()

    def _end(self) -> None:
        """The session is over: wake :meth:`run` and stop its tasks now."""
        self._done.set()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _linger(self) -> None:
        # A graceful close waits for the flush, but never longer than this.
        await trio.sleep(self._config.write_timeout)
        self._end()

    # ------------------------------------------------------------ inbound
    async def receive_frame(self, frame: str | bytes) -> None:
        """Handle one frame from the client (either transport)."""
        stats = self.server.stats
        stats.messages_in += 1
        stats.bytes_in += len(frame)
        if isinstance(frame, bytes):
            await self.handler.message(frame)
        else:
            await self._receive_packet(packets.decode_text(frame))

    async def _receive_packet(self, packet: packets.Packet) -> None:
        if packet.type is PacketType.MESSAGE:
            await self.handler.message(packet.data)
        elif packet.type is PacketType.PONG:
            self._pong_due = None
            self._next_ping = trio.current_time() + self._config.ping_interval
        elif packet.type is PacketType.CLOSE:
            self.abort("transport close")
        elif packet.type in (PacketType.OPEN, PacketType.PING):
            raise EngineProtocolError(f"unexpected {packet.type.name} packet from client")
        # UPGRADE and NOOP outside the upgrade handshake carry nothing.

    async def receive_payload(self, body: bytes) -> None:
        """A long-polling POST body: one or more packets."""
        stats = self.server.stats
        stats.bytes_in += len(body)
        for packet in packets.decode_payload(body):
            stats.messages_in += 1
            await self._receive_packet(packet)

    # ------------------------------------------------------- long-polling
    async def poll(self) -> list[Frame] | None:
        """Wait for frames for a polling GET; None when a poll is already open."""
        if self._polling:
            return None
        if self._close_held:
            self._end()
            return [packets.CLOSE]
        self._polling = True
        frames: list[Frame] = []
        try:
            try:
                frames.extend((await self._out_recv.receive()).frames)
            except (trio.EndOfChannel, trio.ClosedResourceError):
                self._end()
                return [packets.CLOSE]
            self._queued -= 1
            size = sum(len(f) for f in frames)
            quiet = 0
            while size < self._config.max_payload and quiet < _POLL_QUIET_ROUNDS:
                try:
                    item = self._out_recv.receive_nowait()
                except trio.WouldBlock:
                    # Nothing more yet: let the running tasks go a round in
                    # case a burst is still arriving (shielded: these frames
                    # are out of the outbox already).
                    quiet += 1
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    continue
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    break
                quiet = 0
                self._queued -= 1
                frames.extend(item.frames)
                size += sum(len(f) for f in item.frames)
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
            if self._polling and self._queued == 0:
                self.send((packets.NOOP,))

    def attach_websocket(self, ws: WebSocket) -> None:
        """Upgrade to ``ws``; queued frames continue there in order."""
        assert self._nursery is not None
        self.transport = "websocket"
        self._ws = ws
        self._wire = ws.stream
        self._nursery.start_soon(self._ws_reader, ws)
        self._start_writer()

    async def _ws_reader(self, ws: WebSocket) -> None:
        """Read frames; on a session opened over WebSocket also keep its heartbeat
        (no task of its own: the read waits only until the next thing is due)."""
        try:
            while True:
                if self._clock_task:
                    frame = await ws.receive()
                else:
                    with trio.move_on_at(self._wake_at()) as self._wait_scope:
                        frame = await ws.receive()
                    if self._wait_scope.cancelled_caught:
                        if not self._tick():
                            return
                        continue
                await self.receive_frame(frame)
        except WebSocketClosed as exc:
            self.abort("message too big" if exc.code == 1009 else "transport close", ws_code=exc.code)
        except EngineProtocolError as exc:
            log.info("protocol error: %s", exc, extra={"fields": {"sid": self.sid}})
            self.abort("parse error", ws_code=1002)

    def _start_writer(self) -> None:
        """Run the writer while anything is queued; an idle connection has none."""
        if self._wire is not None and not self._writing and self._nursery is not None:
            self._writing = True
            self._nursery.start_soon(self._ws_writer, self._wire)

    async def _ws_writer(self, stream: ConnectionStream) -> None:
        """Write what is queued, as many items as are waiting in one write, and
        stop once nothing is (the next queued item starts it again)."""
        try:
            while True:
                batch: list[Outgoing] = []
                while len(batch) < _WRITE_BATCH:
                    try:
                        batch.append(self._out_recv.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                        break
                if not batch:
                    return
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
                self._queued -= len(batch) + closing
                if closing:
                    self._end()
                    return
        finally:
            self._writing = False

    # ----------------------------------------------------------- lifetime
    def set_timer(self, key: object, seconds: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` in ``seconds`` unless the session ends first; a
        timer set again under the same key replaces the earlier one.

        The heartbeat keeps these too, so a timer costs no task of its own."""
        when = trio.current_time() + seconds
        self._timers[key] = (when, callback)
        scope = self._wait_scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when

    def cancel_timer(self, key: object) -> None:
        self._timers.pop(key, None)

    def _wake_at(self) -> float:
        wake = self._pong_due if self._pong_due is not None else self._next_ping
        for when, _ in self._timers.values():
            wake = min(wake, when)
        return wake

    def _tick(self) -> bool:
        """Do what is due (timers, ping, ping timeout); False once the session ends."""
        now = trio.current_time()
        if self._timers:
            for key, (when, callback) in list(self._timers.items()):
                if now >= when and self._timers.get(key) == (when, callback):
                    del self._timers[key]
                    callback()
        if self._done.is_set():
            return False
        if self._pong_due is not None:
            if now >= self._pong_due:
                self.abort("ping timeout")
                return False
        elif now >= self._next_ping:
            self._next_ping = now + self._config.ping_interval  # also when it cannot go (closing)
            if self.send((packets.PING,)):
                self._pong_due = now + self._config.ping_timeout
        return True

    async def _heartbeat(self) -> None:
        while True:
            with trio.move_on_at(self._wake_at()) as self._wait_scope:
                await trio.sleep_forever()
            if not self._tick():
                return

    async def run(self, handler: SessionHandler, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the session until it closes; cleans up however it ends."""
        self.handler = handler
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._next_ping = trio.current_time() + self._config.ping_interval
                ws = self._ws
                if ws is None:
                    self._clock_task = True
                    nursery.start_soon(self._heartbeat)
                else:
                    self.transport = "websocket"
                    self._wire = ws.stream
                    if self._queued:
                        self._start_writer()
                handler.opened()
                task_status.started()
                if ws is not None and not self._done.is_set():
                    # Opened over WebSocket: this task is the reader (one task
                    # fewer per connection than a reader of its own).
                    await self._ws_reader(ws)
                await self._done.wait()
                nursery.cancel_scope.cancel()
        finally:
            if self.close_reason is None:
                self.close_reason = "server shutting down"
                self._ws_close_code = 1001
            self._closing = True
            self._out_send.close()
            with trio.CancelScope(shield=True):
                if self._ws is not None:
                    await self._ws.close(self._ws_close_code, self.close_reason)
                self.server.forget(self)
                handler.closed(self.close_reason)
                self.finished.set()
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

