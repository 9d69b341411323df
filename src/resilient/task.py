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
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypedDict

from typing_extensions import TypeVar, Unpack

from resilient._classify import ErrorClass, classify
from resilient._clock import Clock, resolve_clock
from resilient._compat import add_note, is_async_callable
from resilient._retry import DEFAULT_RETRYABLE, Budget, RetryState, retry
from resilient.backoff import JitterSpec
from resilient.breaker import CircuitBreaker, CircuitOpenError

__all__ = [
    "TaskOptions",
    "TaskResult",
    "TaskSummary",
    "execute_task_safely",
    "execute_task_safely_async",
    "run_tasks",
    "run_tasks_async",
]

T = TypeVar("T", default=Any)

logger = logging.getLogger("resilient.task")


@dataclass(frozen=True)
class TaskResult(Generic[T]):
    """How one task ended. Immutable; pickles (with its exception, when that pickles).

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
        task_name: the name the task was run under.
    """

    success: bool
    result: T | None = None
    error: str | None = None
    error_class: ErrorClass | None = None
    attempts: int = 0
    elapsed: float = 0.0
    exception: BaseException | None = field(default=None, compare=False, repr=False)
    task_name: str = ""


@dataclass(frozen=True, repr=False)
class TaskSummary:
    """The outcome of ``run_tasks``: every result, in input order, and the counts.

    ``str(summary)`` is ``"N/M tasks completed successfully"``; after an
    interruption it adds ``" (interrupted after K of M)"``, K being the tasks
    that finished.

    Attributes:
        results: the ``TaskResult`` of every task that finished, in input order.
        total: how many tasks were given.
        interrupted: whether the run was stopped (Ctrl-C, ``SystemExit``, a
            cancellation) before every task finished.
    """

    results: tuple[TaskResult, ...]
    total: int
    interrupted: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.results, tuple):
            object.__setattr__(self, "results", tuple(self.results))
        if self.total < len(self.results):
            raise ValueError(
                f"total must be >= the number of results ({len(self.results)}), got {self.total!r}"
            )

    @property
    def succeeded(self) -> int:
        """How many tasks succeeded."""
        return sum(1 for r in self.results if r.success)

    @property
    def failed(self) -> int:
        """How many tasks finished and failed."""
        return sum(1 for r in self.results if not r.success)

    @property
    def by_class(self) -> Mapping[ErrorClass, int]:
        """Failed tasks counted by ``ErrorClass``; every class is a key (0 when none)."""
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
            f"total={self.total}, interrupted={self.interrupted})"
        )


class TaskOptions(TypedDict, total=False):
    """The options ``run_tasks`` passes on to every task (see ``execute_task_safely``)."""

    max_retries: int
    circuit_breaker: CircuitBreaker | None
    base_delay: float
    max_delay: float
    jitter: JitterSpec
    retryable_classes: Collection[ErrorClass]
    deadline: float | None
    classifier: Callable[..., ErrorClass]
    on_retry: Callable[[RetryState], object] | None
    budget: Budget | None
    clock: Clock | None


_OPTION_NAMES = frozenset(TaskOptions.__annotations__)


