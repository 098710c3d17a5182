"""Read-only routes: server status and presence."""

from __future__ import annotations

import time
from typing import Any

from ..http.messages import Response
from ..metrics import Stats, count_tasks
from ..presence import Presence
from ..socketio.server import SocketIOServer
from ..version import __version__
from .common import ApiError, Call, ok


class StatusRoutes:
    def __init__(self, sio: SocketIOServer, presence: Presence, stats: Stats, sessions: Any) -> None:
        self._sio = sio
        self._presence = presence
        self._stats = stats
        self._sessions = sessions

    def snapshot(self) -> dict[str, Any]:
        """Connections per transport and namespace, rooms and their sizes."""
        transports = {"polling": 0, "websocket": 0}
        for session in self._sessions():
            transports[session.transport] += 1
        hub = self._sio.hub
        namespaces = hub.namespaces()
        rooms = {}
        for namespace in namespaces:
            # A socket's own sid room is an address, not a room anyone joined.
            rooms[namespace] = {
                room: size for room, size in hub.rooms(namespace).items() if hub.member(namespace, room) is None
            }
        return {
            "version": __version__,
            "uptime": round(time.time() - self._stats.started, 3),
            "connections": {"total": sum(transports.values()), **transports},
            "namespaces": namespaces,
            "rooms": rooms,
            "onlineUsers": len(self._presence.users.counts),
            "counted": self._sio.guard.counted(),
            "tasks": count_tasks(),
        }

    async def status(self, call: Call) -> Response:
        return ok(self.snapshot())

    async def presence(self, call: Call) -> Response:
        tenant = call.request.query.get("tenant")
        if not tenant:
            raise ApiError(400, "invalid_query", "tenant: the tenant query parameter is required")
        user = call.request.query.get("user")
        if user:
            return ok(self._presence.user_entry(tenant, user))
        room = call.request.query.get("room")
        namespace = call.request.query.get("namespace", "/")
        return ok({"tenant": tenant, "users": await self._presence.online_users_in(tenant, room, namespace)})
