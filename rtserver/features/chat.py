"""The NestJS chat vocabulary (seed 003): rooms, messages, presence, admin
announcements and back-end notifications.

Client events (names configurable, defaults = the document's):

- ``join_room {room}`` / ``leave_room {room}``: ``user_joined`` / ``user_left``
  ``{room, userId, user, timestamp}`` go to the other members of the room.
  Room names are tenant-qualified by the guard (``general`` is
  ``tenant:{t}:general``), so two tenants' ``general`` never meet.
- ``send_message {room?, to?, message}``: ``new_message {id, type, from,
  message, room?|to?, timestamp}``; to a room the sender is in (members, the
  sender included, receive it: a client that appends ``new_message`` to its
  list sees its own messages), to one user ``to`` of the sender's tenant (their
  sockets and the sender's own), or, with neither, to the sender's tenant.
- ``get_online_users [{room}]``: answered with the ``online_users`` event
  ``{users: [{id, userId, email?, status}], count}`` and the same as the ack.
- ``ping``: ``pong {user, timestamp}`` (event and ack).
- ``admin_broadcast {message}`` (admin roles only): ``admin_announcement
  {message, from, timestamp}`` to the sender's tenant.

Server events besides: ``user_online`` / ``user_offline`` (configured in
``[presence] user_events``) and ``notification``, pushed by the back end with
``POST /api/v1/chat/notifications {tenant, user?|room?, notification}``; the
``notification`` value is delivered as given.

Errors: every refusal of these events, the core's (rate limit, wrong
argument count) included, is the ``exception`` event shaped like NestJS's
WsException, ``{status: "error", message, code, cause: {pattern: event}}``,
sent to that socket only; an event that asked for an ack also gets it as the
ack.  Choices where the document is silent: a private message to a user not
online in the sender's tenant is refused (``recipient_offline``) rather than
dropped silently; ``leave_room`` of a room one is not in is a no-op, and so
are joining and leaving the automatic ``user:``/``tenant:`` rooms; ``from``
carries ``id`` (the raw user claim, a number stays a number), ``userId`` and
the configured profile claims (``email``, ``name``, ``username``) present in
the token.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import attrs
from attrs import validators as v

from ..api.common import ApiError, Call, ok, parse_body
from ..auth.errors import Refusal
from ..auth.identity import Identity, claim
from ..http.messages import Response
from ..presence import iso
from ..socketio.packets import Packet, PacketType
from ..socketio.socket import Socket, to_frames
from . import Context
from .common import tenant_sids

_name = [v.instance_of(str), v.min_len(1)]


def _api_path(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value.startswith("/api/"):
        raise ValueError(f"'{attribute.name}' must start with '/api/'", attribute)


@attrs.frozen
class Settings:
    join_event: str = attrs.field(default="join_room", validator=_name)
    leave_event: str = attrs.field(default="leave_room", validator=_name)
    send_event: str = attrs.field(default="send_message", validator=_name)
    online_query_event: str = attrs.field(default="get_online_users", validator=_name)
    #: The event answering ``get_online_users`` (also returned as its ack).
    online_users_event: str = attrs.field(default="online_users", validator=_name)
    ping_event: str = attrs.field(default="ping", validator=_name)
    pong_event: str = attrs.field(default="pong", validator=_name)
    admin_event: str = attrs.field(default="admin_broadcast", validator=_name)
    announcement_event: str = attrs.field(default="admin_announcement", validator=_name)
    message_event: str = attrs.field(default="new_message", validator=_name)
    joined_event: str = attrs.field(default="user_joined", validator=_name)
    left_event: str = attrs.field(default="user_left", validator=_name)
    notification_event: str = attrs.field(default="notification", validator=_name)
    #: The WsException-shaped error event.
    error_event: str = attrs.field(default="exception", validator=_name)
    max_message_length: int = attrs.field(default=2000, validator=[v.ge(1), v.le(1_000_000)])
    #: Roles allowed to ``admin_broadcast``; empty: ``auth.admin_roles``.
    admin_roles: tuple[str, ...] = ()
    #: Token claims (dotted paths) copied into the sender info when present.
    profile_claims: tuple[str, ...] = ("email", "name", "username")
    notifications_path: str = attrs.field(default="/api/v1/chat/notifications", validator=_api_path)
    #: Tenant given to tokens without a tenant claim (a single-tenant app);
    #: empty: such connections cannot use the chat events.
    default_tenant: str = ""


@attrs.frozen
class NotificationRequest:
    notification: Any = attrs.field(validator=v.not_(v.instance_of(type(None)), msg="may not be null"))
    tenant: str | None = None
    #: A user id: a string or (NestJS ids are often numbers) an integer.
    user: Any = None
    room: str | None = None


def exception_payload(refusal: Refusal, event: Any) -> dict[str, Any]:
    """NestJS's WsException body plus a machine-readable ``code``."""
    return {"status": "error", "message": refusal.message, "code": refusal.code, "cause": {"pattern": event}}


