"""Overhead of ``execute_task_safely`` on a trivial task that succeeds.

Run: ``python benchmarks/task_overhead.py [--quick]``. The floor is the
hand-written ``try``/``except`` decorator of ``retry_overhead.py``; ``@retry``
on the same function is shown for reference. No peer has an equivalent.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(__file__))

from _timing import FLOOR, OURS, REFERENCE, Goal, Report, measure, print_report, rows_of
from retry_overhead import hand_wrapper, work

from resilient import CircuitBreaker, execute_task_safely, retry

TASK = "execute_task_safely, trivial task"
FLOOR_NAME = "floor: hand-written try/except"
OURS_NAME = "resilient execute_task_safely"

GOALS = [
    Goal(
        "`execute_task_safely`, trivial task",
        "<= 20x a hand-written try/except",
        TASK,
        (OURS_NAME,),
        FLOOR_NAME,
        20.0,
    )
]


def run(quick: bool) -> Report:
    """Measure the task against the floor; see the module docstring."""
    breaker = CircuitBreaker(name="bench-task")
    candidates: dict[str, Callable[..., object]] = {
        FLOOR_NAME: hand_wrapper(work),
        "resilient @retry": retry(work),
        OURS_NAME: functools.partial(execute_task_safely, "bench", work),
        "resilient execute_task_safely with a breaker": functools.partial(
            execute_task_safely, "bench", work, circuit_breaker=breaker
        ),
    }
    kinds = {
        FLOOR_NAME: FLOOR,
        "resilient @retry": REFERENCE,
        OURS_NAME: OURS,
        "resilient execute_task_safely with a breaker": REFERENCE,
    }
    results = measure(candidates, (1,), quick=quick)
    return Report(rows=rows_of(TASK, results, kinds), goals=list(GOALS))


if __name__ == "__main__":
    print_report(run("--quick" in sys.argv))
