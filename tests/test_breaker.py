"""The circuit breaker: resilient.breaker."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import gc
import itertools
import logging
import math
import pickle
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from freezegun import freeze_time
from hypothesis import given
from hypothesis import strategies as st

from resilient._breaker_state import BreakerPolicy, _CountWindow, _TimeWindow
from resilient.backoff import Backoff, FullJitter
from resilient.breaker import (
    BreakerListener,
    BreakerMetrics,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    FailureRateWindow,
    MemoryStore,
)
from resilient.testing import ManualClock, force_state, use_clock

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class Boom(Exception):
    """The failure the tests make."""


def ok() -> str:
    return "ok"


def fail() -> None:
    raise Boom("down")


def raiser(exc: BaseException) -> Callable[[], None]:
    def run() -> None:
        raise exc

    return run


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1000.0)


@pytest.fixture(autouse=True)
def _capture_breaker_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="resilient.breaker")


def fail_times(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Boom):
            breaker.call(fail)


def opened(clock: ManualClock, **kwargs: Any) -> CircuitBreaker:
    breaker = CircuitBreaker(clock=clock, **kwargs)
    breaker.trip()
    return breaker


# -- the seed's scenario -----------------------------------------------------------


def test_five_consecutive_failures_open_the_circuit(clock: ManualClock) -> None:
    """The default breaker opens on the fifth failure in a row, not before."""
    breaker = CircuitBreaker(clock=clock)
    fail_times(breaker, 4)
    assert breaker.state is CLOSED
    fail_times(breaker, 1)
    assert breaker.state is OPEN
    assert breaker.failures == 5


def test_open_circuit_rejects_without_running_the_function(clock: ManualClock) -> None:
    """While open, calls raise CircuitOpenError and the function never runs."""
    breaker = CircuitBreaker(clock=clock)
    fail_times(breaker, 5)
    ran = []
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ran.append, 1)
    assert ran == []
    assert info.value.remaining == pytest.approx(60.0)


def test_one_trial_runs_after_the_recovery_timeout_and_success_closes(
    clock: ManualClock,
) -> None:
    """After recovery_timeout one trial call runs; its success closes the circuit."""
    breaker = CircuitBreaker(clock=clock)
    fail_times(breaker, 5)
    clock.advance(59.9)
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    clock.advance(0.1)
    assert breaker.state is HALF_OPEN
    assert breaker.call(ok) == "ok"
    assert breaker.state is CLOSED
    assert breaker.failures == 0


def test_a_failed_trial_reopens_at_once_with_the_timer_restarted(clock: ManualClock) -> None:
    """A trial failure opens the circuit again for a full recovery_timeout."""
    breaker = CircuitBreaker(clock=clock)
    fail_times(breaker, 5)
    clock.advance(60)
    fail_times(breaker, 1)
    assert breaker.state is OPEN
    assert breaker.metrics.remaining == pytest.approx(60.0)
    clock.advance(59)
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)


def test_the_tripping_call_raises_its_own_exception(clock: ManualClock) -> None:
    """The failure that opens the circuit reaches its caller unchanged."""
    breaker = CircuitBreaker(1, clock=clock)
    error = Boom("the real cause")
    with pytest.raises(Boom) as info:
        breaker.call(raiser(error))
    assert info.value is error
    assert breaker.state is OPEN


def test_each_rejection_raises_a_fresh_error(clock: ManualClock) -> None:
    """Two rejected calls raise two errors, each with a short traceback of its own."""
    breaker = opened(clock)
    errors = []
    for _ in range(3):
        with pytest.raises(CircuitOpenError) as info:
            breaker.call(ok)
        errors.append(info.value)
    assert len({id(e) for e in errors}) == 3
    depth = 0
    tb = errors[-1].__traceback__
    while tb is not None:
        depth, tb = depth + 1, tb.tb_next
    assert depth <= 3


def test_a_success_resets_the_consecutive_count(clock: ManualClock) -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    breaker = CircuitBreaker(3, clock=clock)
    fail_times(breaker, 2)
    breaker.call(ok)
    assert breaker.failures == 0
    fail_times(breaker, 2)
    assert breaker.state is CLOSED


# -- what counts -------------------------------------------------------------------


def test_excluded_exceptions_count_as_neither_success_nor_failure(clock: ManualClock) -> None:
    """An excluded exception propagates, adds no failure and resets nothing."""
    breaker = CircuitBreaker(2, clock=clock, exclude=KeyError)
    fail_times(breaker, 1)
    with pytest.raises(KeyError):
        breaker.call(raiser(KeyError("miss")))
    assert breaker.failures == 1
    fail_times(breaker, 1)
    assert breaker.state is OPEN
    assert breaker.metrics.ignored == 1


def test_unexpected_exceptions_count_as_neither(clock: ManualClock) -> None:
    """An exception outside expected_exception propagates and does not count."""
    breaker = CircuitBreaker(1, clock=clock, expected_exception=ConnectionError)
    with pytest.raises(ValueError, match="bad input"):
        breaker.call(raiser(ValueError("bad input")))
    assert breaker.state is CLOSED
    with pytest.raises(ConnectionResetError):
        breaker.call(raiser(ConnectionResetError()))
    assert breaker.state is OPEN


CONTROL_FLOW = [KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError]


@pytest.mark.parametrize("exc_type", CONTROL_FLOW)
def test_control_flow_exceptions_never_count(
    clock: ManualClock, exc_type: type[BaseException]
) -> None:
    """KeyboardInterrupt and friends pass through without counting or changing state."""
    breaker = CircuitBreaker(1, clock=clock)
    with pytest.raises(exc_type):
        breaker.call(raiser(exc_type()))
    assert breaker.state is CLOSED
    assert breaker.metrics.calls == 0


@pytest.mark.parametrize("exc_type", CONTROL_FLOW)
def test_control_flow_exception_in_a_trial_gives_its_permit_back(
    clock: ManualClock, exc_type: type[BaseException]
) -> None:
    """A trial ended by a control-flow exception leaves the circuit half-open with its permit."""
    breaker = opened(clock)
    clock.advance(60)
    with pytest.raises(exc_type):
        breaker.call(raiser(exc_type()))
    assert breaker.state is HALF_OPEN
    assert breaker.call(ok) == "ok"
    assert breaker.state is CLOSED


def test_an_excluded_exception_in_a_trial_gives_its_permit_back(clock: ManualClock) -> None:
    """An excluded error from a trial neither closes nor reopens; the next trial runs."""
    breaker = opened(clock, exclude=KeyError)
    clock.advance(60)
    with pytest.raises(KeyError):
        breaker.call(raiser(KeyError()))
    assert breaker.state is HALF_OPEN
    breaker.call(ok)
    assert breaker.state is CLOSED


# -- half-open ---------------------------------------------------------------------


def test_half_open_admits_max_calls_at_once_and_rejects_the_rest(clock: ManualClock) -> None:
    """With two trial calls in flight, a third is rejected as half-open."""
    breaker = opened(clock, half_open_max_calls=2)
    clock.advance(60)
    with breaker, breaker:
        with pytest.raises(CircuitOpenError) as info:
            breaker.call(ok)
        assert info.value.state is HALF_OPEN
        assert "half-open" in str(info.value)
    assert breaker.state is CLOSED


def test_success_threshold_trial_successes_close(clock: ManualClock) -> None:
    """With success_threshold=3 the circuit closes on the third trial success."""
    breaker = opened(clock, success_threshold=3, half_open_max_calls=3)
    clock.advance(60)
    breaker.call(ok)
    breaker.call(ok)
    assert breaker.state is HALF_OPEN
    breaker.call(ok)
    assert breaker.state is CLOSED


def test_state_reads_half_open_once_the_timeout_passed(clock: ManualClock) -> None:
    """The state is half-open when the timeout passed, before any call arrives."""
    breaker = opened(clock, recovery_timeout=10)
    assert breaker.is_open
    clock.advance(10)
    assert breaker.state is HALF_OPEN
    assert not breaker.is_open
    assert breaker.metrics.remaining == 0.0


def test_a_late_outcome_of_an_old_trial_is_ignored(clock: ManualClock) -> None:
    """A trial that ends in a later half-open period neither closes nor reopens it."""
    breaker = opened(clock, half_open_max_calls=2)
    clock.advance(60)
    entered, release = threading.Event(), threading.Event()

    def hang() -> str:
        entered.set()
        release.wait(5)
        return "late"

    old_trial = threading.Thread(target=breaker.call, args=(hang,))
    old_trial.start()
    assert entered.wait(5)
    fail_times(breaker, 1)  # the second trial fails: open again
    clock.advance(60)
    with breaker:  # a trial of the new half-open period
        release.set()
        old_trial.join(5)
        assert breaker.state is HALF_OPEN
    assert breaker.state is CLOSED


@pytest.mark.parametrize("window", [None, FailureRateWindow(0.5, calls=4, minimum_calls=2)])
def test_a_call_admitted_while_closed_does_not_touch_the_circuit_once_open(
    clock: ManualClock, window: FailureRateWindow | None
) -> None:
    """A success that ends after the circuit opened neither clears nor adds counts."""
    breaker = CircuitBreaker(2, clock=clock, window=window)
    entered, release = threading.Event(), threading.Event()

    def hang() -> str:
        entered.set()
        release.wait(5)
        return "late"

    late = threading.Thread(target=breaker.call, args=(hang,))
    late.start()
    assert entered.wait(5)
    fail_times(breaker, 2)
    release.set()
    late.join(5)
    assert (breaker.state, breaker.failures) == (OPEN, 2)


# -- growing open periods ----------------------------------------------------------


def test_a_backoff_recovery_timeout_grows_with_each_failed_trial_and_caps(
    clock: ManualClock,
) -> None:
    """Backoff(10, 40): open for 10, 20, 40, 40 s while trials keep failing."""
    breaker = CircuitBreaker(1, Backoff(10, 40, jitter=False), clock=clock)
    fail_times(breaker, 1)
    seen = []
    for _ in range(4):
        seen.append(breaker.metrics.remaining)
        clock.advance(seen[-1])
        fail_times(breaker, 1)
    assert seen == [10.0, 20.0, 40.0, 40.0]


def test_a_backoff_recovery_timeout_starts_over_after_a_recovery(clock: ManualClock) -> None:
    """Once a trial closes the circuit, the next opening waits the base delay again."""
    breaker = CircuitBreaker(1, Backoff(10, 40, jitter=False), clock=clock)
    fail_times(breaker, 1)
    clock.advance(10)
    fail_times(breaker, 1)
    clock.advance(20)
    breaker.call(ok)
    fail_times(breaker, 1)
    assert breaker.metrics.remaining == 10.0


def test_a_jittered_backoff_recovery_timeout_stays_within_its_bounds(clock: ManualClock) -> None:
    """FullJitter open periods lie in [0, nominal] and are not all equal."""
    seen = []
    for seed in range(20):
        jitter = FullJitter(random.Random(seed))
        breaker = CircuitBreaker(1, Backoff(10, 40, jitter=jitter), clock=clock)
        fail_times(breaker, 1)
        seen.append(breaker.metrics.remaining)
    assert all(0.0 <= s <= 10.0 for s in seen)
    assert len(set(seen)) > 1


# -- failure-rate and slow-call windows ----------------------------------------------


def test_a_count_window_opens_at_the_failure_rate(clock: ManualClock) -> None:
    """Window of 10 calls at 50 %: the fifth failure among ten calls opens it."""
    breaker = CircuitBreaker(clock=clock, window=FailureRateWindow(0.5, calls=10, minimum_calls=10))
    for _ in range(5):
        breaker.call(ok)
    fail_times(breaker, 4)
    assert breaker.state is CLOSED
    fail_times(breaker, 1)
    assert breaker.state is OPEN
    assert breaker.metrics.failure_rate == 0.5


def test_a_success_that_leaves_the_rate_too_high_opens_for_the_full_timeout(
    clock: ManualClock,
) -> None:
    """The call that fills the window may be a success; the circuit still opens for 60 s."""
    breaker = CircuitBreaker(clock=clock, window=FailureRateWindow(0.5, calls=3, minimum_calls=3))
    fail_times(breaker, 2)
    breaker.call(ok)
    assert breaker.is_open
    assert breaker.metrics.remaining == 60.0


def test_a_window_never_opens_below_its_minimum_calls(clock: ManualClock) -> None:
    """Four failures out of four calls do not open a window that needs five."""
    breaker = CircuitBreaker(clock=clock, window=FailureRateWindow(0.5, calls=10, minimum_calls=5))
    fail_times(breaker, 4)
    assert breaker.state is CLOSED
    fail_times(breaker, 1)
    assert breaker.state is OPEN


def test_a_time_window_forgets_calls_older_than_its_span(clock: ManualClock) -> None:
    """Failures older than the window no longer count toward the rate."""
    window = FailureRateWindow(0.5, seconds=10, minimum_calls=4)
    breaker = CircuitBreaker(clock=clock, window=window)
    fail_times(breaker, 3)
    assert breaker.failures == 3
    clock.advance(10)
    assert breaker.failures == 0
    fail_times(breaker, 1)
    for _ in range(3):
        breaker.call(ok)
    assert breaker.state is CLOSED


def test_slow_successful_calls_open_the_circuit_by_slow_rate(clock: ManualClock) -> None:
    """Calls that succeed but take longer than slow_call_duration count as slow."""
    breaker = CircuitBreaker(
        clock=clock,
        window=FailureRateWindow(0.5, calls=4, minimum_calls=4),
        slow_call_duration=1.0,
        slow_call_rate_threshold=0.5,
    )

    def slow() -> str:
        clock.advance(1.5)
        return "late"

    breaker.call(ok)
    breaker.call(ok)
    breaker.call(slow)
    assert breaker.state is CLOSED
    assert breaker.call(slow) == "late"
    assert breaker.state is OPEN
    assert breaker.metrics.slow_calls == 2


def test_a_slow_trial_call_reopens_the_circuit(clock: ManualClock) -> None:
    """A trial that succeeds too slowly shows the dependency is still down."""
    breaker = opened(clock, window=FailureRateWindow(calls=4), slow_call_duration=1.0)
    clock.advance(60)

    def slow() -> str:
        clock.advance(2.0)
        return "late"

    assert breaker.call(slow) == "late"
    assert breaker.state is OPEN


@pytest.mark.parametrize("form", ["call", "call_async", "with"])
def test_a_clock_that_fails_as_a_trial_starts_gives_its_error_and_the_permit_back(
    form: str,
) -> None:
    """The slow-call rule reads the clock as an admitted trial starts: if that read fails,
    the clock's own error propagates (not an UnboundLocalError) and the permit goes back."""

    class BrokenOnce(ManualClock):
        broken = False

        def monotonic(self) -> float:
            if self.broken:
                self.broken = False
                raise OSError("clock source gone")
            return super().monotonic()

    class BreakTheClockOnAdmission:
        """Hears the change to half-open that admits the trial, before the trial starts."""

        def on_state_change(
            self, breaker: CircuitBreaker, old: CircuitState, new: CircuitState
        ) -> None:
            if new is HALF_OPEN:
                clock.broken = True

    clock = BrokenOnce()
    breaker = CircuitBreaker(
        clock=clock,
        window=FailureRateWindow(calls=4),
        slow_call_duration=1.0,
        listeners=[BreakTheClockOnAdmission()],
    )
    breaker.trip()
    clock.advance(60)
    ran: list[str] = []

    async def trial_async() -> None:
        ran.append("async")

    def attempt() -> None:
        if form == "call":
            breaker.call(ran.append, "sync")
        elif form == "call_async":
            asyncio.run(breaker.call_async(trial_async))
        else:
            with breaker:
                ran.append("with")

    with pytest.raises(OSError, match="clock source gone"):
        attempt()
    assert ran == []
    assert breaker.state is HALF_OPEN
    attempt()  # the permit came back: the one trial is admitted, and closes the circuit
    assert ran
    assert breaker.state is CLOSED


