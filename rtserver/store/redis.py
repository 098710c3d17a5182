"""The store of a cluster: Redis, shared by every node (``[cluster]``).

Keys live under ``{prefix}-rtserver-store#`` (``prefix`` is ``[cluster]
prefix``, so clusters sharing one Redis stay apart):

- ``tokens``: hash user -> token version;
- ``users``: hash user -> msgpack ``[tenant, created_at]``;
- ``devices``: hash device -> msgpack ``[tenant, owner, status, last_seen]``;
- ``rooms``: set of rooms with retained state; ``latest#{room}``: hash
  event -> msgpack ``[payload, updated_at]``; ``backlog#{room}``: list of
  msgpack ``[seq, event, payload as text]``, trimmed to the last ``limit``;
- ``registration#{key}``: a signage registration's record (with a TTL
  while idle); dropping one is announced, so every node ends its sockets.

Every write that a mirror follows publishes a change notice on
``{prefix}-rtserver-store#changes`` in the same transaction (MULTI, or one
Lua script for token versions and trims), so a node either sees the change announced
or finds it when it reloads after an outage; the notice is msgpack
``[node, kind, args]`` (kinds: :data:`~.base.CHANGES`).  Commands use one
coredis client; the notices come through a :class:`~..cluster.link.RedisLink`
of their own, and each time it (re)connects the mirrors are reloaded.

Redis lost: reads the mirrors hold go on from memory; a write raises
:class:`~.base.StoreUnavailable` at once (connection refused) or after
``COMMAND_TIMEOUT`` (Redis hung), and nothing is acknowledged.  Redis must
persist what it acknowledged (``appendonly yes``) for a restart of Redis to
lose nothing; token versions are safe even without: a node writes back any
version higher than the one it finds when it reloads.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import coredis
import msgpack
import trio
from coredis.exceptions import RedisError
from coredis.retry import NoRetryPolicy
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..cluster.link import CONNECT_TIMEOUT, RedisLink, redacted
from ..faults import report
from .base import CHANGES, DeviceRow, Store, StoreUnavailable

log = logging.getLogger("rtserver.store")

#: Seconds one command may take before the store counts as unavailable.
COMMAND_TIMEOUT = 3.0
#: Seconds between attempts to reload the mirrors while a reload fails.
RELOAD_RETRY = 1.0

# KEYS[1] tokens hash; ARGV: user, version ('' to bump), channel, node.
_TOKEN_SCRIPT = b"""
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local version
if ARGV[2] == '' then version = current + 1 else version = math.max(current, tonumber(ARGV[2])) end
if version ~= current then
  redis.call('HSET', KEYS[1], ARGV[1], version)
  redis.call('PUBLISH', ARGV[3], cmsgpack.pack({ARGV[4], 'token', {ARGV[1], version}}))
end
return version
"""

# KEYS: backlog list, rooms set, latest hash; ARGV: upto, room, channel, node.
_TRIM_SCRIPT = b"""
local upto = tonumber(ARGV[1])
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head or cmsgpack.unpack(head)[1] > upto then break end
  redis.call('LPOP', KEYS[1])
