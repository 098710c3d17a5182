"""Deployment status and logs for the PaaS platform (seed 000).

Clients (JWT in ``auth.token``) send ``deployment:subscribe`` /
``deployment:unsubscribe`` with a deployment id and receive
``deployment:status`` ``{deploymentId, status}`` and ``deployment:log``
``{deploymentId, log}`` for the deployments they follow.  ``user:online`` /
``user:offline`` come from presence (``[presence] user_events``).

The deployer publishes over HTTP (access "admin": an API key, or a JWT with an
admin role)::

    POST   /api/v1/deployments/{id}/status  {"tenant": "acme", "status": "building"}
    POST   /api/v1/deployments/{id}/log     {"tenant": "acme", "log": "line"}
                                           or {"tenant": "acme", "lines": ["a", "b"]}
    DELETE /api/v1/deployments/{id}?tenant=acme   forget its retained status and logs

Decisions where the document is silent:

- Deployments belong to tenants.  An API-key caller must name ``tenant``; an
  admin JWT caller publishes for its own tenant (``tenant`` may be left out,
  another tenant is refused with 403).  The room is
  ``tenant:{t}:deployment:{id}``, so a subscriber of another tenant can never
  hear it; the first tenant that publishes an id owns it (kept in retained
  state), another tenant publishing the same id gets 409, and a user of
  another tenant subscribing to a known id is refused (code ``forbidden``;
  the message names no tenant).  An id nobody has published yet may be
  subscribed to (a page opened before the first status).  Users without a
  tenant claim cannot subscribe.
- Ids are 1..``max_id_length`` characters of ``A-Z a-z 0-9 . _ -``.
- A new subscriber first gets the current status, then the last
  ``log_backlog`` log lines, from retained state (written through to SQLite,
  so it survives restarts); re-subscribing an already followed id replays
  nothing.  A client that reconnects and subscribes again gets the backlog
  again (the document's client has no resume offset).
- Refusals (bad id, other tenant, wrong arguments) go to the ack when the
  client asked for one, otherwise to the ``error`` event (``error_event``)
  as ``{code, message, event}``, which the document's ``socket.on('error')``
  receives.  A successful subscribe acks ``{deploymentId, status}`` (status
  None when unknown).
"""

from __future__ import annotations

import re
from typing import Any

import attrs
from attrs import validators as v

from ..api.common import ApiError, Call, caller_tenant, ok, parse_body
from ..auth.errors import Refusal
from ..http.messages import Response
from ..socketio.socket import Socket
from . import Context
from .common import error_event_shaper

_ID = re.compile(r"[A-Za-z0-9._-]+")
_OWNER_EVENT = "tenant"


@attrs.frozen
class Settings:
    subscribe_event: str = attrs.field(default="deployment:subscribe", validator=v.min_len(1))
    unsubscribe_event: str = attrs.field(default="deployment:unsubscribe", validator=v.min_len(1))
    status_event: str = attrs.field(default="deployment:status", validator=v.min_len(1))
    log_event: str = attrs.field(default="deployment:log", validator=v.min_len(1))
    #: Event carrying refusals when the client asked for no ack.
    error_event: str = attrs.field(default="error", validator=v.min_len(1))
    #: Log lines a late subscriber receives (kept per deployment).
    log_backlog: int = attrs.field(default=200, validator=[v.ge(1), v.le(100_000)])
    max_id_length: int = attrs.field(default=128, validator=[v.ge(1), v.le(200)])
    max_status_length: int = attrs.field(default=100, validator=[v.ge(1), v.le(10_000)])
    #: Longest log line in characters; log lines per request.
    max_log_length: int = attrs.field(default=16_384, validator=[v.ge(1), v.le(1_000_000)])
    max_lines_per_request: int = attrs.field(default=1000, validator=[v.ge(1), v.le(100_000)])
    #: Prefix of the HTTP routes.
    api_path: str = attrs.field(default="/api/v1/deployments", validator=v.matches_re(r"/api/.+"))


@attrs.frozen
class StatusBody:
    status: str
    tenant: str | None = None


@attrs.frozen
class LogBody:
    tenant: str | None = None
    log: str | None = None
    lines: tuple[str, ...] | None = None


def room_of(tenant: str, deployment: str) -> str:
    return f"tenant:{tenant}:deployment:{deployment}"


def _owner_key(deployment: str) -> str:
    # Not a joinable room: client channel names are always tenant-qualified.
    return f"deployments-owner:{deployment}"


