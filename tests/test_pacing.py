"""``RateLimiter`` and ``ConcurrencyLimit``: the GCRA bound, waits, pauses, bulkheads, AIMD."""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import logging
import math
import pickle
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _pacing_clocks import SteppedClock, VirtualClock, run_queue_through_a_pause
from resilient import (
    CircuitBreaker,
    ConcurrencyLimit,
    ConcurrencyLimitExceeded,
    ErrorClass,
    MemoryPacingStore,
    PacingStore,
    RateLimiter,
    RateLimitExceeded,
    classify,
    execute_task_safely,
    execute_task_safely_async,
    pacing,
    retry,
    run_tasks,
    run_tasks_async,
)
from resilient.pacing import RatePolicy, Reservation
from resilient.testing import ManualClock

# --- helpers --------------------------------------------------------------------------


class CountingStore(MemoryPacingStore):
    """A MemoryPacingStore that counts its calls, to show how many round trips an acquire costs."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def rate_reserve(
        self, name: str, policy: RatePolicy, cost: float, max_wait: float, now: float
    ) -> Reservation:
        self.calls.append("rate_reserve")
        return super().rate_reserve(name, policy, cost, max_wait, now)

    async def rate_reserve_async(
        self, name: str, policy: RatePolicy, cost: float, max_wait: float, now: float
    ) -> Reservation:
        self.calls.append("rate_reserve_async")
        return super().rate_reserve(name, policy, cost, max_wait, now)


class Response:
    """The shape of a requests/httpx response, as far as pacing reads one."""

    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}


class HTTPError(Exception):
    """An error carrying a response, like requests' and httpx's."""

    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"status {status_code}")
        self.response = Response(status_code, headers)


def limiter_on(clock: ManualClock, shared: bool, **options: Any) -> RateLimiter:
    """A limiter in process, or one going through a MemoryPacingStore."""
    if shared:
        return RateLimiter(clock=clock, store=MemoryPacingStore(), name="shared", **options)
    return RateLimiter(clock=clock, **options)


def run_in_threads(work: Callable[[], None], count: int) -> None:
    """Run *work* in *count* threads released together; re-raise any error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            barrier.wait(timeout=10)
            work()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors


# --- the GCRA bound -------------------------------------------------------------------

operations = st.lists(
    st.tuples(
        st.sampled_from(["try", "acquire", "acquire_timeout", "pause"]),
        st.floats(min_value=0.0, max_value=3.0),  # the gap before the operation
        st.integers(min_value=1, max_value=4),  # cost
        st.floats(min_value=0.0, max_value=2.0),  # a timeout or a pause
    ),
    max_size=60,
)


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
@settings(max_examples=150)
@given(
    ops=operations,
    rate=st.integers(min_value=1, max_value=20),
    per=st.sampled_from([0.5, 1.0, 60.0]),
    burst=st.integers(min_value=4, max_value=10),
)
def test_admitted_units_never_exceed_burst_plus_rate_over_any_interval(
    shared: bool, ops: list[tuple[str, float, int, float]], rate: int, per: float, burst: int
) -> None:
    """For any schedule of acquires, costs and pauses: at most burst + rate*t/per units in t."""
    clock = ManualClock()
    limiter = limiter_on(clock, shared, rate=rate, per=per, burst=burst)
    admitted: list[tuple[float, int]] = []  # (when the caller proceeded, cost)
    for kind, gap, cost, extra in ops:
        clock.advance(gap)
        if kind == "try":
            if limiter.try_acquire(cost):
                admitted.append((clock.monotonic(), cost))
        elif kind == "acquire":
            limiter.acquire(cost)
            admitted.append((clock.monotonic(), cost))
        elif kind == "acquire_timeout":
            try:
                limiter.acquire(cost, timeout=extra)
            except RateLimitExceeded:
                pass
            else:
                admitted.append((clock.monotonic(), cost))
        else:
            limiter.pause(extra)
    times = [when for when, _ in admitted]
    assert times == sorted(times)
    for i, (start, _) in enumerate(admitted):
        units = 0
        for end, cost in admitted[i:]:
            units += cost
            assert units <= burst + rate * (end - start) / per + 1e-6


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
def test_sixteen_threads_hammering_try_acquire_never_exceed_the_bound(shared: bool) -> None:
    """16 threads, 3 try_acquire each per step of a ManualClock: over every run of steps the
    admitted count stays within burst + rate * t / per, and reaches it (nothing lost)."""
    clock = ManualClock()
    limiter = limiter_on(clock, shared, rate=7, per=1.0, burst=5)
    steps, step = 60, 0.05
    counts = [0] * steps
    lock = threading.Lock()
    barrier = threading.Barrier(17, timeout=30)

    def hammer() -> None:
        for index in range(steps):
            barrier.wait()
            admitted = sum(limiter.try_acquire() for _ in range(3))
            with lock:
                counts[index] += admitted
            barrier.wait()

    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for thread in threads:
        thread.start()
    for _ in range(steps):
        barrier.wait()  # the threads take their turns at this instant
        barrier.wait()
        clock.advance(step)
    for thread in threads:
        thread.join(timeout=30)
    for first in range(steps):
        for last in range(first, steps):
            bound = 5 + 7 * (last - first) * step
            assert sum(counts[first : last + 1]) <= bound + 1e-9
    assert sum(counts) == math.floor(5 + 7 * (steps - 1) * step + 1e-9)


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
def test_starts_full_without_first_period_overshoot(shared: bool) -> None:
    """A fresh limiter admits its burst at once, then the rate: never a second burst in period one."""
    clock = ManualClock()
    limiter = limiter_on(clock, shared, rate=10, per=1.0, burst=10)
    assert sum(limiter.try_acquire() for _ in range(20)) == 10  # the burst, no more
    admitted = 10
    for _ in range(100):  # poll every 10 ms through the first second
        clock.advance(0.01)
        admitted += sum(limiter.try_acquire() for _ in range(5))
    assert admitted == 10 + 10  # burst + rate * 1 s: aiolimiter admits 20 at once here


def test_waiting_caller_sleeps_once_exactly_until_its_turn() -> None:
    """acquire() reserves its turn and sleeps once, the exact wait, through the clock."""
    clock = ManualClock()
    limiter = RateLimiter(2, per=1.0, clock=clock)
    limiter.acquire()
    limiter.acquire()
    limiter.acquire(1)
    assert clock.sleeps == [0.5, 0.5]
    assert clock.monotonic() == 1.0


def test_waiting_callers_queue_in_order_of_arrival() -> None:
    """Three callers arriving together are admitted one interval apart."""
    clock = ManualClock()
    limiter = RateLimiter(1, per=2.0, clock=clock, store=MemoryPacingStore(), name="q")
    waits = []
    for _ in range(3):
        reservation = limiter.store.rate_reserve("q", RatePolicy(1, 2.0, 1), 1, math.inf, 0.0)  # type: ignore[union-attr]
        assert reservation.admitted
        waits.append(reservation.wait)
    assert waits == [0.0, 2.0, 4.0]


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
def test_timeout_refuses_at_once_with_the_wait_as_retry_after(shared: bool) -> None:
    """A wait longer than timeout raises at once: nothing slept, nothing reserved."""
    clock = ManualClock()
    limiter = limiter_on(clock, shared, rate=1, per=4.0, burst=1)
    limiter.acquire()
    clock.advance(1.0)
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.acquire(timeout=2.5)
    assert caught.value.retry_after == pytest.approx(3.0)
    assert caught.value.allowed == 2.5
    assert caught.value.limiter == limiter.name
    assert clock.sleeps == []
    assert clock.monotonic() == 1.0
    limiter.acquire(timeout=3.0)  # the refusal took nothing: the turn at t=4 is still free
    assert clock.sleeps == [pytest.approx(3.0)]


def test_timeout_accepts_a_timedelta() -> None:
    """timeout= takes a timedelta as well as seconds."""
    clock = ManualClock()
    limiter = RateLimiter(1, clock=clock)
    limiter.acquire()
    with pytest.raises(RateLimitExceeded):
        limiter.acquire(timeout=datetime.timedelta(milliseconds=500))
    limiter.acquire(timeout=datetime.timedelta(seconds=1))


def test_enclosing_deadline_bounds_the_wait() -> None:
    """Under @retry(deadline=...), a wait past the time left is refused at once."""
    clock = ManualClock()
    limiter = RateLimiter(1, per=10.0, clock=clock)
    limiter.acquire()
    seen: list[RateLimitExceeded] = []

    @retry(deadline=3.0, max_retries=0, clock=clock)
    def call() -> None:
        try:
            limiter.acquire()
        except RateLimitExceeded as exc:
            seen.append(exc)
            raise

    with pytest.raises(RateLimitExceeded):
        call()
    assert seen[0].allowed == pytest.approx(3.0)
    assert seen[0].retry_after == pytest.approx(10.0)
    assert clock.sleeps == []


def test_try_acquire_never_waits() -> None:
    """try_acquire answers at once and takes nothing when it says no."""
    clock = ManualClock()
    limiter = RateLimiter(1, per=1.0, burst=2, clock=clock)
    assert limiter.try_acquire(2)
    assert not limiter.try_acquire()
    clock.advance(1.0)
    assert limiter.try_acquire()
    assert clock.sleeps == []


