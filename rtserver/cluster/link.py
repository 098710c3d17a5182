"""The connection to Redis: one subscriber and one publisher (coredis, on
Trio through anyio), kept up with backoff.

``publish`` never waits: it queues the message for the writer task, which
sends what has gathered as one pipeline.  While Redis is unreachable a
message is dropped at once and counted; local delivery never depends on it.
Received messages are handed to ``on_message`` in arrival order, from the
subscriber's task.

State changes are logged once each (lost, back), never once per message.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import anyio
import coredis
import trio
from coredis.exceptions import AuthenticationError, AuthorizationError, RedisError
from coredis.retry import NoRetryPolicy
from coredis.tokens import PureToken

from ..faults import report

log = logging.getLogger("rtserver.cluster")

#: Messages waiting for the writer; beyond this Redis is too slow and they drop.
QUEUE_LIMIT = 10_000
#: Most messages one pipeline carries.
BATCH = 256
CONNECT_TIMEOUT = 3.0
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0

#: ``(pattern or None, channel, payload)``
OnMessage = Callable[[bytes | None, bytes, bytes], None]


class ClusterSetupError(Exception):
    """Redis refused this node for good (credentials, permissions): a start-up error."""


class LinkDown(Exception):
    """Redis is not reachable right now."""


def _reason(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    cause = exc.__cause__
    text = str(exc) or type(exc).__name__
    return f"{text} ({cause})" if cause is not None and str(cause) else text


class RedisLink:
    def __init__(
        self,
        url: str,
        channels: list[str],
        patterns: list[str],
        on_message: OnMessage,
        faults: Counter[str] | None = None,
        *,
        logger: logging.Logger = log,
        lost: str = "cross-node messages are dropped until it is back; local delivery goes on",
    ) -> None:
        self.url = url
        self._log = logger
        #: What the "redis unreachable" line says this means.
        self._lost = lost
        #: Where unexpected failures are counted (rtserver.faults).
        self._faults: Counter[str] = faults if faults is not None else Counter()
        self._channels = channels
        self._patterns = patterns
        self._on_message = on_message
        #: (channel, payload) to publish, or (stream, payload, max length) to append.
        self._queue: deque[tuple[str, bytes] | tuple[str, bytes, int]] = deque()
        self._wake = trio.Event()
        self._client: coredis.Redis[bytes] | None = None
        self.up = False
        self.since = time.time()
        self.error: str | None = "not connected yet"
        #: Messages not sent, by reason ("disconnected", "backlog", "failed write").
        self.dropped: Counter[str] = Counter()
        self.published = 0
        self.received = 0
        #: Times the link was lost (or failed at start).
        self.outages = 0
        #: Called each time the link comes up (the first time included), and
        #: each time a connection attempt fails or the link is lost.
        self.on_up: list[Callable[[], None]] = []
        self.on_down: list[Callable[[], None]] = []

    # ------------------------------------------------------------ sending
    def publish(self, channel: str, payload: bytes) -> bool:
        """Queue ``payload`` for ``channel``; False (counted) when it was dropped."""
        return self._queued((channel, payload))

    async def numsub(self, channel: str) -> int:
        """How many connections subscribe to ``channel`` (PUBSUB NUMSUB)."""
        client = self.client()
        try:
            counts = await client.pubsub_numsub(channel)
        except (RedisError, OSError) as exc:
            raise LinkDown(_reason(exc)) from None
        return int(next(iter(counts.values()), 0))

    def append(self, stream: str, payload: bytes, max_length: int) -> bool:
        """Queue ``payload`` for the end of ``stream`` (XADD, trimmed to about
        ``max_length``), in order with what is published; False (counted) when dropped."""
        return self._queued((stream, payload, max_length))

    def _queued(self, item: tuple[str, bytes] | tuple[str, bytes, int]) -> bool:
        if not self.up:
            self.dropped["disconnected"] += 1
            return False
        queue = self._queue
        if len(queue) >= QUEUE_LIMIT:
            self.dropped["backlog"] += 1
            return False
        queue.append(item)
        if len(queue) == 1:
            self._wake.set()
        return True

    def subscribe(self, channel: str) -> None:
        """Add a channel to the subscription (before :meth:`run`)."""
        self._channels.append(channel)

    def client(self) -> coredis.Redis[bytes]:
        """The connected client, for commands beyond publishing; LinkDown when there is none."""
        client = self._client
        if client is None or not self.up:
            raise LinkDown(self.error or "Redis is not connected")
        return client

    async def _writer(self, client: coredis.Redis[bytes]) -> None:
        queue = self._queue
        while True:
            while not queue:
                self._wake = trio.Event()
                await self._wake.wait()
            batch = [queue.popleft() for _ in range(min(len(queue), BATCH))]
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for item in batch:
                        if len(item) == 2:
                            pipe.publish(*item)
                        else:
                            pipe.xadd(item[0], {b"m": item[1]}, trim_strategy=PureToken.MAXLEN, threshold=item[2],
                                      trim_operator=PureToken.APPROXIMATELY)
            except BaseException:
                self.dropped["failed write"] += len(batch)
                raise
            self.published += len(batch)

    # ------------------------------------------------------------ running
    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the link up until cancelled.  ``task_status.started()`` comes
        once the first attempt is over, connected or not (a node starts
        degraded while Redis is down); credentials Redis refuses at the first
        attempt raise :class:`ClusterSetupError` instead."""
        delay = BACKOFF_FIRST
        while True:
            try:
                await self._session(task_status)
            except* (AuthenticationError, AuthorizationError) as group:
                if not self._started:
                    raise ClusterSetupError(f"Redis at {redacted(self.url)} refused this node: {_reason(group)}") from None
                self._down(_reason(group))
            except* (RedisError, OSError, TimeoutError, anyio.BrokenResourceError, anyio.ClosedResourceError,
                     anyio.EndOfStream, trio.BrokenResourceError, trio.ClosedResourceError, LinkDown) as group:
                if not _shutting_down():
                    self._down(_reason(group))
            except* Exception as group:  # noqa: BLE001 -- a fault in the client library must not end the node
                if not _shutting_down():
                    report(self._faults, "background", "the redis link", restart_in=BACKOFF_FIRST)
                    self._down(_reason(group))
            if not self._started:
                self._started = True
                task_status.started()
            # A link that was up starts over quickly; one that keeps failing backs off.
            delay = BACKOFF_FIRST if self._was_up else min(delay * 2, BACKOFF_MAX)
            self._was_up = False
            await trio.sleep(delay * random.uniform(0.5, 1.0))

    _started = False
    _was_up = False

    async def _session(self, task_status: Any) -> None:
        """One connection's life: subscribe, then read and write until it
        fails.  (No cancel scope around entering coredis's contexts: they
        open task groups; its connect and subscription timeouts bound them.)"""
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            self.url, decode_responses=False, connect_timeout=CONNECT_TIMEOUT, retry_policy=NoRetryPolicy()
        )
        async with client, client.pubsub(
            channels=self._channels, patterns=self._patterns, ignore_subscribe_messages=True,
            retry_policy=NoRetryPolicy(), subscription_timeout=CONNECT_TIMEOUT,
        ) as pubsub:
            self._client = client
            try:
                self._up()
                if not self._started:
                    self._started = True
                    task_status.started()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, client)
                    await self._read(pubsub)
                    raise LinkDown("the subscription ended")
            finally:
                self._client = None

    async def _read(self, pubsub: Any) -> None:
        on_message = self._on_message
        while True:
            message = await pubsub.get_message()
            if message is None or message["type"] not in ("message", "pmessage"):
                continue
            self.received += 1
            on_message(message["pattern"], message["channel"], message["data"])

    def _up(self) -> None:
        self._was_up = True
        fields = {"redis": redacted(self.url)}
        if self.outages:
            self._log.warning(
                "redis connection restored", extra={"fields": {**fields, "down_s": round(time.time() - self.since, 1)}}
            )
        else:
            self._log.info("redis connected", extra={"fields": fields})
        self.up, self.error, self.since = True, None, time.time()
        for callback in self.on_up:
            callback()

    def _down(self, reason: str) -> None:
        """Record a failed or lost connection; logged on the change only."""
        if self.up or not self.outages:
            self._log.error(
                f"redis unreachable: {self._lost}",
                extra={"fields": {"redis": redacted(self.url), "error": reason}},
            )
            self.since = time.time()
            self.outages += 1
        self.up, self.error = False, reason
        self.dropped["disconnected"] += len(self._queue)
        self._queue.clear()
        for callback in self.on_down:
            callback()


def _shutting_down() -> bool:
    """Whether this task is being cancelled (errors then are the teardown's)."""
    return trio.current_effective_deadline() == float("-inf")


def redacted(url: str) -> str:
    """The URL without its password, for logs and /healthz."""
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user + ':***' if user else '***'}@{location}"