@given(
    size=st.integers(1, 8),
    outcomes=st.lists(st.tuples(st.booleans(), st.booleans()), max_size=40),
)
def test_a_count_window_holds_exactly_the_last_calls(
    size: int, outcomes: list[tuple[bool, bool]]
) -> None:
    """Its totals are those of the last *size* recorded calls."""
    window = _CountWindow(size)
    for failed, slow in outcomes:
        window.record(failed, slow, 0.0)
    last = outcomes[-size:] if outcomes else []
    assert window.calls == len(last)
    assert window.failures == sum(f for f, _ in last)
    assert window.slow == sum(s for _, s in last)


@given(
    seconds=st.sampled_from([0.5, 1.0, 3.0, 10.0, 60.0]),
    buckets=st.integers(1, 12),
    events=st.lists(
        st.tuples(st.floats(0, 30, allow_nan=False), st.booleans(), st.booleans()), max_size=40
    ),
    later=st.floats(0, 30, allow_nan=False),
)
def test_a_time_window_holds_exactly_the_calls_of_its_live_buckets(
    seconds: float,
    buckets: int,
    events: list[tuple[float, bool, bool]],
    later: float,
) -> None:
    """Its totals are those of calls in the current bucket and the buckets-1 before it."""
    window = _TimeWindow(seconds, buckets)
    width = seconds / buckets
    now = 0.0
    recorded = []
    for step, failed, slow in events:
        now += step
        window.record(failed, slow, now)
        recorded.append((math.floor(now / width), failed, slow))
    now += later
    window.advance(now)
    current = math.floor(now / width)
    live = [(f, s) for k, f, s in recorded if k > current - buckets]
    assert (window.calls, window.failures, window.slow) == (
        len(live),
        sum(f for f, _ in live),
        sum(s for _, s in live),
    )


def _lines_run(call: Callable[[], object]) -> int:
    """How many lines of Python *call* runs: work, counted the same on any machine."""
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    gc.collect()
    gc.disable()  # a collection inside would count the lines of whatever it finalizes
    sys.settrace(tracer)
    try:
        call()
    finally:
        sys.settrace(None)
        gc.enable()
    return count


def _idle_then_call(buckets: int, idle: float) -> tuple[int, float]:
    """Lines run by the first call *idle* seconds after calls at 0 s and 500 s, on a
    window of 1000 s in *buckets* (the first and the middle bucket, any bucket width),
    and the window's failure rate after it."""
    clock = ManualClock()
    window = FailureRateWindow(0.9, seconds=1000, buckets=buckets, minimum_calls=1000)
    breaker = CircuitBreaker(window=window, clock=clock)
    for at in (0.0, 500.0):  # calls in two buckets half a span apart, then quiet
        clock.advance(at - clock.monotonic())
        for _ in range(3):
            breaker.call(ok)
            with pytest.raises(Boom):
                breaker.call(fail)
    clock.advance(idle)
    lines = _lines_run(lambda: breaker.call(ok))
    return lines, breaker.metrics.failure_rate


# The failure rate after the call: 3 successes and 3 failures in each of the two buckets
# (at 0 s and 500 s), then the success. 900 s and 999 s: the first bucket aged out, the
# middle one is live; from 1000 s, both aged out.
_RATE_AFTER_IDLE = {
    0.0: 6 / 13,
    150.0: 6 / 13,
    400.0: 6 / 13,
    900.0: 3 / 7,
    999.0: 3 / 7,
    1000.0: 0.0,
    5000.0: 0.0,
}


@pytest.mark.parametrize("idle", sorted(_RATE_AFTER_IDLE))
def test_a_call_after_an_idle_spell_costs_the_same_whatever_the_bucket_count(
    idle: float,
) -> None:
    """Catching up is O(1) in the bucket count: 10,000 buckets of 0.1 s run exactly the
    lines 10 buckets of 100 s do, after any idle spell, within the span or past it, also
    when the oldest bucket ages out and the middle one stays (900 s); and the window then
    holds exactly its live buckets."""
    lines, rate = _idle_then_call(10_000, idle)
    assert (lines, rate) == _idle_then_call(10, idle)
    assert rate == pytest.approx(_RATE_AFTER_IDLE[idle])


def test_a_window_keeps_only_the_buckets_that_saw_calls() -> None:
    """Memory follows the calls, not the bucket count; an idle spell past the span empties it."""
    window = _TimeWindow(1000.0, 10_000)
    for now in (0.0, 0.05, 0.15, 500.0):
        window.record(True, False, now)
    assert len(window._buckets) == 3  # pyright: ignore[reportPrivateUsage]
    window.advance(1000.1)  # the buckets of 0.0 and 0.1 s aged out
    assert len(window._buckets) == 2  # pyright: ignore[reportPrivateUsage]  # 500.0 and now
    assert (window.calls, window.failures) == (1, 1)
    window.advance(2100.0)  # idle for longer than the span
    assert (window.calls, window.failures, len(window._buckets)) == (0, 0, 1)  # pyright: ignore[reportPrivateUsage]


@given(
    calls=st.integers(1, 200),
    data=st.data(),
    threshold=st.floats(0.01, 1.0),
)
def test_the_failure_rate_reaches_the_threshold_exactly_when_it_should(
    calls: int, data: st.DataObject, threshold: float
) -> None:
    """A full count window opens iff failures / calls >= the threshold."""
    failures = data.draw(st.integers(0, calls))
    clock = ManualClock()
    breaker = CircuitBreaker(
        clock=clock, window=FailureRateWindow(threshold, calls=calls, minimum_calls=calls)
    )
    for i in range(calls):
        if i < calls - failures:
            breaker.call(ok)
        else:
            with pytest.raises(Boom):
                breaker.call(fail)
    assert breaker.is_open is (failures / calls >= threshold)
    assert 0.0 <= breaker.metrics.failure_rate <= 1.0


# -- the closed path of a window on the in-memory store ------------------------------

SUCCESS_STEPS = st.sampled_from(["success", "success", "failure", "slow", "slow failure"])


def window_policy(window: FailureRateWindow, slow_rate: float = 1.0) -> BreakerPolicy:
    return BreakerPolicy(5, 60.0, 1, 1, window, slow_rate, slow_calls=True)


def totals(window: _CountWindow | _TimeWindow) -> tuple[int, int, int]:
    return window.calls, window.failures, window.slow


@given(
    size=st.integers(1, 6),
    minimum=st.integers(1, 6),
    threshold=st.sampled_from([0.25, 0.5, 1.0]),
    slow_rate=st.sampled_from([0.5, 1.0]),
    steps=st.lists(SUCCESS_STEPS, max_size=40),
)
def test_a_count_window_enters_a_success_as_record_does_unless_it_opens(
    size: int, minimum: int, threshold: float, slow_rate: float, steps: list[str]
) -> None:
    """add_success, or nothing while quiet, leaves record()'s totals; it refuses the openers."""
    config = FailureRateWindow(threshold, calls=size, minimum_calls=minimum)
    policy = window_policy(config, slow_rate)
    window, reference = _CountWindow(size, config), _CountWindow(size, config)
    for step in steps:
        expected = copy.deepcopy(reference)
        expected.record("failure" in step, "slow" in step, 0.0)
        if step == "success":
            opens = policy.rate_exceeded(*totals(expected))
            # What the breaker does: a quiet window is left alone, without a lock.
            entered = window.quiet or window.add_success(policy, 0.0)
            assert entered is not opens
            if not entered:
                assert totals(window) == totals(reference)  # refused: nothing counted
                window.record(False, False, 0.0)  # the store records it (and opens)
        else:
            window.record("failure" in step, "slow" in step, 0.0)
        reference = expected
        assert totals(window) == totals(reference)
        assert window.quiet is (window.calls == size and not window.failures and not window.slow)


