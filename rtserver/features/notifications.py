"""Real-time notifications, typing, status and bookings for Alora (seed 004).

The browser sends its JWT in a cookie (``[auth] sources`` with "cookie",
``cookie_name``).  Client events: ``register``, ``typing``, ``updateStatus``,
``bookingUpdate``; server events: ``newNotification``, ``userOnline`` /
``userOffline`` (presence, ``[presence] user_events``), ``statusUpdated``,
``userTyping``, ``bookingUpdated``.  The back end pushes notifications::

    POST /api/v1/notifications   (access "admin": API key or admin JWT)
    {"tenant": "alora", "user": "u1" | "users": ["u1", "u2"], "notification": {...}}
    -> {"delivered": <sockets>, "queued": [users who were offline]}

Decisions where the document is silent:

- ``register`` takes the user id, ``{userId}`` / ``{id}`` or nothing; it
  must be the token's own user (otherwise ``forbidden``).  Sockets are bound
  to their user by the token at connect already, so registering is harmless
  and optional; it acks ``{userId, registered: true}``.
- ``typing`` ``{userId, isTyping}``: ``userId`` (or ``to`` / ``receiverId`` /
  ``recipientId``) names the conversation partner; ``room`` (a channel this
  socket joined with the built-in ``subscribe``) or ``conversationId``
  (channel ``conversation:{id}``) names a room instead.  The partner gets
  ``userTyping`` with the payload's other fields, ``userId`` = who is typing
  and ``isTyping`` (default true).  Only the partner's sockets in the
  sender's tenant receive it; a partner offline or in another tenant simply
  gets nothing (no error, so nothing leaks about other tenants).  Typing is
  sent volatile.
- ``updateStatus`` ``{status}`` (or a string) is stored with presence and
  sent to the whole tenant as ``statusUpdated`` ``{userId, status}``.
- ``bookingUpdate`` ``{bookingId, ...}`` reaches the booking's participants:
  the user ids in ``participants`` (only their sockets in the sender's
  tenant) and the sockets that joined channel ``booking:{bookingId}`` (the
  back end can put users there with POST /api/v1/rooms).  They get
  ``bookingUpdated`` = the payload plus ``updatedBy``; the sending socket is
  left out.  Restrict who may send it with ``[auth] event_roles``.
- A notification for a user with no connected socket in that tenant is kept
  (the last ``pending_limit`` per user, in retained state, so it survives a
  restart) and delivered when the user next connects, then dropped.
  Delivery to a connected socket is best effort (no client ack).
- Refusals go to the ack when asked for, otherwise to the ``error`` event
  (``error_event``) as ``{code, message, event}``, for that socket only.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson
from attrs import validators as v

from ..api.common import ApiError, Call, caller_tenant, ok, parse_body
from ..auth.errors import Refusal
from ..faults import guarded
from ..http.messages import Response
from ..socketio.socket import Socket
from . import Context
from .common import error_event_shaper, tenant_sids

_PARTNER_KEYS = ("to", "receiverId", "recipientId", "userId")
_MAX_ID = 256


@attrs.frozen
class Settings:
    register_event: str = attrs.field(default="register", validator=v.min_len(1))
    typing_event: str = attrs.field(default="typing", validator=v.min_len(1))
    user_typing_event: str = attrs.field(default="userTyping", validator=v.min_len(1))
    status_event: str = attrs.field(default="updateStatus", validator=v.min_len(1))
    status_updated_event: str = attrs.field(default="statusUpdated", validator=v.min_len(1))
    booking_event: str = attrs.field(default="bookingUpdate", validator=v.min_len(1))
    booking_updated_event: str = attrs.field(default="bookingUpdated", validator=v.min_len(1))
    notification_event: str = attrs.field(default="newNotification", validator=v.min_len(1))
    error_event: str = attrs.field(default="error", validator=v.min_len(1))
    #: Keep notifications for offline users and deliver them on connect.
    queue_offline: bool = True
    #: Notifications kept per offline user (the oldest are dropped).
    pending_limit: int = attrs.field(default=100, validator=[v.ge(1), v.le(10_000)])
    #: Largest client payload (typing, bookingUpdate) and notification, JSON bytes.
    max_payload_bytes: int = attrs.field(default=16_384, validator=[v.ge(64), v.le(10_000_000)])
    max_status_length: int = attrs.field(default=100, validator=[v.ge(1), v.le(10_000)])
    max_participants: int = attrs.field(default=100, validator=[v.ge(1), v.le(10_000)])
    #: Users one HTTP push may name.
    max_users_per_push: int = attrs.field(default=1000, validator=[v.ge(1), v.le(100_000)])
    api_path: str = attrs.field(default="/api/v1/notifications", validator=v.matches_re(r"/api/.+"))


@attrs.frozen
class PushBody:
    notification: Any
    tenant: str | None = None
    user: str | None = None
    users: tuple[str, ...] = ()


def _id(value: Any) -> str | None:
    """A user or booking id: a non-empty string or an integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and 0 < len(value) <= _MAX_ID:
        return value
    return None


