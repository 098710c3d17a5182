"""Random and mutated inputs for every layer rtserver parses, sans-IO.

Each generator takes a ``random.Random`` and returns bytes or text, so one
case's inputs are a function of its seed alone (the fuzz harness derives a
case's ``Random`` from the run's seed, so a failing case is replayed by its
id).  The shapes lean towards what parsers get wrong: edges of sizes and
nesting, wrong types, reserved names, broken encodings.
"""

from __future__ import annotations

import base64
import os
import random
import struct
from collections.abc import Sequence
from typing import Any

import attrs
import orjson

from rtserver import config as config_mod
from rtserver import features

#: Nesting depths around the limits of JSON encoders and decoders (orjson
#: encodes at most 254 levels and decodes 1,024).
DEPTHS = (1, 2, 16, 64, 253, 254, 255, 256, 300, 1023, 1024, 1025, 5000)
#: Keys that mean something to JavaScript objects or to rtserver's own fields.
SPECIAL_KEYS = (
    "__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "", "token", "pid", "offset",
    "sid", "type", "requestId", "action", "data", "room", "rooms", "user", "tenant", "device", "event",
)
#: Numbers every JSON decoder here takes (orjson refuses integers beyond 64 bits and overflowing floats).
SAFE_NUMBERS = ("0", "-0", "1", "-1", "1.5", "1e308", "2147483648", "9007199254740993", "-9223372036854775808", "0.0000001", "1E2")
NUMBERS = (
    "0", "-0", "1", "-1", "1.5", "1e308", "1e309", "-1e400", "2147483648", "9007199254740993",
    "18446744073709551616", "-9223372036854775809", "123456789012345678901234567890", "0.0000001", "1E2",
)
SAFE_STRINGS = ("", " ", "a", "\\u0000", "\\\"", "\\\\", "é", "😀", "user:x", "tenant:x", "device:x", "null", "\\u2028", "a" * 300)
STRINGS = (
    "", " ", "a", "\\u0000", "\\ud800", "\\udfff\\ud800", "\\\"", "\\\\", "é", "😀", "user:x", "tenant:x",
    "device:x", "tenant:acme:alerts", "../../etc/passwd", "%00", "<script>", "null", "undefined",
    "\\n\\r\\t", "\\u2028", "a" * 300,
)
METHODS = (
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PRI", "get", "G E T",
    "FOO", "M-SEARCH", "PROPFIND", "\x00GET", "GET\t", "ÄÖÜ", "A" * 70,
)
RESERVED_EVENTS = ("connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener")
HEADER_NAMES = (
    "Host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade", "Sec-WebSocket-Key",
    "Sec-WebSocket-Version", "Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol", "Origin", "Cookie",
    "Authorization", "X-API-Key", "Expect", "Content-Type", "Accept-Encoding", "X-Forwarded-For",
    "Access-Control-Request-Headers", "Range", "If-None-Match",
)


@attrs.frozen
class Vocabulary:
    """Names the shipped configuration gives meaning to."""

    events: tuple[str, ...]
    engine_paths: tuple[str, ...]
    #: (method, path) of the HTTP API and feature routes; ``{id}`` is filled in.
    routes: tuple[tuple[str, str], ...]
    namespaces: tuple[str, ...]
    #: Users and tenants fuzz clients may be (never the canary's).
    users: tuple[str, ...] = ("mallory", "eve", "trent", "admin1", "1", "a.b")
    tenants: tuple[str, ...] = ("fuzzco", "acme", "globex")