@given(
    seconds=st.sampled_from([1.0, 3.0, 10.0]),
    buckets=st.integers(1, 5),
    minimum=st.integers(1, 4),
    threshold=st.sampled_from([0.25, 0.5, 1.0]),
    steps=st.lists(st.tuples(st.sampled_from([0.0, 0.3, 1.0, 2.5, 12.0]), SUCCESS_STEPS)),
)
def test_a_time_window_enters_a_success_as_record_does_unless_it_opens(
    seconds: float, buckets: int, minimum: int, threshold: float, steps: list[tuple[float, str]]
) -> None:
    """add_success leaves the totals of record() in every bucket; it refuses the openers."""
    config = FailureRateWindow(threshold, seconds=seconds, buckets=buckets, minimum_calls=minimum)
    policy = window_policy(config)
    window = _TimeWindow(seconds, buckets, config)
    recorded: list[tuple[float, bool, bool]] = []

    def replayed() -> _TimeWindow:  # a window's counter is not copied: replay the calls instead
        reference = _TimeWindow(seconds, buckets, config)
        for when, failed, slow in recorded:
            reference.record(failed, slow, when)
        return reference

    reference = replayed()
    now = 0.0
    for step, kind in steps:
        now += step
        recorded.append((now, "failure" in kind, "slow" in kind))
        expected = replayed()
        if kind == "success":
            assert not window.quiet
            entered = window.add_success(policy, now)
            assert entered is not policy.rate_exceeded(*totals(expected))
            if not entered:
                calls, failures, slow = totals(expected)
                assert totals(window) == (calls - 1, failures, slow)
                window.record(False, False, now)
        else:
            window.record("failure" in kind, "slow" in kind, now)
        reference = expected
        assert totals(window) == totals(reference)
    later = now + seconds / 2
    window.advance(later)
    reference.advance(later)
    assert totals(window) == totals(reference)


def test_a_circuit_leaves_a_success_for_another_window_to_its_store() -> None:
    """The window of another breaker bound to the circuit is not counted into."""
    store = MemoryStore()
    mine = window_policy(FailureRateWindow(calls=4, minimum_calls=4))
    theirs = window_policy(FailureRateWindow(seconds=10, minimum_calls=4))
    circuit = store.bind("shared", mine)
    assert circuit.enter_success(mine, 0.0) is True
    store.bind("shared", theirs)
    assert circuit.enter_success(mine, 0.0) is False
    assert store.snapshot("shared", theirs, 0.0).window_calls == 0


def test_a_circuit_counts_into_an_equal_window_of_another_breaker() -> None:
    """An equal window (another FailureRateWindow object) is the same window."""
    store = MemoryStore()
    circuit = store.bind("shared", window_policy(FailureRateWindow(calls=4, minimum_calls=4)))
    equal = window_policy(FailureRateWindow(calls=4, minimum_calls=4))
    assert circuit.enter_success(equal, 0.0) is True
    assert store.snapshot("shared", equal, 0.0).window_calls == 1


# -- a time window's successes, counted without the lock ------------------------------


class _CountingLock:
    """A lock that counts how often it was taken."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.taken = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.taken += 1
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_time_window_without_failures_counts_a_success_without_a_lock(
    clock: ManualClock,
) -> None:
    """The closed success of a time window holding no failure takes no lock within a bucket;
    once the window holds a failure, each success is judged under the circuit's lock."""
    breaker = CircuitBreaker(clock=clock, window=FailureRateWindow(seconds=10, minimum_calls=5))
    guarded = breaker(ok)
    guarded()  # the first success enters the first bucket, under the lock
    circuit = breaker._circuit  # pyright: ignore[reportPrivateUsage]
    assert circuit is not None
    lock = _CountingLock()
    circuit.lock = lock  # type: ignore[assignment]
    for _ in range(100):
        guarded()
        breaker.call(ok)
    assert lock.taken == 0
    fail_times(breaker, 1)
    taken = lock.taken
    guarded()
    breaker.call(ok)
    assert lock.taken == taken + 2
    assert (breaker.metrics.failure_rate, breaker.failures) == (1 / 204, 1)


@pytest.mark.parametrize(
    "window",
    [
        pytest.param(lambda: FailureRateWindow(calls=10, minimum_calls=5), id="count"),
        pytest.param(lambda: FailureRateWindow(seconds=10, minimum_calls=5), id="time"),
    ],
)
def test_breakers_of_one_circuit_with_equal_windows_count_successes_without_a_lock(
    clock: ManualClock, window: Callable[[], FailureRateWindow]
) -> None:
    """A breaker rebuilt over a circuit with an equal window (another object: a config read
    again, a copy) counts a closed success without the lock, as the first breaker does."""
    store = MemoryStore()
    first = CircuitBreaker(name="svc", store=store, clock=clock, window=window())
    again = CircuitBreaker(name="svc", store=store, clock=clock, window=window())
    for _ in range(10):  # a count window full of successes; a time window's first bucket
        again.call(ok)
    circuit = again._circuit  # pyright: ignore[reportPrivateUsage]
    assert circuit is not None
    assert circuit is first._circuit  # pyright: ignore[reportPrivateUsage]
    lock = _CountingLock()
    circuit.lock = lock  # type: ignore[assignment]
    guarded, guarded_first = again(ok), first(ok)
    for _ in range(100):
        guarded()
        again.call(ok)
        guarded_first()
    assert lock.taken == 0
    assert (again.window, first.window) == (window(), window())
    assert window_totals(again, clock) == ((10, 0) if window().calls else (310, 0))


def test_a_circuit_hands_the_window_it_was_made_with_to_equal_windows() -> None:
    """The first window asked for makes the circuit; an equal one gets that object back,
    before any breaker is bound (breakers built at once in threads agree); another stays."""
    store = MemoryStore()
    first = FailureRateWindow(seconds=10)
    shared = store._shared_window  # pyright: ignore[reportPrivateUsage]
    assert shared("svc", first) is first
    assert shared("svc", FailureRateWindow(seconds=10)) is first
    other = FailureRateWindow(seconds=20)
    assert shared("svc", other) is other
    assert shared("elsewhere", FailureRateWindow(seconds=10)) is not first


def window_totals(breaker: CircuitBreaker, clock: ManualClock) -> tuple[int, int]:
    """The calls and failures the breaker's window holds now."""
    stored = breaker._store.snapshot(  # pyright: ignore[reportPrivateUsage]
        breaker.name,
        breaker._policy,  # pyright: ignore[reportPrivateUsage]
        clock.monotonic(),
    )
    return stored.window_calls, stored.window_failures


def test_successes_counted_without_the_lock_age_out_with_their_bucket() -> None:
    """A success counted without the lock belongs to the bucket its clock reading falls in."""
    clock = ManualClock(0.0)
    window = FailureRateWindow(seconds=10, buckets=10, minimum_calls=1)
    breaker = CircuitBreaker(clock=clock, window=window)
    for _ in range(6):  # the first under the lock (it opens bucket 0), then without it
        breaker.call(ok)
    clock.advance(1.0)
    breaker.call(ok)  # bucket 1
    assert window_totals(breaker, clock) == (7, 0)
    clock.advance(9.5)  # bucket 0 aged out, bucket 1 still live
    assert window_totals(breaker, clock) == (1, 0)


HIT_ACTIONS = st.lists(
    st.tuples(st.sampled_from(["start", "hit", "finish", "fail", "tick"]), st.integers(0, 3)),
    max_size=80,
)


class _Hitters:
    """Four closed successes of a time window, each run step by step as the breaker runs it:
    read the clock and ``until``; count with ``next(hits)``; compare with ``until`` again
    (and take the lock's path when a failure came in between)."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.store = MemoryStore()
        self.circuit = self.store.bind("c", policy)
        self.now = 0.0
        self.stage: dict[int, tuple[str, float, _TimeWindow]] = {}
        self.successes = self.failures = 0

    def under_lock(self, now: float, counted: _TimeWindow | None) -> None:
        if not self.circuit.enter_success(self.policy, now, counted):
            self.store.record_success("c", self.policy, None, now, False)

    def step(self, action: str, who: int) -> None:
        stage = self.stage.get(who)
        if action == "start" and stage is None and self.circuit.state is CLOSED:
            self.successes += 1
            window = self.circuit.timed
            assert window is not None
            if self.now < window.until:
                self.stage[who] = ("read", self.now, window)
            else:
                self.under_lock(self.now, None)
        elif action == "hit" and stage is not None and stage[0] == "read":
            next(stage[2].hits)
            self.stage[who] = ("counted", stage[1], stage[2])
        elif action == "finish" and stage is not None and stage[0] == "counted":
            del self.stage[who]
            if not stage[1] < stage[2].until:
                self.under_lock(stage[1], stage[2])
        elif action == "fail" and self.circuit.state is CLOSED:
            self.failures += 1
            self.store.record_failure("c", self.policy, None, self.now, False)
        elif action == "tick":
            self.now += 0.15  # never past 12 s: every bucket of 0.5 s of the 20 s window stays live

    def finish_all(self) -> None:
        for who in sorted(self.stage):
            for action in ("hit", "finish"):
                self.step(action, who)

    def totals(self) -> tuple[int, int, int]:
        stored = self.store.snapshot("c", self.policy, self.now)
        return stored.window_calls, stored.window_failures, stored.window_slow


@given(actions=HIT_ACTIONS)
def test_successes_counted_without_the_lock_are_each_counted_once(
    actions: list[tuple[str, int]],
) -> None:
    """However four successes interleave, step by step, with failures and the clock crossing
    buckets, the window's totals are every success and failure, each once."""
    config = FailureRateWindow(1.0, seconds=20, buckets=40, minimum_calls=10_000)  # never opens
    hitters = _Hitters(window_policy(config))
    for action, who in actions:
        hitters.step(action, who)
    hitters.finish_all()
    assert hitters.totals() == (hitters.successes + hitters.failures, hitters.failures, 0)


@given(
    threshold=st.sampled_from([0.25, 0.5, 0.75, 1.0]),
    minimum=st.integers(1, 6),
    actions=HIT_ACTIONS,
)
def test_no_success_counted_without_the_lock_escapes_the_failure_rate(
    threshold: float, minimum: int, actions: list[tuple[str, int]]
) -> None:
    """Whenever no success is halfway, a closed circuit's window is under its threshold: a
    success that raced with a failure is judged under the lock, not left uncounted or unjudged."""
    config = FailureRateWindow(threshold, seconds=20, buckets=40, minimum_calls=minimum)
    hitters = _Hitters(window_policy(config))
    for action, who in [*actions, ("end", 0)]:
        if action == "end":
            hitters.finish_all()
        else:
            hitters.step(action, who)
        if not hitters.stage and hitters.circuit.state is CLOSED:
            calls, failures, _ = hitters.totals()
            assert calls <= hitters.successes + hitters.failures
            assert not hitters.policy.rate_exceeded(calls, failures, 0)


def test_eight_threads_count_every_success_of_a_time_window_without_failures(
    clock: ManualClock,
) -> None:
    """40,000 successes from 8 threads, counted without the lock while the clock crosses
    buckets (threads switching every few microseconds): the window holds each one once."""
    breaker = CircuitBreaker(clock=clock, window=FailureRateWindow(seconds=60, buckets=600))
    guarded = breaker(ok)
    barrier = threading.Barrier(8)

    def work(index: int) -> None:
        barrier.wait(5)
        for i in range(5_000):
            guarded() if i % 2 else breaker.call(ok)
            if index == 0 and i % 100 == 0:
                clock.advance(0.05)  # 2.5 s in all: 25 buckets, none aged out

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        sys.setswitchinterval(interval)
    assert breaker.metrics.successes == 40_000
    assert window_totals(breaker, clock) == (40_000, 0)


def test_a_success_that_ends_after_trip_is_not_counted_in_a_time_window(
    clock: ManualClock,
) -> None:
    """A circuit opened by hand stops counting the closed successes still running."""
    breaker = CircuitBreaker(clock=clock, window=FailureRateWindow(seconds=10, minimum_calls=5))
    entered, release = threading.Event(), threading.Event()

    def hang() -> str:
        entered.set()
        release.wait(5)
        return "late"

    breaker.call(ok)
    late = threading.Thread(target=breaker(hang))
    late.start()
    assert entered.wait(5)
    breaker.trip()
    release.set()
    late.join(5)
    assert breaker.state is OPEN
    assert (window_totals(breaker, clock), breaker.metrics.successes) == ((1, 0), 2)