class Chat:
    def __init__(self, ctx: Context, settings: Settings) -> None:
        self.ctx = ctx
        self.s = settings
        self.admin_roles = settings.admin_roles or ctx.config.auth.admin_roles

    # -------------------------------------------------------- helpers
    def refuse(self, socket: Socket, refusal: Refusal, event: Any, ack_id: int | None) -> None:
        """The refusal shaper of every chat event (see Socket.refuse)."""
        payload = exception_payload(refusal, event)
        socket.emit(self.s.error_event, payload)
        if ack_id is not None:
            socket.deliver(to_frames(Packet(PacketType.ACK, socket.namespace_name, [payload], ack_id)), False)

    def who(self, socket: Socket) -> tuple[Identity, str]:
        identity = socket.identity
        if identity is None or identity.anonymous or not identity.tenant:
            raise Refusal("tenant_required", "chat needs an authenticated user with a tenant", 403)
        return identity, identity.tenant

    def profile(self, identity: Identity) -> dict[str, Any]:
        raw = claim(identity.claims, self.ctx.config.auth.claims.user)
        info: dict[str, Any] = {"id": raw if isinstance(raw, int) and not isinstance(raw, bool) else identity.user,
                                "userId": identity.user}
        for path in self.s.profile_claims:
            value = claim(identity.claims, path)
            if value is not None:
                info[path.split("|")[0].rsplit(".", 1)[-1]] = value
        return info

    @staticmethod
    def fields(data: Any, *, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise Refusal("invalid_payload", f"the payload is an object with {', '.join(allowed)}", 400)
        return data

    def text(self, data: dict[str, Any]) -> str:
        message = data.get("message")
        if not isinstance(message, str) or not message.strip():
            raise Refusal("invalid_message", "message is a non-empty string", 400)
        if len(message) > self.s.max_message_length:
            raise Refusal("message_too_long", f"message is at most {self.s.max_message_length} characters", 413)
        return message

    def room(self, socket: Socket, data: dict[str, Any]) -> tuple[str, str]:
        """(name as the client gave it, the tenant-qualified room)."""
        name = data.get("room")
        if name is None:
            raise Refusal("invalid_room", "room is required", 400)
        return name, self.ctx.guard.room_for(socket, name)

    async def sids_of(self, tenant: str, user: str, namespace: str) -> list[str]:
        """A user's sockets in ``tenant``, on every node."""
        return await tenant_sids(self.ctx, [f"user:{user}"], tenant, namespace)

    # -------------------------------------------------------- events
    @staticmethod
    def automatic(socket: Socket) -> set[str]:
        """The guard's rooms (user, tenant, device, sid): joined for the whole
        connection, never announced, never left on request."""
        identity = socket.identity
        assert identity is not None
        return {socket.sid, f"user:{identity.user}", f"tenant:{identity.tenant}", f"device:{identity.device}"}

    def join(self, socket: Socket, data: Any = None) -> dict[str, Any]:
        identity, _ = self.who(socket)
        name, room = self.room(socket, self.fields(data, allowed=("room",)))
        if room in self.automatic(socket):
            return {"status": "ok", "room": name}
        socket.join(room)
        self.ctx.app.emit(self.s.joined_event, self.presence_change(identity, name), to=room,
                          skip=socket.sid, namespace=socket.namespace_name)
        return {"status": "ok", "room": name}

    def leave(self, socket: Socket, data: Any = None) -> dict[str, Any]:
        identity, _ = self.who(socket)
        name, room = self.room(socket, self.fields(data, allowed=("room",)))
        if room in socket.rooms and room not in self.automatic(socket):
            socket.leave(room)
            self.ctx.app.emit(self.s.left_event, self.presence_change(identity, name), to=room,
                              namespace=socket.namespace_name)
        return {"status": "ok", "room": name}

    def presence_change(self, identity: Identity, name: str) -> dict[str, Any]:
        return {"room": name, "userId": identity.user, "user": self.profile(identity), "timestamp": iso(time.time())}

    async def send(self, socket: Socket, data: Any = None) -> dict[str, Any]:
        identity, tenant = self.who(socket)
        data = self.fields(data, allowed=("room", "to", "message"))
        message = self.text(data)
        payload: dict[str, Any] = {"id": secrets.token_hex(8), "from": self.profile(identity), "message": message}
        ns = socket.namespace_name
        if data.get("room") is not None and data.get("to") is not None:
            raise Refusal("invalid_payload", "give room or to, not both", 400)
        if data.get("room") is not None:
            name, room = self.room(socket, data)
            if room not in socket.rooms:
                raise Refusal("not_in_room", f"join {name!r} before sending to it", 403)
            payload.update(type="room", room=name)
            targets: str | list[str] = room
        elif "to" in data:
            to = data["to"]
            if isinstance(to, bool) or not isinstance(to, str | int) or to == "":
                raise Refusal("invalid_recipient", "to is a user id (string or number)", 400)
            recipients = await self.sids_of(tenant, str(to), ns)
            if not recipients:
                raise Refusal("recipient_offline", f"user {str(to)[:64]!r} is not online", 404)
            payload.update(type="private", to=to)
            targets = sorted({*recipients, *await self.sids_of(tenant, identity.user, ns)})
        else:
            payload["type"] = "broadcast"
            targets = f"tenant:{tenant}"
        payload["timestamp"] = iso(time.time())
        delivered = self.ctx.app.emit(self.s.message_event, payload, to=targets, namespace=ns)
        return {"status": "ok", "id": payload["id"], "delivered": delivered}

    async def online(self, socket: Socket, data: Any = None) -> dict[str, Any]:
        _, tenant = self.who(socket)
        room = None
        if data is not None:
            _, room = self.room(socket, self.fields(data, allowed=("room",)))
        ns = socket.namespace_name
        identities = {s.identity.user: s.identity for s in self.ctx.app.sockets(f"tenant:{tenant}", ns)
                      if s.identity is not None}
        users = []
        for entry in await self.ctx.presence.online_users_in(tenant, room, ns):
            known = identities.get(entry["userId"])
            users.append({**(self.profile(known) if known is not None else {}), **entry})
        answer = {"users": users, "count": len(users)}
        socket.emit(self.s.online_users_event, answer)
        return answer

    def ping(self, socket: Socket, *args: Any) -> dict[str, Any]:
        identity, tenant = self.who(socket)
        answer = {"user": {**self.profile(identity), "tenantId": tenant, "roles": sorted(identity.roles)},
                  "timestamp": iso(time.time())}
        socket.emit(self.s.pong_event, answer)
        return answer

    def admin_broadcast(self, socket: Socket, data: Any = None) -> dict[str, Any]:
        identity, tenant = self.who(socket)
        if not identity.has_role(self.admin_roles):
            raise Refusal("forbidden", f"{self.s.admin_event!r} is for admins only", 403)
        message = self.text(self.fields(data, allowed=("message",)))
        payload = {"message": message, "from": self.profile(identity), "timestamp": iso(time.time())}
        delivered = self.ctx.app.emit(self.s.announcement_event, payload, to=f"tenant:{tenant}",
                                      namespace=socket.namespace_name)
        return {"status": "ok", "delivered": delivered}

    def default_tenant(self, socket: Socket, auth: Any) -> None:
        """Connect middleware: give tenantless tokens ``default_tenant``."""
        identity = socket.identity
        if identity is not None and not identity.anonymous and not identity.tenant:
            socket.identity = attrs.evolve(identity, tenant=self.s.default_tenant)
            socket.join(f"tenant:{self.s.default_tenant}")

    # ----------------------------------------------------------- HTTP
    async def notify(self, call: Call) -> Response:
        body = parse_body(call.request, NotificationRequest)
        tenant = body.tenant
        if call.caller is not None:  # an admin JWT: its own tenant only
            if tenant is None:
                tenant = call.caller.tenant
            if tenant != call.caller.tenant:
                raise ApiError(403, "forbidden", "rule tenant: an admin token reaches its own tenant only")
        if not tenant:
            raise ApiError(400, "invalid_body", "body.tenant: required")
        if body.user is not None and body.room is not None:
            raise ApiError(400, "invalid_body", "give user or room, not both")
        targets: str | list[str]
        if body.user is not None:
            if isinstance(body.user, bool) or not isinstance(body.user, str | int) or body.user == "":
                raise ApiError(400, "invalid_body", "body.user: a user id (string or integer)")
            targets = await self.sids_of(tenant, str(body.user), "/")
        elif body.room is not None:
            if not body.room:
                raise ApiError(400, "invalid_body", "body.room: a room name")
            prefix = f"tenant:{tenant}"
            targets = body.room if body.room == prefix or body.room.startswith(prefix + ":") else f"{prefix}:{body.room}"
        else:
            targets = f"tenant:{tenant}"
        delivered = self.ctx.app.emit(self.s.notification_event, body.notification, to=targets) if targets else 0
        return ok({"delivered": delivered})


def install(ctx: Context, settings: Settings) -> None:
    chat = Chat(ctx, settings)
    handlers = {
        settings.join_event: chat.join,
        settings.leave_event: chat.leave,
        settings.send_event: chat.send,
        settings.online_query_event: chat.online,
        settings.ping_event: chat.ping,
        settings.admin_event: chat.admin_broadcast,
    }
    for event, handler in handlers.items():
        ctx.handlers.on(event, handler)
        ctx.sio.refusal_shapers[event] = chat.refuse
    if settings.default_tenant:
        ctx.handlers.use(chat.default_tenant)
    ctx.api.add("POST", settings.notifications_path, chat.notify, "admin")
