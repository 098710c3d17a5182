"""Presence shared by every node through Redis.

Each node keeps its own connection counts per key (a tenant's user or
device); Redis keeps, per node, what that node holds, the cluster-wide
totals and the keys inside their grace period.  Every change is one Lua
script, so exactly one node sees a key's total go 0 -> 1 (it announces
"online") and exactly one node owns its grace period (it announces
"offline" when the grace ends and nobody came back) -- one event per real
change, whichever nodes the connections were on.

A node refreshes a heartbeat key (``cluster.node_timeout``, in
milliseconds on Redis) every third of that time and, with it, looks for
nodes whose key expired: the first node to find one takes its counts off
the totals and announces the users and devices that leaves with none, so a
node killed with ``kill -9`` has its users announced offline within about
``node_timeout * 4/3``.

Every node mirrors the cluster's online keys (a snapshot when its link
comes up, then the deciding node's messages on the presence channel), so
queries never wait for Redis and still answer, from what the node knows,
while Redis is away.  When the link comes back the node replaces what
Redis holds for it with its live counts (one script), which is how presence
converges after an outage, a Redis restart, or this node being declared
dead while cut off.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import orjson
import trio

from . import wire
from .link import LinkDown, RedisLink

log = logging.getLogger("rtserver.cluster")

#: ``(kind, tenant, id)``: kind "u" for a user, "d" for a device.
Member = tuple[str, str, str]

#: Presence changes waiting for Redis; beyond this the node resyncs instead.
QUEUE_LIMIT = 100_000

_UP = """
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if redis.call('HINCRBY', KEYS[2], ARGV[1], 1) == 1 then
  if redis.call('HDEL', KEYS[3], ARGV[1]) == 1 then return 'back' end
  return 'online'
end
return ''
"""

_DOWN = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
if redis.call('HINCRBY', KEYS[2], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
  return 'leaving'
end
return ''
"""

_EXPIRE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

# KEYS: held, totals, leaving, nodes, alive.  ARGV: node, ttl ms, number of
# (key, count) pairs, the pairs, then the keys whose grace runs on this node.
_RESYNC = """
local node = ARGV[1]
redis.call('SADD', KEYS[4], node)
redis.call('SET', KEYS[5], '1', 'PX', ARGV[2])
local old = redis.call('HGETALL', KEYS[1])
for i = 1, #old, 2 do
  if redis.call('HINCRBY', KEYS[2], old[i], -tonumber(old[i + 1])) <= 0 then redis.call('HDEL', KEYS[2], old[i]) end
end
redis.call('DEL', KEYS[1])
local online, offline, live = {}, {}, {}
local last = 3 + 2 * tonumber(ARGV[3])
for i = 4, last, 2 do
  local key = ARGV[i]
  live[key] = true
  redis.call('HSET', KEYS[1], key, ARGV[i + 1])
  if redis.call('HINCRBY', KEYS[2], key, ARGV[i + 1]) == tonumber(ARGV[i + 1]) then
    if redis.call('HDEL', KEYS[3], key) == 0 then online[#online + 1] = key end
  end
end
local pending = {}
for i = last + 1, #ARGV do pending[ARGV[i]] = true end
local leaving = redis.call('HGETALL', KEYS[3])
for i = 1, #leaving, 2 do
  local owner = string.match(leaving[i + 1], '^(.*)|')
  if owner == node and not pending[leaving[i]] then
    redis.call('HDEL', KEYS[3], leaving[i])
    offline[#offline + 1] = leaving[i]
  end
end
for i = 1, #old, 2 do
  local key = old[i]
  if not live[key] and redis.call('HEXISTS', KEYS[2], key) == 0 and redis.call('HEXISTS', KEYS[3], key) == 0 then
    offline[#offline + 1] = key
  end
end
return {online, offline, redis.call('HKEYS', KEYS[2]), redis.call('HKEYS', KEYS[3])}
"""

