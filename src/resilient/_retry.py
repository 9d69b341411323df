"""Retry with exponential backoff and jitter: ``@retry`` and ``retry_with_backoff``.

Strictly private: users import these names from ``resilient`` (a module named
``retry`` would shadow the function ``resilient.retry`` once imported).

The happy path is one ``try`` around the call. Everything that happens after
a failure (classification, the budget, the deadline, the wait, the log line)
lives in ``_Call``, built on the first failure and shared by the sync and the
async loop.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, overload

from typing_extensions import ParamSpec

from resilient._classify import ErrorClass, classify, response_status, retry_after, status_class
from resilient._clock import DEFAULTS, Clock, check_clock
from resilient._compat import add_note, is_async_callable
from resilient.backoff import Backoff, JitterSpec

__all__ = [
    "DEFAULT_RETRYABLE",
    "Budget",
    "RetryState",
    "retry",
    "retry_with_backoff",
    "retry_with_backoff_async",
    "time_remaining",
]

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("resilient.retry")

DEFAULT_RETRYABLE: frozenset[ErrorClass] = frozenset(
    {ErrorClass.TRANSIENT, ErrorClass.DEGRADED, ErrorClass.TIMEOUT}
)
"""The classes retried unless ``retryable_classes=`` says otherwise."""


class Budget(Protocol):
    """What ``budget=`` accepts: ``RetryBudget`` or its Redis-backed twin."""

    def record_failure(self) -> bool:
        """Spend for a failed attempt; return whether a retry is allowed."""
        ...

    def record_success(self) -> None:
        """Refund for a successful attempt."""
        ...


@dataclass(frozen=True)
class RetryState:
    """What ``on_retry`` is told before each wait. Immutable, one per retry.

    Attributes:
        function: the qualified name of the retried function.
        attempt: the number of the attempt that just failed (1 for the first).
        exception: the exception it raised, or ``None`` when a result was
            rejected by ``retry_on_result``.
        error_class: how the failure was classified.
        delay: the seconds about to be waited.
        elapsed: seconds since the call started (since its first failure when
            no ``deadline`` is set: the happy path never reads the clock).
        result: the rejected return value, when ``exception`` is ``None``.
    """

    function: str
    attempt: int
    exception: BaseException | None
    error_class: ErrorClass
    delay: float
    elapsed: float
    result: Any = None


# The absolute deadline of the innermost call running under `deadline=`, with
# the clock it is measured on.
_DEADLINE: contextvars.ContextVar[tuple[float, Clock] | None] = contextvars.ContextVar(
    "resilient_deadline", default=None
)


def time_remaining() -> float | None:
    """Seconds left before the deadline of the retried call running now.

    ``None`` outside any call made under ``@retry(deadline=...)``. Nested
    deadlines take the earlier. An attempt can use it to shrink its own
    timeouts, as ``resilient.http`` does.
    """
    current = _DEADLINE.get()
    if current is None:
        return None
    deadline, clock = current
    return max(deadline - clock.monotonic(), 0.0)


class _Policy:
    """Strictly private. The validated configuration of one decorator."""

    __slots__ = (
        "backoff",
        "budget",
        "classifier",
        "clock",
        "deadline",
        "max_retries",
        "on_retry",
        "retry_on_result",
        "retryable",
    )

    def __init__(
        self,
        *,
        max_retries: int,
        base_delay: float,
        max_delay: float,
        jitter: JitterSpec,
        retryable_classes: Collection[ErrorClass],
        deadline: float | None,
        classifier: Callable[..., ErrorClass],
        on_retry: Callable[[RetryState], object] | None,
        budget: Budget | None,
        clock: Clock | None,
        retry_on_result: Callable[[Any], bool] | None,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise TypeError(f"max_retries must be an int, got {max_retries!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        self.backoff = Backoff(base_delay, max_delay, jitter)
        if isinstance(retryable_classes, (str, ErrorClass)) or not isinstance(
            retryable_classes, Collection
        ):
            raise TypeError(
                f"retryable_classes must be a collection of ErrorClass, got {retryable_classes!r}"
            )
        for item in retryable_classes:
            if not isinstance(item, ErrorClass):
                raise TypeError(
                    f"retryable_classes must hold only ErrorClass members, got {item!r} "
                    f"in {retryable_classes!r}"
                )
        if deadline is not None:
            if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
                raise TypeError(f"deadline must be a number of seconds or None, got {deadline!r}")
            if not (math.isfinite(deadline) and deadline > 0):
                raise ValueError(f"deadline must be a finite number > 0, got {deadline!r}")
        for name, hook in (
            ("classifier", classifier),
            ("on_retry", on_retry),
            ("retry_on_result", retry_on_result),
        ):
            if hook is not None and not callable(hook):
                raise TypeError(f"{name} must be callable, got {hook!r}")
        if classifier is None:
            raise TypeError("classifier must be callable, got None")
        if budget is not None and not (
            callable(getattr(budget, "record_failure", None))
            and callable(getattr(budget, "record_success", None))
        ):
            raise TypeError(
                f"budget must have record_failure() and record_success(), got {budget!r}"
            )
        check_clock(clock)
        self.max_retries = max_retries
        # A tuple: membership by identity first, without calling Enum.__hash__ (in Python).
        self.retryable = tuple(frozenset(retryable_classes))
        self.deadline = None if deadline is None else float(deadline)
        self.classifier = classifier
        self.on_retry = on_retry
        self.budget = budget
        self.clock = clock
        self.retry_on_result = retry_on_result

    @property
    def needs_full_loop(self) -> bool:
        """Whether the happy path must do more than call the function."""
        return (
            self.deadline is not None or self.budget is not None or self.retry_on_result is not None
        )


_GIVE_UP = -1.0


class _Call:
    """Strictly private. The state of one retried call, built when it first needs it."""

    __slots__ = (
        "attempt",
        "clock",
        "deadline_at",
        "delays",
        "max_attempts",
        "name",
        "policy",
        "start",
    )

    def __init__(self, policy: _Policy, name: str) -> None:
        self.policy = policy
        self.name = name
        self.clock = DEFAULTS.clock if policy.clock is None else policy.clock
        self.start = self.clock.monotonic()
        self.deadline_at = None if policy.deadline is None else self.start + policy.deadline
        self.attempt = 0
        self.delays: Iterator[float] | None = None
        cap = DEFAULTS.attempt_cap
        self.max_attempts = (
            policy.max_retries + 1 if cap is None else min(cap, policy.max_retries + 1)
        )

    def enter_deadline(
        self, deadline_at: float
    ) -> contextvars.Token[tuple[float, Clock] | None] | None:
        """Publish this call's deadline to ``time_remaining()`` unless an outer one is earlier."""
        outer = time_remaining()
        if outer is not None and outer <= deadline_at - self.start:
            return None
        return _DEADLINE.set((deadline_at, self.clock))

    def after_failure(self, exc: BaseException | None, result: Any = None) -> float:
        """Decide what follows a failed attempt: the delay to wait, or ``_GIVE_UP``.

        Classifies, spends from the budget, applies Retry-After, the deadline
        and the testing switches, then logs and calls ``on_retry``.
        """
        policy = self.policy
        self.attempt += 1
        error_class = policy.classifier(exc) if exc is not None else _result_class(result)
        if error_class not in policy.retryable:
            return self.give_up(exc, result, error_class, "not retryable")
        allowed = policy.budget is None or policy.budget.record_failure()
        if self.attempt >= self.max_attempts:
            return self.give_up(exc, result, error_class, "retries exhausted")
        if not allowed:
            return self.give_up(exc, result, error_class, "retry budget exhausted")
        if self.delays is None:
            self.delays = iter(policy.backoff)
        delay = next(self.delays)
        failed = exc if exc is not None else result
        asked = (
            retry_after(failed)
            if exc is None or hasattr(failed, "response") or hasattr(failed, "headers")
            else None
        )
        if asked is not None:
            delay = min(max(delay, asked), policy.backoff.max_delay)
        if DEFAULTS.no_wait:
            delay = 0.0
        if self.deadline_at is not None and self.clock.monotonic() + delay > self.deadline_at:
            return self.give_up(exc, result, error_class, "deadline would pass during the wait")
        if logger.isEnabledFor(logging.WARNING):
            logger.warning(
                "retrying",
                extra={
                    "function": self.name,
                    "attempt": self.attempt,
                    "error_class": error_class,
                    "delay": delay,
                    "error": exc if exc is not None else _describe_result(result),
                },
            )
        if policy.on_retry is not None:
            elapsed = self.clock.monotonic() - self.start
            policy.on_retry(
                RetryState(self.name, self.attempt, exc, error_class, delay, elapsed, result)
            )
        return delay

    def give_up(
        self, exc: BaseException | None, result: Any, error_class: ErrorClass, reason: str
    ) -> float:
        """Note on the exception and log why the call ends here; return ``_GIVE_UP``."""
        if self.attempt == 1 and reason == "not retryable":
            return _GIVE_UP  # nothing was retried: the caller sees the error untouched
        elapsed = self.clock.monotonic() - self.start
        if exc is not None:
            add_note(exc, f"resilient: {self.attempt} attempts over {elapsed:.3f} s ({reason})")
        logger.error(
            "giving up",
            extra={
                "function": self.name,
                "attempt": self.attempt,
                "error_class": error_class,
                "reason": reason,
                "elapsed": elapsed,
                "error": exc if exc is not None else _describe_result(result),
            },
        )
        return _GIVE_UP

    def succeeded(self) -> None:
        """Refund the budget for a successful attempt."""
        if self.policy.budget is not None:
            self.policy.budget.record_success()


