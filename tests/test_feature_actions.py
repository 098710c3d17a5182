"""The action framework (seed 001) against the document's own client code.

tests/clients/actions.js runs the document's ``connectWebSocket``/``sendAction``
as written against a server started with examples/actions.toml's settings
(auth on with a test secret); a tiny trio HTTP server stands in for the
application's back end (forwarded actions, the session check URL).
"""

from __future__ import annotations

import functools
import json
import time
import tomllib
from pathlib import Path
from typing import Any

import h11
import jwt
import orjson
import pytest
import trio
from support import wire
from support.nodes import Node, NodeResult, StartServer, ok, wait_until

from rtserver import App, RunningServer
from rtserver import config as config_mod
from rtserver.features import settings_for
from rtserver.features.actions import ActionCall, ActionError, register_action, send_update

SECRET = "actions-test-secret-" + "k" * 40
API_KEY = "actions-api-key-0123456789"
WAIT = 10.0
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "actions.toml"


# ------------------------------------------------------------------ helpers
def token(sub: str, company: str | None = "acme", sid: str | None = None, roles: tuple[str, ...] = (),
          **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, "iat": int(time.time()), "exp": int(time.time()) + 600, **claims}
    if company is not None:
        payload["companyId"] = company
    if sid is not None:
        payload["sid"] = sid
    if roles:
        payload["roles"] = list(roles)
    return jwt.encode(payload, SECRET, algorithm="HS256")


def example_sections(**actions: Any) -> dict[str, Any]:
    """examples/actions.toml's sections with the test secret and API key, and
    ``actions`` merged into its [features.actions] table."""
    data = tomllib.loads(EXAMPLE.read_text())
    auth = {**data["auth"], "secret_env": "", "secret": SECRET, "api_keys": [API_KEY]}
    features = {**data["features"], "actions": {**data["features"]["actions"], **actions}}
    return {"engineio": data["engineio"], "auth": auth, "limits": data["limits"], "presence": data["presence"],
            "features": features}


def client_url(server: RunningServer) -> str:
    return f"ws://127.0.0.1:{server.port}"


async def actions_client(node: Node, server: RunningServer, token_: str | None, session: str | None,
                         artifact: str | None = None, steps: list[Any] | None = None, use_cases: bool = False,
                         timeout_ms: int = 12000) -> NodeResult:
    config = {"url": client_url(server), "token": token_, "sessionId": session, "artifactId": artifact,
              "steps": steps or [], "useCases": use_cases, "timeoutMs": timeout_ms}
    return ok(await node("actions.js", json.dumps(config), timeout=timeout_ms / 1000 + 5))


def messages(result: NodeResult, **want: Any) -> list[dict[str, Any]]:
    return [m["value"] for m in result.of("message") if all(m["value"].get(k) == v for k, v in want.items())]


def one(result: NodeResult, **want: Any) -> dict[str, Any]:
    found = messages(result, **want)
    assert len(found) == 1, (want, result)
    return found[0]


def refusal_code(result: NodeResult) -> str:
    assert result.of("connect") == [], result
    [error] = result.of("connect_error")
    return error["data"]["code"]


async def http(port: int, method: str, target: str, body: bytes = b"",
               headers: list[tuple[str, str]] | None = None) -> tuple[int, dict[str, str], bytes]:
    return await wire.request(port, method, target, body, headers or (), sized=("POST",), timeout=WAIT)


async def post_update(server: RunningServer, body: Any, auth: str | None = API_KEY) -> tuple[int, Any]:
    headers = [("Content-Type", "application/json")]
    if auth is not None:
        headers.append(("Authorization", f"Bearer {auth}"))
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    status, _, data = await http(server.port, "POST", "/api/v1/actions/updates", raw, headers)
    return status, orjson.loads(data)


