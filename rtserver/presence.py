"""Who is online, per tenant: users across all their connections, and devices.

A user is online while at least one of their sockets is connected.  When the
last one closes, the offline announcement waits ``presence.grace`` seconds in
a cancel scope; a reconnect within it cancels the wait and nothing is
announced, so a page reload or a Wi-Fi blip does not flap.  Announcements go
to the ``tenant:{t}`` room only: tenants never see each other.  Anonymous and
tenantless identities are not tracked.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import trio

from .app import App
from .auth.errors import Refusal
from .auth.guard import Guard
from .config import PresenceConfig
from .faults import guarded

if TYPE_CHECKING:
    from .socketio.socket import Socket
    from .store import Store

Key = tuple[str, str]  # (tenant, user or device)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _Tracker:
    """Connection counts per key with a grace period before going offline."""

    def __init__(
        self, grace: float, announce: Callable[[Key, str], None], nursery: trio.Nursery, faults: Counter[str]
    ) -> None:
        self._grace = grace
        self._announce = announce
        self._nursery = nursery
        self._faults = faults
        self.counts: dict[Key, int] = {}
        self._leaving: dict[Key, trio.CancelScope] = {}

    def up(self, key: Key) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.counts[key] > 1:
            return
        leaving = self._leaving.pop(key, None)
        if leaving is not None:
            leaving.cancel()  # back within the grace period: never announced offline
        else:
            self._announce(key, "online")

    def down(self, key: Key) -> None:
        count = self.counts.get(key, 0) - 1
        if count > 0:
            self.counts[key] = count
            return
        self.counts.pop(key, None)
        scope = trio.CancelScope()
        self._leaving[key] = scope
        self._nursery.start_soon(guarded, self._faults, "presence offline", self._offline_after_grace, key, scope)

    async def _offline_after_grace(self, key: Key, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(self._grace)
            if self._leaving.get(key) is scope:
                del self._leaving[key]
                self._announce(key, "offline")

    def online(self, key: Key) -> bool:
        return key in self.counts or key in self._leaving


class Presence:
    def __init__(
        self,
        config: PresenceConfig,
        app: App,
        guard: Guard,
        store: Store | None,
        nursery: trio.Nursery,
        faults: Counter[str],
    ) -> None:
        self.config = config
        self._faults = faults
        self._app = app
        self._guard = guard
        self._store = store
        self._nursery = nursery
        self.users = _Tracker(config.grace, self._announce_user, nursery, faults)
        self.devices = _Tracker(config.grace, self._announce_device, nursery, faults)
        self._status_text: dict[Key, str] = {}
        self.last_seen: dict[Key, float] = {}
        self._device_owner: dict[Key, str] = {}

    # ------------------------------------------------- socket listener
    def connected(self, socket: Socket) -> None:
        identity = socket.identity
        if not self.config.enabled or identity is None or identity.anonymous or not identity.tenant:
            return
        self.users.up((identity.tenant, identity.user))
        if identity.device:
            self._device_owner[(identity.tenant, identity.device)] = identity.user
            self.devices.up((identity.tenant, identity.device))

    def disconnected(self, socket: Socket, reason: str) -> None:
        identity = socket.identity
        if not self.config.enabled or identity is None or identity.anonymous or not identity.tenant:
            return
        self.users.down((identity.tenant, identity.user))
        if identity.device:
            self.devices.down((identity.tenant, identity.device))

    # --------------------------------------------------- announcements
    def _announce_user(self, key: Key, status: str) -> None:
        tenant, user = key
        payload = {"userId": user, "status": status, "timestamp": iso(time.time())}
        for online_event, offline_event in self.config.user_events:
            self._app.emit(online_event if status == "online" else offline_event, payload, to=f"tenant:{tenant}")
        if status == "offline":
            self._status_text.pop(key, None)

    def _announce_device(self, key: Key, status: str) -> None:
        tenant, device = key
        now = time.time()
        self.last_seen[key] = now
        stamp = iso(now)
        payload = {"deviceId": device, "status": status, "timestamp": stamp, "lastSeen": stamp}
        if self.config.device_event:
            self._app.emit(self.config.device_event, payload, to=f"tenant:{tenant}")
        if self._store is not None:
            owner = self._device_owner.get(key, "")
            self._nursery.start_soon(
                guarded, self._faults, "device status write", self._store.save_device, device, tenant, owner, status, now
            )

    # --------------------------------------------------------- queries
    def user_entry(self, tenant: str, user: str) -> dict[str, Any]:
        key = (tenant, user)
        entry: dict[str, Any] = {"userId": user, "status": "online" if self.users.online(key) else "offline"}
        if key in self._status_text:
            entry["statusText"] = self._status_text[key]
        return entry

    def online_users(self, tenant: str, room: str | None = None, namespace: str = "/") -> list[dict[str, Any]]:
        """Online users of a tenant, or of the tenant's members in ``room``."""
        if room is None:
            users = {user for (t, user) in self.users.counts if t == tenant}
        else:
            users = {
                s.identity.user
                for s in self._app.sockets(room, namespace)
                if s.identity is not None and s.identity.tenant == tenant
            }
        return [self.user_entry(tenant, user) for user in sorted(users)]

    def set_status(self, tenant: str, user: str, text: str) -> dict[str, Any]:
        self._status_text[(tenant, user)] = text
        return self.user_entry(tenant, user)

    # -------------------------------------------------- socket events
    def install(self, builtins: App) -> None:
        """Built-in socket events: query presence, set one's status text."""

        def identity_of(socket: Socket) -> tuple[str, str]:
            identity = socket.identity
            if identity is None or identity.anonymous or not identity.tenant:
                raise Refusal("forbidden", "presence needs an authenticated user with a tenant", 403)
            return identity.tenant, identity.user

        def query(socket: Socket, options: Any = None) -> dict[str, Any]:
            tenant, _ = identity_of(socket)
            room = options.get("room") if isinstance(options, dict) else None
            if room is not None:
                room = self._guard.room_for(socket, room)
            return {"users": self.online_users(tenant, room, socket.namespace_name)}

        def set_status(socket: Socket, text: Any) -> dict[str, Any]:
            tenant, user = identity_of(socket)
            if isinstance(text, dict):
                text = text.get("status")
            if not isinstance(text, str) or len(text) > 200:
                raise Refusal("invalid_status", "a status is a string of at most 200 characters", 400)
            return self.set_status(tenant, user, text)

        if self.config.enabled and self.config.query_event:
            builtins.on(self.config.query_event, query)
        if self.config.enabled and self.config.status_event:
            builtins.on(self.config.status_event, set_status)
