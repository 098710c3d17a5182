"""The action framework (seed 001): REQUEST/RESPONSE/UPDATE/ERROR envelopes on ``message``.

Clients connect on the ``/realtime`` path (list it in ``engineio.paths``) with
``io(url, {path: "/realtime", auth: {token}, query: {sessionId, artifactId}})``
and talk through one event, ``message``::

    -> {type: "REQUEST",  requestId, action, data}
    <- {type: "RESPONSE", requestId, action, data}
    <- {type: "ERROR",    requestId, action, error: {code, message}}
    <- {type: "UPDATE",   requestId, action, data}       (pushed)

Connecting
    The token's tenant claim is the company (``auth.claims.tenant = "companyId"``);
    a token without one is refused (``tenant_required``).  ``sessionId`` (query
    parameter, or the same field of the auth payload) is required
    (``session_required``; "undefined" and "null", which socket.io-client sends
    for a missing value, count as missing) and checked (``session_invalid``) per
    ``session_check``: ``"claim"`` — it must equal the token's session claim
    (``auth.claims.session``); ``"url"`` — ``GET session_check_url`` (with
    ``{sessionId}`` filled in and the user's token as ``Authorization: Bearer``)
    must answer 2xx, 401/403/404 mean invalid and anything else, or no answer
    within ``session_check_timeout``, refuses with ``session_check_failed``;
    ``"none"`` — only required.  An optional ``artifactId`` subscribes the
    socket to that artifact's updates (``artifact_invalid`` when malformed).
    Refusals arrive as CONNECT_ERROR, i.e. ``connect_error`` with
    ``err.data.code``.  Only sockets whose Engine.IO path is one of ``paths``
    are held to this (and served on ``message``); others are left alone.

Envelope form
    The document's client parses a message with ``typeof message === 'string'
    ? JSON.parse(message) : message`` and its use-case snippets call
    ``JSON.parse(message)`` on updates unconditionally.  So with the default
    ``envelope_format = "mirror"`` an answer has the form of its request (a
    JSON string for a string, an object for an object) and pushed UPDATEs are
    JSON strings; ``"string"`` and ``"object"`` force one form for everything.
    A request sent with an ack callback also gets the envelope (as an object)
    in its ack.

Errors (``error.code``)
    ``INVALID_MESSAGE`` (not JSON, not an object, type not REQUEST, missing or
    non-string requestId/action, wrong argument count), ``MESSAGE_TOO_LARGE``,
    ``UNKNOWN_ACTION``, ``FORBIDDEN`` (roles), ``TIMEOUT``, ``RATE_LIMITED``
    (the guard's event rate limit, shaped into this envelope through the
    server's refusal shapers — the refused message is not parsed, so its
    ``requestId`` is null), ``INTERNAL_ERROR``, ``BACKEND_UNAVAILABLE`` /
    ``BACKEND_ERROR`` (forwarding), or a code of the handler's own.  Errors go
    to the offending socket only.

Where actions come from (first match wins)
    1. Python handlers an application registers (they take precedence, like
       the application's socket handlers)::

           from rtserver.features.actions import ActionCall, ActionError, register_action

           @register_action(app, "processData", roles=("editor",), timeout=30)
           async def process(call: ActionCall) -> dict:
               call.update({"progress": 50})     # UPDATE with this requestId
               if not call.data:
                   raise ActionError("INVALID_INPUT", "data is required")
               return {"done": True}             # RESPONSE data

       ``register_action(app_or_ctx, name, handler=None, *, roles=None,
       timeout=None)`` works before the server starts (it is keyed by the
       :class:`~rtserver.App`) and as a plain call or a decorator.  Handlers may
       be sync (run inline: keep them short) or async (cancelled on timeout
       or disconnect).
    2. Built-in actions (``builtin_actions``): ``ping`` -> ``{pong, time}``,
       ``echo`` -> data, ``whoami`` -> ``{userId, companyId, roles,
       sessionId, artifactIds}``, ``subscribeArtifact`` /
       ``unsubscribeArtifact`` with ``{artifactId}`` (or the id as a string).
    3. ``forward_url`` (optional): ``POST`` the request to the application's
       back end (``{action}`` in the URL is filled in) with the body
       ``{action, requestId, data, sessionId, artifactId, userId, companyId,
       roles}`` and headers ``X-User-Id``, ``X-Company-Id``, ``X-Session-Id``,
       ``X-User-Roles``, ``X-Request-Id``, ``X-Artifact-Id`` and (with
       ``forward_token``) ``Authorization: Bearer <the user's token>``.  A 2xx
       JSON answer is the RESPONSE data; otherwise its ``{code, message}`` (or
       ``{error: {code, message}}``) is the ERROR, else a code from the status
       (401/403 FORBIDDEN, 404 UNKNOWN_ACTION, 429 RATE_LIMITED, 408/504
       TIMEOUT, other BACKEND_ERROR).  The call runs with the stdlib in a
       worker thread (no redirects, no environment proxies), bounded by the
       action's timeout and ``max_forward_bytes``.

    Roles: ``roles[action]`` from the config, else the handler's ``roles``, else
    ``default_roles``; empty means any connected user.  Timeout likewise:
    ``timeouts[action]``, the handler's, ``default_timeout``.

Updates
    ``send_update(app_or_ctx_or_server, company_id, message, artifact_id=None)``
    (the seed's ``sendUpdate``) and ``POST /api/v1/actions/updates``
    ``{companyId, message, artifactId?}`` (API key or an admin token of that
    company; answers ``{delivered}``) push an UPDATE to every actions socket of
    the company, or, with ``artifactId``, only to those that connected with or
    subscribed to that artifact.  ``type`` defaults to ``UPDATE`` and
    ``requestId`` to the current time in milliseconds.  Rooms are
    ``tenant:{company}:actions`` and ``tenant:{company}:actions:artifact:{id}``,
    so companies never meet.

Test console
    ``GET /console/`` (public, no secrets in it) serves a self-contained page
    that speaks Engine.IO/Socket.IO over a plain browser WebSocket: connect
    with token, session, artifact and path, send REQUEST envelopes, watch
    RESPONSE/UPDATE/ERROR.
"""

