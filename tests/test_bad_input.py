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
from support.wire import EIO, EIO3, WAIT, Polling, RawWS, http, request



# ---------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def no_error_logs(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="rtserver")
    yield
    bad = [r for r in caplog.records if r.name.startswith("rtserver") and (r.levelno >= logging.ERROR or r.exc_info)]
    assert not bad, [f"{r.levelname} {r.name} {r.getMessage()} {r.exc_text or ''}" for r in bad]


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


async def wait_for(predicate, timeout: float = WAIT) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


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
    # (A WebSocket for a session already on WebSocket is accepted, then
    # closed, as the reference does: tests/test_engineio_reference.py.)
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
ALLOW_EIO3 = {"engineio": {"allow_eio3": True}}
MALFORMED = {
    "engineio-unknown-type": "9",
    "engineio-empty": "",
    "engineio-ping-from-client": "2",  # v4 pings go from the server only
    "socketio-bad-json": '42["a"',
    "socketio-unknown-type": "49",
    "socketio-ack-id-too-long": '4212345678901234567["echo"]',
    "socketio-binary-bad-count": '45x-["echo",{"_placeholder":true,"num":0}]',
    "socketio-binary-no-count": '45["echo"]',
    "socketio-binary-zero-attachments": '450-["echo"]',
    "socketio-too-many-attachments": '4599-["echo"]',
    "socketio-reserved-event": '42["connect"]',
    "socketio-event-not-a-list": '42{"a":1}',
    "socketio-ack-without-id": '43["x"]',
    "socketio-connect-error-from-client": '44{"message":"x"}',
}


#: Engine.IO v3 (socket.io-client 2.x, with engineio.allow_eio3): (opcode, payload).
MALFORMED_V3_WEBSOCKET = {
    "v3-binary-not-a-message": (2, b"\x02abc"),
    "v3-binary-empty": (2, b""),
    "v3-binary-without-type-byte": (2, b'2["echo"]'),
    "v3-pong-from-a-v3-client": (1, b"3"),
    "v3-base64-not-a-message": (1, b"b2AQID"),
    "v3-bad-base64": (1, b"b4!!!!"),
    "v3-socketio-bad-json": (1, b'42["a"'),
}
MALFORMED_WEBSOCKET = {
    **{name: (EIO, 1, frame.encode()) for name, frame in MALFORMED.items()},
    **{name: (EIO3, *frame) for name, frame in MALFORMED_V3_WEBSOCKET.items()},
}


@pytest.mark.parametrize(("eio", "opcode", "payload"), MALFORMED_WEBSOCKET.values(), ids=MALFORMED_WEBSOCKET.keys())
async def test_malformed_packet_over_websocket(setup, eio, opcode, payload):
    server, reasons, witness = await setup(**(ALLOW_EIO3 if eio == EIO3 else {}))
    ws = await RawWS.open(server.port, eio=eio)
    await ws.send_frame(opcode, payload)
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


# ------------------------------------- Engine.IO v3 (socket.io-client 2.x)
MALFORMED_V3_POLLING = {
    "no-length": b"4hello",
    "length-not-digits": b"x:4hello",
    "length-too-long": b"12345678901:4",
    "record-past-the-end": b"9:4hello",
    "splits-a-surrogate-pair": "2:4\U0001f600".encode(),
    "unknown-type": b"1:9",
    "pong-from-a-v3-client": b"1:3",
    "base64-not-a-message": b"6:b2AQID",
    "bad-base64": b"6:b4!!!!",
    "binary-record-not-a-message": b"\x01\x02\xff\x02\x00",
    "binary-length-not-digits": b"\x00\x0a\xff4",
    "binary-record-past-the-end": b"\x00\x09\xff4",
    "binary-text-not-utf8": b"\x00\x02\xff\xff\xfe",
}


@pytest.mark.parametrize("body", MALFORMED_V3_POLLING.values(), ids=MALFORMED_V3_POLLING.keys())
async def test_malformed_v3_payload(setup, body):
    server, reasons, witness = await setup(**ALLOW_EIO3)
    client = await Polling(server.port, EIO3).open()
    status, answer = await client.post(body)
    assert (status, orjson.loads(answer)) == (400, {"code": 3, "message": "Bad request"})
    await wait_for(lambda: client.socket_sid in reasons)
    assert reasons[client.socket_sid] == "parse error"
    assert client.sid not in server.engine.sessions
    await witness.check(server)


