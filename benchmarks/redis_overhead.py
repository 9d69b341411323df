"""Cost of a breaker whose state lives in Redis, against pybreaker's Redis storage.

Run: ``python benchmarks/redis_overhead.py [--quick] [redis://host:port/db]``
(``run_all.py`` runs it too when ``redis-server`` is on the PATH). Without a
URL it starts a throwaway ``redis-server`` on a free loopback port
(persistence off). Prints nanoseconds per call against one ``PING`` (one
round trip, the floor) and pybreaker's ``CircuitRedisStorage`` on the same
server in the same run, and the round trips per call, counted by the client
(neither library pipelines, so each command is one round trip). Asserts
nothing.

Measured, on the closed path (the protected function returns at once):

- one ``PING`` per call: what one round trip costs here;
- ours, consecutive-failure rule, success: admitted from this process's
  cache of the last answer, and a success with no failure pending changes
  nothing (no round trip; one refresh every ``max_staleness``, 0.1 s);
- ours with a ``FailureRateWindow``, success: one script per call;
- ours, failures that count (threshold never reached): one script per call;
- ours with ``max_staleness=0``: admission and outcome each ask Redis;
- pybreaker 1.x with ``CircuitRedisStorage``, success and failure.

Goal (issue 9): at most one round trip per call on the closed path, and
faster than pybreaker's Redis storage.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import FLOOR, OURS, REFERENCE, Goal, Report, measure, print_report, rows_of

from resilient import CircuitBreaker, FailureRateWindow
from resilient.redis import RedisStore, connect

GROUP = "breaker on a RedisStore, closed path (same server, ns per call)"
PING = "one PING per call"
OURS_OK = "resilient, success"
OURS_FAIL = "resilient, counted failure"
PEER_OK = "pybreaker CircuitRedisStorage, success"
PEER_FAIL = "pybreaker CircuitRedisStorage, failure"
KINDS = {
    PING: FLOOR,
    OURS_OK: OURS,
    OURS_FAIL: OURS,
    "resilient + FailureRateWindow, success": OURS,
    "resilient max_staleness=0, success": REFERENCE,
}
TRIP_COUNT = 2000


def protected() -> int:
    return 1


def failing() -> int:
    raise ConnectionError("dependency down")


def swallow(func: Callable[[], object]) -> Callable[[], None]:
    """Call *func* and swallow what it raises, for timing failing calls."""

    def call() -> None:
        with contextlib.suppress(Exception):
            func()

    return call


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
            client = connect(f"redis://127.0.0.1:{port}/0")
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.kill()
            server.wait()


class CountingRedis(redis.Redis):
    """A client that counts the commands it sends: without pipelining, one per round trip.

    (The server's own counters, ``INFO commandstats``, also count the commands
    a Lua script runs inside Redis, which cost no round trip.)
    """

    round_trips = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.round_trips += 1
        return super().execute_command(*args, **options)


def round_trips_per_call(client: CountingRedis, func: Callable[[], object], calls: int) -> float:
    """Commands *client* sent per call of *func*."""
    before = client.round_trips
    for _ in range(calls):
        func()
    return (client.round_trips - before) / calls


def candidates(client: CountingRedis) -> dict[str, Callable[[], object]]:
    client.flushdb()
    store = RedisStore(client, namespace="bench")
    strict = RedisStore(client, namespace="bench-strict", max_staleness=0.0)
    never = 10**9  # a threshold no run reaches: the circuit stays closed
    ours = CircuitBreaker(never, name="consecutive", store=store)(protected)
    windowed = CircuitBreaker(name="window", store=store, window=FailureRateWindow(1.0, calls=100))(
        protected
    )
    failures = CircuitBreaker(never, name="failures", store=store)(failing)
    uncached = CircuitBreaker(never, name="strict", store=strict)(protected)
    found: dict[str, Callable[[], object]] = {
        "one PING per call": client.ping,
        "resilient, success": ours,
        "resilient + FailureRateWindow, success": windowed,
        "resilient, counted failure": swallow(failures),
        "resilient max_staleness=0, success": uncached,
    }
    try:
        import pybreaker
    except ImportError:
        print("note: pybreaker is not installed (pip install -e '.[bench]'); skipped")
        return found

    def pybreaker_storage(name: str) -> Any:
        return pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace=name)

    found["pybreaker CircuitRedisStorage, success"] = pybreaker.CircuitBreaker(
        fail_max=never, state_storage=pybreaker_storage("pb-ok")
    )(protected)
    found["pybreaker CircuitRedisStorage, failure"] = swallow(
        pybreaker.CircuitBreaker(fail_max=never, state_storage=pybreaker_storage("pb-fail"))(
            failing
        )
    )
    return found


def measure_on(url: str, quick: bool) -> Report:
    """Round trips and nanoseconds per call of every candidate, on the server at *url*."""
    # Short timeouts and no retries, as resilient.redis.connect builds; both libraries use it.
    client = CountingRedis.from_url(url, socket_timeout=1.0, retry=Retry(NoBackoff(), 0))
    found = candidates(client)
    trips: dict[str, float] = {}
    for name, func in found.items():
        func()  # warm: scripts loaded, caches filled
        trips[name] = round_trips_per_call(client, func, TRIP_COUNT)
    results: dict[str, float | None] = dict(measure(found, quick=quick, repeat=5 if quick else 20))
    notes = {name: f"{count:.2f} round trips per call" for name, count in trips.items()}
    client.close()
    return Report(rows=rows_of(GROUP, results, KINDS, notes), goals=[goal(results, trips)])


def goal(results: dict[str, float | None], trips: dict[str, float]) -> Goal:
    """The design's goal: one round trip per call at most, and faster than pybreaker's storage."""
    ours = [name for name, kind in KINDS.items() if kind == OURS]
    most_trips = max(trips[name] for name in ours)
    figure = f"at most {most_trips:.2f} round trips per call"
    met = most_trips <= 1.0
    pairs = [(OURS_OK, PEER_OK), (OURS_FAIL, PEER_FAIL)]
    ratios = [
        (results[mine] or 0.0) / peer
        for mine, their in pairs
        if (peer := results.get(their)) and results.get(mine) is not None
    ]
    if len(ratios) == len(pairs):
        figure += f"; {ratios[0]:.2f}x pybreaker's storage on success, {ratios[1]:.2f}x on failure"
        met = met and max(ratios) < 1.0
    else:
        figure += "; pybreaker not installed"
        return Goal("`RedisStore`, closed path", GOAL_TARGET, figure=figure, met=None)
    return Goal("`RedisStore`, closed path", GOAL_TARGET, figure=figure, met=met)


GOAL_TARGET = "one round trip per call; faster than pybreaker's Redis storage"


def run(quick: bool) -> Report:
    """Start a throwaway server, measure on it, stop it; see the module docstring."""
    with throwaway_redis() as url:
        return measure_on(url, quick)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    urls = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    if urls:
        print_report(measure_on(urls[0], quick))
    else:
        print_report(run(quick))
