"""Publishing from back ends (HTTP API, CLI), presence, status and metrics,
with python-socketio's real client on the receiving end."""

from __future__ import annotations

import sys

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from support.clients import API_KEY, LiveClient, auth_section, http, token

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PRESENCE = {"grace": 0.4, "user_events": [["user:online", "user:offline"]]}


async def start(start_server, **sections):
    sections.setdefault("auth", auth_section())
    sections.setdefault("presence", PRESENCE)
    return await start_server(None, **sections)


async def connected(server, user, tenant, **auth):
    return await LiveClient(server.port).connect({"token": token(user, tenant), **auth})


async def test_emit_reaches_only_its_targets(start_server):
    server = await start(start_server)
    alice = await connected(server, "alice", "acme")
    bob = await connected(server, "bob", "acme")
    carol = await connected(server, "carol", "globex")
    assert await alice.call("subscribe", "ops") == {"rooms": ["tenant:acme:ops"]}

    status, body = await http(server.port, "POST", "/api/v1/emit", {"tenant": "acme", "event": "news", "data": {"n": 1}})
    assert (status, body) == (200, {"delivered": 2})
    assert await alice.next("news") == {"n": 1}
    assert await bob.next("news") == {"n": 1}

    status, body = await http(server.port, "POST", "/api/v1/emit", {"room": "tenant:acme:ops", "event": "ops", "data": "x"})
    assert body == {"delivered": 1}
    assert await alice.next("ops") == "x"

    bob_sid = bob.sio.get_sid()
    status, body = await http(
        server.port, "POST", "/api/v1/emit", {"tenant": "acme", "event": "skip", "data": 2, "except": [bob_sid]}
    )
    assert body == {"delivered": 1}
    assert await alice.next("skip") == 2

    status, body = await http(server.port, "POST", "/api/v1/emit", {"user": "carol", "event": "dm", "args": ["a", 1]})
    assert body == {"delivered": 1}
    assert await carol.next("dm") == ("a", 1)

    assert await bob.quiet("skip") == []
    assert await carol.quiet("news") == [] and await bob.quiet("ops") == []
    for client in (alice, bob, carol):
        await client.disconnect()


async def test_batch_rooms_and_disconnect(start_server):
    server = await start(start_server)
    alice = await connected(server, "alice", "acme")
    bob = await connected(server, "bob", "acme")
    batch = {"messages": [{"user": "alice", "event": "one", "data": 1}, {"tenant": "acme", "event": "two", "data": 2}]}
    status, body = await http(server.port, "POST", "/api/v1/emit/batch", batch)
    assert (status, body) == (200, {"results": [{"delivered": 1}, {"delivered": 2}]})
    assert await alice.next("one") == 1 and await bob.next("two") == 2

    # One bad message refuses the whole batch, naming it; nothing is sent.
    bad = {"messages": [{"user": "alice", "event": "three"}, {"event": "four"}]}
    status, body = await http(server.port, "POST", "/api/v1/emit/batch", bad)
    assert status == 400 and body["message"].startswith("messages[1]")
    assert await alice.quiet("three") == []

    status, body = await http(server.port, "POST", "/api/v1/rooms", {"user": "bob", "join": ["tenant:acme:vip"]})
    assert body == {"sockets": 1}
    status, body = await http(server.port, "POST", "/api/v1/emit", {"room": "tenant:acme:vip", "event": "vip"})
    assert body == {"delivered": 1}
    assert await bob.next("vip") == ()

    status, body = await http(server.port, "POST", "/api/v1/disconnect", {"user": "bob"})
    assert body == {"disconnected": 1}
    assert await bob.next("disconnect") is not None
    with trio.fail_after(5):
        while server.sio.hub.members("/", ["user:bob"]):
            await trio.sleep(0.05)
    await alice.disconnect()


