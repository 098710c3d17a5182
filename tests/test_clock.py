"""The server clock (one task for every session's heartbeat and timers), on
trio's virtual clock: no real sleeps."""

from __future__ import annotations

import functools
import logging

import pytest
import trio

from rtserver.engineio.clock import Clock, Ticket


@pytest.fixture
async def clock(nursery: trio.Nursery) -> Clock:
    clock = Clock()
    nursery.start_soon(clock.run)
    await trio.testing.wait_all_tasks_blocked()
    return clock


def recorder(calls: list[tuple[str, float]], name: str):
    def call() -> None:
        calls.append((name, trio.current_time()))

    return call


async def test_callbacks_come_up_in_time_order(autojump_clock: trio.testing.MockClock, clock: Clock) -> None:
    calls: list[tuple[str, float]] = []
    start = trio.current_time()
    clock.call_later(3, recorder(calls, "c"))
    clock.call_later(1, recorder(calls, "a"))
    clock.call_later(2, recorder(calls, "b"))
    await trio.sleep(5)
    assert [name for name, _ in calls] == ["a", "b", "c"]
    assert [round(at - start, 6) for _, at in calls] == [1, 2, 3]
    assert len(clock) == 0


async def test_an_earlier_booking_wakes_the_sleeping_clock(autojump_clock: trio.testing.MockClock, clock: Clock) -> None:
    calls: list[tuple[str, float]] = []
    start = trio.current_time()
    clock.call_later(100, recorder(calls, "late"))
    await trio.sleep(1)  # the clock now sleeps until t=100
    clock.call_later(1, recorder(calls, "early"))
    await trio.sleep(2)
    assert calls == [("early", pytest.approx(start + 2))]


async def test_cancelled_ticket_is_not_called_and_lets_go(autojump_clock: trio.testing.MockClock, clock: Clock) -> None:
    calls: list[tuple[str, float]] = []
    ticket = clock.call_later(1, recorder(calls, "x"))
    ticket.cancel()
    assert ticket.due is None  # the callback (and what it holds) is not kept
    await trio.sleep(2)
    assert calls == []
    assert len(clock) == 0


async def test_earlier_booking_supersedes_and_later_one_is_ignored(autojump_clock: trio.testing.MockClock, clock: Clock) -> None:
    calls: list[float] = []
    start = trio.current_time()

    def due() -> None:
        calls.append(trio.current_time() - start)

    ticket = Ticket(due)
    clock.book(ticket, start + 5)
    clock.book(ticket, start + 2)  # earlier: replaces the booking at 5
    clock.book(ticket, start + 8)  # later than the one in force: ignored
    await trio.sleep(10)
    assert calls == [pytest.approx(2)]


async def test_recurring_ticket_books_itself_again(autojump_clock: trio.testing.MockClock, clock: Clock) -> None:
    start = trio.current_time()
    calls: list[float] = []

    def due() -> float | None:
        calls.append(trio.current_time() - start)
        return None if len(calls) == 3 else trio.current_time() + 10

    clock.book(Ticket(due), start + 10)
    await trio.sleep(100)
    assert calls == [pytest.approx(10), pytest.approx(20), pytest.approx(30)]


async def test_a_failing_callback_does_not_stop_the_others(autojump_clock: trio.testing.MockClock, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[str, float]] = []

    def broken() -> None:
        raise RuntimeError("boom")

    clock.call_later(1, broken)
    clock.call_later(2, recorder(calls, "after"))
    with caplog.at_level(logging.ERROR, logger="rtserver.engineio"):
        await trio.sleep(3)
    assert [name for name, _ in calls] == ["after"]
    assert "timer callback failed" in caplog.text


async def test_cancelled_far_bookings_do_not_pile_up(autojump_clock: trio.testing.MockClock, clock: Clock) -> None:
    # Connections that come and go, each with a token expiring in a month:
    # their cancelled expiry bookings must not stay in the heap for a month.
    month = 30 * 24 * 3600.0
    fired: list[int] = []
    live = [clock.call_later(month, functools.partial(fired.append, i)) for i in range(100)]
    for _ in range(50):
        for ticket in [clock.call_later(month, lambda: None) for _ in range(200)]:
            ticket.cancel()
    assert len(clock) < 3 * (len(live) + 1024)
    await trio.sleep(month + 1)
    assert sorted(fired) == list(range(100))  # the live ones all survived the rebuilds
    assert len(clock) == 0


async def test_superseded_bookings_are_accounted(autojump_clock: trio.testing.MockClock, clock: Clock) -> None:
    start = trio.current_time()
    calls: list[float] = []
    tickets = [Ticket(lambda: calls.append(trio.current_time() - start)) for _ in range(3000)]
    for ticket in tickets:
        for delay in (500, 400, 300, 200, 100):  # each earlier one supersedes the last
            clock.book(ticket, start + delay)
    assert len(clock) <= 2 * 3000 + 1024
    await trio.sleep(600)
    assert len(calls) == 3000 and all(at == pytest.approx(100) for at in calls)
    assert len(clock) == 0


async def test_a_big_batch_lets_other_tasks_run(autojump_clock: trio.testing.MockClock, clock: Clock) -> None:
    # Thousands of sessions due at the same moment are served in batches,
    # with other tasks running in between.
    order: list[str] = []
    for _ in range(1000):
        clock.call_later(1, lambda: order.append("timer"))

    async def other() -> None:
        await trio.sleep(1)
        while order.count("timer") < 1000:
            order.append("other")
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await trio.sleep(2)
    assert order.count("timer") == 1000
    longest = max(len(run) for run in "".join("t" if e == "timer" else " " for e in order).split())
    # Never all at once: at most two batches of 256 meet end to end (trio may
    # run the clock last in one scheduling round and first in the next).
    assert longest <= 2 * 256
