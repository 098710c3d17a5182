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

from .app import App, ClusterIncomplete
from .auth.errors import Refusal
from .auth.guard import Guard
from .config import PresenceConfig
from .faults import guarded

if TYPE_CHECKING:
    from .cluster.presence import ClusterPresence, Member
    from .socketio.socket import Socket
    from .store import Store

Key = tuple[str, str]  # (tenant, user or device)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _Tracker:
    """Connection counts per key with a grace period before going offline.

    Alone, this node decides and announces every change.  Clustered
    (:meth:`Presence.join_cluster`), it tells Redis of its first and last
    connection per key and the cluster decides (see
    :mod:`rtserver.cluster.presence`); ``known`` mirrors the keys online
    anywhere in the cluster.
    """

    def __init__(
        self, kind: str, grace: float, announce: Callable[[Key, str], None], nursery: trio.Nursery, faults: Counter[str]
    ) -> None:
        self.kind = kind
        self._grace = grace
        self._announce = announce
        self._nursery = nursery
        self._faults = faults
        self.counts: dict[Key, int] = {}
        self._leaving: dict[Key, trio.CancelScope] = {}
        self.cluster: ClusterPresence | None = None
        #: Keys online (or in their grace period) on any node, as last heard.
        self.known: set[Key] = set()

    def up(self, key: Key) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.counts[key] > 1:
            return
        leaving = self._leaving.pop(key, None)
        if leaving is not None:
            leaving.cancel()  # back within the grace period: never announced offline
        if self.cluster is not None:
            self.cluster.connected((self.kind, *key))
        elif leaving is None:
            self._announce(key, "online")

    def down(self, key: Key) -> None:
        count = self.counts.get(key, 0) - 1
        if count > 0:
            self.counts[key] = count
            return
        self.counts.pop(key, None)
        if self.cluster is not None:
            self.cluster.disconnected((self.kind, *key))
        else:
            self.grace(key, None)

    def grace(self, key: Key, token: str | None) -> None:
        """Start ``key``'s grace period (``token``: the cluster's, when clustered)."""
        scope = trio.CancelScope()
        self._leaving[key] = scope
        self._nursery.start_soon(guarded, self._faults, "presence offline", self._offline_after_grace, key, scope, token)

    async def _offline_after_grace(self, key: Key, scope: trio.CancelScope, token: str | None) -> None:
        with scope:
            await trio.sleep(self._grace)
        if self._leaving.get(key) is scope:
            del self._leaving[key]
            if self.cluster is not None and token is not None:
                self.cluster.expire((self.kind, *key), token)
            elif not scope.cancelled_caught:
                self._announce(key, "offline")

    def online(self, key: Key) -> bool:
        return key in self.counts or key in self._leaving or key in self.known

    def online_keys(self) -> set[Key]:
        """Every key online here or (clustered) on any node."""
        return {*self.counts, *self._leaving, *self.known}

    def pending(self) -> list[tuple[str, str, str]]:
        return [(self.kind, *key) for key in self._leaving]


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
        self.users = _Tracker("u", config.grace, self._announce_user, nursery, faults)
        self.devices = _Tracker("d", config.grace, self._announce_device, nursery, faults)
        self._cluster: ClusterPresence | None = None
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

    # ------------------------------------------------------------ cluster
    def join_cluster(self, cluster: ClusterPresence) -> None:
        """Share presence with the other nodes from now on (before any socket connects)."""
        self._cluster = cluster
        cluster.local_counts = lambda: [
            ((tracker.kind, *key), count) for tracker in (self.users, self.devices) for key, count in tracker.counts.items()
        ]
        cluster.pending_graces = lambda: self.users.pending() + self.devices.pending()
        cluster.on_grace = lambda member, token: self._tracker(member).grace(member[1:], token)
        for tracker in (self.users, self.devices):
            tracker.cluster = cluster

    def _tracker(self, member: Member) -> _Tracker:
        return self.users if member[0] == "u" else self.devices

    def announce(self, member: Member, status: str, stamp: float | None) -> None:
        """The cluster decided, on this node, that ``member`` went online or
        offline: written to the store (devices) and shown here; the other
        nodes show it from the presence channel (:meth:`mirror`)."""
        key = (member[1], member[2])
        if member[0] == "d":
            self._save_device(key, status, stamp or time.time())
        self._view(member, status, stamp)

    def mirror(self, member: Member, status: str, value: Any) -> None:
        """What another node decided (or a status text it was given)."""
        if status == "status":
            if member[0] == "u" and isinstance(value, str):
                self._status_text[(member[1], member[2])] = value[:200]
            return
        self._view(member, status, float(value) if isinstance(value, int | float) else None)

    def snapshot(self, online: set[Member]) -> None:
        """The cluster's online keys as Redis holds them (link up): what
        changed while this node was not listening is shown now."""
        for tracker in (self.users, self.devices):
            now = {(t, i) for kind, t, i in online if kind == tracker.kind}
            for key in now - tracker.known:
                self._view((tracker.kind, *key), "online", None)
            for key in tracker.known - now:
                self._view((tracker.kind, *key), "offline", None)

    def _view(self, member: Member, status: str, stamp: float | None) -> None:
        """This node's view of the cluster changes: its own sockets hear of
        it, once per change of the view (so never twice for one change)."""
        tracker, key = self._tracker(member), (member[1], member[2])
        if (key in tracker.known) == (status == "online"):
            return
        if status == "online":
            tracker.known.add(key)
        else:
            tracker.known.discard(key)
        if member[0] == "u":
            self._announce_user(key, status, local=True)
        else:
            self._announce_device(key, status, stamp, local=True)

    # --------------------------------------------------- announcements
    def _announce_user(self, key: Key, status: str, local: bool = False) -> None:
        tenant, user = key
        payload = {"userId": user, "status": status, "timestamp": iso(time.time())}
        for online_event, offline_event in self.config.user_events:
            event = online_event if status == "online" else offline_event
            self._app.emit(event, payload, to=f"tenant:{tenant}", local=local)
        if status == "offline":
            self._status_text.pop(key, None)

    def _announce_device(self, key: Key, status: str, stamp: float | None = None, local: bool = False) -> None:
        """``local``: to this node's sockets only (clustered, each node tells its own)."""
        tenant, device = key
        now = stamp or time.time()
        self.last_seen[key] = now
        when = iso(now)
        payload = {"deviceId": device, "status": status, "timestamp": when, "lastSeen": when}
        if self.config.device_event:
            self._app.emit(self.config.device_event, payload, to=f"tenant:{tenant}", local=local)
        if not local:
            self._save_device(key, status, now)

    def _save_device(self, key: Key, status: str, now: float) -> None:
        if self._store is not None:
            self._nursery.start_soon(guarded, self._faults, "device status write", self._write_device, key, status, now)

    async def _write_device(self, key: Key, status: str, now: float) -> None:
        assert self._store is not None
        tenant, device = key
        owner = self._device_owner.get(key)
        if owner is None:
            # A device announced for a node that died: its owner as the
            # (shared) store knows it; never seen anywhere, nothing to write.
            rows = await self._store.devices(tenant)
            owner = next((row[2] for row in rows if row[0] == device), None)
            if owner is None:
                return
        await self._store.save_device(device, tenant, owner, status, now)

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
            users = {user for (t, user) in self.users.online_keys() if t == tenant}
        else:
            users = {
                s.identity.user
                for s in self._app.sockets(room, namespace)
                if s.identity is not None and s.identity.tenant == tenant
            }
        return [self.user_entry(tenant, user) for user in sorted(users)]

    async def online_users_in(self, tenant: str, room: str | None = None, namespace: str = "/") -> list[dict[str, Any]]:
        """:meth:`online_users`, with a room's members taken from every node
        when clustered (what came in time, when a node did not answer)."""
        if room is None or self._cluster is None:
            return self.online_users(tenant, room, namespace)
        try:
            found = await self._app.fetch_sockets(room, namespace=namespace)
        except ClusterIncomplete as exc:
            found = exc.partial
        users = {
            info.identity["user"]
            for info in found
            if info.identity is not None and info.identity.get("tenant") == tenant and isinstance(info.identity.get("user"), str)
        }
        return [self.user_entry(tenant, user) for user in sorted(users)]

    def set_status(self, tenant: str, user: str, text: str) -> dict[str, Any]:
        self._status_text[(tenant, user)] = text
        if self._cluster is not None:
            self._cluster.status_text(("u", tenant, user), text)
        return self.user_entry(tenant, user)

    # -------------------------------------------------- socket events
    def install(self, builtins: App) -> None:
        """Built-in socket events: query presence, set one's status text."""

        def identity_of(socket: Socket) -> tuple[str, str]:
            identity = socket.identity
            if identity is None or identity.anonymous or not identity.tenant:
                raise Refusal("forbidden", "presence needs an authenticated user with a tenant", 403)
            return identity.tenant, identity.user

        async def query(socket: Socket, options: Any = None) -> dict[str, Any]:
            tenant, _ = identity_of(socket)
            room = options.get("room") if isinstance(options, dict) else None
            if room is not None:
                room = self._guard.room_for(socket, room)
            return {"users": await self.online_users_in(tenant, room, socket.namespace_name)}

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
