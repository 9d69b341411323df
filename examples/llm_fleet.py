"""A fleet of LLM agents against one rate-limited API, without and with pacing.

Run it (it starts a throwaway ``redis-server`` if one is installed, or give
the URL of one; it writes keys under the namespace ``resilient-fleet`` only)::

    python examples/llm_fleet.py                      # 10 processes x 4 threads x 30 tasks
    python examples/llm_fleet.py --processes 3 --tasks 10 --redis redis://localhost:6379/0

The API (``rate_limited_api.py``: the fake LLM server of
``fake_llm_server.py`` with a provider's limits) allows 40 requests per
second and 8 in flight, and answers 429 with ``Retry-After: 1`` beyond
either. Each worker process (forked from a server process that has loaded
the SDK once, where the platform has ``forkserver``) runs threads that each
ask it a series of questions through the real ``openai`` SDK (its own
retries off: ``max_retries=0``), twice:

- **without pacing**: ``@retry`` alone. Every process meets the limit on its
  own, backs off on its own, and the others keep sending into the same wall;
- **with pacing**: the same ``@retry`` given a ``RateLimiter`` shared by the
  whole fleet through Redis (one script per request, waited or not, on
  Redis's clock) at 97.5% of the API's rate, so the fleet sends as fast as
  the API admits and a 429's ``Retry-After`` pauses every process at its
  next request (and the requests waiting in the process that got it); an adaptive
  ``ConcurrencyLimit`` per process that backs off on 429s and climbs back
  on successes; and a ``ConcurrencyLimit`` of 8 shared through Redis (slots
  are leases), so the fleet never has more requests in flight than the API
  serves.

For each run it prints the requests sent, the 429s received (and why), the
goodput (questions answered per second, over the API's 40 per second), the
time to finish, and how many times a process lost Redis (a socket timeout:
it then paces alone until Redis answers again). With pacing: goodput at
least 0.95 of capacity, 429s under 1%, no task lost, on a machine that is
not too busy (a process stalled for a quarter of a second sends its
requests late, and they arrive together; one that waits on Redis longer than
the store's socket timeout, 1 s by default, paces alone for a while). Each
flag has a small default, see ``--help``.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import TYPE_CHECKING

from rate_limited_api import RateLimitedAPI
from shared_breaker import throwaway_redis

from resilient import ConcurrencyLimit, RateLimiter, retry
from resilient.redis import RedisStore

if TYPE_CHECKING:  # ForkServerContext exists on POSIX only
    from multiprocessing.context import ForkServerContext, SpawnContext

NAMESPACE = "resilient-fleet"
PACE = 0.975  # the fleet's rate, as a share of the API's


@dataclass(frozen=True)
class Fleet:
    """The run's settings, as the flags gave them."""

    processes: int
    threads: int
    tasks: int
    rate: float
    capacity: int
    service_time: float
    max_retries: int


@dataclass(frozen=True)
class Outcome:
    """What one worker process reports back."""

    done: int
    lost: int
    last_done_at: float  # time.monotonic(): the same clock in every process on one host
    outages: int  # times this process's store lost Redis (and paced alone meanwhile)