def test_cost_above_burst_is_refused_at_the_call() -> None:
    """A cost above burst could never be admitted: ValueError naming cost, at once."""
    limiter = RateLimiter(100, burst=10, clock=ManualClock())
    for call in (limiter.acquire, limiter.try_acquire):
        with pytest.raises(ValueError, match=r"cost must be <= burst \(10\).*got 11"):
            call(11)


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, 10**400, "1", True, None])
def test_bad_cost_is_refused_naming_it(bad: object) -> None:
    """Zero, negative, NaN, infinite (or an int too large for a float) or non-numbers:
    refused, naming cost and the value."""
    limiter = RateLimiter(1, clock=ManualClock())
    with pytest.raises((TypeError, ValueError), match=r"cost must be .*got"):
        limiter.acquire(bad)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError), match=r"cost must be"):
        limiter.refund(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
def test_refund_gives_units_back(shared: bool) -> None:
    """A token estimate refunded by the unused part is admitted again at once."""
    clock = ManualClock()
    limiter = limiter_on(clock, shared, rate=1000, per=60.0, burst=1000)
    limiter.acquire(800)  # the estimate
    assert not limiter.try_acquire(500)
    limiter.refund(600)  # only 200 were used
    assert limiter.try_acquire(500)
    assert clock.sleeps == []


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
@pytest.mark.parametrize("form", ["sync", "async"])
@pytest.mark.parametrize("take", ["acquire", "try_acquire()", "try_acquire(1.0)"])
def test_refund_gives_back_one_unit_however_it_was_taken(
    take: str, form: str, shared: bool
) -> None:
    """One unit taken by acquire, try_acquire() (its fast path) or try_acquire(1.0), in a
    thread or task with no acquire before: refund gives it back, and only it."""
    clock = ManualClock()
    limiter = limiter_on(clock, shared, rate=1, per=60.0, burst=3)

    def elsewhere() -> bool:
        """A try_acquire by another thread or task: it leaves this one's record alone."""
        return contextvars.copy_context().run(limiter.try_acquire)

    def take_one() -> None:
        if take == "try_acquire()":
            assert limiter.try_acquire()
        elif take == "try_acquire(1.0)":
            assert limiter.try_acquire(1.0)
        else:
            limiter.acquire()

    contextvars.copy_context().run(limiter.acquire, 2)  # someone else's: 1 unit left
    if form == "sync":
        take_one()
        assert not elsewhere()
        limiter.refund(2)  # more than it took: 1 comes back
    else:

        async def main() -> None:
            if take == "acquire":
                await limiter.acquire_async()
            else:
                take_one()
            assert not elsewhere()
            await limiter.refund_async(2)

        asyncio.run(main())
    assert [elsewhere(), elsewhere()] == [True, False]
    assert clock.sleeps == []


def test_refund_never_fills_beyond_the_burst() -> None:
    """Refunding into a full limiter adds nothing: the burst stays the ceiling."""
    clock = ManualClock()
    limiter = RateLimiter(1, burst=3, clock=clock)
    limiter.refund(3)
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_refund_gives_back_only_what_later_turns_leave_free() -> None:
    """A refund while a later caller queues: that caller keeps its turn and the limiter
    never exceeds the rate; a refund with nobody behind comes back whole."""
    clock = ManualClock()
    limiter = RateLimiter(1, burst=10, clock=clock)
    turns: dict[str, Any] = {}

    def acquire(who: str, cost: float) -> float:
        """acquire as caller *who* (a thread or task of its own): its last acquire, kept."""
        before = len(clock.sleeps)
        limiter.acquire(cost)
        turns[who] = limiter._recall()[0]
        return sum(clock.sleeps[before:])

    def refund(who: str, units: float) -> None:
        limiter._remember(turns[who])  # as *who*'s thread would hold it
        limiter.refund(units)

    assert acquire("a", 10) == 0.0  # the whole burst, at once
    clock.advance(0.1)
    refund("a", 8)  # a used 2: nobody behind it, they come back
    assert acquire("b", 8) == 0.0
    # Now c queues behind b's units; b's refund cannot move c's turn, so it frees nothing
    # that a newcomer could take before c (who would then be admitted together with it).
    assert acquire("c", 10) == pytest.approx(9.9)  # c sleeps towards its turn at 10 s
    refund("b", 8)
    with pytest.raises(RateLimitExceeded) as refused:
        limiter.acquire(1, timeout=0.0)
    assert refused.value.retry_after == pytest.approx(10.0 + 1.0 - clock.monotonic())


def test_refund_gives_back_at_most_what_the_acquire_took() -> None:
    """refund(500) after acquire(100): 100 come back, not 500."""
    clock = ManualClock()
    limiter = RateLimiter(10, burst=1000, clock=clock)
    limiter.acquire(1000)
    clock.advance(10.0)  # 100 units refilled
    limiter.acquire(100)
    limiter.refund(500)
    assert limiter.try_acquire(100)  # the 100 given back
    assert not limiter.try_acquire(1)


def _available(limiter: RateLimiter) -> int:
    """Units admitted at once now, counted by a thread of its own (no time passes)."""
    taken: list[bool] = []

    def count() -> None:
        while len(taken) < 20 and limiter.try_acquire():
            taken.append(True)

    thread = threading.Thread(target=count)
    thread.start()
    thread.join()
    return len(taken)


def _someone_else_takes(limiter: RateLimiter, cost: float) -> None:
    thread = threading.Thread(target=limiter.acquire, args=(cost,))
    thread.start()
    thread.join()


@pytest.fixture(params=["asyncio's", "none"], ids=["task-registry", "no-task-registry"])
def task_registry(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where asyncio keeps one dict of the tasks running (Python 3.10 to 3.13), an acquire
    reads it first; without one (3.14) every acquire asks for the current task."""
    if request.param == "none":
        monkeypatch.setattr(pacing, "_running_tasks", pacing._ANY_TASK)


async def _take(limiter: RateLimiter, how: str, cost: float) -> None:
    if how == "acquire_async":
        await limiter.acquire_async(cost)
    elif how == "acquire":
        limiter.acquire(cost)
    else:
        assert limiter.try_acquire(cost)


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
@pytest.mark.parametrize("how", ["try_acquire", "acquire", "acquire_async"])
@pytest.mark.parametrize("depth", [1, 2], ids=["child", "grandchild"])
@pytest.mark.parametrize("parent_refunds", [False, True], ids=["child-only", "then-parent"])
@pytest.mark.usefixtures("task_registry")
def test_a_task_created_after_an_acquire_refunds_it_once_then_nobody_can(
    parent_refunds: bool, depth: int, how: str, shared: bool
) -> None:
    """A task (or a task it creates) started after its parent's acquire shares its record:
    its refund gives the parent's 2 units back, once; its second refund and the parent's
    own refund afterwards give back nothing more."""
    clock = ManualClock()
    limiter = limiter_on(clock, shared, rate=1, per=60.0, burst=10)
    _someone_else_takes(limiter, 5)

    async def descendant(level: int) -> None:
        if level < depth:
            await asyncio.create_task(descendant(level + 1))
            return
        await limiter.refund_async(2)
        limiter.refund(2)

    async def parent() -> None:
        await _take(limiter, how, 2)
        await asyncio.create_task(descendant(1))
        if parent_refunds:
            await limiter.refund_async(2)
            limiter.refund(2)

    asyncio.run(parent())
    assert _available(limiter) == 5  # 10 - 5 taken by someone else; the 2 came back once


_HELPERS = ["gather", "wait_for", "create_task", "to_thread"]


async def _refund_through(limiter: RateLimiter, helper: str, cost: float) -> None:
    if helper == "gather":
        await asyncio.gather(limiter.refund_async(cost))
    elif helper == "wait_for":
        await asyncio.wait_for(limiter.refund_async(cost), 10.0)
    elif helper == "create_task":
        await asyncio.create_task(limiter.refund_async(cost))
    else:
        await asyncio.to_thread(limiter.refund, cost)


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
@pytest.mark.parametrize("how", ["try_acquire", "acquire", "acquire_async"])
@pytest.mark.parametrize("helper", _HELPERS)
@pytest.mark.usefixtures("task_registry")
def test_a_refund_through_a_helper_task_or_thread_gives_the_task_s_units_back_once(
    helper: str, how: str, shared: bool
) -> None:
    """acquire(6), then refund(4) run by gather, wait_for, a task or to_thread: the 4 come
    back; the task's own refund(4) afterwards gives only the 2 left, never 8 in all."""
    clock = ManualClock()
    limiter = limiter_on(clock, shared, rate=1, per=60.0, burst=10)
    _someone_else_takes(limiter, 2)

    async def main() -> None:
        await _take(limiter, how, 6)
        await _refund_through(limiter, helper, 4)
        await limiter.refund_async(4)

    asyncio.run(main())
    assert _available(limiter) == 8  # 10 - 2 taken by someone else: all 6 back, not 4 or 10


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
@pytest.mark.parametrize("helper", _HELPERS)
@pytest.mark.usefixtures("task_registry")
def test_helpers_refunding_one_acquire_together_never_give_back_more_than_it_took(
    helper: str, shared: bool
) -> None:
    """Three helpers at once each refund 4 of one acquire(6): 6 come back in all."""
    clock = ManualClock()
    limiter = limiter_on(clock, shared, rate=1, per=60.0, burst=10)
    _someone_else_takes(limiter, 4)

    async def main() -> None:
        await limiter.acquire_async(6)
        await asyncio.gather(*(_refund_through(limiter, helper, 4) for _ in range(3)))

    asyncio.run(main())
    assert _available(limiter) == 6  # 10 - 4 taken by someone else


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
@pytest.mark.parametrize("how", ["try_acquire", "acquire", "acquire_async"])
@pytest.mark.usefixtures("task_registry")
def test_a_task_refunds_its_own_acquire_not_a_sibling_s_taken_since(how: str, shared: bool) -> None:
    """Tasks a and b of one thread take 4 and 3 units in turn; a's refund gives back its 4
    (they end before b's turn), not b's 3."""
    clock = ManualClock()
    limiter = limiter_on(clock, shared, rate=1, per=60.0, burst=10)

    async def main() -> None:
        a_took, b_took = asyncio.Event(), asyncio.Event()

        async def a() -> None:
            await _take(limiter, how, 4)
            a_took.set()
            await b_took.wait()
            limiter.refund(4)

        async def b() -> None:
            await a_took.wait()
            await _take(limiter, how, 3)
            b_took.set()

        await asyncio.gather(a(), b())

    asyncio.run(main())
    assert _available(limiter) == 7  # b's 3 stay taken


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
def test_threads_refund_only_their_own_acquire(shared: bool) -> None:
    """Real threads: a refunds its 4 units although b took 3 after it; a thread that took
    nothing refunds nothing."""
    clock = ManualClock()
    limiter = limiter_on(clock, shared, rate=1, per=60.0, burst=10)
    a_took, b_took = threading.Event(), threading.Event()

    def a() -> None:
        limiter.acquire(4)
        a_took.set()
        assert b_took.wait(10)
        limiter.refund(4)

    def b() -> None:
        assert a_took.wait(10)
        assert limiter.try_acquire(3)
        b_took.set()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    limiter.refund(3)  # this thread took nothing: b's 3 stay taken
    assert _available(limiter) == 7


_SCHEDULES = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "acquire", "acquire", "pause", "cancel"]),
        st.floats(min_value=0.0, max_value=1.0),  # the gap before it
        st.integers(min_value=1, max_value=4),  # cost
        st.floats(min_value=0.0, max_value=1.5),  # how long it holds / a pause
        st.integers(min_value=0, max_value=4),  # units it refunds / whom to cancel
    ),
    max_size=30,
)


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
@settings(max_examples=120, deadline=None)
@given(schedule=_SCHEDULES, rate=st.integers(1, 8), burst=st.integers(4, 8))
def test_the_bound_holds_for_waiters_refunds_pauses_and_cancellations(
    shared: bool, schedule: list[tuple[str, float, int, float, int]], rate: int, burst: int
) -> None:
    """Tasks queue, sleep towards their turns, refund part of what they took, get
    cancelled while waiting, and pauses come in between: the units used over any
    interval never exceed burst + rate * t / per, nobody goes during a pause, and every
    caller not cancelled is admitted."""
    clock = VirtualClock()
    store = MemoryPacingStore() if shared else None
    limiter = RateLimiter(
        rate, burst=burst, clock=clock, store=store, name="api" if shared else None
    )
    used: list[list[float]] = []  # [when admitted, units used]
    pauses: list[tuple[float, float]] = []

    async def caller(cost: int, hold: float, refund: int) -> None:
        await limiter.acquire_async(cost)
        mine = [clock.monotonic(), float(cost)]
        used.append(mine)
        if refund:
            await clock.asleep(hold)  # the call; then the real usage is known
            await limiter.refund_async(refund)
            mine[1] = cost - min(refund, cost)

    async def main() -> None:
        tasks: list[asyncio.Future[None]] = []
        cancelled: set[int] = set()
        now = 0.0
        for kind, gap, cost, extra, pick in schedule:
            now += gap
            await clock.run_until(now)
            if kind == "acquire":
                tasks.append(asyncio.ensure_future(caller(cost, extra, pick)))
            elif kind == "pause":
                await limiter.pause_async(extra)
                pauses.append((now, now + extra))
            else:
                waiting = [i for i, task in enumerate(tasks) if not task.done()]
                if waiting:
                    index = waiting[pick % len(waiting)]
                    cancelled.add(index)
                    tasks[index].cancel()
            await clock.settle()
        await clock.run_until(now + 1000.0)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for index, outcome in enumerate(outcomes):
            assert outcome is None or (
                index in cancelled and isinstance(outcome, asyncio.CancelledError)
            ), outcome

    asyncio.run(main())
    for i, (start, _) in enumerate(used):
        units = 0.0
        for end, amount in used[i:]:
            units += amount
            assert units <= burst + rate * (end - start) + 1e-6, (start, end, units)
    for begin, end in pauses:
        assert not [when for when, _ in used if begin + 1e-9 < when < end - 1e-9]


# --- pause ----------------------------------------------------------------------------


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
def test_pause_admits_nothing_until_it_ends(shared: bool) -> None:
    """pause(5): refused meanwhile; a waiting caller sleeps until it ends, exactly."""
    clock = ManualClock()
    limiter = limiter_on(clock, shared, rate=10, burst=10)
    limiter.pause(5.0)
    assert not limiter.try_acquire()
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.acquire(timeout=4.0)
    assert caught.value.retry_after == pytest.approx(5.0)
    limiter.acquire()
    assert clock.sleeps == [pytest.approx(5.0)]


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
def test_pause_only_ever_extends(shared: bool) -> None:
    """A shorter pause during a longer one changes nothing."""
    clock = ManualClock()
    limiter = limiter_on(clock, shared, rate=10, burst=10)
    limiter.pause(datetime.timedelta(seconds=5))
    clock.advance(1.0)
    limiter.pause(1.0)
    clock.advance(2.0)
    assert not limiter.try_acquire()
    clock.advance(2.0)
    assert limiter.try_acquire()


def test_pause_after_a_burst_does_not_refill_it() -> None:
    """The units taken before a pause stay taken: no fresh burst when it ends early."""
    clock = ManualClock()
    limiter = RateLimiter(1, burst=5, clock=clock)
    assert all(limiter.try_acquire() for _ in range(5))
    limiter.pause(0.5)
    clock.advance(1.0)
    assert [limiter.try_acquire() for _ in range(2)] == [True, False]


