"""The admin UI's namespace, driven by the real Node socket.io-client exactly as
the official UI connects and operates (tests/clients/admin_ui.js), with
python-socketio clients as the application's sockets."""

from __future__ import annotations

import json
import os
import socket as socket_module
import time
from typing import Any

import pytest
import trio
from support.clients import LiveClient, auth_section, token
from support.interactive import NodeClient, spawn
from support.nodes import in_background, ok, scripted, url, wait_until

from rtserver import App, RunningServer
from rtserver import config as config_mod
from rtserver.admin_ui import records
from rtserver.admin_ui.login import LOGIN_BURST, hash_password, password_matches
from rtserver.cli import main as cli_main
from rtserver.http.messages import Request

PASSWORD = "correct horse battery"
#: Cost 4: the lowest bcrypt takes, so the tests stay quick.
HASH = hash_password(PASSWORD, rounds=4)
LOGIN = {"username": "admin", "password": PASSWORD}
OPERATIONS = ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"]


def admin_section(**extra: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "username": "admin",
        "password_hash": HASH,
        "server_id": "test-node",
        "stats_interval": 0.2,
        **extra,
    }


async def start(start_server, app: App | None = None, **admin: Any) -> RunningServer:
    return await start_server(app or App(), auth=auth_section(), admin_ui=admin_section(**admin))


async def admin(nursery: trio.Nursery, server: RunningServer, **config: Any) -> NodeClient:
    return await spawn(nursery, "admin_ui.js", f"http://127.0.0.1:{server.port}", json.dumps(config), name="admin UI")


def messages(client: NodeClient, name: str) -> list[list[Any]]:
    """The arguments of every ``name`` message the admin client received so far."""
    return [line["args"] for line in client.lines if line["type"] == "event" and line["event"] == name]


async def message(client: NodeClient, name: str, where: Any = lambda args: True) -> list[Any]:
    """The arguments of the first ``name`` message for which ``where(args)`` holds."""
    line = await client.expect(lambda e: e["type"] == "event" and e["event"] == name and where(e["args"]))
    return line["args"]


async def app_client(server: RunningServer, user: str, transports: list[str] | None = None) -> LiveClient:
    client = LiveClient(server.port)
    await client.connect({"token": token(user, "acme")}, transports)
    return client


async def operate(ui: NodeClient, *args: Any) -> None:
    """An operation as the UI sends it: a plain emit, no ack."""
    await ui.run(f"socket.emit(...{json.dumps(args)}); null")


async def operate_with_ack(ui: NodeClient, *args: Any) -> Any:
    return await ui.run(f"socket.timeout(5000).emitWithAck(...{json.dumps(args)})")


def sid_of(client: LiveClient) -> str:
    return client.sio.get_sid("/")


def chat_app() -> App:
    app = App()

    @app.on("connect")
    def connect(socket, auth):
        socket.data["name"] = socket.identity.user

    @app.on("enter")
    def enter(socket, room):
        socket.join(room)
        return "in"

    @app.on("shout")
    def shout(socket, room, text):
        app.emit("news", text, to=room)
        return "sent"

    return app