def _result_class(result: object) -> ErrorClass:
    """Classify a result rejected by ``retry_on_result``: a response by its status code.

    A rejected value without a failing status (a 200 with an empty body, a
    sentinel) is TRANSIENT: the predicate said it is worth another attempt.
    """
    code = getattr(result, "status_code", None)
    if not isinstance(code, int) or isinstance(code, bool):
        code = response_status(result)
    return (status_class(code) if code is not None else None) or ErrorClass.TRANSIENT


def _describe_result(result: object) -> str:
    code = getattr(result, "status_code", None)
    return f"rejected result (status {code})" if code is not None else "rejected result"


def _run_sync(
    func: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: _Policy,
    name: str,
    first_failure: Exception | None,
) -> T:
    call = _Call(policy, name)
    token = None if call.deadline_at is None else call.enter_deadline(call.deadline_at)
    try:
        failure = first_failure
        result: Any = None
        while True:
            if failure is None:
                try:
                    result = func(*args, **kwargs)
                except Exception as exc:
                    failure = exc
                else:
                    if policy.retry_on_result is None or not policy.retry_on_result(result):
                        call.succeeded()
                        return result  # type: ignore[no-any-return]
            delay = call.after_failure(failure, result)
            if delay == _GIVE_UP:
                if failure is not None:
                    raise failure
                return result  # type: ignore[no-any-return]
            if delay > 0:
                call.clock.sleep(delay)
            failure = None
    finally:
        if token is not None:
            _DEADLINE.reset(token)


