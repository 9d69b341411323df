"""Real processes (``spawn``), one Redis: one breaker and one budget for all of them.

Four worker processes (spawned once for this module, reused by its tests)
each build their own store, breaker or budget on the session's server, meet
at barriers kept in Redis, and return what they saw. The workers are
module-level functions so a spawned process can import them.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from resilient import CircuitBreaker, CircuitOpenError, FailureRateWindow
from resilient.redis import RedisRetryBudget, RedisStore
from resilient.redis import connect as _connect
from resilient.testing import ManualClock

WORKERS = 4
CALLS_PER_WORKER = 2000
TOTAL_CALLS = WORKERS * CALLS_PER_WORKER

pytestmark = pytest.mark.timeout(300)  # as the suite: a hang fails, a busy machine does not


class Down(ConnectionError):
    """The dependency is down."""


def _raise_down() -> None:
    raise Down("connection refused")


def connect(url: str) -> Any:
    """A worker's client: a 5 s socket timeout, not the library's 0.25 s, which four busy
    processes on two shared cores can outlast (and then count in a local fallback)."""
    return _connect(url, socket_timeout=5.0)


def barrier(client: Any, name: str, parties: int = WORKERS) -> None:
    """Wait until *parties* processes (workers, or workers and the test) reached *name*."""
    client.incr(f"barrier:{name}")
    deadline = time.monotonic() + 60.0
    while int(client.get(f"barrier:{name}")) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"barrier {name!r}: not every process arrived")
        time.sleep(0.002)


_runs = itertools.count()


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    """Four spawned processes, started once: a barrier in each task keeps one task per process."""
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn")) as workers:
        yield workers


def run_in_processes(
    pool: ProcessPoolExecutor,
    redis_client: Any,
    worker: Callable[..., Any],
    during: Callable[[str], None] | None = None,
) -> list[Any]:
    """Run ``worker(n, url, run)`` in the 4 processes at once; return what each returned.

    *during(run)* runs in the test process while the workers run (for barriers
    that include it).
    """
    options = redis_client.connection_pool.connection_kwargs
    url = f"redis://{options['host']}:{options['port']}/{options.get('db', 0)}"
    run = f"run-{next(_runs)}"
    futures = [pool.submit(worker, n, url, run) for n in range(WORKERS)]
    if during is not None:
        during(run)
    return [future.result(timeout=240) for future in futures]


# -- failures anywhere open it everywhere ------------------------------------------------


def _one_failure_each(n: int, url: str, run: str) -> tuple[str, list[int], float]:
    client = connect(url)
    breaker = CircuitBreaker(WORKERS, 60.0, name=run, store=RedisStore(client, max_staleness=0.0))
    barrier(client, f"{run}:start")
    with contextlib.suppress(Down):
        breaker.call(_raise_down)
    barrier(client, f"{run}:failed")  # every process has recorded its one failure
    ran: list[int] = []
    try:
        breaker.call(lambda: ran.append(n))
    except CircuitOpenError as error:
        return "rejected", ran, error.remaining
    finally:
        client.close()
    return "admitted", ran, 0.0


def test_one_failure_in_each_of_4_processes_opens_the_circuit_for_all(
    pool: ProcessPoolExecutor, redis_client: Any
) -> None:
    """Threshold 4, one failure per process: every process is then rejected without calling."""
    reports = run_in_processes(pool, redis_client, _one_failure_each)
    assert [r[:2] for r in reports] == [("rejected", [])] * WORKERS
    assert all(50.0 < r[2] <= 60.0 for r in reports)


# -- exactly half_open_max_calls trials across processes --------------------------------


def _trial_breaker(name: str, store: RedisStore) -> CircuitBreaker:
    return CircuitBreaker(
        1, 0.3, name=name, half_open_max_calls=2, success_threshold=2, store=store
    )


def _race_for_trials(n: int, url: str, run: str) -> tuple[int, str]:
    client = connect(url)
    breaker = _trial_breaker(run, RedisStore(client))
    with contextlib.ExitStack() as held:
        barrier(client, f"{run}:open-period-over", WORKERS + 1)
        admitted = 0
        for _ in range(5):
            try:
                held.enter_context(breaker)
                admitted += 1
            except CircuitOpenError:
                pass
        barrier(client, f"{run}:everyone-tried")  # while the admitted trials still run
    # leaving the stack ended the trials, successfully
    barrier(client, f"{run}:trials-ended")
    state = breaker.state.value
    client.close()
    return admitted, state


def test_after_the_open_period_exactly_two_trials_run_across_4_processes(
    pool: ProcessPoolExecutor, redis_client: Any
) -> None:
    """4 processes x 5 attempts while the trials run: 2 admitted in all; they close it."""

    def open_then_wait(run: str) -> None:
        _trial_breaker(run, RedisStore(redis_client)).trip()
        time.sleep(0.35)  # Redis time: the open period is over
        barrier(redis_client, f"{run}:open-period-over", WORKERS + 1)

    reports = run_in_processes(pool, redis_client, _race_for_trials, during=open_then_wait)
    assert sum(admitted for admitted, _ in reports) == 2
    assert {state for _, state in reports} == {"closed"}


# -- no count lost ------------------------------------------------------------------------


def _counting_breaker(name: str, store: RedisStore, clock: ManualClock) -> CircuitBreaker:
    # Opens only once the window is full and every call failed or was slow: never here.
    window = FailureRateWindow(1.0, calls=TOTAL_CALLS, minimum_calls=TOTAL_CALLS)
    return CircuitBreaker(
        name=name, window=window, slow_call_duration=1.0, clock=clock, store=store
    )


def _mixed_calls(n: int, url: str, run: str) -> tuple[int, int]:
    client = connect(url)
    clock = ManualClock()
    breaker = _counting_breaker(run, RedisStore(client), clock)
    failures = slow = 0

    def call(k: int) -> str:
        if k % 4 == 1:
            clock.advance(2.0)  # a slow call
        if (k + n) % 3 == 0:
            raise Down("connection refused")
        return "ok"

    barrier(client, f"{run}:start")
    for k in range(CALLS_PER_WORKER):
        slow += k % 4 == 1
        try:
            breaker.call(call, k)
        except Down:
            failures += 1
    client.close()
    return failures, slow


def test_4_processes_x_2000_mixed_calls_lose_no_count(
    pool: ProcessPoolExecutor, redis_client: Any
) -> None:
    """The shared window's totals are the sums of what the processes did."""
    reports = run_in_processes(pool, redis_client, _mixed_calls)
    breaker = _counting_breaker("run-x", RedisStore(redis_client), ManualClock())
    [run] = {key.decode().split("}")[0][len("{resilient:") :] for key in redis_client.keys("{*")}
    stored = breaker._store.snapshot(run, breaker._policy, 0.0)
    assert stored.window_calls == TOTAL_CALLS
    assert stored.window_failures == sum(failures for failures, _ in reports)
    assert stored.window_slow == sum(slow for _, slow in reports)
    assert stored.state == "closed"


# -- one budget -------------------------------------------------------------------------------


def _spend(n: int, url: str, run: str) -> int:
    client = connect(url)
    budget = RedisRetryBudget(client, run, max_tokens=10, token_ratio=0.1)
    barrier(client, f"{run}:start")
    allowed = sum(budget.record_failure() for _ in range(10))
    client.close()
    return allowed


def test_4_processes_spending_one_budget_never_exceed_it(
    pool: ProcessPoolExecutor, redis_client: Any
) -> None:
    """40 failures against 10 tokens: exactly 4 retries allowed in all, the bucket empty."""
    assert sum(run_in_processes(pool, redis_client, _spend)) == 4
    [key] = redis_client.keys("{*")
    assert float(redis_client.get(key)) == 0.0
