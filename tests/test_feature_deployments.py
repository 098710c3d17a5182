"""The PaaS platform's deployment feed (seed 000) against its own client code.

The document's WebSocketService and React component run unchanged in Node
(tests/clients/deployments_*.js) against a server configured from
examples/deployments.toml; the deployer publishes over the HTTP API.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from support.interactive import NodeClient, spawn
from support.nodes import wait_until
from support.seeds import Seed

from rtserver import RunningServer
from rtserver.cli import main as cli_main
from rtserver.features import deployments

SECRET = "deployments-test-secret-" + "d" * 40
API_KEY = "deployments-test-api-key-0123456789"
SEED = Seed("deployments", SECRET, API_KEY, tenant="acme")
token, example_sections, http = SEED.token, SEED.sections, SEED.http


# --------------------------------------------------------------- helpers
def url(server: RunningServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def service(nursery: trio.Nursery, server: RunningServer, jwt_token: str) -> NodeClient:
    client = await spawn(nursery, "deployments_service.js", url(server), jwt_token)
    await client.console("Connected to WebSocket server")
    return client


def errors_of(client: NodeClient) -> list[dict[str, Any]]:
    """What reached the document's socket.on('error') handler."""
    return [e["args"][1] for e in client.lines if e["type"] == "console_error" and e["text"].startswith("WebSocket error:")]


async def publish_status(server: RunningServer, dep: str, tenant: str, status: str) -> dict[str, Any]:
    code, body = await http(server.port, "POST", f"/api/v1/deployments/{dep}/status", {"tenant": tenant, "status": status})
    assert code == 200, body
    return body


async def publish_log(server: RunningServer, dep: str, tenant: str, *lines: str) -> dict[str, Any]:
    payload = {"tenant": tenant, "log": lines[0]} if len(lines) == 1 else {"tenant": tenant, "lines": list(lines)}
    code, body = await http(server.port, "POST", f"/api/v1/deployments/{dep}/log", payload)
    assert code == 200, body
    return body


def subscribers(server: RunningServer, tenant: str, dep: str) -> int:
    return len(list(server.sio.hub.members("/", [deployments.room_of(tenant, dep)])))


