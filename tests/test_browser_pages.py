"""The server's own pages in a real browser: the operator's dashboard
(/dashboard/) and the actions test console (/console/), used as a person
would, in Debian's chromium driven by playwright-core (one browser for the
module, a fresh context per page).  Any JavaScript error of a page fails the
test; screenshots go to tests/artifacts/browser/.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import trio
from support.browser import CHROMIUM, Browser
from support.clients import API_KEY, auth_section, token
from support.interactive import NodeClient, spawn
from test_feature_actions import example_sections
from test_feature_actions import token as actions_token

from rtserver import RunningServer
from rtserver.features.actions import send_update

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium is not installed (CI installs it)"
)

USERS = 12
DEVICES = 8


def js(value: Any) -> str:
    return json.dumps(value)


def dashboard_sections(**extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "auth": auth_section(),
        "dashboard": {"enabled": True, "sample_interval": 0.5},
        "presence": {"grace": 0.3},
        "features": {"enabled": ["signage"]},
        **extra,
    }


async def log_in(browser: Browser, name: str, server: RunningServer, credential: str) -> dict[str, Any]:
    """Open the dashboard in a new context, type ``credential`` into the login
    form and submit it; the answer's status and the page it leads to."""
    return await browser.run(f"""
        const p = await open({js(name)}, {js(f"http://127.0.0.1:{server.port}/dashboard/")});
        await p.fill("#credential", {js(credential)});
        const [answer] = await Promise.all([
            p.waitForResponse((r) => r.request().method() === "POST"),
            p.click("#login"),
        ]);
        await p.waitForLoadState();
        const error = await p.$("#error");
        return {{status: answer.status(), url: p.url(), error: error ? (await error.textContent()).trim() : null}};
    """)


async def test_javascript_errors_are_counted(chromium: Browser) -> None:
    """What the other tests rely on: a page's uncaught error reaches the test."""
    chromium.take_errors()
    await chromium.run("""
        const p = await open("scratch", "about:blank");
        await p.evaluate(() => { setTimeout(() => { throw new Error("deliberate"); }); console.error("logged"); });
        await p.waitForTimeout(200);
        await close("scratch");
    """)
    texts = [e["text"] for e in chromium.take_errors()]
    assert any("deliberate" in t for t in texts) and "logged" in texts, texts


async def test_login_refusals_session_cookie_and_logout(start_server, browser: Browser) -> None:
    server = await start_server(**dashboard_sections())

    wrong = await log_in(browser, "wrong", server, "not-the-key")
    assert wrong["status"] == 401 and "not accepted" in wrong["error"], wrong
    await browser.run('return await shot("wrong", "dashboard-login-wrong-key.png")')

    ordinary = await log_in(browser, "user", server, token("bob", "acme"))
    assert ordinary["status"] == 403 and "admin role" in ordinary["error"], ordinary
    # An ordinary token cannot open the namespace from a script either.
    refused = await browser.run(f"""
        const p = page("user");
        return await p.evaluate(async (t) => {{
            const ws = new WebSocket(`ws://${{location.host}}/socket.io/?EIO=4&transport=websocket`);
            return await new Promise((resolve) => {{
                ws.onmessage = (e) => {{
                    const text = String(e.data);
                    if (text[0] === "0") ws.send("40/rtserver-dashboard," + JSON.stringify({{token: t}}));
                    else if (text.startsWith("44/rtserver-dashboard,")) {{ ws.close(); resolve(text); }}
                    else if (text.startsWith("40/rtserver-dashboard,")) {{ ws.close(); resolve("connected"); }}
                }};
            }});
        }}, {js(token("bob", "acme"))});
    """)
    assert refused.startswith("44/rtserver-dashboard,") and '"forbidden"' in refused, refused

    admin = await log_in(browser, "admin", server, token("root", "acme", roles=["admin"]))
    assert admin["status"] == 303 and admin["url"].endswith("/dashboard/") and admin["error"] is None, admin
    seen = await browser.run("""
        const p = page("admin");
        await p.waitForSelector("#link.up");
        await p.waitForFunction(() => document.querySelector("#operator")?.textContent.includes("root"));
        const cookies = await p.context().cookies();
        return {operator: await p.textContent("#operator"), cookies, scriptSees: await p.evaluate(() => document.cookie)};
    """)
    assert seen["operator"] == "signed in as root", seen
    [cookie] = seen["cookies"]
    assert cookie["name"] == "rtserver_dashboard" and cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    assert cookie["path"] == "/dashboard" and not cookie["secure"] and seen["scriptSees"] == "", seen

    key = await log_in(browser, "key", server, API_KEY)
    assert key["status"] == 303 and key["error"] is None, key
    after = await browser.run("""
        const p = page("key");
        await p.waitForSelector("#link.up");
        await p.waitForFunction(() => document.querySelector("#operator")?.textContent.includes("api-key"));
        await p.click("#logout");
        await p.waitForSelector("#credential");
        const login = {url: p.url(), error: (await p.textContent("#error")).trim()};
        await p.goto(p.url());
        return {login, again: await p.$("#credential") !== null, cookies: await p.context().cookies()};
    """)
    assert after["login"] == {"url": f"http://127.0.0.1:{server.port}/dashboard/", "error": ""}, after
    assert after["again"] and after["cookies"] == [], after


