"""CreatiWall digital signage (seed 002) against rtserver's signage feature.

The Node script tests/clients/signage.js is the document's webSocketService /
useWebSocket wrapper around the real socket.io-client, with the document's
DeviceMonitor and LayoutPlayer; the REST side and the bad inputs are also
driven from Python.  Settings come from examples/signage.toml.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest
import socketio
import trio
from support.clients import API_KEY, WAIT, LiveClient, auth_section, http, token
from support.nodes import Background, Node, in_background, wait_until
from support.nodes import ok as node_ok

from rtserver import App, RunningServer

EXAMPLE = tomllib.loads((Path(__file__).resolve().parent.parent / "examples" / "signage.toml").read_text())
P = "/api/websocket"


def sections(**presence: Any) -> dict[str, Any]:
    """The example's settings, with the test secret and API key."""
    auth = {k: v for k, v in EXAMPLE["auth"].items() if k not in ("secret_env", "api_keys")}
    return {
        "engineio": EXAMPLE["engineio"],
        "presence": {**EXAMPLE["presence"], **presence},
        "features": EXAMPLE["features"],
        "auth": auth_section(**auth),
    }


async def start(start_server: Any, **presence: Any) -> tuple[RunningServer, App]:
    app = App()
    return await start_server(app, **sections(**presence)), app


def document_config(server: RunningServer, tok: str, steps: list[Any], timeout_ms: int) -> str:
    """signage.js's argument: the document's client for ``tok``, running ``steps``."""
    return json.dumps({"base": f"http://127.0.0.1:{server.port}", "token": tok, "fast": True, "timeoutMs": timeout_ms,
                       "steps": steps})


def spawn(nursery: trio.Nursery, node: Node, server: RunningServer, tok: str, steps: list[Any]) -> Background:
    return in_background(nursery, node, "signage.js", document_config(server, tok, steps, 20000), timeout=30)


async def run(node: Node, server: RunningServer, tok: str, steps: list[Any]) -> Any:
    return ok(await node("signage.js", document_config(server, tok, steps, 15000), timeout=30))


def ok(result: Any) -> Any:
    node_ok(result)
    assert result.of("crash") == [], result
    return result


def results(result: Any, call: str) -> list[Any]:
    return [e.get("value", e) if e["type"] == "result" else e for e in result.events
            if e["type"] in ("result", "error") and e["call"] == call]


def events(result: Any, name: str) -> list[Any]:
    return [e["data"] for e in result.of("event") if e["event"] == name]


def in_room(app: App, room: str) -> int:
    return len(app.sockets(room))


async def refused(port: int, auth: dict[str, Any]) -> str:
    """The code of the connect_error a python-socketio client gets."""
    sio = socketio.Client(reconnection=False)
    errors: list[Any] = []
    sio.on("connect_error", errors.append)

    def go() -> None:
        with pytest.raises(socketio.exceptions.ConnectionError):
            sio.connect(f"http://127.0.0.1:{port}", auth=auth, transports=["websocket"], wait_timeout=WAIT)

    await trio.to_thread.run_sync(go)
    [error] = errors
    return error["data"]["code"]


def fail(reply: tuple[int, Any], status: int, code: str) -> str:
    got_status, body = reply
    assert (got_status, body.get("success"), body.get("error", {}).get("code")) == (status, False, code), reply
    return body["error"]["message"]


def success(reply: tuple[int, Any]) -> Any:
    status, body = reply
    assert status == 200 and body["success"] is True, reply
    return body["data"]


ALICE = token("alice", "acme", roles=["admin"])           # tenant admin, dashboard
BOB = token("bob", "acme")                                 # layout designer
DAVE = token("dave", "acme", devices=["screen-1"])         # the screen's token
CAROL = token("carol", "globex", devices=["screen-9"])     # another tenant


