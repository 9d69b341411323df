"""Specification of ``resilient.task``: results instead of exceptions, breakers, many tasks."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import logging
import pickle
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient import (
    ErrorClass,
    RetryState,
    TaskResult,
    TaskSummary,
    execute_task_safely,
    execute_task_safely_async,
    run_tasks,
    run_tasks_async,
)
from resilient.breaker import CircuitBreaker, CircuitOpenError
from resilient.testing import ManualClock

FAST = {"jitter": False, "base_delay": 1.0}


class Flaky:
    """Raises the given exceptions in order, then returns ``"ok"``."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


class AsyncFlaky(Flaky):
    """``Flaky`` as a coroutine function."""

    async def __call__(self, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
        await asyncio.sleep(0)
        return super().__call__(*args, **kwargs)


def always(exc_type: type[Exception], message: str = "down") -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        fail.calls += 1  # type: ignore[attr-defined]
        raise exc_type(message)

    fail.calls = 0  # type: ignore[attr-defined]
    return fail


# --- one task: the seed scenarios ---------------------------------------------


def test_success_on_first_attempt() -> None:
    """No error, no problem: one attempt, the value, no wait."""
    clock = ManualClock()
    result = execute_task_safely("add", lambda a, b: a + b, 2, 3, clock=clock)
    assert result == TaskResult(success=True, result=5, attempts=1, elapsed=0.0, task_name="add")
    assert clock.sleeps == []


def test_keyword_arguments_reach_the_function() -> None:
    """Keywords that are not options go to the function."""
    result = execute_task_safely("kw", lambda *, x: x * 2, x=21, clock=ManualClock())
    assert result.result == 42


def test_transient_failures_then_success_counts_attempts_and_clock_time() -> None:
    """Two resets, then success: three attempts, elapsed is the waits on the clock."""
    clock = ManualClock(start=100.0)
    flaky = Flaky(ConnectionResetError("reset"), ConnectionResetError("reset"))
    result = execute_task_safely("fetch", flaky, clock=clock, **FAST)
    assert result.success
    assert result.result == "ok"
    assert result.attempts == 3
    assert clock.sleeps == [1.0, 2.0]
    assert result.elapsed == 3.0
    assert result.error is None
    assert result.error_class is None


def test_fatal_failure_is_not_retried() -> None:
    """A FATAL error ends the task after one attempt."""
    clock = ManualClock()
    flaky = Flaky(PermissionError("denied"))
    result = execute_task_safely("read", flaky, clock=clock)
    assert not result.success
    assert result.attempts == 1
    assert flaky.calls == 1
    assert result.error_class is ErrorClass.FATAL
    assert result.error == "PermissionError: denied"
    assert clock.sleeps == []


def test_exhausted_retries_report_the_last_exception_object() -> None:
    """Out of retries: success=False with the last exception, its class and the attempts."""
    clock = ManualClock()
    errors = [TimeoutError(f"slow {i}") for i in range(3)]
    result = execute_task_safely("slow", Flaky(*errors), max_retries=2, clock=clock, **FAST)
    assert not result.success
    assert result.exception is errors[-1]
    assert result.error == "TimeoutError: slow 2"
    assert result.error_class is ErrorClass.TIMEOUT
    assert result.attempts == 3
    assert result.elapsed == 3.0
    assert result.result is None


def test_max_retries_zero_means_one_attempt() -> None:
    """max_retries=0 calls the function once."""
    flaky = Flaky(ConnectionError("reset"))
    result = execute_task_safely("once", flaky, max_retries=0, clock=ManualClock())
    assert (result.success, result.attempts, flaky.calls) == (False, 1, 1)


def test_an_exception_without_message_is_described_by_its_type() -> None:
    """error is the type name alone when the message is empty."""
    result = execute_task_safely("t", Flaky(ValueError()), clock=ManualClock())
    assert result.error == "ValueError"


def test_an_exception_whose_str_fails_is_still_described() -> None:
    """A broken __str__ does not make the task raise."""

    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    result = execute_task_safely("t", Flaky(Broken()), clock=ManualClock())
    assert result.error == (
        "Broken: <test_an_exception_whose_str_fails_is_still_described.<locals>.Broken "
        "(str() failed)>"
    )


@pytest.mark.parametrize(
    "exc",
    [ValueError("v"), RuntimeError("r"), KeyError("k"), OSError("o"), Exception("e")],
)
def test_never_raises_for_an_exception(exc: Exception) -> None:
    """Any Exception of the function becomes a failed result."""
    result = execute_task_safely("t", Flaky(exc), clock=ManualClock())
    assert not result.success
    assert result.exception is exc


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, asyncio.CancelledError])
def test_base_exceptions_propagate_at_once(exc_type: type[BaseException]) -> None:
    """Ctrl-C, SystemExit and CancelledError pass through, never retried."""
    clock = ManualClock()
    exc = exc_type()
    flaky = Flaky(ConnectionError("reset"), exc)
    with pytest.raises(exc_type) as caught:
        execute_task_safely("t", flaky, clock=clock, **FAST)
    assert caught.value is exc
    assert flaky.calls == 2
    assert clock.sleeps == [1.0]


def test_a_coroutine_function_is_refused_before_running() -> None:
    """The sync runner does not silently drop an un-awaited coroutine."""

    async def job() -> None:
        pass

    with pytest.raises(TypeError, match="execute_task_safely_async"):
        execute_task_safely("t", job)


