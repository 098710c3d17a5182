"""The NestJS chat vocabulary (seed 003) against real socket.io-client 4.x.

The server runs with examples/chat.toml's settings (a test secret and API key
swapped in).  tests/clients/chat.js runs the document's client code as
written, with the token placed each of the document's three ways; the bad
inputs use tests/clients/scripted.js.  Tenants A (alice: `role: "admin"`, bob)
and B (carol: admin of B) are in play throughout.
"""

from __future__ import annotations

import json
import os
import sys
import time
import tomllib
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import jwt
import orjson
import pytest
import trio
from support import wire
from support.nodes import Background, Node, NodeResult, StartServer, ok, wait_until

from rtserver import RunningServer
from rtserver import config as config_mod
from rtserver.features import chat, settings_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PATH = ROOT / "examples" / "chat.toml"
EXAMPLE = tomllib.loads(EXAMPLE_PATH.read_text())
SECRET = "chat-test-secret-" + "c" * 48
API_KEY = "chat-test-api-key-0123456789"
WAIT = 10.0


# ------------------------------------------------------------------ helpers
def token(sub: str | None, tenant: str | None, **claims: Any) -> str:
    payload: dict[str, Any] = {"iat": int(time.time()), "exp": int(time.time()) + 600, **claims}
    if sub is not None:
        payload["sub"] = sub
    if tenant is not None:
        payload["tenantId"] = tenant
    return jwt.encode(payload, SECRET, algorithm="HS256")


ALICE = token("alice", "A", role="admin", email="alice@a.example", tokenVersion=0)
BOB = token("bob", "A", roles=["user"], email="bob@a.example", tokenVersion=0)
CAROL = token("carol", "B", role="admin", email="carol@b.example")