# ---------------------------------------------------------------- the document's clients
async def test_document_clients_end_to_end(start_server: Any, node: Node, nursery: trio.Nursery) -> None:
    server, app = await start(start_server, grace=0.2)
    # Another tenant with a screen and a custom channel of the same name.
    carol = spawn(nursery, node, server, CAROL, [
        {"call": "connect", "args": ["screen-9", ["alerts"]]}, {"waitConnected": True},
        *({"on": e} for e in ("notification", "layout_update", "content_sync", "device_status", "alerts-msg")),
        {"wait": "notification"},  # the sentinel sent to globex at the end
    ])
    monitor = spawn(nursery, node, server, ALICE, [
        {"on": "notification"}, {"on": "content_sync"}, {"on": "layout_update"}, {"on": "alerts-msg"},
        {"monitor": ["screen-1", "screen-2"]}, {"waitConnected": True},
        {"wait": "devices", "count": 2},  # screen-1 online, then offline after the power cut
        {"wait": "notification"}, {"wait": "content_sync"},
    ])
    await wait_until(lambda: in_room(app, "tenant:acme") == 1 and in_room(app, "device:screen-9") == 1)
    # The screen: LayoutPlayer, which loses power once it has its layout.
    player = spawn(nursery, node, server, DAVE, [
        {"on": "power-cut"}, {"player": "screen-1"}, {"wait": "layout"}, {"wait": "power-cut"}, {"exit": True}])
    await wait_until(lambda: in_room(app, "device:screen-1") == 1)
    designer = await run(node, server, BOB, [
        {"call": "connect", "args": [None, ["alerts"]]}, {"waitConnected": True},
        {"call": "sendLayoutUpdate", "args": ["layout-1", ["screen-1"], {"zones": 2}]},
        {"call": "sendContentSync", "args": ["media", "media-123", "create", {"name": "promo.mp4"}]},
        {"call": "send", "args": [{"type": "notification", "data": {"message": "Hello!"}}]},
        {"call": "send", "args": [{"type": "alerts-msg", "data": "fire drill", "channel": "alerts"}]},
        {"call": "getStatus"},
        {"call": "send", "args": [{"type": "notification", "data": {}, "channel": "tenant:globex"}]},
        {"call": "sendLayoutUpdate", "args": ["layout-x", ["screen-9"]]},
        {"call": "connect", "args": ["screen-1"]},
        {"call": "disconnect"},
    ])
    [connected] = results(designer, "connect")[:1]
    assert connected["connectionId"].startswith("conn_") and connected["channels"] == ["tenant:acme", "user:bob", "alerts"]
    [layout] = results(designer, "sendLayoutUpdate")[:1]
    assert layout["delivered"] == 1 and layout["deviceIds"] == ["screen-1"]
    assert results(designer, "sendContentSync")[0]["delivered"] == 3  # alice, dave (the screen), bob
    sends = results(designer, "send")
    assert sends[0] == {"type": "notification", "channels": ["tenant:acme"], "delivered": 3}
    assert sends[1] == {"type": "alerts-msg", "channels": ["alerts"], "delivered": 1}  # bob; not globex's "alerts"
    assert (sends[2]["type"], sends[2]["code"], sends[2]["status"]) == ("error", "forbidden", 403)
    [status] = results(designer, "getStatus")
    assert status["totalConnections"] == 3 and status["heartbeatInterval"] == 30000
    assert "alerts" in status["channels"] and "device:screen-1" in status["channels"]
    assert not any("globex" in c or "screen-9" in c or "carol" in c for c in status["channels"]), status
    assert status["devices"] == [{"deviceId": "screen-1", "status": "online", "lastSeen": status["devices"][0]["lastSeen"]}]
    assert (results(designer, "sendLayoutUpdate")[1]["code"], results(designer, "connect")[1]["code"]) == (
        "unknown_device", "forbidden")
    assert results(designer, "disconnect")[0]["disconnected"] == 1

    assert success(await http(server.port, "POST", f"{P}/broadcast",
                              {"type": "power-cut", "target": "device:screen-1", "tenantId": "acme"}))["delivered"] == 1
    played = ok(await player.wait())
    [update] = events(played, "layout_update")
    assert update["layoutId"] == "layout-1" and update["layoutData"] == {"zones": 2} and update["deviceId"] == "screen-1"
    assert update["updatedBy"] == "bob"
    assert played.of("layout") == [{"type": "layout", "layout": {"id": "layout-1"}}]

    monitored = ok(await monitor.wait())
    statuses = [next(d for d in e["devices"] if d["id"] == "screen-1") for e in monitored.of("devices")]
    assert [s["status"] for s in statuses] == ["online", "offline"] and all(s["lastSeen"] for s in statuses)
    assert events(monitored, "notification") == [{"message": "Hello!"}]
    [sync] = events(monitored, "content_sync")
    assert {k: sync[k] for k in ("contentType", "contentId", "action", "data", "userId")} == {
        "contentType": "media", "contentId": "media-123", "action": "create", "data": {"name": "promo.mp4"}, "userId": "bob"}
    assert events(monitored, "layout_update") == []  # a device update goes to the device only
    assert events(monitored, "alerts-msg") == []  # alice did not subscribe to alerts

    # The other tenant heard nothing of acme, only its own sentinel.
    assert success(await http(server.port, "POST", f"{P}/broadcast",
                              {"type": "notification", "data": "globex only", "tenantId": "globex"}))["delivered"] == 1
    heard = ok(await carol.wait())
    assert events(heard, "notification") == ["globex only"]
    for name in ("layout_update", "content_sync", "alerts-msg"):
        assert events(heard, name) == [], heard
    assert all(d["deviceId"] == "screen-9" for d in events(heard, "device_status")), heard