def execute_task_safely(
    task_name: str,
    func: Callable[..., T],
    /,
    *args: Any,
    max_retries: int = 3,
    circuit_breaker: CircuitBreaker | None = None,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    deadline: float | None = None,
    classifier: Callable[..., ErrorClass] = classify,
    on_retry: Callable[[RetryState], object] | None = None,
    budget: Budget | None = None,
    clock: Clock | None = None,
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
        base_delay, max_delay, jitter, retryable_classes, deadline, classifier,
            on_retry, budget, clock: as for ``@retry``.
        **kwargs: keyword arguments for *func* (a keyword named like an option
            above is taken as the option: bind it with ``functools.partial``).

    Returns:
        A ``TaskResult``.

    Raises:
        TypeError, ValueError: a bad option, before *func* is called: a
            configuration error is a bug, not a task failure.
    """
    settings = _Settings(
        asynchronous=False,
        max_retries=max_retries,
        circuit_breaker=circuit_breaker,
        base_delay=base_delay,
        max_delay=max_delay,
        jitter=jitter,
        retryable_classes=retryable_classes,
        deadline=deadline,
        classifier=classifier,
        on_retry=on_retry,
        budget=budget,
        clock=clock,
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
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    deadline: float | None = None,
    classifier: Callable[..., ErrorClass] = classify,
    on_retry: Callable[[RetryState], object] | None = None,
    budget: Budget | None = None,
    clock: Clock | None = None,
    **kwargs: Any,
) -> TaskResult[T]:
    """Await ``func(*args, **kwargs)``: the ``async`` twin of ``execute_task_safely``.

    Attempts go through ``circuit_breaker.call_async``; waits use
    ``await clock.asleep(...)``. Cancelling the task propagates
    ``CancelledError`` at once, never retried and never counted.

    Returns:
        A ``TaskResult``.
    """
    settings = _Settings(
        asynchronous=True,
        max_retries=max_retries,
        circuit_breaker=circuit_breaker,
        base_delay=base_delay,
        max_delay=max_delay,
        jitter=jitter,
        retryable_classes=retryable_classes,
        deadline=deadline,
        classifier=classifier,
        on_retry=on_retry,
        budget=budget,
        clock=clock,
    )
    _check_task(task_name, func, asynchronous=True)
    return await _execute_async(settings, task_name, func, args, kwargs)


def run_tasks(
    tasks: Iterable[Sequence[Any]],
    *,
    concurrency: int = 1,
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
        concurrency: how many tasks run at a time (>= 1).
        **options: passed to every ``execute_task_safely`` call
            (``max_retries``, ``circuit_breaker``, ``clock``...).

    Returns:
        A ``TaskSummary`` with the results in input order.
    """
    jobs = _check_jobs(tasks, concurrency, asynchronous=False)
    settings = _Settings.of(options, asynchronous=False)
    results: list[TaskResult | None] = [None] * len(jobs)
    try:
        if concurrency == 1 or len(jobs) <= 1:
            for index, (name, func, args) in enumerate(jobs):
                results[index] = _execute(settings, name, func, args, {})
        else:
            _run_in_threads(settings, jobs, results, concurrency)
    except BaseException as exc:
        _attach_summary(exc, results)
        raise
    return TaskSummary(tuple(r for r in results if r is not None), len(jobs))


async def run_tasks_async(
    tasks: Iterable[Sequence[Any]],
    *,
    concurrency: int = 1,
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

    jobs = _check_jobs(tasks, concurrency, asynchronous=True)
    settings = _Settings.of(options, asynchronous=True)
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

    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(jobs)))]
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
    """Strictly private. The validated options of one call or of one run of tasks."""

    __slots__ = (
        "base_delay",
        "breaker",
        "budget",
        "classifier",
        "clock",
        "deadline",
        "jitter",
        "max_delay",
        "max_retries",
        "on_retry",
        "retryable_classes",
    )

    def __init__(
        self,
        *,
        asynchronous: bool,
        max_retries: int = 3,
        circuit_breaker: CircuitBreaker | None = None,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        jitter: JitterSpec = True,
        retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
        deadline: float | None = None,
        classifier: Callable[..., ErrorClass] = classify,
        on_retry: Callable[[RetryState], object] | None = None,
        budget: Budget | None = None,
        clock: Clock | None = None,
    ) -> None:
        method = "call_async" if asynchronous else "call"
        if circuit_breaker is not None and not callable(getattr(circuit_breaker, method, None)):
            raise TypeError(
                f"circuit_breaker must be a CircuitBreaker (with {method}()) or None, "
                f"got {circuit_breaker!r}"
            )
        self.max_retries = max_retries
        self.breaker = circuit_breaker
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.jitter = jitter
        self.retryable_classes = retryable_classes
        self.deadline = deadline
        self.classifier = classifier
        self.on_retry = on_retry
        self.budget = budget
        self.clock = clock
        self.decorator(classifier, on_retry)  # validates every retry option, as @retry does

    @classmethod
    def of(cls, options: Mapping[str, Any], *, asynchronous: bool) -> _Settings:
        unknown = sorted(set(options) - _OPTION_NAMES)
        if unknown:
            raise TypeError(
                f"unknown task option(s) {', '.join(map(repr, unknown))}; "
                f"the options are {', '.join(sorted(_OPTION_NAMES))}"
            )
        return cls(asynchronous=asynchronous, **options)

    def decorator(
        self,
        classifier: Callable[..., ErrorClass],
        on_retry: Callable[[RetryState], object] | None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """``@retry`` with these options and the given hooks."""
        return retry(
            max_retries=self.max_retries,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            jitter=self.jitter,
            retryable_classes=self.retryable_classes,
            deadline=self.deadline,
            classifier=classifier,
            on_retry=on_retry,
            budget=self.budget,
            clock=self.clock,
        )


class _Stop(BaseException):
    """Strictly private. Carries a ``CircuitOpenError`` out of the retry loop, unretried.

    The retry loop only catches ``Exception``, so this passes through it
    whatever ``retryable_classes`` says; ``_execute`` catches it at once.
    """

    def __init__(self, error: CircuitOpenError, ran: bool) -> None:
        super().__init__(error)
        self.error = error
        self.ran = ran


class _Run:
    """Strictly private. One execution of a task: its attempts and what was classified.

    The classifier and ``on_retry`` given to the retry loop are this object's
    methods, so the class of the final failure is the one the loop acted on,
    and a hook that fails is logged instead of ending the task.
    """

    __slots__ = ("attempts", "classified", "error_class", "name", "settings", "start")

    def __init__(self, settings: _Settings, name: str, start: float) -> None:
        self.settings = settings
        self.name = name
        self.start = start
        self.attempts = 0
        self.classified: BaseException | None = None
        self.error_class = ErrorClass.UNKNOWN

    def classify(self, exc: BaseException) -> ErrorClass:
        """The user's classifier, made safe: a failure or a non-``ErrorClass`` is UNKNOWN."""
        try:
            found = self.settings.classifier(exc)
        except Exception:
            logger.error("classifier failed", exc_info=True, extra={"task": self.name})
            found = ErrorClass.UNKNOWN
        if not isinstance(found, ErrorClass):
            logger.error(
                "classifier returned no ErrorClass", extra={"task": self.name, "returned": found}
            )
            found = ErrorClass.UNKNOWN
        self.classified = exc
        self.error_class = found
        return found

    def on_retry(self, state: RetryState) -> None:
        """The user's ``on_retry``; an exception from it is logged and the retries go on."""
        hook = self.settings.on_retry
        assert hook is not None  # only installed when given
        try:
            hook(state)
        except Exception:
            logger.error(
                "on_retry failed",
                exc_info=True,
                extra={"task": self.name, "attempt": state.attempt},
            )

    def wrap(self, attempt: Callable[..., Any], func: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate *attempt* with ``@retry``, named after *func* in the retry logs."""
        target = func
        while isinstance(target, functools.partial):
            target = target.func
        if not hasattr(target, "__qualname__"):  # a callable object: named after its class
            target = type(target)
        functools.update_wrapper(
            attempt, target, assigned=("__module__", "__name__", "__qualname__"), updated=()
        )
        hook = self.on_retry if self.settings.on_retry is not None else None
        return self.settings.decorator(self.classify, hook)(attempt)

    def succeeded(self, value: Any, clock: Clock) -> TaskResult:
        elapsed = clock.monotonic() - self.start
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "task succeeded",
                extra={"task": self.name, "attempts": self.attempts, "elapsed": elapsed},
            )
        return TaskResult(
            success=True,
            result=value,
            attempts=self.attempts,
            elapsed=elapsed,
            task_name=self.name,
        )

    def stopped(self, stop: _Stop, clock: Clock) -> TaskResult:
        """A ``CircuitOpenError`` ended the task: TIMEOUT, whatever came before."""
        error = stop.error
        last = self.classified
        if not stop.ran and last is not None and error.__cause__ is None:
            error.__cause__ = last
        return self.failed(error, ErrorClass.TIMEOUT, clock)

    def failed(self, exc: Exception, error_class: ErrorClass | None, clock: Clock) -> TaskResult:
        if error_class is None:
            error_class = self.error_class if exc is self.classified else self.classify(exc)
        elapsed = clock.monotonic() - self.start
        error = _describe(exc)
        logger.error(
            "task failed",
            extra={
                "task": self.name,
                "attempts": self.attempts,
                "error_class": error_class,
                "elapsed": elapsed,
                "error": error,
            },
        )
        return TaskResult(
            success=False,
            error=error,
            error_class=error_class,
            attempts=self.attempts,
            elapsed=elapsed,
            exception=exc,
            task_name=self.name,
        )


def _execute(
    settings: _Settings,
    name: str,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> TaskResult:
    clock = resolve_clock(settings.clock)
    run = _Run(settings, name, clock.monotonic())
    breaker = settings.breaker

    def counted(*a: Any, **kw: Any) -> Any:
        run.attempts += 1
        value = func(*a, **kw)
        if inspect.iscoroutine(value):
            value.close()
            raise TypeError(
                f"task {name!r} returned a coroutine: use execute_task_safely_async "
                "or run_tasks_async for async functions"
            )
        return value

    def attempt(*a: Any, **kw: Any) -> Any:
        before = run.attempts
        try:
            return counted(*a, **kw) if breaker is None else breaker.call(counted, *a, **kw)
        except CircuitOpenError as exc:
            raise _Stop(exc, ran=run.attempts != before) from None

    try:
        value = run.wrap(attempt, func)(*args, **kwargs)
    except _Stop as stop:
        return run.stopped(stop, clock)
    except Exception as exc:
        return run.failed(exc, None, clock)
    return run.succeeded(value, clock)


async def _execute_async(
    settings: _Settings,
    name: str,
    func: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> TaskResult:
    clock = resolve_clock(settings.clock)
    run = _Run(settings, name, clock.monotonic())
    breaker = settings.breaker

    async def counted(*a: Any, **kw: Any) -> Any:
        run.attempts += 1
        awaitable = func(*a, **kw)
        if not inspect.isawaitable(awaitable):
            raise TypeError(
                f"task {name!r} returned {awaitable!r}, not an awaitable: use "
                "execute_task_safely or run_tasks for plain functions"
            )
        return await awaitable

    async def attempt(*a: Any, **kw: Any) -> Any:
        before = run.attempts
        try:
            if breaker is None:
                return await counted(*a, **kw)
            return await breaker.call_async(counted, *a, **kw)
        except CircuitOpenError as exc:
            raise _Stop(exc, ran=run.attempts != before) from None

    try:
        value = await run.wrap(attempt, func)(*args, **kwargs)
    except _Stop as stop:
        return run.stopped(stop, clock)
    except Exception as exc:
        return run.failed(exc, None, clock)
    return run.succeeded(value, clock)


def _describe(exc: BaseException) -> str:
    """``"TypeName: message"``, or the type name alone; never raises."""
    try:
        message = str(exc)
    except Exception:
        message = "<str() failed>"
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def _check_task(name: object, func: object, *, asynchronous: bool) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"task_name must be a non-empty str, got {name!r}")
    if not callable(func):
        raise TypeError(f"task {name!r}: func must be callable, got {func!r}")
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"task {name!r}: cannot run the generator function {func!r}: calling it only "
            "creates the generator, so its work would run outside the task; return a list instead"
        )
    if not asynchronous and is_async_callable(func):
        raise TypeError(
            f"task {name!r}: {func!r} is a coroutine function: use execute_task_safely_async "
            "or run_tasks_async"
        )


# -- many tasks -------------------------------------------------------------------


_Job = tuple[str, Callable[..., Any], tuple[Any, ...]]


def _check_jobs(tasks: object, concurrency: object, *, asynchronous: bool) -> list[_Job]:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise TypeError(f"concurrency must be an int >= 1, got {concurrency!r}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
    if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Iterable):
        raise TypeError(f"tasks must be an iterable of (name, func, *args) tuples, got {tasks!r}")
    jobs: list[_Job] = []
    for task in tasks:
        if isinstance(task, (str, bytes)) or not isinstance(task, Sequence) or len(task) < 2:
            raise TypeError(f"each task must be a (name, func, *args) tuple, got {task!r}")
        name, func, *args = task
        _check_task(name, func, asynchronous=asynchronous)
        jobs.append((name, func, tuple(args)))
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
        exc.summary = summary  # type: ignore[attr-defined]
    add_note(exc, str(summary))
