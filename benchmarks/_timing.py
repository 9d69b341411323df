"""Shared helpers of the benchmark scripts (not part of the library).

The convention every overhead benchmark follows, so that ``run_all.py`` finds
and runs it (see ``benchmarks/README.md``): a module ``benchmarks/NAME.py``
defines ``run(quick: bool) -> Report``; a ``Report`` holds ``Row`` s (one
measured variant each, grouped into tables) and ``Goal`` s (the performance
goals those rows decide).
"""

from __future__ import annotations

import asyncio
import gc
import math
import platform
import sys
import time
import timeit
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CLOCK = time.perf_counter
"""The clock of every per-call figure. Wall time over many short rounds,
keeping the best: on a busy machine a round of 2 ms often runs undisturbed,
and the minimum converges on that undisturbed figure. (The process's CPU time
was tried and is noisier here: it still counts the cycles a busy sibling
hyperthread slows, and it is kept in coarser steps.)"""

FLOOR = "floor"
OURS = "ours"
PEER = "peer"
REFERENCE = "reference"


@dataclass(frozen=True)
class Row:
    """One measured variant.

    Attributes:
        group: the table the row belongs to; rows of one group are measured
            in one run, interleaved, and compared with each other.
        name: what was measured ("resilient @retry", "tenacity", ...).
        value: the figure (``unit``), or ``None`` when it could not be
            measured (a peer that is not installed): ``note`` says why.
        kind: ``"floor"`` (the group's denominator), ``"ours"``, ``"peer"``
            or ``"reference"`` (shown for context, e.g. a bare call).
        unit: ``"ns/call"`` unless said otherwise.
        base: the name of the row this row's ratio is taken against; the
            group's floor when ``None``.
        note: a short remark printed beside the row.
    """

    group: str
    name: str
    value: float | None
    kind: str = PEER
    unit: str = "ns/call"
    base: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Goal:
    """A performance goal, judged from the rows of one group, or by the benchmark itself.

    A ratio goal is met when ``value(subject) / value(floor) <= limit`` for
    every subject (and, with ``flat``, when the largest subject is at most
    ``flat`` times the smallest). A goal the benchmark judged itself carries
    ``met`` and ``figure``. ``when_missed`` explains, with the figures
    of the same table, why the goal may not be met. ``path`` repeats the "path" column of the
    performance table of the design document verbatim, so ``run_all.py`` can
    put the goal in its row.
    """

    path: str
    target: str
    group: str = ""
    subjects: tuple[str, ...] = ()
    floor: str = ""
    limit: float = math.inf
    flat: float | None = None
    figure: str | None = None
    met: bool | None = None
    when_missed: str = ""
    """What stands in the way when the goal is missed: the page prints it under the table."""

    def judge(self, rows: Sequence[Row]) -> tuple[str, bool | None]:
        """The figure to print and whether the goal is met (``None``: not measured)."""
        if self.met is not None or self.figure is not None:
            return self.figure or "", self.met
        values = {row.name: row.value for row in rows if row.group == self.group}
        floor = values.get(self.floor)
        measured = [values.get(subject) for subject in self.subjects]
        if not floor or any(value is None for value in measured):
            return "not measured", None
        ratios = [value / floor for value in measured if value is not None]
        worst = max(ratios)
        met = worst <= self.limit
        figure = f"{worst:.2f}x"
        if len(ratios) > 1:
            figure = f"{min(ratios):.2f}x to {worst:.2f}x"
        if self.flat is not None:
            spread = worst / min(ratios)
            met = met and spread <= self.flat
            figure += f" (largest / smallest {spread:.2f}, flat if <= {self.flat:g})"
        return figure, met


@dataclass
class Report:
    """What one benchmark module's ``run`` returns."""

    rows: list[Row] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)


# -- timing -------------------------------------------------------------------------


def _statement(arity: int) -> str:
    return "f(" + ", ".join(f"a{i}" for i in range(arity)) + ")"


def _autorange(timer: timeit.Timer, seconds: float) -> int:
    """The smallest number of loops (1, 2, 5, 10, 20, ...) that takes at least *seconds*."""
    number = 1
    while True:
        for step in (1, 2, 5):
            loops = number * step
            if timer.timeit(loops) >= seconds:
                return loops
        number *= 10