# ------------------------------------------------------- development mode
async def test_admin_sees_sockets_rooms_events_and_stats(start_server, nursery):
    server = await start(start_server, chat_app())
    alice = await app_client(server, "alice")
    alice_sid = sid_of(alice)
    assert await alice.call("enter", "lobby") == "in"
    ui = await admin(nursery, server, auth=LOGIN)
    await message(ui, "all_sockets")

    # What the UI gets on connecting, in this order.
    first = [line["event"] for line in ui.lines if line["type"] == "event"][:4]
    assert first == ["session", "config", "server_stats", "all_sockets"]
    [session_id] = messages(ui, "session")[0]
    assert isinstance(session_id, str) and len(session_id) == 32
    assert messages(ui, "config") == [[{"supportedFeatures": [*OPERATIONS, "AGGREGATED_EVENTS", "ALL_EVENTS"]}]]
    [stats] = messages(ui, "server_stats")[0]
    assert stats["serverId"] == "test-node"
    assert stats["hostname"] == socket_module.gethostname() and stats["pid"] == os.getpid()
    assert stats["uptime"] > 0 and stats["clientsCount"] == 2  # alice and the UI
    assert stats["pollingClientsCount"] in (0, 1)  # the UI's own, until it upgrades
    assert sorted(stats["namespaces"], key=lambda n: n["name"]) == [
        {"name": "/", "socketsCount": 1},
        {"name": "/admin", "socketsCount": 1},
    ]
    [sockets] = messages(ui, "all_sockets")[0]
    by_nsp = {s["nsp"]: s for s in sockets}
    assert set(by_nsp) == {"/", "/admin"}  # the UI's own socket too, in its namespace (as the reference)
    listed = by_nsp["/"]
    assert listed["id"] == alice_sid
    assert listed["rooms"] == [alice_sid, "lobby", "tenant:acme", "user:alice"]
    assert listed["data"] == {"name": "alice"}
    assert listed["transport"] == "websocket"
    assert len(listed["clientId"]) == 12 and listed["clientId"] != by_nsp["/admin"]["clientId"]
    shake = listed["handshake"]
    assert set(shake) == {"address", "headers", "query", "issued", "secure", "time", "url", "xdomain"}
    assert shake["address"] == "127.0.0.1" and shake["secure"] is False and isinstance(shake["xdomain"], bool)
    assert shake["query"]["EIO"] == "4" and shake["url"].startswith("/socket.io/?")
    assert "host" in shake["headers"] and "(Coordinated Universal Time)" in shake["time"]
    assert isinstance(shake["issued"], int) and abs(shake["issued"] / 1000 - time.time()) < 60  # ms since the epoch

    # A tick later: counts since the last report.
    stats = (await message(ui, "server_stats", lambda a: any(e["type"] == "bytesOut" for e in a[0]["aggregatedEvents"])))[0]
    for event in stats["aggregatedEvents"]:
        assert set(event) == {"timestamp", "type", "count"} and event["timestamp"] % 1000 == 0 and event["count"] > 0

    # A socket connects, sends events, joins a room; the server emits.
    bob = await app_client(server, "bob")
    bob_sid = sid_of(bob)
    record, stamp = await message(ui, "socket_connected", lambda a: a[0]["id"] == bob_sid)
    assert record["nsp"] == "/" and record["transport"] == "websocket" and stamp.endswith("Z")
    assert record["rooms"] == [bob_sid, "tenant:acme", "user:bob"] and record["data"] == {"name": "bob"}
    assert await bob.call("enter", "lobby") == "in"
    assert (await message(ui, "event_received", lambda a: a[1] == bob_sid))[:3] == ["/", bob_sid, ["enter", "lobby"]]
    assert (await message(ui, "room_joined", lambda a: a[2] == bob_sid))[:3] == ["/", "lobby", bob_sid]
    assert await bob.call("shout", "lobby", "hi all") == "sent"
    # Presence's user:online went out too; the room's news went to both, each reported.

    def news() -> list[list[Any]]:
        return [a[:3] for a in messages(ui, "event_sent") if a[2][0] == "news"]

    await wait_until(lambda: len(news()) == 2)
    assert sorted(news()) == sorted([["/", alice_sid, ["news", "hi all"]], ["/", bob_sid, ["news", "hi all"]]])
    online = [a[:2] + [a[2][1]["userId"]] for a in messages(ui, "event_sent") if a[2][0] == "user:online"]
    assert ["/", alice_sid, "bob"] in online
    # The admin namespace's own traffic is never reported as events.
    assert all(a[0] == "/" for a in messages(ui, "event_received") + messages(ui, "event_sent"))

    # Operations, as the UI sends them (no ack).
    await operate(ui, "join", "/", "vip", bob_sid)
    assert (await message(ui, "room_joined", lambda a: a[1] == "vip"))[:3] == ["/", "vip", bob_sid]
    assert server.sio.app.rooms()["vip"] == 1
    await operate(ui, "leave", "/", "vip", bob_sid)
    assert (await message(ui, "room_left", lambda a: a[1] == "vip"))[:3] == ["/", "vip", bob_sid]
    assert "vip" not in server.sio.app.rooms()
    await operate(ui, "emit", "/", "lobby", "notice", {"level": 1}, "two")
    assert await alice.next("notice") == ({"level": 1}, "two")
    assert await bob.next("notice") == ({"level": 1}, "two")
    await operate(ui, "leave", "/", "lobby")  # no filter: the whole namespace
    await wait_until(lambda: "lobby" not in server.sio.app.rooms())

    await operate(ui, "_disconnect", "/", False, bob_sid)
    await bob.next("disconnect")
    gone = await message(ui, "socket_disconnected", lambda a: a[1] == bob_sid)
    assert gone[:3] == ["/", bob_sid, "server namespace disconnect"]
    await wait_until(lambda: {a[1] for a in messages(ui, "room_left") if a[2] == bob_sid} >= {bob_sid, "user:bob", "tenant:acme"})

    # close = true: the whole connection, by room.
    session = server.sio.socket(alice_sid).client.session
    await operate(ui, "_disconnect", "/", True, "user:alice")
    await alice.next("disconnect")
    await message(ui, "socket_disconnected", lambda a: a[1] == alice_sid)
    await wait_until(lambda: session.sid not in server.engine.sessions)
    assert server.sio.app.sockets() == []