class Backend:
    """The application's back end: forwarded actions and the session check."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []

    async def start(self, nursery: trio.Nursery) -> Backend:
        [listener] = await nursery.start(functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1"))
        self.port = listener.socket.getsockname()[1]
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, bytes]:
        if path.startswith("/sessions/"):
            session = path.removeprefix("/sessions/")
            if session.startswith("good") and headers.get("authorization", "").startswith("Bearer "):
                return 200, b'{"valid": true}'
            return (500, b"oops") if session.startswith("broken") else (404, b'{"valid": false}')
        action = path.removeprefix("/actions/")
        if action == "backendThing":
            return 200, orjson.dumps({"got": body["data"], "user": headers.get("x-user-id"),
                                      "company": headers.get("x-company-id"), "session": headers.get("x-session-id")})
        if action == "backendConflict":
            return 409, b'{"code": "CONFLICT", "message": "already processed"}'
        if action == "backendNotJson":
            return 200, b"<html>surprise</html>"
        return 404, b""

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        request, chunks = None, []
        with trio.move_on_after(WAIT):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
            assert request is not None
            path = request.target.decode()
            headers = {k.decode().lower(): v.decode() for k, v in request.headers}
            body = orjson.loads(b"".join(chunks)) if chunks else None
            self.requests.append((request.method.decode(), path, headers, body))
            if path == "/actions/backendSlow":
                await trio.sleep(5)
            status, data = self.answer(request.method.decode(), path, headers, body)
            response = h11.Response(status_code=status, headers=[("Content-Length", str(len(data))),
                                                                 ("Content-Type", "application/json")])
            await stream.send_all(conn.send(response) + conn.send(h11.Data(data=data)) + conn.send(h11.EndOfMessage()))
        await stream.aclose()


# ------------------------------------------------------------------ config
def test_example_config_is_valid() -> None:
    config = config_mod.load(EXAMPLE, environ={})
    assert config.engineio.paths == ("/realtime",)
    assert config.auth.claims.tenant == "companyId"
    assert config.features.enabled == ("actions",) and not config.presence.enabled
    problems = []
    for bad in ({"envelope_format": "xml"}, {"session_check": "url"}, {"forward_url": "file:///etc/passwd"},
                {"timeouts": {"a": "soon"}}, {"nope": 1}):
        try:
            settings_for(config_mod.structure({"features": {"enabled": ["actions"], "actions": bad}}))
        except config_mod.ConfigError as exc:
            problems.append(str(exc))
    assert len(problems) == 5 and all(p.startswith("features.actions") for p in problems), problems


def test_python_api_misuse() -> None:
    app = App()
    with pytest.raises(ValueError):
        register_action(app, "", lambda call: None)
    with pytest.raises(TypeError):
        register_action(object(), "x", lambda call: None)
    with pytest.raises(RuntimeError):
        send_update(app, "acme", {"action": "x"})


# ------------------------------------------------------- the document's flow
def application(ready: list[str]) -> App:
    """An application module registering its actions."""
    app = App()

    @register_action(app, "someAction")
    def some_action(call: ActionCall) -> dict[str, Any]:
        return {"received": call.data, "user": call.identity.user, "company": call.company_id}

    @register_action(app, "processData", roles=("editor",))
    async def process_data(call: ActionCall) -> dict[str, Any]:
        call.update({"progress": 50})
        await trio.sleep(0.01)
        return {"processed": call.data, "artifact": call.artifact_id}

    async def slow(call: ActionCall) -> None:
        await trio.sleep(10)

    register_action(app, "slowAction", slow, timeout=0.3)

    @register_action(app, "failing")
    def failing(call: ActionCall) -> None:
        raise ValueError("a bug")

    @register_action(app, "refuseIt")
    def refuse_it(call: ActionCall) -> None:
        raise ActionError("INVALID_INPUT", "input must be positive")

    @register_action(app, "ready")
    def mark_ready(call: ActionCall) -> bool:
        ready.append(call.identity.user)
        return True

    return app


async def test_document_client_with_updates(start_server: StartServer, node: Node, nursery: trio.Nursery) -> None:
    backend = await Backend().start(nursery)
    ready: list[str] = []
    app = application(ready)
    server = await start_server(app, **example_sections(
        forward_url=backend.url("/actions/{action}"), timeouts={"backendSlow": 0.5}))
    results: dict[str, NodeResult] = {}

    async def run(name: str, *args: Any, **kwargs: Any) -> None:
        results[name] = await actions_client(node, server, *args, **kwargs)

    alice_steps = [
        {"wait": {"type": "RESPONSE", "action": "someAction"}},
        {"wait": {"requestId": "req-1", "type": "RESPONSE"}},
        {"request": {"requestId": "p1", "action": "ping"}},
        {"request": {"requestId": "e1", "action": "echo", "data": {"nested": [1, "two", None]}}},
        {"request": {"requestId": "w1", "action": "whoami"}},
        {"request": {"requestId": "u1", "action": "noSuchAction"}},
        {"request": {"requestId": "f1", "action": "deleteArtifact"}},
        {"request": {"requestId": "t1", "action": "slowAction"}},
        {"request": {"requestId": "x1", "action": "failing"}},
        {"request": {"requestId": "r1", "action": "refuseIt"}},
        {"request": {"requestId": "b1", "action": "backendThing", "data": {"n": 7}}},
        {"request": {"requestId": "b2", "action": "backendConflict"}},
        {"request": {"requestId": "b3", "action": "backendMissing"}},
        {"request": {"requestId": "b4", "action": "backendNotJson"}},
        {"request": {"requestId": "b5", "action": "backendSlow"}},
        {"request": {"requestId": "s1", "action": "subscribeArtifact", "data": {"artifactId": "art-2"}}},
        {"wait": {"requestId": "s1"}},
        {"wait": {"requestId": "b5"}},
        {"request": {"requestId": "ready", "action": "ready"}},
        {"wait": {"type": "UPDATE", "action": "statusChange"}},
    ]
    bob_steps = [
        {"request": {"requestId": "s1", "action": "subscribeArtifact", "data": "art-2"}},
        {"request": {"requestId": "s2", "action": "unsubscribeArtifact", "data": {"artifactId": "art-2"}}},
        {"wait": {"requestId": "s2"}},
        {"request": {"requestId": "p1", "action": "processData"}},
        {"request": {"requestId": "ready", "action": "ready"}},
        {"wait": {"type": "UPDATE", "action": "statusChange"}},
    ]
    carol_steps = [
        {"request": {"requestId": "ready", "action": "ready"}},
        {"wait": {"type": "UPDATE", "action": "globexNews"}},
    ]
    async with trio.open_nursery() as clients:
        clients.start_soon(run, "alice", token("alice", "acme", "sess-a", ("editor",)), "sess-a", "art-1",
                           alice_steps, True)
        clients.start_soon(run, "bob", token("bob", "acme", "sess-b"), "sess-b", None, bob_steps)
        clients.start_soon(run, "carol", token("carol", "globex", "sess-c", ("editor",)), "sess-c", "art-1",
                           carol_steps)
        await wait_until(lambda: sorted(ready) == ["alice", "bob", "carol"], timeout=20)
        # Artifact art-1 of acme: alice only (carol follows globex's art-1).
        assert send_update(server, "acme", {"type": "UPDATE", "requestId": "u-1", "action": "artifactUpdate",
                                            "data": {"v": 1}}, "art-1") == 1
        assert send_update(server, "acme", {"action": "artifactUpdate", "data": {"v": 2}}, "art-2") == 1
        assert send_update(server, "globex", {"action": "artifactUpdate", "data": {"v": 3}}, "art-1") == 1
        status, body = await post_update(server, {"companyId": "acme", "message": {
            "type": "UPDATE", "requestId": "update-1", "action": "statusChange", "data": {"status": "completed"}}})
        assert (status, body) == (200, {"delivered": 2})
        status, body = await post_update(server, {"companyId": "globex", "message": {"action": "globexNews"}})
        assert (status, body) == (200, {"delivered": 1})

    alice, bob, carol = results["alice"], results["bob"], results["carol"]
    for result in (alice, bob, carol):
        # The document's client received strings and logged them through its switch.
        assert {m["form"] for m in result.of("message")} == {"string"}, result
        assert [e for e in result.of("log") if e["text"] == "Connected to WebSocket server"], result

    # The usage example's sendAction(socket, 'someAction', {key: 'value'}).
    some = one(alice, action="someAction")
    assert some["type"] == "RESPONSE" and some["requestId"].isdigit()
    assert some["data"] == {"received": {"key": "value"}, "user": "alice", "company": "acme"}
    logged = [e["value"] for e in alice.of("log") if e["text"] == "Received response:"]
    assert some in logged
    # Use case 2: req-1 processData, with a progress UPDATE first.
    assert messages(alice, requestId="req-1") == [
        {"type": "UPDATE", "requestId": "req-1", "action": "processData", "data": {"progress": 50}},
        {"type": "RESPONSE", "requestId": "req-1", "action": "processData",
         "data": {"processed": {"input": "value"}, "artifact": "art-1"}},
    ]
    assert [u["value"]["type"] for u in alice.of("usecase") if u["what"] == "handleResponse"] == ["UPDATE", "RESPONSE"]
    assert one(alice, requestId="p1")["data"]["pong"] is True
    assert one(alice, requestId="e1")["data"] == {"nested": [1, "two", None]}
    assert one(alice, requestId="w1")["data"] == {"userId": "alice", "companyId": "acme", "roles": ["editor"],
                                                   "sessionId": "sess-a", "artifactIds": ["art-1"]}
    failed = ("u1", "f1", "t1", "x1", "r1", "b2", "b3", "b4", "b5")
    codes = {rid: one(alice, requestId=rid)["error"]["code"] for rid in failed}
    assert codes == {"u1": "UNKNOWN_ACTION", "f1": "FORBIDDEN", "t1": "TIMEOUT", "x1": "INTERNAL_ERROR",
                     "r1": "INVALID_INPUT", "b2": "CONFLICT", "b3": "UNKNOWN_ACTION", "b4": "BACKEND_ERROR",
                     "b5": "TIMEOUT"}
    assert one(alice, requestId="u1") == {
        "type": "ERROR", "requestId": "u1", "action": "noSuchAction",
        "error": {"code": "UNKNOWN_ACTION", "message": "unknown action 'noSuchAction'"},
    }
    assert one(alice, requestId="r1")["error"]["message"] == "input must be positive"
    errors_logged = [e["value"]["requestId"] for e in alice.of("log") if e["text"] == "Received error:"]
    assert set(codes) <= set(errors_logged)
    # Forwarded: the back end's JSON answer, with the user's identity in headers.
    assert one(alice, requestId="b1")["data"] == {"got": {"n": 7}, "user": "alice", "company": "acme",
                                                   "session": "sess-a"}
    [(method, _, headers, body)] = [r for r in backend.requests if r[1] == "/actions/backendThing"]
    assert method == "POST" and headers["authorization"].startswith("Bearer ") and headers["x-artifact-id"] == "art-1"
    assert body["requestId"] == "b1" and body["companyId"] == "acme" and body["roles"] == ["editor"]
    # Updates: alice saw acme art-1, art-2 (subscribed) and the company update, in order.
    updates = [(m["action"], m.get("data")) for m in messages(alice, type="UPDATE") if m["requestId"] != "req-1"]
    assert updates == [("artifactUpdate", {"v": 1}), ("artifactUpdate", {"v": 2}),
                       ("statusChange", {"status": "completed"})]
    assert one(alice, requestId="u-1")["type"] == "UPDATE"
    assert [u["value"] for u in alice.of("usecase") if u["what"] == "updateUI"] == [{"status": "completed"}]
    # bob: no artifacts (unsubscribed art-2), no editor role; the company update only.
    assert one(bob, requestId="s1")["data"] == {"artifactId": "art-2", "subscribed": True}
    assert one(bob, requestId="s2")["data"] == {"artifactId": "art-2", "subscribed": False}
    assert one(bob, requestId="p1")["error"]["code"] == "FORBIDDEN"
    assert [m["action"] for m in messages(bob, type="UPDATE")] == ["statusChange"]
    # carol (globex, also "art-1"): only her company's updates.
    assert [(m["action"], m.get("data")) for m in messages(carol, type="UPDATE")] == [
        ("artifactUpdate", {"v": 3}), ("globexNews", None)]
    assert one(carol, type="RESPONSE", action="someAction")["data"]["company"] == "globex"


# ------------------------------------------------------------ connect refusals
async def test_connect_refusals(start_server: StartServer, node: Node) -> None:
    sections = example_sections()
    sections["engineio"] = {"paths": ["/realtime", "/socket.io/"]}
    server = await start_server(**sections)
    cases = {
        "no_session": (token("u1", sid="s1"), None, None, "session_required"),
        "wrong_session": (token("u2", sid="s1"), "s2", None, "session_invalid"),
        "no_session_claim": (token("u3"), "s1", None, "session_invalid"),
        "no_company": (token("u4", company=None, sid="s1"), "s1", None, "tenant_required"),
        "no_token": (None, "s1", None, "auth_required"),
        "bad_artifact": (token("u5", sid="s1"), "s1", "a" * 200, "artifact_invalid"),
    }
    results: dict[str, NodeResult] = {}

    async def run(name: str) -> None:
        tok, session, artifact, _ = cases[name]
        results[name] = await actions_client(node, server, tok, session, artifact, [{"sleep": 3000}])

    async def other_path() -> None:
        # A socket on another Engine.IO path is no actions socket: no session needed, no answers.
        config = {"options": {"reconnection": False, "auth": {"token": token("u6")}},
                  "steps": [{"emit": ["message", '{"type":"REQUEST","requestId":"1","action":"ping"}']},
                            {"sleep": 300}]}
        results["other"] = await node("scripted.js", f"http://127.0.0.1:{server.port}/", json.dumps(config))

    async with trio.open_nursery() as clients:
        for name in cases:
            clients.start_soon(run, name)
        clients.start_soon(other_path)
    for name, (*_, code) in cases.items():
        assert refusal_code(results[name]) == code, (name, results[name])
        [logged] = [e for e in results[name].of("log") if e["text"] == "Connection error:"]
        assert logged["value"]["data"]["code"] == code
    other = results["other"]
    assert other.returncode == 0 and len(other.of("connect")) == 1 and other.of("event") == [], other
    # Every actions client got exactly one message-free refusal: no other event either.
    assert all(results[name].of("message") == [] for name in cases)


async def test_session_check_url(start_server: StartServer, node: Node, nursery: trio.Nursery) -> None:
    backend = await Backend().start(nursery)
    server = await start_server(**example_sections(
        session_check="url", session_check_url=backend.url("/sessions/{sessionId}"), session_check_timeout=2.0))
    tok = token("dana", sid="whatever")
    results: dict[str, NodeResult] = {}

    async def run(session: str) -> None:
        steps = [{"request": {"requestId": "p", "action": "ping"}}, {"wait": {"requestId": "p"}}]
        results[session] = await actions_client(node, server, tok, session, None, steps)

    async with trio.open_nursery() as clients:
        for session in ("good-1", "bad-1", "broken-1", "good/../x"):
            clients.start_soon(run, session)
    assert one(results["good-1"], requestId="p")["type"] == "RESPONSE"
    assert refusal_code(results["bad-1"]) == "session_invalid"
    assert refusal_code(results["broken-1"]) == "session_check_failed"
    # The id is quoted into the URL: it cannot walk to another path.
    assert ("GET", "/sessions/good%2F..%2Fx") in [(r[0], r[1]) for r in backend.requests]
    assert one(results["good/../x"], requestId="p")["type"] == "RESPONSE"


async def test_session_check_backend_down(start_server: StartServer, node: Node) -> None:
    with trio.socket.socket() as probe:  # a port with nobody listening
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = await start_server(**example_sections(session_check="url",
                                                   session_check_url=f"http://127.0.0.1:{port}/s/{{sessionId}}"))
    result = await actions_client(node, server, token("erin"), "good-1", None, [{"sleep": 3000}])
    assert refusal_code(result) == "session_check_failed"


# ------------------------------------------------------------------ bad input
async def test_bad_messages_answered_to_sender_only(start_server: StartServer, node: Node) -> None:
    server = await start_server(**example_sections(max_message_bytes=1024))
    bad = [
        "not json",
        "[1, 2]",
        '{"type": "REQUEST", "action": "ping"}',
        '{"type": "RESPONSE", "requestId": "r2", "action": "ping"}',
        '{"type": "REQUEST", "requestId": "r3"}',
        '{"type": "REQUEST", "requestId": "r4", "action": 42}',
        '{"type": "REQUEST", "requestId": 5, "action": "ping"}',
        json.dumps({"type": "REQUEST", "requestId": "r6", "action": "echo", "data": "x" * 2000}),
        42,
    ]
    steps: list[dict[str, Any]] = [{"emit": [m]} for m in bad]
    steps += [
        {"emit": []},
        {"emit": ['{"type":"REQUEST","requestId":"r7","action":"ping"}', "extra"]},
        {"emit": [{"type": "REQUEST", "requestId": "big", "action": "echo", "data": "y" * 2000}]},
        # Nested past the server's limit: as a string holding the envelope, and as an object.
        {"emit": [json.dumps({"type": "REQUEST", "requestId": "d1", "action": "echo", "data": deep(300)})]},
        {"emit": [{"type": "REQUEST", "requestId": "d2", "action": "echo", "data": deep(300)}]},
        {"request": {"requestId": "s1", "action": "subscribeArtifact", "data": {"artifactId": ""}}},
        {"request": {"requestId": "s2", "action": "subscribeArtifact", "data": ["art"]}},
        {"request": {"requestId": "obj", "action": "echo", "data": 1}, "asObject": True},
        {"emitAck": [{"type": "REQUEST", "requestId": "acked", "action": "ping"}]},
        {"request": {"requestId": "last", "action": "ping"}},
        {"wait": {"requestId": "last"}},
    ]
    results: dict[str, NodeResult] = {}

    async def run(name: str, tok: str, client_steps: list[Any]) -> None:
        results[name] = await actions_client(node, server, tok, "s", None, client_steps)

    async with trio.open_nursery() as clients:
        clients.start_soon(run, "mallory", token("mallory", sid="s"), steps)
        clients.start_soon(run, "bob", token("bob", sid="s"), [
            {"sleep": 300}, {"request": {"requestId": "b", "action": "ping"}}, {"wait": {"requestId": "b"}}])
    mallory = results["mallory"]
    values = [m["value"] for m in mallory.of("message") if m["value"].get("action") != "someAction"]
    errors = [(v["requestId"], v["error"]["code"]) for v in values if v["type"] == "ERROR"]
    assert errors == [
        (None, "INVALID_MESSAGE"), (None, "INVALID_MESSAGE"), (None, "INVALID_MESSAGE"), ("r2", "INVALID_MESSAGE"),
        ("r3", "INVALID_MESSAGE"), ("r4", "INVALID_MESSAGE"), (None, "INVALID_MESSAGE"), (None, "MESSAGE_TOO_LARGE"),
        (None, "INVALID_MESSAGE"), (None, "INVALID_MESSAGE"), (None, "INVALID_MESSAGE"), (None, "MESSAGE_TOO_LARGE"),
        (None, "INVALID_MESSAGE"), (None, "INVALID_MESSAGE"), ("s1", "INVALID_MESSAGE"), ("s2", "INVALID_MESSAGE"),
    ], mallory
    too_deep = [v["error"]["message"] for v in values if v["type"] == "ERROR"][12:14]
    assert too_deep == ["the payload nests arrays and objects deeper than 64 levels"] * 2, too_deep
    # An object request is answered with an object; an ack gets the envelope too.
    [obj] = [m for m in mallory.of("message") if m["value"].get("requestId") == "obj"]
    assert obj["form"] == "object" and obj["value"]["data"] == 1
    [ack] = mallory.of("ack")
    assert ack["args"][0]["type"] == "RESPONSE" and ack["args"][0]["requestId"] == "acked"
    assert one(mallory, requestId="last")["type"] == "RESPONSE"
    assert mallory.of("disconnect") == [{"type": "disconnect", "reason": "io client disconnect"}]
    # bob saw only his own answers.
    assert [(m["value"]["type"], m["value"].get("action")) for m in results["bob"].of("message")] == [
        ("ERROR", "someAction"), ("RESPONSE", "ping")]


def deep(levels: int) -> list[Any]:
    """A list nested ``levels`` deep."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


