"""A server WebSocket driven on wsproto by its own session's tasks.

The HTTP front has already parsed the upgrade request, so the handshake is
answered from those headers; after it, the session's reader task calls
:meth:`WebSocket.receive` and every byte written goes through the
connection's :class:`~rtserver.http.stream.ConnectionStream`.  No task of
its own: measured with ``make bench``, trio-websocket's per-connection reader
task and queues cost about half the handshake rate and twice the memory of an
idle connection (see the README's benchmark notes).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Mapping

import trio
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import CloseConnection, Event, Message, Ping, TextMessage
from wsproto.utilities import LocalProtocolError, generate_accept_token

from ..http.stream import ConnectionStream

_READ_SIZE = 65536
_CLOSE_TIMEOUT = 1.0
#: Close codes that describe a closure but may not be sent in a close frame.
_UNSENDABLE = frozenset({1005, 1006, 1015})


class WebSocketClosed(Exception):
    """The connection is closed; ``code`` is the close code (1006: no close frame)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def handshake(headers: Mapping[str, str]) -> bytes | None:
    """The 101 answer to a valid upgrade request (RFC 6455 4.2), or None.

    h11 has already parsed the request, so this checks the WebSocket fields
    and derives the accept token with wsproto's helper, rather than having
    wsproto parse the whole request again (a third of a handshake's cost).
    """
    key = headers.get("sec-websocket-key", "").strip()
    if headers.get("sec-websocket-version", "").strip() != "13" or not key.isascii():
        return None
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except ValueError:
        return None
    accept = generate_accept_token(key.encode("ascii")).decode("ascii")
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode("ascii")


def with_header(answer: bytes, name: str, value: str) -> bytes:
    """``answer`` (the 101 head from :func:`handshake`) with one more header."""
    return answer[:-2] + f"{name}: {value}\r\n\r\n".encode("latin-1")


class WebSocket:
    __slots__ = ("_conn", "_max", "_parts", "_pending", "_size", "stream")

    def __init__(self, stream: ConnectionStream, connection: Connection, max_message: int) -> None:
        self.stream = stream
        self._conn = connection
        self._max = max_message
        #: Events read and not yet handled, last first (a list is smaller than a deque).
        self._pending: list[Event] = []
        self._parts: list[str | bytes] = []
        self._size = 0

    @classmethod
    async def accept(cls, stream: ConnectionStream, answer: bytes, max_message: int) -> WebSocket:
        """Send the 101 answer; the connection is a WebSocket from then on."""
        await stream.send_all(answer)
        return cls(stream, Connection(ConnectionType.SERVER), max_message)

    async def _write(self, event: Event) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
            await self.stream.send_all(self._conn.send(event))

    async def receive(self) -> str | bytes:
        """The next whole message; raises :class:`WebSocketClosed`."""
        while True:
            while self._pending:
                event = self._pending.pop()
                if isinstance(event, Message):
                    self._size += len(event.data)
                    if self._size > self._max:
                        await self.close(1009, "message too big")
                        raise WebSocketClosed(1009, "message too big")
                    self._parts.append(event.data)
                    if event.message_finished:
                        parts, self._parts, self._size = self._parts, [], 0
                        empty: str | bytes = "" if isinstance(event, TextMessage) else b""
                        return parts[0] if len(parts) == 1 else empty.join(parts)  # type: ignore[arg-type]
                elif isinstance(event, Ping):
                    await self._write(event.response())
                elif isinstance(event, CloseConnection):
                    if self._conn.state is ConnectionState.REMOTE_CLOSING:
                        await self._write(event.response())
                    raise WebSocketClosed(event.code, event.reason or "")
            try:
                data = await self.stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise WebSocketClosed(1006) from None
            if not data:
                raise WebSocketClosed(1006)
            self._conn.receive_data(data)
            self._pending = list(self._conn.events())
            self._pending.reverse()

    async def send_text(self, text: str) -> None:
        if self._conn.state is not ConnectionState.OPEN:
            raise WebSocketClosed(1000, "closing")  # the peer's close is already read
        try:
            await self.stream.send_all(self._conn.send(TextMessage(data=text)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise WebSocketClosed(1006) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame if still open, then close the stream."""
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
            if self._conn.state is ConnectionState.OPEN:
                code = 1000 if code in _UNSENDABLE else code
                await self._write(CloseConnection(code=code, reason=reason[:120]))
            await self.stream.aclose()

