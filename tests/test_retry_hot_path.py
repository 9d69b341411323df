"""The retry loop's shortcuts keep every rule: with the retry logger off, and per failure type.

A failed attempt skips the checks its policy cannot need (no budget and no
``stop_event``: the attempt count alone; no deadline and no ``on_retry``: no
clock read unless a line is logged), and remembers per exception type
whether the type alone decides its class. These tests hold the rules those
shortcuts must not lose, in the case where nothing else would read the time:
the ``resilient.retry`` logger off.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resilient import ErrorClass, RetryBudget, retry
from resilient.testing import ManualClock


@pytest.fixture(autouse=True)
def retry_logger_off() -> Iterator[None]:
    logger = logging.getLogger("resilient.retry")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)


class Slow:
    """Fails with the given exceptions in order, each attempt taking *took* seconds."""

    def __init__(self, clock: ManualClock, took: float, *failures: BaseException) -> None:
        self.clock = clock
        self.took = took
        self.failures = list(failures)
        self.calls = 0

    def attempt(self) -> str:
        self.calls += 1
        self.clock.advance(self.took)
        if self.failures:
            raise self.failures.pop(0)
        return "ok"

    def __call__(self) -> str:
        return self.attempt()

    async def call_async(self) -> str:
        return self.attempt()


def run(decorate: Callable[[Any], Any], slow: Slow, asynchronous: bool) -> Any:
    if asynchronous:
        return asyncio.run(decorate(slow.call_async)())
    return decorate(slow)()


both = pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])


@both
def test_on_retry_gets_the_elapsed_time_from_the_call_start_with_the_logger_off(
    asynchronous: bool,
) -> None:
    """`elapsed` counts the first attempt's own time, also when no line is logged."""
    clock = ManualClock()
    seen: list[tuple[int, float, float]] = []
    slow = Slow(clock, 2.0, ConnectionError("a"), ConnectionError("b"))
    decorate = retry(
        max_retries=3,
        base_delay=1.0,
        jitter=False,
        clock=clock,
        on_retry=lambda state: seen.append((state.attempt, state.delay, state.elapsed)),
    )
    assert run(decorate, slow, asynchronous) == "ok"
    # attempt 1 took 2 s; attempt 2 started after a wait of 1 s and took 2 s.
    assert seen == [(1, 1.0, 2.0), (2, 2.0, 5.0)]


@both
def test_a_wait_past_the_deadline_is_not_started_with_the_logger_off(asynchronous: bool) -> None:
    """The deadline is checked before each wait, also when nothing is logged."""
    clock = ManualClock()
    slow = Slow(clock, 3.0, *[ConnectionError(str(n)) for n in range(5)])
    decorate = retry(max_retries=4, base_delay=1.0, jitter=False, deadline=6.0, clock=clock)
    with pytest.raises(ConnectionError) as caught:
        run(decorate, slow, asynchronous)
    # 3 s, wait 1 s, 3 s: a wait of 2 s more would end at 9 s, past 6 s.
    assert slow.calls == 2
    assert clock.sleeps == [1.0]
    assert "the deadline would pass during the wait" in caught.value.__notes__[0]


@both
def test_a_refusing_budget_stops_the_retries_with_the_logger_off(asynchronous: bool) -> None:
    """The budget is asked at each failure: the shortcut for budget-less policies skips nothing."""
    clock = ManualClock()
    budget = RetryBudget(max_tokens=2, token_ratio=0.1)  # 1 token spent leaves 1: not > 1
    slow = Slow(clock, 0.0, *[ConnectionError(str(n)) for n in range(5)])
    with pytest.raises(ConnectionError):
        run(retry(max_retries=5, budget=budget, clock=clock), slow, asynchronous)
    assert slow.calls == 1


@both
def test_a_set_stop_event_ends_the_call_with_the_logger_off(asynchronous: bool) -> None:
    """A set `stop_event` is seen before the wait: no second attempt."""
    clock = ManualClock()
    event = threading.Event()
    event.set()
    slow = Slow(clock, 0.0, ConnectionError("a"), ConnectionError("b"))
    with pytest.raises(ConnectionError) as caught:
        run(retry(max_retries=3, stop_event=event, clock=clock), slow, asynchronous)
    assert slow.calls == 1
    assert clock.sleeps == []
    assert "stop_event is set" in caught.value.__notes__[0]


class Classed(Exception):
    """An exception type whose instances say their own class: its type alone decides nothing."""

    error_class = ErrorClass.TRANSIENT

    def __init__(self, error_class: ErrorClass) -> None:
        super().__init__(error_class.value)
        self.error_class = error_class


@both
def test_a_type_that_does_not_decide_is_classified_at_every_failure(asynchronous: bool) -> None:
    """The per-type memory keeps "ask the classifier" too: each instance's own class counts."""
    clock = ManualClock()
    decorate = retry(max_retries=3, base_delay=0.0, max_delay=0.0, clock=clock)
    retried = Slow(clock, 0.0, Classed(ErrorClass.TRANSIENT), Classed(ErrorClass.TRANSIENT))
    assert run(decorate, retried, asynchronous) == "ok"
    assert retried.calls == 3
    fatal = Slow(clock, 0.0, Classed(ErrorClass.TRANSIENT), Classed(ErrorClass.FATAL))
    with pytest.raises(Classed) as caught:
        run(decorate, fatal, asynchronous)
    assert caught.value.error_class is ErrorClass.FATAL
    assert fatal.calls == 2
