"""Pacing a fleet against a rate-limited API, simulated; and what pacing costs per call.

Run: ``python benchmarks/pacing.py [--quick] [--plot PATH]``. The simulations
are deterministic (seeded ``random.Random`` streams) and run in virtual time:
nothing sleeps. The clients use the library's real objects: ``RateLimiter``
(``acquire``, ``pause``) on a virtual clock whose ``sleep`` hands the wait to
the event loop instead of blocking, ``ConcurrencyLimit`` (``with``, adaptive)
and the delays of ``resilient.backoff.delays``, with ``@retry``'s rule for a
``Retry-After`` (``max(backoff, asked)``).

1. The fleet. An API allows ``RATE`` requests per second (a token bucket of
   ``SERVER_BURST``) and ``CAPACITY`` requests in flight; beyond either it
   answers 429 with ``Retry-After: 1`` in 5 ms. An admitted request takes
   100 ms (+-20 %). Ten clients (processes) of four workers each run 50 tasks
   each (500 in all); a task is one successful request. The strategies, side
   by side:

   * **openai SDK policy**: 2 retries, 0.5 s doubling to 8 s, minus 0 to 25 %
     jitter, a ``Retry-After`` up to 60 s honoured as asked; a task that
     fails three times is lost.
   * **tenacity, full jitter**: ``wait_random_exponential(multiplier=0.5,
     max=8)``, ``stop_after_attempt(6)``; ``Retry-After`` ignored.
   * **@retry alone**: ``delays(0.5, 8.0)`` with the default jitter,
     ``max(delay, Retry-After)``, ``max_retries=10``.
   * **+ RateLimiter per client**: the same, each client pacing itself with a
     ``RateLimiter(RATE)`` of its own (the provider's documented limit, as
     each process would be configured alone), paused by a 429's
     ``Retry-After``.
   * **+ shared RateLimiter**: one ``RateLimiter(RATE)`` for the fleet (one
     ``PacingStore`` and name: what ``RedisStore`` gives processes).
   * **+ adaptive ConcurrencyLimit**: the shared limiter, and in each client a
     ``ConcurrencyLimit(4, adaptive=True)`` that every attempt runs in.

   Reported: requests sent, 429s (overall, and after the first 2 s: "once
   converged"), goodput (tasks completed per second over the API's capacity,
   ``RATE``), finishing time, tasks lost.

2. The adaptive limit. The same API without a rate limit, ``ADAPT_CAPACITY``
   in flight, doubling at 60 s; ten clients with 64 workers each and an
   endless backlog, each running its attempts in its own
   ``ConcurrencyLimit(4, adaptive=True, max_limit=64)``. Reported: the sum of
   the ten limits against the capacity, second by second: within 10 % of it
   after 30 s, and back within 10 % of the doubled capacity within 60 s.

3. Cost per call, against floors measured in the same run:
   ``RateLimiter.try_acquire()`` admitted against a ``threading.Lock``
   acquire/release plus ``time.monotonic()``; ``with ConcurrencyLimit`` against
   a ``threading.BoundedSemaphore`` acquire/release.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import itertools
import logging
import math
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from _timing import FLOOR, OURS, REFERENCE, Goal, Report, Row, measure, print_report

from resilient import ConcurrencyLimit, ConcurrencyLimitExceeded, RateLimiter
from resilient.backoff import delays

RATE = 40.0
"""Requests per second the API allows (its capacity: the concurrency allows more)."""
SERVER_BURST = 5.0
CAPACITY = 8
"""Requests in flight the API allows."""
SERVICE = 0.1
REJECT = 0.005
RETRY_AFTER = 1.0
CLIENTS = 10
WORKERS = 4
TASKS = 50
CONVERGED_AFTER = 2.0

ADAPT_CAPACITY = 80
ADAPT_WORKERS = 64
ADAPT_DOUBLES_AT = 60.0
ADAPT_END = 150.0

GOODPUT_PATH = "fleet against a rate-limited API (benchmarks/, simulated)"
GOODPUT_TARGET = "goodput >= 95% of the API's capacity, < 1% 429s once converged"
ADAPT_PATH = "adaptive ConcurrencyLimit against a concurrency capacity (simulated)"
ADAPT_TARGET = "within 10% of the capacity after 30 s; back within 60 s after it doubles"
TRY_ACQUIRE_PATH = "`RateLimiter.try_acquire`, admitted, in process"
TRY_ACQUIRE_TARGET = "<= 2.0x a `threading.Lock` acquire/release plus `time.monotonic()`"
CONCURRENCY_PATH = "`ConcurrencyLimit`, in process"
CONCURRENCY_TARGET = "<= 2.0x a `threading.BoundedSemaphore` acquire/release"


# -- the event loop -------------------------------------------------------------------


class Loop:
    """A discrete-event loop: callbacks at virtual times, in order."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def at(self, when: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), callback))

    def run(self, until: float = math.inf) -> None:
        while self._queue and self._queue[0][0] <= until:
            self.now, _, callback = heapq.heappop(self._queue)
            callback()


