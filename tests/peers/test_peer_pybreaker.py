"""pybreaker's behavioural tests that apply here, translated (behaviour, not code).

Each test names the pybreaker test it comes from (``danielfm/pybreaker``,
``tests/pybreaker_test.py``, all of class ``CircuitBreakerConfigurationTestCase``). pybreaker's settings are settable; here they read back
and cannot be set (a new breaker with the same name and store keeps the state).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from resilient import CircuitBreaker, CircuitState, MemoryStore
from resilient.testing import ManualClock


def test_default_params() -> None:
    """test_default_params: the defaults read back."""
    breaker = CircuitBreaker()
    assert breaker.failures == 0
    assert breaker.recovery_timeout == 60.0
    assert breaker.failure_threshold == 5
    assert breaker.state is CircuitState.CLOSED


def test_new_with_custom_reset_timeout() -> None:
    """test_new_with_custom_reset_timeout: a custom timeout, a timedelta included
    (pybreaker's ``timeout_duration`` is one)."""
    assert CircuitBreaker(recovery_timeout=30).recovery_timeout == 30.0
    assert CircuitBreaker(recovery_timeout=timedelta(seconds=30)).recovery_timeout == 30.0


def test_new_with_custom_fail_max() -> None:
    """test_new_with_custom_fail_max: a custom failure threshold reads back."""
    breaker = CircuitBreaker(failure_threshold=10)
    assert breaker.failure_threshold == 10
    assert breaker.recovery_timeout == 60.0


def test_fail_max_setter() -> None:
    """test_fail_max_setter: pybreaker sets ``fail_max`` in place; here the setting is
    read-only, and a new breaker on the same store takes the new value and the state."""
    store = MemoryStore()
    clock = ManualClock()
    breaker = CircuitBreaker(name="svc", store=store, clock=clock)
    assert breaker.failure_threshold == 5
    with pytest.raises(AttributeError):
        breaker.failure_threshold = 10  # type: ignore[misc]
    breaker.trip()
    breaker = CircuitBreaker(10, name="svc", store=store, clock=clock)
    assert breaker.failure_threshold == 10
    assert breaker.state is CircuitState.OPEN


def test_reset_timeout_setter() -> None:
    """test_reset_timeout_setter: the same for the recovery timeout."""
    breaker = CircuitBreaker()
    with pytest.raises(AttributeError):
        breaker.recovery_timeout = 30  # type: ignore[misc]
    assert breaker.recovery_timeout == 60.0


def test_name() -> None:
    """test_name: the name reads back and cannot be set (it keys the store)."""
    breaker = CircuitBreaker(name="Foobar")
    assert breaker.name == "Foobar"
    with pytest.raises(AttributeError):
        breaker.name = "Other"  # type: ignore[misc]


def test_success_threshold_needs_as_many_trials() -> None:
    """test_success_threshold_multiple_successes_required (``success_threshold=3``):
    here a half-open period admits ``half_open_max_calls`` trials, so ``success_threshold=3`` needs
    ``half_open_max_calls=3``; said at construction."""
    with pytest.raises(ValueError, match="success_threshold must be <= half_open_max_calls"):
        CircuitBreaker(success_threshold=3)
    clock = ManualClock()
    breaker = CircuitBreaker(1, 1.0, success_threshold=3, half_open_max_calls=3, clock=clock)
    breaker.trip()
    clock.advance(1.0)
    for expected in (CircuitState.HALF_OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED):
        breaker.call(lambda: None)
        assert breaker.state is expected