def test_a_sync_function_returning_a_coroutine_fails_the_task() -> None:
    """A coroutine returned at run time is closed and reported as a FATAL TypeError."""

    async def job() -> None:
        pass

    result = execute_task_safely("t", lambda: job(), clock=ManualClock())
    assert result.error_class is ErrorClass.FATAL
    assert "execute_task_safely_async" in (result.error or "")


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_retries": -1}, ValueError),
        ({"max_retries": 1.5}, TypeError),
        ({"base_delay": -1.0}, ValueError),
        ({"deadline": 0}, ValueError),
        ({"retryable_classes": ErrorClass.TRANSIENT}, TypeError),
        ({"classifier": None}, TypeError),
        ({"on_retry": "print"}, TypeError),
        ({"clock": object()}, TypeError),
        ({"circuit_breaker": object()}, TypeError),
    ],
)
def test_bad_options_raise_before_the_function_runs(
    options: dict[str, Any], error: type[Exception]
) -> None:
    """A configuration error is a bug: it raises, and the function is not called."""
    flaky = Flaky()
    with pytest.raises(error):
        execute_task_safely("t", flaky, **options)
    assert flaky.calls == 0


@pytest.mark.parametrize("name", ["", None, 3])
def test_task_name_must_be_a_non_empty_str(name: Any) -> None:
    """The name is checked like any option."""
    with pytest.raises(TypeError, match="task_name"):
        execute_task_safely(name, Flaky())


def test_a_generator_function_is_refused() -> None:
    """Its work would run outside the task."""

    def gen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        execute_task_safely("t", gen)


def test_retry_options_apply() -> None:
    """retryable_classes, on_retry and the classifier are those of @retry."""
    states: list[RetryState] = []
    flaky = Flaky(KeyError("miss"), KeyError("miss"))
    result = execute_task_safely(
        "cache",
        flaky,
        classifier=lambda exc: ErrorClass.DEGRADED,
        retryable_classes={ErrorClass.DEGRADED},
        on_retry=states.append,
        clock=ManualClock(),
        **FAST,
    )
    assert result.success
    assert [s.attempt for s in states] == [1, 2]
    assert [s.error_class for s in states] == [ErrorClass.DEGRADED] * 2


class _KeyRead(Exception):
    """Stops a call once its settings' cache key has been read."""