async def test_upgrade_is_reported(start_server, nursery, node):
    """A stock client connects over long-polling, then upgrades: the UI is told
    (socket_updated), as the reference tells it."""
    server = await start_server(App(), admin_ui=admin_section())  # JWT auth off: an anonymous client
    ui = await admin(nursery, server, auth=LOGIN, wsOnly=True)
    await message(ui, "all_sockets")
    client = in_background(
        nursery, node, "scripted.js", url(server), scripted(steps=[{"waitTransport": "websocket"}, {"sleep": 1500}])
    )
    record, _ = await message(ui, "socket_connected", lambda a: a[0]["nsp"] == "/")
    # The Node client sends its CONNECT as soon as the polling session opens.
    assert record["transport"] == "polling"
    assert await message(ui, "socket_updated") == [{"id": record["id"], "nsp": "/", "transport": "websocket"}]
    again = await admin(nursery, server, auth=LOGIN, wsOnly=True)
    [sockets] = await message(again, "all_sockets")
    assert next(s for s in sockets if s["id"] == record["id"])["transport"] == "websocket"
    ok(await client.wait())


# ------------------------------------------------------------- secrets
async def test_tokens_and_credentials_are_never_shown(start_server, nursery):
    server = await start(start_server, chat_app())
    ui = await admin(nursery, server, auth=LOGIN)
    await message(ui, "all_sockets")
    jwt = token("dave", "acme")
    dave = LiveClient(server.port)
    await trio.to_thread.run_sync(
        lambda: dave.sio.connect(
            f"{dave.url}?token={jwt}&room=blue",
            headers={"Authorization": f"Bearer {jwt}", "Cookie": f"token={jwt}; theme=dark", "X-Api-Key": "k-123"},
            auth={"token": jwt, "deviceless": True},
            transports=["polling", "websocket"],
            wait_timeout=10,
        )
    )
    record, _ = await message(ui, "socket_connected", lambda a: a[0]["id"] == sid_of(dave))
    shake = record["handshake"]
    assert shake["query"]["room"] == "blue" and "token" not in shake["query"]
    assert "room=blue" in shake["url"] and "token" not in shake["url"]
    assert not {"authorization", "cookie", "x-api-key"} & set(shake["headers"])
    assert "auth" not in shake
    # A second UI sees the first one's socket: its password is nowhere either.
    other = await admin(nursery, server, auth=LOGIN)
    await message(other, "all_sockets")
    [session_id] = messages(ui, "session")[0]
    for client in (ui, other):
        text = json.dumps([line for line in client.lines if line.get("event") != "session"])
        assert jwt not in text and PASSWORD not in text and "k-123" not in text and session_id not in text
    await dave.disconnect()


# -------------------------------------------------------- authentication
async def test_bad_logins_are_refused_for_that_client_only(start_server, nursery):
    server = await start(start_server, chat_app())
    erin = await app_client(server, "erin")
    ui = await admin(nursery, server, auth={"username": "admin", "password": "wrong"})
    line = await ui.expect(lambda e: e["type"] == "connect_error")
    # The message the UI recognises, and a code for a program.
    assert line["message"] == "invalid credentials" and line["data"] == {"code": "invalid_credentials"}
    assert await ui.run("attempt({username: 'root', password: '" + PASSWORD + "'})") == "invalid credentials"
    assert await ui.run("attempt({})") == "invalid credentials"
    assert await ui.run("attempt({sessionId: 'made-up'})") == "invalid credentials"
    assert await ui.run("attempt({username: 'admin', password: 42})") == "invalid credentials"
    # Password attempts are limited per address: the burst, then refusals.
    results = [await ui.run("attempt({username: 'admin', password: 'guess'})") for _ in range(LOGIN_BURST)]
    assert results[:LOGIN_BURST - 2] == ["invalid credentials"] * (LOGIN_BURST - 2)  # two were spent above
    assert results[-1].startswith("too many login attempts")
    assert (await ui.run("attempt(" + json.dumps(LOGIN) + ")")).startswith("too many login attempts")
    # Nobody else noticed: the application's socket works, the server is up.
    assert await erin.call("enter", "lobby") == "in"
    assert server.sio.app.rooms()["lobby"] == 1
    await erin.disconnect()


