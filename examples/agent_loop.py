"""The agent-loop demo: ten tool calls against a server that fails on purpose.

Run: python examples/agent_loop.py   (needs the extra: pip install -e '.[requests]')

With ``--skip-waits`` the retries' waits pass at once: each is computed,
logged and reported as usual, and not slept (``skipped_waits.SkippedWaits``, made the process's
default clock with ``resilient.testing.use_clock``, counts them instead). Only the real
timeouts are waited for: the run takes 3 s instead of 5 (the tests run it so).

An "agent" works through a list of tasks, each one a GET through one
resilient ``requests`` session. The embedded ``FlakyServer`` (127.0.0.1, a
free port) fails in scripted ways: 429 with ``Retry-After``, 503 then 200,
404, 401, a connection reset, a body dripped one byte at a time, and a dead
inventory service. Each task runs under ``execute_task_safely``, so a failure
becomes a ``TaskResult`` and the loop goes on; the inventory calls share one
``CircuitBreaker``; the library's own events are printed as JSON lines.

The demo ends with the summary, a table of the outcomes and what each
primitive did. It exits with 0 when every task ended as planned (the failures
are the point), 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from resilient import (
    CircuitBreaker,
    ErrorClass,
    RetryState,
    StructuredLogger,
    TaskResult,
    TaskSummary,
    execute_task_safely,
)
from resilient.http import create_resilient_session, get_json_or_none
from resilient.testing import use_clock

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flaky_server import FlakyServer, Step
from skipped_waits import SkippedWaits

# Short, real waits: the whole demo takes a few seconds.
MAX_RETRIES, BASE_DELAY, MAX_DELAY = 2, 0.1, 2.0
CONNECT_TIMEOUT, READ_TIMEOUT, TOTAL_TIMEOUT = 0.5, 0.5, 1.0
BREAKER_THRESHOLD, RECOVERY_TIMEOUT = 3, 30.0
DRIP_INTERVAL, DRIP_SIZE = 0.05, 100  # a 100-byte body over 5 s


@dataclass(frozen=True)
class Planned:
    """One task of the agent and how it is expected to end."""

    name: str
    path: str
    server_does: str
    success: bool
    error_class: ErrorClass | None
    attempts: int
    inventory: bool = False  # goes through the "inventory-api" breaker


PLAN: tuple[Planned, ...] = (
    Planned("fetch-catalog", "/ok", "200", True, None, 1),
    Planned("fetch-prices", "/rate-limited", "429 + Retry-After: 1, then 200", True, None, 2),
    Planned("fetch-reviews", "/flaky", "503, then 200", True, None, 2),
    Planned("fetch-discontinued", "/missing", "404", True, None, 1),
    Planned("fetch-admin-report", "/private", "401", False, ErrorClass.FATAL, 1),
    Planned("fetch-shipping", "/reset", "connection reset, then 200", True, None, 2),
    Planned("fetch-export", "/drip", "1 byte per 0.05 s for 5 s", False, ErrorClass.TIMEOUT, 3),
    Planned("stock-widget", "/dead", "503 forever", False, ErrorClass.DEGRADED, 3, True),
    Planned("stock-gadget", "/dead", "503 forever", False, ErrorClass.TIMEOUT, 0, True),
    Planned("stock-gizmo", "/dead", "503 forever", False, ErrorClass.TIMEOUT, 0, True),
)


class EventCounter(logging.Handler):
    """Counts the log records of each logger, to say what was logged."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[tuple[str, str], int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        # The library's lines carry a stable "event" field; the demo's own say it in words.
        key = (record.name, getattr(record, "event", record.getMessage()))
        self.counts[key] = self.counts.get(key, 0) + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ten tool calls against a flaky server.")
    parser.add_argument(
        "--skip-waits",
        action="store_true",
        help="compute, log and report the retries' waits, but do not sleep them",
    )
    options = parser.parse_args(argv)
    started = time.monotonic()
    StructuredLogger.configure(stream=sys.stdout, level=logging.INFO)  # JSON lines, in order
    logging.getLogger("resilient.task").setLevel(logging.DEBUG)  # also "task succeeded"
    counter = EventCounter()
    logging.getLogger().addHandler(counter)
    log = StructuredLogger("agent", service="agent-loop")

    session = create_resilient_session(
        connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT, total_timeout=TOTAL_TIMEOUT
    )
    breaker = CircuitBreaker(
        failure_threshold=BREAKER_THRESHOLD, recovery_timeout=RECOVERY_TIMEOUT, name="inventory-api"
    )
    # No Retry-After by default: only the 429 below asks for a wait.
    server = FlakyServer(retry_after=None, drip_interval=DRIP_INTERVAL, drip_size=DRIP_SIZE)
    with server, session:
        server.script("/rate-limited", [Step(status=429, retry_after="1")], then=200)
        print(
            f"FlakyServer on {server.url}. One session: connect_timeout={CONNECT_TIMEOUT}, "
            f"read_timeout={READ_TIMEOUT}, total_timeout={TOTAL_TIMEOUT}.\n"
            f"Every task: max_retries={MAX_RETRIES}, base_delay={BASE_DELAY}, "
            f"max_delay={MAX_DELAY}. The stock-* tasks share the breaker 'inventory-api' "
            f"(opens after {BREAKER_THRESHOLD} consecutive failures).\n"
            "For each task: what the server does, the JSON log lines written while it "
            "ran, and its outcome."
            + ("\n--skip-waits: the retries' waits are not slept." if options.skip_waits else "")
        )
        clock = use_clock(SkippedWaits()) if options.skip_waits else contextlib.nullcontext()
        with clock:
            results, retries = run_agent(server.url, session, breaker, log)
        dead_requests = server.requests("/dead")

    summary = TaskSummary(tuple(results), len(PLAN))
    print()
    print(summary)
    print()
    print_table(results)
    print()
    explain(results, retries, breaker, dead_requests, counter)
    problems = check(results, retries, breaker, dead_requests)
    print()
    for problem in problems:
        print(f"UNEXPECTED: {problem}")
    if not problems:
        print("Every task ended as planned: the failures above are the ones the server scripted.")
    print(f"demo took {time.monotonic() - started:.1f} s")
    return 1 if problems else 0


