"""CreatiWall digital signage: the REST-driven WebSocket API of seed 002.

The document's clients talk to the server in two steps, through a wrapper
(``webSocketService`` / ``useWebSocket``) around the stock socket.io-client:

1. ``POST /api/websocket/connect`` (``Authorization: Bearer <jwt>``, body
   ``{deviceId?, channels?}``) authorizes and *registers* a channel set and
   answers ``{success: true, data: {connectionId, channels}}``.  ``channels``
   is ``tenant:{t}``, ``user:{u}``, ``device:{d}`` (only when ``deviceId`` is
   given and the token's ``devices`` claim owns it) and then each custom
   channel *as the client named it*; internally a custom name ``alerts`` is
   the room ``tenant:{t}:alerts``, so tenants using the same name never meet.
   Every channel passes the room rules (:mod:`rtserver.auth.rules`).
2. The wrapper opens socket.io-client on the server's Socket.IO path with
   ``auth: {token, connectionId}`` (the ``connectionId`` query parameter works
   too).  The socket must carry a token of the same user and tenant, and joins
   exactly the registered channels.  A registration names a device, so the
   socket need not present ``deviceId`` itself; if it does, it must be the
   registered one.  The socket then counts as that device for presence.

What rtserver expects from such a wrapper: call ``connect`` first and pass the
returned ``connectionId`` (and the same JWT) in the socket's ``auth``; keep
the same ``auth`` object for automatic reconnections (the registration stays
valid until ``disconnect`` or ``registration_ttl`` seconds without a socket;
it is kept in the store, so it survives a restart and every node of a
cluster accepts it);
map ``on``/``off`` to ``socket.on``/``off`` (handlers receive the event's
single argument: the broadcast's ``data``, or the layout/content/device
payload); map ``send``, ``sendLayoutUpdate``, ``sendContentSync``,
``getStatus`` and ``disconnect`` to the REST calls below.

Every answer is ``{success: true, data}``; every error, auth included, is
``{success: false, error: {code, message}}`` with a matching HTTP status
(400 invalid_body/invalid_json/reserved_type/invalid_channel, 401
auth_required/token_invalid/..., 403 forbidden/tenant_required, 404
unknown_connection/unknown_device, 413 payload_too_large, 429
too_many_registrations).  Messages never name another tenant.

Callers: a user JWT (route access "user"), or an API key: a trusted back end,
which must name the tenant (``tenantId`` in the body, or the query for
``status``) and, for ``connect``, the ``userId`` the socket will present.
Within a tenant an API key acts as a tenant admin.

- ``broadcast`` ``{type, data, channel?, target?}`` emits event ``type`` with
  argument ``data`` to the channel and/or target (both: the union).  Neither:
  the caller's tenant (the document's ``send({type, data})`` names none).  Who
  may reach what: ``tenant:{own}`` and its custom channels, ``user:{self}``,
  owned devices; admins also any user of their tenant and any device
  registered to it.  Delivery is fenced: only sockets of the caller's tenant
  receive it.  Socket.IO's reserved names and the server-owned events
  (``layout_update``, ``content_sync``, ``device_status``) are refused as
  types: use their endpoints, which keep retained state and cannot be spoofed.
- ``layout-update`` ``{layoutId, deviceIds?, layoutData?}`` emits
  ``layout_update`` ``{layoutId, layoutData, deviceId?, timestamp, updatedBy}``
  to each named device room (each device must be registered to the caller's
  tenant by an earlier device connection, or owned by the caller's token and
  registered nowhere else; all are checked before anything is sent), or to
  the tenant room when ``deviceIds`` is absent.  The last update per device
  and per tenant is retained (written through to the store); when a device
  socket connects (after a power cut, a restart of either side) it is sent
  the newer of the two at once.
- ``content-sync`` ``{contentType, contentId, action, data?}`` emits
  ``content_sync`` with the same fields plus ``timestamp`` and ``userId`` to
  the tenant room.  ``action`` is one of ``content_actions``.
- ``disconnect`` ``{connectionId?, deviceId?}`` ends the sockets of a
  registration (the owner's, or any in the tenant for an admin), or with only
  ``deviceId`` every socket of that device in the tenant; the stock client
  does not reconnect after it.  The registration is forgotten.
- ``status`` answers ``{totalConnections, totalRegistrations, channels,
  channelConnections, devices: [{deviceId, status, lastSeen}], onlineUsers,
  heartbeatInterval, timestamp}`` for the caller's tenant only.

``device_status`` ``{deviceId, status, timestamp, lastSeen}`` comes from
presence (``[presence] device_event``), sent to the tenant room when a device
goes online or (after ``presence.grace``) offline.  The 30 s heartbeat is
Engine.IO's ping (``[engineio] ping_interval = 30``).  Browsers on another
origin get CORS headers from ``[engineio] cors_origins`` (preflight included).
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import orjson

from ..api.common import CONVERTER, ApiError, Call, CallerAuth, parse_body, unavailable
from ..auth import rules
from ..auth.errors import Refusal
from ..auth.identity import Identity
from ..faults import guarded
from ..http.messages import Request, Response, json_response
from ..presence import iso
from ..retained import Retained
from ..socketio.packets import RESERVED_EVENTS
from ..socketio.socket import Socket
from ..store import Store, StoreUnavailable
from . import Context
from .common import tenant_sids

#: Socket.IO's own event names, and the error event: a broadcast may not use them.
RESERVED = RESERVED_EVENTS | {"error"}
_MAX_NAME = 256
_MAX_TYPE = 64
_MAX_DEVICES = 1000
_ALPHABET = string.ascii_lowercase + string.digits
_CONNECTION_KEY = "signage.connectionId"


@attrs.frozen
class Settings:
    #: Where the six routes live (under /api/, where the HTTP API is served).
    path_prefix: str = attrs.field(default="/api/websocket", validator=attrs.validators.matches_re(r"/api/[^?#]+"))
    layout_event: str = "layout_update"
    content_event: str = "content_sync"
    #: Socket auth field (or query parameter) carrying the registration's id.
    connection_field: str = "connectionId"
    #: Seconds a registration with no socket attached is kept (reconnects reuse it).
    registration_ttl: float = attrs.field(default=3600.0, validator=attrs.validators.gt(0))
    #: Registrations one user may hold; the oldest idle one makes room, else 429.
    max_registrations_per_user: int = attrs.field(default=20, validator=attrs.validators.ge(1))
    #: Custom channels per registration.
    max_channels: int = attrs.field(default=20, validator=attrs.validators.ge(0))
    #: Largest JSON ``data`` / ``layoutData`` accepted, in bytes.
    max_message_bytes: int = attrs.field(default=65536, validator=attrs.validators.ge(64))
    #: Roles needed for layout-update and content-sync; empty: any tenant member.
    publisher_roles: tuple[str, ...] = ()
    content_actions: tuple[str, ...] = ("create", "update", "delete")


# ------------------------------------------------------------- bodies
@attrs.frozen
class ConnectBody:
    deviceId: str | None = None
    channels: tuple[str, ...] = ()
    tenantId: str | None = None
    userId: str | None = None


@attrs.frozen
class DisconnectBody:
    connectionId: str | None = None
    deviceId: str | None = None
    tenantId: str | None = None


@attrs.frozen
class BroadcastBody:
    type: str
    data: Any = None
    channel: str | None = None
    target: str | None = None
    tenantId: str | None = None


@attrs.frozen
class LayoutBody:
    layoutId: str
    deviceIds: tuple[str, ...] | None = None
    layoutData: Any = None
    tenantId: str | None = None


@attrs.frozen
class ContentBody:
    contentType: str
    contentId: str
    action: str
    data: Any = None
    tenantId: str | None = None


@attrs.define
class Registration:
    id: str
    tenant: str
    user: str
    device: str | None
    #: Custom channel names as the client gave them.
    custom: tuple[str, ...]
    channels: list[str]
    sockets: set[Socket] = attrs.Factory(set)
    #: time.monotonic() when the last socket left (or it was made); None while in use.
    idle_since: float | None = None


def _text(value: str | None, field: str, limit: int = _MAX_NAME) -> str | None:
    if value is not None and not 0 < len(value) <= limit:
        raise ApiError(400, "invalid_body", f"body.{field}: 1 to {limit} characters")
    return value


class Signage:
    def __init__(self, ctx: Context, settings: Settings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.auth = CallerAuth(ctx.guard)
        self.admin_roles = ctx.config.auth.admin_roles
        self.registrations: dict[str, Registration] = {}
        self.server_events = {settings.layout_event, settings.content_event, ctx.config.presence.device_event} - {""}

    # ------------------------------------------------------------ helpers
    def device_tenant(self, device: str) -> str | None:
        return self.ctx.guard.device_tenants.get(device)

    def _json(self, request: Request, kind: type[Any], empty_ok: bool = False) -> Any:
        if not request.body and empty_ok:
            return CONVERTER.structure({}, kind)
        return parse_body(request, kind)

    def _size(self, value: Any, field: str) -> None:
        if len(orjson.dumps(value)) > self.settings.max_message_bytes:
            raise ApiError(413, "payload_too_large", f"body.{field}: at most {self.settings.max_message_bytes} bytes of JSON")

    def _acting(self, caller: Identity | None, tenant: str | None, user: str | None = None) -> Identity:
        """Who acts: the JWT's identity, or for an API key the tenant (and user) it names."""
        if caller is None:
            if not tenant:
                raise ApiError(400, "invalid_body", "body.tenantId: an API-key caller must name the tenant")
            if user is not None:
                return Identity(user=user, tenant=tenant)
            return Identity(user="api", tenant=tenant, roles=frozenset(self.admin_roles))
        if not caller.tenant:
            raise ApiError(403, "tenant_required", "the token carries no tenant")
        if (tenant is not None and tenant != caller.tenant) or (user is not None and user != caller.user):
            raise ApiError(403, "forbidden", "a token acts for its own tenant and user only")
        return caller

    def _admin(self, identity: Identity) -> bool:
        return identity.has_role(self.admin_roles)

    def _publisher(self, identity: Identity) -> None:
        roles = self.settings.publisher_roles
        if roles and not identity.has_role(roles) and not self._admin(identity):
            raise ApiError(403, "forbidden", f"publishing needs one of the roles {', '.join(roles)}")

    def _room(self, identity: Identity, name: Any, field: str) -> str:
        """The room ``name`` stands for, if ``identity`` may reach it (room rules;
        an admin also reaches any user of the tenant: delivery is fenced)."""
        if not isinstance(name, str) or not 0 < len(name) <= _MAX_NAME:
            raise ApiError(400, "invalid_channel", f"{field}: a channel is a name of 1 to {_MAX_NAME} characters")
        room = rules.qualify(identity, name)
        try:
            rules.check_room(identity, room, self.admin_roles, self.device_tenant)
        except Refusal as refusal:
            if not (room.startswith("user:") and self._admin(identity)):
                raise ApiError(refusal.status, refusal.code, f"{field}: {refusal.message}") from None
        return room

    async def _deliver(self, event: str, payload: Any, rooms: list[str], tenant: str) -> int:
        """Emit to the rooms' sockets that belong to ``tenant`` only (on every
        node; the count is this node's)."""
        sids = await tenant_sids(self.ctx, rooms, tenant)
        return self.ctx.app.emit(event, payload, to=sids) if sids else 0

    def _sweep(self) -> None:
        """Forget idle registrations here (the store expires its copy by itself)."""
        cutoff = time.monotonic() - self.settings.registration_ttl
        for reg in list(self.registrations.values()):
            if not reg.sockets and reg.idle_since is not None and reg.idle_since < cutoff:
                del self.registrations[reg.id]

    async def _find(self, conn_id: str) -> Registration | None:
        """A registration made here, or on another node / before a restart (from the store)."""
        self._sweep()
        reg = self.registrations.get(conn_id)
        if reg is not None:
            return reg
        body = await self.ctx.store.registration(conn_id)
        if body is None:
            return None
        fields = orjson.loads(body)
        reg = self.registrations[conn_id] = Registration(
            conn_id, fields["tenant"], fields["user"], fields["device"], tuple(fields["custom"]), fields["channels"],
            idle_since=time.monotonic(),
        )
        return reg

    def _stored(self, reg: Registration, idle: bool) -> Awaitable[None]:
        """Write a registration to the store: expiring ``registration_ttl``
        from now while idle, kept while a socket uses it."""
        body = orjson.dumps({"tenant": reg.tenant, "user": reg.user, "device": reg.device, "custom": reg.custom,
                             "channels": reg.channels})
        return self.ctx.store.save_registration(reg.id, body, self.settings.registration_ttl if idle else None)

    def _in_background(self, what: str, write: Callable[..., Awaitable[None]], *args: Any) -> None:
        self.ctx.sio.nursery.start_soon(guarded, self.ctx.sio.hub.stats.faults, what, write, *args)

    # ------------------------------------------------------ store mirror
    def store_changed(self, kind: str, args: list[Any]) -> None:
        """Another node ended a registration: its sockets here end too."""
        if kind == "unregister":
            reg = self.registrations.pop(args[0], None)
            for socket in list(reg.sockets if reg is not None else ()):
                socket.disconnect()

    async def store_reloaded(self, store: Store) -> None:
        """Back from an outage: registrations ended meanwhile end here too."""
        for reg in list(self.registrations.values()):
            if await store.registration(reg.id) is None:
                self.store_changed("unregister", [reg.id])

    async def _end(self, reg: Registration) -> int:
        """Forget a registration (in the store first: no node may accept it
        again) and end its sockets here."""
        await self.ctx.store.drop_registration(reg.id)
        self.registrations.pop(reg.id, None)
        sockets = list(reg.sockets)
        for socket in sockets:
            socket.disconnect()
        return len(sockets)

    # ------------------------------------------------------------- routes
    async def connect(self, call: Call) -> Response:
        body: ConnectBody = self._json(call.request, ConnectBody, empty_ok=True)
        if call.caller is None and not body.userId:
            raise ApiError(400, "invalid_body", "body.userId: an API-key caller must name the user")
        identity = self._acting(call.caller, body.tenantId, body.userId)
        assert identity.tenant is not None
        device = _text(body.deviceId, "deviceId")
        if device is not None:
            if call.caller is not None and device not in identity.devices:
                raise ApiError(403, "forbidden", "rule device: the token does not own this device")
            owner_tenant = self.device_tenant(device)
            if owner_tenant is not None and owner_tenant != identity.tenant:
                raise ApiError(403, "forbidden", "rule device: the token does not own this device")
            identity = attrs.evolve(identity, devices=identity.devices | {device})
        if len(body.channels) > self.settings.max_channels:
            raise ApiError(400, "invalid_body", f"body.channels: at most {self.settings.max_channels} channels")
        channels = [f"tenant:{identity.tenant}", f"user:{identity.user}"] + ([f"device:{device}"] if device else [])
        custom: list[str] = []
        for index, name in enumerate(body.channels):
            self._room(identity, name, f"body.channels[{index}]")
            if name.startswith("user:") and name != f"user:{identity.user}":
                raise ApiError(403, "forbidden", f"body.channels[{index}]: rule user: only the user may join their own rooms")
            if name not in channels:
                channels.append(name)
                custom.append(name)
        self._sweep()
        mine = [r for r in self.registrations.values() if r.tenant == identity.tenant and r.user == identity.user]
        if len(mine) >= self.settings.max_registrations_per_user:
            idle = sorted((r for r in mine if not r.sockets), key=lambda r: r.idle_since or 0.0)
            if not idle:
                raise ApiError(429, "too_many_registrations", "too many live connections for this user")
            await self.ctx.store.drop_registration(idle[0].id)
            self.registrations.pop(idle[0].id, None)
        conn_id = f"conn_{int(time.time() * 1000)}_{''.join(secrets.choice(_ALPHABET) for _ in range(12))}"
        reg = Registration(conn_id, identity.tenant, identity.user, device, tuple(custom), channels, idle_since=time.monotonic())
        await self._stored(reg, idle=True)  # before answering: any node (or this one restarted) accepts it
        self.registrations[conn_id] = reg
        return _ok({"connectionId": conn_id, "channels": channels})

    async def disconnect(self, call: Call) -> Response:
        body: DisconnectBody = self._json(call.request, DisconnectBody)
        identity = self._acting(call.caller, body.tenantId)
        tenant = identity.tenant
        if body.connectionId is None and body.deviceId is None:
            raise ApiError(400, "invalid_body", "body: give connectionId and/or deviceId")
        if body.connectionId is not None:
            reg = await self._find(body.connectionId)
            if reg is None or reg.tenant != tenant or (reg.user != identity.user and not self._admin(identity)):
                raise ApiError(404, "unknown_connection", "body.connectionId: no such connection")
            if body.deviceId is not None and body.deviceId != reg.device:
                raise ApiError(400, "device_mismatch", "body.deviceId: not the device of this connection")
            return _ok({"connectionId": reg.id, "disconnected": await self._end(reg)})
        device = _text(body.deviceId, "deviceId")
        assert device is not None
        if device not in identity.devices and not (self._admin(identity) and self.device_tenant(device) == tenant):
            raise ApiError(403, "forbidden", "rule device: only the device's owner or a tenant admin may disconnect it")
        ended = 0
        for reg in [r for r in self.registrations.values() if r.tenant == tenant and r.device == device]:
            ended += await self._end(reg)
        for socket in self.ctx.app.sockets(f"device:{device}"):
            if socket.identity is not None and socket.identity.tenant == tenant:
                socket.disconnect()
                ended += 1
        return _ok({"deviceId": device, "disconnected": ended})

    async def broadcast(self, call: Call) -> Response:
        body: BroadcastBody = self._json(call.request, BroadcastBody)
        identity = self._acting(call.caller, body.tenantId)
        assert identity.tenant is not None
        if not 0 < len(body.type) <= _MAX_TYPE:
            raise ApiError(400, "invalid_body", f"body.type: 1 to {_MAX_TYPE} characters")
        if body.type in RESERVED or body.type in self.server_events:
            raise ApiError(400, "reserved_type", f"body.type: {body.type!r} is reserved (use its own endpoint)")
        self._size(body.data, "data")
        names = [(n, f) for n, f in ((body.channel, "body.channel"), (body.target, "body.target")) if n is not None]
        rooms = [self._room(identity, name, field) for name, field in names] or [f"tenant:{identity.tenant}"]
        delivered = await self._deliver(body.type, body.data, rooms, identity.tenant)
        channels = [name for name, _ in names] or [f"tenant:{identity.tenant}"]
        return _ok({"type": body.type, "channels": channels, "delivered": delivered})

    async def layout_update(self, call: Call) -> Response:
        body: LayoutBody = self._json(call.request, LayoutBody)
        identity = self._acting(call.caller, body.tenantId)
        tenant = identity.tenant
        assert tenant is not None
        self._publisher(identity)
        _text(body.layoutId, "layoutId")
        self._size(body.layoutData, "layoutData")
        if body.deviceIds is not None:
            if not 0 < len(body.deviceIds) <= _MAX_DEVICES:
                raise ApiError(400, "invalid_body", f"body.deviceIds: 1 to {_MAX_DEVICES} ids (or leave it out)")
            for index, device in enumerate(body.deviceIds):
                _text(device, f"deviceIds[{index}]")
                registered = self.device_tenant(device)
                if registered != tenant and not (registered is None and device in identity.devices):
                    raise ApiError(404, "unknown_device", f"body.deviceIds[{index}]: no such device in your tenant")
        now = time.time()
        base = {"layoutId": body.layoutId, "layoutData": body.layoutData, "timestamp": iso(now),
                "updatedBy": None if call.caller is None else identity.user}
        delivered = 0
        event = self.settings.layout_event
        if body.deviceIds is None:
            delivered = await self._deliver(event, base, [f"tenant:{tenant}"], tenant)
            await self.ctx.retained.keep(_tenant_key(tenant), event, {"at": now, "payload": base})
        else:
            for device in dict.fromkeys(body.deviceIds):
                payload = {**base, "deviceId": device}
                delivered += await self._deliver(event, payload, [f"device:{device}"], tenant)
                await self.ctx.retained.keep(_device_key(tenant, device), event, {"at": now, "payload": payload})
        return _ok({"layoutId": body.layoutId, "deviceIds": body.deviceIds, "delivered": delivered, "timestamp": base["timestamp"]})

    async def content_sync(self, call: Call) -> Response:
        body: ContentBody = self._json(call.request, ContentBody)
        identity = self._acting(call.caller, body.tenantId)
        assert identity.tenant is not None
        self._publisher(identity)
        _text(body.contentType, "contentType")
        _text(body.contentId, "contentId")
        if body.action not in self.settings.content_actions:
            raise ApiError(400, "invalid_body", f"body.action: one of {', '.join(self.settings.content_actions)}")
        self._size(body.data, "data")
        payload = {"contentType": body.contentType, "contentId": body.contentId, "action": body.action,
                   "data": body.data, "timestamp": iso(time.time()),
                   "userId": None if call.caller is None else identity.user}
        delivered = await self._deliver(self.settings.content_event, payload, [f"tenant:{identity.tenant}"], identity.tenant)
        return _ok({"delivered": delivered, "timestamp": payload["timestamp"]})

    async def status(self, call: Call) -> Response:
        tenant = self._acting(call.caller, call.request.query.get("tenantId")).tenant
        assert tenant is not None
        sockets = [s for s in self.ctx.app.sockets(f"tenant:{tenant}") if s.identity and s.identity.tenant == tenant]
        counts: dict[str, int] = {}
        prefix = f"tenant:{tenant}:"
        for socket in sockets:
            for room in socket.rooms - {socket.sid}:
                name = room.removeprefix(prefix)
                counts[name] = counts.get(name, 0) + 1
        presence = self.ctx.presence
        devices = []
        for device in sorted(d for d, t in self.ctx.guard.device_tenants.items() if t == tenant):
            seen = presence.last_seen.get((tenant, device))
            devices.append({"deviceId": device, "status": "online" if presence.devices.online((tenant, device)) else "offline",
                            "lastSeen": None if seen is None else iso(seen)})
        self._sweep()
        return _ok({
            "totalConnections": len(sockets),
            "totalRegistrations": sum(1 for r in self.registrations.values() if r.tenant == tenant),
            "channels": sorted(counts),
            "channelConnections": dict(sorted(counts.items())),
            "devices": devices,
            "onlineUsers": len(presence.online_users(tenant)),
            "heartbeatInterval": int(self.ctx.config.engineio.ping_interval * 1000),
            "timestamp": iso(time.time()),
        })

    # ------------------------------------------------------------ sockets
    async def middleware(self, socket: Socket, auth: Any) -> None:
        """A socket presenting a connectionId joins exactly its registration's channels."""
        field = self.settings.connection_field
        conn_id = auth.get(field) if isinstance(auth, dict) else None
        conn_id = conn_id if conn_id is not None else socket.handshake.query.get(field)
        if conn_id is None:
            return
        if not isinstance(conn_id, str):
            raise Refusal("invalid_connection", f"{field} is a string", 400)
        try:
            reg = await self._find(conn_id)
        except StoreUnavailable:
            raise Refusal("store_unavailable", "the connectionId cannot be checked right now; try again", 503) from None
        identity = socket.identity
        assert identity is not None
        if reg is None:
            raise Refusal("unknown_connection", "unknown connectionId: call /api/websocket/connect again", 404)
        if identity.user != reg.user or identity.tenant != reg.tenant:
            raise Refusal("forbidden", "the connectionId was registered for another user", 403)
        if reg.device is not None:
            if identity.device not in (None, reg.device) or reg.device not in identity.devices:
                raise Refusal("forbidden", "rule device: the token does not own this device", 403)
            if identity.device is None:
                socket.identity = attrs.evolve(identity, device=reg.device)
                socket.join(f"device:{reg.device}")
                self.ctx.guard._device_tenants[reg.device] = reg.tenant
        elif identity.device is not None:
            raise Refusal("forbidden", "the connectionId was registered without this device", 403)
        socket.join(*(self.ctx.guard.room_for(socket, name) for name in reg.custom))
        socket.data[_CONNECTION_KEY] = conn_id

    def connected(self, socket: Socket) -> None:
        reg = self.registrations.get(socket.data.get(_CONNECTION_KEY, ""))
        if reg is None:
            return
        if not reg.sockets:
            self._in_background("signage registration write", self._stored, reg, False)
        reg.sockets.add(socket)
        reg.idle_since = None
        if reg.device is not None:
            self._replay_layout(socket, reg.tenant, reg.device)

    def disconnected(self, socket: Socket, reason: str) -> None:
        reg = self.registrations.get(socket.data.get(_CONNECTION_KEY, ""))
        if reg is not None:
            reg.sockets.discard(socket)
            if not reg.sockets:
                reg.idle_since = time.monotonic()
                self._in_background("signage registration write", self._stored, reg, True)

    def _replay_layout(self, socket: Socket, tenant: str, device: str) -> None:
        """Send the newest layout meant for the device: its own, or the tenant's."""
        newest = latest_layout(self.ctx.retained, self.settings.layout_event, tenant, device)
        if newest is not None:
            socket.emit(self.settings.layout_event, newest["payload"])


