"""Redis going away mid-run: each fallback, the time a call may wait, and the way back.

Each test has a redis-server of its own, which it kills (SIGKILL) or freezes
(SIGSTOP) and then starts again on the same port (or thaws). Stores use short
socket timeouts (0.2 s) and retry intervals (0.2 s), so real waits stay within
a few tenths of a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from resilient import CircuitBreaker, CircuitOpenError, CircuitState
from resilient.redis import RedisRetryBudget, RedisStore, connect
from resilient.testing import ManualClock

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
TIMEOUT = 0.2
INTERVAL = 0.2


class Down(ConnectionError):
    """The dependency the breaker guards is down."""


def _raise_down() -> None:
    raise Down("connection refused")


def ok() -> str:
    return "ok"


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(Down):
            breaker.call(_raise_down)


class CountingClient:
    """A client that counts the scripts it tries to run."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.attempts = 0

    def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        self.attempts += 1
        return self._client.evalsha(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


@pytest.fixture
def server(redis_server_factory: Callable[[], Any]) -> Any:
    return redis_server_factory()


def _store(server: Any, **options: Any) -> RedisStore:
    options.setdefault("retry_interval", INTERVAL)
    return RedisStore(connect(server.url, socket_timeout=TIMEOUT), **options)


def _wait_for_retry() -> None:
    time.sleep(INTERVAL + 0.05)


# -- on_store_error="local" (the default) ---------------------------------------------


def test_a_local_breaker_takes_over_and_hands_back_when_redis_returns(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed: the local breaker counts and opens on its own. Back: Redis decides again."""
    store = _store(server)
    breaker = CircuitBreaker(3, 60.0, name="api", store=store)
    assert breaker.call(ok) == "ok"
    server.stop()
    with caplog.at_level(logging.WARNING, logger="resilient.redis"):
        assert breaker.call(ok) == "ok"
        assert breaker.metrics.store_mode == "local" == store.mode("api")
        fail(breaker, 3)
        with pytest.raises(CircuitOpenError):
            breaker.call(ok)
        assert breaker.state is OPEN
        server.start()
        _wait_for_retry()
        assert breaker.call(ok) == "ok"  # Redis (emptied by the restart) says closed
        assert breaker.metrics.store_mode == "redis"
        assert breaker.state is CLOSED
    [down] = _events(caplog, "breaker_store_unavailable")
    assert down.getMessage().startswith("circuit 'api' cannot reach Redis (ConnectionError: ")
    assert "an in-process breaker with the same settings decides" in down.getMessage()
    assert "retrying Redis every 0.2 s" in down.getMessage()
    assert (down.breaker, down.store_mode, down.retry_in) == ("api", "local", INTERVAL)
    assert down.error_type.endswith("ConnectionError")
    assert "Connection refused" in down.error
    [back] = _events(caplog, "breaker_store_recovered")
    assert back.getMessage().startswith("circuit 'api' reached Redis again after ")
    assert (back.breaker, back.store_mode, back.previous_mode) == ("api", "redis", "local")
    assert back.outage_seconds > INTERVAL


def test_the_local_breaker_runs_its_own_trials_on_the_breakers_clock(server: Any) -> None:
    """While Redis is down the local circuit opens, half-opens and closes as a memory one."""
    clock = ManualClock()
    breaker = CircuitBreaker(1, 30.0, name="api", store=_store(server), clock=clock)
    breaker.call(ok)
    server.stop()
    fail(breaker)
    assert breaker.state is OPEN
    clock.advance(30.0)
    assert breaker.state is HALF_OPEN
    assert breaker.call(ok) == "ok"  # a local trial, with a local ticket
    assert breaker.state is CLOSED


def test_the_outcome_of_a_trial_redis_granted_is_dropped_while_redis_is_down(server: Any) -> None:
    """Nothing to record it in: no error, and the local breaker is not touched by it."""
    breaker = CircuitBreaker(1, 0.1, name="api", store=_store(server))
    fail(breaker)
    time.sleep(0.15)
    with breaker:  # admitted as Redis's trial
        server.stop()
    assert breaker.metrics.store_mode == "local"
    assert breaker.state is CLOSED  # the local breaker, fresh for this outage


def test_a_store_error_other_than_the_connection_falls_back_too(
    redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A key overwritten with a string (WRONGTYPE) is an outage for that breaker, not a crash."""
    store = RedisStore(redis_client, retry_interval=INTERVAL)
    breaker = CircuitBreaker(name="api", store=store)
    redis_client.set("{resilient:api}:breaker", "not a hash")
    with caplog.at_level(logging.WARNING, logger="resilient.redis"):
        assert breaker.call(ok) == "ok"
        assert store.mode("api") == "local"
        redis_client.delete("{resilient:api}:breaker")
        _wait_for_retry()
        assert breaker.call(ok) == "ok"
        assert store.mode("api") == "redis"
    [down] = _events(caplog, "breaker_store_unavailable")
    assert down.error_type == "redis.exceptions.ResponseError"
    assert "WRONGTYPE" in down.error


# -- on_store_error="open" and "closed" ------------------------------------------------


def test_the_open_fallback_rejects_calls_until_redis_returns(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Every call is rejected without running, with the seconds until Redis is tried again.

    (With ``max_staleness=0`` the first call after the kill notices it; with the
    cache, calls admitted from it in the first ``max_staleness`` would run.)
    """
    store = _store(server, on_store_error="open", max_staleness=0.0)
    breaker = CircuitBreaker(name="api", store=store)
    assert breaker.call(ok) == "ok"
    server.stop()
    ran = []
    with caplog.at_level(logging.WARNING, logger="resilient.redis"):
        for _ in range(3):
            with pytest.raises(CircuitOpenError) as info:
                breaker.call(lambda: ran.append(1))
            assert 0.0 < info.value.remaining <= INTERVAL
    assert ran == []
    assert breaker.metrics.store_mode == "open"
    assert breaker.state is OPEN
    [down] = _events(caplog, "breaker_store_unavailable")
    assert "calls are rejected (on_store_error='open')" in down.getMessage()
    server.start()
    _wait_for_retry()
    assert breaker.call(ok) == "ok"
    assert breaker.metrics.store_mode == "redis"


def test_the_closed_fallback_lets_calls_through_and_counts_nothing(server: Any) -> None:
    """Calls run unguarded: failures neither open the circuit nor reach Redis later."""
    breaker = CircuitBreaker(2, 60.0, name="api", store=_store(server, on_store_error="closed"))
    assert breaker.call(ok) == "ok"
    server.stop()
    fail(breaker, 5)
    assert breaker.call(ok) == "ok"
    assert (breaker.state, breaker.metrics.store_mode) == (CLOSED, "closed")
    server.start()
    _wait_for_retry()
    assert breaker.call(ok) == "ok"
    assert (breaker.failures, breaker.metrics.store_mode) == (0, "redis")


# -- time ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fallback", ["local", "open", "closed"])
def test_no_call_waits_longer_than_the_socket_timeout_while_redis_hangs(
    server: Any, fallback: str
) -> None:
    """Redis frozen (SIGSTOP): one call per retry interval waits out the timeout, no more.

    Every call asks Redis (``max_staleness=0``), so none is spared by the cache.
    """
    breaker = CircuitBreaker(
        1000, name="api", store=_store(server, on_store_error=fallback, max_staleness=0.0)
    )
    breaker.call(ok)
    server.pause()
    durations = []
    started = time.monotonic()
    while time.monotonic() - started < 0.6:
        began = time.monotonic()
        try:
            breaker.call(ok)
        except CircuitOpenError:
            assert fallback == "open"
        durations.append(time.monotonic() - began)
        time.sleep(0.005)
    server.resume()
    assert max(durations) < TIMEOUT + 0.15
    waited = [d for d in durations if d > TIMEOUT / 2]
    assert 1 <= len(waited) <= 0.6 / INTERVAL + 1
    assert len(durations) >= len(waited) + 5  # the others decided without waiting
    _wait_for_retry()
    assert breaker.call(ok) == "ok"
    assert breaker.metrics.store_mode == "redis"


def test_redis_is_tried_at_most_once_per_retry_interval(server: Any) -> None:
    """While Redis is down, calls do not each try to reach it."""
    client = CountingClient(connect(server.url, socket_timeout=TIMEOUT))
    breaker = CircuitBreaker(1000, name="api", store=RedisStore(client, retry_interval=INTERVAL))
    breaker.call(ok)
    server.stop()
    before = client.attempts
    started = time.monotonic()
    calls = 0
    while time.monotonic() - started < 0.5:
        fail(breaker)
        calls += 1
        time.sleep(0.002)
    elapsed = time.monotonic() - started
    assert calls > 50
    assert client.attempts - before <= elapsed / INTERVAL + 1


def test_one_warning_per_outage_and_per_breaker(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Two outages of one store, two breakers: two warnings each, and two recoveries each."""
    store = _store(server)
    breakers = [CircuitBreaker(1000, name=n, store=store) for n in ("a", "b")]
    with caplog.at_level(logging.WARNING, logger="resilient.redis"):
        for _ in range(2):
            server.stop()
            for _ in range(20):
                for breaker in breakers:
                    fail(breaker)
            server.start()
            _wait_for_retry()
            for breaker in breakers:
                breaker.call(ok)
                breaker.call(ok)
    down = _events(caplog, "breaker_store_unavailable")
    back = _events(caplog, "breaker_store_recovered")
    assert sorted(r.breaker for r in down) == ["a", "a", "b", "b"]
    assert sorted(r.breaker for r in back) == ["a", "a", "b", "b"]


# -- the budget ------------------------------------------------------------------------------


def test_the_budget_carries_on_locally_from_the_last_tokens_and_warns_once(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Down: a local budget starts from what Redis last said. Back: Redis's tokens again."""
    client = connect(server.url, socket_timeout=TIMEOUT)
    budget = RedisRetryBudget(client, "api", max_tokens=10, retry_interval=INTERVAL)
    for _ in range(3):
        assert budget.record_failure()
    assert budget.tokens == 7.0
    server.stop()
    with caplog.at_level(logging.WARNING, logger="resilient.redis"):
        assert budget.record_failure() is True  # 6 > 5, locally
        assert budget.mode == "local"
        assert budget.record_failure() is False  # 5 > 5 is false
        assert budget.tokens == 5.0
        budget.record_success()
        server.start()
        _wait_for_retry()
        assert budget.tokens == 10.0  # the restarted (empty) Redis: a full bucket
        assert budget.mode == "redis"
    [down] = _events(caplog, "retry_budget_store_unavailable")
    assert down.getMessage().startswith("retry budget 'api' cannot reach Redis (ConnectionError")
    assert "a local budget starting from 7 token(s)" in down.getMessage()
    assert (down.budget, down.tokens, down.store_mode) == ("api", 7.0, "local")
    [back] = _events(caplog, "retry_budget_store_recovered")
    assert back.getMessage().startswith("retry budget 'api' reached Redis again after ")


def test_the_budget_never_waits_longer_than_the_socket_timeout(server: Any) -> None:
    """Frozen Redis: one spend waits out the timeout, the next ones are local at once."""
    budget = RedisRetryBudget(
        connect(server.url, socket_timeout=TIMEOUT), "api", retry_interval=INTERVAL
    )
    budget.record_failure()
    server.pause()
    durations = []
    for _ in range(20):
        began = time.monotonic()
        budget.record_failure()
        durations.append(time.monotonic() - began)
    server.resume()
    assert max(durations) < TIMEOUT + 0.15
    assert sum(d > TIMEOUT / 2 for d in durations) == 1