class DeferredClock:
    """A ``Clock`` on the loop's virtual time whose ``asleep`` is handed to the loop.

    A worker drives ``RateLimiter.acquire_async`` by hand: each wait it
    awaits comes out as a ``("sleep", seconds)`` step, which the loop runs
    before the coroutine goes on (and, if its limiter learned of a pause
    meanwhile, confirms its turn, as a real caller does).
    """

    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def monotonic(self) -> float:
        return self.loop.now

    def sleep(self, seconds: float) -> None:  # pragma: no cover - the workers wait through asleep
        raise NotImplementedError("the simulated workers wait through asleep")

    async def asleep(self, seconds: float) -> None:
        await _Sleep(seconds)


class _Sleep:
    """An awaitable that hands its wait to whoever drives the coroutine."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __await__(self) -> Generator[float, None, None]:
        yield self.seconds


def paced(limiter: RateLimiter) -> Generator[Step, Any, None]:
    """Run ``limiter.acquire_async()`` in the loop: its waits become the loop's sleeps."""
    acquiring = limiter.acquire_async()
    try:
        while True:
            wait = acquiring.send(None)
            yield ("sleep", wait)
    except StopIteration:
        return


class Api:
    """The server: a token bucket of RATE/s and CAPACITY in flight; 429 + Retry-After beyond."""

    def __init__(self, loop: Loop, rate: float, burst: float, capacity: int, seed: str) -> None:
        self.loop = loop
        self.rate = rate
        self.burst = burst
        self.capacity = capacity
        self.tokens = burst
        self.updated = 0.0
        self.in_flight = 0
        self.rng = random.Random(seed)
        self.sent: list[float] = []
        self.rejected: list[float] = []

    def send(self, reply: Callable[[int], None]) -> None:
        now = self.loop.now
        self.sent.append(now)
        if math.isfinite(self.rate):
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.in_flight >= self.capacity or self.tokens < 1.0:
            self.rejected.append(now)
            self.loop.at(now + REJECT, lambda: reply(429))
            return
        self.tokens -= 1.0
        self.in_flight += 1

        def done() -> None:
            self.in_flight -= 1
            reply(200)

        self.loop.at(now + SERVICE * self.rng.uniform(0.8, 1.2), done)


class Busy(Exception):
    """A 429 as the adaptive limit sees it: status and Retry-After on a response."""

    def __init__(self) -> None:
        super().__init__("429 Too Many Requests")
        self.response = _Response()


class _Response:
    status_code = 429
    headers = {"Retry-After": "1"}  # noqa: RUF012 - read only