# ----------------------------------------------------------------- tests
async def test_document_clients_follow_a_deployment(start_server: Any, nursery: trio.Nursery) -> None:
    server = await start_server(**example_sections())
    # Published before anyone watches: a late subscriber must still see it.
    await publish_status(server, "dep-1", "acme", "building")
    await publish_log(server, "dep-1", "acme", "step 1")
    await publish_log(server, "dep-1", "acme", "step 2", "step 3")
    await publish_status(server, "dep-9", "globex", "queued")
    await publish_log(server, "dep-9", "globex", "globex secret")

    alice = await service(nursery, server, token("alice"))
    await alice.run("wsService.subscribeToDeployment('dep-1')")
    await alice.console("Deployment dep-1 log: step 3")
    assert alice.texts("Deployment") == [
        "Deployment dep-1 status: building",
        "Deployment dep-1 log: step 1",
        "Deployment dep-1 log: step 2",
        "Deployment dep-1 log: step 3",
    ]

    # The React component subscribes on connect and gets the same history.
    bob = await spawn(nursery, "deployments_react.js", url(server), token("bob"), "dep-1")
    await bob.expect(lambda e: e["type"] == "state" and e["name"] == "logs" and len(e["value"]) == 3)
    await alice.console("User bob is now online")

    # Another tenant: refused for acme's deployment, served for its own.
    carol = await service(nursery, server, token("carol", "globex"))
    await carol.run("wsService.subscribeToDeployment('dep-1')")
    await carol.run("wsService.subscribeToDeployment('dep-9')")
    await carol.console("Deployment dep-9 log: globex secret")
    await carol.expect(lambda e: e["type"] == "console_error" and e["text"].startswith("WebSocket error:"))
    [refusal] = errors_of(carol)
    assert refusal["code"] == "forbidden" and refusal["event"] == "deployment:subscribe", refusal
    assert "acme" not in refusal["message"]
    assert subscribers(server, "acme", "dep-1") == 2

    # Live updates reach both acme subscribers.
    assert (await publish_log(server, "dep-1", "acme", "step 4"))["delivered"] == 2
    assert (await publish_status(server, "dep-1", "acme", "success"))["delivered"] == 2
    await alice.console("Deployment dep-1 status: success")
    await bob.expect(lambda e: e["type"] == "state" and e["name"] == "status" and e["value"] == "success")
    assert [e["value"] for e in bob.lines if e["type"] == "state" and e["name"] == "logs"][-1] == [
        "step 1", "step 2", "step 3", "step 4"]

    # Unsubscribed: alice hears nothing more; bob still does.
    await alice.run("wsService.unsubscribeFromDeployment('dep-1')")
    await wait_until(lambda: subscribers(server, "acme", "dep-1") == 1)
    await publish_log(server, "dep-1", "acme", "after unsubscribe")
    await bob.expect(lambda e: e["type"] == "state" and e["name"] == "logs" and e["value"][-1] == "after unsubscribe")
    await trio.sleep(0.2)
    assert "Deployment dep-1 log: after unsubscribe" not in alice.texts()

    # Tenants never met.
    assert not any("globex" in t or "dep-9" in t for t in alice.texts())
    assert not any(e["type"] == "state" and "globex secret" in json.dumps(e) for e in bob.lines)
    assert not any("dep-1" in t for t in carol.texts())
    assert "User carol is now online" not in alice.texts()

    # The component unmounts (unsubscribe + disconnect): bob goes offline.
    await bob.send("unmount")
    await alice.console("User bob is now offline")
    assert alice.events("user:offline")[0]["status"] == "offline"
    for client in (alice, bob, carol):
        await client.close()


async def test_bad_subscriptions_reach_the_error_listener(start_server: Any, nursery: trio.Nursery) -> None:
    server = await start_server(**example_sections())
    await publish_status(server, "dep-2", "acme", "running")
    dave = await service(nursery, server, token("dave"))
    bad = ["42", "''", "'a'.repeat(500)", "'../etc/passwd'", "'tenant:globex:x'", "{id: 'dep-2'}", "null", "['dep-2']"]
    for arg in bad:
        await dave.run(f"wsService.subscribeToDeployment({arg})")
    await dave.run("void socket.emit('deployment:subscribe')")  # no id at all
    await dave.run("wsService.unsubscribeFromDeployment(7)")
    await dave.expect(lambda e: len(errors_of(dave)) == len(bad) + 2)
    codes = [(e["code"], e["event"]) for e in errors_of(dave)]
    assert codes == [("invalid_deployment", "deployment:subscribe")] * len(bad) + [
        ("bad_arguments", "deployment:subscribe"), ("invalid_deployment", "deployment:unsubscribe")]

    # With an ack the refusal (or the subscription) is in the ack instead.
    assert await dave.run("ack('deployment:subscribe', 5)") == {
        "error": {"code": "invalid_deployment", "message": errors_of(dave)[0]["message"]}}
    assert await dave.run("ack('deployment:subscribe', 'dep-2')") == {"deploymentId": "dep-2", "status": "running"}
    assert await dave.run("ack('deployment:subscribe', 'dep-new')") == {"deploymentId": "dep-new", "status": None}
    # Nothing else was disturbed: the socket still follows dep-2.
    await dave.console("Deployment dep-2 status: running")
    await publish_log(server, "dep-2", "acme", "still here")
    await dave.console("Deployment dep-2 log: still here")
    assert len(errors_of(dave)) == len(bad) + 2

    # A token without a tenant cannot follow deployments.
    erin = await service(nursery, server, token("erin", tenant=None))
    await erin.run("wsService.subscribeToDeployment('dep-2')")
    await erin.expect(lambda e: len(errors_of(erin)) == 1)
    assert errors_of(erin)[0]["code"] == "forbidden"
    assert not any("dep-2" in t for t in erin.texts())
    await dave.close()
    await erin.close()


