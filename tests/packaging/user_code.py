"""A user's module, type-checked by ``mypy --strict`` against the installed wheel.

``.ci/run`` copies it next to a fresh virtual environment that has the wheel
(and nothing of the source tree), type-checks it there, then runs it. The
types come from the wheel's ``py.typed``: were they missing, every name below
would be ``Any``, the ``assert_type`` lines would fail and the ``type: ignore``
line would be unused (an error under ``--strict``).
"""

from __future__ import annotations

import asyncio

from typing_extensions import assert_type

from resilient import CircuitBreaker, TaskResult, execute_task_safely, retry
from resilient.testing import ManualClock

clock = ManualClock()
breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=30.0, name="inventory", clock=clock)


@retry(max_retries=2, base_delay=0.5, clock=clock)
def stock(sku: str) -> int:
    return len(sku)


@retry(clock=clock)
async def price(sku: str) -> float:
    return 1.5 * len(sku)


@breaker
def reserve(sku: str, quantity: int = 1) -> bool:
    return quantity <= stock(sku)


def main() -> None:
    assert_type(stock("abc"), int)
    assert_type(asyncio.run(price("abc")), float)
    assert_type(reserve("abc", quantity=2), bool)
    assert_type(breaker.call(stock, "abcd"), int)
    result = execute_task_safely("stock", stock, "abcde", clock=clock)
    assert_type(result, TaskResult[int])
    print(f"user code ran: {result.result} in stock, circuit {breaker.state.value}")


def never_called() -> None:
    """The checker must reject this call: with no error to silence, the ignore fails."""
    stock(42)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
