"""Admin routes: token revocation and the known-users table."""

from __future__ import annotations

import attrs

from ..auth.guard import Guard
from ..http.messages import Response
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
    def __init__(self, guard: Guard, store: Store) -> None:
        self._guard = guard
        self._store = store

    async def revoke(self, call: Call) -> Response:
        body = parse_body(call.request, RevokeRequest)
        version, disconnected = await self._guard.revoke(body.user)
        return ok({"user": body.user, "tokenVersion": version, "disconnected": disconnected})

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
