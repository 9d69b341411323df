"""Run every benchmark and write one report: ``docs/performance.md`` and its plots.

Run: ``python benchmarks/run_all.py [--quick] [--only NAME,...] [--output PATH]``
after ``pip install -e '.[bench]'``; see ``benchmarks/README.md``.

Every overhead benchmark is a module of this folder that defines
``run(quick: bool) -> Report`` (see ``_timing.py``); each runs in a fresh
interpreter of its own, one after the other, so that no benchmark warms or
disturbs another. A module may name executables it needs in ``REQUIRES``
(a tuple of strings): it is skipped, and the page says so, when one is not
on the PATH. The retry storm and the outage (``herd.py``) run in this
process. The page lists every goal of the design document's performance
table, met or missed with its figure, or why it was not measured.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import herd
from _timing import FLOOR, OURS, PEER, REFERENCE, Goal, Report, Row, ratio_base

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# The order of the page; modules found beyond these follow, alphabetically.
KNOWN_ORDER = (
    "retry_overhead",
    "task_overhead",
    "breaker_overhead",
    "logging_overhead",
    "import_time",
    "redis_overhead",
    "redis_async",
    "telemetry_overhead",
    "pacing",
    "httpx_overhead",
    "redis_limiter",
)
# What a module needs whether or not it says so itself.
KNOWN_REQUIRES = {
    "redis_overhead": ("redis-server",),
    "redis_async": ("redis-server",),
    "redis_limiter": ("redis-server",),
}
NOT_BENCHMARKS = {"run_all", "herd"}
MARKER = "@@run_all report@@"
PEERS = (
    "tenacity",
    "backoff",
    "stamina",
    "redress",
    "pybreaker",
    "circuitbreaker",
    "python-json-logger",
    "structlog",
    "limits",
    "pyrate-limiter",
    "purgatory",
)

# The performance table of the design document, in its order: (path, goal).
DESIGN_GOALS: tuple[tuple[str, str], ...] = (
    ("`@retry`, success", "<= 1.5x a hand-written try/except"),
    ("`@retry`, fail twice then succeed, no sleeping", "<= 3.0x a hand-written loop"),
    ("`@retry` on an `async def`, success", "<= 1.3x a hand-written async try/except"),
    ("breaker closed, success", "<= 2.0x the floor"),
    (
        "breaker with a `FailureRateWindow`, closed, success",
        "<= 3.0x the floor, flat in the window's size",
    ),
    ("breaker open, reject", "<= 2.0x raising and catching an exception"),
    ("4 threads on one breaker", "<= 1.3x one thread, per call"),
    ("`JsonFormatter`", "<= 1.15x the plain `logging.Formatter`"),
    ("`from resilient import retry`", "<= 0.5x `from tenacity import retry`"),
    ("every public name imported", "<= 1.0x `import tenacity`"),
    ("`execute_task_safely`, trivial task", "<= 20x a hand-written try/except"),
    (
        "`RedisStore`, closed path",
        "one round trip per call; faster than pybreaker's Redis storage",
    ),
    (
        "retry storm (published model, N=100)",
        "full jitter <= 0.5x the calls of plain exponential",
    ),
    ("outage with a `RetryBudget`", "amplification <= 1.1x"),
    (
        "`RateLimiter.try_acquire`, admitted, in process",
        "<= 2.0x a `threading.Lock` acquire/release plus `time.monotonic()`",
    ),
    (
        "`RateLimiter` through Redis",
        "1 round trip per admitted acquire; a waiting caller sleeps the returned time, no polling",
    ),
    ("`ConcurrencyLimit`, in process", "<= 2.0x a `threading.BoundedSemaphore` acquire/release"),
    ("`ResilientTransport`, success", "<= 1.05x the wrapped transport, loopback GET"),
    (
        "fleet against a rate-limited API (benchmarks/, simulated)",
        "goodput >= 95% of the API's capacity, < 1% 429s once converged",
    ),
    ("async forms on `AsyncRedisStore` while Redis hangs", "event-loop lag < 10 ms"),
)
STORM_N = 100


# -- discovery and running ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A module of this folder that defines ``run(quick)``."""

    name: str
    requires: tuple[str, ...]