def test_pause_through_a_store_holds_for_every_limiter_sharing_the_name() -> None:
    """One process's pause stops the others at their next acquire."""
    clock = ManualClock()
    store = MemoryPacingStore()
    one = RateLimiter(10, burst=10, name="api", store=store, clock=clock)
    two = RateLimiter(10, burst=10, name="api", store=store, clock=clock)
    other = RateLimiter(10, burst=10, name="other", store=store, clock=clock)
    one.pause(3.0)
    assert not two.try_acquire()
    assert other.try_acquire()


def test_pause_logs_a_line_that_reads_on_its_own(caplog: pytest.LogCaptureFixture) -> None:
    """The pause is logged at INFO once, with what, which limiter, how long, what next."""
    limiter = RateLimiter(1, name="openai", clock=ManualClock())
    with caplog.at_level(logging.INFO, logger="resilient.pacing"):
        limiter.pause(2.0)
        limiter.pause(1.0)  # inside the first: nothing new to say
    assert [r.getMessage() for r in caplog.records] == [
        "rate limiter 'openai' paused for 2 s: no call is admitted until then"
    ]
    assert caplog.records[0].limiter == "openai"  # type: ignore[attr-defined]
    assert caplog.records[0].pause == 2.0  # type: ignore[attr-defined]


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
def test_pause_extended_while_in_force_is_logged_once(
    shared: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Three 429s 10 ms apart: one INFO line; a pause after that one ended: a second."""
    clock = ManualClock()
    limiter = limiter_on(clock, shared, rate=10, burst=10)
    with caplog.at_level(logging.INFO, logger="resilient.pacing"):
        for _ in range(3):
            limiter.pause(2.0)  # each extends the pause by 10 ms
            clock.advance(0.01)
        clock.advance(3.0)  # the pause has ended
        limiter.pause(1.0)
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 2
    assert all("paused for" in r.getMessage() for r in infos)
    assert [r.pause for r in infos] == [2.0, 1.0]  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, "2", True])
def test_bad_pause_is_refused_naming_seconds(bad: object) -> None:
    """pause() refuses negative, NaN, infinite and non-numbers, naming seconds."""
    limiter = RateLimiter(1, clock=ManualClock())
    with pytest.raises((TypeError, ValueError), match=r"seconds must be"):
        limiter.pause(bad)  # type: ignore[arg-type]


# --- a pause holds the callers already waiting -----------------------------------------


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
def test_a_pause_holds_callers_already_waiting_for_their_turn(shared: bool) -> None:
    """Five threads asleep towards their turns: a 1 s pause holds them all, and the
    schedule resumes after it as it was (one every 0.05 s), never two at once."""
    clock = SteppedClock(threads=6)
    store = MemoryPacingStore() if shared else None
    limiter = RateLimiter(20, name="api" if shared else None, store=store, clock=clock)
    went = run_queue_through_a_pause(limiter, clock, limiter)
    assert went[0] == 0.0
    assert went[1:] == pytest.approx([1.05, 1.1, 1.15, 1.2, 1.25], abs=0.011)
    assert not limiter.try_acquire()  # newcomers queue behind them


def test_a_pause_through_a_store_holds_the_waiters_of_every_limiter_sharing_it() -> None:
    """The pause of another limiter (another process's) holds this one's sleeping callers."""
    clock = SteppedClock(threads=6)
    store = MemoryPacingStore()
    limiter = RateLimiter(20, name="api", store=store, clock=clock)
    other = RateLimiter(20, name="api", store=store, clock=clock)
    went = run_queue_through_a_pause(limiter, clock, other)
    assert went[1:] == pytest.approx([1.05, 1.1, 1.15, 1.2, 1.25], abs=0.011)


class PauseWhileAsleep(ManualClock):
    """A ManualClock on which a 2 s pause is ordered halfway through the first sleep."""

    __slots__ = ("limiter",)

    def __init__(self) -> None:
        super().__init__()
        self.limiter: RateLimiter | None = None

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds / 2)
        if self.limiter is not None and len(self.sleeps) == 1:
            self.limiter.pause(2.0)  # the 429 arrives while the caller sleeps
        self.advance(seconds / 2)


def test_a_pause_moving_a_turn_past_the_timeout_refuses_and_gives_it_back() -> None:
    """A caller that allowed 1.5 s, its turn moved 2 s later by a pause: refused at its old
    turn, with the wait as retry_after, and its turn given back to the next caller."""
    clock = PauseWhileAsleep()
    limiter = clock.limiter = RateLimiter(1, clock=clock)
    assert limiter.try_acquire()
    with pytest.raises(RateLimitExceeded) as refused:
        limiter.acquire(timeout=1.5)  # its turn at 1 s, moved to 3 s at 0.5 s
    assert refused.value.retry_after == pytest.approx(2.0)
    with pytest.raises(RateLimitExceeded) as next_turn:
        limiter.acquire(timeout=0.0)
    assert next_turn.value.retry_after == pytest.approx(2.0)  # not 3.0: the turn came back


def test_async_waiters_are_held_by_a_pause() -> None:
    """acquire_async: tasks asleep towards their turns wait the pause, then go in order."""
    clock = VirtualClock()
    limiter = RateLimiter(20, clock=clock)
    went: list[float] = []

    async def caller() -> None:
        await limiter.acquire_async()
        went.append(clock.monotonic())

    async def main() -> None:
        tasks = [asyncio.ensure_future(caller()) for _ in range(6)]
        await clock.settle()
        await limiter.pause_async(1.0)
        await clock.run_until(2.0)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert went == pytest.approx([0.0, 1.05, 1.1, 1.15, 1.2, 1.25])


# --- the store protocol ---------------------------------------------------------------


def test_an_admitted_acquire_is_one_store_call_even_when_it_waits() -> None:
    """Reservation: one call per admitted acquire; the waiting caller sleeps and asks no more."""
    clock = ManualClock()
    store = CountingStore()
    limiter = RateLimiter(1, name="api", store=store, clock=clock)
    limiter.acquire()
    limiter.acquire()
    assert store.calls == ["rate_reserve", "rate_reserve"]
    assert clock.sleeps == [1.0]


def test_limiters_sharing_a_store_and_name_share_one_rate() -> None:
    """Two limiters, one store, one name: the second finds the burst spent."""
    clock = ManualClock()
    store = MemoryPacingStore()
    one = RateLimiter(1, burst=2, name="api", store=store, clock=clock)
    two = RateLimiter(1, burst=2, name="api", store=store, clock=clock)
    assert one.try_acquire()
    assert two.try_acquire()
    assert not one.try_acquire()
    assert not two.try_acquire()


def test_memory_store_is_a_pacing_store() -> None:
    """MemoryPacingStore implements the protocol (checked at run time too)."""
    assert isinstance(MemoryPacingStore(), PacingStore)
    assert not isinstance(object(), PacingStore)


def test_a_store_needs_a_name() -> None:
    """store= without name= is refused at construction."""
    with pytest.raises(ValueError, match="pass name= with store="):
        RateLimiter(1, store=MemoryPacingStore())
    with pytest.raises(ValueError, match="pass name= with store="):
        ConcurrencyLimit(1, store=MemoryPacingStore())


def test_a_store_missing_methods_is_refused_naming_them() -> None:
    """Something that is not a PacingStore is refused with what it lacks."""
    with pytest.raises(TypeError, match=r"store must implement PacingStore.*rate_reserve"):
        RateLimiter(1, store=object(), name="x")  # type: ignore[arg-type]


# --- call forms -----------------------------------------------------------------------


def test_with_and_decorator_acquire_cost_one() -> None:
    """with limiter: and @limiter each take one unit before the body runs."""
    clock = ManualClock()
    limiter = RateLimiter(1, clock=clock)

    @limiter
    def work(x: int) -> int:
        return x * 2

    with limiter:
        pass
    assert work(2) == 4
    assert clock.sleeps == [1.0]
    assert work.__name__ == "work"


def test_decorator_refuses_generator_functions() -> None:
    """@limiter on a generator function is refused at decoration time, saying why."""

    def gen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator function"):
        RateLimiter(1)(gen)


def test_async_twins_wait_through_asleep() -> None:
    """acquire_async, async with and @limiter on async def wait with clock.asleep."""
    clock = ManualClock()
    limiter = RateLimiter(2, clock=clock)

    @limiter
    async def work() -> str:
        return "done"

    async def main() -> str:
        await limiter.acquire_async()
        async with limiter:
            pass
        return await work()

    assert asyncio.run(main()) == "done"
    assert clock.sleeps == [0.5, 0.5]


def test_async_timeout_refuses_at_once() -> None:
    """acquire_async with a timeout shorter than the wait raises without waiting."""
    clock = ManualClock()
    limiter = RateLimiter(1, per=5.0, clock=clock)

    async def main() -> None:
        await limiter.acquire_async()
        await limiter.acquire_async(timeout=1.0)

    with pytest.raises(RateLimitExceeded) as caught:
        asyncio.run(main())
    assert caught.value.retry_after == pytest.approx(5.0)
    assert clock.sleeps == []


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
def test_async_acquire_through_a_store_awaits_its_twin(shared: bool) -> None:
    """With a store, the async forms await rate_reserve_async, once per admitted acquire."""
    clock = ManualClock()
    store = CountingStore()
    limiter = RateLimiter(1, name="api", store=store, clock=clock)

    async def main() -> None:
        await limiter.acquire_async()
        await limiter.acquire_async()

    asyncio.run(main())
    assert store.calls == ["rate_reserve_async", "rate_reserve_async"]
    assert clock.sleeps == [1.0]


def test_cancelled_wait_gives_the_reservation_back() -> None:
    """A task cancelled while it waits for its turn frees that turn for the next caller.

    The wait is really pending (``HeldClock``: until cancelled) while time stands still,
    so no stall of a busy machine can end it first or move the turns.
    """
    limiter = RateLimiter(1, per=0.2, clock=HeldClock())

    async def main() -> None:
        await limiter.acquire_async()  # the turn at 0
        waiting = asyncio.ensure_future(limiter.acquire_async())  # reserves the turn at 0.2
        await asyncio.sleep(0)
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        with pytest.raises(RateLimitExceeded) as caught:
            await limiter.acquire_async(timeout=0.0)
        # Its turn came back: the next one is one interval after the first, not two.
        assert caught.value.retry_after == pytest.approx(0.2)

    asyncio.run(main())


class HeldClock(ManualClock):
    """A ManualClock whose async waits stay pending until cancelled: turns reserved, not yet used."""

    __slots__ = ()

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.get_running_loop().create_future()  # never resolved


def test_cancelled_wait_behind_others_never_admits_two_in_one_turn() -> None:
    """Cancelling a turn that later turns queue behind leaves it unused, never handed out twice."""
    limiter = RateLimiter(1, per=1.0, clock=HeldClock())

    async def next_turn() -> float:
        with pytest.raises(RateLimitExceeded) as caught:
            await limiter.acquire_async(timeout=0.0)
        return caught.value.retry_after

    async def main() -> None:
        assert limiter.try_acquire()  # the turn at 0
        first = asyncio.ensure_future(limiter.acquire_async())  # reserves the turn at 1
        second = asyncio.ensure_future(limiter.acquire_async())  # reserves the turn at 2
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        # The turn at 2 is still second's: the next one is at 3, not a second caller at 2.
        assert await next_turn() == pytest.approx(3.0)
        second.cancel()  # the last reservation: its turn comes back
        await asyncio.gather(second, return_exceptions=True)
        assert await next_turn() == pytest.approx(2.0)

    asyncio.run(main())


# --- errors ---------------------------------------------------------------------------


def test_errors_are_transient_runtime_errors_that_pickle() -> None:
    """Both are RuntimeError, TRANSIENT, and survive a pickle round trip."""
    rate = RateLimitExceeded("api", 1.5, 1.0, 0.5)
    slots = ConcurrencyLimitExceeded("db", 8, 0.25)
    for error in (rate, slots):
        assert isinstance(error, RuntimeError)
        assert classify(error) is ErrorClass.TRANSIENT
        copy = pickle.loads(pickle.dumps(error))
        assert str(copy) == str(error)
    assert pickle.loads(pickle.dumps(rate)).retry_after == 1.5
    assert slots.retry_after is None
    assert str(rate) == (
        "rate limiter 'api' would admit cost 1 in 1.5 s, more than the 0.5 s allowed; not waiting"
    )
    assert str(slots) == (
        "concurrency limit 'db' had no free slot within 0.25 s (8 of 8 in flight); "
        "not running the call"
    )


def test_pacing_refusals_never_count_as_breaker_failures() -> None:
    """A breaker around paced calls stays closed however often pacing refuses."""
    breaker = CircuitBreaker(failure_threshold=1, name="api")
    limit = ConcurrencyLimit(1)
    limiter = RateLimiter(1, per=60.0, clock=ManualClock())
    limiter.acquire()

    @breaker
    def paced() -> None:
        limiter.acquire(timeout=0.0)

    @breaker
    def bulkheaded() -> None:
        with limit:
            pass

    for _ in range(3):
        with pytest.raises(RateLimitExceeded):
            paced()
        with limit, pytest.raises(ConcurrencyLimitExceeded):
            bulkheaded()
    assert breaker.state == "closed"


# --- construction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate must be a finite number > 0, got 0"),
        ({"rate": -1}, "rate must be a finite number > 0, got -1"),
        ({"rate": math.nan}, "rate must be a finite number > 0, got nan"),
        ({"rate": math.inf}, "rate must be a finite number > 0, got inf"),
        ({"rate": 10**400}, "rate must be a finite number > 0, got an int of about 1e+400"),
        ({"rate": "10"}, "rate must be a number, got '10'"),
        ({"rate": True}, "rate must be a number, got True"),
        ({"rate": 1, "per": 0}, "per must be a finite number > 0, got 0"),
        ({"rate": 1, "per": -1.0}, "per must be a finite number > 0, got -1.0"),
        ({"rate": 1, "per": math.inf}, "per must be a finite number > 0, got inf"),
        ({"rate": 1, "per": "60"}, "per must be a number of seconds, got '60'"),
        ({"rate": 1, "per": 1e12}, "per must be at most 315576000 s"),
        ({"rate": 1, "per": 10**400}, "per must be at most 315576000 s"),
        ({"rate": 1, "burst": 0}, "burst must be a finite number > 0, got 0"),
        ({"rate": 1, "burst": math.nan}, "burst must be a finite number > 0, got nan"),
        ({"rate": 1, "burst": 10**400}, "burst must be a finite number > 0, got an int of about"),
        ({"rate": 1, "burst": False}, "burst must be a number, got False"),
        ({"rate": 1, "burst": 0.5}, "burst must be >= 1, got 0.5"),
        ({"rate": 1, "name": ""}, "name must be a non-empty str, got ''"),
        ({"rate": 1, "name": 3}, "name must be a str, got 3"),
        ({"rate": 1, "clock": object()}, "clock must provide monotonic"),
        ({"rate": 1e-310, "per": 1e6}, "must give a finite interval"),
        # A wait (per / rate a unit, burst * per / rate from empty) past ten years: each
        # was accepted, and the second acquire died with an OverflowError in time.sleep.
        (
            {"rate": 0.01, "per": 3e8},
            "rate, per and burst must give a limiter that refills within 315576000 s "
            "(ten years), got rate=0.01, per=300000000.0, burst=1: burst * per / rate is 3e+10 s",
        ),
        ({"rate": 1e-12}, "got rate=1e-12, per=1.0, burst=1: burst * per / rate is 1e+12 s"),
        ({"rate": 1, "per": 1e8, "burst": 10}, "got rate=1, per=100000000.0, burst=10"),
    ],
)
def test_rate_limiter_refuses_bad_settings_naming_them(
    kwargs: dict[str, Any], message: str
) -> None:
    """Each bad setting fails at construction, naming the parameter and the value."""
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        RateLimiter(**kwargs)


def test_a_rate_limiter_that_refills_in_ten_years_is_accepted_and_waits_that_long() -> None:
    """The bound on burst * per / rate is the bound on every duration: reached, not passed."""
    clock = ManualClock()
    limiter = RateLimiter(2, per=315_576_000.0, burst=2, clock=clock)
    limiter.acquire(2)
    limiter.acquire()
    assert clock.sleeps == [315_576_000.0 / 2]


def test_rate_limiter_reads_back_its_settings() -> None:
    """rate, per (timedelta as seconds), burst and name read back; repr shows them."""
    limiter = RateLimiter(500, per=datetime.timedelta(minutes=1), burst=20, name="openai")
    assert (limiter.rate, limiter.per, limiter.burst, limiter.name) == (500.0, 60.0, 20, "openai")
    assert repr(limiter) == "RateLimiter(500, per=60, burst=20, name='openai')"
    assert RateLimiter(1).name.startswith("limiter-")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0}, "limit must be >= 1, got 0"),
        ({"limit": -2}, "limit must be >= 1, got -2"),
        ({"limit": 2.5}, "limit must be an int >= 1, got 2.5"),
        ({"limit": True}, "limit must be an int >= 1, got True"),
        ({"limit": 10**400}, "limit must be an int that a float can hold, got an int of about"),
        ({"limit": 4, "max_limit": 10**400}, "max_limit must be an int that a float can hold"),
        ({"limit": 4, "min_limit": 0}, "min_limit must be >= 1, got 0"),
        ({"limit": 4, "min_limit": 5}, r"min_limit must be <= limit \(4\), got 5"),
        ({"limit": 4, "max_limit": 3}, r"max_limit must be >= limit \(4\), got 3"),
        ({"limit": 4, "max_limit": 9.0}, "max_limit must be an int >= 1, got 9.0"),
        ({"limit": 4, "max_wait": -1}, "max_wait must be a finite number >= 0"),
        ({"limit": 4, "max_wait": math.nan}, "max_wait must be a finite number"),
        ({"limit": 4, "max_wait": math.inf}, "max_wait must be a finite number"),
        ({"limit": 4, "max_wait": "1"}, "max_wait must be a number of seconds"),
        ({"limit": 4, "lease_ttl": 0}, "lease_ttl must be a finite number > 0, got 0"),
        ({"limit": 4, "lease_ttl": math.inf}, "lease_ttl must be a finite number > 0"),
        ({"limit": 4, "max_wait": 1e12}, "max_wait must be at most 315576000 s"),
        ({"limit": 4, "adaptive": 1}, "adaptive must be a bool, got 1"),
        ({"limit": 4, "classifier": 3}, "classifier must be callable, got 3"),
        ({"limit": 4, "name": ""}, "name must be a non-empty str"),
    ],
)
def test_concurrency_limit_refuses_bad_settings_naming_them(
    kwargs: dict[str, Any], message: str
) -> None:
    """Each bad setting fails at construction, naming the parameter and the value."""
    with pytest.raises((TypeError, ValueError), match=message):
        ConcurrencyLimit(**kwargs)


# --- ConcurrencyLimit -----------------------------------------------------------------


def test_limit_and_in_flight_read_back() -> None:
    """.limit and .in_flight say what is allowed and what is running."""
    limit = ConcurrencyLimit(3, name="db")
    assert (limit.limit, limit.in_flight) == (3, 0)
    with limit:
        assert limit.in_flight == 1
        assert limit.call(lambda: limit.in_flight) == 2
    assert limit.in_flight == 0
    assert repr(limit) == "ConcurrencyLimit(3, name='db', in_flight=0)"


def test_a_full_limit_refuses_at_once_without_max_wait() -> None:
    """max_wait=0: the call beyond the limit raises ConcurrencyLimitExceeded, not run."""
    limit = ConcurrencyLimit(1, name="db")
    ran = []
    with limit, pytest.raises(ConcurrencyLimitExceeded) as caught:
        limit.call(ran.append, 1)
    assert ran == []
    assert (caught.value.concurrency, caught.value.limit, caught.value.max_wait) == ("db", 1, 0.0)
    assert limit.in_flight == 0


def test_slot_is_given_back_when_the_call_raises() -> None:
    """A failing call frees its slot."""
    limit = ConcurrencyLimit(1)

    def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        limit.call(boom)
    with pytest.raises(KeyError), limit:
        raise KeyError("y")
    assert limit.in_flight == 0
    assert limit.call(lambda: "ok") == "ok"


def test_call_refuses_coroutine_functions_pointing_to_call_async() -> None:
    """call() on an async def says to await call_async instead."""

    async def work() -> None:
        pass

    with pytest.raises(TypeError, match="call_async"):
        ConcurrencyLimit(1).call(work)  # type: ignore[arg-type]


def test_sixteen_threads_never_exceed_the_limit() -> None:
    """16 real threads hammering a limit of 3 (waiting for slots): never more than 3 inside.

    The first three in hold their slots until all three are in, so the limit is full
    with the others trying to enter, whatever the scheduler does (on a busy machine a
    thread may otherwise run its whole loop alone). How long a thread waits is not the
    claim: a freed slot goes to whichever thread takes it first, so one that keeps
    losing that race waits on, up to a max_wait longer than the test may take.
    """
    limit = ConcurrencyLimit(3, max_wait=60.0)
    inside = 0
    peak = 0
    entries = 0
    guard = threading.Lock()
    full = threading.Barrier(3)

    def work() -> None:
        nonlocal inside, peak, entries
        for _ in range(50):
            with limit:
                with guard:
                    inside += 1
                    peak = max(peak, inside)
                    entries += 1
                    first = entries <= 3
                if first:
                    full.wait(timeout=10)  # the three slots held at once
                time.sleep(0)  # let another thread run while the slot is held
                with guard:
                    inside -= 1

    run_in_threads(work, 16)
    assert peak == 3
    assert entries == 16 * 50
    assert limit.in_flight == 0


def test_sixteen_threads_refused_beyond_the_limit_without_waiting() -> None:
    """16 threads, limit 4, max_wait 0: at most 4 inside; the others refused, none lost."""
    limit = ConcurrencyLimit(4)
    inside = 0
    peak = 0
    outcomes = {"ran": 0, "refused": 0}
    guard = threading.Lock()
    release = threading.Event()

    def work() -> None:
        nonlocal inside, peak
        try:
            with limit:
                with guard:
                    inside += 1
                    peak = max(peak, inside)
                    outcomes["ran"] += 1
                release.wait(0.05)
                with guard:
                    inside -= 1
        except ConcurrencyLimitExceeded:
            with guard:
                outcomes["refused"] += 1

    run_in_threads(work, 16)
    assert peak <= 4
    assert outcomes["ran"] + outcomes["refused"] == 16
    assert outcomes["ran"] >= 4


def test_a_waiting_thread_gets_the_slot_a_release_frees() -> None:
    """With max_wait, a caller waits for the slot and gets it when the holder leaves."""
    limit = ConcurrencyLimit(1, max_wait=5.0)
    entered = threading.Event()
    got: list[float] = []

    def holder() -> None:
        with limit:
            entered.set()
            time.sleep(0.02)

    thread = threading.Thread(target=holder)
    thread.start()
    entered.wait(5)
    started = time.monotonic()
    with limit:
        got.append(time.monotonic() - started)
    thread.join()
    assert got
    assert got[0] < 4.0


def test_a_thread_interrupted_as_it_is_woken_passes_the_slot_on() -> None:
    """Ctrl-C landing on a waiting thread just after its wake-up: the next waiter gets the slot."""
    limit = ConcurrencyLimit(1, max_wait=10.0)
    waiting = {"first": threading.Event(), "second": threading.Event()}

    class InterruptedOnWakeUp(threading.Condition):
        def wait(self, timeout: float | None = None) -> bool:
            name = threading.current_thread().name
            waiting[name].set()
            woken = super().wait(timeout)
            if woken and name == "first":
                raise KeyboardInterrupt
            return woken

    limit._cond = InterruptedOnWakeUp(limit._lock)  # pyright: ignore[reportPrivateUsage]
    outcomes: dict[str, str] = {}

    def enter() -> None:
        name = threading.current_thread().name
        try:
            with limit:
                outcomes[name] = "ran"
        except BaseException as exc:  # recorded for the assertions below
            outcomes[name] = type(exc).__name__

    with limit:  # the only slot is held while both threads queue
        first = threading.Thread(target=enter, name="first")
        first.start()
        assert waiting["first"].wait(10)
        second = threading.Thread(target=enter, name="second")
        second.start()
        assert waiting["second"].wait(10)
    for thread in (first, second):
        thread.join(timeout=10)
    assert outcomes == {"first": "KeyboardInterrupt", "second": "ran"}
    assert limit.in_flight == 0


def test_max_wait_refuses_after_waiting() -> None:
    """No slot within max_wait: ConcurrencyLimitExceeded carrying max_wait."""
    limit = ConcurrencyLimit(1, max_wait=0.02)
    with limit, pytest.raises(ConcurrencyLimitExceeded) as caught:
        limit.call(lambda: None)
    assert caught.value.max_wait == 0.02


def test_enclosing_deadline_bounds_max_wait() -> None:
    """Under a deadline with no time left, the limit refuses at once."""
    clock = ManualClock()
    limit = ConcurrencyLimit(1, max_wait=30.0)

    @retry(deadline=1.0, max_retries=0, clock=clock)
    def call() -> None:
        clock.advance(1.0)  # the deadline has come
        limit.call(lambda: None)

    started = time.monotonic()
    with limit, pytest.raises(ConcurrencyLimitExceeded):
        call()
    assert time.monotonic() - started < 5.0  # not the 30 s of max_wait


def test_sixteen_tasks_never_exceed_the_limit() -> None:
    """The async forms: 16 tasks, limit 3, waiting for slots: never more than 3 inside."""
    limit = ConcurrencyLimit(3, max_wait=10.0)
    inside = 0
    peak = 0

    @limit
    async def work() -> None:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await asyncio.sleep(0)
        inside -= 1

    async def main() -> None:
        async def many() -> None:
            for _ in range(10):
                await work()
                async with limit:
                    await asyncio.sleep(0)

        await asyncio.gather(*(many() for _ in range(16)))

    asyncio.run(main())
    assert peak == 3
    assert limit.in_flight == 0


def test_async_max_wait_refuses_after_waiting() -> None:
    """No slot within max_wait for a task: ConcurrencyLimitExceeded."""
    limit = ConcurrencyLimit(1, max_wait=0.02)

    async def main() -> None:
        async with limit:
            await limit.call_async(asyncio.sleep, 0)

    with pytest.raises(ConcurrencyLimitExceeded):
        asyncio.run(main())
    assert limit.in_flight == 0


@pytest.mark.parametrize("steps", [0, 1], ids=["before-the-wake-up-runs", "after-it-ran"])
def test_a_waiter_cancelled_as_it_is_woken_passes_the_slot_on(steps: int) -> None:
    """A task cancelled around its wake-up neither runs its call nor strands the next waiter."""
    limit = ConcurrencyLimit(1, max_wait=30.0)
    entered: list[str] = []

    async def waiter(tag: str) -> None:
        async with limit:
            entered.append(tag)

    async def main() -> None:
        await limit.__aenter__()  # the only slot is held
        first = asyncio.ensure_future(waiter("first"))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(waiter("second"))
        for _ in range(5):
            await asyncio.sleep(0)  # both wait
        await limit.__aexit__(None, None, None)  # wakes first
        for _ in range(steps):
            await asyncio.sleep(0)
        first.cancel()
        for _ in range(50):  # loop turns, no real time: second gets the free slot at once
            await asyncio.sleep(0)
        try:
            assert first.cancelled()
            assert entered == ["second"]
            assert limit.in_flight == 0
        finally:
            second.cancel()
            await asyncio.gather(first, second, return_exceptions=True)

    asyncio.run(main())


class StuckReleaseStore(MemoryPacingStore):
    """A store whose release fails (sync) or never answers (async)."""

    __slots__ = ()

    def slot_release(self, name: str, lease: str, now: float) -> None:
        raise OSError("store unreachable")

    async def slot_release_async(self, name: str, lease: str, now: float) -> None:
        await asyncio.get_running_loop().create_future()  # never resolved


def test_a_failed_store_release_still_frees_the_count_of_in_flight() -> None:
    """A store that fails to release (its error propagates): in_flight comes back down."""
    limit = ConcurrencyLimit(2, name="db", store=StuckReleaseStore(), clock=ManualClock())
    with pytest.raises(OSError, match="store unreachable"), limit:
        pass
    assert limit.in_flight == 0


def test_a_cancelled_store_release_still_frees_the_count_of_in_flight() -> None:
    """``async with`` whose release through the store is cancelled: in_flight comes back down."""
    limit = ConcurrencyLimit(2, name="db", store=StuckReleaseStore(), clock=ManualClock())

    async def hold() -> None:
        async with limit:
            pass

    async def main() -> None:
        task = asyncio.ensure_future(hold())
        for _ in range(5):
            await asyncio.sleep(0)  # entered, now stuck releasing
        assert limit.in_flight == 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert limit.in_flight == 0


class SlowAnswerStore(MemoryPacingStore):
    """Grants a slot at once but answers only when the test opens the gate; releases fail."""

    __slots__ = ("gate", "granted")

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.granted = 0

    async def slot_acquire_async(
        self, name: str, limit: int, lease_ttl: float, now: float
    ) -> str | None:
        lease = self.slot_acquire(name, limit, lease_ttl, now)
        self.granted += 1
        await self.gate.wait()
        return lease

    async def slot_release_async(self, name: str, lease: str, now: float) -> None:
        raise ConnectionError("store unreachable")


def test_an_undo_that_fails_is_logged_saying_what_comes_back_when(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A slot granted to a cancelled task whose release then fails: one WARNING that
    names the limit, the error and what happens next (the lease expires)."""
    store = SlowAnswerStore()
    limit = ConcurrencyLimit(2, name="db", store=store, clock=ManualClock())

    async def main() -> None:
        task = asyncio.ensure_future(limit.call_async(asyncio.sleep, 0))
        while not store.granted:
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.gate.set()
        while limit._undoing:
            await asyncio.sleep(0)

    with caplog.at_level(logging.WARNING, logger="resilient.pacing"):
        asyncio.run(main())
    (record,) = caplog.records
    assert record.getMessage() == (
        "concurrency limit 'db' could not give back what a cancelled caller was granted "
        "(ConnectionError: store unreachable): it comes back when it expires"
    )
    assert record.event == "pacing_undo_failed"  # type: ignore[attr-defined]
    assert record.error_type == "ConnectionError"  # type: ignore[attr-defined]
    assert limit.in_flight == 0


def test_slots_through_a_store_are_shared_by_name() -> None:
    """Two limits on one store and name share the slots; another name does not."""
    clock = ManualClock()
    store = MemoryPacingStore()
    one = ConcurrencyLimit(2, name="db", store=store, clock=clock)
    two = ConcurrencyLimit(2, name="db", store=store, clock=clock)
    other = ConcurrencyLimit(2, name="other", store=store, clock=clock)
    with one, two:
        with pytest.raises(ConcurrencyLimitExceeded):
            one.call(lambda: None)
        assert other.call(lambda: "ok") == "ok"
        assert (one.in_flight, two.in_flight) == (1, 1)
    assert one.call(lambda: "ok") == "ok"


def test_store_slot_wait_asks_again_until_a_slot_frees() -> None:
    """A limit waiting through a store asks again (bounded steps) and gets the freed slot."""
    clock = ManualClock()
    store = MemoryPacingStore()
    holder = ConcurrencyLimit(1, name="db", store=store, clock=clock, lease_ttl=0.05)
    waiter = ConcurrencyLimit(1, name="db", store=store, clock=clock, max_wait=1.0)
    with holder:
        assert waiter.call(lambda: "ok") == "ok"  # the holder's lease expired meanwhile
    assert 0.05 <= clock.monotonic() <= 0.2
    assert max(clock.sleeps) <= 0.1


def test_a_lost_lease_comes_back_after_lease_ttl() -> None:
    """A slot never released (a killed process) is admitted again once its lease expires."""
    clock = ManualClock()
    store = MemoryPacingStore()
    assert store.slot_acquire("db", 1, 10.0, clock.monotonic()) is not None  # never released
    limit = ConcurrencyLimit(1, name="db", store=store, clock=clock)
    with pytest.raises(ConcurrencyLimitExceeded):
        limit.call(lambda: None)
    clock.advance(10.0)
    assert limit.call(lambda: "ok") == "ok"


def test_async_slots_through_a_store() -> None:
    """async with and call_async take and give back store leases."""
    clock = ManualClock()
    store = MemoryPacingStore()
    limit = ConcurrencyLimit(1, name="db", store=store, clock=clock)

    async def main() -> None:
        async with limit:
            assert limit.in_flight == 1
            with pytest.raises(ConcurrencyLimitExceeded):
                await limit.call_async(asyncio.sleep, 0)
        await limit.call_async(asyncio.sleep, 0)

    asyncio.run(main())
    assert limit.in_flight == 0
    assert store.slot_acquire("db", 1, 1.0, 0.0) is not None  # every lease was released


# --- adaptive -------------------------------------------------------------------------


def fill_rounds(limit: ConcurrencyLimit, outcome: Callable[[], object], rounds: int) -> None:
    """Run *rounds* rounds of calls with the limit fully used, each ending with *outcome*."""
    for _ in range(rounds):
        calls = limit.limit

        def step(remaining: int) -> None:
            if remaining == 0:
                return
            try:
                with limit:
                    step(remaining - 1)
                    result = outcome()
                    if isinstance(result, BaseException):
                        raise result
            except Exception:
                pass

        step(calls)


def test_adaptive_limit_falls_on_429s() -> None:
    """Each round of 429s cuts the limit to 0.9 of itself, once per round."""
    limit = ConcurrencyLimit(20, adaptive=True)
    fill_rounds(limit, lambda: HTTPError(429), 1)
    assert limit.limit == 18  # once for the round, not once per call
    fill_rounds(limit, lambda: HTTPError(429), 5)
    assert limit.limit < 12


@pytest.mark.parametrize(
    "signal",
    [
        HTTPError(503),
        HTTPError(400, {"Retry-After": "3"}),
        TimeoutError("read timed out"),
        HTTPError(502),  # DEGRADED
    ],
    ids=["503", "retry-after", "timeout", "degraded"],
)
def test_adaptive_limit_reads_every_overload_signal(signal: Exception) -> None:
    """503, a Retry-After, a TIMEOUT or a DEGRADED class cut the limit."""
    limit = ConcurrencyLimit(10, adaptive=True)
    fill_rounds(limit, lambda: signal, 1)
    assert limit.limit == 9


def test_a_response_returned_with_429_is_an_overload() -> None:
    """call() reads a returned response's status: a 429 value cuts like a raised one."""
    limit = ConcurrencyLimit(10, adaptive=True)
    limit.call(Response, 429)
    assert limit.limit == 9
    with limit:
        limit.record_overload()  # the with form says so by hand
    assert limit.limit == 9  # same round: the first cut stands for it


def test_fatal_and_transient_failures_move_nothing() -> None:
    """A 404, a connection error, a breaker's rejection or a pacing refusal: neither way."""
    from resilient import CircuitOpenError

    limit = ConcurrencyLimit(4, adaptive=True)
    fill_rounds(limit, lambda: HTTPError(404), 3)
    fill_rounds(limit, lambda: ConnectionError("reset"), 3)
    fill_rounds(limit, lambda: CircuitOpenError("api", 30.0), 3)  # TIMEOUT, but never sent
    fill_rounds(limit, lambda: RateLimitExceeded("api", 1.0, 1.0, 0.0), 3)
    assert limit.limit == 4


def test_adaptive_limit_climbs_back_one_per_round_of_successes() -> None:
    """Rounds of successes with the limit at least half used raise it by one each."""
    limit = ConcurrencyLimit(10, adaptive=True, max_limit=100)
    fill_rounds(limit, lambda: HTTPError(429), 3)
    low = limit.limit
    fill_rounds(limit, lambda: "ok", 5)
    assert limit.limit == low + 5


def test_successes_with_the_limit_mostly_idle_do_not_raise_it() -> None:
    """One call at a time never proves the limit too low: it stays put."""
    limit = ConcurrencyLimit(10, adaptive=True)
    for _ in range(100):
        limit.call(lambda: "ok")
    assert limit.limit == 10


@settings(max_examples=100)
@given(
    outcomes=st.lists(st.sampled_from(["ok", "429", "404"]), max_size=60),
    start=st.integers(min_value=1, max_value=30),
    low=st.integers(min_value=1, max_value=30),
    high=st.integers(min_value=1, max_value=30),
)
def test_adaptive_limit_stays_between_min_and_max(
    outcomes: list[str], start: int, low: int, high: int
) -> None:
    """Whatever the outcomes, min_limit <= limit <= max_limit."""
    low, start, high = sorted((low, start, high))
    limit = ConcurrencyLimit(start, adaptive=True, min_limit=low, max_limit=high)
    errors = {"429": HTTPError(429), "404": HTTPError(404)}
    for outcome in outcomes:
        fill_rounds(limit, lambda outcome=outcome: errors.get(outcome, "ok"), 1)  # type: ignore[misc]
        assert low <= limit.limit <= high
    assert limit.in_flight == 0


# --- wiring: retry(limiter=...) -------------------------------------------------------


def failing(times: int, error: Callable[[], Exception]) -> Callable[[], str]:
    """A function that raises error() *times* times, then returns "ok"."""
    calls: list[int] = []

    def func() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error()
        return "ok"

    return func


def test_retry_acquires_the_limiter_before_every_attempt() -> None:
    """Every attempt, the first included, waits for its turn after the backoff."""
    clock = ManualClock()
    limiter = RateLimiter(1, per=1.0, clock=clock)
    paced = retry(limiter=limiter, base_delay=0.1, jitter=False, clock=clock)(
        failing(2, lambda: ConnectionError("reset"))
    )
    assert paced() == "ok"
    # attempt 1 at 0; backoff 0.1, then the limiter's turn at 1; backoff 0.2, turn at 2
    assert clock.sleeps == pytest.approx([0.1, 0.9, 0.2, 0.8])
    assert not limiter.try_acquire()  # three units were taken


def test_retry_refused_by_the_limiter_under_a_deadline_gives_up_at_once() -> None:
    """A turn past the deadline: RateLimitExceeded at once, chained to the last failure, noted."""
    clock = ManualClock()
    limiter = RateLimiter(1, per=10.0, clock=clock)
    paced = retry(limiter=limiter, deadline=5.0, base_delay=0.1, jitter=False, clock=clock)(
        failing(5, lambda: ConnectionError("reset"))
    )
    with pytest.raises(RateLimitExceeded) as caught:
        paced()
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert caught.value.retry_after == pytest.approx(9.9)
    assert clock.sleeps == [0.1]  # the backoff only: no wait for a turn that comes too late
    notes = getattr(caught.value, "__notes__", [])
    assert any("rate limiter" in note and "past the deadline" in note for note in notes)


def test_retry_whose_first_turn_is_too_late_raises_the_refusal_untouched() -> None:
    """Nothing ran: the caller sees the limiter's refusal, without a note."""
    clock = ManualClock()
    limiter = RateLimiter(1, per=10.0, clock=clock)
    limiter.acquire()
    ran: list[int] = []
    paced = retry(limiter=limiter, deadline=5.0, clock=clock)(lambda: ran.append(1))
    with pytest.raises(RateLimitExceeded) as caught:
        paced()
    assert ran == []
    assert not getattr(caught.value, "__notes__", [])


def test_retry_refused_by_the_limiter_hands_the_refusal_to_fallback() -> None:
    """A turn past the deadline is a give-up like the others: fallback= answers instead."""
    clock = ManualClock()
    limiter = RateLimiter(1, per=10.0, clock=clock)
    limiter.acquire()
    got: list[BaseException] = []

    def fallback(exc: Exception) -> str:
        got.append(exc)
        return "cached"

    paced = retry(limiter=limiter, deadline=5.0, clock=clock, fallback=fallback)(lambda: "fresh")
    assert paced() == "cached"
    assert isinstance(got[0], RateLimitExceeded)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_on_429_or_503_pauses_the_shared_limiter(status: int) -> None:
    """A 429/503 with Retry-After pauses the limiter: a caller that shares it waits too."""
    clock = ManualClock()
    limiter = RateLimiter(100, burst=100, clock=clock)
    paced = retry(limiter=limiter, max_retries=0, clock=clock)(
        failing(1, lambda: HTTPError(status, {"Retry-After": "7"}))
    )
    with pytest.raises(HTTPError):
        paced()  # its one attempt failed: the pause holds for everyone anyway
    assert not limiter.try_acquire()
    clock.advance(7.0)
    assert limiter.try_acquire()


def test_retry_after_on_another_status_does_not_pause() -> None:
    """A 500 with Retry-After delays this call's retry but pauses nobody else."""
    clock = ManualClock()
    limiter = RateLimiter(100, burst=100, clock=clock)
    paced = retry(limiter=limiter, max_retries=0, clock=clock)(
        failing(1, lambda: HTTPError(500, {"Retry-After": "7"}))
    )
    with pytest.raises(HTTPError):
        paced()
    assert limiter.try_acquire()


def test_retry_pause_is_capped_by_max_retry_after() -> None:
    """A server asking for an hour pauses the limiter for max_retry_after at most."""
    clock = ManualClock()
    limiter = RateLimiter(100, burst=100, clock=clock)
    paced = retry(limiter=limiter, clock=clock, max_retry_after=30.0)(
        failing(1, lambda: HTTPError(429, {"Retry-After": "3600"}))
    )
    with pytest.raises(HTTPError):
        paced()
    clock.advance(30.0)
    assert limiter.try_acquire()


def test_retry_on_result_429_pauses_the_limiter() -> None:
    """A 429 returned as a value (retry_on_result) pauses the limiter like a raised one."""
    clock = ManualClock()
    limiter = RateLimiter(100, burst=100, clock=clock)
    answers = [Response(429, {"Retry-After": "2"}), Response(200)]
    paced = retry(
        limiter=limiter,
        clock=clock,
        jitter=False,
        base_delay=0.5,
        retry_on_result=lambda r: r.status_code != 200,
    )(lambda: answers.pop(0))
    assert paced().status_code == 200
    # the wait the server asked, then the limiter already free at its end
    assert clock.sleeps == [2.0]


def test_async_retry_acquires_and_pauses_through_the_async_forms() -> None:
    """The async loop awaits acquire_async and pause_async (a store's async twins)."""
    clock = ManualClock()
    store = CountingStore()
    limiter = RateLimiter(1, name="api", store=store, clock=clock)
    calls: list[int] = []

    @retry(limiter=limiter, base_delay=0.1, jitter=False, clock=clock)
    async def work() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise HTTPError(429, {"Retry-After": "3"})
        return "ok"

    assert asyncio.run(work()) == "ok"
    assert store.calls == ["rate_reserve_async", "rate_reserve_async"]
    # Retry-After 3 s; the pause ends at 3, the limiter's next turn is at 1: no extra wait
    assert clock.sleeps == [3.0]


class StoreDownAfterOne(MemoryPacingStore):
    """A store whose backend fails from its second reservation on (no outage policy of its own)."""

    __slots__ = ("reserved",)

    def __init__(self) -> None:
        super().__init__()
        self.reserved = 0

    def rate_reserve(
        self, name: str, policy: RatePolicy, cost: float, max_wait: float, now: float
    ) -> Reservation:
        self.reserved += 1
        if self.reserved > 1:
            raise OSError("store unreachable")
        return super().rate_reserve(name, policy, cost, max_wait, now)

    async def rate_reserve_async(
        self, name: str, policy: RatePolicy, cost: float, max_wait: float, now: float
    ) -> Reservation:
        return self.rate_reserve(name, policy, cost, max_wait, now)


@pytest.mark.parametrize("form", ["decorator", "async decorator", "block"])
def test_a_store_error_is_not_a_limiter_refusal(
    form: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The store's own error propagates unchanged: not chained, noted or logged as a turn too late."""
    clock = ManualClock()
    limiter = RateLimiter(5, name="api", store=StoreDownAfterOne(), clock=clock)
    options: dict[str, Any] = {"limiter": limiter, "clock": clock, "fallback": lambda exc: "fb"}

    def attempt() -> None:
        raise TimeoutError("slow")

    async def attempt_async() -> None:
        raise TimeoutError("slow")

    def block() -> None:
        from resilient import retrying

        for each in retrying(**options):
            with each:
                attempt()

    runs: dict[str, Callable[[], object]] = {
        "decorator": lambda: retry(**options)(attempt)(),
        "async decorator": lambda: asyncio.run(retry(**options)(attempt_async)()),
        "block": block,
    }
    with pytest.raises(OSError, match="store unreachable") as caught:
        runs[form]()
    assert caught.value.__cause__ is None
    assert not hasattr(caught.value, "__notes__")
    assert "past the deadline" not in caplog.text


def test_retry_refuses_a_limiter_that_is_not_one() -> None:
    """limiter= must be a RateLimiter: refused at decoration, naming it."""
    with pytest.raises(TypeError, match="limiter must be a RateLimiter, got 3"):
        retry(limiter=3)  # type: ignore[arg-type]


# --- wiring: tasks --------------------------------------------------------------------


def test_task_attempts_acquire_the_limiter_and_run_in_a_slot() -> None:
    """execute_task_safely: every attempt takes the limiter's turn, then a slot."""
    clock = ManualClock()
    limiter = RateLimiter(1, clock=clock)
    limit = ConcurrencyLimit(1, name="db")
    seen: list[int] = []

    def work() -> str:
        seen.append(limit.in_flight)
        if len(seen) < 2:
            raise ConnectionError("reset")
        return "ok"

    result = execute_task_safely(
        "job", work, limiter=limiter, concurrency=limit, base_delay=0.25, jitter=False, clock=clock
    )
    assert result.success
    assert result.attempts == 2
    assert seen == [1, 1]  # each attempt inside a slot
    assert clock.sleeps == [0.25, 0.75]  # the backoff, then the limiter's turn at t=1
    assert limit.in_flight == 0


def test_task_refused_a_slot_is_retried_then_reported_transient() -> None:
    """A full limit refuses the attempt (TRANSIENT): retried, then the task fails, never raises."""
    clock = ManualClock()
    limit = ConcurrencyLimit(1)
    with limit:
        result = execute_task_safely(
            "job", lambda: "ok", concurrency=limit, max_retries=2, clock=clock
        )
    assert not result.success
    assert isinstance(result.exception, ConcurrencyLimitExceeded)
    assert result.error_class is ErrorClass.TRANSIENT
    assert result.attempts == 3


def test_async_task_attempts_acquire_and_run_in_a_slot() -> None:
    """execute_task_safely_async: the async forms of both."""
    clock = ManualClock()
    limiter = RateLimiter(2, clock=clock)
    limit = ConcurrencyLimit(1)

    async def work() -> int:
        return limit.in_flight

    async def main() -> list[Any]:
        return [
            (
                await execute_task_safely_async("job", work, limiter=limiter, concurrency=limit)
            ).result
            for _ in range(3)
        ]

    assert asyncio.run(main()) == [1, 1, 1]
    assert clock.sleeps == [0.5, 0.5]


def test_run_tasks_with_a_concurrency_limit_never_exceeds_it() -> None:
    """run_tasks(concurrency=ConcurrencyLimit(3)): a pool of 3, never more than 3 inside."""
    limit = ConcurrencyLimit(3)
    inside = 0
    peak = 0
    guard = threading.Lock()

    def work(_: int) -> None:
        nonlocal inside, peak
        with guard:
            inside += 1
            peak = max(peak, inside)
        time.sleep(0.001)
        with guard:
            inside -= 1

    summary = run_tasks([(f"t{i}", work, i) for i in range(16)], concurrency=limit)
    assert summary.succeeded == 16
    assert 1 <= peak <= 3


def test_run_tasks_paces_every_task_through_the_limiter() -> None:
    """run_tasks(limiter=...) passes the limiter to every task."""
    clock = ManualClock()
    limiter = RateLimiter(4, clock=clock)
    summary = run_tasks([(f"t{i}", lambda: None) for i in range(5)], limiter=limiter, clock=clock)
    assert summary.succeeded == 5
    assert clock.sleeps == [0.25] * 4


def test_run_tasks_async_with_a_concurrency_limit() -> None:
    """run_tasks_async(concurrency=ConcurrencyLimit(2)): two workers, two slots."""
    limit = ConcurrencyLimit(2)
    peak = 0

    async def work() -> None:
        nonlocal peak
        peak = max(peak, limit.in_flight)
        await asyncio.sleep(0)

    summary = asyncio.run(run_tasks_async([(f"t{i}", work) for i in range(8)], concurrency=limit))
    assert summary.succeeded == 8
    assert peak == 2


def test_tasks_refuse_a_concurrency_that_is_not_a_limit() -> None:
    """concurrency= must be a ConcurrencyLimit (or, for run_tasks, an int)."""
    with pytest.raises(TypeError, match="concurrency must be a ConcurrencyLimit or None"):
        execute_task_safely("job", lambda: None, concurrency=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="concurrency must be an int >= 1 or a ConcurrencyLimit"):
        run_tasks([], concurrency="3")  # type: ignore[arg-type]


# --- wiring: resilient.http -----------------------------------------------------------


@pytest.fixture(scope="module")
def api() -> Any:
    """The scripted loopback server of the examples (``/ok``, ``/rate-limited``...)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    from flaky_server import FlakyServer

    with FlakyServer() as server:
        yield server


def test_session_requests_acquire_the_limiter(api: Any) -> None:
    """Every request of create_resilient_session(limiter=) waits for its turn before it is sent."""
    from resilient.http import create_resilient_session

    api.reset()
    clock = ManualClock()
    limiter = RateLimiter(1, clock=clock)
    with create_resilient_session(limiter=limiter) as session:
        codes = [session.get(f"{api.url}/ok").status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    assert clock.sleeps == [1.0, 1.0]


def test_session_429_with_retry_after_pauses_the_limiter(api: Any) -> None:
    """A 429 with Retry-After: 1 pauses the shared limiter for a second, for every caller."""
    from resilient.http import create_resilient_session

    api.reset()
    clock = ManualClock()
    limiter = RateLimiter(100, burst=100, clock=clock)
    with create_resilient_session(limiter=limiter) as session:
        assert session.get(f"{api.url}/rate-limited").status_code == 429
    assert not limiter.try_acquire()
    clock.advance(1.0)
    assert limiter.try_acquire()


def test_session_turn_past_the_total_timeout_is_refused_unsent(api: Any) -> None:
    """A turn later than the call's cap: RateLimitExceeded at once, the request never sent."""
    from resilient.http import create_resilient_session

    api.reset()
    clock = ManualClock()
    limiter = RateLimiter(1, per=60.0, clock=clock)
    with create_resilient_session(limiter=limiter, total_timeout=5.0) as session:
        session.get(f"{api.url}/ok")
        with pytest.raises(RateLimitExceeded) as caught:
            session.get(f"{api.url}/ok")
    assert caught.value.allowed <= 5.0
    assert api.requests("/ok") == 1
    assert clock.sleeps == []


def test_session_refuses_a_limiter_that_is_not_one() -> None:
    """limiter= is checked at construction."""
    from resilient.http import create_resilient_session

    with pytest.raises(TypeError, match="limiter must be a RateLimiter or None, got 'x'"):
        create_resilient_session(limiter="x")  # type: ignore[arg-type]


# --- the simulation of benchmarks/pacing.py -------------------------------------------


@pytest.fixture(scope="module")
def simulation() -> Any:
    """``benchmarks/pacing.py``, imported by path (``benchmarks/`` is not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("pacing_bench", folder / "pacing.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_simulated_fleet_paced_by_a_shared_limiter_meets_its_goals(simulation: Any) -> None:
    """Shared pacing: every task done, >= 95% of capacity, no 429 once converged; alone, many."""
    by_name = {s.name: simulation.run_fleet(s) for s in simulation.STRATEGIES}
    shared = by_name["+ shared RateLimiter"]
    assert shared.completed == simulation.CLIENTS * simulation.TASKS
    assert shared.goodput >= 0.95
    assert shared.rejected_converged < 0.01
    alone = by_name["@retry alone"]
    assert alone.share_429 > 0.2
    assert alone.goodput < shared.goodput


def test_simulated_adaptive_limits_converge_on_the_capacity(simulation: Any) -> None:
    """Ten adaptive limits settle within 10% of the capacity, and of the doubled one."""
    result = simulation.run_adaptive(end=75.0)
    assert result.settled_first is not None
    assert result.settled_first <= 30.0
    assert result.settled_second is not None
    assert result.settled_second <= 15.0


# --- wiring: the block form retrying(limiter=...) ---------------------------------------


def test_block_attempts_acquire_the_limiter() -> None:
    """for attempt in retrying(limiter=...): every attempt waits for its turn first."""
    from resilient import retrying

    clock = ManualClock()
    limiter = RateLimiter(1, clock=clock)
    started: list[float] = []
    for attempt in retrying(limiter=limiter, base_delay=0.1, jitter=False, clock=clock):
        with attempt:
            started.append(clock.monotonic())
            if len(started) < 3:
                raise ConnectionError("reset")
    assert started == [0.0, 1.0, 2.0]


def test_block_429_with_retry_after_pauses_the_limiter_even_when_giving_up() -> None:
    """The block's last failure, a 429 with Retry-After, still pauses the shared limiter."""
    from resilient import retrying

    clock = ManualClock()
    limiter = RateLimiter(100, burst=100, clock=clock)

    def block() -> None:
        for attempt in retrying(limiter=limiter, max_retries=0, clock=clock):
            with attempt:
                raise HTTPError(429, {"Retry-After": "4"})

    with pytest.raises(HTTPError):
        block()
    assert not limiter.try_acquire()
    clock.advance(4.0)
    assert limiter.try_acquire()


def test_block_turn_past_the_deadline_raises_the_refusal_chained() -> None:
    """A turn that comes after the deadline ends the block at once with RateLimitExceeded."""
    from resilient import retrying

    clock = ManualClock()
    limiter = RateLimiter(1, per=10.0, clock=clock)

    def block() -> None:
        for attempt in retrying(limiter=limiter, deadline=5.0, base_delay=0.1, clock=clock):
            with attempt:
                raise ConnectionError("reset")

    with pytest.raises(RateLimitExceeded) as caught:
        block()
    assert isinstance(caught.value.__cause__, ConnectionError)


def test_async_block_acquires_and_pauses_through_the_async_forms() -> None:
    """async for attempt in retrying(limiter=...): acquire_async and pause_async."""
    from resilient import retrying

    clock = ManualClock()
    store = CountingStore()
    limiter = RateLimiter(1, name="api", store=store, clock=clock)

    async def main() -> int:
        tries = 0
        async for attempt in retrying(limiter=limiter, base_delay=0.1, jitter=False, clock=clock):
            with attempt:
                tries += 1
                if tries == 1:
                    raise HTTPError(429, {"Retry-After": "3"})
        return tries

    assert asyncio.run(main()) == 2
    assert store.calls == ["rate_reserve_async", "rate_reserve_async"]
    assert clock.sleeps == [3.0]  # the server's wait; the pause and the turn end within it


class RoundTripPauseStore(MemoryPacingStore):
    """An async-only MemoryPacingStore: its pause is a round trip to await, as a server's is."""

    __slots__ = ()

    def rate_pause(self, name: str, policy: RatePolicy, seconds: float, now: float) -> None:
        raise TypeError("an async store: await rate_pause_async")

    async def rate_pause_async(
        self, name: str, policy: RatePolicy, seconds: float, now: float
    ) -> None:
        await asyncio.sleep(0.001)  # the reply comes a little later
        super().rate_pause(name, policy, seconds, now)


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
def test_async_block_giving_up_on_a_429_pauses_the_limiter_before_the_loop_ends(
    shared: bool,
) -> None:
    """The pause of an async block that gave up holds once ``asyncio.run`` has returned."""
    from resilient import retrying

    clock = ManualClock()
    store = RoundTripPauseStore() if shared else None
    limiter = RateLimiter(100, burst=100, name="api", store=store, clock=clock)

    async def main() -> None:
        async for attempt in retrying(limiter=limiter, max_retries=0, clock=clock):
            with attempt:
                raise HTTPError(429, {"Retry-After": "4"})

    with pytest.raises(HTTPError) as caught:
        asyncio.run(main())  # the loop ends with the failure
    assert caught.value.response.status_code == 429  # the original failure, raised
    assert not limiter.try_acquire()
    clock.advance(4.0)
    assert limiter.try_acquire()


_LAST_FAILURES = {
    "429 with Retry-After": lambda: HTTPError(429, {"Retry-After": "4"}),
    "connection error": lambda: ConnectionError("connection refused"),
}


def _paused_for_four_seconds(limiter: RateLimiter, clock: ManualClock) -> bool:
    """Whether the last failure's pause holds (a 429 asks for 4 s; nothing else pauses)."""
    paused = not limiter.try_acquire()
    clock.advance(4.0)
    assert limiter.try_acquire()
    return paused


@pytest.mark.parametrize("failure", list(_LAST_FAILURES))
@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
def test_async_block_body_after_with_runs_only_after_retried_failures(
    shared: bool, failure: str
) -> None:
    """async for with a limiter: the statements after ``with attempt:`` run after each
    retried failure and never after the last one, which leaves the loop at once (its pause
    held once ``asyncio.run`` has returned)."""
    from resilient import retrying

    clock = ManualClock()
    store = RoundTripPauseStore() if shared else None
    limiter = RateLimiter(100, burst=100, name="api", store=store, clock=clock)
    attempts: list[int] = []
    after: list[int] = []

    async def main() -> None:
        async for attempt in retrying(limiter=limiter, max_retries=2, jitter=False, clock=clock):
            with attempt:
                attempts.append(attempt.number)
                raise _LAST_FAILURES[failure]()
            after.append(attempt.number)

    with pytest.raises((HTTPError, ConnectionError)) as caught:
        asyncio.run(main())
    assert "3 attempts" in caught.value.__notes__[-1]  # the original failure, noted
    assert (attempts, after) == ([1, 2, 3], [1, 2])
    assert _paused_for_four_seconds(limiter, clock) == (failure != "connection error")


@pytest.mark.parametrize("failure", list(_LAST_FAILURES))
@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
def test_sync_block_body_after_with_runs_only_after_retried_failures(
    shared: bool, failure: str
) -> None:
    """for with a limiter (in process or through a store): the statements after
    ``with attempt:`` never run after the last failure, whose pause holds."""
    from resilient import retrying

    clock = ManualClock()
    store = MemoryPacingStore() if shared else None
    limiter = RateLimiter(100, burst=100, name="api", store=store, clock=clock)
    attempts: list[int] = []
    after: list[int] = []

    def block() -> None:
        for attempt in retrying(limiter=limiter, max_retries=2, jitter=False, clock=clock):
            with attempt:
                attempts.append(attempt.number)
                raise _LAST_FAILURES[failure]()
            after.append(attempt.number)

    with pytest.raises((HTTPError, ConnectionError)) as caught:
        block()
    assert "3 attempts" in caught.value.__notes__[-1]
    assert (attempts, after) == ([1, 2, 3], [1, 2])
    assert _paused_for_four_seconds(limiter, clock) == (failure != "connection error")


@pytest.mark.parametrize("form", ["sync", "async"])
@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
def test_retry_runs_the_function_once_per_attempt_with_a_limiter(shared: bool, form: str) -> None:
    """@retry with a limiter: max_retries + 1 calls, no more, and the last 429's pause
    holds once the call has raised (retry_with_backoff takes no limiter)."""
    clock = ManualClock()
    store = (RoundTripPauseStore() if form == "async" else MemoryPacingStore()) if shared else None
    limiter = RateLimiter(100, burst=100, name="api", store=store, clock=clock)
    calls: list[int] = []
    policy = retry(limiter=limiter, max_retries=2, jitter=False, clock=clock)

    @policy
    def fetch() -> None:
        calls.append(1)
        raise HTTPError(429, {"Retry-After": "4"})

    @policy
    async def fetch_async() -> None:
        calls.append(1)
        raise HTTPError(429, {"Retry-After": "4"})

    with pytest.raises(HTTPError):
        fetch() if form == "sync" else asyncio.run(fetch_async())
    assert len(calls) == 3
    assert _paused_for_four_seconds(limiter, clock)


@pytest.mark.parametrize("form", ["sync", "async"])
@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "store"])
def test_block_giving_up_on_a_returned_429_pauses_the_limiter(shared: bool, form: str) -> None:
    """retry_on_result: a block whose last value is a 429 with Retry-After ends the loop with
    the limiter paused, the value in attempt.result."""
    from resilient import retrying

    clock = ManualClock()
    store = (RoundTripPauseStore() if form == "async" else MemoryPacingStore()) if shared else None
    limiter = RateLimiter(100, burst=100, name="api", store=store, clock=clock)
    options: dict[str, Any] = {
        "limiter": limiter,
        "max_retries": 1,
        "jitter": False,
        "clock": clock,
        "retry_on_result": lambda response: response.status_code == 429,
    }
    results: list[Any] = []

    async def main() -> None:
        async for attempt in retrying(**options):
            with attempt:
                attempt.result = Response(429, {"Retry-After": "4"})
        results.append(attempt.result)

    if form == "async":
        asyncio.run(main())
    else:
        for attempt in retrying(**options):
            with attempt:
                attempt.result = Response(429, {"Retry-After": "4"})
        results.append(attempt.result)
    assert [r.status_code for r in results] == [429]
    assert _paused_for_four_seconds(limiter, clock)


class FailingPauseStore(RoundTripPauseStore):
    """A store whose pause fails (Redis went away between the reserve and the pause)."""

    __slots__ = ()

    async def rate_pause_async(
        self, name: str, policy: RatePolicy, seconds: float, now: float
    ) -> None:
        await asyncio.sleep(0.001)
        raise ConnectionError("store unreachable")


def test_async_block_whose_pause_fails_after_giving_up_raises_the_failure_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The last failure leaves the loop as it is; the pause the store could not take is one
    WARNING naming the limiter, the block, the store's error and what it means."""
    from resilient import retrying

    clock = ManualClock()
    limiter = RateLimiter(100, burst=100, name="api", store=FailingPauseStore(), clock=clock)

    async def fetch_users() -> None:
        async for attempt in retrying(
            limiter=limiter, max_retries=0, clock=clock, name="fetch-users"
        ):
            with attempt:
                raise HTTPError(429, {"Retry-After": "4"})

    async def main() -> None:
        with pytest.raises(HTTPError):
            await fetch_users()
        # the pause's round trip, in a task of its own, fails meanwhile
        await asyncio.gather(*(asyncio.all_tasks() - {asyncio.current_task()}))

    with caplog.at_level(logging.WARNING, logger="resilient.retry"):
        asyncio.run(main())
    _pause_failed(caplog, "ConnectionError: store unreachable", "ConnectionError")


def _gives_up_on_a_429(limiter: RateLimiter, clock: ManualClock) -> Any:
    """An async block that gives up at once on a raised 429 asking for 4 s."""
    from resilient import retrying

    async def fetch_users() -> None:
        async for attempt in retrying(
            limiter=limiter, max_retries=0, clock=clock, name="fetch-users"
        ):
            with attempt:
                raise HTTPError(429, {"Retry-After": "4"})

    return fetch_users()


def _pause_failed(
    caplog: pytest.LogCaptureFixture, cause: str, error_type: str
) -> logging.LogRecord:
    """The one WARNING of a 4 s pause of limiter "api" that never reached the store."""
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "limiter_pause_failed"]
    assert record.getMessage() == (
        f"could not pause rate limiter api for 4 s after giving up on fetch-users ({cause}): "
        "other callers are not held back by this failure's Retry-After"
    )
    assert (record.limiter, record.error_type, record.pause) == ("api", error_type, 4.0)  # type: ignore[attr-defined]
    return record


