"""Which Redis client for the cluster bus: coredis on Trio (through anyio) or
redis-py's asyncio client through trio-asyncio.  Measured once, for the
README's design notes; not part of `make bench`.

    python3 -m venv /tmp/rc && /tmp/rc/bin/pip install coredis 'redis[hiredis]' trio-asyncio
    /tmp/rc/bin/python bench/redis_clients.py

It starts its own redis-server (no persistence) on a free loopback port and
measures, in one Trio process like rtserver's:

- round trip: one PUBLISH, awaited, until the subscriber connection has the
  message (one at a time; p50 / p99);
- throughput: messages of 200 bytes published in pipelined batches of up to
  100 (as the bus's writer sends them), counted as the subscriber receives
  them; messages/s and this process's CPU per message (both ends).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

ROUND_TRIPS = 3000
MESSAGES = 100_000
BATCH = 100
PAYLOAD = b"x" * 200
CHANNEL = "bench#/#room#"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis() -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    scratch = tempfile.mkdtemp(prefix="rc-redis-")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", scratch],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port, scratch
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


async def measure(
    publish: Callable[[bytes], Awaitable[Any]],
    publish_many: Callable[[list[bytes]], Awaitable[Any]],
    received: trio.MemoryReceiveChannel[bytes],
) -> dict[str, float]:
    waits = []
    for i in range(ROUND_TRIPS):
        started = time.perf_counter()
        await publish(b"%d" % i)
        await received.receive()
        waits.append(time.perf_counter() - started)
    waits.sort()
    cpu0, wall0 = time.process_time(), time.perf_counter()

    async def produce() -> None:
        for start in range(0, MESSAGES, BATCH):
            await publish_many([PAYLOAD] * min(BATCH, MESSAGES - start))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce)
        for _ in range(MESSAGES):
            await received.receive()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "round_trip_p50_us": round(statistics.median(waits) * 1e6, 1),
        "round_trip_p99_us": round(waits[int(0.99 * len(waits))] * 1e6, 1),
        "messages_per_s": round(MESSAGES / wall),
        "cpu_us_per_message": round(cpu / MESSAGES * 1e6, 2),
    }


async def with_coredis(port: int) -> dict[str, float]:
    import coredis

    send, receive = trio.open_memory_channel[bytes](MESSAGES)
    async with coredis.Redis(host="127.0.0.1", port=port) as client, client.pubsub() as pubsub:

        def handler(message: Any) -> None:
            send.send_nowait(message["data"])

        await pubsub.subscribe(**{CHANNEL: handler})

        async def publish_many(items: list[bytes]) -> None:
            async with client.pipeline(transaction=False) as pipe:
                for item in items:
                    pipe.publish(CHANNEL, item)

        return await measure(lambda m: client.publish(CHANNEL, m), publish_many, receive)


async def with_redis_py(port: int) -> dict[str, float]:
    import redis.asyncio
    import trio_asyncio

    send, receive = trio.open_memory_channel[bytes](MESSAGES)
    async with trio_asyncio.open_loop():
        client = redis.asyncio.Redis(host="127.0.0.1", port=port)
        pubsub = client.pubsub()
        await trio_asyncio.aio_as_trio(pubsub.subscribe)(CHANNEL)

        async def pump(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            async for message in trio_asyncio.aio_as_trio(pubsub.listen()):
                if message["type"] == "message":
                    send.send_nowait(message["data"])

        async def publish_many(items: list[bytes]) -> None:
            async def go() -> None:
                async with client.pipeline(transaction=False) as pipe:
                    for item in items:
                        pipe.publish(CHANNEL, item)
                    await pipe.execute()

            await trio_asyncio.aio_as_trio(go)()

        async with trio.open_nursery() as nursery:
            await nursery.start(pump)
            result = await measure(lambda m: trio_asyncio.aio_as_trio(client.publish)(CHANNEL, m), publish_many, receive)
            nursery.cancel_scope.cancel()
        await trio_asyncio.aio_as_trio(pubsub.aclose)()
        await trio_asyncio.aio_as_trio(client.aclose)()
    return result


def main() -> None:
    if not shutil.which("redis-server"):
        sys.exit("redis-server is required")
    import coredis
    import redis

    results = {}
    for name, run in (("coredis " + coredis.__version__, with_coredis), ("redis-py " + redis.__version__ + " + trio-asyncio", with_redis_py)):
        proc, port, scratch = start_redis()
        try:
            results[name] = trio.run(run, port)
        finally:
            proc.terminate()
            proc.wait()
            shutil.rmtree(scratch, ignore_errors=True)
        print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    print(json.dumps({"loadavg": os.getloadavg(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
