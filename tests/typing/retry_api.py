"""The types users see from ``@retry`` and ``retry_with_backoff``.

Checked by ``mypy --strict`` and ``pyright --strict`` (see ``.ci/run``),
imported by ``tests/test_typing_files.py``, never run: every check sits in a
function nobody calls. A line that ends in ``# type: ignore[code]`` (mypy) and
``# pyright: ignore[rule]`` must be rejected by that checker for that reason:
both fail on a suppression they do not need.

Coroutines: pyright infers ``types.CoroutineType`` for ``async def`` where mypy
infers ``typing.Coroutine``, so the exact type asserted is the awaited one,
and "still a coroutine function" is checked by assignment, both ways.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from typing_extensions import assert_type

from resilient import (
    Attempt,
    DecorrelatedJitter,
    EqualJitter,
    ErrorClass,
    FullJitter,
    ProportionalJitter,
    RetryBudget,
    Retrying,
    RetryState,
    retry,
    retry_with_backoff,
    retry_with_backoff_async,
    retrying,
    time_remaining,
)
from resilient.backoff import delays
from resilient.redis import RedisRetryBudget
from resilient.testing import ManualClock


@retry
def bare(a: int, b: str = "x") -> float:
    return float(a)


@retry()
def called_empty(a: int) -> int:
    return a


@retry(max_retries=2, jitter=FullJitter(), retryable_classes={ErrorClass.TRANSIENT})
def configured(a: int, *, flag: bool = False) -> list[str]:
    return [str(a)]


def classifier(exc: BaseException) -> ErrorClass:
    return ErrorClass.TRANSIENT


def on_retry(state: RetryState) -> None:
    assert_type(state.function, str)
    assert_type(state.attempt, int)
    assert_type(state.exception, BaseException | None)
    assert_type(state.error_class, ErrorClass)
    assert_type(state.delay, float)
    assert_type(state.elapsed, float)
    assert_type(state.result, Any)


@retry(
    max_retries=5,
    base_delay=0.1,
    max_delay=2.0,
    jitter=DecorrelatedJitter(rng=random.Random(1)),
    retryable_classes=(ErrorClass.TRANSIENT, ErrorClass.TIMEOUT),
    deadline=5.0,
    classifier=classifier,
    on_retry=on_retry,
    budget=RetryBudget(max_tokens=5, token_ratio=0.5, name="api"),
    clock=ManualClock(),
    retry_on_result=lambda result: result is None,
    max_retry_after=60.0,
)
def every_option(url: str) -> bytes | None:
    return url.encode()


@retry
async def fetch(url: str) -> bytes:
    return url.encode()


@retry(deadline=5.0, on_retry=lambda state: print(state.attempt))
async def fetch_configured(url: str, *, timeout: float = 1.0) -> dict[str, int]:
    return {url: int(timeout)}


class Client:
    @retry(max_retries=1)
    def method(self, n: int) -> int:
        return n

    @retry
    async def amethod(self, n: int) -> str:
        return str(n)

    @staticmethod
    @retry
    def static(n: int) -> int:
        return n

    @classmethod
    @retry(jitter=EqualJitter())
    def klass(cls, n: int) -> Client:
        return cls()

    @classmethod
    @retry
    async def aklass(cls, n: int) -> Client:
        return cls()

    # @retry stacked above the descriptor: it wraps the function inside.
    @retry
    @staticmethod
    def static_outer(n: int) -> int:
        return n

    @retry(max_retries=1)
    @classmethod
    def klass_outer(cls, n: int) -> int:
        return n


def plain(a: int, b: str = "x") -> float:
    return float(a)


async def aplain(a: int, *, b: str = "x") -> bytes:
    return b.encode()


def sync_forms() -> None:
    assert_type(bare(1), float)
    assert_type(bare(1, "y"), float)
    assert_type(bare(a=1, b="y"), float)
    assert_type(called_empty(1), int)
    assert_type(configured(1, flag=True), list[str])
    assert_type(every_option("u"), bytes | None)
    client = Client()
    assert_type(client.method(1), int)
    assert_type(Client.static(1), int)
    assert_type(client.static(1), int)
    assert_type(Client.klass(1), Client)
    assert_type(Client.static_outer(1), int)
    assert_type(client.static_outer(1), int)
    assert_type(Client.klass_outer(1), int)
    assert_type(time_remaining(), float | None)
    # The decorated function is the same callable, signature included.
    same: Callable[[int, str], float] = bare
    unbound: Callable[[Client, int], int] = Client.method
    bound: Callable[[int], int] = client.method
    print(same, unbound, bound)


async def async_forms() -> None:
    assert_type(await fetch("u"), bytes)
    assert_type(await fetch_configured("u", timeout=2.0), dict[str, int])
    client = Client()
    assert_type(await client.amethod(1), str)
    assert_type(await Client.aklass(1), Client)
    # Still coroutine functions: they return coroutines, not values.
    coroutine_function: Callable[[str], Coroutine[Any, Any, bytes]] = fetch
    method: Callable[[int], Coroutine[Any, Any, str]] = client.amethod
    print(coroutine_function, method)
    pending = fetch("u")
    awaitable: Coroutine[Any, Any, bytes] = pending
    awaitable.close()
    not_a_value: Callable[[str], bytes] = fetch  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    print(not_a_value)


def retry_with_backoff_forms() -> None:
    assert_type(retry_with_backoff(plain, 1), float)
    assert_type(retry_with_backoff(plain, 1, "y"), float)
    assert_type(retry_with_backoff(plain, a=1, b="y"), float)
    assert_type(retry_with_backoff(plain, 1, b="y", max_retries=2, base_delay=0.1), float)
    assert_type(
        retry_with_backoff(
            plain,
            1,
            max_retries=1,
            base_delay=0.5,
            max_delay=5.0,
            jitter=ProportionalJitter(0.1),
            retryable_classes=[ErrorClass.DEGRADED],
        ),
        float,
    )
    assert_type(retry_with_backoff(lambda: "x"), str)
    assert_type(retry_with_backoff(bare, 1), float)  # a decorated function too


async def retry_with_backoff_async_forms() -> None:
    assert_type(await retry_with_backoff_async(aplain, 1), bytes)
    assert_type(await retry_with_backoff_async(aplain, 1, b="y", max_retries=0), bytes)
    assert_type(await retry_with_backoff_async(fetch, "u", jitter=False), bytes)


def budgets(client: Any) -> None:
    """A ``RetryBudget`` and its Redis twin are accepted wherever a budget is."""
    shared = RedisRetryBudget(client, "api", max_tokens=20, token_ratio=0.2)
    assert_type(shared.record_failure(), bool)
    assert_type(shared.record_success(), None)
    assert_type(shared.tokens, float)
    local = RetryBudget()
    assert_type(local.record_failure(), bool)
    assert_type(local.allows_retry, bool)
    for budget in (local, shared):
        decorator = retry(budget=budget)
        print(decorator(plain))
    retry(budget="api")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]


def delay_schedules() -> None:
    schedule = delays(0.1, 10.0, jitter=FullJitter(random.Random(7)))
    assert_type(next(schedule), float)


def rejected() -> None:
    """Wrong arguments are type errors, for the decorated function and for retry itself."""
    bare("not an int")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    bare()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    bare(1, "y", 3)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    configured(1, flag="yes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    configured(1, True)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    Client().method("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Client.klass("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Client.static_outer("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Client.klass_outer("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    retry(max_retries="3")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    retry(jitter="full")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    retry(retryable_classes=[ValueError])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    retry(on_retry=plain)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    retry(clock=object())  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    retry(max_tries=3)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    retry_with_backoff(plain, max_retries="3")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]


async def rejected_async() -> None:
    await fetch(b"u")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await Client().amethod("1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await retry_with_backoff_async(plain, 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


# --- on=, fallback=, logger=, stop_event= (issue 19) ---------------------------


def maybe_user(user_id: int) -> dict[str, int] | None:
    return {"id": user_id}


async def amaybe_user(user_id: int) -> dict[str, int] | None:
    return {"id": user_id}


def new_options(event: threading.Event, aevent: asyncio.Event) -> None:
    """``on=`` takes types or a predicate; the result is the function's or the fallback's."""
    log = logging.getLogger("app")
    by_type = retry(on=KeyError, logger=log, stop_event=event)(plain)
    assert_type(by_type(1), float)
    by_types = retry(on=(KeyError, ValueError), stop_event=aevent)(plain)
    assert_type(by_types(1), float)
    by_predicate = retry(on=lambda exc: "again" in str(exc))(plain)
    assert_type(by_predicate(1), float)
    # The function's result type, and what the fallback returns.
    assert_type(retry(fallback=lambda exc: None)(maybe_user)(1), dict[str, int] | None)
    assert_type(retry(fallback=lambda exc: 0.0)(plain)(1), float)
    assert_type(retry(fallback=lambda exc: None)(plain)(1), float | None)
    assert_type(retry_with_backoff(plain, 1, on=KeyError, fallback=lambda exc: 0.5), float)


async def new_options_async() -> None:
    assert_type(await retry(fallback=lambda exc: None)(amaybe_user)(1), dict[str, int] | None)
    assert_type(await retry(fallback=lambda exc: None)(aplain)(1), bytes | None)

    async def async_fallback(exc: Exception) -> None:
        return None

    assert_type(await retry(fallback=async_fallback)(amaybe_user)(1), dict[str, int] | None)
    assert_type(await retry_with_backoff_async(aplain, 1, fallback=lambda exc: b""), bytes)


def new_options_rejected() -> None:
    """What the runtime refuses, the type checkers reject too."""
    retry(on=3)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    retry(on=int)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    retry(fallback="cached")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
    retry(stop_event=True)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    retry(logger="app")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]

    async def async_fallback(exc: Exception) -> float:
        return 0.0

    # An async fallback cannot be awaited by a plain function.
    retry(fallback=async_fallback)(plain)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    # An async def function needs retry_with_backoff_async (issue 20): the call is refused.
    retry_with_backoff(aplain, 1)  # type: ignore[deprecated]  # pyright: ignore[reportDeprecated]
    retry_with_backoff(fetch, "u")  # type: ignore[deprecated]  # pyright: ignore[reportDeprecated]


def block_form() -> None:
    """``retrying`` iterates ``Attempt``s; with a fallback, ``attempt.result`` is its type."""
    block = retrying(max_retries=2, on=KeyError, deadline=5.0, name="sync")
    assert_type(block, Retrying[Any])
    for attempt in block:
        assert_type(attempt, Attempt[Any])
        assert_type(attempt.number, int)
        with attempt:
            print(attempt.number)
    for cached in retrying(fallback=lambda exc: 0.5):
        assert_type(cached, Attempt[float])
        with cached:
            cached.result = 1.0
        assert_type(cached.result, float | None)


async def block_form_async() -> None:
    async for attempt in retrying(stop_event=asyncio.Event()):
        assert_type(attempt, Attempt[Any])
        with attempt:
            await asyncio.sleep(0)

    async def cached(exc: Exception) -> bytes:
        return b""

    # An async def fallback is awaited by ``async for``: the result is what it returns.
    async for fetched in retrying(on=KeyError, fallback=cached):
        assert_type(fetched, Attempt[bytes])
        with fetched:
            fetched.result = await aplain(1)
        assert_type(fetched.result, bytes | None)


def block_form_rejected() -> None:
    retrying(max_retries="2")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    retrying(on="KeyError")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    retrying(5)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]


def durations() -> None:
    """Every duration takes a ``timedelta`` as well as seconds."""
    from datetime import timedelta

    from resilient import Backoff

    retry(base_delay=timedelta(seconds=1), max_delay=timedelta(minutes=1))
    retry(deadline=timedelta(seconds=30), max_retry_after=timedelta(minutes=2))
    retrying(deadline=timedelta(seconds=30))
    retry_with_backoff(plain, 1, base_delay=timedelta(milliseconds=100))
    Backoff(timedelta(seconds=1), timedelta(minutes=5))
    delays(timedelta(seconds=1), 60.0)
    ManualClock().advance(timedelta(seconds=5))
    retry(deadline="30s")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
