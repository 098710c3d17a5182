"""Unit tests of the auth layer: claims, rules, limits, token sources,
verification and key rings.  No sockets: requests are built by hand."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from rtserver import config as config_mod
from rtserver.auth import rules, tokens
from rtserver.auth.errors import Refusal
from rtserver.auth.identity import Identity, anonymous, claim, from_claims
from rtserver.auth.keys import SECRET_ENV, KeyRing, KeySetupError, ensure_generated_secret
from rtserver.auth.limits import KeyedBuckets, Tally, TokenBucket
from rtserver.config import AuthConfig, ClaimsConfig
from rtserver.http.messages import Request

SECRET = "unit-test-secret-" + "x" * 60

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def auth_config(**values: Any) -> AuthConfig:
    """An AuthConfig through the real config structuring (validators run)."""
    return config_mod.structure({"auth": {"secret": SECRET, **values}}).auth


def ring(config: AuthConfig, tmp_path: Path, environ: dict[str, str] | None = None) -> KeyRing:
    keys = KeyRing(config, str(tmp_path / "data"), environ or {})
    keys.reload()
    return keys


def hs(claims: dict[str, Any], secret: str = SECRET, **kw: Any) -> str:
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, secret, algorithm="HS256", **kw)


def request(
    query: dict[str, str] | None = None, headers: dict[str, str] | None = None, remote: str = "127.0.0.1:5000"
) -> Request:
    return Request("GET", "/socket.io/", "/socket.io/", query or {}, headers or {}, remote)


def refused(code: str, fn: Any, *args: Any, **kwargs: Any) -> Refusal:
    with pytest.raises(Refusal) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value.message
    return info.value


# ------------------------------------------------------------- identity
def test_claim_dotted_paths() -> None:
    claims = {"sub": "u", "realm": {"access": {"roles": ["a"]}}, "flat.name": 1}
    assert claim(claims, "sub") == "u"
    assert claim(claims, "realm.access.roles") == ["a"]
    assert claim(claims, "realm.missing") is None
    assert claim(claims, "sub.deeper") is None  # a string has no members
    assert claim(claims, "nope") is None


def test_identity_default_claim_names() -> None:
    exp = int(time.time()) + 60
    identity = from_claims(
        {
            "sub": "alice",
            "tenantId": "acme",
            "roles": ["admin", "ops"],
            "devices": ["d1", "d2"],
            "tokenVersion": 3,
            "sid": "s1",
            "exp": exp,
        },
        ClaimsConfig(),
    )
    assert identity.user == "alice"
    assert identity.tenant == "acme"
    assert identity.roles == {"admin", "ops"}
    assert identity.devices == {"d1", "d2"}
    assert identity.token_version == 3
    assert identity.session == "s1"
    assert identity.expires_at == exp
    assert identity.device is None


def test_identity_custom_and_nested_claim_names() -> None:
    names = config_mod.structure(
        {
            "auth": {
                "claims": {
                    "user": "uid",
                    "tenant": "org.id",
                    "roles": "realm_access.roles",
                    "devices": "hw",
                    "token_version": "ver",
                }
            }
        }
    ).auth.claims
    identity = from_claims(
        {
            "uid": 42,
            "sub": "ignored",
            "org": {"id": "acme"},
            "realm_access": {"roles": "admin, ops viewer"},
            "hw": ["d1", 7, True, None],
            "ver": 2,
        },
        names,
    )
    assert identity.user == "42"  # numeric ids become text
    assert identity.tenant == "acme"
    assert identity.roles == {"admin", "ops", "viewer"}  # space/comma separated string
    assert identity.devices == {"d1", "7"}  # booleans and nulls dropped
    assert identity.token_version == 2
    assert identity.expires_at is None


@pytest.mark.parametrize(
    "claims",
    [{}, {"sub": ""}, {"sub": True}, {"sub": ["a"]}, {"sub": None}],
    ids=["missing", "empty", "bool", "list", "null"],
)
def test_identity_needs_a_user(claims: dict[str, Any]) -> None:
    refusal = refused("token_invalid", from_claims, claims, ClaimsConfig())
    assert "sub" in refusal.message


@pytest.mark.parametrize("version", ["1", True, 1.5, [1]])
def test_identity_token_version_must_be_an_integer(version: Any) -> None:
    refused("token_invalid", from_claims, {"sub": "u", "tokenVersion": version}, ClaimsConfig())


def test_identity_ignores_malformed_optional_claims() -> None:
    identity = from_claims(
        {"sub": "u", "tenantId": {"x": 1}, "roles": 5, "devices": {"d": 1}, "exp": "soon"}, ClaimsConfig()
    )
    assert identity.tenant is None
    assert identity.roles == frozenset()
    assert identity.devices == frozenset()
    assert identity.expires_at is None


def test_anonymous_identity() -> None:
    identity = anonymous("abc")
    assert identity.user == "anonymous:abc"
    assert identity.tenant is None and not identity.roles


# ----------------------------------------------------------------- rules
ALICE = Identity(user="alice", tenant="A", roles=frozenset({"member"}), devices=frozenset({"d1"}))
ADMIN_A = Identity(user="root", tenant="A", roles=frozenset({"admin"}))
ADMIN_B = Identity(user="boss", tenant="B", roles=frozenset({"admin"}))
NO_TENANT = Identity(user="solo")
DEVICES = {"d1": "A", "d2": "A", "d9": "B"}


def check(identity: Identity, channel: str) -> str:
    room = rules.qualify(identity, channel)
    rules.check_room(identity, room, ("admin",), DEVICES.get)
    return room


def test_qualify_custom_channels_per_tenant() -> None:
    assert rules.qualify(ALICE, "alerts") == "tenant:A:alerts"
    assert rules.qualify(ADMIN_B, "alerts") == "tenant:B:alerts"
    assert rules.qualify(NO_TENANT, "alerts") == "alerts"
    for scoped in ("tenant:A", "tenant:B:x", "user:bob", "device:d1"):
        assert rules.qualify(ALICE, scoped) == scoped


def test_tenant_rooms() -> None:
    assert check(ALICE, "tenant:A") == "tenant:A"
    assert check(ALICE, "tenant:A:ops") == "tenant:A:ops"
    assert check(ALICE, "alerts") == "tenant:A:alerts"
    for room in ("tenant:B", "tenant:B:x", "tenant:AB", "tenant:", "tenant:A2:x"):
        refusal = refused("forbidden", check, ALICE, room)
        assert refusal.status == 403
        assert "B" not in refusal.message  # never names the other tenant
    refused("forbidden", check, NO_TENANT, "tenant:A")


def test_user_rooms() -> None:
    assert check(ALICE, "user:alice") == "user:alice"
    assert check(ALICE, "user:alice:inbox") == "user:alice:inbox"
    refused("forbidden", check, ALICE, "user:bob")
    refused("forbidden", check, ALICE, "user:alicex")
    refused("forbidden", check, ADMIN_A, "user:alice")  # admins do not read users' rooms


def test_device_rooms() -> None:
    assert check(ALICE, "device:d1") == "device:d1"  # owner
    refused("forbidden", check, ALICE, "device:d2")  # same tenant, not owner, not admin
    assert check(ADMIN_A, "device:d2") == "device:d2"  # admin of the device's tenant
    refused("forbidden", check, ADMIN_A, "device:d9")  # device of another tenant
    refused("forbidden", check, ADMIN_B, "device:d1")
    refused("forbidden", check, ADMIN_A, "device:unknown")  # never registered
    refused("forbidden", check, Identity(user="x", roles=frozenset({"admin"})), "device:d1")  # no tenant


@pytest.mark.parametrize("room", ["", "x" * 257])
def test_room_name_length(room: str) -> None:
    refused("invalid_room", rules.check_room, ALICE, room, ("admin",), DEVICES.get)


def test_event_roles() -> None:
    roles = {"admin_broadcast": ("admin",), "ops": ("admin", "member")}
    rules.check_event(ADMIN_A, "admin_broadcast", roles)
    rules.check_event(ALICE, "chat", roles)  # not listed: anyone
    rules.check_event(ALICE, "ops", roles)
    refusal = refused("forbidden", rules.check_event, ALICE, "admin_broadcast", roles)
    assert refusal.status == 403 and "admin" in refusal.message


# ---------------------------------------------------------------- limits
def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=100.0)
    assert [bucket.take(now=100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(now=100.25) is False  # half a token
    assert bucket.take(now=100.5) is True  # one token after 0.5 s at 2/s
    assert bucket.take(now=100.5) is False
    # A long pause refills only up to the burst.
    assert [bucket.take(now=200.0) for _ in range(4)] == [True, True, True, False]


def test_keyed_buckets_are_independent_and_pruned() -> None:
    buckets = KeyedBuckets(rate=1.0, burst=1, max_keys=2)
    assert buckets.take("a", now=0.0) is True
    assert buckets.take("a", now=0.0) is False
    assert buckets.take("b", now=0.0) is True
    assert len(buckets) == 2
    # At the cap, idle buckets (full again) are dropped before adding one.
    assert buckets.take("c", now=5.0) is True
    assert len(buckets) == 1
    # A pruned key starts with a full bucket.
    assert buckets.take("a", now=5.0) is True


def test_tally() -> None:
    tally = Tally()
    assert tally["x"] == 0
    tally.add("x")
    tally.add("x")
    assert tally["x"] == 2
    tally.remove("x")
    tally.remove("x")
    assert tally["x"] == 0
    tally.remove("x")  # more removes than adds never go negative
    assert tally["x"] == 0


# --------------------------------------------------------- token sources
def test_extract_token_each_source() -> None:
    config = auth_config()
    assert tokens.extract_token(config, {"token": "A"}, request()) == "A"
    assert tokens.extract_token(config, {}, request(headers={"authorization": "Bearer B"})) == "B"
    assert tokens.extract_token(config, {}, request(headers={"authorization": "bearer  B2 "})) == "B2"
    assert tokens.extract_token(config, None, request(query={"token": "C"})) == "C"
    assert tokens.extract_token(config, {}, request(headers={"cookie": "a=1; token=D; b=2"})) == "D"
    assert tokens.extract_token(config, {}, request()) is None
    assert tokens.extract_token(config, {}, request(headers={"authorization": "Basic Zm9vOmJhcg=="})) is None
    assert tokens.extract_token(config, {}, request(headers={"authorization": "Bearer "})) is None


def test_extract_token_order_and_switches() -> None:
    everywhere = request(query={"token": "C"}, headers={"authorization": "Bearer B", "cookie": "token=D"})
    config = auth_config()
    assert tokens.extract_token(config, {"token": "A"}, everywhere) == "A"
    assert tokens.extract_token(config, {}, everywhere) == "B"
    assert tokens.extract_token(auth_config(sources=["cookie", "query"]), {"token": "A"}, everywhere) == "D"
    assert tokens.extract_token(auth_config(sources=["query"]), {"token": "A"}, everywhere) == "C"
    only_auth = auth_config(sources=["auth"])
    assert tokens.extract_token(only_auth, {}, everywhere) is None


def test_extract_token_custom_names() -> None:
    config = auth_config(auth_field="jwt", query_param="access_token", cookie_name="sess")
    assert tokens.extract_token(config, {"jwt": "A", "token": "x"}, request()) == "A"
    assert tokens.extract_token(config, {"token": "x"}, request(query={"access_token": "C", "token": "x"})) == "C"
    assert tokens.extract_token(config, {}, request(headers={"cookie": "token=x; sess=D"})) == "D"


@pytest.mark.parametrize("value", [123, ["a"], {"a": 1}, "x" * (tokens.MAX_TOKEN_LENGTH + 1)])
def test_extract_token_malformed(value: Any) -> None:
    refused("token_invalid", tokens.extract_token, auth_config(), {"token": value}, request())


def test_sources_are_validated() -> None:
    with pytest.raises(config_mod.ConfigError) as info:
        config_mod.structure({"auth": {"sources": ["auth", "body"]}})
    assert "auth.sources" in str(info.value)


# ----------------------------------------------------------- verification
def test_verify_valid_token(tmp_path: Path) -> None:
    config = auth_config()
    claims = tokens.verify(hs({"sub": "alice"}), ring(config, tmp_path), config)
    assert claims["sub"] == "alice"


@pytest.mark.parametrize(
    "make, code",
    [
        (lambda: hs({"sub": "a"}, secret="another-secret-another-secret-another"), "token_invalid"),
        (lambda: hs({"sub": "a", "exp": int(time.time()) - 3600}), "token_expired"),
        (lambda: hs({"sub": "a", "nbf": int(time.time()) + 3600}), "token_not_yet_valid"),
        (lambda: jwt.encode({"sub": "a"}, SECRET, algorithm="HS256"), "token_invalid"),  # no exp
        (lambda: jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, None, algorithm="none"), "token_invalid"),
        (lambda: hs({"sub": "a"})[:-4] + "AAAA", "token_invalid"),
        (lambda: "not-a-token", "token_invalid"),
        (lambda: "a.b.c", "token_invalid"),
        (lambda: "", "token_invalid"),
        (lambda: jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, SECRET, algorithm="HS512"), "token_invalid"),
        (lambda: jwt.encode({"sub": "a", "exp": "tomorrow"}, SECRET, algorithm="HS256"), "token_invalid"),
    ],
    ids=[
        "bad-signature",
        "expired",
        "not-yet-valid",
        "no-exp",
        "alg-none",
        "tampered",
        "garbage",
        "dots",
        "empty",
        "alg-not-allowed",
        "exp-not-a-number",
    ],
)
def test_verify_refusals(tmp_path: Path, make: Any, code: str) -> None:
    config = auth_config()
    refusal = refused(code, tokens.verify, make(), ring(config, tmp_path), config)
    assert SECRET not in refusal.message


def test_verify_leeway(tmp_path: Path) -> None:
    token = hs({"sub": "a", "exp": int(time.time()) - 10})
    lenient = auth_config(leeway=60)
    assert tokens.verify(token, ring(lenient, tmp_path), lenient)["sub"] == "a"
    strict = auth_config(leeway=0)
    refused("token_expired", tokens.verify, token, ring(strict, tmp_path), strict)


def test_verify_exp_optional(tmp_path: Path) -> None:
    config = auth_config(require_exp=False)
    token = jwt.encode({"sub": "a"}, SECRET, algorithm="HS256")
    assert tokens.verify(token, ring(config, tmp_path), config)["sub"] == "a"


def test_verify_issuer_and_audience(tmp_path: Path) -> None:
    config = auth_config(issuer="https://idp", audience="rt")
    keys = ring(config, tmp_path)
    assert tokens.verify(hs({"sub": "a", "iss": "https://idp", "aud": "rt"}), keys, config)["sub"] == "a"
    assert tokens.verify(hs({"sub": "a", "iss": "https://idp", "aud": ["x", "rt"]}), keys, config)["sub"] == "a"
    for claims in (
        {"iss": "https://evil", "aud": "rt"},
        {"iss": "https://idp", "aud": "other"},
        {"aud": "rt"},
        {"iss": "https://idp"},
    ):
        refused("token_invalid", tokens.verify, hs({"sub": "a", **claims}), keys, config)
    # Without a configured audience, a token's aud is not held against it.
    plain = auth_config()
    assert tokens.verify(hs({"sub": "a", "aud": "whatever"}), ring(plain, tmp_path), plain)["sub"] == "a"


def test_verify_payload_must_be_an_object(tmp_path: Path) -> None:
    config = auth_config(require_exp=False)
    token = jwt.api_jws.encode(b"[1, 2]", SECRET.encode(), algorithm="HS256")
    refused("token_invalid", tokens.verify, token, ring(config, tmp_path), config)


# ------------------------------------------------------------- key rings
def write(path: Path, data: bytes | str) -> str:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def rs(claims: dict[str, Any], key: Any = RSA_KEY, algorithm: str = "RS256", **kw: Any) -> str:
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, key, algorithm=algorithm, **kw)


def test_public_key_file_and_algorithm_confusion(tmp_path: Path) -> None:
    pem = write(tmp_path / "pub.pem", RSA_PUBLIC_PEM)
    config = auth_config(algorithms=["RS256"], public_key_file=pem)
    keys = ring(config, tmp_path)
    assert keys.secret is None  # no HMAC algorithm allowed: no secret at all
    assert tokens.verify(rs({"sub": "a"}), keys, config)["sub"] == "a"
    # HS256 signed with the public key's PEM bytes must not pass.
    forged = _hmac_token(RSA_PUBLIC_PEM, {"sub": "a", "exp": int(time.time()) + 60})
    refused("token_invalid", tokens.verify, forged, keys, config)
    refused("token_invalid", tokens.verify, hs({"sub": "a"}), keys, config)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused("token_invalid", tokens.verify, rs({"sub": "a"}, key=other), keys, config)


def test_confusion_with_both_families_allowed(tmp_path: Path) -> None:
    pem = write(tmp_path / "pub.pem", RSA_PUBLIC_PEM)
    config = auth_config(algorithms=["HS256", "RS256"], public_key_file=pem)
    keys = ring(config, tmp_path)
    assert tokens.verify(hs({"sub": "h"}), keys, config)["sub"] == "h"
    assert tokens.verify(rs({"sub": "r"}), keys, config)["sub"] == "r"
    forged = _hmac_token(RSA_PUBLIC_PEM, {"sub": "a", "exp": int(time.time()) + 60})
    refused("token_invalid", tokens.verify, forged, keys, config)


def _hmac_token(key: bytes, claims: dict[str, Any]) -> str:
    """HS256 by hand: pyjwt itself refuses to sign with PEM bytes."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    return signing + "." + b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())