@pytest.mark.parametrize("form", ["execute_task_safely", "execute_task_safely_async"])
def test_each_option_lands_in_its_own_place_of_the_settings_key(
    form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache key of a task's settings holds every option under its own name."""
    from resilient import Classifier, ConcurrencyLimit, RateLimiter, RetryBudget, task

    given: dict[str, object] = {
        "max_retries": 7,
        "base_delay": 0.25,
        "max_delay": 9.0,
        "jitter": False,
        "retryable_classes": frozenset({ErrorClass.TRANSIENT}),
        "deadline": 30.0,
        "classifier": Classifier(),
        "on_retry": lambda state: None,
        "budget": RetryBudget(),
        "clock": ManualClock(),
        "max_retry_after": 11.0,
        "limiter": RateLimiter(rate=5, per=1.0),
        "circuit_breaker": CircuitBreaker(name="keyed"),
        "concurrency": ConcurrencyLimit(2),
    }
    assert sorted(given) == sorted(task._OPTION_ORDER)  # pyright: ignore[reportPrivateUsage]
    keys: list[tuple[object, ...]] = []

    def read(key: tuple[object, ...]) -> object:
        keys.append(key)
        raise _KeyRead

    monkeypatch.setattr(task._Settings, "cached", read)  # pyright: ignore[reportPrivateUsage]
    if form == "execute_task_safely":
        with pytest.raises(_KeyRead):
            execute_task_safely("keyed", lambda: None, **given)  # type: ignore[arg-type]
    else:
        with pytest.raises(_KeyRead):
            asyncio.run(execute_task_safely_async("keyed", _nothing, **given))  # type: ignore[arg-type]
    (key,) = keys
    assert key[0] is (form == "execute_task_safely_async")
    named = dict(zip(task._OPTION_ORDER, key[1:], strict=True))  # pyright: ignore[reportPrivateUsage]
    assert all(named[name] is value for name, value in given.items())


async def _nothing() -> None:
    return None


def test_deadline_stops_the_retries() -> None:
    """No wait is started that would end past the deadline."""
    clock = ManualClock()
    fail = always(ConnectionError)
    result = execute_task_safely("t", fail, max_retries=10, deadline=2.5, clock=clock, **FAST)
    assert not result.success
    assert result.attempts == 2
    assert clock.sleeps == [1.0]


def test_a_raising_classifier_is_logged_and_counts_as_unknown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broken classifier does not make the task raise; the failure is UNKNOWN."""

    def broken(exc: BaseException) -> ErrorClass:
        raise RuntimeError("classifier bug")

    with caplog.at_level(logging.ERROR, logger="resilient.task"):
        result = execute_task_safely("t", Flaky(ConnectionError("x")), classifier=broken)
    assert not result.success
    assert result.error_class is ErrorClass.UNKNOWN
    assert caplog.records[0].getMessage() == (
        "classifier test_a_raising_classifier_is_logged_and_counts_as_unknown.<locals>.broken "
        "failed on ConnectionError in task 't': RuntimeError: classifier bug; the failure "
        "counts as UNKNOWN"
    )


@pytest.mark.parametrize("form", ["sync", "async"])
def test_a_raising_classifier_runs_and_is_logged_once_per_failure(
    form: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The task's result reuses the class the retry loop found: a broken classifier is
    called, and its failure logged (with its traceback), once for the one failure."""
    calls: list[BaseException] = []

    def broken(exc: BaseException) -> ErrorClass:
        calls.append(exc)
        raise RuntimeError("classifier bug")

    with caplog.at_level(logging.ERROR, logger="resilient.task"):
        if form == "sync":
            result = execute_task_safely("t", Flaky(ConnectionError("x")), classifier=broken)
        else:
            result = asyncio.run(
                execute_task_safely_async("t", AsyncFlaky(ConnectionError("x")), classifier=broken)
            )
    assert result.error_class is ErrorClass.UNKNOWN
    assert len(calls) == 1
    failed = [r for r in caplog.records if getattr(r, "event", None) == "task_classifier_failed"]
    assert len(failed) == 1
    assert failed[0].exc_info is not None


@pytest.mark.parametrize("form", ["sync", "async"])
def test_the_classifier_runs_once_per_failure_of_a_task(form: str) -> None:
    """Three failures retried then given up on: three calls of the classifier, as for
    @retry, and the result's class is the last one's."""
    calls: list[BaseException] = []

    def transient(exc: BaseException) -> ErrorClass:
        calls.append(exc)
        return ErrorClass.TRANSIENT

    failures = [ConnectionError(str(n)) for n in range(3)]
    options: dict[str, Any] = {"classifier": transient, "max_retries": 2, "clock": ManualClock()}
    if form == "sync":
        result = execute_task_safely("t", Flaky(*failures), **options)
    else:
        result = asyncio.run(execute_task_safely_async("t", AsyncFlaky(*failures), **options))
    assert (result.attempts, result.error_class) == (3, ErrorClass.TRANSIENT)
    assert calls == failures


def test_a_classifier_returning_no_error_class_counts_as_unknown() -> None:
    """A classifier result that is not an ErrorClass is treated as UNKNOWN."""
    result = execute_task_safely(
        "t", Flaky(ConnectionError("x")), classifier=lambda exc: "transient"
    )
    assert result.error_class is ErrorClass.UNKNOWN
    assert result.attempts == 1


def test_a_raising_on_retry_is_logged_and_the_retries_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """on_retry failing is a logged bug, not a task failure."""

    def hook(state: RetryState) -> None:
        raise RuntimeError("hook bug")

    with caplog.at_level(logging.ERROR, logger="resilient.task"):
        result = execute_task_safely(
            "t", Flaky(ConnectionError("x")), on_retry=hook, clock=ManualClock()
        )
    assert result.success
    assert result.attempts == 2
    assert [r.getMessage() for r in caplog.records] == [
        "on_retry hook test_a_raising_on_retry_is_logged_and_the_retries_go_on.<locals>.hook "
        "failed in task 't' (attempt 1): RuntimeError: hook bug; the retries go on"
    ]


def test_a_raising_budget_fails_the_task_without_raising() -> None:
    """Even the budget's failure becomes a result."""

    class Broken:
        def record_failure(self) -> bool:
            raise ConnectionError("redis down")

        def record_success(self) -> None:
            pass

    result = execute_task_safely(
        "t", Flaky(TimeoutError("slow")), budget=Broken(), clock=ManualClock()
    )
    assert not result.success
    assert result.error == "ConnectionError: redis down"
    assert result.error_class is ErrorClass.TRANSIENT
    assert result.attempts == 1


def test_final_failure_is_one_structured_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """One ERROR line that reads on its own, with task, attempts, class, elapsed, error."""
    clock = ManualClock()
    with caplog.at_level(logging.DEBUG, logger="resilient.task"):
        execute_task_safely("sync-users", always(ConnectionError, "reset"), clock=clock, **FAST)
    (record,) = [r for r in caplog.records if r.name == "resilient.task"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        "task 'sync-users' failed (TRANSIENT) after 4 attempts over 7.000 s: ConnectionError: reset"
    )
    assert record.task == "sync-users"  # type: ignore[attr-defined]
    assert record.attempts == 4  # type: ignore[attr-defined]
    assert record.error_class is ErrorClass.TRANSIENT  # type: ignore[attr-defined]
    assert record.elapsed == 7.0  # type: ignore[attr-defined]
    assert (record.error_type, record.error) == ("ConnectionError", "reset")  # type: ignore[attr-defined]
    assert record.rejected is False  # type: ignore[attr-defined]


def test_the_failure_line_names_the_innermost_cause_and_the_field_keeps_the_full_text(
    caplog: pytest.LogCaptureFixture, refused_port: int
) -> None:
    """A requests ConnectionError reads as the refused connection underneath it, in the
    retry and the task's lines alike, not as urllib3's "Max retries exceeded with url"
    (which reads as this library's retries used up); ``error`` keeps that text."""
    import re

    import requests

    url = f"http://127.0.0.1:{refused_port}/users"
    with caplog.at_level(logging.WARNING):
        result = execute_task_safely(
            "users", requests.get, url, timeout=5, max_retries=1, clock=ManualClock()
        )
    assert isinstance(result.exception, requests.ConnectionError)
    lines = [r for r in caplog.records if r.name in ("resilient.task", "resilient.retry")]
    assert [r.name for r in lines] == ["resilient.retry", "resilient.task"]
    for record in lines:
        message = record.getMessage()
        assert re.search(
            r"ConnectionError, caused by ConnectionRefusedError: \[Errno \d+\] [^()]+$", message
        ), message
        assert "Max retries" not in message
        assert "Max retries exceeded with url: /users" in record.error  # type: ignore[attr-defined]


def test_success_logs_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    """A success is one DEBUG "task succeeded"."""
    with caplog.at_level(logging.DEBUG, logger="resilient.task"):
        execute_task_safely("t", Flaky(), clock=ManualClock())
    records = [r for r in caplog.records if r.name == "resilient.task"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.DEBUG, "task 't' succeeded after 1 attempt in 0.000 s")
    ]


# --- the circuit breaker ---------------------------------------------------------


def test_open_breaker_short_circuits_without_calling_the_function() -> None:
    """Open circuit: success=False, TIMEOUT, attempts=0, the function not called."""
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=30.0, name="db", clock=clock)
    breaker.trip()
    flaky = Flaky()
    result = execute_task_safely("q", flaky, circuit_breaker=breaker, clock=clock)
    assert flaky.calls == 0
    assert not result.success
    assert result.attempts == 0
    assert result.error_class is ErrorClass.TIMEOUT
    assert isinstance(result.exception, CircuitOpenError)
    assert result.exception.breaker_name == "db"
    assert (result.error or "").startswith("CircuitOpenError: ")
    assert clock.sleeps == []


