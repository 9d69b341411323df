"""Real processes, one Redis: one breaker and one budget for all of them.

Four fresh worker processes (started once, reused by the tests of this module and of
test_redis_pacing_processes: the ``spawn_pool`` of conftest.py)
each build their own store, breaker or budget on the session's server, meet
at barriers kept in Redis, and return what they saw. The workers are
module-level functions so a fresh process can import them.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from _redis_stores import Stores
from resilient import CircuitBreaker, CircuitOpenError, FailureRateWindow
from resilient.redis import RedisStore
from resilient.redis import connect as _connect
from resilient.testing import ManualClock

WORKERS = 4

pytestmark = pytest.mark.timeout(300)  # as the suite: a hang fails, a busy machine does not


class Down(ConnectionError):
    """The dependency is down."""


def _raise_down() -> None:
    raise Down("connection refused")


def connect(url: str) -> Any:
    """A worker's client: a 5 s socket timeout, not the library's 1 s, which four busy
    processes on two shared cores can outlast (and then count in a local fallback)."""
    return _connect(url, socket_timeout=5.0)


def barrier(client: Any, name: str, parties: int = WORKERS) -> None:
    """Wait until *parties* processes (workers, or workers and the test) reached *name*.

    Without polling: the last to arrive pushes a token per party, which each
    takes (BLPOP), so a process waiting for the others burns no CPU they need.
    """
    key = f"barrier:{name}"
    if client.incr(key) == parties:
        client.rpush(f"{key}:go", *["go"] * parties)
    deadline = time.monotonic() + 60.0
    while client.blpop([f"{key}:go"], timeout=1) is None:  # within the 5 s socket timeout
        if time.monotonic() > deadline:
            raise TimeoutError(f"barrier {name!r}: not every process arrived")


_runs = itertools.count()


@pytest.fixture
def pool(spawn_pool: ProcessPoolExecutor) -> ProcessPoolExecutor:
    """The WORKERS (4) processes of conftest.py, shared with the other module of
    processes: a barrier in each task keeps one task per process."""
    return spawn_pool


def run_in_processes(
    pool: ProcessPoolExecutor,
    redis_client: Any,
    worker: Callable[..., Any],
    during: Callable[[str], None] | None = None,
    kind: str = "sync",
) -> list[Any]:
    """Run ``worker(n, url, run, kind)`` in the 4 processes at once; return what each returned.

    *kind*: the kind of store the workers build (``RedisStore`` or ``AsyncRedisStore``).

    *during(run)* runs in the test process while the workers run (for barriers
    that include it).
    """
    options = redis_client.connection_pool.connection_kwargs
    url = f"redis://{options['host']}:{options['port']}/{options.get('db', 0)}"
    run = f"run-{next(_runs)}"
    futures = [pool.submit(worker, n, url, run, kind) for n in range(WORKERS)]
    if during is not None:
        during(run)
    return [future.result(timeout=240) for future in futures]


# -- failures anywhere open it everywhere ------------------------------------------------


Times = tuple[float, float, float, float]  # on this host's monotonic clock (see below)


def _one_failure_each(n: int, url: str, run: str, kind: str) -> tuple[str, list[int], float, Times]:
    with Stores(kind, url) as stores:
        return _one_failure(stores, n, url, run)


def _one_failure(stores: Stores, n: int, url: str, run: str) -> tuple[str, list[int], float, Times]:
    """The outcome of a call after one failure each, its ``remaining``, and when the failure
    and that call began and ended."""
    client = connect(url)
    breaker = CircuitBreaker(
        WORKERS, 60.0, name=run, store=stores(socket_timeout=5.0, max_staleness=0.0)
    )
    barrier(client, f"{run}:start")
    failing = time.monotonic()
    with contextlib.suppress(Down):
        breaker.call(_raise_down)
    failed = time.monotonic()
    barrier(client, f"{run}:failed")  # every process has recorded its one failure
    ran: list[int] = []
    asking = time.monotonic()
    try:
        breaker.call(lambda: ran.append(n))
    except CircuitOpenError as error:
        return "rejected", ran, error.remaining, (failing, failed, asking, time.monotonic())
    finally:
        client.close()
    return "admitted", ran, 0.0, (failing, failed, asking, time.monotonic())


def test_one_failure_in_each_of_4_processes_opens_the_circuit_for_all(
    pool: ProcessPoolExecutor, redis_client: Any, store_kind: str
) -> None:
    """Threshold 4, one failure per process: every process is then rejected without calling.

    Each rejection's ``remaining`` is the 60 s open period less the time from
    the opening (during one of the failures) to the rejection, on Redis's
    clock, which lies between the calls' bounds measured on this host's
    monotonic clock (it ticks with Redis's): however long the machine stalled.
    """
    reports = run_in_processes(pool, redis_client, _one_failure_each, kind=store_kind)
    assert [r[:2] for r in reports] == [("rejected", [])] * WORKERS
    first_failing = min(times[0] for *_, times in reports)
    last_failed = max(times[1] for *_, times in reports)
    for *_, remaining, (_, _, asking, asked) in reports:
        assert 60.0 - (asked - first_failing) - 1e-3 <= remaining, reports
        assert remaining <= 60.0 - (asking - last_failed) + 1e-3, reports


# -- exactly half_open_max_calls trials across processes --------------------------------


# The breakers' clocks, not Redis TIME (the claim is not about time): the test's breaker
# trips at 1000, the workers' read 1001, past the 0.3 s open period, without waiting for it.
TRIPPED_AT = 1000.0


def _trial_breaker(name: str, store: Any, now: float) -> CircuitBreaker:
    return CircuitBreaker(
        1,
        0.3,
        name=name,
        half_open_max_calls=2,
        success_threshold=2,
        store=store,
        clock=ManualClock(now),
    )


def _race_for_trials(n: int, url: str, run: str, kind: str) -> tuple[int, str]:
    with Stores(kind, url) as stores:
        return _race(stores, url, run)


def _race(stores: Stores, url: str, run: str) -> tuple[int, str]:
    client = connect(url)
    breaker = _trial_breaker(run, stores(socket_timeout=5.0, time_source="breaker"), TRIPPED_AT + 1)
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
    pool: ProcessPoolExecutor, redis_client: Any, store_kind: str
) -> None:
    """4 processes x 5 attempts while the trials run: 2 admitted in all; they close it."""

    def trip(run: str) -> None:
        _trial_breaker(run, RedisStore(redis_client, time_source="breaker"), TRIPPED_AT).trip()
        barrier(redis_client, f"{run}:open-period-over", WORKERS + 1)

    reports = run_in_processes(pool, redis_client, _race_for_trials, during=trip, kind=store_kind)
    assert sum(admitted for admitted, _ in reports) == 2
    assert {state for _, state in reports} == {"closed"}


# -- no count lost ------------------------------------------------------------------------

# Each process makes at least CALLS_PER_WORKER calls, and goes on until every
# other process has made OVERLAP: the runs overlap for certain (each process's
# first OVERLAP calls are made while every other is still calling), however
# late the machine starts one of them.
CALLS_PER_WORKER = 500
OVERLAP = 200
# A window bigger than every call of a run: it never drops one (nor opens).
WINDOW_CALLS = 100_000


def _counting_breaker(name: str, store: Any, clock: ManualClock) -> CircuitBreaker:
    # Opens only once the window is full and every call failed or was slow: never here.
    window = FailureRateWindow(1.0, calls=WINDOW_CALLS, minimum_calls=WINDOW_CALLS)
    return CircuitBreaker(
        name=name, window=window, slow_call_duration=1.0, clock=clock, store=store
    )


def _mixed_calls(n: int, url: str, run: str, kind: str) -> tuple[int, int, int]:
    with Stores(kind, url) as stores:
        return _mixed(stores, n, url, run)


def _mixed(stores: Stores, n: int, url: str, run: str) -> tuple[int, int, int]:
    client = connect(url)
    clock = ManualClock()
    breaker = _counting_breaker(run, stores(socket_timeout=5.0), clock)
    calls = failures = slow = 0

    def call(k: int) -> str:
        if k % 4 == 1:
            clock.advance(2.0)  # a slow call
        if (k + n) % 3 == 0:
            raise Down("connection refused")
        return "ok"

    def everyone_under_way() -> bool:
        return int(client.get(f"{run}:under-way") or 0) == WORKERS

    barrier(client, f"{run}:start")
    deadline = time.monotonic() + 120.0
    while calls < CALLS_PER_WORKER or calls % 50 or not everyone_under_way():
        if calls == OVERLAP:
            client.incr(f"{run}:under-way")
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {n}: the others never made {OVERLAP} calls")
        slow += calls % 4 == 1
        try:
            breaker.call(call, calls)
        except Down:
            failures += 1
        calls += 1
    client.close()
    return calls, failures, slow


def test_4_processes_x_500_mixed_calls_lose_no_count(
    pool: ProcessPoolExecutor, redis_client: Any, store_kind: str
) -> None:
    """The shared window's totals are the sums of what the processes did, calling at once.

    Lost counts come from processes updating one window at the same time;
    each process calls until every other one is under way (OVERLAP calls
    made), so every pair of processes calls at once for hundreds of calls,
    whatever the machine's load: more calls per process would repeat the
    same interleavings, not add a new kind.
    """
    reports = run_in_processes(pool, redis_client, _mixed_calls, kind=store_kind)
    breaker = _counting_breaker("run-x", RedisStore(redis_client), ManualClock())
    [run] = {key.decode().split("}")[0][len("{resilient:") :] for key in redis_client.keys("{*")}
    stored = breaker._store.snapshot(run, breaker._policy, 0.0)
    assert all(calls >= CALLS_PER_WORKER for calls, _, _ in reports)
    assert stored.window_calls == sum(calls for calls, _, _ in reports)
    assert stored.window_failures == sum(failures for _, failures, _ in reports)
    assert stored.window_slow == sum(slow for _, _, slow in reports)
    assert stored.state == "closed"


# -- one budget -------------------------------------------------------------------------------


def _spend(n: int, url: str, run: str, kind: str) -> int:
    client = connect(url)
    with Stores(kind, url) as stores:
        budget = stores.budget(run, socket_timeout=5.0, max_tokens=10, token_ratio=0.1)
        barrier(client, f"{run}:start")
        allowed = sum(budget.record_failure() for _ in range(10))
    client.close()
    return allowed


def test_4_processes_spending_one_budget_never_exceed_it(
    pool: ProcessPoolExecutor, redis_client: Any, store_kind: str
) -> None:
    """40 failures against 10 tokens: exactly 4 retries allowed in all, the bucket empty."""
    assert sum(run_in_processes(pool, redis_client, _spend, kind=store_kind)) == 4
    [key] = redis_client.keys("{*")
    assert float(redis_client.get(key)) == 0.0


# -- asyncio programs: 3 processes x 100 coroutines on one breaker -------------------------

COROUTINES = 100
ASYNC_WORKERS = 3


async def _async_barrier(client: Any, name: str, parties: int) -> None:
    """``barrier`` for a coroutine: the loop keeps running while it waits."""
    key = f"barrier:{name}"
    if await client.incr(key) == parties:
        await client.rpush(f"{key}:go", *["go"] * parties)
    deadline = time.monotonic() + 60.0
    while await client.blpop([f"{key}:go"], timeout=1) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"barrier {name!r}: not every process arrived")


def _asyncio_program(n: int, url: str, run: str, kind: str) -> dict[str, Any]:
    """One process, one event loop, 100 coroutines on one breaker on an AsyncRedisStore."""
    import asyncio

    from resilient.redis import AsyncRedisStore, connect_async

    async def main() -> dict[str, Any]:
        clock = ManualClock()  # every process's clock moves as the others' do (see below)
        client = connect_async(url, socket_timeout=5.0)
        heard: list[tuple[str, str]] = []

        class Heard:
            def on_state_change(self, breaker: Any, old: Any, new: Any) -> None:
                heard.append((old.value, new.value))

        # The breakers' clocks, not Redis TIME: the open period ends when the test says,
        # not when a busy machine happens to get there (the claims are not about time).
        store = AsyncRedisStore(client, max_staleness=0.05, time_source="breaker")
        breaker = CircuitBreaker(
            50,
            60.0,
            clock=clock,
            name=run,
            store=store,
            half_open_max_calls=3,
            success_threshold=3,
            listeners=[Heard()],
        )
        ran: list[int] = []

        async def failing() -> None:
            ran.append(1)
            raise Down("connection refused")

        async def fail_once() -> str:
            try:
                await breaker.call_async(failing)
            except Down:
                return "failed"
            except CircuitOpenError:
                return "rejected"
            return "ran"

        await _async_barrier(client, f"{run}:start", ASYNC_WORKERS)
        first = await asyncio.gather(*(fail_once() for _ in range(COROUTINES)))
        await _async_barrier(client, f"{run}:failed", ASYNC_WORKERS)
        await asyncio.sleep(0.06)  # past max_staleness: every process has seen the opening
        ran.clear()
        after = await asyncio.gather(*(fail_once() for _ in range(COROUTINES)))
        ran_after = len(ran)
        # The half-open period: every process's clock passes the open period at once.
        await _async_barrier(client, f"{run}:rejected", ASYNC_WORKERS)
        clock.advance(61.0)
        release = asyncio.Event()
        tried = 0
        all_tried = asyncio.Event()

        def one_more() -> None:
            nonlocal tried
            tried += 1
            if tried == COROUTINES:
                all_tried.set()

        async def trial() -> bool:
            try:
                async with breaker:
                    one_more()
                    await release.wait()  # hold the permit until every process has tried
                    return True
            except CircuitOpenError:
                one_more()
                return False

        trials = [asyncio.ensure_future(trial()) for _ in range(COROUTINES)]
        await all_tried.wait()
        await _async_barrier(client, f"{run}:everyone-tried", ASYNC_WORKERS)
        release.set()
        admitted = sum(await asyncio.gather(*trials))
        await client.aclose()
        return {
            "first": sorted(set(first)),
            "after": sorted(set(after)),
            "ran_after": ran_after,
            "admitted": admitted,
            "heard": heard,
        }

    # Never left waiting for ever (the pool's shutdown would wait for it): 60 s at most.
    return asyncio.run(asyncio.wait_for(main(), 60.0))


def test_3_asyncio_processes_x_100_coroutines_open_once_and_share_the_trials(
    pool: ProcessPoolExecutor, redis_client: Any
) -> None:
    """300 failing coroutines open the circuit once fleet-wide; every process then rejects
    without calling; the half-open period admits exactly half_open_max_calls (3) in all."""
    options = redis_client.connection_pool.connection_kwargs
    url = f"redis://{options['host']}:{options['port']}/{options.get('db', 0)}"
    run = f"run-{next(_runs)}"
    futures = [pool.submit(_asyncio_program, n, url, run, "async") for n in range(ASYNC_WORKERS)]
    reports = [future.result(timeout=240) for future in futures]
    openings = [change for r in reports for change in r["heard"] if change == ("closed", "open")]
    assert len(openings) == 1  # opened once, by one process's failure, fleet-wide
    assert all(r["after"] == ["rejected"] and r["ran_after"] == 0 for r in reports)
    assert sum(r["admitted"] for r in reports) == 3
    closings = [c for r in reports for c in r["heard"] if c == ("half_open", "closed")]
    assert len(closings) == 1
