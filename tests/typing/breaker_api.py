"""The types users see from ``CircuitBreaker``: ``call``, ``call_async``, ``@breaker``, ``with``.

Checked by ``mypy --strict`` and ``pyright --strict``, imported by
``tests/test_typing_files.py``, never run (see ``retry_api.py`` for the
conventions: exact types with ``assert_type``, coroutine functions by
assignment, rejected lines with one suppression per checker).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from typing_extensions import assert_type

from resilient import ErrorClass
from resilient.backoff import Backoff, FullJitter
from resilient.breaker import (
    BreakerListener,
    BreakerMetrics,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    FailureRateWindow,
    MemoryStore,
)
from resilient.redis import AsyncRedisStore, RedisStore
from resilient.testing import ManualClock, force_state


def classifier(exc: BaseException) -> ErrorClass:
    return ErrorClass.DEGRADED


breaker = CircuitBreaker(
    3,
    Backoff(10, 300, FullJitter()),
    (ConnectionError, TimeoutError),
    name="api",
    exclude=KeyError,
    half_open_max_calls=2,
    success_threshold=2,
    window=FailureRateWindow(0.5, seconds=60, minimum_calls=10),
    slow_call_duration=5.0,
    slow_call_rate_threshold=0.8,
    clock=ManualClock(),
    listeners=[BreakerListener()],
    store=MemoryStore(),
    classifier=classifier,
    counted_classes={ErrorClass.DEGRADED, ErrorClass.TIMEOUT},
)
defaults = CircuitBreaker()


@breaker
def fetch(url: str, *, timeout: float = 1.0) -> bytes:
    return url.encode()


@breaker
async def fetch_async(url: str, retries: int = 0) -> dict[str, int]:
    return {url: retries}


class Client:
    @breaker
    def get(self, path: str) -> int:
        return len(path)

    @breaker
    async def aget(self, path: str) -> int:
        return len(path)


def parse(text: str, base: int = 10) -> int:
    return int(text, base)


async def aparse(text: str) -> int:
    return int(text)


def sync_forms() -> None:
    assert_type(fetch("u"), bytes)
    assert_type(fetch("u", timeout=2.0), bytes)
    assert_type(Client().get("/x"), int)
    assert_type(breaker.call(parse, "12"), int)
    assert_type(breaker.call(parse, "12", base=16), int)
    assert_type(breaker.call(parse, text="12", base=16), int)
    assert_type(breaker.call(lambda: "x"), str)
    with breaker as entered:
        assert_type(entered, CircuitBreaker)
    decorated: Callable[[str, int], int] = breaker(parse)
    print(decorated)


async def async_forms() -> None:
    assert_type(await breaker.call_async(aparse, "1"), int)
    assert_type(await breaker.call_async(aparse, text="1"), int)
    assert_type(await fetch_async("u", 2), dict[str, int])
    assert_type(await Client().aget("/x"), int)
    async with breaker as entered:
        assert_type(entered, CircuitBreaker)
    # Still coroutine functions: they return coroutines, not values.
    coroutine_function: Callable[[str, int], Coroutine[Any, Any, dict[str, int]]] = fetch_async
    method: Callable[[str], Coroutine[Any, Any, int]] = Client().aget
    decorated: Callable[[str], Awaitable[int]] = breaker(aparse)
    not_a_value: Callable[[str], int] = breaker(aparse)  # type: ignore[arg-type]  # pyright: ignore[reportAssignmentType]
    pending = breaker.call_async(aparse, "12")
    awaitable: Coroutine[Any, Any, int] = pending
    awaitable.close()
    print(coroutine_function, method, decorated, not_a_value)


def state_and_control() -> None:
    assert_type(breaker.name, str)
    assert_type(breaker.state, CircuitState)
    assert_type(breaker.is_open, bool)
    assert_type(breaker.failures, int)
    assert_type(breaker.metrics, BreakerMetrics)
    assert_type(breaker.metrics.failure_rate, float)
    assert_type(breaker.reset(), None)
    assert_type(breaker.trip(), None)
    assert_type(force_state(breaker, "open"), None)
    assert_type(force_state(breaker, CircuitState.HALF_OPEN), None)


def shared(client: Any) -> None:
    """A ``RedisStore`` is a store like ``MemoryStore``."""
    store = RedisStore(client, namespace="shop", on_store_error="open")
    assert_type(CircuitBreaker(name="inventory", store=store), CircuitBreaker)
    assert_type(RedisStore.from_url("redis://localhost:6379/0"), RedisStore)


async def shared_async(client: Any) -> None:
    """An ``AsyncRedisStore`` serves the async forms: ``call_async``, ``async with``, ``@``."""
    store = AsyncRedisStore(client, namespace="shop", on_store_error="local")
    guarded = CircuitBreaker(name="inventory", store=store)
    assert_type(guarded, CircuitBreaker)
    assert_type(AsyncRedisStore.from_url("redis://localhost:6379/0"), AsyncRedisStore)
    assert_type(await guarded.call_async(aparse, "12"), int)
    async with guarded:
        pass
    assert_type(await guarded.reset_async(), None)
    assert_type(await guarded.trip_async(), None)


def rejected_error(error: CircuitOpenError) -> None:
    assert_type(error.breaker_name, str)
    assert_type(error.remaining, float)
    assert_type(error.state, CircuitState)


def rejected() -> None:
    """Wrong arguments are type errors: to the protected function and to the breaker."""
    fetch("u", 1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    fetch(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Client().get(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    breaker.call(parse, 12)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    breaker.call(parse)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    breaker.call(parse, "12", radix=16)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    CircuitBreaker(failure_threshold="5")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    CircuitBreaker(expected_exception=KeyboardInterrupt)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    CircuitBreaker(window=0.5)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    CircuitBreaker(store="redis")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    CircuitBreaker(5, 60.0, ValueError, "api")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    force_state(breaker, 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def rejected_async() -> None:
    await breaker.call_async(parse, "1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await breaker.call_async(aparse, 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await fetch_async(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def settings_and_durations() -> None:
    """Durations take a timedelta; the settings read back, typed, and cannot be set."""
    from datetime import timedelta

    from resilient import FailureRateWindow

    breaker = CircuitBreaker(
        3,
        timedelta(seconds=30),
        name="users",
        window=FailureRateWindow(seconds=timedelta(minutes=1)),
        slow_call_duration=timedelta(seconds=2),
        logger=logging.getLogger("app"),
    )
    CircuitBreaker(logger=logging.LoggerAdapter(logging.getLogger("app"), {"request_id": "r-1"}))
    assert_type(breaker.name, str)
    assert_type(breaker.failure_threshold, int)
    assert_type(breaker.recovery_timeout, float | Backoff)
    assert_type(breaker.half_open_max_calls, int)
    assert_type(breaker.success_threshold, int)
    assert_type(breaker.window, FailureRateWindow | None)
    breaker.failure_threshold = 4  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
    CircuitBreaker(logger="app")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
