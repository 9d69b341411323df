"""Retry storms, simulated: the published contention model, and an outage.

Run: ``python benchmarks/herd.py [--quick] [--trials 20] [--sizes 10,50,100,200]``.
Deterministic (seeded ``random.Random`` streams), in virtual time: nothing
sleeps. Every delay a client waits is drawn from
``resilient.backoff.delays()``, and the outage scenario drives the library's
own ``RetryBudget`` and ``CircuitBreaker``, so what is measured is the
library, not a copy of it.

1. The storm: the model of Marc Brooker's "Exponential Backoff And Jitter"
   (AWS Architecture Blog, 2015), as its published simulator runs it.

   * One row in a remote store, with a version number, updated under
     optimistic concurrency. N clients each want to update it once; they all
     start at t = 0.
   * Every message crosses the network in one hop of ``|Normal(10 ms, 2 ms)|``
     (the post: mean 10 ms, variance 4 ms), drawn independently per hop.
   * One attempt is a read then a conditional write, four hops: the read
     request travels to the server, which reads the version *when the request
     arrives*; the reply travels back; the client sends the write at once,
     carrying that version; the server compares it with the current version
     *when the write arrives* (not when it was sent, and not when the reply
     reaches the client), and the write succeeds only if nobody else's write
     arrived in between; the verdict travels back.
   * A client whose write failed waits its next delay after the verdict
     reaches it, then starts a new attempt (read, write) and so on until it
     succeeds: no attempt limit, as in the post. Messages that arrive at
     the same instant (at t = 0 only, in practice) are handled in the order
     they were sent.
   * Delays: one ``delays(0.005, 2.0, jitter, rng=...)`` iterator per client
     (base 5 ms, cap 2 s, as in the post), ``jitter`` one of: no backoff
     (``delays(0, 0)``: zero wait), exponential without jitter
     (``jitter=False``), the default proportional jitter (``jitter=True``,
     uniform [0.75, 1.25] x nominal), ``FullJitter()``, ``EqualJitter()``,
     ``DecorrelatedJitter()``. One difference from the post's simulator: its
     first wait is ``2 x base`` (it counts attempts from 1), ours is ``base``
     (the library's nominal delay before retry n is ``base x 2**n``, n from 0).
   * Work ("calls") is the number of writes the server receives, which is
     what the post's simulator counts; every attempt also makes one read, so
     the messages on the wire are four times that. Completion time is when
     the last client learns its write succeeded. Both are means over the
     trials; trial k seeds the network's ``random.Random`` with ``"net:k"``
     and client i's jitter with ``"jitter:k:i"``, so no two streams are
     shared and every run gives the same figures.

2. The outage: N clients each need one call per tick (one virtual second;
   each client starts its call at its own fixed phase in [0, 0.5) s of the
   tick). The server fails every call (``ConnectionError``, TRANSIENT) from
   tick 10 to tick 40, then recovers; a brownout variant fails 90 % of them
   (the SRE book's "datacenter accepting a small amount of requests and
   rejecting a large portion"). Each call is retried as ``@retry`` does
   (``max_retries=3``, ``delays(0.05, 0.4)`` with the default jitter, so a
   call and its retries fit in the tick): after each failed attempt
   ``budget.record_failure()`` is asked first, then the attempt limit, and a
   success calls ``budget.record_success()``; the attempt goes through
   ``breaker.call(...)``, and a ``CircuitOpenError`` ends the call at once,
   without a retry and without reaching the server. The breaker
   (``failure_threshold=5``, ``recovery_timeout=5.0``) reads a
   ``resilient.testing.ManualClock`` that the event loop moves to each
   event's time. The budget is ``RetryBudget()``: 10 tokens, 0.1 refunded per
   success (the gRPC rule; at most one retry per ten successes, the SRE
   book's "10 % retry budget"). "shared" gives the N clients one budget and
   one breaker (N callers in one service, as the docs advise); "per client"
   gives each its own (N processes, the SRE book's per-client budget).
   Amplification is calls that reached the server divided by calls needed
   (N per tick), during the outage and after it; the calls that failed for
   good after the outage are reported too (the breaker's price: it rejects
   until its recovery timeout has passed).
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import itertools
import logging
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(__file__))

from _timing import machine

from resilient import CircuitBreaker, CircuitOpenError, RetryBudget
from resilient.backoff import DecorrelatedJitter, EqualJitter, FullJitter, JitterSpec, delays
from resilient.testing import ManualClock

# -- the storm --------------------------------------------------------------------

HOP_MEAN = 0.010
HOP_SD = 0.002
BASE_DELAY = 0.005
MAX_DELAY = 2.0


@dataclass(frozen=True)
class Strategy:
    """One way of waiting between attempts: ``delays(base_delay, max_delay, jitter)``."""

    name: str
    jitter: JitterSpec
    base_delay: float = BASE_DELAY
    max_delay: float = MAX_DELAY

    def waits(self, rng: random.Random) -> Iterator[float]:
        """A fresh iterator of delays for one client, drawing from *rng*."""
        return delays(self.base_delay, self.max_delay, self.jitter, rng=rng)


NO_BACKOFF = Strategy("no backoff", False, 0.0, 0.0)
EXPONENTIAL = Strategy("exponential, no jitter", False)
PROPORTIONAL = Strategy("proportional (default)", True)
FULL = Strategy("full jitter", FullJitter())
EQUAL = Strategy("equal jitter", EqualJitter())
DECORRELATED = Strategy("decorrelated jitter", DecorrelatedJitter())
STRATEGIES: tuple[Strategy, ...] = (
    NO_BACKOFF,
    EXPONENTIAL,
    PROPORTIONAL,
    FULL,
    EQUAL,
    DECORRELATED,
)

_READ_ARRIVES = 0
_WRITE_ARRIVES = 1


@dataclass(frozen=True)
class StormResult:
    """One simulated storm: writes the server received, and when the last client was done."""

    calls: int
    completion: float


def storm(
    clients: int,
    strategy: Strategy,
    trial: int,
    hop_mean: float = HOP_MEAN,
    hop_sd: float = HOP_SD,
) -> StormResult:
    """Run one storm of *clients* racing to update one row; see the module docstring."""
    net = random.Random(f"net:{trial}")
    normal = net.normalvariate

    def hop() -> float:
        return abs(normal(hop_mean, hop_sd))

    waits = [strategy.waits(random.Random(f"jitter:{trial}:{i}")) for i in range(clients)]
    order = itertools.count()  # ties in time (t = 0 only, in practice) go first come, first served
    events: list[tuple[float, int, int, int, int]] = []
    for client in range(clients):
        events.append((hop(), next(order), _READ_ARRIVES, client, 0))
    heapq.heapify(events)
    version = 0
    calls = 0
    completion = 0.0
    while events:
        now, _, kind, client, seen = heapq.heappop(events)
        if kind == _READ_ARRIVES:
            # The version is read now; the reply and the write each cross the network.
            heapq.heappush(
                events, (now + hop() + hop(), next(order), _WRITE_ARRIVES, client, version)
            )
            continue
        calls += 1
        if seen == version:
            version += 1
            completion = max(completion, now + hop())
            continue
        # Lost the race: the verdict travels back, the client waits, its next read travels out.
        retry_at = now + hop() + next(waits[client]) + hop()
        heapq.heappush(events, (retry_at, next(order), _READ_ARRIVES, client, 0))
    return StormResult(calls, completion)


@dataclass(frozen=True)
class StormRow:
    """The means of one strategy at one herd size, over the trials."""

    strategy: str
    clients: int
    calls: float
    completion: float


def storm_table(
    sizes: Sequence[int], trials: int, strategies: Sequence[Strategy] = STRATEGIES
) -> list[StormRow]:
    """Every strategy at every herd size, each figure the mean of *trials* storms."""
    rows: list[StormRow] = []
    for clients in sizes:
        for strategy in strategies:
            results = [storm(clients, strategy, trial) for trial in range(trials)]
            rows.append(
                StormRow(
                    strategy.name,
                    clients,
                    sum(r.calls for r in results) / trials,
                    sum(r.completion for r in results) / trials,
                )
            )
    return rows


# -- the outage -------------------------------------------------------------------


@dataclass(frozen=True)
class Outage:
    """The outage scenario's parameters (see the module docstring)."""

    clients: int = 100
    ticks: int = 60
    down_from: int = 10
    down_until: int = 40
    failure_rate: float = 1.0
    max_retries: int = 3
    base_delay: float = 0.05
    max_delay: float = 0.4
    failure_threshold: int = 5
    recovery_timeout: float = 5.0