async def test_power_cut_replays_the_latest_layout(start_server: Any, node: Node, nursery: trio.Nursery,
                                                   tmp_path: Path) -> None:
    server, app = await start(start_server, grace=0.1)
    # First contact registers screen-1 to acme; then the screen is off.
    await run(node, server, DAVE, [{"player": "screen-1"}, {"waitConnected": True}, {"waitUpgrade": True}, {"exit": True}])
    await wait_until(lambda: in_room(app, "device:screen-1") == 0)
    bob = {"key": BOB}
    success(await http(server.port, "POST", f"{P}/layout-update", {"layoutId": "all-old"}, **bob))
    success(await http(server.port, "POST", f"{P}/layout-update", {"layoutId": "mine", "deviceIds": ["screen-1"]}, **bob))
    back = await run(node, server, DAVE, [{"player": "screen-1"}, {"wait": "layout"}, {"sleep": 300}])
    assert [u["layoutId"] for u in events(back, "layout_update")] == ["mine"]
    # A newer tenant-wide layout wins over the device's own.
    success(await http(server.port, "POST", f"{P}/layout-update", {"layoutId": "all-new", "layoutData": [1]}, **bob))
    # And it survives a restart of the server (retained state is in the store).
    server.shutdown()
    await trio.sleep(0.1)
    server, app = await start(start_server, grace=0.1)
    again = await run(node, server, DAVE, [{"player": "screen-1"}, {"wait": "layout"}, {"sleep": 300}])
    assert [(u["layoutId"], u["layoutData"]) for u in events(again, "layout_update")] == [("all-new", [1])]
    # A plain user dashboard is not a device: no replay.
    user = await run(node, server, BOB, [{"on": "layout_update"}, {"call": "connect"}, {"waitConnected": True}, {"sleep": 300}])
    assert events(user, "layout_update") == []
    # screen-1 is still acme's after the restart (from the store's devices table).
    fail(await http(server.port, "POST", f"{P}/layout-update", {"layoutId": "x", "deviceIds": ["screen-1"]},
                     key=token("eve", "globex")), 404, "unknown_device")


# ---------------------------------------------------------------- sockets and registrations
async def test_socket_joins_exactly_the_registered_channels(start_server: Any) -> None:
    server, app = await start(start_server)
    reg = success(await http(server.port, "POST", f"{P}/connect", {"deviceId": "screen-1", "channels": ["alerts", "tenant:acme:ops"]}, key=DAVE))
    assert reg["channels"] == ["tenant:acme", "user:dave", "device:screen-1", "alerts", "tenant:acme:ops"]
    client = await LiveClient(server.port).connect({"token": DAVE, "connectionId": reg["connectionId"]})
    [socket] = app.sockets()
    assert socket.rooms - {socket.sid} == {"tenant:acme", "user:dave", "device:screen-1", "tenant:acme:alerts", "tenant:acme:ops"}
    assert socket.identity is not None and socket.identity.device == "screen-1"
    # A transport drop: the same connectionId is accepted again (automatic reconnection).
    await client.disconnect()
    await wait_until(lambda: not app.sockets())
    other = await LiveClient(server.port).connect({"token": DAVE})
    # The query works too, and a second socket of the same registration is fine.
    again = LiveClient(server.port)
    again.url += f"?connectionId={reg['connectionId']}"
    await again.connect({"token": DAVE})
    await wait_until(lambda: in_room(app, "tenant:acme:alerts") == 1)
    status = success(await http(server.port, "GET", f"{P}/status", key=BOB))
    assert status["totalConnections"] == 2 and status["channelConnections"]["alerts"] == 1
    # disconnect ends the registration's sockets only, and forgets it.
    assert success(await http(server.port, "POST", f"{P}/disconnect", {"connectionId": reg["connectionId"]}, key=DAVE)) == {
        "connectionId": reg["connectionId"], "disconnected": 1}
    await wait_until(lambda: len(app.sockets()) == 1)
    assert await refused(server.port, {"token": DAVE, "connectionId": reg["connectionId"]}) == "unknown_connection"
    # A registration is the user's: another user's socket may not use it.
    theirs = success(await http(server.port, "POST", f"{P}/connect", {}, key=BOB))
    assert await refused(server.port, {"token": DAVE, "connectionId": theirs["connectionId"]}) == "forbidden"
    assert await refused(server.port, {"token": DAVE, "connectionId": 12}) == "invalid_connection"
    # An admin can end every socket of a device of the tenant.
    await LiveClient(server.port).connect({"token": DAVE, "deviceId": "screen-1"})
    assert success(await http(server.port, "POST", f"{P}/disconnect", {"deviceId": "screen-1"}, key=ALICE))["disconnected"] == 1
    await wait_until(lambda: in_room(app, "device:screen-1") == 0)
    await other.disconnect()