def _pause_lost(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    return _pause_failed(
        caplog, "the event loop ended before the pause reached the store", "CancelledError"
    )


def test_async_block_pause_cut_off_by_a_closed_event_loop_warns_and_is_not_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """run_until_complete then close: the pause still on its way is lost; that is one WARNING,
    and the closed loop, once dropped, takes the task with it (nothing pins it)."""
    import gc
    import weakref

    clock = ManualClock()
    limiter = RateLimiter(100, burst=100, name="api", store=RoundTripPauseStore(), clock=clock)
    loop = asyncio.new_event_loop()
    with caplog.at_level(logging.WARNING, logger="resilient.retry"):
        with pytest.raises(HTTPError):
            loop.run_until_complete(_gives_up_on_a_429(limiter, clock))
        loop.close()
        dropped = weakref.ref(loop)
        del loop
        gc.collect()
    assert dropped() is None
    _pause_lost(caplog)
    assert limiter.try_acquire()  # not paused: the WARNING says so


def test_async_block_pause_cancelled_by_a_shutdown_warns(caplog: pytest.LogCaptureFixture) -> None:
    """A shutdown that cancels every other task at once (twice over, before the pause's first
    step): the lost pause is one WARNING."""
    clock = ManualClock()
    limiter = RateLimiter(100, burst=100, name="api", store=RoundTripPauseStore(), clock=clock)

    async def main() -> None:
        with pytest.raises(HTTPError):
            await _gives_up_on_a_429(limiter, clock)
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="resilient.retry"):
        asyncio.run(main())
    _pause_lost(caplog)


