"""A real browser: Debian's chromium runs the stock socket.io-client bundle from
another origin (CORS), long-polling first then the upgrade to WebSocket, and
reports what it saw back to the server."""

from __future__ import annotations

import shutil
import subprocess

import trio
from conftest import CLIENTS
from support.browser import CHROMIUM, needs_chromium, serve_static
from support.clients import auth_section, token

from rtserver import App

BUNDLE = CLIENTS / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>rtserver browser test</title>
<script src="socket.io.min.js"></script></head>
<body><script>
// Each step is also logged by the static server, for a failure's report.
const step = (name) => fetch("/step/" + encodeURIComponent(name)).catch(() => {});
const socket = io("http://127.0.0.1:%(port)d", { auth: { token: "%(token)s" } });
socket.io.engine.on("upgrading", () => step("upgrading"));
socket.io.engine.on("upgradeError", (e) => step("upgradeError-" + e.message));
socket.io.engine.on("packet", (p) => step("packet-" + p.type + "-" + socket.io.engine.transport.name));
socket.on("disconnect", (reason) => step("disconnect-" + reason));
const seen = { firstTransport: null, upgraded: null, welcome: null, ack: null, binary: null };
socket.on("welcome", (text) => { seen.welcome = text; });
// The upgrade may finish before or after the Socket.IO connect: go on once both have.
let connected = false;
const proceed = () => {
  if (!connected || !seen.upgraded) return;
  socket.emit("echo", { hello: "browser" }, new Uint8Array([1, 2, 3]), (data, bin) => {
    seen.ack = data;
    seen.binary = Array.from(new Uint8Array(bin));
    socket.emit("report", seen);
  });
};
seen.firstTransport = socket.io.engine.transport.name;
socket.io.engine.once("upgrade", (transport) => { seen.upgraded = transport.name; proceed(); });
socket.on("connect", () => { connected = true; proceed(); });
socket.on("connect_error", (err) => socket.emit("report", { error: err.message }));
</script></body></html>
"""


@needs_chromium
async def test_stock_client_in_chromium(start_server, tmp_path):
    assert CHROMIUM is not None, "chromium is required in CI (.ci/run installs it)"
    app = App()
    reports: list[dict] = []
    reported = trio.Event()

    @app.on("connect")
    def connect(socket, auth):
        socket.emit("welcome", f"hello {socket.identity.user}")

    @app.on("echo")
    def echo(socket, data, binary):
        return data, binary

    @app.on("report")
    def report(socket, seen):
        reports.append(seen)
        reported.set()

    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(BUNDLE, site / "socket.io.min.js")
    static = serve_static(site)
    origin = f"http://127.0.0.1:{static.server_address[1]}"
    server = await start_server(app, auth=auth_section(), engineio={"cors_origins": [origin]})
    (site / "index.html").write_text(PAGE % {"port": server.port, "token": token("ada", "acme")})
    profile = tmp_path / "profile"
    browser = await trio.lowlevel.open_process(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            f"{origin}/index.html",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with trio.fail_after(60):
            await reported.wait()
    finally:
        browser.kill()
        await browser.wait()
        static.shutdown()
    assert reports == [
        {
            "firstTransport": "polling",
            "upgraded": "websocket",
            "welcome": "hello ada",
            "ack": {"hello": "browser"},
            "binary": [1, 2, 3],
        }
    ]
