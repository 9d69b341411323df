"""Overhead of @retry against a hand-written wrapper and the peer libraries.

Run: python benchmarks/retry_overhead.py  (peers: pip install -e '.[bench]')

Everything is measured in this one run on this machine, so the ratios compare
like with like. Logging is disabled for every library (stamina and ours log
each retry by default; the hand-written loop does not).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(__file__))

from _timing import machine, ns_per_call, report

from resilient import retry

NUMBER = int(os.environ.get("BENCH_NUMBER", "200000"))
FAIL_NUMBER = NUMBER // 10


def work(x: int) -> int:
    return x + 1


def hand_wrapper(func: Callable[[int], int]) -> Callable[[int], int]:
    def wrapped(x: int) -> int:
        try:
            return func(x)
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


def hand_loop(func: Callable[[int], int]) -> Callable[[int], int]:
    def wrapped(x: int) -> int:
        for attempt in range(3):
            try:
                return func(x)
            except ConnectionError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    return wrapped


def peers_success() -> list[tuple[str, Callable[[int], int] | None]]:
    rows: list[tuple[str, Callable[[int], int] | None]] = []
    try:
        import tenacity

        rows.append(("tenacity", tenacity.retry(stop=tenacity.stop_after_attempt(3))(work)))
    except ImportError:
        rows.append(("tenacity", None))
    try:
        import backoff

        rows.append(
            ("backoff", backoff.on_exception(backoff.expo, ConnectionError, max_tries=3)(work))
        )
    except ImportError:
        rows.append(("backoff", None))
    try:
        import stamina

        rows.append(("stamina", stamina.retry(on=ConnectionError, attempts=3)(work)))
    except ImportError:
        rows.append(("stamina", None))
    try:
        import redress

        rows.append(("redress", redress.retry(max_attempts=3)(work)))
    except ImportError:
        rows.append(("redress", None))
    return rows


def peers_failure() -> list[tuple[str, Callable[[int], int] | None]]:
    rows: list[tuple[str, Callable[[int], int] | None]] = []
    try:
        import tenacity

        rows.append(
            (
                "tenacity",
                tenacity.retry(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none())(
                    fails_twice()
                ),
            )
        )
    except ImportError:
        rows.append(("tenacity", None))
    try:
        import backoff

        rows.append(
            (
                "backoff",
                backoff.on_exception(
                    backoff.constant, ConnectionError, max_tries=3, interval=0, jitter=None
                )(fails_twice()),
            )
        )
    except ImportError:
        rows.append(("backoff", None))
    try:
        import stamina

        rows.append(
            (
                "stamina",
                stamina.retry(
                    on=ConnectionError, attempts=3, wait_initial=0, wait_max=0, wait_jitter=0
                )(fails_twice()),
            )
        )
    except ImportError:
        rows.append(("stamina", None))
    try:
        import redress

        rows.append(
            (
                "redress",
                redress.retry(max_attempts=3, strategy=lambda attempt, klass, prev: 0.0)(
                    fails_twice()
                ),
            )
        )
    except ImportError:
        rows.append(("redress", None))
    return rows


def main() -> None:
    logging.disable(logging.CRITICAL)
    print(machine())
    print(f"{NUMBER} calls per measurement on the success path, {FAIL_NUMBER} on the failure path")

    ours = retry(max_retries=2)(work)
    rows: list[tuple[str, float | None]] = [
        ("bare call", ns_per_call(lambda: work(1), NUMBER)),
        ("hand-written try/except (floor)", ns_per_call(lambda: hand_wrapper(work)(1), 1)),
    ]
    wrapped = hand_wrapper(work)
    rows[1] = ("hand-written try/except (floor)", ns_per_call(lambda: wrapped(1), NUMBER))
    rows.append(("resilient @retry", ns_per_call(lambda: ours(1), NUMBER)))
    for name, func in peers_success():
        rows.append((name, None if func is None else ns_per_call(lambda f=func: f(1), NUMBER)))
    report("success path (one attempt)", rows, "hand-written try/except (floor)")

    loop = hand_loop(fails_twice())
    ours_failing = retry(max_retries=2, base_delay=0.0, max_delay=0.0)(fails_twice())
    fail_rows: list[tuple[str, float | None]] = [
        ("hand-written 3-attempt loop (floor)", ns_per_call(lambda: loop(1), FAIL_NUMBER)),
        ("resilient @retry", ns_per_call(lambda: ours_failing(1), FAIL_NUMBER)),
    ]
    for name, func in peers_failure():
        fail_rows.append(
            (name, None if func is None else ns_per_call(lambda f=func: f(1), FAIL_NUMBER))
        )
    report(
        "failure path (2 connection errors, success on attempt 3, zero delay)",
        fail_rows,
        "hand-written 3-attempt loop (floor)",
    )
    print("\ngoals: success path <= 2.0 x floor; failure path <= 3.0 x floor")


if __name__ == "__main__":
    main()