@dataclass(frozen=True)
class Protection:
    """What stands between the clients and the server: a budget, a breaker, both or neither."""

    name: str
    budget: bool
    breaker: bool


PROTECTIONS: tuple[Protection, ...] = (
    Protection("plain retries", budget=False, breaker=False),
    Protection("RetryBudget", budget=True, breaker=False),
    Protection("CircuitBreaker", budget=False, breaker=True),
    Protection("budget + breaker", budget=True, breaker=True),
)
SCOPES = ("shared", "per client")


@dataclass
class OutageResult:
    """What one run of the outage did; ``per_tick`` holds the calls sent in each tick."""

    protection: str
    scope: str
    failure_rate: float
    needed_during: int = 0
    sent_during: int = 0
    needed_after: int = 0
    sent_after: int = 0
    failed_after: int = 0
    rejected: int = 0
    per_tick: list[float] = field(default_factory=list)

    @property
    def amplification_during(self) -> float:
        """Calls that reached the server per call needed, while it was down."""
        return self.sent_during / self.needed_during

    @property
    def amplification_after(self) -> float:
        """Calls that reached the server per call needed, once it had recovered."""
        return self.sent_after / self.needed_after


class _Server:
    """Strictly private. The dependency: fails while it is down, counts what reaches it."""

    __slots__ = ("clock", "down_from", "down_until", "failure_rate", "per_tick", "rng")

    def __init__(self, config: Outage, clock: ManualClock, rng: random.Random) -> None:
        self.clock = clock
        self.down_from = float(config.down_from)
        self.down_until = float(config.down_until)
        self.failure_rate = config.failure_rate
        self.rng = rng
        self.per_tick = [0] * config.ticks

    def call(self) -> str:
        now = self.clock.monotonic()
        self.per_tick[int(now)] += 1
        if self.down_from <= now < self.down_until and (
            self.failure_rate >= 1.0 or self.rng.random() < self.failure_rate
        ):
            raise ConnectionError("server unavailable")
        return "ok"


