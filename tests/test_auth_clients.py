"""Authentication, authorization and limits against real clients.

Most scenarios drive the real Node socket.io-client (tests/clients/scripted.js);
the header and query token sources are also checked with python-socketio.
Tokens are minted here with pyjwt; the server checks them with its own keys.
"""

from __future__ import annotations

import json
import os
import queue
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
import socketio
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from support import wire
from support.nodes import (
    FAST_RECONNECT,
    Background,
    Node,
    NodeResult,
    StartServer,
    acks,
    events,
    in_background,
    ok,
    scripted,
    url,
    wait_until,
)

from rtserver import App, RunningServer, Socket

SECRET = "client-test-secret-" + "s" * 48
API_KEY = "test-api-key-0123456789"
WAIT = 10.0
ROOT = Path(__file__).resolve().parent.parent

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def pem(private_key: Any) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# ------------------------------------------------------------------ helpers
def token(
    sub: str = "alice",
    *,
    key: Any = SECRET,
    alg: str = "HS256",
    ttl: float | None = 600,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    payload: dict[str, Any] = {"sub": sub, "iat": int(time.time()), **claims}
    if ttl is not None and "exp" not in payload:
        payload["exp"] = int(time.time() + ttl)
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def auth_on(**values: Any) -> dict[str, Any]:
    return {"enabled": True, "secret": SECRET, **values}


def refusal_of(result: NodeResult) -> tuple[str, str]:
    """(message, code) of the single connect_error of a refused client."""
    ok(result)
    assert result.of("connect") == [], result
    [error] = result.of("connect_error")
    assert isinstance(error["data"], dict), result
    return error["message"], error["data"]["code"]


def app_with_identity() -> tuple[App, list[Any]]:
    """An app recording each connected identity; ``rooms`` acks a socket's rooms."""
    app = App()
    seen: list[Any] = []

    @app.on("connect")
    def connect(socket: Socket, auth: Any) -> None:
        seen.append(socket.identity)

    @app.on("rooms")
    def rooms(socket: Socket) -> list[str]:
        return sorted(socket.rooms - {socket.sid})

    @app.on("echo")
    def echo(socket: Socket, *args: Any) -> Any:
        return list(args)

    return app, seen


async def connect_node(
    node: Node, server: RunningServer, options: dict[str, Any], steps: list[Any] | None = None, timeout_ms: int = 10000
) -> NodeResult:
    options = {"reconnection": False, **options}
    return await node("scripted.js", url(server), scripted(options=options, steps=steps or [], timeoutMs=timeout_ms))


async def connect_all(
    node: Node, server: RunningServer, options: list[dict[str, Any]], steps: list[Any] | None = None
) -> list[NodeResult]:
    """One Node client per options, side by side; their results in order."""
    results: list[NodeResult] = [None] * len(options)

    async def one(index: int) -> None:
        results[index] = await connect_node(node, server, options[index], steps)

    async with trio.open_nursery() as nursery:
        for index in range(len(options)):
            nursery.start_soon(one, index)
    return results


def held(
    nursery: trio.Nursery,
    node: Node,
    server: RunningServer,
    options: dict[str, Any],
    steps: list[Any] | None = None,
    **config: Any,
) -> Background:
    """A Node client that runs ``steps`` then stays connected until the server
    emits "release" to it."""
    config = {
        "options": {"reconnection": False, **options},
        "steps": [*(steps or []), {"wait": "release"}],
        "timeoutMs": 20000,
        **config,
    }
    return in_background(nursery, node, "scripted.js", url(server), json.dumps(config))


async def http(
    port: int, method: str, target: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
) -> tuple[int, Any]:
    """One HTTP/1.1 request; (status, JSON body or raw bytes)."""
    status, _, raw = await wire.request(
        port, method, target, body, headers or (), sized=("POST", "PUT", "DELETE"), timeout=WAIT
    )
    try:
        return status, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return status, raw


async def api(
    server: RunningServer,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = API_KEY,
    header: str = "x-api-key",
) -> tuple[int, Any]:
    headers = []
    if key is not None:
        headers.append(("Authorization", f"Bearer {key}") if header == "bearer" else ("X-API-Key", key))
    data = body if isinstance(body, bytes) else (b"" if body is None else orjson.dumps(body))
    if data:
        headers.append(("Content-Type", "application/json"))
    return await http(server.port, method, f"/api/v1/{path}", data, headers)


async def cli(*args: str, timeout: float = 20) -> tuple[int, str, str]:
    """``python -m rtserver ...`` as a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTSERVER_")}
    with trio.fail_after(timeout):
        proc = await trio.run_process(
            [sys.executable, "-m", "rtserver", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
            env=env,
        )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def write_config(tmp_path: Path, server: RunningServer | None = None, auth: str = "") -> Path:
    """A TOML config sharing the test server's data_dir (tmp_path/data)."""
    port = server.port if server is not None else 3000
    path = tmp_path / "config.toml"
    path.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\ndata_dir = "{tmp_path / "data"}"\n\n[auth]\n{auth}\n'
    )
    return path


# ------------------------------------------------------ token sources (Node)
SOURCE_OPTIONS: dict[str, Callable[[str], dict[str, Any]]] = {
    "auth": lambda t: {"auth": {"token": t}},
    "header": lambda t: {"extraHeaders": {"Authorization": f"Bearer {t}"}},
    "query": lambda t: {"query": {"token": t}},
    "cookie": lambda t: {"extraHeaders": {"Cookie": f"theme=dark; token={t}"}},
}