def pending_key(tenant: str, user: str) -> str:
    # Not a joinable room: client channel names are always tenant-qualified.
    return f"notifications-pending:{tenant}:{user}"


def install(ctx: Context, settings: Settings) -> None:
    retained = ctx.retained

    async def user_sids(tenant: str, user: str) -> list[str]:
        return await tenant_sids(ctx, [f"user:{user}"], tenant)

    def who(socket: Socket) -> tuple[str, str]:
        identity = socket.identity
        if identity is None or identity.anonymous or not identity.tenant:
            raise Refusal("forbidden", "an authenticated user with a tenant is required", 403)
        return identity.tenant, identity.user

    def sized(value: Any, what: str) -> None:
        if len(orjson.dumps(value)) > settings.max_payload_bytes:
            raise Refusal("payload_too_large", f"{what} is larger than {settings.max_payload_bytes} bytes", 413)

    # ------------------------------------------------------- socket side
    def register(socket: Socket, payload: Any = None) -> dict[str, Any]:
        _, user = who(socket)
        claimed = payload
        if isinstance(payload, dict):
            claimed = payload.get("userId", payload.get("id"))
        if claimed is not None:
            claimed_id = _id(claimed)
            if claimed_id is None:
                raise Refusal("invalid_payload", "register takes a user id, {userId} or nothing", 400)
            if claimed_id != user:
                raise Refusal("forbidden", "a socket registers as its token's user only", 403)
        socket.data["registered"] = True
        return {"userId": user, "registered": True}

    async def typing(socket: Socket, data: Any) -> dict[str, Any]:
        tenant, user = who(socket)
        if not isinstance(data, dict):
            raise Refusal("invalid_payload", "typing takes an object {userId, isTyping}", 400)
        sized(data, "typing")
        is_typing = data.get("isTyping", True)
        if not isinstance(is_typing, bool):
            raise Refusal("invalid_payload", "isTyping is a boolean", 400)
        payload = {k: val for k, val in data.items() if k not in _PARTNER_KEYS}
        payload.update(userId=user, isTyping=is_typing)
        channel = data.get("room")
        if channel is None and data.get("conversationId") is not None:
            conversation = _id(data["conversationId"])
            if conversation is None:
                raise Refusal("invalid_payload", "conversationId is a string or an integer", 400)
            channel = f"conversation:{conversation}"
        if channel is not None:
            room = ctx.guard.room_for(socket, channel)
            if room not in socket.rooms:
                raise Refusal("forbidden", "join the room before typing to it", 403)
            return {"delivered": ctx.app.emit(settings.user_typing_event, payload, to=room, skip=socket.sid, volatile=True)}
        partner = next((data[k] for k in _PARTNER_KEYS if data.get(k) is not None), None)
        partner_id = _id(partner)
        if partner_id is None or partner_id == user:
            raise Refusal("invalid_payload", "name the conversation partner (userId) or a room", 400)
        sids = await user_sids(tenant, partner_id)
        return {"delivered": ctx.app.emit(settings.user_typing_event, payload, to=sids, volatile=True) if sids else 0}

    def update_status(socket: Socket, data: Any) -> dict[str, Any]:
        tenant, user = who(socket)
        status = data.get("status") if isinstance(data, dict) else data
        if not isinstance(status, str) or not status or len(status) > settings.max_status_length:
            raise Refusal("invalid_status", f"status is a string of 1 to {settings.max_status_length} characters", 400)
        ctx.presence.set_status(tenant, user, status)
        payload = {"userId": user, "status": status}
        ctx.app.emit(settings.status_updated_event, payload, to=f"tenant:{tenant}")
        return payload

    async def booking_update(socket: Socket, data: Any) -> dict[str, Any]:
        tenant, user = who(socket)
        if not isinstance(data, dict):
            raise Refusal("invalid_payload", "bookingUpdate takes an object {bookingId, ...}", 400)
        sized(data, "bookingUpdate")
        booking = _id(data.get("bookingId"))
        if booking is None:
            raise Refusal("invalid_payload", "bookingId is a string or an integer", 400)
        participants = data.get("participants", [])
        if not isinstance(participants, list) or len(participants) > settings.max_participants:
            raise Refusal("invalid_payload", f"participants is a list of at most {settings.max_participants} user ids", 400)
        ids = [_id(p) for p in participants]
        if any(p is None for p in ids):
            raise Refusal("invalid_payload", "participants are user ids", 400)
        targets = [f"tenant:{tenant}:booking:{booking}"]  # tenant-qualified: no filter needed
        for participant in dict.fromkeys(ids):
            assert participant is not None
            targets += await user_sids(tenant, participant)
        payload = {**data, "updatedBy": user}
        return {"delivered": ctx.app.emit(settings.booking_updated_event, payload, to=targets, skip=socket.sid)}

    refuse = error_event_shaper(settings.error_event)

    for event, handler in (
        (settings.register_event, register),
        (settings.typing_event, typing),
        (settings.status_event, update_status),
        (settings.booking_event, booking_update),
    ):
        ctx.handlers.on(event, handler)
        ctx.sio.refusal_shapers[event] = refuse

    # ------------------------------------------ offline queue, on connect
    draining: set[str] = set()

    class Deliverer:
        """Socket listener: a user's first connection gets what waited."""

        def connected(self, socket: Socket) -> None:
            identity = socket.identity
            if identity is None or not identity.tenant:
                return
            key = pending_key(identity.tenant, identity.user)
            waiting = retained.backlog(key)
            if not waiting or key in draining:
                return
            draining.add(key)
            for event, payload in waiting:
                socket.emit(event, payload)
            ctx.sio.nursery.start_soon(guarded, ctx.sio.hub.stats.faults, "notifications drain", drained, key)

        def disconnected(self, socket: Socket, reason: str) -> None:
            """Nothing to do: pending notifications wait for the next connection."""

    async def drained(key: str) -> None:
        try:
            await retained.forget(key)
        finally:
            draining.discard(key)

    if settings.queue_offline:
        ctx.sio.listeners.append(Deliverer())

    # --------------------------------------------------------- HTTP side
    async def push(call: Call) -> Response:
        body: PushBody = parse_body(call.request, PushBody)
        if body.notification is None:
            raise ApiError(400, "invalid_body", "notification: required")
        if len(orjson.dumps(body.notification)) > settings.max_payload_bytes:
            raise ApiError(413, "payload_too_large", f"notification: at most {settings.max_payload_bytes} bytes")
        users = ([body.user] if body.user is not None else []) + list(body.users)
        if not users or len(users) > settings.max_users_per_push or not all(users):
            raise ApiError(400, "invalid_body", f"give user or users: 1 to {settings.max_users_per_push} user ids")
        tenant = caller_tenant(
            call,
            body.tenant,
            unnamed="tenant: an API-key caller must name the users' tenant",
            foreign="an admin token pushes to its own tenant only",
        )
        delivered, queued = 0, []
        for user in dict.fromkeys(users):
            sids = await user_sids(tenant, user)
            if sids:
                delivered += ctx.app.emit(settings.notification_event, body.notification, to=sids)
            elif settings.queue_offline:
                await retained.append(pending_key(tenant, user), settings.notification_event, body.notification, settings.pending_limit)
                queued.append(user)
        return ok({"delivered": delivered, "queued": queued})

    ctx.api.add("POST", settings.api_path.rstrip("/"), push, "admin")
