"""Request validation and caller authentication shared by every API route."""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
import cattrs
import orjson

from ..auth.errors import Refusal
from ..auth.guard import Guard
from ..auth.identity import Identity
from ..config import AuthConfig
from ..http.messages import Request, Response, error_response, json_response
from ..jsonlimits import TooDeep, loads
from ..validation import describe, strict_converter

T = TypeVar("T")

API_KEY_ENV = "RTSERVER_API_KEY"
CONVERTER = strict_converter()



class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> Response:
        return error_response(self.status, self.code, self.message)


def unavailable(exc: Exception) -> ApiError:
    """A write the store could not keep: 503, nothing acknowledged."""
    return ApiError(503, "store_unavailable", f"the store cannot keep this right now ({exc}); it was not stored")


def parse_body(request: Request, kind: type[T]) -> T:
    """Decode a JSON body into ``kind``; a 400 naming the field otherwise."""
    if not request.body:
        raise ApiError(400, "invalid_body", "a JSON body is required")
    try:
        data = loads(request.body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    except TooDeep as exc:
        raise ApiError(400, "invalid_body", str(exc)) from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    try:
        return CONVERTER.structure(data, kind)
    except cattrs.BaseValidationError as exc:
        raise ApiError(400, "invalid_body", "; ".join(describe(exc, root="body"))) from None
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "invalid_body", str(exc)) from None


def ok(payload: Any, status: int = 200) -> Response:
    return json_response(status, payload)


@attrs.frozen
class Call:
    """One API request as a handler sees it."""

    request: Request
    params: list[str]
    #: The verified JWT identity, or None for a caller with an API key (trusted).
    caller: Identity | None


Handler = Callable[[Call], Awaitable[Response]]

#: Who may call a route: "admin" (API key or admin JWT), "user" (API key or any
#: valid JWT), "public" (anyone).
Access = str


def api_keys(auth: AuthConfig) -> list[str]:
    """The configured API keys and RTSERVER_API_KEY's."""
    keys = [*auth.api_keys, os.environ.get(API_KEY_ENV, "")]
    return [k for k in keys if k]


class CallerAuth:
    """Server-to-server callers use an API key (config or RTSERVER_API_KEY);
    people use their JWT, with the same checks as a socket connection."""

    def __init__(self, guard: Guard) -> None:
        self._guard = guard
        self._api_keys = [k.encode() for k in api_keys(guard.auth)]

    async def check(self, request: Request, access: Access) -> Identity | None:
        if access == "public":
            return None
        presented = request.headers.get("x-api-key", "")
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        if not presented and scheme.lower() == "bearer":
            presented = bearer.strip()
        return await self.check_credential(presented, access)

    async def check_credential(self, presented: str, access: Access) -> Identity | None:
        """``check`` for a credential already taken from its request (the
        dashboard's login form and its socket use it too)."""
        if not presented:
            raise ApiError(401, "auth_required", "an API key or a token is required")
        candidate = presented.encode()
        if any(hmac.compare_digest(candidate, key) for key in self._api_keys):
            return None
        if presented.count(".") != 2:
            raise ApiError(401, "token_invalid", "the API key or token is not valid")
        try:
            identity = await self._guard.identify(presented)
        except Refusal as refusal:
            raise ApiError(401, refusal.code, refusal.message) from None
        if access == "admin" and not identity.has_role(self._guard.auth.admin_roles):
            raise ApiError(403, "forbidden", "the token does not carry an admin role")
        return identity


def caller_tenant(call: Call, named: str | None, unnamed: str, foreign: str, tenantless: str | None = None) -> str:
    """The tenant an "admin" route acts for.

    An API-key caller is trusted but must name it (``named``; else 400
    ``unnamed``); an admin JWT acts for its own tenant only (403 ``foreign``
    for another; ``tenantless``, else ``foreign``, for a token without one).
    """
    caller = call.caller
    if caller is None:
        if not named:
            raise ApiError(400, "invalid_body", unnamed)
        return named
    if not caller.tenant:
        raise ApiError(403, "forbidden", tenantless or foreign)
    if named is not None and named != caller.tenant:
        raise ApiError(403, "forbidden", foreign)
    return caller.tenant
