"""tenacity's behavioural tests that apply here, translated (behaviour, not code).

Each test names the tenacity test it comes from (``jd/tenacity``, ``tests/``).
Waits go through a ``ManualClock``: tenacity's ``sleep=`` is our ``clock=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import timedelta
from typing import Any

import pytest

from resilient import ErrorClass, retry, retry_with_backoff, retrying
from resilient.testing import ManualClock


class CustomError(Exception):
    """An exception ``classify`` knows nothing about (UNKNOWN: not retried by default)."""


class FailsUntil:
    """Raises *error* on the first *count* calls, then returns True."""

    def __init__(self, count: int, error: type[Exception] = OSError) -> None:
        self.count = count
        self.error = error
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls <= self.count:
            raise self.error(f"call {self.calls}")
        return True


def test_retry_if_exception_of_type() -> None:
    """tests/test_tenacity.py::TestDecoratorWrapper::test_retry_if_exception_of_type:
    the named type is retried until success; another type is raised at once."""
    clock = ManualClock()
    assert retry(on=CustomError, max_retries=5, clock=clock)(FailsUntil(5, CustomError))()
    other = FailsUntil(5, NameError)
    with pytest.raises(NameError):
        retry(on=CustomError, max_retries=5, clock=clock)(other)()
    assert other.calls == 1


def test_retry_if_not_exception_type_needs_on() -> None:
    """tests/test_tenacity.py::TestDecoratorWrapper::test_retry_except_exception_of_type
    (``retry_if_not_exception_type(IOError)``): "everything but E" is a predicate on
    ``on=``; when the classifier retries E itself (a connection error), also
    ``retryable_classes=()``, or E is still retried by its class."""
    clock = ManualClock()
    everything_but_io_error = retry(
        on=lambda exc: not isinstance(exc, IOError), max_retries=5, clock=clock
    )
    assert everything_but_io_error(FailsUntil(5, NameError))()  # FATAL, retried all the same
    stops = FailsUntil(5, IOError)
    with pytest.raises(IOError, match="call 1"):
        everything_but_io_error(stops)()
    assert stops.calls == 1

    def everything_but(error: type[Exception], **options: Any) -> FailsUntil:
        failing = FailsUntil(5, error)
        with contextlib.suppress(error):
            retry(on=lambda exc: not isinstance(exc, error), clock=clock, **options)(failing)()
        return failing

    assert everything_but(ConnectionError).calls == 4  # TRANSIENT: still retried by class
    assert everything_but(ConnectionError, retryable_classes=()).calls == 1


def test_context_manager_retry_one() -> None:
    """tests/test_tenacity.py::TestContextManager::test_context_manager_retry_one:
    a block that fails once is run again, then the loop ends."""
    runs = []
    for attempt in retrying(clock=ManualClock(), on=Exception):
        with attempt:
            runs.append(attempt.number)
            if len(runs) == 1:
                raise CustomError("Retry it!")
    assert runs == [1, 2]


def test_context_manager_on_error() -> None:
    """tests/test_tenacity.py::TestContextManager::test_context_manager_on_error:
    an exception that is not retried leaves the loop at once."""

    def block() -> None:
        for attempt in retrying(on=OSError, clock=ManualClock()):
            with attempt:
                raise CustomError("Don't retry!")

    with pytest.raises(CustomError):
        block()


def test_context_manager_retry_error() -> None:
    """tests/test_tenacity.py::TestContextManager::test_context_manager_retry_error:
    when the attempts run out the block's last exception leaves the loop (here the
    original, not a RetryError)."""
    runs = []

    def block() -> None:
        for attempt in retrying(max_retries=1, on=Exception, clock=ManualClock()):
            with attempt:
                runs.append(attempt.number)
                raise CustomError(f"attempt {attempt.number}")

    with pytest.raises(CustomError, match="attempt 2"):
        block()
    assert runs == [1, 2]


def test_context_manager_reraise() -> None:
    """tests/test_tenacity.py::TestContextManager::test_context_manager_reraise:
    ``reraise=True`` is how the block form always ends: the block's own exception."""

    def block() -> None:
        for attempt in retrying(max_retries=1, on=CustomError, jitter=False, clock=ManualClock()):
            with attempt:
                raise CustomError("Don't retry!")

    with pytest.raises(CustomError, match="Don't retry!") as caught:
        block()
    assert caught.value.__notes__ == ["resilient: 2 attempts over 1.000 s (retries exhausted)"]