async def test_session_id_logs_in_again(start_server, nursery):
    server = await start(start_server)
    ui = await admin(nursery, server, auth=LOGIN)
    [session_id] = await message(ui, "session")
    # What the UI sends on a page load: the session id, no password.
    again = await admin(nursery, server, auth={"sessionId": session_id})
    await again.expect(lambda e: e["type"] == "connect")
    await message(again, "all_sockets")
    assert messages(again, "session") == []


async def test_no_authentication_when_configured(start_server, nursery):
    server = await start(start_server, auth="none", username="", password_hash="")
    ui = await admin(nursery, server)
    await message(ui, "all_sockets")
    assert messages(ui, "session") == []


async def test_admin_ui_is_off_by_default(start_server, nursery):
    server = await start_server(App())
    ui = await admin(nursery, server, auth=LOGIN)
    line = await ui.expect(lambda e: e["type"] == "connect_error")
    assert line["message"] == "Invalid namespace"


# --------------------------------------------------- read-only, production
async def test_read_only_refuses_every_operation(start_server, nursery):
    server = await start(start_server, chat_app(), read_only=True)
    frank = await app_client(server, "frank")
    ui = await admin(nursery, server, auth=LOGIN)
    assert await message(ui, "config") == [{"supportedFeatures": ["AGGREGATED_EVENTS", "ALL_EVENTS"]}]
    sid = sid_of(frank)
    for call in (
        ("join", "/", "vip", sid),
        ("leave", "/", "user:frank", sid),
        ("_disconnect", "/", True, sid),
        ("emit", "/", None, "notice", 1),
    ):
        answer = await operate_with_ack(ui, *call)
        assert answer["error"]["code"] == "read_only", call
    assert server.sio.app.rooms().get("vip") is None and server.sio.app.rooms()["user:frank"] == 1
    assert await frank.quiet("notice") == []
    assert frank.sio.connected
    await frank.disconnect()


async def test_bad_operation_arguments(start_server, nursery):
    server = await start(start_server)
    ui = await admin(nursery, server, auth=LOGIN)
    await message(ui, "all_sockets")
    for call in (
        ("join", "/", 42),
        ("join", 7, "room"),
        ("_disconnect", "/", "yes"),
        ("emit", "/", None, "disconnect"),
        ("leave",),
    ):
        answer = await operate_with_ack(ui, *call)
        assert answer["error"]["code"] == "bad_arguments", (call, answer)
    assert await ui.run("socket.connected") is True


async def test_production_mode_reports_counts_only(start_server, nursery):
    server = await start(start_server, chat_app(), mode="production")
    ui = await admin(nursery, server, auth=LOGIN)
    assert await message(ui, "config") == [{"supportedFeatures": [*OPERATIONS, "AGGREGATED_EVENTS"]}]
    gina = await app_client(server, "gina")
    assert await gina.call("enter", "lobby") == "in"

    def counted(args: list[Any]) -> bool:
        stats = args[0]
        kinds = {event["type"] for event in stats["aggregatedEvents"]}
        return {"rawConnection", "packetsIn"} <= kinds and {"name": "/", "socketsCount": 1} in stats["namespaces"]

    await message(ui, "server_stats", counted)
    await gina.disconnect()
    await message(ui, "server_stats", lambda a: any(e["type"] == "rawDisconnection" for e in a[0]["aggregatedEvents"]))
    reported = {line["event"] for line in ui.lines if line["type"] == "event"}
    assert reported == {"session", "config", "server_stats"}