def discover(folder: Path = HERE) -> list[Benchmark]:
    """Every benchmark module of *folder*, found by reading (not importing) its source."""
    found: list[Benchmark] = []
    for path in sorted(folder.glob("*.py")):
        name = path.stem
        if name.startswith("_") or name in NOT_BENCHMARKS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defines_run = any(
            isinstance(node, ast.FunctionDef) and node.name == "run" for node in tree.body
        )
        if not defines_run:
            continue
        requires: tuple[str, ...] = KNOWN_REQUIRES.get(name, ())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "REQUIRES" for target in node.targets
            ):
                requires += tuple(ast.literal_eval(node.value))
        found.append(Benchmark(name, tuple(dict.fromkeys(requires))))
    rank = {name: i for i, name in enumerate(KNOWN_ORDER)}
    return sorted(found, key=lambda b: (rank.get(b.name, len(rank)), b.name))


@dataclasses.dataclass
class Outcome:
    """What running one benchmark gave: its report, or why there is none."""

    name: str
    report: Report | None = None
    skipped: str = ""
    failed: str = ""
    seconds: float = 0.0


def run_benchmark(benchmark: Benchmark, quick: bool, timeout: float = 900.0) -> Outcome:
    """Run one benchmark module in a fresh interpreter and read back its report."""
    missing = [tool for tool in benchmark.requires if shutil.which(tool) is None]
    if missing:
        return Outcome(benchmark.name, skipped=f"{', '.join(missing)} not found on the PATH")
    command = [sys.executable, str(Path(__file__).resolve()), "--child", benchmark.name]
    if quick:
        command.append("--quick")
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return Outcome(benchmark.name, failed=f"timed out after {timeout:g} s")
    seconds = time.perf_counter() - start
    payload = done.stdout.rpartition(MARKER)[2].strip()
    if done.returncode != 0 or not payload:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return Outcome(benchmark.name, failed=" / ".join(tail) or f"exit {done.returncode}")
    data = json.loads(payload)
    report = Report(
        rows=[Row(**row) for row in data["rows"]],
        goals=[Goal(**{**goal, "subjects": tuple(goal["subjects"])}) for goal in data["goals"]],
    )
    return Outcome(benchmark.name, report, seconds=seconds)


def child(name: str, quick: bool) -> None:
    """Run one module's ``run`` here and print its report as JSON after a marker."""
    module = importlib.import_module(name)
    report: Report = module.run(quick)
    payload = {
        "rows": [dataclasses.asdict(row) for row in report.rows],
        "goals": [dataclasses.asdict(goal) for goal in report.goals],
    }
    sys.stdout.write("\n" + MARKER + "\n" + json.dumps(payload) + "\n")


# -- the storm and the outage ---------------------------------------------------------


@dataclasses.dataclass
class Herd:
    """The results of ``herd.py``'s two scenarios."""

    storm: list[herd.StormRow]
    outage: list[herd.OutageResult]
    trials: int
    sizes: tuple[int, ...]
    config: herd.Outage
    seconds: float


def run_herd(quick: bool) -> Herd:
    """Both scenarios: 20 trials, or 10 and fewer herd sizes for a quick run."""
    import logging

    logging.disable(logging.CRITICAL)  # the outage's breakers log every opening
    try:
        start = time.perf_counter()
        sizes = herd.QUICK_SIZES if quick else herd.FULL_SIZES
        trials = 10 if quick else 20
        config = herd.Outage()
        storm = herd.storm_table(sizes, trials)
        outage = herd.outage_table(config, trials)
        return Herd(storm, outage, trials, sizes, config, time.perf_counter() - start)
    finally:
        logging.disable(logging.NOTSET)


def storm_row(result: Herd, strategy: herd.Strategy, clients: int) -> herd.StormRow:
    """The row of *strategy* at *clients*."""
    return next(r for r in result.storm if r.strategy == strategy.name and r.clients == clients)


def outage_row(result: Herd, protection: str, scope: str, rate: float) -> herd.OutageResult:
    """The outage row of one protection, scope and failure rate."""
    return next(
        r
        for r in result.outage
        if r.protection == protection and r.scope == scope and r.failure_rate == rate
    )


