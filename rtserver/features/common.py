"""Pieces several features share."""

from __future__ import annotations

from typing import Any

from ..auth.errors import Refusal
from ..socketio.packets import Packet, PacketType
from ..socketio.server import RefusalShaper
from ..socketio.socket import Socket, to_frames


def error_event_shaper(error_event: str) -> RefusalShaper:
    """A refusal shaper: the refusal as ``{"error": ...}`` in the ack the client
    asked for, else emitted as ``error_event`` naming the refused event."""

    def refuse(socket: Socket, refusal: Refusal, event: Any, ack_id: int | None) -> None:
        if ack_id is not None:
            packet = Packet(PacketType.ACK, socket.namespace_name, [{"error": refusal.as_dict()}], ack_id)
            socket.deliver(to_frames(packet), False)
        else:
            socket.emit(error_event, {**refusal.as_dict(), "event": event})

    return refuse