def vocabulary(tables: dict[str, Any]) -> Vocabulary:
    """What a server configured with ``tables`` listens for."""
    config = config_mod.structure(tables)
    events = {
        config.channels.subscribe_event, config.channels.unsubscribe_event, config.presence.query_event,
        config.presence.status_event, config.auth.error_event, *config.auth.event_roles,
        *config.retention.latest, *config.retention.inbox,
        *RESERVED_EVENTS, "*",
    }
    routes: set[tuple[str, str]] = {
        ("GET", "/healthz"), ("HEAD", "/healthz"), ("GET", "/metrics"), ("GET", "/api/v1/status"),
        ("GET", "/api/v1/presence?tenant={id}"), ("POST", "/api/v1/emit"), ("POST", "/api/v1/emit/batch"),
        ("POST", "/api/v1/rooms"), ("POST", "/api/v1/disconnect"), ("POST", "/api/v1/admin/revoke"),
        ("GET", "/api/v1/admin/users"), ("POST", "/api/v1/admin/users"), ("DELETE", "/api/v1/admin/users/{id}"),
    }
    for name, settings in features.settings_for(config).items():
        for field in attrs.fields(type(settings)):
            value = getattr(settings, field.name)
            if isinstance(value, str) and value and (field.name.endswith("_event") or field.name == "event"):
                events.add(value)
        if name == "deployments":
            routes |= {("POST", f"{settings.api_path}/{{id}}/status"), ("POST", f"{settings.api_path}/{{id}}/log"),
                       ("DELETE", f"{settings.api_path}/{{id}}")}
        elif name == "actions":
            routes |= {("POST", settings.updates_route), ("GET", settings.console_route)}
        elif name == "signage":
            for route in ("connect", "disconnect", "broadcast", "layout-update", "content-sync"):
                routes |= {("POST", f"{settings.path_prefix}/{route}"), ("OPTIONS", f"{settings.path_prefix}/{route}")}
            routes.add(("GET", f"{settings.path_prefix}/status"))
        elif name == "chat":
            routes.add(("POST", settings.notifications_path))
        elif name == "notifications":
            routes.add(("POST", settings.api_path))
    events.discard("")
    namespaces = tuple(config.socketio.namespaces) + ("/admin", "/nope", "", "/" + "n" * 200, "/é")
    return Vocabulary(tuple(sorted(events)), tuple(config.engineio.paths), tuple(sorted(routes)), namespaces)


# ------------------------------------------------------------------ values
def pick(rng: random.Random, items: Sequence[Any]) -> Any:
    return items[rng.randrange(len(items))]


