"""Shared timing helpers for the benchmark scripts (not part of the library)."""

from __future__ import annotations

import gc
import platform
import sys
import time
from collections.abc import Callable


def ns_per_call(func: Callable[[], object], number: int, repeat: int = 7) -> float:
    """Best-of-*repeat* nanoseconds per call of *func* over *number* calls.

    The minimum is the figure least disturbed by the rest of the machine;
    garbage collection is paused while timing, as timeit does.
    """
    best = float("inf")
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter_ns()
            for _ in range(number):
                func()
            best = min(best, (time.perf_counter_ns() - start) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return best


def machine() -> str:
    """One line naming the interpreter and the machine."""
    return (
        f"Python {platform.python_version()} ({sys.implementation.name}) on "
        f"{platform.machine()} {platform.system()}, {platform.processor() or 'unknown cpu'}"
    )


def report(title: str, rows: list[tuple[str, float | None]], floor: str) -> None:
    """Print ns/call and the ratio of each row to the row named *floor*."""
    values = dict(rows)
    base = values[floor]
    print(f"\n{title}")
    print(f"  {'':40} {'ns/call':>10} {'x ' + floor:>22}")
    for name, value in rows:
        if value is None:
            print(f"  {name:40} {'n/a':>10} {'(not installed)':>22}")
            continue
        ratio = value / base if base else float("nan")
        print(f"  {name:40} {value:10.0f} {ratio:22.2f}")
