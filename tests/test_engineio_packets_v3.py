"""Engine.IO v3 codec (socket.io-client 2.x): the reference parser's own
examples, lengths as JavaScript counts them, round trips, and malformed
input."""

from __future__ import annotations

import contextlib

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtserver.engineio.packets import EngineProtocolError, Outgoing, Packet, PacketType
from rtserver.engineio.packets_v3 import (
    decode_binary_frame,
    decode_payload,
    decode_text_frame,
    encode_frame,
    encode_payload,
    utf16_length,
    websocket_item,
)

HELLO = Packet(PacketType.MESSAGE, "hello")


# ----------------------------------------------- the reference's examples
def test_reference_examples() -> None:
    """engine.io-parser's changelog for 4.0.0 shows what v3 wrote."""
    assert encode_payload(["4hello", "4€€€"], binary=True) == (b"6:4hello4:4\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", False)
    body = bytes.fromhex("00 06 ff 34 68 65 6c 6c 6f 01 04 ff 04 01 02 03")
    assert encode_payload(["4hello", b"\x01\x02\x03"], binary=True) == (body, True)
    assert encode_frame(b"\x01\x02\x03", binary=True) == b"\x04\x01\x02\x03"
    assert decode_payload(body) == [HELLO, Packet(PacketType.MESSAGE, b"\x01\x02\x03")]
    assert decode_payload("6:4hello4:4€€€".encode()) == [HELLO, Packet(PacketType.MESSAGE, "€€€")]


def test_lengths_count_utf16_code_units() -> None:
    assert utf16_length("4hello") == 6
    assert utf16_length("4€") == 2  # one unit, three UTF-8 bytes
    assert utf16_length("4😀") == 3  # a surrogate pair
    assert encode_payload(["4😀é"], binary=False) == ("4:4😀é".encode(), False)
    assert decode_payload("4:4😀é2:4a".encode()) == [Packet(PacketType.MESSAGE, "😀é"), Packet(PacketType.MESSAGE, "a")]


def test_binary_payload_counts_utf8_bytes() -> None:
    body, binary = encode_payload(["4€", b""], binary=True)
    assert binary and body == b"\x00\x04\xff4\xe2\x82\xac" + b"\x01\x01\xff\x04"
    assert decode_payload(body) == [Packet(PacketType.MESSAGE, "€"), Packet(PacketType.MESSAGE, b"")]


def test_base64_for_clients_without_binary() -> None:
    assert encode_frame(b"\x01\x02\x03", binary=False) == "b4AQID"
    assert encode_payload(["4hi", b"\x01\x02\x03"], binary=False) == (b"3:4hi6:b4AQID", False)
    assert decode_payload(b"6:b4AQID") == [Packet(PacketType.MESSAGE, b"\x01\x02\x03")]
    assert decode_text_frame("b4AQID") == Packet(PacketType.MESSAGE, b"\x01\x02\x03")


def test_text_only_payload_stays_text_for_binary_clients() -> None:
    assert encode_payload(["40", "2"], binary=True) == (b"2:401:2", False)


def test_control_packets_and_empty_records() -> None:
    assert decode_payload(b"1:21:61:1") == [Packet(PacketType.PING), Packet(PacketType.NOOP), Packet(PacketType.CLOSE)]
    assert decode_payload(b"0:") == []  # the reference's empty payload
    assert decode_text_frame("2probe") == Packet(PacketType.PING, "probe")


def test_binary_websocket_frames() -> None:
    assert decode_binary_frame(b"\x04\x00\xff") == Packet(PacketType.MESSAGE, b"\x00\xff")
    assert decode_binary_frame(b"\x04") == Packet(PacketType.MESSAGE, b"")


def test_websocket_item_shares_text_and_caches_binary() -> None:
    text = Outgoing(('42["a"]',))
    assert websocket_item(text, True) is text and websocket_item(text, False) is text
    mixed = Outgoing(('451-["a",{"_placeholder":true,"num":0}]', b"\x01"))
    framed = websocket_item(mixed, True)
    assert framed.frames == mixed.frames
    assert websocket_item(mixed, True) is framed  # built once for every v3 recipient
    # Server frames are unmasked: text frame (0x81), then a binary one (0x82) with the type byte.
    assert framed.wire.endswith(b"\x82\x02\x04\x01")
    assert websocket_item(mixed, False).wire.endswith(b"\x81\x06b4AQ==")
    assert mixed.wire.endswith(b"\x82\x01\x01")  # the v4 bytes are untouched


# --------------------------------------------------------------- round trips
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).map(lambda s: "4" + s)
FRAMES = st.lists(st.one_of(TEXT, st.binary(max_size=40)), min_size=1, max_size=8)


@given(FRAMES, st.booleans())
def test_payload_round_trip(frames: list[str | bytes], binary: bool) -> None:
    body, _ = encode_payload(frames, binary)
    decoded = decode_payload(body)
    assert decoded == [
        Packet(PacketType.MESSAGE, f[1:]) if isinstance(f, str) else Packet(PacketType.MESSAGE, f) for f in frames
    ]


@given(st.one_of(TEXT, st.binary(max_size=40)), st.booleans())
def test_websocket_frame_round_trip(frame: str | bytes, binary: bool) -> None:
    encoded = encode_frame(frame, binary)
    packet = decode_binary_frame(encoded) if isinstance(encoded, bytes) else decode_text_frame(encoded)
    assert packet == Packet(PacketType.MESSAGE, frame[1:] if isinstance(frame, str) else frame)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_protocol_error(body: bytes) -> None:
    with contextlib.suppress(EngineProtocolError):
        decode_payload(body)


# ------------------------------------------------------------------ malformed
@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "empty payload"),
        (b"4hello", "length"),
        (b"x:4", "length"),
        (b":4", "length"),
        (b"12345678901:4", "length"),
        (b"9:4hello", "longer than the payload"),
        (b"2:4a1", "length"),
        (b"1:9", "unknown packet type"),
        (b"1:b", "MESSAGE"),
        (b"3:b2x", "MESSAGE"),
        (b"4:b4!!", "base64"),
        ("2:4😀".encode(), "splits a character"),
        (b"\xff\xfe", "UTF-8"),
        (b"\x00\x01", "length"),
        (b"\x00\xff", "length"),
        (b"\x00\x0a\xff" + b"4" * 10, "length"),
        (b"\x00\x09\xff4", "longer than the payload"),
        (b"\x00\x00\xff", "empty packet"),
        (b"\x00\x02\xff\xff\xfe", "UTF-8"),
        (b"\x01\x01\xff\x02", "MESSAGE"),
        (b"\x01\x00\xff", "MESSAGE"),
        (b"\x00\x01" + b"\x01" * 20 + b"\xff4", "length"),
    ],
)
def test_malformed_payloads(body: bytes, error: str) -> None:
    with pytest.raises(EngineProtocolError, match=error):
        decode_payload(body)


@pytest.mark.parametrize(("data", "error"), [(b"", "MESSAGE"), (b"\x02", "MESSAGE"), (b"4abc", "MESSAGE")])
def test_malformed_binary_frames(data: bytes, error: str) -> None:
    with pytest.raises(EngineProtocolError, match=error):
        decode_binary_frame(data)


def test_base64_is_strict() -> None:
    with pytest.raises(EngineProtocolError, match="base64"):
        decode_text_frame("b4" + base64.b64encode(b"ab").decode() + "\n")
