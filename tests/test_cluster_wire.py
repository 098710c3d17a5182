"""The Redis adapter's wire format without Redis: channel names, broadcasts
and requests as the reference encodes them, and what is refused."""

from __future__ import annotations

import datetime
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtserver.cluster import wire
from rtserver.cluster.wire import Channels, Malformed, RequestType


def test_channel_names_are_the_reference_adapters() -> None:
    channels = Channels("socket.io", "abc123")
    assert channels.broadcast("/") == "socket.io#/#"
    assert channels.broadcast("/chat", "room 1") == "socket.io#/chat#room 1#"
    assert channels.request("/") == "socket.io-request#/#"
    assert channels.response("/") == "socket.io-response#/#"
    assert channels.response("/", "abc123") == "socket.io-response#/#abc123#"
    assert channels.broadcast_pattern("/") == "socket.io#/#*"
    assert channels.room_of("/", "socket.io#/#") is None
    assert channels.room_of("/", "socket.io#/#a#b#") == "a#b"
    for foreign in ("socket.io#/chat#x#", "socket.io#/#x", "socket.io#/##"):
        with pytest.raises(Malformed, match="foreign channel"):
            channels.room_of("/", foreign)
    subscribed, patterns = channels.subscriptions(["/", "/chat"])
    assert patterns == ["socket.io#/#*", "socket.io#/chat#*"]
    assert "socket.io-rtserver#" in subscribed and "socket.io-rtserver#abc123#" in subscribed


def test_glob_characters_in_a_namespace_are_matched_literally() -> None:
    assert Channels("p[1]", "u").broadcast_pattern("/a*?") == "p\\[1\\]#/a\\*\\?#*"


def test_a_broadcast_is_the_emitters_msgpack_array() -> None:
    payload = wire.broadcast_message("node1", "/chat", ["news", {"n": 1}, b"\x00"], ["r"], ["sid1"], True)
    # What @socket.io/redis-emitter's BroadcastOperator.emit publishes, field for field.
    assert msgpack.unpackb(payload) == [
        "node1",
        {"type": 2, "data": ["news", {"n": 1}, b"\x00"], "nsp": "/chat"},
        {"rooms": ["r"], "except": ["sid1"], "flags": {"volatile": True}},
    ]
    message = wire.parse_broadcast(wire.decode(payload, 1000))
    assert (message.uid, message.namespace, message.data) == ("node1", "/chat", ["news", {"n": 1}, b"\x00"])
    assert (message.rooms, message.exclude, message.volatile) == (["r"], ["sid1"], True)


def test_a_broadcast_from_node_with_defaults() -> None:
    # No nsp (the reference then means "/"), numeric rooms, no flags, a Date.
    when = datetime.datetime(2026, 12, 2, 10, 0, tzinfo=datetime.UTC)
    payload = msgpack.packb(["emitter", {"type": 2, "data": ["e", when]}, {"rooms": [7, "x"], "except": []}],
                            datetime=True)
    message = wire.parse_broadcast(wire.decode(payload, 1000))
    assert message.namespace == "/" and message.rooms == ["7", "x"] and message.rooms is not None
    assert message.data == ["e", when] and not message.volatile


@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
))
def test_any_plain_argument_round_trips(value: Any) -> None:
    payload = wire.broadcast_message("u", "/", ["e", value], None, [], False)
    assert wire.parse_broadcast(wire.decode(payload, 1 << 20)).data == ["e", value]


@given(st.binary(max_size=64))
def test_any_bytes_decode_to_plain_data_or_malformed(payload: bytes) -> None:
    try:
        value = wire.decode(payload, 1000)
    except Malformed:
        return
    assert isinstance(value, type(None) | bool | int | float | str | bytes | list | dict | datetime.datetime)


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"\xc1", "bad msgpack"),
        (b"\x92\x01", "bad msgpack"),  # truncated
        (msgpack.packb(1) + b"\x01", "bad msgpack"),  # extra data
        (msgpack.packb({1: 2}), "bad msgpack"),  # non-string key
        (b"\x91" * 5000 + b"\xc0", "bad msgpack"),  # nesting
        (msgpack.packb(msgpack.ExtType(1, b"")), "msgpack extension"),
        (b"{oops", "bad JSON"),
        (b"x" * 1001, "too large"),
    ],
)
def test_undecodable_messages_are_malformed(payload: bytes, kind: str) -> None:
    with pytest.raises(Malformed) as info:
        wire.decode(payload, 10_000 if kind != "too large" else 1000)
    assert info.value.kind == kind


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ([1, 2], "bad broadcast"),
        (["u", "packet", {}], "bad packet"),
        (["u", {"type": 3, "data": ["e"]}, {}], "not an event"),
        (["u", {"type": 2, "data": []}, {}], "bad packet"),
        (["u", {"type": 2, "data": [1]}, {}], "bad packet"),
        (["u", {"type": 2, "data": ["connect"]}, {}], "reserved event"),
        (["u", {"type": 2, "data": ["e"]}, {"rooms": "r"}], "bad options"),
        (["u", {"type": 2, "data": ["e"]}, {"except": [True]}], "bad options"),
        (["u", {"type": 2, "data": ["e"]}, {"flags": "volatile"}], "bad options"),
    ],
)
def test_misshapen_broadcasts_are_malformed(message: Any, kind: str) -> None:
    with pytest.raises(Malformed) as info:
        wire.parse_broadcast(message)
    assert info.value.kind == kind


def test_requests_json_or_msgpack() -> None:
    # The reference sends most requests as JSON, broadcasts with acks as msgpack.
    fetch = orjson.dumps({"uid": "n", "requestId": "r1", "type": 5, "opts": {"rooms": ["a"], "except": []}})
    assert wire.parse_request(wire.decode(fetch, 1000)) == (RequestType.REMOTE_FETCH, orjson.loads(fetch))
    ack = msgpack.packb({"uid": "n", "requestId": "r2", "type": 7, "packet": {"type": 2, "data": ["q"]}})
    assert wire.parse_request(wire.decode(ack, 1000))[0] is RequestType.BROADCAST
    assert wire.parse_request({"type": "revoke"})[0] == "revoke"
    for bad, kind in (({"type": 42}, "unknown request type"), ({"type": True}, "unknown request type"),
                      ([], "bad request")):
        with pytest.raises(Malformed) as info:
            wire.parse_request(bad)
        assert info.value.kind == kind
    assert wire.parse_answer({"requestId": "r1", "sockets": []}) == ("r1", {"requestId": "r1", "sockets": []})
    with pytest.raises(Malformed):
        wire.parse_answer({"requestId": 5})


def test_packing_sets_and_other_objects() -> None:
    assert msgpack.unpackb(wire.pack({"s": {1}, "d": datetime.date(2026, 1, 2)})) == {"s": [1], "d": "2026-01-02"}
