"""The dashboard's admin-only Socket.IO namespace.

Who may connect: a socket carrying the dashboard's session cookie (the page;
only from the page's own origin), or one presenting an admin JWT or an API
key as ``auth.token`` or ``Authorization: Bearer`` (scripts).  Anything else
gets ``connect_error`` with ``auth_required``, ``forbidden``,
``session_expired`` or the token's refusal code.  The socket's identity is
the operator (no tenant: a watcher is nobody's presence), and a token's
expiry or revocation ends it as it ends any socket.

Events, each answered in its ack (``{"error": {code, message}}`` when
refused; ``session_expired`` once the login is over):

- ``overview {since}``, ``devices {tenant, text, status, sort, limit}``,
  ``users {tenant, text, limit}``, ``rooms {namespace, text, limit}``: the
  views (:mod:`.views`);
- ``tail {running, tenant, room, event}``: start, refilter or stop this
  socket's event tail; batches arrive as ``tail {events, dropped}`` events;
- ``action {action: disconnect|revoke|layout|notify, ...}``: see
  :mod:`.actions`;
- ``whoami``: ``{operator, expires}``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import cattrs

from ..api.common import CONVERTER, ApiError, CallerAuth
from ..auth.errors import Refusal
from ..auth.identity import Identity
from ..auth.tokens import MAX_TOKEN_LENGTH, cookie_value
from ..validation import describe
from .actions import KINDS, Actions
from .sessions import COOKIE, LoginSessions, Operator, operator_for
from .tail import Tail, TailFilter
from .views import DevicesQuery, OverviewQuery, RoomsQuery, UsersQuery, Views

if TYPE_CHECKING:
    from ..app import App
    from ..config import Config
    from ..socketio.socket import Socket

log = logging.getLogger("rtserver.dashboard")

_OPERATOR = "dashboard.operator"


def same_origin(headers: Any) -> bool:
    """A browser request from the page's own origin (or not from a browser)."""
    origin = headers.get("origin")
    return origin is None or origin.split("://", 1)[-1] == headers.get("host", "")


def _session_over() -> Refusal:
    return Refusal("session_expired", "the dashboard session is over: log in again")


def _parse(kind: type, data: Any) -> Any:
    try:
        return CONVERTER.structure(data if data is not None else {}, kind)
    except cattrs.BaseValidationError as exc:
        raise Refusal("invalid_request", "; ".join(describe(exc, root="request")), 400) from None
    except (ValueError, TypeError) as exc:
        raise Refusal("invalid_request", str(exc), 400) from None


class Live:
    def __init__(
        self,
        config: Config,
        caller_auth: CallerAuth,
        sessions: LoginSessions,
        views: Views,
        tail: Tail,
        actions: Actions,
    ) -> None:
        self._config = config
        self.namespace = config.dashboard.namespace
        self._caller_auth = caller_auth
        self._sessions = sessions
        self._views = views
        self._tail = tail
        self._actions = actions

    # ---------------------------------------------------------- connecting
    async def authenticate(self, socket: Socket) -> Identity:
        """The guard's authenticator for the namespace: the operator, or Refusal."""
        request = socket.handshake
        session_id = cookie_value(request.headers.get("cookie", ""), COOKIE)
        if session_id is not None:
            if not same_origin(request.headers):
                raise Refusal("forbidden", "the dashboard's session works from its own page only", 403)
            operator = self._sessions.get(session_id)
            if operator is None:
                raise _session_over()
            await self._recheck(operator)
        else:
            credential = self._presented(socket)
            operator = operator_for(credential, await self._check(credential), None)
        socket.data[_OPERATOR] = operator
        identity = operator.identity
        return Identity(
            user=operator.who,
            roles=frozenset(self._config.auth.admin_roles),
            token_version=0 if identity is None else identity.token_version,
            expires_at=operator.expires,
        )

    def _presented(self, socket: Socket) -> str:
        auth = socket.auth if isinstance(socket.auth, dict) else {}
        token = auth.get(self._config.auth.auth_field)
        if token is None:
            scheme, _, value = socket.handshake.headers.get("authorization", "").partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else None
        if not token:
            raise Refusal("auth_required", "the dashboard needs an admin token, an API key or a login")
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise Refusal("token_invalid", "token is malformed")
        return token

    async def _check(self, credential: str) -> Identity | None:
        try:
            return await self._caller_auth.check_credential(credential, "admin")
        except ApiError as exc:
            raise Refusal(exc.code, exc.message, exc.status) from None

    async def _recheck(self, operator: Operator) -> None:
        """The login's credential must still be accepted (not revoked, expired or removed)."""
        try:
            await self._check(operator.credential)
        except Refusal:
            self._sessions.close(operator)
            raise _session_over() from None

    def _operator(self, socket: Socket) -> Operator:
        operator: Operator = socket.data[_OPERATOR]
        if not operator.valid():
            raise _session_over()
        return operator

    # ------------------------------------------------------------- events
    def install(self, builtins: App) -> None:
        on = builtins.on
        ns = self.namespace

        async def overview(socket: Socket, query: Any = None) -> dict[str, Any]:
            self._operator(socket)
            return await self._views.overview(_parse(OverviewQuery, query))

        async def devices(socket: Socket, query: Any = None) -> dict[str, Any]:
            self._operator(socket)
            return await self._views.devices(_parse(DevicesQuery, query))

        def users(socket: Socket, query: Any = None) -> dict[str, Any]:
            self._operator(socket)
            return self._views.users(_parse(UsersQuery, query))

        def rooms(socket: Socket, query: Any = None) -> dict[str, Any]:
            self._operator(socket)
            return self._views.rooms(_parse(RoomsQuery, query))

        def tail(socket: Socket, request: Any = None) -> dict[str, Any]:
            self._operator(socket)
            request = dict(request) if isinstance(request, dict) else {}
            running = request.pop("running", False)
            if running is not True:
                self._tail.unwatch(socket)
                return {"running": False}
            wanted = _parse(TailFilter, {k: v or None for k, v in request.items()})
            self._tail.watch(socket, wanted)
            return {"running": True}

        async def action(socket: Socket, request: Any = None) -> dict[str, Any]:
            operator = self._operator(socket)
            if operator.session_id is not None:
                await self._recheck(operator)
            request = dict(request) if isinstance(request, dict) else {}
            kind = request.pop("action", None)
            if kind not in KINDS:
                raise Refusal("invalid_request", f"action: one of {', '.join(KINDS)}", 400)
            parsed = _parse(KINDS[kind], request)
            try:
                return await self._actions.run(operator, socket.handshake.remote, kind, parsed)
            except ValueError as exc:
                raise Refusal("unavailable", str(exc), 400) from None

        def whoami(socket: Socket, _: Any = None) -> dict[str, Any]:
            operator = self._operator(socket)
            return {"operator": operator.who, "expires": operator.expires, "now": time.time()}

        for name, handler in (("overview", overview), ("devices", devices), ("users", users), ("rooms", rooms),
                              ("tail", tail), ("action", action), ("whoami", whoami)):
            on(name, handler, namespace=ns)

    # ------------------------------------------------------------ listener
    def connected(self, socket: Socket) -> None:
        operator: Operator | None = socket.data.get(_OPERATOR)
        if operator is not None and socket.namespace_name == self.namespace:
            operator.sockets.add(socket)

    def disconnected(self, socket: Socket, reason: str) -> None:
        if socket.namespace_name != self.namespace:
            return
        self._tail.unwatch(socket)
        operator: Operator | None = socket.data.get(_OPERATOR)
        if operator is not None:
            operator.sockets.discard(socket)
