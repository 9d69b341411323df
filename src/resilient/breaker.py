"""The circuit breaker: stop calling what is down, then probe it carefully.

``CircuitBreaker`` counts the failures of the calls it guards. Past a limit it
*opens*: calls are rejected at once with ``CircuitOpenError``, without running,
so a dependency that is down is not hammered and callers fail fast. After the
recovery timeout it lets a bounded number of *trial* calls through
(*half-open*); enough trial successes close it again, one trial failure opens
it again.

Where the state lives is a ``BreakerStore``: ``MemoryStore`` (the default)
keeps it in this process; every store operation is one atomic transition, so
a shared store (Redis) can run each as one script. The breaker itself holds
no lock while the protected function runs: on the closed happy path it holds
none at all.
"""

from __future__ import annotations

import enum
import functools
import inspect
import itertools
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, Protocol, TypeVar, cast

from resilient._clock import DEFAULTS, SYSTEM_CLOCK, Clock, check_clock, resolve_clock
from resilient._compat import is_async_callable
from resilient.backoff import Backoff

__all__ = [
    "Admission",
    "BreakerListener",
    "BreakerMetrics",
    "BreakerPolicy",
    "BreakerStore",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "FailureRateWindow",
    "MemoryStore",
    "StoredState",
    "Transition",
]

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("resilient.breaker")


class CircuitState(str, enum.Enum):
    """The state of a circuit; a ``str``, so ``state == "open"`` holds."""

    CLOSED = "closed"
    """Calls run; failures are counted."""
    OPEN = "open"
    """Calls are rejected without running until the recovery timeout passes."""
    HALF_OPEN = "half_open"
    """A bounded number of trial calls run; the rest are rejected."""

    def __str__(self) -> str:
        return self.value


_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN


class CircuitOpenError(RuntimeError):
    """A call was rejected without running because the circuit is open.

    Attributes:
        breaker_name: the ``name`` of the breaker that rejected the call.
        remaining: seconds until the breaker admits a trial call (``0.0`` when
            it is half-open and every trial permit is taken).
        state: the state that rejected the call (``OPEN`` or ``HALF_OPEN``).

    A fresh instance is raised for every rejected call; it pickles.
    """

    # The arguments live in ``args`` and there is no Python ``__init__``:
    # building one costs what building a RuntimeError costs (the rejection
    # path is measured), and the default pickling just works. The arguments
    # are positional, as for any exception.
    if TYPE_CHECKING:

        def __init__(
            self, breaker_name: str, remaining: float, state: CircuitState = _OPEN, /
        ) -> None: ...

    @property
    def breaker_name(self) -> str:
        """The ``name`` of the breaker that rejected the call."""
        return cast(str, self.args[0])

    @property
    def remaining(self) -> float:
        """Seconds until the next trial call is admitted."""
        return cast(float, self.args[1])

    @property
    def state(self) -> CircuitState:
        """The state that rejected the call."""
        return CircuitState(self.args[2]) if len(self.args) > 2 else _OPEN

    def __str__(self) -> str:
        if self.state is _HALF_OPEN:
            return (
                f"circuit {self.breaker_name!r} is half-open and all its trial calls are "
                "in flight: call rejected without running; try again shortly"
            )
        return (
            f"circuit {self.breaker_name!r} is open: call rejected without running; "
            f"next trial call in {self.remaining:.3f} s"
        )


@dataclass(frozen=True, slots=True)
class FailureRateWindow:
    """Open on a failure rate over a sliding window instead of consecutive failures.

    Resilience4j semantics: every finished call (success or counted failure;
    excluded exceptions are not recorded) enters the window; once the window
    holds at least ``minimum_calls`` calls, the circuit opens when the failure
    rate reaches ``failure_rate_threshold`` (or, with ``slow_call_duration=``
    on the breaker, when the slow-call rate reaches its threshold).

    Args:
        failure_rate_threshold: in ``(0, 1]``; ``0.5`` opens at 50 % failures.
        calls: a count-based window over the last *calls* calls (the default,
            100, when neither *calls* nor *seconds* is given).
        seconds: a time-based window over the last *seconds* seconds, made of
            *buckets* buckets read from the breaker's clock.
        minimum_calls: calls the window must hold before a rate is judged; for
            a count-based window at most *calls* is used.
        buckets: how many buckets a time-based window has; default one per
            second (at most 600).
    """

    failure_rate_threshold: float = 0.5
    calls: int | None = None
    seconds: float | None = None
    minimum_calls: int = 100
    buckets: int | None = None

    def __post_init__(self) -> None:
        _check_rate("failure_rate_threshold", self.failure_rate_threshold)
        _check_int("minimum_calls", self.minimum_calls)
        if self.calls is not None and self.seconds is not None:
            raise ValueError(
                "give calls= (a count-based window) or seconds= (a time-based window), "
                f"not both: got calls={self.calls!r}, seconds={self.seconds!r}"
            )
        if self.seconds is None:
            if self.buckets is not None:
                raise ValueError(
                    f"buckets only applies to a time-based window (seconds=), got {self.buckets!r}"
                )
            if self.calls is None:
                object.__setattr__(self, "calls", 100)
            _check_int("calls", self.calls)
            return
        _check_seconds("seconds", self.seconds, allow_zero=False)
        if self.buckets is None:
            object.__setattr__(self, "buckets", max(1, min(math.ceil(self.seconds), 600)))
        _check_int("buckets", self.buckets)

    @property
    def time_based(self) -> bool:
        """True for a window over the last *seconds*, False for the last *calls*."""
        return self.seconds is not None

    @property
    def required_calls(self) -> int:
        """How many calls the window must hold before a rate is judged."""
        if self.calls is not None:
            return min(self.minimum_calls, self.calls)
        return self.minimum_calls


