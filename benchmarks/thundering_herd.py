"""Thundering herd: the jitter strategies compared on total work and completion time.

Run: python benchmarks/thundering_herd.py [--clients 50,100,200] [--seeds 20]

A discrete-event simulation in virtual time (nothing sleeps), after Marc
Brooker's "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015).

Model (a rate-limited server, chosen over the blog's optimistic-concurrency
model because it is the overload most retry loops of this library meet):

* N clients each need one successful call; all make their first attempt at
  t = 0.
* The server accepts at most ``capacity`` requests per fixed time window
  (``[k * window, (k + 1) * window)``), first come first served; a call costs
  no service time. Every request beyond the capacity of its window is refused
  at once, and a refused request still counts as work.
* A refused client waits the next value of its own iterator
  ``delays(base, cap, jitter, rng=random.Random(run_seed + i))``, the public
  function whose sequence the retry loop draws, then tries again; it gives up
  after ``--max-attempts`` attempts so that every run stops.
* Events (client i attempts at time t) live in a heap ordered by time, ties
  broken by client number.

For each strategy the figures are averaged over ``--seeds`` runs: total calls
(work), the time at which the last client succeeded (completion), mean attempts
per client, clients that gave up, and work and completion as a ratio of the
no-jitter row. ``run_seed`` is ``seed * 1_000_003`` so that no two clients of
any two runs share a random stream.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(__file__))

from _timing import machine

from resilient.backoff import (
    DecorrelatedJitter,
    EqualJitter,
    FullJitter,
    JitterSpec,
    delays,
)

STRATEGIES: list[tuple[str, JitterSpec]] = [
    ("none (jitter=False)", False),
    ("proportional (True)", True),
    ("full", FullJitter()),
    ("equal", EqualJitter()),
    ("decorrelated", DecorrelatedJitter()),
]
SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class Config:
    """The parameters shared by every run."""

    capacity: int
    window: float
    base: float
    cap: float
    max_attempts: int


@dataclass(frozen=True)
class RunResult:
    """What one simulated herd did."""

    calls: int
    completion: float
    gave_up: int


def simulate(clients: int, jitter: JitterSpec, run_seed: int, config: Config) -> RunResult:
    """Run one herd of *clients* against the rate-limited server, in virtual time."""
    waits: list[Iterator[float]] = [
        delays(config.base, config.cap, jitter, rng=random.Random(run_seed + i))
        for i in range(clients)
    ]
    attempts = [0] * clients
    heap: list[tuple[float, int]] = [(0.0, i) for i in range(clients)]
    heapq.heapify(heap)
    current_window = -1
    served = 0
    calls = 0
    completion = 0.0
    gave_up = 0
    while heap:
        now, client = heapq.heappop(heap)
        calls += 1
        attempts[client] += 1
        window = int(now // config.window)
        if window != current_window:
            current_window = window
            served = 0
        if served < config.capacity:
            served += 1
            completion = max(completion, now)
            continue
        if attempts[client] >= config.max_attempts:
            gave_up += 1
            continue
        heapq.heappush(heap, (now + next(waits[client]), client))
    return RunResult(calls, completion, gave_up)


@dataclass(frozen=True)
class Row:
    """The averages of one strategy over the seeds."""

    name: str
    calls: float
    completion: float
    gave_up: float


def measure(clients: int, seeds: int, config: Config) -> list[Row]:
    """Average every strategy over *seeds* runs of a herd of *clients*."""
    rows: list[Row] = []
    for name, jitter in STRATEGIES:
        results = [simulate(clients, jitter, seed * SEED_STRIDE, config) for seed in range(seeds)]
        rows.append(
            Row(
                name,
                sum(r.calls for r in results) / seeds,
                sum(r.completion for r in results) / seeds,
                sum(r.gave_up for r in results) / seeds,
            )
        )
    return rows


def report(clients: int, rows: list[Row]) -> None:
    """Print one table, with ratios against the first (no-jitter) row."""
    floor = rows[0]
    print(f"\n{clients} clients")
    print(
        f"  {'strategy':22} {'calls':>9} {'completion s':>13} {'attempts':>9} "
        f"{'gave up':>8} {'calls x none':>13} {'time x none':>12}"
    )
    for row in rows:
        calls_ratio = row.calls / floor.calls if floor.calls else float("nan")
        time_ratio = row.completion / floor.completion if floor.completion else float("nan")
        print(
            f"  {row.name:22} {row.calls:9.1f} {row.completion:13.2f} "
            f"{row.calls / clients:9.2f} {row.gave_up:8.1f} "
            f"{calls_ratio:13.2f} {time_ratio:12.2f}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; every default is the blog-like setting described above."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", default="50,100,200", help="comma-separated herd sizes")
    parser.add_argument("--seeds", type=int, default=20, help="runs averaged per figure")
    parser.add_argument("--capacity", type=int, default=10, help="requests served per window")
    parser.add_argument("--window", type=float, default=1.0, help="window length, seconds")
    parser.add_argument("--base", type=float, default=0.1, help="base_delay, seconds")
    parser.add_argument("--cap", type=float, default=10.0, help="max_delay, seconds")
    parser.add_argument("--max-attempts", type=int, default=100, help="attempts per client")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sizes = [int(part) for part in str(args.clients).split(",") if part.strip()]
    seeds = int(args.seeds)
    config = Config(
        capacity=int(args.capacity),
        window=float(args.window),
        base=float(args.base),
        cap=float(args.cap),
        max_attempts=int(args.max_attempts),
    )
    print(machine())
    print(
        f"server: {config.capacity} requests per {config.window:g} s window; "
        f"delays: base {config.base:g} s, cap {config.cap:g} s; "
        f"at most {config.max_attempts} attempts; mean of {seeds} seeds"
    )
    start = time.perf_counter()
    for clients in sizes:
        report(clients, measure(clients, seeds, config))
    print(f"\nsimulated in {time.perf_counter() - start:.1f} s of real time")


if __name__ == "__main__":
    main()