def outage(config: Outage, protection: Protection, scope: str, trial: int) -> OutageResult:
    """Run the outage once for one protection and scope; see the module docstring."""
    clock = ManualClock()
    server = _Server(config, clock, random.Random(f"server:{trial}"))
    shared = scope == "shared"
    slots = 1 if shared else config.clients
    budgets = [RetryBudget() if protection.budget else None for _ in range(slots)]
    breakers = [
        CircuitBreaker(
            failure_threshold=config.failure_threshold,
            recovery_timeout=config.recovery_timeout,
            name=f"outage-{i}",
            clock=clock,
        )
        if protection.breaker
        else None
        for i in range(slots)
    ]
    phase = random.Random(f"phase:{trial}")
    offsets = [phase.uniform(0.0, 0.5) for _ in range(config.clients)]
    # (time, order, client, tick, attempts made, its delays); one call per client per tick.
    events: list[tuple[float, int, int, int, int, Iterator[float] | None]] = []
    order = itertools.count()
    for tick in range(config.ticks):
        for client in range(config.clients):
            events.append((tick + offsets[client], next(order), client, tick, 0, None))
    heapq.heapify(events)
    result = OutageResult(protection.name, scope, config.failure_rate)
    failed = [0] * config.ticks
    max_attempts = config.max_retries + 1
    while events:
        now, _, client, tick, attempts, waits = heapq.heappop(events)
        clock.advance(now - clock.monotonic())
        slot = 0 if shared else client
        budget = budgets[slot]
        breaker = breakers[slot]
        try:
            if breaker is None:
                server.call()
            else:
                breaker.call(server.call)
        except CircuitOpenError:
            result.rejected += 1
            failed[tick] += 1  # an open circuit ends the call at once, never retried
            continue
        except ConnectionError:
            attempts += 1
            allowed = budget is None or budget.record_failure()
            if attempts >= max_attempts or not allowed:
                failed[tick] += 1
                continue
            if waits is None:
                waits = delays(
                    config.base_delay,
                    config.max_delay,
                    True,
                    rng=random.Random(f"jitter:{trial}:{client}:{tick}"),
                )
            heapq.heappush(events, (now + next(waits), next(order), client, tick, attempts, waits))
            continue
        if budget is not None:
            budget.record_success()
    for tick in range(config.ticks):
        if config.down_from <= tick < config.down_until:
            result.needed_during += config.clients
            result.sent_during += server.per_tick[tick]
        elif tick >= config.down_until:
            result.needed_after += config.clients
            result.sent_after += server.per_tick[tick]
            result.failed_after += failed[tick]
    result.per_tick = [float(calls) for calls in server.per_tick]
    return result