def install(ctx: Context, settings: Settings) -> None:
    retained = ctx.retained

    def valid_id(value: Any) -> str | None:
        if isinstance(value, str) and len(value) <= settings.max_id_length and _ID.fullmatch(value):
            return value
        return None

    def owner(deployment: str) -> str | None:
        tenant = retained.latest(_owner_key(deployment)).get(_OWNER_EVENT)
        return tenant if isinstance(tenant, str) else None

    # ------------------------------------------------------- socket side
    def deployment_of(socket: Socket, value: Any) -> tuple[str, str]:
        deployment = valid_id(value)
        if deployment is None:
            raise Refusal(
                "invalid_deployment",
                f"a deployment id is a string of 1 to {settings.max_id_length} characters A-Z a-z 0-9 . _ -",
                400,
            )
        identity = socket.identity
        if identity is None or not identity.tenant:
            raise Refusal("forbidden", "deployments need a user with a tenant", 403)
        known = owner(deployment)
        if known is not None and known != identity.tenant:
            raise Refusal("forbidden", "this deployment does not belong to your tenant", 403)
        return identity.tenant, deployment

    def subscribe(socket: Socket, value: Any) -> dict[str, Any]:
        tenant, deployment = deployment_of(socket, value)
        room = ctx.guard.room_for(socket, room_of(tenant, deployment))  # room limits, tenant rule
        if room not in socket.rooms:
            socket.join(room)
            retained.replay(socket, room)
        status = retained.latest(room).get(settings.status_event)
        return {"deploymentId": deployment, "status": status["status"] if isinstance(status, dict) else None}

    def unsubscribe(socket: Socket, value: Any) -> dict[str, Any]:
        tenant, deployment = deployment_of(socket, value)
        socket.leave(room_of(tenant, deployment))
        return {"deploymentId": deployment}

    refuse = error_event_shaper(settings.error_event)

    ctx.handlers.on(settings.subscribe_event, subscribe)
    ctx.handlers.on(settings.unsubscribe_event, unsubscribe)
    for event in (settings.subscribe_event, settings.unsubscribe_event):
        ctx.sio.refusal_shapers[event] = refuse

    # --------------------------------------------------------- HTTP side
    def tenant_for(call: Call, named: str | None) -> str:
        return caller_tenant(
            call,
            named,
            unnamed="tenant: an API-key caller must name the deployment's tenant",
            foreign="an admin token publishes for its own tenant only",
            tenantless="the token carries no tenant",
        )

    async def claim(call: Call, tenant: str) -> str:
        deployment = valid_id(call.params[0])
        if deployment is None:
            raise ApiError(400, "invalid_deployment", "the deployment id in the path is not valid")
        known = owner(deployment)
        if known is None:
            await retained.keep(_owner_key(deployment), _OWNER_EVENT, tenant)
        elif known != tenant:
            raise ApiError(409, "deployment_conflict", "this deployment id belongs to another tenant")
        return deployment

    async def post_status(call: Call) -> Response:
        body: StatusBody = parse_body(call.request, StatusBody)
        if not body.status or len(body.status) > settings.max_status_length:
            raise ApiError(400, "invalid_body", f"status: 1 to {settings.max_status_length} characters")
        tenant = tenant_for(call, body.tenant)
        deployment = await claim(call, tenant)
        room = room_of(tenant, deployment)
        payload = {"deploymentId": deployment, "status": body.status}
        await retained.keep(room, settings.status_event, payload)
        return ok({"deploymentId": deployment, "delivered": ctx.app.emit(settings.status_event, payload, to=room)})

    async def post_log(call: Call) -> Response:
        body: LogBody = parse_body(call.request, LogBody)
        if (body.log is None) == (body.lines is None):
            raise ApiError(400, "invalid_body", "give either log (one line) or lines (a list)")
        lines = [body.log] if body.log is not None else list(body.lines or ())
        if not lines or len(lines) > settings.max_lines_per_request:
            raise ApiError(400, "invalid_body", f"lines: 1 to {settings.max_lines_per_request} lines")
        if any(len(line) > settings.max_log_length for line in lines):
            raise ApiError(413, "payload_too_large", f"log: lines are at most {settings.max_log_length} characters")
        tenant = tenant_for(call, body.tenant)
        deployment = await claim(call, tenant)
        room = room_of(tenant, deployment)
        delivered = 0
        for line in lines:
            payload = {"deploymentId": deployment, "log": line}
            await retained.append(room, settings.log_event, payload, settings.log_backlog)
            delivered += ctx.app.emit(settings.log_event, payload, to=room)
        return ok({"deploymentId": deployment, "lines": len(lines), "delivered": delivered})

    async def forget(call: Call) -> Response:
        tenant = tenant_for(call, call.request.query.get("tenant"))
        deployment = valid_id(call.params[0])
        if deployment is None:
            raise ApiError(400, "invalid_deployment", "the deployment id in the path is not valid")
        if owner(deployment) not in (None, tenant):
            raise ApiError(409, "deployment_conflict", "this deployment id belongs to another tenant")
        await retained.forget(room_of(tenant, deployment))
        await retained.forget(_owner_key(deployment))
        return ok({"deploymentId": deployment, "forgotten": True})

    base = settings.api_path.rstrip("/")
    ctx.api.add("POST", f"{base}/*/status", post_status, "admin")
    ctx.api.add("POST", f"{base}/*/log", post_log, "admin")
    ctx.api.add("DELETE", f"{base}/*", forget, "admin")
