"""The dashboard's HTTP side: the page, its script and style, login and logout.

``GET {path}`` is the console for a browser with a live session, else the
login form.  ``POST {path}login`` takes ``credential`` (an API key or an
admin JWT, checked exactly as the HTTP API checks it), at most
:data:`LOGIN_BURST` attempts at once per address and one per
:data:`LOGIN_EVERY` seconds after that; it answers the form again with the
reason (401, 403 or 429) or sets the session cookie and redirects to the
page (303).  ``POST {path}logout`` ends the session and the page's sockets.
Both POSTs are refused (403) from another origin.  Every page is sent with
a Content-Security-Policy that allows this origin's own script, style and
connections only.
"""

from __future__ import annotations

import html
import logging
import time
from importlib import resources
from urllib.parse import parse_qs

import trio

from ..api.common import ApiError, Call, CallerAuth
from ..auth.guard import remote_host
from ..auth.limits import KeyedBuckets
from ..auth.tokens import MAX_TOKEN_LENGTH, cookie_value
from ..config import Config
from ..http.messages import Request, Response
from .live import same_origin
from .sessions import COOKIE, LoginSessions, set_cookie

log = logging.getLogger("rtserver.dashboard")

LOGIN_BURST = 10
LOGIN_EVERY = 6.0
#: The files under static/ the page loads, and their types.
ASSETS = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    # Not no-referrer: with it a browser sends "Origin: null" on the login form's POST.
    ("Referrer-Policy", "same-origin"),
    ("Content-Security-Policy", (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )),
)
_HTML = "text/html; charset=utf-8"


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


class Pages:
    def __init__(self, config: Config, caller_auth: CallerAuth, sessions: LoginSessions) -> None:
        self._config = config
        self._path = config.dashboard.path
        self._cookie_path = self._path.rstrip("/")
        self._caller_auth = caller_auth
        self._sessions = sessions
        self._attempts = KeyedBuckets(1 / LOGIN_EVERY, LOGIN_BURST)
        self._files: dict[str, bytes] = {}

    async def _file(self, name: str) -> bytes:
        if name not in self._files:
            self._files[name] = await trio.to_thread.run_sync(_read, name)
        return self._files[name]

    async def _page(self, name: str, status: int = 200, error: str = "", headers: tuple[tuple[str, str], ...] = ()) -> Response:
        text = (await self._file(name)).decode()
        text = text.replace("__PATH__", html.escape(self._path)).replace("__ERROR__", html.escape(error))
        text = text.replace("__NAMESPACE__", html.escape(self._config.dashboard.namespace))
        return Response(status, text.encode(), _HEADERS + headers, _HTML)

    def _secure(self, request: Request) -> bool:
        return self._config.tls.enabled or request.headers.get("x-forwarded-proto", "").lower() == "https"

    def _redirect(self, *headers: tuple[str, str]) -> Response:
        return Response(303, b"", (("Location", self._path), ("Cache-Control", "no-store"), *headers), "text/plain")

    # --------------------------------------------------------------- routes
    async def index(self, call: Call) -> Response:
        request = call.request
        if not request.path.endswith("/"):
            return Response(308, b"", (("Location", self._path),), "text/plain")
        session_id = cookie_value(request.headers.get("cookie", ""), COOKIE)
        if self._sessions.get(session_id) is not None:
            return await self._page("index.html")
        ended = "Your session has ended: log in again." if session_id else ""
        return await self._page("login.html", error=ended)

    async def asset(self, call: Call) -> Response:
        name = call.params[0]
        if name not in ASSETS:
            raise ApiError(404, "not_found", f"no route for {call.request.path}")
        return Response(200, await self._file(name), (("Cache-Control", "no-cache"), ("X-Content-Type-Options", "nosniff")), ASSETS[name])

    async def login_form(self, call: Call) -> Response:
        return self._redirect()

    async def login(self, call: Call) -> Response:
        request = call.request
        if not same_origin(request.headers):
            return await self._page("login.html", 403, "Log in from this server's own page.")
        if not self._attempts.take(remote_host(request)):
            return await self._page("login.html", 429, "Too many attempts: wait a minute and try again.")
        fields = parse_qs(request.body.decode("utf-8", "replace"), max_num_fields=4)
        credential = (fields.get("credential") or [""])[0].strip()
        if len(credential) > MAX_TOKEN_LENGTH:
            return await self._page("login.html", 400, "That is too long to be a key or a token.")
        try:
            identity = await self._caller_auth.check_credential(credential, "admin")
        except ApiError as exc:
            log.info("dashboard login refused", extra={"fields": {"remote": request.remote, "code": exc.code}})
            return await self._page("login.html", exc.status, _REFUSED.get(exc.code, "The key or token was not accepted.") + f" ({exc.code})")
        operator = self._sessions.open(credential, identity)
        log.info("dashboard login", extra={"fields": {"operator": operator.who, "remote": request.remote}})
        assert operator.session_id is not None and operator.expires is not None
        max_age = max(1, int(operator.expires - time.time()))
        return self._redirect(set_cookie(operator.session_id, self._cookie_path, self._secure(request), max_age))

    async def logout(self, call: Call) -> Response:
        request = call.request
        if not same_origin(request.headers):
            return await self._page("login.html", 403, "Log out from this server's own page.")
        operator = self._sessions.get(cookie_value(request.headers.get("cookie", ""), COOKIE))
        if operator is not None:
            self._sessions.close(operator)
            log.info("dashboard logout", extra={"fields": {"operator": operator.who, "remote": request.remote}})
        return self._redirect(set_cookie("", self._cookie_path, self._secure(request), 0))


_REFUSED = {
    "auth_required": "Enter an API key or an admin token.",
    "forbidden": "This token does not carry an admin role.",
    "token_expired": "This token has expired.",
    "token_revoked": "This token has been revoked.",
}