def outage_table(
    config: Outage,
    trials: int,
    failure_rates: Sequence[float] = (1.0, 0.9),
    scopes: Sequence[str] = SCOPES,
    protections: Sequence[Protection] = PROTECTIONS,
) -> list[OutageResult]:
    """Every protection in every scope and failure rate, each the mean of *trials* runs."""
    rows: list[OutageResult] = []
    for rate in failure_rates:
        run_config = dataclasses.replace(config, failure_rate=rate)
        for scope in scopes:
            for protection in protections:
                runs = [outage(run_config, protection, scope, trial) for trial in range(trials)]
                rows.append(_mean(runs))
    return rows


def _mean(runs: list[OutageResult]) -> OutageResult:
    first = runs[0]
    count = len(runs)
    mean = OutageResult(first.protection, first.scope, first.failure_rate)
    mean.needed_during = first.needed_during
    mean.needed_after = first.needed_after
    mean.sent_during = round(sum(r.sent_during for r in runs) / count)
    mean.sent_after = round(sum(r.sent_after for r in runs) / count)
    mean.failed_after = round(sum(r.failed_after for r in runs) / count)
    mean.rejected = round(sum(r.rejected for r in runs) / count)
    mean.per_tick = [
        sum(values) / count for values in zip(*(r.per_tick for r in runs), strict=True)
    ]
    return mean


# -- the command line -------------------------------------------------------------

FULL_SIZES = (10, 20, 30, 40, 50, 75, 100, 125, 150, 175, 200)
QUICK_SIZES = (10, 50, 100, 200)


def print_storm(rows: Sequence[StormRow]) -> None:
    """Print one table per herd size, with ratios to full jitter."""
    for clients in sorted({row.clients for row in rows}):
        group = [row for row in rows if row.clients == clients]
        full = next(row for row in group if row.strategy == FULL.name)
        print(f"\n{clients} clients")
        print(f"  {'strategy':24} {'calls':>9} {'x full':>7} {'done (ms)':>10} {'x full':>7}")
        for row in group:
            print(
                f"  {row.strategy:24} {row.calls:9.0f} {row.calls / full.calls:7.2f} "
                f"{row.completion * 1000:10.0f} {row.completion / full.completion:7.2f}"
            )


def print_outage(rows: Sequence[OutageResult], config: Outage) -> None:
    """Print the outage table, one block per failure rate."""
    for rate in sorted({row.failure_rate for row in rows}, reverse=True):
        what = "down" if rate >= 1.0 else f"failing {rate:.0%} of calls"
        print(
            f"\noutage: {config.clients} clients, server {what} from tick "
            f"{config.down_from} to {config.down_until}, {config.ticks} ticks"
        )
        print(
            f"  {'protection':18} {'scope':10} {'sent during':>12} {'x needed':>9} "
            f"{'sent after':>11} {'x needed':>9} {'failed after':>13}"
        )
        for row in (r for r in rows if r.failure_rate == rate):
            print(
                f"  {row.protection:18} {row.scope:10} {row.sent_during:12d} "
                f"{row.amplification_during:9.2f} {row.sent_after:11d} "
                f"{row.amplification_after:9.2f} {row.failed_after:13d}"
            )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description="Retry storms, simulated.")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and trials")
    parser.add_argument(
        "--trials", type=int, default=None, help="runs averaged (default 20; 10 with --quick)"
    )
    parser.add_argument("--sizes", default=None, help="comma-separated herd sizes")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run both scenarios and print their tables."""
    args = parse_args(argv)
    trials = args.trials or (10 if args.quick else 20)
    sizes = (
        tuple(int(part) for part in args.sizes.split(","))
        if args.sizes
        else (QUICK_SIZES if args.quick else FULL_SIZES)
    )
    logging.getLogger("resilient").addHandler(logging.NullHandler())
    logging.getLogger("resilient").propagate = False
    print(machine())
    start = time.perf_counter()
    print(f"storm: mean of {trials} trials, base 5 ms, cap 2 s, hop |N(10 ms, 2 ms)|")
    print_storm(storm_table(sizes, trials))
    config = Outage()
    print_outage(outage_table(config, trials), config)
    print(f"\nsimulated in {time.perf_counter() - start:.1f} s of real time")


if __name__ == "__main__":
    main()
