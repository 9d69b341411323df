"""Cost of telemetry on every call path: off, Prometheus on, OpenTelemetry on.

Run: ``python benchmarks/telemetry_overhead.py [--quick]`` (``pip install -e
'.[bench]'`` installs prometheus-client and the OpenTelemetry SDK).

Each path is measured four ways, interleaved in one run:

- **without event sites** (the floor): the library's own ``_retry``,
  ``breaker`` and ``task`` modules, loaded again from their source with every
  telemetry event site taken out (each ``if _events.SINK is not None:`` block,
  and the breaker's registration at construction), so the only difference
  from the next row is the sites themselves;
- **telemetry off**: the library as shipped, nothing enabled;
- **Prometheus on**: ``enable_prometheus()`` on a registry of its own;
- **OpenTelemetry on**: ``enable_opentelemetry()`` on an SDK meter provider
  with an in-memory reader (the cost of recording, not of exporting), with no
  span current (a recording span adds one span event per retry and rejection).

Whole-call figures on a shared machine move by more than an event site
costs, so the cost of one site while off (the statement every site runs) is
also measured alone, and each path says how many sites it passes.

The event sites read one global (``resilient._events.SINK``); each variant's
sink is put there untimed before each batch of calls (``timeit``'s setup), so
all four run interleaved. Logging is disabled throughout. Per-call breaker
outcomes are never pushed, and a scrape reads the breakers; its cost is paid
by the scraper, not by the calls, and is not measured here.
"""

from __future__ import annotations

import ast
import functools
import gc
import importlib
import logging
import math
import os
import sys
import timeit
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from _timing import CLOCK, FLOOR, OURS, REFERENCE, Goal, Report, Row, print_report, try_import
from retry_overhead import fails_twice, work

from resilient import _events, telemetry

BARE = "without event sites"
OFF = "telemetry off"
PROMETHEUS = "Prometheus on"
OTEL = "OpenTelemetry on"
VARIANTS = (BARE, OFF, PROMETHEUS, OTEL)

RETRY_OK = "telemetry: `@retry`, success"
RETRY_FAILING = "telemetry: `@retry`, 2 failures then success, zero delay"
BREAKER_OK = "telemetry: breaker closed, success"
BREAKER_REJECT = "telemetry: breaker open, reject"
TASK = "telemetry: `execute_task_safely`, trivial task"
SITE = "telemetry: one event site, telemetry off"

# How many event sites each path passes per call (while off, each is one global read).
SITES_PER_CALL = {RETRY_OK: 0, RETRY_FAILING: 2, BREAKER_OK: 0, BREAKER_REJECT: 1, TASK: 1}

GOAL_PATH = "telemetry off, every call path"
GOAL_TARGET = "<= 1.1x the library without event sites"
GOAL_LIMIT = 1.1

SOURCE = Path(__file__).resolve().parent.parent / "src" / "resilient"


# -- the library without its event sites -------------------------------------------------


def _is_sink_check(node: ast.expr) -> bool:
    """``_events.SINK is not None``."""
    return (
        isinstance(node, ast.Compare)
        and isinstance(node.left, ast.Attribute)
        and isinstance(node.left.value, ast.Name)
        and node.left.value.id == "_events"
        and node.left.attr == "SINK"
    )


def _is_registration(node: ast.stmt) -> bool:
    """``_events.register_breaker(self)``."""
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and isinstance(node.value.func.value, ast.Name)
        and node.value.func.value.id == "_events"
    )


class _StripEventSites(ast.NodeTransformer):
    def __init__(self, renames: Mapping[str, str]) -> None:
        self.renames = renames
        self.removed = 0

    def visit_If(self, node: ast.If) -> ast.AST | None:
        self.generic_visit(node)
        if _is_sink_check(node.test):
            self.removed += 1
            return None
        return node

    def visit_Expr(self, node: ast.Expr) -> ast.AST | None:
        if _is_registration(node):
            self.removed += 1
            return None
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        if node.module in self.renames:
            node.module = self.renames[node.module]
        return node


