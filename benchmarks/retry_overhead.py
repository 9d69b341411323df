"""Overhead of ``@retry`` against a hand-written floor and the peer libraries.

Run: ``python benchmarks/retry_overhead.py [--quick]`` (peers: ``pip install
-e '.[bench]'``). Everything is measured in this one run, interleaved, so the
ratios compare like with like. Logging is disabled for every library (stamina
and ours log each retry by default; the hand-written loop does not).

- success: one attempt that returns at once; the floor is a hand-written
  decorator that forwards ``*args, **kwargs`` into a ``try``/``except``
  around the call (the least any generic decorator does: the goal's
  denominator); the same written for the one signature ``f(x)`` (what a
  hand-written wrapper of that function costs, and no generic decorator
  can be) has its own row, and ``@retry``'s figure is shown again divided
  by it, so both ratios are read; the floor with one ``time.monotonic()``
  as the call starts is shown too (what the documented elapsed time,
  counted from the call's start, asks of every call). ``@retry`` wraps a
  function of named parameters, such as ``f(x)``, in a wrapper taking
  those parameters; a function that itself takes ``*args, **kwargs`` gets
  the generic wrapper: its rows compare it with the floor around that
  same function;
- failure: two ``ConnectionError`` then a success, no sleeping (zero delays);
  the floor is a hand-written three-attempt loop, also generic;
- jittered failure: the same with real delays (the default proportional
  jitter, base 0.5 s) computed and handed to a clock whose sleep returns at
  once: what drawing a delay adds to a failed attempt;
- async success: ``await f(1)`` of a decorated ``async def``; the floor is a
  hand-written ``async`` decorator forwarding into a ``try``/``except`` (a
  bare ``await`` of the coroutine function, the floor with one clock read
  as the call starts, and the same try/except written for ``f(x)`` with
  ``@retry``'s figure divided by it, are shown for reference).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from _timing import (
    FLOOR,
    OURS,
    REFERENCE,
    Goal,
    Report,
    Row,
    measure,
    measure_async,
    print_report,
    rows_of,
    try_import,
)

from resilient import retry

SUCCESS = "@retry, success (one attempt)"
FAILURE = "@retry, 2 failures then success, zero delay"
JITTERED = "@retry, 2 failures then success, jittered delays, sleep that returns at once"
ASYNC = "@retry on an async def, success"
SUCCESS_FLOOR = "floor: hand-written try/except"
FIXED_WRAPPER = "hand-written try/except, fixed signature f(x)"
OURS_FIXED = "resilient @retry, x the fixed-signature try/except"
ASYNC_FIXED = "hand-written async try/except, fixed signature f(x)"
FAILURE_FLOOR = "floor: hand-written 3-attempt loop"
ASYNC_FLOOR = "floor: hand-written async try/except"
CLOCKED = "floor + one time.monotonic() as the call starts"
ANY_FLOOR = "floor around a function taking *args, **kwargs"
ANY_OURS = "resilient @retry around a function taking *args, **kwargs"
BARE_AWAIT = "bare await"
OURS_NAME = "resilient @retry"

GOALS = [
    Goal(
        "`@retry`, success",
        "<= 1.5x a hand-written try/except",
        SUCCESS,
        (OURS_NAME,),
        SUCCESS_FLOOR,
        1.5,
        when_missed=(
            "besides the call, `@retry` reads the clock as the call starts (the elapsed "
            "time of the give-up note, the logs and `RetryState` counts the first "
            "attempt, as documented): the row `floor + one time.monotonic()` is that "
            "reading alone. For a function of named parameters the wrapper takes them "
            "as they are, which saves the floor's packing of `*args, **kwargs`; a "
            "function taking `*args, **kwargs` itself (its own rows) pays both "
            "(`benchmarks/instructions.py` counts each). Against a try/except written for "
            "the function's own signature (no packing either), `@retry` costs more than "
            "the floor ratio says: its row `x the fixed-signature try/except` shows it."
        ),
    ),
    Goal(
        "`@retry`, fail twice then succeed, no sleeping",
        "<= 3.0x a hand-written loop",
        FAILURE,
        (OURS_NAME,),
        FAILURE_FLOOR,
        3.0,
        when_missed=(
            "each failed attempt is classified (by its type alone when it carries no status, "
            "response or class of its own, else by the classifier), checked for a rejection "
            "in its chain, against the attempt count, the budget and the composed breaker, and "
            "given its next delay by the jitter strategy; the hand-written loop catches one "
            "type and loops. `benchmarks/instructions.py` counts the instructions of each "
            "step, so the remaining cost can be followed from run to run."
        ),
    ),
    Goal(
        "`@retry`, fail twice then succeed, jittered delays, no sleeping",
        "<= 3.0x a hand-written loop",
        JITTERED,
        (OURS_NAME,),
        FAILURE_FLOOR,
        3.0,
        when_missed=(
            "on top of the zero-delay failure path, each retry draws its delay (one draw "
            "of the shared random generator, made in the loop on the call's own state: the "
            "numbers `resilient.backoff.delays` yields, with no iterator built) and hands it "
            "to the clock's `sleep`, a method call the hand-written loop does not make."
        ),
    ),
    Goal(
        "`@retry` on an `async def`, success",
        "<= 1.3x a hand-written async try/except",
        ASYNC,
        (OURS_NAME,),
        ASYNC_FLOOR,
        1.3,
        when_missed=(
            "what `@retry` adds to the hand-written wrapper is one clock read as the call "
            "starts, which the deadline and the reported elapsed time are counted from (the "
            "first attempt's own time included, as documented): the row `floor + one "
            "time.monotonic()` is that reading alone; the wrapper taking the function's "
            "own parameters instead of `*args, **kwargs` pays for part of it."
        ),
    ),
]


def work(x: int) -> int:
    return x + 1


async def work_async(x: int) -> int:
    return x + 1


def work_any(*args: int, **kwargs: int) -> int:
    """``work`` for a function whose parameters ``@retry`` cannot name: the generic wrapper."""
    return args[0] + 1


def hand_wrapper(func: Callable[..., int]) -> Callable[..., int]:
    """The least a generic decorator can do: forward the arguments into a try/except."""

    def wrapped(*args: Any, **kwargs: Any) -> int:
        try:
            return func(*args, **kwargs)
        except Exception:
            raise

    return wrapped


def clocked_wrapper(func: Callable[..., int]) -> Callable[..., int]:
    """The floor plus the one clock read ``@retry`` makes as a call starts."""

    def wrapped(*args: Any, **kwargs: Any) -> int:
        time.monotonic()  # where the elapsed time of the note, the logs and RetryState starts
        try:
            return func(*args, **kwargs)
        except Exception:
            raise

    return wrapped


def clocked_async_wrapper(
    func: Callable[..., Awaitable[int]],
) -> Callable[..., Awaitable[int]]:
    async def wrapped(*args: Any, **kwargs: Any) -> int:
        time.monotonic()
        try:
            return await func(*args, **kwargs)
        except Exception:
            raise

    return wrapped


def fixed_wrapper(func: Callable[[int], int]) -> Callable[[int], int]:
    """The same, written for one signature: what no decorator library can be."""

    def wrapped(x: int) -> int:
        try:
            return func(x)
        except Exception:
            raise

    return wrapped


def fixed_async_wrapper(
    func: Callable[[int], Awaitable[int]],
) -> Callable[[int], Awaitable[int]]:
    """The async try/except written for one signature."""

    async def wrapped(x: int) -> int:
        try:
            return await func(x)
        except Exception:
            raise

    return wrapped


def hand_async_wrapper(func: Callable[..., Awaitable[int]]) -> Callable[..., Awaitable[int]]:
    async def wrapped(*args: Any, **kwargs: Any) -> int:
        try:
            return await func(*args, **kwargs)
        except Exception:
            raise

    return wrapped


def fails_twice() -> Callable[[int], int]:
    """A function failing twice with a connection error, then succeeding; and again."""
    count = 0

    def attempt(x: int) -> int:
        nonlocal count
        count += 1
        if count % 3:
            raise ConnectionError("reset")
        return x + 1

    return attempt


class NoSleep:
    """A clock that reads the real time and returns from every wait at once."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        pass

    async def asleep(self, seconds: float) -> None:
        pass