async def _run_async(
    func: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: _Policy,
    name: str,
    first_failure: Exception | None,
) -> T:
    call = _Call(policy, name)
    token = None if call.deadline_at is None else call.enter_deadline(call.deadline_at)
    try:
        failure = first_failure
        result: Any = None
        while True:
            if failure is None:
                try:
                    result = await func(*args, **kwargs)
                except Exception as exc:
                    failure = exc
                else:
                    if policy.retry_on_result is None or not policy.retry_on_result(result):
                        call.succeeded()
                        return result  # type: ignore[no-any-return]
            delay = call.after_failure(failure, result)
            if delay == _GIVE_UP:
                if failure is not None:
                    raise failure
                return result  # type: ignore[no-any-return]
            if delay > 0:
                await call.clock.asleep(delay)
            failure = None
    finally:
        if token is not None:
            _DEADLINE.reset(token)


def _decorate(func: Callable[P, T], policy: _Policy) -> Callable[P, T]:
    if isinstance(func, (staticmethod, classmethod)):
        return type(func)(_decorate(func.__func__, policy))
    if not callable(func):
        raise TypeError(f"@retry must decorate a callable, got {func!r}")
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"@retry cannot decorate the generator function {func.__qualname__!r}: calling it "
            "only creates the generator, so failures while iterating would never be retried; "
            "retry the code that consumes it, or return a list instead"
        )
    name = _name_of(func)
    full_loop = policy.needs_full_loop

    if is_async_callable(func):
        afunc: Callable[..., Awaitable[Any]] = func

        if full_loop:

            async def retrying_async(*args: Any, **kwargs: Any) -> Any:
                return await _run_async(afunc, args, kwargs, policy, name, None)

        else:

            async def retrying_async(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await afunc(*args, **kwargs)
                except Exception as exc:
                    failure = exc
                # Outside the `except`: later failures must not chain onto this one.
                return await _run_async(afunc, args, kwargs, policy, name, failure)

        return functools.wraps(func)(retrying_async)  # type: ignore[return-value]

    if full_loop:

        def retrying(*args: Any, **kwargs: Any) -> Any:
            return _run_sync(func, args, kwargs, policy, name, None)

    else:

        def retrying(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                failure = exc
            # Outside the `except`: later failures must not chain onto this one.
            return _run_sync(func, args, kwargs, policy, name, failure)

    return functools.wraps(func)(retrying)


@overload
def retry(func: Callable[P, T], /) -> Callable[P, T]: ...


@overload
def retry(
    *,
    max_retries: int = 3,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    deadline: float | None = None,
    classifier: Callable[..., ErrorClass] = classify,
    on_retry: Callable[[RetryState], object] | None = None,
    budget: Budget | None = None,
    clock: Clock | None = None,
    retry_on_result: Callable[[Any], bool] | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]: ...


def retry(
    func: Callable[P, T] | None = None,
    /,
    *,
    max_retries: int = 3,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    deadline: float | None = None,
    classifier: Callable[..., ErrorClass] = classify,
    on_retry: Callable[[RetryState], object] | None = None,
    budget: Budget | None = None,
    clock: Clock | None = None,
    retry_on_result: Callable[[Any], bool] | None = None,
) -> Callable[P, T] | Callable[[Callable[P, T]], Callable[P, T]]:
    """Retry a function, sync or ``async``, when it fails in a retryable way.

    Use as ``@retry`` or ``@retry(...)``. At most ``max_retries + 1`` attempts
    are made; before retry *n* (0-based) it waits
    ``min(base_delay * 2**n, max_delay)``, jittered. Failures are classified by
    *classifier*; only classes in *retryable_classes* are retried, anything
    else is raised at once. When attempts run out, the last exception is
    raised (the original object, with a PEP 678 note saying how many attempts
    were made over how long). Only ``Exception`` subclasses are ever caught.

    Args:
        max_retries: retries after the first attempt (``0``: one attempt).
        base_delay: nominal seconds before the first retry.
        max_delay: cap on any single wait, also on a ``Retry-After``.
        jitter: ``True`` (uniform in [0.75, 1.25] x nominal), ``False``, or a
            strategy from ``resilient.backoff``.
        retryable_classes: the ``ErrorClass`` values worth retrying.
        deadline: seconds for the whole call, attempts included; no wait is
            started that would end past it. Visible inside as
            ``time_remaining()``.
        classifier: ``(exc) -> ErrorClass``; default ``resilient.classify``.
        on_retry: called with a ``RetryState`` before each wait.
        budget: a ``RetryBudget`` shared between calls; no retry when it refuses.
        clock: where time is read and waited; default the process clock.
        retry_on_result: ``(result) -> bool``; a result for which it is true
            counts as a failed attempt (a response by its status code). When
            attempts run out the last result is returned.

    Returns:
        The decorated function, with the same signature.
    """
    policy = _Policy(
        max_retries=max_retries,
        base_delay=base_delay,
        max_delay=max_delay,
        jitter=jitter,
        retryable_classes=retryable_classes,
        deadline=deadline,
        classifier=classifier,
        on_retry=on_retry,
        budget=budget,
        clock=clock,
        retry_on_result=retry_on_result,
    )
    if func is not None:
        return _decorate(func, policy)
    return functools.partial(_decorate, policy=policy)


def retry_with_backoff(
    func: Callable[..., T],
    *args: Any,
    max_retries: int = 3,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    **kwargs: Any,
) -> T:
    """Call ``func(*args, **kwargs)`` and retry it as ``@retry`` would.

    The keyword arguments not named here go to *func*. For the other options
    of ``@retry`` (deadline, budget, clock...) use ``retry(...)(func)(*args)``.

    Returns:
        What *func* returned on the first attempt that succeeded.
    """
    policy = _plain_policy(max_retries, base_delay, max_delay, jitter, retryable_classes)
    return _run_sync(func, args, kwargs, policy, _name_of(func), None)


async def retry_with_backoff_async(
    func: Callable[..., Awaitable[T]],
    *args: Any,
    max_retries: int = 3,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    **kwargs: Any,
) -> T:
    """Await ``func(*args, **kwargs)`` and retry it; the ``async`` twin of ``retry_with_backoff``.

    Returns:
        What *func* returned on the first attempt that succeeded.
    """
    policy = _plain_policy(max_retries, base_delay, max_delay, jitter, retryable_classes)
    return await _run_async(func, args, kwargs, policy, _name_of(func), None)


def _name_of(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', None) or '?'}.{getattr(func, '__qualname__', repr(func))}"


def _plain_policy(
    max_retries: int,
    base_delay: float,
    max_delay: float,
    jitter: JitterSpec,
    retryable_classes: Collection[ErrorClass],
) -> _Policy:
    return _Policy(
        max_retries=max_retries,
        base_delay=base_delay,
        max_delay=max_delay,
        jitter=jitter,
        retryable_classes=retryable_classes,
        deadline=None,
        classifier=classify,
        on_retry=None,
        budget=None,
        clock=None,
        retry_on_result=None,
    )