def run_agent(
    url: str, session: requests.Session, breaker: CircuitBreaker, log: StructuredLogger
) -> tuple[list[TaskResult[Any]], dict[str, list[RetryState]]]:
    """The agent loop: run every task, whatever happened to the previous ones."""
    results: list[TaskResult[Any]] = []
    retries: dict[str, list[RetryState]] = {}
    for number, task in enumerate(PLAN, 1):
        print(f"\n[{number}/{len(PLAN)}] {task.name}: GET {task.path} (server: {task.server_does})")
        log.info("calling tool", task=task.name, path=task.path)
        retries[task.name] = []
        result = execute_task_safely(
            task.name,
            get_json_or_none,
            session,
            url + task.path,
            circuit_breaker=breaker if task.inventory else None,
            on_retry=retries[task.name].append,
            max_retries=MAX_RETRIES,
            base_delay=BASE_DELAY,
            max_delay=MAX_DELAY,
        )
        results.append(result)
        print(f"    -> {outcome(result)}")
    return results, retries


def outcome(result: TaskResult[Any]) -> str:
    if result.success:
        found = "not found (None)" if result.result is None else f"got {result.result}"
        return f"ok after {_attempts(result.attempts)}: {found}"
    kind = result.error_class.name if result.error_class else "?"
    if result.rejected:
        return f"rejected after {_attempts(result.attempts)} ({kind}): {result.error}"
    return f"failed after {_attempts(result.attempts)}: {kind}: {result.error}"


def print_table(results: Sequence[TaskResult[Any]]) -> None:
    print(f"{'task':<20} {'endpoint':<14} {'outcome':<8} {'class':<9} {'attempts':>8} {'time':>7}")
    for task, result in zip(PLAN, results, strict=True):
        kind = "-" if result.error_class is None else result.error_class.name
        status = "ok" if result.success else "rejected" if result.rejected else "failed"
        print(
            f"{task.name:<20} {task.path:<14} {status:<8} "
            f"{kind:<9} {result.attempts:>8} {result.elapsed:>6.2f}s"
        )


