"""The last hour of the server's figures, for the dashboard's plots.

Every ``interval`` seconds one sample of the counters the server keeps anyway
(:class:`~rtserver.metrics.Stats`) goes into a ring buffer holding
``history`` seconds; rates are the differences between neighbours, worked
out when the page asks.  Nothing here is on the hot path.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from typing import Any

import attrs


@attrs.frozen
class Sample:
    #: time.time() when taken.
    at: float
    connections: int
    messages_in: int
    messages_out: int
    #: Connections and events refused, every reason together.
    refusals: int
    #: Slow consumers disconnected.
    overflows: int


class Samples:
    def __init__(self, interval: float, history: float) -> None:
        self.interval = interval
        # One more than the history holds: the oldest point's rates need the sample before it.
        self._ring: deque[Sample] = deque(maxlen=math.ceil(history / interval) + 1)

    def take(self, sample: Sample) -> None:
        self._ring.append(sample)

    def latest_rates(self) -> dict[str, float]:
        """Per-second rates over the last interval (zeros before two samples)."""
        if len(self._ring) < 2:
            return {"in": 0.0, "out": 0.0, "refusals": 0.0, "overflows": 0.0}
        point = _point(self._ring[-2], self._ring[-1])
        return {k: point[k] for k in ("in", "out", "refusals", "overflows")}

    def series(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Points newer than ``since`` (epoch seconds): ``{t, connections, in,
        out, refusals, overflows}``, the last four per second."""
        points = (_point(before, after) for before, after in itertools.pairwise(self._ring))
        return [p for p in points if p["t"] > since]

    def __len__(self) -> int:
        return len(self._ring)


def _point(before: Sample, after: Sample) -> dict[str, Any]:
    span = max(after.at - before.at, 1e-6)

    def rate(a: int, b: int) -> float:
        return round((b - a) / span, 3)

    return {
        "t": round(after.at, 3),
        "connections": after.connections,
        "in": rate(before.messages_in, after.messages_in),
        "out": rate(before.messages_out, after.messages_out),
        "refusals": rate(before.refusals, after.refusals),
        "overflows": rate(before.overflows, after.overflows),
    }
