"""``AsyncRedisStore``: its closed path against the sync store and purgatory, and the loop's lag.

Run: ``python benchmarks/redis_async.py [--quick] [redis://host:port/db]``
(``run_all.py`` runs it too when ``redis-server`` is on the PATH). Without a
URL it starts a throwaway ``redis-server`` (``redis_overhead.throwaway_redis``);
the lag scenario freezes that server (``SIGSTOP``), so it needs the server on
this host. Asserts nothing.

Measured, all in one event loop on one server:

- the closed path (the protected coroutine returns at once), nanoseconds per
  ``await``: one ``PING`` on the asyncio client (one round trip, the floor);
  ours on an ``AsyncRedisStore`` (consecutive rule, success: answered from
  the remembered state; with a ``FailureRateWindow``: one script; a counted
  failure: one script; ``max_staleness=0``: two scripts); the sync
  ``RedisStore`` under the same ``call_async`` (its round trips block the
  loop); purgatory 3's ``AsyncRedisUnitOfWork`` (its decorator: reads the
  circuit each call, writes on a failure). Round trips per call are counted
  by the clients (no library pipelines, so one command is one round trip).
- the event loop's lag while Redis hangs: 200 coroutines call through one
  breaker with ``max_staleness=0`` (every call asks Redis) while the server is
  frozen for 1.5 s (0.75 s with ``--quick``); a ticker coroutine every 5 ms
  records how late it wakes (as the wall clock saw it, and less the time
  the thread waited for a CPU that the machine's other jobs held: Linux).
  The goal of the design: < 10 ms. Once with the pool's connections open
  (a running service), once with the pool opening them as the calls pile
  up on the frozen server.
- the same 200 coroutines on a healthy server: the latency each call adds to
  the awaited coroutine, p50 and p99.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import FLOOR, OURS, REFERENCE, Goal, Report, Row, print_report, rows_of
from redis_overhead import CountingRedis, throwaway_redis

from resilient import CircuitBreaker, FailureRateWindow
from resilient.redis import AsyncRedisStore, RedisStore

GROUP = "breaker on an AsyncRedisStore, closed path, awaited (same server, ns per call)"
GROUP_LAG = "event loop while Redis is frozen: 200 coroutines, max_staleness=0 (ms)"
GROUP_LATENCY = "healthy Redis: latency a call adds, 200 coroutines, max_staleness=0 (ms)"
PING = "one PING per call (asyncio client)"
OURS_OK = "resilient AsyncRedisStore, success"
OURS_FAIL = "resilient AsyncRedisStore, counted failure"
SYNC_OK = "resilient RedisStore (sync) via call_async, success"
PEER_OK = "purgatory 3 AsyncRedisUnitOfWork, success"
PEER_FAIL = "purgatory 3 AsyncRedisUnitOfWork, failure"
KINDS = {
    PING: FLOOR,
    OURS_OK: OURS,
    "resilient AsyncRedisStore + FailureRateWindow, success": OURS,
    OURS_FAIL: OURS,
    "resilient AsyncRedisStore max_staleness=0, success": REFERENCE,
    SYNC_OK: REFERENCE,
    "resilient RedisStore (sync) + FailureRateWindow, success": REFERENCE,
}
LAG_TARGET = "event-loop lag < 10 ms"
LAG_PATH = "async forms on `AsyncRedisStore` while Redis hangs"
NEVER = 10**9  # a failure threshold no run reaches: the circuit stays closed


class CountingAsyncRedis(redis.asyncio.Redis):
    """A ``redis.asyncio`` client that counts the commands it sends (one per round trip)."""

    round_trips = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.round_trips += 1
        return await super().execute_command(*args, **options)


async def protected() -> int:
    return 1


async def failing() -> int:
    raise ConnectionError("dependency down")


def swallowed(func: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        with contextlib.suppress(Exception):
            await func()

    return call


async def timed(
    candidates: dict[str, Callable[[], Awaitable[object]]], quick: bool
) -> dict[str, float | None]:
    """Nanoseconds per await of each candidate, best of interleaved rounds (loop subtracted)."""
    repeat = 5 if quick else 20
    loops = 200 if quick else 1000

    async def once(func: Callable[[], Awaitable[object]] | None) -> float:
        start = time.perf_counter()
        if func is None:
            for _ in range(loops):
                pass
        else:
            for _ in range(loops):
                await func()
        return (time.perf_counter() - start) / loops

    best = dict.fromkeys(candidates, math.inf)
    gc.disable()
    try:
        for _ in range(repeat):
            for name, func in candidates.items():
                best[name] = min(best[name], await once(func))
        empty = min([await once(None) for _ in range(repeat)])
    finally:
        gc.enable()
    return {name: max(value - empty, 0.0) * 1e9 for name, value in best.items()}


async def closed_path(url: str, quick: bool) -> tuple[list[Row], dict[str, float]]:
    options: dict[str, Any] = {"socket_timeout": 1.0, "retry": Retry(NoBackoff(), 0)}
    client = CountingAsyncRedis.from_url(url, **options)
    sync_client = CountingRedis.from_url(url, socket_timeout=1.0)
    await client.flushdb()
    store = AsyncRedisStore(client, namespace="bench-async")
    strict = AsyncRedisStore(client, namespace="bench-async-strict", max_staleness=0.0)
    sync_store = RedisStore(sync_client, namespace="bench-sync")
    window = FailureRateWindow(1.0, calls=100)
    counting: dict[str, Any] = {}
    found: dict[str, Callable[[], Awaitable[object]]] = {PING: client.ping}
    counting[PING] = client
    rows = [
        (OURS_OK, CircuitBreaker(NEVER, name="ok", store=store)(protected), client),
        (
            "resilient AsyncRedisStore + FailureRateWindow, success",
            CircuitBreaker(name="window", store=store, window=window)(protected),
            client,
        ),
        (OURS_FAIL, swallowed(CircuitBreaker(NEVER, name="fail", store=store)(failing)), client),
        (
            "resilient AsyncRedisStore max_staleness=0, success",
            CircuitBreaker(NEVER, name="strict", store=strict)(protected),
            client,
        ),
        (SYNC_OK, CircuitBreaker(NEVER, name="sync", store=sync_store)(protected), sync_client),
        (
            "resilient RedisStore (sync) + FailureRateWindow, success",
            CircuitBreaker(name="sync-window", store=sync_store, window=window)(protected),
            sync_client,
        ),
    ]
    for name, func, counter in rows:
        found[name] = func
        counting[name] = counter
    peer_clients: list[Any] = []
    try:
        from purgatory import AsyncCircuitBreakerFactory
        from purgatory.service._async.unit_of_work import AsyncRedisUnitOfWork
    except ImportError:
        print("note: purgatory is not installed (pip install -e '.[bench]'); skipped")
    else:
        for name, func in ((PEER_OK, protected), (PEER_FAIL, failing)):
            uow = AsyncRedisUnitOfWork(url)
            peer = CountingAsyncRedis.from_url(url, **options)
            uow.contexts.redis = peer  # the same kind of client as ours, counted
            factory = AsyncCircuitBreakerFactory(default_threshold=NEVER, uow=uow)
            await factory.initialize()
            guarded = factory(name.replace(" ", "-"))(func)
            found[name] = swallowed(guarded) if func is failing else guarded
            counting[name] = peer
            peer_clients.append(peer)
    trips: dict[str, float] = {}
    count = 200 if quick else 2000
    for name, func in found.items():
        await func()  # warm: scripts loaded, caches filled
        counter = counting[name]
        before = counter.round_trips
        for _ in range(count):
            await func()
        trips[name] = (counter.round_trips - before) / count
    results = await timed(found, quick)
    notes = {name: f"{value:.2f} round trips per call" for name, value in trips.items()}
    for each in (client, *peer_clients):
        await each.aclose()
    sync_client.close()
    return rows_of(GROUP, results, KINDS, notes), trips


def _pause(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)


def _resume(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


def _waiting_for_a_cpu() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (Linux; else 0.0)."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


async def _frozen(
    url: str, pid: int, seconds: float, open_pool: bool
) -> tuple[list[float], list[float]]:
    """200 coroutines on a store of their own while the server is frozen: the ticker's lags.

    *open_pool*: the pool holds its connections before the freeze (a running
    service); otherwise it opens them as the calls pile up on the frozen
    server. Returns the lags as the wall clock saw them, and the same less
    the time the thread waited for a CPU that the machine's other jobs held.
    """
    store = AsyncRedisStore.from_url(
        url, socket_timeout=0.25, max_staleness=0.0, retry_interval=0.5, namespace="bench-lag"
    )
    breaker = CircuitBreaker(NEVER, name="lag", store=store)
    calls = 200 if open_pool else 1  # the scripts loaded either way
    await asyncio.gather(*(breaker.call_async(protected) for _ in range(calls)))
    deadline = time.monotonic() + seconds
    walls: list[float] = []
    own: list[float] = []
    done = asyncio.Event()

    async def caller() -> None:
        while time.monotonic() < deadline:
            await breaker.call_async(protected)
            await asyncio.sleep(0.1)

    async def ticker() -> None:
        while not done.is_set():
            before, queued = time.perf_counter(), _waiting_for_a_cpu()
            await asyncio.sleep(0.005)
            wall = time.perf_counter() - before - 0.005
            walls.append(wall)
            own.append(wall - (_waiting_for_a_cpu() - queued))

    ticking = asyncio.create_task(ticker())
    _pause(pid)
    try:
        await asyncio.gather(*(caller() for _ in range(200)))
    finally:
        _resume(pid)
        done.set()
        await ticking
    await store.client.aclose()
    return sorted(walls), sorted(own)


async def lag_and_latency(url: str, quick: bool) -> tuple[list[Row], Goal]:
    """The loop's lag while the server is frozen, and the latency calls add while it is not."""
    probe = redis.asyncio.Redis.from_url(url)
    pid = int((await probe.info("server"))["process_id"])
    await probe.aclose()
    store = AsyncRedisStore.from_url(
        url, socket_timeout=0.25, max_staleness=0.0, retry_interval=0.5, namespace="bench-lag"
    )
    breaker = CircuitBreaker(NEVER, name="lag", store=store)
    frozen_for = 0.75 if quick else 1.5

    async def callers(seconds: float, latencies: list[float]) -> None:
        deadline = time.monotonic() + seconds

        async def caller() -> None:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                await breaker.call_async(protected)
                latencies.append(time.perf_counter() - start)
                await asyncio.sleep(0.1)

        await asyncio.gather(*(caller() for _ in range(200)))

    await asyncio.gather(*(breaker.call_async(protected) for _ in range(200)))  # a warm pool
    latencies: list[float] = []
    await callers(0.5 if quick else 1.0, latencies)  # healthy: what each call adds
    await store.client.aclose()
    bare: list[float] = []
    for _ in range(2000):
        start = time.perf_counter()
        await protected()
        bare.append(time.perf_counter() - start)
    lags, own = await _frozen(url, pid, frozen_for, open_pool=True)
    opening, opening_own = await _frozen(url, pid, frozen_for, open_pool=False)
    latencies.sort()
    floor = sorted(bare)[len(bare) // 2]

    def at(values: list[float], share: float) -> float:
        return values[min(int(len(values) * share), len(values) - 1)]

    worst = lags[-1] * 1000
    rows = [
        Row(GROUP_LAG, "largest lag of a 5 ms ticker", worst, OURS, unit="ms"),
        Row(GROUP_LAG, "p99 lag of a 5 ms ticker", at(lags, 0.99) * 1000, OURS, unit="ms"),
        Row(
            GROUP_LAG,
            "largest lag, less the time other jobs held the CPU",
            own[-1] * 1000,
            OURS,
            unit="ms",
        ),
        Row(
            GROUP_LAG,
            "largest lag, the pool opening its 100 connections meanwhile",
            opening[-1] * 1000,
            OURS,
            unit="ms",
            note=f"{opening_own[-1] * 1000:.1f} ms less the time other jobs held the CPU",
        ),
        Row(GROUP_LAG, "the goal", 10.0, REFERENCE, unit="ms"),
        Row(
            GROUP_LATENCY,
            "p50 latency added per call",
            (at(latencies, 0.5) - floor) * 1000,
            OURS,
            unit="ms",
        ),
        Row(
            GROUP_LATENCY,
            "p99 latency added per call",
            (at(latencies, 0.99) - floor) * 1000,
            OURS,
            unit="ms",
        ),
    ]
    goal = Goal(
        LAG_PATH,
        LAG_TARGET,
        figure=f"largest lag {worst:.1f} ms over {frozen_for:g} s frozen (p99 "
        f"{at(lags, 0.99) * 1000:.1f} ms; {own[-1] * 1000:.1f} ms less the time other jobs "
        f"held the CPU; {opening[-1] * 1000:.1f} ms with the pool opening its connections)",
        met=worst < 10.0,
        when_missed=(
            "the lag is the loop's own work between two ticks (200 coroutines' calls, "
            "timeouts firing together), and the time the machine's other jobs held the CPU; "
            "a loop waiting on the frozen server would lag a socket timeout (250 ms)"
        ),
    )
    return rows, goal


async def measure_on(url: str, quick: bool, freeze: bool) -> Report:
    rows, trips = await closed_path(url, quick)
    ours = [name for name, kind in KINDS.items() if kind == OURS]
    most = max(trips[name] for name in ours)
    ratios = [
        (mine, their)
        for mine, their in ((OURS_OK, PEER_OK), (OURS_FAIL, PEER_FAIL))
        if their in trips
    ]
    values = {row.name: row.value for row in rows}
    figure = f"at most {most:.2f} round trips per call"
    for mine, their in ratios:
        if values.get(mine) is not None and values.get(their):
            figure += f"; {mine.rsplit(', ', 1)[1]}: {values[mine] / values[their]:.2f}x purgatory"
    goals = [
        Goal(
            "`AsyncRedisStore`, closed path",
            "one round trip per call; faster than purgatory's Redis storage",
            figure=figure,
            met=most <= 1.0
            and bool(ratios)
            and all((values[m] or 0.0) < (values[t] or 0.0) for m, t in ratios),
        )
    ]
    if freeze:
        lag_rows, goal = await lag_and_latency(url, quick)
        rows += lag_rows
        goals.append(goal)
    return Report(rows=rows, goals=goals)


def run(quick: bool) -> Report:
    """Start a throwaway server, measure on it, stop it; see the module docstring."""
    with throwaway_redis() as url:
        return asyncio.run(measure_on(url, quick, freeze=True))


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    urls = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    if urls:  # someone else's server: not frozen
        print_report(asyncio.run(measure_on(urls[0], quick, freeze=False)))
    else:
        print_report(run(quick))
