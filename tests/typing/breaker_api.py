"""Type checks of the breaker's public API: checked by ``mypy --strict``, never run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from typing_extensions import assert_type

from resilient.backoff import Backoff
from resilient.breaker import (
    BreakerListener,
    BreakerMetrics,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    FailureRateWindow,
    MemoryStore,
)
from resilient.testing import ManualClock, force_state

breaker = CircuitBreaker(
    3,
    Backoff(10, 300),
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
)


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


assert_type(fetch("u"), bytes)
assert_type(fetch("u", timeout=2.0), bytes)
coroutine = fetch_async("u")
_ = assert_type(coroutine, Coroutine[Any, Any, dict[str, int]])
assert_type(Client().get("/x"), int)
method_coroutine = Client().aget("/x")
_m = assert_type(method_coroutine, Coroutine[Any, Any, int])
assert_type(breaker.call(parse, "12"), int)
assert_type(breaker.call(parse, "12", base=16), int)
call_coroutine = breaker.call_async(aparse, "12")
_c = assert_type(call_coroutine, Coroutine[Any, Any, int])
assert_type(breaker.state, CircuitState)
assert_type(breaker.is_open, bool)
assert_type(breaker.failures, int)
assert_type(breaker.metrics, BreakerMetrics)
assert_type(breaker.metrics.failure_rate, float)
assert_type(breaker.reset(), None)
assert_type(breaker.trip(), None)
assert_type(force_state(breaker, "open"), None)
assert_type(force_state(breaker, CircuitState.HALF_OPEN), None)


async def use_forms() -> None:
    assert_type(await breaker.call_async(aparse, "1"), int)
    assert_type(await fetch_async("u", 2), dict[str, int])
    with breaker as entered:
        assert_type(entered, CircuitBreaker)
    async with breaker as aentered:
        assert_type(aentered, CircuitBreaker)


def rejected(error: CircuitOpenError) -> None:
    assert_type(error.breaker_name, str)
    assert_type(error.remaining, float)
    assert_type(error.state, CircuitState)


decorated_async: Callable[[str], Awaitable[int]] = breaker(aparse)
decorated_sync: Callable[[str, int], int] = breaker(parse)
fetch("u", 1)  # type: ignore[call-arg]
breaker.call(parse, 12)  # type: ignore[arg-type]