async def test_bad_inputs_get_the_envelope_and_disturb_nothing(start_server: Any) -> None:
    server, _app = await start(start_server)
    port = server.port
    watcher = await LiveClient(port).connect({"token": BOB})
    await LiveClient(port).connect({"token": CAROL, "deviceId": "screen-9"})  # registers screen-9 to globex

    async def post(path: str, body: Any, key: str | None = BOB, raw: bytes | None = None) -> tuple[int, Any]:
        return await http(port, "POST", f"{P}/{path}", body, key=key, raw=raw)

    fail(await post("broadcast", {"type": "x"}, key=None), 401, "auth_required")
    fail(await post("broadcast", {"type": "x"}, key="not.a.token"), 401, "token_invalid")
    fail(await http(port, "GET", f"{P}/status", key="wrong-key"), 401, "token_invalid")
    fail(await post("connect", {}, key=token("nobody")), 403, "tenant_required")
    fail(await post("connect", {}, raw=b"{nope"), 400, "invalid_json")
    fail(await post("connect", {"deviceId": "screen-1"}), 403, "forbidden")          # bob owns no screen
    fail(await post("connect", {"deviceId": "screen-9"}, key=token("x", "acme", devices=["screen-9"])), 403, "forbidden")
    message = fail(await post("connect", {"channels": ["tenant:globex"]}), 403, "forbidden")
    assert "globex" not in message
    fail(await post("connect", {"channels": ["user:alice"]}), 403, "forbidden")
    fail(await post("connect", {"channels": ["user:bob"]}, key=ALICE), 403, "forbidden")  # admins join only their own
    assert "channels" in fail(await post("connect", {"channels": [3]}), 400, "invalid_body")
    fail(await post("connect", {"channels": "alerts"}), 400, "invalid_body")
    fail(await post("connect", {"channels": [f"c{i}" for i in range(21)]}), 400, "invalid_body")
    fail(await post("connect", {"deviceId": ""}, key=DAVE), 400, "invalid_body")
    fail(await post("connect", {"tenantId": "globex"}), 403, "forbidden")
    fail(await post("connect", {}, key=API_KEY), 400, "invalid_body")                # no tenant
    fail(await post("connect", {"tenantId": "acme"}, key=API_KEY), 400, "invalid_body")  # no user
    fail(await post("connect", {"bogus": 1}), 400, "invalid_body")

    fail(await post("broadcast", {"data": 1}), 400, "invalid_body")
    fail(await post("broadcast", {"type": 7}), 400, "invalid_body")
    for reserved in ("connect", "disconnect", "layout_update", "content_sync", "device_status"):
        fail(await post("broadcast", {"type": reserved}), 400, "reserved_type")
    fail(await post("broadcast", {"type": "n", "data": "x" * 70000}), 413, "payload_too_large")
    fail(await post("broadcast", {"type": "n", "channel": "tenant:globex"}), 403, "forbidden")
    fail(await post("broadcast", {"type": "n", "target": "user:alice"}), 403, "forbidden")
    fail(await post("broadcast", {"type": "n", "target": "device:screen-9"}, key=ALICE), 403, "forbidden")
    fail(await post("broadcast", {"type": "n", "channel": ""}), 400, "invalid_channel")
    fail(await post("broadcast", {"type": "n"}, key=API_KEY), 400, "invalid_body")

    fail(await post("layout-update", {"deviceIds": ["screen-1"]}), 400, "invalid_body")
    fail(await post("layout-update", {"layoutId": "l", "deviceIds": []}), 400, "invalid_body")
    fail(await post("layout-update", {"layoutId": "l", "deviceIds": "screen-1"}), 400, "invalid_body")
    unknown = fail(await post("layout-update", {"layoutId": "l", "deviceIds": ["nowhere"]}), 404, "unknown_device")
    foreign = fail(await post("layout-update", {"layoutId": "l", "deviceIds": ["screen-9"]}), 404, "unknown_device")
    assert unknown == foreign  # nothing tells another tenant's device from none
    fail(await post("layout-update", {"layoutId": "l", "layoutData": "x" * 70000}), 413, "payload_too_large")
    fail(await post("content-sync", {"contentType": "media", "contentId": "m", "action": "explode"}), 400, "invalid_body")
    fail(await post("content-sync", {"contentType": "media", "action": "create"}), 400, "invalid_body")

    fail(await post("disconnect", {}), 400, "invalid_body")
    fail(await post("disconnect", {"connectionId": "conn_1_nope"}), 404, "unknown_connection")
    carols = success(await post("connect", {}, key=CAROL))["connectionId"]
    alices = success(await post("connect", {}, key=ALICE))["connectionId"]
    fail(await post("disconnect", {"connectionId": carols}), 404, "unknown_connection")  # another tenant
    fail(await post("disconnect", {"connectionId": alices}), 404, "unknown_connection")  # another user
    fail(await post("disconnect", {"deviceId": "screen-9"}, key=ALICE), 403, "forbidden")
    fail(await post("disconnect", {"connectionId": alices, "deviceId": "screen-1"}, key=ALICE), 400, "device_mismatch")
    assert await refused(port, {"token": BOB, "connectionId": carols}) == "forbidden"
    # A device registration needs a token owning the device at socket time too.
    daves = success(await post("connect", {"deviceId": "screen-1", "tenantId": "acme", "userId": "bob"}, key=API_KEY))
    assert daves["channels"][2] == "device:screen-1"
    assert await refused(port, {"token": BOB, "connectionId": daves["connectionId"]}) == "forbidden"

    status, _body = await http(port, "GET", "/api/websocket/nowhere", key=BOB)
    assert status == 404
    # Nothing was delivered by the refused calls; the next good one still is.
    assert await watcher.quiet("n", 0.2) == []
    globex = success(await http(port, "GET", f"{P}/status", key=CAROL))
    assert globex["totalConnections"] == 1 and globex["totalRegistrations"] == 1
    assert globex["devices"] == [{"deviceId": "screen-9", "status": "online", "lastSeen": globex["devices"][0]["lastSeen"]}]
    assert "acme" not in orjson.dumps(globex).decode()
    # An admin reaches any user of the tenant; delivery never leaves it.
    assert success(await post("broadcast", {"type": "n", "data": 1, "target": "user:bob"}, key=ALICE))["delivered"] == 1
    assert await watcher.next("n") == 1
    assert success(await post("broadcast", {"type": "n", "data": 2, "target": "user:bob", "tenantId": "globex"}, key=API_KEY))["delivered"] == 0


