"""The retry loop's shortcuts keep every rule: with the retry logger off, and per failure type.

A failed attempt skips the checks its policy cannot need (no budget and no
``stop_event``: the attempt count alone; no deadline and no ``on_retry``: no
clock read unless a line is logged), and remembers per exception type
whether the type alone decides its class. These tests hold the rules those
shortcuts must not lose, in the case where nothing else would read the time:
the ``resilient.retry`` logger off.

The happy path of a plain function whose parameters are all named runs in a
wrapper written for those parameters (no ``*args, **kwargs`` to pack and
forward): the tests at the end hold it to binding every call exactly as the
function itself would, on the first attempt and on every retry.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import threading
import traceback
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resilient import ErrorClass, RetryBudget, retry
from resilient import _retry as retry_module
from resilient.testing import ManualClock, use_clock


@pytest.fixture(autouse=True)
def retry_logger_off() -> Iterator[None]:
    logger = logging.getLogger("resilient.retry")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)


class Slow:
    """Fails with the given exceptions in order, each attempt taking *took* seconds."""

    def __init__(self, clock: ManualClock, took: float, *failures: BaseException) -> None:
        self.clock = clock
        self.took = took
        self.failures = list(failures)
        self.calls = 0

    def attempt(self) -> str:
        self.calls += 1
        self.clock.advance(self.took)
        if self.failures:
            raise self.failures.pop(0)
        return "ok"

    def __call__(self) -> str:
        return self.attempt()

    async def call_async(self) -> str:
        return self.attempt()


def run(decorate: Callable[[Any], Any], slow: Slow, asynchronous: bool) -> Any:
    if asynchronous:
        return asyncio.run(decorate(slow.call_async)())
    return decorate(slow)()


both = pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])


@both
def test_on_retry_gets_the_elapsed_time_from_the_call_start_with_the_logger_off(
    asynchronous: bool,
) -> None:
    """`elapsed` counts the first attempt's own time, also when no line is logged."""
    clock = ManualClock()
    seen: list[tuple[int, float, float]] = []
    slow = Slow(clock, 2.0, ConnectionError("a"), ConnectionError("b"))
    decorate = retry(
        max_retries=3,
        base_delay=1.0,
        jitter=False,
        clock=clock,
        on_retry=lambda state: seen.append((state.attempt, state.delay, state.elapsed)),
    )
    assert run(decorate, slow, asynchronous) == "ok"
    # attempt 1 took 2 s; attempt 2 started after a wait of 1 s and took 2 s.
    assert seen == [(1, 1.0, 2.0), (2, 2.0, 5.0)]


@both
def test_a_wait_past_the_deadline_is_not_started_with_the_logger_off(asynchronous: bool) -> None:
    """The deadline is checked before each wait, also when nothing is logged."""
    clock = ManualClock()
    slow = Slow(clock, 3.0, *[ConnectionError(str(n)) for n in range(5)])
    decorate = retry(max_retries=4, base_delay=1.0, jitter=False, deadline=6.0, clock=clock)
    with pytest.raises(ConnectionError) as caught:
        run(decorate, slow, asynchronous)
    # 3 s, wait 1 s, 3 s: a wait of 2 s more would end at 9 s, past 6 s.
    assert slow.calls == 2
    assert clock.sleeps == [1.0]
    assert "the deadline would pass during the wait" in caught.value.__notes__[0]


@both
def test_a_refusing_budget_stops_the_retries_with_the_logger_off(asynchronous: bool) -> None:
    """The budget is asked at each failure: the shortcut for budget-less policies skips nothing."""
    clock = ManualClock()
    budget = RetryBudget(max_tokens=2, token_ratio=0.1)  # 1 token spent leaves 1: not > 1
    slow = Slow(clock, 0.0, *[ConnectionError(str(n)) for n in range(5)])
    with pytest.raises(ConnectionError):
        run(retry(max_retries=5, budget=budget, clock=clock), slow, asynchronous)
    assert slow.calls == 1