async def test_http_api_checks_callers_and_bodies(start_server: Any) -> None:
    server = await start_server(**example_sections())
    port = server.port
    path = "/api/v1/deployments/dep-3"
    assert (await http(port, "POST", f"{path}/status", {"tenant": "acme", "status": "queued"}, key=None))[0] == 401
    user = token("frank")
    code, body = await http(port, "POST", f"{path}/status", {"status": "queued"}, key=None, bearer=user)
    assert (code, body["code"]) == (403, "forbidden")
    # An API-key caller must name the tenant.
    code, body = await http(port, "POST", f"{path}/status", {"status": "queued"})
    assert code == 400 and "tenant" in body["message"]
    # An admin token publishes for its own tenant, not another.
    admin = token("ops", roles=["admin"])
    code, body = await http(port, "POST", f"{path}/status", {"status": "queued"}, key=None, bearer=admin)
    assert code == 200 and body["deploymentId"] == "dep-3"
    code, _ = await http(port, "POST", f"{path}/status", {"tenant": "globex", "status": "x"}, key=None, bearer=admin)
    assert code == 403
    # The id belongs to acme now: globex cannot publish on it.
    code, body = await http(port, "POST", f"{path}/log", {"tenant": "globex", "log": "x"})
    assert (code, body["code"]) == (409, "deployment_conflict")
    bodies = [
        ({"tenant": "acme", "status": 5}, "status"),
        ({"tenant": "acme", "status": ""}, "status"),
        ({"tenant": "acme", "status": "ok", "extra": 1}, "extra"),
        ({"tenant": "acme"}, "status"),
    ]
    for payload, field in bodies:
        code, body = await http(port, "POST", f"{path}/status", payload)
        assert code == 400 and field in body["message"], (payload, body)
    for payload in ({"tenant": "acme"}, {"tenant": "acme", "log": "a", "lines": ["b"]}, {"tenant": "acme", "lines": []},
                    {"tenant": "acme", "lines": [1]}):
        assert (await http(port, "POST", f"{path}/log", payload))[0] == 400, payload
    assert (await http(port, "POST", f"{path}/log", {"tenant": "acme", "log": "x" * 20000}))[0] == 413
    assert (await http(port, "POST", f"{path}/log", b"not json"))[0] == 400
    assert (await http(port, "POST", "/api/v1/deployments/bad%20id/status", {"tenant": "acme", "status": "x"}))[0] == 400
    # Forgetting a deployment drops its retained state and its owner.
    assert (await http(port, "DELETE", f"{path}?tenant=globex"))[0] == 409
    assert (await http(port, "DELETE", f"{path}?tenant=acme"))[0] == 200
    assert (await http(port, "POST", f"{path}/log", {"tenant": "globex", "log": "x"}))[0] == 200


async def test_status_and_backlog_survive_a_restart(start_server: Any, nursery: trio.Nursery) -> None:
    sections = example_sections(log_backlog=3)
    first = await start_server(**sections)
    await publish_status(first, "dep-5", "acme", "deploying")
    for n in range(5):
        await publish_log(first, "dep-5", "acme", f"line {n}")
    first.shutdown()
    await trio.sleep(0.3)
    second = await start_server(**sections)
    gina = await service(nursery, second, token("gina"))
    await gina.run("wsService.subscribeToDeployment('dep-5')")
    await gina.console("Deployment dep-5 log: line 4")
    assert gina.texts("Deployment") == ["Deployment dep-5 status: deploying"] + [f"Deployment dep-5 log: line {n}" for n in (2, 3, 4)]
    await gina.close()


def test_example_config_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["check-config", str(SEED.path)]) == 0
    for bad in ({"log_backlog": 0}, {"unknown": 1}, {"status_event": ""}, {"api_path": "/x"}):
        problems = SEED.problems(bad)
        assert problems[0].startswith("features.deployments"), problems