async def test_rate_limited_is_an_error_envelope(start_server: StartServer, node: Node) -> None:
    sections = example_sections()
    sections["limits"] = {"events_per_second": 0.2, "event_burst": 3, "abuse_threshold": 50}
    server = await start_server(**sections)
    steps = [{"request": {"requestId": f"q{i}", "action": "ping"}} for i in range(5)]
    steps += [{"wait": {"type": "ERROR"}, "count": 4}]
    result = await actions_client(node, server, token("fast", sid="s"), "s", None, steps)
    # The usage example's someAction (unknown here) took one token of the burst.
    assert one(result, action="someAction")["error"]["code"] == "UNKNOWN_ACTION"
    assert [m["requestId"] for m in messages(result, type="RESPONSE")] == ["q0", "q1"]
    limited = [m for m in messages(result, type="ERROR") if m.get("action") != "someAction"]
    assert len(limited) == 3 and {m["error"]["code"] for m in limited} == {"RATE_LIMITED"}, result


# ------------------------------------------------------------------ HTTP side
async def test_updates_api_access_and_validation(start_server: StartServer) -> None:
    server = await start_server(**example_sections())
    good = {"companyId": "acme", "message": {"action": "x"}}
    assert await post_update(server, good) == (200, {"delivered": 0})
    assert (await post_update(server, good, auth=None))[0] == 401
    assert (await post_update(server, good, auth=token("u", roles=("editor",))))[0] == 403
    other_admin = token("boss", company="globex", roles=("admin",))
    assert (await post_update(server, good, auth=other_admin))[1]["code"] == "forbidden"
    assert (await post_update(server, good, auth=token("boss", roles=("admin",))))[0] == 200
    for body, mentions in [
        ({"message": {}}, "companyId"),
        ({"companyId": "acme", "message": "text"}, "message"),
        ({"companyId": "acme", "message": {"type": "RESPONSE"}}, "type"),
        ({"companyId": "acme", "message": {}, "artifactId": ""}, "artifactId"),
        ({"companyId": "acme", "message": {}, "extra": 1}, "extra"),
        (b"{not json", ""),
    ]:
        status, answer = await post_update(server, body)
        assert status == 400 and mentions in answer["message"], (body, answer)


