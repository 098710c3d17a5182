"""Property tests (hypothesis) for the parsers the codec tests do not cover:
token extraction and cookies, claim paths and identities, room names,
config structuring, API bodies, request heads, the WebSocket handshake and
the JSON depth limit.  Each takes any input and either answers or refuses
it the documented way, never with another exception."""

from __future__ import annotations

import base64
import hashlib
import string
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtserver import config as config_mod
from rtserver import jsonlimits
from rtserver.api.common import ApiError, parse_body
from rtserver.api.publish import BatchRequest, DisconnectRequest, EmitRequest, RoomsRequest
from rtserver.auth import rules, tokens
from rtserver.auth.errors import Refusal
from rtserver.auth.identity import Identity, claim, from_claims, set_claim
from rtserver.config import ClaimsConfig, ConfigError
from rtserver.engineio.websocket import handshake
from rtserver.http.messages import Request

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
#: Under a loaded CI machine a wall-clock deadline would only add flakes.
relaxed = settings(deadline=None, max_examples=60)
names = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)


def request(query: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> Request:
    return Request("GET", "/socket.io/", "/socket.io/", query or {}, headers or {}, "127.0.0.1:5000")


def auth_config(**values: Any) -> Any:
    return config_mod.structure({"auth": {"secret": "s" * 32, **values}}).auth


DEFAULT_AUTH = auth_config()
SOURCES = ("auth", "header", "query", "cookie")
#: For each source, the configuration with every other source on.
WITHOUT = {source: auth_config(sources=[s for s in SOURCES if s != source]) for source in SOURCES}


# ------------------------------------------------------- token extraction
@relaxed
@given(auth=json_values, header=st.text(max_size=60), query=st.dictionaries(st.text(max_size=8), st.text(max_size=30)),
       cookie=st.text(max_size=60))
def test_extract_token_answers_or_refuses(auth: Any, header: str, query: dict[str, str], cookie: str) -> None:
    req = request(query, {"authorization": header, "cookie": cookie})
    try:
        found = tokens.extract_token(DEFAULT_AUTH, auth, req)
    except Refusal as refusal:
        assert refusal.code == "token_invalid"
        return
    assert found is None or (isinstance(found, str) and 0 < len(found) <= tokens.MAX_TOKEN_LENGTH)


token_text = st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=200)


@relaxed
@given(token=token_text, source=st.sampled_from(["auth", "header", "query", "cookie"]))
def test_a_token_in_any_one_source_is_found(token: str, source: str) -> None:
    auth: dict[str, Any] = {}
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    if source == "auth":
        auth["token"] = token
    elif source == "header":
        headers["authorization"] = f"Bearer {token}"
    elif source == "query":
        query["token"] = token
    else:
        headers["cookie"] = f"a=1; token={token}; b=2"
    assert tokens.extract_token(DEFAULT_AUTH, auth, request(query, headers)) == token
    assert tokens.extract_token(WITHOUT[source], auth, request(query, headers)) is None


COOKIE_OCTETS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\')
RESERVED_COOKIE_NAMES = {"expires", "path", "comment", "domain", "max-age", "secure", "httponly", "version", "samesite",
                         "partitioned"}


@relaxed
@given(st.dictionaries(names.filter(lambda n: n.lower() not in RESERVED_COOKIE_NAMES),
                       st.text(alphabet=COOKIE_OCTETS, max_size=20), min_size=1, max_size=5))
def test_cookie_header_as_a_browser_sends_it(values: dict[str, str]) -> None:
    header = "; ".join(f"{key}={value}" for key, value in values.items())
    for key, value in values.items():
        assert tokens.cookie_value(header, key) == value


@relaxed
@given(st.text(max_size=80), names)
def test_any_cookie_header_parses_or_is_ignored(header: str, name: str) -> None:
    assert tokens.cookie_value(header, name) is None or isinstance(tokens.cookie_value(header, name), str)


# ------------------------------------------------------------- claim paths
paths = st.lists(names, min_size=1, max_size=4).map(".".join)


@relaxed
@given(path=paths, value=json_values.filter(lambda v: v is not None), noise=st.dictionaries(names, json_values, max_size=4))
def test_set_claim_then_claim_round_trip(path: str, value: Any, noise: dict[str, Any]) -> None:
    claims = {k: v for k, v in noise.items() if k != path.split(".")[0]}
    set_claim(claims, path, value)
    assert claim(claims, path) == value
    assert claim(claims, f"missing_claim|{path}") == value  # alternatives: the first present wins