def hand_loop(func: Callable[..., int]) -> Callable[..., int]:
    """Three attempts, no waiting, as a generic decorator."""

    def wrapped(*args: Any, **kwargs: Any) -> int:
        for attempt in range(3):
            try:
                return func(*args, **kwargs)
            except ConnectionError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    return wrapped


def _peers(failing: bool) -> tuple[dict[str, Callable[[int], int]], dict[str, str]]:
    """Each peer's decorator around `work` (or a fresh `fails_twice()`), three attempts."""
    found: dict[str, Callable[[int], int]] = {}
    notes: dict[str, str] = {}
    target = fails_twice if failing else (lambda: work)
    tenacity = try_import("tenacity")
    if tenacity is not None:
        wait = {"wait": tenacity.wait_none()} if failing else {}
        found["tenacity"] = tenacity.retry(stop=tenacity.stop_after_attempt(3), **wait)(target())
    backoff = try_import("backoff")
    if backoff is not None:
        found["backoff"] = backoff.on_exception(
            backoff.constant, ConnectionError, max_tries=3, interval=0, jitter=None
        )(target())
    stamina = try_import("stamina")
    if stamina is not None:
        # Its default hook logs through structlog, which logging.disable() does not reach.
        stamina.instrumentation.set_on_retry_hooks([])
        found["stamina"] = stamina.retry(
            on=ConnectionError, attempts=3, wait_initial=0, wait_max=0, wait_jitter=0
        )(target())
    redress = try_import("redress")
    if redress is not None:
        found["redress"] = redress.retry(max_attempts=3, strategy=lambda attempt, klass, prev: 0.0)(
            target()
        )
    for name in ("tenacity", "backoff", "stamina", "redress"):
        if name not in found:
            notes[name] = "not installed"
    return found, notes


