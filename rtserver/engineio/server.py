"""The Engine.IO endpoint: handshakes, polling requests and WebSocket upgrades."""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Protocol

import orjson
import trio

from ..auth.errors import Refusal
from ..config import EngineIOConfig
from ..faults import supervise
from ..http.messages import Request, Response, json_response
from ..http.server import PeerGone
from ..http.stream import ConnectionStream
from ..metrics import Stats
from . import websocket
from .clock import Clock
from .errors import EngineError
from .packets import EngineProtocolError, Outgoing
from .session import Session, SessionHandler
from .session_v3 import SessionV3

log = logging.getLogger("rtserver.engineio")

TRANSPORTS = ("polling", "websocket")


class Gate(Protocol):
    """Admission of new sessions (handshake rate, connections per address)."""

    def admit(self, request: Request) -> Refusal | None: ...

    def release(self, request: Request) -> None: ...


def sid_worker(sid: str) -> int | None:
    """The worker a session id names (``w<index>.<random>``), None for a
    single process's ids (``token_urlsafe`` never writes a '.')."""
    head, dot, _ = sid.partition(".")
    if not dot or head[:1] != "w" or not head[1:].isdigit():
        return None
    return int(head[1:])


def _error(error: EngineError, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return json_response(error.status, {"code": int(error), "message": error.message}, headers)


#: Every long-polling answer (open packet, poll, POST) is never to be cached,
#: as the reference sends it.
_NO_STORE = (("Cache-Control", "no-store"),)
_TEXT = "text/plain; charset=UTF-8"


class EngineServer:
    """Owns the sid -> session map; one instance serves every mount path."""

    def __init__(
        self,
        config: EngineIOConfig,
        open_handler: Callable[[Session], SessionHandler],
        nursery: trio.Nursery,
        gate: Gate | None = None,
        stats: Stats | None = None,
        worker: int | None = None,
    ) -> None:
        self.config = config
        #: This process's index among the server's workers (None: the only process).
        self.worker = worker
        self._sid_prefix = "" if worker is None else f"w{worker}."

        self.stats = stats if stats is not None else Stats()
        self._open_handler = open_handler
        self._gate = gate
        self._nursery = nursery
        self.sessions: dict[str, Session] = {}
        #: Keeps every session's heartbeat and timers (one task for all).
        self.clock = Clock(self.stats.faults)
        nursery.start_soon(supervise, self.stats.faults, "clock", self.clock.run)
        self._open_packet_fields = {
            "pingInterval": int(config.ping_interval * 1000),
            "pingTimeout": int(config.ping_timeout * 1000),
            "maxPayload": config.max_payload,
        }

    # ----------------------------------------------------------- helpers
    def forget(self, session: Session) -> None:
        if self.sessions.get(session.sid) is session:
            del self.sessions[session.sid]
            if self._gate is not None:
                self._gate.release(session.request)

    def _admit(self, request: Request, cors: tuple[tuple[str, str], ...] = ()) -> Response | None:
        """The gate's refusal of a new session as an HTTP answer, if any."""
        refusal = self._gate.admit(request) if self._gate is not None else None
        if refusal is None:
            return None
        self.stats.refusals[refusal.code] += 1
        return json_response(refusal.status, refusal.as_dict(), cors)

    def _cors_headers(self, request: Request) -> tuple[tuple[str, str], ...]:
        origin = request.headers.get("origin")
        if origin and (origin in self.config.cors_origins or "*" in self.config.cors_origins):
            return (
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Credentials", "true"),
                ("Vary", "Origin"),
            )
        return ()

    def _origin_allowed(self, request: Request) -> bool:
        """Same-origin and non-browser requests pass; others need the allow-list."""
        origin = request.headers.get("origin")
        if not origin:
            return True
        if origin in self.config.cors_origins or "*" in self.config.cors_origins:
            return True
        host = request.headers.get("host", "")
        return origin.split("://", 1)[-1] == host

    def _protocol(self, request: Request) -> int | None:
        """The Engine.IO revision a request speaks, None if not served."""
        eio = request.query.get("EIO")
        if eio == "4":
            return 4
        if eio == "3" and self.config.allow_eio3:
            return 3
        return None

    def _check(self, request: Request, transport_expected: str | None) -> EngineError | None:
        query = request.query
        protocol = self._protocol(request)
        if protocol is None:
            return EngineError.UNSUPPORTED_PROTOCOL_VERSION
        transport = query.get("transport")
        if transport not in TRANSPORTS or (transport == "polling" and "j" in query):
            # ``j``: JSONP polling, which rtserver does not speak (see the README).
            return EngineError.UNKNOWN_TRANSPORT
        if not self._origin_allowed(request):
            return EngineError.FORBIDDEN
        sid = query.get("sid")
        if sid is not None:
            session = self.sessions.get(sid)
            if session is None:
                return EngineError.UNKNOWN_SID
            if session.protocol != protocol:
                return EngineError.BAD_REQUEST
            if transport_expected == "websocket":
                # A session already upgraded (or upgrading) still gets its
                # 101; the WebSocket is then closed, as the reference does.
                if transport != "websocket":
                    return EngineError.BAD_REQUEST
            elif transport != session.transport:
                return EngineError.BAD_REQUEST
        else:
            if request.method != "GET":
                return EngineError.BAD_HANDSHAKE_METHOD
            if transport != (transport_expected or "polling"):
                return EngineError.BAD_REQUEST
        return None

    def _cookie(self, sid: str) -> tuple[tuple[str, str], ...]:
        """The session cookie's header for a handshake answer, when configured
        (the reference's defaults: path /, HttpOnly, SameSite=Lax)."""
        name = self.config.cookie
        return (("Set-Cookie", f"{name}={sid}; Path=/; HttpOnly; SameSite=Lax"),) if name else ()

    def _new_session(self, request: Request, transport: str) -> tuple[Session, str]:
        sid = self._sid_prefix + secrets.token_urlsafe(15)
        session = (Session if self._protocol(request) == 4 else SessionV3)(self, sid, request, transport)
        self.sessions[sid] = session
        self.stats.handshakes[transport] += 1
        # Only a polling session has something to upgrade to.
        upgrades = ["websocket"] if transport == "polling" else []
        open_packet = "0" + orjson.dumps({"sid": sid, "upgrades": upgrades, **self._open_packet_fields}).decode()
        log.info(
            "connection opened",
            extra={"fields": {"sid": sid, "transport": transport, "remote": request.remote}},
        )
        return session, open_packet

    def owner(self, request: Request) -> int | None:
        """The other worker whose session ``request`` is for, if any: the
        kernel spreads a client's connections over every worker."""
        sid = request.query.get("sid")
        if sid is None or self.worker is None:
            return None
        index = sid_worker(sid)
        return None if index == self.worker else index

    # ---------------------------------------------------------- polling
    def body_limit(self) -> int:
        return self.config.max_payload

    async def handle_http(self, request: Request, peer_gone: PeerGone | None = None) -> Response:
        """A long-polling request; a pending poll watches ``peer_gone`` and
        ends its session when the client goes away (as the reference does)."""
        cors = self._cors_headers(request)
        if request.method == "OPTIONS":
            headers = cors
            if cors:
                headers += (
                    ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
                    ("Access-Control-Allow-Headers", request.headers.get("access-control-request-headers", "")),
                )
            return Response(204, b"", headers, "text/plain")
        if request.method not in ("GET", "POST"):
            return _error(EngineError.BAD_REQUEST if "sid" in request.query else EngineError.BAD_HANDSHAKE_METHOD, cors)
        error = self._check(request, None)
        if error is not None:
            return _error(error, cors)
        sid = request.query.get("sid")
        if sid is None:
            refused = self._admit(request, cors)
            if refused is not None:
                return refused
            session, open_packet = self._new_session(request, "polling")
            await self._nursery.start(session.run, self._open_handler(session))
            body, content_type = session.encode_poll([open_packet])
            return Response(200, body, cors + _NO_STORE + self._cookie(session.sid), content_type)
        session = self.sessions[sid]
        if request.method == "GET":
            frames = await session.poll(peer_gone)
            if frames is None:
                session.abort("overlapping polls")
                return _error(EngineError.BAD_REQUEST, cors)
            body, content_type = session.encode_poll(frames)
            return Response(200, body, cors + _NO_STORE, content_type)
        if session.protocol == 4 and request.headers.get("content-type") == "application/octet-stream":
            # Binary bodies are Engine.IO v3's; a v4 payload is text (the
            # reference ends the session too).
            session.abort("parse error")
            return _error(EngineError.BAD_REQUEST, cors)
        try:
            taken = await session.receive_payload(request.body)
        except EngineProtocolError as exc:
            log.info("protocol error: %s", exc, extra={"fields": {"sid": sid}})
            session.abort("parse error")
            return _error(EngineError.BAD_REQUEST, cors)
        if not taken:
            session.abort("overlapping posts")
            return _error(EngineError.BAD_REQUEST, cors)
        # text/html, not text/plain, as the reference answers (some user agents
        # offered a text/plain answer as a download).
        return Response(200, b"ok", cors + _NO_STORE, "text/html")

    # -------------------------------------------------------- websocket
    def websocket_handler(self, request: Request) -> Response | Callable[[ConnectionStream], Awaitable[None]]:
        error = self._check(request, "websocket")
        if error is not None:
            return _error(error)
        answer = websocket.handshake(request.headers)
        if answer is None:
            return _error(EngineError.BAD_REQUEST)
        if "sid" not in request.query:
            refused = self._admit(request)
            if refused is not None:
                return refused

        # A partial, not a closure calling on: every coroutine frame stays
        # in memory for the connection's lifetime.
        if "sid" not in request.query:
            return functools.partial(self._open_websocket, request, answer)
        return functools.partial(self._upgrade_websocket, request, answer)

    async def _upgrade_websocket(self, request: Request, answer: bytes, stream: ConnectionStream) -> None:
        sid = request.query["sid"]
        binary = "b64" not in request.query  # for a v3 client: its WebSocket's own say
        del request  # the session keeps its handshake request; this one is not kept
        try:
            ws = await websocket.WebSocket.accept(stream, answer, self.config.max_payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        del answer  # not kept for the connection's lifetime
        upgrading = self.sessions.get(sid)
        if upgrading is None or not upgrading.upgradable:
            await ws.close(1000, "session already upgraded or upgrading")
        elif await self._upgrade(upgrading, ws):
            if isinstance(upgrading, SessionV3):
                upgrading.binary = binary
            await upgrading.finished.wait()
        else:
            await ws.close(1002, "upgrade failed")

    async def _open_websocket(self, request: Request, answer: bytes, stream: ConnectionStream) -> None:
        """A session opened directly over WebSocket: the 101 answer and the
        Engine.IO open packet leave in one write."""
        session, open_packet = self._new_session(request, "websocket")
        for name, value in self._cookie(session.sid):
            answer = websocket.with_header(answer, name, value)
        first_write = answer + Outgoing((open_packet,)).wire
        del answer, open_packet  # not kept for the connection's lifetime
        try:
            ws = await websocket.WebSocket.accept(stream, first_write, self.config.max_payload)
            del first_write
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.forget(session)  # also releases the admission
            return
        except BaseException:  # cancelled (shutdown) before the session ran
            self.forget(session)
            raise
        session.use_websocket(ws)
        await session.run(self._open_handler(session))

    async def _upgrade(self, session: Session, ws: websocket.WebSocket) -> bool:
        try:
            upgraded = await session.probe(ws)
        except websocket.WebSocketClosed:
            return False
        if upgraded and not session.finished.is_set():
            session.attach_websocket(ws)
            return True
        return False