@pytest.mark.parametrize(
    "window",
    [
        FailureRateWindow(1.0, calls=2, minimum_calls=2),
        FailureRateWindow(1.0, seconds=10, minimum_calls=2),
    ],
    ids=["count", "time"],
)
def test_a_late_success_leaves_the_window_of_an_open_circuit_as_it_was(
    clock: ManualClock, window: FailureRateWindow
) -> None:
    """A success admitted closed that ends once the circuit opened is not counted."""
    breaker = CircuitBreaker(clock=clock, window=window)
    entered, release = threading.Event(), threading.Event()

    def hang() -> str:
        entered.set()
        release.wait(5)
        return "late"

    late = threading.Thread(target=breaker(hang))
    late.start()
    assert entered.wait(5)
    fail_times(breaker, 2)
    release.set()
    late.join(5)
    assert breaker.state is OPEN
    assert (breaker.failures, breaker.metrics.failure_rate) == (2, 1.0)


@pytest.mark.parametrize(
    "window",
    [FailureRateWindow(calls=10, minimum_calls=5), FailureRateWindow(seconds=10, minimum_calls=5)],
    ids=["count", "time"],
)
def test_closed_successes_in_a_window_skip_the_store_protocol(
    clock: ManualClock, window: FailureRateWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """call, the decorator and call_async count a closed success without record_success."""
    recorded: list[tuple[Any, ...]] = []
    record_success = MemoryStore.record_success

    def spy(self: MemoryStore, *args: Any) -> Any:
        recorded.append(args)
        return record_success(self, *args)

    monkeypatch.setattr(MemoryStore, "record_success", spy)
    breaker = CircuitBreaker(clock=clock, window=window)
    guarded = breaker(ok)

    async def fetch() -> str:
        return "ok"

    async def calls() -> None:
        for _ in range(10):
            await breaker.call_async(fetch)

    for _ in range(10):
        breaker.call(ok)
        guarded()
    asyncio.run(calls())
    assert recorded == []
    metrics = breaker.metrics
    assert (metrics.successes, metrics.failure_rate) == (30, 0.0)
    fail_times(breaker, 1)
    assert breaker.failures == 1


@pytest.mark.parametrize(
    "window",
    [
        FailureRateWindow(0.5, calls=3, minimum_calls=3),
        FailureRateWindow(0.5, seconds=10, minimum_calls=3),
    ],
    ids=["count", "time"],
)
def test_a_success_that_opens_a_window_is_heard_and_logged(
    clock: ManualClock, window: FailureRateWindow, caplog: pytest.LogCaptureFixture
) -> None:
    """The closed path leaves an opening success to the store: listeners and logs hear it."""
    heard: list[tuple[CircuitState, CircuitState]] = []

    class Changes:
        def on_state_change(self, breaker: CircuitBreaker, old: Any, new: Any) -> None:
            heard.append((old, new))

    breaker = CircuitBreaker(clock=clock, window=window, name="rates", listeners=[Changes()])
    fail_times(breaker, 2)
    assert breaker(ok)() == "ok"
    assert heard == [(CLOSED, OPEN)]
    assert breaker.metrics.remaining == 60.0
    opened = [r for r in caplog.records if getattr(r, "event", "") == "circuit_open"]
    assert [r.getMessage().split(";")[0] for r in opened] == [
        "circuit 'rates' opened: 2 of "
        + ("the last 3 calls" if window.calls else "3 calls in the last 10 s")
        + " failed (67%, threshold 50%)"
    ]
    assert opened[0].trigger == "failure_rate"  # type: ignore[attr-defined]


def test_a_count_window_of_successes_only_takes_no_lock(clock: ManualClock) -> None:
    """Once its ring holds only successes, a success reads one flag: the circuit's lock is free."""
    breaker = CircuitBreaker(clock=clock, window=FailureRateWindow(calls=10, minimum_calls=5))
    guarded = breaker(ok)
    for _ in range(10):
        guarded()
    circuit = breaker._circuit
    assert circuit is not None
    done = threading.Event()

    def succeed() -> None:
        guarded()
        breaker.call(ok)
        done.set()

    with circuit.lock:  # a success that needed the lock would wait here
        worker = threading.Thread(target=succeed)
        worker.start()
        finished = done.wait(5)
    worker.join(5)
    assert finished
    assert breaker.metrics.successes == 12


# -- the call forms ----------------------------------------------------------------


def test_call_passes_positional_and_keyword_arguments(clock: ManualClock) -> None:
    """call(func, *args, **kwargs) forwards everything, even a keyword named func."""
    breaker = CircuitBreaker(clock=clock)

    def echo(*args: object, **kwargs: object) -> tuple[object, ...]:
        return args, kwargs

    assert breaker.call(echo, 1, 2, func="f") == ((1, 2), {"func": "f"})


def test_the_decorator_keeps_name_doc_and_wrapped(clock: ManualClock) -> None:
    """A decorated function keeps __name__, __doc__ and __wrapped__."""
    breaker = CircuitBreaker(clock=clock)

    def fetch(key: str) -> str:
        """Fetch a key."""
        return key

    guarded = breaker(fetch)
    assert (guarded.__name__, guarded.__doc__) == ("fetch", "Fetch a key.")
    assert guarded.__wrapped__ is fetch  # type: ignore[attr-defined]
    assert guarded("k") == "k"


def test_the_decorator_counts_failures_and_rejects(clock: ManualClock) -> None:
    """A decorated function opens the circuit and is rejected like call()."""
    breaker = CircuitBreaker(2, clock=clock)
    guarded = breaker(fail)
    for _ in range(2):
        with pytest.raises(Boom):
            guarded()
    with pytest.raises(CircuitOpenError):
        guarded()
    clock.advance(60)
    assert breaker(ok)() == "ok"


def test_the_decorator_works_on_methods(clock: ManualClock) -> None:
    """Decorated methods receive self and share the breaker."""
    breaker = CircuitBreaker(clock=clock)

    class Client:
        def __init__(self, base: str) -> None:
            self.base = base

        @breaker
        def get(self, path: str) -> str:
            return self.base + path

    assert Client("http://x").get("/y") == "http://x/y"


def test_the_decorator_works_on_async_functions(clock: ManualClock) -> None:
    """An async def function stays async and goes through the breaker."""
    breaker = CircuitBreaker(1, clock=clock)

    @breaker
    async def down() -> None:
        raise Boom

    @breaker
    async def up() -> str:
        return "up"

    async def main() -> None:
        assert await up() == "up"
        with pytest.raises(Boom):
            await down()
        with pytest.raises(CircuitOpenError):
            await up()

    asyncio.run(main())
    assert breaker.metrics.rejected == 1


def _generator() -> Iterator[int]:
    yield 1


async def _async_generator() -> Any:
    yield 1


@pytest.mark.parametrize("func", [_generator, _async_generator])
def test_decorating_a_generator_function_raises_type_error(func: Callable[..., Any]) -> None:
    """Generators are refused at decoration time, saying why."""
    with pytest.raises(TypeError, match="generator"):
        CircuitBreaker()(func)


def test_a_with_block_counts_as_one_call(clock: ManualClock) -> None:
    """'with breaker:' counts a failure of its body and rejects when open."""
    breaker = CircuitBreaker(1, clock=clock)
    with breaker:
        pass
    with pytest.raises(Boom), breaker:
        raise Boom
    assert breaker.state is OPEN
    ran = False
    with pytest.raises(CircuitOpenError), breaker:
        ran = True
    assert not ran


def test_an_async_with_block_counts_as_one_call(clock: ManualClock) -> None:
    """'async with breaker:' behaves like the sync form."""
    breaker = CircuitBreaker(1, clock=clock)

    async def main() -> None:
        async with breaker:
            await asyncio.sleep(0)
        with pytest.raises(Boom):
            async with breaker:
                raise Boom
        with pytest.raises(CircuitOpenError):
            async with breaker:
                pass

    asyncio.run(main())
    assert breaker.metrics.failures == 1


def test_with_blocks_of_throwaway_breakers_leave_nothing_per_breaker_in_the_context() -> None:
    """10,000 breakers each used once in a ``with`` block: the thread's context holds at
    most one variable of the library's, not one per breaker."""
    before = len(contextvars.copy_context())
    for n in range(10_000):
        with CircuitBreaker(name=f"throwaway-{n}"):
            pass
    assert len(contextvars.copy_context()) <= before + 1


@pytest.mark.parametrize("blocks", ["one", "nested", "left out of order"])
def test_a_breaker_whose_with_blocks_ended_is_not_kept_alive_by_the_context(blocks: str) -> None:
    """Once its blocks are over, nothing in the thread's context refers to a breaker: it
    is collected when the caller drops it (throwaway breakers cost nothing afterwards)."""
    import weakref

    first, second = CircuitBreaker(name="first"), CircuitBreaker(name="second")
    if blocks == "one":
        with first:
            pass
    elif blocks == "nested":
        with first, second:
            pass
    else:
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)
    refs = [weakref.ref(first), weakref.ref(second)]
    del first, second
    gc.collect()
    assert [ref() for ref in refs] == [None, None]


def test_async_with_blocks_of_throwaway_breakers_leave_nothing_per_breaker() -> None:
    """The same in a task: its context ends with at most one variable of the library's."""

    async def main() -> tuple[int, int]:
        before = len(contextvars.copy_context())
        for n in range(1_000):
            async with CircuitBreaker(name=f"throwaway-{n}"):
                await asyncio.sleep(0)
        return before, len(contextvars.copy_context())

    before, after = asyncio.run(main())
    assert after <= before + 1


def test_with_blocks_may_end_in_another_order_than_they_began(clock: ManualClock) -> None:
    """Two breakers' blocks left out of order (an ExitStack can) each record their own outcome."""
    first, second = CircuitBreaker(1, clock=clock), CircuitBreaker(1, clock=clock)
    first.__enter__()
    second.__enter__()
    first.__exit__(Boom, Boom(), None)  # the outer block ends first, failed
    second.__exit__(None, None, None)
    assert (first.state, second.state) == (OPEN, CLOSED)
    assert (first.metrics.failures, second.metrics.successes) == (1, 1)
    with pytest.raises(RuntimeError, match="__exit__ without a matching __enter__"):
        second.__exit__(None, None, None)


def test_call_async_counts_like_call(clock: ManualClock) -> None:
    """call_async returns the awaited value, counts failures and rejects when open."""
    breaker = CircuitBreaker(1, clock=clock)

    async def value() -> int:
        return 7

    async def broken() -> None:
        raise Boom

    async def main() -> None:
        assert await breaker.call_async(value) == 7
        with pytest.raises(Boom):
            await breaker.call_async(broken)
        with pytest.raises(CircuitOpenError):
            await breaker.call_async(value)

    asyncio.run(main())


module_breaker = CircuitBreaker(name="module")


@module_breaker
def module_level(x: int) -> int:
    """Decorated at module level."""
    return x + 1


def test_a_module_level_decorated_function_pickles_by_reference() -> None:
    """pickle finds the decorated function by its qualified name."""
    assert pickle.loads(pickle.dumps(module_level)) is module_level
    assert module_level(1) == 2


# -- CircuitOpenError --------------------------------------------------------------


def test_circuit_open_error_survives_a_pickle_round_trip(clock: ManualClock) -> None:
    """breaker_name, remaining, state and the message survive pickling."""
    breaker = opened(clock, name="payments")
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ok)
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.breaker_name, copy.remaining, copy.state) == ("payments", 60.0, OPEN)
    assert str(copy) == str(info.value)


def test_circuit_open_error_says_which_circuit_and_how_long(clock: ManualClock) -> None:
    """The message names the breaker and the wait; it is a RuntimeError."""
    breaker = opened(clock, name="payments", recovery_timeout=12.5)
    with pytest.raises(RuntimeError, match=r"'payments' is open.*12\.500 s"):
        breaker.call(ok)


# -- state, metrics and manual control ------------------------------------------------


