"""Finding a token in a connection attempt and verifying it with pyjwt."""

from __future__ import annotations

import time
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any

import jwt

from ..config import AuthConfig
from ..http.messages import Request
from .errors import Refusal
from .keys import KeyRing

#: Longest token accepted; a bigger "token" is refused before any parsing.
MAX_TOKEN_LENGTH = 16384


def cookie_value(header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a Cookie header, or None."""
    jar = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def extract_token(config: AuthConfig, auth: Any, request: Request) -> str | None:
    """The first token found in the configured sources, in their order."""
    for source in config.sources:
        token: Any = None
        if source == "auth" and isinstance(auth, Mapping):
            token = auth.get(config.auth_field)
        elif source == "header":
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer":
                token = value.strip()
        elif source == "query":
            token = request.query.get(config.query_param)
        elif source == "cookie" and "cookie" in request.headers:
            token = cookie_value(request.headers["cookie"], config.cookie_name)
        if token:
            if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
                raise Refusal("token_invalid", "token is malformed")
            return token
    return None


def verify(token: str, keys: KeyRing, config: AuthConfig) -> dict[str, Any]:
    """Verify signature and registered claims; returns the claims or raises Refusal."""
    hmac = keys.hmac_only()
    if hmac is not None:
        # Only a secret is configured: no key to choose, so the header is not
        # parsed twice; pyjwt refuses any algorithm outside the HMAC allow-list.
        key, algorithms = hmac
    else:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise Refusal("token_invalid", "token is malformed") from None
        key, alg = keys.key_for(header)
        algorithms = [alg]
    required = ["exp"] if config.require_exp else []
    options: dict[str, Any] = {"require": required, "verify_aud": bool(config.audience)}
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=config.audience or None,
            issuer=config.issuer or None,
            leeway=config.leeway,
            options=options,
        )
    except jwt.ExpiredSignatureError:
        raise Refusal("token_expired", "token has expired") from None
    except jwt.ImmatureSignatureError:
        raise Refusal("token_not_yet_valid", "token is not valid yet") from None
    except jwt.InvalidIssuerError:
        raise Refusal("token_invalid", "token issuer is not accepted") from None
    except jwt.InvalidAudienceError:
        raise Refusal("token_invalid", "token audience is not accepted") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Refusal("token_invalid", f"token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidSignatureError:
        raise Refusal("token_invalid", "token signature is invalid") from None
    except (jwt.InvalidTokenError, ValueError, TypeError):
        raise Refusal("token_invalid", "token is invalid") from None
    if not isinstance(claims, dict):
        raise Refusal("token_invalid", "token payload is not an object")
    return claims


def mint(keys: KeyRing, claims: Mapping[str, Any], ttl: float | None, private_key: bytes | None = None, algorithm: str = "HS256") -> str:
    """Sign a development token with the configured secret (or a private key)."""
    now = int(time.time())
    payload = {"iat": now, **claims}
    if ttl is not None:
        payload["exp"] = now + int(ttl)
    key: Any = private_key if private_key is not None else keys.secret
    if key is None:
        raise ValueError("no HMAC secret is configured; pass a private key to sign with")
    return jwt.encode(payload, key, algorithm=algorithm)
