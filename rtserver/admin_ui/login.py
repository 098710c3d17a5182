"""Who may open the admin namespace: the UI's username and password, checked
against a bcrypt hash, or (configured explicitly) anyone.

As with the reference server, a successful login is answered with a
``session`` event carrying a session id, which the UI keeps and presents
instead of the password when it reconnects (page reload, dropped network).
Session ids live in memory for a day: after a restart the UI asks for the
password again.

bcrypt is slow by design (about 0.4 s at cost 12 here), so a password is
checked in a worker thread, one at a time, and attempts are rate-limited per
remote address: a refused or throttled login is a CONNECT_ERROR for that
client only.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import bcrypt
import trio

from ..auth.errors import Refusal
from ..auth.guard import remote_host
from ..auth.identity import Identity
from ..auth.limits import KeyedBuckets
from ..config import AdminUIConfig
from ..socketio.socket import event_frames

if TYPE_CHECKING:
    from ..socketio.socket import Socket

#: The identity of every admin UI connection (its sockets' user room is ``user:admin-ui``).
ADMIN_USER = "admin-ui"
#: The message the UI recognises (it then shows its own "invalid credentials" text).
INVALID = "invalid credentials"
SESSION_TTL = 86400.0
MAX_SESSIONS = 1000
#: Password attempts per remote address: a burst of 10, then one every 5 s.
LOGIN_BURST = 10
LOGIN_RATE = 0.2
#: bcrypt only looks at a password's first 72 bytes (bcryptjs, which the
#: reference uses, cuts there too; the Python package refuses longer ones).
_BCRYPT_MAX = 72


def hash_password(password: str, rounds: int = 12) -> str:
    """A bcrypt hash for ``[admin_ui] password_hash``."""
    return bcrypt.hashpw(password.encode()[:_BCRYPT_MAX], bcrypt.gensalt(rounds)).decode()


def password_matches(password: str, hashed: str) -> bool:
    """Blocking (slow on purpose): call it from a worker thread."""
    try:
        return bcrypt.checkpw(password.encode()[:_BCRYPT_MAX], hashed.encode())
    except ValueError:  # not a usable hash (the config check makes this unlikely)
        return False


class Login:
    """``await login(socket)`` -> the admin identity, or raises :class:`Refusal`
    (installed as the admin namespace's login in the guard)."""

    def __init__(self, config: AdminUIConfig) -> None:
        self._config = config
        self._sessions: OrderedDict[str, float] = OrderedDict()
        self._attempts = KeyedBuckets(LOGIN_RATE, LOGIN_BURST)
        self._bcrypt = trio.CapacityLimiter(1)

    async def __call__(self, socket: Socket) -> Identity:
        if self._config.auth == "none":
            return Identity(user=ADMIN_USER)
        auth: Any = socket.auth if isinstance(socket.auth, dict) else {}
        if self._session_valid(auth.get("sessionId")):
            return Identity(user=ADMIN_USER)
        username, password = auth.get("username"), auth.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise Refusal("invalid_credentials", INVALID)
        if not self._attempts.take(remote_host(socket.handshake)):
            raise Refusal("rate_limited", "too many login attempts from this address; wait and try again", 429)
        matches = await trio.to_thread.run_sync(
            password_matches, password, self._config.password_hash, limiter=self._bcrypt
        )
        if not (matches and hmac.compare_digest(username.encode(), self._config.username.encode())):
            raise Refusal("invalid_credentials", INVALID)
        # Held until the CONNECT answer has gone out, like anything sent while connecting.
        socket.deliver(event_frames(socket.namespace_name, "session", (self._new_session(),)), False)
        return Identity(user=ADMIN_USER)

    def _session_valid(self, session_id: Any) -> bool:
        if not isinstance(session_id, str):
            return False
        expires = self._sessions.get(session_id)
        if expires is None:
            return False
        if expires < time.monotonic():
            del self._sessions[session_id]
            return False
        return True

    def _new_session(self) -> str:
        session_id = secrets.token_hex(16)
        self._sessions[session_id] = time.monotonic() + SESSION_TTL
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)  # the oldest
        return session_id