async def fleet(nursery: trio.Nursery, server: RunningServer) -> tuple[NodeClient, list[dict[str, Any]]]:
    """USERS people and DEVICES screens of tenant acme (one person of globex),
    each a stock socket.io-client; returns the client and each member's auth."""
    members = []
    for i in range(USERS):
        tenant = "globex" if i == USERS - 1 else "acme"
        members.append({"auth": {"token": token(f"user{i}", tenant)}})
    for i in range(DEVICES):
        device = f"screen-{i}"
        members.append({"auth": {"token": token(f"player{i}", "acme", devices=[device]), "deviceId": device}})
    client = await spawn(nursery, "fleet.js", f"http://127.0.0.1:{server.port}", json.dumps(members), name="fleet")
    await client.expect(lambda e: e["type"] == "ready", timeout=30)
    return client, members


def socket_ids(client: NodeClient) -> dict[int, str]:
    return {e["index"]: e["id"] for e in client.lines if e["type"] == "connect"}


async def test_dashboard_shows_and_steers_a_live_fleet(start_server, browser: Browser, nursery: trio.Nursery) -> None:
    server = await start_server(**dashboard_sections())
    client, _ = await fleet(nursery, server)
    ids = socket_ids(client)
    assert len(ids) == USERS + DEVICES

    assert (await log_in(browser, "ops", server, API_KEY))["status"] == 303
    overview = await browser.run(f"""
        const p = page("ops");
        await p.waitForSelector("#link.up");
        // 20 stock clients and this page's own connection.
        await p.waitForFunction(() => document.querySelector("#cards .card .value")?.textContent === "{USERS + DEVICES + 1}");
        await p.waitForFunction(() => document.querySelectorAll("#plot-connections polyline").length === 1);
        await shot("ops", "dashboard-overview.png");
        return {{cards: await p.$$eval("#cards .card", (cards) => cards.map((c) => c.innerText)),
                 node: await p.textContent("#node")}};
    """)
    assert overview["cards"][0].startswith(f"{USERS + DEVICES + 1}\nconnections"), overview
    assert any(c.startswith(f"{DEVICES}\nonline devices") for c in overview["cards"]), overview
    assert " · pid " in overview["node"], overview

    users = await browser.run(f"""
        const p = page("ops");
        await p.click("#tabs button[data-tab=users]");
        await p.waitForFunction(() => document.querySelectorAll("#user-table tbody tr[data-sid]:not([data-sid=''])").length === {USERS + DEVICES});
        await shot("ops", "dashboard-users.png");
        return await p.$$eval("#user-table tbody tr", (rows) => rows.map((r) => r.dataset.sid));
    """)
    assert sorted(users) == sorted(ids.values()), users

    devices = await browser.run(f"""
        const p = page("ops");
        await p.click("#tabs button[data-tab=devices]");
        await p.waitForFunction(() => document.querySelectorAll("#device-table tbody tr.device").length === {DEVICES});
        await shot("ops", "dashboard-devices.png");
        return await p.$$eval("#device-table tbody tr", (rows) => rows.map((r) => [r.dataset.device, r.className, r.cells[4].textContent]));
    """)
    assert sorted(d for d, _, _ in devices) == [f"screen-{i}" for i in range(DEVICES)], devices
    assert all(cls == "device" and address == "127.0.0.1" for _, cls, address in devices), devices

    # Disconnect one person's socket from the page: that client gets its disconnect.
    victim = ids[3]
    await browser.run(f"""
        const p = page("ops");
        await p.click("#tabs button[data-tab=users]");
        await p.click('#user-table tr[data-sid="{victim}"] button.disconnect');
        await p.waitForSelector("#confirm[open]");
        await shot("ops", "dashboard-confirm-disconnect.png");
        await p.click("#confirm-ok");
        await p.waitForFunction(() => document.querySelector("#toast")?.textContent.includes("done"));
    """)
    gone = await client.expect(lambda e: e["type"] == "disconnect")
    assert gone == {"type": "disconnect", "index": 3, "reason": "io server disconnect"}

    # A screen's client closes: it goes offline in the devices view (after presence's grace).
    screen = USERS + 5
    await client.run(f"void sockets[{screen}].close()")
    offline = await browser.run("""
        const p = page("ops");
        await p.click("#tabs button[data-tab=devices]");
        await p.waitForSelector('#device-table tr.offline[data-device="screen-5"]');
        await shot("ops", "dashboard-device-offline.png");
        return await p.$$eval("#device-table tbody tr", (rows) => rows.map((r) => [r.dataset.device, r.cells[0].textContent]));
    """)
    # Offline first (the default sort), and only screen-5.
    assert offline[0] == ["screen-5", "offline"] and all(s == "online" for _, s in offline[1:]), offline

    # Push a layout to one screen from the page: the screen gets it, the view shows it.
    await browser.run("""
        const p = page("ops");
        await p.click('#device-table tr[data-device="screen-2"] button.target');
        await p.fill("#layout-id", "lobby-7");
        await p.fill("#layout-data", '{"slides": 3}');
        await p.click("#push-layout");
        await p.click("#confirm-ok");
        await p.waitForSelector('#device-table tr[data-device="screen-2"] >> text=lobby-7');
    """)
    layout = await client.expect(lambda e: e["type"] == "event" and e["event"] == "layout_update")
    assert layout["index"] == USERS + 2 and layout["args"][0]["layoutId"] == "lobby-7", layout
    assert layout["args"][0]["layoutData"] == {"slides": 3}

    # The event tail: paused until started; filtered; no token shown.
    secret = token("user0", "acme")
    tail = await browser.run("""
        const p = page("ops");
        await p.click("#tabs button[data-tab=events]");
        await p.fill("#tail-event", "chat");
        await p.click("#tail-toggle");
        await p.waitForFunction(() => document.querySelector("#tail-state")?.textContent === "running");
        return await p.textContent("#tail-toggle");
    """)
    assert tail == "Pause"
    await client.run(f"void sockets[0].emit('chat', {{text: 'hi', token: {js(secret)}, note: 'Bearer ' + {js(secret)}}})")
    await client.run("void sockets[1].emit('ignored', {text: 'not shown'})")
    rows = await browser.run("""
        const p = page("ops");
        await p.waitForSelector("#tail-table tbody tr");
        await shot("ops", "dashboard-event-tail.png");
        return await p.$$eval("#tail-table tbody tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
    """)
    assert len(rows) == 1 and rows[0][3] == "chat", rows
    assert "[redacted]" in rows[0][5] and "[token]" in rows[0][5] and secret not in rows[0][5], rows
    await client.close()


