"""Fault containment: an exception nobody expected, injected at each
boundary, ends or answers only what it was serving.

Each test injects one failure and checks that the server answered that
client as documented (500 ``internal_error``, a 1011 close, an
``internal_error`` ack, a 503), that a witness connected throughout still
round-trips an event, that the failure was logged once at ERROR with its
traceback, and that ``rtserver_faults_total`` counted it at its boundary.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
import trio
from support.clients import auth_section, token
from support.nodes import wait_until
from support.wire import EIO, Polling, RawWS, Witness, http, request

from rtserver import App
from rtserver.api.status import StatusRoutes
from rtserver.http.messages import Request
from rtserver.socketio.client import Client
from rtserver.store import SqliteStore as Store

API_KEY = "k" * 32


class Injected(RuntimeError):
    """The failure the tests inject."""


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture):
    """``errors()``: the ERROR records of the "rtserver" loggers so far."""
    caplog.set_level(logging.INFO, logger="rtserver")
    return lambda: [r for r in caplog.records if r.name.startswith("rtserver") and r.levelno >= logging.ERROR]


def app_with_failures() -> App:
    app = App()

    @app.on("echo")
    def echo(socket, *args):
        return args

    @app.on("fail")
    def fail(socket):
        raise Injected("plain handler")

    @app.on("fail_later")
    async def fail_later(socket):
        await trio.sleep(0)
        raise Injected("coroutine handler")

    @app.on("connect", namespace="/broken")
    def broken_connect(socket, auth):
        raise Injected("connect handler")

    return app


@pytest.fixture
async def setup(start_server, nursery):
    async def start(**sections: Any):
        sections.setdefault("auth", {"enabled": False, "api_keys": [API_KEY]})
        server = await start_server(app_with_failures(), **sections)
        witness = await Witness.connect(nursery, server.port)
        return server, witness

    return start


def injected_once(errors: Any, server: Any, boundary: str) -> logging.LogRecord:
    """Exactly one ERROR line, with the injected exception's traceback, counted at ``boundary``."""
    [record] = errors()
    assert record.exc_info is not None and isinstance(record.exc_info[1], Injected | ExceptionGroup), record
    assert record.fields["boundary"] == boundary  # type: ignore[attr-defined]
    assert server.engine.stats.faults == {boundary: 1}
    return record


# -------------------------------------------------------------- HTTP
async def test_http_connection(setup, errors, monkeypatch):
    server, witness = await setup()
    original = Request.from_head.__func__

    def from_head(cls, method, target, headers, remote):
        if b"boom" in target:
            raise Injected("request parsing")
        return original(cls, method, target, headers, remote)

    monkeypatch.setattr(Request, "from_head", classmethod(from_head))
    status, headers, body = await request(server.port, "GET", "/boom")
    assert (status, orjson.loads(body)["code"]) == (500, "internal_error")
    assert headers["connection"] == "close"
    record = injected_once(errors, server, "connection")
    assert record.fields["remote"].startswith("127.0.0.1:")  # type: ignore[attr-defined]
    assert await http(server.port, "GET", "/healthz") == (200, b'{"status":"ok"}')
    await witness.check(server)


async def test_api_route(setup, errors, monkeypatch):
    server, witness = await setup()

    def snapshot(self):
        raise Injected("status route")

    monkeypatch.setattr(StatusRoutes, "snapshot", snapshot)
    status_code, _, body = await request(server.port, "GET", "/api/v1/status", headers=[("X-API-Key", API_KEY)])
    assert (status_code, orjson.loads(body)) == (
        500, {"code": "internal_error", "message": "the server failed to answer this request"}
    )
    record = injected_once(errors, server, "request")
    assert record.fields["path"] == "/api/v1/status"  # type: ignore[attr-defined]
    await witness.check(server)


# ---------------------------------------------------- Engine.IO session
@pytest.fixture
def failing_messages(monkeypatch):
    """Client.message raises for the Socket.IO packet ``42["explode"]``."""
    original = Client.message

    async def message(self, data):
        if data == '2["explode"]':
            raise Injected("Socket.IO layer")
        await original(self, data)

    monkeypatch.setattr(Client, "message", message)


async def test_session_over_websocket(setup, errors, failing_messages):
    server, witness = await setup()
    client = await RawWS.open(server.port)
    await client.send_text('42["explode"]')
    assert await client.close_code() == 1011
    await wait_until(lambda: client.sid not in server.engine.sessions)
    record = injected_once(errors, server, "session")
    assert record.fields["sid"] == client.sid  # type: ignore[attr-defined]
    await witness.check(server)


async def test_session_over_polling(setup, errors, failing_messages):
    server, witness = await setup()
    client = await Polling(server.port).open()
    assert await client.post(b'42["explode"]') == (200, b"ok")
    await wait_until(lambda: client.sid not in server.engine.sessions)
    assert (await client.get())[0] == 400  # the session is gone
    injected_once(errors, server, "session")
    await witness.check(server)


