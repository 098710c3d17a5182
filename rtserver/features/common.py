"""Pieces several features share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..app import ClusterIncomplete
from ..auth.errors import Refusal
from ..socketio.packets import Packet, PacketType
from ..socketio.server import RefusalShaper
from ..socketio.socket import Socket, to_frames

if TYPE_CHECKING:
    from . import Context


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


async def tenant_sids(ctx: Context, rooms: list[str], tenant: str, namespace: str = "/") -> list[str]:
    """Ids of the sockets in ``rooms`` that belong to ``tenant``, on every
    node (user and device ids are not trusted to be unique across tenants,
    so rooms like ``user:{u}`` are filtered by the sockets' identities)."""
    if ctx.sio.bus is None:
        sids = {s.sid for room in rooms for s in ctx.app.sockets(room, namespace)
                if s.identity is not None and s.identity.tenant == tenant}
    else:
        try:
            found = await ctx.app.fetch_sockets(rooms, namespace=namespace)
        except ClusterIncomplete as exc:  # a node that did not answer is left out (and logged)
            found = exc.partial
        sids = {f.sid for f in found if f.identity is not None and f.identity.get("tenant") == tenant}
    return sorted(sids)
