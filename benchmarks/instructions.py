"""The overhead goals in instructions executed (valgrind): figures noise cannot move.

Run: ``python benchmarks/instructions.py [--quick]`` (needs ``valgrind``;
peers for the import rows: ``pip install -e '.[bench]'``).

On a shared machine wall-clock ratios move by 10 % or more from run to run;
the number of instructions a call executes does not (``callgrind`` counts
them exactly, in a fresh interpreter with a fixed hash seed). Each per-call
figure is the count of a child that makes N calls minus that of one making
none, over N, less the cost of the empty loop (as ``timeit`` does); each
import figure the count of ``python -c STATEMENT`` minus that of ``python -c
pass``, with bytecode cached. The ``async`` rows await the call N times in one
coroutine driven without an event loop (nothing suspends), so they count what
the wrapper adds, not the loop's scheduling. Instructions are not time (a clock read or a
cache miss costs more than its count says), so these ratios complement the
timed ones of the other scripts, they do not replace them.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The same floors and failing function as the timed benchmark, counted instead.
from retry_overhead import (
    NoSleep,
    clocked_async_wrapper,
    clocked_wrapper,
    fails_twice,
    fixed_wrapper,
    hand_async_wrapper,
    hand_loop,
    hand_wrapper,
    work,
    work_any,
    work_async,
)

HERE = os.path.dirname(os.path.abspath(__file__))

# Without PYTHONDONTWRITEBYTECODE, so that a warm-up run caches the bytecode.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONHASHSEED"] = "0"


def fixed_loop(func: Callable[[int], int]) -> Callable[[int], int]:
    def wrapped(x: int) -> int:
        for attempt in range(3):
            try:
                return func(x)
            except ConnectionError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    return wrapped


ASYNC = "async success: "
"""The prefix of the candidates awaited (in one coroutine, driven without an event loop)."""


def _candidates() -> dict[str, Callable[[int], object]]:
    from resilient import execute_task_safely, retry, run_tasks

    hundred = [("task", work, 1)] * 100
    return {
        "success: floor, fixed signature": fixed_wrapper(work),
        "success: floor, generic": hand_wrapper(work),
        "success: floor + clock read": clocked_wrapper(work),
        "success: @retry": retry(max_retries=2)(work),
        "success: floor, f(*args, **kwargs)": hand_wrapper(work_any),
        "success: @retry, f(*args, **kwargs)": retry(max_retries=2)(work_any),
        "failure: floor, fixed signature": fixed_loop(fails_twice()),
        "failure: floor, generic": hand_loop(fails_twice()),
        "failure: @retry": retry(max_retries=2, base_delay=0.0, max_delay=0.0)(fails_twice()),
        "failure: @retry, jittered delays": retry(max_retries=2, base_delay=0.5, clock=NoSleep())(
            fails_twice()
        ),
        "task: execute_task_safely": functools.partial(execute_task_safely, "task", work),
        ASYNC + "floor, generic": hand_async_wrapper(work_async),
        ASYNC + "floor + clock read": clocked_async_wrapper(work_async),
        ASYNC + "@retry": retry(max_retries=2)(work_async),
        "task: run_tasks, 100 tasks": lambda x: run_tasks(hundred),
    }


# name, floor it is divided by (None: a floor itself)
CALLS: tuple[tuple[str, str | None], ...] = (
    ("success: floor, fixed signature", None),
    ("success: floor, generic", None),
    ("success: floor + clock read", "success: floor, generic"),
    ("success: @retry", "success: floor, fixed signature"),
    ("success: floor, f(*args, **kwargs)", None),
    ("success: @retry, f(*args, **kwargs)", "success: floor, f(*args, **kwargs)"),
    ("failure: floor, fixed signature", None),
    ("failure: floor, generic", None),
    ("failure: @retry", "failure: floor, fixed signature"),
    ("failure: @retry, jittered delays", "failure: floor, fixed signature"),
    (ASYNC + "floor, generic", None),
    (ASYNC + "floor + clock read", ASYNC + "floor, generic"),
    (ASYNC + "@retry", ASYNC + "floor, generic"),
    ("task: execute_task_safely", "success: floor, generic"),
    ("task: run_tasks, 100 tasks", "success: floor, generic"),
)
PER_CALL = {"task: run_tasks, 100 tasks": 100}  # calls of the floor one call stands for
SECOND_FLOOR = {
    "success: @retry": "success: floor, generic",
    "failure: @retry": "failure: floor, generic",
    "failure: @retry, jittered delays": "failure: floor, generic",
    "task: execute_task_safely": "success: floor, fixed signature",
    "task: run_tasks, 100 tasks": "success: floor, fixed signature",
}

IMPORTS: tuple[tuple[str, str | None], ...] = (
    ("from tenacity import retry", None),
    ("import tenacity", None),
    ("from resilient import retry", "from tenacity import retry"),
    ("from resilient import *", "import tenacity"),
)


LOOP = "(the loop alone)"


def child(name: str, calls: int) -> None:
    """Make *calls* calls of candidate *name* (after one unmeasured call)."""
    logging.disable(logging.CRITICAL)
    func = _candidates()[name] if name != LOOP else work
    if name.startswith(ASYNC):
        awaited(func, 1)
        gc.disable()
        awaited(func, calls)
        return
    func(1)
    gc.disable()
    if name == LOOP:  # what every figure has subtracted, as timeit does
        for _ in range(calls):
            pass
    else:
        for _ in range(calls):
            func(1)


def awaited(func: Callable[[int], Any], calls: int) -> None:
    """Await ``func(1)`` *calls* times in one coroutine, driven by hand: nothing suspends."""

    async def many() -> None:
        for _ in range(calls):
            await func(1)

    coroutine = many()
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise RuntimeError(f"{func!r} suspended: it cannot be counted without an event loop")


def _instructions(arguments: list[str]) -> int:
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *arguments],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{' '.join(arguments)} failed: {done.stderr.strip()[-500:]}")
    return int(found.group(1))


def per_call(name: str, calls: int) -> float:
    """Instructions of one call of candidate *name*."""
    script = [sys.executable, os.path.abspath(__file__), "--child", name]
    return (_instructions([*script, str(calls)]) - _instructions([*script, "0"])) / calls


def imported(statement: str) -> float | None:
    """Instructions of *statement* in a fresh interpreter, or None when it fails."""
    if subprocess.run([sys.executable, "-c", statement], env=ENV, check=False).returncode:
        return None  # not installed (this run also cached the bytecode)
    return float(_instructions([sys.executable, "-c", statement]))


def main(quick: bool) -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    calls = 200 if quick else 2000
    child_script = [sys.executable, os.path.abspath(__file__), "--child"]
    subprocess.run([*child_script, CALLS[0][0], "0"], env=ENV, check=True)  # caches bytecode
    loop = per_call(LOOP, calls)
    counts = {name: per_call(name, calls) - loop for name, _ in CALLS}
    version = sys.version.split()[0]
    print(f"instructions per call (callgrind, {calls} calls, hash seed 0), Python {version}")
    print(f"  {'variant':36} {'instructions':>12} {'x floor':>8} {'x other floor':>14}")
    for name, floor in CALLS:
        value = counts[name] / PER_CALL.get(name, 1)
        ratio = f"{value / counts[floor]:8.2f}" if floor else f"{'':>8}"
        other = SECOND_FLOOR.get(name)
        second = f"{value / counts[other]:14.2f}" if other else ""
        print(f"  {name:36} {value:12.0f} {ratio}{second}")
    base = imported("pass")
    assert base is not None
    print("\ninstructions per import statement (fresh interpreter, bytecode cached, net of `pass`)")
    print(f"  {'statement':36} {'instructions':>12} {'x floor':>8}")
    values = {statement: imported(statement) for statement, _ in IMPORTS}
    for statement, floor in IMPORTS:
        measured = values[statement]
        if measured is None:
            print(f"  {statement:36} {'n/a':>12}")
            continue
        net = measured - base
        floor_value = values.get(floor) if floor else None
        ratio = f"{net / (floor_value - base):8.2f}" if floor_value else f"{'':>8}"
        print(f"  {statement:36} {net:12.0f} {ratio}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path.insert(0, HERE)
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main("--quick" in sys.argv)