def test_every_attempt_failure_counts_on_the_breaker() -> None:
    """Three failed attempts are three breaker failures."""
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=10, recovery_timeout=30.0, clock=clock)
    result = execute_task_safely(
        "q", always(ConnectionError), max_retries=2, circuit_breaker=breaker, clock=clock, **FAST
    )
    assert result.attempts == 3
    assert breaker.failures == 3


def test_breaker_opening_mid_run_stops_the_retries() -> None:
    """The circuit opens after two failures: no third call, TIMEOUT, attempts=2."""
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=30.0, clock=clock)
    fail = always(ConnectionError, "reset")
    result = execute_task_safely(
        "q", fail, max_retries=5, circuit_breaker=breaker, clock=clock, **FAST
    )
    assert fail.calls == 2  # type: ignore[attr-defined]
    assert result.attempts == 2
    assert result.error_class is ErrorClass.TIMEOUT
    assert isinstance(result.exception, CircuitOpenError)
    assert isinstance(result.exception.__cause__, ConnectionError)
    assert result.rejected
    assert clock.sleeps == [1.0]  # no wait for an attempt the open circuit would reject


def test_circuit_open_error_is_never_retried_whatever_retryable_classes_says() -> None:
    """Even with every class retryable, a CircuitOpenError ends the task."""
    clock = ManualClock()
    inner = CircuitBreaker(failure_threshold=1, recovery_timeout=30.0, name="inner", clock=clock)
    inner.trip()
    calls = []

    def uses_inner() -> None:
        calls.append(1)
        inner.call(lambda: None)

    result = execute_task_safely(
        "t",
        uses_inner,
        retryable_classes=set(ErrorClass),
        classifier=lambda exc: ErrorClass.TRANSIENT,
        clock=clock,
    )
    assert calls == [1]
    assert result.attempts == 1
    assert result.error_class is ErrorClass.TIMEOUT


def test_breaker_recovering_during_the_waits_admits_a_trial() -> None:
    """A recovery timeout shorter than the wait: the next attempt runs as a trial."""
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=0.5, clock=clock)
    flaky = Flaky(ConnectionError("reset"))
    result = execute_task_safely("t", flaky, circuit_breaker=breaker, clock=clock, **FAST)
    assert result.success
    assert result.attempts == 2
    assert breaker.state == "closed"


def test_success_through_the_breaker_is_recorded() -> None:
    """A success goes through the breaker too."""
    breaker = CircuitBreaker(failure_threshold=3, recovery_timeout=30.0, clock=ManualClock())
    result = execute_task_safely("t", Flaky(), circuit_breaker=breaker, clock=ManualClock())
    assert result.success
    assert breaker.metrics.successes == 1


# --- pickling --------------------------------------------------------------------


def test_task_result_pickles_with_its_exception() -> None:
    """A failed result survives a pickle round trip, exception and notes included."""
    result = execute_task_safely(
        "t", always(ConnectionError, "reset"), max_retries=1, clock=ManualClock(), **FAST
    )
    copy = pickle.loads(pickle.dumps(result))
    assert copy == result
    assert type(copy.exception) is ConnectionError
    assert copy.exception.args == ("reset",)
    assert copy.exception.__notes__ == result.exception.__notes__  # type: ignore[union-attr]


def test_task_result_pickles_with_a_circuit_open_error() -> None:
    """The short-circuit result pickles too."""
    breaker = CircuitBreaker(name="b", clock=ManualClock())
    breaker.trip()
    result = execute_task_safely("t", Flaky(), circuit_breaker=breaker)
    copy = pickle.loads(pickle.dumps(result))
    assert copy == result
    assert copy.exception.breaker_name == "b"  # type: ignore[union-attr]


def test_task_result_is_frozen() -> None:
    """Results are immutable."""
    result = TaskResult(success=True)
    with pytest.raises(AttributeError):
        result.success = False  # type: ignore[misc]


# --- the property ------------------------------------------------------------------

OUTCOMES = st.sampled_from(["ok", "transient", "fatal"])


@given(outcomes=st.lists(OUTCOMES, max_size=8), max_retries=st.integers(0, 6))
def test_result_matches_the_reference_model(outcomes: list[str], max_retries: int) -> None:
    """For any outcomes per attempt, success and attempts are those of a simple model."""
    expected_success, expected_attempts = False, max_retries + 1
    for number, outcome in enumerate([*outcomes, "ok"][: max_retries + 1], 1):
        if outcome != "transient":
            expected_success, expected_attempts = outcome == "ok", number
            break

    script = iter(outcomes)

    def attempt() -> str:
        outcome = next(script, "ok")
        if outcome == "transient":
            raise ConnectionError("reset")
        if outcome == "fatal":
            raise PermissionError("denied")
        return "done"

    result = execute_task_safely("p", attempt, max_retries=max_retries, clock=ManualClock())
    assert result.success is expected_success
    assert result.attempts == expected_attempts
    if not expected_success:
        assert result.error_class in {ErrorClass.TRANSIENT, ErrorClass.FATAL}


# --- async -----------------------------------------------------------------------


def test_async_transient_failures_then_success() -> None:
    """The async twin retries, awaiting the clock."""
    clock = ManualClock()
    flaky = AsyncFlaky(ConnectionError("reset"), TimeoutError("slow"))
    result = asyncio.run(execute_task_safely_async("a", flaky, 1, clock=clock, **FAST))
    assert (result.success, result.result, result.attempts) == (True, "ok", 3)
    assert clock.sleeps == [1.0, 2.0]
    assert result.elapsed == 3.0


def test_async_exhausted_reports_the_last_exception() -> None:
    """Async, out of retries: the last exception object and its class."""
    errors = [ConnectionError(str(i)) for i in range(2)]
    result = asyncio.run(
        execute_task_safely_async("a", AsyncFlaky(*errors), max_retries=1, clock=ManualClock())
    )
    assert result.exception is errors[-1]
    assert result.error_class is ErrorClass.TRANSIENT


