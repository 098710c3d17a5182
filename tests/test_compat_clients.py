"""Every socket.io-client version people still run, in Node and in Chromium.

One scenario (tests/clients/compat_scenario.js) runs unchanged with each
installed version: socket.io-client 3.1, 4.0, 4.6 and 4.8 (npm aliases in
tests/clients/package.json).  In Node through tests/clients/compat.js; in
Debian's chromium from each version's own browser bundle
(``dist/socket.io.min.js``), served from another origin (CORS), one page per
version in one browser.  Each report is held to what that version really
does: 4.6 and later recover their session after the server drops the
transport (same id, the missed event replayed, ``socket.recovered``); 3.x and
4.0 have no recovery and reconnect as a new socket.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CLIENTS
from support.browser import Browser, needs_chromium, serve_static
from support.clients import auth_section, token
from support.nodes import url

from rtserver import App, RunningServer

#: package name (tests/clients/package.json) -> (major.minor, has recovery)
VERSIONS = {
    "socket.io-client-v3": ("3.1", False),
    "socket.io-client-v40": ("4.0", False),
    "socket.io-client-v46": ("4.6", True),
    "socket.io-client": ("4.8", True),
}

SECTIONS: dict[str, Any] = {"auth": auth_section(), "recovery": {"enabled": True, "flush_interval": 0.05}}


def compat_app() -> App:
    """The server side of the scenario."""
    app = App()

    @app.on("connect")
    def connect(socket, auth):
        socket.emit("welcome", f"hello {socket.identity.user}")

    @app.on("echo")
    def echo(socket, *args):
        return args

    @app.on("echo", namespace="/compat")
    def echo_in_namespace(socket, *args):
        return (socket.namespace_name, *args)

    @app.on("ask-me")
    async def ask_me(socket, value):
        answer, blob = await socket.call("question", value)
        return {"answer": answer, "bytes": list(blob)}

    @app.on("join")
    def join(socket, room):
        socket.join(room)
        return room

    @app.on("shout")
    def shout(socket, room, text):
        return app.emit("shout", text, b"\x00\xff", to=room, skip=socket.sid)

    @app.on("drop-me")
    def drop_me(socket, room):
        socket.close_connection()
        # Emitted while the client is away: only a recovered session gets it.
        app.emit("missed", "while away", to=room)

    return app


def check(report: dict[str, Any], package: str) -> None:
    """``report`` is what ``package`` really does against rtserver."""
    version, recovers = VERSIONS[package]
    assert report.get("error") is None, report
    assert report["version"].startswith(version + "."), report
    assert report["firstTransport"] == "polling" and report["upgradedTo"] == "websocket"
    assert report["welcome"] == "hello ada"
    assert report["welcomeArgCount"] == 2  # the event and its recovery offset
    assert report["echo"] == [{"hello": "compat"}, 42]
    assert report["binaryEcho"] == {"bytes": [1, 2, 3], "label": "bin"}
    assert report["asked"] == {"answer": {"doubled": 42}, "bytes": [9, 8, 7]}
    assert report["otherTransport"] == "websocket"
    assert report["joined"] == [["lobby"], ["lobby"]]
    assert report["delivered"] == 1 and report["heard"] == {"text": "hi all", "bytes": [0, 255]}
    assert report["polling"] == {"transport": "polling", "bytes": [4, 5, 6]}
    assert report["multiplexed"] is True
    assert report["namespaceEcho"] == ["/compat", "in a namespace"]
    assert report["disconnectReason"] == "transport close"
    assert report["echoAfterReconnect"] == ["back"]
    if recovers:
        assert (report["recovered"], report["sameId"], report["missed"]) == (True, True, ["while away"])
    else:  # no recovery before 4.6: a new socket, nothing replayed
        assert (report["recovered"], report["sameId"], report["missed"]) == (None, False, [])


@pytest.mark.parametrize("package", list(VERSIONS))
async def test_client_version_in_node(start_server, node, package):
    server = await start_server(compat_app(), **SECTIONS)
    result = await node("compat.js", package, url(server), token("ada", "acme"))
    assert result.returncode == 0, result
    [report] = result.of("report")
    check(report, package)


# ------------------------------------------------------------------ Chromium
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{package}</title>
<script src="{package}.min.js"></script><script src="compat_scenario.js"></script></head>
<body><script>
compatScenario(io, {url}, {token}).then((report) => {{ window.report = report; }});
</script></body></html>
"""


def bundle_version(bundle: Path) -> str:
    """The version in a bundle's banner (``Socket.IO v4.6.2``)."""
    found = re.search(r"Socket\.IO v(\d+\.\d+\.\d+)", bundle.read_text()[:200])
    assert found, bundle
    return found.group(1)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """Each version's browser bundle and the scenario, served from their own origin."""
    root = tmp_path_factory.mktemp("compat-site")
    shutil.copy(CLIENTS / "compat_scenario.js", root)
    for package in VERSIONS:
        shutil.copy(CLIENTS / "node_modules" / package / "dist" / "socket.io.min.js", root / f"{package}.min.js")
    static = serve_static(root)
    yield root, f"http://127.0.0.1:{static.server_address[1]}"
    static.shutdown()


async def run_in_chromium(browser: Browser, site: tuple[Path, str], server: RunningServer, package: str) -> dict[str, Any]:
    root, origin = site
    page = f"{package}.html"
    (root / page).write_text(
        PAGE.format(package=package, url=json.dumps(url(server)), token=json.dumps(token("ada", "acme")))
    )
    return await browser.run(f"""
        const p = await open({json.dumps(package)}, {json.dumps(f"{origin}/{page}")});
        await p.waitForFunction(() => window.report !== undefined, null, {{timeout: 40000}});
        return await p.evaluate(() => window.report);
    """, timeout=60)


@needs_chromium
@pytest.mark.parametrize("package", list(VERSIONS))
async def test_client_version_in_chromium(start_server, browser, site, package):
    server = await start_server(compat_app(), **SECTIONS, engineio={"cors_origins": [site[1]]})
    report = await run_in_chromium(browser, site, server, package)
    check({**report, "version": bundle_version(site[0] / f"{package}.min.js")}, package)