def json_string(rng: random.Random, strict: bool = False) -> str:
    if rng.random() < 0.5:
        return '"' + pick(rng, SAFE_STRINGS if strict else STRINGS) + '"'
    length = pick(rng, (0, 1, 8, 64, 1000, 70_000)) if rng.random() < 0.2 else pick(rng, (0, 1, 8, 64))
    piece = "".join(chr(rng.randrange(0x23, 0x7F)) for _ in range(min(length, 64))).replace("\\", "/")
    return '"' + piece * max(1, length // 64) + '"'


def json_text(rng: random.Random, depth: int = 0, vocab: Vocabulary | None = None, strict: bool = False) -> str:
    """Random JSON text, deep or wide at times; with ``strict``, only what a
    JSON decoder must take (else also numbers out of range, lone surrogates)."""
    roll = rng.random()
    if depth == 0 and roll < 0.08:
        return nested(rng, strict=strict)
    if depth > 4 or roll < 0.45:
        kind = rng.randrange(6)
        if kind == 0:
            return pick(rng, SAFE_NUMBERS if strict else NUMBERS)
        if kind == 1:
            return pick(rng, ("true", "false", "null"))
        if kind == 2 and vocab is not None:
            return '"' + pick(rng, vocab.events + vocab.users + vocab.tenants) + '"'
        return json_string(rng, strict)
    if roll < 0.7:
        width = pick(rng, (0, 1, 2, 3, 5, 40) if depth < 2 else (0, 1, 2, 3))
        items = [json_text(rng, depth + 1, vocab, strict) for _ in range(width)]
        return "[" + ",".join(items) + "]"
    fields = {}
    for _ in range(pick(rng, (0, 1, 2, 3, 6))):
        key = pick(rng, SPECIAL_KEYS) if rng.random() < 0.6 else json_string(rng, strict)[1:-1]
        fields[key] = json_text(rng, depth + 1, vocab, strict)
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"


def nested(rng: random.Random, depth: int | None = None, strict: bool = False) -> str:
    """Arrays and objects nested ``depth`` deep, as the issue's example
    (``strict``: no deeper than a JSON decoder must take)."""
    depth = depth if depth is not None else pick(rng, [d for d in DEPTHS if d < 1000 or not strict])
    if rng.random() < 0.5:
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def mutate(rng: random.Random, data: bytes, rounds: int | None = None) -> bytes:
    """Flip, cut, repeat, insert and splice bytes."""
    data = bytearray(data)
    for _ in range(rounds if rounds is not None else rng.randrange(1, 4)):
        op = rng.randrange(7)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            del data[at : at + rng.randrange(1, 16)]
        elif op == 2:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        elif op == 3:
            data[at:at] = pick(rng, (b"\x00", b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x1e", b"\r\n", b'"', b"[", b"{", b":"))
        elif op == 4 and data:
            chunk = data[at : at + rng.randrange(1, 64)]
            data[at:at] = chunk * rng.randrange(1, 50)
        elif op == 5:
            del data[at:]
        else:
            data[at:at] = pick(rng, (b"-1", b"99999999999999999999", b"4", b"40", b"42", b"/", b",", b"b"))
    return bytes(data)


# ------------------------------------------------------------ engine.io
def engineio_packet(rng: random.Random, vocab: Vocabulary) -> str:
    """One Engine.IO text packet: a real type with odd data, or an odd type."""
    roll = rng.random()
    if roll < 0.55:
        return "4" + socketio_packet(rng, vocab)
    if roll < 0.8:
        return pick(rng, ("0", "1", "2", "3", "5", "6", "2probe", "3probe", "7", "9", "", "x", "4", "6" * 100))
    return pick(rng, "0123456789ab") + json_text(rng, vocab=vocab)


def polling_body(rng: random.Random, vocab: Vocabulary) -> bytes:
    """A long-polling POST body: records separated by ``\\x1e``, some binary (``b`` + base64)."""
    records = []
    for _ in range(pick(rng, (1, 1, 2, 3, 8, 100))):
        if rng.random() < 0.12:
            raw = os.urandom(rng.randrange(0, 40)) if rng.random() < 0.5 else b"\x00" * rng.randrange(64)
            text = base64.b64encode(raw).decode()
            records.append("b" + (text if rng.random() < 0.8 else text[:-1] + "!"))
        else:
            records.append(engineio_packet(rng, vocab))
    body = "\x1e".join(records).encode("utf-8", "surrogatepass")
    return mutate(rng, body) if rng.random() < 0.25 else body


# ------------------------------------------------------------ socket.io
def event_array(rng: random.Random, vocab: Vocabulary) -> str:
    roll = rng.random()
    if roll < 0.8:
        name = '"' + pick(rng, vocab.events) + '"' if rng.random() < 0.85 else json_text(rng, 5, vocab)
        args = [json_text(rng, 0, vocab) for _ in range(pick(rng, (0, 1, 1, 1, 2, 3, 20)))]
        return "[" + ",".join([name, *args]) + "]"
    if roll < 0.9:
        return pick(rng, ("[]", "[1]", "[null]", "[[]]", '{"0":"x"}', '"x"', "1", "null", "[", ""))
    return json_text(rng, 0, vocab)


def socketio_packet(rng: random.Random, vocab: Vocabulary, token: str | None = None) -> str:
    """One Socket.IO packet as text (without the Engine.IO type digit)."""
    kind = pick(rng, "00122222222333456") if rng.random() < 0.95 else pick(rng, ("7", "9", "a", "-", ""))
    text = kind
    if kind in "56" and kind != "":
        text += pick(rng, ("0", "1", "2", "10", "11", "999999999999", "-1", "", "x")) + "-"
    if rng.random() < 0.3:
        text += pick(rng, vocab.namespaces) + ","
    if kind in "23" and kind != "" and rng.random() < 0.6:
        text += pick(rng, ("0", "1", "42", "2147483647", "2147483648", "9007199254740993", "99999999999999999999"))
    if kind == "0":
        auth = {"token": token} if token is not None and rng.random() < 0.8 else None
        payload = _json_dumps(auth) if auth is not None else json_text(rng, 1, vocab)
        text += payload if rng.random() < 0.9 else ""
    elif kind in "2356":
        text += event_array(rng, vocab) if kind in "25" else "[" + json_text(rng, 1, vocab) + "]"
    elif kind == "4":
        text += json_text(rng, 1, vocab)
    return text


def valid_socketio_packet(rng: random.Random, vocab: Vocabulary, token: str) -> tuple[str, list[bytes]]:
    """A well-formed Socket.IO packet (text, attachments) with odd contents:
    what gets past the codec to the handlers."""
    namespace = pick(rng, ("", "", "", "/admin,", "/nope,"))
    ack = str(rng.randrange(0, 2**31)) if rng.random() < 0.6 else ""
    if rng.random() < 0.9:
        # Socket.IO's reserved names end the session (a protocol error, as with the reference): seldom.
        name = pick(rng, vocab.events if rng.random() < 0.03 else [e for e in vocab.events if e not in RESERVED_EVENTS])
    else:
        name = pick(rng, ("", "x" * 1000, "__proto__", "constructor"))
    args = [json_text(rng, 0, vocab, strict=True) for _ in range(pick(rng, (0, 1, 1, 1, 2, 3, 8)))]
    while sum(len(a) for a in args) > 300_000:  # under engineio.max_payload: a message that gets read
        args.pop()
    roll = rng.random()
    if roll < 0.7:
        return f"2{namespace}{ack}" + "[" + ",".join(['"' + name + '"', *args]) + "]", []
    if roll < 0.8:
        count = rng.randrange(1, 4)
        holders = [f'{{"_placeholder":true,"num":{i}}}' for i in range(count)]
        text = f"5{count}-{namespace}{ack}" + "[" + ",".join(['"' + name + '"', *holders, *args]) + "]"
        return text, [os.urandom(rng.randrange(0, 64)) for _ in range(count)]
    if roll < 0.88:
        return f"3{namespace}{ack or 0}" + "[" + ",".join(args) + "]", []
    if roll < 0.97:
        return f"0{namespace}" + orjson.dumps({"token": token}).decode(), []
    return f"1{namespace}", []


def attachments_for(rng: random.Random, text: str) -> list[bytes]:
    """Binary frames to follow a packet (the right count or not)."""
    count = 0
    if text[:1] in ("5", "6"):
        head = text[1:].split("-", 1)[0]
        count = int(head) if head.isdigit() and len(head) < 4 else 1
    count = max(0, count + pick(rng, (0, 0, 0, -1, 1)))
    return [os.urandom(rng.randrange(0, 32)) for _ in range(min(count, 20))]


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# ------------------------------------------------------------- websocket
def ws_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True, declared: int | None = None
) -> bytes:
    """A WebSocket frame as a client sends it; ``declared`` lies about the length."""
    length = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)])
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length & (1 << 64) - 1)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def bad_frame(rng: random.Random, vocab: Vocabulary) -> bytes:
    """A frame that breaks RFC 6455 or carries a bad Engine.IO message."""
    text = engineio_packet(rng, vocab).encode("utf-8", "surrogatepass")
    choice = rng.randrange(12)
    if choice == 0:
        return ws_frame(1, text, rsv=rng.randrange(1, 8))
    if choice == 1:
        return ws_frame(pick(rng, (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)), text)
    if choice == 2:
        return ws_frame(1, text, masked=False)
    if choice == 3:
        return ws_frame(pick(rng, (8, 9, 10)), text[:20], fin=False)
    if choice == 4:
        return ws_frame(1, pick(rng, (b"\xff", b"\xc3(", b"42[\"a\",\"\xed\xa0\x80\"]", b"\xf0\x9f\x98")))
    if choice == 5:
        return ws_frame(1, text[:10], declared=pick(rng, (126, 65536, 1 << 31, (1 << 63) - 1, 1 << 63)))
    if choice == 6:
        return ws_frame(0, text)  # a continuation with nothing to continue
    if choice == 7:
        return ws_frame(9, os.urandom(pick(rng, (0, 125, 126, 200))))
    if choice == 8:
        code = pick(rng, (0, 999, 1000, 1004, 1005, 1006, 1015, 1016, 2999, 3000, 4999, 5000, 65535))
        return ws_frame(8, struct.pack("!H", code) + pick(rng, (b"", b"bye", b"\xff\xfe", b"x" * 130)))
    if choice == 9:
        return ws_frame(8, b"\x03")  # a one-byte close payload
    if choice == 10:
        return ws_frame(1, text, fin=False) + ws_frame(9, b"p") + ws_frame(2, b"x")  # text interrupted by binary
    return mutate(rng, ws_frame(1, text))


