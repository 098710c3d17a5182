"""Counters kept as plain integers on the hot path, exposed for Prometheus.

Incrementing an attribute costs next to nothing; the prometheus-client
collector reads them only when ``/metrics`` is scraped.  Each server has its
own registry, so several servers in one process (tests) do not collide.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator

import trio
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

_FANOUT_BUCKETS = (0, 1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000, float("inf"))
_LATENCY_BUCKETS = (0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, float("inf"))
_LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, float("inf"))
#: The label of each gauge ``bind_gauges`` reads (else "namespace").
_GAUGE_LABELS = {"connections": "transport", "counted": "kind"}
#: Seconds between two looks at the event loop's lag.
LAG_INTERVAL = 0.1


def count_tasks() -> int:
    """Trio tasks alive in this run (walks the task tree: for a scrape, not a hot path)."""
    try:
        pending = [trio.lowlevel.current_root_task()]
    except RuntimeError:  # outside trio
        return 0
    count = 0
    while pending:
        task = pending.pop()
        if task is None:
            continue
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


class Stats:
    """What the server counts; every field is a plain number or Counter."""

    def __init__(self) -> None:
        self.started = time.time()
        self.handshakes: Counter[str] = Counter()  # by transport
        self.refusals: Counter[str] = Counter()  # by reason code
        self.messages_in = 0
        self.bytes_in = 0
        self.messages_out = 0
        self.bytes_out = 0
        self.overflows = 0
        #: Unexpected exceptions contained, by boundary (see rtserver.faults).
        self.faults: Counter[str] = Counter()
        self.registry = CollectorRegistry(auto_describe=True)
        self.fanout = Histogram(
            "rtserver_fanout_recipients", "Sockets reached by one publish", buckets=_FANOUT_BUCKETS, registry=self.registry
        )
        self.publish_seconds = Histogram(
            "rtserver_publish_seconds", "Time to fan one publish out to its recipients", buckets=_LATENCY_BUCKETS, registry=self.registry
        )
        self.loop_lag = Histogram(
            "rtserver_event_loop_lag_seconds",
            f"How late a task sleeping {LAG_INTERVAL} s wakes up (time other work held the event loop)",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self._gauges: Callable[[], dict[str, dict[str, int]]] = dict

    def sent(self, recipients: int, frames: tuple[str | bytes, ...]) -> None:
        self.messages_out += recipients
        self.bytes_out += recipients * sum(len(f) for f in frames)

    def observe_publish(self, recipients: int, seconds: float) -> None:
        self.fanout.observe(recipients)
        self.publish_seconds.observe(seconds)

    def bind_gauges(self, read: Callable[[], dict[str, dict[str, int]]]) -> None:
        """``read()`` returns gauge name -> label value -> number, at scrape time."""
        self._gauges = read
        self.registry.register(_Collector(self))

    async def watch_loop(self) -> None:
        """Measure the event loop's lag until cancelled (a few microseconds a wake-up)."""
        while True:
            due = trio.current_time() + LAG_INTERVAL
            await trio.sleep_until(due)
            self.loop_lag.observe(max(0.0, trio.current_time() - due))

    def gauges(self) -> dict[str, dict[str, int]]:
        """Connections by transport, sockets by namespace, what the caps count, now."""
        return self._gauges()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Collector(Collector):
    def __init__(self, stats: Stats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self._stats
        handshakes = CounterMetricFamily("rtserver_handshakes", "Engine.IO sessions opened", labels=["transport"])
        for transport, count in s.handshakes.items():
            handshakes.add_metric([transport], count)
        yield handshakes
        refusals = CounterMetricFamily("rtserver_refusals", "Connections and events refused", labels=["reason"])
        for reason, count in s.refusals.items():
            refusals.add_metric([reason], count)
        yield refusals
        yield CounterMetricFamily("rtserver_messages_received", "Engine.IO frames received", value=s.messages_in)
        yield CounterMetricFamily("rtserver_bytes_received", "Bytes of frames received", value=s.bytes_in)
        yield CounterMetricFamily("rtserver_messages_sent", "Messages queued to sockets", value=s.messages_out)
        yield CounterMetricFamily("rtserver_bytes_sent", "Bytes of messages queued to sockets", value=s.bytes_out)
        yield CounterMetricFamily("rtserver_outbox_overflows", "Slow consumers disconnected", value=s.overflows)
        faults = CounterMetricFamily(
            "rtserver_faults", "Unexpected exceptions contained, by boundary", labels=["boundary"]
        )
        for boundary, count in s.faults.items():
            faults.add_metric([boundary], count)
        yield faults
        yield GaugeMetricFamily("rtserver_uptime_seconds", "Seconds since start", value=time.time() - s.started)
        yield GaugeMetricFamily("rtserver_tasks", "Trio tasks alive", value=count_tasks())
        for name, values in s.gauges().items():
            label = _GAUGE_LABELS.get(name, "namespace")
            gauge = GaugeMetricFamily(f"rtserver_{name}", f"Current {name.replace('_', ' ')}", labels=[label])
            for key, count in values.items():
                gauge.add_metric([key], count)
            yield gauge