def _jwk(public_key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.get_default_algorithms()[alg]
    data = json.loads(algorithm.to_jwk(public_key))
    data["kid"] = kid
    data["alg"] = alg
    return data


def test_jwks_with_kid(tmp_path: Path) -> None:
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = {
        "keys": [
            _jwk(RSA_KEY.public_key(), "r1", "RS256"),
            _jwk(other_rsa.public_key(), "r2", "RS256"),
            _jwk(EC_KEY.public_key(), "e1", "ES256"),
        ]
    }
    path = write(tmp_path / "jwks.json", json.dumps(jwks))
    config = auth_config(algorithms=["RS256", "ES256"], jwks_file=path)
    keys = ring(config, tmp_path)
    assert tokens.verify(rs({"sub": "a"}, headers={"kid": "r1"}), keys, config)["sub"] == "a"
    assert tokens.verify(rs({"sub": "b"}, key=other_rsa, headers={"kid": "r2"}), keys, config)["sub"] == "b"
    assert (
        tokens.verify(rs({"sub": "e"}, key=EC_KEY, algorithm="ES256", headers={"kid": "e1"}), keys, config)["sub"]
        == "e"
    )
    # The wrong kid, an unknown kid, no kid with several keys, a key of another type.
    refused("token_invalid", tokens.verify, rs({"sub": "a"}, headers={"kid": "r2"}), keys, config)
    refused("token_invalid", tokens.verify, rs({"sub": "a"}, headers={"kid": "zz"}), keys, config)
    refused("token_invalid", tokens.verify, rs({"sub": "a"}), keys, config)
    refused(
        "token_invalid",
        tokens.verify,
        rs({"sub": "e"}, key=EC_KEY, algorithm="ES256", headers={"kid": "r1"}),
        keys,
        config,
    )


def test_jwks_single_key_without_kid(tmp_path: Path) -> None:
    path = write(tmp_path / "jwks.json", json.dumps({"keys": [_jwk(RSA_KEY.public_key(), "only", "RS256")]}))
    config = auth_config(algorithms=["RS256"], jwks_file=path)
    keys = ring(config, tmp_path)
    assert tokens.verify(rs({"sub": "a"}), keys, config)["sub"] == "a"


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_public_key_other_families(tmp_path: Path, alg: str) -> None:
    private = EC_KEY if alg == "ES256" else ED_KEY
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    config = auth_config(algorithms=[alg], public_key_file=write(tmp_path / "pub.pem", pem))
    keys = ring(config, tmp_path)
    assert tokens.verify(rs({"sub": "a"}, key=private, algorithm=alg), keys, config)["sub"] == "a"
    # An RS256 token is refused (not allowed), and so is one by another key.
    refused("token_invalid", tokens.verify, rs({"sub": "a"}), keys, config)
    again = ec.generate_private_key(ec.SECP256R1()) if alg == "ES256" else ed25519.Ed25519PrivateKey.generate()
    refused("token_invalid", tokens.verify, rs({"sub": "a"}, key=again, algorithm=alg), keys, config)


def test_asymmetric_algorithms_need_a_public_key(tmp_path: Path) -> None:
    with pytest.raises(KeySetupError, match="RS256"):
        ring(auth_config(algorithms=["RS256"]), tmp_path)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"public_key_file": "{dir}/nope.pem", "algorithms": ["RS256"]}, "cannot read"),
        ({"public_key_file": "{dir}/garbage.pem", "algorithms": ["RS256"]}, "not a PEM public key"),
        ({"jwks_file": "{dir}/garbage.pem", "algorithms": ["RS256"]}, "auth.jwks_file"),
        ({"secret_file": "{dir}/empty"}, "is empty"),
        ({"secret_env": "RT_UNIT_UNSET"}, "RT_UNIT_UNSET"),
    ],
)
def test_key_setup_errors(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    (tmp_path / "garbage.pem").write_text("not a key")
    (tmp_path / "empty").write_text("  \n")
    config = auth_config(**{k: v.format(dir=tmp_path) if isinstance(v, str) else v for k, v in values.items()})
    with pytest.raises(KeySetupError, match=message):
        ring(config, tmp_path)


def test_secret_precedence(tmp_path: Path) -> None:
    secret_file = write(tmp_path / "secret", "from-file\n")
    config = auth_config(secret="literal", secret_file=secret_file, secret_env="MY_SECRET")
    assert ring(config, tmp_path, {"MY_SECRET": "from-env", SECRET_ENV: "global"}).secret == b"global"
    assert ring(config, tmp_path, {"MY_SECRET": "from-env"}).secret == b"from-env"
    assert ring(auth_config(secret="literal", secret_file=secret_file), tmp_path).secret == b"from-file"
    assert ring(auth_config(secret="literal"), tmp_path).secret == b"literal"


def test_generated_secret(tmp_path: Path) -> None:
    config = config_mod.structure({"auth": {}}).auth
    data_dir = tmp_path / "fresh" / "data"
    keys = KeyRing(config, str(data_dir), {})
    keys.reload()
    assert keys.generated is True
    path = data_dir / "jwt_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.secret is not None and len(keys.secret) >= 32
    assert path.read_text().strip().encode() == keys.secret
    again = KeyRing(config, str(data_dir), {})
    again.reload()
    assert again.generated is False
    assert again.secret == keys.secret
    assert ensure_generated_secret(str(data_dir)) == (keys.secret.decode(), False)


def test_reload_picks_up_new_secret_and_keeps_old_on_error(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("first-secret-first-secret-first-secret")
    config = auth_config(secret_file=str(secret_file))
    keys = ring(config, tmp_path)
    first = hs({"sub": "a"}, secret="first-secret-first-secret-first-secret")
    assert tokens.verify(first, keys, config)["sub"] == "a"
    secret_file.write_text("second-secret-second-secret-second")
    keys.reload()
    second = hs({"sub": "a"}, secret="second-secret-second-secret-second")
    assert tokens.verify(second, keys, config)["sub"] == "a"
    refused("token_invalid", tokens.verify, first, keys, config)
    secret_file.write_text("")
    with pytest.raises(KeySetupError):
        keys.reload()
    assert tokens.verify(second, keys, config)["sub"] == "a"
    os.remove(secret_file)
    with pytest.raises(KeySetupError):
        keys.reload()
    assert tokens.verify(second, keys, config)["sub"] == "a"


def test_mint_round_trip(tmp_path: Path) -> None:
    config = auth_config()
    keys = ring(config, tmp_path)
    token = tokens.mint(keys, {"sub": "alice", "tenantId": "acme"}, ttl=60)
    claims = tokens.verify(token, keys, config)
    assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 60
    no_secret = KeyRing(
        auth_config(algorithms=["RS256"], public_key_file=write(tmp_path / "p.pem", RSA_PUBLIC_PEM)), str(tmp_path), {}
    )
    no_secret.reload()
    with pytest.raises(ValueError):
        tokens.mint(no_secret, {"sub": "a"}, ttl=60)
    private_pem = RSA_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    token = tokens.mint(no_secret, {"sub": "r"}, ttl=60, private_key=private_pem, algorithm="RS256")
    rs_config = auth_config(algorithms=["RS256"], public_key_file=str(tmp_path / "p.pem"))
    assert tokens.verify(token, no_secret, rs_config)["sub"] == "r"


def test_empty_generated_secret_is_refused(tmp_path: Path) -> None:
    """A truncated data_dir/jwt_secret must not become an empty HMAC key."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "jwt_secret").write_text("\n")
    keys = KeyRing(config_mod.structure({"auth": {}}).auth, str(data_dir), {})
    with pytest.raises(KeySetupError, match="empty"):
        keys.reload()
    assert keys.secret is None


@pytest.mark.parametrize("claims", [{"sub": "bob:inbox"}, {"sub": "bob", "tenantId": "A:x"}], ids=["user", "tenant"])
def test_identity_ids_with_colons_are_refused(claims: dict[str, Any]) -> None:
    """Tenant "A:x" would own tenant A's channel "x" (room tenant:A:x), user
    "bob:inbox" bob's sub-room: ids with a colon are refused."""
    refusal = refused("token_invalid", from_claims, claims, ClaimsConfig())
    assert "':'" in refusal.message


def test_device_ids_may_contain_colons() -> None:
    identity = from_claims({"sub": "u", "tenantId": "A", "devices": ["mac:00:11"]}, ClaimsConfig())
    assert identity.devices == {"mac:00:11"}
    rules.check_room(identity, "device:mac:00:11", ("admin",), DEVICES.get)
    refused("forbidden", rules.check_room, identity, "device:mac:00", ("admin",), DEVICES.get)


def test_claim_alternatives() -> None:
    names = config_mod.structure({"auth": {"claims": {"tenant": "tenantId|org.id"}}}).auth.claims
    assert from_claims({"sub": "u", "tenantId": "t1", "org": {"id": "t2"}}, names).tenant == "t1"
    assert from_claims({"sub": "u", "org": {"id": "t2"}}, names).tenant == "t2"
    assert from_claims({"sub": "u"}, names).tenant is None
