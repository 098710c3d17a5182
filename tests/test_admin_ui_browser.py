"""The official admin UI in a real browser: the bundle that ships in the
@socket.io/admin-ui npm package, served from an origin of its own, logs in to
rtserver in Debian's chromium (driven by playwright-core, tests/browser/
admin_ui.js) and shows the stock socket.io-clients connected to it and their
rooms.  Screenshots are kept in tests/artifacts/admin-ui/."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from conftest import NODE, NodeResult
from support.browser import CHROMIUM, needs_chromium, serve_static
from support.clients import auth_section, token
from support.nodes import in_background, ok, scripted, url, wait_until

from rtserver import App
from rtserver.admin_ui.login import hash_password

BROWSER = Path(__file__).parent / "browser"
UI_BUNDLE = BROWSER / "node_modules" / "@socket.io" / "admin-ui" / "ui" / "dist"
ARTIFACTS = Path(__file__).parent / "artifacts" / "admin-ui"
PASSWORD = "browser pass 42"


def app_with_rooms() -> App:
    app = App()

    @app.on("enter")
    def enter(socket, room):
        socket.join(room)
        return "in"

    return app


@needs_chromium
async def test_official_admin_ui_in_chromium(start_server, nursery, node):
    assert CHROMIUM is not None, "chromium is required in CI (.ci/run installs it)"
    assert UI_BUNDLE.is_dir(), "make test-deps installs tests/browser's node_modules"
    app = app_with_rooms()
    static = serve_static(UI_BUNDLE)
    origin = f"http://127.0.0.1:{static.server_address[1]}"
    try:
        server = await start_server(
            app,
            auth=auth_section(),
            engineio={"cors_origins": [origin]},
            admin_ui={"enabled": True, "username": "ops", "password_hash": hash_password(PASSWORD, rounds=4), "stats_interval": 0.5},
        )
        clients = [
            in_background(
                nursery,
                node,
                "scripted.js",
                url(server),
                scripted(options=options, steps=[{"emit": ["enter", room], "ack": True}, {"wait": "finish"}], timeoutMs=120_000),
                timeout=150,
            )
            for room, options in (
                ("kitchen", {"auth": {"token": token("ann", "acme")}}),  # long-polling, then WebSocket
                ("garden", {"auth": {"token": token("ben", "acme")}, "transports": ["websocket"]}),
            )
        ]
        await wait_until(lambda: app.rooms().get("kitchen") == 1 and app.rooms().get("garden") == 1)
        sids = sorted(socket.sid for socket in app.sockets())
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        config = {
            "ui": f"{origin}/index.html",
            "server": f"http://127.0.0.1:{server.port}",
            "username": "ops",
            "password": PASSWORD,
            "sockets": sids,
            "rooms": ["kitchen", "garden"],
            "screenshots": str(ARTIFACTS),
            "chromium": CHROMIUM,
        }
        assert NODE is not None
        with trio.fail_after(120):
            proc = await trio.run_process(
                [NODE, str(BROWSER / "admin_ui.js"), json.dumps(config)],
                capture_stdout=True, capture_stderr=True, check=False, cwd=BROWSER,
            )
        result = NodeResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    finally:
        static.shutdown()
    assert result.of("error") == [], result  # the page's JavaScript errors
    assert result.returncode == 0 and len(result.of("done")) == 1, result
    [listed] = result.of("sockets")
    shown = {row[0]: row for row in listed["rows"]}
    assert sorted(shown) == sids  # the namespace "/" holds just these two
    for sid in sids:
        assert shown[sid][1:] == ["127.0.0.1", "WebSocket"], shown
    [rooms] = result.of("rooms")
    assert {"kitchen", "garden", "user:ann", "user:ben", "tenant:acme"} <= set(rooms["names"])
    assert set(rooms["names"]).isdisjoint(sids)  # private rooms are hidden by default
    for shot in result.of("screenshot"):
        assert Path(shot["path"]).stat().st_size > 10_000
    app.emit("finish")
    for client in clients:
        ok(await client.wait())
