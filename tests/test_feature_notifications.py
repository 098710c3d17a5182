"""Alora's notifications feature (seed 004) against its own client code.

The WebSocket context and hook the document describes run in Node
(tests/clients/notifications_context.js) with the JWT in the "token" cookie,
against a server configured from examples/notifications.toml; the back end
pushes notifications over the HTTP API.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from support.interactive import NodeClient, spawn
from support.seeds import Seed

from rtserver import RunningServer
from rtserver.cli import main as cli_main

SECRET = "notifications-test-secret-" + "n" * 40
API_KEY = "notifications-test-api-key-0123456789"
SEED = Seed("notifications", SECRET, API_KEY, tenant="alora")
token, example_sections, http = SEED.token, SEED.sections, SEED.http


# --------------------------------------------------------------- helpers
async def alora(nursery: trio.Nursery, server: RunningServer, user: str, tenant: str = "alora",
                as_user: str | None = None) -> NodeClient:
    """The front end of ``user`` (registering as ``as_user``, normally itself), connected."""
    client = await spawn(nursery, "notifications_context.js", f"http://127.0.0.1:{server.port}", token(user, tenant),
                         as_user or user, name=user)
    await client.expect(lambda e: e["type"] == "connect" and e["connected"])
    return client


async def push(server: RunningServer, body: dict[str, Any], **kwargs: Any) -> tuple[int, Any]:
    return await http(server.port, "POST", "/api/v1/notifications", body, **kwargs)


async def settle(*clients: NodeClient) -> None:
    """Round-trip every client, so events sent before have arrived."""
    for client in clients:
        await client.run("ack('presence')")


# ----------------------------------------------------------------- tests
async def test_document_client_flow(start_server: Any, nursery: trio.Nursery) -> None:
    server = await start_server(**example_sections())
    # Ana is offline: her notification waits for her.
    code, body = await push(server, {"tenant": "alora", "user": "ana", "notification": {"title": "Booked"}})
    assert (code, body) == (200, {"delivered": 0, "queued": ["ana"]})

    ana = await alora(nursery, server, "ana")
    assert await ana.event("newNotification") == {"title": "Booked"}
    await ana.expect(lambda e: e["type"] == "toast" and e["text"] == "Booked")
    await ana.expect(lambda e: e["type"] == "refresh")
    assert await ana.run("ack('register', 'ana')") == {"userId": "ana", "registered": True}

    ben = await alora(nursery, server, "ben")
    cleo = await alora(nursery, server, "cleo", tenant="other")
    assert (await ana.event("userOnline", lambda d: d["userId"] == "ben"))["status"] == "online"

    # typing: to the conversation partner, never across tenants.
    await ben.run("sendTyping({ userId: 'ana', isTyping: true })")
    assert await ana.event("userTyping") == {"userId": "ben", "isTyping": True}
    await cleo.run("sendTyping({ userId: 'ana', isTyping: true })")
    await ben.run("sendTyping({ userId: 'cleo', isTyping: true })")
    await ben.run("sendTyping({ userId: 'ana', isTyping: false })")
    await ana.event("userTyping", lambda d: d["isTyping"] is False)
    await settle(cleo)
    assert [d["userId"] for d in ana.events("userTyping")] == ["ben", "ben"]
    assert cleo.events("userTyping") == []

    # updateStatus: the whole tenant hears it.
    await ana.run("updateStatus({ status: 'available' })")
    assert await ben.event("statusUpdated") == {"userId": "ana", "status": "available"}
    [presence] = [u for u in (await ben.run("ack('presence')"))["users"] if u["userId"] == "ana"]
    assert presence["statusText"] == "available"

    # bookingUpdate: to the participants in the sender's tenant, and the booking room.
    await ben.run("sendBookingUpdate({ bookingId: '456', status: 'confirmed', participants: ['ana', 'cleo'] })")
    update = await ana.event("bookingUpdated")
    assert update == {"bookingId": "456", "status": "confirmed", "participants": ["ana", "cleo"], "updatedBy": "ben"}
    assert await ana.run("ack('subscribe', 'booking:789')") == {"rooms": ["tenant:alora:booking:789"]}
    await cleo.run("ack('subscribe', 'booking:789')")
    await ben.run("sendBookingUpdate({ bookingId: '789', status: 'cancelled' })")
    assert (await ana.event("bookingUpdated", lambda d: d["bookingId"] == "789"))["updatedBy"] == "ben"

    # newNotification from the back end, live.
    code, body = await push(server, {"tenant": "alora", "users": ["ana", "ben"], "notification": {"title": "Hi"}})
    assert (code, body) == (200, {"delivered": 2, "queued": []})
    await ana.event("newNotification", lambda n: n["title"] == "Hi")
    await ben.event("newNotification", lambda n: n["title"] == "Hi")
    # Same user id, other tenant: not ana's; queued for that tenant's "ana".
    code, body = await push(server, {"tenant": "other", "user": "ana", "notification": {"title": "Elsewhere"}})
    assert body == {"delivered": 0, "queued": ["ana"]}
    code, body = await push(server, {"tenant": "other", "user": "cleo", "notification": {"title": "For cleo"}})
    assert body == {"delivered": 1, "queued": []}
    await cleo.event("newNotification")

    await settle(ana, ben, cleo)
    assert [n["title"] for n in ana.events("newNotification")] == ["Booked", "Hi"]
    assert cleo.events("bookingUpdated") == [] and cleo.events("statusUpdated") == []
    assert all(u["userId"] != "cleo" for u in ana.events("userOnline"))
    assert ben.events("bookingUpdated") == []  # the sender's own socket is left out
    assert ana.errors() == ben.errors() == cleo.errors() == []

    await ben.close()
    assert (await ana.event("userOffline"))["userId"] == "ben"
    for client in (ana, cleo):
        await client.close()


async def test_bad_input_gets_an_error_for_that_client_only(start_server: Any, nursery: trio.Nursery) -> None:
    server = await start_server(**example_sections())
    # Registering as someone else is refused (the automatic register on connect).
    mallory = await alora(nursery, server, "mallory", as_user="ana")
    await mallory.expect(lambda e: e["type"] == "toast" and e["kind"] == "error")
    assert mallory.errors()[0]["code"] == "forbidden" and mallory.errors()[0]["event"] == "register"
    ana = await alora(nursery, server, "ana")

    bad = [
        ("emit('register', { userId: 'ana' })", "forbidden"),
        ("emit('register', { userId: [] })", "invalid_payload"),
        ("emit('typing', 'ana')", "invalid_payload"),
        ("sendTyping({ isTyping: true })", "invalid_payload"),
        ("sendTyping({ userId: 'mallory' })", "invalid_payload"),
        ("sendTyping({ userId: 'ana', isTyping: 'yes' })", "invalid_payload"),
        ("sendTyping({ room: 'booking:1' })", "forbidden"),
        ("sendTyping({ room: 'tenant:alora-other:x' })", "forbidden"),
        ("sendTyping({ userId: 'ana', note: 'x'.repeat(20000) })", "payload_too_large"),
        ("updateStatus({ status: 5 })", "invalid_status"),
        ("updateStatus({ status: 'x'.repeat(101) })", "invalid_status"),
        ("updateStatus(null)", "invalid_status"),
        ("sendBookingUpdate({ status: 'confirmed' })", "invalid_payload"),
        ("sendBookingUpdate({ bookingId: true })", "invalid_payload"),
        ("sendBookingUpdate({ bookingId: '1', participants: 'ana' })", "invalid_payload"),
        ("sendBookingUpdate({ bookingId: '1', participants: [{}] })", "invalid_payload"),
        ("sendBookingUpdate('456')", "invalid_payload"),
        ("void socket.emit('typing')", "bad_arguments"),
        # Nested past what the server takes (orjson could not even re-encode 254 levels).
        ("sendTyping({ userId: 'ana', a: JSON.parse('['.repeat(254) + ']'.repeat(254)) })", "invalid_message"),
        ("sendBookingUpdate({ bookingId: '1', a: JSON.parse('['.repeat(300) + ']'.repeat(300)) })", "invalid_message"),
    ]
    for js, _ in bad:
        await mallory.run(js)
    await mallory.expect(lambda e: len(mallory.errors()) == len(bad) + 1)
    assert [(e["code"]) for e in mallory.errors()[1:]] == [code for _, code in bad]
    assert all(e.get("event") for e in mallory.errors())
    # With an ack the refusal is in the ack.
    assert (await mallory.run("ack('updateStatus', 7)"))["error"]["code"] == "invalid_status"
    deep = await mallory.run("ack('typing', { a: JSON.parse('['.repeat(254) + ']'.repeat(254)) })")
    assert deep["error"] == {"code": "invalid_message", "message": "the payload nests arrays and objects deeper than 64 levels"}
    # Nothing reached ana, and mallory's socket still works.
    await mallory.run("sendTyping({ userId: 'ana' })")
    assert (await ana.event("userTyping"))["userId"] == "mallory"
    await settle(ana)
    assert ana.errors() == [] and ana.events("statusUpdated") == [] and ana.events("bookingUpdated") == []
    await mallory.close()
    await ana.close()


async def test_http_push_checks_callers_and_bodies(start_server: Any) -> None:
    server = await start_server(**example_sections())
    good = {"tenant": "alora", "user": "ana", "notification": {"title": "x"}}
    assert (await push(server, good, key=None))[0] == 401
    assert (await push(server, good, key=None, bearer=token("ana")))[0] == 403
    admin = token("boss", roles=["admin"])
    assert (await push(server, {"user": "ana", "notification": 1}, key=None, bearer=admin))[1]["queued"] == ["ana"]
    assert (await push(server, {**good, "tenant": "other"}, key=None, bearer=admin))[0] == 403
    for body in ({"user": "ana", "notification": 1}, {"tenant": "alora", "notification": 1},
                 {"tenant": "alora", "user": "ana"}, {"tenant": "alora", "user": "ana", "notification": None},
                 {"tenant": "alora", "users": "ana", "notification": 1}, {**good, "extra": True},
                 {"tenant": "alora", "user": "", "notification": 1}):
        code, answer = await push(server, body)
        assert code == 400, (body, answer)
    assert (await push(server, {**good, "notification": "x" * 20000}))[0] == 413


async def test_pending_notifications_survive_a_restart(start_server: Any, nursery: trio.Nursery) -> None:
    sections = example_sections(pending_limit=2)
    first = await start_server(**sections)
    for n in range(3):
        assert (await push(first, {"tenant": "alora", "user": "ivy", "notification": {"n": n}}))[1]["queued"] == ["ivy"]
    first.shutdown()
    await trio.sleep(0.3)
    second = await start_server(**sections)
    ivy = await alora(nursery, second, "ivy")
    await ivy.event("newNotification", lambda d: d["n"] == 2)
    assert ivy.events("newNotification") == [{"n": 1}, {"n": 2}]
    await ivy.close()
    # Delivered once: a second connection gets nothing old.
    again = await alora(nursery, second, "ivy")
    await settle(again)
    assert again.events("newNotification") == []
    await again.close()


def test_example_config_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["check-config", str(SEED.path)]) == 0
    for bad in ({"pending_limit": 0}, {"unknown": 1}, {"typing_event": ""}, {"queue_offline": "yes"}):
        problems = SEED.problems(bad)
        assert problems[0].startswith("features.notifications"), problems
