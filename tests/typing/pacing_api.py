"""The types users see from ``RateLimiter`` and ``ConcurrencyLimit`` and their wiring.

Checked by ``mypy --strict`` and ``pyright --strict``, imported by
``tests/test_typing_files.py``, never run (see ``retry_api.py`` for the
conventions).
"""

from __future__ import annotations

import datetime
from collections.abc import Coroutine
from typing import Any

from typing_extensions import assert_type

from resilient import (
    ConcurrencyLimit,
    ConcurrencyLimitExceeded,
    MemoryPacingStore,
    PacingStore,
    RateLimiter,
    RateLimitExceeded,
    retry,
    retrying,
)
from resilient.pacing import RatePolicy, Reservation
from resilient.testing import ManualClock

limiter = RateLimiter(500, per=datetime.timedelta(minutes=1), burst=20, name="api")
tokens = RateLimiter(
    90_000, per=60.0, burst=90_000, name="tokens", store=MemoryPacingStore(), clock=ManualClock()
)
limit = ConcurrencyLimit(
    8,
    max_wait=datetime.timedelta(seconds=1),
    adaptive=True,
    min_limit=2,
    max_limit=32,
    lease_ttl=120.0,
    name="llm",
    store=MemoryPacingStore(),
)
store: PacingStore = MemoryPacingStore()
assert_type(store.rate_reserve("api", RatePolicy(1.0, 1.0, 1.0), 1.0, 0.0, 0.0), Reservation)
assert_type(store.slot_acquire("llm", 8, 60.0, 0.0), str | None)
assert_type(store.rate_confirm("api", RatePolicy(1.0, 1.0, 1.0), "turn", 0.0), Reservation)
assert_type(store.rate_refund("api", RatePolicy(1.0, 1.0, 1.0), 1.0, 0.0, "turn"), str | None)
assert_type(Reservation(True, 0.0).turn, str | None)


def forms() -> None:
    assert_type(limiter.acquire(), None)
    assert_type(limiter.acquire(3, timeout=0.5), None)
    assert_type(limiter.try_acquire(2.5), bool)
    assert_type(limiter.pause(datetime.timedelta(seconds=2)), None)
    assert_type(limiter.refund(1200), None)
    with limiter as entered:
        assert_type(entered, RateLimiter)
    assert_type(limit.call(len, "abc"), int)
    assert_type(limit.limit, int)
    assert_type(limit.in_flight, int)
    with limit as slot:
        assert_type(slot, ConcurrencyLimit)
    error = RateLimitExceeded("api", 1.0, 1.0, 0.0)
    assert_type(error.retry_after, float)
    assert_type(ConcurrencyLimitExceeded("llm", 8, 0.0).retry_after, float | None)
    limiter.acquire(timeout="1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    ConcurrencyLimit(2.5)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


@limiter
def paced(url: str) -> bytes:
    return url.encode()


@limit
async def limited(url: str) -> bytes:
    return url.encode()


async def fetch(url: str) -> bytes:
    return url.encode()


async def async_forms() -> None:
    assert_type(await limiter.acquire_async(2), None)
    async with limiter, limit:
        pass
    assert_type(await limit.call_async(fetch, "u"), bytes)


assert_type(paced("u"), bytes)
coroutine: Coroutine[Any, Any, bytes] = limited("u")


@retry(limiter=limiter, deadline=5.0)
def retried(url: str) -> bytes:
    return url.encode()


assert_type(retried("u"), bytes)


def limiter_is_typed_by_what_the_loop_uses() -> None:
    """``limiter=`` is a protocol (the loop never imports pacing): a RateLimiter fits."""
    for attempt in retrying(limiter=limiter, deadline=5.0):
        with attempt:
            pass
    retry(limiter=limit)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    retrying(limiter=limit)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]


def transports() -> None:
    from resilient.httpx import AsyncResilientTransport, ResilientTransport

    ResilientTransport(limiter=limiter, concurrency=limit)
    AsyncResilientTransport(limiter=limiter, concurrency=limit)
    ResilientTransport(limiter=limit)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
