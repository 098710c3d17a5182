"""The HTTP/1.1 connection loop (h11): keep-alive, limits, timeouts, upgrades.

Each accepted TCP connection runs :meth:`HttpServer.handle_connection` in its
own task.  Requests are answered one at a time by the router; a WebSocket
upgrade hands the stream, with what was read past the request head pushed
back in front, to the route's WebSocket handler and the HTTP loop ends.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Protocol

import h11
import trio

from ..config import HttpConfig
from ..faults import report
from .handoff import Handoff, request_bytes
from .messages import Request, Response, error_response
from .stream import ConnectionStream

log = logging.getLogger("rtserver.http")

_READ_SIZE = 65536


#: Waits until the client of the request being answered goes away (True) or
#: sends more (False); see :meth:`ConnectionStream.peer_gone`.
PeerGone = Callable[[], Awaitable[bool]]


class Router(Protocol):
    async def handle(self, request: Request, peer_gone: PeerGone | None = None) -> Response:
        """The answer; a route that waits long (a poll) may watch ``peer_gone``."""
        ...

    def websocket_handler(
        self, request: Request
    ) -> Response | Callable[[trio.abc.Stream], Awaitable[None]]:
        """Refuse an upgrade with a response, or return the handler to run."""
        ...

    def body_limit(self, request: Request) -> int: ...

    def owner(self, request: Request) -> int | None:
        """The worker process that must answer ``request`` (None: this one)."""
        ...


class _ClientGone(Exception):
    """The client closed or broke the connection; nothing more to send."""


class _RequestTimeout(Exception):
    """The request's body did not arrive within ``read_timeout``."""


def _peer(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None)
    try:
        host, port, *_ = sock.getpeername()  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError, TypeError):
        return "unknown"
    return f"{host}:{port}"


def _head_size(event: h11.Request) -> int:
    """The size of the request head as sent (request line, headers, blank line)."""
    size = len(event.method) + len(event.target) + len(event.http_version) + 11
    return size + sum(len(name) + len(value) + 4 for name, value in event.headers)


