"""[retention]: latest values per room for late joiners, inboxes for offline users."""

from __future__ import annotations

import pytest
from support.clients import LiveClient, auth_section, http, token
from support.nodes import events, run_scripted
from support.wire import Polling

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RETENTION = {"latest": ["layout"], "inbox": ["notice"], "inbox_size": 2}


async def start(start_server):
    return await start_server(None, auth=auth_section(), retention=RETENTION)


async def test_latest_value_reaches_late_joiners_and_devices(start_server):
    server = await start(start_server)
    for version in (1, 2):
        status, body = await http(
            server.port, "POST", "/api/v1/emit", {"room": "tenant:acme:screens", "event": "layout", "data": {"v": version}}
        )
        assert (status, body) == (200, {"delivered": 0})
    await http(server.port, "POST", "/api/v1/emit", {"device": "screen-1", "event": "layout", "data": {"v": "device"}})
    # Not retained: an event the configuration does not name.
    await http(server.port, "POST", "/api/v1/emit", {"room": "tenant:acme:screens", "event": "other", "data": 1})

    viewer = await LiveClient(server.port).connect({"token": token("alice", "acme")})
    assert await viewer.call("subscribe", "screens") == {"rooms": ["tenant:acme:screens"]}
    assert await viewer.next("layout") == {"v": 2}
    assert await viewer.quiet("other") == []

    screen = await LiveClient(server.port).connect(
        {"token": token("screen", "acme", devices=["screen-1"]), "deviceId": "screen-1"}
    )
    assert await screen.next("layout") == {"v": "device"}
    # Another tenant's same-named channel is another room: nothing to replay.
    outsider = await LiveClient(server.port).connect({"token": token("carol", "globex")})
    await outsider.call("subscribe", "screens")
    assert await outsider.quiet("layout") == []
    for client in (viewer, screen, outsider):
        await client.disconnect()


async def test_inbox_waits_for_an_offline_user(start_server):
    server = await start(start_server)
    for n in range(3):
        status, body = await http(server.port, "POST", "/api/v1/emit", {"user": "bob", "event": "notice", "data": n})
        assert body == {"delivered": 0}
    bob = await LiveClient(server.port).connect({"token": token("bob", "acme")})
    # The two newest (inbox_size = 2), in order.
    assert await bob.next("notice") == 1
    assert await bob.next("notice") == 2
    # Online now: delivered directly, not kept.
    await http(server.port, "POST", "/api/v1/emit", {"user": "bob", "event": "notice", "data": 3})
    assert await bob.next("notice") == 3
    await bob.disconnect()
    again = await LiveClient(server.port).connect({"token": token("bob", "acme")})
    assert await again.quiet("notice") == []
    await again.disconnect()


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_an_inbox_read_is_emptied_whatever_the_transport(start_server, transports):
    """Over long-polling the inbox is emptied when the client's next GET shows
    it read the answer that carried it; over WebSocket once written."""
    server = await start(start_server)
    await http(server.port, "POST", "/api/v1/emit", {"user": "bob", "event": "notice", "data": "waiting"})
    bob = await LiveClient(server.port).connect({"token": token("bob", "acme")}, transports=transports)
    assert await bob.next("notice") == "waiting"
    await bob.call("subscribe", "anything")  # a round trip after the notice: the client has it
    await bob.disconnect()
    again = await LiveClient(server.port).connect({"token": token("bob", "acme")}, transports=transports)
    assert await again.quiet("notice") == []
    await again.disconnect()


async def test_an_inbox_is_kept_when_the_client_drops_before_reading_it(start_server):
    """A polling client that connects (its notes go to its outbox) and closes
    before any GET carries them out loses nothing: the next connect gets them."""
    server = await start(start_server)
    for n in range(2):
        await http(server.port, "POST", "/api/v1/emit", {"user": "bob", "event": "notice", "data": n})
    dropped = await Polling(server.port).open(connect=False)
    auth = b'40{"token":"' + token("bob", "acme").encode() + b'"}'
    assert await dropped.post(auth) == (200, b"ok")
    assert await dropped.post(b"1") == (200, b"ok")  # gone without reading
    bob = await LiveClient(server.port).connect({"token": token("bob", "acme")})
    assert await bob.next("notice") == 0
    assert await bob.next("notice") == 1
    await bob.disconnect()


async def test_latest_values_are_replayed_in_the_default_namespace_only(start_server, node):
    """Kept for "/", replayed there: a device's socket in another namespace
    joins its device room too, but gets nothing."""
    server = await start_server(None, auth=auth_section(), retention=RETENTION, socketio={"namespaces": ["/", "/other"]})
    await http(server.port, "POST", "/api/v1/emit", {"device": "screen-1", "event": "layout", "data": {"v": 1}})
    auth = {"token": token("screen", "acme", devices=["screen-1"]), "deviceId": "screen-1"}
    other = await run_scripted(node, server, "/other", options={"auth": auth}, steps=[{"sleep": 300}])
    assert events(other, "layout") == []
    default = await run_scripted(node, server, "/", options={"auth": auth}, steps=[{"wait": "layout"}])
    assert events(default, "layout") == [[{"v": 1}]]