# -- the strategies -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Strategy:
    """How a client retries, and what paces it."""

    name: str
    next_delay: Callable[[random.Random, int, Any], float | None]
    """(rng, failures so far, the delays iterator) -> seconds to wait, or None: give up."""
    new_delays: Callable[[random.Random], Any] = lambda rng: None
    limiter: str = ""  # "", "client", "shared"
    adaptive: bool = False


def _openai(rng: random.Random, failures: int, _: Any) -> float | None:
    if failures > 2:
        return None
    return RETRY_AFTER  # openai honours a Retry-After of up to 60 s as asked


def _tenacity(rng: random.Random, failures: int, _: Any) -> float | None:
    if failures >= 6:
        return None
    return rng.uniform(0, min(8.0, 0.5 * 2**failures))


def _ours(rng: random.Random, failures: int, state: Any) -> float | None:
    if failures > 10:
        return None
    return max(next(state), RETRY_AFTER)  # @retry: max(backoff, Retry-After)


def _our_delays(rng: random.Random) -> Any:
    return delays(0.5, 8.0, True, rng=rng)


STRATEGIES = (
    Strategy("openai SDK policy", _openai),
    Strategy("tenacity, full jitter", _tenacity),
    Strategy("@retry alone", _ours, _our_delays),
    Strategy("+ RateLimiter per client", _ours, _our_delays, limiter="client"),
    Strategy("+ shared RateLimiter", _ours, _our_delays, limiter="shared"),
    Strategy("+ adaptive ConcurrencyLimit", _ours, _our_delays, limiter="shared", adaptive=True),
)


# -- one client worker ------------------------------------------------------------------

Step = tuple[str, Any]


def worker(
    loop: Loop,
    clock: DeferredClock,
    strategy: Strategy,
    rng: random.Random,
    backlog: list[int],
    limiter: RateLimiter | None,
    limit: ConcurrencyLimit | None,
    done: list[float],
    lost: list[float],
) -> Generator[Step, Any, None]:
    """One worker: takes tasks until none is left; each until success or the policy gives up."""
    while backlog[0] > 0:
        backlog[0] -= 1
        failures = 0
        state = strategy.new_delays(rng)
        while True:
            if limiter is not None:
                yield from paced(limiter)  # reserves the turn; the loop runs its wait
            if limit is not None:
                while True:
                    try:
                        limit.__enter__()
                        break
                    except ConcurrencyLimitExceeded:
                        yield ("slot", limit)
            status = yield ("send", None)
            if limit is not None:
                if status == 200:
                    limit.__exit__(None, None, None)
                else:
                    busy = Busy()
                    limit.__exit__(Busy, busy, None)
                yield ("released", limit)
            if status == 200:
                done.append(loop.now)
                break
            if limiter is not None:
                limiter.pause(RETRY_AFTER)  # the server said when: every caller sharing it waits
            failures += 1
            delay = strategy.next_delay(rng, failures, state)
            if delay is None:
                lost.append(loop.now)
                break
            yield ("sleep", delay)


class Fleet:
    """Runs worker generators on the loop against the API."""

    def __init__(self, loop: Loop, api: Api) -> None:
        self.loop = loop
        self.api = api
        self.waiting: dict[int, list[Generator[Step, Any, None]]] = {}

    def start(self, gen: Generator[Step, Any, None], at: float = 0.0) -> None:
        self.loop.at(at, lambda: self.step(gen, None))

    def step(self, gen: Generator[Step, Any, None], value: Any) -> None:
        try:
            kind, arg = gen.send(value)
        except StopIteration:
            return
        if kind == "sleep":
            self.loop.at(self.loop.now + arg, lambda: self.step(gen, None))
        elif kind == "send":
            self.api.send(lambda status: self.step(gen, status))
        elif kind == "slot":
            self.waiting.setdefault(id(arg), []).append(gen)
        elif kind == "released":
            queue = self.waiting.get(id(arg))
            if queue:
                waiter = queue.pop(0)
                self.loop.at(self.loop.now, lambda: self.step(waiter, None))
            self.loop.at(self.loop.now, lambda: self.step(gen, None))