def test_reset_closes_and_forgets_failures(clock: ManualClock) -> None:
    """reset() closes an open circuit and zeroes the count."""
    breaker = CircuitBreaker(2, clock=clock)
    fail_times(breaker, 2)
    breaker.reset()
    assert (breaker.state, breaker.failures) == (CLOSED, 0)
    assert breaker.call(ok) == "ok"


def test_trip_opens_and_starts_the_recovery_timer(clock: ManualClock) -> None:
    """trip() opens a closed circuit for recovery_timeout from now."""
    breaker = CircuitBreaker(clock=clock, recovery_timeout=30)
    breaker.trip()
    assert breaker.is_open
    assert breaker.metrics.remaining == 30.0


def test_metrics_add_up_and_cannot_be_changed(clock: ManualClock) -> None:
    """The snapshot counts each kind of outcome and is frozen."""
    breaker = CircuitBreaker(2, clock=clock, exclude=KeyError, name="m")
    breaker.call(ok)
    fail_times(breaker, 1)
    with pytest.raises(KeyError):
        breaker.call(raiser(KeyError()))
    fail_times(breaker, 1)
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    metrics = breaker.metrics
    assert metrics == BreakerMetrics(
        name="m",
        state=OPEN,
        calls=4,
        successes=1,
        failures=2,
        ignored=1,
        slow_calls=0,
        rejected=1,
        failure_rate=2 / 3,
        slow_call_rate=0.0,
        remaining=60.0,
    )
    with pytest.raises(AttributeError):
        metrics.calls = 0  # type: ignore[misc]


def test_state_is_a_str_enum() -> None:
    """CircuitState values compare equal to their strings."""
    assert CircuitState("half_open") is HALF_OPEN
    assert CLOSED == "closed"
    assert str(OPEN) == "open"


def test_force_state_puts_a_breaker_in_any_state(clock: ManualClock) -> None:
    """force_state reaches open, half-open (trials admitted now) and closed."""
    breaker = CircuitBreaker(clock=clock, half_open_max_calls=1)
    force_state(breaker, "open")
    assert breaker.is_open
    force_state(breaker, HALF_OPEN)
    assert breaker.state is HALF_OPEN
    with breaker, pytest.raises(CircuitOpenError):
        breaker.call(ok)
    assert breaker.state is CLOSED
    force_state(breaker, "half_open")
    force_state(breaker, "closed")
    assert breaker.state is CLOSED


def test_force_state_rejects_unknown_states() -> None:
    """An unknown state or a non-breaker is refused."""
    with pytest.raises(ValueError, match="'ajar'"):
        force_state(CircuitBreaker(), "ajar")
    with pytest.raises(TypeError, match="CircuitBreaker"):
        force_state(object(), "open")  # type: ignore[arg-type]


# -- the store ---------------------------------------------------------------------


def test_constructing_a_breaker_keeps_the_stored_state(clock: ManualClock) -> None:
    """A breaker built on a store that holds an open circuit of its name is open."""
    store = MemoryStore()
    first = CircuitBreaker(2, clock=clock, name="db", store=store)
    fail_times(first, 2)
    again = CircuitBreaker(2, clock=clock, name="db", store=store)
    assert again.is_open
    with pytest.raises(CircuitOpenError):
        again.call(ok)


def test_breakers_with_different_names_do_not_share_state(clock: ManualClock) -> None:
    """One store holds many circuits, one per name; unnamed breakers never collide."""
    store = MemoryStore()
    a = CircuitBreaker(1, clock=clock, name="a", store=store)
    b = CircuitBreaker(1, clock=clock, name="b", store=store)
    fail_times(a, 1)
    assert (a.state, b.state) == (OPEN, CLOSED)
    assert CircuitBreaker().name != CircuitBreaker().name


def test_a_breaker_given_a_store_must_be_given_a_name() -> None:
    """Made-up names depend on construction order: two processes' breaker-1 would collide."""
    with pytest.raises(ValueError, match=r"name is required with store=MemoryStore\(") as info:
        CircuitBreaker(store=MemoryStore())
    assert "name=" in str(info.value)


# -- listeners and logs ------------------------------------------------------------