def test_get_fn_name_context_manager_with_name(caplog: pytest.LogCaptureFixture) -> None:
    """tests/test_tenacity.py::TestRetryingName::test_get_fn_name_context_manager_with_name:
    ``Retrying(name="ws_listener")`` is ``retrying(name="ws_listener")``; its lines and
    their ``function`` field carry the name."""
    import logging

    with caplog.at_level(logging.WARNING, logger="resilient.retry"):
        for attempt in retrying(name="ws_listener", clock=ManualClock(), jitter=False):
            with attempt:
                if attempt.number == 1:
                    raise ConnectionError("closed")
    [record] = caplog.records
    assert record.getMessage().startswith("retrying ws_listener in 1 s")
    assert record.function == "ws_listener"  # type: ignore[attr-defined]


def test_async_for_retries_the_block() -> None:
    """tests/test_asyncio.py::TestContextManager::test_do_max_attempts: ``async for``
    makes at most the configured attempts, awaiting its waits."""
    clock = ManualClock()
    runs = []

    async def main() -> None:
        async for attempt in retrying(max_retries=2, on=Exception, clock=clock):
            with attempt:
                runs.append(attempt.number)
                raise CustomError("again")

    with pytest.raises(CustomError):
        asyncio.run(main())
    assert runs == [1, 2, 3]
    assert len(clock.sleeps) == 2


def test_retry_with_result_in_a_block() -> None:
    """tests/test_asyncio.py::TestContextManager::test_retry_with_result: a block's
    result judged by the result predicate (``set_result`` is ``attempt.result``)."""
    attempts = 0
    for attempt in retrying(retry_on_result=lambda value: value < 3, clock=ManualClock()):
        with attempt:
            attempts += 1
            attempt.result = attempts
    assert attempts == 3


@pytest.mark.parametrize("asynchronous", [False, True])
def test_retry_error_callback_gives_the_result(asynchronous: bool) -> None:
    """tests/test_retry_error_callback.py::test_falsey_retry_error_callback: after the
    last attempt the callback is called once and its value is the result."""
    seen: list[Exception] = []
    failing = FailsUntil(10, ConnectionError)

    def fallback(exc: Exception) -> str:
        seen.append(exc)
        return "fallback"

    decorated = retry(max_retries=2, fallback=fallback, clock=ManualClock())
    if asynchronous:

        async def async_fails() -> bool:
            return failing()

        result = asyncio.run(decorated(async_fails)())
    else:
        result = decorated(failing)()
    assert result == "fallback"
    assert failing.calls == 3
    assert len(seen) == 1
    assert isinstance(seen[0], ConnectionError)


def test_falsey_async_retry_error_callback() -> None:
    """tests/test_retry_error_callback.py::test_falsey_async_retry_error_callback: an
    ``async`` callback is awaited."""

    async def fallback(exc: Exception) -> str:
        await asyncio.sleep(0)
        return "fallback"

    @retry(max_retries=1, fallback=fallback, clock=ManualClock())
    async def fails() -> str:
        raise ConnectionError("retry")

    assert asyncio.run(fails()) == "fallback"


@pytest.mark.parametrize("callback", [False, 0, ""])
def test_falsey_noncallable_retry_error_callback(callback: object) -> None:
    """tests/test_retry_error_callback.py::test_falsey_noncallable_retry_error_callback:
    tenacity ignores a falsey non-callable; here it is refused when decorating."""
    with pytest.raises(TypeError, match="fallback must be callable"):
        retry(fallback=callback)  # type: ignore[call-overload]


def test_wait_timedelta_converted_for_sleep_calls() -> None:
    """tests/test_wait_timedelta.py::TestWaitTimedeltaSync::
    test_wait_timedelta_converted_for_sleep_calls: a timedelta wait sleeps its seconds."""
    clock = ManualClock()
    delay = timedelta(seconds=1.25)
    decorated = retry(base_delay=delay, max_delay=delay, jitter=False, clock=clock)
    assert decorated(FailsUntil(2, ConnectionError))()
    assert clock.sleeps == [1.25, 1.25]


