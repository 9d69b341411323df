"""Memory: the happy path keeps nothing per call, and a failing retry keeps only its last error."""

from __future__ import annotations

import asyncio
import gc
import logging
import tracemalloc
import weakref
from collections.abc import Callable, Iterator

import pytest

from resilient import CircuitBreaker, FailureRateWindow, retry, retry_with_backoff
from resilient.testing import no_wait

SHORT = 5_000
LONG = 40_000
# Retaining anything per call (a pointer in a list) costs at least 8 bytes a call, so
# 90,000 more calls would add at least 720,000 bytes; this slack only absorbs noise.
SLACK_BYTES = 16 * 1024
pytestmark = pytest.mark.slow  # each test makes ~100,000 traced calls: about a second


def work(x: int) -> int:
    return x + 1


def growth_after(call: Callable[[int], object], counts: tuple[int, ...]) -> list[int]:
    """Traced bytes still allocated after each cumulative count of calls, from a warm start."""
    for _ in range(1_000):  # caches, interned names, the window's first fill
        call(1)
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        sizes = []
        done = 0
        for count in counts:
            for _ in range(count - done):
                call(1)
            done = count
            sizes.append(tracemalloc.get_traced_memory()[0] - start)
        return sizes
    finally:
        tracemalloc.stop()


def closed_breaker() -> Callable[[int], object]:
    return CircuitBreaker(name="alloc-consecutive")(work)


def count_window_breaker() -> Callable[[int], object]:
    return CircuitBreaker(window=FailureRateWindow(calls=1_000, minimum_calls=10))(work)


def time_window_breaker() -> Callable[[int], object]:
    return CircuitBreaker(window=FailureRateWindow(seconds=60.0, minimum_calls=10))(work)


def breaker_call() -> Callable[[int], object]:
    breaker = CircuitBreaker(name="alloc-call")
    return lambda x: breaker.call(work, x)


def retried() -> Callable[[int], object]:
    return retry(max_retries=3)(work)


@pytest.mark.parametrize(
    "build",
    [closed_breaker, count_window_breaker, time_window_breaker, breaker_call, retried],
    ids=["breaker", "breaker-count-window", "breaker-time-window", "breaker.call", "retry"],
)
def test_the_successful_path_keeps_no_memory_per_call(
    build: Callable[[], Callable[[int], object]],
) -> None:
    """After 40,000 successful calls no more memory is held than after 5,000."""
    after_short, after_long = growth_after(build(), (SHORT, LONG))
    assert after_long - after_short < SLACK_BYTES, (
        f"{after_long - after_short} more bytes held after {LONG:,} calls than after {SHORT:,}"
    )


def test_the_measure_sees_a_leak() -> None:
    """The measure itself works: a function that keeps one object per call is caught."""
    kept: list[object] = []

    def leaky(x: int) -> int:
        kept.append(object())
        return x

    after_short, after_long = growth_after(leaky, (SHORT, LONG))
    assert after_long - after_short > 10 * SLACK_BYTES


# -- a retry that keeps failing ------------------------------------------------------


class Boom(ConnectionError):
    """A retryable failure whose instances can be followed with weak references."""


class AttemptMarker:
    """Lives in the frame of one attempt: alive as long as that frame is."""


class Failing:
    """A function that fails every time, recording weak references to each attempt's traces."""

    def __init__(self) -> None:
        self.errors: list[weakref.ref[Boom]] = []
        self.frames: list[weakref.ref[AttemptMarker]] = []

    def fresh_error(self) -> Boom:
        error = Boom(f"attempt {len(self.errors) + 1}")
        self.errors.append(weakref.ref(error))
        return error

    def __call__(self) -> None:
        marker = AttemptMarker()  # held by this attempt's frame, so by its traceback
        self.frames.append(weakref.ref(marker))
        raise self.fresh_error()

    async def call_async(self) -> None:
        marker = AttemptMarker()
        self.frames.append(weakref.ref(marker))
        raise self.fresh_error()

    def alive(self) -> tuple[list[int], list[int]]:
        """The attempt numbers whose exception, and whose frame, are still reachable."""
        gc.collect()  # only what is reachable counts, not garbage awaiting collection
        errors = [n for n, ref in enumerate(self.errors, 1) if ref() is not None]
        frames = [n for n, ref in enumerate(self.frames, 1) if ref() is not None]
        return errors, frames


@pytest.fixture
def failing() -> Iterator[Failing]:
    # Log records carry the exception (``extra={"error": exc}``) and pytest keeps the
    # records it captures: logging is off, so only the library's own references count.
    logging.disable(logging.CRITICAL)
    try:
        with no_wait():
            yield Failing()
    finally:
        logging.disable(logging.NOTSET)


def test_retry_with_backoff_keeps_only_the_last_exception(failing: Failing) -> None:
    """Of four failed attempts, only the last exception, its traceback and frame are kept."""
    with pytest.raises(Boom) as raised:
        retry_with_backoff(failing, max_retries=3, base_delay=0.0, max_delay=0.0)
    assert str(raised.value) == "attempt 4"
    assert failing.alive() == ([4], [4])


def test_retry_with_a_deadline_keeps_only_the_last_exception(failing: Failing) -> None:
    """The full retry loop (here chosen by ``deadline=``) frees every earlier attempt."""
    decorated = retry(max_retries=3, base_delay=0.0, max_delay=0.0, deadline=60.0)(failing)
    with pytest.raises(Boom) as raised:
        decorated()
    assert str(raised.value) == "attempt 4"
    assert failing.alive() == ([4], [4])


def test_the_exception_is_freed_once_the_caller_drops_it(failing: Failing) -> None:
    """Nothing in the library holds on to the failures once the caller lets go."""
    decorated = retry(max_retries=3, base_delay=0.0, max_delay=0.0)(failing)
    with pytest.raises(Boom):
        decorated()
    assert failing.alive() == ([], [])


def test_retry_keeps_only_the_last_exception(failing: Failing) -> None:
    """``@retry`` frees every earlier attempt's exception, traceback and frame.

    While the caller holds the final exception, its traceback holds the frames
    of the wrapper and of the retry loop, so no local of those frames may
    still point at an earlier attempt's exception.
    """
    decorated = retry(max_retries=3, base_delay=0.0, max_delay=0.0)(failing)
    with pytest.raises(Boom) as raised:
        decorated()
    assert str(raised.value) == "attempt 4"
    assert failing.alive() == ([4], [4])


def test_async_retry_keeps_only_the_last_exception(failing: Failing) -> None:
    """``@retry`` on an ``async def`` frees every earlier attempt's exception and frame."""
    decorated = retry(max_retries=3, base_delay=0.0, max_delay=0.0)(failing.call_async)
    with pytest.raises(Boom) as raised:
        asyncio.run(decorated())
    assert str(raised.value) == "attempt 4"
    assert failing.alive() == ([4], [4])
