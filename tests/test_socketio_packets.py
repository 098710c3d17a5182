"""Socket.IO v5 codec: known answers, round trips, and malformed input."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtserver.jsonlimits import MAX_DEPTH
from rtserver.socketio.packets import (
    RESERVED_EVENTS,
    Decoder,
    Packet,
    PacketType,
    PayloadTooDeep,
    SocketProtocolError,
    decode_text,
    encode,
)

T = PacketType


def feed_all(parts: list[str | bytes], decoder: Decoder | None = None) -> Packet:
    """Feed every part; only the last may complete the packet."""
    decoder = decoder or Decoder()
    *head, last = parts
    for part in head:
        assert decoder.feed(part) is None
    packet = decoder.feed(last)
    assert packet is not None
    return packet


KNOWN = [
    ("0", Packet(T.CONNECT)),
    ('0{"token":"x"}', Packet(T.CONNECT, data={"token": "x"})),
    ('0/admin,{"token":"x"}', Packet(T.CONNECT, "/admin", {"token": "x"})),
    ("0/admin,", Packet(T.CONNECT, "/admin")),
    ("1", Packet(T.DISCONNECT)),
    ("1/admin,", Packet(T.DISCONNECT, "/admin")),
    ('2["hello",1]', Packet(T.EVENT, data=["hello", 1])),
    ('2/admin,["project:delete",123]', Packet(T.EVENT, "/admin", ["project:delete", 123])),
    ('212["ev"]', Packet(T.EVENT, data=["ev"], id=12)),
    ('2/nsp,7["ev",{"a":[1,null,true]}]', Packet(T.EVENT, "/nsp", ["ev", {"a": [1, None, True]}], 7)),
    ("3/nsp,7[]", Packet(T.ACK, "/nsp", [], 7)),
    ('30["ok",2.5]', Packet(T.ACK, data=["ok", 2.5], id=0)),
    ('4{"message":"Not authorized"}', Packet(T.CONNECT_ERROR, data={"message": "Not authorized"})),
    ('4/admin,"nope"', Packet(T.CONNECT_ERROR, "/admin", "nope")),
]


@pytest.mark.parametrize(("text", "packet"), KNOWN)
def test_known_answers(text: str, packet: Packet) -> None:
    assert decode_text(text) == (packet, 0)
    assert feed_all([text]) == packet


@pytest.mark.parametrize(
    ("packet", "text"),
    [
        (Packet(T.CONNECT), "0"),
        (Packet(T.CONNECT, "/admin", {"token": "x"}), '0/admin,{"token":"x"}'),
        (Packet(T.EVENT, data=["hello", 1]), '2["hello",1]'),
        (Packet(T.EVENT, data=["ev"], id=12), '212["ev"]'),
        (Packet(T.ACK, "/nsp", [], 7), "3/nsp,7[]"),
        (Packet(T.CONNECT_ERROR, data={"message": "no"}), '4{"message":"no"}'),
        (Packet(T.DISCONNECT, "/admin"), "1/admin,"),
    ],
)
def test_encode_known_answers(packet: Packet, text: str) -> None:
    assert encode(packet) == [text]


def test_encode_binary_event() -> None:
    packet = Packet(T.EVENT, data=["ev", b"\x01\x02", {"k": [b"\x03"]}], id=9)
    assert encode(packet) == [
        '52-9["ev",{"_placeholder":true,"num":0},{"k":[{"_placeholder":true,"num":1}]}]',
        b"\x01\x02",
        b"\x03",
    ]


def test_encode_binary_ack_with_namespace() -> None:
    assert encode(Packet(T.ACK, "/nsp", [bytearray(b"x")], 3)) == [
        '61-/nsp,3[{"_placeholder":true,"num":0}]',
        b"x",
    ]


def test_decode_binary_event_known_answer() -> None:
    text = '451-["ev",{"_placeholder":true,"num":0}]'
    # As an Engine.IO message the leading "4" is the MESSAGE type.
    assert text[0] == "4"
    packet, attachments = decode_text(text[1:])
    assert (packet.type, attachments) == (T.BINARY_EVENT, 1)
    decoder = Decoder()
    assert decoder.feed(text[1:]) is None
    assert decoder.feed(b"\x01\x02\x03") == Packet(T.EVENT, data=["ev", b"\x01\x02\x03"])


def test_decode_binary_ack_with_namespace_and_id() -> None:
    parts: list[str | bytes] = [
        '62-/nsp,42[{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]',
        b"zero",
        b"one",
    ]
    assert feed_all(parts) == Packet(T.ACK, "/nsp", [b"one", b"zero"], 42)


def test_placeholder_in_plain_event_is_left_alone() -> None:
    data = ["ev", {"_placeholder": True, "num": 0}]
    assert feed_all(['2["ev",{"_placeholder":true,"num":0}]']) == Packet(T.EVENT, data=data)


def test_decoder_is_reusable_after_binary_packet() -> None:
    decoder = Decoder()
    first = feed_all(['51-["a",{"_placeholder":true,"num":0}]', b"1"], decoder)
    second = feed_all(['2["b"]'], decoder)
    assert first == Packet(T.EVENT, data=["a", b"1"])
    assert second == Packet(T.EVENT, data=["b"])


def test_max_ack_id() -> None:
    assert decode_text(f'2{2**53 - 1}["ev"]')[0].id == 2**53 - 1


def test_event_name_may_be_a_number() -> None:
    assert decode_text("2[1,2]")[0] == Packet(T.EVENT, data=[1, 2])


MALFORMED_TEXT = [
    "",
    "7",
    "9[]",
    "x",
    "٢[\"ev\"]",
    "-2[\"ev\"]",
    # attachment count
    '5["ev"]',
    '5-["ev"]',
    '5x-["ev"]',
    '5١-["ev",{"_placeholder":true,"num":0}]',
    "5" + "9" * 5000 + '-["ev"]',
    '6-3[]',
    # JSON
    '2["ev"',
    "2[ev]",
    '2["ev",NaN]',
    '2["ev"]]',
    '0{"a":}',
    '2["ev",' + "[" * 2000 + "]" * 2000 + "]",
    '2["ev\ud800"]',
    # ack ids
    '2' + "1" * 17 + '["ev"]',
    f'2{2**53}["ev"]',
    '29999999999999999["ev"]',
    # payload shapes
    "2",
    "2[]",
    '2{"ev":1}',
    '2"ev"',
    "2[null]",
    "2[true]",
    "2[1.5]",
    '2[["ev"]]',
    '2/admin,',
    '2/admin["ev"]',
    *(f'2["{name}"]' for name in sorted(RESERVED_EVENTS)),
    '3["ok"]',
    "3",
    "37{}",
    '37"x"',
    "0[]",
    '0"x"',
    "01",
    "0/admin,1{}",
    "1{}",
    "1[]",
    "11",
    "4",
    "4[]",
    "41\"x\"",
    '51-["connect",{"_placeholder":true,"num":0}]',
    '61-[{"_placeholder":true,"num":0}]',
    '51-[]',
    # A binary packet has at least one attachment (the reference parser's rule).
    '50-["ev",1]',
    '60-3[1]',
]


@pytest.mark.parametrize("text", MALFORMED_TEXT)
def test_malformed_text(text: str) -> None:
    with pytest.raises(SocketProtocolError):
        decode_text(text)
    with pytest.raises(SocketProtocolError):
        Decoder().feed(text)


@pytest.mark.parametrize(
    "parts",
    [
        [b"\x01"],
        ['51-["ev",{"_placeholder":true,"num":0}]', '2["ev"]'],
        ['52-["ev",{"_placeholder":true,"num":2}]', b"a", b"b"],
        ['51-["ev",{"_placeholder":true,"num":-1}]', b"a"],
        ['51-["ev",{"_placeholder":true,"num":true}]', b"a"],
        ['51-["ev",{"_placeholder":true,"num":"0"}]', b"a"],
        ['51-["ev",{"_placeholder":true,"num":0.0}]', b"a"],
        ['51-["ev",{"_placeholder":true}]', b"a"],  # a placeholder without its number
        ['50-["ev",{"_placeholder":true,"num":0}]'],
        ['511-["ev"]'],
    ],
)
def test_malformed_sequences(parts: list[str | bytes]) -> None:
    decoder = Decoder()
    *head, last = parts
    for part in head:
        assert decoder.feed(part) is None
    with pytest.raises(SocketProtocolError):
        decoder.feed(last)


def nested(depth: int) -> str:
    """A JSON argument ``depth`` arrays deep."""
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [63, 64, 1000, 100_000])
def test_payload_depth_is_limited_at_decode(depth: int) -> None:
    """The event's own array counts: 63 more levels pass, 64 are refused,
    as a refusal the client layer answers, not a protocol error."""
    text = '21["ev",' + nested(depth) + "]"
    if depth < MAX_DEPTH:
        assert Decoder().feed(text) == Packet(T.EVENT, data=["ev", orjson.loads(nested(depth))], id=1)
        return
    with pytest.raises(PayloadTooDeep) as refused:
        Decoder().feed(text)
    packet = refused.value.packet
    assert (packet.type, packet.id) == (T.EVENT, 1)
    # Beyond what the JSON parser itself nests (1,024) the name is not known.
    assert packet.data is None if depth > 1000 else packet.data[0] == "ev"
    assert "64 levels" in str(refused.value)


def test_deep_binary_packet_drops_its_attachments_and_decoding_goes_on() -> None:
    decoder = Decoder()
    with pytest.raises(PayloadTooDeep) as refused:
        decoder.feed('52-/admin,7["ev",' + nested(100) + ',{"_placeholder":true,"num":0}]')
    packet = refused.value.packet
    assert (packet.type, packet.namespace, packet.id) == (T.EVENT, "/admin", 7)
    assert decoder.feed(b"a") is None and decoder.feed(b"b") is None
    assert decoder.feed('2["next"]') == Packet(T.EVENT, data=["next"])


def test_deep_binary_packet_text_before_its_attachments_is_malformed() -> None:
    decoder = Decoder()
    with pytest.raises(PayloadTooDeep):
        decoder.feed('51-["ev",' + nested(100) + "]")
    with pytest.raises(SocketProtocolError, match="pending"):
        decoder.feed('2["ev"]')


def test_max_attachments_is_configurable() -> None:
    text = '52-["ev",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    with pytest.raises(SocketProtocolError, match="too many"):
        Decoder(max_attachments=1).feed(text)
    assert feed_all([text, b"a", b"b"], Decoder(max_attachments=2)) == Packet(T.EVENT, data=["ev", b"a", b"b"])


# --- round trips -----------------------------------------------------------

json_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    json_text,
)


def _json_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(json_text.filter(lambda k: k != "_placeholder"), children, max_size=4),
        ),
        max_leaves=12,
    )


args_with_bytes = st.lists(_json_values(st.one_of(scalars, st.binary(max_size=16))), max_size=5)
namespaces = st.one_of(
    st.just("/"),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters=","), min_size=1, max_size=10).map(
        lambda s: "/" + s
    ),
)
ack_ids = st.integers(min_value=0, max_value=2**53 - 1)
event_names = st.one_of(json_text.filter(lambda s: s not in RESERVED_EVENTS), st.integers(0, 2**31))


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    kind = draw(st.sampled_from([T.CONNECT, T.DISCONNECT, T.EVENT, T.ACK, T.CONNECT_ERROR]))
    namespace = draw(namespaces)
    if kind is T.CONNECT:
        return Packet(kind, namespace, draw(st.none() | st.dictionaries(json_text, _json_values(scalars))))
    if kind is T.DISCONNECT:
        return Packet(kind, namespace)
    if kind is T.CONNECT_ERROR:
        return Packet(kind, namespace, draw(json_text | st.fixed_dictionaries({"message": json_text})))
    if kind is T.EVENT:
        return Packet(kind, namespace, [draw(event_names), *draw(args_with_bytes)], draw(st.none() | ack_ids))
    return Packet(kind, namespace, draw(args_with_bytes), draw(ack_ids))


@given(packets())
def test_round_trip(packet: Packet) -> None:
    parts = encode(packet)
    text, *attachments = parts
    assert isinstance(text, str)
    assert all(isinstance(a, bytes) for a in attachments)
    decoded, count = decode_text(text)
    assert count == len(attachments)
    if attachments:
        assert decoded.type in (T.BINARY_EVENT, T.BINARY_ACK)
    assert feed_all(parts, Decoder(max_attachments=1000)) == packet


@given(st.lists(packets(), min_size=2, max_size=4))
def test_one_decoder_many_packets(batch: list[Packet]) -> None:
    decoder = Decoder(max_attachments=1000)
    assert [feed_all(encode(p), decoder) for p in batch] == batch


# --- arbitrary input -------------------------------------------------------

packet_like_text = st.one_of(
    st.text(),
    st.builds(
        lambda head, body: head + body,
        st.sampled_from(["0", "1", "2", "3", "4", "5", "6", "51-", "61-", "5", "2/a,", "51-/a,3", "23"]),
        st.one_of(
            st.text(),
            st.sampled_from(['["ev"]', '[{"_placeholder":true,"num":0}]', "[]", "{}", '"x"', "1", "[1]"]),
            _json_values(scalars).map(lambda v: json.dumps(v)),
        ),
    ),
)


@given(st.lists(st.one_of(packet_like_text, st.binary(max_size=4)), min_size=1, max_size=5))
def test_feed_never_raises_anything_else(messages: list[str | bytes]) -> None:
    decoder = Decoder()
    for message in messages:
        try:
            packet = decoder.feed(message)
        except SocketProtocolError:
            continue
        if packet is not None:
            assert packet.type in (T.CONNECT, T.DISCONNECT, T.EVENT, T.ACK, T.CONNECT_ERROR)


@given(packet_like_text)
def test_decode_text_never_raises_anything_else(text: str) -> None:
    try:
        packet, attachments = decode_text(text)
    except SocketProtocolError:
        return
    assert isinstance(packet, Packet)
    assert attachments >= 0