class OutageCounter(logging.Handler):
    """Counts the store's one WARNING per outage, instead of printing it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.outages = 0

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == "redis_store_unavailable":
            self.outages += 1


def worker(
    number: int,
    api_url: str,
    redis_url: str,
    paced: bool,
    fleet: Fleet,
    ready: Barrier,
    results: Queue[Outcome],
) -> None:
    """One process of the fleet: *threads* threads, each asking *tasks* questions."""
    import openai  # only the workers call the API (and their fork server has it loaded)

    # Each retry is a WARNING line; here they are counted (by the API), not printed.
    logging.getLogger("resilient").setLevel(logging.ERROR)
    outages = OutageCounter()
    store_logger = logging.getLogger("resilient.redis")
    store_logger.setLevel(logging.WARNING)
    store_logger.propagate = False
    store_logger.addHandler(outages)
    client = openai.OpenAI(base_url=api_url, api_key="not-needed", max_retries=0)
    limiter: RateLimiter | None = None
    slots: ConcurrencyLimit | None = None
    fleet_slots: ConcurrencyLimit | None = None
    if paced:
        store = RedisStore.from_url(redis_url, namespace=NAMESPACE)
        # The fleet's one rate: every process builds it with the same name. A
        # little under the API's own: requests jitter on their way, and a
        # server's bucket fed at exactly its own rate never refills.
        limiter = RateLimiter(fleet.rate * PACE, burst=1, name="llm-api", store=store)
        # Each process adapts its own share of the API's capacity...
        slots = ConcurrencyLimit(
            fleet.threads, adaptive=True, max_wait=60.0, name=f"llm-api-{number}"
        )
        # ...and never sends more at once than the whole API takes, fleet-wide.
        fleet_slots = ConcurrencyLimit(
            fleet.capacity, max_wait=60.0, lease_ttl=30.0, name="llm-api", store=store
        )

    @retry(max_retries=fleet.max_retries, base_delay=0.5, max_delay=8.0, limiter=limiter)
    def ask(question: str) -> str:
        if slots is None or fleet_slots is None:
            return answer(question)
        with slots, fleet_slots:
            return answer(question)

    def answer(question: str) -> str:
        reply = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": question}]
        )
        return reply.choices[0].message.content or ""

    done = lost = 0
    last_done_at = 0.0
    lock = threading.Lock()

    def agent(thread: int) -> None:
        nonlocal done, lost, last_done_at
        for task in range(fleet.tasks):
            try:
                ask(f"process {number}, thread {thread}: question {task}")
            except Exception:
                with lock:
                    lost += 1
            else:
                with lock:
                    done += 1
                    last_done_at = time.monotonic()

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(fleet.threads)]
    ready.wait()  # every process is up: the clock starts for all at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(Outcome(done, lost, last_done_at, outages.outages))


def run(fleet: Fleet, redis_url: str, *, paced: bool) -> bool:
    """Run the fleet once against a fresh API; print what happened; True if no task was lost."""
    context = _process_context()
    ready = context.Barrier(fleet.processes + 1)
    results: Queue[Outcome] = context.Queue()
    if paced:
        _forget_earlier_runs(redis_url)
    with RateLimitedAPI(fleet.rate, fleet.capacity, service_time=fleet.service_time) as api:
        processes = [
            context.Process(
                target=worker,
                args=(n, api.openai_url, redis_url, paced, fleet, ready, results),
                name=f"agent-{n}",
            )
            for n in range(fleet.processes)
        ]
        for process in processes:
            process.start()
        ready.wait()
        started = time.monotonic()
        outcomes = [results.get(timeout=600) for _ in processes]
        for process in processes:
            process.join(timeout=60)
        stats = api.stats()
    total = fleet.processes * fleet.threads * fleet.tasks
    done = sum(outcome.done for outcome in outcomes)
    lost = sum(outcome.lost for outcome in outcomes)
    finished = max(outcome.last_done_at for outcome in outcomes) - started
    goodput = done / finished / fleet.rate if finished > 0 else 0.0
    share = stats.refused / stats.requests if stats.requests else 0.0
    label = (
        "with pacing (shared RateLimiter + ConcurrencyLimits + @retry)"
        if paced
        else "without pacing (@retry alone)"
    )
    print(f"{label}:")
    print(f"  tasks: {done}/{total} done, {lost} lost")
    print(
        f"  requests sent: {stats.requests}, 429s received: {stats.refused} ({share:.1%}): "
        f"{stats.rate_limited} over the rate, {stats.over_capacity} over capacity; "
        f"at most {stats.max_in_flight} in flight"
    )
    print(f"  goodput: {goodput:.2f} of the API's capacity ({fleet.rate:g} requests/s)")
    print(f"  finished in {finished:.1f} s", flush=True)
    if paced:
        outages = sum(outcome.outages for outcome in outcomes)
        print(f"  Redis lost by a process (socket timeout; paced alone meanwhile): {outages}")
    return lost == 0 and done == total


def _process_context() -> ForkServerContext | SpawnContext:
    """How the worker processes start: forked from a server process that has imported
    this script and the SDK once (``forkserver``), where the platform has one; else each
    in a new interpreter (``spawn``), importing them again (a second of CPU each)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    forkserver = multiprocessing.get_context("forkserver")
    # The SDK, and the HTTP core its client loads when first built (skipped if absent).
    forkserver.set_forkserver_preload(["__main__", "openai", "httpcore2"])
    return forkserver


def _forget_earlier_runs(redis_url: str) -> None:
    """A fresh start: an earlier run's pause or reservations must not slow this one."""
    store = RedisStore.from_url(redis_url, namespace=NAMESPACE)
    for key in store.client.scan_iter(match=f"{{{NAMESPACE}:*"):
        store.client.delete(key)


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, then run the fleet without and with pacing."""
    parser = argparse.ArgumentParser(
        description="A fleet of LLM agents against one rate-limited API, without and with pacing."
    )
    parser.add_argument("--processes", type=int, default=10, help="worker processes (10)")
    parser.add_argument("--threads", type=int, default=4, help="threads per process (4)")
    parser.add_argument("--tasks", type=int, default=30, help="questions per thread (30)")
    parser.add_argument("--rate", type=float, default=40.0, help="the API's requests/s (40)")
    parser.add_argument("--capacity", type=int, default=8, help="the API's requests in flight (8)")
    parser.add_argument("--service-time", type=float, default=0.1, help="seconds per answer (0.1)")
    parser.add_argument("--max-retries", type=int, default=10, help="retries per question (10)")
    parser.add_argument(
        "--mode", choices=("both", "unpaced", "paced"), default="both", help="what to run (both)"
    )
    parser.add_argument("--redis", help="a Redis URL (default: start a throwaway redis-server)")
    options = parser.parse_args(argv)
    fleet = Fleet(
        options.processes,
        options.threads,
        options.tasks,
        options.rate,
        options.capacity,
        options.service_time,
        options.max_retries,
    )
    total = fleet.processes * fleet.threads * fleet.tasks
    print(
        f"{fleet.processes} processes x {fleet.threads} threads x {fleet.tasks} tasks = "
        f"{total} questions, against an API that allows {fleet.rate:g} requests/s and "
        f"{fleet.capacity} in flight (429 with Retry-After: 1 beyond)",
        flush=True,
    )
    if options.redis:
        return _both(fleet, options.redis, options.mode)
    with throwaway_redis() as url:
        return _both(fleet, url, options.mode)


def _both(fleet: Fleet, redis_url: str, mode: str) -> int:
    ok = True
    if mode in ("both", "unpaced"):
        ok = run(fleet, redis_url, paced=False) and ok
    if mode in ("both", "paced"):
        ok = run(fleet, redis_url, paced=True) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