@pytest.mark.parametrize("ending", ["returned", "fallback"])
def test_async_block_whose_pause_fails_after_giving_up_on_a_value_warns(
    caplog: pytest.LogCaptureFixture, ending: str
) -> None:
    """Giving up on a returned 429 (or a raised one a fallback answers), the store's failed
    pause is the same WARNING as for a failure that leaves: the loop ends as it would have."""
    from resilient import retrying

    clock = ManualClock()
    limiter = RateLimiter(100, burst=100, name="api", store=FailingPauseStore(), clock=clock)
    options: dict[str, Any] = {"limiter": limiter, "max_retries": 0, "clock": clock}
    if ending == "returned":
        options["retry_on_result"] = lambda response: response.status_code == 429
    else:
        options["fallback"] = lambda error: Response(200, {})
    results: list[Any] = []

    async def main() -> None:
        async for attempt in retrying(**options, name="fetch-users"):
            with attempt:
                if ending == "fallback":
                    raise HTTPError(429, {"Retry-After": "4"})
                attempt.result = Response(429, {"Retry-After": "4"})
        results.append(attempt.result)

    with caplog.at_level(logging.WARNING, logger="resilient.retry"):
        asyncio.run(main())
    assert [r.status_code for r in results] == [429 if ending == "returned" else 200]
    _pause_failed(caplog, "ConnectionError: store unreachable", "ConnectionError")