class Recorder(BreakerListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def on_state_change(
        self, breaker: CircuitBreaker, old: CircuitState, new: CircuitState
    ) -> None:
        self.events.append(("state", old.value, new.value))

    def on_failure(self, breaker: CircuitBreaker, exc: Exception) -> None:
        self.events.append(("failure", type(exc).__name__))

    def on_success(self, breaker: CircuitBreaker) -> None:
        self.events.append(("success",))

    def on_rejected(self, breaker: CircuitBreaker, error: CircuitOpenError) -> None:
        self.events.append(("rejected", error.breaker_name))


def test_listeners_hear_every_event_in_order(clock: ManualClock) -> None:
    """Success, failure, the change it causes, rejection, half-open, close."""
    recorder = Recorder()
    breaker = CircuitBreaker(1, 10, clock=clock, name="l", listeners=[recorder])
    breaker.call(ok)
    fail_times(breaker, 1)
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    clock.advance(10)
    breaker.call(ok)
    assert recorder.events == [
        ("success",),
        ("failure", "Boom"),
        ("state", "closed", "open"),
        ("rejected", "l"),
        ("state", "open", "half_open"),
        ("success",),
        ("state", "half_open", "closed"),
    ]


def test_a_listener_that_raises_is_logged_and_does_not_break_the_call(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Errors in hooks are logged on resilient.breaker; the call's result is intact."""

    class Broken(BreakerListener):
        def on_success(self, breaker: CircuitBreaker) -> None:
            raise RuntimeError("listener bug")

        def on_state_change(self, breaker: CircuitBreaker, old: Any, new: Any) -> None:
            raise RuntimeError("listener bug")

    breaker = CircuitBreaker(1, clock=clock, listeners=[Broken()], name="api")
    assert breaker.call(ok) == "ok"
    fail_times(breaker, 1)
    assert breaker.is_open
    breaker.reset()
    assert breaker.call(ok) == "ok"
    failures = [r for r in caplog.records if "raised RuntimeError: listener bug" in r.message]
    assert [r.message for r in failures] == [
        "listener test_a_listener_that_raises_is_logged_and_does_not_break_the_call.<locals>"
        ".Broken.on_success of circuit 'api' raised RuntimeError: listener bug; the breaker "
        "carries on, and further failures of this listener are not logged",
        "listener test_a_listener_that_raises_is_logged_and_does_not_break_the_call.<locals>"
        ".Broken.on_state_change of circuit 'api' raised RuntimeError: listener bug; the "
        "breaker carries on, and further failures of this listener are not logged",
    ]
    assert failures[0].exc_info is not None


def test_a_listener_may_use_the_breaker_because_no_lock_is_held(clock: ManualClock) -> None:
    """A hook that reads the state or resets the breaker does not deadlock."""
    seen = []

    class Resetter(BreakerListener):
        def on_state_change(
            self, breaker: CircuitBreaker, old: CircuitState, new: CircuitState
        ) -> None:
            seen.append(breaker.state)
            if new is OPEN:
                breaker.reset()

    breaker = CircuitBreaker(1, clock=clock, listeners=[Resetter()])
    worker = threading.Thread(target=lambda: fail_times(breaker, 1))
    worker.start()
    worker.join(5)
    assert not worker.is_alive()
    assert seen == [OPEN, CLOSED]


def test_the_opening_line_names_the_innermost_cause_of_the_last_failure(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrapped failure reads as its cause; the ``error`` field keeps the wrapper's text."""
    caplog.set_level(logging.WARNING, logger="resilient.breaker")
    breaker = CircuitBreaker(1, clock=clock, name="api")

    def fetch() -> None:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as error:
            raise ConnectionError(
                "Max retries exceeded with url: /x (Connection refused)"
            ) from error

    with pytest.raises(ConnectionError):
        breaker.call(fetch)
    [opened] = caplog.records
    assert "(the last: ConnectionError, caused by ConnectionRefusedError: [Errno 111] " in (
        opened.getMessage()
    )
    assert opened.error == "Max retries exceeded with url: /x (Connection refused)"  # type: ignore[attr-defined]


def test_state_changes_are_logged_with_structured_fields(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Each change is one line that reads on its own, and carries the same facts as fields."""
    caplog.set_level(logging.INFO, logger="resilient.breaker")
    breaker = CircuitBreaker(2, clock=clock, name="api")
    fail_times(breaker, 2)
    clock.advance(60)
    breaker.call(ok)
    records = [r for r in caplog.records if r.name == "resilient.breaker"]
    assert [(r.levelname, r.getMessage()) for r in records] == [
        (
            "WARNING",
            "circuit 'api' opened after 2 consecutive failures (the last: Boom: down); calls "
            "are rejected for the next 60 s, then 1 trial call goes through",
        ),
        ("INFO", "circuit 'api' half-open: letting 1 trial call through to test the dependency"),
        ("INFO", "circuit 'api' closed: 1 trial call succeeded; calls flow again"),
    ]
    first = records[0]
    assert (first.breaker, first.old_state, first.new_state, first.failures) == (  # type: ignore[attr-defined]
        "api",
        "closed",
        "open",
        2,
    )
    assert first.open_for == 60.0  # type: ignore[attr-defined]
    assert (first.trigger, first.error_type, first.error) == (
        "failures",
        f"{__name__}.Boom",
        "down",
    )  # type: ignore[attr-defined]
    assert [r.trigger for r in records] == ["failures", "recovery_timeout", "trial_succeeded"]  # type: ignore[attr-defined]


def test_listeners_need_at_least_one_hook() -> None:
    """A listener with no hook at all is a configuration error."""
    with pytest.raises(TypeError, match="on_state_change"):
        CircuitBreaker(listeners=[object()])


# -- time ----------------------------------------------------------------------------


class CountingClock(ManualClock):
    __slots__ = ("reads",)

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def monotonic(self) -> float:
        self.reads += 1
        return super().monotonic()


def test_the_closed_happy_path_never_reads_the_clock() -> None:
    """Successes on a closed consecutive-rule breaker cost no clock read."""
    clock = CountingClock()
    breaker = CircuitBreaker(clock=clock)
    guarded = breaker(ok)
    for _ in range(100):
        breaker.call(ok)
        guarded()
    assert clock.reads == 0


def test_use_clock_reaches_a_breaker_built_earlier() -> None:
    """A breaker without clock= reads the default clock at each call."""
    breaker = CircuitBreaker(1, 30)
    manual = ManualClock(500.0)
    with use_clock(manual):
        fail_times(breaker, 1)
        assert breaker.metrics.remaining == 30.0
        manual.advance(30)
        assert breaker.state is HALF_OPEN


def test_freezegun_drives_the_default_clock() -> None:
    """Under freezegun, ticking frozen time lets the trial through."""
    with freeze_time("2024-01-01") as frozen:
        breaker = CircuitBreaker(1, 30)
        fail_times(breaker, 1)
        with pytest.raises(CircuitOpenError):
            breaker.call(ok)
        frozen.tick(30)
        assert breaker.call(ok) == "ok"
        assert breaker.state is CLOSED


def test_importing_the_breaker_does_not_import_asyncio() -> None:
    """resilient.breaker loads asyncio only when async code runs."""
    code = "import sys, resilient.breaker; assert 'asyncio' not in sys.modules, 'asyncio'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- configuration errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"failure_threshold": 0}, ValueError, "failure_threshold must be >= 1, got 0"),
        ({"failure_threshold": 2.5}, TypeError, "failure_threshold must be an int"),
        ({"failure_threshold": True}, TypeError, "failure_threshold must be an int"),
        ({"recovery_timeout": -1}, ValueError, "recovery_timeout must be a finite number >= 0"),
        ({"recovery_timeout": math.inf}, ValueError, "recovery_timeout .* got inf"),
        ({"recovery_timeout": math.nan}, ValueError, "recovery_timeout .* got nan"),
        (
            {"recovery_timeout": "60"},
            TypeError,
            "recovery_timeout must be a number .* or a Backoff",
        ),
        (
            {"expected_exception": ValueError("x")},
            TypeError,
            "expected_exception must be an exception type",
        ),
        (
            {"expected_exception": (ValueError, int)},
            TypeError,
            "expected_exception must be an exception type",
        ),
        ({"expected_exception": ()}, ValueError, "expected_exception must name at least one"),
        ({"expected_exception": KeyboardInterrupt}, TypeError, "KeyboardInterrupt is never caught"),
        ({"exclude": "KeyError"}, TypeError, "exclude must be an exception type"),
        ({"half_open_max_calls": 0}, ValueError, "half_open_max_calls must be >= 1, got 0"),
        ({"success_threshold": -1}, ValueError, "success_threshold must be >= 1, got -1"),
        ({"window": 0.5}, TypeError, "window must be a FailureRateWindow"),
        ({"slow_call_duration": 1.0}, ValueError, "slow_call_duration needs window="),
        (
            {"slow_call_duration": 0, "window": FailureRateWindow()},
            ValueError,
            "slow_call_duration must be a finite number > 0",
        ),
        (
            {"slow_call_rate_threshold": 0},
            ValueError,
            r"slow_call_rate_threshold must be in \(0, 1\], got 0",
        ),
        ({"slow_call_rate_threshold": 1.5}, ValueError, "slow_call_rate_threshold"),
        ({"name": ""}, TypeError, "name must be a non-empty str"),
        ({"clock": object()}, TypeError, "clock must provide monotonic"),
        ({"listeners": BreakerListener()}, TypeError, "listeners must be an iterable"),
        (
            {"listeners": [type("L", (), {"on_failure": 3})()]},
            TypeError,
            "on_failure must be callable",
        ),
        ({"store": object()}, TypeError, "store must implement BreakerStore"),
    ],
)
def test_bad_configuration_fails_at_construction(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Each bad parameter raises at once, naming the parameter and the value."""
    with pytest.raises(error, match=message):
        CircuitBreaker(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"failure_rate_threshold": 0}, ValueError, r"failure_rate_threshold must be in \(0, 1\]"),
        ({"failure_rate_threshold": 1.01}, ValueError, "failure_rate_threshold"),
        ({"calls": 0}, ValueError, "calls must be >= 1, got 0"),
        ({"seconds": -1}, ValueError, "seconds must be a finite number > 0, got -1"),
        ({"seconds": math.inf}, ValueError, "seconds must be a finite number > 0"),
        ({"calls": 10, "seconds": 10}, ValueError, "not both"),
        ({"minimum_calls": 0}, ValueError, "minimum_calls must be >= 1, got 0"),
        ({"seconds": 10, "buckets": 0}, ValueError, "buckets must be >= 1, got 0"),
        ({"buckets": 5}, ValueError, "buckets only applies to a time-based window"),
        ({"calls": 10**11}, ValueError, r"calls must be <= 1_000_000, got 100000000000$"),
        ({"calls": 1_000_001}, ValueError, r"calls must be <= 1_000_000, got 1000001$"),
        (
            {"seconds": 10, "buckets": 10**9},
            ValueError,
            r"buckets must be <= 10_000, got 1000000000$",
        ),
    ],
)
def test_bad_window_configuration_fails_at_construction(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """FailureRateWindow validates like the breaker does."""
    with pytest.raises(error, match=message):
        FailureRateWindow(**kwargs)


def test_the_largest_windows_are_accepted() -> None:
    """The bounds themselves are allowed, and a window that large works."""
    clock = ManualClock()
    for window in (
        FailureRateWindow(calls=1_000_000),
        FailureRateWindow(seconds=1000, buckets=10_000),
    ):
        breaker = CircuitBreaker(window=window, clock=clock)
        assert breaker.call(ok) == "ok"


def test_window_defaults_follow_resilience4j() -> None:
    """100 calls, 50 %, 100 minimum calls; time windows get one bucket per second."""
    assert FailureRateWindow() == FailureRateWindow(0.5, calls=100, minimum_calls=100)
    assert FailureRateWindow(seconds=30).buckets == 30
    assert FailureRateWindow(calls=10).required_calls == 10


# -- real threads ----------------------------------------------------------------------


@pytest.mark.parametrize("permits", [1, 3])
def test_half_open_admits_exactly_max_calls_under_32_threads(
    clock: ManualClock, permits: int
) -> None:
    """32 threads racing at a half-open breaker: exactly half_open_max_calls trials run."""
    breaker = opened(clock, half_open_max_calls=permits)
    clock.advance(60)
    barrier = threading.Barrier(32)
    release, all_decided = threading.Event(), threading.Event()
    lock = threading.Lock()
    counts = {"admitted": 0, "rejected": 0}

    def decided(key: str) -> None:
        with lock:
            counts[key] += 1
            if counts["admitted"] + counts["rejected"] == 32:
                all_decided.set()

    def trial() -> str:
        decided("admitted")
        release.wait(5)
        return "ok"

    def attempt() -> None:
        barrier.wait(5)
        try:
            breaker.call(trial)
        except CircuitOpenError:
            decided("rejected")

    threads = [threading.Thread(target=attempt) for _ in range(32)]
    for thread in threads:
        thread.start()
    all_decided.wait(5)
    snapshot = dict(counts)
    release.set()
    for thread in threads:
        thread.join(5)
    assert snapshot == {"admitted": permits, "rejected": 32 - permits}
    assert breaker.state is CLOSED


CONFIGS: dict[str, dict[str, Any]] = {
    "consecutive": {},
    "window": {"window": FailureRateWindow(1.0, calls=50)},
    "listener": {"listeners": [Recorder()]},
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_eight_threads_making_10000_calls_each_lose_no_count(
    clock: ManualClock, config: dict[str, Any]
) -> None:
    """Successes, failures and ignored calls made in 8 threads add up exactly."""
    breaker = CircuitBreaker(10**9, clock=clock, exclude=KeyError, **config)
    if "listeners" in config:
        config["listeners"][0].events.clear()
    barrier = threading.Barrier(8)
    miss = raiser(KeyError())

    def work() -> None:
        barrier.wait(5)
        for i in range(10_000):
            with contextlib.suppress(Boom, KeyError):
                breaker.call(fail if i % 10 == 0 else miss if i % 10 == 1 else ok)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    metrics = breaker.metrics
    assert (metrics.calls, metrics.successes, metrics.failures, metrics.ignored) == (
        80_000,
        64_000,
        8_000,
        8_000,
    )


@pytest.mark.parametrize(
    "window",
    [FailureRateWindow(1.0, calls=100_000), FailureRateWindow(1.0, seconds=60)],
    ids=["count", "time"],
)
def test_eight_threads_lose_no_count_in_a_window(
    clock: ManualClock, window: FailureRateWindow
) -> None:
    """The window's totals add up exactly after 8 threads made 40,000 calls, 1 in 10 failing."""
    breaker = CircuitBreaker(clock=clock, window=window)
    guarded = breaker(ok)
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait(5)
        for i in range(5_000):
            if i % 10 == 0:
                with contextlib.suppress(Boom):
                    breaker.call(fail)
            elif i % 2:
                guarded()
            else:
                breaker.call(ok)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert breaker.failures == 4_000
    assert breaker.metrics.failure_rate == 0.1


SLOW_CONFIGS: dict[str, dict[str, Any]] = {
    "consecutive": {},
    "slow-call window": {"window": FailureRateWindow(calls=10), "slow_call_duration": 5.0},
    "listener": {"listeners": [Recorder()]},
}


@pytest.mark.parametrize("config", SLOW_CONFIGS.values(), ids=SLOW_CONFIGS.keys())
def test_a_slow_call_in_one_thread_does_not_block_calls_in_others(
    clock: ManualClock, config: dict[str, Any]
) -> None:
    """While one call hangs inside the breaker, other threads call, fail and trip freely."""
    breaker = CircuitBreaker(3, clock=clock, **config)
    entered, release, others_done = threading.Event(), threading.Event(), threading.Event()

    def hang() -> str:
        entered.set()
        release.wait(5)
        return "slow"

    def others() -> None:
        for _ in range(100):
            breaker.call(ok)
        breaker.trip()
        breaker.reset()
        others_done.set()

    slow = threading.Thread(target=breaker.call, args=(hang,))
    slow.start()
    assert entered.wait(5)
    fast = threading.Thread(target=others)
    fast.start()
    finished_while_hanging = others_done.wait(5)
    release.set()
    slow.join(5)
    fast.join(5)
    assert finished_while_hanging


# -- async concurrency ------------------------------------------------------------------


@pytest.mark.parametrize("permits", [1, 4])
def test_concurrent_tasks_against_half_open_admit_exactly_the_permitted_number(
    clock: ManualClock, permits: int
) -> None:
    """20 tasks at a half-open breaker: exactly half_open_max_calls trials run."""
    breaker = opened(clock, half_open_max_calls=permits)
    clock.advance(60)
    counts = {"admitted": 0, "rejected": 0}

    async def main() -> None:
        gate = asyncio.Event()

        async def trial() -> str:
            counts["admitted"] += 1
            await gate.wait()
            return "ok"

        async def attempt() -> None:
            try:
                await breaker.call_async(trial)
            except CircuitOpenError:
                counts["rejected"] += 1

        tasks = [asyncio.create_task(attempt()) for _ in range(20)]
        for _ in range(10):
            await asyncio.sleep(0)
        snapshot = dict(counts)
        gate.set()
        await asyncio.gather(*tasks)
        assert snapshot == {"admitted": permits, "rejected": 20 - permits}

    asyncio.run(main())
    assert breaker.state is CLOSED


def test_cancelling_a_trial_call_gives_its_permit_back(clock: ManualClock) -> None:
    """A cancelled trial neither closes nor reopens; the next call is admitted as a trial."""
    breaker = opened(clock, half_open_max_calls=1)
    clock.advance(60)

    async def main() -> None:
        started, never = asyncio.Event(), asyncio.Event()

        async def hang() -> None:
            started.set()
            await never.wait()

        async def quick() -> str:
            return "ok"

        task = asyncio.create_task(breaker.call_async(hang))
        await started.wait()
        with pytest.raises(CircuitOpenError):
            await breaker.call_async(quick)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert breaker.state is HALF_OPEN
        assert await breaker.call_async(quick) == "ok"

    asyncio.run(main())
    assert breaker.state is CLOSED
    assert breaker.metrics.calls == 1


def test_listener_hook_set_on_an_instance_is_called() -> None:
    """A hook assigned to a BreakerListener instance is called, not dropped."""
    seen: list[Exception] = []
    listener = BreakerListener()
    listener.on_failure = lambda breaker, exc: seen.append(exc)  # type: ignore[method-assign]
    breaker = CircuitBreaker(failure_threshold=5, listeners=[listener], clock=ManualClock())
    error = ConnectionError("down")

    def failing() -> None:
        raise error

    with pytest.raises(ConnectionError):
        breaker.call(failing)
    assert seen == [error]


def test_decorating_an_object_with_async_call_counts_its_failures() -> None:
    """An object whose __call__ is async def is guarded as async: its failures count."""

    class Client:
        async def __call__(self) -> None:
            raise ConnectionError("down")

    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=10.0, clock=ManualClock())
    fetch = breaker(Client())

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await fetch()

    asyncio.run(main())
    assert breaker.state is CircuitState.OPEN


# -- classify before counting ------------------------------------------------------


class Response:
    """Just enough of an HTTP response for the classifier."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class HTTPFailure(Exception):
    """An HTTP error carrying its response, as requests' HTTPError does."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"{status_code} error")
        self.response = Response(status_code)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501])
def test_fatal_failures_never_open_the_circuit(clock: ManualClock, status: int) -> None:
    """Not found is not an outage: FATAL failures are re-raised and recorded as ignored."""
    breaker = CircuitBreaker(3, clock=clock)
    for _ in range(10):
        with pytest.raises(HTTPFailure):
            breaker.call(raiser(HTTPFailure(status)))
    assert breaker.state is CLOSED
    assert (breaker.metrics.failures, breaker.metrics.ignored) == (0, 10)


