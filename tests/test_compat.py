"""Specification of ``resilient._compat``: what kind of callable a function is."""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import inspect
import pickle
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from resilient import (
    BreakerMetrics,
    CircuitState,
    ErrorClass,
    FailureRateWindow,
    RetryState,
    TaskResult,
    TaskSummary,
)
from resilient._compat import check_callable, is_async_callable, name_of, qualified_name_of


def plain(x: int) -> int:
    return x


async def coroutine_function(x: int) -> int:
    return x


def generator_function() -> Iterator[int]:
    yield 1


async def async_generator_function() -> AsyncIterator[int]:
    yield 1


def with_attributes(x: int) -> int:
    return x


with_attributes.cache = {}  # type: ignore[attr-defined]


@functools.wraps(coroutine_function)
def wrapping_a_coroutine_function(x: int) -> Any:
    return coroutine_function(x)


class Methods:
    def method(self) -> None:
        pass

    async def async_method(self) -> None:
        pass

    def gen_method(self) -> Iterator[int]:
        yield 1

    async def __call__(self) -> None:
        pass

    partial_async = functools.partialmethod(async_method)


def _marked() -> Callable[..., Any]:
    def marked() -> Any:
        return coroutine_function(1)

    return inspect.markcoroutinefunction(marked)  # type: ignore[attr-defined, no-any-return]


CALLABLES: dict[str, Any] = {
    "plain": plain,
    "coroutine_function": coroutine_function,
    "generator_function": generator_function,
    "async_generator_function": async_generator_function,
    "with_attributes": with_attributes,
    "wrapping_a_coroutine_function": wrapping_a_coroutine_function,
    "lambda": lambda: None,
    "partial_of_a_coroutine_function": functools.partial(coroutine_function, 1),
    "partial_of_a_generator_function": functools.partial(generator_function),
    "method": Methods().method,
    "async_method": Methods().async_method,
    "generator_method": Methods().gen_method,
    "partialmethod_of_an_async_method": Methods().partial_async,
    "async_call": Methods(),
    "class": Methods,
    "builtin": len,
    "staticmethod_func": staticmethod(plain).__func__,
}
if sys.version_info >= (3, 12):
    CALLABLES["markcoroutinefunction"] = _marked()
KINDS = [pytest.param(func, id=name) for name, func in CALLABLES.items()]


def _reference_is_async(func: object) -> bool:
    """The answer of ``inspect``, as the library gave it before reading code flags itself."""
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004
    return not inspect.isfunction(func) and inspect.iscoroutinefunction(call)


def _reference_is_generator(func: object) -> bool:
    return inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)


@pytest.mark.parametrize("func", KINDS)
def test_the_kind_of_a_callable_is_what_inspect_says(func: object) -> None:
    """Plain functions are judged by their code flags; the verdict is inspect's, for any callable."""
    assert is_async_callable(func) is _reference_is_async(func)
    generator = _reference_is_generator(func)
    if generator:
        with pytest.raises(TypeError, match="generator function"):
            check_callable(func, "@retry", sync_only=False)
    else:
        check_callable(func, "@retry", sync_only=False)


@pytest.mark.parametrize("func", KINDS)
def test_a_sync_form_refuses_exactly_the_coroutine_functions(func: object) -> None:
    """``sync_only`` refuses what inspect calls a coroutine function, and nothing else."""
    if _reference_is_generator(func):
        expected: str | None = "generator function"
    elif _reference_is_async(func):
        expected = "coroutine function"
    else:
        expected = None
    if expected is None:
        check_callable(func, "retry_with_backoff()", sync_only=True)
    else:
        with pytest.raises(TypeError, match=expected):
            check_callable(func, "retry_with_backoff()", sync_only=True)


def test_a_task_name_starts_the_message() -> None:
    """The message names the task it refuses, and says why."""
    with pytest.raises(
        TypeError, match=r"^task 'sync': execute_task_safely\(\) cannot run the coroutine"
    ):
        check_callable(coroutine_function, "execute_task_safely()", sync_only=True, task="sync")
    with pytest.raises(TypeError, match=r"^task 'sync': execute_task_safely\(\) needs a function"):
        check_callable(42, "execute_task_safely()", sync_only=True, task="sync")