async def test_session_close_of_a_polling_session(setup, errors):
    """A failure while a session is being cleaned up (a listener's
    ``disconnected``) on a polling session, whose task runs in the server's
    own nursery: the session is still forgotten and the server stays."""
    server, witness = await setup()

    class Failing:
        def connected(self, socket):
            pass  # only the disconnect fails

        def disconnected(self, socket, reason):
            if socket.transport == "polling":
                raise Injected("listener")

    server.sio.listeners.append(Failing())
    client = await Polling(server.port).open()
    assert await client.post(b"1") == (200, b"ok")
    await wait_until(lambda: client.sid not in server.engine.sessions)
    injected_once(errors, server, "session")
    assert server.guard.counted()["sessionsByAddress"] == 1  # the witness's only
    await witness.check(server)


# ------------------------------------------------------ Socket.IO events
@pytest.mark.parametrize("event", ["fail", "fail_later"])
async def test_event_handler(setup, errors, event):
    server, witness = await setup()
    client = await RawWS.open(server.port)
    await client.send_text(f'425["{event}"]')
    assert orjson.loads((await client.recv_text())[3:]) == [
        {"error": {"code": "internal_error", "message": "the server failed to handle this event"}}
    ]
    await client.send_text('426["echo","still connected"]')
    assert await client.recv_text() == '436["still connected"]'
    record = injected_once(errors, server, "event")
    assert record.fields["event"] == event  # type: ignore[attr-defined]
    await witness.check(server)


async def test_connect_handler(setup, errors):
    server, witness = await setup()
    client = await RawWS.open(server.port)
    await client.send_text("40/broken,")
    assert await client.recv_text() == '44/broken,{"message":"Internal server error"}'
    await client.send_text('421["echo","main namespace still works"]')
    assert await client.recv_text() == '431["main namespace still works"]'
    injected_once(errors, server, "event")
    await witness.check(server)


# --------------------------------------------------------------- clock
async def test_clock_callback(setup, errors):
    server, witness = await setup()
    later = trio.Event()

    def fail():
        raise Injected("timer")

    server.engine.clock.call_later(0, fail)
    server.engine.clock.call_later(0.05, later.set)
    with trio.fail_after(5):
        await later.wait()
    injected_once(errors, server, "clock")
    await witness.check(server)


# ---------------------------------------------------------- background
async def test_retention_write_then_the_next_one(setup, errors, monkeypatch):
    """A store write that fails: the publisher is told (503, not a false
    ``delivered``), and the writer goes on with the next write."""
    server, witness = await setup(retention={"latest": ["layout"]})
    original = Store.keep
    failures = [Injected("store write")]

    async def keep(self, *args):
        if failures:
            raise failures.pop()
        await original(self, *args)

    monkeypatch.setattr(Store, "keep", keep)
    emit = orjson.dumps({"event": "layout", "room": "screens", "data": {"v": 1}})
    status, _, body = await request(server.port, "POST", "/api/v1/emit", emit, [("X-API-Key", API_KEY)])
    assert (status, orjson.loads(body)["code"]) == (503, "store_unavailable")
    status, _, body = await request(server.port, "POST", "/api/v1/emit", emit, [("X-API-Key", API_KEY)])
    assert (status, orjson.loads(body)) == (200, {"delivered": 0})
    injected_once(errors, server, "background")
    await witness.check(server)


async def test_recovery_flush_is_restarted_and_loses_nothing(setup, errors, monkeypatch, tmp_path):
    """The recovery flusher fails once: it is restarted after a pause, and
    what it had not written is written then."""
    server, witness = await setup(recovery={"enabled": True, "flush_interval": 0.05})
    original = Store.save_recovery
    failures = [Injected("recovery write")]
    saved: list[int] = []

    async def save_recovery(self, history, *rest):
        if failures:
            raise failures.pop()
        saved.extend(entry[0] for entry in history)
        await original(self, history, *rest)

    monkeypatch.setattr(Store, "save_recovery", save_recovery)
    server.sio.emit("news", 1)
    await wait_until(lambda: len(errors()) == 1)
    server.sio.emit("news", 2)
    await wait_until(lambda: len(saved) == 2, timeout=5)  # after the restart pause (1 s)
    assert saved == sorted(saved)
    injected_once(errors, server, "background")
    await witness.check(server)


async def test_presence_store_write(start_server, errors, monkeypatch):
    """A device's status write fails in a task of the server's own nursery:
    counted and logged, the server and the device's socket go on."""

    async def save_device(self, *args):
        raise Injected("device status write")

    monkeypatch.setattr(Store, "save_device", save_device)
    server = await start_server(app_with_failures(), auth=auth_section())
    client = await RawWS.open(server.port, connect=False)
    await client.send_text("40" + orjson.dumps({"token": token("ann", "acme", devices=["d1"]), "deviceId": "d1"}).decode())
    assert (await client.recv_text()).startswith("40{")
    await wait_until(lambda: len(errors()) == 1)
    injected_once(errors, server, "background")
    assert await http(server.port, "GET", "/healthz") == (200, b'{"status":"ok"}')
    await client.send_text('421["echo","still here"]')
    while (answer := await client.recv_text()).startswith("42"):
        pass  # its own user:online event
    assert answer == '431["still here"]'