@both
def test_a_set_stop_event_ends_the_call_with_the_logger_off(asynchronous: bool) -> None:
    """A set `stop_event` is seen before the wait: no second attempt."""
    clock = ManualClock()
    event = threading.Event()
    event.set()
    slow = Slow(clock, 0.0, ConnectionError("a"), ConnectionError("b"))
    with pytest.raises(ConnectionError) as caught:
        run(retry(max_retries=3, stop_event=event, clock=clock), slow, asynchronous)
    assert slow.calls == 1
    assert clock.sleeps == []
    assert "stop_event is set" in caught.value.__notes__[0]


class Classed(Exception):
    """An exception type whose instances say their own class: its type alone decides nothing."""

    error_class = ErrorClass.TRANSIENT

    def __init__(self, error_class: ErrorClass) -> None:
        super().__init__(error_class.value)
        self.error_class = error_class


@both
def test_a_type_that_does_not_decide_is_classified_at_every_failure(asynchronous: bool) -> None:
    """The per-type memory keeps "ask the classifier" too: each instance's own class counts."""
    clock = ManualClock()
    decorate = retry(max_retries=3, base_delay=0.0, max_delay=0.0, clock=clock)
    retried = Slow(clock, 0.0, Classed(ErrorClass.TRANSIENT), Classed(ErrorClass.TRANSIENT))
    assert run(decorate, retried, asynchronous) == "ok"
    assert retried.calls == 3
    fatal = Slow(clock, 0.0, Classed(ErrorClass.TRANSIENT), Classed(ErrorClass.FATAL))
    with pytest.raises(Classed) as caught:
        run(decorate, fatal, asynchronous)
    assert caught.value.error_class is ErrorClass.FATAL
    assert fatal.calls == 2


# -- the wrapper written for the function's own parameters ---------------------------------


def parameters(a: int, /, b: int, c: int = 3, *, d: int, e: int = 5) -> tuple[int, ...]:
    """Every kind of named parameter: positional-only, either, defaults, keyword-only."""
    return (a, b, c, d, e)


async def parameters_async(a: int, /, b: int, c: int = 3, *, d: int, e: int = 5) -> tuple[int, ...]:
    return (a, b, c, d, e)


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((1, 2), {"d": 4}),
    ((1,), {"b": 2, "d": 4}),
    ((1, 2, 9), {"d": 4, "e": 0}),
    ((1,), {"e": 0, "d": 4, "c": 9, "b": 2}),
    # Calls the function refuses: the same TypeError, said the same way.
    ((1, 2), {}),
    ((), {"a": 1, "b": 2, "d": 4}),
    ((1, 2, 3, 4), {"d": 4}),
    ((1, 2), {"d": 4, "f": 6}),
    ((1, 2), {"d": 4, "b": 2}),
]

decorators = pytest.mark.parametrize(
    "own_clock", [False, True], ids=["default clock", "clock given"]
)


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except TypeError as exc:
        return f"TypeError: {exc}"


