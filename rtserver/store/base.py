"""What every store offers: one interface, two implementations.

:class:`~rtserver.store.sqlite.SqliteStore` is the single-node store (a file
in the data directory); :class:`~rtserver.store.redis.RedisStore` is the
store of a cluster (``[cluster] redis_url``), so a client reconnecting to
another node finds the same token versions, users, devices, retained state,
inboxes and signage registrations.

Upper layers keep what they read on every connection in memory (the guard's
token versions and device tenants, retained state): they are *mirrors*.
A store reloads its mirrors when it starts (and, for Redis, each time its
link comes back, since changes may have been missed) and tells them of
every change another node made.  A write that cannot be stored raises
:class:`StoreUnavailable`; the HTTP API answers it with 503
``store_unavailable`` and acknowledges nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

import trio


class StoreError(Exception):
    """The data directory, database or Redis cannot be used at all (start-up)."""


class StoreUnavailable(Exception):
    """The store cannot answer or keep a write right now; nothing was stored."""


class Mirror(Protocol):
    """An upper layer's in-memory copy of part of the store."""

    def store_changed(self, kind: str, args: list[Any]) -> None:
        """Another node changed the store (see :data:`CHANGES`)."""

    async def store_reloaded(self, store: Store) -> None:
        """Read everything mirrored again (at start, after an outage)."""


#: Changes another node announces, and their arguments.
CHANGES: dict[str, tuple[str, ...]] = {
    "token": ("user", "version"),
    "device": ("device", "tenant"),
    "keep": ("room", "event", "payload"),
    "append": ("room", "seq", "event", "payload", "limit"),
    "trim": ("room", "upto"),
    "forget": ("room",),
    "unregister": ("key",),
}

#: A device row: (device, tenant, owner, status, last_seen).
DeviceRow = tuple[str, str | None, str, str, float]


class Store(ABC):
    """The store's interface (every method may raise :class:`StoreUnavailable`)."""

    def __init__(self) -> None:
        self.mirrors: list[Mirror] = []

    @abstractmethod
    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Load the mirrors, then (for a shared store) follow other nodes'
        changes until cancelled."""
        ...

    async def _reload_mirrors(self) -> None:
        for mirror in self.mirrors:
            await mirror.store_reloaded(self)

    def health(self) -> dict[str, Any] | None:
        """None for a local store; ``{"store": "up"|"down", ...}`` for a shared one."""
        return None

    @abstractmethod
    async def close(self) -> None:
        ...

    # ---------------------------------------------------- token versions
    @abstractmethod
    async def token_versions(self) -> dict[str, int]:
        ...

    @abstractmethod
    async def bump_token_version(self, user: str) -> int:
        """One more than the user's version; the version now kept."""
        ...

    @abstractmethod
    async def raise_token_version(self, user: str, version: int) -> int:
        """At least ``version`` (another node's revocation); the version now kept."""
        ...

    # ------------------------------------------------------------- users
    @abstractmethod
    async def user_exists(self, user: str) -> bool:
        ...

    @abstractmethod
    async def add_user(self, user: str, tenant: str | None) -> None:
        ...

    @abstractmethod
    async def remove_user(self, user: str) -> bool:
        ...

    @abstractmethod
    async def list_users(self) -> list[dict[str, Any]]:
        """``[{"user", "tenant"}]`` ordered by user."""
        ...

    # ----------------------------------------------------------- devices
    @abstractmethod
    async def device_tenants(self) -> dict[str, str | None]:
        ...

    @abstractmethod
    async def save_device(self, device: str, tenant: str | None, owner: str, status: str, seen: float) -> None:
        ...

    @abstractmethod
    async def devices(self, tenant: str | None = None) -> list[DeviceRow]:
        """Registered devices (of one tenant), ordered by device."""
        ...

    # ---------------------------------------------------------- retained
    @abstractmethod
    async def retained(self) -> list[tuple[str, str, bytes]]:
        """(room, event, payload) rows, oldest update first."""
        ...

    @abstractmethod
    async def keep(self, room: str, event: str, payload: bytes) -> None:
        ...

    @abstractmethod
    async def backlog(self) -> list[tuple[str, int, str, bytes]]:
        """(room, seq, event, payload) rows, by room then seq."""
        ...

    @abstractmethod
    async def append(self, room: str, seq: int, event: str, payload: bytes, limit: int) -> None:
        """Add to ``room``'s backlog, keeping its last ``limit`` entries."""
        ...

    @abstractmethod
    async def trim_backlog(self, room: str, upto: int) -> None:
        """Drop ``room``'s backlog entries up to seq ``upto`` (those a reader had)."""
        ...

    @abstractmethod
    async def forget_room(self, room: str) -> None:
        ...

    # -------------------------------------------------- registrations
    @abstractmethod
    async def registration(self, key: str) -> bytes | None:
        """A signage registration's record, None if unknown or expired."""
        ...

    @abstractmethod
    async def save_registration(self, key: str, body: bytes, ttl: float | None) -> None:
        """Keep a record; it expires ``ttl`` seconds from now (None: never)."""
        ...

    @abstractmethod
    async def drop_registration(self, key: str) -> None:
        ...