class BreakerListener:
    """Hooks called on breaker events; subclass it and override what you need.

    Every hook runs in the thread (or task) of the call that caused the event,
    after the breaker released its lock. A hook that raises is logged on the
    ``resilient.breaker`` logger and never breaks the call. Any object with
    some of these methods is accepted as a listener.
    """

    def on_state_change(
        self, breaker: CircuitBreaker, old: CircuitState, new: CircuitState
    ) -> None:
        """The circuit went from *old* to *new*."""

    def on_failure(self, breaker: CircuitBreaker, exc: Exception) -> None:
        """A guarded call failed with *exc*, counted as a failure."""

    def on_success(self, breaker: CircuitBreaker) -> None:
        """A guarded call succeeded."""

    def on_rejected(self, breaker: CircuitBreaker, error: CircuitOpenError) -> None:
        """A call was rejected without running; *error* is about to be raised."""


_HOOKS = ("on_state_change", "on_failure", "on_success", "on_rejected")

_MESSAGES = {_OPEN: "circuit opened", _HALF_OPEN: "circuit half-open", _CLOSED: "circuit closed"}
_LEVELS = {_OPEN: logging.WARNING, _HALF_OPEN: logging.INFO, _CLOSED: logging.INFO}

_names = itertools.count(1)


class CircuitBreaker:
    """Guard calls to a dependency: stop calling it while it is down.

    Closed, ``failure_threshold`` consecutive failures open the circuit (or,
    with ``window=``, a failure rate over a sliding window). Open, every call
    is rejected at once with a fresh ``CircuitOpenError``, the function not
    called. After ``recovery_timeout`` seconds it is half-open: up to
    ``half_open_max_calls`` trial calls run at a time; one trial failure opens
    it again, ``success_threshold`` trial successes close it.

    Only ``Exception`` subclasses are ever caught. ``KeyboardInterrupt``,
    ``SystemExit``, ``GeneratorExit`` and ``asyncio.CancelledError`` pass
    through, never count, and give back a trial permit.

    Args:
        failure_threshold: consecutive failures that open the circuit.
        recovery_timeout: seconds the circuit stays open, or a
            ``resilient.Backoff``: each consecutive opening without a recovery
            waits longer, jittered, up to its ``max_delay``.
        expected_exception: the exception type (or tuple) that counts as a
            failure; other exceptions propagate and count as nothing.
        name: names the breaker in errors, logs and its store; a unique name
            is made up when ``None``. Breakers sharing a store and a name
            share one circuit.
        exclude: exception types that never count, even when expected.
        half_open_max_calls: trial calls admitted at a time when half-open.
        success_threshold: trial successes needed to close the circuit.
        window: a ``FailureRateWindow`` to open on a failure rate instead of
            consecutive failures.
        slow_call_duration: seconds after which a call counts as slow (needs
            ``window``); a slow trial call counts as a failed trial.
        slow_call_rate_threshold: in ``(0, 1]``; the slow-call rate over the
            window that opens the circuit.
        clock: where time comes from; the process default (see
            ``resilient.testing.use_clock``) when ``None``, read at each call.
        listeners: objects with ``on_state_change``, ``on_failure``,
            ``on_success`` and/or ``on_rejected`` (see ``BreakerListener``).
        store: where the state lives; a new ``MemoryStore`` when ``None``.
            Constructing a breaker never resets the state already stored.

    Example:
        >>> from resilient.breaker import CircuitBreaker
        >>> breaker = CircuitBreaker(failure_threshold=3, recovery_timeout=30.0)
        >>> @breaker
        ... def fetch(key):
        ...     return {"key": key}
        >>> fetch("a")
        {'key': 'a'}
    """

    __slots__ = (
        "_circuit",
        "_clock",
        "_exclude",
        "_expected",
        "_failed",
        "_fast",
        "_ignored",
        "_needs_now",
        "_on_failure",
        "_on_rejected",
        "_on_state_change",
        "_on_success",
        "_policy",
        "_rejected",
        "_slow",
        "_slow_limit",
        "_store",
        "_succeeded",
        "_tickets",
        "name",
    )

    def __init__(
        self,
        failure_threshold: int = 5,
        recovery_timeout: float | Backoff = 60.0,
        expected_exception: type[Exception] | tuple[type[Exception], ...] = Exception,
        *,
        name: str | None = None,
        exclude: type[Exception] | tuple[type[Exception], ...] = (),
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        window: FailureRateWindow | None = None,
        slow_call_duration: float | None = None,
        slow_call_rate_threshold: float = 1.0,
        clock: Clock | None = None,
        listeners: Iterable[object] = (),
        store: BreakerStore | None = None,
    ) -> None:
        _check_int("failure_threshold", failure_threshold)
        if not isinstance(recovery_timeout, Backoff):
            _check_seconds("recovery_timeout", recovery_timeout, backoff_ok=True)
        _check_int("half_open_max_calls", half_open_max_calls)
        _check_int("success_threshold", success_threshold)
        if window is not None and not isinstance(window, FailureRateWindow):
            raise TypeError(f"window must be a FailureRateWindow or None, got {window!r}")
        if slow_call_duration is not None:
            _check_seconds("slow_call_duration", slow_call_duration, allow_zero=False)
            if window is None:
                raise ValueError(
                    "slow_call_duration needs window=FailureRateWindow(...) to measure the "
                    f"slow-call rate over, got slow_call_duration={slow_call_duration!r} "
                    "and window=None"
                )
        _check_rate("slow_call_rate_threshold", slow_call_rate_threshold)
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"name must be a non-empty str or None, got {name!r}")
        check_clock(clock)
        self._expected = _exception_types("expected_exception", expected_exception, empty=False)
        self._exclude = _exception_types("exclude", exclude, empty=True)
        hooks = _listener_hooks(listeners)
        self._on_state_change, self._on_failure, self._on_success, self._on_rejected = hooks
        if store is None:
            store = MemoryStore()
        else:
            _check_store(store)

        self.name: str = name if name is not None else f"breaker-{next(_names)}"
        self._policy = BreakerPolicy(
            failure_threshold=failure_threshold,
            recovery_timeout=recovery_timeout,
            half_open_max_calls=half_open_max_calls,
            success_threshold=success_threshold,
            window=window,
            slow_call_rate_threshold=float(slow_call_rate_threshold),
            slow_calls=slow_call_duration is not None,
        )
        self._clock = clock
        self._store: BreakerStore = store
        self._slow_limit = None if slow_call_duration is None else float(slow_call_duration)
        # A success reads the clock only when it can matter: to time a slow
        # call, or for a window (its time buckets; and a success can open the
        # circuit when the window's rate stays above the threshold).
        self._needs_now = self._slow_limit is not None or window is not None
        # Counters of this process's calls: next() on an itertools.count is
        # atomic, so they need no lock and lose nothing under threads.
        self._succeeded = itertools.count()
        self._failed = itertools.count()
        self._ignored = itertools.count()
        self._slow = itertools.count()
        self._rejected = itertools.count()
        self._tickets: ContextVar[tuple[tuple[int | None, float], ...]] = ContextVar(
            f"resilient.breaker:{self.name}", default=()
        )
        # With the in-memory store the breaker reads the circuit's state
        # without a lock to admit closed calls; with the consecutive rule and
        # nothing to do per success, the whole closed path is lock-free.
        self._circuit = store.bind(self.name, self._policy) if type(store) is MemoryStore else None
        simple = window is None and not self._on_success
        self._fast = self._circuit if simple else None

    # -- the call forms -------------------------------------------------------

    def call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``func(*args, **kwargs)`` through the breaker.

        Returns:
            What *func* returns.

        Raises:
            CircuitOpenError: the circuit is open (or half-open with every
                trial permit taken); *func* was not called.
            Exception: whatever *func* raised, unchanged, also when it is the
                failure that opens the circuit.
        """
        circuit = self._fast
        if circuit is not None and circuit.state is _CLOSED:
            try:
                result = func(*args, **kwargs)
            except Exception as exc:
                self._closed_failure(exc)
                raise
            next(self._succeeded)
            if circuit.failures:
                self._clear_failures()
            return result
        circuit = self._circuit
        if circuit is not None and circuit.state is _OPEN:
            # The common rejection (open, timeout not passed) decided without a
            # lock, and raised here so the traceback starts at the call form.
            clock = DEFAULTS.clock if self._clock is None else self._clock
            remaining = circuit.open_until - (
                time.monotonic() if clock is SYSTEM_CLOCK else clock.monotonic()
            )
            if remaining > 0.0:
                raise self._rejected_error(remaining, _OPEN)
        return self._call(func, args, kwargs)

    async def call_async(
        self, func: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``func(*args, **kwargs)`` through the breaker; ``call``'s async twin.

        Cancelling the call while it runs as a trial gives its permit back.
        """
        circuit = self._fast
        if circuit is not None and circuit.state is _CLOSED:
            try:
                result = await func(*args, **kwargs)
            except Exception as exc:
                self._closed_failure(exc)
                raise
            next(self._succeeded)
            if circuit.failures:
                self._clear_failures()
            return result
        trial = self._admit()
        start = self._start()
        try:
            result = await func(*args, **kwargs)
        except Exception as exc:
            self._record_error(exc, trial, start)
            raise
        except BaseException:
            self._release(trial)
            raise
        self._record_success(trial, start)
        return result

    def __call__(self, func: Callable[P, T]) -> Callable[P, T]:
        """Decorate *func* (sync or ``async def``) so every call goes through the breaker.

        The wrapper keeps ``__name__``, ``__doc__``, ``__wrapped__`` and the
        signature. Generator functions are refused: the breaker would only see
        the generator being created, never its work.
        """
        if not callable(func):
            raise TypeError(f"a CircuitBreaker decorates a callable, got {func!r}")
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"cannot decorate generator function {_qualname(func)}: the breaker would "
                "only see the generator being created, not its work; use breaker.call() "
                "or 'with breaker:' around the code that consumes it"
            )
        if is_async_callable(func):
            return cast(Callable[P, T], self._decorate_async(cast(Any, func)))

        breaker = self
        circuit = self._fast
        succeeded = self._succeeded

        @functools.wraps(func)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            # The closed happy path of `call`, inlined: it runs on every call.
            if circuit is not None and circuit.state is _CLOSED:
                try:
                    result = func(*args, **kwargs)
                except Exception as exc:
                    breaker._closed_failure(exc)
                    raise
                next(succeeded)
                if circuit.failures:
                    breaker._clear_failures()
                return result
            # The common rejection of `call`, inlined too.
            circuit_ = breaker._circuit
            if circuit_ is not None and circuit_.state is _OPEN:
                clock = DEFAULTS.clock if breaker._clock is None else breaker._clock
                remaining = circuit_.open_until - (
                    time.monotonic() if clock is SYSTEM_CLOCK else clock.monotonic()
                )
                if remaining > 0.0:
                    raise breaker._rejected_error(remaining, _OPEN)
            return breaker._call(func, args, kwargs)

        return guarded

    def _decorate_async(self, func: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        @functools.wraps(func)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            return await self.call_async(func, *args, **kwargs)

        return guarded

    def __enter__(self) -> CircuitBreaker:
        """Admit the body of a ``with`` block as one call, or raise ``CircuitOpenError``."""
        trial = self._admit()
        self._tickets.set((*self._tickets.get(), (trial, self._start())))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Record how the block ended; never suppresses its exception."""
        tickets = self._tickets.get()
        if not tickets:
            raise RuntimeError(f"{self!r}: __exit__ without a matching __enter__")
        trial, start = tickets[-1]
        self._tickets.set(tickets[:-1])
        if exc_type is None:
            self._record_success(trial, start)
        elif isinstance(exc, Exception):
            self._record_error(exc, trial, start)
        else:  # KeyboardInterrupt, CancelledError...: no outcome, the permit goes back
            self._release(trial)

    async def __aenter__(self) -> CircuitBreaker:
        """``async with`` twin of ``__enter__``."""
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """``async with`` twin of ``__exit__``."""
        self.__exit__(exc_type, exc, tb)

    # -- state ----------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state; ``HALF_OPEN`` as soon as the recovery timeout has passed."""
        return self._read().state

    @property
    def is_open(self) -> bool:
        """True while calls are rejected without a trial (the state is ``OPEN``)."""
        return self._read().state is _OPEN

    @property
    def failures(self) -> int:
        """Failures counted toward opening: consecutive ones, or those in the window."""
        return self._read().failures

    @property
    def metrics(self) -> BreakerMetrics:
        """A read-only snapshot of this breaker's counters and state.

        The counters are this process's, since the breaker was built; under
        concurrent calls they are read one after another, not atomically.
        """
        stored = self._read()
        successes = _peek(self._succeeded)
        failures = _peek(self._failed)
        ignored = _peek(self._ignored)
        slow = _peek(self._slow)
        if self._policy.window is not None:
            rate_calls, rate_failures, rate_slow = (
                stored.window_calls,
                stored.window_failures,
                stored.window_slow,
            )
        else:
            rate_calls, rate_failures, rate_slow = successes + failures, failures, slow
        return BreakerMetrics(
            name=self.name,
            state=stored.state,
            calls=successes + failures + ignored,
            successes=successes,
            failures=failures,
            ignored=ignored,
            slow_calls=slow,
            rejected=_peek(self._rejected),
            failure_rate=rate_failures / rate_calls if rate_calls else 0.0,
            slow_call_rate=rate_slow / rate_calls if rate_calls else 0.0,
            remaining=stored.remaining,
        )

    def reset(self) -> None:
        """Close the circuit by hand and forget the counted failures."""
        self._force(_CLOSED)

    def trip(self) -> None:
        """Open the circuit by hand; the recovery timeout starts now."""
        self._force(_OPEN)

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self.name!r}, state={self.state.value!r})"

    # -- everything off the closed happy path ---------------------------------

    def _call(self, func: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        trial = self._admit()
        start = self._start()
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            self._record_error(exc, trial, start)
            raise
        except BaseException:
            self._release(trial)
            raise
        self._record_success(trial, start)
        return result

    def _admit(self) -> int | None:
        """Return ``None`` for a closed call, the trial ticket for a trial; or reject."""
        circuit = self._circuit
        if circuit is not None:
            state = circuit.state
            if state is _CLOSED:
                return None
            if state is _OPEN:
                remaining = circuit.open_until - resolve_clock(self._clock).monotonic()
                if remaining > 0.0:
                    raise self._rejected_error(remaining, _OPEN)
        now = resolve_clock(self._clock).monotonic()
        admission = self._store.acquire(self.name, self._policy, now)
        if admission.transition is not None:
            self._changed(admission.transition)
        if admission.admitted:
            return admission.trial
        raise self._rejected_error(admission.remaining, admission.state)

    def _rejected_error(self, remaining: float, state: CircuitState) -> CircuitOpenError:
        """Count a rejection, tell the listeners, and return the error to raise."""
        next(self._rejected)
        error = CircuitOpenError(self.name, remaining, state)
        if self._on_rejected:
            self._emit(self._on_rejected, error)
        return error

    def _start(self) -> float:
        return resolve_clock(self._clock).monotonic() if self._slow_limit is not None else 0.0

    def _counts(self, exc: BaseException) -> bool:
        return isinstance(exc, self._expected) and not isinstance(exc, self._exclude)

    def _closed_failure(self, exc: Exception) -> None:
        """A call admitted on the lock-free closed path raised *exc*."""
        self._record_error(exc, None, 0.0)

    def _clear_failures(self) -> None:
        """A success on the lock-free closed path, after counted failures."""
        self._store.record_success(self.name, self._policy, None, 0.0, False)

    def _record_success(self, trial: int | None, start: float) -> None:
        slow = False
        now = 0.0
        if self._needs_now:
            now = resolve_clock(self._clock).monotonic()
            slow = self._slow_limit is not None and now - start > self._slow_limit
            if slow:
                next(self._slow)
        next(self._succeeded)
        transition = self._store.record_success(self.name, self._policy, trial, now, slow)
        if self._on_success:
            self._emit(self._on_success)
        if transition is not None:
            self._changed(transition)

    def _record_error(self, exc: Exception, trial: int | None, start: float) -> None:
        if not self._counts(exc):
            next(self._ignored)
            if trial is not None:
                self._store.release(self.name, self._policy, trial)
            return
        now = resolve_clock(self._clock).monotonic()
        slow = self._slow_limit is not None and now - start > self._slow_limit
        if slow:
            next(self._slow)
        next(self._failed)
        transition = self._store.record_failure(self.name, self._policy, trial, now, slow)
        if self._on_failure:
            self._emit(self._on_failure, exc)
        if transition is not None:
            self._changed(transition)

    def _release(self, trial: int | None) -> None:
        if trial is not None:
            self._store.release(self.name, self._policy, trial)

    def _force(self, state: CircuitState) -> None:
        now = resolve_clock(self._clock).monotonic()
        transition = self._store.force(self.name, self._policy, state, now)
        if transition is not None:
            self._changed(transition)

    def _read(self) -> StoredState:
        stored = self._store.snapshot(
            self.name, self._policy, resolve_clock(self._clock).monotonic()
        )
        if stored.state is _OPEN and stored.remaining <= 0.0:
            return stored._replace(state=_HALF_OPEN, remaining=0.0)
        return stored._replace(remaining=max(stored.remaining, 0.0))

    def _changed(self, transition: Transition) -> None:
        """Log a state change and tell the listeners; never under a lock."""
        old, new = transition.old, transition.new
        extra: dict[str, object] = {
            "breaker": self.name,
            "old_state": old.value,
            "new_state": new.value,
            "failures": transition.failures,
        }
        if new is _OPEN:
            extra["open_for"] = transition.open_for
        logger.log(_LEVELS[new], _MESSAGES[new], extra=extra)
        if self._on_state_change:
            self._emit(self._on_state_change, old, new)

    def _emit(self, hooks: tuple[Callable[..., object], ...], *args: object) -> None:
        for hook in hooks:
            try:
                hook(self, *args)
            except Exception:
                logger.exception(
                    "breaker listener failed",
                    extra={"breaker": self.name, "hook": _qualname(hook)},
                )


@dataclass(frozen=True, slots=True)
class BreakerMetrics:
    """A read-only snapshot of a breaker, from ``CircuitBreaker.metrics``.

    ``calls`` is ``successes + failures + ignored``: the guarded calls that
    ran to an end in this process. ``failure_rate`` and ``slow_call_rate``
    are over the window when the breaker has one, else over these counters
    (``ignored`` calls are in neither).
    """

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
    """Seconds until a trial call is admitted; ``0.0`` unless open."""


# -- the store: where the state lives ---------------------------------------


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """The rules a store applies to one breaker's state; built by the breaker.

    A store receives it with every operation, so a shared store needs no
    configuration of its own.
    """

    failure_threshold: int
    recovery_timeout: float | Backoff
    half_open_max_calls: int
    success_threshold: int
    window: FailureRateWindow | None
    slow_call_rate_threshold: float
    slow_calls: bool

    def open_duration(self, openings: int, previous: float | None) -> float:
        """Seconds to stay open after *openings* earlier openings without a recovery.

        *previous* is the duration of the last of them (``None`` for the first).
        """
        timeout = self.recovery_timeout
        if isinstance(timeout, Backoff):
            return timeout.delay(openings, previous)
        return float(timeout)

    def rate_exceeded(self, calls: int, failures: int, slow: int) -> bool:
        """Whether window totals open the circuit (never below the minimum calls)."""
        window = self.window
        if window is None or calls < window.required_calls:
            return False
        if failures / calls >= window.failure_rate_threshold:
            return True
        return self.slow_calls and slow / calls >= self.slow_call_rate_threshold


class Transition(NamedTuple):
    """A state change a store operation made."""

    old: CircuitState
    new: CircuitState
    failures: int
    """Failures counted toward opening at the time of the change."""
    open_for: float = 0.0
    """When *new* is ``OPEN``: seconds until a trial is admitted."""


class Admission(NamedTuple):
    """The answer of ``BreakerStore.acquire``."""

    admitted: bool
    trial: int | None
    """``None`` for a closed call, else a ticket to hand back with the outcome."""
    state: CircuitState
    remaining: float
    """When rejected: seconds until a trial is admitted."""
    transition: Transition | None = None
    """The change this admission made (``OPEN`` to ``HALF_OPEN``), if any."""


class StoredState(NamedTuple):
    """What ``BreakerStore.snapshot`` reads."""

    state: CircuitState
    """As stored: ``OPEN`` may have passed its recovery timeout."""
    failures: int
    remaining: float
    """``open_until - now`` when open (may be <= 0), else 0.0."""
    window_calls: int = 0
    window_failures: int = 0
    window_slow: int = 0
    openings: int = 0
    """Consecutive openings without a recovery."""


class BreakerStore(Protocol):
    """Where the state of breakers lives, keyed by breaker name.

    Each method is one atomic transition of one circuit, so a store shared by
    processes can implement each as a single script. *now* is the breaker's
    clock reading (``0.0`` on ``record_success`` when the policy has no
    window: a success can then only close the circuit, so the breaker does not
    read its clock for it). A *trial* ticket
    comes from ``acquire``; outcomes of a trial whose half-open period has
    ended are ignored. Creating a breaker never resets what is stored.
    """

    def acquire(self, name: str, policy: BreakerPolicy, now: float) -> Admission:
        """Admit a call or not; move ``OPEN`` to ``HALF_OPEN`` when its time has come."""
        ...

    def record_success(
        self, name: str, policy: BreakerPolicy, trial: int | None, now: float, slow: bool
    ) -> Transition | None:
        """Record a success; return the change it made, if any."""
        ...

    def record_failure(
        self, name: str, policy: BreakerPolicy, trial: int | None, now: float, slow: bool
    ) -> Transition | None:
        """Record a counted failure; return the change it made, if any."""
        ...

    def release(self, name: str, policy: BreakerPolicy, trial: int) -> None:
        """Give a trial permit back without an outcome (cancelled or excluded)."""
        ...

    def force(
        self, name: str, policy: BreakerPolicy, state: CircuitState, now: float
    ) -> Transition | None:
        """Put the circuit in *state* (reset, trip, or half-open for tests)."""
        ...

    def snapshot(self, name: str, policy: BreakerPolicy, now: float) -> StoredState:
        """Read the circuit's state and counts."""
        ...


class MemoryStore:
    """Breaker state in this process's memory: the default store.

    Share one instance between breakers (with distinct names) or rebuild a
    breaker with the same store and name: the state carries over.
    """

    __slots__ = ("_circuits", "_lock")

    def __init__(self) -> None:
        self._circuits: dict[str, _Circuit] = {}
        self._lock = threading.Lock()

    def bind(self, name: str, policy: BreakerPolicy) -> _Circuit:
        """Return the circuit of *name*, created closed the first time; never reset."""
        circuit = self._circuits.get(name)
        if circuit is None:
            with self._lock:
                circuit = self._circuits.setdefault(name, _Circuit(policy.window))
        circuit.conform(policy.window)
        return circuit

    def acquire(self, name: str, policy: BreakerPolicy, now: float) -> Admission:
        """Admit a call or not; see ``BreakerStore``."""
        circuit = self.bind(name, policy)
        with circuit.lock:
            state = circuit.state
            if state is _CLOSED:
                return _ADMIT_CLOSED
            transition = None
            if state is _OPEN:
                if now < circuit.open_until:
                    return Admission(False, None, _OPEN, circuit.open_until - now)
                transition = circuit.half_open()
            if circuit.in_flight < policy.half_open_max_calls:
                circuit.in_flight += 1
                return Admission(True, circuit.epoch, _HALF_OPEN, 0.0, transition)
            return Admission(False, None, _HALF_OPEN, 0.0, transition)

    def record_success(
        self, name: str, policy: BreakerPolicy, trial: int | None, now: float, slow: bool
    ) -> Transition | None:
        """Record a success; see ``BreakerStore``."""
        circuit = self.bind(name, policy)
        with circuit.lock:
            if trial is None:
                if circuit.state is not _CLOSED:
                    return None
                window = circuit.window
                if window is None:
                    circuit.failures = 0
                    return None
                window.record(False, slow, now)
                if policy.rate_exceeded(window.calls, window.failures, window.slow):
                    return circuit.open(policy, now)
                return None
            if circuit.state is not _HALF_OPEN or circuit.epoch != trial:
                return None
            circuit.in_flight -= 1
            if slow:  # a trial that answers too slowly shows the dependency is still down
                return circuit.open(policy, now)
            circuit.trial_successes += 1
            if circuit.trial_successes >= policy.success_threshold:
                return circuit.close()
            return None

    def record_failure(
        self, name: str, policy: BreakerPolicy, trial: int | None, now: float, slow: bool
    ) -> Transition | None:
        """Record a counted failure; see ``BreakerStore``."""
        circuit = self.bind(name, policy)
        with circuit.lock:
            if trial is None:
                if circuit.state is not _CLOSED:
                    return None
                window = circuit.window
                if window is None:
                    circuit.failures += 1
                    if circuit.failures >= policy.failure_threshold:
                        return circuit.open(policy, now)
                    return None
                window.record(True, slow, now)
                if policy.rate_exceeded(window.calls, window.failures, window.slow):
                    return circuit.open(policy, now)
                return None
            if circuit.state is not _HALF_OPEN or circuit.epoch != trial:
                return None
            if circuit.window is None:
                circuit.failures += 1
            return circuit.open(policy, now)

    def release(self, name: str, policy: BreakerPolicy, trial: int) -> None:
        """Give a trial permit back; see ``BreakerStore``."""
        circuit = self.bind(name, policy)
        with circuit.lock:
            if circuit.state is _HALF_OPEN and circuit.epoch == trial:
                circuit.in_flight -= 1

    def force(
        self, name: str, policy: BreakerPolicy, state: CircuitState, now: float
    ) -> Transition | None:
        """Put the circuit in *state*; see ``BreakerStore``."""
        circuit = self.bind(name, policy)
        with circuit.lock:
            if state is _CLOSED:
                transition = circuit.close()
            elif state is _OPEN:
                transition = circuit.open(policy, now)
            else:
                transition = circuit.half_open()
        return transition if transition.old is not transition.new else None

    def snapshot(self, name: str, policy: BreakerPolicy, now: float) -> StoredState:
        """Read the circuit; see ``BreakerStore``."""
        circuit = self.bind(name, policy)
        with circuit.lock:
            window = circuit.window
            remaining = circuit.open_until - now if circuit.state is _OPEN else 0.0
            if window is None:
                return StoredState(
                    circuit.state, circuit.failures, remaining, openings=circuit.openings
                )
            window.advance(now)
            return StoredState(
                circuit.state,
                window.failures,
                remaining,
                window.calls,
                window.failures,
                window.slow,
                circuit.openings,
            )

    def __repr__(self) -> str:
        return f"MemoryStore(circuits={len(self._circuits)})"


_ADMIT_CLOSED = Admission(True, None, _CLOSED, 0.0)


class _Circuit:
    """Strictly private. One circuit's state in a ``MemoryStore``.

    Every change happens under ``lock``; the breaker reads ``state``,
    ``failures`` and ``open_until`` without it (a stale read only admits or
    rejects a call that raced with a transition, which it could anyway).
    """

    __slots__ = (
        "epoch",
        "failures",
        "in_flight",
        "last_open_for",
        "lock",
        "open_until",
        "openings",
        "state",
        "trial_successes",
        "window",
        "window_config",
    )

    def __init__(self, window: FailureRateWindow | None) -> None:
        self.lock = threading.Lock()
        self.state = _CLOSED
        self.failures = 0
        self.epoch = 0
        self.in_flight = 0
        self.trial_successes = 0
        self.open_until = 0.0
        self.openings = 0
        self.last_open_for: float | None = None
        self.window_config = window
        self.window = _new_window(window)

    def conform(self, window: FailureRateWindow | None) -> None:
        """Follow the window of the latest breaker bound to this circuit."""
        if window is not self.window_config and window != self.window_config:
            with self.lock:
                self.window_config = window
                self.window = _new_window(window)

    def open(self, policy: BreakerPolicy, now: float) -> Transition:
        duration = policy.open_duration(self.openings, self.last_open_for)
        old = self.state
        self.openings += 1
        self.last_open_for = duration
        self.open_until = now + duration
        self._enter(_OPEN)
        return Transition(old, _OPEN, self._failures(), duration)

    def half_open(self) -> Transition:
        old = self.state
        self._enter(_HALF_OPEN)
        return Transition(old, _HALF_OPEN, self._failures())

    def close(self) -> Transition:
        old = self.state
        failures = self._failures()
        self.failures = 0
        self.openings = 0
        self.last_open_for = None
        if self.window is not None:
            self.window.clear()
        self._enter(_CLOSED)
        return Transition(old, _CLOSED, failures)

    def _enter(self, state: CircuitState) -> None:
        self.epoch += 1  # outcomes of earlier trials no longer count
        self.in_flight = 0
        self.trial_successes = 0
        self.state = state

    def _failures(self) -> int:
        return self.failures if self.window is None else self.window.failures


# -- sliding windows ----------------------------------------------------------


class _CountWindow:
    """Strictly private. The outcomes of the last *size* calls, in a ring."""

    __slots__ = ("_pos", "_ring", "calls", "failures", "slow")

    def __init__(self, size: int) -> None:
        self._ring = bytearray(size)  # per call: bit 0 failed, bit 1 slow
        self._pos = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def record(self, failed: bool, slow: bool, now: float) -> None:
        ring = self._ring
        if self.calls == len(ring):
            evicted = ring[self._pos]
            self.failures -= evicted & 1
            self.slow -= evicted >> 1
        else:
            self.calls += 1
        ring[self._pos] = failed | (slow << 1)
        self._pos = (self._pos + 1) % len(ring)
        self.failures += failed
        self.slow += slow

    def advance(self, now: float) -> None:
        """Nothing ages out of a count-based window."""

    def clear(self) -> None:
        self._ring = bytearray(len(self._ring))
        self._pos = self.calls = self.failures = self.slow = 0


class _TimeWindow:
    """Strictly private. Calls of the last *seconds*, in *buckets* time buckets.

    Bucket *k* covers ``[k * width, (k + 1) * width)`` of the clock; the
    window holds the current bucket and the ``buckets - 1`` before it.
    """

    __slots__ = ("_calls", "_fails", "_last", "_slows", "_width", "calls", "failures", "slow")

    def __init__(self, seconds: float, buckets: int) -> None:
        self._width = seconds / buckets
        self._calls = [0] * buckets
        self._fails = [0] * buckets
        self._slows = [0] * buckets
        self._last: int | None = None
        self.calls = self.failures = self.slow = 0

    def advance(self, now: float) -> int:
        """Drop the buckets that aged out by *now*; return the current bucket."""
        current = math.floor(now / self._width)
        last = self._last
        if last is None or current - last >= len(self._calls):
            self.clear()
        elif current > last:
            for k in range(last + 1, current + 1):
                i = k % len(self._calls)
                self.calls -= self._calls[i]
                self.failures -= self._fails[i]
                self.slow -= self._slows[i]
                self._calls[i] = self._fails[i] = self._slows[i] = 0
        else:  # a clock swapped for one that is behind: stay in the newest bucket
            return last
        self._last = current
        return current

    def record(self, failed: bool, slow: bool, now: float) -> None:
        i = self.advance(now) % len(self._calls)
        self._calls[i] += 1
        self._fails[i] += failed
        self._slows[i] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def clear(self) -> None:
        n = len(self._calls)
        self._calls, self._fails, self._slows = [0] * n, [0] * n, [0] * n
        self.calls = self.failures = self.slow = 0
        self._last = None


def _new_window(config: FailureRateWindow | None) -> _CountWindow | _TimeWindow | None:
    if config is None:
        return None
    if config.seconds is not None:
        assert config.buckets is not None  # set by FailureRateWindow
        return _TimeWindow(config.seconds, config.buckets)
    assert config.calls is not None
    return _CountWindow(config.calls)


# -- helpers --------------------------------------------------------------------


def _peek(counter: itertools.count[int]) -> int:
    """The value *counter* would give next, without taking it (its repr is 'count(7)')."""
    return int(repr(counter)[6:-1])


def _qualname(obj: object) -> str:
    return getattr(obj, "__qualname__", None) or repr(obj)


def _check_int(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _check_seconds(
    name: str, value: object, *, allow_zero: bool = True, backoff_ok: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a number of seconds or a Backoff" if backoff_ok else "a number of seconds"
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def _check_rate(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in (0, 1], got {value!r}")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")


def _exception_types(name: str, value: object, *, empty: bool) -> tuple[type[Exception], ...]:
    types = value if isinstance(value, tuple) else (value,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise TypeError(f"{name} must be an exception type or a tuple of them, got {value!r}")
        if not issubclass(t, Exception):
            raise TypeError(
                f"{name} must be Exception subclasses, got {value!r}: "
                f"{t.__name__} is never caught by a breaker"
            )
    if not types and not empty:
        raise ValueError(f"{name} must name at least one exception type, got {value!r}")
    return cast(tuple[type[Exception], ...], types)


def _listener_hooks(
    listeners: object,
) -> tuple[tuple[Callable[..., object], ...], ...]:
    if isinstance(listeners, (str, bytes)) or not isinstance(listeners, Iterable):
        raise TypeError(f"listeners must be an iterable of listener objects, got {listeners!r}")
    found: dict[str, list[Callable[..., object]]] = {hook: [] for hook in _HOOKS}
    for listener in listeners:
        has_any = False
        for hook in _HOOKS:
            method = getattr(listener, hook, None)
            if method is None:
                continue
            if not callable(method):
                raise TypeError(f"listener {listener!r}: {hook} must be callable, got {method!r}")
            has_any = True
            # The inherited no-op defaults are skipped, so they cost nothing per call;
            # a hook set on the instance or overridden in a subclass is kept.
            if getattr(method, "__func__", None) is not getattr(BreakerListener, hook):
                found[hook].append(method)
        if not has_any:
            raise TypeError(
                "each listener must have at least one of " + ", ".join(_HOOKS) + " "
                f"(see BreakerListener), got {listener!r}"
            )
    return tuple(tuple(found[hook]) for hook in _HOOKS)


def _check_store(store: object) -> None:
    operations = ("acquire", "record_success", "record_failure", "release", "force", "snapshot")
    missing = [op for op in operations if not callable(getattr(store, op, None))]
    if missing:
        raise TypeError(
            f"store must implement BreakerStore, got {store!r} (missing {', '.join(missing)})"
        )
