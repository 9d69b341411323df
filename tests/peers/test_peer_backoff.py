"""backoff's behavioural tests that apply here, translated (behaviour, not code).

Each test names the backoff test it comes from (``litl/backoff``, ``tests/``).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from resilient import retry
from resilient.testing import ManualClock


@pytest.mark.parametrize("raise_on_giveup", [True, False])
def test_on_exception_giveup(raise_on_giveup: bool) -> None:
    """tests/test_backoff.py::test_on_exception_giveup: three tries, two waits, then
    give up: raise (``raise_on_giveup=True``) or return what the give-up handler says
    (``fallback=``, for ``raise_on_giveup=False``)."""
    calls = 0
    gave_up: list[Exception] = []

    def on_giveup(exc: Exception) -> None:
        gave_up.append(exc)

    def fails() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("catch me")

    clock = ManualClock()
    options: dict[str, object] = {"on": ValueError, "max_retries": 2, "clock": clock}
    if raise_on_giveup:
        with pytest.raises(ValueError, match="catch me"):
            retry(**options)(fails)()  # type: ignore[call-overload]
    else:
        assert retry(fallback=on_giveup, **options)(fails)() is None  # type: ignore[call-overload]
        assert len(gave_up) == 1
    assert calls == 3
    assert len(clock.sleeps) == 2


def test_on_exception_giveup_async() -> None:
    """tests/test_backoff_async.py::test_on_exception_giveup: the same for coroutines."""
    calls = 0

    @retry(on=ValueError, max_retries=2, fallback=lambda exc: "gave up", clock=ManualClock())
    async def fails() -> str:
        nonlocal calls
        calls += 1
        raise ValueError("catch me")

    assert asyncio.run(fails()) == "gave up"
    assert calls == 3


def test_on_exception_success() -> None:
    """tests/test_backoff.py::test_on_exception_success: fail twice, succeed on the
    third try."""
    calls = 0

    @retry(on=ValueError, max_retries=4, clock=ManualClock())
    def succeeder() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ValueError("catch me")
        return "ok"

    assert succeeder() == "ok"
    assert calls == 3


def test_on_exception_logger_user(caplog: pytest.LogCaptureFixture) -> None:
    """tests/test_backoff.py::test_on_exception_logger_user: the retry and give-up lines
    go to the logger the user passed."""
    logger = logging.getLogger("backoff.port")

    @retry(on=KeyError, max_retries=2, logger=logger, clock=ManualClock())
    def key_error() -> None:
        raise KeyError("x")

    with caplog.at_level(logging.INFO, logger="backoff.port"), pytest.raises(KeyError):
        key_error()
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING", "ERROR"]
    assert {r.name for r in caplog.records} == {"backoff.port"}


def test_on_exception_logger_user_str() -> None:
    """tests/test_backoff.py::test_on_exception_logger_user_str: backoff takes a logger's
    name; here ``logger=`` is a Logger, and a name is refused with the spelling to use."""
    with pytest.raises(TypeError, match=r"write logger=logging\.getLogger\('my-logger'\)"):
        retry(logger="my-logger")  # type: ignore[call-overload]


def test_on_exception_logger_none(caplog: pytest.LogCaptureFixture) -> None:
    """tests/test_backoff.py::test_on_exception_logger_none: backoff's ``logger=None``
    silences it; here ``None`` is the default logger, and a logger set above ERROR is
    silent (the lines still reach ``on_retry`` and telemetry)."""
    quiet = logging.getLogger("backoff.port.quiet")
    quiet.setLevel(logging.CRITICAL)
    retried: list[int] = []

    @retry(
        on=KeyError,
        max_retries=2,
        logger=quiet,
        on_retry=lambda state: retried.append(state.attempt),
        clock=ManualClock(),
    )
    def key_error() -> None:
        raise KeyError("x")

    with caplog.at_level(logging.INFO), pytest.raises(KeyError):
        key_error()
    assert caplog.records == []
    assert retried == [1, 2]


def test_on_exception_tuple() -> None:
    """tests/test_backoff.py::test_on_exception_tuple: a tuple of types, each retried."""
    errors = [TypeError("t"), ValueError("v")]

    @retry(on=(TypeError, ValueError), max_retries=3, clock=ManualClock())
    def flaky() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    assert flaky() == "ok"
