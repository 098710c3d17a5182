"""One task keeps the time of every session: pings, ping timeouts, timers.

A task, or even a cancel scope, per connection to wake it for its next ping
costs memory on every idle connection (measured with ``make bench``: a
heartbeat scope per read and its timer entries were about 1 KiB of each
idle WebSocket connection).  Instead each session books its next wake-up
here, in one heap, and this task calls :attr:`Ticket.due` when it comes.

Booking a ticket again earlier supersedes its earlier booking; superseded
and cancelled bookings are skipped when they come up, so nothing is searched
for in the heap.  A cancelled booking can lie far in the future (a token
that expires in a month, its connection long gone), so once dead bookings
are more than half of the heap it is rebuilt without them: the heap never
holds much more than twice the live bookings, however many connections come
and go over months.  The heap holds tickets, not sessions, and a cancelled
ticket lets go of its callback: a finished session is freed at once.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable

import trio

from ..faults import report

#: Dead bookings tolerated before the heap may be rebuilt without them.
_COMPACT_MIN = 1024
#: Bookings served before the clock lets other tasks run: 10,000 screens that
#: connected together ping together, and their pings should not hold up the
#: rest of the server for the whole batch.
_BATCH = 256


class Ticket:
    """A place on the clock: a session's heartbeat, or a one-off timer."""

    __slots__ = ("at", "clock", "due")

    def __init__(self, due: Callable[[], float | None]) -> None:
        #: Called when the booking comes up; returns when it wants to be
        #: called next (None: not again).
        self.due: Callable[[], float | None] | None = due
        #: The booking in force (None: none).
        self.at: float | None = None
        #: The clock it is booked on.
        self.clock: Clock | None = None

    def cancel(self) -> None:
        """Call it off: the callback is dropped, its booking skipped."""
        if self.at is not None and self.clock is not None:
            self.clock._dead += 1
        self.due = None
        self.at = None

    def __lt__(self, other: Ticket) -> bool:
        return False  # bookings at the same time come up in any order


class Clock:
    def __init__(self, faults: Counter[str] | None = None) -> None:
        #: Where failed callbacks are counted (see rtserver.faults).
        self._faults: Counter[str] = faults if faults is not None else Counter()
        self._heap: list[tuple[float, Ticket]] = []
        #: Bookings in the heap that will be skipped (superseded or cancelled).
        self._dead = 0
        #: The scope the clock's task sleeps in, moved earlier by an earlier booking.
        self._sleep: trio.CancelScope | None = None

    def book(self, ticket: Ticket, when: float) -> None:
        """Call ``ticket.due`` at ``when``, unless it is booked earlier already."""
        if ticket.due is None or (ticket.at is not None and ticket.at <= when):
            return
        if ticket.at is not None:
            self._dead += 1  # the later booking is superseded
        ticket.at = when
        ticket.clock = self
        heapq.heappush(self._heap, (when, ticket))
        if self._dead > _COMPACT_MIN and self._dead * 2 > len(self._heap):
            self._compact()
        sleep = self._sleep
        if sleep is not None and when < sleep.deadline:
            sleep.deadline = when

    def __len__(self) -> int:
        """Bookings held, superseded and cancelled ones included until they
        come up or the heap is rebuilt."""
        return len(self._heap)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Ticket:
        """Call ``callback`` once in ``seconds``; ``cancel()`` the ticket to call it off."""
        ticket = Ticket(callback)
        self.book(ticket, trio.current_time() + seconds)
        return ticket

    def _compact(self) -> None:
        self._heap = [(when, ticket) for when, ticket in self._heap if ticket.at == when and ticket.due is not None]
        heapq.heapify(self._heap)
        self._dead = 0

    def _run_due(self, now: float) -> bool:
        """Serve up to ``_BATCH`` bookings due by ``now``; whether more are due."""
        heap = self._heap
        served = 0
        while heap and heap[0][0] <= now:
            if served == _BATCH:
                return True
            served += 1
            when, ticket = heapq.heappop(heap)
            if ticket.at != when or ticket.due is None:
                self._dead -= 1  # superseded by an earlier booking, or cancelled
                continue
            ticket.at = None
            try:
                again = ticket.due()
            except Exception:  # noqa: BLE001 -- a fault boundary: contained and reported
                # One session's failure must not stop every other heartbeat.
                report(self._faults, "clock", "timer callback")
                continue
            if again is not None:
                self.book(ticket, again)
            heap = self._heap  # a booking may have rebuilt it
        return False

    async def run(self) -> None:
        """Serve bookings until cancelled (with the server)."""
        while True:
            if self._run_due(trio.current_time()):
                await trio.lowlevel.checkpoint()  # more are due: after the others' turn
                continue
            with trio.move_on_at(self._heap[0][0] if self._heap else math.inf) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None
