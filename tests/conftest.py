"""Shared fixtures: a real server on an ephemeral port, real client runners."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, settings
from support.browser import CHROMIUM, Browser
from support.process import kill_started
from support.wire import Witness, make_app

from rtserver import App, RunningServer, serve
from rtserver import config as config_mod

# The property tests share two cores with real servers, browsers and Node
# clients: generation speed and per-example time are the machine's, not the
# code's, so neither may fail a test.
settings.register_profile("shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared-machine")

CLIENTS = Path(__file__).parent / "clients"
NODE = shutil.which("node")


def make_config(data_dir: Path, **sections: dict[str, Any]) -> config_mod.Config:
    """A config on 127.0.0.1 port 0, data in ``data_dir``, auth off unless a
    test's ``auth`` section switches it on, with the given sections merged in."""
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0, "data_dir": str(data_dir)},
        "auth": {"enabled": False},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return config_mod.structure(data)


StartServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def start_server(nursery: trio.Nursery, tmp_path: Path) -> StartServer:
    """``await start_server(app, engineio={...})`` -> RunningServer (``.port``)."""

    async def start(app: App | None = None, **sections: dict[str, Any]) -> RunningServer:
        return await nursery.start(serve, make_config(tmp_path / "data", **sections), app)

    return start


class NodeResult:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode = returncode
        self.stderr = stderr
        self.events: list[dict[str, Any]] = []
        for line in stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                self.events.append(json.loads(line))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    def __repr__(self) -> str:
        return f"NodeResult(rc={self.returncode}, events={self.events}, stderr={self.stderr[-2000:]!r})"


async def run_node(script: str, *args: str, timeout: float = 30, env: dict[str, str] | None = None) -> NodeResult:
    """Run ``tests/clients/<script>`` with node; each stdout JSON line is an event."""
    if NODE is None:
        pytest.fail("node is not installed (make test installs it)")
    with trio.fail_after(timeout):
        proc = await trio.run_process(
            [NODE, str(CLIENTS / script), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=CLIENTS,
            env={**os.environ, **(env or {})},
        )
    return NodeResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@pytest.fixture
def node() -> Callable[..., Awaitable[NodeResult]]:
    return run_node


# One driven chromium per test module (tests/support/browser.py).
@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    assert CHROMIUM is not None, "chromium is required in CI (.ci/run installs it)"
    browser = Browser.start()
    yield browser
    browser.stop()


@pytest.fixture
def browser(chromium: Browser) -> Iterator[Browser]:
    """The module's browser; the test fails on any JavaScript error of its pages."""
    chromium.take_errors()
    yield chromium
    chromium.close_pages()
    errors = chromium.take_errors()
    assert errors == [], f"JavaScript errors in the pages: {errors}"


@pytest.fixture
async def setup(start_server, nursery):
    """``await setup(**config_sections)`` -> (server, disconnect reasons by sid, witness);
    ``made=(app, reasons)`` serves another app than make_app's."""

    async def start(made: tuple[App, dict[str, str]] | None = None, **sections):
        app, reasons = made or make_app()
        server = await start_server(app, **sections)
        witness = await Witness.connect(nursery, server.port)
        return server, reasons, witness

    return start


@pytest.fixture
async def redis(tmp_path: Path) -> Any:
    """A redis-server of this test's own (see support.redis); stopped afterwards."""
    from support.redis import running

    async with running(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def spawned() -> Any:
    """Kill every ``rtserver serve`` process (support.process) a test started,
    even when it failed midway."""
    yield
    kill_started()