def test_async_open_breaker_short_circuits() -> None:
    """Async: an open circuit gives TIMEOUT with attempts=0, the function not called."""
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=30.0, clock=clock)
    breaker.trip()
    flaky = AsyncFlaky()
    result = asyncio.run(execute_task_safely_async("a", flaky, circuit_breaker=breaker))
    assert (result.attempts, result.error_class, flaky.calls) == (0, ErrorClass.TIMEOUT, 0)


def test_async_breaker_opening_mid_run_stops_the_retries() -> None:
    """Async: the breaker counts each attempt and stops the retries when it opens."""
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=30.0, clock=clock)
    flaky = AsyncFlaky(*[ConnectionError("x") for _ in range(5)])
    result = asyncio.run(
        execute_task_safely_async("a", flaky, circuit_breaker=breaker, clock=clock, **FAST)
    )
    assert (result.attempts, result.error_class, flaky.calls) == (2, ErrorClass.TIMEOUT, 2)


def test_async_cancellation_propagates() -> None:
    """CancelledError from the task passes through, not retried."""
    flaky = AsyncFlaky(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(execute_task_safely_async("a", flaky, clock=ManualClock()))
    assert flaky.calls == 1


def test_async_function_returning_no_awaitable_fails_the_task() -> None:
    """A plain function given to the async twin is a FATAL task failure, not a crash."""
    result = asyncio.run(execute_task_safely_async("a", lambda: 3, clock=ManualClock()))
    assert result.error_class is ErrorClass.FATAL
    assert result.attempts == 1


# --- run_tasks ---------------------------------------------------------------------


def test_run_tasks_keeps_going_past_failures_in_order() -> None:
    """Every task runs, results come back in input order, counts by class add up."""
    clock = ManualClock()
    summary = run_tasks(
        [
            ("one", lambda: 1),
            ("denied", Flaky(PermissionError("no"))),
            ("two", lambda x: x, 2),
            ("reset", always(ConnectionError)),
        ],
        max_retries=1,
        clock=clock,
        **FAST,
    )
    assert [r.task_name for r in summary.results] == ["one", "denied", "two", "reset"]
    assert [r.result for r in summary.results if r.success] == [1, 2]
    assert (summary.succeeded, summary.failed, summary.total) == (2, 2, 4)
    assert summary.by_class[ErrorClass.FATAL] == 1
    assert summary.by_class[ErrorClass.TRANSIENT] == 1
    assert summary.by_class[ErrorClass.TIMEOUT] == 0
    assert str(summary) == "2/4 tasks completed successfully"
    assert not summary.interrupted


def test_run_tasks_with_no_tasks() -> None:
    """Nothing to run is a summary of nothing."""
    assert str(run_tasks([])) == "0/0 tasks completed successfully"


def test_run_tasks_shares_one_breaker() -> None:
    """Once the shared breaker opens, later tasks are rejected without running."""
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=60.0, clock=clock)
    fail = always(ConnectionError)
    summary = run_tasks(
        [(f"t{i}", fail) for i in range(5)], max_retries=0, circuit_breaker=breaker, clock=clock
    )
    assert [r.attempts for r in summary.results] == [1, 1, 0, 0, 0]
    assert summary.by_class[ErrorClass.TIMEOUT] == 3
    assert fail.calls == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("tasks", "concurrency", "error"),
    [
        ([("ok", lambda: 1)], 0, ValueError),
        ([("ok", lambda: 1)], True, TypeError),
        ([("ok", lambda: 1), ("bad",)], 1, TypeError),
        ([("ok", lambda: 1), ("bad", "not callable")], 1, TypeError),
        ([("ok", lambda: 1), (None, lambda: 1)], 1, TypeError),
        ("abc", 1, TypeError),
    ],
)
def test_run_tasks_checks_everything_before_running(
    tasks: Any, concurrency: Any, error: type[Exception]
) -> None:
    """A bad task or concurrency raises before any task runs."""
    with pytest.raises(error):
        run_tasks(tasks, concurrency=concurrency)


def test_run_tasks_refuses_unknown_options() -> None:
    """A misspelt option is a TypeError naming it."""
    with pytest.raises(TypeError, match="max_retry"):
        run_tasks([("t", lambda: 1)], max_retry=3)  # type: ignore[call-arg]


def test_run_tasks_with_real_threads_loses_nothing() -> None:
    """8 threads x 200 tasks: every task has a result, no exception escapes, counts add up."""
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=10_000, recovery_timeout=60.0, clock=clock)
    lock = threading.Lock()
    calls = [0]

    def job(i: int) -> int:
        with lock:
            calls[0] += 1
        if i % 5 == 0:
            raise ConnectionError("reset")
        if i % 7 == 0:
            raise PermissionError("denied")
        return i

    tasks = [(f"t{i}", job, i) for i in range(200)]
    summary = run_tasks(
        tasks, concurrency=8, max_retries=1, circuit_breaker=breaker, clock=clock, **FAST
    )
    assert [r.task_name for r in summary.results] == [f"t{i}" for i in range(200)]
    transient = sum(1 for i in range(200) if i % 5 == 0)
    fatal = sum(1 for i in range(200) if i % 5 and i % 7 == 0)
    assert summary.by_class[ErrorClass.TRANSIENT] == transient
    assert summary.by_class[ErrorClass.FATAL] == fatal
    assert summary.succeeded == 200 - transient - fatal
    assert sum(summary.by_class.values()) == summary.failed
    assert sum(r.attempts for r in summary.results) == calls[0]
    assert breaker.metrics.calls == calls[0]


def test_summary_pickles_and_has_a_short_repr() -> None:
    """A summary round-trips through pickle; its repr does not list every result."""
    summary = run_tasks([("a", lambda: 1), ("b", Flaky(PermissionError()))])
    assert pickle.loads(pickle.dumps(summary)) == summary
    assert repr(summary) == (
        "TaskSummary(succeeded=1, failed=1, rejected=0, total=2, interrupted=False)"
    )


# --- Ctrl-C --------------------------------------------------------------------------


