"""The fuzz harness: cases, the scenarios that send them, and what they saw.

A run has a seed.  Fuzz task ``t`` runs cases ``t/0``, ``t/1``, ...; case
``t/n`` draws everything it sends from ``random.Random(f"{seed}/{t}/{n}")``,
so any case is replayed by its id (``RTSERVER_FUZZ_REPLAY=t/n,...`` with the
same seed).  Each task connects from its own loopback address
(127.0.0.``10 + t``): per-address limits apply to each task alone, and a
server log line's ``remote=`` names the task, its port the case.

Scenarios talk raw bytes (HTTP heads, polling bodies, WebSocket frames) so
that nothing a client library would refuse to send is out of reach.  A
scenario raises nothing for what a hostile client may meet (a closed
connection, a refusal, a time-out); what must never happen (a 5xx, a close
code 1011) is recorded as a finding.
"""

from __future__ import annotations

import base64
import random
import re
import socket as socket_mod
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import attrs
import jwt
import orjson
import trio

from . import fuzz_inputs as inputs
from .fuzz_inputs import Vocabulary, pick

#: Errors a hostile client expects from the server's side: not findings.
EXPECTED = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, EOFError, ValueError)
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


@attrs.define
class Case:
    id: str
    scenario: str = ""
    started: float = 0.0
    ended: float | None = None
    #: Local ports of the case's connections (the server logs them as remote=).
    ports: list[int] = attrs.Factory(list)

    def __str__(self) -> str:
        return f"case {self.id} ({self.scenario})"


@attrs.define
class Findings:
    """What the run found; each names the case it came from when known."""

    items: list[str] = attrs.Factory(list)
    #: The last cases of each task, for attributing log lines.
    recent: deque[Case] = attrs.Factory(lambda: deque(maxlen=400))

    def add(self, text: str) -> None:
        if len(self.items) < 200 and text not in self.items:
            self.items.append(text)

    def cases_near(self, when: float, remote: str | None) -> list[Case]:
        """Cases whose connection ``remote`` (host:port) was, else those running at ``when``."""
        if remote:
            port = remote.rpartition(":")[2]
            named = [c for c in self.recent if port.isdigit() and int(port) in c.ports]
            if named:
                return named
        return [c for c in self.recent if c.started - 1 <= when <= (c.ended or time.time()) + 1]


@attrs.define
class Env:
    """What a scenario works with."""

    port: int
    vocab: Vocabulary
    address: str
    secret: str
    api_key: str
    findings: Findings
    read_timeout: float
    case: Case = attrs.Factory(lambda: Case("-"))

    async def connect(self) -> trio.SocketStream:
        stream = await trio.open_tcp_stream("127.0.0.1", self.port, local_address=self.address)
        self.case.ports.append(stream.socket.getsockname()[1])
        return stream

    def found(self, what: str) -> None:
        self.findings.add(f"{self.case}: {what}")

    def token(self, rng: random.Random, valid: float = 0.85) -> str:
        """A fuzz user's JWT: valid mostly, else forged one way or another."""
        claims: dict[str, Any] = {
            "sub": pick(rng, self.vocab.users), "tenantId": pick(rng, self.vocab.tenants),
            "roles": rng.sample(["admin", "editor", "publisher", "viewer"], rng.randrange(0, 3)),
            "devices": ["d1", "d2"], "sid": "s1", "exp": int(time.time()) + 600,
        }
        if rng.random() < valid:
            return jwt.encode(claims, self.secret, algorithm="HS256")
        forged = rng.randrange(6)
        if forged == 0:
            return jwt.encode(claims, "wrong-secret-0123456789-abcdefghijklm", algorithm="HS256")
        if forged == 1:
            return jwt.encode({**claims, "exp": 1}, self.secret, algorithm="HS256")
        if forged == 2:
            head = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
            body = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
            return f"{head}.{body}."
        if forged == 3:
            return jwt.encode({**claims, "sub": pick(rng, ({}, [], True, "a:b", "", 1.5))}, self.secret, algorithm="HS256")
        if forged == 4:
            return jwt.encode({**claims, "tokenVersion": pick(rng, ("1", -1, 2**70, None))}, self.secret, algorithm="HS256")
        return pick(rng, ("", "a.b.c", "x" * 20000, "..", "eyJ.eyJ.x"))

    def credentials(self, rng: random.Random) -> list[tuple[str, str]]:
        return [("X-API-Key", self.api_key), ("Authorization", f"Bearer {self.api_key}"),
                ("Authorization", f"Bearer {self.token(rng)}"), ("X-API-Key", "wrong")]