async def test_example_config_and_heartbeat(start_server: Any) -> None:
    """The example as shipped (grace 5 s): 30 s heartbeat, CORS preflight, the routes."""
    assert EXAMPLE["engineio"]["ping_interval"] == 30
    server = await start_server(App(), **{**sections(), "engineio": {**EXAMPLE["engineio"], "cors_origins": ["https://wall.example"]}})
    status, handshake = await http(server.port, "GET", "/socket.io/?EIO=4&transport=polling", key=None)
    assert status == 200 and json.loads(handshake[handshake.index("{"):])["pingInterval"] == 30000
    reply = success(await http(server.port, "GET", f"{P}/status", key=BOB))
    assert reply["heartbeatInterval"] == 30000 and reply["totalConnections"] == 0

    def preflight() -> tuple[int, dict[str, str]]:
        import urllib.request

        request = urllib.request.Request(f"http://127.0.0.1:{server.port}{P}/connect", method="OPTIONS",
                                         headers={"Origin": "https://wall.example", "Access-Control-Request-Method": "POST"})
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, dict(response.headers)

    code, headers = await trio.to_thread.run_sync(preflight)
    assert code == 204 and headers["Access-Control-Allow-Origin"] == "https://wall.example"
    assert "Authorization" in headers["Access-Control-Allow-Headers"]


async def test_a_registration_survives_a_restart(start_server: Any) -> None:
    """Kept in the store: a screen reconnecting after the server restarted
    is accepted with its connectionId and joins its channels."""
    server, _ = await start(start_server)
    reg = success(await http(server.port, "POST", f"{P}/connect", {"deviceId": "screen-1", "channels": ["alerts"]}, key=DAVE))
    server.shutdown()
    await trio.sleep(0.1)
    server, app = await start(start_server)
    client = await LiveClient(server.port).connect({"token": DAVE, "connectionId": reg["connectionId"]})
    [socket] = app.sockets()
    assert socket.rooms - {socket.sid} == {"tenant:acme", "user:dave", "device:screen-1", "tenant:acme:alerts"}
    await client.disconnect()