def interrupting(at: int, ran: list[int]) -> Callable[[int], int]:
    def job(i: int) -> int:
        ran.append(i)
        if i == at:
            raise KeyboardInterrupt
        if i % 2:
            raise PermissionError("odd")
        return i

    return job


def test_ctrl_c_stops_the_run_with_a_partial_summary() -> None:
    """KeyboardInterrupt propagates with exc.summary and a note; no task starts after it."""
    ran: list[int] = []
    job = interrupting(4, ran)
    with pytest.raises(KeyboardInterrupt) as caught:
        run_tasks([(f"t{i}", job, i) for i in range(10)], clock=ManualClock())
    assert ran == [0, 1, 2, 3, 4]
    summary = caught.value.summary  # type: ignore[attr-defined]
    assert isinstance(summary, TaskSummary)
    assert summary.interrupted
    assert [r.task_name for r in summary.results] == ["t0", "t1", "t2", "t3"]
    expected = "2/10 tasks completed successfully (interrupted after 4 of 10)"
    assert str(summary) == expected
    assert caught.value.__notes__ == [expected]


def test_ctrl_c_in_a_thread_stops_the_run() -> None:
    """With threads too: the KeyboardInterrupt reaches the caller at once, and no task starts after.

    Tasks 0 to 2 hold their threads until the caller has the interrupt, and
    task 3 raises it once they all run, so the other 96 are all still queued
    when it does, whatever the scheduler does: none of them may start.
    """
    ran: list[int] = []
    held: list[threading.Thread] = []
    interrupted = threading.Event()
    interrupt = interrupting(3, ran)
    all_held = threading.Barrier(4)  # tasks 0 to 2, and task 3 before it interrupts

    def job(i: int) -> int:
        if i < 3:
            ran.append(i)
            held.append(threading.current_thread())
            all_held.wait(10)
            interrupted.wait(10)  # caps, so a run that never stops fails instead of hanging
            return i
        if i == 3:
            all_held.wait(10)
        return interrupt(i)

    with pytest.raises(KeyboardInterrupt) as caught:
        run_tasks([(f"t{i}", job, i) for i in range(100)], concurrency=4, clock=ManualClock())
    interrupted.set()
    summary = caught.value.summary  # type: ignore[attr-defined]
    assert summary.interrupted
    assert summary.total == 100
    assert summary.results == ()  # tasks 0 to 2 were still running: they finish unreported
    assert len(set(held)) == 3
    for thread in held:  # the held tasks finish, then their threads find nothing left to start
        thread.join(10)
        assert not thread.is_alive()
    assert sorted(ran) == [0, 1, 2, 3]


# --- run_tasks_async -------------------------------------------------------------------


