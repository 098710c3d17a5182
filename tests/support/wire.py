"""Hand-driven HTTP/1.1 (h11), Engine.IO polling and WebSocket clients.

For tests that need to say exactly what goes on the wire (odd methods,
missing headers, invalid frames, a connection that vanishes rudely).
"""

from __future__ import annotations

import base64
import os
import socket as socket_mod
import struct
from collections.abc import Collection, Sequence

import h11
import orjson
import trio
import trio_websocket

from rtserver import App

EIO = "/socket.io/?EIO=4"
#: An Engine.IO v3 client's (socket.io-client 2.x): served with engineio.allow_eio3.
EIO3 = "/socket.io/?EIO=3"
WAIT = 5.0

Headers = Sequence[tuple[str, str]]


async def read_response(conn: h11.Connection, stream: trio.abc.Stream) -> tuple[int, dict[str, str], bytes]:
    """Read one response from ``stream``: (status, headers with lower-case names, body)."""
    status, headers, chunks = None, {}, []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode().lower(): v.decode() for k, v in event.headers}
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
    assert status is not None
    return status, headers, b"".join(chunks)


async def request(
    port: int,
    method: str,
    target: str,
    body: bytes = b"",
    headers: Headers = (),
    *,
    sized: Collection[str] | None = ("POST", "PUT"),
    host: str | None = None,
    timeout: float = WAIT,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on a fresh connection: (status, headers, body).

    Sends Host (``host``, else 127.0.0.1:port), ``Connection: close`` and
    ``headers``; a method in ``sized`` (every method when None) gets a
    Content-Length and ``body``, any other is sent without a body.
    """
    all_headers = [("Host", host or f"127.0.0.1:{port}"), ("Connection", "close"), *headers]
    with_body = sized is None or method in sized
    if with_body:
        all_headers.append(("Content-Length", str(len(body))))
    conn = h11.Connection(h11.CLIENT)
    with trio.fail_after(timeout):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            data = conn.send(h11.Request(method=method, target=target, headers=all_headers))
            if with_body and body:
                data += conn.send(h11.Data(data=body))
            await stream.send_all(data + conn.send(h11.EndOfMessage()))
            return await read_response(conn, stream)


async def http(
    port: int, method: str, target: str, body: bytes = b"", headers: Headers | None = None
) -> tuple[int, bytes]:
    """One Engine.IO-style request (a body only with POST and PUT): (status, body)."""
    status, _, data = await request(port, method, target, body, headers or ())
    return status, data


class Polling:
    """A Socket.IO client over long-polling, driven by hand."""

    def __init__(self, port: int, eio: str = EIO) -> None:
        self.port = port
        self.eio = eio
        self.sid = ""
        self.socket_sid = ""

    @property
    def target(self) -> str:
        return f"{self.eio}&transport=polling&sid={self.sid}"

    async def open(self, connect: bool = True) -> Polling:
        status, body = await http(self.port, "GET", f"{self.eio}&transport=polling")
        if self.eio == EIO3:
            # A v3 payload of one record, and "/" connected on open (as 2.x expects).
            length, _, body = body.partition(b":")
            assert status == 200 and int(length) == len(body.decode()) and body.startswith(b"0{"), body
            self.sid = self.socket_sid = orjson.loads(body[1:])["sid"]
            assert await self.get() == (200, b"2:40")
            return self
        assert status == 200 and body.startswith(b"0"), body
        self.sid = orjson.loads(body[1:])["sid"]
        if connect:
            assert await self.post(b"40") == (200, b"ok")
            status, body = await self.get()
            assert status == 200 and body.startswith(b"40{"), body
            self.socket_sid = orjson.loads(body[2:])["sid"]
        return self

    async def get(self) -> tuple[int, bytes]:
        return await http(self.port, "GET", self.target)

    async def post(self, body: bytes) -> tuple[int, bytes]:
        return await http(self.port, "POST", self.target, body)


class RawWS:
    """A hand-rolled WebSocket Socket.IO client: sends any frame, even
    invalid ones, and can vanish without a close frame."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buf = b""
        self.socket_sid = ""
        self.sid = ""

    @classmethod
    async def open(cls, port: int, connect: bool = True, eio: str = EIO) -> RawWS:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        ws = cls(stream)
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send_all(
            (
                f"GET {eio}&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        with trio.fail_after(WAIT):
            head = await ws._read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        opcode, payload = await ws.recv()
        assert opcode == 1 and payload.startswith(b"0{"), payload
        ws.sid = orjson.loads(payload[1:])["sid"]
        if eio == EIO3:
            if connect:  # "/" is connected on open (when it is a namespace)
                assert await ws.recv() == (1, b"40")
                ws.socket_sid = ws.sid
        elif connect:
            await ws.send_text("40")
            opcode, payload = await ws.recv()
            assert opcode == 1 and payload.startswith(b"40{"), payload
            ws.socket_sid = orjson.loads(payload[2:])["sid"]
        return ws

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise EOFError("connection closed without a close frame")
        self._buf += chunk

    async def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buf:
            await self._fill()
        head, _, self._buf = self._buf.partition(marker)
        return head

    async def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            await self._fill()
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    async def recv(self) -> tuple[int, bytes]:
        with trio.fail_after(WAIT):
            first, second = await self._read(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self._read(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self._read(8))
            return first & 0x0F, await self._read(length)

    async def recv_text(self) -> str:
        opcode, payload = await self.recv()
        assert opcode == 1, (opcode, payload)
        return payload.decode()

    async def send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        await self.stream.send_all(header + mask + masked)

    async def send_text(self, text: str | bytes) -> None:
        await self.send_frame(1, text.encode() if isinstance(text, str) else text)

    async def close_code(self) -> int | None:
        """Read until the server closes: its close frame's code, None for a bare TCP close."""
        while True:
            try:
                opcode, payload = await self.recv()
            except EOFError:
                return None
            if opcode == 8:
                await self.send_frame(8, payload[:2])  # complete the closing handshake
                return struct.unpack("!H", payload[:2])[0]

    async def reset(self) -> None:
        """Vanish with a TCP RST: no close frame, no FIN."""
        self.stream.socket.setsockopt(socket_mod.SOL_SOCKET, socket_mod.SO_LINGER, struct.pack("ii", 1, 0))
        await self.stream.aclose()

    async def aclose(self) -> None:
        await self.stream.aclose()


class Witness:
    """A well-behaved WebSocket client that must keep working throughout."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, sid: str) -> None:
        self.ws = ws
        self.sid = sid
        self._ack = 0

    @classmethod
    async def connect(cls, nursery: trio.Nursery, port: int) -> Witness:
        ws = await trio_websocket.connect_websocket_url(
            nursery, f"ws://127.0.0.1:{port}{EIO}&transport=websocket"
        )
        opened = await ws.get_message()
        assert opened.startswith("0{")
        await ws.send_message("40")
        connected = await ws.get_message()
        assert connected.startswith("40{")
        return cls(ws, orjson.loads(opened[1:])["sid"])

    async def check(self, server) -> None:
        """The witness's session is alive and an event round-trips."""
        assert self.sid in server.engine.sessions
        self._ack += 1
        with trio.fail_after(WAIT):
            await self.ws.send_message(f'42{self._ack}["echo","still here",{self._ack}]')
            while True:
                message = await self.ws.get_message()
                if message == "2":
                    await self.ws.send_message("3")
                    continue
                if message.startswith("42"):
                    continue  # an event the server sent everyone (a broadcast)
                assert message == f'43{self._ack}["still here",{self._ack}]'
                return


def make_app() -> tuple[App, dict[str, str]]:
    """An app that echoes (what :class:`Witness` needs) and records each socket's disconnect reason by sid."""
    app = App()
    reasons: dict[str, str] = {}

    @app.on("echo")
    def echo(socket, *args):
        return args

    @app.on("disconnect")
    def disconnect(socket, reason):
        reasons[socket.sid] = reason

    return app, reasons