def test_manual_iteration_uses_normalized_wait() -> None:
    """tests/test_wait_timedelta.py::TestWaitTimedeltaSync::
    test_manual_iteration_uses_normalized_wait: the block form too."""
    clock = ManualClock()
    delay = timedelta(seconds=0.5)
    for attempt in retrying(base_delay=delay, max_delay=delay, jitter=False, clock=clock):
        with attempt:
            if attempt.number < 3:
                raise ConnectionError("retry")
    assert clock.sleeps == [0.5, 0.5]


def test_wait_negative_timedelta_is_refused() -> None:
    """tests/test_wait_timedelta.py::TestWaitTimedeltaSync::
    test_wait_negative_timedelta_is_clamped_for_sleep_and_stats: tenacity clamps a
    negative wait to 0; a negative duration here is a mistake, refused at construction."""
    with pytest.raises(ValueError, match="base_delay must be a finite number >= 0"):
        retry(base_delay=timedelta(seconds=-5))


def test_stop_before_delay_uses_normalized_wait() -> None:
    """tests/test_wait_timedelta.py::TestWaitTimedeltaSync::
    test_stop_before_delay_uses_normalized_wait: a wait that would end past the
    deadline is never started: one attempt."""
    clock = ManualClock()
    failing = FailsUntil(10, ConnectionError)
    ten = timedelta(seconds=10)
    decorated = retry(deadline=1.0, base_delay=ten, max_delay=ten, jitter=False, clock=clock)
    with pytest.raises(ConnectionError):
        decorated(failing)()
    assert failing.calls == 1
    assert clock.sleeps == []


def test_stop_when_event_set() -> None:
    """tenacity's ``stop_when_event_set`` (``tenacity/stop.py``; tenacity's suite has no
    test of its own for it, this one states its documented behaviour): once the event is
    set, no new attempt starts."""
    event = threading.Event()
    failing = FailsUntil(10, ConnectionError)

    def on_retry(state: object) -> None:
        event.set()  # the shutdown signal arrives after the first failure

    with pytest.raises(ConnectionError):
        retry(stop_event=event, on_retry=on_retry, clock=ManualClock())(failing)()
    assert failing.calls == 1


def test_before_sleep_log_to_a_given_logger(caplog: pytest.LogCaptureFixture) -> None:
    """tests/test_tenacity.py::TestBeforeAfterAttempts::test_before_sleep_log_raises:
    each retry is logged on the logger the caller chose."""
    import logging

    logger = logging.getLogger("tenacity.port")
    with caplog.at_level(logging.WARNING, logger="tenacity.port"):
        retry(on=OSError, max_retries=2, logger=logger, clock=ManualClock())(
            FailsUntil(2, OSError)
        )()
    assert [r.name for r in caplog.records] == ["tenacity.port", "tenacity.port"]
    assert all(r.getMessage().startswith("retrying ") for r in caplog.records)


def test_retry_function_object_with_its_arguments() -> None:
    """tests/test_tenacity.py::TestDecoratorWrapper::test_retry_function_object: a
    callable object (no ``__name__``) is retried like a function; the function form
    passes the call's arguments through, as ``Retrying()(fn, *args)`` does."""

    class Hello:
        def __call__(self) -> str:
            return "Hello"

    assert retry(max_retries=2, clock=ManualClock())(Hello())() == "Hello"

    def add(a: int, b: int) -> int:
        return a + b

    assert retry_with_backoff(add, 1, b=2, on=CustomError) == 3


def test_exception_types_are_not_error_classes() -> None:
    """tests/test_tenacity.py::TestDecoratorWrapper::test_retry_if_exception_of_type,
    as a tenacity user first guesses it here (``retry_if_exception_type(IOError)`` spelled
    as a class among ``retryable_classes``): refused, pointing to ``on=``."""
    with pytest.raises(TypeError, match=r"on=\(OSError,\)"):
        retry(retryable_classes=[ErrorClass.TRANSIENT, OSError])  # type: ignore[list-item]
