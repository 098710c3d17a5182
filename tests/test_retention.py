"""[retention]: latest values per room for late joiners, inboxes for offline users."""

from __future__ import annotations

import pytest
from support.clients import LiveClient, auth_section, http, token
from support.nodes import events, run_scripted

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