@both
@decorators
@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_a_call_binds_as_it_binds_to_the_function_itself(
    asynchronous: bool, own_clock: bool, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Positional-only, keyword, default and keyword-only parameters; refusals word for word."""
    decorated = retry(clock=ManualClock() if own_clock else None)(
        parameters_async if asynchronous else parameters
    )
    for _ in range(2):  # the first call checks its result; the next ones take the fast path
        if asynchronous:
            got = outcome(lambda: asyncio.run(decorated(*args, **kwargs)))
            expected = outcome(lambda: asyncio.run(parameters_async(*args, **kwargs)))
        else:
            got = outcome(lambda: decorated(*args, **kwargs))
            expected = outcome(lambda: parameters(*args, **kwargs))
        assert got == expected


class Recorder:
    """Records the arguments of each attempt; the first *failures* attempts fail."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: list[tuple[Any, ...]] = []

    def record(self, *values: Any) -> tuple[Any, ...]:
        self.seen.append(values)
        if len(self.seen) <= self.failures:
            raise ConnectionError("reset")
        return values


@both
@decorators
@pytest.mark.parametrize(("args", "kwargs"), CALLS[:4])
def test_every_retry_gets_the_arguments_of_the_call(
    asynchronous: bool, own_clock: bool, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """The arguments a failed first attempt got are the ones each retry gets."""
    recorder = Recorder(failures=2)

    def function(a: int, /, b: int, c: int = 3, *, d: int, e: int = 5) -> tuple[Any, ...]:
        return recorder.record(a, b, c, d, e)

    async def function_async(
        a: int, /, b: int, c: int = 3, *, d: int, e: int = 5
    ) -> tuple[Any, ...]:
        return recorder.record(a, b, c, d, e)

    clock = ManualClock()
    if not own_clock:
        assert retry(clock=clock)(function)(1, b=2, d=4)  # called once: the fast path is next
    recorder.seen.clear()
    decorate = retry(max_retries=2, base_delay=0, max_delay=0, clock=clock if own_clock else None)
    expected = parameters(*args, **kwargs)
    if asynchronous:
        assert asyncio.run(decorate(function_async)(*args, **kwargs)) == expected
    else:
        decorated = decorate(function)
        decorated(1, b=2, d=4)  # the next call takes the fast path
        recorder.seen.clear()
        assert decorated(*args, **kwargs) == expected
    assert recorder.seen == [expected] * 3


def test_parameters_named_as_the_wrappers_own_variables() -> None:
    """A parameter called ``start``, ``call``, ``target``, ``keywords``... is the caller's."""
    recorder = Recorder(failures=1)

    def function(
        start: int,
        call: int,
        exc: int,
        target: int,
        sfunc: int,
        afunc: int,
        first_call: int,
        checked_under: int,
        own_clock: int,
        *,
        keywords: int,
        clock: int,
    ) -> tuple[Any, ...]:
        return recorder.record(
            start, call, exc, target, sfunc, afunc, first_call, checked_under, own_clock, keywords
        )

    decorated = retry(max_retries=1, base_delay=0, max_delay=0)(function)
    named = dict(zip(["start", "call", "exc", "target", "sfunc"], range(5), strict=True))
    for _ in range(2):
        recorder.seen.clear()
        got = decorated(*named.values(), 5, 6, checked_under=7, own_clock=8, keywords=9, clock=10)
        assert got == tuple(range(10))
        assert recorder.seen == [tuple(range(10))] * 2


def test_parameters_named_as_the_names_the_wrapper_reads() -> None:
    """A parameter called ``time``, ``dict``, ``zip``, ``Exception``... hides nothing the
    wrapper reads from its module (the clock, the retry loop, the keywords it passes on)."""
    recorder = Recorder(failures=1)

    def function(
        time: int,  # named as what the wrapper reads from its module
        DEFAULTS: int,
        RetryCall: int,
        run_retry: int,
        Exception: int,
        *,
        dict: int,
        zip: int,
        SYSTEM_CLOCK: int,
    ) -> tuple[Any, ...]:
        return recorder.record(time, DEFAULTS, RetryCall, run_retry, Exception, dict, zip)

    decorated = retry(max_retries=1, base_delay=0, max_delay=0)(function)
    for _ in range(2):
        recorder.seen.clear()
        assert decorated(0, 1, 2, 3, 4, dict=5, zip=6, SYSTEM_CLOCK=7) == tuple(range(7))
        assert recorder.seen == [tuple(range(7))] * 2


def test_a_debugger_sees_the_arguments_under_their_names_in_the_wrapper() -> None:
    """The wrapper's frame holds the caller's arguments as its parameters, nothing else so named."""
    frames: list[dict[str, Any]] = []

    def function(start: int, call: int, target: int, *, keywords: int) -> int:
        frames.append(dict(sys._getframe(1).f_locals))
        return start

    decorated = retry()(function)
    decorated(1, 2, 3, keywords=4)  # the first call checks its result
    decorated(1, 2, 3, keywords=4)  # straight from the wrapper
    names = ("start", "call", "target", "keywords")
    assert {name: frames[-1][name] for name in names} == dict(zip(names, (1, 2, 3, 4), strict=True))


@both
@decorators
def test_the_elapsed_time_counts_the_first_attempt_on_the_fast_path(
    asynchronous: bool, own_clock: bool
) -> None:
    """A function called before (its calls now skip the check) still reads the start from its
    clock: the first attempt's time counts in ``elapsed``."""
    clock = ManualClock()
    seen: list[float] = []
    slow = Slow(clock, 2.0)
    decorate = retry(
        max_retries=1,
        base_delay=1.0,
        jitter=False,
        clock=clock if own_clock else None,
        on_retry=lambda state: seen.append(state.elapsed),
    )

    def attempt() -> str:  # a plain function: the wrapper written for its parameters
        return slow.attempt()

    async def attempt_async() -> str:
        return slow.attempt()

    decorated = decorate(attempt_async if asynchronous else attempt)

    def call() -> str:
        return asyncio.run(decorated()) if asynchronous else decorated()

    with use_clock(clock):
        assert [call(), call()] == ["ok", "ok"]
        slow.failures = [ConnectionError("a")]
        assert call() == "ok"
    assert seen == [2.0]


SENTINEL = object()
SHARED: list[int] = []


def defaults(x: int, acc: list[int] = SHARED, *, marker: object = SENTINEL) -> tuple[object, ...]:
    return (acc, marker)


def test_a_default_the_caller_left_out_is_the_functions_own_object() -> None:
    """Defaults are the function's objects, not copies; its keyword-only defaults stay live."""
    decorated = retry()(defaults)
    for _ in range(2):
        acc, marker = decorated(1)
        assert acc is SHARED
        assert marker is SENTINEL
    other = object()
    assert defaults.__kwdefaults__ is not None
    defaults.__kwdefaults__["marker"] = other
    try:
        assert decorated(1)[1] is other
    finally:
        defaults.__kwdefaults__["marker"] = SENTINEL


@both
def test_the_wrapper_has_the_functions_signature_of_its_own(asynchronous: bool) -> None:
    """Introspection sees the function's parameters without following ``__wrapped__``."""
    function = parameters_async if asynchronous else parameters
    decorated = retry()(function)
    assert inspect.signature(decorated, follow_wrapped=False) == inspect.signature(function)
    assert decorated.__wrapped__ is function  # type: ignore[attr-defined]
    assert (decorated.__name__, decorated.__qualname__) == (
        function.__name__,
        function.__qualname__,
    )
    assert inspect.iscoroutinefunction(decorated) is asynchronous


def test_functions_the_wrapper_cannot_be_written_for_are_forwarded_as_they_come() -> None:
    """``*args``/``**kwargs`` and more parameters than the limit: the generic wrapper."""
    recorder = Recorder(failures=1)

    def star(a: int, *args: int, b: int = 2, **kwargs: int) -> tuple[Any, ...]:
        return recorder.record(a, args, b, kwargs)

    limit = retry_module._SIGNED_LIMIT  # pyright: ignore[reportPrivateUsage]
    names = [f"p{i}" for i in range(limit + 1)]
    many: Callable[..., tuple[Any, ...]] = eval(  # a function of limit + 1 parameters
        f"lambda {', '.join(names)}: record({', '.join(names)})", {"record": recorder.record}
    )
    decorate = retry(max_retries=1, base_delay=0, max_delay=0)
    assert decorate(star)(1, 3, 4, b=5, c=6) == (1, (3, 4), 5, {"c": 6})
    recorder.seen.clear()
    values = list(range(limit + 1))
    assert decorate(many)(*values[:-1], **{names[-1]: values[-1]}) == tuple(values)
    assert len(recorder.seen) == 2


@both
def test_a_traceback_through_the_wrapper_shows_its_line(asynchronous: bool) -> None:
    """The wrapper's frame points at the line of ``_retry.py`` it runs, the call itself."""

    calls = 0

    def fails(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise PermissionError("no")
        return x

    async def fails_async(x: int) -> int:
        return fails(x)

    decorated = retry()(fails_async if asynchronous else fails)
    call: Callable[[], Any] = (
        (lambda: asyncio.run(decorated(1))) if asynchronous else (lambda: decorated(1))
    )
    call_function, call_loop = (
        (
            "return await afunc(FORWARDED)",
            "return await run_retry_async(call, (ARGUMENTS), KEYWORDS)",
        )
        if asynchronous
        else ("return sfunc(FORWARDED)", "return run_retry(call, (ARGUMENTS), KEYWORDS)")
    )
    call()  # the first call checks its result: the next one takes the fast path
    with pytest.raises(PermissionError) as caught:
        call()
    frames = [
        (frame.name, frame.line)
        for frame in traceback.extract_tb(caught.value.__traceback__)
        if frame.filename == retry_module.__file__
    ]
    # Raised by the function under the wrapper's call, then by the loop it handed over to.
    wrapper = "retrying_async" if asynchronous else "retrying"
    assert frames[0] == (wrapper, call_loop)
    assert frames[-1] == (wrapper, call_function)


def shapes() -> Iterator[tuple[int, int, int]]:
    """Every count of positional (split positional-only at none, half and all) and
    keyword-only parameters the wrapper is written for: (positional-only, positional, keyword-only)."""
    limit = retry_module._SIGNED_LIMIT  # pyright: ignore[reportPrivateUsage]
    for positional in range(limit + 1):
        for only in sorted({0, positional // 2, positional}):
            for keyword_only in range(limit - positional + 1):
                yield only, positional, keyword_only


def shaped(only: int, positional: int, keyword_only: int, asynchronous: bool) -> Any:
    """A function ``create`` of that shape returning its arguments; every other parameter has a
    default (a value of its own), so calls leave some out."""
    p = [f"p{i}" for i in range(positional)]
    q = [f"q{i}" for i in range(keyword_only)]
    required = (positional + 1) // 2  # the positional ones after these have defaults
    params = [name if i < required else f"{name}=-{i}" for i, name in enumerate(p)]
    if only:
        params.insert(only, "/")
    if q:
        params += ["*", *(name if i % 2 == 0 else f"{name}=-{100 + i}" for i, name in enumerate(q))]
    source = (
        f"{'async ' if asynchronous else ''}def create({', '.join(params)}):\n"
        f"    return ({''.join(name + ', ' for name in p + q)})\n"
    )
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    return namespace["create"]


def shaped_calls(
    only: int, positional: int, keyword_only: int
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Calls that bind (every way) and calls that do not (each way a call can fail to)."""
    values = tuple(range(positional))
    named = {f"q{i}": 1000 + i for i in range(keyword_only)}
    required = {f"q{i}": 1000 + i for i in range(0, keyword_only, 2)}
    yield values, named  # everything given
    yield values[: (positional + 1) // 2], required  # the defaults taken
    by_name = {f"p{i}": i for i in range(only, positional)}
    yield values[:only], dict(reversed([*named.items(), *by_name.items()]))  # by name, any order
    yield (), {}  # missing arguments (unless none is required)
    yield (*values, 99), named  # too many positional arguments
    yield values, {**named, "unexpected": 1}
    yield values, {**named, **({"p0": 0} if only else {})}  # positional-only given by name
    yield values, {**named, **({f"p{positional - 1}": 0} if positional > only else {})}  # twice


def drive(call: Callable[[], Any], asynchronous: bool) -> Any:
    """The call's result or its TypeError's message; a coroutine run to its end (nothing in
    these awaits: no event loop needed)."""
    try:
        result = call()
        if not asynchronous:
            return result
        try:
            result.send(None)
        except StopIteration as stop:
            return stop.value
        raise AssertionError("the coroutine waited")
    except TypeError as exc:
        return f"TypeError: {exc}"


@both
@decorators
def test_every_shape_of_parameters_binds_as_the_function_itself(
    asynchronous: bool, own_clock: bool
) -> None:
    """Every count of positional, positional-only and keyword-only parameters up to the limit:
    the wrapper is written for the function, and each call (twice: the first call checks its
    result, the next ones take the fast path) answers as the function itself."""
    for only, positional, keyword_only in shapes():
        function = shaped(only, positional, keyword_only, asynchronous)
        decorated = retry(clock=ManualClock() if own_clock else None)(function)
        count = positional + keyword_only
        assert decorated.__code__.co_varnames[:count] == function.__code__.co_varnames[:count]
        for _ in range(2):
            for args, kwargs in shaped_calls(only, positional, keyword_only):
                got = drive(lambda: decorated(*args, **kwargs), asynchronous)  # noqa: B023
                expected = drive(lambda: function(*args, **kwargs), asynchronous)  # noqa: B023
                assert got == expected, (only, positional, keyword_only, args, kwargs)


def test_a_template_not_compiled_as_expected_keeps_the_generic_wrapper() -> None:
    """The renaming checks what it assumes of the compiled template: keywords it cannot find
    among the constants, or parameters not named as written, give no wrapper (the generic one
    is used) rather than one forwarding the template's names."""
    renamed = retry_module._renamed  # pyright: ignore[reportPrivateUsage]

    def code(source: str) -> Any:
        namespace: dict[str, Any] = {}
        exec(source, namespace)
        return namespace["retrying"].__code__

    forwards = code("def retrying(a0, *, k0):\n    return sfunc(a0, k0=k0)\n")
    assert renamed(forwards, ("x", "y"), 1, 0) is not None
    assert renamed(forwards, ("x", "y"), 1, 0).co_consts.count(("y",)) == 1
    unnamed = code("def retrying(a0, *, k0):\n    return sfunc(a0, **dict(zip(names, (k0,))))\n")
    assert renamed(unnamed, ("x", "y"), 1, 0) is None
    twice = code("def retrying(a0, *, k0):\n    return sfunc(a0, k0=k0) or 'k0'\n")
    assert renamed(twice, ("x", "y"), 1, 0) is None
    misnamed = code("def retrying(b0, *, k0):\n    return sfunc(b0, k0=k0)\n")
    assert renamed(misnamed, ("x", "y"), 1, 0) is None


@both
def test_the_wrapper_is_written_when_the_module_was_loaded_without_a_file(
    asynchronous: bool,
) -> None:
    """A module loaded without ``__file__`` (a frozen bundle) still writes the signed wrapper."""
    module = types.ModuleType("resilient._retry_without_file")
    source = inspect.getsource(retry_module)
    exec(compile(source, "<frozen resilient._retry>", "exec"), module.__dict__)
    assert "__file__" not in module.__dict__

    def add(a: int, /, b: int, *, c: int = 3) -> int:
        return a + b + c

    async def add_async(a: int, /, b: int, *, c: int = 3) -> int:
        return a + b + c

    function = add_async if asynchronous else add
    decorated = module.retry(clock=ManualClock())(function)
    assert decorated.__code__.co_varnames[:3] == ("a", "b", "c")  # the signed wrapper
    for _ in range(2):
        assert drive(lambda: decorated(1, b=2), asynchronous) == 6
        refused = drive(lambda: function(1, 2, 3), asynchronous)
        assert drive(lambda: decorated(1, 2, 3), asynchronous) == refused
        assert refused.startswith("TypeError: ")