def without_event_sites(module: str, renames: Mapping[str, str]) -> types.ModuleType:
    """A copy of ``resilient.<module>`` with its telemetry event sites taken out.

    Imports of the modules in *renames* are pointed at their stripped copies.
    """
    path = SOURCE / f"{module.rpartition('.')[2]}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    stripper = _StripEventSites(renames)
    tree = ast.fix_missing_locations(stripper.visit(tree))
    if not stripper.removed:
        raise RuntimeError(f"{module}: no telemetry event site found to take out")
    for node in ast.walk(tree):  # a block left empty gets a `pass`
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if block == [] and field == "body":
                setattr(node, field, [ast.Pass()])
    tree = ast.fix_missing_locations(tree)
    name = f"_bench_bare_{module.rpartition('.')[2]}"
    copy = types.ModuleType(name)
    copy.__file__ = str(path)
    sys.modules[name] = copy  # dataclasses look their module up
    exec(compile(tree, str(path), "exec"), copy.__dict__)
    return copy


def bare_library() -> dict[str, types.ModuleType]:
    """``_retry``, ``breaker`` and ``task`` without event sites, wired to each other."""
    retry_copy = without_event_sites("resilient._retry", {})
    breaker_copy = without_event_sites("resilient.breaker", {})
    renames = {"resilient._retry": retry_copy.__name__, "resilient.breaker": breaker_copy.__name__}
    task_copy = without_event_sites("resilient.task", renames)
    return {"retry": retry_copy, "breaker": breaker_copy, "task": task_copy}


# -- the paths ---------------------------------------------------------------------------------


def rejecting(breaker_class: Any, name: str) -> Callable[[int], None]:
    breaker = breaker_class(1, 3600.0, name=name)
    breaker.trip()
    guarded = breaker(work)

    def reject(x: int) -> None:
        try:  # noqa: SIM105 - contextlib.suppress would cost more than what is measured
            guarded(x)
        except RuntimeError:  # CircuitOpenError, of either copy
            pass

    return reject


def paths(library: Mapping[str, Any]) -> dict[str, Callable[[int], object]]:
    """One callable per path, built from *library* (the shipped modules or the bare copies)."""
    retry, breaker_class = library["retry"].retry, library["breaker"].CircuitBreaker
    closed = breaker_class(name=f"bench-closed-{id(library)}")
    return {
        RETRY_OK: retry(max_retries=2)(work),
        RETRY_FAILING: retry(max_retries=2, base_delay=0.0, max_delay=0.0)(fails_twice()),
        BREAKER_OK: closed(work),
        BREAKER_REJECT: rejecting(breaker_class, f"bench-open-{id(library)}"),
        TASK: functools.partial(library["task"].execute_task_safely, "bench", work),
    }


def sinks() -> tuple[dict[str, Any], dict[str, str]]:
    """The event sink of each variant (``None``: off), and why a variant is missing."""
    found: dict[str, Any] = {BARE: None, OFF: None}
    notes: dict[str, str] = {}
    prometheus_client = try_import("prometheus_client")
    if prometheus_client is None:
        notes[PROMETHEUS] = "prometheus-client not installed"
    else:
        telemetry.enable_prometheus(prometheus_client.CollectorRegistry())
        found[PROMETHEUS] = _events.SINK
        telemetry.disable()  # the sink keeps counting; the registry is not scraped here
    sdk = try_import("opentelemetry.sdk.metrics")
    if sdk is None:
        notes[OTEL] = "opentelemetry-sdk not installed"
    else:
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider

        provider = sdk.MeterProvider(metric_readers=[InMemoryMetricReader()])
        telemetry.enable_opentelemetry(meter_provider=provider, tracer_provider=TracerProvider())
        found[OTEL] = _events.SINK
        telemetry.disable()
    return found, notes


# -- timing, with each variant's sink installed before each batch ---------------------------------


