"""A rate limiter shared by a fleet through Redis, against ``limits`` and PyrateLimiter.

Run: ``python benchmarks/redis_limiter.py [--quick] [redis://host:port/db]``
(``run_all.py`` runs it too when ``redis-server`` is on the PATH). Without a
URL it starts a throwaway ``redis-server`` on a free loopback port
(persistence off). Asserts nothing.

The fleet: 4 processes x 2 threads, every thread acquiring as fast as the
limiter lets it (a caller that must wait waits, as a client of a
rate-limited API does), against one limit of 200 per second shared through
one Redis, for 3 seconds (1.5 with ``--quick``). Each library is used the
way its documentation shows:

- **resilient**: ``RateLimiter(200, burst=10, store=RedisStore(...))``,
  ``acquire()``: one script per acquire on Redis ``TIME``; a caller that
  must wait is told how long, sleeps that once, and goes.
- **limits** (moving window, ``RedisStorage``): ``hit()`` refuses or admits;
  a refused caller reads ``get_window_stats()`` (when the window resets)
  and sleeps until then, then hits again.
- **PyrateLimiter** (``RedisBucket``, a sliding log): ``try_acquire(name,
  blocking=True)``, which sleeps and retries inside the library.

Measured per library, from the same run:

- round trips per admitted acquire (commands sent on the sockets, counted
  by the connection: a pipeline or a script is one), the waiting included,
  once each connection is open and each script loaded;
- the aggregate admitted over the run against ``rate x duration`` (a
  limiter that admits more overshoots the API's limit; fewer wastes it);
- the most admitted in any 100 ms: the burst a server sees (20 at an even
  200/s, 30 with our burst of 10; a window-based limiter may admit a whole
  second's worth at once). Times are when each caller went on, so a caller
  woken late by a busy machine makes the figure a little higher than the
  limiter's own schedule.

Goal (DESIGN.md, "RateLimiter through Redis"): one round trip per admitted
acquire, and a waiting caller sleeps the returned time (no polling). An
acquire is one script whether it waits or not; a waiter asks a second time
at its turn only when its process learned, while it waited, of a pause
ordered after its reservation (none is ordered here).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import OURS, PEER, REFERENCE, Goal, Report, Row, print_report

GROUP_TRIPS = "a fleet limiter through Redis: round trips per 100 acquires (4 x 2 threads)"
GROUP_RATE = "a fleet limiter through Redis: admitted over the run, % of rate x duration"
GROUP_BURST = "a fleet limiter through Redis: most admitted in any 100 ms (20 at an even rate)"
PROCESSES = 4
THREADS = 2
RATE = 200.0
BURST = 10  # 50 ms of the rate: a stall of the whole fleet shorter than that costs nothing
OURS_NAME = "resilient RateLimiter + RedisStore"
LIMITS_NAME = "limits MovingWindowRateLimiter + RedisStorage"
PYRATE_NAME = "PyrateLimiter RedisBucket (blocking)"
LIBRARIES = (OURS_NAME, LIMITS_NAME, PYRATE_NAME)
GOAL_PATH = "`RateLimiter` through Redis"
GOAL_TARGET = (
    "1 round trip per admitted acquire; a waiting caller sleeps the returned time, no polling"
)


class CountingConnection(redis.Connection):
    """A connection that counts what it sends: one packed send is one round trip."""

    sent = 0
    lock = threading.Lock()

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        with CountingConnection.lock:
            CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


def _client(url: str) -> redis.Redis:
    pool = redis.ConnectionPool.from_url(  # pyright: ignore[reportUnknownMemberType]
        url,
        connection_class=CountingConnection,
        socket_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )
    return redis.Redis(connection_pool=pool)


def _acquirer(library: str, url: str, run: str) -> Any:
    """A function that returns once one unit is admitted, for *library*."""
    if library == OURS_NAME:
        from resilient import RateLimiter
        from resilient.redis import RedisStore

        limiter = RateLimiter(RATE, burst=BURST, name=run, store=RedisStore(_client(url)))
        return limiter.acquire
    if library == LIMITS_NAME:
        from limits import RateLimitItemPerSecond
        from limits.storage import RedisStorage
        from limits.strategies import MovingWindowRateLimiter

        pool = redis.ConnectionPool.from_url(  # pyright: ignore[reportUnknownMemberType]
            url, connection_class=CountingConnection
        )
        moving = MovingWindowRateLimiter(RedisStorage(url, connection_pool=pool))
        item = RateLimitItemPerSecond(int(RATE))

        def hit() -> None:
            while not moving.hit(item, run):
                reset = moving.get_window_stats(item, run).reset_time
                time.sleep(max(0.0, reset - time.time()))

        return hit
    from pyrate_limiter import Duration, Limiter, Rate, RedisBucket

    bucket = RedisBucket.init([Rate(int(RATE), Duration.SECOND)], _client(url), run)
    pyrate = Limiter(bucket)

    def acquire() -> None:
        pyrate.try_acquire(run, blocking=True)

    return acquire


def _worker(
    library: str, url: str, run: str, start: float, duration: float
) -> tuple[list[float], int, int]:
    """One process: THREADS threads acquiring until the end.

    Returns the admission times within the run, the acquires made (the last
    of each thread ends after the run) and the round trips they took.
    """
    acquire = _acquirer(library, url, run)
    acquire_done: list[float] = []
    made = [0]
    lock = threading.Lock()
    end = start + duration

    def loop() -> None:
        time.sleep(max(0.0, start - time.monotonic()))
        while True:
            acquire()
            now = time.monotonic()
            with lock:
                made[0] += 1
                if now >= end:
                    return
                acquire_done.append(now - start)

    # Warm: every connection opened (its handshake is not the limiter's cost), scripts loaded.
    warm = [threading.Thread(target=acquire) for _ in range(THREADS)]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join()
    threads = [threading.Thread(target=loop) for _ in range(THREADS)]
    CountingConnection.sent = 0
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return acquire_done, made[0], CountingConnection.sent


def fleet(library: str, url: str, duration: float) -> tuple[float, float, int]:
    """Run the fleet once: round trips per acquire, admitted / rate x t, most in 100 ms."""
    run = f"bench-{library.split()[0].lower()}-{time.monotonic_ns()}"
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(PROCESSES) as pool:
        pool.apply(time.sleep, (0.0,))  # the processes are up before the clock starts
        start = time.monotonic() + 1.0  # time to import the library in each process
        results = pool.starmap(_worker, [(library, url, run, start, duration)] * PROCESSES)
    times = sorted(t for admitted, _, _ in results for t in admitted)
    made = sum(count for _, count, _ in results)
    trips = sum(sent for _, _, sent in results)
    busiest, j = 0, 0
    for i, at in enumerate(times):
        while j < len(times) and times[j] < at + 0.1:
            j += 1
        busiest = max(busiest, j - i)
    return trips / max(1, made), len(times) / (RATE * duration), busiest


def measure_on(url: str, quick: bool) -> Report:
    """Every library's fleet, one after the other, on the server at *url*."""
    duration = 1.5 if quick else 3.0
    rows: list[Row] = []
    figures: dict[str, tuple[float, float, int]] = {}
    for library in LIBRARIES:
        try:
            figures[library] = fleet(library, url, duration)
        except ImportError as missing:
            note = f"not installed ({missing.name}): pip install -e '.[bench]'"
            for group in (GROUP_TRIPS, GROUP_RATE, GROUP_BURST):
                rows.append(Row(group, library, None, PEER, note=note))
            continue
        kind = OURS if library == OURS_NAME else PEER
        trips, accuracy, busiest = figures[library]
        rows.append(Row(GROUP_TRIPS, library, 100 * trips, kind, unit="trips"))
        rows.append(Row(GROUP_RATE, library, 100 * accuracy, kind, unit="%"))
        rows.append(Row(GROUP_BURST, library, float(busiest), kind, unit="admitted"))
    rows.append(Row(GROUP_RATE, "the limit", 100.0, REFERENCE, unit="%"))
    rows.append(Row(GROUP_BURST, "an even 200/s", RATE * 0.1, REFERENCE, unit="admitted"))
    ours = figures.get(OURS_NAME)
    if ours is None:
        return Report(rows=rows, goals=[Goal(GOAL_PATH, GOAL_TARGET, figure="not measured")])
    trips, accuracy, busiest = ours
    figure = (
        f"{trips:.3f} round trips per acquire; the fleet admitted {accuracy:.1%} of "
        f"rate x duration, at most {busiest} in any 100 ms"
    )
    return Report(
        rows=rows,
        goals=[
            Goal(
                GOAL_PATH,
                GOAL_TARGET,
                figure=figure,
                met=trips < 1.01,  # a reconnection mid-run costs its handshake
                when_missed=(
                    "no pause is ordered in this run, so every admitted acquire should be "
                    "one script: more means a waiter asked again at its turn (a pause mark "
                    "it should not have seen) or a caller polled; a reconnection mid-run "
                    "(a socket timeout on a busy machine) adds its handshake"
                ),
            )
        ],
    )


@contextlib.contextmanager
def throwaway_redis() -> Iterator[str]:
    """A redis-server on a free loopback port, persistence off, for this run only."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("install redis-server, or pass the URL of a server to use")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = redis.Redis(port=port, socket_timeout=1.0)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.kill()
            server.wait()


REQUIRES = ("redis-server",)


def run(quick: bool) -> Report:
    """Start a throwaway server, measure on it, stop it; see the module docstring."""
    with throwaway_redis() as url:
        return measure_on(url, quick)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    urls = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    print_report(measure_on(urls[0], quick) if urls else run(quick))
