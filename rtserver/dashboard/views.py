"""The dashboard's views: plain data built from the server's live state.

Each view is answered when the page asks (every couple of seconds for the
one on screen), filtered, sorted and cut to ``limit`` rows here, so a LAN of
thousands of screens does not travel to the browser every time.  The
dashboard's own sockets are left out of users and rooms.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import attrs
from attrs import validators as v

from ..features.signage import latest_layout
from ..nodeinfo import describe, peer
from ..store import StoreUnavailable
from ..version import __version__
from .activity import Activity, address
from .redaction import preview, redact
from .samples import Samples

if TYPE_CHECKING:
    from ..metrics import Stats
    from ..presence import Presence
    from ..retained import Retained
    from ..socketio.server import SocketIOServer
    from ..socketio.socket import Socket
    from ..store import Store

_LIMIT = attrs.field(default=500, validator=[v.ge(1), v.le(5000)])
_TEXT = attrs.field(default="", validator=v.max_len(256))
#: Handshake query parameters of the transport itself, not worth showing.
_TRANSPORT_QUERY = ("EIO", "transport", "sid", "t", "j", "b64")
_SHOWN_MEMBERS = 20
_LAYOUT_CHARS = 120


@attrs.frozen
class OverviewQuery:
    #: Plot points newer than this (epoch seconds) are sent.
    since: float = 0.0


@attrs.frozen
class DevicesQuery:
    #: None: the first tenant with devices.
    tenant: str | None = None
    text: str = _TEXT
    status: str = attrs.field(default="all", validator=v.in_(["all", "online", "offline"]))
    sort: str = attrs.field(default="status", validator=v.in_(["status", "id", "lastSeen", "layout"]))
    limit: int = _LIMIT


@attrs.frozen
class UsersQuery:
    #: None: every tenant.
    tenant: str | None = None
    text: str = _TEXT
    limit: int = _LIMIT


@attrs.frozen
class RoomsQuery:
    namespace: str = "/"
    text: str = _TEXT
    limit: int = _LIMIT


def _wall(monotonic_stamp: float) -> float:
    return time.time() - (time.monotonic() - monotonic_stamp)


def _matches(text: str, *fields: Any) -> bool:
    if not text:
        return True
    needle = text.lower()
    return any(needle in str(f).lower() for f in fields if f is not None)


def socket_row(socket: Socket) -> dict[str, Any]:
    """One socket as the users and devices views show it (no secrets)."""
    identity = socket.identity
    request = socket.handshake
    query = {k: v for k, v in request.query.items() if k not in _TRANSPORT_QUERY}
    return {
        "sid": socket.sid,
        "namespace": socket.namespace_name,
        "transport": socket.transport,
        "address": address(socket),
        "rooms": sorted(socket.rooms - {socket.sid}),
        "since": round(_wall(socket.client.session.opened_at), 3),
        "device": None if identity is None else identity.device,
        "userAgent": request.headers.get("user-agent"),
        "origin": request.headers.get("origin"),
        "query": redact(query),
        "auth": redact(socket.auth) if isinstance(socket.auth, dict) else None,
    }


class Views:
    def __init__(
        self,
        sio: SocketIOServer,
        presence: Presence,
        store: Store,
        retained: Retained,
        stats: Stats,
        samples: Samples,
        activity: Activity,
        node_id: str,
        namespace: str,
        layout_event: str | None,
    ) -> None:
        self._sio = sio
        self._presence = presence
        self._store = store
        self._retained = retained
        self._stats = stats
        self._samples = samples
        self._activity = activity
        #: This node's id when the cluster is off (clustered: the bus's).
        self._node_id = node_id
        self._namespace = namespace
        #: The signage feature's layout event, when that feature runs.
        self._layout_event = layout_event

    # ------------------------------------------------------------- helpers
    def _sockets(self) -> list[Socket]:
        """Every connected socket on this node, the dashboard's own left out."""
        sio = self._sio
        return [
            s for namespace in sio.hub.namespaces() if namespace != self._namespace
            for s in sio.app.sockets(namespace=namespace)
        ]

    async def nodes(self) -> tuple[list[dict[str, Any]], bool]:
        """The nodes the overview lists, this one first, and whether every
        other node answered (at most ``cluster.request_timeout``)."""
        bus = self._sio.bus
        own = {**describe(bus.uid if bus is not None else self._node_id, self._stats), "self": True}
        if bus is None:
            return [own], True
        answers, complete = await bus.command("node", {})
        peers = [{**found, "self": False} for found in map(peer, answers) if found is not None]
        return [own, *sorted(peers, key=lambda n: n["id"])], complete

    def tenants(self) -> list[str]:
        found = {t for t in self._sio.guard.device_tenants.values() if t}
        found.update(t for t, _ in self._presence.users.counts)
        found.update(s.identity.tenant for s in self._sockets() if s.identity is not None and s.identity.tenant)
        return sorted(found)

    # --------------------------------------------------------------- views
    async def overview(self, query: OverviewQuery) -> dict[str, Any]:
        stats = self._stats
        nodes, every_node = await self.nodes()
        gauges = stats.gauges()
        connections = gauges.get("connections", {})
        return {
            "nodes": nodes,
            "everyNode": every_node,
            "version": __version__,
            "uptime": round(time.time() - stats.started, 1),
            "connections": {"total": sum(connections.values()), **connections},
            "namespaces": gauges.get("sockets", {}),
            "onlineUsers": len(self._presence.users.counts),
            "onlineDevices": len(self._presence.devices.counts),
            "tenants": len(self.tenants()),
            "messages": {"in": stats.messages_in, "out": stats.messages_out},
            "rates": self._samples.latest_rates(),
            "refusals": dict(sorted(stats.refusals.items())),
            "slowConsumers": stats.overflows,
            "faults": dict(sorted(stats.faults.items())),
            "interval": self._samples.interval,
            "samples": self._samples.series(query.since),
            "signage": self._layout_event is not None,
        }

    async def devices(self, query: DevicesQuery) -> dict[str, Any]:
        tenants = self.tenants()
        registry = self._sio.guard.device_tenants
        tenant = query.tenant
        if tenant is None:
            with_devices = set(registry.values())
            tenant = next((t for t in tenants if t in with_devices), tenants[0] if tenants else None)
        if tenant is None:
            return {"tenants": tenants, "tenant": None, "total": 0, "devices": [], "signage": self._layout_event is not None}
        try:
            stored = {row[0]: row for row in await self._store.devices(tenant)}
        except StoreUnavailable:
            stored = {}  # the cluster's store is away: what this node knows
        ids = set(stored) | {d for d, t in registry.items() if t == tenant}
        live: dict[str, list[Socket]] = {}
        for s in self._sockets():
            identity = s.identity
            if identity is not None and identity.device and identity.tenant == tenant:
                live.setdefault(identity.device, []).append(s)
                ids.add(identity.device)
        rows = [self._device_row(tenant, device, stored.get(device), live.get(device, [])) for device in ids]
        rows = [
            r for r in rows
            if (query.status == "all" or (query.status == "online") == r["online"])
            and _matches(query.text, r["deviceId"], r["owner"], r["address"], " ".join(r["channels"]),
                         (r["layout"] or {}).get("layoutId"))
        ]
        rows.sort(key=_DEVICE_ORDER[query.sort])
        return {"tenants": tenants, "tenant": tenant, "total": len(rows), "devices": rows[: query.limit],
                "signage": self._layout_event is not None}

    def _device_row(self, tenant: str, device: str, stored: tuple[Any, ...] | None, sockets: list[Socket]) -> dict[str, Any]:
        key = (tenant, device)
        presence = self._presence
        seen = presence.last_seen.get(key, stored[4] if stored else None)
        trace = self._activity.devices.get(key)
        if sockets:
            newest = max(sockets, key=lambda s: s.client.session.opened_at)
            owner: str | None = newest.identity.user if newest.identity else None
            where: str | None = address(newest)
            channels = sorted({room for s in sockets for room in s.rooms - {s.sid}})
        else:
            owner = stored[2] if stored else None
            where = trace.address if trace else None
            channels = list(trace.channels) if trace else []
        layout = None
        if self._layout_event is not None:
            kept = latest_layout(self._retained, self._layout_event, tenant, device)
            if kept is not None:
                payload = kept["payload"] if isinstance(kept["payload"], dict) else {}
                layout = {
                    "at": kept.get("at"),
                    "layoutId": payload.get("layoutId"),
                    "forDevice": payload.get("deviceId") == device,
                    "data": preview(payload.get("layoutData"), _LAYOUT_CHARS),
                }
        return {
            "deviceId": device,
            "owner": owner,
            "online": presence.devices.online(key),
            "lastSeen": seen,
            "address": where,
            "channels": channels,
            "sockets": [socket_row(s) for s in sockets],
            "layout": layout,
        }

    def users(self, query: UsersQuery) -> dict[str, Any]:
        grouped: dict[tuple[str, str], list[Socket]] = {}
        for s in self._sockets():
            identity = s.identity
            if identity is not None:
                grouped.setdefault((identity.tenant or "", identity.user), []).append(s)
        # Online by presence but no socket here: inside the grace period.
        for key in self._presence.users.counts:
            grouped.setdefault(key, [])
        rows = []
        for (tenant, user), sockets in grouped.items():
            if query.tenant is not None and tenant != query.tenant:
                continue
            rooms = {room for s in sockets for room in s.rooms - {s.sid}}
            if not _matches(query.text, tenant, user, " ".join(rooms), *(s.sid for s in sockets)):
                continue
            entry = self._presence.user_entry(tenant, user) if tenant else {}
            rows.append({
                "tenant": tenant or None,
                "user": user,
                "online": bool(sockets) or entry.get("status") == "online",
                "statusText": entry.get("statusText"),
                "sockets": sorted((socket_row(s) for s in sockets), key=lambda r: r["since"]),
            })
        rows.sort(key=lambda r: (r["tenant"] or "", r["user"]))
        return {"tenants": self.tenants(), "total": len(rows), "users": rows[: query.limit]}

    def rooms(self, query: RoomsQuery) -> dict[str, Any]:
        hub = self._sio.hub
        namespaces = sorted(n for n in hub.namespaces() if n != self._namespace)
        if query.namespace == self._namespace:
            return {"namespaces": namespaces, "namespace": query.namespace, "total": 0, "rooms": []}
        rows = []
        for room, size in hub.rooms(query.namespace).items():
            if hub.member(query.namespace, room) is not None or not _matches(query.text, room):
                continue
            last = self._activity.room_events.get((query.namespace, room))
            rows.append({"room": room, "size": size, "lastEvent": None if last is None else {"event": last[0], "at": round(last[1], 3)}})
        rows.sort(key=lambda r: (-r["size"], r["room"]))
        total, rows = len(rows), rows[: query.limit]
        for row in rows:
            members = sorted(hub.members(query.namespace, [row["room"]]), key=lambda m: m.sid)[:_SHOWN_MEMBERS]
            row["members"] = [
                {"sid": m.sid, "user": m.identity.user if getattr(m, "identity", None) else None} for m in members
            ]
        return {"namespaces": namespaces, "namespace": query.namespace, "total": total, "rooms": rows}


_DEVICE_ORDER = {
    # Offline first: they are what an operator looks for.
    "status": lambda r: (r["online"], r["deviceId"]),
    "id": lambda r: r["deviceId"],
    # Longest unseen first.
    "lastSeen": lambda r: (r["lastSeen"] is not None, r["lastSeen"] or 0.0, r["deviceId"]),
    # Most recent layout first; devices without one last.
    "layout": lambda r: (r["layout"] is None, -((r["layout"] or {}).get("at") or 0.0), r["deviceId"]),
}