async def test_actions_console_in_chromium(start_server, browser: Browser) -> None:
    """Seed 001's /console/ as a person uses it: token, session id, REQUEST,
    RESPONSE, ERROR, and an UPDATE the back end pushes with send_update."""
    server = await start_server(**example_sections())
    await browser.run(f"""
        const p = await open("console", {js(f"http://127.0.0.1:{server.port}/console/")});
        await p.fill("#token", {js(actions_token("ada", sid="s-42"))});
        await p.fill("#sessionId", "s-42");
        await p.click("#connect");
        await p.waitForFunction(() => document.querySelector("#status")?.textContent.startsWith("connected ("));
        await p.fill("#action", "whoami");
        await p.click("#send");
        await p.waitForSelector("#log .RESPONSE");
        await p.fill("#action", "no-such-action");
        await p.click("#send");
        await p.waitForSelector("#log .ERROR");
    """)
    delivered = send_update(server, "acme", {"action": "report", "data": {"progress": 50}})
    assert delivered == 1
    lines = await browser.run("""
        const p = page("console");
        await p.waitForSelector("#log .UPDATE");
        await shot("console", "console-request-response-error-update.png");
        await p.click("#disconnect");
        await p.waitForFunction(() => document.querySelector("#status")?.textContent === "disconnected");
        return await p.$$eval("#log div", (lines) => lines.map((l) => [l.className, l.textContent]));
    """)
    kinds = [kind for kind, _ in lines]
    assert kinds[:5] == ["REQUEST", "RESPONSE", "REQUEST", "ERROR", "UPDATE"], lines

    def envelope(text: str) -> dict[str, Any]:
        return json.loads(text.split(" ", 2)[2])

    request, response, _, error, update = (envelope(text) for _, text in lines[:5])
    assert request["action"] == "whoami" and response["requestId"] == request["requestId"]
    assert response["data"]["userId"] == "ada" and response["data"]["sessionId"] == "s-42"
    assert error["error"]["code"] == "UNKNOWN_ACTION" and error["action"] == "no-such-action"
    assert update["type"] == "UPDATE" and update["data"] == {"progress": 50} and update["action"] == "report"
