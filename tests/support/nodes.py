"""Helpers for the one-shot Node client scripts run by conftest's ``node``
fixture (tests/clients/*.js): checking and reading their JSON-line output,
and running them in the background while a test acts on the server."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio

from rtserver import RunningServer

# The conftest fixtures' types.
NodeResult = Any
StartServer = Callable[..., Awaitable[RunningServer]]
Node = Callable[..., Awaitable[NodeResult]]

#: Reconnect quickly so reconnect tests stay short.
FAST_RECONNECT = {"reconnectionDelay": 100, "reconnectionDelayMax": 200}


def url(server: RunningServer, namespace: str = "/") -> str:
    return f"http://127.0.0.1:{server.port}{namespace}"


def scripted(**config: Any) -> str:
    """scripted.js's configuration argument."""
    return json.dumps(config)


def ok(result: NodeResult) -> NodeResult:
    """``result`` of a script that ran to its end (no timeout) and exited 0."""
    assert result.returncode == 0, result
    assert result.of("timeout") == [], result
    assert len(result.of("done")) == 1, result
    return result


def events(result: NodeResult, name: str) -> list[list[Any]]:
    """The arguments of each ``name`` event the script received."""
    return [e["args"] for e in result.of("event") if e["event"] == name]


def acks(result: NodeResult, name: str) -> list[list[Any]]:
    """The arguments of each ack the script got for its ``name`` emits."""
    return [e["args"] for e in result.of("ack") if e["event"] == name]


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(interval)


class Background:
    """A run in the background, so the test can act on the server meanwhile."""

    def __init__(self, nursery: trio.Nursery, run: Callable[[], Awaitable[NodeResult]], timeout: float = 20) -> None:
        self.result: NodeResult | None = None
        self.finished = trio.Event()
        self.timeout = timeout

        async def go() -> None:
            try:
                self.result = await run()
            finally:
                self.finished.set()

        nursery.start_soon(go)

    async def wait(self, timeout: float | None = None) -> NodeResult:
        with trio.fail_after(self.timeout if timeout is None else timeout):
            await self.finished.wait()
        assert self.result is not None
        return self.result


def in_background(nursery: trio.Nursery, node: Node, *args: Any, **kwargs: Any) -> Background:
    """``node(*args, **kwargs)`` in the background."""
    return Background(nursery, partial(node, *args, **kwargs))


async def run_scripted(
    node: Node, server: RunningServer, namespace: str = "/", script: str = "scripted.js", **config: Any
) -> NodeResult:
    """scripted.js (or ``script``: v2.js, the same for socket.io-client 2.x) with
    ``config`` against ``server``'s ``namespace``; its result, checked by :func:`ok`."""
    return ok(await node(script, url(server, namespace), scripted(**config)))