def _async_peers() -> dict[str, Callable[[int], Awaitable[int]]]:
    found: dict[str, Callable[[int], Awaitable[int]]] = {}
    tenacity = try_import("tenacity")
    if tenacity is not None:
        found["tenacity"] = tenacity.retry(stop=tenacity.stop_after_attempt(3))(work_async)
    backoff = try_import("backoff")
    if backoff is not None:
        found["backoff"] = backoff.on_exception(backoff.expo, ConnectionError, max_tries=3)(
            work_async
        )
    stamina = try_import("stamina")
    if stamina is not None:
        found["stamina"] = stamina.retry(on=ConnectionError, attempts=3)(work_async)
    redress = try_import("redress")
    if redress is not None:
        found["redress"] = redress.retry(max_attempts=3)(work_async)
    return found


def run(quick: bool) -> Report:
    """Measure the three paths; see the module docstring."""
    logging.disable(logging.CRITICAL)
    try:
        return _run(quick)
    finally:
        logging.disable(logging.NOTSET)


def _run(quick: bool) -> Report:
    report = Report(goals=list(GOALS))

    peers, notes = _peers(failing=False)
    candidates: dict[str, Callable[[int], int]] = {
        "bare call": work,
        FIXED_WRAPPER: fixed_wrapper(work),
        SUCCESS_FLOOR: hand_wrapper(work),
        CLOCKED: clocked_wrapper(work),
        OURS_NAME: retry(max_retries=2)(work),
        ANY_FLOOR: hand_wrapper(work_any),
        ANY_OURS: retry(max_retries=2)(work_any),
        **peers,
    }
    results: dict[str, float | None] = {**measure(candidates, (1,), quick=quick)}
    results.update(dict.fromkeys(notes))
    kinds = {
        "bare call": REFERENCE,
        FIXED_WRAPPER: REFERENCE,
        SUCCESS_FLOOR: FLOOR,
        CLOCKED: REFERENCE,
        OURS_NAME: OURS,
    }
    anything = {name: results.pop(name) for name in (ANY_FLOOR, ANY_OURS)}
    rows = rows_of(SUCCESS, results, kinds, notes)
    after_ours = [row.name for row in rows].index(OURS_NAME) + 1
    rows[after_ours:after_ours] = [
        # The same figure, divided by the try/except written for f(x) instead of the floor.
        Row(SUCCESS, OURS_FIXED, results[OURS_NAME], REFERENCE, base=FIXED_WRAPPER),
        Row(SUCCESS, ANY_FLOOR, anything[ANY_FLOOR], REFERENCE),
        Row(SUCCESS, ANY_OURS, anything[ANY_OURS], REFERENCE, base=ANY_FLOOR),
    ]
    report.rows += rows

    peers, notes = _peers(failing=True)
    candidates = {
        FAILURE_FLOOR: hand_loop(fails_twice()),
        OURS_NAME: retry(max_retries=2, base_delay=0.0, max_delay=0.0)(fails_twice()),
        **peers,
    }
    results = {**measure(candidates, (1,), quick=quick)}
    results.update(dict.fromkeys(notes))
    report.rows += rows_of(FAILURE, results, {FAILURE_FLOOR: FLOOR, OURS_NAME: OURS}, notes)

    jittered = {
        FAILURE_FLOOR: hand_loop(fails_twice()),
        OURS_NAME: retry(max_retries=2, base_delay=0.5, clock=NoSleep())(fails_twice()),
    }
    report.rows += rows_of(
        JITTERED,
        dict(measure(jittered, (1,), quick=quick)),
        {FAILURE_FLOOR: FLOOR, OURS_NAME: OURS},
        {},
    )

    async_candidates: dict[str, Callable[[int], Awaitable[int]]] = {
        BARE_AWAIT: work_async,
        ASYNC_FLOOR: hand_async_wrapper(work_async),
        ASYNC_FIXED: fixed_async_wrapper(work_async),
        CLOCKED: clocked_async_wrapper(work_async),
        OURS_NAME: retry(max_retries=2)(work_async),
        **_async_peers(),
    }
    async_results: dict[str, float | None] = {**measure_async(async_candidates, (1,), quick=quick)}
    async_results.update(dict.fromkeys(notes))
    kinds = {
        BARE_AWAIT: REFERENCE,
        ASYNC_FLOOR: FLOOR,
        ASYNC_FIXED: REFERENCE,
        CLOCKED: REFERENCE,
        OURS_NAME: OURS,
    }
    rows = rows_of(ASYNC, async_results, kinds, notes)
    after_ours = [row.name for row in rows].index(OURS_NAME) + 1
    rows.insert(
        after_ours, Row(ASYNC, OURS_FIXED, async_results[OURS_NAME], REFERENCE, base=ASYNC_FIXED)
    )
    report.rows += rows
    return report


if __name__ == "__main__":
    print_report(run("--quick" in sys.argv))
