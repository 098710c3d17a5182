"""Engine.IO v3 packet and payload codec (socket.io-client 2.x), sans-IO.

Packets are written as in v4 (a type digit, then the data); what differs is
how binary data travels and how several packets share one polling body:

- Over WebSocket a binary MESSAGE is a binary frame whose first byte is the
  packet type (``\\x04``), then the data.  A client that cannot take binary
  (``b64=1`` in its request) gets and sends ``b4<base64>`` text frames.
- A text polling body is ``<length>:<packet>`` repeated, the length counted
  in UTF-16 code units as JavaScript counts a string's length; a binary
  MESSAGE in it is written ``b4<base64>``.
- A binary polling body (``application/octet-stream``, for a client that
  takes binary when a binary packet is among them) is, for each packet, a
  byte 0 (text) or 1 (binary), the decimal digits of its length as bytes of
  value 0 to 9, a byte 255, then the packet: a text packet as UTF-8 (the
  length in bytes), a binary one as its type byte and data.

Frames given to the encoders are those the session queues (see
:data:`~rtserver.engineio.packets.Frame`): ``str`` for a text packet with its
type digit, ``bytes`` for a binary MESSAGE's data.  The decoders return
:class:`~rtserver.engineio.packets.Packet` values and raise
:class:`~rtserver.engineio.packets.EngineProtocolError` on anything malformed.
"""

from __future__ import annotations

import base64
import binascii

from wsproto.frame_protocol import FrameProtocol

from .packets import EngineProtocolError, Frame, Outgoing, Packet, PacketType, decode_text, decode_utf8

#: The packet type byte in front of a binary MESSAGE.
_MESSAGE = bytes([PacketType.MESSAGE])
#: Most length digits accepted in a payload (a body is at most max_payload).
_MAX_DIGITS = 10
_FRAMER = FrameProtocol(client=False, extensions=[])


def utf16_length(text: str) -> int:
    """A string's length as JavaScript counts it (UTF-16 code units)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


# ------------------------------------------------------------------ packets
def _base64_message(body: str) -> Packet:
    """``b<type><base64>`` without its ``b``: only a MESSAGE carries binary."""
    if body[:1] != "4":
        raise EngineProtocolError("a base64 packet must be a MESSAGE")
    try:
        return Packet(PacketType.MESSAGE, base64.b64decode(body[1:], validate=True))
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII text
        raise EngineProtocolError("invalid base64 in binary packet") from exc


def decode_text_frame(text: str) -> Packet:
    """A text packet (WebSocket frame or payload record); ``b4...`` is binary."""
    if text[:1] == "b":
        return _base64_message(text[1:])
    return decode_text(text)


def decode_binary_frame(data: bytes) -> Packet:
    """A binary packet: its type byte, then the data (only a MESSAGE)."""
    if data[:1] != _MESSAGE:
        raise EngineProtocolError("a binary packet must be a MESSAGE")
    return Packet(PacketType.MESSAGE, data[1:])


def _as_text(frame: Frame) -> str:
    """A frame as text: a binary MESSAGE in base64, ``b4<base64>``."""
    if isinstance(frame, str):
        return frame
    return "b4" + base64.b64encode(frame).decode("ascii")


def encode_frame(frame: Frame, binary: bool) -> Frame:
    """One queued frame as a v3 WebSocket message."""
    if binary and isinstance(frame, bytes):
        return _MESSAGE + frame
    return _as_text(frame)


def websocket_item(item: Outgoing, binary: bool) -> Outgoing:
    """``item`` with its WebSocket bytes framed for a v3 client.

    Text frames are the same in both revisions, so an item without binary
    frames is returned as it is; one with them gets its v3 bytes built once
    and kept beside the v4 ones (``Outgoing.v3``), for every v3 recipient of
    a broadcast that takes binary.
    """
    if all(isinstance(frame, str) for frame in item.frames):
        return item
    if binary and item.v3 is not None:
        return item.v3
    wire = b"".join(_FRAMER.send_data(encode_frame(frame, binary), fin=True) for frame in item.frames)
    framed = Outgoing(item.frames, wire)
    if binary:
        item.v3 = framed
    return framed


# ----------------------------------------------------------------- payloads
def _decode_text_payload(body: bytes) -> list[Packet]:
    text = decode_utf8(body)
    # Lengths count UTF-16 code units: read the body in its UTF-16 form, two
    # bytes a unit (the length digits and colon are ASCII there too).
    units = text.encode("utf-16-le", "surrogatepass")
    packets = []
    at, end = 0, len(units)
    while at < end:
        colon = units.find(b":\x00", at, at + 2 * (_MAX_DIGITS + 1))
        digits = units[at:colon].decode("utf-16-le") if colon > at and (colon - at) % 2 == 0 else ""
        if not (digits.isascii() and digits.isdigit()):
            raise EngineProtocolError("invalid payload record length")
        start = colon + 2
        stop = start + 2 * int(digits)
        if stop > end:
            raise EngineProtocolError("payload record longer than the payload")
        if stop > start:
            try:
                record = units[start:stop].decode("utf-16-le")
            except UnicodeDecodeError as exc:
                raise EngineProtocolError("payload record length splits a character") from exc
            packets.append(decode_text_frame(record))
        at = stop
    return packets


def _decode_binary_payload(body: bytes) -> list[Packet]:
    packets = []
    at, end = 0, len(body)
    while at < end:
        kind = body[at]
        if kind > 1:
            raise EngineProtocolError("binary payload record is neither text (0) nor binary (1)")
        mark = body.find(b"\xff", at + 1, at + 2 + _MAX_DIGITS)
        digits = body[at + 1 : mark]
        if mark < 0 or not digits or any(d > 9 for d in digits):
            raise EngineProtocolError("invalid binary payload record length")
        start = mark + 1
        stop = start + int("".join(map(str, digits)))
        if stop > end:
            raise EngineProtocolError("payload record longer than the payload")
        record = body[start:stop]
        if kind == 0:
            text = decode_utf8(record, "text record")
            if not text:
                raise EngineProtocolError("empty packet")
            packets.append(decode_text_frame(text))
        else:
            packets.append(decode_binary_frame(record))
        at = stop
    return packets


def decode_payload(body: bytes) -> list[Packet]:
    """Decode an HTTP long-polling POST body into its packets.

    The reference server tells the two forms apart by the Content-Type; the
    first byte does as well (a text body starts with a length digit, a
    binary one with 0 or 1).
    """
    if not body:
        raise EngineProtocolError("empty payload")
    if body[0] <= 1:
        return _decode_binary_payload(body)
    return _decode_text_payload(body)


def _digits(n: int) -> bytes:
    return bytes(int(d) for d in str(n))


def encode_payload(frames: list[Frame], binary: bool) -> tuple[bytes, bool]:
    """Join queued frames into one long-polling response body.

    Returns the body and whether it is the binary form (sent as
    ``application/octet-stream``): only for a client that takes binary, and
    only when a binary frame is among them, as the reference does.
    """
    if binary and any(isinstance(frame, bytes) for frame in frames):
        parts = []
        for frame in frames:
            if isinstance(frame, str):
                data = frame.encode("utf-8")
                parts += (b"\x00", _digits(len(data)), b"\xff", data)
            else:
                parts += (b"\x01", _digits(len(frame) + 1), b"\xff", _MESSAGE, frame)
        return b"".join(parts), True
    texts = [_as_text(frame) for frame in frames]
    return "".join(f"{utf16_length(text)}:{text}" for text in texts).encode("utf-8"), False