class _Hostile:
    """Reading its name fails, and not with AttributeError."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("__qualname__", "__module__"):
            raise RuntimeError(f"no {name}")
        return object.__getattribute__(self, name)

    def __call__(self) -> None:
        pass


class _Named:
    def method(self) -> None:
        pass

    def __call__(self) -> None:
        pass


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        (plain, f"{__name__}.plain"),
        (functools.partial(plain, 1), f"{__name__}.plain"),
        (functools.partial(functools.partial(_Named().method), x=1), f"{__name__}._Named.method"),
        (_Named().method, f"{__name__}._Named.method"),
        (_Named(), f"{__name__}._Named"),
        (functools.partial(_Named()), f"{__name__}._Named"),
        (_Named, f"{__name__}._Named"),
        ([].append, "builtins.list.append"),
        (str.upper, "builtins.str.upper"),
        (len, "builtins.len"),
        (_Hostile(), f"{__name__}._Hostile"),
    ],
)
def test_a_callable_is_named_by_its_code_never_by_its_repr(func: object, expected: str) -> None:
    """Partials and bound methods by their function, instances by their class; never raises."""
    assert qualified_name_of(func) == expected
    assert expected.endswith(f".{name_of(func)}")


def test_a_partial_that_loops_back_on_itself_is_still_named() -> None:
    """A pathological partial (its ``func`` set to itself) ends in a name, not a hang."""
    looped = functools.partial(plain)
    looped.__setstate__((looped, (), {}, None))
    assert name_of(looped) == "partial"


# -- records: the library's frozen dataclasses, made without dataclasses ------------------


@dataclasses.dataclass(frozen=True)
class TaskResultAsDataclass:
    """``TaskResult`` as DESIGN.md defines it."""

    success: bool
    result: Any = None
    error: str | None = None
    error_class: ErrorClass | None = None
    attempts: int = 0
    elapsed: float = 0.0
    exception: BaseException | None = dataclasses.field(default=None, compare=False, repr=False)
    rejected: bool = False
    task_name: str = ""
    retry_after: float | None = None


@dataclasses.dataclass(frozen=True)
class RetryStateAsDataclass:
    function: str
    attempt: int
    exception: BaseException | None
    error_class: ErrorClass
    delay: float
    elapsed: float
    result: Any = None


@dataclasses.dataclass(frozen=True)
class FailureRateWindowAsDataclass:
    failure_rate_threshold: float = 0.5
    calls: int | None = None
    seconds: float | None = None
    minimum_calls: int = 100
    buckets: int | None = None


@dataclasses.dataclass(frozen=True)
class BreakerMetricsAsDataclass:
    name: str
    state: CircuitState
    calls: int
    successes: int
    failures: int
    ignored: int
    slow_calls: int
    rejected: int
    failure_rate: float
    slow_call_rate: float
    remaining: float
    store_mode: str = "memory"


@dataclasses.dataclass(frozen=True, repr=False)  # TaskSummary writes its own
class TaskSummaryAsDataclass:
    results: tuple[Any, ...]
    total: int
    interrupted: bool = False


_ERROR = ConnectionError("down")
_METRICS = ("api", CircuitState.OPEN, 10, 6, 3, 1, 0, 2, 0.3, 0.0, 12.5)
RECORDS: dict[str, tuple[Any, Any]] = {
    "TaskResult": (
        TaskResult(False, None, "ConnectionError: down", ErrorClass.TRANSIENT, 3, 1.5, _ERROR),
        TaskResultAsDataclass(
            False, None, "ConnectionError: down", ErrorClass.TRANSIENT, 3, 1.5, _ERROR
        ),
    ),
    "RetryState": (
        RetryState("fetch", 2, _ERROR, ErrorClass.TRANSIENT, 0.5, 1.25),
        RetryStateAsDataclass("fetch", 2, _ERROR, ErrorClass.TRANSIENT, 0.5, 1.25),
    ),
    "FailureRateWindow": (
        FailureRateWindow(0.25, seconds=30, minimum_calls=10),
        FailureRateWindowAsDataclass(0.25, None, 30.0, 10, 30),
    ),
    "BreakerMetrics": (BreakerMetrics(*_METRICS), BreakerMetricsAsDataclass(*_METRICS)),
    "TaskSummary": (
        TaskSummary((TaskResult(True, 1),), 2, interrupted=True),
        TaskSummaryAsDataclass((TaskResult(True, 1),), 2, interrupted=True),
    ),
}


def _field_specs(thing: Any) -> list[tuple[object, ...]]:
    return [
        (f.name, f.default, f.init, f.repr, f.compare, f.hash, f.kw_only)
        for f in dataclasses.fields(thing)
    ]


@pytest.mark.parametrize(("record", "reference"), RECORDS.values(), ids=RECORDS.keys())
def test_a_record_is_the_frozen_dataclass_it_stands_for(record: Any, reference: Any) -> None:
    """Fields, repr, equality, hash, ``replace``, ``asdict``, pickling, copying, pattern
    matching and frozenness: as ``@dataclass(frozen=True)`` would make them."""
    assert dataclasses.is_dataclass(record)
    assert dataclasses.is_dataclass(type(record))
    assert _field_specs(record) == _field_specs(reference)
    assert type(record).__match_args__ == type(reference).__match_args__
    if type(reference).__dataclass_params__.repr:  # type: ignore[attr-defined]
        assert repr(record).partition("(")[2] == repr(reference).partition("(")[2]
    # (asdict copies the exceptions, which compare by identity: compared as text)
    assert repr(dataclasses.asdict(record)) == repr(dataclasses.asdict(reference))
    assert repr(dataclasses.astuple(record)) == repr(dataclasses.astuple(reference))
    copies = (lambda x: pickle.loads(pickle.dumps(x)), copy.copy, copy.deepcopy)
    for copied in copies:
        again, reference_again = copied(record), copied(reference)
        assert type(again) is type(record)
        assert repr(again) == repr(record)
        # A copied exception is another object: equal only where the exception is not compared.
        assert (again == record) is (reference_again == reference)
        if again == record:
            assert hash(again) == hash(record)
    last = dataclasses.fields(record)[-1].name
    changed = dataclasses.replace(record, **{last: 7})
    assert type(changed) is type(record)
    assert getattr(changed, last) == 7
    assert changed != record
    assert (changed == dataclasses.replace(reference, **{last: 7})) is False  # other classes
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, last, 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(record, last)


def test_a_field_left_out_of_equality_is_left_out_of_the_hash_too() -> None:
    """Two results that differ only by their exception object are equal, with one hash."""
    one = TaskResult(False, error="E: x", exception=ValueError("x"))
    other = TaskResult(False, error="E: x", exception=ValueError("y"))
    assert one == other
    assert hash(one) == hash(other)
    assert "exception" not in repr(one)


# --- every duration of the public API takes a timedelta (issue 19) -------------------------

_DURATION_NAME = re.compile(
    r"timeout|delay|deadline|duration|seconds|^per$|ttl|interval|retry_after|wait|staleness"
)
_PUBLIC_MODULES = (
    "resilient",
    "resilient.backoff",
    "resilient.breaker",
    "resilient.budget",
    "resilient.cleanup",
    "resilient.http",
    "resilient.httpx",
    "resilient.logs",
    "resilient.pacing",
    "resilient.redis",
    "resilient.task",
    "resilient.telemetry",
    "resilient.testing",
)
_NOT_TAKEN_FROM_USERS = {
    # The Clock protocol: the library calls it with the seconds it computed.
    "sleep.seconds",
    "asleep.seconds",
    # The pacing store protocol: the limiters call it with seconds, converted once.
    "rate_pause.seconds",
    "rate_pause_async.seconds",
    "rate_reserve.max_wait",
    "rate_reserve_async.max_wait",
    "slot_acquire.lease_ttl",
    "slot_acquire_async.lease_ttl",
    # Records the library builds for the user to read, in seconds.
    "RetryState.delay",
    "TaskResult.retry_after",
    # requests' own API (the adapter's send, the session's inherited methods).
    "ResilientAdapter.timeout",
    "ResilientSession.timeout",
}


def _public_durations() -> Iterator[tuple[str, str, str, str]]:
    """(owner, callable, parameter, annotation) of each duration-named public parameter."""
    import importlib

    seen: set[tuple[str, str]] = set()
    for module_name in _PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                members = [("__init__", obj.__init__)] + [
                    (attr, getattr(obj, attr))
                    for attr in dir(obj)
                    if not attr.startswith("_") and callable(getattr(obj, attr))
                ]
                owner = obj.__name__
            elif callable(obj):
                members, owner = [(name, obj)], ""
            else:
                continue
            for member, func in members:
                try:
                    signature = inspect.signature(func)
                except (TypeError, ValueError):  # a builtin without one
                    continue
                for parameter in signature.parameters.values():
                    key = (f"{getattr(func, '__module__', '')}.{owner}.{member}", parameter.name)
                    if _DURATION_NAME.search(parameter.name) and key not in seen:
                        seen.add(key)
                        yield owner, member, parameter.name, str(parameter.annotation)


def test_every_duration_parameter_of_the_public_api_takes_a_timedelta() -> None:
    """A public parameter named like a duration is typed ``Seconds`` (a number or a
    ``datetime.timedelta``), but for protocols the library itself calls with seconds."""
    found = list(_public_durations())
    missing = [
        f"{owner}.{member}({parameter}: {annotation})"
        for owner, member, parameter, annotation in found
        if "Seconds" not in annotation
        and "timedelta" not in annotation
        and f"{member}.{parameter}" not in _NOT_TAKEN_FROM_USERS
        and f"{owner}.{parameter}" not in _NOT_TAKEN_FROM_USERS
    ]
    assert missing == []
    names = {parameter for _, _, parameter, _ in found}
    assert {"base_delay", "recovery_timeout", "lease_ttl", "total_timeout", "idle_ttl"} <= names
    assert ("RedisStore", "from_url", "connect_timeout") in {f[:3] for f in found}


def _task_attempts_under(deadline: object) -> int:
    from resilient import execute_task_safely
    from resilient.testing import ManualClock

    def fails() -> None:
        raise ConnectionError("down")

    options: Any = {"deadline": deadline, "base_delay": 1.0, "jitter": False}
    return execute_task_safely("t", fails, clock=ManualClock(), **options).attempts


def test_durations_without_a_test_of_their_own_mean_their_seconds() -> None:
    """The durations no other test gives a ``timedelta``: each means its seconds."""
    import asyncio
    from datetime import timedelta

    from resilient import ConcurrencyLimit, RateLimiter
    from resilient.backoff import delays
    from resilient.testing import ManualClock

    limit = ConcurrencyLimit(
        2, max_wait=timedelta(milliseconds=250), lease_ttl=timedelta(minutes=2)
    )
    assert (limit.max_wait, limit.lease_ttl) == (0.25, 120.0)
    clock = ManualClock()
    clock.advance(timedelta(seconds=1, milliseconds=500))
    assert clock.monotonic() == 1.5
    assert next(delays(timedelta(seconds=2), timedelta(minutes=1), jitter=False)) == 2.0
    # 1 s then 2 s of backoff: a 2.5 s deadline admits the second attempt, not the third.
    assert _task_attempts_under(timedelta(seconds=2.5)) == _task_attempts_under(2.5) == 2
    limiter = RateLimiter(10, per=1.0, clock=clock)
    asyncio.run(limiter.pause_async(timedelta(seconds=3)))
    assert limiter.try_acquire() is False
    clock.advance(3.0)
    assert limiter.try_acquire() is True


# -- every duration of the public API is bounded at construction ---------------------------

_TOO_LONG = 1e10  # past ten years, and past what time.sleep takes (~9.2e9 s)

_DURATION_NAME = re.compile(
    r"delay|timeout|deadline|seconds|ttl|interval|^per$|wait|duration|staleness|retry_after"
)

_PUBLIC_MODULES = (
    "resilient",
    "resilient.backoff",
    "resilient.breaker",
    "resilient.budget",
    "resilient.cleanup",
    "resilient.http",
    "resilient.httpx",
    "resilient.logs",
    "resilient.pacing",
    "resilient.redis",
    "resilient.task",
    "resilient.telemetry",
    "resilient.testing",
)


def _duration_parameters() -> set[str]:
    """``where(parameter)`` for every parameter of a public function, class or public
    method whose name says it is a duration."""
    found: set[str] = set()
    for module_name in _PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            targets: list[tuple[str, Any]] = []
            if inspect.isclass(obj):
                targets.append((name, obj))
                for attribute, raw in vars(obj).items():
                    method = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
                    if not attribute.startswith("_") and inspect.isfunction(method):
                        targets.append((f"{name}.{attribute}", method))
            elif callable(obj):
                targets.append((name, obj))
            for where, target in targets:
                try:
                    parameters = inspect.signature(target).parameters
                except (TypeError, ValueError):
                    continue
                found.update(f"{where}({p})" for p in parameters if _DURATION_NAME.search(p))
    return found


def _redis_client() -> Any:
    from resilient.redis import connect

    return connect("redis://127.0.0.1:1")  # never connects: construction only


def _async_redis_client() -> Any:
    from resilient.redis import connect_async

    return connect_async("redis://127.0.0.1:1")


def _request() -> Any:
    import requests

    return requests.Request("GET", "http://127.0.0.1:1/").prepare()


def _bounded_cases() -> dict[str, Callable[[float], object]]:
    """How to hand each duration parameter a value: ``where(parameter)`` -> a builder."""
    from resilient import (
        Backoff,
        CircuitBreaker,
        ConcurrencyLimit,
        FailureRateWindow,
        RateLimiter,
        execute_task_safely,
        execute_task_safely_async,
        retry,
        retry_with_backoff,
        retry_with_backoff_async,
        retrying,
    )
    from resilient.backoff import delays
    from resilient.http import ResilientAdapter, create_resilient_session
    from resilient.httpx import AsyncResilientTransport, ResilientTransport
    from resilient.redis import (
        AsyncRedisRetryBudget,
        AsyncRedisStore,
        RedisRetryBudget,
        RedisStore,
        connect,
        connect_async,
    )
    from resilient.testing import ManualClock

    def limiter() -> RateLimiter:
        return RateLimiter(1, clock=ManualClock())

    def run(coroutine: Any) -> object:
        import asyncio

        return asyncio.run(coroutine)

    cases: dict[str, Callable[[float], object]] = {
        "Backoff(base_delay)": lambda v: Backoff(v, v),
        "Backoff(max_delay)": lambda v: Backoff(1.0, v),
        "delays(base_delay)": lambda v: next(delays(v, v)),
        "delays(max_delay)": lambda v: next(delays(1.0, v)),
        "CircuitBreaker(recovery_timeout)": lambda v: CircuitBreaker(recovery_timeout=v),
        "CircuitBreaker(slow_call_duration)": lambda v: CircuitBreaker(
            window=FailureRateWindow(calls=10), slow_call_duration=v
        ),
        "FailureRateWindow(seconds)": lambda v: FailureRateWindow(seconds=v),
        "ConcurrencyLimit(max_wait)": lambda v: ConcurrencyLimit(1, max_wait=v),
        "ConcurrencyLimit(lease_ttl)": lambda v: ConcurrencyLimit(1, lease_ttl=v),
        "RateLimiter(per)": lambda v: RateLimiter(1, per=v),
        "RateLimiter.acquire(timeout)": lambda v: limiter().acquire(timeout=v),
        "RateLimiter.acquire_async(timeout)": lambda v: run(limiter().acquire_async(timeout=v)),
        "RateLimiter.pause(seconds)": lambda v: limiter().pause(v),
        "RateLimiter.pause_async(seconds)": lambda v: run(limiter().pause_async(v)),
        "ResilientAdapter(connect_timeout)": lambda v: ResilientAdapter(connect_timeout=v),
        "ResilientAdapter(read_timeout)": lambda v: ResilientAdapter(read_timeout=v),
        "ResilientAdapter(total_timeout)": lambda v: ResilientAdapter(total_timeout=v),
        "ResilientAdapter.send(timeout)": lambda v: ResilientAdapter().send(_request(), timeout=v),
        "create_resilient_session(connect_timeout)": lambda v: create_resilient_session(
            connect_timeout=v
        ),
        "create_resilient_session(read_timeout)": lambda v: create_resilient_session(
            read_timeout=v
        ),
        "create_resilient_session(total_timeout)": lambda v: create_resilient_session(
            total_timeout=v
        ),
        "RedisStore.from_url(socket_timeout)": lambda v: RedisStore.from_url(
            "redis://127.0.0.1:1", socket_timeout=v
        ),
        "AsyncRedisStore.from_url(socket_timeout)": lambda v: AsyncRedisStore.from_url(
            "redis://127.0.0.1:1", socket_timeout=v
        ),
        "connect(socket_timeout)": lambda v: connect("redis://127.0.0.1:1", socket_timeout=v),
        "connect(connect_timeout)": lambda v: connect("redis://127.0.0.1:1", connect_timeout=v),
        "connect_async(socket_timeout)": lambda v: connect_async(
            "redis://127.0.0.1:1", socket_timeout=v
        ),
        "connect_async(connect_timeout)": lambda v: connect_async(
            "redis://127.0.0.1:1", connect_timeout=v
        ),
    }
    for option in ("base_delay", "max_delay", "max_retry_after", "deadline"):

        def options(v: float, option: str = option) -> dict[str, Any]:
            return {option: v, "max_delay": v} if option == "base_delay" else {option: v}

        cases[f"retry({option})"] = lambda v, o=options: retry(**o(v))
        cases[f"retrying({option})"] = lambda v, o=options: retrying(**o(v))
        cases[f"execute_task_safely({option})"] = lambda v, o=options: execute_task_safely(
            "t", plain, 1, **o(v)
        )
        cases[f"execute_task_safely_async({option})"] = lambda v, o=options: run(
            execute_task_safely_async("t", plain, 1, **o(v))
        )
        if option != "deadline":
            cases[f"retry_with_backoff({option})"] = lambda v, o=options: retry_with_backoff(
                plain, 1, **o(v)
            )
            cases[f"retry_with_backoff_async({option})"] = lambda v, o=options: run(
                retry_with_backoff_async(coroutine_function, 1, **o(v))
            )
        if option != "deadline":
            for transport in (ResilientTransport, AsyncResilientTransport):
                cases[f"{transport.__name__}({option})"] = lambda v, t=transport, o=options: t(
                    **o(v)
                )
    for transport in (ResilientTransport, AsyncResilientTransport):
        cases[f"{transport.__name__}(total_timeout)"] = lambda v, t=transport: t(total_timeout=v)
    for option in ("max_staleness", "retry_interval", "trial_timeout", "idle_ttl"):
        cases[f"RedisStore({option})"] = lambda v, o=option: RedisStore(_redis_client(), **{o: v})
        cases[f"AsyncRedisStore({option})"] = lambda v, o=option: AsyncRedisStore(
            _async_redis_client(), **{o: v}
        )
    for option in ("retry_interval", "idle_ttl"):
        cases[f"RedisRetryBudget({option})"] = lambda v, o=option: RedisRetryBudget(
            _redis_client(), "api", **{o: v}
        )
        cases[f"AsyncRedisRetryBudget({option})"] = lambda v, o=option: AsyncRedisRetryBudget(
            _async_redis_client(), "api", **{o: v}
        )
    return cases


# Durations the library never waits on or keeps, each with the reason.
_NOT_SETTINGS = {
    # Records of what happened, built by the library from bounded values.
    "RetryState(delay)",
    "TaskResult(retry_after)",
    "Reservation(wait)",
    "RatePolicy(per)",  # a RateLimiter's validated settings
    # A clock does what it is asked; what asks it (every primitive) is bounded.
    "Clock.sleep(seconds)",
    "Clock.asleep(seconds)",
    "SystemClock.sleep(seconds)",
    "SystemClock.asleep(seconds)",
    "ManualClock.advance(seconds)",  # no real wait
    "ManualClock.sleep(seconds)",
    "ManualClock.asleep(seconds)",
    # Arithmetic on a delay, no wait (Backoff and delays() bound theirs).
    "nominal_delay(base_delay)",
    "nominal_delay(max_delay)",
}
# The store protocols' operations: the primitives call them with the values they
# validated (a limiter's max_wait, pause and lease_ttl).
_NOT_SETTINGS |= {
    f"{store}.{operation}({parameter})"
    for store in ("PacingStore", "MemoryPacingStore", "RedisStore", "AsyncRedisStore")
    for operation, parameter in (
        ("rate_reserve", "max_wait"),
        ("rate_pause", "seconds"),
        ("slot_acquire", "lease_ttl"),
    )
    for operation in (operation, f"{operation}_async")
}


def test_every_duration_parameter_of_the_public_api_has_a_bound_case() -> None:
    """A new duration parameter (a name with delay, timeout, deadline, seconds, ttl,
    interval, wait, ...) must be listed below, bounded or said why not."""
    cases = _bounded_cases()
    assert _duration_parameters() - cases.keys() - _NOT_SETTINGS == set()
    assert _duration_parameters() >= _NOT_SETTINGS  # nothing listed that is gone


@pytest.mark.parametrize("too_long", [_TOO_LONG, 10**400], ids=["1e10", "10**400"])
@pytest.mark.parametrize("where", sorted(_bounded_cases()))
def test_every_duration_past_its_bound_is_refused_naming_the_parameter(
    where: str, too_long: float
) -> None:
    """1e10 s (past ten years, and past what time.sleep takes) is a ValueError when the
    object is built (or the call made, for a call's own timeout), naming the parameter;
    never an OverflowError at the first wait (issue 20, item 8). So is an int too large
    for a float (10**400), which math.isfinite and float() meet with an OverflowError."""
    build = _bounded_cases()[where]
    parameter = where.split("(")[1].rstrip(")")
    said = (
        "connect timeout|read timeout" if parameter == "timeout" and "send" in where else parameter
    )
    with pytest.raises(ValueError, match=rf"^({said}) must be (at most \d+ s|<= \d+ s)"):
        build(too_long)
