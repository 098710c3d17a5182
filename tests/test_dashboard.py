"""The operator's dashboard without a browser: login over HTTP, the admin-only
namespace with python-socketio's client, the views, the actions (through the
HTTP API), the event tail; and its sans-IO parts.  tests/test_browser_pages.py
drives the page itself in chromium."""

from __future__ import annotations

import logging
import os
import queue
import time
from pathlib import Path
from typing import Any

import pytest
import socketio
import trio
from conftest import make_config
from support import wire
from support.clients import API_KEY, LiveClient, auth_section, http, token
from support.nodes import wait_until

from rtserver import App, RunningServer, serve
from rtserver.auth.identity import Identity
from rtserver.dashboard import DashboardSetupError, check
from rtserver.dashboard.activity import Activity
from rtserver.dashboard.redaction import preview, redact
from rtserver.dashboard.samples import Sample, Samples
from rtserver.dashboard.sessions import LoginSessions, set_cookie
from rtserver.dashboard.tail import Tail
from rtserver.nodeinfo import peer

NS = "/rtserver-dashboard"
WAIT = 10.0
ADMIN = {"roles": ["admin"]}


def sections(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "auth": auth_section(),
        "dashboard": {"enabled": True, "sample_interval": 0.2},
        "presence": {"grace": 0.2},
        "features": {"enabled": ["signage"]},
    }
    for name, values in extra.items():
        base[name] = {**base.get(name, {}), **values}
    return base