from __future__ import annotations

import inspect
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

import attrs
import orjson
import trio
from attrs import validators as v

from ..api.common import ApiError, Call, ok, parse_body
from ..app import App
from ..auth import tokens
from ..auth.errors import Refusal
from ..auth.identity import Identity
from ..faults import report
from ..http.messages import Response
from ..jsonlimits import TooDeep, loads
from ..socketio.packets import Packet, PacketType
from ..socketio.socket import Socket, to_frames

if TYPE_CHECKING:
    from . import Context

log = logging.getLogger("rtserver.features.actions")

_STATE = "actions"
_MAX_ID = 128
_positive = v.gt(0)


def _http_url(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError(f"'{attribute.name}' must be an http:// or https:// URL", attribute)


@attrs.frozen
class Settings:
    #: Engine.IO paths whose sockets speak this vocabulary (empty: every path).
    paths: tuple[str, ...] = attrs.field(default=("/realtime",), validator=v.deep_iterable(v.matches_re(r"/.*")))
    #: The one event envelopes travel on, both ways.
    event: str = attrs.field(default="message", validator=v.min_len(1))
    session_param: str = attrs.field(default="sessionId", validator=v.min_len(1))
    artifact_param: str = attrs.field(default="artifactId", validator=v.min_len(1))
    require_tenant: bool = True
    require_session: bool = True
    #: How a sessionId is checked: "claim", "url" or "none" (see the module doc).
    session_check: str = attrs.field(default="claim", validator=v.in_(["claim", "url", "none"]))
    session_check_url: str = attrs.field(default="", validator=_http_url)
    session_check_timeout: float = attrs.field(default=5.0, validator=_positive)
    #: "mirror", "string" or "object" (see the module doc).
    envelope_format: str = attrs.field(default="mirror", validator=v.in_(["mirror", "string", "object"]))
    max_message_bytes: int = attrs.field(default=65536, validator=v.ge(256))
    default_timeout: float = attrs.field(default=10.0, validator=_positive)
    timeouts: dict[str, float] = attrs.Factory(dict)
    default_roles: tuple[str, ...] = ()
    roles: dict[str, tuple[str, ...]] = attrs.Factory(dict)
    builtin_actions: tuple[str, ...] = attrs.field(
        default=("ping", "echo", "whoami", "subscribeArtifact", "unsubscribeArtifact"),
        validator=v.deep_iterable(v.in_(["ping", "echo", "whoami", "subscribeArtifact", "unsubscribeArtifact"])),
    )
    #: Artifacts one socket may follow at once.
    max_artifacts: int = attrs.field(default=20, validator=v.ge(1))
    forward_url: str = attrs.field(default="", validator=_http_url)
    #: Actions forwarded when no handler knows them; "*" means any.
    forward_actions: tuple[str, ...] = ("*",)
    forward_token: bool = True
    max_forward_bytes: int = attrs.field(default=1 << 20, validator=v.ge(1024))
    #: HTTP routes; an empty string switches one off.
    updates_route: str = "/api/v1/actions/updates"
    console_route: str = "/console/"

    def __attrs_post_init__(self) -> None:
        if self.session_check == "url" and not self.session_check_url:
            raise ValueError("'session_check_url' is required when session_check is \"url\"")


# --------------------------------------------------------------- public API
class ActionError(Exception):
    """Raise in an action handler to answer ``ERROR {code, message}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attrs.frozen
class ActionCall:
    """What an action handler receives."""

    socket: Socket
    identity: Identity
    action: str
    data: Any
    request_id: Any
    session_id: str
    artifact_id: str | None
    _feature: Actions = attrs.field(repr=False)
    _as_string: bool = attrs.field(repr=False)

    @property
    def company_id(self) -> str | None:
        return self.identity.tenant

    def update(self, data: Any) -> bool:
        """Push an UPDATE carrying this request's id and action to the caller."""
        envelope = {"type": "UPDATE", "requestId": self.request_id, "action": self.action, "data": data}
        return self._feature.send(self.socket, envelope, self._as_string)


ActionHandler = Callable[[ActionCall], Any]


@attrs.frozen
class Action:
    handler: ActionHandler
    roles: tuple[str, ...] | None = None
    timeout: float | None = None


_REGISTRY: weakref.WeakKeyDictionary[App, dict[str, Action]] = weakref.WeakKeyDictionary()
_INSTALLED: weakref.WeakKeyDictionary[App, Actions] = weakref.WeakKeyDictionary()


def _app_of(target: Any) -> App:
    """An App from an App, a feature Context (``.app``) or a RunningServer (``.sio.app``)."""
    if isinstance(target, App):
        return target
    for app in (getattr(target, "app", None), getattr(getattr(target, "sio", None), "app", None)):
        if isinstance(app, App):
            return app
    raise TypeError(f"expected an App, a feature Context or a RunningServer, got {type(target).__name__}")


def register_action(
    target: Any,
    name: str,
    handler: ActionHandler | None = None,
    *,
    roles: tuple[str, ...] | list[str] | None = None,
    timeout: float | None = None,
) -> Any:
    """Register ``handler(call: ActionCall)`` for ``name``; usable as a decorator.

    ``roles``: any one of them is needed (None: the configured default);
    ``timeout``: seconds (None: the configured default).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("an action name is a non-empty string")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be positive")
    app = _app_of(target)

    def register(fn: ActionHandler) -> ActionHandler:
        entry = Action(fn, None if roles is None else tuple(roles), timeout)
        _REGISTRY.setdefault(app, {})[name] = entry
        return fn

    return register(handler) if handler is not None else register


def send_update(target: Any, company_id: str, message: dict[str, Any], artifact_id: str | None = None) -> int:
    """The seed's ``sendUpdate``: push ``message`` to a company's (or one of its
    artifacts') actions sockets, on every node with ``[cluster]``; returns how
    many on this node took it."""
    feature = _INSTALLED.get(_app_of(target))
    if feature is None:
        raise RuntimeError("the actions feature is not running for this app")
    return feature.publish_update(company_id, message, artifact_id)


# ----------------------------------------------------------------- helpers
def _error(request_id: Any, code: str, message: str, action: str | None = None) -> dict[str, Any]:
    envelope: dict[str, Any] = {"type": "ERROR", "requestId": request_id}
    if action is not None:
        envelope["action"] = action
    envelope["error"] = {"code": code, "message": message}
    return envelope


#: What a missing id looks like: the document's client builds its query with
#: ``{sessionId, ...}``, and socket.io-client sends an undefined value as "undefined".
_ABSENT = (None, "", "undefined", "null")


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_ID and value.isprintable()


def _mount(path: str) -> str:
    return path.rstrip("/") + "/"


@attrs.define
class _SocketState:
    session_id: str
    company: str | None
    token: str | None
    #: The artifact given at connect time, if any.
    artifact: str | None = None
    artifacts: set[str] = attrs.Factory(set)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def _http(
    method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float, limit: int
) -> tuple[int, bytes]:
    """One blocking HTTP exchange (run it in a worker thread): (status, body up to limit+1 bytes)."""
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            return answer.status, answer.read(limit + 1)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(limit + 1)


async def _http_in_thread(method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float,
                          limit: int) -> tuple[int, bytes]:
    with trio.fail_after(timeout):
        return await trio.to_thread.run_sync(_http, method, url, body, headers, timeout, limit, abandon_on_cancel=True)


_STATUS_CODES = {401: "FORBIDDEN", 403: "FORBIDDEN", 408: "TIMEOUT", 429: "RATE_LIMITED", 504: "TIMEOUT"}


# ----------------------------------------------------------------- feature
class Actions:
    def __init__(self, ctx: Context, settings: Settings) -> None:
        self.ctx = ctx
        self.settings = settings
        self._paths = frozenset(_mount(p) for p in settings.paths)
        self._console: bytes | None = None
        self._builtins: dict[str, Action] = {
            name: Action(fn)
            for name, fn in {
                "ping": self._ping,
                "echo": self._echo,
                "whoami": self._whoami,
                "subscribeArtifact": self._subscribe,
                "unsubscribeArtifact": self._unsubscribe,
            }.items()
            if name in settings.builtin_actions
        }

    # ------------------------------------------------------------ rooms
    @staticmethod
    def company_room(company: str) -> str:
        return f"tenant:{company}:actions"

    @staticmethod
    def artifact_room(company: str | None, artifact: str) -> str:
        return f"tenant:{company}:actions:artifact:{artifact}"

    # ------------------------------------------------------------ sending
    def _as_string(self, request_was_string: bool) -> bool:
        fmt = self.settings.envelope_format
        return fmt == "string" or (fmt == "mirror" and request_was_string)

    def _encode(self, envelope: dict[str, Any], as_string: bool) -> Any:
        return orjson.dumps(envelope).decode() if as_string else envelope

    def send(self, socket: Socket, envelope: dict[str, Any], request_was_string: bool) -> bool:
        return socket.emit(self.settings.event, self._encode(envelope, self._as_string(request_was_string)))

    def publish_update(self, company: str, message: dict[str, Any], artifact: str | None = None) -> int:
        if not isinstance(company, str) or not company:
            raise ValueError("company_id is a non-empty string")
        if artifact is not None and not _valid_id(artifact):
            raise ValueError(f"artifact_id is 1 to {_MAX_ID} printable characters")
        if not isinstance(message, dict):
            raise TypeError("message is a dict (the UPDATE envelope)")
        envelope = {"type": "UPDATE", "requestId": str(int(time.time() * 1000)), **message}
        room = self.company_room(company) if artifact is None else self.artifact_room(company, artifact)
        # Pushed updates are strings unless envelope_format is "object" (see the module doc).
        payload = self._encode(envelope, self.settings.envelope_format != "object")
        return self.ctx.app.emit(self.settings.event, payload, to=room)

    # ------------------------------------------------------------ connect
    def _serves(self, socket: Socket) -> bool:
        return not self._paths or _mount(socket.handshake.path) in self._paths

    def _presented(self, socket: Socket, name: str) -> Any:
        value = socket.handshake.query.get(name)
        if value is None and isinstance(socket.auth, dict):
            value = socket.auth.get(name)
        return value

    async def connect(self, socket: Socket, auth: Any) -> None:
        """Connect middleware: tenant, session and artifact, then the rooms."""
        if not self._serves(socket):
            return
        identity = socket.identity
        assert identity is not None
        s = self.settings
        if s.require_tenant and identity.tenant is None:
            raise Refusal("tenant_required", "the token carries no company", 403)
        session = self._presented(socket, s.session_param)
        if session in _ABSENT:
            if s.require_session:
                raise Refusal("session_required", f"a {s.session_param} query parameter is required", 401)
            session = ""
        elif not _valid_id(session):
            raise Refusal("session_invalid", "the session id is malformed", 401)
        auth_config = self.ctx.guard.auth
        # Kept for the session check and forwarding: the back end sees the user's own token.
        token = tokens.extract_token(auth_config, socket.auth, socket.handshake) if auth_config.enabled else None
        if session:
            await self._check_session(identity, session, token)
        artifact = self._presented(socket, s.artifact_param)
        if artifact in _ABSENT:
            artifact = None
        if artifact is not None and not _valid_id(artifact):
            raise Refusal("artifact_invalid", f"{s.artifact_param} is 1 to {_MAX_ID} printable characters", 400)
        state = _SocketState(session, identity.tenant, token, artifact)
        socket.data[_STATE] = state
        if identity.tenant is not None:
            socket.join(self.company_room(identity.tenant))
        if artifact is not None:
            state.artifacts.add(artifact)
            socket.join(self.artifact_room(identity.tenant, artifact))

    async def _check_session(self, identity: Identity, session: str, token: str | None) -> None:
        s = self.settings
        if s.session_check == "claim":
            if identity.session is None:
                raise Refusal("session_invalid", "the token carries no session", 401)
            if identity.session != session:
                raise Refusal("session_invalid", "the session does not match the token", 401)
        elif s.session_check == "url":
            url = s.session_check_url.replace("{sessionId}", urllib.parse.quote(session, safe=""))
            headers = {"Accept": "application/json", "X-User-Id": identity.user}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            try:
                status, _ = await _http_in_thread("GET", url, None, headers, s.session_check_timeout, 4096)
            except (trio.TooSlowError, OSError, ValueError) as exc:
                log.warning("session check failed: %s", exc)
                raise Refusal("session_check_failed", "the session could not be checked", 503) from None
            if status in (401, 403, 404):
                raise Refusal("session_invalid", "the session is not valid", 401)
            if not 200 <= status < 300:
                log.warning("session check answered %d", status)
                raise Refusal("session_check_failed", "the session could not be checked", 503)

    # ------------------------------------------------------------ requests
    def _refused(self, socket: Socket, refusal: Refusal, event: Any, ack_id: int | None) -> None:
        """Refusal shaper for the envelope event (rate limit, event roles, ...)."""
        if _STATE in socket.data:
            envelope = _error(None, refusal.code.upper(), refusal.message)
            self.send(socket, envelope, True)
            payload: list[Any] = [envelope]
        elif ack_id is None:
            socket.emit(self.ctx.guard.auth.error_event, {**refusal.as_dict(), "event": event})
            return
        else:
            payload = [{"error": refusal.as_dict()}]
        if ack_id is not None:
            socket.deliver(to_frames(Packet(PacketType.ACK, socket.namespace_name, payload, ack_id)), False)

    async def on_message(self, socket: Socket, *args: Any) -> Any:
        state: _SocketState | None = socket.data.get(_STATE)
        if state is None:
            return None  # not a socket of this vocabulary
        raw = args[0] if args else None
        as_string = isinstance(raw, str)
        envelope = await self._answer(socket, state, args, as_string)
        self.send(socket, envelope, as_string)
        return envelope

    def _parse(self, args: tuple[Any, ...]) -> tuple[Any, str, Any] | dict[str, Any]:
        """(requestId, action, data), or the ERROR envelope for a malformed request."""
        if len(args) != 1:
            return _error(None, "INVALID_MESSAGE", "send exactly one argument: the request envelope")
        raw = args[0]
        limit = self.settings.max_message_bytes
        if isinstance(raw, str):
            if len(raw) > limit:  # characters: a cheap bound before any parsing
                return _error(None, "MESSAGE_TOO_LARGE", f"messages are at most {limit} bytes")
            try:
                raw = loads(raw)
            except orjson.JSONDecodeError:
                return _error(None, "INVALID_MESSAGE", "the message is not valid JSON")
            except TooDeep as exc:
                return _error(None, "INVALID_MESSAGE", str(exc))
        elif isinstance(raw, dict):
            try:
                size = len(orjson.dumps(raw))
            except TypeError:  # binary attachments and the like
                return _error(None, "INVALID_MESSAGE", "the message is not JSON")
            if size > limit:
                return _error(None, "MESSAGE_TOO_LARGE", f"messages are at most {limit} bytes")
        if not isinstance(raw, dict):
            return _error(None, "INVALID_MESSAGE", "the message is a JSON object (or a string holding one)")
        request_id = raw.get("requestId")
        if not (isinstance(request_id, str) and 0 < len(request_id) <= _MAX_ID):
            return _error(None, "INVALID_MESSAGE", f"requestId is a string of 1 to {_MAX_ID} characters")
        if raw.get("type") != "REQUEST":
            return _error(request_id, "INVALID_MESSAGE", "type must be 'REQUEST'")
        action = raw.get("action")
        if not _valid_id(action):
            return _error(request_id, "INVALID_MESSAGE", f"action is a string of 1 to {_MAX_ID} characters")
        return request_id, action, raw.get("data")

    def _lookup(self, name: str) -> tuple[Action | None, bool]:
        """(handler, forwarded)."""
        registered = _REGISTRY.get(self.ctx.app, {}).get(name)
        if registered is not None:
            return registered, False
        if name in self._builtins:
            return self._builtins[name], False
        s = self.settings
        if s.forward_url and ("*" in s.forward_actions or name in s.forward_actions):
            return None, True
        return None, False

    async def _answer(
        self, socket: Socket, state: _SocketState, args: tuple[Any, ...], as_string: bool
    ) -> dict[str, Any]:
        parsed = self._parse(args)
        if isinstance(parsed, dict):
            return parsed
        request_id, name, data = parsed
        action, forwarded = self._lookup(name)
        if action is None and not forwarded:
            return _error(request_id, "UNKNOWN_ACTION", f"unknown action {name!r}", name)
        s = self.settings
        roles = s.roles.get(name, action.roles if action is not None and action.roles is not None else s.default_roles)
        identity = socket.identity
        assert identity is not None
        if roles and not identity.has_role(roles):
            return _error(request_id, "FORBIDDEN", f"{name!r} needs one of the roles {', '.join(roles)}", name)
        timeout = s.timeouts.get(name, action.timeout if action is not None and action.timeout else s.default_timeout)
        call = ActionCall(socket, identity, name, data, request_id, state.session_id,
                          state.artifact, self, as_string)
        try:
            with trio.move_on_after(timeout) as scope:
                if action is not None:
                    result = action.handler(call)
                    if inspect.isawaitable(result):
                        result = await result
                else:
                    result = await self._forward(call, state, timeout)
            if scope.cancelled_caught:
                return _error(request_id, "TIMEOUT", f"{name!r} did not finish within {timeout:g} s", name)
            orjson.dumps(result)  # what cannot travel as JSON is the handler's bug
        except ActionError as exc:
            return _error(request_id, exc.code, exc.message, name)
        except Refusal as exc:
            return _error(request_id, exc.code.upper(), exc.message, name)
        except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
            report(self.ctx.sio.hub.stats.faults, "event", f"action {name!r}", sid=socket.sid)
            return _error(request_id, "INTERNAL_ERROR", f"{name!r} failed", name)
        return {"type": "RESPONSE", "requestId": request_id, "action": name, "data": result}

    async def _forward(self, call: ActionCall, state: _SocketState, timeout: float) -> Any:
        s = self.settings
        identity = call.identity
        url = s.forward_url.replace("{action}", urllib.parse.quote(call.action, safe=""))
        body = orjson.dumps({
            "action": call.action, "requestId": call.request_id, "data": call.data, "sessionId": call.session_id,
            "artifactId": call.artifact_id, "userId": identity.user, "companyId": identity.tenant,
            "roles": sorted(identity.roles),
        })
        headers = {
            "Content-Type": "application/json", "Accept": "application/json",
            "X-User-Id": identity.user, "X-Company-Id": identity.tenant or "", "X-Session-Id": call.session_id,
            "X-User-Roles": ",".join(sorted(identity.roles)), "X-Request-Id": str(call.request_id),
        }
        if call.artifact_id:
            headers["X-Artifact-Id"] = call.artifact_id
        if s.forward_token and state.token:
            headers["Authorization"] = f"Bearer {state.token}"
        try:
            status, answer = await _http_in_thread("POST", url, body, headers, timeout, s.max_forward_bytes)
        except trio.TooSlowError:
            raise ActionError("TIMEOUT", f"the back end did not answer {call.action!r} in time") from None
        except (OSError, ValueError) as exc:
            log.warning("forwarding %r failed: %s", call.action, exc)
            raise ActionError("BACKEND_UNAVAILABLE", "the back end could not be reached") from None
        if len(answer) > s.max_forward_bytes:
            raise ActionError("BACKEND_ERROR", "the back end's answer is too large")
        try:
            payload = loads(answer) if answer.strip() else None
        except orjson.JSONDecodeError:
            raise ActionError("BACKEND_ERROR", "the back end's answer is not JSON") from None
        except TooDeep as exc:
            raise ActionError("BACKEND_ERROR", f"the back end's answer: {exc}") from None
        if 200 <= status < 300:
            return payload
        error = payload
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            error = payload["error"]
        if isinstance(error, dict) and isinstance(error.get("code"), str) and error["code"]:
            message = error.get("message")
            raise ActionError(error["code"], message if isinstance(message, str) else f"the back end answered {status}")
        if status == 404:
            raise ActionError("UNKNOWN_ACTION", f"unknown action {call.action!r}")
        raise ActionError(_STATUS_CODES.get(status, "BACKEND_ERROR"), f"the back end answered {status}")

    # ------------------------------------------------------------ built-ins
    def _ping(self, call: ActionCall) -> dict[str, Any]:
        return {"pong": True, "time": int(time.time() * 1000)}

    def _echo(self, call: ActionCall) -> Any:
        return call.data

    def _whoami(self, call: ActionCall) -> dict[str, Any]:
        state: _SocketState = call.socket.data[_STATE]
        return {"userId": call.identity.user, "companyId": call.identity.tenant, "roles": sorted(call.identity.roles),
                "sessionId": state.session_id, "artifactIds": sorted(state.artifacts)}

    def _artifact_of(self, data: Any) -> str:
        artifact = data.get(self.settings.artifact_param) if isinstance(data, dict) else data
        if not _valid_id(artifact):
            name = self.settings.artifact_param
            raise ActionError("INVALID_MESSAGE", f"data.{name} is 1 to {_MAX_ID} printable characters")
        return artifact

    def _subscribe(self, call: ActionCall) -> dict[str, Any]:
        artifact = self._artifact_of(call.data)
        state: _SocketState = call.socket.data[_STATE]
        if artifact not in state.artifacts:
            if len(state.artifacts) >= self.settings.max_artifacts:
                limit = self.settings.max_artifacts
                raise ActionError("TOO_MANY_SUBSCRIPTIONS", f"at most {limit} artifacts per connection")
            state.artifacts.add(artifact)
            call.socket.join(self.artifact_room(call.identity.tenant, artifact))
        return {"artifactId": artifact, "subscribed": True}

    def _unsubscribe(self, call: ActionCall) -> dict[str, Any]:
        artifact = self._artifact_of(call.data)
        state: _SocketState = call.socket.data[_STATE]
        state.artifacts.discard(artifact)
        call.socket.leave(self.artifact_room(call.identity.tenant, artifact))
        return {"artifactId": artifact, "subscribed": False}

    # ------------------------------------------------------------ HTTP
    async def updates_route(self, call: Call) -> Response:
        body: UpdateRequest = parse_body(call.request, UpdateRequest)
        caller = call.caller
        if caller is not None and caller.tenant != body.companyId:
            raise ApiError(403, "forbidden", "an admin token may only send updates to its own company")
        if body.artifactId is not None and not _valid_id(body.artifactId):
            raise ApiError(400, "invalid_body", f"body.artifactId: 1 to {_MAX_ID} printable characters")
        if body.message.get("type", "UPDATE") != "UPDATE":
            raise ApiError(400, "invalid_body", "body.message.type: only 'UPDATE' may be pushed")
        return ok({"delivered": self.publish_update(body.companyId, dict(body.message), body.artifactId)})

    async def console_route(self, call: Call) -> Response:
        if self._console is None:
            page = await trio.to_thread.run_sync(_read_console)
            defaults = orjson.dumps({"path": (self.settings.paths or ("/socket.io",))[0], "event": self.settings.event})
            self._console = page.replace(b"__ACTIONS_DEFAULTS__", defaults.replace(b"<", b"\\u003c"))
        return Response(200, self._console, _CONSOLE_HEADERS, "text/html; charset=utf-8")


def _read_console() -> bytes:
    return resources.files(__package__).joinpath("static/actions_console.html").read_bytes()


_CONSOLE_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self' ws: wss:; frame-ancestors 'none'"
    )),
)


@attrs.frozen
class UpdateRequest:
    """The body of POST /api/v1/actions/updates (its JSON names)."""

    companyId: str = attrs.field(validator=v.min_len(1))
    message: dict[str, Any]
    artifactId: str | None = None


def install(ctx: Context, settings: Settings) -> None:
    feature = Actions(ctx, settings)
    _INSTALLED[ctx.app] = feature
    ctx.handlers.use(feature.connect)
    ctx.handlers.on(settings.event, feature.on_message)
    ctx.sio.refusal_shapers[settings.event] = feature._refused
    if settings.updates_route:
        ctx.api.add("POST", settings.updates_route, feature.updates_route, "admin")
    if settings.console_route:
        ctx.api.add("GET", settings.console_route, feature.console_route, "public")


__all__ = ["ActionCall", "ActionError", "ActionHandler", "Settings", "install", "register_action", "send_update"]