def test_a_fatal_failure_neither_resets_nor_adds_to_the_consecutive_count(
    clock: ManualClock,
) -> None:
    """Ignored means ignored: it is not a success either (the pybreaker trap)."""
    breaker = CircuitBreaker(3, clock=clock)
    fail_times(breaker, 2)
    with pytest.raises(HTTPFailure):
        breaker.call(raiser(HTTPFailure(404)))
    assert breaker.failures == 2
    fail_times(breaker, 1)
    assert breaker.is_open


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_failures_of_a_counted_class_open_the_circuit(clock: ManualClock, status: int) -> None:
    """DEGRADED, TIMEOUT and TRANSIENT failures count (UNKNOWN too, by default)."""
    breaker = CircuitBreaker(3, clock=clock)
    for _ in range(3):
        with pytest.raises(HTTPFailure):
            breaker.call(raiser(HTTPFailure(status)))
    assert breaker.is_open


def test_a_fatal_failure_in_a_trial_gives_its_permit_back(clock: ManualClock) -> None:
    """A trial that ends in a 404 says nothing about the dependency: another trial runs."""
    breaker = opened(clock)
    clock.advance(60)
    with pytest.raises(HTTPFailure):
        breaker.call(raiser(HTTPFailure(404)))
    assert breaker.state is HALF_OPEN
    assert breaker.call(ok) == "ok"
    assert breaker.state is CLOSED


def test_classifier_and_counted_classes_decide_what_counts(clock: ManualClock) -> None:
    """A custom classifier and counted_classes are honoured."""
    from resilient import Classifier, ErrorClass

    classifier = Classifier()
    classifier.register(KeyError, ErrorClass.FATAL)
    breaker = CircuitBreaker(
        1, clock=clock, classifier=classifier, counted_classes={ErrorClass.DEGRADED}
    )
    with pytest.raises(KeyError):
        breaker.call(raiser(KeyError("k")))
    with pytest.raises(Boom):  # UNKNOWN, not counted here
        breaker.call(fail)
    assert breaker.state is CLOSED
    with pytest.raises(HTTPFailure):
        breaker.call(raiser(HTTPFailure(503)))
    assert breaker.is_open


