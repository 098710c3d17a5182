"""Engine.IO v4 codec: known answers, round trips, and malformed input."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtserver.engineio.packets import (
    CLOSE,
    NOOP,
    PING,
    PONG_PROBE,
    SEPARATOR,
    EngineProtocolError,
    Packet,
    PacketType,
    decode_payload,
    decode_text,
    encode_frame,
    encode_payload,
    message,
)

OPEN_JSON = '{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'


@pytest.mark.parametrize(
    ("text", "packet"),
    [
        ("0" + OPEN_JSON, Packet(PacketType.OPEN, OPEN_JSON)),
        ("1", Packet(PacketType.CLOSE)),
        ("2", Packet(PacketType.PING)),
        ("3", Packet(PacketType.PONG)),
        ("2probe", Packet(PacketType.PING, "probe")),
        ("3probe", Packet(PacketType.PONG, "probe")),
        ("4hello", Packet(PacketType.MESSAGE, "hello")),
        ("4", Packet(PacketType.MESSAGE, "")),
        ("4€ 2", Packet(PacketType.MESSAGE, "€ 2")),
        ("5", Packet(PacketType.UPGRADE)),
        ("6", Packet(PacketType.NOOP)),
    ],
)
def test_decode_text_known_answers(text: str, packet: Packet) -> None:
    assert decode_text(text) == packet
    assert encode_frame(packet) == text


def test_frame_constants() -> None:
    assert decode_text(PING) == Packet(PacketType.PING)
    assert decode_text(PONG_PROBE) == Packet(PacketType.PONG, "probe")
    assert decode_text(NOOP) == Packet(PacketType.NOOP)
    assert decode_text(CLOSE) == Packet(PacketType.CLOSE)
    assert message('2["x"]') == '42["x"]'


def test_binary_message_frame_is_raw_bytes() -> None:
    assert encode_frame(Packet(PacketType.MESSAGE, b"\x01\x02\x03")) == b"\x01\x02\x03"


def test_binary_data_only_on_message() -> None:
    with pytest.raises(ValueError, match="only MESSAGE"):
        encode_frame(Packet(PacketType.PING, b"x"))


def test_decode_polling_payload_known_answer() -> None:
    assert decode_payload(b"4hello\x1e4world\x1ebAQID") == [
        Packet(PacketType.MESSAGE, "hello"),
        Packet(PacketType.MESSAGE, "world"),
        Packet(PacketType.MESSAGE, b"\x01\x02\x03"),
    ]


def test_decode_single_record_and_utf8() -> None:
    assert decode_payload("4é€😀".encode()) == [Packet(PacketType.MESSAGE, "é€😀")]
    assert decode_payload(b"2probe") == [Packet(PacketType.PING, "probe")]
    assert decode_payload(b"b") == [Packet(PacketType.MESSAGE, b"")]


def test_encode_polling_payload_known_answer() -> None:
    assert encode_payload(["4hello", "4world", b"\x01\x02\x03"]) == "4hello\x1e4world\x1ebAQID"
    assert encode_payload([PING]) == "2"
    assert encode_payload([]) == ""


@pytest.mark.parametrize(
    "text",
    ["", "7", "9x", "b", "bAQID", "x4hello", " 4", "٤hello", "-1"],
)
def test_decode_text_malformed(text: str) -> None:
    with pytest.raises(EngineProtocolError):
        decode_text(text)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe",
        b"4a\xc3",
        b"4hello\x1e",
        b"\x1e4hello",
        b"4a\x1e\x1e4b",
        b"8oops",
        b"4ok\x1e9bad",
        b"bAQI",
        b"b!!!!",
        b"bAQ ID",
        b"bAQID\n",
        "bé".encode(),
        "4ok\x1eb\u00e9\u00e9\u00e9\u00e9".encode(),
    ],
)
def test_decode_payload_malformed(body: bytes) -> None:
    with pytest.raises(EngineProtocolError):
        decode_payload(body)


text_frames = st.builds(
    lambda t, data: f"{t.value}{data}",
    st.sampled_from(PacketType),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters=SEPARATOR)),
)
frames = st.lists(st.one_of(text_frames, st.binary()), min_size=1, max_size=8)


@given(frames)
def test_payload_round_trip(batch: list[str | bytes]) -> None:
    body = encode_payload(batch).encode("utf-8")
    decoded = decode_payload(body)
    assert [encode_frame(p) for p in decoded] == batch
    for frame, packet in zip(batch, decoded):
        if isinstance(frame, bytes):
            assert packet == Packet(PacketType.MESSAGE, frame)
        else:
            assert packet == decode_text(frame)


@given(st.text())
def test_decode_text_never_raises_anything_else(text: str) -> None:
    try:
        packet = decode_text(text)
    except EngineProtocolError:
        return
    assert isinstance(packet, Packet)
    assert encode_frame(packet) == text


@given(
    st.one_of(
        st.binary(),
        st.lists(
            st.one_of(
                st.text(),
                st.text().map(lambda s: "b" + s),
                st.binary().map(lambda b: "b" + base64.b64encode(b).decode()),
            ),
            min_size=1,
        ).map(lambda parts: SEPARATOR.join(parts).encode("utf-8", "surrogatepass")),
    )
)
def test_decode_payload_never_raises_anything_else(body: bytes) -> None:
    try:
        packets = decode_payload(body)
    except EngineProtocolError:
        return
    assert packets
    assert all(isinstance(p, Packet) for p in packets)
