"""Overhead of a circuit breaker per call, against its peers, all in one run.

Run: ``python benchmarks/breaker_overhead.py [--quick]``. Prints nanoseconds
per call and ratios; asserts nothing. What is measured:

- the closed happy path (the protected function returns at once): a bare
  call; the floor, a hand-written decorator that forwards ``*args,
  **kwargs`` into a ``try``/``except``; ours (``@breaker``, and
  ``breaker.call(f)`` through ``functools.partial``); pybreaker;
  circuitbreaker; redress (its breaker is an allow/record API, so it is
  wrapped by hand the way its docs show);
- the same closed path with a ``FailureRateWindow``, count-based windows of
  10 to 10,000 calls and time-based ones of 60 and 600 seconds: the cost must
  not grow with the window; and, for reference, a second breaker built over
  the circuit of a first one with an equal (not the same) window, which must
  cost what the first one costs;
- windows that hold failures (one call in 50 fails, caught by the caller),
  against the floor making the same calls: a window without failures
  needs no lock per success, one that holds failures does;
- a rejected call when open, against calling a function that raises a fresh
  ``RuntimeError`` and catching it (the least any rejection can cost);
- 4 threads making the same calls through one shared breaker, against one
  thread making them all: the cost per call, wall time over calls (and, for
  reference, a time-based window, which reads the clock per success).
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from _timing import (
    FLOOR,
    OURS,
    PEER,
    REFERENCE,
    Goal,
    Report,
    Row,
    measure,
    print_report,
    rows_of,
    try_import,
)

from resilient.breaker import CircuitBreaker, CircuitOpenError, FailureRateWindow, MemoryStore

CLOSED = "breaker, closed, success"
WINDOW = "breaker with a FailureRateWindow, closed, success"
FAILING = "breaker with a FailureRateWindow holding failures: 1 call in 50 fails"
REJECT = "breaker, open: a rejected call"
REBUILT = "resilient @breaker rebuilt, equal 60 s window"
THREADS = "breaker, 4 threads vs 1 thread, ns per call (wall time / calls)"
FLOOR_NAME = "floor: hand-written try/except"
REJECT_FLOOR = "floor: raise and catch a RuntimeError"
OURS_NAME = "resilient @breaker"
WINDOW_SIZES = (10, 100, 1_000, 10_000)
WINDOW_SECONDS = (60.0, 600.0)
THREAD_COUNT = 4


def _window_name(calls: int | None = None, seconds: float | None = None) -> str:
    if calls is not None:
        return f"resilient @breaker, window of {calls:,} calls"
    return f"resilient @breaker, window of {seconds:g} s"


GOALS = [
    Goal("breaker closed, success", "<= 2.0x the floor", CLOSED, (OURS_NAME,), FLOOR_NAME, 2.0),
    Goal(
        "breaker with a `FailureRateWindow`, closed, success",
        "<= 3.0x the floor, flat in the window's size",
        WINDOW,
        tuple(_window_name(calls=size) for size in WINDOW_SIZES)
        + tuple(_window_name(seconds=seconds) for seconds in WINDOW_SECONDS),
        FLOOR_NAME,
        3.0,
        flat=1.25,
        when_missed=(
            "a failure-rate window must enter every outcome so that threads lose no count: "
            "a count window holding only successes does no more than the consecutive mode; "
            "a time window without failures reads the clock and bumps an atomic counter of "
            "its current bucket on every call (no lock); once a window holds a failure, "
            "each success takes the circuit's lock. The clock read alone costs about half "
            "what the floor's try/except costs. The cost is flat in the window's size "
            "(compare the count windows with each other, and the time windows with each "
            "other): the spread the verdict reports is between the two kinds of window."
        ),
    ),
    Goal(
        "breaker open, reject",
        "<= 2.0x raising and catching an exception",
        REJECT,
        (OURS_NAME + ", open",),
        REJECT_FLOOR,
        2.0,
    ),
    Goal(
        "4 threads on one breaker",
        "<= 1.3x one thread, per call",
        THREADS,
        (f"{OURS_NAME}, {THREAD_COUNT} threads",),
        f"{OURS_NAME}, 1 thread",
        1.3,
    ),
]


def protected() -> int:
    return 1


def floor_decorator(func: Callable[..., int]) -> Callable[..., int]:
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            return func(*args, **kwargs)
        except Exception:
            raise

    return wrapper


def _peer_breakers() -> tuple[dict[str, Callable[[], object]], dict[str, str]]:
    found: dict[str, Callable[[], object]] = {}
    notes: dict[str, str] = {}
    pybreaker = try_import("pybreaker")
    if pybreaker is not None:
        found["pybreaker"] = pybreaker.CircuitBreaker()(protected)
    circuitbreaker = try_import("circuitbreaker")
    if circuitbreaker is not None:
        found["circuitbreaker"] = circuitbreaker.circuit(protected)
    redress = _redress_wrapper()
    if redress is not None:
        found["redress allow/record"] = redress
    for name in ("pybreaker", "circuitbreaker", "redress allow/record"):
        if name not in found:
            notes[name] = "not installed"
    return found, notes


def _redress_wrapper() -> Callable[[], object] | None:
    redress = try_import("redress")
    if redress is None or not hasattr(redress, "CircuitBreaker"):
        return None
    from redress.errors import ErrorClass as RedressClass

    breaker = redress.CircuitBreaker()
    open_error = redress.CircuitOpenError

    def guarded(*args: Any, **kwargs: Any) -> int:
        if not breaker.allow().allowed:
            raise open_error("open")
        try:
            result = protected(*args, **kwargs)
        except Exception:
            breaker.record_failure(RedressClass.TRANSIENT)
            raise
        breaker.record_success()
        return result

    return guarded


class Flaky(Exception):
    """The failure of one call in 50 in the FAILING group."""


def _failing_every(period: int) -> Callable[[], int]:
    calls = itertools.count(1)

    def flaky() -> int:
        if next(calls) % period == 0:
            raise Flaky
        return 1

    return flaky


def _caught(func: Callable[[], object]) -> Callable[[], None]:
    # try/except, not contextlib.suppress: its cost would swamp what is measured.
    def call() -> None:
        try:  # noqa: SIM105
            func()
        except Flaky:
            pass

    return call


def _failing(quick: bool) -> list[Row]:
    """Windows holding failures, against the floor making the same calls."""
    candidates: dict[str, Callable[[], object]] = {
        FLOOR_NAME: _caught(floor_decorator(_failing_every(50)))
    }
    windows = {
        _window_name(calls=100): FailureRateWindow(calls=100),
        _window_name(seconds=60.0): FailureRateWindow(seconds=60.0),
    }
    for name, window in windows.items():
        candidates[name] = _caught(CircuitBreaker(window=window)(_failing_every(50)))
    kinds = dict.fromkeys(candidates, REFERENCE)
    kinds[FLOOR_NAME] = FLOOR
    return rows_of(FAILING, measure(candidates, quick=quick), kinds)


def raise_open(*args: object, **kwargs: object) -> int:
    raise RuntimeError("circuit 'bench' is open")


def _rejections() -> dict[str, Callable[[], object]]:
    breaker = CircuitBreaker(name="bench-open", recovery_timeout=3600.0)
    breaker.trip()
    decorated = breaker(protected)

    # try/except, not contextlib.suppress: its cost would swamp what is measured.
    def bare() -> None:
        try:  # noqa: SIM105
            raise_open()
        except RuntimeError:
            pass

    def ours_decorated() -> None:
        try:  # noqa: SIM105
            decorated()
        except CircuitOpenError:
            pass

    def ours_call() -> None:
        try:  # noqa: SIM105
            breaker.call(protected)
        except CircuitOpenError:
            pass

    found: dict[str, Callable[[], object]] = {
        REJECT_FLOOR: bare,
        OURS_NAME + ", open": ours_decorated,
        "resilient breaker.call(f), open": ours_call,
    }
    pybreaker = try_import("pybreaker")
    if pybreaker is not None:
        peer = pybreaker.CircuitBreaker(reset_timeout=3600)
        peer.open()
        peer_decorated = peer(protected)
        peer_error = pybreaker.CircuitBreakerError

        def pybreaker_open() -> None:
            try:  # noqa: SIM105
                peer_decorated()
            except peer_error:
                pass

        found["pybreaker, open"] = pybreaker_open
    circuitbreaker = try_import("circuitbreaker")
    if circuitbreaker is not None:

        def down() -> int:
            raise ConnectionError("down")

        failing = circuitbreaker.circuit(failure_threshold=1, recovery_timeout=3600)(down)

        try:  # noqa: SIM105 - the one failure that opens it
            failing()
        except ConnectionError:
            pass
        circuit_error = circuitbreaker.CircuitBreakerError

        def circuitbreaker_open() -> None:
            try:  # noqa: SIM105
                failing()
            except circuit_error:
                pass

        found["circuitbreaker, open"] = circuitbreaker_open
    return found


def threaded_seconds(func: Callable[[], object], threads: int, per_thread: int) -> float:
    """Wall time for *threads* threads to make *per_thread* calls each."""
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            func()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start


def _threads(quick: bool) -> list[Row]:
    total = 40_000 if quick else 100_000
    timed = f"{OURS_NAME}, window of 60 s"
    contenders: dict[str, Callable[[], object]] = {
        "floor": floor_decorator(protected),
        OURS_NAME: CircuitBreaker(name="bench-threads")(protected),
        timed: CircuitBreaker(window=FailureRateWindow(seconds=60.0))(protected),
    }
    pybreaker = try_import("pybreaker")
    if pybreaker is not None:
        contenders["pybreaker"] = pybreaker.CircuitBreaker()(protected)
    circuitbreaker = try_import("circuitbreaker")
    if circuitbreaker is not None:
        contenders["circuitbreaker"] = circuitbreaker.circuit(protected)
    best: dict[tuple[str, int], float] = {}
    for _ in range(5 if quick else 15):  # many short interleaved rounds, best kept
        for name, func in contenders.items():
            for threads in (1, THREAD_COUNT):
                seconds = threaded_seconds(func, threads, total // threads)
                key = (name, threads)
                best[key] = min(best.get(key, seconds), seconds)
    rows: list[Row] = []
    for name in contenders:
        one = f"{name}, 1 thread"
        kind = OURS if name == OURS_NAME else REFERENCE if name in ("floor", timed) else PEER
        rows.append(Row(THREADS, one, best[(name, 1)] / total * 1e9, REFERENCE))
        rows.append(
            Row(
                THREADS,
                f"{name}, {THREAD_COUNT} threads",
                best[(name, 4)] / total * 1e9,
                kind,
                base=one,
            )
        )
    return rows


def _rebuilt(window: FailureRateWindow) -> Callable[[], object]:
    """A breaker built over a circuit a first breaker made, with an equal window (a copy)."""
    store = MemoryStore()
    first = CircuitBreaker(name="bench-rebuilt", store=store, window=window)
    first.call(protected)
    again = CircuitBreaker(name="bench-rebuilt", store=store, window=copy.copy(window))
    return again(protected)


def run(quick: bool) -> Report:
    """Measure every path; see the module docstring."""
    # Opening the benchmark's breakers logs "circuit opened"; keep the output clean.
    logging.disable(logging.CRITICAL)
    try:
        return _run(quick)
    finally:
        logging.disable(logging.NOTSET)


def _run(quick: bool) -> Report:
    report = Report(goals=list(GOALS))
    floor = floor_decorator(protected)
    breaker = CircuitBreaker(name="bench")
    peers, notes = _peer_breakers()
    closed: dict[str, Callable[[], object]] = {
        "bare call": protected,
        FLOOR_NAME: floor,
        OURS_NAME: CircuitBreaker(name="bench-decorator")(protected),
        "resilient breaker.call(f)": functools.partial(breaker.call, protected),
        **peers,
    }
    results: dict[str, float | None] = {**measure(closed, quick=quick)}
    results.update(dict.fromkeys(notes))
    kinds = {"bare call": REFERENCE, FLOOR_NAME: FLOOR, OURS_NAME: OURS}
    kinds["resilient breaker.call(f)"] = REFERENCE
    report.rows += rows_of(CLOSED, results, kinds, notes)

    windowed: dict[str, Callable[[], object]] = {
        FLOOR_NAME: floor,
        "resilient @breaker, consecutive failures": CircuitBreaker(name="bench-plain")(protected),
    }
    for size in WINDOW_SIZES:
        window = FailureRateWindow(calls=size, minimum_calls=min(size, 100))
        windowed[_window_name(calls=size)] = CircuitBreaker(window=window)(protected)
    for seconds in WINDOW_SECONDS:
        window = FailureRateWindow(seconds=seconds, minimum_calls=100)
        windowed[_window_name(seconds=seconds)] = CircuitBreaker(window=window)(protected)
    windowed[REBUILT] = _rebuilt(FailureRateWindow(seconds=60.0, minimum_calls=100))
    kinds = dict.fromkeys(windowed, OURS)
    kinds[FLOOR_NAME] = FLOOR
    kinds["resilient @breaker, consecutive failures"] = REFERENCE
    kinds[REBUILT] = REFERENCE
    report.rows += rows_of(WINDOW, measure(windowed, quick=quick), kinds)
    report.rows += _failing(quick)

    rejected = measure(_rejections(), quick=quick)
    kinds = {REJECT_FLOOR: FLOOR, OURS_NAME + ", open": OURS}
    kinds["resilient breaker.call(f), open"] = REFERENCE
    report.rows += rows_of(REJECT, rejected, kinds)

    report.rows += _threads(quick)
    return report


if __name__ == "__main__":
    print_report(run("--quick" in sys.argv))
