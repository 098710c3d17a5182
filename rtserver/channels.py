"""Built-in channel subscription: clients join rooms under the room rules.

``socket.emit("subscribe", "alerts", ack)`` (or a list of names) answers with
``{"rooms": [...]}`` once joined, or ``{"error": {"code", "message"}}``.
Channels named in the connect payload (``auth.channels`` or the ``channels``
query parameter, comma-separated) are joined at connect time; a refused one
refuses the connection.  See :mod:`rtserver.auth.rules` for what may be joined.
"""

from __future__ import annotations

from typing import Any

from .app import App
from .auth.errors import Refusal
from .auth.guard import Guard
from .config import ChannelsConfig
from .socketio.socket import Socket

_MAX_AT_ONCE = 100


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and len(value) <= _MAX_AT_ONCE and all(isinstance(v, str) for v in value):
        return value
    raise Refusal("invalid_room", "give a channel name or a list of at most 100 names", 400)


def install(builtins: App, guard: Guard, config: ChannelsConfig) -> None:
    def rooms_for(socket: Socket, channels: Any) -> list[str]:
        return [guard.room_for(socket, name) for name in _names(channels)]

    def subscribe(socket: Socket, channels: Any) -> dict[str, Any]:
        rooms = rooms_for(socket, channels)
        socket.join(*rooms)
        return {"rooms": rooms}

    def unsubscribe(socket: Socket, channels: Any) -> dict[str, Any]:
        rooms = rooms_for(socket, channels)
        socket.leave(*rooms)
        return {"rooms": rooms}

    def connect(socket: Socket, auth: Any) -> None:
        requested: Any = auth.get(config.connect_field) if isinstance(auth, dict) else None
        if requested is None and config.connect_field in socket.handshake.query:
            requested = [n for n in socket.handshake.query[config.connect_field].split(",") if n]
        if requested:
            socket.join(*rooms_for(socket, requested))

    if config.subscribe_event:
        builtins.on(config.subscribe_event, subscribe)
    if config.unsubscribe_event:
        builtins.on(config.unsubscribe_event, unsubscribe)
    if config.connect_field:
        builtins.on("connect", connect)
