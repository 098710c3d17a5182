"""Who a socket is: user, tenant, roles, devices, from verified claims."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ..config import ClaimsConfig
from .errors import Refusal

ANONYMOUS_PREFIX = "anonymous:"


@attrs.frozen
class Identity:
    user: str
    tenant: str | None = None
    roles: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    token_version: int = 0
    session: str | None = None
    expires_at: float | None = None
    #: The connection's presented device, when it owns it.
    device: str | None = None
    claims: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def anonymous(self) -> bool:
        return self.user.startswith(ANONYMOUS_PREFIX)

    def has_role(self, roles: tuple[str, ...] | frozenset[str]) -> bool:
        return not self.roles.isdisjoint(roles)


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """``claims["a"]["b"]`` for the path ``a.b``; None when absent.

    ``tenantId|companyId`` tries each alternative in turn, so one server can
    serve applications that name a claim differently."""
    for alternative in path.split("|"):
        value: Any = claims
        for part in alternative.split("."):
            if not isinstance(value, Mapping) or part not in value:
                value = None
                break
            value = value[part]
        if value is not None:
            return value
    return None


def set_claim(claims: dict[str, Any], path: str, value: Any) -> None:
    """Write ``value`` where :func:`claim` reads it first (the first alternative)."""
    *parents, last = path.split("|")[0].split(".")
    for part in parents:
        claims = claims.setdefault(part, {})
    claims[last] = value


#: Shared by every identity without roles or devices (most): one set less each.
_NO_NAMES: frozenset[str] = frozenset()


def _names(value: Any) -> frozenset[str]:
    names = _NO_NAMES
    if isinstance(value, str):
        names = frozenset(value.replace(",", " ").split())
    elif isinstance(value, list):
        names = frozenset(str(v) for v in value if isinstance(v, str | int) and not isinstance(v, bool))
    return names or _NO_NAMES


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def from_claims(claims: Mapping[str, Any], names: ClaimsConfig) -> Identity:
    user = _text(claim(claims, names.user))
    if user is None:
        raise Refusal("token_invalid", f"token lacks a usable {names.user!r} claim")
    version = claim(claims, names.token_version)
    if version is None:
        version = 0
    if not isinstance(version, int) or isinstance(version, bool):
        raise Refusal("token_invalid", f"token claim {names.token_version!r} is not an integer")
    tenant = _text(claim(claims, names.tenant))
    # Room names are "user:{u}[:...]" and "tenant:{t}[:...]": an id with a colon
    # would name another user's or tenant's sub-rooms (tenant "A:x" is tenant
    # A's channel "x"), so such ids are refused rather than mixed up.
    for name, value in ((names.user, user), (names.tenant, tenant)):
        if value is not None and ":" in value:
            raise Refusal("token_invalid", f"token claim {name!r} may not contain ':'")
    exp = claims.get("exp")
    return Identity(
        user=user,
        tenant=tenant,
        roles=_names(claim(claims, names.roles)),
        devices=_names(claim(claims, names.devices)),
        token_version=version,
        session=_text(claim(claims, names.session)),
        expires_at=float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None,
        claims=dict(claims),
    )


def anonymous(sid: str) -> Identity:
    """The identity of a connection when authentication is switched off."""
    return Identity(user=ANONYMOUS_PREFIX + sid)