def herd_goals(result: Herd) -> list[Goal]:
    """The two goals that the simulations decide."""
    full = storm_row(result, herd.FULL, STORM_N)
    expo = storm_row(result, herd.EXPONENTIAL, STORM_N)
    storm_ratio = full.calls / expo.calls
    shared = outage_row(result, "RetryBudget", "shared", 1.0).amplification_during
    per_client = outage_row(result, "RetryBudget", "per client", 1.0).amplification_during
    worst = max(shared, per_client)
    return [
        Goal(
            "retry storm (published model, N=100)",
            "full jitter <= 0.5x the calls of plain exponential",
            figure=f"{storm_ratio:.2f}x ({full.calls:.0f} vs {expo.calls:.0f} calls)",
            met=storm_ratio <= 0.5,
        ),
        Goal(
            "outage with a `RetryBudget`",
            "amplification <= 1.1x",
            figure=f"{shared:.2f}x shared, {per_client:.2f}x per client (server down)",
            met=round(worst, 2) <= 1.1,
        ),
    ]


# -- the page ---------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """The installed version of resilient-kit and of every peer."""
    found: dict[str, str] = {}
    for name in ("resilient-kit", *PEERS, "matplotlib"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def cpu() -> str:
    """The processor's model name, as the kernel reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown processor"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "ms":
        return f"{value:.1f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def judge_goals(
    outcomes: Sequence[Outcome], herd_result: Herd | None
) -> list[tuple[str, str, str, bool | None, str]]:
    """(path, goal, figure, met, why missed) of every goal of the design table, then the rest."""
    rows = [row for o in outcomes if o.report for row in o.report.rows]
    goals = [goal for o in outcomes if o.report for goal in o.report.goals]
    if herd_result is not None:
        goals += herd_goals(herd_result)
    by_path = {goal.path: goal for goal in goals}
    judged: list[tuple[str, str, str, bool | None, str]] = []
    for path, target in DESIGN_GOALS:
        goal = by_path.pop(path, None)
        if goal is None:
            judged.append((path, target, _why_unmeasured(path, outcomes), None, ""))
            continue
        figure, met = goal.judge(rows)
        judged.append((path, target, figure, met, goal.when_missed))
    for goal in by_path.values():
        figure, met = goal.judge(rows)
        judged.append((goal.path, goal.target, figure, met, goal.when_missed))
    return judged


def _why_unmeasured(path: str, outcomes: Sequence[Outcome]) -> str:
    if "Redis" in path:
        redis = next((o for o in outcomes if o.name == "redis_overhead"), None)
        if redis is None:
            return "not measured: benchmarks/redis_overhead.py does not exist yet"
        if redis.skipped:
            return f"not measured: {redis.skipped}"
        if redis.failed:
            return f"not measured: redis_overhead failed ({redis.failed})"
    return "not measured"


def amplification(value: float) -> str:
    """A ratio with two decimals, three below 0.1 (a breaker's few probes are not zero)."""
    return f"{value:.2f}" if value >= 0.1 or value == 0 else f"{value:.3f}"


def verdict(met: bool | None) -> str:
    """The word of the goals table."""
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def write_page(
    path: Path,
    outcomes: Sequence[Outcome],
    herd_result: Herd | None,
    quick: bool,
    seconds: float,
    images: dict[str, str],
) -> None:
    """Write the whole report page."""
    lines: list[str] = []
    add = lines.append
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    add("# Performance")
    add("")
    add(
        "What `resilient` costs on the happy path, against a hand-written floor and the peer "
        "libraries measured in the same run, and how its retry strategies behave when many "
        "clients fail at once. This page is written by `benchmarks/run_all.py`; do not edit "
        "it by hand: run it again (see `benchmarks/README.md` in the repository)."
    )
    add("")
    add(f"- Generated {stamp}{' by a `--quick` run' if quick else ''}, in {seconds:.0f} s.")
    add(
        f"- Python {platform.python_version()} ({sys.implementation.name}), "
        f"{platform.system()} {platform.machine()}, {cpu()}, {os.cpu_count()} logical CPUs."
    )
    add("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".")
    add(
        "- Ratios compare figures of one run on one machine; expect a few tens of percent "
        "between runs on a shared virtual machine, more when it is busy."
    )
    add("")
    add("## Goals")
    add("")
    add("The performance table of the design document, each goal judged on this run.")
    add("")
    add("| path | goal | this run | verdict |")
    add("| --- | --- | --- | --- |")
    judged = judge_goals(outcomes, herd_result)
    for goal_path, target, figure, met, _ in judged:
        add(f"| {goal_path} | {target} | {figure} | {verdict(met)} |")
    add("")
    missed = [(goal_path, why) for goal_path, _, _, met, why in judged if met is False]
    if missed:
        add("### What stands in the way of the missed goals")
        add("")
        for goal_path, why in missed:
            add(f"- **{goal_path}**: {why or 'not explained yet: profile it.'}")
        add("")
    if herd_result is not None:
        _storm_section(add, herd_result, images)
        _outage_section(add, herd_result, images)
    _overhead_section(add, outcomes, images)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _storm_section(add: Any, result: Herd, images: dict[str, str]) -> None:
    add("## Retry storm: the published model")
    add("")
    add(
        "The model of Marc Brooker's *Exponential Backoff And Jitter* (AWS Architecture Blog, "
        "2015): N clients race to update one row under optimistic concurrency; a write "
        "succeeds only if the version its client read is still current when the write "
        "reaches the server; every network hop takes |Normal(10 ms, 2 ms)|; a client that "
        "loses waits its next delay, drawn from `resilient.backoff.delays(0.005, 2.0, "
        "jitter)`, and tries again until it succeeds. Calls are the writes the server "
        f"receives; completion is when the last client is done; each figure is the mean of "
        f"{result.trials} trials. The model is written out in the docstring of "
        "`benchmarks/herd.py`."
    )
    add("")
    if "herd" in images:
        add(f"![Calls and completion time against the number of clients]({images['herd']})")
        add("")
    shown = [n for n in (STORM_N, max(result.sizes)) if n in result.sizes]
    header = "| strategy |"
    rule = "| --- |"
    for n in dict.fromkeys(shown):
        header += f" calls, N={n} | x full | done (s), N={n} | x full |"
        rule += " ---: | ---: | ---: | ---: |"
    add(header)
    add(rule)
    for strategy in herd.STRATEGIES:
        line = f"| {strategy.name} |"
        for n in dict.fromkeys(shown):
            row = storm_row(result, strategy, n)
            full = storm_row(result, herd.FULL, n)
            line += (
                f" {row.calls:,.0f} | {row.calls / full.calls:.2f} |"
                f" {row.completion:.2f} | {row.completion / full.completion:.2f} |"
            )
        add(line)
    add("")
    _default_jitter(add, result)


def _default_jitter(add: Any, result: Herd) -> None:
    n = STORM_N
    default = storm_row(result, herd.PROPORTIONAL, n)
    full = storm_row(result, herd.FULL, n)
    expo = storm_row(result, herd.EXPONENTIAL, n)
    none = storm_row(result, herd.NO_BACKOFF, n)
    beaters = [
        (s, storm_row(result, s, n))
        for s in herd.STRATEGIES
        if s is not herd.PROPORTIONAL
        and (
            storm_row(result, s, n).calls < default.calls
            or storm_row(result, s, n).completion < default.completion
        )
    ]
    add("### The default jitter")
    add("")
    add(
        f"At N = {n}, plain exponential backoff makes {expo.calls / full.calls:.2f}x the calls "
        f"of full jitter and no backoff {none.calls / full.calls:.2f}x: synchronised clients "
        "collide again on every round. The default, `jitter=True` (proportional: uniform in "
        f"[0.75, 1.25] x the nominal delay), makes {default.calls:,.0f} calls, "
        f"{default.calls / full.calls:.2f}x full jitter's {full.calls:,.0f}, and its last client "
        f"is done after {default.completion:.2f} s, {default.completion / full.completion:.2f}x "
        f"full jitter's {full.completion:.2f} s."
    )
    add("")
    if beaters:
        add(
            f"**Where the default loses.** At N = {n}, against the default's "
            f"{default.calls:,.0f} calls and {default.completion:.2f} s:"
        )
        add("")
        for strategy, row in beaters:
            wins = []
            if row.calls < default.calls:
                wins.append(f"fewer calls, {row.calls:,.0f} ({row.calls / default.calls:.2f}x)")
            if row.completion < default.completion:
                wins.append(
                    f"an earlier finish, {row.completion:.2f} s "
                    f"({row.completion / default.completion:.2f}x)"
                )
            add(f"- {strategy.name}: " + " and ".join(wins) + ".")
        add("")
        add(
            "A proportional wait is never shorter than 0.75 x the nominal delay, so a herd "
            "that has already spread out still sits through the long doubled delays, while "
            "full and decorrelated jitter draw many short waits and finish sooner (no backoff "
            "finishes soon too, at the price of the most calls)."
        )
        add("")
    add(
        "**Why it stays the default.** The design document fixes `jitter=True` as uniform "
        "[0.75, 1.25] x nominal, the original design's jitter. A single caller, the common "
        "case, gets the wait it configured within 25 %, never almost none (full jitter draws "
        "from [0, nominal], so a retry can follow the failure at once, and decorrelated "
        "jitter's waits wander instead of growing), and `base_delay` keeps meaning \"wait "
        'about this long" for a server that asked for a pause. Against a herd, its spread '
        "is enough to remove the synchronised collisions that make plain exponential "
        "backoff expensive (the work column above). When many clients contend for one "
        "resource and finishing soon matters more than a predictable wait, pass "
        "`jitter=FullJitter()` or `jitter=DecorrelatedJitter()`."
    )
    add("")


def _outage_section(add: Any, result: Herd, images: dict[str, str]) -> None:
    config = result.config
    add("## Outage: retries, a retry budget and a circuit breaker")
    add("")
    add(
        f"{config.clients} clients each need one call per tick (a virtual second); the "
        f"server fails every call from tick {config.down_from} to tick {config.down_until}, "
        f"then recovers ({config.ticks} ticks in all). Each call is retried as `@retry` does "
        f"(`max_retries={config.max_retries}`, the default jitter), through the library's own "
        "`RetryBudget()` (10 tokens, 0.1 refunded per success) and `CircuitBreaker("
        f"failure_threshold={config.failure_threshold}, recovery_timeout="
        f"{config.recovery_timeout:g})` on a `ManualClock`. *Shared*: one budget and one "
        "breaker for all clients (callers in one service); *per client*: one each (separate "
        "processes). Amplification is calls that reached the server over calls needed. "
        f"Mean of {result.trials} runs; details in "
        "`benchmarks/herd.py`."
    )
    add("")
    if "outage" in images:
        add(f"![Calls per tick through the outage]({images['outage']})")
        add("")
    for rate in sorted({r.failure_rate for r in result.outage}, reverse=True):
        what = "down" if rate >= 1.0 else f"failing {rate:.0%} of calls (a brownout)"
        add(f"Server {what}:")
        add("")
        add(
            "| protection | scope | calls during | x needed | calls after | x needed "
            "| calls failed after recovery |"
        )
        add("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for row in (r for r in result.outage if r.failure_rate == rate):
            add(
                f"| {row.protection} | {row.scope} | {row.sent_during:,} | "
                f"{amplification(row.amplification_during)} | {row.sent_after:,} | "
                f"{amplification(row.amplification_after)} | {row.failed_after:,} |"
            )
        add("")
    plain = outage_row(result, "plain retries", "shared", 1.0).amplification_during
    brown = outage_row(result, "plain retries", "shared", 0.9).amplification_during
    budget_rows = [r for r in result.outage if r.protection == "RetryBudget"]
    worst = max(budget_rows, key=lambda r: r.amplification_during)
    add(
        '**The SRE book\'s claim** (*Site Reliability Engineering*, "Handling Overload": a '
        "per-client retry budget of 10 % keeps the extra load near 1.1x, where per-request "
        "retries alone multiply it up to the number of attempts): plain retries here send "
        f"{plain:.2f}x the calls needed while the server is down (max_retries + 1 = "
        f"{config.max_retries + 1}) and {brown:.2f}x in the brownout; with `RetryBudget` the "
        f"worst case above is {worst.amplification_during:.2f}x ({worst.scope}, "
        f"{'server down' if worst.failure_rate >= 1.0 else 'brownout'}). A per-client budget "
        "spends its initial tokens on the first failures (3 retries) and then allows none "
        "while nothing succeeds, so its figure falls as the outage lasts longer; a shared "
        "budget spends those tokens once for all clients. The breaker sends even less while "
        "the server is down, and pays after it: calls rejected until its recovery timeout "
        "has passed (the last column)."
    )
    add("")


def _overhead_section(add: Any, outcomes: Sequence[Outcome], images: dict[str, str]) -> None:
    add("## Overhead on the happy path")
    add("")
    add(
        "Nanoseconds per call, the best of 100 interleaved rounds of about 2 ms, each call "
        "a `timeit` statement with the empty loop's cost subtracted; import: milliseconds of "
        "CPU time in a fresh interpreter, best of 20. *x floor* divides by the group's "
        "floor (for threads, by the same library on one thread; a variant named "
        "*..., x* another row, by that row: `@retry`'s figure against a try/except "
        "written for the function's own signature); *x resilient* divides a "
        "peer's figure by ours: how many times more it costs. Read the ratios within a "
        "table: absolute figures follow the machine's load, and the same floor can read "
        "quite differently in two tables measured a minute apart. The threads table is "
        "wall time (what contention costs) and the most sensitive to other work on the "
        "machine: a ratio below 1 there is noise, not a speed-up."
    )
    add("")
    if "overhead" in images:
        add(f"![Overhead ratios against the floor]({images['overhead']})")
        add("")
    for outcome in outcomes:
        add(f"### `{outcome.name}`")
        add("")
        if outcome.report is None:
            add(f"Not run: {outcome.skipped or outcome.failed}.")
            add("")
            continue
        if outcome.name in images:
            add(f"![{outcome.name}]({images[outcome.name]})")
            add("")
        rows = outcome.report.rows
        for group in dict.fromkeys(row.group for row in rows):
            members = [row for row in rows if row.group == group]
            ours = next((row for row in members if row.kind == OURS), None)
            unit = members[0].unit
            add(f"**{group}**")
            add("")
            add(f"| variant | {unit} | x floor | x resilient |")
            add("| --- | ---: | ---: | ---: |")
            for row in members:
                base = ratio_base(row, rows)
                ratio = (
                    f"{row.value / base.value:.2f}"
                    if row.value is not None and base is not None and base.value
                    else ""
                )
                versus = ""
                if row.kind == PEER and ours and ours.value and row.value:
                    versus = f"{row.value / ours.value:.2f}"
                name = f"**{row.name}**" if row.kind == OURS else row.name
                note = f" ({row.note})" if row.note else ""
                add(f"| {name}{note} | {_fmt(row.value, unit)} | {ratio} | {versus} |")
            add("")


# -- plots --------------------------------------------------------------------------------

STRATEGY_STYLE = {
    herd.NO_BACKOFF.name: ("#7f7f7f", "x", ":"),
    herd.EXPONENTIAL.name: ("#d62728", "s", "-"),
    herd.PROPORTIONAL.name: ("#1f77b4", "o", "-"),
    herd.FULL.name: ("#2ca02c", "^", "-"),
    herd.EQUAL.name: ("#ff7f0e", "v", "--"),
    herd.DECORRELATED.name: ("#9467bd", "D", "--"),
}
BAR_COLORS = {OURS: "#1f77b4", REFERENCE: "#aec7e8", PEER: "#ff7f0e"}
PROTECTION_STYLE = {
    "plain retries": ("#d62728", "-", 2.0),
    "RetryBudget": ("#1f77b4", "-", 2.0),
    "CircuitBreaker": ("#2ca02c", "-", 3.5),
    "budget + breaker": ("#ff7f0e", "--", 1.5),
}


def plot_herd(result: Herd, path: Path) -> None:
    """Calls and completion time against N, one line per strategy."""
    import matplotlib.pyplot as plt

    fig, (calls_ax, time_ax) = plt.subplots(1, 2, figsize=(13, 5.2))
    for strategy in herd.STRATEGIES:
        color, marker, style = STRATEGY_STYLE[strategy.name]
        rows = sorted(
            (r for r in result.storm if r.strategy == strategy.name), key=lambda r: r.clients
        )
        x = [r.clients for r in rows]
        kwargs = {"color": color, "marker": marker, "linestyle": style, "label": strategy.name}
        calls_ax.plot(x, [r.calls for r in rows], **kwargs)
        time_ax.plot(x, [r.completion for r in rows], **kwargs)
    calls_ax.set_title("Work: writes the server receives")
    calls_ax.set_ylabel("calls (mean)")
    time_ax.set_title("Completion: when the last client is done")
    time_ax.set_ylabel("seconds (mean, log scale)")
    time_ax.set_yscale("log")
    for ax in (calls_ax, time_ax):
        ax.set_xlabel("clients (N)")
        ax.grid(True, which="major", alpha=0.3)
    calls_ax.legend(title="delays(0.005, 2.0, jitter)", fontsize=9)
    fig.suptitle(f"Retry storm, published OCC model (mean of {result.trials} trials)", fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_outage(result: Herd, path: Path) -> None:
    """Calls per tick through the outage, one panel per scope."""
    import matplotlib.pyplot as plt

    config = result.config
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    for ax, scope in zip(axes, herd.SCOPES, strict=True):
        ax.axvspan(config.down_from, config.down_until, color="#000000", alpha=0.08)
        ax.axhline(config.clients, color="#000000", linestyle=":", linewidth=1)
        for protection in herd.PROTECTIONS:
            row = outage_row(result, protection.name, scope, 1.0)
            color, style, width = PROTECTION_STYLE[protection.name]
            ax.step(
                range(config.ticks),
                row.per_tick,
                where="post",
                color=color,
                linestyle=style,
                linewidth=width,
                label=f"{protection.name} ({amplification(row.amplification_during)}x during)",
            )
        ax.set_title(
            f"{scope}: one budget / breaker " + ("for all" if scope == "shared" else "each")
        )
        ax.set_xlabel("tick (virtual seconds)")
        ax.text(
            (config.down_from + config.down_until) / 2,
            config.clients * (config.max_retries + 1) * 1.04,
            "server down",
            ha="center",
            fontsize=10,
        )
        ax.text(config.ticks - 1, config.clients * 1.04, "needed", ha="right", fontsize=9)
        ax.set_ylim(0, config.clients * (config.max_retries + 1) * 1.15)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9, loc="center right")
    axes[0].set_ylabel("calls reaching the server per tick")
    fig.suptitle(
        f"Outage: {config.clients} clients, one call each per tick, "
        f"max_retries={config.max_retries} (mean of {result.trials} runs)",
        fontsize=13,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_overhead(outcomes: Sequence[Outcome], path: Path) -> bool:
    """One small bar chart per group: each variant's ratio to the floor, log scale."""
    import matplotlib.pyplot as plt
    from matplotlib import lines, patches, ticker

    rows = [row for o in outcomes if o.report for row in o.report.rows]
    goals = [goal for o in outcomes if o.report for goal in o.report.goals]
    limits = {goal.group: goal.limit for goal in goals if goal.group and goal.limit < 1e9}
    panels: list[tuple[str, list[tuple[str, float, str]]]] = []
    for group in dict.fromkeys(row.group for row in rows):
        bars: list[tuple[str, float, str]] = []
        for row in rows:
            if row.group != group or row.value is None or row.kind == FLOOR:
                continue
            base = ratio_base(row, rows)
            if base is not None and base.value:
                bars.append((row.name, row.value / base.value, row.kind))
        if bars:
            panels.append((group, bars))
    if not panels:
        return False
    columns = 2
    plot_rows = (len(panels) + columns - 1) // columns
    heights = [max(1.6, 0.42 * len(bars) + 1.0) for _, bars in panels]
    row_heights = [max(heights[i : i + columns]) for i in range(0, len(panels), columns)]
    fig, axes = plt.subplots(
        plot_rows,
        columns,
        figsize=(15, sum(row_heights) + 0.75),
        gridspec_kw={"height_ratios": row_heights},
        squeeze=False,
    )
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (group, bars) in zip(axes.flat, panels, strict=False):
        names = [name for name, _, _ in bars][::-1]
        values = [value for _, value, _ in bars][::-1]
        colors = [BAR_COLORS.get(kind, BAR_COLORS[PEER]) for _, _, kind in bars][::-1]
        ax.barh(names, values, color=colors)
        ax.set_xscale("log")
        ax.axvline(1.0, color="#000000", linewidth=1)
        low = min(0.5, *values) * 0.6
        if group in limits:
            ax.axvline(limits[group], color="#d62728", linestyle="--", linewidth=1.5)
            low = min(low, limits[group] * 0.6)
        for y, value in enumerate(values):
            ax.text(value * 1.08, y, f"{value:.2f}x", va="center", fontsize=8)
        ax.set_xlim(low, max(max(values) * 3, 4))
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(group, fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(True, axis="x", which="major", alpha=0.3)
    handles = [
        patches.Patch(color=BAR_COLORS[OURS], label="resilient"),
        patches.Patch(color=BAR_COLORS[REFERENCE], label="reference (ours or hand-written)"),
        patches.Patch(color=BAR_COLORS[PEER], label="peer library"),
        lines.Line2D([], [], color="#000000", label="the floor (1x)"),
        lines.Line2D([], [], color="#d62728", linestyle="--", label="the goal"),
    ]
    height = fig.get_figheight()
    fig.suptitle(
        "Cost per call as a ratio to the floor (log scale)", fontsize=13, y=1 - 0.1 / height
    )
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.4 / height),
        ncol=5,
        fontsize=10,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / height))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description="Run every benchmark; write the report.")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and herd sizes")
    parser.add_argument("--only", default="", help="comma-separated module names to run")
    parser.add_argument("--no-herd", action="store_true", help="skip the storm and the outage")
    parser.add_argument(
        "--output", default=str(ROOT / "docs" / "performance.md"), help="the page to write"
    )
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run everything, print the goals, write the page and the plots."""
    args = parse_args(argv)
    if args.child:
        child(args.child, args.quick)
        return
    import matplotlib

    matplotlib.use("Agg")
    start = time.perf_counter()
    print(f"Python {platform.python_version()} on {cpu()}")
    only = {name for name in args.only.split(",") if name}
    benchmarks = [b for b in discover() if not only or b.name in only]
    outcomes: list[Outcome] = []
    for benchmark in benchmarks:
        print(f"running {benchmark.name} ...", flush=True)
        outcome = run_benchmark(benchmark, args.quick)
        state = outcome.skipped or outcome.failed or f"{outcome.seconds:.0f} s"
        print(f"  {benchmark.name}: {state}", flush=True)
        outcomes.append(outcome)
    herd_result = None
    if not args.no_herd:
        print("running herd (storm and outage) ...", flush=True)
        herd_result = run_herd(args.quick)
        print(f"  herd: {herd_result.seconds:.0f} s", flush=True)

    output = Path(args.output).resolve()
    images_dir = output.parent / "img"
    images_dir.mkdir(parents=True, exist_ok=True)
    images: dict[str, str] = {}
    if herd_result is not None:
        plot_herd(herd_result, images_dir / "herd.png")
        plot_outage(herd_result, images_dir / "outage.png")
        images["herd"] = "img/herd.png"
        images["outage"] = "img/outage.png"
    if plot_overhead(outcomes, images_dir / "overhead.png"):
        images["overhead"] = "img/overhead.png"
    if any(o.name == "pacing" and o.report for o in outcomes):
        import pacing  # the simulations are deterministic: run again here for the plot

        pacing.plot(str(images_dir / "pacing.png"))
        images["pacing"] = "img/pacing.png"
    seconds = time.perf_counter() - start
    write_page(output, outcomes, herd_result, args.quick, seconds, images)
    print("\ngoals")
    for path, target, figure, met, _ in judge_goals(outcomes, herd_result):
        print(f"  {verdict(met).strip('*'):13} {path}: {figure} (goal {target})")
    print(f"\nwrote {output} in {seconds:.0f} s")


if __name__ == "__main__":
    main()
