"""Connection state recovery, compatible with socket.io-client 4.6+.

With recovery on, every event the server emits (without an ack, not
volatile) is numbered: its offset travels as the event's last argument, and
the stock client remembers the last one it saw.  Each socket gets a private
session id (``pid``) in its CONNECT answer.  When a socket drops for a
recoverable reason its session (sid, rooms, identity) is kept; a client that
reconnects within ``max_disconnection`` presents ``pid`` and ``offset`` and
gets its sid and rooms back, then every event it missed, in order, once.

Beyond the reference server (each case has a test):

- history and sessions are written to the store every ``flush_interval``, so
  recovery works across a restart of rtserver (socket.io issue 5413);
- a client that received no event before dropping presents no offset; it is
  recovered from its session alone, replaying from when it connected
  (socket.io issue 5538);
- a session is recovered as often as needed, and a reconnect that arrives
  while the server still holds the old transport takes the session over
  instead of failing (socket.io issue 4880).

A recovery never bypasses authentication: the token is checked as on any
connect, and the session must belong to the same user.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import attrs
import orjson
import trio

from .config import RecoveryConfig, name_test
from .engineio.packets import Frame

if TYPE_CHECKING:
    from .socketio.socket import Socket
    from .store import SqliteStore as Store

log = logging.getLogger("rtserver.recovery")

#: Disconnect reasons after which a client may come back and recover.
RECOVERABLE = frozenset(
    {
        "transport close",
        "transport error",
        "ping timeout",
        "server shutting down",
        "forced close",
        "forced server close",
        "write timeout",
        "slow consumer",
    }
)


@attrs.define
class Entry:
    seq: int
    namespace: str
    rooms: frozenset[str] | None
    exclude: frozenset[str]
    frames: tuple[Frame, ...]
    emitted_at: float

    def reaches(self, namespace: str, rooms: frozenset[str]) -> bool:
        if namespace != self.namespace or not rooms.isdisjoint(self.exclude):
            return False
        return self.rooms is None or not rooms.isdisjoint(self.rooms)


@attrs.define
class Saved:
    pid: str
    sid: str
    namespace: str
    user: str
    rooms: frozenset[str]
    #: The last seq when the socket connected: replay starts here without an offset.
    start_seq: int
    disconnected_at: float


def _encode_frames(frames: tuple[Frame, ...]) -> bytes:
    return orjson.dumps([f if isinstance(f, str) else {"b": base64.b64encode(f).decode()} for f in frames])


def _decode_frames(blob: bytes) -> tuple[Frame, ...]:
    return tuple(f if isinstance(f, str) else base64.b64decode(f["b"]) for f in orjson.loads(blob))


class Recovery:
    #: Events are numbered here as they are emitted (see SharedRecovery for the cluster's way).
    numbers_locally = True

    def __init__(self, config: RecoveryConfig, store: Store | None) -> None:
        self.config = config
        self._store = store
        self._history: deque[Entry] = deque(maxlen=config.history_size)
        self._sessions: dict[str, Saved] = {}
        self.seq = 0
        self._unsaved_history: list[Entry] = []
        self._unsaved_sessions: dict[str, Saved] = {}
        self._dropped: list[str] = []
        #: Whether an event goes into the history (``recovery.events``).
        self.keeps = name_test(config.events)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    async def load(self) -> None:
        if self._store is None:
            return
        since = time.time() - self.config.max_disconnection
        rows, sessions, self.seq = await self._store.recovery_state(since)
        for seq, namespace, rooms, exclude, frames, emitted_at in rows:
            self._history.append(
                Entry(
                    seq,
                    namespace,
                    None if rooms is None else frozenset(orjson.loads(rooms)),
                    frozenset(orjson.loads(exclude)),
                    _decode_frames(frames),
                    emitted_at,
                )
            )
        for body in sessions:
            data = orjson.loads(body)
            saved = Saved(**{**data, "rooms": frozenset(data["rooms"])})
            self._sessions[saved.pid] = saved
        log.info("recovery state loaded", extra={"fields": {"events": len(self._history), "sessions": len(self._sessions)}})

    # ---------------------------------------------------------- emitting
    def next_offset(self) -> tuple[int, str]:
        self.seq += 1
        return self.seq, str(self.seq)

    def record(
        self, seq: int, namespace: str, rooms: list[str] | None, exclude: tuple[str, ...] | list[str], frames: tuple[Frame, ...]
    ) -> None:
        entry = Entry(seq, namespace, None if rooms is None else frozenset(rooms), frozenset(exclude), frames, time.time())
        self._history.append(entry)
        if self._store is not None:
            self._unsaved_history.append(entry)

    # ------------------------------------------------------------ sessions
    @staticmethod
    def new_pid() -> str:
        return secrets.token_urlsafe(15)

    def persist(self, socket: Socket) -> None:
        """Keep a dropped socket's session for ``max_disconnection`` seconds."""
        identity = socket.identity
        if socket.pid is None or identity is None:
            return
        saved = Saved(
            socket.pid,
            socket.sid,
            socket.namespace_name,
            identity.user,
            frozenset(socket.rooms - {socket.sid}),
            socket.start_seq,
            time.time(),
        )
        self._sessions[saved.pid] = saved
        if self._store is not None:
            self._unsaved_sessions[saved.pid] = saved

    async def restore(
        self, pid: Any, offset: Any, user: str, namespace: str, anonymous: bool
    ) -> tuple[Saved, list[tuple[Frame, ...]]] | None:
        """The session and the frames it missed, or None (then connect afresh)."""
        if not isinstance(pid, str):
            return None
        saved = self._sessions.get(pid)
        if saved is None or saved.namespace != namespace:
            return None
        if saved.user != user and not anonymous:
            return None
        if time.time() - saved.disconnected_at > self.config.max_disconnection:
            self._forget(pid)
            return None
        after = saved.start_seq
        if isinstance(offset, str) and offset.isdigit():
            after = int(offset)
        if self._history and after < self._history[0].seq - 1:
            return None  # events it missed were already dropped from the history
        rooms = saved.rooms | {saved.sid}
        missed = [e.frames for e in self._history if e.seq > after and e.reaches(namespace, rooms)]
        self._forget(pid)
        return saved, missed

    def _forget(self, pid: str) -> None:
        self._sessions.pop(pid, None)
        self._unsaved_sessions.pop(pid, None)
        if self._store is not None:
            self._dropped.append(pid)

    # ------------------------------------------------------- persistence
    async def flush(self) -> None:
        if self._store is None:
            return
        history, self._unsaved_history = self._unsaved_history, []
        sessions, self._unsaved_sessions = self._unsaved_sessions, {}
        dropped, self._dropped = self._dropped, []
        if not (history or sessions or dropped):
            return
        keep_after = time.time() - self.config.max_disconnection
        try:
            await self._save(history, sessions, dropped, keep_after)
        except BaseException:
            # Not written: kept for the next flush (older first).
            self._unsaved_history = history + self._unsaved_history
            self._unsaved_sessions = {**sessions, **self._unsaved_sessions}
            self._dropped = dropped + self._dropped
            raise

    async def _save(self, history: list[Any], sessions: dict[str, Any], dropped: list[Any], keep_after: float) -> None:
        assert self._store is not None
        await self._store.save_recovery(
            [
                (
                    e.seq,
                    e.namespace,
                    None if e.rooms is None else orjson.dumps(sorted(e.rooms)),
                    orjson.dumps(sorted(e.exclude)),
                    _encode_frames(e.frames),
                    e.emitted_at,
                )
                for e in history
            ],
            [(s.pid, orjson.dumps(attrs.asdict(s), default=sorted), s.disconnected_at) for s in sessions.values()],
            dropped,
            keep_after,
        )

    async def run(self) -> None:
        """Write new history and sessions to the store until cancelled (the
        server flushes once more after every connection has closed)."""
        while True:
            await trio.sleep(self.config.flush_interval)
            await self.flush()
