"""The breaker against a small reference model, through random histories.

A hypothesis ``RuleBasedStateMachine`` makes calls that succeed, fail, raise
an excluded error or take a while; moves a ``ManualClock``; resets and trips.
After every step the breaker's state, count, metrics and remaining time must
be the model's. One machine per trip rule: consecutive failures, and a
failure-rate window (count- or time-based, with slow calls); the window rule
runs again through the decorator with a state listener, which must hear every
change in order.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from resilient.backoff import Backoff, nominal_delay
from resilient.breaker import CircuitBreaker, CircuitOpenError, CircuitState, FailureRateWindow
from resilient.testing import ManualClock

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class Boom(Exception):
    """A counted failure."""


class Excluded(Exception):
    """An exception the breaker excludes."""


@dataclass
class Model:
    """What the breaker should do, written the plainest way."""

    failure_threshold: int
    recovery: float | Backoff
    success_threshold: int
    half_open_max_calls: int
    window: FailureRateWindow | None = None
    slow_limit: float | None = None
    slow_rate: float = 1.0
    state: CircuitState = CLOSED
    failures: int = 0
    open_until: float = 0.0
    openings: int = 0
    trial_successes: int = 0
    trials: int = 0
    events: list[tuple[float, bool, bool]] = field(default_factory=list)
    successes_seen: int = 0
    failures_seen: int = 0
    ignored_seen: int = 0
    slow_seen: int = 0
    rejected_seen: int = 0

    def effective_state(self, now: float) -> CircuitState:
        if self.state is OPEN and now >= self.open_until:
            return HALF_OPEN
        return self.state

    def admit(self, now: float) -> str:
        if self.state is CLOSED:
            return "closed"
        if self.state is OPEN:
            if now < self.open_until:
                self.rejected_seen += 1
                return "rejected"
            self.state, self.trial_successes, self.trials = HALF_OPEN, 0, 0
        if self.trials >= self.half_open_max_calls:  # exactly that many per half-open period
            self.rejected_seen += 1
            return "rejected"
        self.trials += 1
        return "trial"

    def window_totals(self, now: float) -> tuple[int, int, int]:
        window = self.window
        assert window is not None
        if window.calls is not None:
            live = self.events[-window.calls :]
        else:
            assert window.seconds is not None
            assert window.buckets is not None
            width = window.seconds / window.buckets
            current = math.floor(now / width)
            live = [e for e in self.events if math.floor(e[0] / width) > current - window.buckets]
        return len(live), sum(e[1] for e in live), sum(e[2] for e in live)

    def counted_failures(self, now: float) -> int:
        return self.failures if self.window is None else self.window_totals(now)[1]

    def open(self, now: float) -> None:
        if isinstance(self.recovery, Backoff):
            duration = nominal_delay(
                self.openings, self.recovery.base_delay, self.recovery.max_delay
            )
        else:
            duration = self.recovery
        self.openings += 1
        self.open_until = now + duration
        self.state, self.trial_successes, self.trials = OPEN, 0, 0

    def close(self) -> None:
        self.state, self.failures, self.openings, self.trial_successes = CLOSED, 0, 0, 0
        self.trials = 0
        self.events.clear()

    def rate_exceeded(self, now: float) -> bool:
        window = self.window
        assert window is not None
        calls, failures, slow = self.window_totals(now)
        if calls < window.required_calls:
            return False
        if failures / calls >= window.failure_rate_threshold:
            return True
        return self.slow_limit is not None and slow / calls >= self.slow_rate

    def outcome(self, admitted: str, failed: bool, duration: float, now: float) -> None:
        slow = self.slow_limit is not None and duration > self.slow_limit
        self.slow_seen += slow
        if failed:
            self.failures_seen += 1
        else:
            self.successes_seen += 1
        if admitted == "closed":
            if self.state is not CLOSED:
                return
            if self.window is None:
                self.failures = self.failures + 1 if failed else 0
                if self.failures >= self.failure_threshold:
                    self.open(now)
                return
            self.events.append((now, failed, slow))
            if self.rate_exceeded(now):
                self.open(now)
            return
        if failed or slow:
            if failed and self.window is None:
                self.failures += 1
            self.open(now)
            return
        self.trial_successes += 1
        if self.trial_successes >= self.success_threshold:
            self.close()


RECOVERY = st.sampled_from([0.0, 5.0, 30.0, Backoff(2.0, 16.0, jitter=False)])
DURATIONS = st.sampled_from([0.0, 0.5, 2.0])
ADVANCES = st.sampled_from([0.1, 1.0, 2.5, 5.0, 16.0, 31.0])


class BreakerMachine(RuleBasedStateMachine):
    """Shared rules; subclasses choose the trip rule in their initialize."""

    clock: ManualClock
    breaker: CircuitBreaker
    model: Model

    def start(self, model: Model, **config: Any) -> None:
        self.clock = ManualClock(100.0)
        self.model = model
        self.breaker = CircuitBreaker(
            model.failure_threshold,
            model.recovery,
            exclude=Excluded,
            success_threshold=model.success_threshold,
            half_open_max_calls=model.half_open_max_calls,
            window=model.window,
            slow_call_duration=model.slow_limit,
            slow_call_rate_threshold=model.slow_rate,
            clock=self.clock,
            **config,
        )

    def run(self, failed: bool, duration: float) -> None:
        ran = []

        def body() -> str:
            ran.append(True)
            self.clock.advance(duration)
            if failed:
                raise Boom
            return "ok"

        admitted = self.model.admit(self.clock.monotonic())
        if admitted == "rejected":
            with pytest.raises(CircuitOpenError):
                self.breaker.call(body)
            assert not ran
            return
        if failed:
            with pytest.raises(Boom):
                self.breaker.call(body)
        else:
            assert self.breaker.call(body) == "ok"
        assert ran
        self.model.outcome(admitted, failed, duration, self.clock.monotonic())

    @rule(duration=DURATIONS)
    def success(self, duration: float) -> None:
        self.run(False, duration)

    @rule(duration=DURATIONS)
    def failure(self, duration: float) -> None:
        self.run(True, duration)

    @rule()
    def excluded(self) -> None:
        admitted = self.model.admit(self.clock.monotonic())
        if admitted == "rejected":
            with pytest.raises(CircuitOpenError):
                self.breaker.call(lambda: None)
            return
        self.model.ignored_seen += 1
        if admitted == "trial":  # an excluded error is no outcome: the permit goes back
            self.model.trials -= 1

        def body() -> None:
            raise Excluded

        with pytest.raises(Excluded):
            self.breaker.call(body)

    @rule(seconds=ADVANCES)
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def reset(self) -> None:
        self.breaker.reset()
        self.model.close()

    @rule()
    def trip(self) -> None:
        self.breaker.trip()
        self.model.open(self.clock.monotonic())

    # Each of ``state``, ``is_open``, ``failures`` and ``metrics`` reads the store
    # anew. The machines on Redis (test_redis_state_machine), where a read is a round
    # trip, read ``metrics`` and ``failures`` only: together they hold every field of
    # the store's snapshot, and the other two are ``metrics.state`` read again.
    reads_every_property = True

    @invariant()
    def agrees_with_the_model(self) -> None:
        now = self.clock.monotonic()
        model = self.model
        expected = model.effective_state(now)
        if self.reads_every_property:
            assert self.breaker.state is expected
            assert self.breaker.is_open is (expected is OPEN)
        assert self.breaker.failures == model.counted_failures(now)
        metrics = self.breaker.metrics
        assert metrics.state is expected
        assert (
            metrics.successes,
            metrics.failures,
            metrics.ignored,
            metrics.slow_calls,
            metrics.rejected,
        ) == (
            model.successes_seen,
            model.failures_seen,
            model.ignored_seen,
            model.slow_seen,
            model.rejected_seen,
        )
        remaining = model.open_until - now if expected is OPEN else 0.0
        assert metrics.remaining == pytest.approx(remaining)


class ConsecutiveRule(BreakerMachine):
    """The default rule: failure_threshold failures in a row."""

    @initialize(
        threshold=st.integers(1, 4),
        recovery=RECOVERY,
        success_threshold=st.integers(1, 3),
        more_trials=st.integers(0, 2),
        fast=st.booleans(),
    )
    def build(
        self,
        threshold: int,
        recovery: float | Backoff,
        success_threshold: int,
        more_trials: int,
        fast: bool,
    ) -> None:
        # A listener with on_success takes the general path instead of the lock-free one.
        listeners = [] if fast else [type("L", (), {"on_success": lambda self, b: None})()]
        model = Model(threshold, recovery, success_threshold, success_threshold + more_trials)
        self.start(model, listeners=listeners)


WINDOWS = st.one_of(
    st.builds(
        FailureRateWindow,
        st.sampled_from([0.25, 0.5, 1.0]),
        calls=st.integers(1, 6),
        minimum_calls=st.integers(1, 6),
    ),
    st.builds(
        FailureRateWindow,
        st.sampled_from([0.25, 0.5, 1.0]),
        seconds=st.sampled_from([3.0, 10.0]),
        minimum_calls=st.integers(1, 4),
        buckets=st.integers(1, 5),
    ),
)


class WindowRule(BreakerMachine):
    """The failure-rate rule over a count- or time-based window, with slow calls."""

    @initialize(
        window=WINDOWS,
        recovery=RECOVERY,
        success_threshold=st.integers(1, 3),
        more_trials=st.integers(0, 2),
        slow_limit=st.sampled_from([None, 1.0]),
        slow_rate=st.sampled_from([0.5, 1.0]),
    )
    def build(
        self,
        window: FailureRateWindow,
        recovery: float | Backoff,
        success_threshold: int,
        more_trials: int,
        slow_limit: float | None,
        slow_rate: float,
    ) -> None:
        trials = success_threshold + more_trials
        self.start(Model(5, recovery, success_threshold, trials, window, slow_limit, slow_rate))


SETTINGS = settings(max_examples=60, stateful_step_count=40)
pytestmark = pytest.mark.slow  # seconds of CPU per state machine

TestConsecutiveRule = ConsecutiveRule.TestCase
TestConsecutiveRule.settings = SETTINGS
TestWindowRule = WindowRule.TestCase
TestWindowRule.settings = SETTINGS


class _Decorating:
    """A breaker whose ``call(func)`` goes through ``@breaker`` instead."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker

    def call(self, func: Any) -> Any:
        return self._breaker(func)()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._breaker, name)


class WindowRuleDecoratedAndHeard(WindowRule):
    """The window rule again, each call through the decorator, with a state listener.

    The listener must hear every change the model makes, in order, whether a
    failure, a success on the closed path, an admission, a reset or a trip
    made it.
    """

    heard: list[tuple[CircuitState, CircuitState]]

    def start(self, model: Model, **config: Any) -> None:
        self.heard = []
        heard = self.heard

        class Changes:
            def on_state_change(self, breaker: CircuitBreaker, old: Any, new: Any) -> None:
                heard.append((old, new))

        super().start(model, listeners=[Changes()], **config)
        self.breaker = _Decorating(self.breaker)  # type: ignore[assignment]

    @invariant()
    def heard_every_change_in_order(self) -> None:
        stored = self.heard[-1][1] if self.heard else CLOSED
        assert stored is self.model.state
        for (_, before), (after, _) in itertools.pairwise(self.heard):
            assert before is after


TestWindowRuleDecoratedAndHeard = WindowRuleDecoratedAndHeard.TestCase
TestWindowRuleDecoratedAndHeard.settings = SETTINGS