async def test_publish_command(start_server, tmp_path):
    server = await start(start_server)
    alice = await connected(server, "alice", "acme")
    config = tmp_path / "cli.toml"
    config.write_text(f'[auth]\nsecret = "x"\napi_keys = ["{API_KEY}"]\n')
    result = await trio.run_process(
        [sys.executable, "-m", "rtserver", "publish", "--config", str(config), "--url", f"http://127.0.0.1:{server.port}",
         "--user", "alice", "--event", "deploy", "--data", '{"status": "done"}'],
        capture_stdout=True, capture_stderr=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert b'"delivered":1' in result.stdout
    assert await alice.next("deploy") == {"status": "done"}
    await alice.disconnect()


@pytest.mark.parametrize(
    ("body", "status", "code", "names"),
    [
        ({"tenant": "acme"}, 400, "invalid_body", "event"),
        ({"tenant": "acme", "event": 5}, 400, "invalid_body", "event"),
        ({"tenant": ["acme"], "event": "x"}, 400, "invalid_body", "tenant"),
        ({"tenant": "acme", "event": "x", "bogus": 1}, 400, "invalid_body", "bogus"),
        ({"tenant": "acme", "event": "x", "namespace": "/nope"}, 400, "unknown_namespace", "namespace"),
        ({"event": "x"}, 400, "invalid_body", "target"),
        ({"rooms": "abc", "event": "x"}, 400, "invalid_body", "rooms"),
    ],
)
async def test_bad_publish_requests(start_server, body, status, code, names):
    server = await start(start_server)
    got_status, got = await http(server.port, "POST", "/api/v1/emit", body)
    assert got_status == status
    assert got["code"] == code
    assert names in got["message"]


async def test_bad_requests_of_every_other_kind(start_server):
    server = await start(start_server, engineio={"max_payload": 2048})
    assert (await http(server.port, "POST", "/api/v1/emit", raw=b"{not json"))[1]["code"] == "invalid_json"
    assert (await http(server.port, "POST", "/api/v1/emit", raw=b"[1]"))[1]["code"] == "invalid_body"
    status, body = await http(server.port, "POST", "/api/v1/emit", raw=b'{"event":"' + b"x" * 4096 + b'"}')
    assert (status, body["code"]) == (413, "payload_too_large")
    assert await http(server.port, "POST", "/api/v1/emit", {"event": "x", "tenant": "a"}, key=None) == (
        401,
        {"code": "auth_required", "message": "an API key or a token is required"},
    )
    assert (await http(server.port, "POST", "/api/v1/emit", {"event": "x", "tenant": "a"}, key="wrong"))[0] == 401
    user_token = token("alice", "acme")
    assert (await http(server.port, "POST", "/api/v1/emit", {"event": "x", "tenant": "a"}, key=user_token))[1][
        "code"
    ] == "forbidden"
    assert (await http(server.port, "GET", "/api/v1/emit"))[1]["code"] == "method_not_allowed"
    assert (await http(server.port, "GET", "/api/v1/nothing"))[1]["code"] == "not_found"
    # The server is still fine.
    assert (await http(server.port, "GET", "/healthz", key=None)) == (200, {"status": "ok"})


async def test_presence_across_tabs_with_grace_and_tenants(start_server):
    server = await start(start_server)
    bob = await connected(server, "bob", "acme")
    carol = await connected(server, "carol", "globex")
    tab1 = await connected(server, "alice", "acme")
    about_alice = lambda data: data["userId"] == "alice"  # noqa: E731
    online = await bob.next("user:online", where=about_alice)
    assert online["status"] == "online" and online["timestamp"].endswith("Z")
    tab2 = await connected(server, "alice", "acme")
    await tab1.disconnect()
    # Still online through tab2: no offline, and the second tab announced nothing.
    assert [e for e in await bob.quiet("user:online", 0.8) if e["userId"] == "alice"] == []
    assert (await http(server.port, "GET", "/api/v1/presence?tenant=acme&user=alice"))[1]["status"] == "online"
    # A reconnect within the grace period does not flap.
    await tab2.disconnect()
    tab3 = await connected(server, "alice", "acme")
    events = await bob.quiet("user:offline", 0.8)
    assert [e for e in events if e["userId"] == "alice"] == []
    await tab3.disconnect()
    offline = await bob.next("user:offline", where=about_alice)
    assert offline["status"] == "offline"
    # The other tenant heard nothing about alice.
    assert [e for e in await carol.quiet("user:online", 0.1) if e["userId"] == "alice"] == []
    assert await carol.quiet("user:offline", 0.1) == []
    users = (await http(server.port, "GET", "/api/v1/presence?tenant=acme"))[1]["users"]
    assert users == [{"userId": "bob", "status": "online"}]
    await bob.disconnect()
    await carol.disconnect()


async def test_presence_query_and_status_over_the_socket(start_server):
    server = await start(start_server)
    alice = await connected(server, "alice", "acme")
    bob = await connected(server, "bob", "acme")
    await connected(server, "carol", "globex")
    assert await alice.call("presence:status", "in a meeting") == {
        "userId": "alice",
        "status": "online",
        "statusText": "in a meeting",
    }
    users = (await bob.call("presence"))["users"]
    assert users == [
        {"userId": "alice", "status": "online", "statusText": "in a meeting"},
        {"userId": "bob", "status": "online"},
    ]
    await alice.call("subscribe", "team")
    assert (await bob.call("presence", {"room": "team"}))["users"] == [
        {"userId": "alice", "status": "online", "statusText": "in a meeting"}
    ]
    refused = await bob.call("presence", {"room": "tenant:globex"})
    assert refused["error"]["code"] == "forbidden"
    assert (await alice.call("presence:status", 42))["error"]["code"] == "invalid_status"


async def test_status_endpoint(start_server):
    server = await start(start_server)
    alice = await connected(server, "alice", "acme")
    await alice.call("subscribe", "ops")
    status, body = await http(server.port, "GET", "/api/v1/status")
    assert status == 200
    assert body["connections"] == {"total": 1, "polling": 0, "websocket": 1}
    assert body["namespaces"] == {"/": 1}
    assert body["rooms"]["/"] == {"user:alice": 1, "tenant:acme": 1, "tenant:acme:ops": 1}
    assert body["onlineUsers"] == 1 and body["uptime"] >= 0 and body["version"]
    assert (await http(server.port, "GET", "/api/v1/status", key=None))[0] == 401


def _metrics(text: str) -> dict[str, float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


async def test_metrics_parse_and_move_with_traffic(start_server):
    server = await start(start_server)
    status, before_text = await http(server.port, "GET", "/metrics", key=None)
    assert status == 200
    before = _metrics(before_text)
    alice = await connected(server, "alice", "acme")
    bob = LiveClient(server.port)
    with pytest.raises(Exception):
        await bob.connect({"token": "not-a-token"})
    await http(server.port, "POST", "/api/v1/emit", {"tenant": "acme", "event": "n", "data": "x" * 100})
    await alice.next("n")
    await alice.call("presence")
    after = _metrics((await http(server.port, "GET", "/metrics", key=None))[1])
    assert after["rtserver_handshakes_total{transport=websocket}"] == before.get("rtserver_handshakes_total{transport=websocket}", 0) + 2
    assert after["rtserver_refusals_total{reason=token_invalid}"] == 1
    assert after["rtserver_messages_sent_total"] > before["rtserver_messages_sent_total"]
    assert after["rtserver_bytes_sent_total"] >= before["rtserver_bytes_sent_total"] + 100
    assert after["rtserver_messages_received_total"] > before["rtserver_messages_received_total"]
    assert after["rtserver_connections{transport=websocket}"] == 1
    assert after["rtserver_fanout_recipients_count"] >= 1
    assert after["rtserver_publish_seconds_count"] >= 1


async def test_leak_gauges_return_to_baseline(start_server):
    """The caps' counts and trio tasks come back to where they were once a
    client leaves, in /api/v1/status and /metrics; the event loop's lag is measured."""
    server = await start(start_server)

    async def status() -> dict:
        return (await http(server.port, "GET", "/api/v1/status"))[1]

    before = await status()
    assert before["counted"] == {"sessionsByAddress": 0, "socketsByUser": 0}
    alice = await connected(server, "alice", "acme")
    during = await status()
    assert during["counted"] == {"sessionsByAddress": 1, "socketsByUser": 1}
    assert during["tasks"] > before["tasks"]
    metrics = _metrics((await http(server.port, "GET", "/metrics", key=None))[1])
    assert metrics["rtserver_counted{kind=sessionsByAddress}"] == 1 and metrics["rtserver_counted{kind=socketsByUser}"] == 1
    assert metrics["rtserver_tasks"] == during["tasks"]
    await alice.disconnect()
    with trio.fail_after(5):
        while (now := await status())["counted"] != before["counted"] or now["tasks"] != before["tasks"]:
            await trio.sleep(0.05)
    lag = _metrics((await http(server.port, "GET", "/metrics", key=None))[1])
    assert lag["rtserver_event_loop_lag_seconds_count"] > metrics["rtserver_event_loop_lag_seconds_count"]
