"""circuitbreaker's behavioural tests that apply here, translated (behaviour, not code).

Each test names the circuitbreaker test it comes from (``fabfuel/circuitbreaker``,
``tests/``). Its ``fallback_function`` maps onto ``@retry(fallback=...)`` over
the breaker (called with the ``CircuitOpenError``, not the call's arguments).
"""

from __future__ import annotations

import pytest

from resilient import CircuitBreaker, CircuitOpenError, retry
from resilient.testing import ManualClock


def test_circuitbreaker_should_call_fallback_function_if_open() -> None:
    """tests/test_unit.py::test_circuitbreaker_should_call_fallback_function_if_open
    and ..._should_not_call_function_if_open: an open circuit answers with the
    fallback's value, the function not called."""
    clock = ManualClock()
    breaker = CircuitBreaker(name="WithFallback", clock=clock)
    breaker.trip()
    called: list[int] = []
    seen: list[Exception] = []

    def fallback(exc: Exception) -> bool:
        seen.append(exc)
        return True

    @retry(fallback=fallback, clock=clock)
    @breaker
    def func() -> bool:
        called.append(1)
        return False

    assert func() is True
    assert called == []
    assert len(seen) == 1
    assert isinstance(seen[0], CircuitOpenError)


def test_threshold_hit_prevents_consequent_calls() -> None:
    """tests/test_functional.py::test_threshold_hit_prevents_consequent_calls: the call
    that trips raises its own error; the next is rejected without running."""
    calls: list[int] = []
    breaker = CircuitBreaker(1, name="threshold_1", clock=ManualClock())

    @breaker
    def remote() -> None:
        calls.append(1)
        raise OSError("Connection refused")

    with pytest.raises(OSError, match="Connection refused"):
        remote()
    assert breaker.is_open
    with pytest.raises(CircuitOpenError):
        remote()
    assert calls == [1]


def test_circuitbreaker_str_is_its_repr() -> None:
    """tests/test_unit.py::test_circuitbreaker__str__: circuitbreaker's ``str`` is the
    name; here it is the repr, which names it (read ``.name`` for the name alone)."""
    breaker = CircuitBreaker(name="Foobar")
    assert str(breaker) == "CircuitBreaker(name='Foobar', state='closed')"
    assert breaker.name == "Foobar"


def test_circuit_decorator_without_args_says_what_to_do() -> None:
    """tests/test_unit.py::test_circuit_decorator_without_args: ``@circuit`` works bare;
    ``@CircuitBreaker`` bare is refused with what to write instead."""
    with pytest.raises(TypeError, match="build a breaker first"):

        @CircuitBreaker  # type: ignore[arg-type]
        def function() -> bool:  # pragma: no cover - never decorated
            return True


@pytest.mark.parametrize("name", ["foobar", b"foobar"], ids=["unicode", "bytes"])
def test_constructor_mistake_name(name: str | bytes) -> None:
    """tests/test_unit.py::test_constructor_mistake_name_unicode and _bytes: a name given
    where another argument goes (``circuit(10, 20, "foobar")``, the third is
    ``expected_exception``), or first, is refused, saying where the name goes."""
    with pytest.raises(TypeError, match=r"^expected_exception must be .*name='foobar'"):
        CircuitBreaker(10, 20, name)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"name='foobar'"):
        CircuitBreaker("foobar")  # type: ignore[arg-type]


def test_constructor_mistake_expected_exception() -> None:
    """tests/test_unit.py::test_constructor_mistake_expected_exception: a class that is
    no exception is refused as ``expected_exception``, naming it."""

    class Widget:
        pass

    with pytest.raises(TypeError, match=r"^expected_exception must be an exception type.*Widget"):
        CircuitBreaker(10, 20, expected_exception=Widget)  # type: ignore[arg-type]


def test_circuitbreaker_recover_half_open() -> None:
    """tests/test_functional.py::test_circuitbreaker_recover_half_open: after the
    recovery timeout one trial runs; its failure reopens the circuit."""
    clock = ManualClock()
    breaker = CircuitBreaker(3, 1.0, name="threshold_3", clock=clock)
    failing = True

    @breaker
    def remote() -> bool:
        if failing:
            raise OSError("Connection refused")
        return True

    assert breaker.state.value == "closed"
    for count in (1, 2, 3):
        with pytest.raises(OSError, match="Connection refused"):
            remote()
        assert breaker.failures == count
    assert breaker.is_open
    assert 0 < breaker.remaining <= 1
    with pytest.raises(CircuitOpenError):
        remote()
    clock.advance(1.0)
    assert breaker.state.value == "half_open"
    with pytest.raises(OSError, match="Connection refused"):
        remote()
    assert breaker.is_open
    failing = False
    with pytest.raises(CircuitOpenError):
        remote()
    clock.advance(1.0)
    assert remote() is True
    assert breaker.state.value == "closed"


def test_circuitbreaker_should_save_last_exception_on_failure_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """tests/test_unit.py::test_circuitbreaker_should_save_last_exception_on_failure_call:
    circuitbreaker keeps ``last_failure``; here the failure is handed to the listeners'
    ``on_failure``, and the one that opened the circuit is in its log line's fields (a
    ``CircuitOpenError`` comes later, in another call, and does not carry it)."""
    import logging

    failures: list[Exception] = []

    class Keep:
        def on_failure(self, breaker: CircuitBreaker, exc: Exception) -> None:
            failures.append(exc)

    breaker = CircuitBreaker(1, name="Foobar", listeners=[Keep()], clock=ManualClock())
    error = OSError("disk")

    def fails() -> None:
        raise error

    with (
        caplog.at_level(logging.WARNING, logger="resilient.breaker"),
        pytest.raises(OSError, match="disk"),
    ):
        breaker.call(fails)
    assert failures == [error]
    [opened] = caplog.records
    assert (opened.error_type, opened.error) == ("OSError", "disk")  # type: ignore[attr-defined]
    with pytest.raises(CircuitOpenError) as rejected:
        breaker.call(fails)
    assert rejected.value.__cause__ is None
    assert rejected.value.__context__ is None
