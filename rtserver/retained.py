"""Retained state: the latest value per (room, event) and bounded backlogs.

What a late joiner must see first: the current deployment status and its
recent log lines, the latest layout meant for a signage screen.  Kept in
memory for replay and written through to the store before the caller goes on
(the ``*_nowait`` forms update memory at once and hand back the store write,
for callers that must not wait), so what a publisher was told is kept
survives a restart.  It mirrors the store: loaded from it at start, and
following other nodes' changes when the store is shared (a cluster).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .socketio.socket import Socket
    from .store import Store


#: A pending store write: await ``write()``.
Write = Callable[[], Awaitable[None]]


async def _run(write: Write | None) -> None:
    if write is not None:
        await write()


#: A backlog's length before its first append says how many entries to keep.
_LOADED_LIMIT = 1000


class Retained:
    def __init__(self, store: Store | None) -> None:
        self._store = store
        self._latest: dict[str, dict[str, Any]] = {}
        self._backlogs: dict[str, deque[tuple[int, str, Any]]] = {}

    # ------------------------------------------------------ store mirror
    async def store_reloaded(self, store: Store) -> None:
        latest: dict[str, dict[str, Any]] = {}
        for room, event, payload in await store.retained():
            latest.setdefault(room, {})[event] = orjson.loads(payload)
        backlogs: dict[str, deque[tuple[int, str, Any]]] = {}
        for room, seq, event, payload in await store.backlog():
            backlog = backlogs.get(room)
            if backlog is None:
                old = self._backlogs.get(room)
                backlog = backlogs[room] = deque(maxlen=old.maxlen if old is not None else _LOADED_LIMIT)
            backlog.append((seq, event, orjson.loads(payload)))
        self._latest, self._backlogs = latest, backlogs

    def store_changed(self, kind: str, args: list[Any]) -> None:
        """Another node kept, appended, trimmed or forgot: the same here, in memory only."""
        if kind == "keep":
            room, event, payload = args
            self._latest.setdefault(room, {})[event] = orjson.loads(payload)
        elif kind == "append":
            room, seq, event, payload, limit = args
            entry = (seq, event, orjson.loads(payload))
            if entry not in self._backlogs.get(room, ()):  # also announced while reloading
                self._remember(room, limit, entry)
        elif kind == "trim":
            self._trim(*args)
        elif kind == "forget":
            self._latest.pop(args[0], None)
            self._backlogs.pop(args[0], None)

    def keep_nowait(self, room: str, event: str, payload: Any) -> Write | None:
        """Remember ``payload`` as the latest ``event`` of ``room`` now; returns
        the store write to await (None without a store)."""
        self._latest.setdefault(room, {})[event] = payload
        if self._store is None:
            return None
        return functools.partial(self._store.keep, room, event, orjson.dumps(payload))

    async def keep(self, room: str, event: str, payload: Any) -> None:
        await _run(self.keep_nowait(room, event, payload))

    def append_nowait(self, room: str, event: str, payload: Any, limit: int) -> Write | None:
        """Add to ``room``'s backlog now, keeping its last ``limit`` entries."""
        backlog = self._backlogs.get(room)
        seq = backlog[-1][0] + 1 if backlog else 1
        self._remember(room, limit, (seq, event, payload))
        if self._store is None:
            return None
        return functools.partial(self._store.append, room, seq, event, orjson.dumps(payload), limit)

    def _remember(self, room: str, limit: int, entry: tuple[int, str, Any]) -> None:
        backlog = self._backlogs.get(room)
        if backlog is None or backlog.maxlen != limit:
            backlog = self._backlogs[room] = deque(backlog or (), maxlen=limit)
        backlog.append(entry)

    async def append(self, room: str, event: str, payload: Any, limit: int) -> None:
        await _run(self.append_nowait(room, event, payload, limit))

    def forget_nowait(self, room: str) -> Write | None:
        self._latest.pop(room, None)
        self._backlogs.pop(room, None)
        if self._store is None:
            return None
        return functools.partial(self._store.forget_room, room)

    def trim_nowait(self, room: str, upto: int) -> Write | None:
        """Drop ``room``'s backlog entries up to sequence number ``upto``
        (those a reader has had), keeping any added since."""
        self._trim(room, upto)
        if self._store is None:
            return None
        return functools.partial(self._store.trim_backlog, room, upto)

    def _trim(self, room: str, upto: int) -> None:
        backlog = self._backlogs.get(room)
        if backlog is not None:
            while backlog and backlog[0][0] <= upto:
                backlog.popleft()
            if not backlog:
                del self._backlogs[room]

    async def forget(self, room: str) -> None:
        await _run(self.forget_nowait(room))

    def latest(self, room: str) -> dict[str, Any]:
        return dict(self._latest.get(room, {}))

    def backlog(self, room: str) -> list[tuple[str, Any]]:
        return [(event, payload) for _, event, payload in self._backlogs.get(room, ())]

    def last_seq(self, room: str) -> int:
        """The sequence number of ``room``'s newest backlog entry (0: none)."""
        backlog = self._backlogs.get(room)
        return backlog[-1][0] if backlog else 0

    def replay(self, socket: Socket, room: str) -> int:
        """Send ``room``'s latest values, then its backlog, to one socket."""
        sent = 0
        for event, payload in self.latest(room).items():
            sent += socket.emit(event, payload)
        for event, payload in self.backlog(room):
            sent += socket.emit(event, payload)
        return sent