async def test_v3_session_asked_for_as_v4_and_jsonp(setup):
    server, reasons, witness = await setup(**ALLOW_EIO3)
    client = await Polling(server.port, EIO3).open()
    # A session's revision is fixed at its handshake.
    status, body = await http(server.port, "GET", f"{EIO}&transport=polling&sid={client.sid}")
    assert (status, orjson.loads(body)) == (400, {"code": 3, "message": "Bad request"})
    # JSONP polling is not served (see the README's "Old clients").
    status, body = await http(server.port, "GET", f"{EIO3}&transport=polling&j=0")
    assert (status, orjson.loads(body)) == (400, {"code": 0, "message": "Transport unknown"})
    # Neither ended the session.
    assert await client.post(b'19:420["echo","still"]') == (200, b"ok")
    assert await client.get() == (200, b'12:430["still"]')
    await witness.check(server)
    assert reasons == {}


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


async def test_partial_request_head_gets_408(setup):
    server, _, witness = await setup(http={"read_timeout": 0.3})
    received = await raw(server.port, b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 12")
    assert parse_raw_response(received) == (408, {"code": "request_timeout", "message": "request head not received in time"})
    await witness.check(server)


async def test_trickled_request_head_gets_408(setup):
    """Slowloris: a byte at a time keeps the connection busy only for read_timeout."""
    server, _, witness = await setup(http={"read_timeout": 0.5})
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    received = b""
    async with stream:
        with trio.fail_after(3):
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                try:
                    await stream.send_all(bytes([byte]))
                except trio.BrokenResourceError:
                    break
                await trio.sleep(0.05)
            while chunk := await stream.receive_some(65536):
                received += chunk
    assert parse_raw_response(received)[0] == 408
    await witness.check(server)


async def test_idle_keepalive_connection_closes_without_answer(setup):
    server, _, witness = await setup(http={"keepalive_timeout": 0.3})
    assert await raw(server.port, b"") == b""
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


# ------------------------------------------------------------- HEAD
async def head_and_get(port: int, target: str) -> tuple[tuple[int, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]:
    return await request(port, "HEAD", target), await request(port, "GET", target)


@pytest.mark.parametrize("target", ["/healthz", "/metrics", "/api/v1/status", "/no/such/route", "/"])
async def test_head_is_answered_like_get_without_a_body(setup, target):
    server, _, witness = await setup()
    (head_status, head_headers, head_body), (status, headers, body) = await head_and_get(server.port, target)
    assert head_status == status and head_body == b""
    if target != "/metrics":  # the metrics text changes between the two requests
        assert int(head_headers["content-length"]) == len(body) > 0
    assert head_headers["content-type"] == headers["content-type"]
    await witness.check(server)


async def test_head_on_the_engineio_path(setup):
    """A handshake must be a GET (as the reference answers); a HEAD for a
    session is refused without touching it (it would take a poll's frames)."""
    server, _, witness = await setup()
    status, headers, body = await request(server.port, "HEAD", f"{EIO}&transport=polling")
    assert (status, body) == (400, b"") and int(headers["content-length"]) == len(b'{"code":2,"message":"Bad handshake method"}')
    client = await Polling(server.port).open()
    status, _, body = await request(server.port, "HEAD", client.target)
    assert (status, body) == (400, b"")
    assert client.sid in server.engine.sessions
    assert await client.post(b'421["echo","after head"]') == (200, b"ok")
    assert await client.get() == (200, b'431["after head"]')
    await witness.check(server)


async def test_raw_head_then_pipelined_get(setup):
    """The 30 bytes that used to end the process, then a GET on the same
    connection: both answered, no body bytes in between."""
    server, _, witness = await setup()
    received = await raw(
        server.port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    first, _, rest = received.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 404")
    assert parse_raw_response(rest) == (200, {"status": "ok"})
    await witness.check(server)


# ------------------------------------------------ connection counting
async def test_refusals_release_their_connection_counts(setup, nursery):
    """Every way a new connection is refused or ends gives its per-address
    count back: with a cap of 3, twenty refusals of each kind, then normal
    connections still get in, and the counts are 0 once all have left."""
    server, reasons, witness = await setup(
        limits={"max_connections_per_address": 3, "handshake_burst": 10_000, "handshakes_per_second": 10_000},
        engineio={"cors_origins": ["http://allowed.example"]},
    )
    upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"),
               ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]
    ws = f"{EIO}&transport=websocket"
    refusals = [
        ("GET", ws, b"x", upgrade, 400),  # an upgrade request with a body
        ("GET", ws, b"", upgrade[:2], 400),  # no key, no version
        ("GET", ws, b"", [*upgrade, ("Origin", "http://evil.example")], 403),
        ("GET", "/socket.io/?EIO=3&transport=websocket", b"", upgrade, 400),
        ("GET", f"{EIO}&transport=polling", b"", [("Origin", "http://evil.example")], 403),
        ("POST", f"{EIO}&transport=polling", b"40", [], 400),
        ("HEAD", f"{EIO}&transport=polling", b"", [], 400),
        ("GET", f"{EIO}&transport=polling&sid=nope", b"", [], 400),
    ]
    for method, target, body, headers, expected in refusals:
        for _ in range(20):
            status, _, _ = await request(server.port, method, target, body, headers, sized=None if body else ())
            assert status == expected, (method, target, headers)
    # Sessions that were admitted and then ended, in each way a client ends one.
    for _ in range(10):
        closed = await Polling(server.port).open()
        assert await closed.post(b"1") == (200, b"ok")  # a close packet
        broken = await RawWS.open(server.port)
        await broken.stream.aclose()  # vanishes
        await Polling(server.port).open(connect=False)  # never connects: ends at the connect timeout
        await wait_for(lambda: len(server.engine.sessions) == 1 + 1)  # the witness, the unconnected one
        for sid in [s for s in server.engine.sessions if s != witness.sid]:
            server.engine.sessions[sid].abort("test over")
        await wait_for(lambda: len(server.engine.sessions) == 1)
    assert server.guard.counted() == {"sessionsByAddress": 1, "socketsByUser": 1}  # the witness
    # The cap is still free: two more clients (3 with the witness) get in, a fourth does not.
    first, second = await Polling(server.port).open(), await RawWS.open(server.port)
    status, body = await http(server.port, "GET", f"{EIO}&transport=polling")
    assert (status, orjson.loads(body)["code"]) == (429, "too_many_connections")
    await first.post(b"1")
    await second.stream.aclose()
    await witness.ws.aclose()
    await wait_for(lambda: not server.engine.sessions)
    assert server.guard.counted() == {"sessionsByAddress": 0, "socketsByUser": 0}
    status, body = await http(server.port, "GET", f"{EIO}&transport=polling")
    assert status == 200 and body.startswith(b"0{")


# ------------------------------------------------------- deep JSON
def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("levels", [100, 254, 2000])
async def test_deep_json_is_refused_for_that_event(setup, levels):
    """Past the nesting limit an event is refused in its ack, or with the
    error event, and the socket goes on; never an error log."""
    server, reasons, witness = await setup()
    client = await RawWS.open(server.port)
    await client.send_text(f'427["echo",{{"a":{nested(levels)}}}]')
    message = "the payload nests arrays and objects deeper than 64 levels"
    assert await client.recv_text() == "437" + orjson.dumps([{"error": {"code": "invalid_message", "message": message}}]).decode()
    await client.send_text(f'42["echo",{nested(levels)}]')
    event = "echo" if levels < 1000 else None  # beyond the parser's own depth the name is not known
    expected = ["error", {"code": "invalid_message", "message": message, "event": event}]
    assert orjson.loads((await client.recv_text())[2:]) == expected
    await client.send_text(f'428["echo",{nested(62)}]')  # within the limit (the event's array is one more)
    assert (await client.recv_text()).startswith("438[")
    assert reasons == {}
    await witness.check(server)


async def test_deep_json_in_an_api_body(setup):
    server, _, witness = await setup(auth={"enabled": False, "api_keys": ["k" * 32]})
    body = orjson.dumps({"event": "x", "broadcast": True}).replace(b"}", b', "data": ' + nested(300).encode() + b"}")
    status, _, answer = await request(server.port, "POST", "/api/v1/emit", body, [("X-API-Key", "k" * 32)])
    assert (status, orjson.loads(answer)) == (400, {"code": "invalid_body", "message": "the payload nests arrays and objects deeper than 64 levels"})
    await witness.check(server)


# ----------------------------------------- a batch after a malformed packet
class ReceivedEvents:
    """An observer keeping the arguments of every client event handled."""

    def __init__(self) -> None:
        self.args: list[list[Any]] = []

    def received(self, socket, event, args):
        self.args.append(args)

    def sent(self, namespace, event, args, rooms):
        pass  # only what came in matters here

    def joined(self, socket, room):
        pass

    def left(self, socket, room):
        pass


async def test_frames_after_a_malformed_packet_are_dropped(setup, caplog):
    """A polling payload: a valid event, a malformed packet, another event.
    The first is handled, the session ends at the second, the third is
    never read (one protocol error logged, not two)."""
    server, reasons, witness = await setup()
    seen = ReceivedEvents()
    server.sio.observers.append(seen)
    client = await Polling(server.port).open()
    assert await client.post(b'421["echo","before"]\x1e4garbage\x1e422["echo","after"]') == (200, b"ok")
    await wait_for(lambda: client.socket_sid in reasons)
    assert seen.args == [["before"]]
    # The session ended with the malformed packet (what it had queued is dropped).
    assert (await client.get())[0] == 400
    errors = [r for r in caplog.records if r.getMessage().startswith("protocol error") and client.sid in str(r.__dict__)]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    await witness.check(server)
