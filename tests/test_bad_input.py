"""Bad input gets a clear error, or a close, for the sender alone.

Every test keeps a well-behaved "witness" client connected across the bad
input and checks afterwards that it still round-trips an event, so a bad
client can never take the server (or its neighbours) down with it.  No test
may leave an ERROR record or a traceback in the "rtserver" logs.
"""

from __future__ import annotations

import logging
import socket as socket_mod
import struct
from typing import Any

import orjson
import pytest
import trio
import trio_websocket
from support.wire import EIO, WAIT, Polling, RawWS, http

from rtserver import App


# ---------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def no_error_logs(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="rtserver")
    yield
    bad = [r for r in caplog.records if r.name.startswith("rtserver") and (r.levelno >= logging.ERROR or r.exc_info)]
    assert not bad, [f"{r.levelname} {r.name} {r.getMessage()} {r.exc_text or ''}" for r in bad]


def make_app() -> tuple[App, dict[str, str]]:
    """An app that echoes and records each socket's disconnect reason by sid."""
    app = App()
    reasons: dict[str, str] = {}

    @app.on("echo")
    def echo(socket, *args):
        return args

    @app.on("disconnect")
    def disconnect(socket, reason):
        reasons[socket.sid] = reason

    return app, reasons


async def raw(port: int, data: bytes) -> bytes:
    """Write raw bytes, return everything the server sends before it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        received = b""
        with trio.fail_after(WAIT):
            while chunk := await stream.receive_some(65536):
                received += chunk
        return received


def parse_raw_response(data: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, orjson.loads(body)


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
                assert message == f'43{self._ack}["still here",{self._ack}]'
                return


async def wait_for(predicate, timeout: float = WAIT) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


@pytest.fixture
async def setup(start_server, nursery):
    """``await setup(**config_sections)`` -> (server, disconnect reasons by sid, witness)."""

    async def start(**sections):
        app, reasons = make_app()
        server = await start_server(app, **sections)
        witness = await Witness.connect(nursery, server.port)
        return server, reasons, witness

    return start


# ------------------------------------------------ Engine.IO HTTP errors
@pytest.mark.parametrize(
    ("method", "query", "code", "message"),
    [
        ("GET", "EIO=4&transport=carrier-pigeon", 0, "Transport unknown"),
        ("GET", "EIO=4", 0, "Transport unknown"),
        ("GET", "EIO=4&transport=polling&sid=no-such-sid", 1, "Session ID unknown"),
        ("POST", "EIO=4&transport=polling&sid=no-such-sid", 1, "Session ID unknown"),
        ("POST", "EIO=4&transport=polling", 2, "Bad handshake method"),
        ("PUT", "EIO=4&transport=polling", 2, "Bad handshake method"),
        ("GET", "EIO=3&transport=polling", 5, "Unsupported protocol version"),
        ("GET", "transport=polling", 5, "Unsupported protocol version"),
        ("GET", "EIO=abc&transport=polling", 5, "Unsupported protocol version"),
    ],
)
async def test_engineio_request_errors(setup, method, query, code, message):
    server, _, witness = await setup()
    status, body = await http(server.port, method, f"/socket.io/?{query}", b"40" if method != "GET" else b"")
    assert status == 400
    assert orjson.loads(body) == {"code": code, "message": message}
    assert list(server.engine.sessions) == [witness.sid]
    await witness.check(server)


async def test_bad_request_for_existing_session(setup):
    server, reasons, witness = await setup()
    client = await Polling(server.port).open()
    # A polling session asked for over another transport, without an upgrade.
    status, body = await http(server.port, "GET", f"{EIO}&transport=websocket&sid={client.sid}")
    assert (status, orjson.loads(body)) == (400, {"code": 3, "message": "Bad request"})
    # A method Engine.IO does not use, for a known session.
    status, body = await http(server.port, "DELETE", client.target)
    assert (status, orjson.loads(body)) == (400, {"code": 3, "message": "Bad request"})
    # Upgrading a session that is already on WebSocket.
    status, body = await http(
        server.port,
        "GET",
        f"{EIO}&transport=websocket&sid={witness.sid}",
        headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                 ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")],
    )
    assert (status, orjson.loads(body)) == (400, {"code": 3, "message": "Bad request"})
    # Neither mistake ends the session it named.
    assert await client.post(b'421["echo","ok"]') == (200, b"ok")
    assert await client.get() == (200, b'431["ok"]')
    await witness.check(server)
    assert reasons == {}


async def test_post_body_over_max_payload(setup):
    server, _, witness = await setup(engineio={"max_payload": 1024})
    client = await Polling(server.port).open()
    status, body = await client.post(b'42["echo","' + b"x" * 2000 + b'"]')
    assert status == 413
    assert orjson.loads(body)["code"] == "payload_too_large"
    await witness.check(server)


async def test_websocket_frame_over_max_payload(setup, nursery):
    server, reasons, witness = await setup(engineio={"max_payload": 1024})
    ws = await trio_websocket.connect_websocket_url(nursery, f"ws://127.0.0.1:{server.port}{EIO}&transport=websocket")
    opened = await ws.get_message()
    sid = orjson.loads(opened[1:])["sid"]
    await ws.send_message("40")
    socket_sid = orjson.loads((await ws.get_message())[2:])["sid"]
    await ws.send_message('42["echo","' + "x" * 2000 + '"]')
    with trio.fail_after(WAIT), pytest.raises(trio_websocket.ConnectionClosed) as closed:
        while True:
            await ws.get_message()
    assert closed.value.reason.code == 1009
    await wait_for(lambda: socket_sid in reasons)
    assert sid not in server.engine.sessions
    await witness.check(server)


# ------------------------------------------------- malformed packets
MALFORMED = {
    "engineio-unknown-type": "9",
    "engineio-empty": "",
    "engineio-open-from-client": "0",
    "socketio-bad-json": '42["a"',
    "socketio-unknown-type": "49",
    "socketio-ack-id-too-long": '4212345678901234567["echo"]',
    "socketio-binary-bad-count": '45x-["echo",{"_placeholder":true,"num":0}]',
    "socketio-binary-no-count": '45["echo"]',
    "socketio-too-many-attachments": '4599-["echo"]',
    "socketio-reserved-event": '42["connect"]',
    "socketio-event-not-a-list": '42{"a":1}',
    "socketio-ack-without-id": '43["x"]',
    "socketio-connect-error-from-client": '44{"message":"x"}',
}


@pytest.mark.parametrize("frame", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_packet_over_websocket(setup, frame):
    server, reasons, witness = await setup()
    ws = await RawWS.open(server.port)
    await ws.send_text(frame)
    assert await ws.close_code() == 1002
    await wait_for(lambda: ws.socket_sid in reasons)
    assert reasons[ws.socket_sid] == "parse error"
    assert ws.sid not in server.engine.sessions
    await ws.aclose()
    await witness.check(server)


@pytest.mark.parametrize("frame", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_packet_over_polling(setup, frame):
    server, reasons, witness = await setup()
    client = await Polling(server.port).open()
    status, body = await client.post(frame.encode())
    if frame.startswith("4"):
        # A valid Engine.IO MESSAGE: the Socket.IO layer rejects it after the POST.
        assert status == 200
    else:
        assert (status, orjson.loads(body)) == (400, {"code": 3, "message": "Bad request"})
    await wait_for(lambda: client.socket_sid in reasons)
    assert reasons[client.socket_sid] == "parse error"
    assert client.sid not in server.engine.sessions
    await witness.check(server)


async def test_invalid_utf8_in_post_body(setup):
    server, reasons, witness = await setup()
    client = await Polling(server.port).open()
    status, body = await client.post(b'42["echo","\xff\xfe"]')
    assert (status, orjson.loads(body)) == (400, {"code": 3, "message": "Bad request"})
    await wait_for(lambda: client.socket_sid in reasons)
    assert reasons[client.socket_sid] == "parse error"
    await witness.check(server)


async def test_invalid_base64_in_post_body(setup):
    server, reasons, witness = await setup()
    client = await Polling(server.port).open()
    status, body = await client.post(b"b!!not-base64!!")
    assert (status, orjson.loads(body)) == (400, {"code": 3, "message": "Bad request"})
    await wait_for(lambda: client.socket_sid in reasons)
    assert reasons[client.socket_sid] == "parse error"
    await witness.check(server)


async def test_invalid_utf8_in_websocket_text_frame(setup):
    server, reasons, witness = await setup()
    ws = await RawWS.open(server.port)
    await ws.send_text(b'42["echo","\xff\xfe"]')
    # wsproto reports the bad frame as a 1007 close; trio-websocket then drops
    # the TCP connection without sending the close frame itself.
    assert await ws.close_code() in (1007, None)
    await wait_for(lambda: ws.socket_sid in reasons)
    assert ws.sid not in server.engine.sessions
    await ws.aclose()
    await witness.check(server)


async def test_binary_attachment_without_binary_event(setup):
    server, reasons, witness = await setup()
    ws = await RawWS.open(server.port)
    await ws.send_frame(2, b"\x00\x01")
    assert await ws.close_code() == 1002
    await wait_for(lambda: ws.socket_sid in reasons)
    assert reasons[ws.socket_sid] == "parse error"
    await ws.aclose()
    await witness.check(server)


# ------------------------------------------------------ HTTP framing
async def test_headers_over_limit(setup):
    server, _, witness = await setup(http={"max_header_bytes": 1024})
    request = (
        f"GET {EIO}&transport=polling HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 4000}\r\n\r\n"
    ).encode()
    status, body = parse_raw_response(await raw(server.port, request))
    assert status == 431
    assert body["code"] == "headers_too_large"
    await witness.check(server)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n",
        b"HELLO THERE\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
    ],
    ids=["tls-hello", "not-http", "bad-header", "bad-content-length"],
)
async def test_garbage_is_refused(setup, garbage):
    server, _, witness = await setup()
    status, body = parse_raw_response(await raw(server.port, garbage))
    assert status == 400
    assert body["code"] == "bad_request"
    await witness.check(server)


async def test_websocket_upgrade_for_unknown_path(setup):
    server, _, witness = await setup()
    request = (
        b"GET /elsewhere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    status, _ = parse_raw_response(await raw(server.port, request))
    assert status == 404
    await witness.check(server)


# ---------------------------------------------------------- timeouts
async def test_no_socketio_connect_is_closed(setup):
    server, reasons, witness = await setup(socketio={"connect_timeout": 0.3})
    ws = await RawWS.open(server.port, connect=False)
    polling = await Polling(server.port).open(connect=False)
    polled: list[tuple[int, bytes]] = []

    async def poll():
        polled.append(await polling.get())

    with trio.fail_after(3):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            assert await ws.close_code() == 1000
    # The pending GET of the silent polling client ends with a CLOSE packet.
    assert polled == [(200, b"1")]
    await wait_for(lambda: ws.sid not in server.engine.sessions and polling.sid not in server.engine.sessions)
    await ws.aclose()
    # The witness did connect in time, so it stays.
    await witness.check(server)
    assert reasons == {}


async def test_partial_request_head_is_dropped(setup):
    server, _, witness = await setup(http={"read_timeout": 0.3})
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 12")
        with trio.fail_after(3):
            # Whatever it answers (if anything), the server closes the connection.
            while await stream.receive_some(65536):
                pass
    await witness.check(server)


async def test_silent_body_is_dropped(setup):
    server, _, witness = await setup(http={"read_timeout": 0.3})
    client = await Polling(server.port).open()
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(
            f"POST {client.target} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n42".encode()
        )
        with trio.fail_after(3):
            received = b""
            while chunk := await stream.receive_some(65536):
                received += chunk
    assert received.startswith(b"HTTP/1.1 408")
    await witness.check(server)


async def test_overlapping_polls(setup):
    server, reasons, witness = await setup()
    client = await Polling(server.port).open()
    results: list[tuple[int, bytes]] = []

    async def first_get():
        results.append(await client.get())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first_get)
        await wait_for(lambda: server.engine.sessions[client.sid]._polling)
        status, body = await client.get()
        assert (status, orjson.loads(body)) == (400, {"code": 3, "message": "Bad request"})
    # The overlap ends that session; the GET that was waiting sees it close.
    assert results == [(200, b"1")]
    await wait_for(lambda: client.socket_sid in reasons)
    assert client.sid not in server.engine.sessions
    await witness.check(server)


async def test_peer_reset_mid_request(setup):
    server, _, witness = await setup()
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    await stream.send_all(b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n4")
    stream.socket.setsockopt(socket_mod.SOL_SOCKET, socket_mod.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()
    await trio.sleep(0.1)
    await witness.check(server)