def test_run_tasks_async_never_exceeds_concurrency() -> None:
    """At most `concurrency` tasks are in flight, and that many are reached."""
    in_flight = 0
    peak = 0

    async def job(i: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(3):
            await asyncio.sleep(0)
        in_flight -= 1
        if i % 4 == 0:
            raise ConnectionError("reset")
        return i

    summary = asyncio.run(
        run_tasks_async(
            [(f"t{i}", job, i) for i in range(50)],
            concurrency=5,
            max_retries=1,
            clock=ManualClock(),
            **FAST,
        )
    )
    assert peak == 5
    assert [r.task_name for r in summary.results] == [f"t{i}" for i in range(50)]
    assert summary.by_class[ErrorClass.TRANSIENT] == 13
    assert str(summary) == "37/50 tasks completed successfully"


def test_run_tasks_async_ctrl_c_cancels_in_flight_and_attaches_the_summary() -> None:
    """A task's KeyboardInterrupt stops the async run; the summary rides on it."""
    started: list[int] = []

    async def job(i: int) -> int:
        started.append(i)
        if i == 2:
            raise KeyboardInterrupt
        await asyncio.sleep(0 if i < 2 else 0.01)
        return i

    with pytest.raises(KeyboardInterrupt) as caught:
        asyncio.run(run_tasks_async([(f"t{i}", job, i) for i in range(20)], concurrency=3))
    summary = caught.value.summary  # type: ignore[attr-defined]
    assert str(summary) == "2/20 tasks completed successfully (interrupted after 2 of 20)"
    assert len(started) < 20


def test_run_tasks_async_cancelled_run_attaches_the_summary() -> None:
    """Cancelling the run cancels its tasks and re-raises the CancelledError with the summary."""
    seen: list[BaseException] = []

    async def main() -> None:
        hold = asyncio.Event()
        in_flight: list[int] = []

        async def job(i: int) -> int:
            if i >= 3:
                in_flight.append(i)
                await hold.wait()
            return i

        async def runner() -> None:
            try:
                await run_tasks_async([(f"t{i}", job, i) for i in range(10)], concurrency=2)
            except asyncio.CancelledError as exc:  # the very object run_tasks_async raised
                seen.append(exc)
                raise

        run = asyncio.ensure_future(runner())
        while len(in_flight) < 2:
            await asyncio.sleep(0)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(main())
    (exc,) = seen
    assert str(exc.summary) == (  # type: ignore[attr-defined]
        "3/10 tasks completed successfully (interrupted after 3 of 10)"
    )


def test_run_tasks_async_refuses_bad_concurrency() -> None:
    """concurrency < 1 is a ValueError before anything runs."""
    with pytest.raises(ValueError, match="concurrency"):
        asyncio.run(run_tasks_async([], concurrency=0))


# --- imports ---------------------------------------------------------------------------


def test_import_resilient_does_not_import_asyncio_or_thread_pools() -> None:
    """The task module loads asyncio and concurrent.futures only when used."""
    code = (
        "import sys, resilient, resilient.task; "
        "print('asyncio' in sys.modules, 'concurrent.futures' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]


def test_functools_partial_passes_keywords_that_clash_with_options() -> None:
    """A function keyword named like an option goes through a partial."""

    def job(*, clock: str) -> str:
        return clock

    result = execute_task_safely("t", functools.partial(job, clock="mine"), clock=ManualClock())
    assert result.result == "mine"


# --- rejected: "we did not try" apart from "it failed" ------------------------------


def test_an_open_circuit_gives_a_rejected_result_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """rejected=True, TIMEOUT, 0 attempts; one WARNING that names the task and the circuit."""
    clock = ManualClock()
    breaker = CircuitBreaker(recovery_timeout=30.0, name="users-api", clock=clock)
    breaker.trip()
    with caplog.at_level(logging.DEBUG, logger="resilient.task"):
        result = execute_task_safely("fetch-user", Flaky(), circuit_breaker=breaker, clock=clock)
    assert (result.success, result.rejected, result.error_class, result.attempts) == (
        False,
        True,
        ErrorClass.TIMEOUT,
        0,
    )
    [record] = [r for r in caplog.records if r.name == "resilient.task"]
    assert (record.levelno, record.getMessage()) == (
        logging.WARNING,
        "task 'fetch-user' not run: circuit 'users-api' is open (next trial in 30 s)",
    )
    assert (record.rejected, record.breaker) == (True, "users-api")  # type: ignore[attr-defined]


@pytest.mark.parametrize("fails", [0, 1, 4])
def test_rejected_is_false_whenever_the_task_ran_to_its_end(fails: int) -> None:
    """Successes and ordinary failures are never 'rejected'."""
    breaker = CircuitBreaker(10, clock=ManualClock())
    result = execute_task_safely(
        "t",
        Flaky(*[ConnectionError("x")] * fails),
        circuit_breaker=breaker,
        clock=ManualClock(),
        **FAST,
    )
    assert result.rejected is False
    assert result.success is (fails < 4)


def test_a_task_stopped_by_its_breaker_between_attempts_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The stop is logged as a WARNING with the attempts made and the last error."""
    clock = ManualClock()
    breaker = CircuitBreaker(2, recovery_timeout=30.0, name="db", clock=clock)
    with caplog.at_level(logging.WARNING, logger="resilient.task"):
        result = execute_task_safely(
            "q", always(ConnectionError, "refused"), circuit_breaker=breaker, clock=clock, **FAST
        )
    assert (result.rejected, result.attempts, clock.sleeps) == (True, 2, [1.0])
    [record] = [r for r in caplog.records if r.name == "resilient.task"]
    assert record.getMessage() == (
        "task 'q' stopped after 2 attempts over 1.000 s: circuit 'db' is open (next trial "
        "in 30 s); the last error: ConnectionError: refused"
    )


def test_a_rejection_from_a_breaker_inside_the_function_is_not_the_tasks_own() -> None:
    """The function ran (and met another open circuit): TIMEOUT, 1 attempt, not rejected."""
    inner = CircuitBreaker(name="inner", clock=ManualClock())
    inner.trip()
    result = execute_task_safely("t", lambda: inner.call(lambda: None))
    assert (result.error_class, result.attempts, result.rejected) == (ErrorClass.TIMEOUT, 1, False)


def test_the_summary_counts_rejected_tasks_apart() -> None:
    """succeeded + failed + rejected: what ran and failed is told from what never ran."""
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=60.0, clock=clock)
    summary = run_tasks(
        [(f"t{i}", always(ConnectionError)) for i in range(5)],
        max_retries=0,
        circuit_breaker=breaker,
        clock=clock,
    )
    assert (summary.succeeded, summary.failed, summary.rejected) == (0, 2, 3)
    assert str(summary) == "0/5 tasks completed successfully"


def test_async_open_circuit_is_rejected_too() -> None:
    """The async twin reports the same rejection."""
    clock = ManualClock()
    breaker = CircuitBreaker(recovery_timeout=30.0, clock=clock)
    breaker.trip()

    async def job() -> str:
        return "never"

    result = asyncio.run(execute_task_safely_async("t", job, circuit_breaker=breaker, clock=clock))
    assert (result.rejected, result.attempts, result.error_class) == (True, 0, ErrorClass.TIMEOUT)


def test_a_result_with_rejected_pickles_and_compares() -> None:
    """The new field is part of equality and survives a pickle round trip."""
    result = TaskResult(False, error_class=ErrorClass.TIMEOUT, rejected=True, task_name="t")
    assert pickle.loads(pickle.dumps(result)) == result
    assert result != TaskResult(False, error_class=ErrorClass.TIMEOUT, task_name="t")


# --- what the library builds is what users build -----------------------------------


def _fails_then_returns(failures: int) -> Callable[[], str]:
    left = [failures]

    def work() -> str:
        if left[0]:
            left[0] -= 1
            raise ConnectionError("reset")
        return "ok"

    return work


@pytest.mark.parametrize("failures", [0, 1, 4])
def test_a_returned_result_is_the_dataclass_users_build(failures: int) -> None:
    """Equal, same hash, repr, fields, ``replace``, pickle and frozenness as ``TaskResult(...)``."""
    clock = ManualClock()
    got = execute_task_safely(
        "t", _fails_then_returns(failures), max_retries=3, clock=clock, **FAST
    )
    built = TaskResult(
        got.success,
        got.result,
        got.error,
        got.error_class,
        got.attempts,
        got.elapsed,
        got.exception,
        got.rejected,
        got.task_name,
    )
    assert type(got) is TaskResult
    assert got == built
    assert hash(got) == hash(built)
    assert repr(got) == repr(built)
    assert vars(got) == vars(built)
    assert dataclasses.fields(got) == dataclasses.fields(built)
    assert dataclasses.replace(got, task_name="u") == dataclasses.replace(built, task_name="u")
    assert pickle.loads(pickle.dumps(got)) == built
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.attempts = 9  # type: ignore[misc]


class _Boom(ConnectionError):
    """A retryable failure whose instances can be followed with weak references."""


def test_a_failed_task_keeps_only_its_last_exception() -> None:
    """The result holds the last failure; every earlier attempt's is freed."""
    errors: list[weakref.ref[_Boom]] = []

    def fresh_error() -> _Boom:
        error = _Boom(f"attempt {len(errors) + 1}")
        errors.append(weakref.ref(error))
        return error

    def work() -> None:
        raise fresh_error()

    logging.disable(logging.CRITICAL)  # captured log records would hold on to the errors
    try:
        result = execute_task_safely("t", work, max_retries=3, clock=ManualClock(), **FAST)
    finally:
        logging.disable(logging.NOTSET)
    gc.collect()
    assert str(result.exception) == "attempt 4"
    assert [n for n, ref in enumerate(errors, 1) if ref() is not None] == [4]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_failed_task_logs_its_end_once(
    caplog: pytest.LogCaptureFixture, asynchronous: bool
) -> None:
    """The task's ERROR line says how it ended; the retry loop adds no "giving up" line
    of its own (two ERROR lines for one failure would page an operator twice)."""
    failures = [ConnectionError("refused")] * 3
    clock = ManualClock()
    with caplog.at_level(logging.DEBUG, logger="resilient"):
        if asynchronous:
            result = asyncio.run(
                execute_task_safely_async("sync", AsyncFlaky(*failures), max_retries=2, clock=clock)
            )
        else:
            result = execute_task_safely("sync", Flaky(*failures), max_retries=2, clock=clock)
    assert (result.success, result.attempts) == (False, 3)
    errors = [(r.name, r.event) for r in caplog.records if r.levelno >= logging.ERROR]  # type: ignore[attr-defined]
    assert errors == [("resilient.task", "task_failed")]
    assert [r.event for r in caplog.records if r.name == "resilient.retry"] == [  # type: ignore[attr-defined]
        "retry_scheduled",
        "retry_scheduled",
    ]


# --- the server's wait (Retry-After) ------------------------------------------


def _http_error(status: int, retry_after: str) -> Exception:
    import requests

    response = requests.Response()
    response.status_code = status
    response.headers["Retry-After"] = retry_after
    return requests.HTTPError(f"{status} error", response=response)


def test_task_gives_up_at_once_on_a_long_retry_after_and_carries_it() -> None:
    """Retry-After: 3600: one attempt, no wait, and TaskResult.retry_after says when to requeue."""
    clock = ManualClock()
    flaky = Flaky(_http_error(429, "3600"))
    result = execute_task_safely("report", flaky, max_retries=5, clock=clock)
    assert (result.success, result.attempts, result.retry_after) == (False, 1, 3600.0)
    assert result.error_class is ErrorClass.TRANSIENT
    assert clock.sleeps == []
    assert result.exception is not None
    assert "asked to wait 3600 s (Retry-After)" in result.exception.__notes__[0]


def test_task_honours_a_retry_after_beyond_max_delay_up_to_max_retry_after() -> None:
    """max_delay=1 does not cut a Retry-After of 90; max_retry_after=60 refuses it."""
    clock = ManualClock()
    result = execute_task_safely("a", Flaky(_http_error(503, "90")), max_delay=1.0, clock=clock)
    assert (result.success, result.attempts, result.retry_after) == (True, 2, None)
    assert clock.sleeps == [90.0]
    result = execute_task_safely(
        "b", Flaky(_http_error(503, "90")), max_retry_after=60, clock=clock
    )
    assert (result.success, result.attempts, result.retry_after) == (False, 1, 90.0)
    assert clock.sleeps == [90.0]


def test_task_retry_after_past_the_deadline_gives_up_at_once() -> None:
    """A server's wait that ends past the task's deadline: no wait, the ask in the result."""
    clock = ManualClock()
    result = execute_task_safely("c", Flaky(_http_error(429, "40")), deadline=30.0, clock=clock)
    assert (result.success, result.attempts, result.retry_after) == (False, 1, 40.0)
    assert clock.sleeps == []


def test_async_task_and_run_tasks_take_max_retry_after() -> None:
    """The async twin and run_tasks accept max_retry_after and report retry_after."""
    clock = ManualClock()
    result = asyncio.run(
        execute_task_safely_async(
            "d", AsyncFlaky(_http_error(429, "30")), max_retry_after=10, clock=clock
        )
    )
    assert (result.success, result.retry_after) == (False, 30.0)
    summary = run_tasks(
        [("e", Flaky(_http_error(429, "30"))), ("f", Flaky(_http_error(429, "5")))],
        max_retry_after=10,
        clock=clock,
    )
    assert [(r.success, r.retry_after) for r in summary.results] == [(False, 30.0), (True, None)]
    assert clock.sleeps == [5.0]


def test_task_result_retry_after_is_none_without_a_server_wait() -> None:
    """A failure without a Retry-After leaves retry_after None."""
    result = execute_task_safely("g", always(ConnectionError), max_retries=1, clock=ManualClock())
    assert (result.success, result.retry_after) == (False, None)


def test_task_bad_max_retry_after_is_refused_before_the_call() -> None:
    """max_retry_after=-1 raises ValueError naming it; the function is not called."""
    flaky = Flaky()
    with pytest.raises(ValueError, match="max_retry_after must be a finite number >= 0, got -1"):
        execute_task_safely("h", flaky, max_retry_after=-1)
    assert flaky.calls == 0


def test_a_failure_whose_message_nests_hundreds_of_key_values_is_a_result() -> None:
    """A 404 on a URL of 500 ``q=`` pairs gives a failed TaskResult (the redaction of
    its message recursed once per pair and raised RecursionError out of the task)."""
    import requests

    def fetch() -> None:
        response = requests.Response()
        response.status_code = 404
        response.reason = "Not Found"
        response.url = "https://api.example.com/search/" + "q=" * 500
        response.raise_for_status()

    result = execute_task_safely("search", fetch, clock=ManualClock())
    assert not result.success
    assert result.error_class is ErrorClass.FATAL
    assert isinstance(result.exception, requests.HTTPError)
