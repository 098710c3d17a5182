"""The single-node store: SQLite (WAL) in the data directory.

All SQLite work runs in a worker thread, one call at a time (a capacity
limiter of one), so the event loop never blocks on disk.  The schema version
lives in ``PRAGMA user_version``; :data:`MIGRATIONS` brings an older file up
to date.  A clustered node keeps one too, for its own recovery history.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import trio

from .base import DeviceRow, Store, StoreError, StoreUnavailable

T = TypeVar("T")
P = ParamSpec("P")

DB_NAME = "rtserver.db"

MIGRATIONS: list[str] = [
    """
    CREATE TABLE token_versions (user_id TEXT PRIMARY KEY, version INTEGER NOT NULL);
    CREATE TABLE users (user_id TEXT PRIMARY KEY, tenant TEXT, created_at REAL NOT NULL);
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY, tenant TEXT, owner TEXT, status TEXT, last_seen REAL
    );
    """,
    """
    CREATE TABLE retained (
        room TEXT NOT NULL, event TEXT NOT NULL, payload BLOB NOT NULL, updated_at REAL NOT NULL,
        PRIMARY KEY (room, event)
    );
    CREATE TABLE backlog (
        room TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL, payload BLOB NOT NULL,
        PRIMARY KEY (room, seq)
    );
    """,
    """
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY, namespace TEXT NOT NULL, rooms BLOB, exclude BLOB NOT NULL,
        frames BLOB NOT NULL, emitted_at REAL NOT NULL
    );
    CREATE TABLE sessions (pid TEXT PRIMARY KEY, body BLOB NOT NULL, disconnected_at REAL NOT NULL);
    """,
    """
    CREATE TABLE registrations (key TEXT PRIMARY KEY, body BLOB NOT NULL, expires_at REAL);
    """,
]


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"{path}: schema version {version} is newer than this rtserver knows")
        for number in range(version, len(MIGRATIONS)):
            db.executescript(f"BEGIN; {MIGRATIONS[number]} PRAGMA user_version = {number + 1}; COMMIT;")
        return db
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: {exc}") from None
    except OSError as exc:
        raise StoreError(f"{path}: {exc.strerror}") from None


def _threaded(sync: Callable[Concatenate[SqliteStore, P], T]) -> Callable[Concatenate[SqliteStore, P], Awaitable[T]]:
    """The async twin of a ``*_sync`` method: the same call, in the store's worker thread."""

    async def threaded(self: SqliteStore, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(functools.partial(sync, self, *args, **kwargs))

    threaded.__name__ = threaded.__qualname__ = sync.__name__.removesuffix("_sync")
    threaded.__doc__ = sync.__doc__
    return threaded


class SqliteStore(Store):
    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        super().__init__()
        self._db = db
        self.path = path
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    def open_sync(cls, data_dir: str) -> SqliteStore:
        path = Path(data_dir) / DB_NAME
        return cls(_connect(path), path)

    @classmethod
    async def open(cls, data_dir: str) -> SqliteStore:
        return await trio.to_thread.run_sync(cls.open_sync, data_dir)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from None

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Load the mirrors once: nobody else writes this file."""
        await self._reload_mirrors()
        task_status.started()

    async def close(self) -> None:
        await self._run(self._db.close)

    # ---------------------------------------------------- token versions
    def token_versions_sync(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT user_id, version FROM token_versions").fetchall())

    token_versions = _threaded(token_versions_sync)

    def bump_token_version_sync(self, user: str) -> int:
        row = self._db.execute(
            "INSERT INTO token_versions (user_id, version) VALUES (?, 1) "
            "ON CONFLICT(user_id) DO UPDATE SET version = version + 1 RETURNING version",
            (user,),
        ).fetchone()
        return int(row[0])

    bump_token_version = _threaded(bump_token_version_sync)

    def raise_token_version_sync(self, user: str, version: int) -> int:
        """At least ``version`` (another node's revocation); the version now kept."""
        row = self._db.execute(
            "INSERT INTO token_versions (user_id, version) VALUES (?, ?) "
            "ON CONFLICT(user_id) DO UPDATE SET version = max(version, excluded.version) RETURNING version",
            (user, version),
        ).fetchone()
        return int(row[0])

    raise_token_version = _threaded(raise_token_version_sync)

    # ------------------------------------------------------------- users
    def user_exists_sync(self, user: str) -> bool:
        return self._db.execute("SELECT 1 FROM users WHERE user_id = ?", (user,)).fetchone() is not None

    user_exists = _threaded(user_exists_sync)

    def add_user_sync(self, user: str, tenant: str | None) -> None:
        self._db.execute(
            "INSERT INTO users (user_id, tenant, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT(user_id) DO UPDATE SET tenant = excluded.tenant",
            (user, tenant, time.time()),
        )

    add_user = _threaded(add_user_sync)

    def remove_user_sync(self, user: str) -> bool:
        return self._db.execute("DELETE FROM users WHERE user_id = ?", (user,)).rowcount > 0

    remove_user = _threaded(remove_user_sync)

    def list_users_sync(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT user_id, tenant FROM users ORDER BY user_id").fetchall()
        return [{"user": user, "tenant": tenant} for user, tenant in rows]

    list_users = _threaded(list_users_sync)

    # ----------------------------------------------------------- devices
    def device_tenants_sync(self) -> dict[str, str | None]:
        return dict(self._db.execute("SELECT device_id, tenant FROM devices").fetchall())

    device_tenants = _threaded(device_tenants_sync)

    def save_device_sync(self, device: str, tenant: str | None, owner: str, status: str, seen: float) -> None:
        self._db.execute(
            "INSERT INTO devices (device_id, tenant, owner, status, last_seen) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(device_id) DO UPDATE SET tenant = excluded.tenant, owner = excluded.owner, "
            "status = excluded.status, last_seen = excluded.last_seen",
            (device, tenant, owner, status, seen),
        )

    save_device = _threaded(save_device_sync)

    def devices_sync(self, tenant: str | None = None) -> list[DeviceRow]:
        """Registered devices (of one tenant): (device, tenant, owner, status, last_seen) rows."""
        query = "SELECT device_id, tenant, owner, status, last_seen FROM devices"
        if tenant is None:
            return self._db.execute(query + " ORDER BY device_id").fetchall()
        return self._db.execute(query + " WHERE tenant = ? ORDER BY device_id", (tenant,)).fetchall()

    devices = _threaded(devices_sync)

    # ---------------------------------------------------------- retained
    def retained_sync(self) -> list[tuple[str, str, bytes]]:
        return self._db.execute("SELECT room, event, payload FROM retained ORDER BY updated_at").fetchall()

    retained = _threaded(retained_sync)

    def keep_sync(self, room: str, event: str, payload: bytes) -> None:
        self._db.execute(
            "INSERT INTO retained (room, event, payload, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(room, event) DO UPDATE SET payload = excluded.payload, updated_at = excluded.updated_at",
            (room, event, payload, time.time()),
        )

    keep = _threaded(keep_sync)

    def backlog_sync(self) -> list[tuple[str, int, str, bytes]]:
        return self._db.execute("SELECT room, seq, event, payload FROM backlog ORDER BY room, seq").fetchall()

    backlog = _threaded(backlog_sync)

    def append_sync(self, room: str, seq: int, event: str, payload: bytes, limit: int) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO backlog (room, seq, event, payload) VALUES (?, ?, ?, ?)", (room, seq, event, payload)
            )
            self._db.execute("DELETE FROM backlog WHERE room = ? AND seq <= ?", (room, seq - limit))

    append = _threaded(append_sync)

    def forget_room_sync(self, room: str) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM retained WHERE room = ?", (room,))
            self._db.execute("DELETE FROM backlog WHERE room = ?", (room,))

    forget_room = _threaded(forget_room_sync)

    def trim_backlog_sync(self, room: str, upto: int) -> None:
        with self._db:
            self._db.execute("DELETE FROM backlog WHERE room = ? AND seq <= ?", (room, upto))

    trim_backlog = _threaded(trim_backlog_sync)

    # ---------------------------------------------------- registrations
    def registration_sync(self, key: str) -> bytes | None:
        row = self._db.execute(
            "SELECT body FROM registrations WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)", (key, time.time())
        ).fetchone()
        return None if row is None else bytes(row[0])

    registration = _threaded(registration_sync)

    def save_registration_sync(self, key: str, body: bytes, ttl: float | None) -> None:
        with self._db:
            self._db.execute("BEGIN")
            now = time.time()
            self._db.execute("DELETE FROM registrations WHERE expires_at <= ?", (now,))
            self._db.execute(
                "INSERT OR REPLACE INTO registrations (key, body, expires_at) VALUES (?, ?, ?)",
                (key, body, None if ttl is None else now + ttl),
            )

    save_registration = _threaded(save_registration_sync)

    def drop_registration_sync(self, key: str) -> None:
        self._db.execute("DELETE FROM registrations WHERE key = ?", (key,))

    drop_registration = _threaded(drop_registration_sync)

    # ---------------------------------------------------------- recovery
    def recovery_state_sync(self, since: float) -> tuple[list[tuple[Any, ...]], list[bytes], int]:
        """History rows and session bodies newer than ``since``, and the last seq."""
        history = self._db.execute(
            "SELECT seq, namespace, rooms, exclude, frames, emitted_at FROM history WHERE emitted_at >= ? ORDER BY seq",
            (since,),
        ).fetchall()
        sessions = [row[0] for row in self._db.execute("SELECT body FROM sessions WHERE disconnected_at >= ?", (since,))]
        last = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM history").fetchone()[0]
        return history, sessions, int(last)

    recovery_state = _threaded(recovery_state_sync)

    def save_recovery_sync(
        self,
        history: list[tuple[Any, ...]],
        sessions: list[tuple[str, bytes, float]],
        dropped: list[str],
        keep_after: float,
    ) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?, ?, ?)", history)
            self._db.executemany("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)", sessions)
            self._db.executemany("DELETE FROM sessions WHERE pid = ?", [(pid,) for pid in dropped])
            self._db.execute("DELETE FROM history WHERE emitted_at < ?", (keep_after,))
            self._db.execute("DELETE FROM sessions WHERE disconnected_at < ?", (keep_after,))

    save_recovery = _threaded(save_recovery_sync)
