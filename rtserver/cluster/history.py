"""Connection state recovery across nodes: one history in a Redis stream.

With ``[cluster]`` and ``[recovery]`` both on, an event the history keeps
(:meth:`SharedRecovery.keeps`, never volatile) is not delivered where it
was emitted: it is appended to the stream ``{prefix}-rtserver-history``
(XADD, queued with the link's publishes, never waits), and every node -- the emitting one included --
reads the stream in order and delivers each entry to its own sockets with
the entry's id as the recovery offset.  Every node therefore numbers every
event the same way, which is what lets a client that dropped on node A
recover on node B: B finds the session A saved (``{prefix}-rtserver-
history#session#{pid}``, expiring after ``recovery.max_disconnection``) and
replays the entries after the client's offset that reach its rooms.  This
is the scheme of ``@socket.io/redis-streams-adapter``; the stream's entries
are rtserver's own (msgpack of origin, namespace, event, arguments, rooms,
except), read only by rtserver nodes.

Replay is exact: the replaying node reads the stream up to the last entry
its reader has delivered and adds the socket to its rooms in the same step
(no await in between), so each entry reaches the client once, either in the
replay or live.  A session whose socket another node still holds (its old
transport not yet timed out) is released by that node on request first.

When Redis is unreachable events are delivered by their node alone, without
an offset (nobody else can number them); sessions cannot be saved or found,
so a client that drops then reconnects afresh.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..config import RecoveryConfig, name_test
from ..engineio.packets import Frame
from . import wire
from .link import RedisLink

if TYPE_CHECKING:
    from ..socketio.socket import Socket

log = logging.getLogger("rtserver.recovery")

#: Entries one XREAD or XRANGE returns at most.
PAGE = 500
#: This node's events on their way through Redis; beyond this they are delivered here alone.
PENDING_LIMIT = 100_000
_OFFSET = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")

Position = tuple[int, int]

#: ``(namespace, event, args, rooms, exclude, offset, remote)``: deliver one event here
#: (offset None: without one, when Redis lost it on the way).
Deliver = Callable[[str, str, tuple[Any, ...], list[str] | None, list[str], str | None, bool], None]


def parse_offset(text: Any) -> Position | None:
    if not isinstance(text, str) or not _OFFSET.match(text):
        return None
    ms, seq = text.split("-")
    return int(ms), int(seq)


def offset_text(position: Position) -> str:
    return f"{position[0]}-{position[1]}"


@attrs.define
class Session:
    pid: str
    sid: str
    namespace: str
    user: str
    rooms: frozenset[str]
    #: The stream position when the socket connected: replay starts here without an offset.
    start_seq: str
    disconnected_at: float


class SharedRecovery:
    """Recovery's interface (see :class:`rtserver.recovery.Recovery`) on a Redis stream."""

    #: Events are numbered by the stream's reader, not at emit time.
    numbers_locally = False

    def __init__(self, config: RecoveryConfig, link: RedisLink, prefix: str, uid: str, limit: int) -> None:
        self.config = config
        self.link = link
        self.uid = uid
        self.limit = limit
        self.stream = f"{prefix}-rtserver-history"
        self._session_prefix = f"{self.stream}#session#"
        self.keeps = name_test(config.events)
        #: The last entry this node has delivered (None until its reader started).
        self.position: Position | None = None
        #: Sessions of dropped sockets not in Redis yet.
        self._saving: dict[str, Session] = {}
        self._save_soon = trio.Event()
        #: This node's events appended but not read back yet, by number.
        self._pending: dict[int, tuple[str, str, tuple[Any, ...], list[str] | None, list[str]]] = {}
        self._appended = 0
        #: Set by the Socket.IO server: delivers a stream entry to this node's sockets.
        self.deliver: Deliver = lambda *entry: None
        #: Asks the other nodes to let go of a session's socket (set by the server).
        self.release: Callable[[str], Awaitable[None]] | None = None
        #: Builds an event's frames (set by the server: the Socket.IO encoder).
        self.encode: Callable[[str, str, tuple[Any, ...]], tuple[Frame, ...]] = lambda namespace, event, args: ()

    @property
    def enabled(self) -> bool:
        return True

    @property
    def seq(self) -> str:
        """Where a socket connecting now would start its replay."""
        return offset_text(self.position or (0, 0))

    @staticmethod
    def new_pid() -> str:
        return secrets.token_urlsafe(15)

    # ---------------------------------------------------------- emitting
    def append(
        self, namespace: str, event: str, args: tuple[Any, ...], rooms: list[str] | None, exclude: tuple[str, ...] | list[str]
    ) -> bool:
        """Queue an event for the stream; False when it cannot go there (Redis
        down, its backlog full, unencodable): then deliver it here alone."""
        if not self.link.up or self.position is None or len(self._pending) >= PENDING_LIMIT:
            return False
        number = self._appended + 1
        try:
            entry = wire.pack([self.uid, number, namespace, event, list(args), rooms, list(exclude)])
        except (TypeError, ValueError, OverflowError):
            return False
        if len(entry) > self.limit or not self.link.append(self.stream, entry, self.config.history_size):
            return False
        self._appended = number
        self._pending[number] = (namespace, event, args, rooms, list(exclude))
        return True

    def _link_down(self) -> None:
        """Events of this node not read back yet may never be: deliver them
        here now, without an offset (skipped if they do show up later)."""
        pending, self._pending = self._pending, {}
        for namespace, event, args, rooms, exclude in pending.values():
            self.deliver(namespace, event, args, rooms, exclude, None, False)

    # ------------------------------------------------------------ reading
    async def _reader(self) -> None:
        while True:
            if not self.link.up:
                await trio.sleep(0.05)
                continue
            try:
                client = self.link.client()
                if self.position is None:
                    last = await client.xrevrange(self.stream, "+", "-", count=1)
                    self.position = parse_offset(_text(last[0].identifier)) if last else (0, 0)
                found = await client.xread({self.stream: self.seq}, count=PAGE, block=1000)
            except Exception as exc:  # noqa: BLE001 -- the link's own task reports Redis going away
                log.debug("history read interrupted: %s", exc)
                await trio.sleep(0.1)
                continue
            for entries in (found or {}).values():
                for entry in entries:
                    self._deliver_entry(entry)

    def _deliver_entry(self, entry: Any) -> None:
        position = parse_offset(_text(entry.identifier))
        if position is None or (self.position is not None and position <= self.position):
            return
        self.position = position
        decoded = self._decode(entry)
        if decoded is None:
            return
        origin, number, namespace, event, args, rooms, exclude = decoded
        if origin == self.uid and self._pending.pop(number, None) is None:
            return  # already delivered here while the link was down
        self.deliver(namespace, event, tuple(args), rooms, exclude, offset_text(position), origin != self.uid)

    def _decode(self, entry: Any) -> tuple[Any, ...] | None:
        try:
            value = wire.decode(entry.field_values[b"m"], self.limit)
            origin, number, namespace, event, args, rooms, exclude = value
            if not (isinstance(namespace, str) and isinstance(event, str) and isinstance(args, list)
                    and (rooms is None or isinstance(rooms, list)) and isinstance(exclude, list)):
                raise ValueError("bad entry")
        except Exception as exc:  # noqa: BLE001 -- a foreign or broken entry is skipped, never fatal
            log.warning("skipped a malformed history entry", extra={"fields": {"error": str(exc)[:200]}})
            return None
        return origin, number, namespace, event, args, rooms, exclude

    # ------------------------------------------------------------ sessions
    def persist(self, socket: Socket) -> None:
        """Keep a dropped socket's session in Redis for ``max_disconnection`` seconds."""
        identity = socket.identity
        if socket.pid is None or identity is None:
            return
        session = Session(
            socket.pid, socket.sid, socket.namespace_name, identity.user, frozenset(socket.rooms - {socket.sid}),
            str(socket.start_seq), time.time(),
        )
        self._saving[session.pid] = session
        self._save_soon.set()

    async def _saver(self) -> None:
        while True:
            await self._save_soon.wait()
            self._save_soon = trio.Event()
            await self.flush()

    async def _save(self, session: Session) -> None:
        try:
            await self.link.client().set(
                self._session_prefix + session.pid,
                wire.pack({**attrs.asdict(session), "rooms": sorted(session.rooms)}),
                px=int(self.config.max_disconnection * 1000),
            )
        except Exception as exc:  # noqa: BLE001 -- Redis away: that client reconnects afresh
            log.info("recovery session not saved", extra={"fields": {"error": str(exc)[:200]}})
        finally:
            if self._saving.get(session.pid) is session:
                del self._saving[session.pid]

    async def saved(self, pid: str) -> None:
        """Wait until a session being saved is in Redis (for a release request)."""
        session = self._saving.get(pid)
        if session is not None:
            await self._save(session)

    async def _take(self, pid: str) -> Session | None:
        blob = await self.link.client().getdel(self._session_prefix + pid)
        if blob is None:
            return None
        data = wire.decode(blob, self.limit)
        return Session(**{**data, "rooms": frozenset(data["rooms"])})

    async def restore(
        self, pid: Any, offset: Any, user: str, namespace: str, anonymous: bool
    ) -> tuple[Session, list[tuple[Frame, ...]]] | None:
        """The session and the frames it missed, or None (then connect afresh).
        The caller adds the socket to the hub right after, without awaiting."""
        if not isinstance(pid, str) or len(pid) > 64 or not self.link.up:
            return None
        try:
            await self.saved(pid)  # a socket of this node just taken over: its session is on its way
            session = await self._take(pid)
            if session is None and self.release is not None:
                await self.release(pid)
                session = await self._take(pid)
            if session is None or session.namespace != namespace or (session.user != user and not anonymous):
                return None
            if time.time() - session.disconnected_at > self.config.max_disconnection:
                return None
            after = parse_offset(offset) or parse_offset(session.start_seq)
            if after is None:
                return None
            missed = await self._missed(after, session)
        except Exception as exc:  # noqa: BLE001 -- Redis away or a broken session: connect afresh
            log.info("recovery across nodes failed", extra={"fields": {"error": str(exc)[:200]}})
            return None
        return (session, missed) if missed is not None else None

    async def _missed(self, after: Position, session: Session) -> list[tuple[Frame, ...]] | None:
        """Frames of the entries after ``after`` for the session's rooms, up
        to what this node's reader has delivered; None when the stream no
        longer holds ``after`` (trimmed: the gap cannot be filled)."""
        client = self.link.client()
        if after != (0, 0) and not await client.xrange(self.stream, offset_text(after), offset_text(after), count=1):
            return None  # trimmed away (or never an entry here): the gap cannot be filled
        rooms = session.rooms | {session.sid}
        entries: list[Any] = []
        cursor = after
        while True:
            position = self.position or (0, 0)
            if cursor >= position:
                break
            page = await client.xrange(self.stream, "(" + offset_text(cursor), offset_text(position), count=PAGE)
            if not page:
                break
            entries += page
            cursor = parse_offset(_text(page[-1].identifier)) or position
        frames = []
        limit = self.position or (0, 0)
        for entry in entries:
            position = parse_offset(_text(entry.identifier))
            decoded = self._decode(entry)
            if position is None or position > limit or decoded is None:
                continue
            _, _, namespace, event, args, to, exclude = decoded
            if namespace == session.namespace and rooms.isdisjoint(exclude) and (to is None or not rooms.isdisjoint(to)):
                frames.append(self.encode(namespace, event, (*args, offset_text(position))))
        return frames

    # ------------------------------------------------------------ running
    async def load(self) -> None:
        """Nothing to load: the history lives in Redis."""

    async def flush(self) -> None:
        """Save the sessions of the sockets that dropped (also as a node
        drains, so its clients recover on another node)."""
        for session in list(self._saving.values()):
            await self._save(session)

    async def run(self) -> None:
        """Read and deliver until cancelled (appends go out with the link's writer)."""
        self.link.on_down.append(self._link_down)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reader)
            nursery.start_soon(self._saver)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
