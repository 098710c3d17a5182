"""Debian's chromium for the browser tests (CI installs it; elsewhere those
tests skip without it): a static file server on another origin, and a
driver for pages (playwright-core through tests/browser/driver.js).

One driven browser process serves a whole test module (start it with
:meth:`Browser.start` from a module-scoped fixture); each test opens pages in
fresh contexts.  The driver reports every JavaScript error of every page;
:meth:`Browser.take_errors` hands them over so a test can fail on them.
Screenshots go to ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import http.server
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

BROWSER_DIR = Path(__file__).resolve().parent.parent / "browser"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WAIT = 30.0

#: Skips a test when chromium is missing, except in CI (which must run it).
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium is not installed (CI installs it)"
)


def serve_static(directory: Path) -> http.server.ThreadingHTTPServer:
    """Serve ``directory`` on 127.0.0.1 (any free port) until ``shutdown()``;
    each request is logged (stderr), for a failure's report."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Browser:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self._ids = itertools.count()
        self._results: dict[int, dict[str, Any]] = {}
        self._arrived = threading.Condition()
        self._errors: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ready: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    @classmethod
    def start(cls) -> Browser:
        assert CHROMIUM is not None
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            ["node", str(BROWSER_DIR / "driver.js"), CHROMIUM, str(ARTIFACTS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=BROWSER_DIR,
        )
        browser = cls(process)
        try:
            first = browser._ready.get(timeout=WAIT)
        except queue.Empty:
            browser.stop()
            raise AssertionError("chromium did not start within 30 s") from None
        if first["type"] != "ready":
            browser.stop()
            raise AssertionError(f"chromium did not start: {first}")
        return browser

    def _read(self) -> None:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            if not raw.startswith(b"{"):
                continue
            line = json.loads(raw)
            if line["type"] == "jserror":
                self._errors.put(line)
            elif line["type"] == "result":
                with self._arrived:
                    self._results[line["id"]] = line
                    self._arrived.notify_all()
            else:
                self._ready.put(line)
        with self._arrived:
            self._arrived.notify_all()

    def _call(self, js: str, timeout: float) -> Any:
        ident = next(self._ids)
        assert self._process.stdin is not None
        with self._lock:
            self._process.stdin.write(json.dumps({"id": ident, "js": js}).encode() + b"\n")
            self._process.stdin.flush()
        with self._arrived:
            if not self._arrived.wait_for(lambda: ident in self._results or self._process.poll() is not None, timeout):
                raise AssertionError(f"the browser did not answer within {timeout} s: {js}")
            result = self._results.pop(ident, None)
        if result is None:
            raise AssertionError(f"the browser driver exited while running: {js}")
        if "error" in result:
            raise AssertionError(f"in the browser: {result['error']}\n  while running: {js}")
        return result["value"]

    async def run(self, js: str, timeout: float = WAIT) -> Any:
        """Run ``js`` (an async function body: ``return`` a JSON value) in the driver."""
        return await trio.to_thread.run_sync(self._call, js, timeout)

    def close_pages(self) -> None:
        """Close every page a test opened (and its context: cookies go too)."""
        self._call("await closeAll()", WAIT)

    def take_errors(self) -> list[dict[str, Any]]:
        """The JavaScript errors pages reported since the last call."""
        errors = []
        while True:
            try:
                errors.append(self._errors.get_nowait())
            except queue.Empty:
                return errors

    def stop(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