def test_a_failing_classifier_counts_the_failure_as_unknown(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the user's classifier never hides the call's own exception."""

    def broken(exc: BaseException) -> Any:
        raise RuntimeError("classifier bug")

    breaker = CircuitBreaker(1, clock=clock, classifier=broken, name="api")
    with pytest.raises(Boom):
        breaker.call(fail)
    assert breaker.is_open
    assert any("classifier of circuit 'api' failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"counted_classes": "transient"}, "counted_classes must be a collection of ErrorClass"),
        ({"counted_classes": ["transient"]}, "counted_classes must hold only ErrorClass members"),
        ({"classifier": None}, "classifier must be callable, got None"),
        (
            {"success_threshold": 2},
            "success_threshold must be <= half_open_max_calls (1): a half-open period admits "
            "only that many trial calls, got success_threshold=2",
        ),
    ],
)
def test_classification_options_are_checked_at_construction(
    kwargs: dict[str, Any], message: str
) -> None:
    """Bad options fail when the breaker is built, naming the parameter and the value."""
    with pytest.raises((TypeError, ValueError)) as info:
        CircuitBreaker(**kwargs)
    assert message in str(info.value)


def test_a_rejection_is_classified_timeout_and_still_pickles() -> None:
    """One classifier decides: an open circuit is TIMEOUT (the dependency is unavailable)."""
    from resilient import ErrorClass, classify

    error = CircuitOpenError("api", 12.5)
    assert classify(error) is ErrorClass.TIMEOUT
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.breaker_name, copy.remaining) == (CircuitOpenError, "api", 12.5)
    assert isinstance(copy, RuntimeError)


# -- exactly half_open_max_calls per half-open period ------------------------------


def test_a_finished_trial_keeps_its_permit_for_the_rest_of_the_period(
    clock: ManualClock,
) -> None:
    """Three permits per period: after three trials, a fourth caller is rejected."""
    breaker = opened(clock, half_open_max_calls=3, success_threshold=3)
    clock.advance(60)
    with breaker, breaker:
        with breaker:
            pass  # the first trial succeeds and is done
        with pytest.raises(CircuitOpenError) as info:
            breaker.call(ok)
        assert info.value.state is HALF_OPEN
    assert breaker.state is CLOSED  # three trial successes


def test_trials_that_finish_early_free_no_permit_for_32_racing_threads(clock: ManualClock) -> None:
    """However the threads race, one half-open period runs exactly half_open_max_calls trials."""
    breaker = opened(clock, half_open_max_calls=3, success_threshold=3, recovery_timeout=60)
    clock.advance(60)
    ran = []
    release = threading.Event()
    barrier = threading.Barrier(32)

    def trial() -> str:
        ran.append(1)
        release.wait(5)
        return "ok"

    outcomes: list[str] = []

    def worker() -> None:
        barrier.wait()
        try:
            breaker.call(trial)
        except CircuitOpenError:
            outcomes.append("rejected")
        else:
            outcomes.append("ran")

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    while len(outcomes) < 29:
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join()
    assert (outcomes.count("ran"), outcomes.count("rejected"), len(ran)) == (3, 29, 3)
    assert breaker.state is CLOSED


@pytest.mark.parametrize("where", ["listener", "log handler"])
def test_ctrl_c_while_a_trial_is_admitted_gives_the_permit_back(
    clock: ManualClock, where: str
) -> None:
    """A KeyboardInterrupt from a listener or a log handler at admission leaks no permit."""

    class Interrupting(BreakerListener):
        def on_state_change(self, breaker: CircuitBreaker, old: Any, new: Any) -> None:
            if new is HALF_OPEN:
                raise KeyboardInterrupt

    class InterruptingHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "half-open" in record.getMessage():
                raise KeyboardInterrupt

    listeners = [Interrupting()] if where == "listener" else []
    breaker = opened(clock, listeners=listeners)
    handler = InterruptingHandler()
    if where == "log handler":
        logging.getLogger("resilient.breaker").addHandler(handler)
    try:
        clock.advance(60)
        with pytest.raises(KeyboardInterrupt):
            breaker.call(ok)
    finally:
        logging.getLogger("resilient.breaker").removeHandler(handler)
    clock.advance(1000)
    assert breaker.call(ok) == "ok"  # a trial is admitted: the permit came back
    assert breaker.state is CLOSED


# -- the sync forms refuse what they cannot run --------------------------------------


async def _coroutine_function() -> str:
    return "never run"


def _generator_function() -> Iterator[int]:
    yield 1


def test_call_refuses_a_coroutine_function_naming_call_async(clock: ManualClock) -> None:
    """An unawaited coroutine is not a success: the error says to use call_async."""
    breaker = CircuitBreaker(clock=clock)
    with pytest.raises(TypeError, match=r"use 'await breaker\.call_async\(func, \.\.\.\)'"):
        breaker.call(_coroutine_function)
    assert breaker.metrics.successes == 0


def test_call_refuses_a_generator_function(clock: ManualClock) -> None:
    """A generator created is no work done: not counted as a success."""
    breaker = CircuitBreaker(clock=clock)
    with pytest.raises(TypeError, match="returned a generator without doing its work"):
        breaker.call(_generator_function)
    assert breaker.metrics.successes == 0


def test_a_trial_that_returns_a_coroutine_gives_its_permit_back(clock: ManualClock) -> None:
    """The refused call is no outcome: the trial permit goes back."""
    breaker = opened(clock)
    clock.advance(60)
    with pytest.raises(TypeError):
        breaker.call(_coroutine_function)
    assert breaker.call(ok) == "ok"
    assert breaker.state is CLOSED


# -- listeners hear state changes in order -----------------------------------------


def test_listeners_hear_state_changes_in_order_under_threads() -> None:
    """8 threads tripping and resetting: each change starts where the previous one ended."""
    heard: list[tuple[CircuitState, CircuitState]] = []

    class Recorder(BreakerListener):
        def on_state_change(self, breaker: CircuitBreaker, old: Any, new: Any) -> None:
            heard.append((old, new))
            if len(heard) % 7 == 0:
                threading.Event().wait(0.0005)  # a slow listener widens every race

    breaker = CircuitBreaker(recovery_timeout=60, listeners=[Recorder()])
    barrier = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(150):
            breaker.trip() if rng.random() < 0.5 else breaker.reset()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(heard) > 50
    assert heard[0][0] is CLOSED
    for (_, before), (after, _) in itertools.pairwise(heard):
        assert before is after
    assert heard[-1][1] is breaker.state


def test_listeners_hear_window_openings_by_successes_in_order_under_threads() -> None:
    """8 threads failing, succeeding and resetting a window breaker: no change heard out of order."""
    heard: list[tuple[CircuitState, CircuitState]] = []

    class Changes:
        def on_state_change(self, breaker: CircuitBreaker, old: Any, new: Any) -> None:
            heard.append((old, new))
            if len(heard) % 7 == 0:
                threading.Event().wait(0.0005)  # a slow listener widens every race

    window = FailureRateWindow(0.5, calls=4, minimum_calls=4)
    breaker = CircuitBreaker(recovery_timeout=60, window=window, listeners=[Changes()])
    guarded = breaker(ok)
    barrier = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(300):
            roll = rng.random()
            with contextlib.suppress(Boom, CircuitOpenError):
                if roll < 0.45:
                    guarded()
                elif roll < 0.9:
                    breaker.call(fail)
                else:
                    breaker.reset()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(heard) > 20
    assert heard[0][0] is CLOSED
    for (_, before), (after, _) in itertools.pairwise(heard):
        assert before is after
    assert heard[-1][1] is breaker.state


def test_a_slow_listener_does_not_hold_up_other_calls(clock: ManualClock) -> None:
    """Closed calls in other threads run while a listener takes its time."""
    inside, release = threading.Event(), threading.Event()

    class Slow(BreakerListener):
        def on_state_change(self, breaker: CircuitBreaker, old: Any, new: Any) -> None:
            inside.set()
            release.wait(5)

    breaker = CircuitBreaker(clock=clock, listeners=[Slow()])
    tripping = threading.Thread(target=breaker.trip)
    tripping.start()
    assert inside.wait(5)
    other = CircuitBreaker(clock=clock)
    try:
        assert breaker.state is OPEN  # the state changed before the listener was told
        assert other.call(ok) == "ok"
    finally:
        release.set()
        tripping.join()


# -- log lines that read on their own ---------------------------------------------------


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "resilient.breaker"]


def test_a_window_opening_says_the_rate_and_threshold(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The rate that opened it, over which calls, against which threshold."""
    breaker = CircuitBreaker(
        clock=clock,
        name="search",
        window=FailureRateWindow(0.5, calls=4, minimum_calls=4),
        recovery_timeout=30,
    )
    breaker.call(ok)
    breaker.call(ok)
    fail_times(breaker, 2)
    assert _messages(caplog) == [
        "circuit 'search' opened: 2 of the last 4 calls failed (50%, threshold 50%) (the "
        "last: Boom: down); calls are rejected for the next 30 s, then 1 trial call goes through"
    ]


def test_reopening_trip_and_reset_say_why(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed trial, trip() and reset() each name their cause."""
    breaker = CircuitBreaker(clock=clock, name="api", recovery_timeout=10)
    breaker.trip()
    clock.advance(10)
    fail_times(breaker, 1)
    breaker.reset()
    assert _messages(caplog) == [
        "circuit 'api' opened by trip(); calls are rejected for the next 10 s, then 1 trial "
        "call goes through",
        "circuit 'api' half-open: letting 1 trial call through to test the dependency",
        "circuit 'api' reopened: a trial call failed (the last: Boom: down); calls are "
        "rejected for the next 10 s, then 1 trial call goes through",
        "circuit 'api' closed by reset(); calls flow again",
    ]


def test_several_trial_calls_are_counted_in_plain_words(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """ "2 trial calls go through", not "2 trial call(s)"."""
    breaker = CircuitBreaker(
        clock=clock, name="api", recovery_timeout=10, half_open_max_calls=2, success_threshold=2
    )
    breaker.trip()
    clock.advance(10)
    breaker.call(lambda: None)
    breaker.call(lambda: None)
    assert _messages(caplog) == [
        "circuit 'api' opened by trip(); calls are rejected for the next 10 s, then 2 trial "
        "calls go through",
        "circuit 'api' half-open: letting 2 trial calls through to test the dependency",
        "circuit 'api' closed: 2 trial calls succeeded; calls flow again",
    ]


def test_secrets_in_the_tripping_error_are_redacted_from_the_message(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An error text with a password or a URL with credentials is logged without them."""
    breaker = CircuitBreaker(1, clock=clock, name="db")
    with pytest.raises(Boom):
        breaker.call(raiser(Boom("cannot reach postgres://app:s3cr@t@db:5432/x password=hunter2")))
    [message] = _messages(caplog)
    assert "s3cr" not in message
    assert "hunter2" not in message
    assert "postgres://app:[REDACTED]@db:5432/x password=[REDACTED]" in message
    [record] = [r for r in caplog.records if r.name == "resilient.breaker"]
    assert "hunter2" not in record.error  # type: ignore[attr-defined]


def test_no_message_is_built_when_the_level_is_off(clock: ManualClock) -> None:
    """With the logger above WARNING, a state change formats nothing."""
    logger = logging.getLogger("resilient.breaker")
    old = logger.level
    logger.setLevel(logging.ERROR)

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise AssertionError("the message was built")

    try:
        breaker = CircuitBreaker(1, clock=clock)
        with pytest.raises(Unprintable):
            breaker.call(raiser(Unprintable()))
        assert breaker.is_open
    finally:
        logger.setLevel(old)


def test_remaining_says_how_long_the_circuit_stays_open(clock: ManualClock) -> None:
    """``remaining`` counts down while open and is 0.0 otherwise."""
    breaker = CircuitBreaker(recovery_timeout=30, clock=clock)
    assert breaker.remaining == 0.0
    breaker.trip()
    clock.advance(10)
    assert breaker.remaining == 20.0
    clock.advance(25)
    assert breaker.remaining == 0.0


def test_a_plain_def_returning_a_coroutine_is_refused_by_the_decorator_too(
    clock: ManualClock,
) -> None:
    """@breaker on a plain def that hands back a coroutine: TypeError, not a success."""
    breaker = CircuitBreaker(clock=clock)

    @breaker
    def fetch_later() -> Any:
        return _coroutine_function()

    with pytest.raises(TypeError, match="decorate the 'async def' function itself"):
        fetch_later()
    assert breaker.metrics.successes == 0


def test_two_listeners_of_one_class_are_each_logged_once(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """'Logged once' is per listener object, not per class."""

    class Broken(BreakerListener):
        def on_success(self, breaker: CircuitBreaker) -> None:
            raise RuntimeError("listener bug")

    breaker = CircuitBreaker(clock=clock, listeners=[Broken(), Broken()])
    for _ in range(3):
        breaker.call(ok)
    failures = [r for r in caplog.records if "raised RuntimeError" in r.getMessage()]
    assert len(failures) == 2


def test_one_failure_opening_the_circuit_reads_well(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """'after 1 failure', not 'after 1 consecutive failures'."""
    breaker = CircuitBreaker(1, clock=clock, name="api")
    fail_times(breaker, 1)
    assert _messages(caplog)[0].startswith("circuit 'api' opened after 1 failure (the last:")


# --- settings read back, logger=, errors that say what to do, timedelta (issue 19) --


def test_settings_read_back_and_cannot_be_set() -> None:
    """pybreaker's users read ``fail_max`` and ``reset_timeout``: ours read back, read-only."""
    window = FailureRateWindow(0.5, calls=10, minimum_calls=5)
    breaker = CircuitBreaker(
        3,
        30.0,
        name="users-api",
        half_open_max_calls=4,
        success_threshold=2,
        window=window,
    )
    assert breaker.name == "users-api"
    assert breaker.failure_threshold == 3
    assert breaker.recovery_timeout == 30.0
    assert breaker.half_open_max_calls == 4
    assert breaker.success_threshold == 2
    assert breaker.window is window
    for setting in (
        "name",
        "failure_threshold",
        "recovery_timeout",
        "half_open_max_calls",
        "success_threshold",
        "window",
    ):
        with pytest.raises(AttributeError):
            setattr(breaker, setting, 1)
    assert breaker.failure_threshold == 3


def test_a_new_breaker_with_the_same_name_and_store_keeps_the_state() -> None:
    """The documented way to change a setting: a new breaker on the same store and name."""
    clock = ManualClock()
    store = MemoryStore()
    old = CircuitBreaker(1, 60.0, name="api", store=store, clock=clock)
    old.trip()
    new = CircuitBreaker(5, 120.0, name="api", store=store, clock=clock)
    assert new.state is CircuitState.OPEN
    assert new.failure_threshold == 5


def test_logger_receives_the_breaker_lines(caplog: pytest.LogCaptureFixture) -> None:
    """``logger=``: state changes go to that logger, same messages and fields."""
    mine = logging.getLogger("myapp.breakers")
    breaker = CircuitBreaker(1, name="db", logger=mine, clock=ManualClock())
    with caplog.at_level(logging.INFO):
        breaker.trip()
    [record] = caplog.records
    assert record.name == "myapp.breakers"
    assert record.getMessage().startswith("circuit 'db' opened by trip()")
    assert record.event == "circuit_open"  # type: ignore[attr-defined]


@pytest.mark.parametrize("logger", ["resilient.breaker", print, logging.StreamHandler()])
def test_a_logger_that_is_not_one_is_refused(logger: Any) -> None:
    """``logger=`` must be a ``logging.Logger`` or ``LoggerAdapter``, checked at construction."""
    with pytest.raises(
        TypeError, match=r"logger must be a logging\.Logger \(or LoggerAdapter\) or None, got"
    ) as info:
        CircuitBreaker(logger=logger)
    by_name = "write logger=logging.getLogger('resilient.breaker')"
    assert (by_name in str(info.value)) == isinstance(logger, str)


class _Prefixed(logging.LoggerAdapter):  # type: ignore[type-arg]
    """An adapter that prefixes its messages, as applications write them."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        assert self.extra is not None
        return f"[{self.extra['request_id']}] {msg}", {**kwargs, "extra": self.extra}


ADAPTERS = {
    "LoggerAdapter": lambda: logging.LoggerAdapter(
        logging.getLogger("myapp.adapted"), {"request_id": "r-1"}
    ),
    "prefixing subclass": lambda: _Prefixed(
        logging.getLogger("myapp.adapted"), {"request_id": "r-1"}
    ),
    "nested": lambda: logging.LoggerAdapter(
        logging.LoggerAdapter(logging.getLogger("myapp.adapted"), {"request_id": "r-1"}),
        {"tenant": "t-9"},
    ),
}


@pytest.mark.parametrize("make", ADAPTERS.values(), ids=ADAPTERS.keys())
def test_a_logger_adapter_gets_the_state_changes_with_its_fields_and_ours(
    make: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    """``logger=LoggerAdapter(...)``, as ``@retry`` takes it: a state change carries the
    adapter's fields and every structured field of the breaker's own; its prefix stays."""
    breaker = CircuitBreaker(1, name="db", logger=make(), clock=ManualClock())
    with caplog.at_level(logging.INFO):
        fail_times(breaker, 1)
    [record] = caplog.records
    assert record.name == "myapp.adapted"
    assert record.request_id == "r-1"  # type: ignore[attr-defined]
    assert (record.event, record.breaker) == ("circuit_open", "db")  # type: ignore[attr-defined]
    assert record.error_type == "test_breaker.Boom"  # type: ignore[attr-defined]
    message = record.getMessage()
    prefix = "[r-1] " if isinstance(breaker._logger, _Prefixed) else ""  # pyright: ignore[reportPrivateUsage]
    assert message.startswith(prefix + "circuit 'db' opened after 1 failure")


@pytest.mark.parametrize("make", ADAPTERS.values(), ids=ADAPTERS.keys())
def test_a_logger_adapter_gets_a_failing_listener_with_its_fields_and_ours(
    make: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The breaker's lines about a failure (a listener that raised, logged with its
    traceback redacted) go through the adapter too, its fields added to the breaker's."""

    class Leaky:
        def on_success(self, breaker: CircuitBreaker) -> None:
            raise RuntimeError("password=hunter2")

    breaker = CircuitBreaker(name="db", logger=make(), listeners=[Leaky()])
    with caplog.at_level(logging.INFO):
        assert breaker.call(ok) == "ok"
    [record] = caplog.records
    assert record.name == "myapp.adapted"
    assert record.request_id == "r-1"  # type: ignore[attr-defined]
    assert (record.event, record.breaker) == ("breaker_listener_failed", "db")  # type: ignore[attr-defined]
    assert "hunter2" not in logging.Formatter().format(record)
    assert record.exc_info is not None


def test_bare_decorator_says_to_build_a_breaker_first() -> None:
    """``@CircuitBreaker`` without parentheses: say what to do, not 'failure_threshold must
    be an int'."""
    with pytest.raises(TypeError, match=r"not a decorator by itself.*@breaker"):

        @CircuitBreaker  # type: ignore[arg-type]
        def fetch() -> str:  # pragma: no cover - never decorated
            return "ok"


def test_a_name_given_first_suggests_name_keyword() -> None:
    """``CircuitBreaker("users-api")`` suggests ``name='users-api'``."""
    with pytest.raises(TypeError, match=r"CircuitBreaker\(name='users-api'\)"):
        CircuitBreaker("users-api")  # type: ignore[arg-type]


def test_name_is_required_error_does_not_show_the_store_repr() -> None:
    """The error stays short: the store's kind, never its repr (a Redis client's holds
    its connection details)."""

    class SecretStore(MemoryStore):
        def __repr__(self) -> str:
            return "SecretStore(password=hunter2)"

    with pytest.raises(
        ValueError, match=r"name is required with store=SecretStore\(\.\.\.\)"
    ) as info:
        CircuitBreaker(store=SecretStore())
    assert "hunter2" not in str(info.value)


def test_durations_take_a_timedelta() -> None:
    """``recovery_timeout``, ``slow_call_duration`` and a window's ``seconds`` accept a
    ``timedelta``; they read back in seconds."""
    from datetime import timedelta

    window = FailureRateWindow(0.5, seconds=timedelta(minutes=1), minimum_calls=1)
    assert window.seconds == 60.0
    clock = ManualClock()
    breaker = CircuitBreaker(
        1,
        timedelta(seconds=30),
        window=window,
        slow_call_duration=timedelta(milliseconds=200),
        clock=clock,
    )
    assert breaker.recovery_timeout == 30.0
    breaker.trip()
    assert breaker.remaining == 30.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"recovery_timeout": 1e10}, r"^recovery_timeout must be at most 315576000 s"),
        (
            {"recovery_timeout": __import__("datetime").timedelta(seconds=-1)},
            r"^recovery_timeout must be a finite number >= 0",
        ),
        (
            {"window": None, "slow_call_duration": 1e10},
            r"^slow_call_duration must be at most 315576000 s",
        ),
    ],
)
def test_durations_are_bounded_at_construction(options: dict[str, Any], message: str) -> None:
    """A duration past ten years, or a negative timedelta, fails at construction, named."""
    if "slow_call_duration" in options:
        options = {**options, "window": FailureRateWindow(0.5, calls=10)}
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(**options)


def test_a_window_past_ten_years_is_refused() -> None:
    """``FailureRateWindow(seconds=...)`` is bounded too."""
    with pytest.raises(ValueError, match=r"^seconds must be at most 315576000 s"):
        FailureRateWindow(seconds=1e10)


def test_an_error_whose_message_nests_hundreds_of_key_values_is_raised_as_it_is() -> None:
    """``CircuitBreaker.call`` raises the call's own error whatever its message (the
    redaction of ``a=a=a=...`` recursed once per pair and raised RecursionError)."""
    error = ConnectionError("a=" * 600 + "x")

    def down() -> None:
        raise error

    breaker = CircuitBreaker(failure_threshold=1, clock=ManualClock())
    with pytest.raises(ConnectionError) as raised:
        breaker.call(down)
    assert raised.value is error
    assert breaker.state is CircuitState.OPEN