@relaxed
@given(claims=st.dictionaries(st.text(max_size=10), json_values, max_size=8), path=st.text(max_size=20))
def test_claim_never_raises(claims: dict[str, Any], path: str) -> None:
    claim(claims, path)


#: The claim names of the shipped config.toml (alternatives for the seed applications).
SHIPPED_CLAIMS = ClaimsConfig(user="sub|userId", tenant="tenantId|companyId", roles="roles|role")


@relaxed
@given(claims=st.dictionaries(st.sampled_from(["sub", "userId", "tenantId", "companyId", "roles", "role", "devices",
                                               "tokenVersion", "sid", "exp", "x"]), json_values, max_size=8))
def test_identity_from_any_claims_or_token_invalid(claims: dict[str, Any]) -> None:
    try:
        identity = from_claims(claims, SHIPPED_CLAIMS)
    except Refusal as refusal:
        assert refusal.code == "token_invalid"
        return
    assert identity.user and ":" not in identity.user
    assert identity.tenant is None or (identity.tenant and ":" not in identity.tenant)
    assert isinstance(identity.token_version, int) and not isinstance(identity.token_version, bool)
    assert all(isinstance(r, str) for r in identity.roles | identity.devices)




# --------------------------------------------------------------- room names
ids = st.text(alphabet=string.ascii_lowercase + "0123456789", min_size=1, max_size=6)


@relaxed
@given(user=ids, tenant=ids | st.none(), devices=st.frozensets(ids, max_size=3), admin=st.booleans(),
       channel=st.text(max_size=40) | st.sampled_from(["tenant:", "user:", "device:", "tenant:a:b", "user:a:x"]),
       registered=st.dictionaries(ids, ids, max_size=3))
def test_rooms_granted_stay_in_the_callers_scope(
    user: str, tenant: str | None, devices: frozenset[str], admin: bool, channel: str, registered: dict[str, str]
) -> None:
    identity = Identity(user=user, tenant=tenant, devices=devices, roles=frozenset({"admin"} if admin else ()))
    room = rules.qualify(identity, channel)
    try:
        rules.check_room(identity, room, ("admin",), registered.get)
    except Refusal as refusal:
        assert refusal.code in ("invalid_room", "forbidden")
        return
    scope, _, rest = room.partition(":")
    if scope == "tenant":
        assert rest.split(":", 1)[0] == tenant
    elif scope == "user":
        assert rest.split(":", 1)[0] == user
    elif scope == "device":
        assert rest in devices or (admin and registered.get(rest) == tenant is not None)
    else:
        assert tenant is None  # a custom channel is tenant-scoped whenever there is a tenant
    assert 0 < len(room) <= 256


# ---------------------------------------------------------- config structure
config_values = st.one_of(json_values, st.sampled_from(["", "0.0.0.0", "json", "debug", "*", "/x", "polling"]),
                          st.lists(st.text(max_size=10), max_size=3))
SECTIONS = {
    "server": ["host", "port", "log_level", "log_format", "shutdown_grace", "data_dir"],
    "http": ["max_header_bytes", "read_timeout", "keepalive_timeout"],
    "engineio": ["paths", "ping_interval", "ping_timeout", "max_payload", "cors_origins", "outbox_size"],
    "socketio": ["namespaces", "connect_timeout", "ack_timeout", "max_attachments", "handler_concurrency"],
    "auth": ["enabled", "sources", "algorithms", "leeway", "api_keys", "event_roles", "claims"],
    "limits": ["events_per_second", "event_burst", "max_connections_per_user", "handshake_burst"],
    "recovery": ["enabled", "max_disconnection", "events", "history_size"],
    "retention": ["latest", "inbox", "inbox_size"],
    "features": ["enabled", "chat", "signage"],
    "nonsense": ["x"],
}
config_tables = st.dictionaries(
    st.sampled_from(sorted(SECTIONS)),
    st.one_of(config_values, st.just({})),
    max_size=4,
).flatmap(lambda tables: st.fixed_dictionaries({
    name: (st.dictionaries(st.sampled_from(SECTIONS[name] + ["unknown_key"]), config_values, max_size=3)
           if isinstance(value, dict) else st.just(value))
    for name, value in tables.items()
}))


