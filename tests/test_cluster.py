"""Several rtserver nodes as one server through a real redis-server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from support.clients import LiveClient, http
from support.nodes import StartServer, wait_until
from support.redis import RedisServer, needs_redis

from rtserver import App, RunningServer

pytestmark = needs_redis


async def start_node(
    start_server: StartServer, redis: RedisServer, tmp_path: Path, name: str, app: App | None = None, **sections: Any
) -> RunningServer:
    """A node named ``name`` on ``redis``, with its own data directory."""
    cluster = {"redis_url": redis.url, "node_id": name, "request_timeout": 2.0, **sections.pop("cluster", {})}
    server = {"data_dir": str(tmp_path / name), **sections.pop("server", {})}
    return await start_server(app, cluster=cluster, server=server, **sections)


async def test_room_broadcast_reaches_a_client_on_the_other_node(start_server, redis, tmp_path):
    a = await start_node(start_server, redis, tmp_path, "a", auth={"enabled": False, "api_keys": ["k"]})
    b = await start_node(start_server, redis, tmp_path, "b", auth={"enabled": False, "api_keys": ["k"]})
    client = await LiveClient(a.port).connect()
    sid = client.sio.get_sid()
    status, body = await http(b.port, "POST", "/api/v1/emit", {"event": "hello", "data": {"x": 1}, "room": sid}, key="k")
    assert status == 200 and body == {"delivered": 0}, body
    assert await client.next("hello") == {"x": 1}
    await client.disconnect()
