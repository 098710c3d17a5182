"""Socket.IO v5 packet codec, sans-IO.

Text form: ``<type>[<attachments>-][<namespace>,][<ack id>][<json>]``.  A
packet whose arguments hold ``bytes`` is sent as BINARY_EVENT/BINARY_ACK: each
``bytes`` value is replaced by ``{"_placeholder": true, "num": i}`` and follows
as its own binary Engine.IO message.  :class:`Decoder` reassembles them.
Every malformed input raises :class:`SocketProtocolError`.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
import orjson

from ..jsonlimits import MAX_DEPTH, TooDeep, loads, too_deep_message


class PacketType(enum.IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


class SocketProtocolError(ValueError):
    """The peer sent something that is not a valid Socket.IO packet."""


class PayloadTooDeep(SocketProtocolError):
    """A well-formed packet whose JSON nests deeper than allowed: refused
    (the client is told, in its ack or an error event), not a protocol error."""

    def __init__(self, packet: Packet, limit: int) -> None:
        super().__init__(too_deep_message(limit))
        self.packet = packet


#: Event names that are never sent in an EVENT packet, either way: the
#: client library (and the reference server) give them their own meaning.
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)


def check_event_name(event: str) -> None:
    """Raise ValueError for an event the server may not emit (the reference
    server throws for these): a client would take it for its own."""
    if event in RESERVED_EVENTS:
        raise ValueError(f"{event!r} is a reserved event name")

_MAX_ACK_ID = 2**53 - 1


@attrs.define(slots=True)
class Packet:
    type: PacketType
    namespace: str = "/"
    data: Any = None
    id: int | None = None


def _deconstruct(value: Any, buffers: list[bytes]) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        buffers.append(bytes(value))
        return {"_placeholder": True, "num": len(buffers) - 1}
    if isinstance(value, list | tuple):
        return [_deconstruct(v, buffers) for v in value]
    if isinstance(value, dict):
        return {k: _deconstruct(v, buffers) for k, v in value.items()}
    return value


def _has_binary(value: Any) -> bool:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True
    if isinstance(value, list | tuple):
        return any(_has_binary(v) for v in value)
    if isinstance(value, dict):
        return any(_has_binary(v) for v in value.values())
    return False


def encode(packet: Packet) -> list[str | bytes]:
    """Encode a packet into its text part followed by any binary attachments."""
    ptype = packet.type
    buffers: list[bytes] = []
    data = packet.data
    if ptype in (PacketType.EVENT, PacketType.ACK) and _has_binary(data):
        ptype = PacketType.BINARY_EVENT if ptype is PacketType.EVENT else PacketType.BINARY_ACK
        data = _deconstruct(data, buffers)
    parts = [str(ptype.value)]
    if buffers:
        parts.append(f"{len(buffers)}-")
    if packet.namespace != "/":
        parts.append(packet.namespace + ",")
    if packet.id is not None:
        parts.append(str(packet.id))
    if data is not None:
        parts.append(orjson.dumps(data).decode("utf-8"))
    return ["".join(parts), *buffers]


def _valid_payload(ptype: PacketType, data: Any) -> bool:
    if ptype is PacketType.CONNECT:
        return data is None or isinstance(data, dict)
    if ptype is PacketType.DISCONNECT:
        return data is None
    if ptype is PacketType.CONNECT_ERROR:
        return isinstance(data, str | dict)
    if ptype in (PacketType.EVENT, PacketType.BINARY_EVENT):
        return (
            isinstance(data, list)
            and len(data) > 0
            and (
                (isinstance(data[0], str) and data[0] not in RESERVED_EVENTS)
                or (isinstance(data[0], int) and not isinstance(data[0], bool))
            )
        )
    return isinstance(data, list)  # ACK, BINARY_ACK


def decode_text(text: str, max_depth: int = MAX_DEPTH) -> tuple[Packet, int]:
    """Decode the text part of a packet; returns it and its attachment count.

    A valid packet nested deeper than ``max_depth`` raises :class:`PayloadTooDeep`.
    """
    if not text:
        raise SocketProtocolError("empty packet")
    if not "0" <= text[0] <= "6":
        raise SocketProtocolError(f"unknown packet type {text[0]!r}")
    ptype = PacketType(int(text[0]))
    i, n = 1, len(text)
    attachments = 0
    if ptype in (PacketType.BINARY_EVENT, PacketType.BINARY_ACK):
        dash = text.find("-", 1)
        count = text[1:dash] if dash > 0 else ""
        if not count.isdigit() or not count.isascii() or len(count) > 16 or int(count) < 1:
            # A binary packet has at least one attachment (as the reference parser requires).
            raise SocketProtocolError("invalid attachment count")
        attachments = int(count)
        i = dash + 1
    namespace = "/"
    if i < n and text[i] == "/":
        comma = text.find(",", i)
        if comma < 0:
            namespace, i = text[i:], n
        else:
            namespace, i = text[i:comma], comma + 1
    ack_id = None
    j = i
    while j < n and "0" <= text[j] <= "9":
        j += 1
    if j > i:
        if j - i > 16 or int(text[i:j]) > _MAX_ACK_ID:
            raise SocketProtocolError("invalid ack id")
        ack_id = int(text[i:j])
        i = j
    data = None
    deep = False
    if i < n:
        try:
            data = loads(text[i:], max_depth)
        except orjson.JSONDecodeError:
            raise SocketProtocolError("invalid JSON payload") from None
        except TooDeep as exc:
            if exc.value is None:  # deeper than the parser goes: the event is not known
                raise PayloadTooDeep(Packet(ptype, namespace, None, ack_id), max_depth) from None
            data, deep = exc.value, True
    if not _valid_payload(ptype, data):
        raise SocketProtocolError(f"invalid payload for {ptype.name}")
    if ack_id is not None and ptype not in (
        PacketType.EVENT,
        PacketType.BINARY_EVENT,
        PacketType.ACK,
        PacketType.BINARY_ACK,
    ):
        raise SocketProtocolError(f"{ptype.name} carries no ack id")
    if ack_id is None and ptype in (PacketType.ACK, PacketType.BINARY_ACK):
        raise SocketProtocolError("ACK without an ack id")
    packet = Packet(ptype, namespace, data, ack_id)
    if deep:
        raise PayloadTooDeep(packet, max_depth)
    return packet, attachments


def _reconstruct(value: Any, buffers: list[bytes]) -> Any:
    if isinstance(value, dict):
        if value.get("_placeholder") is True:
            num = value.get("num")
            if not isinstance(num, int) or isinstance(num, bool) or not 0 <= num < len(buffers):
                raise SocketProtocolError("invalid attachment placeholder")
            return buffers[num]
        return {k: _reconstruct(v, buffers) for k, v in value.items()}
    if isinstance(value, list):
        return [_reconstruct(v, buffers) for v in value]
    return value


class Decoder:
    """Feeds Engine.IO messages in; yields whole Socket.IO packets.

    A binary packet arrives as its text part then ``n`` binary messages; the
    decoder holds the partial packet until the last attachment is in.
    """

    def __init__(self, max_attachments: int = 10) -> None:
        self._max_attachments = max_attachments
        self._pending: Packet | None = None
        self._expected = 0
        self._buffers: list[bytes] = []
        #: Attachments of a refused (too deep) packet still to come: dropped.
        self._skip = 0

    def feed(self, message: str | bytes) -> Packet | None:
        if isinstance(message, bytes):
            if self._skip:
                self._skip -= 1
                return None
            if self._pending is None:
                raise SocketProtocolError("unexpected binary attachment")
            self._buffers.append(message)
            if len(self._buffers) < self._expected:
                return None
            packet, buffers = self._pending, self._buffers
            self._pending, self._buffers, self._expected = None, [], 0
            packet.data = _reconstruct(packet.data, buffers)
            packet.type = PacketType(packet.type - 3)  # BINARY_* -> EVENT/ACK
            return packet
        if self._pending is not None or self._skip:
            raise SocketProtocolError("text packet while binary attachments were pending")
        try:
            packet, attachments = decode_text(message)
        except PayloadTooDeep as exc:
            if exc.packet.type in (PacketType.BINARY_EVENT, PacketType.BINARY_ACK):
                count = int(message[1 : message.index("-")])
                if count > self._max_attachments:
                    raise SocketProtocolError("too many attachments") from None
                self._skip = count
                exc.packet.type = PacketType(exc.packet.type - 3)
            raise
        if packet.type in (PacketType.BINARY_EVENT, PacketType.BINARY_ACK):
            if attachments > self._max_attachments:
                raise SocketProtocolError("too many attachments")
            self._pending, self._expected = packet, attachments
            return None
        return packet