# -- scenario 1: the fleet ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FleetResult:
    name: str
    sent: int
    rejected: int
    rejected_converged: float
    completed: int
    lost: int
    finished: float

    @property
    def goodput(self) -> float:
        return self.completed / self.finished / RATE if self.finished else 0.0

    @property
    def share_429(self) -> float:
        return self.rejected / self.sent if self.sent else 0.0


def run_fleet(strategy: Strategy, seed: int = 0) -> FleetResult:
    """Ten clients of four workers, 50 tasks each, against the API."""
    loop = Loop()
    clock = DeferredClock(loop)
    api = Api(loop, RATE, SERVER_BURST, CAPACITY, f"api:{seed}")
    fleet = Fleet(loop, api)
    # One limiter object for the fleet: the rule a shared store runs, without a round trip.
    # (Its waiters all hear of every pause, as one process's do; through Redis a waiter of
    # another process may not, and go at its turn: it changes nothing while no 429 comes.)
    shared = RateLimiter(RATE, name="api", clock=clock)
    done: list[float] = []
    lost: list[float] = []
    for client in range(CLIENTS):
        backlog = [TASKS]
        limiter = None
        if strategy.limiter == "shared":
            limiter = shared
        elif strategy.limiter == "client":
            limiter = RateLimiter(RATE, clock=clock)
        limit = ConcurrencyLimit(WORKERS, adaptive=True) if strategy.adaptive else None
        for index in range(WORKERS):
            rng = random.Random(f"client:{seed}:{client}:{index}")
            gen = worker(loop, clock, strategy, rng, backlog, limiter, limit, done, lost)
            fleet.start(gen, at=rng.uniform(0, 0.01))
    loop.run()
    finished = max(done + lost) if done or lost else 0.0
    converged_sent = [t for t in api.sent if t >= CONVERGED_AFTER]
    converged_rejected = [t for t in api.rejected if t >= CONVERGED_AFTER]
    return FleetResult(
        strategy.name,
        len(api.sent),
        len(api.rejected),
        len(converged_rejected) / len(converged_sent) if converged_sent else 0.0,
        len(done),
        len(lost),
        finished,
    )


# -- scenario 2: the adaptive limit ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AdaptResult:
    times: list[float]
    limits: list[int]
    capacities: list[int]
    settled_first: float | None
    """Seconds after the start when the sum stayed within 10 % of the capacity until 60 s."""
    worst_after_30: float
    """The largest relative distance from the capacity between 30 s and 60 s."""
    settled_second: float | None
    """Seconds after the doubling when the sum came within 10 % of it and stayed there."""


def run_adaptive(end: float = ADAPT_END, seed: int = 0) -> AdaptResult:
    """Ten clients with endless work, each with its own adaptive limit; the capacity doubles."""
    loop = Loop()
    clock = DeferredClock(loop)
    api = Api(loop, math.inf, math.inf, ADAPT_CAPACITY, f"adapt:{seed}")
    fleet = Fleet(loop, api)
    strategy = Strategy("adaptive", _ours, _our_delays)
    limits = [
        ConcurrencyLimit(WORKERS, adaptive=True, max_limit=ADAPT_WORKERS) for _ in range(CLIENTS)
    ]
    done: list[float] = []
    lost: list[float] = []
    for client, limit in enumerate(limits):
        backlog = [10**9]
        for index in range(ADAPT_WORKERS):
            rng = random.Random(f"adapt:{seed}:{client}:{index}")
            gen = worker(loop, clock, strategy, rng, backlog, None, limit, done, lost)
            fleet.start(gen, at=rng.uniform(0, 0.01))

    def double() -> None:
        api.capacity = 2 * ADAPT_CAPACITY

    loop.at(ADAPT_DOUBLES_AT, double)
    times: list[float] = []
    sums: list[int] = []
    capacities: list[int] = []
    tick = 0.5
    t = tick
    while t <= end:
        loop.run(until=t)
        times.append(t)
        sums.append(sum(limit.limit for limit in limits))
        capacities.append(api.capacity)
        t += tick

    def settled(start: float, stop: float, capacity: int) -> float | None:
        window = [(t, s) for t, s in zip(times, sums, strict=True) if start <= t < stop]
        for i, (when, _) in enumerate(window):
            if all(abs(s - capacity) <= 0.1 * capacity for _, s in window[i:]):
                return when - start
        return None

    first = [s for t, s in zip(times, sums, strict=True) if 30.0 <= t < ADAPT_DOUBLES_AT]
    worst = max(abs(s - ADAPT_CAPACITY) / ADAPT_CAPACITY for s in first) if first else math.inf
    return AdaptResult(
        times,
        sums,
        capacities,
        settled(0.0, ADAPT_DOUBLES_AT, ADAPT_CAPACITY),
        worst,
        settled(ADAPT_DOUBLES_AT, end + tick, 2 * ADAPT_CAPACITY),
    )


