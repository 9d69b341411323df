"""Run a unit of work that may fail and get a ``TaskResult`` back instead of an exception.

``execute_task_safely`` composes the other primitives: the retry loop of
``resilient.retry`` (the same options as ``@retry``), an optional
``CircuitBreaker`` that every attempt goes through, the classifier, and one
structured log line when the task finally fails. It never raises for an
``Exception``; ``KeyboardInterrupt``, ``SystemExit`` and
``asyncio.CancelledError`` propagate. ``run_tasks`` runs many of them and
sums them up in a ``TaskSummary``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from contextvars import ContextVar
from types import CoroutineType, GeneratorType
from typing import TYPE_CHECKING, Any, Generic, TypedDict, cast

from resilient import _events
from resilient._classify import ErrorClass, classify, rejection_in, retry_after
from resilient._clock import DEFAULTS, SYSTEM_CLOCK
from resilient._compat import (
    LAZY_RESULTS,
    Record,
    add_note,
    check_callable,
    name_of,
    refuse_lazy_result,
    seconds,
)
from resilient._redact import (
    describe_error,
    error_fields,
    log_with_traceback,
    safe_repr,
    safe_str,
)
from resilient._retry import (
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RETRYABLE,
    OPTIONS,
    Policy,
    RetryCall,
    RetryTarget,
    awaited_budget_refusal,
    run_retry,
    run_retry_async,
)
from resilient.breaker import CircuitBreaker, CircuitOpenError

if TYPE_CHECKING:
    from typing_extensions import TypeVar, Unpack

    from resilient._clock import Clock
    from resilient._types import Budget, JitterSpec, RetryState, Seconds
    from resilient.pacing import ConcurrencyLimit, RateLimiter
else:
    from typing import TypeVar

__all__ = [
    "TaskOptions",
    "TaskResult",
    "TaskSummary",
    "execute_task_safely",
    "execute_task_safely_async",
    "run_tasks",
    "run_tasks_async",
]

if TYPE_CHECKING:
    T = TypeVar("T", default=Any)
else:  # the default (PEP 696) is read by type checkers only, and typing_extensions
    T = TypeVar("T")  # costs more to import than this whole module

logger = logging.getLogger("resilient.task")
_set = object.__setattr__  # how a record's __init__ sets its fields


class TaskResult(Record, Generic[T]):
    """How one task ended. Immutable; pickles (with its exception, when that pickles).

    A frozen dataclass: ``dataclasses.fields``, ``replace`` and ``asdict``
    work on it; ``exception`` is left out of equality, the hash and the repr.

    Attributes:
        success: whether the task returned a value.
        result: what it returned (``None`` when it failed).
        error: the final failure as ``"TypeName: message"`` (``None`` on success).
        error_class: how the final failure was classified (``None`` on success);
            ``TIMEOUT`` when a circuit breaker stopped the task.
        attempts: how many times the function was called (``0`` when an open
            circuit rejected the task before it ran).
        elapsed: seconds from the start of the task to its end, read from the
            clock (so a ``ManualClock`` counts the waits between attempts).
        exception: the final exception object itself, with its traceback and
            notes; not part of equality or ``repr``.
        rejected: whether an open circuit stopped the task: before its first
            attempt (``attempts=0``), or between attempts, when the breaker
            opened and would still be open at the end of the next wait. Then
            ``error_class`` is ``TIMEOUT`` and ``exception`` a
            ``CircuitOpenError`` (chained, with ``__cause__``, to the last
            failure that ran). ``False`` in every other case: a loop can tell
            "the dependency failed" from "we did not try".
        task_name: the name the task was run under.
        retry_after: the seconds the server asked to wait (``Retry-After`` or
            ``retry-after-ms``) with the final failure, when it carried one
            (``None`` otherwise): when the task gave up because the server
            asked for longer than ``max_retry_after`` or past the
            ``deadline``, a scheduler can requeue it for then.
    """

    # A frozen dataclass to its users (see resilient._compat.Record); its
    # fields live in __dict__, as a dataclass's without slots do.
    __match_args__ = (
        "success",
        "result",
        "error",
        "error_class",
        "attempts",
        "elapsed",
        "exception",
        "rejected",
        "task_name",
        "retry_after",
    )
    _uncompared = _unshown = frozenset({"exception"})

    success: bool
    result: T | None
    error: str | None
    error_class: ErrorClass | None
    attempts: int
    elapsed: float
    exception: BaseException | None
    rejected: bool
    task_name: str
    retry_after: float | None

    def __init__(
        self,
        success: bool,
        result: T | None = None,
        error: str | None = None,
        error_class: ErrorClass | None = None,
        attempts: int = 0,
        elapsed: float = 0.0,
        exception: BaseException | None = None,
        rejected: bool = False,
        task_name: str = "",
        retry_after: float | None = None,
    ) -> None:
        fields = self.__dict__
        fields["success"] = success
        fields["result"] = result
        fields["error"] = error
        fields["error_class"] = error_class
        fields["attempts"] = attempts
        fields["elapsed"] = elapsed
        fields["exception"] = exception
        fields["rejected"] = rejected
        fields["task_name"] = task_name
        fields["retry_after"] = retry_after


class TaskSummary(Record):
    """The outcome of ``run_tasks``: every result, in input order, and the counts.

    ``str(summary)`` is ``"N/M tasks completed successfully"``; after an
    interruption it adds ``" (interrupted after K of M)"``, K being the tasks
    that finished. A frozen dataclass, like ``TaskResult``.

    Attributes:
        results: the ``TaskResult`` of every task that finished, in input order.
        total: how many tasks were given.
        interrupted: whether the run was stopped (Ctrl-C, ``SystemExit``, a
            cancellation) before every task finished.
    """

    # A frozen dataclass to its users (see resilient._compat.Record).
    __slots__ = ("interrupted", "results", "total")
    __match_args__ = ("results", "total", "interrupted")

    results: tuple[TaskResult, ...]
    total: int
    interrupted: bool

    def __init__(
        self, results: tuple[TaskResult, ...], total: int, interrupted: bool = False
    ) -> None:
        results = results if isinstance(results, tuple) else tuple(results)
        if total < len(results):
            raise ValueError(
                f"total must be >= the number of results ({len(results)}), got {total!r}"
            )
        _set(self, "results", results)
        _set(self, "total", total)
        _set(self, "interrupted", interrupted)

    @property
    def succeeded(self) -> int:
        """How many tasks succeeded."""
        return sum(1 for r in self.results if r.success)

    @property
    def failed(self) -> int:
        """How many tasks ran and failed (rejected tasks are counted apart)."""
        return sum(1 for r in self.results if not r.success and not r.rejected)

    @property
    def rejected(self) -> int:
        """How many tasks an open circuit stopped (``TaskResult.rejected``)."""
        return sum(1 for r in self.results if r.rejected)

    @property
    def by_class(self) -> Mapping[ErrorClass, int]:
        """Unsuccessful tasks (failed or rejected) by ``ErrorClass``; every class is a key."""
        counts = dict.fromkeys(ErrorClass, 0)
        for r in self.results:
            if not r.success:
                counts[r.error_class or ErrorClass.UNKNOWN] += 1
        return counts

    def __str__(self) -> str:
        line = f"{self.succeeded}/{self.total} tasks completed successfully"
        if self.interrupted:
            line += f" (interrupted after {len(self.results)} of {self.total})"
        return line

    def __repr__(self) -> str:
        return (
            f"TaskSummary(succeeded={self.succeeded}, failed={self.failed}, "
            f"rejected={self.rejected}, total={self.total}, interrupted={self.interrupted})"
        )


class TaskOptions(TypedDict, total=False):
    """The options ``run_tasks`` passes on to every task (see ``execute_task_safely``)."""

    max_retries: int
    circuit_breaker: CircuitBreaker | None
    base_delay: Seconds
    max_delay: Seconds
    jitter: JitterSpec
    retryable_classes: Collection[ErrorClass]
    deadline: Seconds | None
    classifier: Callable[..., ErrorClass]
    on_retry: Callable[[RetryState], object] | None
    budget: Budget | None
    clock: Clock | None
    max_retry_after: Seconds
    limiter: RateLimiter | None


_OPTION_NAMES = frozenset(TaskOptions.__annotations__)


def execute_task_safely(
    task_name: str,
    func: Callable[..., T],
    /,
    *args: Any,
    max_retries: int = 3,
    circuit_breaker: CircuitBreaker | None = None,
    base_delay: Seconds = 1.0,
    max_delay: Seconds = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    deadline: Seconds | None = None,
    classifier: Callable[..., ErrorClass] = classify,
    on_retry: Callable[[RetryState], object] | None = None,
    budget: Budget | None = None,
    clock: Clock | None = None,
    max_retry_after: Seconds = DEFAULT_MAX_RETRY_AFTER,
    limiter: RateLimiter | None = None,
    concurrency: ConcurrencyLimit | None = None,
    **kwargs: Any,
) -> TaskResult[T]:
    """Call ``func(*args, **kwargs)``, retrying as ``@retry`` does, and report how it went.

    Every attempt goes through *circuit_breaker* when one is given, so its
    failures count there. A ``CircuitOpenError`` is never retried: an open
    circuit before the first attempt gives ``success=False``,
    ``error_class=TIMEOUT``, ``attempts=0`` (the function not called); a
    circuit that opens between attempts stops the retries the same way, with
    the attempts made so far (the exception's ``__cause__`` is the last
    failure of the function).

    Never raises for an ``Exception`` of the function, the classifier,
    ``on_retry`` or the budget; ``KeyboardInterrupt``, ``SystemExit`` and
    ``asyncio.CancelledError`` propagate. A final failure is logged once,
    at ERROR, on the ``resilient.task`` logger ("task failed", with the fields
    ``task``, ``attempts``, ``error_class``, ``elapsed``, ``error``); a success
    at DEBUG ("task succeeded").

    Args:
        task_name: names the task in the result and the logs.
        func: a plain function (use ``execute_task_safely_async`` for
            coroutine functions).
        *args: positional arguments for *func*.
        max_retries: retries after the first attempt (``0``: one attempt).
        circuit_breaker: a ``CircuitBreaker`` every attempt goes through.
        base_delay: as for ``@retry``: the first wait, in seconds.
        max_delay: as for ``@retry``: the longest wait.
        jitter: as for ``@retry``: how waits are randomised.
        retryable_classes: as for ``@retry``: the error classes retried.
        deadline: as for ``@retry``: seconds for all attempts together.
        classifier: as for ``@retry``: maps an exception to an ``ErrorClass``.
        on_retry: as for ``@retry``: called before each wait.
        budget: as for ``@retry``: a ``RetryBudget`` each retry spends from.
        clock: as for ``@retry``: the clock to read and sleep on (tests).
        max_retry_after: as for ``@retry``: the longest server's wait
            (``Retry-After``) honoured; beyond it the task fails at once,
            with ``TaskResult.retry_after`` saying what the server asked.
        limiter: as for ``@retry``: a ``RateLimiter`` every attempt acquires
            first (within the time left under *deadline*); a 429 or 503 with
            ``Retry-After`` pauses it for every caller sharing it.
        concurrency: a ``ConcurrencyLimit`` every attempt runs in (after the
            limiter's turn, around the breaker); its refusal is TRANSIENT
            and retried like any other.
        **kwargs: keyword arguments for *func* (a keyword named like an option
            above is taken as the option: bind it with ``functools.partial``).

    Returns:
        A ``TaskResult``.

    Raises:
        TypeError, ValueError: a bad option, before *func* is called: a
            configuration error is a bug, not a task failure.
    """
    settings = _Settings.cached(
        (
            False,
            max_retries,
            base_delay,
            max_delay,
            jitter,
            retryable_classes,
            deadline,
            classifier,
            on_retry,
            budget,
            clock,
            max_retry_after,
            limiter,
            circuit_breaker,
            concurrency,
        )
    )
    _check_task(task_name, func, asynchronous=False)
    return _execute(settings, task_name, func, args, kwargs)


async def execute_task_safely_async(
    task_name: str,
    func: Callable[..., Awaitable[T]],
    /,
    *args: Any,
    max_retries: int = 3,
    circuit_breaker: CircuitBreaker | None = None,
    base_delay: Seconds = 1.0,
    max_delay: Seconds = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    deadline: Seconds | None = None,
    classifier: Callable[..., ErrorClass] = classify,
    on_retry: Callable[[RetryState], object] | None = None,
    budget: Budget | None = None,
    clock: Clock | None = None,
    max_retry_after: Seconds = DEFAULT_MAX_RETRY_AFTER,
    limiter: RateLimiter | None = None,
    concurrency: ConcurrencyLimit | None = None,
    **kwargs: Any,
) -> TaskResult[T]:
    """Await ``func(*args, **kwargs)``: the ``async`` twin of ``execute_task_safely``.

    Attempts go through ``circuit_breaker.call_async``; waits use
    ``await clock.asleep(...)``. Cancelling the task propagates
    ``CancelledError`` at once, never retried and never counted.

    Returns:
        A ``TaskResult``.
    """
    settings = _Settings.cached(
        (
            True,
            max_retries,
            base_delay,
            max_delay,
            jitter,
            retryable_classes,
            deadline,
            classifier,
            on_retry,
            budget,
            clock,
            max_retry_after,
            limiter,
            circuit_breaker,
            concurrency,
        )
    )
    _check_task(task_name, func, asynchronous=True)
    return await _execute_async(settings, task_name, func, args, kwargs)


def run_tasks(
    tasks: Iterable[Sequence[Any]],
    *,
    concurrency: int | ConcurrencyLimit = 1,
    **options: Unpack[TaskOptions],
) -> TaskSummary:
    """Run ``(name, func, *args)`` tasks with ``execute_task_safely``; keep going past failures.

    With ``concurrency=1`` the tasks run one after another in the calling
    thread; above, in a pool of that many threads. Every task and option is
    checked before the first one runs.

    A ``KeyboardInterrupt`` (Ctrl-C, or raised by a task), ``SystemExit`` or
    other ``BaseException`` stops the run: no new task starts, and the
    exception propagates with the partial summary as ``exc.summary``
    (``interrupted=True``) and as a PEP 678 note. Tasks already running in
    other threads cannot be stopped: they finish in the background, and are
    not in the summary.

    Args:
        tasks: ``(name, func, *args)`` tuples.
        concurrency: how many tasks run at a time (>= 1); or a
            ``ConcurrencyLimit`` every attempt runs in, in a pool of as many
            threads as it may admit (its ``max_limit`` when it has one, else
            its ``limit``): an adaptive limit then moves within that pool.
        **options: passed to every ``execute_task_safely`` call
            (``max_retries``, ``circuit_breaker``, ``clock``...).

    Returns:
        A ``TaskSummary`` with the results in input order.
    """
    workers, slots = _workers(concurrency, "call")
    jobs = _check_jobs(tasks, asynchronous=False)
    settings = _Settings.of(options, asynchronous=False, concurrency=slots)
    results: list[TaskResult | None] = [None] * len(jobs)
    try:
        if workers == 1 or len(jobs) <= 1:
            for index, (name, func, args) in enumerate(jobs):
                results[index] = _execute(settings, name, func, args, {})
        else:
            _run_in_threads(settings, jobs, results, workers)
    except BaseException as exc:
        _attach_summary(exc, results)
        raise
    return TaskSummary(tuple(r for r in results if r is not None), len(jobs))


async def run_tasks_async(
    tasks: Iterable[Sequence[Any]],
    *,
    concurrency: int | ConcurrencyLimit = 1,
    **options: Unpack[TaskOptions],
) -> TaskSummary:
    """Await ``(name, coroutine_function, *args)`` tasks, at most *concurrency* at a time.

    The ``async`` twin of ``run_tasks``: *concurrency* worker coroutines take
    the tasks in input order. A ``KeyboardInterrupt`` or ``SystemExit`` raised
    by a task, or the cancellation of the run, cancels the tasks in flight and
    propagates with the partial summary attached as for ``run_tasks``.

    Returns:
        A ``TaskSummary`` with the results in input order.
    """
    import asyncio  # noqa: PLC0415 - `import resilient` must not load asyncio

    count, slots = _workers(concurrency, "call_async")
    jobs = _check_jobs(tasks, asynchronous=True)
    settings = _Settings.of(options, asynchronous=True, concurrency=slots)
    results: list[TaskResult | None] = [None] * len(jobs)
    if not jobs:
        return TaskSummary((), 0)
    queue = iter(enumerate(jobs))

    async def worker() -> None:
        for index, (name, func, args) in queue:
            try:
                results[index] = await _execute_async(settings, name, func, args, {})
            except GeneratorExit:
                raise
            except BaseException as exc:  # only BaseException-only ones reach here
                # A KeyboardInterrupt must not leave a Task (it would break out
                # of the event loop): carry it to run_tasks_async as an Exception.
                raise _Stopped(exc) from None

    workers = [asyncio.ensure_future(worker()) for _ in range(min(count, len(jobs)))]
    stop: BaseException | None = None
    try:
        await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException as exc:  # this run was cancelled
        stop = exc
    if stop is None:
        stop = _first_stop(workers)
    if stop is not None:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        _attach_summary(stop, results)
        raise stop
    return TaskSummary(tuple(r for r in results if r is not None), len(jobs))


# -- one task -------------------------------------------------------------------


class _Settings:
    """Strictly private. The validated options of one call or of one run of tasks.

    Holds the retry policy, built and validated once, with the user's
    classifier and ``on_retry`` made safe: a task never raises because of
    them. ``execute_task_safely`` keeps the settings of recent option sets,
    so a loop over many small tasks validates its options once.
    """

    __slots__ = ("breaker", "clock", "policy", "slots", "user_classifier")

    def __init__(
        self,
        *,
        asynchronous: bool,
        max_retries: int = 3,
        circuit_breaker: CircuitBreaker | None = None,
        base_delay: Seconds = 1.0,
        max_delay: Seconds = 60.0,
        jitter: JitterSpec = True,
        retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
        deadline: Seconds | None = None,
        classifier: Callable[..., ErrorClass] = classify,
        on_retry: Callable[[RetryState], object] | None = None,
        budget: Budget | None = None,
        clock: Clock | None = None,
        max_retry_after: Seconds = DEFAULT_MAX_RETRY_AFTER,
        limiter: RateLimiter | None = None,
        concurrency: ConcurrencyLimit | None = None,
    ) -> None:
        method = "call_async" if asynchronous else "call"
        if concurrency is not None and not (
            callable(getattr(concurrency, method, None)) and hasattr(concurrency, "limit")
        ):
            raise TypeError(f"concurrency must be a ConcurrencyLimit or None, got {concurrency!r}")
        self.slots = concurrency
        if circuit_breaker is not None and not callable(getattr(circuit_breaker, method, None)):
            raise TypeError(
                f"circuit_breaker must be a CircuitBreaker (with {method}()) or None, "
                f"got {circuit_breaker!r}"
            )
        if not callable(classifier):
            raise TypeError(f"classifier must be callable, got {classifier!r}")
        if on_retry is not None and not callable(on_retry):
            raise TypeError(f"on_retry must be callable, got {on_retry!r}")
        if not asynchronous:
            refused = awaited_budget_refusal(
                budget,
                "execute_task_safely() (or run_tasks())",
                "await execute_task_safely_async(...) (or run_tasks_async) on a coroutine function",
            )
            if refused is not None:
                raise TypeError(refused)
        self.breaker = circuit_breaker
        self.clock = clock
        self.user_classifier = classifier
        self.policy = Policy(
            max_retries=max_retries,
            base_delay=base_delay,
            max_delay=max_delay,
            jitter=jitter,
            retryable_classes=retryable_classes,
            deadline=deadline,
            classifier=self.classify,
            on_retry=None if on_retry is None else _SafeHook(on_retry),
            budget=budget,
            clock=clock,
            retry_on_result=None,
            max_retry_after=max_retry_after,
            limiter=limiter,
        )

    @classmethod
    def of(
        cls,
        options: Mapping[str, Any],
        *,
        asynchronous: bool,
        concurrency: ConcurrencyLimit | None = None,
    ) -> _Settings:
        unknown = sorted(set(options) - _OPTION_NAMES)
        if unknown:
            raise TypeError(
                f"unknown task option(s) {', '.join(map(repr, unknown))}; "
                f"the options are {', '.join(sorted(_OPTION_NAMES))}"
            )
        return cls(asynchronous=asynchronous, concurrency=concurrency, **options)

    @classmethod
    def cached(cls, key: tuple[Any, ...]) -> _Settings:
        """The settings of ``(asynchronous, *options in _OPTION_ORDER)``, validated once per key."""
        try:
            found = _SETTINGS.get(key)
        except TypeError:  # an unhashable option (a list of classes): validate every time
            return cls(asynchronous=key[0], **dict(zip(_OPTION_ORDER, key[1:], strict=True)))
        if found is None:
            found = cls(asynchronous=key[0], **dict(zip(_OPTION_ORDER, key[1:], strict=True)))
            if len(_SETTINGS) >= _SETTINGS_LIMIT:
                _SETTINGS.clear()
            _SETTINGS[key] = found
        return found

    def classify(self, exc: BaseException) -> ErrorClass:
        """The user's classifier, made safe: a failure or a non-``ErrorClass`` is UNKNOWN.

        The answer is kept for the task's result (see ``_CLASSIFIED``): the
        classifier runs once per failure, and a failing one is logged once.
        """
        found = self._classify(exc)
        _CLASSIFIED.set((exc, found))
        return found

    def _classify(self, exc: BaseException) -> ErrorClass:
        try:
            found = self.user_classifier(exc)
        except Exception as error:
            log_with_traceback(
                logger,
                logging.ERROR,
                "classifier %s failed on %s in task %r: %s; the failure counts as UNKNOWN",
                name_of(self.user_classifier),
                type(exc).__name__,
                _TASK.get(),
                describe_error(error),
                error=error,
                extra={"event": "task_classifier_failed", "task": _TASK.get()},
            )
            return ErrorClass.UNKNOWN
        if not isinstance(found, ErrorClass):
            logger.error(
                "classifier %s returned %s, not an ErrorClass, in task %r; the failure "
                "counts as UNKNOWN",
                name_of(self.user_classifier),
                safe_repr(found),
                _TASK.get(),
                extra={"event": "task_classifier_failed", "task": _TASK.get(), "returned": found},
            )
            return ErrorClass.UNKNOWN
        return found


_OPTION_ORDER = (
    *(
        name
        for name in OPTIONS
        if name not in ("retry_on_result", "on", "fallback", "logger", "stop_event")
    ),
    "circuit_breaker",
    "concurrency",
)
"""The options of a task, in the order of ``_Settings.cached``'s key: ``@retry``'s that a
task takes (in ``OPTIONS`` order), then its own."""
_SETTINGS: dict[tuple[Any, ...], _Settings] = {}
_SETTINGS_LIMIT = 256

# The task whose retries run now: read only by the rare log lines of the
# classifier and on_retry wrappers, set only once a task has failed.
_TASK: ContextVar[str] = ContextVar("resilient_task", default="?")
_CLASSIFIED: ContextVar[tuple[BaseException, ErrorClass] | None] = ContextVar(
    "resilient_task_classified", default=None
)
"""The last failure the retry loop of the running task classified, and its class: the task's
result reuses it rather than asking the classifier again. Set while the loop runs, reset after."""


class _SafeHook:
    """Strictly private. The user's ``on_retry``: an exception from it is logged, retries go on."""

    __slots__ = ("hook",)

    def __init__(self, hook: Callable[[RetryState], object]) -> None:
        self.hook = hook

    def __call__(self, state: RetryState) -> None:
        try:
            self.hook(state)
        except Exception as error:
            log_with_traceback(
                logger,
                logging.ERROR,
                "on_retry hook %s failed in task %r (attempt %d): %s; the retries go on",
                name_of(self.hook),
                _TASK.get(),
                state.attempt,
                describe_error(error),
                error=error,
                extra={
                    "event": "task_on_retry_failed",
                    "task": _TASK.get(),
                    "attempt": state.attempt,
                },
            )


def _execute(
    settings: _Settings,
    name: str,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> TaskResult:
    clock = DEFAULTS.clock if settings.clock is None else settings.clock
    # The system clock read directly: a method call costs as much as the reading.
    start = time.monotonic() if clock is SYSTEM_CLOCK else clock.monotonic()
    breaker = settings.breaker
    run = func if breaker is None else functools.partial(breaker.call, func)
    if settings.slots is not None:
        run = functools.partial(settings.slots.call, run)
    if settings.policy.needs_full_loop:
        call = _task_call(settings, func, run, start, "execute_task_safely()")
    else:  # the first attempt, as plainly as it gets
        try:
            value = run(*args, **kwargs)
            if type(value) in LAZY_RESULTS:
                refuse_lazy_result(value, func, "execute_task_safely()")
        except Exception as exc:
            # The call takes the failure over: no local here keeps it alive.
            call = _task_call(settings, func, run, start, "execute_task_safely()", exc)
        else:
            end = time.monotonic() if clock is SYSTEM_CLOCK else clock.monotonic()
            return _succeeded(name, value, 1, end - start)
    return _retry_failed(settings, name, call, args, kwargs, clock, start)


def _retry_failed(
    settings: _Settings,
    name: str,
    call: RetryCall,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    clock: Clock,
    start: float,
) -> TaskResult:
    """Everything after a first failure (or a first attempt that needs the full loop)."""
    token, classified = _TASK.set(name), _CLASSIFIED.set(None)
    try:
        value = run_retry(call, args, kwargs)
    except Exception as exc:
        return _failed(settings, name, call, exc, clock.monotonic() - start)
    finally:
        _CLASSIFIED.reset(classified)  # drops the failure it holds
        _TASK.reset(token)
    return _succeeded(name, value, call.attempt + 1, clock.monotonic() - start)


async def _execute_async(
    settings: _Settings,
    name: str,
    func: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> TaskResult:
    clock = DEFAULTS.clock if settings.clock is None else settings.clock
    start = clock.monotonic()
    breaker = settings.breaker

    async def run(*a: Any, **kw: Any) -> Any:
        awaitable = func(*a, **kw)
        if not _is_awaitable(awaitable):
            raise TypeError(
                f"task {name!r}: {name_of(func)} returned {safe_repr(awaitable)}, not an "
                "awaitable: use execute_task_safely or run_tasks for plain functions"
            )
        return await awaitable

    attempt: Callable[..., Awaitable[Any]] = (
        run if breaker is None else functools.partial(breaker.call_async, run)
    )
    if settings.slots is not None:
        attempt = functools.partial(settings.slots.call_async, attempt)
    call = _task_call(settings, func, attempt, start, "execute_task_safely_async()")
    token, classified = _TASK.set(name), _CLASSIFIED.set(None)
    try:
        value = await run_retry_async(call, args, kwargs)
    except Exception as exc:
        return _failed(settings, name, call, exc, clock.monotonic() - start)
    finally:
        _CLASSIFIED.reset(classified)  # drops the failure it holds
        _TASK.reset(token)
    return _succeeded(name, value, call.attempt + 1, clock.monotonic() - start)


def _task_call(
    settings: _Settings,
    func: Callable[..., Any],
    run: Callable[..., Any],
    start: float,
    form: str,
    failure: Exception | None = None,
) -> RetryCall:
    """The retry loop's view of a task: *run* retried, named after *func*, its breaker the gate."""
    # The task's own line says how it ended: no "giving up" line from the loop.
    target = RetryTarget(run, settings.policy, named_after=func, form=form, logs_outcome=False)
    target.gate = settings.breaker
    return RetryCall(target, start, failure)


def _succeeded(name: str, value: Any, attempts: int, elapsed: float) -> TaskResult:
    if _events.SINK is not None:
        _events.SINK.task_finished(name, "success", elapsed, attempts, None)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "task %r succeeded after %d attempt%s in %.3f s",
            name,
            attempts,
            "" if attempts == 1 else "s",
            elapsed,
            extra={
                "event": "task_succeeded",
                "task": name,
                "attempts": attempts,
                "elapsed": round(elapsed, 6),
            },
        )
    return _result(True, value, None, None, attempts, elapsed, None, False, name)


def _failed(
    settings: _Settings, name: str, call: RetryCall, exc: Exception, elapsed: float
) -> TaskResult:
    """How a task that did not succeed ended: failed, or rejected by its breaker."""
    own_rejection = call.not_run(exc)
    ran = call.attempt - own_rejection
    gate = call.target.gate
    if call.closed_for and gate is not None:  # the breaker opened: stopped before the wait
        stop = CircuitOpenError(gate.name, call.closed_for)
        stop.__cause__ = exc
        exc = stop
    rejected = own_rejection or bool(call.closed_for)
    classified = _CLASSIFIED.get()
    if rejection_in(exc) is not None:
        error_class = ErrorClass.TIMEOUT
    elif classified is not None and classified[0] is exc:  # the loop's answer: asked once
        error_class = classified[1]
    else:  # not a failure the loop classified (a limiter's refusal, a clock's error...)
        error_class = settings.classify(exc)
    if _events.SINK is not None:
        _events.SINK.task_finished(name, "rejected" if rejected else "failure", elapsed, ran, exc)
    _log_failure(name, exc, error_class, ran, elapsed, rejected)
    made = _result(False, None, _describe(exc), error_class, ran, elapsed, exc, rejected, name)
    if not rejected and (hasattr(exc, "response") or hasattr(exc, "headers")):
        made.__dict__["retry_after"] = retry_after(exc)
    return made


def _is_awaitable(value: object) -> bool:
    """``inspect.isawaitable`` (``inspect`` costs more to import than this whole module)."""
    if isinstance(value, (CoroutineType, Awaitable)):
        return True
    return isinstance(value, GeneratorType) and bool(
        value.gi_code.co_flags & _CO_ITERABLE_COROUTINE
    )


_CO_ITERABLE_COROUTINE = 0x100  # a generator made a coroutine by types.coroutine


def _result(
    success: bool,
    result: Any,
    error: str | None,
    error_class: ErrorClass | None,
    attempts: int,
    elapsed: float,
    exception: BaseException | None,
    rejected: bool,
    task_name: str,
) -> TaskResult:
    """``TaskResult(success, result, ...)``, its ``__dict__`` filled in here.

    What ``TaskResult.__init__`` does, without parsing arguments: on every
    task, this is a fair part of what a trivial one costs.
    """
    made: TaskResult = object.__new__(TaskResult)
    fields = made.__dict__
    fields["success"] = success
    fields["result"] = result
    fields["error"] = error
    fields["error_class"] = error_class
    fields["attempts"] = attempts
    fields["elapsed"] = elapsed
    fields["exception"] = exception
    fields["rejected"] = rejected
    fields["task_name"] = task_name
    fields["retry_after"] = None
    return made


def _log_failure(
    name: str,
    exc: Exception,
    error_class: ErrorClass,
    attempts: int,
    elapsed: float,
    rejected: bool,
) -> None:
    level = logging.WARNING if rejected else logging.ERROR
    if not logger.isEnabledFor(level):
        return
    error_type, error = error_fields(exc)
    extra = {
        "event": "task_rejected" if rejected else "task_failed",
        "task": name,
        "attempts": attempts,
        "error_class": error_class,
        "elapsed": round(elapsed, 6),
        "rejected": rejected,
        "error_type": error_type,
        "error": error,
    }
    if not rejected:
        logger.error(
            "task %r failed (%s) after %d attempt%s over %.3f s: %s",
            name,
            error_class.name,
            attempts,
            "" if attempts == 1 else "s",
            elapsed,
            describe_error(exc),
            extra=extra,
        )
        return
    breaker = getattr(exc, "breaker_name", "?")
    extra["breaker"] = breaker
    cause = exc.__cause__
    if attempts == 0:
        logger.warning(
            "task %r not run: circuit %r is open (next trial in %s s)",
            name,
            breaker,
            seconds(getattr(exc, "remaining", 0.0)),
            extra=extra,
        )
        return
    logger.warning(
        "task %r stopped after %d attempt%s over %.3f s: circuit %r is open (next trial in "
        "%s s); the last error: %s",
        name,
        attempts,
        "" if attempts == 1 else "s",
        elapsed,
        breaker,
        seconds(getattr(exc, "remaining", 0.0)),
        describe_error(cause) if cause is not None else "none",
        extra=extra,
    )


def _describe(exc: BaseException) -> str:
    """``"TypeName: message"``, or the type name alone; never raises."""
    message = safe_str(exc)
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def _check_task(name: object, func: object, *, asynchronous: bool) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"task_name must be a non-empty str, got {name!r}")
    form = "execute_task_safely_async()" if asynchronous else "execute_task_safely()"
    check_callable(func, form, sync_only=not asynchronous, task=name)


# -- many tasks -------------------------------------------------------------------


_Job = tuple[str, Callable[..., Any], tuple[Any, ...]]


def _workers(concurrency: object, method: str) -> tuple[int, ConcurrencyLimit | None]:
    """The number of workers of a run, and the ``ConcurrencyLimit`` given instead, if any."""
    if not isinstance(concurrency, int) and callable(getattr(concurrency, method, None)):
        limit = cast("ConcurrencyLimit", concurrency)
        return (limit.max_limit or limit.limit), limit
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise TypeError(
            f"concurrency must be an int >= 1 or a ConcurrencyLimit, got {concurrency!r}"
        )
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
    return concurrency, None


def _check_jobs(tasks: object, *, asynchronous: bool) -> list[_Job]:
    if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Iterable):
        raise TypeError(f"tasks must be an iterable of (name, func, *args) tuples, got {tasks!r}")
    jobs: list[_Job] = []
    for task in cast("Iterable[object]", tasks):
        if (
            isinstance(task, (str, bytes))
            or not isinstance(task, Sequence)
            or len(cast("Sequence[object]", task)) < 2
        ):
            raise TypeError(f"each task must be a (name, func, *args) tuple, got {task!r}")
        name, func, *args = cast("Sequence[object]", task)
        _check_task(name, func, asynchronous=asynchronous)
        jobs.append(cast("_Job", (name, func, tuple(args))))
    return jobs