def sections(**overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The example config's tables (not [server]) with the test credentials."""
    tables = {name: dict(table) for name, table in EXAMPLE.items() if name != "server"}
    tables["auth"].update(secret=SECRET, secret_env="", api_keys=[API_KEY])
    for name, values in overrides.items():
        tables[name] = {**tables.get(name, {}), **values}
    return tables


def ws_url(server: RunningServer) -> str:
    return f"ws://127.0.0.1:{server.port}"


async def document_client(node: Node, server: RunningServer, token_: str, placement: str, example: str,
                          steps: list[Any], timeout_ms: int = 15000) -> NodeResult:
    config = {"url": ws_url(server), "token": token_, "placement": placement, "example": example,
              "steps": steps, "timeoutMs": timeout_ms}
    return await node("chat.js", json.dumps(config), timeout=timeout_ms / 1000 + 5)


async def scripted(node: Node, server: RunningServer, token_: str, steps: list[Any],
                   timeout_ms: int = 15000) -> NodeResult:
    config = {"options": {"reconnection": False, "auth": {"token": token_}}, "steps": steps, "timeoutMs": timeout_ms}
    return await node("scripted.js", f"http://127.0.0.1:{server.port}/", json.dumps(config),
                      timeout=timeout_ms / 1000 + 5)


#: A Node run in the background, waited for up to 25 s.
background = partial(Background, timeout=25)


def events(result: NodeResult, name: str) -> list[Any]:
    """First argument of each ``name`` event received."""
    return [e["args"][0] if e["args"] else None for e in result.of("event") if e["event"] == name]


def acks(result: NodeResult, name: str) -> list[Any]:
    return [e["args"][0] if e["args"] else None for e in result.of("ack") if e["event"] == name]


def logs(result: NodeResult) -> list[str]:
    return [e["text"] for e in result.of("log")]


def members(server: RunningServer, room: str) -> set[str]:
    return {m.identity.user for m in server.sio.hub.members("/", [room]) if getattr(m, "identity", None)}


async def api(server: RunningServer, path: str, body: Any, key: str | None = API_KEY) -> tuple[int, Any]:
    """POST a JSON body with the API key (or a Bearer JWT as ``key``)."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = [("Content-Type", "application/json")]
    if key is not None:
        headers.append(("Authorization", f"Bearer {key}"))
    status, _, raw = await wire.request(server.port, "POST", path, data, headers, host="127.0.0.1", timeout=WAIT)
    return status, orjson.loads(raw)


def error(code: str, pattern: str) -> dict[str, Any]:
    """What an `exception` looks like, minus the message."""
    return {"status": "error", "code": code, "cause": {"pattern": pattern}}


def without_message(payload: Any) -> Any:
    assert isinstance(payload, dict) and isinstance(payload.get("message"), str) and payload["message"], payload
    return {k: v for k, v in payload.items() if k != "message"}


# ------------------------------------------------------------ the example
async def test_example_config_checks_and_matches_defaults() -> None:
    with trio.fail_after(20):
        proc = await trio.run_process([sys.executable, "-m", "rtserver", "check-config", str(EXAMPLE_PATH)],
                                      capture_stdout=True, capture_stderr=True, check=False, cwd=ROOT,
                                      env={k: v for k, v in os.environ.items() if not k.startswith("RTSERVER_")})
    assert proc.returncode == 0, proc.stderr
    # The example spells out every setting, at its default (the document's names).
    assert set(EXAMPLE["features"]["chat"]) == set(attrs.fields_dict(chat.Settings))
    assert settings_for(config_mod.load(EXAMPLE_PATH, environ={}))["chat"] == chat.Settings()
    assert EXAMPLE["presence"]["user_events"] == [["user_online", "user_offline"]]


# ----------------------------------------------- the document's clients
async def test_document_clients_rooms_private_broadcast_admin(
        start_server: StartServer, node: Node, nursery: trio.Nursery) -> None:
    server = await start_server(**sections())
    # bob: Authorization header, the Node.js Client example (get_online_users, join developers).
    bob = background(nursery, lambda: document_client(node, server, BOB, "header", "node", [
        {"emit": ["join_room", {"room": "general"}], "ack": True},
        {"wait": "new_message", "count": 3},
        {"wait": "admin_announcement"},
        {"emit": ["admin_broadcast", {"message": "I am not an admin"}]},
        {"wait": "exception"},
        {"emit": ["ping"], "ack": True},
        {"wait": "pong"},
        {"sleep": 300},
    ]))
    await wait_until(lambda: "bob" in members(server, "tenant:A:general"))
    # carol (tenant B): ?token= in the URL, the Browser example (joins general, says hello).
    carol = ok(await document_client(node, server, CAROL, "query", "browser", [
        {"wait": "new_message"},
        {"emit": ["send_message", {"to": "bob", "message": "psst"}]},
        {"wait": "exception"},
        {"emit": ["send_message", {"message": "carol global"}]},
        {"wait": "new_message", "count": 2},
        {"emit": ["admin_broadcast", {"message": "B maintenance"}]},
        {"wait": "admin_announcement"},
    ]))
    # alice (tenant A, role "admin"): auth object, the Browser example.
    alice = ok(await document_client(node, server, ALICE, "auth", "browser", [
        {"wait": "new_message"},
        {"emit": ["send_message", {"to": "bob", "message": "Private message"}]},
        {"wait": "new_message", "count": 2},
        {"emit": ["send_message", {"message": "Global message"}]},
        {"wait": "new_message", "count": 3},
        {"emit": ["admin_broadcast", {"message": "System maintenance in 10 minutes"}]},
        {"wait": "admin_announcement"},
        {"emit": ["get_online_users"], "ack": True},
        {"wait": "online_users"},
        {"emit": ["ping"], "ack": True},
        {"sleep": 300},
    ]))
    bob = ok(await bob.wait())

    # bob: the Node example's log line reads data.from.email and data.message.
    assert [t for t in logs(bob) if t.startswith("Message from")] == [
        "Message from alice@a.example: Hello everyone!",
        "Message from alice@a.example: Private message",
        "Message from alice@a.example: Global message",
    ], bob
    room_msg, private, broadcast = events(bob, "new_message")
    assert room_msg["type"] == "room" and room_msg["room"] == "general", room_msg
    assert room_msg["from"] == {"id": "alice", "userId": "alice", "email": "alice@a.example"}
    assert private["type"] == "private" and private["to"] == "bob" and "room" not in private, private
    assert broadcast["type"] == "broadcast" and "room" not in broadcast and "to" not in broadcast, broadcast
    assert all(m["timestamp"].endswith("Z") and m["id"] for m in (room_msg, private, broadcast))
    assert acks(bob, "join_room") == [{"status": "ok", "room": "general"}]
    [online] = events(bob, "online_users")  # the Node example asked on connect
    assert online == {"users": [{"id": "bob", "userId": "bob", "email": "bob@a.example", "status": "online"}],
                      "count": 1}
    assert [(j["userId"], j["room"]) for j in events(bob, "user_joined")] == [("alice", "general")]
    assert "alice" in [e["userId"] for e in events(bob, "user_online")]
    assert "carol" not in [e["userId"] for e in events(bob, "user_online") + events(bob, "user_offline")]
    [announcement] = events(bob, "admin_announcement")
    assert announcement["message"] == "System maintenance in 10 minutes"
    assert announcement["from"]["userId"] == "alice"
    assert [without_message(e) for e in events(bob, "exception")] == [error("forbidden", "admin_broadcast")]
    [pong] = events(bob, "pong")
    assert acks(bob, "ping") == [pong]
    assert pong["user"] == {"id": "bob", "userId": "bob", "email": "bob@a.example", "tenantId": "A", "roles": ["user"]}

    # carol: tenant B only; bob is not reachable from B.
    assert [(m["message"], m["from"]["userId"]) for m in events(carol, "new_message")] == [
        ("Hello everyone!", "carol"), ("carol global", "carol")]
    assert [without_message(e) for e in events(carol, "exception")] == [error("recipient_offline", "send_message")]
    assert any(t.startswith("WebSocket error:") for t in logs(carol)), carol  # the example's handler ran
    assert [a["message"] for a in events(carol, "admin_announcement")] == ["B maintenance"]
    assert [j["userId"] for j in events(carol, "user_joined")] == []

    # alice: sees her own messages; online users of tenant A only.
    assert [(m["type"], m["message"]) for m in events(alice, "new_message")] == [
        ("room", "Hello everyone!"), ("private", "Private message"), ("broadcast", "Global message")]
    [online] = acks(alice, "get_online_users")
    assert events(alice, "online_users") == [online]
    assert [(u["userId"], u["email"]) for u in online["users"]] == [("alice", "alice@a.example"), ("bob", "bob@a.example")]
    assert [a["message"] for a in events(alice, "admin_announcement")] == ["System maintenance in 10 minutes"]
    assert events(alice, "exception") == []
    [pong] = acks(alice, "ping")
    assert pong["user"]["roles"] == ["admin"]  # the single `role` claim


async def test_presence_and_room_departures(start_server: StartServer, node: Node, nursery: trio.Nursery) -> None:
    server = await start_server(**sections(presence={"grace": 0.2}))
    bob = background(nursery, lambda: document_client(node, server, BOB, "auth", "node", [
        {"emit": ["join_room", {"room": "general"}], "ack": True},
        {"wait": "user_left"},
        {"wait": "user_offline"},
    ]))
    await wait_until(lambda: "bob" in members(server, "tenant:A:general"))
    alice = ok(await document_client(node, server, ALICE, "header", "browser", [
        {"wait": "new_message"},
        {"emit": ["leave_room", {"room": "general"}], "ack": True},
        {"emit": ["leave_room", {"room": "general"}], "ack": True},  # not a member: a no-op
        {"emit": ["send_message", {"room": "general", "message": "gone?"}]},
        {"wait": "exception"},
    ]))
    bob = ok(await bob.wait())
    assert acks(alice, "leave_room") == [{"status": "ok", "room": "general"}] * 2
    assert [without_message(e) for e in events(alice, "exception")] == [error("not_in_room", "send_message")]
    assert [(e["userId"], e["room"]) for e in events(bob, "user_joined")] == [("alice", "general")]
    assert [(e["userId"], e["room"], e["user"]["email"]) for e in events(bob, "user_left")] == [
        ("alice", "general", "alice@a.example")]
    assert [m["message"] for m in events(bob, "new_message")] == ["Hello everyone!"]
    online = [e for e in events(bob, "user_online") if e["userId"] == "alice"]
    offline = [e for e in events(bob, "user_offline") if e["userId"] == "alice"]
    assert [e["status"] for e in online + offline] == ["online", "offline"], bob


# ------------------------------------------------------------ revocation
@pytest.mark.parametrize("placement", ["auth", "header", "query"])
async def test_revoked_token_dropped_and_reconnect_refused(start_server: StartServer, node: Node,
                                                           nursery: trio.Nursery, placement: str) -> None:
    server = await start_server(**sections())
    victim = background(nursery, lambda: document_client(node, server, BOB, placement, "node", [
        {"waitDisconnect": 1},
        {"sleep": 8000},  # the client reconnects by itself and is refused (the script ends there)
    ]))
    await wait_until(lambda: "bob" in members(server, "tenant:A:developers"))
    status, body = await api(server, "/api/v1/admin/revoke", {"user": "bob"})
    assert (status, body) == (200, {"user": "bob", "tokenVersion": 1, "disconnected": 1})
    result = ok(await victim.wait())
    assert len(result.of("connect")) == 1, result
    assert [e["code"] for e in events(result, "exception")] == ["token_revoked"], result
    assert result.of("disconnect")[0]["reason"] == "transport close", result
    [refused] = result.of("connect_error")
    assert refused["data"] == {"code": "token_revoked"}, result
    # A token minted after the revocation (tokenVersion 1) is accepted.
    fresh = token("bob", "A", email="bob@a.example", tokenVersion=1)
    again = ok(await document_client(node, server, fresh, placement, "node", [{"emit": ["ping"], "ack": True}]))
    assert [a["user"]["userId"] for a in acks(again, "ping")] == ["bob"]


async def test_invalid_token_refused(start_server: StartServer, node: Node) -> None:
    server = await start_server(**sections())
    forged = jwt.encode({"sub": "alice", "tenantId": "A", "exp": int(time.time()) + 60}, "wrong-secret-" + "x" * 40)
    expired = jwt.encode({"sub": "alice", "tenantId": "A", "exp": int(time.time()) - 3600}, SECRET)
    for bad, code in ((forged, "token_invalid"), (expired, "token_expired")):
        result = ok(await document_client(node, server, bad, "auth", "node", []))
        assert result.of("connect") == [], result
        assert [e["data"] for e in result.of("connect_error")] == [{"code": code}], result


# ------------------------------------------------------------ bad input
BAD_INPUTS: list[tuple[list[Any], str]] = [
    (["join_room", 42], "invalid_payload"),
    (["join_room", {"room": 42}], "invalid_room"),
    (["join_room", {}], "invalid_room"),
    (["join_room"], "invalid_payload"),
    (["join_room", {"room": "tenant:B:general"}], "forbidden"),
    (["join_room", {"room": "user:alice"}], "forbidden"),
    (["join_room", {"room": "general"}, "extra"], "bad_arguments"),
    (["leave_room", {"room": 5}], "invalid_room"),
    (["send_message", {"room": "general", "message": 5}], "invalid_message"),
    (["send_message", {"room": "general", "message": "x" * 2001}], "message_too_long"),
    (["send_message", {"room": "random", "message": "hi"}], "not_in_room"),
    (["send_message", {"room": 7, "message": "hi"}], "invalid_room"),
    (["send_message", {"room": "tenant:B:general", "message": "hi"}], "forbidden"),
    (["send_message", {"to": "", "message": "hi"}], "invalid_recipient"),
    (["send_message", {"to": {"id": "alice"}, "message": "hi"}], "invalid_recipient"),
    (["send_message", {"to": "carol", "message": "hi"}], "recipient_offline"),  # online, in tenant B
    (["send_message", {"to": "nobody", "message": "hi"}], "recipient_offline"),
    (["send_message", {"room": "general", "to": "alice", "message": "hi"}], "invalid_payload"),
    (["send_message", {"room": "general"}], "invalid_message"),
    (["send_message", "just a string"], "invalid_payload"),
    (["admin_broadcast", {"message": "I am root"}], "forbidden"),
    (["get_online_users", {"room": 5}], "invalid_room"),
]


async def test_bad_inputs_answered_with_exception_only(start_server: StartServer, node: Node,
                                                       nursery: trio.Nursery) -> None:
    server = await start_server(**sections())
    release = [{"wait": "release"}]
    alice = background(nursery, lambda: scripted(node, server, ALICE, [
        {"emit": ["join_room", {"room": "general"}], "ack": True},
        {"emit": ["admin_broadcast", {"message": 5}], "ack": True},
        {"emit": ["admin_broadcast", {"message": "y" * 2001}], "ack": True},
        *release]))
    carol = background(nursery, lambda: scripted(node, server, CAROL, [
        {"emit": ["join_room", {"room": "general"}], "ack": True}, *release]))
    await wait_until(lambda: "alice" in members(server, "tenant:A:general")
                     and "carol" in members(server, "tenant:B:general"))
    steps: list[Any] = [{"emit": ["join_room", {"room": "general"}], "ack": True}]
    steps += [{"emit": emit, "ack": True} for emit, _ in BAD_INPUTS]
    steps += [{"emit": ["leave_room", {"room": "tenant:A"}], "ack": True}]  # automatic rooms stay
    steps += [
        {"emit": ["send_message", {"message": ""}]},  # no ack: the event only
        {"wait": "exception", "count": len(BAD_INPUTS) + 1},
        {"emit": ["send_message", {"room": "general", "message": "still here"}], "ack": True},
        {"emit": ["send_message", {"message": "to all of A"}], "ack": True},
        {"emit": ["ping"], "ack": True},
        {"wait": "new_message", "count": 2},
        {"sleep": 200},
    ]
    bob = ok(await scripted(node, server, BOB, steps))
    server.sio.emit("release", to=["user:alice", "user:carol"])
    alice, carol = ok(await alice.wait()), ok(await carol.wait())

    answers = [e["args"][0] for e in bob.of("ack")][1:len(BAD_INPUTS) + 1]
    assert [without_message(a) for a in answers] == [error(code, emit[0]) for emit, code in BAD_INPUTS], bob
    exceptions = [without_message(e) for e in events(bob, "exception")]
    assert exceptions == [error(code, emit[0]) for emit, code in BAD_INPUTS] + [error("invalid_message", "send_message")]
    # A user of another tenant looks exactly like one who does not exist.
    [to_carol, to_nobody] = [a["message"] for a in answers if a["code"] == "recipient_offline"]
    assert to_carol.replace("carol", "nobody") == to_nobody, answers
    assert [a["status"] for a in acks(bob, "send_message")[-2:]] == ["ok", "ok"]
    assert [m["message"] for m in events(bob, "new_message")] == ["still here", "to all of A"]
    assert acks(bob, "ping")[-1]["user"]["userId"] == "bob"
    # Nothing reached the others but the one valid message.
    assert [m["message"] for m in events(alice, "new_message")] == ["still here", "to all of A"]
    assert events(alice, "admin_announcement") == []
    assert [without_message(a) for a in acks(alice, "admin_broadcast")] == [
        error("invalid_message", "admin_broadcast"), error("message_too_long", "admin_broadcast")]
    assert events(carol, "new_message") == [] and events(carol, "exception") == []
    assert [j["userId"] for j in events(carol, "user_joined")] == []


async def test_rate_limit_is_an_exception(start_server: StartServer, node: Node) -> None:
    server = await start_server(**sections(limits={"events_per_second": 1.0, "event_burst": 3}))
    bob = ok(await scripted(node, server, BOB, [*[{"emit": ["ping"]} for _ in range(6)], {"sleep": 300}]))
    assert len(events(bob, "pong")) == 3, bob
    assert [without_message(e) for e in events(bob, "exception")] == [error("rate_limited", "ping")] * 3


async def test_tenantless_tokens_and_default_tenant(start_server: StartServer, node: Node) -> None:
    plain = token("dave", None, email="dave@example.org")
    server = await start_server(**sections())
    result = ok(await scripted(node, server, plain, [{"emit": ["ping"], "ack": True}]))
    assert [without_message(a) for a in acks(result, "ping")] == [error("tenant_required", "ping")]


async def test_default_tenant(start_server: StartServer, node: Node) -> None:
    server = await start_server(**sections(features={"enabled": ["chat"], "chat": {"default_tenant": "main"}}))
    plain = token("dave", None, email="dave@example.org")
    result = ok(await scripted(node, server, plain, [
        {"emit": ["ping"], "ack": True}, {"emit": ["get_online_users"], "ack": True}]))
    assert [a["user"]["tenantId"] for a in acks(result, "ping")] == ["main"]
    assert [[u["userId"] for u in a["users"]] for a in acks(result, "get_online_users")] == [["dave"]]


# ----------------------------------------------- back-end notifications
async def test_notifications_from_the_back_end(start_server: StartServer, node: Node, nursery: trio.Nursery) -> None:
    # Signage also pushes "notification" (over its own REST routes): both on at once.
    server = await start_server(**sections(features={"enabled": ["chat", "signage"]}))
    path = "/api/v1/chat/notifications"
    release = [{"wait": "release"}]
    bob = background(nursery, lambda: scripted(node, server, BOB, [
        {"emit": ["join_room", {"room": "general"}], "ack": True}, *release]))
    alice = background(nursery, lambda: scripted(node, server, ALICE, release))
    carol = background(nursery, lambda: scripted(node, server, CAROL, [
        {"emit": ["join_room", {"room": "general"}], "ack": True}, *release]))
    await wait_until(lambda: "bob" in members(server, "tenant:A:general") and "alice" in members(server, "user:alice")
                     and "carol" in members(server, "tenant:B:general"))

    sent = [
        ({"tenant": "A", "user": "bob", "notification": {"title": "for bob"}}, 1),
        ({"tenant": "A", "room": "general", "notification": {"title": "general of A"}}, 1),
        ({"tenant": "A", "notification": {"title": "all of A"}}, 2),
        ({"tenant": "B", "user": "bob", "notification": {"title": "bob is not in B"}}, 0),
        ({"tenant": "B", "room": "tenant:A:general", "notification": {"title": "stays in B"}}, 0),
    ]
    for body, delivered in sent:
        assert await api(server, path, body) == (200, {"delivered": delivered}), body
    # An admin JWT reaches its own tenant (the default) only.
    assert await api(server, path, {"notification": "from alice"}, key=ALICE) == (200, {"delivered": 2})
    refused = [
        ({"tenant": "A", "notification": "x"}, CAROL, 403, "forbidden"),  # admin of B
        ({"tenant": "A", "notification": "x"}, BOB, 403, "forbidden"),  # not an admin
        ({"tenant": "A", "notification": "x"}, None, 401, "auth_required"),
        ({"tenant": "A"}, API_KEY, 400, "invalid_body"),
        ({"tenant": "A", "notification": None}, API_KEY, 400, "invalid_body"),
        ({"notification": "x"}, API_KEY, 400, "invalid_body"),
        ({"tenant": 5, "notification": "x"}, API_KEY, 400, "invalid_body"),
        ({"tenant": "A", "user": "bob", "room": "general", "notification": "x"}, API_KEY, 400, "invalid_body"),
        ({"tenant": "A", "user": True, "notification": "x"}, API_KEY, 400, "invalid_body"),
        ({"tenant": "A", "notification": "x", "extra": 1}, API_KEY, 400, "invalid_body"),
        (b"not json", API_KEY, 400, "invalid_json"),
    ]
    for body, key, status, code in refused:
        got_status, got = await api(server, path, body, key=key)
        assert (got_status, got["code"]) == (status, code), (body, got)
    server.sio.emit("release", to=["user:alice", "user:bob", "user:carol"])
    bob, alice, carol = ok(await bob.wait()), ok(await alice.wait()), ok(await carol.wait())
    assert events(bob, "notification") == [{"title": "for bob"}, {"title": "general of A"}, {"title": "all of A"},
                                           "from alice"]
    assert events(alice, "notification") == [{"title": "all of A"}, "from alice"]
    assert events(carol, "notification") == []