def measure_with_sinks(
    candidates: Mapping[str, tuple[Callable[[int], object], Any]], *, quick: bool
) -> dict[str, float]:
    """Nanoseconds per call of each ``func(1)``, its sink installed untimed before each batch.

    As ``_timing.measure``: a ``timeit`` statement per candidate, interleaved
    rounds of about 2 ms, the best kept, the empty loop subtracted, the
    garbage collector off while timing.
    """
    repeat = 20 if quick else 100
    timers: dict[str, timeit.Timer] = {}
    for name, (func, sink) in candidates.items():

        def install(sink: Any = sink) -> None:
            _events.SINK = sink

        timers[name] = timeit.Timer("f(1)", install, CLOCK, globals={"f": func})
    empty = timeit.Timer("pass", "pass", CLOCK)
    loops = {name: _autorange(timer) for name, timer in timers.items()}
    best = dict.fromkeys(timers, math.inf)
    for _ in range(repeat):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(loops[name]) / loops[name])
    overhead = min(empty.timeit(100_000) / 100_000 for _ in range(repeat))
    _events.SINK = None
    return {name: max(value - overhead, 0.0) * 1e9 for name, value in best.items()}


def measure_site(*, quick: bool) -> float:
    """Nanoseconds of one event site while telemetry is off: the statement the sites run."""
    repeat = 20 if quick else 100
    site = timeit.Timer("if e.SINK is not None: pass", "pass", CLOCK, globals={"e": _events})
    empty = timeit.Timer("pass", "pass", CLOCK)
    loops = 100_000
    best = min(site.timeit(loops) / loops for _ in range(repeat))
    overhead = min(empty.timeit(loops) / loops for _ in range(repeat))
    return max(best - overhead, 0.0) * 1e9


def _autorange(timer: timeit.Timer, seconds: float = 0.002) -> int:
    number = 1
    while True:
        for step in (1, 2, 5):
            loops = number * step
            if timer.timeit(loops) >= seconds:
                return loops
        number *= 10


# -- the report ------------------------------------------------------------------------------


def run(quick: bool) -> Report:
    """Measure every path four ways; see the module docstring."""
    logging.disable(logging.CRITICAL)
    try:
        return _run(quick)
    finally:
        logging.disable(logging.NOTSET)
        _events.SINK = None


def _run(quick: bool) -> Report:
    shipped = {
        "retry": importlib.import_module("resilient._retry"),
        "breaker": importlib.import_module("resilient.breaker"),
        "task": importlib.import_module("resilient.task"),
    }
    bare_paths = paths(bare_library())
    shipped_paths = paths(shipped)
    variant_sinks, notes = sinks()
    report = Report()
    worst: tuple[float, str] = (0.0, "")
    for group in bare_paths:
        candidates = {BARE: (bare_paths[group], None)}
        for variant in (OFF, PROMETHEUS, OTEL):
            if variant in variant_sinks:
                candidates[variant] = (shipped_paths[group], variant_sinks[variant])
        gc.collect()
        results = measure_with_sinks(candidates, quick=quick)
        sites = SITES_PER_CALL[group]
        notes[OFF] = f"{sites} event site{'s' if sites != 1 else ''} per call"
        for variant in VARIANTS:
            kind = FLOOR if variant == BARE else OURS
            report.rows.append(
                Row(group, variant, results.get(variant), kind, note=notes.get(variant, ""))
            )
        if results[BARE]:
            worst = max(worst, (results[OFF] / results[BARE], group))
    report.rows.append(
        Row(
            SITE,
            "`if _events.SINK is not None:`",
            measure_site(quick=quick),
            REFERENCE,
            note="what each site costs while off, measured alone",
        )
    )
    ratio, where = worst
    report.goals.append(
        Goal(
            GOAL_PATH,
            GOAL_TARGET,
            figure=f"{ratio:.2f}x (worst: {where.removeprefix('telemetry: ')})",
            met=ratio <= GOAL_LIMIT,
            when_missed=(
                "each site costs, while telemetry is off, one global read, measured alone "
                "in the last table (about 10 ns); a path passes at most two. A whole-call "
                "figure further from its floor than its sites times that cost is the "
                "machine's noise between two copies of the same code (the floor is the "
                "shipped modules loaded again without their sites): run it again."
            ),
        )
    )
    return report


if __name__ == "__main__":
    print_report(run("--quick" in sys.argv))
