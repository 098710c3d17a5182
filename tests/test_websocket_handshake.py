"""The WebSocket handshake answered from the request h11 parsed (RFC 6455 4.2)."""

from __future__ import annotations

import pytest
import trio

from rtserver.engineio.websocket import handshake

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's own example
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_token_is_the_rfc_example():
    answer = handshake({"sec-websocket-key": RFC_KEY, "sec-websocket-version": "13"})
    assert answer is not None
    assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert f"Sec-WebSocket-Accept: {RFC_ACCEPT}\r\n".encode() in answer


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-websocket-version": "13"},
        {"sec-websocket-key": RFC_KEY, "sec-websocket-version": "8"},
        {"sec-websocket-key": "not base64!", "sec-websocket-version": "13"},
        {"sec-websocket-key": "c2hvcnQ=", "sec-websocket-version": "13"},
        {"sec-websocket-key": "é" * 24, "sec-websocket-version": "13"},
    ],
)
def test_invalid_upgrades_are_refused(headers):
    assert handshake(headers) is None


async def test_a_bad_upgrade_gets_a_clear_http_error(start_server):
    server = await start_server()
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    await stream.send_all(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    data = b""
    with trio.fail_after(5):
        while b'"message"' not in data:
            chunk = await stream.receive_some()
            if not chunk:
                break
            data += chunk
    await stream.aclose()
    assert data.startswith(b"HTTP/1.1 400 ")
    assert b'{"code":3,"message":"Bad request"}' in data
