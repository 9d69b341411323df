"""Checked by ``mypy --strict``, never run: decorated callables keep their types."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from typing_extensions import assert_type

from resilient import (
    ErrorClass,
    FullJitter,
    RetryBudget,
    RetryState,
    retry,
    retry_with_backoff,
    retry_with_backoff_async,
    time_remaining,
)


@retry
def bare(a: int, b: str = "x") -> float:
    return float(a)


@retry(max_retries=2, jitter=FullJitter(), retryable_classes={ErrorClass.TRANSIENT})
def configured(a: int, *, flag: bool = False) -> list[str]:
    return [str(a)]


@retry(deadline=5.0, budget=RetryBudget(), on_retry=lambda state: print(state.attempt))
async def fetch(url: str) -> bytes:
    return url.encode()


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
    @retry
    def klass(cls, n: int) -> Client:
        return cls()


def on_retry(state: RetryState) -> None:
    assert_type(state.attempt, int)
    assert_type(state.error_class, ErrorClass)


async def use_them() -> None:
    assert_type(bare(1), float)
    assert_type(bare(1, "y"), float)
    assert_type(configured(1, flag=True), list[str])
    pending = fetch("u")
    _ = assert_type(pending, Coroutine[Any, Any, bytes])
    pending.close()
    assert_type(await fetch("u"), bytes)
    client = Client()
    assert_type(client.method(1), int)
    assert_type(await client.amethod(1), str)
    assert_type(Client.static(1), int)
    assert_type(Client.klass(1), Client)
    assert_type(retry_with_backoff(bare, 1, max_retries=2), float)
    assert_type(await retry_with_backoff_async(fetch, "u"), bytes)
    assert_type(time_remaining(), float | None)
    bare("not an int")  # type: ignore[arg-type]
    client.method("x")  # type: ignore[arg-type]