# ------------------------------------------------- configuration, CLI, units
def test_config_requires_credentials_or_explicit_none():
    def problems(**admin: Any) -> list[str]:
        try:
            config_mod.structure({"admin_ui": admin})
        except config_mod.ConfigError as exc:
            return exc.problems
        return []

    assert problems() == []  # off
    assert problems(enabled=True)[0].startswith('admin_ui.password_hash: auth = "basic" needs username and password_hash')
    assert problems(enabled=True, username="admin")[0].startswith("admin_ui.password_hash: auth")
    assert problems(enabled=True, auth="none") == []
    assert problems(enabled=True, username="admin", password_hash=HASH) == []
    assert problems(password_hash="plain-text")[0].startswith("admin_ui.password_hash: 'password_hash' is not a bcrypt hash")
    assert problems(password_hash=HASH[:-1])[0].startswith("admin_ui.password_hash: 'password_hash' is not a bcrypt hash")
    assert problems(namespace="/")[0].startswith("admin_ui.namespace:")
    assert problems(namespace="admin")[0].startswith("admin_ui.namespace:")
    assert problems(auth="jwt")[0].startswith("admin_ui.auth:")
    assert problems(mode="debug")[0].startswith("admin_ui.mode:")
    assert problems(stats_interval=0)[0].startswith("admin_ui.stats_interval:")


def test_hash_password_command(monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret pass\n"))
    assert cli_main(["hash-password", "--rounds", "4"]) == 0
    hashed = capsys.readouterr().out.strip()
    assert hashed.startswith("$2b$04$") and password_matches("s3cret pass", hashed)
    assert not password_matches("s3cret pas", hashed)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert cli_main(["hash-password", "--rounds", "4"]) == 1
    # A hash made by the reference's bcryptjs ($2a$) is accepted too.
    assert password_matches("s3cret pass", "$2a$" + hashed[4:])


def test_password_longer_than_bcrypt_reads():
    hashed = hash_password("x" * 72, rounds=4)
    assert password_matches("x" * 80, hashed)  # bcrypt reads 72 bytes, as bcryptjs does


def test_records_leave_credentials_out():
    request = Request.from_head(
        b"GET",
        b"/socket.io/?EIO=4&transport=polling&token=abc.def&access_token=x&t=1",
        [(b"host", b"h"), (b"authorization", b"Bearer abc.def"), (b"cookie", b"token=abc.def"), (b"origin", b"http://o")],
        "10.0.0.5:4000",
    )
    shake = records.handshake(request, 1_700_000_000.5, True, frozenset({"token", "access_token"}))
    assert shake == {
        "address": "10.0.0.5",
        "headers": {"host": "h", "origin": "http://o"},
        "query": {"EIO": "4", "transport": "polling", "t": "1"},
        "issued": 1_700_000_000_500,
        "secure": True,
        "time": "Tue Nov 14 2023 22:13:20 GMT+0000 (Coordinated Universal Time)",
        "url": "/socket.io/?EIO=4&transport=polling&t=1",
        "xdomain": True,
    }
    forwarded = Request.from_head(b"GET", b"/x", [(b"x-forwarded-for", b"203.0.113.9")], "127.0.0.1:1")
    assert records.handshake(forwarded, 0, False, frozenset())["address"] == "203.0.113.9"


def test_records_data_is_always_json():
    assert records.json_safe({"a": [1, "x", None], "n": 1.5}) == {"a": [1, "x", None], "n": 1.5}
    safe = records.json_safe({"s": {1}, "b": b"\x00", 3: object})
    assert safe["s"] == "{1}" and safe["b"] == "b'\\x00'" and safe["3"].startswith("<class")
    assert records.json_safe({"big": 2**70}) == repr({"big": 2**70})


def test_aggregated_events_from_counter_readings():
    before = records.Counters(opened=10, open_now=4, packets_in=100, bytes_in=1000, packets_out=50, bytes_out=500)
    now = records.Counters(opened=13, open_now=5, packets_in=100, bytes_in=1000, packets_out=60, bytes_out=900)
    assert records.aggregated_events(before, now, 1_700_000_000_789) == [
        {"timestamp": 1_700_000_000_000, "type": "rawConnection", "count": 3},
        {"timestamp": 1_700_000_000_000, "type": "rawDisconnection", "count": 2},
        {"timestamp": 1_700_000_000_000, "type": "packetsOut", "count": 10},
        {"timestamp": 1_700_000_000_000, "type": "bytesOut", "count": 400},
    ]
    assert records.aggregated_events(now, now, 0) == []


@pytest.mark.parametrize("engine_sid", ["abc", "x" * 20])
def test_client_id_is_not_the_session_id(engine_sid):
    client = records.client_id(engine_sid)
    assert len(client) == 12 and engine_sid not in client and client == records.client_id(engine_sid)