def upgrade_head(rng: random.Random, path: str, port: int, sid: str | None = None) -> bytes:
    """A WebSocket upgrade request, mutated one way or another."""
    key = base64.b64encode(os.urandom(16)).decode()
    query = "EIO=4&transport=websocket" + (f"&sid={sid}" if sid else "")
    headers = [
        ("Host", f"127.0.0.1:{port}"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13"),
    ]
    roll = rng.random()
    if roll < 0.5:
        pass
    elif roll < 0.6:
        del headers[rng.randrange(1, len(headers))]
    elif roll < 0.7:
        headers.append(pick(rng, (
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
            ("Sec-WebSocket-Protocol", "chat, superchat"), ("Content-Length", "5"), ("Transfer-Encoding", "chunked"),
            ("Origin", "http://evil.example"), ("Sec-WebSocket-Key", key), ("Upgrade", "h2c"),
        )))
    elif roll < 0.8:
        index = rng.randrange(1, len(headers))
        headers[index] = (headers[index][0], pick(rng, ("", "websocket, h2c", "8", "x" * 24, "dGhlIHNhbXBsZSBub25jZQ", "\x7f")))
    else:
        query = pick(rng, ("EIO=3&transport=websocket", "EIO=4&transport=polling", "EIO=4", "transport=websocket",
                           query + "&sid=nope", query + "&EIO=5", query + "&j=1&b64=1"))
    method = "GET" if rng.random() < 0.93 else pick(rng, ("POST", "HEAD", "OPTIONS", "PUT"))
    head = f"{method} {path}?{query} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    data = head.encode("latin-1")
    if ("Content-Length", "5") in headers:
        data += b"hello"
    return data


# ------------------------------------------------------------------ http
def http_target(rng: random.Random, vocab: Vocabulary) -> str:
    roll = rng.random()
    if roll < 0.45:
        return pick(rng, vocab.routes)[1].replace("{id}", pick(rng, ("d1", "%2F", "..", "a" * 300, "é", "")))
    if roll < 0.75:
        path = pick(rng, vocab.engine_paths)
        query = "&".join(pick(rng, (
            "EIO=4", "EIO=3", "EIO=", "transport=polling", "transport=websocket", "transport=x", "sid=nope",
            "t=abc", "j=1", "b64=1", "EIO=4&EIO=5", "%zz", "sid=" + "s" * 5000, "token=x.y.z", "sessionId=1",
        )) for _ in range(rng.randrange(0, 5)))
        return f"{path}?{query}"
    return pick(rng, (
        "*", "/", "//", "/%", "/%00", "/..%2f..%2f", "http://127.0.0.1/healthz", "/healthz?" + "a=1&" * 500,
        "/api/", "/api/v1/", "/api/v1/emit/", "/socket.io", "/realtime", "/x" * 2000, "/?#frag", "/\x7f",
        "/metrics/", "/console/", "/api/v1/admin/users/%E0%A4%A",
    ))


def http_body(rng: random.Random, vocab: Vocabulary) -> bytes:
    """A JSON body for an API route: the route's own fields with odd values, or junk."""
    roll = rng.random()
    if roll < 0.7:
        fields = {}
        for _ in range(rng.randrange(0, 6)):
            key = pick(rng, API_FIELDS)
            fields[key] = api_value(rng, key, vocab)
        text = "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"
    elif roll < 0.85:
        text = json_text(rng, 0, vocab)
    else:
        text = nested(rng)
    body = text.encode("utf-8", "surrogatepass")
    return mutate(rng, body) if rng.random() < 0.15 else body


API_FIELDS = (
    "event", "data", "args", "room", "rooms", "user", "users", "device", "tenant", "broadcast", "except", "namespace",
    "volatile", "messages", "join", "leave", "reconnect", "notification", "status", "log", "lines", "companyId",
    "artifactId", "message", "layoutId", "deviceIds", "layoutData", "contentType", "contentId", "action", "type",
    "channel", "channels", "target", "tenantId", "userId", "deviceId", "connectionId", "__proto__",
)


def api_value(rng: random.Random, key: str, vocab: Vocabulary) -> str:
    if key == "messages" and rng.random() < 0.7:
        count = pick(rng, (0, 1, 2, 1000, 1001))
        one = '{"event":"e","tenant":"fuzzco","data":' + json_text(rng, 2, vocab) + "}"
        return "[" + ",".join([one] * count) + "]"
    if key in ("rooms", "join", "leave", "except", "users", "deviceIds", "channels", "lines") and rng.random() < 0.6:
        items = ['"' + pick(rng, STRINGS + vocab.users + vocab.tenants) + '"' for _ in range(pick(rng, (0, 1, 3, 101)))]
        return "[" + ",".join(items) + "]"
    if key in ("user", "tenant", "userId", "tenantId", "companyId") and rng.random() < 0.7:
        return '"' + pick(rng, vocab.users + vocab.tenants) + '"'
    if key == "event" and rng.random() < 0.7:
        return '"' + pick(rng, vocab.events) + '"'
    if key == "broadcast" and rng.random() < 0.5:
        return pick(rng, ("true", "false", "1", '"yes"'))
    return json_text(rng, 1, vocab)


def raw_garbage(rng: random.Random) -> bytes:
    """Bytes that are not HTTP/1.1 at all."""
    return pick(rng, (
        lambda: os.urandom(rng.randrange(1, 4096)),
        lambda: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(64),
        lambda: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200),  # a TLS ClientHello's start
        lambda: b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 70_000 + b"\r\n\r\n",
        lambda: b"\r\n" * 1000,
        lambda: b"GET / HTTP/1.1\n\n",
        lambda: b"GET /healthz HTTP/1.0\r\n\r\n",
        lambda: b"GET /healthz HTTP/0.9\r\n\r\n",
        lambda: b"GET /healthz HTTP/3.0\r\nHost: x\r\n\r\n",
        lambda: b"\x00" * rng.randrange(1, 100),
    ))()