async def test_console_page(start_server: StartServer) -> None:
    server = await start_server(**example_sections())
    for path in ("/console/", "/console"):
        status, headers, body = await http(server.port, "GET", path)
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert b"Actions test client" in body and b'"path":"/realtime"' in body
        assert b"__ACTIONS_DEFAULTS__" not in body and SECRET.encode() not in body
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert (await http(server.port, "POST", "/console/"))[0] == 405
    assert (await http(server.port, "GET", "/console/x"))[0] == 404


async def test_console_page_script_speaks_the_protocol(start_server: StartServer, node: Node) -> None:
    """The page's own script, run against the server with `ws` as its WebSocket."""
    sections = example_sections()
    sections["engineio"] = {**sections["engineio"], "ping_interval": 0.2, "ping_timeout": 0.4}
    server = await start_server(**sections)
    base = f"http://127.0.0.1:{server.port}"
    config = {"token": token("page", sid="s-1"), "sessionId": "s-1", "artifactId": "art-9", "stayMs": 1200,
              "requests": [{"action": "whoami", "requestId": "w"}, {"action": "echo", "data": [1], "asString": False},
                           {"action": "nope", "requestId": "n"}],
              "raw": "{broken"}
    result = await node("actions_console.js", base, json.dumps(config))
    assert result.returncode == 0 and result.of("timeout") == [], result
    statuses = [s["text"] for s in result.of("status")]
    assert statuses[:2] == ["disconnected", "connecting"] and statuses[2].startswith("connected ("), result
    assert statuses[-1] == "disconnected", result
    lines = [(line["kind"], line["text"]) for line in result.of("line")]
    replies = [json.loads(text.split(" ", 2)[2]) for kind, text in lines if kind in ("RESPONSE", "ERROR")]
    assert replies[0]["data"]["artifactIds"] == ["art-9"] and replies[0]["requestId"] == "w"
    assert replies[1]["data"] == [1]
    assert replies[2]["error"]["code"] == "UNKNOWN_ACTION" and replies[3]["error"]["code"] == "INVALID_MESSAGE"
    assert len(replies) == 4, result

    refused = await node("actions_console.js", base, json.dumps({"token": token("page", sid="s-1"), "sessionId": ""}))
    assert refused.returncode == 0 and refused.of("timeout") == [], refused
    errors = [line["text"] for line in refused.of("line") if line["kind"] == "error"]
    assert len(errors) == 1 and "session_required" in errors[0], refused