class HttpServer:
    def __init__(self, config: HttpConfig, router: Router, faults: Counter[str] | None = None) -> None:
        self._config = config
        self._router = router
        #: Where contained failures are counted (see rtserver.faults).
        self._faults: Counter[str] = faults if faults is not None else Counter()
        #: The TLS context new connections use; replaced on reload.
        self.tls: ssl.SSLContext | None = None
        #: With several workers: passes a request another worker must answer to it.
        self.handoff: Handoff | None = None

    async def _next_event(
        self,
        conn: h11.Connection,
        stream: ConnectionStream,
        head_scope: trio.CancelScope | None = None,
        deadline: float | None = None,
    ) -> object:
        """The next h11 event.  With ``head_scope`` (the idle wait for a request),
        the scope's deadline shrinks to ``read_timeout`` once part of a head is in.
        With ``deadline``, a read still waiting then raises ``_RequestTimeout``;
        an event already in the buffer (a GET's end) costs no cancel scope."""
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if head_scope is not None and conn.trailing_data[0]:
                head_scope.deadline = min(head_scope.deadline, trio.current_time() + self._config.read_timeout)
            data: bytes | None = None
            try:
                if deadline is None:
                    data = await stream.receive_some(_READ_SIZE)
                else:
                    with trio.move_on_at(deadline):
                        data = await stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise _ClientGone from None
            if data is None:
                raise _RequestTimeout
            conn.receive_data(data)

    async def _send(self, conn: h11.Connection, stream: ConnectionStream, response: Response, head: bool = False) -> None:
        """Write ``response``; for a HEAD request, its head only (the length
        is the body's, as a GET would get it)."""
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *response.headers,
        ]
        if conn.their_state is not h11.DONE:
            # The request body was not read to its end: the connection can't be reused.
            headers.append(("Connection", "close"))
        data = conn.send(h11.Response(status_code=response.status, headers=headers))
        data += conn.send(h11.Data(data=response.body)) if response.body and not head else b""
        data += conn.send(h11.EndOfMessage())
        # An answer almost always fits the socket's buffer: then no scope, no lock.
        written = stream.write_nowait(data)
        if written == len(data):
            return
        with trio.move_on_after(self._config.read_timeout):
            await stream.send_all(memoryview(data)[written:])
            return
        raise _ClientGone

    async def _read_body(self, conn: h11.Connection, stream: ConnectionStream, limit: int, deadline: float) -> bytes | None:
        """The whole body, or None when it is larger than ``limit``."""
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event(conn, stream, deadline=deadline)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    return None
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise _ClientGone

    async def handle_connection(self, accepted: trio.abc.Stream, already_read: bytes = b"") -> None:
        """Serve one TCP connection; nothing that happens here leaves this task.

        ``already_read``: what another worker read from it before handing it here.
        """
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._config.max_header_bytes)
        remote = _peer(accepted)
        stream: ConnectionStream | None = None
        try:
            tls = None if self.tls is None else trio.SSLStream(accepted, self.tls, server_side=True, https_compatible=True)
            stream = ConnectionStream(accepted if tls is None else tls)
            stream.push_back(already_read)
            if tls is not None:
                with trio.move_on_after(self._config.read_timeout) as handshake:
                    await tls.do_handshake()
                if handshake.cancelled_caught:
                    return
            await self._serve(conn, stream, remote)
        except h11.RemoteProtocolError as exc:
            assert stream is not None
            status = exc.error_status_hint
            code = "headers_too_large" if status == 431 else "bad_request"
            await self._refuse(conn, stream, status, code, f"malformed HTTP request: {exc}")
        except (_ClientGone, trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the client is gone: nothing to answer
        except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
            report(self._faults, "connection", "HTTP connection", remote=remote)
            if stream is not None:
                await self._refuse(conn, stream, 500, "internal_error", "the server failed to answer this request")
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await (stream or accepted).aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # a TLS peer gone before the close_notify: closed all the same

    async def _serve(self, conn: h11.Connection, stream: ConnectionStream, remote: str) -> None:
        """Answer requests one after another until the connection closes or upgrades."""
        while True:
            with trio.move_on_after(self._config.keepalive_timeout) as idle_scope:
                event = await self._next_event(conn, stream, idle_scope)
            if idle_scope.cancelled_caught:
                if conn.trailing_data[0]:
                    # Part of a head came, too slowly: say so (an idle connection just closes).
                    await self._refuse(conn, stream, 408, "request_timeout", "request head not received in time")
                return
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                raise _ClientGone
            head = event.method == b"HEAD"
            if _head_size(event) > self._config.max_header_bytes:
                # h11 only limits a head that arrives in pieces; one read may hold a whole one.
                await self._refuse(
                    conn, stream, 431, "headers_too_large",
                    f"request head is larger than {self._config.max_header_bytes} bytes", head,
                )
                return
            request_head = Request.from_head(event.method, event.target, event.headers, remote)
            if self.handoff is not None and await self._hand_off(conn, stream, event, request_head):
                return
            try:
                request, response = await self._read_request(
                    conn, stream, request_head, trio.current_time() + self._config.read_timeout
                )
            except _RequestTimeout:
                await self._refuse(conn, stream, 408, "request_timeout", "request not received in time", head)
                return
            if request is not None and request.is_websocket_upgrade():
                upgraded = await self._upgrade(conn, stream, request)
                if upgraded is not None:
                    # Only the WebSocket lives on: let the HTTP parser, its
                    # buffers and the handler's partial go for the
                    # connection's lifetime (only the coroutine is kept).
                    del conn, event, request, response
                    running = upgraded[0](upgraded[1])
                    del upgraded
                    await running
                return
            if response is None:
                response = await self._answer(request, stream.peer_gone)
            await self._send(conn, stream, response, head)
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()

    async def _answer(self, request: Request, peer_gone: PeerGone) -> Response:
        """The route's answer; a route that fails answers 500 (and closes)."""
        try:
            return await self._router.handle(request, peer_gone)
        except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
            report(self._faults, "request", "HTTP request", remote=request.remote, method=request.method, path=request.path)
            return error_response(
                500, "internal_error", "the server failed to answer this request", [("Connection", "close")]
            )

    async def _refuse(
        self, conn: h11.Connection, stream: ConnectionStream, status: int, code: str, message: str, head: bool = False
    ) -> None:
        """A last answer before the connection closes, when one can still be sent."""
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        with contextlib.suppress(h11.LocalProtocolError, _ClientGone, trio.BrokenResourceError, trio.ClosedResourceError):
            await self._send(conn, stream, error_response(status, code, message, [("Connection", "close")]), head)

    async def _hand_off(self, conn: h11.Connection, stream: ConnectionStream, event: h11.Request, request: Request) -> bool:
        """Pass the connection to the worker that owns ``request``'s session,
        if that is another one; whether it went (the owner answers from here on)."""
        assert self.handoff is not None
        owner = self._router.owner(request)
        sock = stream.socket
        if owner is None or sock is None:
            return False
        return await self.handoff.pass_connection(owner, sock, request_bytes(event) + conn.trailing_data[0] + stream.pending)

    async def _read_request(
        self, conn: h11.Connection, stream: ConnectionStream, request: Request, deadline: float
    ) -> tuple[Request, None] | tuple[None, Response]:
        """Read the body by ``deadline``; an upgrade request is returned as it is (no body)."""
        if request.is_websocket_upgrade():
            return request, None
        limit = self._router.body_limit(request)
        body = await self._read_body(conn, stream, limit, deadline)
        if body is None:
            return None, error_response(413, "payload_too_large", f"request body is larger than {limit} bytes")
        return Request(request.method, request.target, request.path, request.query, request.headers, request.remote, body), None

    async def _upgrade(
        self, conn: h11.Connection, stream: ConnectionStream, request: Request
    ) -> tuple[Callable[[ConnectionStream], Awaitable[None]], ConnectionStream] | None:
        """The WebSocket handler and its stream, or None once refused over HTTP."""
        if not isinstance(conn.next_event(), h11.EndOfMessage):
            # Refused before the route sees it: nothing was admitted or counted.
            await self._send(conn, stream, error_response(400, "bad_request", "unexpected body in upgrade request"))
            return None
        handler = self._router.websocket_handler(request)
        if isinstance(handler, Response):
            await self._send(conn, stream, handler)
            return None
        trailing, _ = conn.trailing_data
        stream.push_back(bytes(trailing))
        return handler, stream
