"""The Redis adapter's wire format, sans-IO: channel names, and the messages
``@socket.io/redis-adapter`` 8 and ``@socket.io/redis-emitter`` 5 exchange.

Channels, for prefix ``p`` (the reference's ``key``, ``socket.io`` by
default) and namespace ``n``:

- ``p#n#`` carries broadcasts to the whole namespace, ``p#n#room#`` those to
  exactly one room (every node pattern-subscribes to ``p#n#*`` and drops
  what is for a room it has no member of, before decoding);
- ``p-request#n#`` carries requests between nodes, ``p-response#n#`` and
  ``p-response#n#uid#`` the answers (the latter only the asker reads).

A broadcast is the msgpack array ``[uid, packet, opts]``: ``packet`` is the
Socket.IO packet as an object ``{type: 2, data: [event, ...args], nsp}``
whose binary arguments stay msgpack ``bin`` values, ``opts`` is
``{rooms: [...], except: [...], flags: {volatile?, ...}}``.  A node ignores
its own broadcasts by ``uid``; the emitter's uid is ``"emitter"``.  Requests
and answers are JSON objects (or msgpack maps: a leading ``{`` tells them
apart) with a numeric ``type`` (:class:`RequestType`).

rtserver nodes also talk among themselves on ``p-rtserver#`` (requests) and
``p-rtserver#uid#`` (answers to one node): a channel the reference never
reads, for what only rtserver nodes know (revocation).

Decoding yields plain data only (None, bool, int, float, str, bytes, list,
dict with string keys, and msgpack timestamps as datetimes); any other
msgpack extension, a wrong shape or an oversized message raises
:class:`Malformed` naming what was wrong, for the caller to count.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import attrs
import msgpack
import orjson

from ..socketio.packets import RESERVED_EVENTS


class RequestType(enum.IntEnum):
    SOCKETS = 0
    ALL_ROOMS = 1
    REMOTE_JOIN = 2
    REMOTE_LEAVE = 3
    REMOTE_DISCONNECT = 4
    REMOTE_FETCH = 5
    SERVER_SIDE_EMIT = 6
    BROADCAST = 7
    BROADCAST_CLIENT_COUNT = 8
    BROADCAST_ACK = 9


#: Socket.IO packet types a broadcast may carry (the reference sends EVENT;
#: BINARY_EVENT is its encoded form and means the same here).
_EVENT_TYPES = (2, 5)


class Malformed(ValueError):
    """A message on a cluster channel that is not what the protocol allows.
    ``kind`` is a short label for counting and logging."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@attrs.frozen
class Channels:
    """Every channel name of one prefix and node."""

    prefix: str
    uid: str

    def broadcast(self, namespace: str, room: str | None = None) -> str:
        base = f"{self.prefix}#{namespace}#"
        return base if room is None else f"{base}{room}#"

    def broadcast_pattern(self, namespace: str) -> str:
        return glob_escape(self.broadcast(namespace)) + "*"

    def request(self, namespace: str) -> str:
        return f"{self.prefix}-request#{namespace}#"

    def response(self, namespace: str, uid: str | None = None) -> str:
        base = f"{self.prefix}-response#{namespace}#"
        return base if uid is None else f"{base}{uid}#"

    @property
    def own(self) -> str:
        """rtserver nodes' shared request channel."""
        return f"{self.prefix}-rtserver#"

    def node(self, uid: str) -> str:
        """One rtserver node's answer channel."""
        return f"{self.prefix}-rtserver#{uid}#"

    def subscriptions(self, namespaces: Iterable[str]) -> tuple[list[str], list[str]]:
        """(channels, patterns) a node subscribes to for ``namespaces``."""
        channels, patterns = [self.own, self.node(self.uid)], []
        for namespace in namespaces:
            patterns.append(self.broadcast_pattern(namespace))
            channels += [self.request(namespace), self.response(namespace), self.response(namespace, self.uid)]
        return channels, patterns

    def room_of(self, namespace: str, channel: str) -> str | None:
        """The room a broadcast channel of ``namespace`` is for (None: the
        whole namespace); Malformed when it is not one of them."""
        base = self.broadcast(namespace)
        if channel == base:
            return None
        if not channel.startswith(base) or not channel.endswith("#") or len(channel) == len(base) + 1:
            raise Malformed("foreign channel", channel[:120])
        return channel[len(base):-1]


