"""stamina's behavioural tests that apply here, translated (behaviour, not code).

Each test names the stamina test it comes from (``hynek/stamina``, ``tests/``).
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from resilient import retry, retry_with_backoff, retrying
from resilient.testing import ManualClock, cap_attempts


@pytest.mark.parametrize("timeout", [None, 1, dt.timedelta(days=1)])
@pytest.mark.parametrize("duration", [1, dt.timedelta(days=1)])
def test_ok(timeout: float | dt.timedelta | None, duration: float | dt.timedelta) -> None:
    """tests/test_sync.py::test_ok: no error, no problem, whatever the durations' type."""

    @retry(on=Exception, deadline=timeout, base_delay=duration, max_delay=duration)
    def f() -> int:
        return 42

    assert f() == 42


@pytest.mark.parametrize("timeout", [None, 1, dt.timedelta(days=1)])
@pytest.mark.parametrize("duration", [0, dt.timedelta(days=0)])
def test_retries(duration: float | dt.timedelta, timeout: float | dt.timedelta | None) -> None:
    """tests/test_sync.py::test_retries: retries if the specific error is raised."""
    i = 0

    @retry(on=ValueError, deadline=timeout, base_delay=duration, max_delay=duration)
    def f() -> int:
        nonlocal i
        if i < 1:
            i += 1
            raise ValueError
        return 42

    assert f() == 42
    assert i == 1


def test_wrong_exception() -> None:
    """tests/test_sync.py::test_wrong_exception: exceptions not passed as ``on`` are left
    through (a TypeError is FATAL: raised at once)."""

    @retry(on=ValueError, clock=ManualClock())
    def f() -> None:
        raise TypeError("passed")

    with pytest.raises(TypeError, match="passed"):
        f()


def test_retry_inactive_block() -> None:
    """tests/test_sync.py::test_retry_inactive_block: with retries off
    (``cap_attempts(1)``, stamina's ``set_active(False)``) a block runs once."""
    num_called = 0

    def block() -> None:
        nonlocal num_called
        for attempt in retrying(on=ValueError):
            with attempt:
                num_called += 1
                raise ValueError("passed")

    with cap_attempts(1), pytest.raises(ValueError, match="passed"):
        block()
    assert num_called == 1


def test_retry_inactive_block_ok() -> None:
    """tests/test_sync.py::test_retry_inactive_block_ok: the happy path still works."""
    num_called = 0
    with cap_attempts(1):
        for attempt in retrying(on=ValueError):
            with attempt:
                num_called += 1
    assert num_called == 1


def test_retry_block() -> None:
    """tests/test_sync.py::test_retry_block: blocks are retried; attempts count from 1
    and say which they are."""
    i = 0
    for attempt in retrying(on=ValueError, max_delay=0, base_delay=0):
        with attempt:
            i += 1
            assert attempt.number == i
            assert repr(attempt) == f"<Attempt {i}>"
            if i < 2:
                raise ValueError
    assert i == 2


def test_retry_block_async() -> None:
    """tests/test_async.py::test_retry_block: ``async for`` blocks are retried."""
    i = 0

    async def main() -> None:
        nonlocal i
        async for attempt in retrying(on=ValueError, max_delay=0, base_delay=0):
            with attempt:
                i += 1
                assert attempt.number == i
                if i < 2:
                    raise ValueError

    asyncio.run(main())
    assert i == 2


def test_retrying_caller_passes_arguments_through() -> None:
    """tests/test_sync.py::TestRetryingCaller::test_retries: the function form retries
    on the named error and passes the arguments through."""
    i = 0

    def f(*args: object, **kw: object) -> tuple[tuple[object, ...], dict[str, object]]:
        nonlocal i
        if i < 1:
            i += 1
            raise ValueError
        return args, kw

    args, kw = retry_with_backoff(f, 42, on=ValueError, base_delay=0, max_delay=0, foo="bar")
    assert i == 1
    assert args == (42,)
    assert kw == {"foo": "bar"}