# ------------------------------------------------------------ wire helpers
async def read_all(stream: trio.SocketStream, idle: float, limit: int = 1 << 21) -> bytes:
    """What the server sends until it closes or is quiet for ``idle`` seconds."""
    data = b""
    while len(data) < limit:
        with trio.move_on_after(idle):
            chunk = await stream.receive_some(65536)
            if not chunk:
                return data
            data += chunk
            continue
        return data
    return data


def statuses(data: bytes) -> list[int]:
    """The status of each response in ``data`` (heads parsed in turn, bodies
    skipped by Content-Length), as far as it parses."""
    found = []
    while data.startswith(b"HTTP/1."):
        match = _STATUS.match(data)
        if match is None:
            break
        found.append(int(match.group(1)))
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep or found[-1] == 101:
            break
        length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
        data = rest[int(length.group(1)) :] if length else b""
    return found


def check_statuses(env: Env, data: bytes, what: str) -> None:
    """A 5xx is a finding, but 501: the documented answer to a transfer coding
    h11 does not implement."""
    for status in statuses(data):
        if status >= 500 and status != 501:
            env.found(f"{status} answered to {what}")


def server_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Complete (opcode, payload) frames from the server taken off ``buffer``."""
    frames = []
    while len(buffer) >= 2:
        length = buffer[1] & 0x7F
        offset = 2
        if length == 126:
            if len(buffer) < 4:
                break
            (length,) = struct.unpack("!H", buffer[2:4])
            offset = 4
        elif length == 127:
            if len(buffer) < 10:
                break
            (length,) = struct.unpack("!Q", buffer[2:10])
            offset = 10
        if len(buffer) < offset + length:
            break
        frames.append((buffer[0] & 0x0F, bytes(buffer[offset : offset + length])))
        del buffer[: offset + length]
    return frames


class Socket:
    """A raw WebSocket to the server: writes anything, answers pings, watches
    what comes back for close code 1011 and internal errors."""

    def __init__(self, env: Env, stream: trio.SocketStream) -> None:
        self.env = env
        self.stream = stream
        self.buffer = bytearray()
        self.texts: list[str] = []
        self.closed = False
        self._sending = trio.Lock()  # the drain task answers pings meanwhile

    @classmethod
    async def open(cls, env: Env, head: bytes) -> tuple[Socket | None, bytes]:
        """Send an upgrade request; the socket once answered 101, else None and the answer."""
        stream = await env.connect()
        await stream.send_all(head)
        answer = b""
        with trio.move_on_after(3):
            while b"\r\n\r\n" not in answer:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                answer += chunk
        if not answer.startswith(b"HTTP/1.1 101"):
            answer += await read_all(stream, 0.3)
            await stream.aclose()
            return None, answer
        socket = cls(env, stream)
        socket.buffer += answer.partition(b"\r\n\r\n")[2]
        return socket, answer

    async def send(self, data: bytes) -> None:
        async with self._sending:
            await self.stream.send_all(data)

    async def send_text(self, text: str) -> None:
        await self.send(inputs.ws_frame(1, text.encode("utf-8", "surrogatepass")))

    def _take(self) -> None:
        for opcode, payload in server_frames(self.buffer):
            if opcode == 8:
                self.closed = True
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                if code == 1011:
                    self.env.found(f"close code 1011 {payload[2:]!r}")
            elif opcode == 1:
                text = payload.decode("utf-8", "replace")
                if "internal_error" in text.lower():
                    self.env.found(f"internal error answered: {text[:200]}")
                self.texts.append(text)
                del self.texts[:-50]

    async def receive(self, timeout: float) -> str | None:
        """The next text frame within ``timeout`` (pings answered), else None."""
        deadline = trio.current_time() + timeout
        while True:
            self._take()
            while self.texts:
                text = self.texts.pop(0)
                if text == "2":
                    await self.send_text("3")
                    continue
                return text
            if self.closed:
                return None
            with trio.move_on_at(deadline):
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    self.closed = True
                    return None
                self.buffer += chunk
                continue
            return None

    async def drain(self) -> None:
        """Read and answer pings until the server closes (run as a task)."""
        while not self.closed:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return
            self.buffer += chunk
            self._take()
            while "2" in self.texts:
                self.texts.remove("2")
                await self.send_text("3")

    async def end(self, rng: random.Random) -> None:
        """Leave: a close frame, a bare FIN, or a reset."""
        how = rng.randrange(3)
        try:
            if how == 0:
                await self.send(inputs.ws_frame(8, struct.pack("!H", 1000)))
            elif how == 2:
                self.stream.socket.setsockopt(socket_mod.SOL_SOCKET, socket_mod.SO_LINGER, struct.pack("ii", 1, 0))
        except EXPECTED:
            pass
        await self.stream.aclose()


# ------------------------------------------------------------- scenarios
async def http_requests(rng: random.Random, env: Env) -> None:
    """One to three requests in a row on one connection, in pieces at times."""
    data = b"".join(
        inputs.http_request(rng, env.vocab, env.port, env.credentials(rng)) for _ in range(pick(rng, (1, 1, 1, 2, 3)))
    )
    async with await env.connect() as stream:
        if rng.random() < 0.2:
            cuts = sorted(rng.randrange(len(data) + 1) for _ in range(3))
            for start, stop in zip([0, *cuts], [*cuts, len(data)], strict=True):
                await stream.send_all(data[start:stop])
                await trio.sleep(rng.random() * 0.05)
        else:
            await stream.send_all(data)
        check_statuses(env, await read_all(stream, 1.0), repr(data[:300]))


async def api_calls(rng: random.Random, env: Env) -> None:
    """The HTTP API with credentials that pass, and bodies that should not."""
    method, target = pick(rng, env.vocab.routes)
    target = target.replace("{id}", pick(rng, ("d1", "fuzzco", "x")))
    body = inputs.http_body(rng, env.vocab)
    if target.endswith("/disconnect") and target.startswith("/api/v1/"):
        # An operator may disconnect everyone; the fuzzer may not disconnect the canary.
        body = protect_canary(body)
    credential = pick(rng, env.credentials(rng)[:3])
    await exchange(env, method, target, body, (credential, ("Content-Type", "application/json")), idle=2.0)


def protect_canary(body: bytes) -> bytes:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if isinstance(data, dict):
        data["except"] = ["user:canary"]
        try:
            return orjson.dumps(data)
        except TypeError:  # nested past what orjson encodes: the server refuses it as too deep
            return body
    return body


async def slow_request(rng: random.Random, env: Env) -> None:
    """Slowloris: a head or a body trickled in, or nothing at all; 408 or a close is due."""
    request = inputs.http_request(rng, env.vocab, env.port, env.credentials(rng))
    how = rng.randrange(3)
    async with await env.connect() as stream:
        with trio.move_on_after(env.read_timeout + 1.5):
            if how == 0:
                for byte in request:
                    await stream.send_all(bytes([byte]))
                    await trio.sleep(rng.random() * 0.3)
            elif how == 1:
                head = request.partition(b"\r\n\r\n")[0] + b"\r\nContent-Length: 1000\r\n\r\n"
                await stream.send_all(head)
                while True:
                    await stream.send_all(b"x")
                    await trio.sleep(0.2)
            else:
                await trio.sleep_forever()
        check_statuses(env, await read_all(stream, 1.0), f"slow request {request[:200]!r}")


async def garbage(rng: random.Random, env: Env) -> None:
    """Bytes that are not HTTP/1.1."""
    data = inputs.raw_garbage(rng)
    async with await env.connect() as stream:
        await stream.send_all(data)
        check_statuses(env, await read_all(stream, 1.0), f"garbage {data[:100]!r}")


async def exchange(
    env: Env,
    method: str,
    target: str,
    body: bytes = b"",
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "text/plain;charset=UTF-8"),),
    idle: float = 1.0,
) -> bytes:
    """One well-framed request on its own connection; the answer, checked."""
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{env.port}\r\nConnection: close\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in headers)
        + f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    async with await env.connect() as stream:
        await stream.send_all(head + body)
        answer = await read_all(stream, idle)
    check_statuses(env, answer, f"{method} {target} {body[:300]!r}")
    if b"internal_error" in answer.lower():
        env.found(f"internal error answered to {method} {target} {body[:300]!r}")
    return answer


async def _handshake(env: Env, path: str, extra: str = "") -> str | None:
    answer = await exchange(env, "GET", f"{path}?EIO=4&transport=polling{extra}")
    match = re.search(rb'0\{"sid":"([^"]+)"', answer)
    return match.group(1).decode() if match else None


async def polling(rng: random.Random, env: Env) -> None:
    """A long-polling session: a handshake, then POSTs and GETs of every kind."""
    path = pick(rng, env.vocab.engine_paths)
    extra = pick(rng, ("", "", "&j=1", "&b64=1", "&t=x", f"&token={env.token(rng)}", "&sessionId=s1", "&channels=a,b"))
    sid = await _handshake(env, path, extra)
    if sid is None:
        return
    target = f"{path}?EIO=4&transport=polling&sid={sid}"
    token = env.token(rng)
    if rng.random() < 0.8:
        await exchange(env, "POST", target, ("40" + orjson.dumps({"token": token}).decode()).encode())
    async with trio.open_nursery() as nursery:
        for _ in range(pick(rng, (1, 3, 8, 20))):
            roll = rng.random()
            if roll < 0.5:
                if rng.random() < 0.7:
                    body = valid_polling_body(rng, env.vocab, token)
                else:
                    body = inputs.polling_body(rng, env.vocab)
                await exchange(env, "POST", target, body)
            elif roll < 0.75:
                nursery.start_soon(partial(exchange, env, "GET", target, idle=0.5))
            elif roll < 0.85:
                bad = pick(rng, (target.replace("polling", "websocket"), target + "&EIO=3", target.replace(sid, sid[:-1]),
                                 target.replace("EIO=4", "EIO=4&EIO=3")))
                await exchange(env, pick(rng, ("GET", "POST", "PUT", "OPTIONS", "HEAD", "DELETE")), bad, b"2")
            else:
                await exchange(env, pick(rng, ("OPTIONS", "HEAD", "PUT", "DELETE", "PATCH")), target, b"40")
            await trio.sleep(rng.random() * 0.05)
        nursery.cancel_scope.deadline = trio.current_time() + 1


def valid_polling_body(rng: random.Random, vocab: Vocabulary, token: str) -> bytes:
    """Well-formed packets in one polling body (binary attachments as ``b`` + base64)."""
    records = []
    for _ in range(pick(rng, (1, 2, 5, 20))):
        text, attachments = inputs.valid_socketio_packet(rng, vocab, token)
        records.append("4" + text)
        records += ["b" + base64.b64encode(a).decode() for a in attachments]
    return "\x1e".join(records).encode()


async def upgrade(rng: random.Random, env: Env) -> None:
    """A polling session upgraded to WebSocket, with the probe sequence mangled at times."""
    path = pick(rng, env.vocab.engine_paths)
    sid = await _handshake(env, path)
    if sid is None:
        return
    target = f"{path}?EIO=4&transport=polling&sid={sid}"
    await exchange(env, "POST", target, ("40" + orjson.dumps({"token": env.token(rng)}).decode()).encode())
    socket, answer = await Socket.open(env, inputs.upgrade_head(rng, path, env.port, sid))
    check_statuses(env, answer, f"upgrade of {sid}")
    if socket is None:
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(exchange, env, "GET", target, idle=1.0))
        steps = pick(rng, (["2probe", "5"], ["2probe"], ["5"], ["2probe", "2probe", "5"], ["3probe", "5"], ["2probe", "6", "5"]))
        for step in steps:
            await socket.send_text(step)
            await socket.receive(0.3)
        if rng.random() < 0.4:
            await socket.send(inputs.bad_frame(rng, env.vocab))
        for _ in range(pick(rng, (0, 2, 10))):
            await socket.send_text("4" + inputs.socketio_packet(rng, env.vocab))
        await socket.receive(0.3)
        nursery.cancel_scope.cancel()
    await socket.end(rng)


async def websocket(rng: random.Random, env: Env) -> None:
    """An upgrade request mutated or not, then frames valid and invalid."""
    path = pick(rng, env.vocab.engine_paths)
    socket, answer = await Socket.open(env, inputs.upgrade_head(rng, path, env.port))
    check_statuses(env, answer, "websocket upgrade")
    if socket is None:
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(socket.drain)
        if rng.random() < 0.7:
            await socket.send_text("40" + orjson.dumps({"token": env.token(rng)}).decode())
        for _ in range(pick(rng, (1, 3, 10, 30))):
            if rng.random() < 0.35:
                await socket.send(inputs.bad_frame(rng, env.vocab))
            else:
                await socket.send_text(inputs.engineio_packet(rng, env.vocab))
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    await socket.end(rng)


async def socketio(rng: random.Random, env: Env) -> None:
    """An authenticated socket sending Socket.IO packets of every kind,
    mostly well framed so that they reach the handlers."""
    path = pick(rng, env.vocab.engine_paths)
    head = inputs.upgrade_head(random.Random(0), path, env.port)  # the unmutated form
    if path.startswith("/realtime"):
        head = head.replace(b"transport=websocket", b"transport=websocket&sessionId=s1" + pick(rng, (b"", b"&artifactId=a1")))
    socket, answer = await Socket.open(env, head)
    check_statuses(env, answer, "socket.io upgrade")
    if socket is None:
        return
    token = env.token(rng, valid=0.95)
    opened = await socket.receive(2)
    if opened is None or not opened.startswith("0"):
        await socket.end(rng)
        return
    await socket.send_text("40" + orjson.dumps({"token": token, **pick(rng, ({}, {"channels": ["a"]}, {"deviceId": "d1"}))}).decode())
    await socket.receive(2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(socket.drain)
        for _ in range(pick(rng, (5, 20, 60, 150))):
            roll = rng.random()
            if roll < 0.92:
                text, attachments = inputs.valid_socketio_packet(rng, env.vocab, token)
            elif roll < 0.97:
                text = inputs.socketio_packet(rng, env.vocab, token)
                attachments = inputs.attachments_for(rng, text)
            elif roll < 0.985:
                await socket.send_text(pick(rng, ("2", "3", "6", "5", "2probe", "1")))
                continue
            else:
                await socket.send(inputs.bad_frame(rng, env.vocab))
                continue
            await socket.send_text("4" + text)
            for attachment in attachments:
                await socket.send(inputs.ws_frame(2, attachment))
            if rng.random() < 0.1:
                await trio.sleep(0.05)
        await trio.sleep(0.3)
        nursery.cancel_scope.cancel()
    await socket.end(rng)


Scenario = Callable[[random.Random, Env], Awaitable[None]]
SCENARIOS: dict[str, tuple[Scenario, int]] = {
    "http": (http_requests, 18),
    "api": (api_calls, 12),
    "slow": (slow_request, 3),
    "garbage": (garbage, 4),
    "polling": (polling, 15),
    "upgrade": (upgrade, 8),
    "websocket": (websocket, 15),
    "socketio": (socketio, 25),
}


def case_random(seed: int, case_id: str) -> random.Random:
    return random.Random(f"{seed}/{case_id}")


async def run_case(seed: int, case: Case, env: Env) -> None:
    """One case, bounded in time; what a hostile client meets is not an error."""
    rng = case_random(seed, case.id)
    names = list(SCENARIOS)
    name = rng.choices(names, weights=[SCENARIOS[n][1] for n in names])[0]
    case.scenario, case.started = name, time.time()
    env.case = case
    env.findings.recent.append(case)
    try:
        with trio.move_on_after(15):
            await SCENARIOS[name][0](rng, env)
    except* EXPECTED:
        pass  # what a hostile client meets (in a scenario's child task too)
    finally:
        case.ended = time.time()