def latest_layout(retained: Retained, event: str, tenant: str, device: str) -> dict[str, Any] | None:
    """The newest retained layout meant for a device, its own or its tenant's:
    ``{"at": epoch seconds, "payload": the layout event's payload}``, or None."""
    own = retained.latest(_device_key(tenant, device)).get(event)
    everyone = retained.latest(_tenant_key(tenant)).get(event)
    candidates = [r for r in (own, everyone) if isinstance(r, dict) and "payload" in r]
    if not candidates:
        return None
    return max(candidates, key=lambda r: r.get("at", 0.0))  # max keeps the first (own) on a tie


def _tenant_key(tenant: str) -> str:
    return f"signage:{tenant}"


def _device_key(tenant: str, device: str) -> str:
    return f"signage:{tenant}:device:{device}"


def _ok(data: Any, status: int = 200) -> Response:
    return json_response(status, {"success": True, "data": data})


def _fail(status: int, code: str, message: str) -> Response:
    return json_response(status, {"success": False, "error": {"code": code, "message": message}})


def _cors(ctx: Context, request: Request) -> tuple[tuple[str, str], ...]:
    origin = request.headers.get("origin")
    allowed = ctx.config.engineio.cors_origins
    if origin and (origin in allowed or "*" in allowed):
        return (("Access-Control-Allow-Origin", origin), ("Vary", "Origin"))
    return ()


