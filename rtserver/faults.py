"""Fault containment: what goes wrong serving one client stays with it.

Each boundary (an HTTP connection, an API request, an Engine.IO session, a
Socket.IO event, a clock callback, a background task) catches what nobody
expected, ends or answers only what it serves, and reports it here: one
ERROR line with the traceback and the connection's fields, and a count in
``rtserver_faults_total{boundary=...}``.  Only start-up and shutdown may end
the process.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import trio

log = logging.getLogger("rtserver.faults")

#: Seconds before a failed background task is started again, doubling up to the maximum.
_RESTART_DELAY = 1.0
_RESTART_MAX = 30.0


def report(counts: Counter[str], boundary: str, what: str, **fields: object) -> None:
    """Log the exception being handled (call from an ``except`` block) and count it."""
    counts[boundary] += 1
    log.exception("%s failed unexpectedly", what, extra={"fields": {"boundary": boundary, **fields}})


async def supervise(counts: Counter[str], name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a server-lifetime background task; start it again after a failure.

    A store that is briefly unwritable, or a bug in one pass of a loop, must
    not end the server: the task is reported and restarted after a pause
    that doubles with each failure in a row (a task that ran for a while
    starts again from the shortest pause).
    """
    delay = _RESTART_DELAY
    while True:
        started = trio.current_time()
        try:
            await run()
            return
        except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
            report(counts, "background", name, restart_in=delay)
        if trio.current_time() - started > _RESTART_MAX:
            delay = _RESTART_DELAY
        await trio.sleep(delay)
        delay = min(delay * 2, _RESTART_MAX)


async def guarded(counts: Counter[str], what: str, run: Callable[..., Awaitable[object]], *args: object) -> None:
    """Await ``run(*args)`` as a task of its own that can fail without
    taking the nursery it runs in (the server's) down with it."""
    try:
        await run(*args)
    except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
        report(counts, "background", what)
