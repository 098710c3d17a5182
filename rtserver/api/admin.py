"""Admin routes: token revocation and the known-users table."""

from __future__ import annotations

from typing import Any

import attrs

from ..auth.guard import Guard
from ..http.messages import Response
from ..socketio.server import SocketIOServer
from ..store import Store
from .common import ApiError, Call, ok, parse_body


@attrs.frozen
class RevokeRequest:
    user: str = attrs.field(validator=attrs.validators.min_len(1))


@attrs.frozen
class UserRequest:
    user: str = attrs.field(validator=attrs.validators.min_len(1))
    tenant: str | None = None


class AdminRoutes:
    def __init__(self, guard: Guard, store: Store, sio: SocketIOServer) -> None:
        self._guard = guard
        self._store = store
        self._sio = sio

    async def revoke(self, call: Call) -> Response:
        """Raise the version here, then on every other rtserver node, each
        kicking its own sockets of the user; ``disconnected`` counts them all
        (``"complete": false`` when a node did not answer in time)."""
        body = parse_body(call.request, RevokeRequest)
        version, disconnected = await self._guard.revoke(body.user)
        answer: dict[str, Any] = {"user": body.user, "tokenVersion": version}
        bus = self._sio.bus
        if bus is not None:
            others, complete = await bus.command("revoke", {"user": body.user, "version": version})
            disconnected += sum(
                n for n in (a.get("disconnected") for a in others) if isinstance(n, int) and not isinstance(n, bool)
            )
            if not complete:
                answer["complete"] = False
        return ok({**answer, "disconnected": disconnected})

    async def list_users(self, call: Call) -> Response:
        return ok({"users": await self._store.list_users()})

    async def add_user(self, call: Call) -> Response:
        body = parse_body(call.request, UserRequest)
        await self._store.add_user(body.user, body.tenant)
        return ok({"user": body.user, "tenant": body.tenant}, 201)

    async def remove_user(self, call: Call) -> Response:
        if not await self._store.remove_user(call.params[0]):
            raise ApiError(404, "not_found", "no such user")
        return ok({"user": call.params[0], "removed": True})
