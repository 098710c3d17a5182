"""Who is looking at the dashboard: operators and their login sessions.

A login keeps, on the server only, what the operator presented (an API key or
an admin JWT): every view and action checks it again, and actions are made
with it through the HTTP API (see :mod:`.actions`), so a revoked token or a
removed key stops a session at once.  The browser holds nothing but a random
session id in an HttpOnly, SameSite=Strict cookie limited to the dashboard's
path.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

import attrs

from ..auth.identity import Identity

if TYPE_CHECKING:
    from ..socketio.socket import Socket

COOKIE = "rtserver_dashboard"
#: Who an API-key login acts as (logs, the page's header).
API_KEY_OPERATOR = "api-key"


@attrs.define(eq=False)
class Operator:
    """One operator's access: from a login session, or straight from the
    credential a socket presented (an admin JWT or an API key)."""

    #: The admin token's user, or :data:`API_KEY_OPERATOR`.
    who: str
    #: What was presented; kept here to check again and to act with, never sent out.
    credential: str = attrs.field(repr=False)
    #: The admin token's identity; None for an API key.
    identity: Identity | None
    #: time.time() after which this access ends (None: when its token ends, or never).
    expires: float | None
    #: The login session's id (its cookie value); None for a socket's own credential.
    session_id: str | None = None
    #: Dashboard sockets using this login, ended by a logout.
    sockets: set[Socket] = attrs.Factory(set)

    def valid(self, now: float | None = None) -> bool:
        return self.expires is None or (time.time() if now is None else now) < self.expires


def operator_for(credential: str, identity: Identity | None, ttl: float | None, now: float | None = None) -> Operator:
    """An operator for a checked credential: ``ttl`` seconds at most, and no
    longer than the token's own expiry."""
    now = time.time() if now is None else now
    ends = [t for t in (None if ttl is None else now + ttl, None if identity is None else identity.expires_at) if t]
    who = API_KEY_OPERATOR if identity is None else identity.user
    return Operator(who, credential, identity, min(ends) if ends else None)


class LoginSessions:
    """Login sessions by id, each ending ``ttl`` seconds after login at most.

    At most ``limit`` are kept: a new login beyond it drops the expired ones,
    then the oldest.
    """

    def __init__(self, ttl: float, limit: int = 1000) -> None:
        self.ttl = ttl
        self.limit = limit
        self._sessions: dict[str, Operator] = {}

    def open(self, credential: str, identity: Identity | None, now: float | None = None) -> Operator:
        now = time.time() if now is None else now
        if len(self._sessions) >= self.limit:
            for key in [k for k, o in self._sessions.items() if not o.valid(now)]:
                del self._sessions[key]
            while len(self._sessions) >= self.limit:
                del self._sessions[next(iter(self._sessions))]
        operator = operator_for(credential, identity, self.ttl, now)
        operator.session_id = secrets.token_urlsafe(32)
        self._sessions[operator.session_id] = operator
        return operator

    def get(self, session_id: str | None, now: float | None = None) -> Operator | None:
        """The live session with this id; an expired one is forgotten."""
        operator = self._sessions.get(session_id) if session_id else None
        if operator is not None and not operator.valid(now):
            self.close(operator)
            return None
        return operator

    def close(self, operator: Operator) -> None:
        """End a session (logout, expiry, a credential no longer accepted)
        and disconnect the sockets using it."""
        if operator.session_id is not None:
            self._sessions.pop(operator.session_id, None)
        for socket in list(operator.sockets):
            socket.disconnect()
        operator.sockets.clear()

    def __len__(self) -> int:
        return len(self._sessions)


def set_cookie(value: str, path: str, secure: bool, max_age: int) -> tuple[str, str]:
    """The Set-Cookie header for the session id (``max_age`` 0 deletes it)."""
    parts = [f"{COOKIE}={value}", f"Path={path}", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "Set-Cookie", "; ".join(parts)