# --- wiring: resilient.httpx ----------------------------------------------------------


def scripted(statuses: list[int], seen: list[float], clock: ManualClock) -> Any:
    """An httpx MockTransport answering *statuses* in turn (then 200), noting when.

    Each body is a stream still to be read, as a real transport's is.
    """
    import httpx

    class Body(httpx.SyncByteStream):
        def __iter__(self) -> Any:
            yield b"body"

    answers = list(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(clock.monotonic())
        status = answers.pop(0) if answers else 200
        headers = {"Retry-After": "2"} if status in (429, 503) else {}
        return httpx.Response(status, headers=headers, stream=Body())

    return httpx.MockTransport(handler)


def test_transport_attempts_acquire_the_limiter_and_429_pauses_it() -> None:
    """ResilientTransport(limiter=): every attempt takes its turn; a 429 pauses the limiter."""
    import httpx

    from resilient.httpx import ResilientTransport

    clock = ManualClock()
    limiter = RateLimiter(1, per=4.0, clock=clock)
    seen: list[float] = []
    transport = ResilientTransport(
        scripted([429], seen, clock), limiter=limiter, jitter=False, clock=clock
    )
    with httpx.Client(transport=transport) as client:
        assert client.get("http://api.test/v1").status_code == 200
    # attempt 1 at 0 (a 429 asking 2 s: the limiter pauses 2 s); the retry waits the
    # server's 2 s, then its turn, 4 s after the first
    assert seen == [0.0, 4.0]
    assert clock.sleeps == [2.0, 2.0]


def test_transport_turn_past_total_timeout_raises_the_refusal() -> None:
    """A turn after total_timeout: RateLimitExceeded at once, noted; nothing more sent."""
    import httpx

    from resilient.httpx import ResilientTransport

    clock = ManualClock()
    limiter = RateLimiter(1, per=60.0, clock=clock)
    seen: list[float] = []
    transport = ResilientTransport(
        scripted([503, 503], seen, clock),
        limiter=limiter,
        total_timeout=10.0,
        jitter=False,
        clock=clock,
    )
    with httpx.Client(transport=transport) as client, pytest.raises(RateLimitExceeded) as caught:
        client.get("http://api.test/v1")
    assert seen == [0.0]
    assert any("1 attempt over" in note for note in getattr(caught.value, "__notes__", []))
    with httpx.Client(transport=transport) as client, pytest.raises(RateLimitExceeded) as caught:
        client.get("http://api.test/v1")  # the first turn itself is too late: raised untouched
    assert not getattr(caught.value, "__notes__", [])


def test_transport_holds_a_slot_until_the_final_body_is_closed() -> None:
    """ResilientTransport(concurrency=): the slot is held while the response streams."""
    import httpx

    from resilient.httpx import ResilientTransport

    clock = ManualClock()
    limit = ConcurrencyLimit(1, name="llm")
    transport = ResilientTransport(scripted([], [], clock), concurrency=limit, clock=clock)
    with httpx.Client(transport=transport) as client:
        with client.stream("GET", "http://api.test/v1") as response:
            assert limit.in_flight == 1
            with pytest.raises(ConcurrencyLimitExceeded):
                client.get("http://api.test/v1")
            response.read()
        assert limit.in_flight == 0
        assert client.get("http://api.test/v1").status_code == 200
        assert limit.in_flight == 0


def test_transport_429s_cut_an_adaptive_limit() -> None:
    """429 answers count as overload for an adaptive concurrency limit; success does not."""
    import httpx

    from resilient.httpx import ResilientTransport

    clock = ManualClock()
    limit = ConcurrencyLimit(10, adaptive=True)
    transport = ResilientTransport(
        scripted([429], [], clock), concurrency=limit, max_retries=0, clock=clock
    )
    with httpx.Client(transport=transport) as client:
        assert client.get("http://api.test/v1").status_code == 429
    assert limit.limit == 9
    assert limit.in_flight == 0


def test_async_transport_paces_pauses_and_holds_slots() -> None:
    """AsyncResilientTransport: acquire_async, pause_async, async slots."""
    import httpx

    from resilient.httpx import AsyncResilientTransport

    clock = ManualClock()
    store = CountingStore()
    limiter = RateLimiter(1, per=4.0, name="api", store=store, clock=clock)
    limit = ConcurrencyLimit(2)
    seen: list[float] = []
    answers = [429]

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(clock.monotonic())
        assert limit.in_flight == 1
        status = answers.pop(0) if answers else 200
        # content= gives a body read already: the slot is given back at once
        return httpx.Response(status, headers={"Retry-After": "2"}, content=b"body")

    async def main() -> int:
        transport = AsyncResilientTransport(
            httpx.MockTransport(handler),
            limiter=limiter,
            concurrency=limit,
            jitter=False,
            clock=clock,
        )
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get("http://api.test/v1")
        return response.status_code

    assert asyncio.run(main()) == 200
    assert seen == [0.0, 4.0]
    assert store.calls == ["rate_reserve_async", "rate_reserve_async"]
    assert limit.in_flight == 0


def test_transport_refuses_pacing_objects_that_are_not() -> None:
    """limiter= and concurrency= are checked at construction, naming them."""
    from resilient.httpx import ResilientTransport

    with pytest.raises(TypeError, match="limiter must be a RateLimiter or None, got 1"):
        ResilientTransport(limiter=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="concurrency must be a ConcurrencyLimit or None, got 1"):
        ResilientTransport(concurrency=1)  # type: ignore[arg-type]


class NamelessLimiter:
    """A duck-typed limiter without a ``name``, whose pause fails."""

    def acquire(self, cost: float = 1, *, timeout: float | None = None) -> None:
        pass

    async def acquire_async(self, cost: float = 1, *, timeout: float | None = None) -> None:
        pass

    def pause(self, seconds: float) -> None:
        pass

    async def pause_async(self, seconds: float) -> None:
        raise ConnectionError("store unreachable")

    def __repr__(self) -> str:
        return "<NamelessLimiter token=hunter2 at 0x1234>"


def test_a_lost_pause_of_a_limiter_without_a_name_is_named_by_its_class(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The WARNING names a limiter that has no ``name`` by its class, never by its repr."""
    from resilient import retrying

    limiter: Any = NamelessLimiter()

    async def fetch_users() -> None:
        async for attempt in retrying(
            limiter=limiter, max_retries=0, clock=ManualClock(), name="fetch-users"
        ):
            with attempt:
                raise HTTPError(429, {"Retry-After": "4"})

    async def main() -> None:
        with pytest.raises(HTTPError):
            await fetch_users()
        await asyncio.gather(*(asyncio.all_tasks() - {asyncio.current_task()}))

    with caplog.at_level(logging.WARNING, logger="resilient.retry"):
        asyncio.run(main())
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "limiter_pause_failed"]
    assert record.getMessage().startswith("could not pause rate limiter NamelessLimiter for 4 s")
    assert record.limiter == "NamelessLimiter"  # type: ignore[attr-defined]
    assert "hunter2" not in record.getMessage()