def glob_escape(text: str) -> str:
    """``text`` matched literally in a Redis PSUBSCRIBE pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# ------------------------------------------------------------------ codec
def _no_extensions(code: int, data: bytes) -> Any:
    raise Malformed("msgpack extension", f"type {code}")


def decode(payload: bytes, limit: int) -> Any:
    """Plain data from a message: JSON when it starts with ``{``, else msgpack."""
    if len(payload) > limit:
        raise Malformed("too large", f"{len(payload)} bytes (limit {limit})")
    if payload[:1] == b"{":
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise Malformed("bad JSON", str(exc)[:120]) from None
    try:
        return msgpack.unpackb(payload, raw=False, timestamp=3, ext_hook=_no_extensions, strict_map_key=True)
    except Malformed:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # ExtraData, FormatError, StackError (nesting), OutOfData, bad UTF-8, non-string keys
        raise Malformed("bad msgpack", type(exc).__name__) from None


def _plain(value: Any) -> Any:
    """What msgpack cannot pack by itself: sets as lists, anything else
    (a datetime, a UUID in a socket's ``data``) as its text."""
    if isinstance(value, set | frozenset):
        return list(value)
    return str(value)


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True, default=_plain)


# ------------------------------------------------------------- broadcasts
@attrs.frozen
class Broadcast:
    uid: Any
    namespace: str
    #: ``[event, *args]``
    data: list[Any]
    rooms: list[str] | None
    exclude: list[str]
    volatile: bool


def broadcast_message(
    uid: str, namespace: str, data: list[Any], rooms: Iterable[str] | None, exclude: Iterable[str], volatile: bool
) -> bytes:
    opts = {"rooms": list(rooms or ()), "except": list(exclude), "flags": {"volatile": True} if volatile else {}}
    return pack([uid, {"type": 2, "data": data, "nsp": namespace}, opts])


def _room_names(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed("bad options", f"{field} is not a list")
    names = []
    for item in value:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            names.append(str(item) if not isinstance(item, float) or not item.is_integer() else str(int(item)))
        else:
            raise Malformed("bad options", f"{field} holds a {type(item).__name__}")
    return names


def parse_packet(packet: Any) -> tuple[str, list[Any]]:
    """(namespace, [event, *args]) of an event packet object."""
    if not isinstance(packet, dict):
        raise Malformed("bad packet", "not an object")
    if packet.get("type") not in _EVENT_TYPES:
        raise Malformed("not an event", f"packet type {packet.get('type')!r}")
    namespace = packet.get("nsp", "/")
    data = packet.get("data")
    if not isinstance(namespace, str) or not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise Malformed("bad packet", "an event packet is {type, data: [event, ...], nsp}")
    if data[0] in RESERVED_EVENTS:
        raise Malformed("reserved event", data[0])
    return namespace, data


def parse_options(opts: Any) -> tuple[list[str] | None, list[str], dict[str, Any]]:
    """(rooms or None for all, except, flags) of broadcast options."""
    if opts is None:
        opts = {}
    if not isinstance(opts, dict):
        raise Malformed("bad options", "not an object")
    rooms = _room_names(opts.get("rooms"), "rooms")
    flags = opts.get("flags") or {}
    if not isinstance(flags, dict):
        raise Malformed("bad options", "flags is not an object")
    return rooms or None, _room_names(opts.get("except"), "except"), flags


def parse_broadcast(message: Any) -> Broadcast:
    if not isinstance(message, list) or len(message) != 3:
        raise Malformed("bad broadcast", "not [uid, packet, opts]")
    uid, packet, opts = message
    namespace, data = parse_packet(packet)
    rooms, exclude, flags = parse_options(opts)
    return Broadcast(uid, namespace, data, rooms, exclude, bool(flags.get("volatile")))


# --------------------------------------------------------------- requests
def parse_request(message: Any) -> tuple[RequestType | str, dict[str, Any]]:
    """(type, the request object).  A string type is one of rtserver's own."""
    if not isinstance(message, dict):
        raise Malformed("bad request", "not an object")
    kind = message.get("type")
    if isinstance(kind, str) and kind:
        return kind, message
    if isinstance(kind, int) and not isinstance(kind, bool):
        try:
            return RequestType(kind), message
        except ValueError:
            raise Malformed("unknown request type", str(kind)) from None
    raise Malformed("unknown request type", repr(kind)[:40])


def parse_answer(message: Any) -> tuple[str, dict[str, Any]]:
    """(request id, the answer object); answers name their request, not always their type."""
    if not isinstance(message, dict) or not isinstance(message.get("requestId"), str):
        raise Malformed("bad answer", "not an object with a requestId")
    return message["requestId"], message