class Console:
    """python-socketio's client on the dashboard namespace."""

    def __init__(self, server: RunningServer) -> None:
        self.url = f"http://127.0.0.1:{server.port}"
        self.sio = socketio.Client(reconnection=False, request_timeout=5)
        self.received: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.sio.on("*", lambda event, *args: self.received.put((event, args[0] if args else None)), namespace=NS)
        self.sio.on("disconnect", lambda *reason: self.received.put(("disconnect", reason)), namespace=NS)

    async def connect(self, auth: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                      path: str = "socket.io") -> Console:
        await trio.to_thread.run_sync(lambda: self.sio.connect(
            self.url, namespaces=[NS], auth=auth, headers=headers or {}, socketio_path=path,
            transports=["websocket"], wait_timeout=WAIT))
        return self

    async def call(self, event: str, data: Any = None) -> Any:
        return await trio.to_thread.run_sync(lambda: self.sio.call(event, data if data is not None else {}, namespace=NS, timeout=WAIT))

    async def next(self, event: str, timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout

        def wait() -> Any:
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    name, data = self.received.get(timeout=remaining)
                except queue.Empty:
                    break
                if name == event:
                    return data
            raise AssertionError(f"no {event!r} within {timeout} s")

        return await trio.to_thread.run_sync(wait)

    async def close(self) -> None:
        await trio.to_thread.run_sync(self.sio.disconnect)


async def refused(server: RunningServer, **connect: Any) -> str:
    """The CONNECT_ERROR a dashboard connection gets (its message and code)."""
    console = Console(server)
    errors: list[Any] = []
    console.sio.on("connect_error", lambda data=None: errors.append(data), namespace=NS)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await console.connect(**connect)
    await trio.to_thread.run_sync(console.sio.disconnect)
    assert errors, "no connect_error"
    data = errors[-1]
    if isinstance(data, dict):
        return data["data"]["code"] if "data" in data else data["message"]
    return str(data)


async def login(server: RunningServer, credential: str, headers: list[tuple[str, str]] | None = None) -> tuple[int, dict[str, str], bytes]:
    body = b"credential=" + credential.encode()
    return await wire.request(server.port, "POST", "/dashboard/login", body,
                              [("Content-Type", "application/x-www-form-urlencoded"), *(headers or [])])


def session_cookie(headers: dict[str, str]) -> str:
    value = headers["set-cookie"].split(";", 1)[0]
    assert value.startswith("rtserver_dashboard=")
    return value


# ---------------------------------------------------------------- access
async def test_off_by_default(start_server) -> None:
    server = await start_server(auth=auth_section())
    assert (await wire.request(server.port, "GET", "/dashboard/"))[0] == 404
    assert (await wire.request(server.port, "GET", "/dashboard/socket.io/?EIO=4&transport=polling"))[0] == 404
    assert await refused(server, auth={"token": API_KEY}) == "Invalid namespace"


async def test_auth_off_needs_an_api_key(tmp_path: Path, monkeypatch, nursery: trio.Nursery) -> None:
    monkeypatch.delenv("RTSERVER_API_KEY", raising=False)
    config = make_config(tmp_path / "data", dashboard={"enabled": True})
    with pytest.raises(DashboardSetupError, match="needs an API key"):
        check(config)
    with pytest.raises(DashboardSetupError):
        await nursery.start(serve, config)
    monkeypatch.setenv("RTSERVER_API_KEY", "from-the-environment")
    server: RunningServer = await nursery.start(serve, config)
    # Auth off: only the API key opens it; tokens are not accepted at all.
    assert await refused(server) == "auth_required"
    assert await refused(server, auth={"token": token("root", roles=["admin"])}) == "token_invalid"
    console = await Console(server).connect(auth={"token": "from-the-environment"})
    assert (await console.call("whoami"))["operator"] == "api-key"
    await console.close()
    server.shutdown()


async def test_namespace_admits_admins_only(start_server) -> None:
    server = await start_server(**sections(auth={"leeway": 0}))
    assert await refused(server) == "auth_required"
    assert await refused(server, auth={"token": token("bob", "acme")}) == "forbidden"
    assert await refused(server, auth={"token": "not-a-key"}) == "token_invalid"
    assert await refused(server, auth={"token": token("root", "acme", ttl=-5, **ADMIN)}) == "token_expired"
    assert await refused(server, headers={"Cookie": "rtserver_dashboard=made-up"}, path="dashboard/socket.io") == "session_expired"

    admin = await Console(server).connect(auth={"token": token("root", "acme", **ADMIN)})
    assert (await admin.call("whoami"))["operator"] == "root"
    bearer = await Console(server).connect(headers={"Authorization": f"Bearer {API_KEY}"})
    assert (await bearer.call("whoami"))["operator"] == "api-key"
    # A watcher is nobody's presence and in no tenant.
    assert (await bearer.call("overview"))["onlineUsers"] == 0
    await admin.close()
    await bearer.close()


async def test_login_page_cookie_logout(start_server) -> None:
    # CORS open to any origin: the session cookie still works from the page's own origin only.
    server = await start_server(**sections(engineio={"cors_origins": ["*"]}))
    port = server.port
    status, headers, _ = await wire.request(port, "GET", "/dashboard")
    assert status == 308 and headers["location"] == "/dashboard/"
    status, headers, body = await wire.request(port, "GET", "/dashboard/")
    assert status == 200 and b'name="credential"' in body and b"__" not in body
    assert "script-src 'self'" in headers["content-security-policy"] and headers["cache-control"] == "no-store"
    status, headers, body = await wire.request(port, "GET", "/dashboard/static/dashboard.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript") and b"class Live" in body
    assert (await wire.request(port, "GET", "/dashboard/static/index.html"))[0] == 404
    assert (await wire.request(port, "GET", "/dashboard/static/..%2Fpages.py"))[0] == 404

    status, _, body = await login(server, "wrong")
    assert status == 401 and b"not accepted. (token_invalid)" in body
    status, _, body = await login(server, token("bob", "acme"))
    assert status == 403 and b"admin role" in body
    status, _, body = await login(server, API_KEY, [("Origin", "http://elsewhere.example")])
    assert status == 403 and b"own page" in body

    status, headers, _ = await login(server, API_KEY, [("Origin", f"http://127.0.0.1:{port}")])
    assert status == 303 and headers["location"] == "/dashboard/"
    attributes = headers["set-cookie"].split("; ")[1:]
    assert attributes[:1] == ["Path=/dashboard"] and {"HttpOnly", "SameSite=Strict"} <= set(attributes)
    assert "Secure" not in attributes and 28000 < int(attributes[1].removeprefix("Max-Age=")) <= 28800
    cookie = session_cookie(headers)
    # Behind a TLS proxy the cookie is Secure.
    _, proxied, _ = await login(server, API_KEY, [("X-Forwarded-Proto", "https")])
    assert "; Secure" in proxied["set-cookie"]

    status, _, body = await wire.request(port, "GET", "/dashboard/", headers=[("Cookie", cookie)])
    assert status == 200 and b'data-namespace="/rtserver-dashboard"' in body
    page = await Console(server).connect(headers={"Cookie": cookie}, path="dashboard/socket.io")
    assert (await page.call("whoami"))["operator"] == "api-key"
    # The cookie is the page's only: from another origin it does not open the namespace.
    assert await refused(server, headers={"Cookie": cookie, "Origin": "http://evil.example"},
                         path="dashboard/socket.io") == "forbidden"

    status, headers, _ = await wire.request(port, "POST", "/dashboard/logout", headers=[("Cookie", cookie)])
    assert status == 303 and "Max-Age=0" in headers["set-cookie"]
    assert (await page.next("disconnect"))
    assert await refused(server, headers={"Cookie": cookie}, path="dashboard/socket.io") == "session_expired"
    status, _, body = await wire.request(port, "GET", "/dashboard/", headers=[("Cookie", cookie)])
    assert b'name="credential"' in body and b"session has ended" in body


async def test_login_attempts_are_limited(start_server) -> None:
    server = await start_server(**sections())
    statuses = [(await login(server, f"guess-{i}"))[0] for i in range(11)]
    assert statuses == [401] * 10 + [429]
    assert (await login(server, API_KEY))[0] == 429


async def test_session_ends_with_its_token_and_with_revocation(start_server) -> None:
    server = await start_server(**sections(auth={"leeway": 0}))
    # A login lasts no longer than the token it was made with.
    status, headers, _ = await login(server, token("root", "acme", ttl=2, **ADMIN))
    assert status == 303 and int(headers["set-cookie"].split("Max-Age=")[1].split(";")[0]) <= 2
    short = session_cookie(headers)
    page = await Console(server).connect(headers={"Cookie": short}, path="dashboard/socket.io")
    assert (await page.next("error", timeout=5))["code"] == "token_expired"
    assert await refused(server, headers={"Cookie": short}, path="dashboard/socket.io") == "session_expired"

    # Revoking the admin ends their live dashboard and their login.
    _, headers, _ = await login(server, token("chief", "acme", **ADMIN))
    cookie = session_cookie(headers)
    page = await Console(server).connect(headers={"Cookie": cookie}, path="dashboard/socket.io")
    assert (await http(server.port, "POST", "/api/v1/admin/revoke", {"user": "chief"}))[0] == 200
    assert (await page.next("error"))["code"] == "token_revoked"
    assert await refused(server, headers={"Cookie": cookie}, path="dashboard/socket.io") == "session_expired"


# ----------------------------------------------------------------- views
async def test_views(start_server) -> None:
    app = App()

    @app.on("shout")
    def shout(socket, text):
        app.emit("heard", text, to="tenant:acme")

    server = await start_server(app, **sections())
    people = [await LiveClient(server.port).connect({"token": token(f"u{i}", "acme")}) for i in range(3)]
    stranger = await LiveClient(server.port).connect({"token": token("g0", "globex")})
    screen = await LiveClient(server.port).connect(
        {"token": token("p0", "acme", devices=["tv-1"]), "deviceId": "tv-1"})
    # Rooms' last events are noted only while a dashboard is connected.
    await people[0].call("shout", "unseen")
    assert not any(isinstance(o, Activity) for o in server.sio.observers)
    console = await Console(server).connect(auth={"token": API_KEY})
    assert any(isinstance(o, Activity) for o in server.sio.observers)
    assert (await console.call("rooms"))["rooms"][0]["lastEvent"] is None

    users = await console.call("users")
    assert users["tenants"] == ["acme", "globex"] and users["total"] == 5
    row = next(u for u in users["users"] if u["user"] == "u1")
    [sock] = row["sockets"]
    assert row["online"] and sock["transport"] == "websocket" and sock["address"] == "127.0.0.1"
    assert sock["rooms"] == ["tenant:acme", "user:u1"] and sock["auth"] == {"token": "[redacted]"}
    assert abs(sock["since"] - time.time()) < 30
    assert [u["user"] for u in (await console.call("users", {"tenant": "globex"}))["users"]] == ["g0"]
    assert [u["user"] for u in (await console.call("users", {"text": "USER:U2"}))["users"]] == ["u2"]

    devices = await console.call("devices")
    assert devices["tenant"] == "acme" and devices["signage"] is True
    [tv] = devices["devices"]
    assert tv["deviceId"] == "tv-1" and tv["online"] and tv["owner"] == "p0" and tv["layout"] is None
    assert tv["channels"] == ["device:tv-1", "tenant:acme", "user:p0"] and tv["address"] == "127.0.0.1"

    # A layout pushed to the tenant shows as the device's latest (the tenant's).
    status, _ = await http(server.port, "POST", "/api/websocket/layout-update",
                           {"tenantId": "acme", "layoutId": "menu", "layoutData": {"token": "x", "items": [1]}})
    assert status == 200
    [tv] = (await console.call("devices", {"tenant": "acme"}))["devices"]
    assert tv["layout"]["layoutId"] == "menu" and not tv["layout"]["forDevice"]
    assert tv["layout"]["data"] == '{"token":"[redacted]","items":[1]}'

    await screen.disconnect()
    await wait_until(lambda: not server.sio.app.sockets("device:tv-1"))
    offline = await console.call("devices", {"status": "offline"})

    async def gone() -> list[Any]:
        return (await console.call("devices", {"status": "offline"}))["devices"]

    with trio.fail_after(5):
        while not (offline := await gone()):
            await trio.sleep(0.05)
    [tv] = offline
    assert not tv["online"] and tv["address"] == "127.0.0.1" and tv["channels"] == ["device:tv-1", "tenant:acme", "user:p0"]
    assert tv["sockets"] == [] and tv["lastSeen"] is not None
    assert (await console.call("devices", {"status": "online"}))["devices"] == []
    assert (await console.call("devices", {"sort": "sideways"}))["error"]["code"] == "invalid_request"
    assert (await console.call("devices", {"limit": 0}))["error"]["code"] == "invalid_request"

    await people[0].call("shout", "hello")
    rooms = await console.call("rooms", {"namespace": "/"})
    by_name = {r["room"]: r for r in rooms["rooms"]}
    assert by_name["tenant:acme"]["size"] == 3 and by_name["tenant:acme"]["lastEvent"]["event"] == "heard"
    assert {m["user"] for m in by_name["tenant:acme"]["members"]} == {"u0", "u1", "u2"}
    assert rooms["namespaces"] == ["/"] and not any(r.startswith(NS) for r in by_name)

    await trio.sleep(0.5)
    overview = await console.call("overview")
    assert overview["connections"]["total"] == 5 and overview["namespaces"] == {"/": 4, NS: 1}
    assert overview["onlineUsers"] == 4 and overview["onlineDevices"] == 0
    assert len(overview["samples"]) >= 1 and overview["nodes"][0]["self"]
    later = await console.call("overview", {"since": overview["samples"][-1]["t"]})
    assert all(p["t"] > overview["samples"][-1]["t"] for p in later["samples"])
    for client in (*people, stranger):
        await client.disconnect()
    await console.close()
    await wait_until(lambda: not any(isinstance(o, Activity) for o in server.sio.observers))


# --------------------------------------------------------------- actions
async def test_overview_lists_every_node_of_a_cluster(start_server, redis, tmp_path: Path) -> None:
    """Clustered, the overview lists each node (this one first) with its
    connections, as each node describes itself when asked through Redis."""
    cluster = {"redis_url": redis.url, "request_timeout": 2.0}
    a = await start_server(cluster={**cluster, "node_id": "node-a"}, server={"data_dir": str(tmp_path / "a")}, **sections())
    b = await start_server(cluster={**cluster, "node_id": "node-b"}, server={"data_dir": str(tmp_path / "b")}, **sections())
    on_b = [await LiveClient(b.port).connect({"token": token(f"u{n}", "acme")}) for n in range(2)]
    console = await Console(a).connect(auth={"token": token("root", "acme", **ADMIN)})
    overview = await console.call("overview")
    assert overview["everyNode"] is True
    assert [(n["id"], n["self"]) for n in overview["nodes"]] == [("node-a", True), ("node-b", False)]
    assert overview["nodes"][0]["connections"] == 1  # the console itself
    assert overview["nodes"][1]["connections"] == 2
    assert {n["pid"] for n in overview["nodes"]} == {os.getpid()}  # two servers of this test process
    await redis.stop()  # the other node cannot be asked: this one is listed, and says so
    overview = await console.call("overview")
    assert [n["id"] for n in overview["nodes"]] == ["node-a"] and overview["everyNode"] is False
    for client in on_b:
        await client.disconnect()
    await console.close()


def test_a_peer_description_keeps_plain_fields_only() -> None:
    assert peer({"node": {"id": "n", "pid": True, "uptime": 1.5, "hostname": ["x"], "extra": 1}}) == {"id": "n", "uptime": 1.5}
    assert peer({"node": {"pid": 1}}) is None and peer("garbage") is None and peer({"node": None}) is None


async def test_actions_go_through_the_api(start_server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rtserver.dashboard")
    server = await start_server(**sections())
    bob = await LiveClient(server.port).connect({"token": token("bob", "acme")})
    bob2 = await LiveClient(server.port).connect({"token": token("bob", "acme")})
    ann = await LiveClient(server.port).connect({"token": token("ann", "acme")})
    tv = await LiveClient(server.port).connect({"token": token("p", "acme", devices=["tv-9"]), "deviceId": "tv-9"})
    key = await Console(server).connect(auth={"token": API_KEY})
    acme_admin = await Console(server).connect(auth={"token": token("root", "acme", **ADMIN)})

    sid = bob.sio.get_sid()
    answer = await key.call("action", {"action": "disconnect", "sid": sid, "namespace": "/"})
    assert answer == {"ok": True, "results": [{"status": 200, "body": {"disconnected": 1}}]}
    assert await bob.next("disconnect") == "server disconnect"

    answer = await acme_admin.call("action", {"action": "notify", "tenant": "acme", "event": "notice", "data": {"m": 1}})
    assert answer["ok"] and answer["results"][0]["body"] == {"delivered": 3}
    assert await ann.next("notice") == {"m": 1}
    answer = await key.call("action", {"action": "notify", "device": "tv-9", "event": "notice", "data": "screen"})
    assert answer["results"][0]["body"] == {"delivered": 1}
    assert await tv.next("notice", where=lambda data: data == "screen") == "screen"

    answer = await key.call("action", {"action": "layout", "tenant": "acme", "device": "tv-9", "layoutId": "L1", "layoutData": [1]})
    assert answer["ok"] and answer["results"][0]["body"]["data"]["delivered"] == 1
    assert (await tv.next("layout_update"))["layoutId"] == "L1"
    # An admin token acts for its own tenant only: the signage route says so.
    answer = await acme_admin.call("action", {"action": "layout", "tenant": "globex", "layoutId": "L2"})
    assert not answer["ok"] and answer["results"][0]["status"] == 403
    assert answer["results"][0]["body"]["error"]["code"] == "forbidden"

    answer = await key.call("action", {"action": "revoke", "user": "ann"})
    assert answer["ok"] and answer["results"][0]["body"] == {"user": "ann", "tokenVersion": 1, "disconnected": 1}
    assert (await ann.next("error"))["code"] == "token_revoked"

    answer = await acme_admin.call("action", {"action": "disconnect", "user": "bob"})
    assert answer["results"] == [{"status": 200, "body": {"disconnected": 1}}]
    assert await bob2.next("disconnect") == "server disconnect"
    answer = await key.call("action", {"action": "disconnect", "device": "tv-9"})
    assert answer["results"][0]["body"] == {"disconnected": 1}

    for bad in ({"action": "explode"}, {"action": "disconnect"}, {"action": "disconnect", "user": "a", "device": "b"},
                {"action": "notify", "event": "x"}, {"action": "revoke", "user": ""}, {"action": "revoke", "user": 5}):
        assert (await key.call("action", bad))["error"]["code"] == "invalid_request", bad

    logged = [r for r in caplog.records if r.getMessage() == "dashboard action"]
    assert len(logged) == 8
    fields = logged[0].fields  # type: ignore[attr-defined]
    assert fields["operator"] == "api-key" and fields["action"] == "disconnect" and fields["target"] == f"sid={sid}"
    assert logged[1].fields["operator"] == "root" and logged[1].fields["ok"]  # type: ignore[attr-defined]
    assert not logged[4].fields["ok"] and logged[4].fields["status"] == "403"  # type: ignore[attr-defined]
    await key.close()
    await acme_admin.close()


async def test_layout_needs_signage(start_server) -> None:
    server = await start_server(**sections(features={"enabled": []}))
    console = await Console(server).connect(auth={"token": API_KEY})
    answer = await console.call("action", {"action": "layout", "tenant": "acme", "layoutId": "L"})
    assert answer["error"]["code"] == "unavailable" and "signage" in answer["error"]["message"]
    assert (await console.call("devices"))["signage"] is False
    await console.close()


# ------------------------------------------------------------------ tail
def tails(server: RunningServer) -> list[Any]:
    return [o for o in server.sio.observers if isinstance(o, Tail)]


async def test_event_tail(start_server) -> None:
    app = App()

    @app.on("say")
    def say(socket, text):
        app.emit("said", text, to=f"tenant:{socket.identity.tenant}")

    server = await start_server(app, **sections(dashboard={"payload_chars": 40}))
    acme = await LiveClient(server.port).connect({"token": token("ann", "acme")})
    globex = await LiveClient(server.port).connect({"token": token("gus", "globex")})
    watcher = await Console(server).connect(auth={"token": API_KEY})
    other = await Console(server).connect(auth={"token": API_KEY})

    # Paused by default: no observer, nothing sent.
    await acme.call("say", "before")
    assert tails(server) == []
    assert await watcher.call("tail", {"running": True, "tenant": "acme"}) == {"running": True}
    assert await other.call("tail", {"running": True, "event": "nothing-matches"}) == {"running": True}
    assert len(tails(server)) == 1

    await globex.call("say", "not for the acme filter")
    await acme.call("say", {"token": token("ann", "acme"), "text": "x" * 100})
    batch = await watcher.next("tail")
    events = batch["events"]
    assert [(e["dir"], e["event"]) for e in events] == [("in", "say"), ("out", "said")], events
    incoming, outgoing = events
    assert incoming["from"]["user"] == "ann" and incoming["tenants"] == ["acme"]
    assert outgoing["to"] == ["tenant:acme"] and len(incoming["payload"]) == 40 and incoming["payload"].endswith("…")
    assert incoming["payload"].startswith('[{"token":"[redacted]","text":"xxxx'), incoming

    # Refilter: the room filter (exact), the event filter (contains).
    await watcher.call("tail", {"running": True, "room": "tenant:globex", "event": "sai"})
    await globex.call("say", "to globex")
    await acme.call("say", "to acme")
    batch = await watcher.next("tail")
    assert [(e["event"], e["to"]) for e in batch["events"]] == [("said", ["tenant:globex"])], batch

    # Stopping, or disconnecting, unregisters the observer once nobody watches.
    assert await watcher.call("tail", {"running": False}) == {"running": False}
    assert len(tails(server)) == 1
    await other.close()
    await wait_until(lambda: tails(server) == [])
    assert (await watcher.call("tail", {"running": True, "room": "r" * 300}))["error"]["code"] == "invalid_request"
    await watcher.close()
    await acme.disconnect()
    await globex.disconnect()


async def test_event_tail_rate_is_capped(start_server) -> None:
    app = App()
    server = await start_server(app, **sections(dashboard={"tail_rate": 5}, limits={"event_burst": 1000, "events_per_second": 1000}))
    client = await LiveClient(server.port).connect({"token": token("ann", "acme")})
    watcher = await Console(server).connect(auth={"token": API_KEY})
    await watcher.call("tail", {"running": True})
    for i in range(30):
        await trio.to_thread.run_sync(lambda i=i: client.sio.emit("burst", i))
    shown, dropped = 0, 0
    with trio.fail_after(5):
        while shown + dropped < 30:
            batch = await watcher.next("tail")
            shown += len(batch["events"])
            dropped += batch["dropped"]
    assert shown + dropped == 30 and 5 <= shown < 30, (shown, dropped)
    await watcher.close()
    await client.disconnect()


# --------------------------------------------------------------- sans-IO
def test_samples_keep_an_hour_and_give_rates() -> None:
    samples = Samples(interval=5, history=3600)
    for i in range(800):
        samples.take(Sample(1000.0 + 5 * i, i % 7, 10 * i, 20 * i, i, 0))
    assert len(samples) == 721
    series = samples.series()
    assert len(series) == 720 and series[0]["t"] == 1000.0 + 5 * 80
    assert series[-1] == {"t": 1000.0 + 5 * 799, "connections": 799 % 7, "in": 2.0, "out": 4.0, "refusals": 0.2, "overflows": 0.0}
    assert [p["t"] for p in samples.series(since=1000.0 + 5 * 797)] == [1000.0 + 5 * 798, 1000.0 + 5 * 799]
    assert samples.latest_rates() == {"in": 2.0, "out": 4.0, "refusals": 0.2, "overflows": 0.0}
    assert Samples(5, 60).latest_rates()["in"] == 0.0


def test_redaction() -> None:
    jwt_text = token("ann", "acme")
    value = {"Authorization": "Bearer x", "nested": [{"apiKey": "k", "password": "p", "ok": 1}],
             "note": f"see {jwt_text} here", "blob": b"\x00" * 9, "X-Api-Key": "k"}
    assert redact(value) == {"Authorization": "[redacted]", "nested": [{"apiKey": "[redacted]", "password": "[redacted]", "ok": 1}],
                             "note": f"see {jwt_text} here", "blob": "<9 bytes>", "X-Api-Key": "[redacted]"}
    text = preview(value, 1000)
    assert jwt_text not in text and "see [token] here" in text
    assert preview(list(range(100)), 10) == "[0,1,2,3,…"
    assert preview({"a": 1}, 10) == '{"a":1}'


def test_login_sessions_expire_and_are_bounded() -> None:
    sessions = LoginSessions(ttl=100, limit=3)
    expiring = Identity(user="root", roles=frozenset({"admin"}), expires_at=1050.0)
    first = sessions.open("key", None, now=1000.0)
    second = sessions.open("jwt", expiring, now=1000.0)
    assert first.who == "api-key" and first.expires == 1100.0 and second.who == "root" and second.expires == 1050.0
    assert sessions.get(second.session_id, now=1049.0) is second
    assert sessions.get(second.session_id, now=1050.0) is None and len(sessions) == 1
    for _ in range(4):
        sessions.open("key", None, now=1001.0)
    assert len(sessions) == 3 and sessions.get(first.session_id, now=1001.0) is None
    assert sessions.get(None) is None and sessions.get("") is None
    assert set_cookie("abc", "/dashboard", True, 60) == (
        "Set-Cookie", "rtserver_dashboard=abc; Path=/dashboard; Max-Age=60; HttpOnly; SameSite=Strict; Secure")