end
if redis.call('EXISTS', KEYS[1], KEYS[3]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
redis.call('PUBLISH', ARGV[3], cmsgpack.pack({ARGV[4], 'trim', {ARGV[2], upto}}))
return 0
"""

_FAILURES = (RedisError, OSError, TimeoutError, anyio.BrokenResourceError, anyio.ClosedResourceError, trio.TooSlowError)


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=True)


class RedisStore(Store):
    def __init__(self, url: str, prefix: str, faults: Counter[str] | None = None, node: str | None = None) -> None:
        super().__init__()
        self.url = url
        #: Names this node's notices, so that it skips its own.
        self.node = node or secrets.token_hex(8)
        self._faults: Counter[str] = faults if faults is not None else Counter()
        self._keys = f"{prefix}-rtserver-store#"
        self.channel = self._keys + "changes"
        self._client: coredis.Redis[bytes] = coredis.Redis.from_url(
            url, decode_responses=False, connect_timeout=CONNECT_TIMEOUT, stream_timeout=COMMAND_TIMEOUT,
            retry_policy=NoRetryPolicy(),
        )
        self._token_script = self._client.register_script(_TOKEN_SCRIPT)
        self._trim_script = self._client.register_script(_TRIM_SCRIPT)
        self.link = RedisLink(
            url, [self.channel], [], self._on_notice, self._faults, logger=log,
            lost="the store answers from what this node knows and refuses writes (503) until it is back",
        )
        self.link.on_up.append(self._on_up)
        self._nursery: trio.Nursery | None = None
        self._synced = trio.Event()
        self._reloading: list[tuple[str, list[Any]]] | None = None
        self._reload_scope: trio.CancelScope | None = None
        #: Notices ignored as malformed.
        self.malformed = 0

    def _key(self, *parts: str) -> str:
        return self._keys + "#".join(parts)

    # ------------------------------------------------------------ running
    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the other nodes' changes until cancelled; started once the
        mirrors are loaded, or at once (degraded) while Redis is unreachable."""
        async with self._client, trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.link.run)
            if self.link.up:
                with trio.move_on_after(CONNECT_TIMEOUT + COMMAND_TIMEOUT * 2):
                    await self._synced.wait()
            task_status.started()

    def health(self) -> dict[str, Any]:
        link = self.link
        state: dict[str, Any] = {"store": "up" if link.up else "down", "url": redacted(self.url)}
        if not link.up:
            state["error"] = link.error
        return state

    async def close(self) -> None:
        """Nothing to release: the client closes with :meth:`run`."""

    def collector(self) -> Collector:
        return _Metrics(self)

    def _on_up(self) -> None:
        assert self._nursery is not None
        if self._reload_scope is not None:
            self._reload_scope.cancel()  # the link bounced: this reload starts over
        self._nursery.start_soon(self._reload)

    async def _reload(self) -> None:
        """Reload every mirror (retrying while it fails); notices arriving
        meanwhile are applied after each attempt."""
        with trio.CancelScope() as self._reload_scope:
            while self.link.up:
                self._reloading = []
                try:
                    await self._reload_mirrors()
                    done = True
                except StoreUnavailable as exc:
                    log.warning("reloading from the store failed; retrying", extra={"fields": {"error": str(exc)}})
                    done = False
                except Exception:  # noqa: BLE001 -- a fault boundary: contained, reported and retried
                    report(self._faults, "background", "store reload", restart_in=RELOAD_RETRY)
                    done = False
                pending, self._reloading = self._reloading, None
                for kind, args in pending:
                    self._apply(kind, args)
                if done:
                    self._synced.set()
                    return
                await trio.sleep(RELOAD_RETRY)

    def _on_notice(self, pattern: bytes | None, channel: bytes, payload: bytes) -> None:
        try:
            node, kind, args = _unpack(payload)
            if not isinstance(kind, str) or len(args) != len(CHANGES[kind]):
                raise ValueError(kind)
        except Exception as exc:  # noqa: BLE001 -- whatever a message holds, it must not end the node
            self.malformed += 1
            if self.malformed == 1:
                log.warning("ignored a malformed store notice", extra={"fields": {"detail": str(exc)[:200]}})
            return
        if node == self.node:
            return  # this node's mirrors changed first
        if self._reloading is not None:
            self._reloading.append((kind, args))
        else:
            self._apply(kind, args)

    def _apply(self, kind: str, args: list[Any]) -> None:
        for mirror in self.mirrors:
            try:
                mirror.store_changed(kind, args)
            except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
                report(self._faults, "background", "store notice")

    def _notice(self, kind: str, *args: Any) -> bytes:
        return _pack([self.node, kind, list(args)])

    @contextmanager
    def _failing(self) -> Iterator[None]:
        try:
            yield
        except _FAILURES as exc:
            raise StoreUnavailable(f"Redis at {redacted(self.url)}: {exc or type(exc).__name__}") from None

    async def _transaction(self, *commands: tuple[str, tuple[Any, ...]]) -> list[Any]:
        """Run ``(method name, args)`` commands in one MULTI/EXEC; their results."""
        with self._failing(), trio.fail_after(COMMAND_TIMEOUT):
            async with self._client.pipeline(transaction=True) as pipe:
                pending = [getattr(pipe, name)(*args) for name, args in commands]
            return [await result for result in pending]

    # ---------------------------------------------------- token versions
    async def token_versions(self) -> dict[str, int]:
        with self._failing():
            found = await self._client.hgetall(self._key("tokens"))
        return {user.decode(): int(version) for user, version in found.items()}

    async def _token(self, user: str, version: int | None) -> int:
        with self._failing(), trio.fail_after(COMMAND_TIMEOUT):
            result = await self._token_script(
                keys=[self._key("tokens")], args=[user, "" if version is None else version, self.channel, self.node]
            )
        return int(result)

    async def bump_token_version(self, user: str) -> int:
        return await self._token(user, None)

    async def raise_token_version(self, user: str, version: int) -> int:
        return await self._token(user, version)

    # ------------------------------------------------------------- users
    async def user_exists(self, user: str) -> bool:
        with self._failing():
            return bool(await self._client.hexists(self._key("users"), user))

    async def add_user(self, user: str, tenant: str | None) -> None:
        with self._failing():
            await self._client.hset(self._key("users"), {user: _pack([tenant, time.time()])})

    async def remove_user(self, user: str) -> bool:
        with self._failing():
            return bool(await self._client.hdel(self._key("users"), [user]))

    async def list_users(self) -> list[dict[str, Any]]:
        with self._failing():
            found = await self._client.hgetall(self._key("users"))
        users = sorted((user.decode(), _unpack(body)[0]) for user, body in found.items())
        return [{"user": user, "tenant": tenant} for user, tenant in users]

    # ----------------------------------------------------------- devices
    async def _device_rows(self) -> list[DeviceRow]:
        with self._failing():
            found = await self._client.hgetall(self._key("devices"))
        rows = [(device.decode(), *_unpack(body)) for device, body in found.items()]
        return sorted((d, t, o, s, float(seen)) for d, t, o, s, seen in rows)

    async def device_tenants(self) -> dict[str, str | None]:
        return {row[0]: row[1] for row in await self._device_rows()}

    async def save_device(self, device: str, tenant: str | None, owner: str, status: str, seen: float) -> None:
        await self._transaction(
            ("hset", (self._key("devices"), {device: _pack([tenant, owner, status, seen])})),
            ("publish", (self.channel, self._notice("device", device, tenant))),
        )

    async def devices(self, tenant: str | None = None) -> list[DeviceRow]:
        return [row for row in await self._device_rows() if tenant is None or row[1] == tenant]

    # ---------------------------------------------------------- retained
    async def _rooms(self, kind: str, read: str, *args: Any) -> list[tuple[str, Any]]:
        """Each retained room and what ``read`` (a client method) finds under
        its ``kind`` key."""
        with self._failing(), trio.fail_after(COMMAND_TIMEOUT):
            rooms = sorted(room.decode() for room in await self._client.smembers(self._key("rooms")))
            async with self._client.pipeline(transaction=False) as pipe:
                pending = [getattr(pipe, read)(self._key(kind, room), *args) for room in rooms]
            return [(room, await result) for room, result in zip(rooms, pending, strict=True)]

    async def retained(self) -> list[tuple[str, str, bytes]]:
        rows = []
        for room, found in await self._rooms("latest", "hgetall"):
            for event, body in found.items():
                payload, at = _unpack(body)
                rows.append((at, room, event.decode(), payload))
        return [(room, event, payload) for _, room, event, payload in sorted(rows)]

    async def keep(self, room: str, event: str, payload: bytes) -> None:
        await self._transaction(
            ("hset", (self._key("latest", room), {event: _pack([payload, time.time()])})),
            ("sadd", (self._key("rooms"), [room])),
            ("publish", (self.channel, self._notice("keep", room, event, payload))),
        )

    async def backlog(self) -> list[tuple[str, int, str, bytes]]:
        rows = []
        for room, entries in await self._rooms("backlog", "lrange", 0, -1):
            rows += [(room, *_unpack(entry)) for entry in entries]
        return [(room, int(seq), event, payload.encode()) for room, seq, event, payload in rows]

    async def append(self, room: str, seq: int, event: str, payload: bytes, limit: int) -> None:
        key = self._key("backlog", room)
        await self._transaction(
            ("rpush", (key, [_pack([seq, event, payload.decode()])])),  # text: the trim script reads it
            ("ltrim", (key, -limit, -1)),
            ("sadd", (self._key("rooms"), [room])),
            ("publish", (self.channel, self._notice("append", room, seq, event, payload, limit))),
        )

    async def trim_backlog(self, room: str, upto: int) -> None:
        with self._failing(), trio.fail_after(COMMAND_TIMEOUT):
            await self._trim_script(
                keys=[self._key("backlog", room), self._key("rooms"), self._key("latest", room)],
                args=[upto, room, self.channel, self.node],
            )

    async def forget_room(self, room: str) -> None:
        await self._transaction(
            ("delete", ([self._key("latest", room), self._key("backlog", room)],)),
            ("srem", (self._key("rooms"), [room])),
            ("publish", (self.channel, self._notice("forget", room))),
        )

    # -------------------------------------------------- registrations
    async def registration(self, key: str) -> bytes | None:
        with self._failing():
            return await self._client.get(self._key("registration", key))

    async def save_registration(self, key: str, body: bytes, ttl: float | None) -> None:
        with self._failing():
            await self._client.set(self._key("registration", key), body, px=None if ttl is None else max(1, int(ttl * 1000)))

    async def drop_registration(self, key: str) -> None:
        await self._transaction(
            ("delete", ([self._key("registration", key)],)),
            ("publish", (self.channel, self._notice("unregister", key))),
        )


class _Metrics(Collector):
    def __init__(self, store: RedisStore) -> None:
        self._store = store

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        store = self._store
        yield GaugeMetricFamily("rtserver_store_redis_up", "1 while the shared store's Redis link is up", value=int(store.link.up))
        yield CounterMetricFamily("rtserver_store_redis_outages", "Times the shared store's Redis link was lost", value=store.link.outages)
        yield CounterMetricFamily("rtserver_store_notices_malformed", "Store notices ignored as malformed", value=store.malformed)