def _run_in_threads(
    settings: _Settings, jobs: list[_Job], results: list[TaskResult | None], concurrency: int
) -> None:
    from concurrent.futures import (  # noqa: PLC0415 - only runs with threads pay for it
        FIRST_EXCEPTION,
        ThreadPoolExecutor,
        wait,
    )

    stop = threading.Event()

    def work(index: int, job: _Job) -> None:
        if stop.is_set():
            return  # the run was interrupted: do not start new tasks
        try:
            results[index] = _execute(settings, job[0], job[1], job[2], {})
        except BaseException:
            stop.set()
            raise

    pool = ThreadPoolExecutor(
        max_workers=min(concurrency, len(jobs)), thread_name_prefix="resilient-task"
    )
    try:
        futures = [pool.submit(work, index, job) for index, job in enumerate(jobs)]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                future.result()  # raises the original exception object
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


class _Stopped(Exception):
    """Strictly private. Carries a task's ``KeyboardInterrupt`` out of a worker Task."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(exc)
        self.exc = exc


def _first_stop(workers: Iterable[Any]) -> BaseException | None:
    """The exception a worker Task carried out in a ``_Stopped``, if one did."""
    for worker in workers:
        if worker.done() and not worker.cancelled():
            error = worker.exception()
            if isinstance(error, _Stopped):
                return error.exc
    return None


def _attach_summary(exc: BaseException, results: list[TaskResult | None]) -> None:
    """Give *exc* the partial summary, as ``exc.summary`` and as a PEP 678 note."""
    summary = TaskSummary(
        tuple(r for r in results if r is not None), len(results), interrupted=True
    )
    with contextlib.suppress(Exception):  # a type that refuses attributes: the note says it
        exc.summary = summary  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
    add_note(exc, str(summary))
