"""Admin routes: token revocation and the known-users table."""

from __future__ import annotations

import attrs

from ..auth.guard import Guard
from ..http.messages import Request, Response
from ..store import Store
from .common import ApiError, ok, parse_body


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

    async def revoke(self, request: Request, params: list[str]) -> Response:
        body = parse_body(request, RevokeRequest)
        version, disconnected = await self._guard.revoke(body.user)
        return ok({"user": body.user, "tokenVersion": version, "disconnected": disconnected})

    async def list_users(self, request: Request, params: list[str]) -> Response:
        return ok({"users": await self._store.list_users()})

    async def add_user(self, request: Request, params: list[str]) -> Response:
        body = parse_body(request, UserRequest)
        await self._store.add_user(body.user, body.tenant)
        return ok({"user": body.user, "tenant": body.tenant}, 201)

    async def remove_user(self, request: Request, params: list[str]) -> Response:
        if not await self._store.remove_user(params[0]):
            raise ApiError(404, "not_found", "no such user")
        return ok({"user": params[0], "removed": True})
