"""The server as a service: signals, systemd notify and socket activation,
TLS, restarts that lose nothing, and clear start-up errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import trio
import trustme
from conftest import CLIENTS
from socketio import exceptions as socketio_exceptions
from support.clients import API_KEY, LiveClient, http
from support.process import ServerProcess

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("spawned")]


def write_config(tmp_path: Path, port: int = 0, **sections: dict[str, Any]) -> Path:
    """A config file: ``sections`` as TOML tables (simple values and lists only)."""
    tables = {"server": {"host": "127.0.0.1", "port": port, "data_dir": str(tmp_path / "data")}, **sections}
    lines = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def wait_listening(port: int, timeout: float = 15) -> None:
    with trio.fail_after(timeout):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


def free_listener() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


async def test_notify_protocol_and_watchdog(tmp_path, nursery):
    notify_path = str(tmp_path / "notify.sock")
    receiver = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await receiver.bind(notify_path)
    server = await ServerProcess.start(
        write_config(tmp_path, auth={"enabled": False}),
        env={"NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "200000"},
    )
    messages: list[str] = []

    async def until(predicate) -> None:
        with trio.fail_after(15):
            while not predicate():
                messages.append((await receiver.recv(4096)).decode())

    await until(lambda: any("READY=1" in m for m in messages))
    ready = next(m for m in messages if "READY=1" in m)
    assert "STATUS=listening on port" in ready
    await until(lambda: sum("WATCHDOG=1" in m for m in messages) >= 2)
    assert any("STATUS=0 connections" in m for m in messages)
    server.signal(signal.SIGTERM)
    await until(lambda: any("STOPPING=1" in m for m in messages))
    assert await server.exited() == 0
    receiver.close()


async def test_socket_activation_and_restart_without_refusals(tmp_path, nursery):
    """Two servers in turn on one inherited socket: 200 stock clients connected
    to the first reconnect to the second by themselves after SIGTERM."""
    listener = free_listener()
    port = listener.getsockname()[1]
    config = write_config(tmp_path, auth={"enabled": False})
    first = await ServerProcess.start(config, fd=listener.fileno())
    await wait_listening(port)
    process = await trio.lowlevel.open_process(
        [shutil.which("node"), str(CLIENTS / "reconnectors.js"), json.dumps({"url": f"http://127.0.0.1:{port}", "count": 200, "timeoutMs": 40000})],
        stdout=subprocess.PIPE,
        cwd=CLIENTS,
    )
    ServerProcess.started.append(process)
    lines: list[dict[str, Any]] = []

    async def read() -> None:
        buffer = b""
        async for chunk in process.stdout:
            buffer += chunk
            *done, buffer = buffer.split(b"\n")
            lines.extend(json.loads(line) for line in done if line.startswith(b"{"))

    nursery.start_soon(read)
    with trio.fail_after(40):
        while not any(line["type"] in ("ready", "timeout") for line in lines):
            await trio.sleep(0.05)
    assert lines[-1]["type"] == "ready", lines
    first.signal(signal.SIGTERM)
    assert await first.exited() == 0
    second = await ServerProcess.start(config, fd=listener.fileno())
    with trio.fail_after(40):
        while not any(line["type"] in ("back", "timeout") for line in lines):
            await trio.sleep(0.05)
    assert lines[-1]["type"] == "back", lines[-1]
    assert lines[-1]["reasons"] == ["transport close"]
    second.signal(signal.SIGTERM)
    assert await second.exited() == 0
    listener.close()


async def test_tls_with_a_trusted_certificate(tmp_path, nursery):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path, ca_path = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    listener = free_listener()
    port = listener.getsockname()[1]
    config = write_config(tmp_path, auth={"enabled": False}, tls={"cert_file": str(cert_path), "key_file": str(key_path)})
    server = await ServerProcess.start(config, fd=listener.fileno())
    await wait_listening(port)
    for transports in (["websocket"], ["polling", "websocket"]):
        options = {"url": f"https://127.0.0.1:{port}", "count": 1, "transports": transports, "ca": ca_path.read_text(), "timeoutMs": 8000}
        result = await trio.run_process(
            [shutil.which("node"), "-e", RECONNECT_ONCE, json.dumps(options)], capture_stdout=True, capture_stderr=True, check=False, cwd=CLIENTS
        )
        assert b'"type":"connected"' in result.stdout, (result.stdout, result.stderr)
    # Without the CA the client refuses the certificate.
    options = {"url": f"https://127.0.0.1:{port}", "count": 1, "transports": ["websocket"], "timeoutMs": 3000}
    result = await trio.run_process(
        [shutil.which("node"), "-e", RECONNECT_ONCE, json.dumps(options)], capture_stdout=True, check=False, cwd=CLIENTS
    )
    assert b'"type":"connected"' not in result.stdout
    server.signal(signal.SIGTERM)
    assert await server.exited() == 0
    listener.close()


RECONNECT_ONCE = """
const { io } = require("socket.io-client");
const o = JSON.parse(process.argv[1]);
const s = io(o.url, { transports: o.transports, ca: o.ca, reconnection: false });
s.on("connect", () => { console.log(JSON.stringify({ type: "connected", transport: s.io.engine.transport.name })); s.close(); process.exit(0); });
s.on("connect_error", (e) => { console.log(JSON.stringify({ type: "error", message: e.message })); process.exit(1); });
setTimeout(() => process.exit(2), o.timeoutMs);
"""


async def test_kill_minus_nine_keeps_what_was_acknowledged(tmp_path, nursery):
    listener = free_listener()
    port = listener.getsockname()[1]
    config = write_config(
        tmp_path,
        auth={"secret": "s" * 40, "api_keys": [API_KEY]},
        retention={"latest": ["layout_update"], "inbox": ["newNotification"]},
    )
    server = await ServerProcess.start(config, fd=listener.fileno())
    await wait_listening(port)
    status, body = await http(port, "POST", "/api/v1/admin/revoke", {"user": "mallory"})
    assert status == 200 and body["tokenVersion"] == 1
    # Acknowledged: a layout for a screen that is off, a notification for a user who is away.
    layout = {"device": "screen-9", "event": "layout_update", "data": {"layoutId": "L7"}}
    assert (await http(port, "POST", "/api/v1/emit", layout)) == (200, {"delivered": 0})
    notice = {"user": "ann", "event": "newNotification", "data": {"id": 1}}
    assert (await http(port, "POST", "/api/v1/emit", notice)) == (200, {"delivered": 0})
    server.signal(signal.SIGKILL)
    await server.exited()
    again = await ServerProcess.start(config, fd=listener.fileno())
    await wait_listening(port)
    client = LiveClient(port)
    stale = jwt_token("mallory", version=0)
    with pytest.raises(socketio_exceptions.ConnectionError):
        await client.connect({"token": stale})
    refusal = await client.next("connect_error")
    assert refusal["data"] == {"code": "token_revoked"}
    fresh = await LiveClient(port).connect({"token": jwt_token("mallory", version=1)})
    await fresh.disconnect()
    screen = await LiveClient(port).connect(
        {"token": jwt_token("screen", version=0, devices=["screen-9"]), "deviceId": "screen-9"}
    )
    assert await screen.next("layout_update") == {"layoutId": "L7"}
    ann = await LiveClient(port).connect({"token": jwt_token("ann", version=0)})
    assert await ann.next("newNotification") == {"id": 1}
    await screen.disconnect()
    await ann.disconnect()
    again.signal(signal.SIGTERM)
    assert await again.exited() == 0
    listener.close()


def jwt_token(user: str, version: int, **claims: Any) -> str:
    payload = {"sub": user, "tenantId": "acme", "tokenVersion": version, "exp": int(time.time()) + 600, **claims}
    return jwt.encode(payload, "s" * 40, algorithm="HS256")


@pytest.mark.parametrize("damage", ["file_instead_of_directory", "corrupt_database", "unwritable"])
async def test_bad_data_directory_is_a_clear_start_up_error(tmp_path, damage):
    data = tmp_path / "data"
    if damage == "file_instead_of_directory":
        data.write_text("not a directory")
    elif damage == "corrupt_database":
        data.mkdir()
        (data / "rtserver.db").write_bytes(b"this is not an SQLite database" * 100)
    else:
        if os.geteuid() == 0:
            pytest.skip("root can write anywhere")
        data.mkdir(mode=0o500)
    config = write_config(tmp_path, auth={"enabled": False})
    result = await trio.run_process(
        [sys.executable, "-m", "rtserver", "serve", "--config", str(config)], capture_stdout=True, capture_stderr=True, check=False
    )
    assert result.returncode == 2
    assert b"start-up error" in result.stderr and str(data).encode() in result.stderr
    assert b"Traceback" not in result.stderr
