"""Dispatch of ``/api/v1/...`` requests to their handlers."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

from ..auth.guard import Guard
from ..http.messages import Request, Response, error_response
from ..metrics import Stats
from ..presence import Presence
from ..socketio.server import SocketIOServer
from ..store import Store
from .admin import AdminRoutes
from .common import ApiError, CallerAuth, Handler
from .publish import PublishRoutes
from .status import StatusRoutes

log = logging.getLogger("rtserver.api")

PREFIX = "/api/v1/"


class ApiRouter:
    """Routes are ``(method, pattern)``; a ``*`` segment is passed as a parameter."""

    def __init__(
        self, guard: Guard, store: Store, sio: SocketIOServer, presence: Presence, stats: Stats, sessions: Any
    ) -> None:
        self._auth = CallerAuth(guard)
        admin = AdminRoutes(guard, store)
        publish = PublishRoutes(sio)
        self.status = StatusRoutes(sio, presence, stats, sessions)
        self._routes: dict[tuple[str, tuple[str, ...]], Handler] = {}
        self.add("POST", "emit", publish.emit)
        self.add("POST", "emit/batch", publish.batch)
        self.add("POST", "rooms", publish.rooms)
        self.add("POST", "disconnect", publish.disconnect)
        self.add("GET", "status", self.status.status)
        self.add("GET", "presence", self.status.presence)
        self.add("POST", "admin/revoke", admin.revoke)
        self.add("GET", "admin/users", admin.list_users)
        self.add("POST", "admin/users", admin.add_user)
        self.add("DELETE", "admin/users/*", admin.remove_user)

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes[(method, tuple(pattern.split("/")))] = handler

    def _match(self, method: str, path: str) -> tuple[Handler | None, list[str], bool]:
        segments = [unquote(s) for s in path.removeprefix(PREFIX).split("/")]
        path_known = False
        for (route_method, pattern), handler in self._routes.items():
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
                    return handler, params, True
        return None, [], path_known

    async def handle(self, request: Request) -> Response:
        handler, params, path_known = self._match(request.method, request.path)
        if handler is None:
            if path_known:
                return error_response(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}")
            return error_response(404, "not_found", f"no route for {request.path}")
        try:
            self._auth.check(request)
            return await handler(request, params)
        except ApiError as exc:
            return exc.response()