@settings(deadline=None, max_examples=150)
@given(config_tables)
def test_any_config_structures_or_names_its_problems(tables: dict[str, Any]) -> None:
    try:
        config = config_mod.structure(tables)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and ":" in p for p in exc.problems)
        return
    assert config_mod.structure(config_mod.unstructure(config)) == config


# --------------------------------------------------------------- API bodies
api_bodies = st.one_of(
    st.binary(max_size=60),
    json_values.map(orjson.dumps),
    st.dictionaries(st.sampled_from(["event", "data", "args", "room", "rooms", "user", "device", "tenant", "broadcast",
                                     "except", "namespace", "volatile", "messages", "join", "leave", "reconnect"]),
                    json_values, max_size=5).map(orjson.dumps),
)


@pytest.mark.parametrize("kind", [EmitRequest, BatchRequest, RoomsRequest, DisconnectRequest])
@relaxed
@given(body=api_bodies)
def test_api_bodies_parse_or_are_a_400(kind: type, body: bytes) -> None:
    try:
        parsed = parse_body(Request("POST", "/", "/", {}, {}, "peer", body), kind)
    except ApiError as exc:
        assert exc.status == 400 and exc.code in ("invalid_body", "invalid_json") and exc.message
        return
    assert isinstance(parsed, kind)


# ----------------------------------------------------------- request heads
header_bytes = st.binary(max_size=30).map(lambda b: bytes(c for c in b if c not in b"\r\n"))


@relaxed
@given(target=st.binary(min_size=1, max_size=60), headers=st.lists(st.tuples(
    st.sampled_from([b"cookie", b"host", b"x-api-key", b"authorization", b"upgrade", b"connection"]), header_bytes),
    max_size=6))
def test_any_request_head_parses(target: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    request = Request.from_head(b"GET", target, headers, "peer")
    assert isinstance(request.path, str) and all(isinstance(v, str) for v in request.query.values())
    cookies = [v.decode("latin-1") for k, v in headers if k == b"cookie"]
    if cookies:
        assert request.headers["cookie"] == "; ".join(cookies)
    assert request.is_websocket_upgrade() in (True, False)


# ------------------------------------------------------ websocket handshake
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@relaxed
@given(raw_key=st.binary(min_size=16, max_size=16))
def test_every_valid_key_is_answered_with_its_accept_token(raw_key: bytes) -> None:
    key = base64.b64encode(raw_key).decode()
    answer = handshake({"sec-websocket-key": key, "sec-websocket-version": "13"})
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    assert answer is not None and f"Sec-WebSocket-Accept: {accept}\r\n".encode() in answer


@relaxed
@given(headers=st.dictionaries(st.sampled_from(["sec-websocket-key", "sec-websocket-version", "upgrade"]),
                               st.text(max_size=40), max_size=3))
def test_any_upgrade_headers_answered_or_refused(headers: dict[str, str]) -> None:
    answer = handshake(headers)
    if answer is not None:
        key = headers["sec-websocket-key"].strip()
        assert len(base64.b64decode(key, validate=True)) == 16 and headers["sec-websocket-version"].strip() == "13"


# ----------------------------------------------------------- JSON depth
def reference_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    return 0


@relaxed
@given(value=json_values, limit=st.integers(0, 6))
def test_depth_limit_agrees_with_a_recursive_count(value: Any, limit: int) -> None:
    assert jsonlimits.depth_exceeds(value, limit) == (reference_depth(value) > limit)
    text = orjson.dumps(value)
    assert jsonlimits.too_deep(text, value, limit) == (reference_depth(value) > limit)


@relaxed
@given(st.binary(max_size=80) | st.text(max_size=80))
def test_json_loads_answers_or_refuses(text: bytes | str) -> None:
    try:
        value = jsonlimits.loads(text)
    except (jsonlimits.TooDeep, orjson.JSONDecodeError):
        return
    assert reference_depth(value) <= jsonlimits.MAX_DEPTH


@relaxed
@given(depth=st.integers(1, 1500), objects=st.booleans())
def test_nesting_is_refused_exactly_past_the_limit(depth: int, objects: bool) -> None:
    text = '{"a":' * depth + "1" + "}" * depth if objects else "[" * depth + "]" * depth
    if depth > jsonlimits.MAX_DEPTH:
        with pytest.raises(jsonlimits.TooDeep):
            jsonlimits.loads(text)
    else:
        assert reference_depth(jsonlimits.loads(text)) == depth