@pytest.mark.parametrize("transports", [["polling", "websocket"], ["websocket"]], ids=["polling", "websocket"])
@pytest.mark.parametrize("source", list(SOURCE_OPTIONS))
async def test_each_token_source_accepted(
    start_server: StartServer, node: Node, source: str, transports: list[str]
) -> None:
    app, seen = app_with_identity()
    server = await start_server(app, auth=auth_on())
    options = {**SOURCE_OPTIONS[source](token("alice", tenantId="acme")), "transports": transports}
    result = ok(await connect_node(node, server, options, [{"emit": ["rooms"], "ack": True}]))
    assert len(result.of("connect")) == 1, result
    assert [i.user for i in seen] == ["alice"]
    assert acks(result, "rooms") == [[["tenant:acme", "user:alice"]]]


@pytest.mark.parametrize("source", list(SOURCE_OPTIONS))
async def test_switched_off_source_is_ignored(start_server: StartServer, node: Node, source: str) -> None:
    app, seen = app_with_identity()
    others = [s for s in SOURCE_OPTIONS if s != source]
    server = await start_server(app, auth=auth_on(sources=others))
    message, code = refusal_of(await connect_node(node, server, SOURCE_OPTIONS[source](token())))
    assert code == "auth_required", message
    assert seen == []


async def test_token_source_order(start_server: StartServer, node: Node) -> None:
    """The auth payload wins over a (bad) header; with sources reordered the header wins."""
    app, seen = app_with_identity()
    server = await start_server(app, auth=auth_on())
    options = {"auth": {"token": token("from-auth")}, "extraHeaders": {"Authorization": "Bearer garbage"}}
    ok(await connect_node(node, server, options))
    assert [i.user for i in seen] == ["from-auth"]


# ---------------------------------------------------- token sources (python)
def py_connect(
    server: RunningServer, *, headers: dict[str, str] | None = None, query: str = "", auth: Any = None
) -> tuple[bool, list[Any], Any]:
    """Connect python-socketio's sync client; (connected, connect_error data, rooms ack)."""
    client = socketio.Client(reconnection=False, request_timeout=5)
    errors: queue.Queue[Any] = queue.Queue()

    @client.on("connect_error")
    def connect_error(data: Any = None) -> None:
        errors.put(data)

    rooms = None
    try:
        client.connect(f"{url(server)}{query}", headers=headers or {}, auth=auth, wait_timeout=WAIT)
        rooms = client.call("rooms", timeout=WAIT)
    except socketio.exceptions.ConnectionError:
        pass
    connected = client.connected
    client.disconnect()
    got = []
    while not errors.empty():
        got.append(errors.get_nowait())
    return connected, got, rooms


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_python_client_header_and_query_sources(start_server: StartServer) -> None:
    app, seen = app_with_identity()
    server = await start_server(app, auth=auth_on())
    by_header = token("hdr", tenantId="t1")
    by_query = token("qry", tenantId="t2")

    def scenario() -> list[Any]:
        return [
            py_connect(server, headers={"Authorization": f"Bearer {by_header}"}),
            py_connect(server, query=f"?token={by_query}"),
            py_connect(server, headers={"Authorization": f"Bearer {token('x', key='wrong-secret-' * 4)}"}),
            py_connect(server, query="?token=not.a.jwt"),
            py_connect(server),
        ]

    with trio.fail_after(40):
        header, query, bad_sig, malformed, missing = await trio.to_thread.run_sync(scenario, abandon_on_cancel=True)
    assert header == (True, [], ["tenant:t1", "user:hdr"])
    assert query == (True, [], ["tenant:t2", "user:qry"])
    for outcome in (bad_sig, malformed, missing):
        assert outcome[0] is False
    assert [i.user for i in seen] == ["hdr", "qry"]
    # python-socketio hands connect_error the CONNECT_ERROR payload.
    assert [e.get("data") for e in bad_sig[1]] == [{"code": "token_invalid"}], bad_sig
    assert [e.get("data") for e in malformed[1]] == [{"code": "token_invalid"}], malformed
    assert [e.get("data") for e in missing[1]] == [{"code": "auth_required"}], missing


