"""Cost of a breaker whose state lives in Redis, against pybreaker's Redis storage.

Run: ``python benchmarks/redis_overhead.py [--quick] [redis://host:port/db]``.
Without a URL it starts a throwaway ``redis-server`` on a free loopback port
(persistence off). Prints nanoseconds per call, the ratio to pybreaker's
``CircuitRedisStorage`` on the same server in the same run, and the round
trips per call, counted by the server (``INFO commandstats``: neither library
pipelines, so each command is one round trip). Asserts nothing.

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
from _timing import machine, ns_per_call

from resilient import CircuitBreaker, FailureRateWindow
from resilient.redis import RedisStore, connect

QUICK = "--quick" in sys.argv
NUMBER = 500 if QUICK else 3000
REPEAT = 3 if QUICK else 7


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


def main(url: str) -> None:
    print(machine())
    print(f"redis at {url}; best of {REPEAT} interleaved runs of {NUMBER} calls each")
    # Short timeouts and no retries, as resilient.redis.connect builds; both libraries use it.
    client = CountingRedis.from_url(url, socket_timeout=1.0, retry=Retry(NoBackoff(), 0))
    found = candidates(client)
    trips = {}
    for name, func in found.items():
        func()  # warm: scripts loaded, caches filled
        trips[name] = round_trips_per_call(client, func, NUMBER)
    # Interleaved, best of REPEAT for each: a machine busier at one moment
    # weighs on every candidate alike.
    best = dict.fromkeys(found, float("inf"))
    for _ in range(REPEAT):
        for name, func in found.items():
            best[name] = min(best[name], ns_per_call(func, NUMBER, 1))
    rows = [(name, best[name], trips[name]) for name in found]
    peer = {name: ns for name, ns, _ in rows}
    print(f"\n  {'closed path':42} {'ns/call':>10} {'round trips':>12} {'x pybreaker':>12}")
    for name, ns, trips in rows:
        if "failure" in name:
            baseline = peer.get("pybreaker CircuitRedisStorage, failure")
        else:
            baseline = peer.get("pybreaker CircuitRedisStorage, success")
        ratio = f"{ns / baseline:12.3f}" if baseline else f"{'n/a':>12}"
        print(f"  {name:42} {ns:10.0f} {trips:12.2f} {ratio}")


if __name__ == "__main__":
    urls = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    if urls:
        main(urls[0])
    else:
        with throwaway_redis() as started:
            main(started)
