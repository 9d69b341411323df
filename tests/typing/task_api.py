"""The types users see from ``execute_task_safely`` and ``run_tasks``: ``TaskResult[T]``.

Checked by ``mypy --strict`` and ``pyright --strict``, imported by
``tests/test_typing_files.py``, never run (conventions: ``retry_api.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from typing_extensions import assert_type

from resilient import (
    CircuitBreaker,
    ErrorClass,
    RetryBudget,
    RetryState,
    TaskResult,
    TaskSummary,
    execute_task_safely,
    execute_task_safely_async,
    run_tasks,
    run_tasks_async,
)
from resilient.redis import RedisRetryBudget
from resilient.testing import ManualClock


def parse(text: str, base: int = 10) -> int:
    return int(text, base)


async def aparse(text: str) -> int:
    return int(text)


def load(key: str) -> dict[str, list[int]]:
    return {key: [1]}


def classifier(exc: BaseException) -> ErrorClass:
    return ErrorClass.TRANSIENT


def on_retry(state: RetryState) -> None:
    print(state.attempt)


def results() -> None:
    parsed = execute_task_safely("parse", parse, "12")
    assert_type(parsed, TaskResult[int])
    assert_type(parsed.result, int | None)
    assert_type(parsed.success, bool)
    assert_type(parsed.error, str | None)
    assert_type(parsed.error_class, ErrorClass | None)
    assert_type(parsed.attempts, int)
    assert_type(parsed.elapsed, float)
    assert_type(parsed.exception, BaseException | None)
    assert_type(parsed.rejected, bool)
    assert_type(parsed.task_name, str)
    assert_type(parsed.retry_after, float | None)
    if parsed.success and parsed.result is not None:
        assert_type(parsed.result, int)
    assert_type(execute_task_safely("parse", parse, "ff", base=16), TaskResult[int])
    assert_type(execute_task_safely("load", load, key="a").result, dict[str, list[int]] | None)
    assert_type(execute_task_safely("lambda", lambda: 1.5), TaskResult[float])


def every_option(client: Any) -> None:
    for budget in (RetryBudget(), RedisRetryBudget(client, "tasks")):
        result = execute_task_safely(
            "parse",
            parse,
            "12",
            max_retries=2,
            circuit_breaker=CircuitBreaker(name="parser"),
            base_delay=0.1,
            max_delay=1.0,
            jitter=False,
            retryable_classes=[ErrorClass.TRANSIENT],
            deadline=3.0,
            classifier=classifier,
            on_retry=on_retry,
            budget=budget,
            clock=ManualClock(),
            base=16,
        )
        assert_type(result, TaskResult[int])


async def async_results() -> None:
    parsed = await execute_task_safely_async("parse", aparse, "12")
    assert_type(parsed, TaskResult[int])
    assert_type(parsed.result, int | None)
    assert_type(
        await execute_task_safely_async("parse", aparse, text="12", max_retries=0),
        TaskResult[int],
    )


def summaries() -> None:
    summary = run_tasks([("a", parse, "1"), ("b", load, "k")], concurrency=2, max_retries=1)
    assert_type(summary, TaskSummary)
    assert_type(summary.results, tuple[TaskResult, ...])
    assert_type(summary.results, tuple[TaskResult[Any], ...])
    assert_type(summary.total, int)
    assert_type(summary.succeeded, int)
    assert_type(summary.failed, int)
    assert_type(summary.rejected, int)
    assert_type(summary.interrupted, bool)
    assert_type(summary.by_class, Mapping[ErrorClass, int])
    assert_type(str(summary), str)
    assert_type(run_tasks([], budget=RetryBudget(), jitter=False), TaskSummary)


async def async_summaries() -> None:
    summary = await run_tasks_async([("a", aparse, "1")], concurrency=4, deadline=2.0)
    assert_type(summary, TaskSummary)


def rejected() -> None:
    execute_task_safely(parse, "12")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    execute_task_safely("parse", parse, max_retries="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    execute_task_safely("parse", parse, circuit_breaker=object())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    execute_task_safely("parse", parse, budget=3)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    run_tasks([("a", parse)], concurrency="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    run_tasks([("a", parse)], max_retries="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    run_tasks([("a", parse)], retries=2)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    run_tasks([("a", parse)], circuit_breaker="api")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    run_tasks(parse)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