# KEYS: nodes, totals, leaving.  ARGV: the key prefix.
_REAP = """
local offline, dead = {}, {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. 'alive#' .. node) == 0 then
    dead[node] = true
    local held = ARGV[1] .. 'held#' .. node
    local old = redis.call('HGETALL', held)
    for i = 1, #old, 2 do
      if redis.call('HINCRBY', KEYS[2], old[i], -tonumber(old[i + 1])) <= 0 then
        redis.call('HDEL', KEYS[2], old[i])
        offline[#offline + 1] = old[i]
      end
    end
    redis.call('DEL', held)
    redis.call('SREM', KEYS[1], node)
  end
end
if next(dead) ~= nil then
  local leaving = redis.call('HGETALL', KEYS[3])
  for i = 1, #leaving, 2 do
    if dead[string.match(leaving[i + 1], '^(.*)|')] then
      redis.call('HDEL', KEYS[3], leaving[i])
      offline[#offline + 1] = leaving[i]
    end
  end
end
return offline
"""


def encode(member: Member) -> bytes:
    return orjson.dumps(member)


def decode(key: bytes) -> Member | None:
    try:
        kind, tenant, ident = orjson.loads(key)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None
    if kind not in ("u", "d") or not isinstance(tenant, str) or not isinstance(ident, str):
        return None
    return kind, tenant, ident


class Listener(Protocol):
    """What the presence layer above is told (synchronously, from this module's tasks)."""

    def announce(self, member: Member, status: str, stamp: float | None) -> None:
        """This node decided a real change: tell the tenant."""

    def mirror(self, member: Member, status: str, value: Any) -> None:
        """Another node decided a change (or set a status text): remember it."""

    def snapshot(self, online: set[Member]) -> None:
        """Every key online or in its grace period, cluster-wide."""