# -- scenario 3: cost per call ---------------------------------------------------------


def cost_rows(quick: bool) -> list[Row]:
    """try_acquire against Lock + monotonic; with ConcurrencyLimit against BoundedSemaphore."""
    lock = threading.Lock()
    monotonic = time.monotonic
    limiter = RateLimiter(1e12, burst=1e6)  # always admits: the admitted path
    try_acquire = limiter.try_acquire

    def lock_and_clock() -> None:
        with lock:
            monotonic()

    semaphore = threading.BoundedSemaphore(8)

    def bounded_semaphore() -> None:
        with semaphore:
            pass

    limit = ConcurrencyLimit(8)

    def concurrency_limit() -> None:
        with limit:
            pass

    results = measure(
        {
            "Lock acquire/release + time.monotonic()": lock_and_clock,
            "RateLimiter.try_acquire(), admitted": try_acquire,
            "BoundedSemaphore acquire/release": bounded_semaphore,
            "with ConcurrencyLimit": concurrency_limit,
        },
        quick=quick,
    )
    rate_group = "pacing: `RateLimiter.try_acquire`, admitted"
    slot_group = "pacing: `ConcurrencyLimit`, a free slot"
    return [
        Row(
            rate_group,
            "Lock acquire/release + time.monotonic()",
            results["Lock acquire/release + time.monotonic()"],
            FLOOR,
        ),
        Row(
            rate_group,
            "RateLimiter.try_acquire(), admitted",
            results["RateLimiter.try_acquire(), admitted"],
            OURS,
        ),
        Row(
            slot_group,
            "BoundedSemaphore acquire/release",
            results["BoundedSemaphore acquire/release"],
            FLOOR,
        ),
        Row(slot_group, "with ConcurrencyLimit", results["with ConcurrencyLimit"], OURS),
    ]


# -- the report ------------------------------------------------------------------------

FLEET_GROUP = (
    f"pacing: {CLIENTS} clients x {TASKS} tasks against {RATE:g} req/s and {CAPACITY} in flight"
)


