"""One store interface, two implementations: every test here runs against
SQLite (the single-node store) and Redis (a real redis-server, the store of a
cluster)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
from support.redis import RedisServer, needs_redis, running

from rtserver.store import SqliteStore, Store, StoreUnavailable
from rtserver.store.redis import RedisStore


class Recorder:
    """A mirror that records what the store tells it."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, list[Any]]] = []
        self.reloads = 0

    def store_changed(self, kind: str, args: list[Any]) -> None:
        self.changes.append((kind, args))

    async def store_reloaded(self, store: Store) -> None:
        self.reloads += 1


async def redis_store(nursery: trio.Nursery, redis: RedisServer, node: str, prefix: str = "t") -> RedisStore:
    store = RedisStore(redis.url, prefix, node=node)
    await nursery.start(store.run)
    return store


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=needs_redis)])
async def unstarted(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Each implementation, opened but not started (``await nursery.start(store.run)``)."""
    if request.param == "sqlite":
        store = await SqliteStore.open(str(tmp_path / "data"))
        yield store
        await store.close()
    else:
        async with running(tmp_path / "redis") as redis:
            yield RedisStore(redis.url, "t")


@pytest.fixture
async def store(unstarted: Store, nursery: trio.Nursery) -> Store:
    await nursery.start(unstarted.run)
    return unstarted


async def test_token_versions(store):
    assert await store.token_versions() == {}
    assert await store.bump_token_version("alice") == 1
    assert await store.bump_token_version("alice") == 2
    assert await store.raise_token_version("alice", 1) == 2  # never lowered
    assert await store.raise_token_version("bob", 5) == 5
    assert await store.token_versions() == {"alice": 2, "bob": 5}


async def test_users(store):
    assert not await store.user_exists("alice")
    await store.add_user("bob", None)
    await store.add_user("alice", "acme")
    await store.add_user("alice", "globex")  # a second add changes the tenant
    assert await store.user_exists("alice")
    assert await store.list_users() == [{"user": "alice", "tenant": "globex"}, {"user": "bob", "tenant": None}]
    assert await store.remove_user("alice")
    assert not await store.remove_user("alice")
    assert await store.list_users() == [{"user": "bob", "tenant": None}]


async def test_devices(store):
    await store.save_device("screen-2", "acme", "alice", "online", 10.0)
    await store.save_device("screen-1", "acme", "alice", "online", 11.0)
    await store.save_device("kiosk", "globex", "zed", "offline", 12.5)
    await store.save_device("screen-1", "acme", "bob", "offline", 13.0)  # the latest wins
    assert await store.device_tenants() == {"screen-1": "acme", "screen-2": "acme", "kiosk": "globex"}
    assert await store.devices("acme") == [
        ("screen-1", "acme", "bob", "offline", 13.0), ("screen-2", "acme", "alice", "online", 10.0)
    ]
    assert [row[0] for row in await store.devices()] == ["kiosk", "screen-1", "screen-2"]


async def test_retained_latest_backlog_and_forget(store):
    await store.keep("room:a", "layout", b'{"v":1}')
    await store.keep("room:b", "layout", b'{"v":2}')
    await store.keep("room:a", "layout", b'{"v":3}')  # replaces, and is now the newest
    assert await store.retained() == [("room:b", "layout", b'{"v":2}'), ("room:a", "layout", b'{"v":3}')]
    for seq in range(1, 6):
        await store.append("room:a", seq, "log", b'"line %d"' % seq, 3)
    await store.append("inbox:user:bob", 1, "note", b"{}", 100)
    assert await store.backlog() == [
        ("inbox:user:bob", 1, "note", b"{}"),
        ("room:a", 3, "log", b'"line 3"'), ("room:a", 4, "log", b'"line 4"'), ("room:a", 5, "log", b'"line 5"'),
    ]
    await store.trim_backlog("room:a", 4)  # what a reader had; 5 came after
    assert [row[1] for row in await store.backlog() if row[0] == "room:a"] == [5]
    await store.forget_room("room:a")
    assert await store.retained() == [("room:b", "layout", b'{"v":2}')]
    assert await store.backlog() == [("inbox:user:bob", 1, "note", b"{}")]
    await store.trim_backlog("inbox:user:bob", 1)
    await store.trim_backlog("nowhere", 3)
    assert await store.backlog() == []


async def test_registrations_expire(store):
    assert await store.registration("conn_1") is None
    await store.save_registration("conn_1", b"record", None)
    await store.save_registration("conn_2", b"short", 0.05)
    assert await store.registration("conn_1") == b"record"
    assert await store.registration("conn_2") == b"short"
    await trio.sleep(0.15)
    assert await store.registration("conn_2") is None
    await store.save_registration("conn_1", b"idle", 60)
    assert await store.registration("conn_1") == b"idle"
    await store.drop_registration("conn_1")
    assert await store.registration("conn_1") is None


async def test_mirrors_are_loaded_at_start(unstarted, nursery):
    mirror = Recorder()
    unstarted.mirrors.append(mirror)
    await nursery.start(unstarted.run)  # as a node starting on this store
    assert mirror.reloads == 1


# ------------------------------------------------------- Redis only
@needs_redis
async def test_other_nodes_hear_of_every_change(nursery, redis):
    a, b = await redis_store(nursery, redis, "a"), await redis_store(nursery, redis, "b")
    heard_a, heard_b = Recorder(), Recorder()
    a.mirrors.append(heard_a)
    b.mirrors.append(heard_b)
    await a.bump_token_version("alice")
    await a.raise_token_version("alice", 1)  # unchanged: nothing to announce
    await a.raise_token_version("alice", 4)
    await a.save_device("screen", "acme", "alice", "online", 1.0)
    await a.keep("r", "layout", b"[1]")
    await a.append("r", 1, "log", b'"x"', 10)
    await a.append("r", 2, "log", b'"y"', 10)
    await a.trim_backlog("r", 1)
    await a.forget_room("r")
    await a.save_registration("conn_1", b"{}", None)  # looked up when needed: not announced
    await a.drop_registration("conn_1")
    expected = [
        ("token", ["alice", 1]), ("token", ["alice", 4]), ("device", ["screen", "acme"]),
        ("keep", ["r", "layout", b"[1]"]), ("append", ["r", 1, "log", b'"x"', 10]),
        ("append", ["r", 2, "log", b'"y"', 10]), ("trim", ["r", 1]), ("forget", ["r"]),
        ("unregister", ["conn_1"]),
    ]
    with trio.fail_after(5):
        while len(heard_b.changes) < len(expected):
            await trio.sleep(0.01)
    assert heard_b.changes == expected
    assert heard_a.changes == []  # its own changes: its mirrors changed first


@needs_redis
async def test_a_prefix_keeps_clusters_apart(nursery, redis):
    one, other = await redis_store(nursery, redis, "a", "one"), await redis_store(nursery, redis, "b", "other")
    await one.keep("r", "e", b"1")
    await one.bump_token_version("alice")
    assert await other.retained() == [] and await other.token_versions() == {}


@needs_redis
async def test_redis_lost_refuses_writes_and_reloads_when_back(nursery, redis):
    store = await redis_store(nursery, redis, "a")
    mirror = Recorder()
    store.mirrors.append(mirror)
    await redis.stop()
    with pytest.raises(StoreUnavailable):
        await store.keep("r", "e", b"1")
    with pytest.raises(StoreUnavailable):
        await store.bump_token_version("alice")
    with trio.fail_after(5):
        while store.link.up:
            await trio.sleep(0.01)
    assert store.health()["store"] == "down"
    await redis.start()
    with trio.fail_after(15):
        while mirror.reloads < 1:
            await trio.sleep(0.02)
    assert store.health()["store"] == "up"
    await store.keep("r", "e", b"1")
    assert await store.retained() == [("r", "e", b"1")]


@needs_redis
async def test_malformed_notices_are_ignored(nursery, redis):
    a, b = await redis_store(nursery, redis, "a"), await redis_store(nursery, redis, "b")
    heard = Recorder()
    b.mirrors.append(heard)
    for garbage in (b"\xc1", b"\x93\xa1x\xa4nope\x90", b"\x93\xa1x\xa5token\x91\x01", b"[]"):
        assert await redis.publish(b.channel, garbage) == 2
    await a.keep("r", "e", b"1")
    with trio.fail_after(5):
        while not heard.changes:
            await trio.sleep(0.01)
    assert heard.changes == [("keep", ["r", "e", b"1"])]
    assert b.malformed == 4


class Versions(Recorder):
    """A mirror that reads the token versions at each reload."""

    def __init__(self) -> None:
        super().__init__()
        self.versions: dict[str, int] = {}

    async def store_reloaded(self, store: Store) -> None:
        self.versions = await store.token_versions()
        await super().store_reloaded(store)


@needs_redis
async def test_a_change_missed_while_the_link_was_down_is_found_by_the_reload(nursery, redis):
    """A write whose notice this node never heard (its subscription was cut,
    here by CLIENT KILL) is in the mirror once the link is back."""
    store = await redis_store(nursery, redis, "a")
    mirror = Versions()
    store.mirrors.append(mirror)
    await redis.command("HSET", "t-rtserver-store#tokens", "alice", "7")  # no notice
    assert mirror.changes == [] and mirror.versions == {}
    assert b":1\r\n" in await redis.command("CLIENT", "KILL", "TYPE", "pubsub")
    with trio.fail_after(10):
        while mirror.reloads < 1:
            await trio.sleep(0.02)
    assert mirror.versions == {"alice": 7}


@needs_redis
async def test_garbage_in_the_stored_keys_is_a_contained_fault(nursery, redis):
    """A reload that fails on what it reads is reported and retried; the
    node goes on, and the reload succeeds once the data is sound."""
    faults: Counter[str] = Counter()
    store = RedisStore(redis.url, "t", faults, node="a")
    await nursery.start(store.run)
    mirror = Versions()
    store.mirrors.append(mirror)
    await redis.command("HSET", "t-rtserver-store#tokens", "alice", "not a number")
    await redis.command("CLIENT", "KILL", "TYPE", "pubsub")
    with trio.fail_after(10):
        while not faults["background"]:
            await trio.sleep(0.02)
    assert mirror.reloads == 0
    await redis.command("HSET", "t-rtserver-store#tokens", "alice", "3")
    with trio.fail_after(10):
        while mirror.reloads < 1:
            await trio.sleep(0.02)
    assert mirror.versions == {"alice": 3}