def install(ctx: Context, settings: Settings) -> None:
    signage = Signage(ctx, settings)
    ctx.store.mirrors.append(signage)
    ctx.handlers.use(signage.middleware)
    ctx.sio.listeners.append(signage)

    def route(handler: Callable[[Call], Awaitable[Response]]) -> Callable[[Call], Awaitable[Response]]:
        """Authenticate inside, so that auth errors get the envelope too."""

        async def run(call: Call) -> Response:
            try:
                caller = await signage.auth.check(call.request, "user")
                response = await handler(Call(call.request, call.params, caller))
            except ApiError as exc:
                response = _fail(exc.status, exc.code, exc.message)
            except StoreUnavailable as exc:
                error = unavailable(exc)
                response = _fail(error.status, error.code, error.message)
            return attrs.evolve(response, headers=response.headers + _cors(ctx, call.request))

        return run

    async def preflight(call: Call) -> Response:
        headers = _cors(ctx, call.request)
        if headers:
            headers += (("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
                        ("Access-Control-Allow-Headers", "Authorization, Content-Type"),
                        ("Access-Control-Max-Age", "600"))
        return Response(204, b"", headers)

    prefix = "/" + settings.path_prefix.strip("/")
    for method, name, handler in (
        ("POST", "connect", signage.connect),
        ("POST", "disconnect", signage.disconnect),
        ("POST", "broadcast", signage.broadcast),
        ("POST", "layout-update", signage.layout_update),
        ("POST", "content-sync", signage.content_sync),
        ("GET", "status", signage.status),
    ):
        ctx.api.add(method, f"{prefix}/{name}", route(handler), access="public")
        ctx.api.add("OPTIONS", f"{prefix}/{name}", preflight, access="public")