def measure(
    candidates: Mapping[str, Callable[..., object]],
    args: Sequence[object] = (),
    *,
    quick: bool = False,
    repeat: int | None = None,
    setup: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Nanoseconds per call of each ``candidate(*args)``, best of *repeat* interleaved rounds.

    Each call is a ``timeit`` statement ``f(a0, ...)``, so no extra Python
    frame stands between the loop and the callable; the cost of the loop
    itself (a ``pass`` statement timed the same way) is subtracted. Rounds
    are timed with ``CLOCK``; they are many and short (about
    2 ms) and interleaved (every candidate once per round): on a shared
    machine a short round often runs undisturbed, and the minimum over the
    rounds is that undisturbed figure; the garbage collector is off while
    timing, as ``timeit`` does. *setup*, when
    given, runs untimed before each batch of calls (to empty a stream).
    """
    repeat = repeat or (20 if quick else 100)
    seconds = 0.002
    names = {f"a{i}": value for i, value in enumerate(args)}
    statement = _statement(len(args))
    timers = {
        name: timeit.Timer(statement, setup or "pass", CLOCK, globals={"f": func, **names})
        for name, func in candidates.items()
    }
    empty = timeit.Timer("pass", setup or "pass", CLOCK)
    loops = {name: _autorange(timer, seconds) for name, timer in timers.items()}
    best = dict.fromkeys(timers, math.inf)
    for _ in range(repeat):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(loops[name]) / loops[name])
    overhead = min(empty.timeit(100_000) / 100_000 for _ in range(repeat))
    return {name: max(value - overhead, 0.0) * 1e9 for name, value in best.items()}


def measure_async(
    candidates: Mapping[str, Callable[..., Awaitable[object]]],
    args: Sequence[object] = (),
    *,
    quick: bool = False,
    repeat: int | None = None,
) -> dict[str, float]:
    """Nanoseconds per ``await candidate(*args)``, awaited in a loop inside one event loop.

    As ``measure``: interleaved rounds, best kept, the cost of an empty
    ``async`` loop subtracted, the garbage collector off while timing.
    """
    repeat = repeat or (20 if quick else 100)
    seconds = 0.002

    async def timed(func: Callable[..., Awaitable[object]] | None, loops: int) -> float:
        start = CLOCK()
        if func is None:
            for _ in range(loops):
                pass
        else:
            for _ in range(loops):
                await func(*args)
        return CLOCK() - start

    loop = asyncio.new_event_loop()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:

        def run(func: Callable[..., Awaitable[object]] | None, loops: int) -> float:
            return loop.run_until_complete(timed(func, loops))

        loops: dict[str, int] = {}
        for name, func in candidates.items():
            number = 1
            while run(func, number) < seconds:
                number *= 2
            loops[name] = number
        best = dict.fromkeys(candidates, math.inf)
        for _ in range(repeat):
            for name, func in candidates.items():
                best[name] = min(best[name], run(func, loops[name]) / loops[name])
        overhead = min(run(None, 100_000) / 100_000 for _ in range(repeat))
    finally:
        loop.close()
        if gc_was_enabled:
            gc.enable()
    return {name: max(value - overhead, 0.0) * 1e9 for name, value in best.items()}


def rows_of(
    group: str,
    results: Mapping[str, float | None],
    kinds: Mapping[str, str],
    notes: Mapping[str, str] | None = None,
    unit: str = "ns/call",
) -> list[Row]:
    """Rows of one group from ``{name: value}``; a name missing from *kinds* is a peer."""
    notes = notes or {}
    return [
        Row(group, name, value, kinds.get(name, PEER), unit, note=notes.get(name, ""))
        for name, value in results.items()
    ]


def try_import(module: str) -> Any:
    """The module, or ``None`` when it cannot be imported (a peer that is not installed)."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        return None


def machine() -> str:
    """One line naming the interpreter and the machine."""
    return (
        f"Python {platform.python_version()} ({sys.implementation.name}) on "
        f"{platform.machine()} {platform.system()}, {platform.processor() or 'unknown cpu'}"
    )


# -- printing -----------------------------------------------------------------------


def ratio_base(row: Row, rows: Sequence[Row]) -> Row | None:
    """The row that *row*'s ratio is taken against."""
    group = [r for r in rows if r.group == row.group]
    if row.base is not None:
        return next((r for r in group if r.name == row.base), None)
    return next((r for r in group if r.kind == FLOOR), None)


def print_report(report: Report) -> None:
    """Print every group as a table, then every goal, met or missed."""
    rows = report.rows
    for group in dict.fromkeys(row.group for row in rows):
        members = [row for row in rows if row.group == group]
        unit = members[0].unit
        print(f"\n{group}")
        print(f"  {'variant':44} {unit:>10} {'x floor':>8}")
        for row in members:
            if row.value is None:
                print(f"  {row.name:44} {'n/a':>10} {'':>8}  {row.note}")
                continue
            base = ratio_base(row, rows)
            ratio = f"{row.value / base.value:8.2f}" if base and base.value else f"{'':>8}"
            note = f"  {row.note}" if row.note else ""
            print(f"  {row.name:44} {row.value:10.1f} {ratio}{note}")
    if report.goals:
        print("\ngoals")
        for goal in report.goals:
            figure, met = goal.judge(rows)
            verdict = {True: "met", False: "MISSED", None: "not measured"}[met]
            print(f"  {goal.path:52} {goal.target:36} {figure:>14}  {verdict}")