class ClusterPresence:
    def __init__(self, link: RedisLink, prefix: str, uid: str, node_timeout: float, listener: Listener) -> None:
        self.link = link
        self.uid = uid
        self.node_timeout = node_timeout
        self.listener = listener
        self.channel = f"{prefix}-rtserver-presence#"
        self._keys = f"{prefix}-rtserver-presence#"
        self._held = f"{self._keys}held#{uid}"
        self._totals = f"{self._keys}totals"
        self._leaving = f"{self._keys}leaving"
        self._nodes = f"{self._keys}nodes"
        self._alive = f"{self._keys}alive#{uid}"
        self._ops: deque[tuple[str, Member, str]] = deque()
        self._wake = trio.Event()
        #: Set when Redis must be told everything again (link back, queue overflow).
        self._resync = trio.Event()
        self._resync.set()
        #: Local counts and pending graces, read at resync (set by the layer above).
        self.local_counts: Callable[[], Iterable[tuple[Member, int]]] = lambda: ()
        self.pending_graces: Callable[[], Iterable[Member]] = lambda: ()
        #: Told when this node owns a key's grace period; ``expire(member, token)`` ends it.
        self.on_grace: Callable[[Member, str], None] = lambda member, token: None
        link.on_up.append(self._link_up)

    @property
    def up(self) -> bool:
        return self.link.up and not self._resync.is_set()

    def _link_up(self) -> None:
        self._ops.clear()
        self._resync.set()
        self._wake.set()

    # ---------------------------------------------------------- changes
    def connected(self, member: Member) -> None:
        self._queue("up", member, "")

    def disconnected(self, member: Member) -> None:
        self._queue("down", member, f"{self.uid}|{secrets.token_hex(6)}")

    def _queue(self, op: str, member: Member, arg: str) -> None:
        if not self.up:
            return  # the resync when the link is back tells Redis
        if len(self._ops) >= QUEUE_LIMIT:
            self._link_up()
            return
        self._ops.append((op, member, arg))
        self._wake.set()

    def status_text(self, member: Member, text: str) -> None:
        """A user's status text, for the other nodes' mirrors."""
        self._publish(member, "status", text)

    def _publish(self, member: Member, status: str, value: Any) -> None:
        self.link.publish(self.channel, wire.pack([self.uid, *member, status, value]))

    def on_message(self, payload: bytes) -> None:
        """A change another node decided (from the presence channel)."""
        message = wire.decode(payload, 1 << 20)
        if not isinstance(message, list) or len(message) != 6:
            raise wire.Malformed("bad presence message", str(message)[:120])
        uid, kind, tenant, ident, status, value = message
        if uid == self.uid:
            return
        member = (kind, tenant, ident)
        if decode(encode(member)) is None or status not in ("online", "offline", "status"):
            raise wire.Malformed("bad presence message", str(message)[:120])
        self.listener.mirror(member, status, value)

    # ------------------------------------------------------------ tasks
    async def run(self) -> None:
        """Apply changes in order, heartbeat and reap, until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._apply)
            nursery.start_soon(self._beat)

    async def _eval(self, script: str, keys: list[str], args: list[Any]) -> Any:
        return await self.link.client().eval(script, keys=keys, args=args)

    async def _apply(self) -> None:
        while True:
            while not self._ops and not (self._resync.is_set() and self.link.up):
                self._wake = trio.Event()
                await self._wake.wait()
            try:
                if self._resync.is_set():
                    await self._sync()
                    continue
                op, member, arg = self._ops[0]
                await self._apply_one(op, member, arg)
                self._ops.popleft()
            except (LinkDown, OSError) as exc:
                log.debug("presence change not applied, resync when Redis is back: %s", exc)
                self._link_up()
                await trio.sleep(0.1)
            except Exception as exc:  # noqa: BLE001 -- Redis errors: start over from a resync
                log.warning("presence change failed; resyncing", extra={"fields": {"error": str(exc)[:200]}})
                self._link_up()
                await trio.sleep(0.5)

    async def _apply_one(self, op: str, member: Member, arg: str) -> None:
        key = encode(member)
        if op == "up":
            result = await self._eval(_UP, [self._held, self._totals, self._leaving, self._nodes], [key, self.uid])
            if result == b"online":
                self._publish(member, "online", None)
                self.listener.announce(member, "online", None)
        elif op == "down":
            result = await self._eval(_DOWN, [self._held, self._totals, self._leaving], [key, arg])
            if result == b"leaving":
                self.on_grace(member, arg)
        elif op == "expire" and await self._eval(_EXPIRE, [self._leaving], [key, arg]) == 1:
            self._offline(member)

    def expire(self, member: Member, token: str) -> None:
        """The grace period this node owns for ``member`` is over."""
        self._queue("expire", member, token)

    def _offline(self, member: Member) -> None:
        stamp = time.time()
        self._publish(member, "offline", stamp)
        self.listener.announce(member, "offline", stamp)

    async def _sync(self) -> None:
        counts = [(encode(m), n) for m, n in self.local_counts() if n > 0]
        pending = [encode(m) for m in self.pending_graces()]
        args: list[Any] = [self.uid, int(self.node_timeout * 1000), len(counts)]
        for key, count in counts:
            args += [key, count]
        args += pending
        keys = [self._held, self._totals, self._leaving, self._nodes, self._alive]
        self._resync = trio.Event()
        online, offline, totals, leaving = await self._eval(_RESYNC, keys, args)
        for key in online:
            member = decode(key)
            if member is not None:
                self._publish(member, "online", None)
                self.listener.announce(member, "online", None)
        for key in offline:
            member = decode(key)
            if member is not None:
                self._offline(member)
        known = {m for m in map(decode, [*totals, *leaving]) if m is not None}
        self.listener.snapshot(known)
        log.info("presence synced with the cluster", extra={"fields": {"held": len(counts), "known": len(known)}})

    async def _beat(self) -> None:
        interval = self.node_timeout / 3
        while True:
            await trio.sleep(interval)
            if not self.up:
                continue
            try:
                client = self.link.client()
                await client.set(self._alive, b"1", px=int(self.node_timeout * 1000))
                await client.sadd(self._nodes, [self.uid])
                dead = await self._eval(_REAP, [self._nodes, self._totals, self._leaving], [self._keys])
            except Exception as exc:  # noqa: BLE001 -- the link's own task reports Redis going away
                log.debug("presence heartbeat failed: %s", exc)
                continue
            for key in dead:
                member = decode(key)
                if member is not None:
                    self._offline(member)
