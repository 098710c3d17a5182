"""Helpers for driving python-socketio's real client and the HTTP API from trio tests."""

from __future__ import annotations

import queue
import time
import urllib.error
import urllib.request
from typing import Any

import jwt
import orjson
import socketio
import trio

SECRET = "test-secret-0123456789-abcdefghijklmnop"
API_KEY = "test-api-key"
WAIT = 10.0


def token(user: str, tenant: str | None = None, ttl: float = 3600, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": user, "exp": int(time.time() + ttl), **claims}
    if tenant is not None:
        payload["tenantId"] = tenant
    return jwt.encode(payload, SECRET, algorithm="HS256")


def auth_section(**extra: Any) -> dict[str, Any]:
    return {"enabled": True, "secret": SECRET, "api_keys": [API_KEY], **extra}


class LiveClient:
    """A python-socketio client whose received events land in a queue."""

    def __init__(self, port: int, events: tuple[str, ...] = ()) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.sio = socketio.Client(reconnection=False, request_timeout=5)
        self.received: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.sio.on("*", lambda event, *args: self.received.put((event, args[0] if len(args) == 1 else args)))
        self.sio.on("disconnect", lambda *reason: self.received.put(("disconnect", reason[0] if reason else None)))
        self.sio.on("connect_error", lambda data=None: self.received.put(("connect_error", data)))

    async def connect(self, auth: dict[str, Any] | None = None, transports: list[str] | None = None) -> LiveClient:
        await trio.to_thread.run_sync(
            lambda: self.sio.connect(self.url, auth=auth, transports=transports or ["websocket"], wait_timeout=WAIT)
        )
        return self

    async def call(self, event: str, *args: Any) -> Any:
        data = args[0] if len(args) == 1 else args if args else None
        return await trio.to_thread.run_sync(lambda: self.sio.call(event, data, timeout=WAIT))

    async def next(self, event: str, timeout: float = WAIT, where: Any = None) -> Any:
        """The next received ``event`` for which ``where(data)`` holds (others are skipped)."""
        deadline = time.monotonic() + timeout

        def wait() -> Any:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {event!r} within {timeout} s")
                try:
                    name, data = self.received.get(timeout=remaining)
                except queue.Empty:
                    continue
                if name == event and (where is None or where(data)):
                    return data

        return await trio.to_thread.run_sync(wait)

    async def quiet(self, event: str, seconds: float = 0.5) -> list[Any]:
        """Every ``event`` received during the next ``seconds`` (expected: none)."""
        await trio.sleep(seconds)
        found = []
        while True:
            try:
                name, data = self.received.get_nowait()
            except queue.Empty:
                return found
            if name == event:
                found.append(data)

    async def disconnect(self) -> None:
        await trio.to_thread.run_sync(self.sio.disconnect)


async def http(port: int, method: str, path: str, body: Any = None, key: str | None = API_KEY, raw: bytes | None = None) -> tuple[int, Any]:
    """One API request; returns (status, decoded JSON or text)."""

    def go() -> tuple[int, Any]:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=WAIT) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read()
        try:
            return status, orjson.loads(text)
        except orjson.JSONDecodeError:
            return status, text.decode()

    return await trio.to_thread.run_sync(go)