def explain(
    results: Sequence[TaskResult[Any]],
    retries: dict[str, list[RetryState]],
    breaker: CircuitBreaker,
    dead_requests: int,
    counter: EventCounter,
) -> None:
    """Say what each primitive did, with the numbers of this run."""
    by_name = {r.task_name: r for r in results}
    rate_limited = retries["fetch-prices"][0]
    backoffs = [s.delay for name in ("fetch-reviews", "fetch-shipping") for s in retries[name]]
    export = by_name["fetch-export"]
    inventory = [r for task, r in zip(PLAN, results, strict=True) if task.inventory]
    rejected = sum(1 for r in inventory if r.rejected)
    events = ", ".join(
        f'{n} x "{message}" ({name})'
        for (name, message), n in sorted(counter.counts.items())
        if name.startswith("resilient.")
    )
    drip_seconds = DRIP_SIZE * DRIP_INTERVAL
    paragraphs = {
        "classification": (
            "every failure got one ErrorClass, and the rest followed from it. 429 and a "
            "connection reset are TRANSIENT, 503 is DEGRADED, the total-time cut is TIMEOUT: "
            "all three are retried. 401 is FATAL: fetch-admin-report failed after 1 attempt, "
            "unretried. A 404 is no failure for get_json_or_none: it returned None."
        ),
        "retry": (
            "fetch-reviews (503) and fetch-shipping (reset) failed once and succeeded on "
            f"attempt 2, after waits of {_seconds(backoffs)} (base_delay={BASE_DELAY} "
            "x 2**retry, +/-25 % jitter). fetch-export and stock-widget kept failing: "
            f"they gave up after max_retries={MAX_RETRIES} retries ({MAX_RETRIES + 1} attempts)."
        ),
        "Retry-After": (
            "fetch-prices got a 429 with 'Retry-After: 1': its retry's wait was "
            f"{rate_limited.delay:.2f} s, as the server asked, not its ~{BASE_DELAY} s backoff."
        ),
        "total_timeout": (
            f"fetch-export's server sent its {DRIP_SIZE}-byte body one byte every "
            f"{DRIP_INTERVAL} s. Each byte came well within read_timeout={READ_TIMEOUT} s, so "
            f"only total_timeout={TOTAL_TIMEOUT} stopped each attempt, at "
            f"~{TOTAL_TIMEOUT:g} s, with TotalTimeout (a requests.Timeout, so TIMEOUT): "
            f"{_attempts(export.attempts)} took {export.elapsed:.1f} s, not "
            f"{export.attempts * drip_seconds:.0f} s."
        ),
        "circuit breaker": (
            f"stock-widget failed {BREAKER_THRESHOLD} times (503): the last of these "
            "consecutive failures opened 'inventory-api', and that call still raised its "
            "own HTTPError. "
            f"The next {rejected} tasks were rejected at once with CircuitOpenError "
            "(rejected=True, 0 attempts, TIMEOUT: a rejection is classed as a timeout, the "
            "dependency being unavailable, and rejected=True tells it from a real one), "
            "without a request: the server received "
            f"{dead_requests} requests on /dead in all. The breaker is {breaker.state}; "
            f"after {RECOVERY_TIMEOUT:g} s it would let one trial call through."
        ),
        "logging": (
            "each JSON line above is one event the library logged through the stdlib "
            "logging module, rendered by JsonFormatter (StructuredLogger.configure): "
            f"{events}; plus the demo's own 'calling tool' lines, from a StructuredLogger "
            "with service=agent-loop."
        ),
    }
    print("What each primitive did:")
    for name, text in paragraphs.items():
        wrapped = textwrap.fill(
            text, 92, initial_indent=f"- {name}: ", subsequent_indent="  ", break_on_hyphens=False
        )
        print(wrapped)


def check(
    results: Sequence[TaskResult[Any]],
    retries: dict[str, list[RetryState]],
    breaker: CircuitBreaker,
    dead_requests: int,
) -> list[str]:
    """What did not go as planned (nothing, when the library works)."""
    problems = [
        f"{task.name}: expected success={task.success}, {task.error_class}, "
        f"{task.attempts} attempts; got success={r.success}, {r.error_class}, "
        f"{r.attempts} attempts ({r.error})"
        for task, r in zip(PLAN, results, strict=True)
        if (r.success, r.error_class, r.attempts) != (task.success, task.error_class, task.attempts)
    ]
    waits = [state.delay for state in retries["fetch-prices"]]
    if waits != [1.0]:
        problems.append(f"fetch-prices waited {waits} s, not the [1.0] s of its Retry-After")
    if dead_requests != BREAKER_THRESHOLD:
        problems.append(f"/dead received {dead_requests} requests, not {BREAKER_THRESHOLD}")
    if not breaker.is_open:
        problems.append(f"the breaker is {breaker.state}, not open")
    return problems


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def _seconds(delays: Sequence[float]) -> str:
    return " and ".join(f"{d:.2f} s" for d in delays)


if __name__ == "__main__":
    sys.exit(main())