def http_request(rng: random.Random, vocab: Vocabulary, port: int, credentials: Sequence[tuple[str, str]]) -> bytes:
    """One HTTP/1.1 request as bytes: odd methods, targets, versions, headers,
    framings (Content-Length right or wrong, chunked, both) and bodies."""
    if rng.random() < 0.6:
        method, target = pick(rng, vocab.routes)
        target = target.replace("{id}", pick(rng, ("d1", "x", "%2e%2e", "é")))
    else:
        method, target = pick(rng, METHODS), http_target(rng, vocab)
    version = "HTTP/1.1" if rng.random() < 0.9 else pick(rng, ("HTTP/1.0", "HTTP/1.2", "HTTP/2.0", "HTTP/1.1 x", "HTTP/11", ""))
    headers: list[tuple[str, str]] = []
    if rng.random() < 0.95:
        headers.append(("Host", f"127.0.0.1:{port}"))
    if rng.random() < 0.8:
        headers.append(("Connection", "close"))
    if credentials and rng.random() < 0.7:
        headers.append(pick(rng, credentials))
    for _ in range(pick(rng, (0, 0, 1, 2, 5))):
        headers.append((pick(rng, HEADER_NAMES), pick(rng, (
            "", "0", "-1", "5", "chunked", "gzip, chunked", "close", "keep-alive", "upgrade", "websocket",
            "100-continue", "token=x; token=y", "Bearer ", "Bearer a.b.c", "application/json", "x" * 9000,
            "*", "http://127.0.0.1", "a\x00b",
        ))))
    body = http_body(rng, vocab) if method in ("POST", "PUT", "PATCH", "DELETE") or rng.random() < 0.1 else b""
    framing = rng.random()
    if body and framing < 0.6:
        headers.append(("Content-Length", str(len(body))))
        payload = body
    elif body and framing < 0.75:
        headers.append(("Transfer-Encoding", "chunked"))
        payload = chunked(rng, body)
    elif body and framing < 0.85:
        headers.append(("Content-Length", str(max(0, len(body) + pick(rng, (-5, -1, 1, 100, 10**12))))))
        payload = body
    elif body:
        headers += [("Content-Length", str(len(body))), ("Transfer-Encoding", "chunked")]
        payload = body
    else:
        payload = b""
    lines = [f"{method} {target} {version}".rstrip()] + [f"{k}: {v}" for k, v in headers]
    if rng.random() < 0.05:
        lines.insert(rng.randrange(1, len(lines) + 1), pick(rng, (" folded", "NoColon", ": empty", "X : y", "\tX: y")))
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:
        head = mutate(rng, head)
    return head + payload


def chunked(rng: random.Random, body: bytes) -> bytes:
    """``body`` in chunked encoding, sometimes broken (sizes, extensions, trailers)."""
    out = b""
    rest = body
    while rest:
        size = rng.randrange(1, len(rest) + 1)
        piece, rest = rest[:size], rest[size:]
        declared = f"{size:x}".encode() if rng.random() < 0.9 else pick(rng, (b"zz", b"-1", b"ffffffffffffffff", b"0", b""))
        extension = b";ext=1" if rng.random() < 0.1 else b""
        out += declared + extension + b"\r\n" + piece + b"\r\n"
    return out + pick(rng, (b"0\r\n\r\n", b"0\r\n\r\n", b"0\r\nTrailer: x\r\n\r\n", b"", b"0\r\n"))
