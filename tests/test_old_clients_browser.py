"""socket.io-client 2.x in a real browser: Debian's chromium (driven by
playwright-core) runs the client's own bundle from the npm package, from
another origin.  A browser has XHR2, so the 2.x client polls with binary
payloads (``application/octet-stream`` both ways, after a CORS preflight for
its POSTs), which Node's 2.x client never does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import CLIENTS
from support.browser import Browser, needs_chromium, serve_static
from support.clients import auth_section, token
from test_old_clients import V2, old_app

BUNDLE = CLIENTS / "node_modules" / "socket.io-client-v2" / "dist" / "socket.io.js"

#: Run in the page: connect (and wait for the upgrade when ``upgrade``), an
#: echo with binary both ways, a server emit with binary, a server call
#: answered with binary; what was seen comes back.
EXCHANGE = """async ({url, options, upgrade}) => {
  const socket = io(url, options);
  const first = socket.io.engine.transport.name;
  const bytes = (b) => Array.from(new Uint8Array(b));
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", (e) => reject(new Error(JSON.stringify(e))));
  });
  if (upgrade && socket.io.engine.transport.name !== "websocket") {
    await new Promise((r) => socket.io.engine.once("upgrade", r));
  }
  socket.on("question", (text, blob, ack) => ack(text, blob));
  // (The 2.x client sends an ArrayBuffer as binary; a typed array it would write as JSON.)
  const echo = await new Promise((r) => socket.emit("echo", "text", new Uint8Array([1, 2, 3]).buffer, (...a) => r(a)));
  const greeting = new Promise((r) => socket.once("greeting", (...a) => r(a)));
  await new Promise((r) => socket.emit("hello", "browser", r));
  const [hello, blob] = await greeting;
  const asked = await new Promise((r) => socket.emit("ask", (...a) => r(a)));
  const seen = {
    id: socket.id, first, last: socket.io.engine.transport.name,
    echo: [echo[0], bytes(echo[1])], hello: hello.text, blob: bytes(blob), asked: [asked[0], bytes(asked[1])],
  };
  socket.close();
  return seen;
}"""


@needs_chromium
@pytest.mark.parametrize(
    ("options", "last"), [({"transports": ["polling"]}, "polling"), ({}, "websocket")], ids=["polling", "upgrade"]
)
async def test_stock_2x_bundle_in_chromium(start_server, chromium: Browser, tmp_path: Path, options: dict[str, Any], last: str):
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(BUNDLE, site / "socket.io.js")
    (site / "index.html").write_text('<!doctype html><meta charset="utf-8"><script src="socket.io.js"></script>')
    static = serve_static(site)
    origin = f"http://127.0.0.1:{static.server_address[1]}"
    chromium.take_errors()
    try:
        app, seen = old_app()
        server = await start_server(app, engineio={**V2, "cors_origins": [origin]}, auth=auth_section())
        arguments = {
            "url": f"http://127.0.0.1:{server.port}",
            "options": {**options, "query": {"token": token("ada", "acme")}},
            "upgrade": last == "websocket",
        }
        result = await chromium.run(f"""
            const p = await open("v2", {json.dumps(origin + "/index.html")});
            return await p.evaluate({EXCHANGE}, {json.dumps(arguments)});
        """)
        chromium.close_pages()
    finally:
        static.shutdown()
    assert chromium.take_errors() == []
    assert result == {
        "id": seen["connects"][0]["sid"],
        "first": "polling",
        "last": last,
        "echo": ["text", [1, 2, 3]],
        "hello": "hello browser",
        "blob": [0, 255, 98, 105, 110],
        "asked": ["why", [1, 2]],
    }
    # A browser takes binary: its polls carried binary payloads, not base64.
    assert seen["binary"] == [True]
