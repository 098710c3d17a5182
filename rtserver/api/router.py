"""Dispatch of ``/api/...`` requests to their handlers."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

from ..auth.guard import Guard
from ..http.messages import Request, Response, error_response
from ..metrics import Stats
from ..presence import Presence
from ..socketio.server import SocketIOServer
from ..store import Store, StoreUnavailable
from .admin import AdminRoutes
from .common import Access, ApiError, Call, CallerAuth, Handler, unavailable
from .publish import PublishRoutes
from .status import StatusRoutes

log = logging.getLogger("rtserver.api")

PREFIX = "/api/"
V1 = "/api/v1/"


class ApiRouter:
    """Routes are ``(method, path pattern)``; a ``*`` segment becomes a parameter."""

    def __init__(
        self, guard: Guard, store: Store, sio: SocketIOServer, presence: Presence, stats: Stats, sessions: Any
    ) -> None:
        self._auth = CallerAuth(guard)
        admin = AdminRoutes(guard, store, sio)
        publish = PublishRoutes(sio)
        self.status = StatusRoutes(sio, presence, stats, sessions)
        self._routes: dict[tuple[str, tuple[str, ...]], tuple[Handler, Access]] = {}
        self.add("POST", V1 + "emit", publish.emit)
        self.add("POST", V1 + "emit/batch", publish.batch)
        self.add("POST", V1 + "rooms", publish.rooms)
        self.add("POST", V1 + "disconnect", publish.disconnect)
        self.add("GET", V1 + "status", self.status.status)
        self.add("GET", V1 + "presence", self.status.presence)
        self.add("POST", V1 + "admin/revoke", admin.revoke)
        self.add("GET", V1 + "admin/users", admin.list_users)
        self.add("POST", V1 + "admin/users", admin.add_user)
        self.add("DELETE", V1 + "admin/users/*", admin.remove_user)

    def add(self, method: str, path: str, handler: Handler, access: Access = "admin") -> None:
        """Add a route; ``access`` is "admin", "user" or "public" (see CallerAuth)."""
        self._routes[(method, tuple(path.strip("/").split("/")))] = (handler, access)

    def serves(self, path: str) -> bool:
        """Whether some route (any method) has this path."""
        return self._match("", path)[2]

    def _match(self, method: str, path: str) -> tuple[tuple[Handler, Access] | None, list[str], bool]:
        segments = [unquote(s) for s in path.strip("/").split("/")]
        path_known = False
        for (route_method, pattern), route in self._routes.items():
            if len(pattern) != len(segments):
                continue
            params = []
            for want, got in zip(pattern, segments, strict=True):
                if want == "*" and got:
                    params.append(got)
                elif want != got:
                    break
            else:
                path_known = True
                if route_method == method:
                    return route, params, True
        return None, [], path_known

    async def handle(self, request: Request) -> Response:
        route, params, path_known = self._match(request.method, request.path)
        if route is None:
            if path_known:
                return error_response(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}")
            return error_response(404, "not_found", f"no route for {request.path}")
        handler, access = route
        try:
            caller = await self._auth.check(request, access)
            return await handler(Call(request, params, caller))
        except ApiError as exc:
            return exc.response()
        except StoreUnavailable as exc:
            return unavailable(exc).response()
