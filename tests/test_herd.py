"""The retry-storm and outage simulations of ``benchmarks/herd.py``, reduced, and what they show.

Not timed: every figure is a count of simulated calls in virtual time.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from resilient.backoff import FullJitter

ROOT = Path(__file__).resolve().parent.parent


def _load_herd() -> ModuleType:
    """Import ``benchmarks/herd.py`` by path: ``benchmarks/`` is not a package."""
    spec = importlib.util.spec_from_file_location("herd", ROOT / "benchmarks" / "herd.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["herd"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


herd = _load_herd()

CLIENTS = 100
TRIALS = 5


@pytest.fixture(scope="module")
def storm_at_100() -> dict[str, Any]:
    """Every strategy at N = 100, mean of a few trials, by strategy name."""
    rows = herd.storm_table((CLIENTS,), TRIALS)
    return {row.strategy: row for row in rows}


@pytest.fixture(autouse=True)
def _quiet_breakers() -> Iterator[None]:
    # The outage opens breakers, which log; those lines say nothing here.
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def test_a_write_is_judged_when_it_reaches_the_server() -> None:
    """Two clients read version 0; the first write to arrive wins, the other retries.

    With every hop exactly 10 ms: reads arrive at 10 ms, writes at 30 ms; the
    loser hears at 40 ms, waits the first delay (5 ms), reads at 55 ms, writes
    at 75 ms and hears of its success at 85 ms.
    """
    result = herd.storm(2, herd.EXPONENTIAL, trial=0, hop_sd=0.0)
    assert result.calls == 3
    assert result.completion == pytest.approx(0.085)


def test_one_client_never_loses() -> None:
    """Alone, a client writes once: a read and a write, four hops."""
    result = herd.storm(1, herd.FULL, trial=3, hop_sd=0.0)
    assert result.calls == 1
    assert result.completion == pytest.approx(0.040)


class CountingJitter:
    """Full jitter that counts how often ``delays()`` asks it for a wait."""

    def __init__(self) -> None:
        self.asked = 0
        self.full = FullJitter(random.Random(11))

    def __call__(self, nominal: float, previous: float, base: float, cap: float) -> float:
        self.asked += 1
        return self.full(nominal, previous, base, cap)


def test_every_lost_race_waits_one_delay_from_the_library() -> None:
    """The waits are drawn from ``resilient.backoff.delays``: one per failed write."""
    jitter = CountingJitter()
    result = herd.storm(30, herd.Strategy("counting", jitter), trial=1)
    assert jitter.asked == result.calls - 30


def test_a_storm_is_reproducible() -> None:
    """The same trial gives the same figures; another trial draws other numbers."""
    first = herd.storm(40, herd.DECORRELATED, trial=2)
    assert herd.storm(40, herd.DECORRELATED, trial=2) == first
    assert herd.storm(40, herd.DECORRELATED, trial=5) != first


def test_exponential_without_jitter_needs_twice_the_calls_of_full_jitter(
    storm_at_100: dict[str, Any],
) -> None:
    """The post's finding: backoff alone leaves clients colliding in step."""
    expo = storm_at_100[herd.EXPONENTIAL.name]
    full = storm_at_100[herd.FULL.name]
    assert expo.calls >= 2 * full.calls


def test_no_backoff_needs_the_most_calls(storm_at_100: dict[str, Any]) -> None:
    """Retrying at once costs more work than any backoff."""
    none = storm_at_100[herd.NO_BACKOFF.name]
    others = [row for name, row in storm_at_100.items() if name != herd.NO_BACKOFF.name]
    assert all(none.calls > row.calls for row in others)


def test_decorrelated_jitter_is_within_half_again_of_full_jitter(
    storm_at_100: dict[str, Any],
) -> None:
    """Decorrelated jitter does a little more work than full jitter, not much more."""
    decorrelated = storm_at_100[herd.DECORRELATED.name]
    full = storm_at_100[herd.FULL.name]
    assert decorrelated.calls <= 1.5 * full.calls


def test_exponential_without_jitter_finishes_last(storm_at_100: dict[str, Any]) -> None:
    """In step, clients keep colliding while their waits double: the slowest to finish."""
    expo = storm_at_100[herd.EXPONENTIAL.name]
    others = [row for name, row in storm_at_100.items() if name != herd.EXPONENTIAL.name]
    assert all(expo.completion > row.completion for row in others)


SMALL_OUTAGE = herd.Outage(clients=20)


def amplification(protection: str, scope: str, failure_rate: float = 1.0) -> Any:
    """One run of the small outage with one protection."""
    chosen = next(p for p in herd.PROTECTIONS if p.name == protection)
    config = dataclasses.replace(SMALL_OUTAGE, failure_rate=failure_rate)
    return herd.outage(config, chosen, scope, trial=0)


@pytest.mark.parametrize("scope", herd.SCOPES)
@pytest.mark.parametrize("failure_rate", [1.0, 0.9])
def test_plain_retries_multiply_the_load_by_the_attempts(scope: str, failure_rate: float) -> None:
    """Without a budget, every call that fails is tried max_retries + 1 times."""
    result = amplification("plain retries", scope, failure_rate)
    expected = sum(failure_rate**k for k in range(SMALL_OUTAGE.max_retries + 1))
    assert result.amplification_during == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize("scope", herd.SCOPES)
@pytest.mark.parametrize("failure_rate", [1.0, 0.9])
def test_a_retry_budget_keeps_outage_amplification_at_most_1_2(
    scope: str, failure_rate: float
) -> None:
    """The SRE book's claim: a 10 % budget holds the extra load near 1.1x."""
    result = amplification("RetryBudget", scope, failure_rate)
    assert result.amplification_during <= 1.2


def test_a_shared_breaker_stops_the_calls_and_pays_after_the_outage() -> None:
    """Open, the breaker lets only its trial calls through, then rejects a few after recovery."""
    plain = amplification("plain retries", "shared")
    broken = amplification("CircuitBreaker", "shared")
    assert broken.amplification_during < 0.05
    assert broken.failed_after > 0
    assert plain.failed_after == 0