def run(quick: bool) -> Report:
    """Every scenario, as rows and goals for run_all."""
    logging.disable(logging.CRITICAL)
    fleet = [run_fleet(strategy) for strategy in STRATEGIES]
    adapt = run_adaptive()
    rows = cost_rows(quick)
    for result in fleet:
        rows.append(
            Row(
                FLEET_GROUP,
                result.name,
                round(100 * result.goodput, 1),
                OURS if result.name.startswith(("@retry", "+")) else REFERENCE,
                unit="goodput %",
                note=(
                    f"{result.sent} requests, {result.share_429:.0%} 429s "
                    f"({result.rejected_converged:.1%} after {CONVERGED_AFTER:g} s), "
                    f"done at {result.finished:.1f} s, {result.lost} lost"
                ),
            )
        )
    shared = next(r for r in fleet if r.name == "+ shared RateLimiter")
    fleet_met = shared.goodput >= 0.95 and shared.rejected_converged < 0.01
    adapt_met = (
        adapt.worst_after_30 <= 0.1
        and adapt.settled_second is not None
        and adapt.settled_second <= 60.0
    )
    second = "never" if adapt.settled_second is None else f"{adapt.settled_second:.1f} s"
    goals = [
        Goal(
            TRY_ACQUIRE_PATH,
            TRY_ACQUIRE_TARGET,
            rows[0].group,
            ("RateLimiter.try_acquire(), admitted",),
            "Lock acquire/release + time.monotonic()",
            2.0,
            when_missed=(
                "an admitted acquire records itself for the caller's thread (a thread-local "
                "attribute, once a look at asyncio's running tasks found none), so that "
                "refund() can give it back: about a fifth of the cost"
            ),
        ),
        Goal(
            CONCURRENCY_PATH,
            CONCURRENCY_TARGET,
            rows[2].group,
            ("with ConcurrencyLimit",),
            "BoundedSemaphore acquire/release",
            2.0,
        ),
        Goal(
            GOODPUT_PATH,
            GOODPUT_TARGET,
            figure=(
                f"shared RateLimiter: goodput {shared.goodput:.1%}, "
                f"{shared.rejected_converged:.2%} 429s after {CONVERGED_AFTER:g} s"
            ),
            met=fleet_met,
            when_missed="see the fleet table: which strategy row falls short, and by what",
        ),
        Goal(
            ADAPT_PATH,
            ADAPT_TARGET,
            figure=(
                f"worst {adapt.worst_after_30:.0%} off between 30 and 60 s; "
                f"within 10% of the doubled capacity {second} after it doubled"
            ),
            met=adapt_met,
        ),
    ]
    return Report(rows, goals)


def plot(
    path: str, fleet: Sequence[FleetResult] | None = None, adapt: AdaptResult | None = None
) -> None:
    """Goodput and 429s per strategy; the sum of the adaptive limits against the capacity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fleet = fleet if fleet is not None else [run_fleet(s) for s in STRATEGIES]
    adapt = adapt if adapt is not None else run_adaptive()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [r.name for r in fleet]
    positions = range(len(fleet))
    left.barh(list(positions), [r.goodput for r in fleet], color="tab:green", label="goodput")
    left.barh(
        list(positions), [-r.share_429 for r in fleet], color="tab:red", label="share of 429s"
    )
    left.set_yticks(list(positions), names)
    left.invert_yaxis()
    left.axvline(0.95, color="grey", linestyle=":", linewidth=1)
    left.set_xlim(-1, 1.05)
    left.set_xlabel("429s (left) | goodput over capacity (right)")
    left.set_title(f"{CLIENTS} clients x {TASKS} tasks, {RATE:g} req/s, {CAPACITY} in flight")
    left.legend(loc="lower left", fontsize="small")
    right.plot(adapt.times, adapt.limits, label="sum of the 10 adaptive limits")
    right.plot(adapt.times, adapt.capacities, color="black", linestyle="--", label="capacity")
    right.fill_between(
        adapt.times,
        [0.9 * c for c in adapt.capacities],
        [1.1 * c for c in adapt.capacities],
        color="grey",
        alpha=0.2,
        label="capacity +-10%",
    )
    right.set_xlabel("virtual seconds")
    right.set_ylabel("calls in flight allowed")
    right.set_title("Adaptive ConcurrencyLimit, capacity doubling at 60 s")
    right.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timing rounds")
    parser.add_argument("--plot", default="", help="write the plot to this PNG file")
    args = parser.parse_args(argv)
    report = run(args.quick)
    print_report(report)
    if args.plot:
        plot(args.plot)
        print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
