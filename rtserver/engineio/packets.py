"""Engine.IO v4 packet codec, sans-IO.

An Engine.IO packet is one type digit followed by its data.  Over WebSocket a
packet is one frame: text frames carry ``<type><data>``; binary frames carry a
MESSAGE's raw bytes.  Over HTTP long-polling several packets travel in one
body separated by the record separator ``\\x1e``, binary ones as ``b`` plus
base64.  Nothing here touches I/O; every malformed input raises
:class:`EngineProtocolError`.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Callable, Iterator

import attrs
from wsproto.frame_protocol import FrameProtocol

SEPARATOR = "\x1e"


class PacketType(enum.IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


class EngineProtocolError(ValueError):
    """The peer sent bytes that are not a valid Engine.IO packet or payload."""


@attrs.frozen(slots=True)
class Packet:
    type: PacketType
    data: str | bytes = ""


#: A frame as queued for a connection: ``str`` is a text packet with its type
#: digit already in front, ``bytes`` a binary MESSAGE.  Both transports take
#: these, so a broadcast is encoded once for every recipient.
Frame = str | bytes

_TYPES = {str(t.value): t for t in PacketType}
_FRAMER = FrameProtocol(client=False, extensions=[])


class Outgoing:
    """Frames that travel together (an event and its attachments), as queued
    for every connection that receives them.  The WebSocket bytes are built
    on first use and shared: server frames are unmasked, so every recipient
    gets the same bytes."""

    __slots__ = ("_plain", "_wire", "frames", "v3")

    def __init__(
        self,
        frames: tuple[Frame, ...],
        wire: bytes | None = None,
        plain: Callable[[], tuple[Frame, ...]] | None = None,
    ) -> None:
        self.frames = frames
        self._wire = wire
        #: Builds this message as recipients that take less get it (a
        #: Socket.IO event without its recovery offset); the result replaces it.
        self._plain: Callable[[], tuple[Frame, ...]] | Outgoing | None = plain
        #: These frames as Engine.IO v3 clients take them over WebSocket,
        #: when that differs (binary frames; see packets_v3.websocket_item).
        self.v3: Outgoing | None = None

    def plain(self) -> Outgoing:
        """This message for recipients that take the plain form: built on
        first use (then shared by them all), or this one when it has none."""
        plain = self._plain
        if plain is None:
            return self
        if not isinstance(plain, Outgoing):
            plain = self._plain = Outgoing(plain())
        return plain

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = b"".join(_FRAMER.send_data(frame, fin=True) for frame in self.frames)
        return self._wire


def decode_text(text: str) -> Packet:
    """Decode one text packet (a WebSocket text frame or one polling record)."""
    if not text:
        raise EngineProtocolError("empty packet")
    ptype = _TYPES.get(text[0])
    if ptype is None:
        raise EngineProtocolError(f"unknown packet type {text[0]!r}")
    return Packet(ptype, text[1:])


def encode_frame(packet: Packet) -> Frame:
    """Encode a packet as a WebSocket frame payload (and polling record source)."""
    if isinstance(packet.data, bytes):
        if packet.type is not PacketType.MESSAGE:
            raise ValueError("only MESSAGE packets carry binary data")
        return packet.data
    return f"{packet.type.value}{packet.data}"


def decode_utf8(data: bytes, what: str = "payload") -> str:
    """``data`` as text; :class:`EngineProtocolError` when it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EngineProtocolError(f"{what} is not valid UTF-8") from exc


def iter_payload(body: bytes) -> Iterator[Packet]:
    """The packets of an HTTP long-polling POST body, one at a time: those
    before a malformed one are handed out (and handled) before it raises,
    as the reference handles them."""
    text = decode_utf8(body)
    if not text:
        raise EngineProtocolError("empty payload")
    for record in text.split(SEPARATOR):
        if record.startswith("b"):
            try:
                yield Packet(PacketType.MESSAGE, base64.b64decode(record[1:], validate=True))
            except ValueError as exc:  # binascii.Error, or non-ASCII text
                raise EngineProtocolError("invalid base64 in binary packet") from exc
        else:
            yield decode_text(record)


def decode_payload(body: bytes) -> list[Packet]:
    """Decode a whole HTTP long-polling POST body into its packets."""
    return list(iter_payload(body))


def encode_payload(frames: list[Frame]) -> str:
    """Join queued frames into one long-polling response body."""
    return SEPARATOR.join(
        "b" + base64.b64encode(f).decode("ascii") if isinstance(f, bytes) else f for f in frames
    )


PING: Frame = "2"
PONG_PROBE: Frame = "3probe"
NOOP: Frame = "6"
CLOSE: Frame = "1"


def message(data: str) -> Frame:
    return "4" + data