# ------------------------------------------------------------ invalid tokens
def _hmac_token(key: bytes, claims: dict[str, Any]) -> str:
    """HS256 by hand (pyjwt refuses to sign with PEM bytes)."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    return signing + "." + b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())


ISS, AUD = "https://idp.example", "rtserver-tests"
INVALID_TOKENS: dict[str, tuple[Callable[[], str | None], str]] = {
    "bad-signature": (lambda: token(iss=ISS, aud=AUD, key="not-the-secret-" * 4), "token_invalid"),
    "expired": (lambda: token(iss=ISS, aud=AUD, exp=int(time.time()) - 5), "token_expired"),
    "not-yet-valid": (lambda: token(iss=ISS, aud=AUD, nbf=int(time.time()) + 600), "token_not_yet_valid"),
    "wrong-issuer": (lambda: token(iss="https://evil.example", aud=AUD), "token_invalid"),
    "wrong-audience": (lambda: token(iss=ISS, aud="someone-else"), "token_invalid"),
    "alg-none": (
        lambda: jwt.encode(
            {"sub": "alice", "iss": ISS, "aud": AUD, "exp": int(time.time()) + 60}, None, algorithm="none"
        ),
        "token_invalid",
    ),
    "malformed": (lambda: "this.is-not.a-token", "token_invalid"),
    "no-exp": (lambda: token(iss=ISS, aud=AUD, ttl=None), "token_invalid"),
    "no-sub": (lambda: jwt.encode({"iss": ISS, "aud": AUD, "exp": int(time.time()) + 60}, SECRET), "token_invalid"),
    "tenant-with-colon": (lambda: token(iss=ISS, aud=AUD, tenantId="A:x"), "token_invalid"),
    "missing": (lambda: None, "auth_required"),
}


async def test_invalid_tokens_refused(start_server: StartServer, node: Node) -> None:
    """Each kind of bad token, one client each (run side by side), gets its code."""
    app, seen = app_with_identity()
    server = await start_server(app, auth=auth_on(issuer=ISS, audience=AUD, leeway=0))
    kinds = list(INVALID_TOKENS)
    options = []
    for kind in kinds:
        value = INVALID_TOKENS[kind][0]()
        options.append({"auth": {"token": value} if value is not None else {}})
    # A good token on the same server connects: the refusals are the tokens'.
    options.append({"auth": {"token": token("good", iss=ISS, aud=AUD)}})
    results = await connect_all(node, server, options)
    ok(results.pop())
    for kind, result in zip(kinds, results, strict=True):
        message, code = refusal_of(result)
        assert code == INVALID_TOKENS[kind][1], (kind, message)
        assert SECRET not in message
    assert [i.user for i in seen] == ["good"]


async def test_rs256_public_key_and_algorithm_confusion(start_server: StartServer, node: Node, tmp_path: Path) -> None:
    public = tmp_path / "public.pem"
    public.write_bytes(pem(RSA_KEY))
    app, seen = app_with_identity()
    server = await start_server(app, auth={"enabled": True, "algorithms": ["RS256"], "public_key_file": str(public)})
    ok(await connect_node(node, server, {"auth": {"token": token("rsa-user", key=RSA_KEY, alg="RS256")}}))
    assert [i.user for i in seen] == ["rsa-user"]
    confused = _hmac_token(pem(RSA_KEY), {"sub": "mallory", "exp": int(time.time()) + 60})
    message, code = refusal_of(await connect_node(node, server, {"auth": {"token": confused}}))
    assert code == "token_invalid", message
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message, code = refusal_of(await connect_node(node, server, {"auth": {"token": token(key=other, alg="RS256")}}))
    assert code == "token_invalid", message
    assert [i.user for i in seen] == ["rsa-user"]


async def test_jwks_with_kid_and_other_algorithms(start_server: StartServer, node: Node, tmp_path: Path) -> None:
    def jwk(public_key: Any, kid: str, alg: str) -> dict[str, Any]:
        data = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(public_key))
        return {**data, "kid": kid, "alg": alg}

    second = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keyset = {
        "keys": [
            jwk(RSA_KEY.public_key(), "k1", "RS256"),
            jwk(second.public_key(), "k2", "RS256"),
            jwk(EC_KEY.public_key(), "ec", "ES256"),
            jwk(ED_KEY.public_key(), "ed", "EdDSA"),
        ]
    }
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(keyset))
    app, seen = app_with_identity()
    server = await start_server(
        app, auth={"enabled": True, "algorithms": ["RS256", "ES256", "EdDSA"], "jwks_file": str(path)}
    )
    good = [
        token("k1-user", key=RSA_KEY, alg="RS256", headers={"kid": "k1"}),
        token("k2-user", key=second, alg="RS256", headers={"kid": "k2"}),
        token("ec-user", key=EC_KEY, alg="ES256", headers={"kid": "ec"}),
        token("ed-user", key=ED_KEY, alg="EdDSA", headers={"kid": "ed"}),
    ]
    for result in await connect_all(node, server, [{"auth": {"token": value}} for value in good]):
        ok(result)
    assert sorted(i.user for i in seen) == ["ec-user", "ed-user", "k1-user", "k2-user"]
    bad = [
        token(key=RSA_KEY, alg="RS256", headers={"kid": "k2"}),  # signed by k1, names k2
        token(key=RSA_KEY, alg="RS256", headers={"kid": "nope"}),
        token(key=RSA_KEY, alg="RS256"),  # no kid among several keys
        token(key=SECRET, alg="HS256", headers={"kid": "k1"}),  # HMAC not allowed
    ]
    for result in await connect_all(node, server, [{"auth": {"token": value}} for value in bad]):
        message, code = refusal_of(result)
        assert code == "token_invalid", message
    assert len(seen) == 4


# ---------------------------------------------------------------- revocation
@pytest.mark.parametrize("transports", [None, ["polling"], ["websocket"]], ids=["default", "polling", "websocket"])
async def test_revoke_via_api_kicks_live_socket(
    start_server: StartServer, node: Node, nursery: trio.Nursery, transports: list[str] | None
) -> None:
    app, seen = app_with_identity()
    server = await start_server(app, auth=auth_on(api_keys=[API_KEY]))
    old = token("alice", tokenVersion=0)
    options: dict[str, Any] = {"auth": {"token": old}, **FAST_RECONNECT}
    if transports:
        options["transports"] = transports
    bg = in_background(
        nursery,
        node,
        "scripted.js",
        url(server),
        scripted(
            options=options,
            # The kick ends the connection; the client reconnects with the same
            # token, is refused, and the script ends on that connect_error.
            steps=[{"wait": "error"}, {"waitDisconnect": 1}, {"sleep": 8000}],
            timeoutMs=15000,
        ),
    )
    await wait_until(lambda: len(server.guard.sockets_of("alice")) == 1)
    status, body = await api(server, "POST", "admin/revoke", {"user": "alice"})
    assert (status, body) == (200, {"user": "alice", "tokenVersion": 1, "disconnected": 1})
    result = ok(await bg.wait())
    assert len(result.of("connect")) == 1, result
    assert [e[0]["code"] for e in events(result, "error")] == ["token_revoked"], result
    [disconnect] = result.of("disconnect")
    assert disconnect["active"] is True, result  # a transport close: the client retried
    [refused] = result.of("connect_error")
    assert refused["data"] == {"code": "token_revoked"}, result
    assert server.guard.sockets_of("alice") == set()
    # Only the minted-again token (new version) gets in.
    message, code = refusal_of(await connect_node(node, server, {"auth": {"token": old}}))
    assert code == "token_revoked", message
    ok(await connect_node(node, server, {"auth": {"token": token("alice", tokenVersion=1)}}))
    # Another user's tokens are unaffected.
    ok(await connect_node(node, server, {"auth": {"token": token("bob")}}))
    assert [i.user for i in seen] == ["alice", "alice", "bob"]


async def test_revoke_via_cli(start_server: StartServer, node: Node, nursery: trio.Nursery, tmp_path: Path) -> None:
    app, _ = app_with_identity()
    server = await start_server(app, auth=auth_on(api_keys=[API_KEY]))
    bg = in_background(
        nursery,
        node,
        "scripted.js",
        url(server),
        scripted(
            options={"auth": {"token": token("bob")}, "reconnection": False},
            steps=[{"wait": "error"}, {"waitDisconnect": 1}],
        ),
    )
    await wait_until(lambda: len(server.guard.sockets_of("bob")) == 1)
    config = write_config(tmp_path, server, f'secret = "{SECRET}"\napi_keys = ["{API_KEY}"]')
    code, out, err = await cli(
        "revoke", "--user", "bob", "--url", f"http://127.0.0.1:{server.port}", "--config", str(config)
    )
    assert code == 0, err
    assert orjson.loads(out) == {"user": "bob", "tokenVersion": 1, "disconnected": 1}
    result = ok(await bg.wait())
    assert [e[0]["code"] for e in events(result, "error")] == ["token_revoked"], result
    assert len(result.of("disconnect")) == 1, result
    message, code = refusal_of(await connect_node(node, server, {"auth": {"token": token("bob")}}))
    assert code == "token_revoked", message
    ok(await connect_node(node, server, {"auth": {"token": token("bob", tokenVersion=1)}}))


async def test_revoke_via_cli_with_server_down(start_server: StartServer, node: Node, tmp_path: Path) -> None:
    """With no server to call, the CLI raises the version in the store; it applies at start."""
    config = write_config(tmp_path, None, f'secret = "{SECRET}"\napi_keys = ["{API_KEY}"]')
    closed = trio.socket.socket()
    await closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # a port nothing listens on
    code, out, err = await cli("revoke", "--user", "carl", "--url", f"http://127.0.0.1:{port}", "--config", str(config))
    assert code == 0, err
    assert orjson.loads(out)["tokenVersion"] == 1
    app, seen = app_with_identity()
    server = await start_server(app, auth=auth_on())
    message, code = refusal_of(await connect_node(node, server, {"auth": {"token": token("carl")}}))
    assert code == "token_revoked", message
    ok(await connect_node(node, server, {"auth": {"token": token("carl", tokenVersion=1)}}))
    assert [i.user for i in seen] == ["carl"]


async def test_expiry_ends_live_socket(start_server: StartServer, node: Node) -> None:
    app, _ = app_with_identity()
    server = await start_server(app, auth=auth_on(leeway=0))
    expires = int(time.time()) + 2
    started = time.monotonic()
    result = ok(
        await connect_node(
            node,
            server,
            {"auth": {"token": token("short", exp=expires)}},
            [{"wait": "error"}, {"waitDisconnect": 1}],
            timeout_ms=15000,
        )
    )
    assert len(result.of("connect")) == 1, result
    assert [e[0]["code"] for e in events(result, "error")] == ["token_expired"], result
    assert len(result.of("disconnect")) == 1, result
    assert time.time() >= expires - 0.05
    assert time.monotonic() - started < 8
    await wait_until(lambda: server.guard.sockets_of("short") == set())


# ---------------------------------------------------------------- tenants
async def test_tenant_isolation(start_server: StartServer, node: Node, nursery: trio.Nursery) -> None:
    app, _ = app_with_identity()
    server = await start_server(app, auth=auth_on())
    steps_a = [
        {"emit": ["subscribe", "tenant:B"], "ack": True},
        {"emit": ["subscribe", "tenant:B:x"], "ack": True},
        {"emit": ["subscribe", ["alerts", "tenant:B:alerts"]], "ack": True},
        {"emit": ["subscribe", "alerts"], "ack": True},
        {"emit": ["subscribe", "tenant:A:x"], "ack": True},
        {"wait": "news", "count": 2},
        {"sleep": 300},
    ]
    a = in_background(
        nursery,
        node,
        "scripted.js",
        url(server),
        scripted(options={"auth": {"token": token("ua", tenantId="A")}, "reconnection": False}, steps=steps_a),
    )
    b = in_background(
        nursery,
        node,
        "scripted.js",
        url(server),
        scripted(
            options={"auth": {"token": token("ub", tenantId="B")}, "reconnection": False},
            steps=[{"emit": ["subscribe", "alerts"], "ack": True}, {"wait": "news", "count": 2}, {"sleep": 300}],
        ),
    )
    await wait_until(lambda: len(app.sockets("tenant:A:x")) == 1 and len(app.sockets("tenant:B:alerts")) == 1)
    assert len(app.sockets("tenant:A:alerts")) == 1
    # Tenant B's rooms first: if A heard them, they would come before A's own.
    assert app.emit("news", "to B", to="tenant:B") == 1
    assert app.emit("news", "to B alerts", to="tenant:B:alerts") == 1
    assert app.emit("news", "to B x", to="tenant:B:x") == 0
    assert app.emit("news", "to A alerts", to="tenant:A:alerts") == 1
    assert app.emit("news", "to A", to="tenant:A") == 1
    ra, rb = ok(await a.wait()), ok(await b.wait())
    forbidden = acks(ra, "subscribe")[:3]
    for [reply] in forbidden:
        assert reply["error"]["code"] == "forbidden", ra
        assert "B" not in reply["error"]["message"]
    assert acks(ra, "subscribe")[3:] == [[{"rooms": ["tenant:A:alerts"]}], [{"rooms": ["tenant:A:x"]}]]
    assert acks(rb, "subscribe") == [[{"rooms": ["tenant:B:alerts"]}]]
    assert events(ra, "news") == [["to A alerts"], ["to A"]]
    assert events(rb, "news") == [["to B"], ["to B alerts"]]


# ----------------------------------------------------------------- devices
async def test_device_ownership(start_server: StartServer, node: Node) -> None:
    app, seen = app_with_identity()
    server = await start_server(app, auth=auth_on())
    owner = token("owner", tenantId="A", devices=["d1", "d2"])
    # The owned device, presented in the auth payload or in the query.
    result = ok(
        await connect_node(
            node,
            server,
            {"auth": {"token": owner, "deviceId": "d1"}},
            [
                {"emit": ["rooms"], "ack": True},
                {"emit": ["subscribe", "device:d3"], "ack": True},
                {"emit": ["subscribe", "device:d2"], "ack": True},
            ],
        )
    )
    [[rooms]] = acks(result, "rooms")
    assert rooms == ["device:d1", "tenant:A", "user:owner"]
    [denied], [allowed] = acks(result, "subscribe")
    assert denied["error"]["code"] == "forbidden", result
    assert allowed == {"rooms": ["device:d2"]}
    result = ok(
        await connect_node(
            node, server, {"auth": {"token": owner}, "query": {"deviceId": "d2"}}, [{"emit": ["rooms"], "ack": True}]
        )
    )
    assert acks(result, "rooms") == [[["device:d2", "tenant:A", "user:owner"]]]
    assert [i.device for i in seen] == ["d1", "d2"]
    # A device the token does not own.
    message, code = refusal_of(await connect_node(node, server, {"auth": {"token": owner, "deviceId": "d3"}}))
    assert code == "forbidden", message
    # Admins: of the device's tenant yes, of another tenant no; a plain member no.
    sub = [{"emit": ["subscribe", "device:d1"], "ack": True}]
    admin_a = ok(
        await connect_node(node, server, {"auth": {"token": token("root", tenantId="A", roles=["admin"])}}, sub)
    )
    admin_b = ok(
        await connect_node(node, server, {"auth": {"token": token("boss", tenantId="B", roles=["admin"])}}, sub)
    )
    member_a = ok(await connect_node(node, server, {"auth": {"token": token("peer", tenantId="A")}}, sub))
    assert acks(admin_a, "subscribe") == [[{"rooms": ["device:d1"]}]]
    assert acks(admin_b, "subscribe")[0][0]["error"]["code"] == "forbidden"
    assert acks(member_a, "subscribe")[0][0]["error"]["code"] == "forbidden"
    # Not registered by any connection yet: even the tenant's admin may not.
    never = ok(
        await connect_node(
            node,
            server,
            {"auth": {"token": token("root", tenantId="A", roles=["admin"])}},
            [{"emit": ["subscribe", "device:d9"], "ack": True}],
        )
    )
    assert acks(never, "subscribe")[0][0]["error"]["code"] == "forbidden"


async def test_device_registration_survives_restart(start_server: StartServer, node: Node, tmp_path: Path) -> None:
    """The device -> tenant registration is kept in the store."""
    app, _ = app_with_identity()
    server = await start_server(app, auth=auth_on())
    ok(
        await connect_node(
            node, server, {"auth": {"token": token("owner", tenantId="A", devices=["d7"]), "deviceId": "d7"}}
        )
    )
    await wait_until(lambda: server.guard._device_tenants.get("d7") == "A")
    server.shutdown()
    app2, _ = app_with_identity()
    with trio.fail_after(WAIT):
        while True:  # the store write is a background task; give it a moment
            second = await start_server(app2, auth=auth_on())
            if second.guard._device_tenants.get("d7") == "A":
                break
            second.shutdown()
            await trio.sleep(0.1)
    result = ok(
        await connect_node(
            node,
            second,
            {"auth": {"token": token("root", tenantId="A", roles=["admin"])}},
            [{"emit": ["subscribe", "device:d7"], "ack": True}],
        )
    )
    assert acks(result, "subscribe") == [[{"rooms": ["device:d7"]}]]


# ------------------------------------------------------------ event roles
async def test_admin_only_event(start_server: StartServer, node: Node) -> None:
    app, _ = app_with_identity()
    calls: list[str] = []

    @app.on("admin_broadcast")
    def admin_broadcast(socket: Socket, text: str) -> str:
        calls.append(f"{socket.identity.user}:{text}")
        return "sent"

    server = await start_server(app, auth=auth_on(event_roles={"admin_broadcast": ["admin"]}))
    member = ok(
        await connect_node(
            node,
            server,
            {"auth": {"token": token("member", roles=["user"])}},
            [
                {"emit": ["admin_broadcast", "with ack"], "ack": True},
                {"emit": ["admin_broadcast", "no ack"]},
                {"wait": "error"},
                {"emit": ["echo", "still here"], "ack": True},
            ],
        )
    )
    [[reply]] = acks(member, "admin_broadcast")
    assert reply["error"]["code"] == "forbidden", member
    [[error]] = events(member, "error")
    assert error["code"] == "forbidden" and error["event"] == "admin_broadcast", member
    assert acks(member, "echo") == [[["still here"]]]
    admin = ok(
        await connect_node(
            node,
            server,
            {"auth": {"token": token("root", roles=["admin"])}},
            [{"emit": ["admin_broadcast", "hello"], "ack": True}],
        )
    )
    assert acks(admin, "admin_broadcast") == [["sent"]]
    assert calls == ["root:hello"]


# ------------------------------------------------------------------ limits
async def test_event_rate_limit(start_server: StartServer, node: Node) -> None:
    app, _ = app_with_identity()
    server = await start_server(
        app, auth=auth_on(), limits={"events_per_second": 0.2, "event_burst": 3, "abuse_threshold": 50}
    )
    steps = [{"emit": ["echo", i], "ack": True} for i in range(5)] + [{"emit": ["echo", "no ack"]}, {"wait": "error"}]
    result = ok(await connect_node(node, server, {"auth": {"token": token()}}, steps))
    replies = acks(result, "echo")
    assert replies[:3] == [[[0]], [[1]], [[2]]]
    for [reply] in replies[3:]:
        assert reply["error"]["code"] == "rate_limited", result
    [[error]] = events(result, "error")
    assert error["code"] == "rate_limited" and error["event"] == "echo"
    assert result.of("disconnect") == [{"type": "disconnect", "reason": "io client disconnect", "active": False}]


async def test_abusive_client_disconnected(start_server: StartServer, node: Node) -> None:
    app, _ = app_with_identity()
    server = await start_server(
        app, auth=auth_on(), limits={"events_per_second": 0.1, "event_burst": 1, "abuse_threshold": 3}
    )
    steps = [{"emit": ["echo", i]} for i in range(10)] + [{"waitDisconnect": 1}]
    result = ok(await connect_node(node, server, {"auth": {"token": token()}}, steps))
    assert result.of("disconnect") == [{"type": "disconnect", "reason": "io server disconnect", "active": False}], (
        result
    )
    codes = [e[0]["code"] for e in events(result, "error")]
    assert codes and set(codes) == {"rate_limited"} and len(codes) <= 4, result
    await wait_until(lambda: server.guard.sockets_of("alice") == set())


async def test_connections_per_user(start_server: StartServer, node: Node, nursery: trio.Nursery) -> None:
    app, _ = app_with_identity()
    server = await start_server(app, auth=auth_on(), limits={"max_connections_per_user": 2})
    first = held(nursery, node, server, {"auth": {"token": token("carol")}})
    second = held(nursery, node, server, {"auth": {"token": token("carol")}})
    await wait_until(lambda: len(server.guard.sockets_of("carol")) == 2)
    message, code = refusal_of(await connect_node(node, server, {"auth": {"token": token("carol")}}))
    assert code == "too_many_connections", message
    ok(await connect_node(node, server, {"auth": {"token": token("dave")}}))  # per user, not global
    assert app.emit("release", to="user:carol") == 2
    ok(await first.wait())
    ok(await second.wait())
    await wait_until(lambda: server.guard.sockets_of("carol") == set())
    ok(await connect_node(node, server, {"auth": {"token": token("carol")}}))  # counts released


async def test_connections_per_address(start_server: StartServer, node: Node, nursery: trio.Nursery) -> None:
    app, _ = app_with_identity()
    server = await start_server(app, auth=auth_on(), limits={"max_connections_per_address": 2})
    held_clients = [held(nursery, node, server, {"auth": {"token": token(f"u{i}")}}) for i in range(2)]
    await wait_until(lambda: len(app.sockets()) == 2)
    status, body = await http(server.port, "GET", "/socket.io/?EIO=4&transport=polling")
    assert status == 429
    assert body["code"] == "too_many_connections", body
    # The stock client only sees a failed handshake (no body reaches it).
    refused = await connect_node(node, server, {"auth": {"token": token("u3")}, "transports": ["websocket"]})
    assert refused.of("connect") == [], refused
    assert [e["message"] for e in refused.of("connect_error")] == ["websocket error"], refused
    app.emit("release")
    for bg in held_clients:
        ok(await bg.wait())
    await wait_until(lambda: not server.engine.sessions)
    status, body = await http(server.port, "GET", "/socket.io/?EIO=4&transport=polling")
    assert status == 200, body


async def test_handshake_rate(start_server: StartServer) -> None:
    server = await start_server(auth=auth_on(), limits={"handshakes_per_second": 0.01, "handshake_burst": 2})
    statuses = []
    for _ in range(3):
        status, body = await http(server.port, "GET", "/socket.io/?EIO=4&transport=polling")
        statuses.append(status)
    assert statuses == [200, 200, 429]
    assert body["code"] == "rate_limited", body


async def test_rooms_per_socket(start_server: StartServer, node: Node) -> None:
    app, _ = app_with_identity()
    # The socket's own sid room, user:... and tenant:... count: 3 of 5.
    server = await start_server(app, auth=auth_on(), limits={"max_rooms_per_socket": 5})
    result = ok(
        await connect_node(
            node,
            server,
            {"auth": {"token": token(tenantId="T")}},
            [
                {"emit": ["subscribe", "a"], "ack": True},
                {"emit": ["subscribe", "b"], "ack": True},
                {"emit": ["subscribe", "c"], "ack": True},
                {"emit": ["subscribe", "a"], "ack": True},
                {"emit": ["unsubscribe", "b"], "ack": True},
                {"emit": ["subscribe", "c"], "ack": True},
            ],
        )
    )
    replies = [r[0] for r in acks(result, "subscribe")]
    assert replies[0] == {"rooms": ["tenant:T:a"]}
    assert replies[1] == {"rooms": ["tenant:T:b"]}
    assert replies[2]["error"]["code"] == "too_many_rooms", result
    assert replies[3] == {"rooms": ["tenant:T:a"]}  # already joined: no new room
    assert replies[4] == {"rooms": ["tenant:T:c"]}
    assert acks(result, "unsubscribe") == [[{"rooms": ["tenant:T:b"]}]]


async def test_channels_at_connect(start_server: StartServer, node: Node) -> None:
    app, _ = app_with_identity()
    server = await start_server(app, auth=auth_on())
    result = ok(
        await connect_node(
            node,
            server,
            {"auth": {"token": token(tenantId="A"), "channels": ["alerts", "tenant:A:x"]}},
            [{"emit": ["rooms"], "ack": True}],
        )
    )
    assert acks(result, "rooms") == [[["tenant:A", "tenant:A:alerts", "tenant:A:x", "user:alice"]]]
    message, code = refusal_of(
        await connect_node(node, server, {"auth": {"token": token(tenantId="A"), "channels": ["alerts", "tenant:B"]}})
    )
    assert code == "forbidden", message
    await wait_until(lambda: server.guard.sockets_of("alice") == set())


# --------------------------------------------------------------- admin API
async def test_admin_api_credentials(start_server: StartServer) -> None:
    server = await start_server(auth=auth_on(api_keys=[API_KEY]))
    body = {"user": "nobody"}
    status, reply = await api(server, "POST", "admin/revoke", body, key=None)
    assert (status, reply["code"]) == (401, "auth_required")
    status, reply = await api(server, "POST", "admin/revoke", body, key="wrong-key")
    assert (status, reply["code"]) == (401, "token_invalid")
    status, reply = await api(
        server, "POST", "admin/revoke", body, key=token("eve", key="not-the-secret-" * 4), header="bearer"
    )
    assert status == 401
    status, reply = await api(
        server, "POST", "admin/revoke", body, key=token("member", roles=["user"]), header="bearer"
    )
    assert (status, reply["code"]) == (403, "forbidden")
    status, reply = await api(
        server,
        "POST",
        "admin/revoke",
        body,
        key=token("expired", roles=["admin"], exp=int(time.time()) - 100),
        header="bearer",
    )
    assert (status, reply["code"]) == (401, "token_expired")
    status, reply = await api(server, "POST", "admin/revoke", body, key=token("root", roles=["admin"]), header="bearer")
    assert (status, reply) == (200, {"user": "nobody", "tokenVersion": 1, "disconnected": 0})
    status, reply = await api(server, "POST", "admin/revoke", body, key=API_KEY, header="bearer")
    assert (status, reply["tokenVersion"]) == (200, 2)
    status, reply = await api(server, "POST", "admin/revoke", body, key=API_KEY)
    assert (status, reply["tokenVersion"]) == (200, 3)


async def test_admin_api_revoked_admin_token_refused(start_server: StartServer) -> None:
    server = await start_server(auth=auth_on(api_keys=[API_KEY]))
    admin = token("root", roles=["admin"])
    status, _ = await api(server, "GET", "admin/users", key=admin, header="bearer")
    assert status == 200
    status, _ = await api(server, "POST", "admin/revoke", {"user": "root"})
    assert status == 200
    status, reply = await api(server, "GET", "admin/users", key=admin, header="bearer")
    assert (status, reply["code"]) == (401, "token_revoked")
    status, _ = await api(
        server, "GET", "admin/users", key=token("root", roles=["admin"], tokenVersion=1), header="bearer"
    )
    assert status == 200


@pytest.mark.parametrize(
    "body, code, mentions",
    [
        (b"", "invalid_body", "body"),
        (b"{not json", "invalid_json", "JSON"),
        (b"[1]", "invalid_body", "object"),
        (b"{}", "invalid_body", "user"),
        (b'{"user": ""}', "invalid_body", "user"),
        (b'{"user": 5}', "invalid_body", "user"),
        (b'{"user": "a", "extra": 1}', "invalid_body", "extra"),
    ],
)
async def test_admin_api_bad_bodies(start_server: StartServer, body: bytes, code: str, mentions: str) -> None:
    server = await start_server(auth=auth_on(api_keys=[API_KEY]))
    for path in ("admin/revoke", "admin/users"):
        status, reply = await api(server, "POST", path, body)
        assert status == 400, reply
        assert reply["code"] == code, reply
        assert mentions in reply["message"], reply


async def test_admin_api_users_and_check_user_exists(start_server: StartServer, node: Node, tmp_path: Path) -> None:
    app, seen = app_with_identity()
    server = await start_server(app, auth=auth_on(api_keys=[API_KEY], check_user_exists=True))
    message, code = refusal_of(await connect_node(node, server, {"auth": {"token": token("erin")}}))
    assert code == "user_unknown", message
    status, reply = await api(server, "POST", "admin/users", {"user": "erin", "tenant": "acme"})
    assert (status, reply) == (201, {"user": "erin", "tenant": "acme"})
    status, reply = await api(server, "POST", "admin/users", {"user": "frank"})
    assert status == 201
    status, reply = await api(server, "GET", "admin/users")
    assert (status, reply) == (200, {"users": [{"user": "erin", "tenant": "acme"}, {"user": "frank", "tenant": None}]})
    ok(await connect_node(node, server, {"auth": {"token": token("erin")}}))
    status, reply = await api(server, "DELETE", "admin/users/frank")
    assert (status, reply) == (200, {"user": "frank", "removed": True})
    status, reply = await api(server, "DELETE", "admin/users/frank")
    assert (status, reply["code"]) == (404, "not_found")
    message, code = refusal_of(await connect_node(node, server, {"auth": {"token": token("frank")}}))
    assert code == "user_unknown", message
    # The CLI writes the same table.
    config = write_config(tmp_path, server, f'secret = "{SECRET}"')
    code_, out, err = await cli("users", "add", "gina", "--tenant", "acme", "--config", str(config))
    assert code_ == 0, err
    ok(await connect_node(node, server, {"auth": {"token": token("gina")}}))
    code_, out, err = await cli("users", "list", "--config", str(config))
    assert out.splitlines() == ["erin\tacme", "gina\tacme"]
    assert [i.user for i in seen] == ["erin", "gina"]


# ------------------------------------------------------ generated secret, reload
async def test_generated_secret_and_cli_token(start_server: StartServer, node: Node, tmp_path: Path) -> None:
    app, seen = app_with_identity()
    server = await start_server(app, auth={"enabled": True})
    secret_path = tmp_path / "data" / "jwt_secret"
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    config = write_config(tmp_path, server)
    code, out, err = await cli(
        "token", "--sub", "alice", "--tenant", "acme", "--role", "admin", "--config", str(config)
    )
    assert code == 0, err
    minted = out.strip()
    claims = jwt.decode(minted, secret_path.read_text().strip(), algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["tenantId"] == "acme" and claims["roles"] == ["admin"]
    result = ok(await connect_node(node, server, {"auth": {"token": minted}}, [{"emit": ["rooms"], "ack": True}]))
    assert acks(result, "rooms") == [[["tenant:acme", "user:alice"]]]
    assert [(i.user, i.roles) for i in seen] == [("alice", frozenset({"admin"}))]
    # A token signed with anything else is refused.
    message, code = refusal_of(await connect_node(node, server, {"auth": {"token": token("alice")}}))
    assert code == "token_invalid", message


async def test_reload_keys(start_server: StartServer, node: Node, nursery: trio.Nursery, tmp_path: Path) -> None:
    first, second = "first-secret-" + "1" * 40, "second-secret-" + "2" * 40
    secret_file = tmp_path / "secret"
    secret_file.write_text(first)
    app, seen = app_with_identity()
    server = await start_server(app, auth={"enabled": True, "secret_file": str(secret_file)})
    live = held(nursery, node, server, {"auth": {"token": token("live", key=first)}})
    await wait_until(lambda: len(server.guard.sockets_of("live")) == 1)
    secret_file.write_text(second + "\n")
    assert await server.reload_keys() is True
    message, code = refusal_of(await connect_node(node, server, {"auth": {"token": token("old", key=first)}}))
    assert code == "token_invalid", message
    ok(await connect_node(node, server, {"auth": {"token": token("new", key=second)}}))
    # A broken file keeps the current keys.
    secret_file.write_text("")
    assert await server.reload_keys() is False
    ok(await connect_node(node, server, {"auth": {"token": token("new2", key=second)}}))
    assert len(server.guard.sockets_of("live")) == 1
    assert app.emit("release", to="user:live") == 1
    result = ok(await live.wait())
    assert events(result, "release") == [[]]
    assert result.of("disconnect") == [{"type": "disconnect", "reason": "io client disconnect", "active": False}]
    assert [i.user for i in seen] == ["live", "new", "new2"]


# ------------------------------------------------------- private sid rooms
@pytest.mark.parametrize("auth", ["token-without-tenant", "auth-off"])
async def test_cannot_subscribe_to_another_sockets_sid(
    start_server: StartServer, node: Node, nursery: trio.Nursery, auth: str
) -> None:
    """A socket's own sid room carries its direct messages: nobody else may join it."""
    app, _ = app_with_identity()

    @app.on("poke")
    def poke(socket: Socket, sid: str) -> int:
        return app.emit("secret", "for your eyes only", to=sid)

    if auth == "auth-off":
        server = await start_server(app)
        victim_options, spy_options = {}, {}
    else:
        server = await start_server(app, auth=auth_on())
        victim_options, spy_options = {"auth": {"token": token("victim")}}, {"auth": {"token": token("spy")}}
    victim = held(nursery, node, server, victim_options)
    await wait_until(lambda: len(app.sockets()) == 1)
    [target] = app.sockets()
    spy = ok(
        await connect_node(
            node,
            server,
            spy_options,
            [
                {"emit": ["subscribe", target.sid], "ack": True},
                {"emit": ["subscribe", [target.sid]], "ack": True},
                {"emit": ["poke", target.sid], "ack": True},
                {"sleep": 300},
            ],
        )
    )
    for [reply] in acks(spy, "subscribe"):
        assert reply.get("error", {}).get("code") == "forbidden", spy
    assert acks(spy, "poke") == [[1]]  # only the victim got it
    assert events(spy, "secret") == []
    app.emit("release", to=target.sid)
    result = ok(await victim.wait())
    assert events(result, "secret") == [["for your eyes only"]]
