"""A session of an Engine.IO v3 client (socket.io-client 2.x).

Only served with ``engineio.allow_eio3``.  What differs from v4, as the
reference server does it:

- The client sends the pings, every ``pingInterval``, and the server answers
  each with a pong.  A session with no ping for ``pingInterval +
  pingTimeout`` ends ("ping timeout").  The clock keeps that deadline: a
  ping only moves it, and the booking looks again when it comes up (a ping
  books nothing).  A pong from the client is an error (the reference's
  "invalid heartbeat direction").
- Polling bodies and binary frames are written the v3 way (``packets_v3``);
  a client that cannot take binary says ``b64=1`` in its handshake (and in
  its WebSocket request) and gets base64 instead.

Everything else (the outbox, the upgrade handshake, closing) is the v4
session's.  The v4 path does not branch on the revision: the engine server
picks the class once, at the handshake.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ..http.messages import Request
from . import packets_v3
from .packets import EngineProtocolError, Frame, Outgoing, Packet, PacketType
from .session import TEXT_PLAIN, Session

if TYPE_CHECKING:
    from .server import EngineServer

#: The answer to a client's ping.
_PONG: Frame = "3"


class SessionV3(Session):
    protocol = 3

    __slots__ = ("binary",)

    def __init__(self, server: EngineServer, sid: str, request: Request, transport: str) -> None:
        super().__init__(server, sid, request, transport)
        #: Whether the client takes binary frames and payloads (no ``b64``
        #: in its request; the WebSocket's request decides after an upgrade).
        self.binary = "b64" not in self.request.query

    # ------------------------------------------------------------ outbound
    def send(self, item: Outgoing | tuple[Frame, ...], volatile: bool = False) -> bool:
        if not isinstance(item, Outgoing):
            item = Outgoing(item)
        return super().send(packets_v3.websocket_item(item, self.binary), volatile)

    def encode_poll(self, frames: list[Frame]) -> tuple[bytes, str]:
        body, binary = packets_v3.encode_payload(frames, self.binary)
        return body, "application/octet-stream" if binary else TEXT_PLAIN

    # ------------------------------------------------------------- inbound
    decode_text = staticmethod(packets_v3.decode_text_frame)
    iter_payload = staticmethod(packets_v3.decode_payload)

    async def receive_frame(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            data = packets_v3.decode_binary_frame(frame).data  # a MESSAGE: its type byte off
            assert isinstance(data, bytes)
            frame = data
        await super().receive_frame(frame)

    async def _receive_packet(self, packet: Packet) -> None:
        if packet.type is PacketType.PING:
            # ``_next_ping``: when the client's next ping is due; it may be
            # ``ping_timeout`` late (see ``_due``).
            self._next_ping = trio.current_time() + self._config.ping_interval
            self.send((_PONG,))
        elif packet.type is PacketType.PONG:
            raise EngineProtocolError("a PONG from an Engine.IO v3 client (it sends the pings)")
        else:
            await super()._receive_packet(packet)

    # ------------------------------------------------------------ lifetime
    def _due(self) -> float | None:
        """The clock's call: end the session if the client's ping is overdue."""
        if self._ended:
            return None
        deadline = self._next_ping + self._config.ping_timeout
        if trio.current_time() >= deadline:
            self.abort("ping timeout")
            return None
        return deadline
