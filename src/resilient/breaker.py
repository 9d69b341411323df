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
no lock while the protected function runs. On the closed happy path of the
in-memory store it takes none at all with the consecutive rule, with a
count-based window that holds only successes, or with a time-based window
that holds no failure (an atomic counter of its current bucket counts the
success); with a window holding failures, one short critical section per
success counts it.
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from contextvars import ContextVar
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from resilient import _events
from resilient._breaker_state import (
    AsyncBreakerStore,
    BreakerPolicy,
    BreakerStore,
    CircuitState,
    FailureRateWindow,
    MemoryStore,
    StoredState,
    Transition,
    check_int,
    check_rate,
    check_seconds,
    check_store,
    is_async_store,
)
from resilient._classify import ErrorClass, Rejection, Throttled, classify
from resilient._clock import DEFAULTS, SYSTEM_CLOCK, check_clock, resolve_clock
from resilient._compat import (
    LAZY_RESULTS,
    NamedTuple,
    Record,
    check_callable,
    is_async_callable,
    name_of,
    refuse_lazy_result,
    seconds,
    trial_calls,
)
from resilient._redact import describe_error, error_fields, log_with_traceback, unwrap_adapter
from resilient.backoff import Backoff

if TYPE_CHECKING:
    from resilient._breaker_order import Sequencer
    from resilient._clock import Clock

    # An async store's record_success_async or record_failure_async.
    AsyncRecord = Callable[
        [str, BreakerPolicy, int | None, float, bool], Awaitable[Transition | None]
    ]

__all__ = [
    "BreakerListener",
    "BreakerMetrics",
    "BreakerStore",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "FailureRateWindow",
    "MemoryStore",
]

P = ParamSpec("P")
T = TypeVar("T")

_logger = logging.getLogger("resilient.breaker")
_set = object.__setattr__  # how a record's __init__ sets its fields

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN


class CircuitOpenError(RuntimeError, Rejection):
    """A call was rejected without running because the circuit is open.

    ``classify`` calls it ``TIMEOUT`` (the dependency is unavailable), and
    ``@retry`` and the tasks stop at once on it rather than wait out a backoff.

    Attributes:
        breaker_name: the ``name`` of the breaker that rejected the call.
        remaining: seconds until the breaker admits a trial call (``0.0`` when
            it is half-open and every trial permit is taken).
        state: the state that rejected the call (``OPEN`` or ``HALF_OPEN``).
        reason: why, when the circuit's state is not the cause (``None``
            otherwise): a shared store that is unreachable, with
            ``on_store_error="open"``.

    A fresh instance is raised for every rejected call; it pickles.
    """

    # The arguments live in ``args`` and there is no Python ``__init__``:
    # building one costs what building a RuntimeError costs (the rejection
    # path is measured), and the default pickling just works. The arguments
    # are positional, as for any exception.
    if TYPE_CHECKING:

        def __init__(
            self,
            breaker_name: str,
            remaining: float,
            state: CircuitState = _OPEN,
            reason: str | None = None,
            /,
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

    @property
    def reason(self) -> str | None:
        """Why the call was rejected when the circuit's state is not the cause, else ``None``."""
        return cast("str | None", self.args[3]) if len(self.args) > 3 else None

    def __str__(self) -> str:
        if len(self.args) > 3 and self.args[3]:
            return (
                f"circuit {self.breaker_name!r} rejected the call without running it: "
                f"{self.args[3]}"
            )
        if self.state is _HALF_OPEN:
            return (
                f"circuit {self.breaker_name!r} is half-open and has let through every trial "
                "call it allows until they decide: call rejected without running; try again "
                "shortly"
            )
        return (
            f"circuit {self.breaker_name!r} is open: call rejected without running; "
            f"next trial call in {self.remaining:.3f} s"
        )


class BreakerListener:
    """Hooks called on breaker events; subclass it and override what you need.

    ``on_failure``, ``on_success`` and ``on_rejected`` run in the thread (or
    task) of the call they are about, after the breaker released its lock.
    ``on_state_change`` calls reach every listener in the order the changes
    happened, also under threads: a change is queued in the same step that
    makes it, and one thread at a time delivers the queue (so it may be the
    thread of a call made at the same moment). A hook that raises is logged
    once on the ``resilient.breaker`` logger and never breaks the call or the
    breaker; a slow hook delays only the thread running it. Any object with
    some of these methods is accepted as a listener.

    With a store shared by processes (``resilient.redis.RedisStore``) the
    listeners hear the changes this process made, not those of other
    processes.
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

    def on_store_mode_change(self, breaker: CircuitBreaker, old_mode: str, new_mode: str) -> None:
        """The store keeps this breaker's state elsewhere now (``metrics.store_mode``).

        With ``resilient.redis.RedisStore``: ``"redis"`` to a fallback
        (``"local"``, ``"open"`` or ``"closed"``) when Redis fails this
        breaker, and back when Redis answers again. Delivered in order with
        ``on_state_change``.
        """


_HOOKS = ("on_state_change", "on_failure", "on_success", "on_rejected", "on_store_mode_change")

DEFAULT_COUNTED: frozenset[ErrorClass] = frozenset(
    {ErrorClass.TRANSIENT, ErrorClass.DEGRADED, ErrorClass.TIMEOUT, ErrorClass.UNKNOWN}
)
"""The classes of failure a breaker counts unless ``counted_classes=`` says otherwise."""

_names = itertools.count(1)

# The ``with`` blocks open in this context, innermost last: (breaker, trial ticket, start).
# One variable for every breaker: a variable per breaker would stay in the
# context of every thread and task that used it, long after the breaker is gone.
_BLOCKS: ContextVar[tuple[tuple[CircuitBreaker, int | None, float], ...]] = ContextVar(
    "resilient.breaker.blocks", default=()
)


class CircuitBreaker:
    """Guard calls to a dependency: stop calling it while it is down.

    Closed, ``failure_threshold`` consecutive failures open the circuit (or,
    with ``window=``, a failure rate over a sliding window). Open, every call
    is rejected at once with a fresh ``CircuitOpenError``, the function not
    called. After ``recovery_timeout`` seconds it is half-open: exactly
    ``half_open_max_calls`` trial calls are admitted in that half-open period
    (the rest are rejected); one trial failure opens it again,
    ``success_threshold`` trial successes close it.

    A failure counts only when it matches ``expected_exception``, is not in
    ``exclude`` and its ``ErrorClass`` is in ``counted_classes``: a 404 or a
    ``ValueError`` from the caller's bad input says nothing about the health
    of the dependency, so a FATAL failure is re-raised and recorded as
    *ignored*: neither a failure nor a success.

    Only ``Exception`` subclasses are ever caught. ``KeyboardInterrupt``,
    ``SystemExit``, ``GeneratorExit`` and ``asyncio.CancelledError`` pass
    through, never count, and give back a trial permit.

    Args:
        failure_threshold: consecutive failures that open the circuit.
        recovery_timeout: seconds (or a ``timedelta``) the circuit stays open, or a
            ``resilient.Backoff``: each consecutive opening without a recovery
            waits longer, jittered, up to its ``max_delay``.
        expected_exception: the exception type (or tuple) that counts as a
            failure; other exceptions propagate and count as nothing.
        name: names the breaker in errors, logs and its store; a unique name
            is made up when ``None`` (not allowed with ``store=``). Breakers
            sharing a store and a name share one circuit.
        exclude: exception types that never count, even when expected.
        half_open_max_calls: trial calls admitted per half-open period.
        success_threshold: trial successes needed to close the circuit
            (at most ``half_open_max_calls``).
        window: a ``FailureRateWindow`` to open on a failure rate instead of
            consecutive failures.
        slow_call_duration: seconds after which a call counts as slow (needs
            ``window``); a slow trial call counts as a failed trial.
        slow_call_rate_threshold: in ``(0, 1]``; the slow-call rate over the
            window that opens the circuit.
        clock: where time comes from; the process default (see
            ``resilient.testing.use_clock``) when ``None``, read at each call.
        listeners: objects with ``on_state_change``, ``on_failure``,
            ``on_success``, ``on_rejected`` and/or ``on_store_mode_change``
            (see ``BreakerListener``).
        store: where the state lives; a new ``MemoryStore`` when ``None``.
            Constructing a breaker never resets the state already stored.
        classifier: ``(exc) -> ErrorClass``; default ``resilient.classify``.
        counted_classes: the classes of failure that count toward opening.
        logger: where this breaker's lines go instead of the
            ``resilient.breaker`` logger; same messages and fields. A
            ``logging.LoggerAdapter`` is accepted too: its ``extra`` fields are
            added to the breaker's (which win a clash), and its ``process``
            may rewrite the message, as with ``@retry(logger=...)``.

    The settings read back as read-only properties (``name``,
    ``failure_threshold``, ``recovery_timeout``, ``half_open_max_calls``,
    ``success_threshold``, ``window``): to change them, build a new breaker
    with the same ``name`` and ``store``; it shares the state already stored.

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
        "__weakref__",
        "_aio",
        "_circuit",
        "_claim",
        "_classifier",
        "_clock",
        "_counted",
        "_delivering",
        "_exclude",
        "_expected",
        "_failed",
        "_failed_hooks",
        "_fast",
        "_ignored",
        "_logger",
        "_name",
        "_needs_now",
        "_no_sync",
        "_on_failure",
        "_on_rejected",
        "_on_state_change",
        "_on_store_mode_change",
        "_on_success",
        "_order",
        "_pending",
        "_policy",
        "_rejected",
        "_sequencer",
        "_slow",
        "_slow_limit",
        "_store",
        "_succeeded",
        "_timed",
        "_windowed",
    )

    def __init__(
        self,
        failure_threshold: int = 5,
        recovery_timeout: float | timedelta | Backoff = 60.0,
        expected_exception: type[Exception] | tuple[type[Exception], ...] = Exception,
        *,
        name: str | None = None,
        exclude: type[Exception] | tuple[type[Exception], ...] = (),
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        window: FailureRateWindow | None = None,
        slow_call_duration: float | timedelta | None = None,
        slow_call_rate_threshold: float = 1.0,
        clock: Clock | None = None,
        listeners: Iterable[object] = (),
        store: BreakerStore | AsyncBreakerStore | None = None,
        classifier: Callable[..., ErrorClass] = classify,
        counted_classes: Collection[ErrorClass] = DEFAULT_COUNTED,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        _check_not_misused(failure_threshold)
        check_int("failure_threshold", failure_threshold)
        if not isinstance(recovery_timeout, Backoff):
            recovery_timeout = check_seconds("recovery_timeout", recovery_timeout, backoff_ok=True)
        check_int("half_open_max_calls", half_open_max_calls)
        check_int("success_threshold", success_threshold)
        if success_threshold > half_open_max_calls:
            raise ValueError(
                f"success_threshold must be <= half_open_max_calls ({half_open_max_calls!r}): "
                "a half-open period admits only that many trial calls, "
                f"got success_threshold={success_threshold!r}"
            )
        if window is not None and not isinstance(window, FailureRateWindow):
            raise TypeError(f"window must be a FailureRateWindow or None, got {window!r}")
        if slow_call_duration is not None:
            slow_call_duration = check_seconds(
                "slow_call_duration", slow_call_duration, allow_zero=False
            )
            if window is None:
                raise ValueError(
                    "slow_call_duration needs window=FailureRateWindow(...) to measure the "
                    f"slow-call rate over, got slow_call_duration={slow_call_duration!r} "
                    "and window=None"
                )
        check_rate("slow_call_rate_threshold", slow_call_rate_threshold)
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"name must be a non-empty str or None, got {name!r}")
        if store is not None:
            check_store(store)
        if store is not None and name is None:
            raise ValueError(
                f"name is required with store={type(store).__name__}(...): breakers that "
                "share a store share a circuit by name, and a made-up name (breaker-1, "
                "breaker-2, ...) depends on the order each process builds its breakers; give "
                "name='users-api' or the like"
            )
        check_clock(clock)
        if not callable(classifier):
            raise TypeError(f"classifier must be callable, got {classifier!r}")
        if logger is not None and not isinstance(logger, (logging.Logger, logging.LoggerAdapter)):
            by_name = (
                f": write logger=logging.getLogger({logger!r})" if isinstance(logger, str) else ""
            )
            raise TypeError(
                f"logger must be a logging.Logger (or LoggerAdapter) or None, got {logger!r}"
                + by_name
            )
        self._logger: logging.Logger | logging.LoggerAdapter[Any] = (
            _logger if logger is None else logger
        )
        self._counted = _error_classes("counted_classes", counted_classes)
        self._classifier = classifier
        self._expected = _exception_types("expected_exception", expected_exception, empty=False)
        self._exclude = _exception_types("exclude", exclude, empty=True)
        hooks = _listener_hooks(listeners)
        (
            self._on_state_change,
            self._on_failure,
            self._on_success,
            self._on_rejected,
            self._on_store_mode_change,
        ) = hooks
        if store is None:
            store = MemoryStore()

        self._name: str = name if name is not None else f"breaker-{next(_names)}"
        """Read back as ``name``; the circuit's key in its store, so it never changes."""
        if window is not None and type(store) is MemoryStore:
            # One object for equal windows of a circuit: the closed path's lock-free
            # checks compare the circuit's window with the breaker's by identity.
            window = store._shared_window(self._name, window)  # pyright: ignore[reportPrivateUsage]
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
        # An async store's sync operations are never called (the sync forms refuse it).
        self._store: BreakerStore = cast(BreakerStore, store)
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
        # State changes are queued in the step that makes them (under _order)
        # and delivered from the queue by one thread at a time (_delivering),
        # so listeners hear them in order and a slow listener blocks no call.
        self._order = threading.Lock()
        self._delivering = threading.Lock()
        self._pending: collections.deque[_Queued] = collections.deque()
        # A shared store's operations are round trips: rather than hold _order
        # across them, each takes a number and the changes they learn are held
        # until no earlier operation is still out, then go out in the store's
        # sequence order (resilient._breaker_order, loaded only for them).
        self._sequencer: Sequencer | None = None
        if self._on_state_change and type(store) is not MemoryStore:
            from resilient._breaker_order import Sequencer  # noqa: PLC0415

            self._sequencer = Sequencer()
        # A store whose operations are coroutines: the async forms await them;
        # the sync forms are refused unless it has sync operations too.
        self._aio = is_async_store(store)
        self._no_sync = self._aio and not callable(getattr(store, "acquire", None))
        self._failed_hooks: set[int] = set()
        # With the in-memory store the breaker reads the circuit's state
        # without a lock to admit closed calls. With nothing to do per success
        # (no on_success listener, no call to time), the closed path skips the
        # store's protocol: lock-free with the consecutive rule, with a
        # count-based window of successes only and with a time-based window
        # without failures (see _TimeWindow), else one short critical section
        # (_Circuit.enter_success). A success that opens the circuit still goes
        # through the store, so every change is queued under _order as above.
        self._circuit = store.bind(self._name, self._policy) if type(store) is MemoryStore else None
        simple = not self._on_success and self._slow_limit is None
        self._fast = self._circuit if simple else None
        self._windowed = window is not None
        self._timed = window is not None and window.time_based
        # A store that keeps something per name (a RedisStore's cache) keeps it
        # while this object lives, and may refuse the name (one Redis cannot key).
        attach = getattr(store, "attach", None)
        self._claim: object = attach(self.name) if callable(attach) else None
        watch_mode = getattr(store, "watch_mode", None)
        if self._on_store_mode_change and callable(watch_mode):
            watch_mode(self._name, self._store_mode_changed)
        _events.register_breaker(self)

    # -- the call forms -------------------------------------------------------

    def call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``func(*args, **kwargs)`` through the breaker.

        Returns:
            What *func* returns.

        Raises:
            CircuitOpenError: the circuit is open (or half-open with every
                trial permit taken); *func* was not called.
            TypeError: *func* returned a coroutine or a generator (its work
                did not run): use ``call_async`` for ``async def`` functions.
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
            if type(result) in LAZY_RESULTS:
                refuse_lazy_result(result, func, "breaker.call()")
            next(self._succeeded)
            if circuit.failures or self._windowed:
                self._closed_success()
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
        return self._call(func, args, kwargs, "breaker.call()")

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
            if circuit.failures or self._windowed:
                self._closed_success()
            return result
        if self._aio:
            return await self._call_aio(func, args, kwargs)
        trial = self._admit()
        start = self._started(trial)
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
        check_callable(func, "@breaker", sync_only=False)
        if is_async_callable(func):
            return cast(Callable[P, T], self._decorate_async(cast(Any, func)))
        if self._no_sync:
            raise self._sync_refused("@breaker on a plain function", func)

        breaker = self
        circuit = self._fast
        succeeded = self._succeeded
        windowed = self._windowed
        timed = self._timed
        policy = self._policy
        config = policy.window
        own_clock = self._clock
        checked = False  # whether a call returned something that is not a coroutine

        @functools.wraps(func)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            nonlocal checked
            # The closed happy path of `call`, inlined: it runs on every call.
            if circuit is not None and circuit.state is _CLOSED:
                try:
                    result = func(*args, **kwargs)
                except Exception as exc:
                    breaker._closed_failure(exc)
                    raise
                # A plain def that returns a coroutine returns one every time: the
                # first call tells, and later calls skip the check.
                if not checked:
                    if type(result) in LAZY_RESULTS:
                        refuse_lazy_result(result, func, "@breaker")
                    checked = True
                next(succeeded)
                if timed:  # the time window's part of _closed_success, inlined
                    clock = DEFAULTS.clock if own_clock is None else own_clock
                    now = time.monotonic() if clock is SYSTEM_CLOCK else clock.monotonic()
                    window = circuit.timed
                    if window is not None and window.config is config and now < window.until:
                        next(window.hits)
                        if now < window.until:
                            return result
                    else:
                        window = None
                    if not circuit.enter_success(policy, now, window):
                        breaker._success_through_store()
                elif circuit.failures or windowed:
                    breaker._closed_success()
                return result
            # The common rejection of `call`, inlined too (read off the breaker:
            # each name the closure holds costs the closed path a copy per call).
            circuit_ = breaker._circuit
            if circuit_ is not None and circuit_.state is _OPEN:
                clock = DEFAULTS.clock if breaker._clock is None else breaker._clock
                remaining = circuit_.open_until - (
                    time.monotonic() if clock is SYSTEM_CLOCK else clock.monotonic()
                )
                if remaining > 0.0:
                    if breaker._on_rejected:
                        raise breaker._rejected_error(remaining, _OPEN)
                    next(breaker._rejected)  # _rejected_error without listeners, inlined
                    raise CircuitOpenError(breaker._name, remaining, _OPEN)
            return breaker._call(func, args, kwargs, "@breaker")

        guarded.__resilient_breaker__ = self  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
        return guarded

    def _decorate_async(self, func: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        @functools.wraps(func)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            return await self.call_async(func, *args, **kwargs)

        guarded.__resilient_breaker__ = self  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
        return guarded

    def __enter__(self) -> CircuitBreaker:
        """Admit the body of a ``with`` block as one call, or raise ``CircuitOpenError``."""
        if self._no_sync:
            raise self._sync_refused("with breaker")
        trial = self._admit()
        start = self._started(trial)
        try:
            _BLOCKS.set((*_BLOCKS.get(), (self, trial, start)))
        except BaseException:
            self._release(trial)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Record how the block ended; never suppresses its exception."""
        trial, start = self._left_block("__exit__", "__enter__")
        if exc_type is None:
            self._record_success(trial, start)
        elif isinstance(exc, Exception):
            self._record_error(exc, trial, start)
        else:  # KeyboardInterrupt, CancelledError...: no outcome, the permit goes back
            self._release(trial)

    def _left_block(self, leaving: str, entering: str) -> tuple[int | None, float]:
        """Take this breaker's innermost open block off the context: its ticket and start."""
        blocks = _BLOCKS.get()
        if blocks and blocks[-1][0] is self:  # the innermost block: the usual case
            _, trial, start = blocks[-1]
            _BLOCKS.set(blocks[:-1])
        else:  # blocks left in another order than entered (an ExitStack can)
            mine = [i for i, block in enumerate(blocks) if block[0] is self]
            if not mine:
                raise RuntimeError(f"{self!r}: {leaving} without a matching {entering}")
            _, trial, start = blocks[mine[-1]]
            _BLOCKS.set(blocks[: mine[-1]] + blocks[mine[-1] + 1 :])
        return trial, start

    async def __aenter__(self) -> CircuitBreaker:
        """``async with`` twin of ``__enter__``."""
        if not self._aio:
            return self.__enter__()
        trial = await self._admit_async()
        start = await self._started_async(trial)
        _BLOCKS.set((*_BLOCKS.get(), (self, trial, start)))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """``async with`` twin of ``__exit__``."""
        if not self._aio:
            self.__exit__(exc_type, exc, tb)
            return
        trial, start = self._left_block("__aexit__", "__aenter__")
        if exc_type is None:
            await self._record_success_async(trial, start)
        elif isinstance(exc, Exception):
            await self._record_error_async(exc, trial, start)
        elif trial is not None:  # CancelledError, KeyboardInterrupt...: the permit goes back
            await self._release_async(trial)

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
    def remaining(self) -> float:
        """Seconds until the circuit admits a trial call; ``0.0`` unless it is open."""
        return self._read().remaining

    def __resilient_remaining__(self) -> float:
        """``remaining`` for the retry loop composed with this breaker (``@retry`` over it).

        Read after every retried failure: a shared store that remembers the
        state (its last answer, at most ``max_staleness`` old: the failure
        just recorded refreshed it) answers without a round trip.
        """
        peek = getattr(self._store, "peek", None)
        if peek is not None:
            stored = peek(self._name, self._policy, resolve_clock(self._clock).monotonic())
            if stored is not None:
                return max(stored.remaining, 0.0) if stored.state is _OPEN else 0.0
        return self._read().remaining

    @property
    def failures(self) -> int:
        """Failures counted toward opening: consecutive ones, or those in the window."""
        return self._read().failures

    # -- settings, read back (fixed at construction) ---------------------------

    @property
    def name(self) -> str:
        """The breaker's name: in errors, logs, telemetry, and its key in the store."""
        return self._name

    @property
    def failure_threshold(self) -> int:
        """Consecutive counted failures that open the circuit (without a window)."""
        return self._policy.failure_threshold

    @property
    def recovery_timeout(self) -> float | Backoff:
        """Seconds the circuit stays open (or the ``Backoff`` that grows them)."""
        return self._policy.recovery_timeout

    @property
    def half_open_max_calls(self) -> int:
        """Trial calls admitted per half-open period."""
        return self._policy.half_open_max_calls

    @property
    def success_threshold(self) -> int:
        """Trial successes that close the circuit."""
        return self._policy.success_threshold

    @property
    def window(self) -> FailureRateWindow | None:
        """The failure-rate window, or ``None`` for the consecutive-failures rule."""
        return self._policy.window

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
            name=self._name,
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
            store_mode=_store_mode(self._store, self._name),
        )

    def reset(self) -> None:
        """Close the circuit by hand and forget the counted failures."""
        if self._no_sync:
            raise self._sync_refused("reset()")
        self._force(_CLOSED)

    def trip(self) -> None:
        """Open the circuit by hand; the recovery timeout starts now."""
        if self._no_sync:
            raise self._sync_refused("trip()")
        self._force(_OPEN)

    async def reset_async(self) -> None:
        """``reset``'s async twin: with an async store (``AsyncRedisStore``) it awaits the store."""
        if not self._aio:
            self._force(_CLOSED)
            return
        await self._force_async(_CLOSED)

    async def trip_async(self) -> None:
        """``trip``'s async twin: with an async store (``AsyncRedisStore``) it awaits the store."""
        if not self._aio:
            self._force(_OPEN)
            return
        await self._force_async(_OPEN)

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self._name!r}, state={self.state.value!r})"

    # -- everything off the closed happy path ---------------------------------

    def _call(
        self, func: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any], form: str
    ) -> T:
        if self._no_sync:
            raise self._sync_refused(form, func)
        trial = self._admit()
        start = self._started(trial)
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            self._record_error(exc, trial, start)
            raise
        except BaseException:
            self._release(trial)
            raise
        if type(result) in LAZY_RESULTS:
            self._release(trial)
            refuse_lazy_result(result, func, form)
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
        sequencer = self._sequencer
        if sequencer is not None:
            op = sequencer.begin()
            change = None
            try:
                admission = self._store.acquire(self._name, self._policy, now)
                change = admission.transition
            finally:
                self._ended(op, change, "recovery_timeout")
        elif self._on_state_change:
            with self._order:
                admission = self._store.acquire(self._name, self._policy, now)
                if admission.transition is not None:
                    self._pending.append((admission.transition, "recovery_timeout", None))
        else:
            admission = self._store.acquire(self._name, self._policy, now)
        if admission.transition is not None or self._undelivered():
            try:
                self._changed(admission.transition, "recovery_timeout")
            except BaseException:  # a listener or log handler raised Ctrl-C: no permit leaks
                if admission.admitted and admission.trial is not None:
                    self._store.release(self._name, self._policy, admission.trial)
                raise
        if admission.admitted:
            return admission.trial
        raise self._rejected_error(admission.remaining, admission.state, admission.reason)

    def _rejected_error(
        self, remaining: float, state: CircuitState, reason: str | None = None
    ) -> CircuitOpenError:
        """Count a rejection, tell the listeners, and return the error to raise."""
        next(self._rejected)
        error = (
            CircuitOpenError(self._name, remaining, state)
            if reason is None
            else CircuitOpenError(self._name, remaining, state, reason)
        )
        if self._on_rejected:
            self._emit(self._on_rejected, error)
        if _events.SINK is not None:
            _events.SINK.breaker_rejected(self._name, error)
        return error

    def _started(self, trial: int | None) -> float:
        """When a call admitted with *trial* starts, for the slow-call rule (else 0.0).

        A clock that fails hands the permit back before its error propagates.
        """
        if self._slow_limit is None:
            return 0.0
        try:
            return resolve_clock(self._clock).monotonic()
        except BaseException:
            self._release(trial)
            raise

    def _counts(self, exc: Exception) -> bool:
        """Whether *exc* counts toward opening: expected, not excluded, of a counted class."""
        if not isinstance(exc, self._expected) or isinstance(exc, self._exclude):
            return False
        if isinstance(exc, Throttled):  # pacing held the call back: the dependency did not fail
            return False
        try:
            error_class = self._classifier(exc)
        except Exception as error:
            log_with_traceback(
                self._logger,
                logging.ERROR,
                "classifier of circuit %r failed on %s; the failure counts as UNKNOWN",
                self._name,
                type(exc).__name__,
                error=error,
                extra={"event": "breaker_classifier_failed", "breaker": self._name},
            )
            error_class = ErrorClass.UNKNOWN
        return error_class in self._counted

    def _closed_failure(self, exc: Exception) -> None:
        """A call admitted on the closed fast path raised *exc*."""
        self._record_error(exc, None, 0.0)

    def _closed_success(self) -> None:
        """A success on the closed fast path that has something to record.

        With the consecutive rule: failures to forget. With a window: the
        success to enter, without a lock in a window that holds no failure,
        else in one short critical section of the circuit
        (``_Circuit.enter_success``), or through the store when it opens the
        circuit. ``@breaker`` inlines the time window's part.
        """
        circuit = self._fast
        assert circuit is not None
        policy = self._policy
        if self._timed:
            clock = DEFAULTS.clock if self._clock is None else self._clock
            now = time.monotonic() if clock is SYSTEM_CLOCK else clock.monotonic()
            timed = circuit.timed
            if timed is not None and timed.config is policy.window and now < timed.until:
                # The current bucket of a window without failures: counted without
                # the lock (see _TimeWindow), unless a failure came in meanwhile and
                # the lock's path must judge this success.
                next(timed.hits)
                if now < timed.until:
                    return
            else:
                timed = None
            if not circuit.enter_success(policy, now, timed):
                self._success_through_store()
        elif not self._windowed:
            self._store.record_success(self._name, policy, None, 0.0, False)
        else:
            window = circuit.window
            if window is not None and window.quiet and window.config is policy.window:
                return  # a count window of successes only: one more changes nothing
            if not circuit.enter_success(policy, 0.0):
                self._success_through_store()

    def _success_through_store(self) -> None:
        """A closed success that the circuit left to the store: it opens the circuit."""
        transition = self._store_success(None, self._now(), False)
        if transition is not None:
            self._changed(transition, _success_trigger(transition, False))
        elif self._undelivered():
            self._changed(None, "")

    def _record_success(self, trial: int | None, start: float) -> None:
        slow = False
        now = 0.0
        if self._needs_now:
            now = resolve_clock(self._clock).monotonic()
            slow = self._slow_limit is not None and now - start > self._slow_limit
            if slow:
                next(self._slow)
        next(self._succeeded)
        transition = self._store_success(trial, now, slow)
        self._succeeded_with(transition, slow)

    def _succeeded_with(self, transition: Transition | None, slow: bool) -> None:
        """After a success was recorded: tell the listeners."""
        if self._on_success:
            self._emit(self._on_success)
        if transition is not None:
            self._changed(transition, _success_trigger(transition, slow))
        elif self._undelivered():
            self._changed(None, "")

    def _store_success(self, trial: int | None, now: float, slow: bool) -> Transition | None:
        """Record a success in the store; queue the change it makes for the listeners."""
        if not self._on_state_change:
            return self._store.record_success(self._name, self._policy, trial, now, slow)
        sequencer = self._sequencer
        if sequencer is not None:
            op = sequencer.begin()
            transition = None
            try:
                transition = self._store.record_success(self._name, self._policy, trial, now, slow)
            finally:
                self._ended(op, transition, "", slow=slow)
            return transition
        with self._order:
            transition = self._store.record_success(self._name, self._policy, trial, now, slow)
            if transition is not None:
                self._pending.append((transition, _success_trigger(transition, slow), None))
        return transition

    def _now(self) -> float:
        """The breaker's clock, read as the fast paths read it (no call for the system clock)."""
        clock = DEFAULTS.clock if self._clock is None else self._clock
        return time.monotonic() if clock is SYSTEM_CLOCK else clock.monotonic()

    def _record_error(self, exc: Exception, trial: int | None, start: float) -> None:
        if not self._counts(exc):
            next(self._ignored)
            if trial is not None:
                self._store.release(self._name, self._policy, trial)
            return
        now, slow = self._failed_at(start)
        trigger = "trial_failed" if trial is not None else "failures"
        sequencer = self._sequencer
        if sequencer is not None:
            op = sequencer.begin()
            transition = None
            try:
                transition = self._store.record_failure(self._name, self._policy, trial, now, slow)
            finally:
                self._ended(op, transition, trigger, exc)
        elif self._on_state_change:
            with self._order:
                transition = self._store.record_failure(self._name, self._policy, trial, now, slow)
                if transition is not None:
                    self._pending.append((transition, trigger, exc))
        else:
            transition = self._store.record_failure(self._name, self._policy, trial, now, slow)
        self._failed_with(exc, transition, trigger)

    def _failed_at(self, start: float) -> tuple[float, bool]:
        """A counted failure: count it; when it happened, and whether the call was slow."""
        now = resolve_clock(self._clock).monotonic()
        slow = self._slow_limit is not None and now - start > self._slow_limit
        if slow:
            next(self._slow)
        next(self._failed)
        return now, slow

    def _failed_with(self, exc: Exception, transition: Transition | None, trigger: str) -> None:
        """After a counted failure was recorded: tell the listeners."""
        if self._on_failure:
            self._emit(self._on_failure, exc)
        if transition is not None or self._undelivered():
            self._changed(transition, trigger, exc)

    def _release(self, trial: int | None) -> None:
        if trial is not None:
            self._store.release(self._name, self._policy, trial)

    # -- a store whose operations are coroutines (AsyncBreakerStore) -----------

    def _sync_refused(self, form: str, func: object = None) -> TypeError:
        """The error of a sync form used with an async store: which async form to use."""
        instead = {
            "breaker.call()": "await breaker.call_async(func, ...)",
            "with breaker": "async with breaker:",
            "reset()": "await breaker.reset_async()",
            "trip()": "await breaker.trip_async()",
        }.get(form, "@breaker on an async def function (or await breaker.call_async)")
        what = f" on {name_of(func)}" if func is not None else ""
        return TypeError(
            f"circuit {self.name!r}: {form}{what} cannot be used with its store ("
            f"{type(self._store).__name__}), whose operations are coroutines, which a sync call "
            f"form cannot await without blocking the event loop; use {instead} (or give the "
            "breaker a synchronous store such as resilient.redis.RedisStore)"
        )

    async def _call_aio(
        self, func: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        """``call_async`` with an async store: every store operation awaited."""
        trial = await self._admit_async()
        start = await self._started_async(trial)
        try:
            result = await func(*args, **kwargs)
        except Exception as exc:
            await self._record_error_async(exc, trial, start)
            raise
        except BaseException:
            if trial is not None:
                await self._release_async(trial)
            raise
        await self._record_success_async(trial, start)
        return result

    async def _admit_async(self) -> int | None:
        """``_admit`` with an async store."""
        store = cast(AsyncBreakerStore, self._store)
        now = resolve_clock(self._clock).monotonic()
        sequencer = self._sequencer
        if sequencer is not None:
            op = sequencer.begin()
            change = None
            try:
                admission = await store.acquire_async(self._name, self._policy, now)
                change = admission.transition
            finally:
                self._ended(op, change, "recovery_timeout")
        else:
            admission = await store.acquire_async(self._name, self._policy, now)
        if admission.transition is not None or self._undelivered():
            try:
                self._changed(admission.transition, "recovery_timeout")
            except BaseException:  # a listener or log handler raised Ctrl-C: no permit leaks
                if admission.admitted and admission.trial is not None:
                    await store.release_async(self._name, self._policy, admission.trial)
                raise
        if admission.admitted:
            return admission.trial
        raise self._rejected_error(admission.remaining, admission.state, admission.reason)

    async def _started_async(self, trial: int | None) -> float:
        """``_started`` with an async store."""
        if self._slow_limit is None:
            return 0.0
        try:
            return resolve_clock(self._clock).monotonic()
        except BaseException:
            if trial is not None:
                await self._release_async(trial)
            raise

    async def _record_success_async(self, trial: int | None, start: float) -> None:
        """``_record_success`` with an async store."""
        slow = False
        now = 0.0
        if self._needs_now:
            now = resolve_clock(self._clock).monotonic()
            slow = self._slow_limit is not None and now - start > self._slow_limit
            if slow:
                next(self._slow)
        next(self._succeeded)
        store = cast(AsyncBreakerStore, self._store)
        transition = await self._record_async(store.record_success_async, trial, now, slow, "")
        self._succeeded_with(transition, slow)

    async def _record_error_async(self, exc: Exception, trial: int | None, start: float) -> None:
        """``_record_error`` with an async store."""
        store = cast(AsyncBreakerStore, self._store)
        if not self._counts(exc):
            next(self._ignored)
            if trial is not None:
                await store.release_async(self._name, self._policy, trial)
            return
        now, slow = self._failed_at(start)
        trigger = "trial_failed" if trial is not None else "failures"
        transition = await self._record_async(
            store.record_failure_async, trial, now, slow, trigger, exc
        )
        self._failed_with(exc, transition, trigger)

    async def _record_async(
        self,
        record: AsyncRecord,
        trial: int | None,
        now: float,
        slow: bool,
        trigger: str,
        exc: Exception | None = None,
    ) -> Transition | None:
        """Await *record* (the store's ``record_success_async`` or ``record_failure_async``).

        With a sequencer, the operation takes its number before it starts and
        hands over the change it made when it ends, also when it fails, so the
        listeners hear the changes in the store's order (see ``_ended``).
        """
        sequencer = self._sequencer
        if sequencer is None:
            return await record(self._name, self._policy, trial, now, slow)
        op = sequencer.begin()
        transition = None
        try:
            transition = await record(self._name, self._policy, trial, now, slow)
        finally:
            self._ended(op, transition, trigger, exc, slow=slow)
        return transition

    async def _release_async(self, trial: int) -> None:
        store = cast(AsyncBreakerStore, self._store)
        await store.release_async(self._name, self._policy, trial)

    async def _force_async(self, state: CircuitState) -> None:
        store = cast(AsyncBreakerStore, self._store)
        now = resolve_clock(self._clock).monotonic()
        trigger = _FORCED.get(state, "forced")
        sequencer = self._sequencer
        if sequencer is not None:
            op = sequencer.begin()
            transition = None
            try:
                transition = await store.force_async(self._name, self._policy, state, now)
            finally:
                self._ended(op, transition, trigger)
        else:
            transition = await store.force_async(self._name, self._policy, state, now)
        if transition is not None or self._undelivered():
            self._changed(transition, trigger)

    def _force(self, state: CircuitState) -> None:
        now = resolve_clock(self._clock).monotonic()
        trigger = _FORCED.get(state, "forced")
        sequencer = self._sequencer
        if sequencer is not None:
            op = sequencer.begin()
            transition = None
            try:
                transition = self._store.force(self._name, self._policy, state, now)
            finally:
                self._ended(op, transition, trigger)
        elif self._on_state_change:
            with self._order:
                transition = self._store.force(self._name, self._policy, state, now)
                if transition is not None:
                    self._pending.append((transition, trigger, None))
        else:
            transition = self._store.force(self._name, self._policy, state, now)
        if transition is not None or self._undelivered():
            self._changed(transition, trigger)

    def _read(self) -> StoredState:
        stored = self._store.snapshot(
            self._name, self._policy, resolve_clock(self._clock).monotonic()
        )
        if stored.state is _OPEN and stored.remaining <= 0.0:
            return stored._replace(state=_HALF_OPEN, remaining=0.0)
        return stored._replace(remaining=max(stored.remaining, 0.0))

    def _changed(
        self, transition: Transition | None, trigger: str, exc: BaseException | None = None
    ) -> None:
        """Log a state change and tell the listeners, in order; never under a lock.

        *transition* ``None``: deliver what is queued (a store mode change).
        """
        if not self._on_state_change:
            if transition is not None:
                self._log_change(transition, trigger, exc)
            return
        pending = self._pending
        sequencer = self._sequencer
        if sequencer is not None:
            sequencer.drain(pending)
        while pending:
            if not self._delivering.acquire(blocking=False):
                return  # the thread delivering now will deliver this change too
            try:
                while pending:
                    queued, why, error = pending.popleft()
                    if type(queued) is _ModeChange:
                        self._emit(self._on_store_mode_change, queued.old, queued.new)
                        continue
                    assert isinstance(queued, Transition)
                    self._log_change(queued, why, error)
                    self._emit(self._on_state_change, queued.old, queued.new)
            finally:
                self._delivering.release()
            if sequencer is not None:
                sequencer.drain(pending)

    def _undelivered(self) -> bool:
        """Whether changes wait to be told to the listeners."""
        if self._pending:
            return True
        sequencer = self._sequencer
        return sequencer is not None and sequencer.holding

    def _ended(
        self,
        op: int,
        transition: Transition | None,
        trigger: str,
        exc: BaseException | None = None,
        *,
        slow: bool = False,
    ) -> None:
        """Store operation *op* (numbered by the sequencer) is over, having made *transition*."""
        assert self._sequencer is not None
        if transition is None:
            self._sequencer.end(op, 0, None)
            return
        why = trigger or _success_trigger(transition, slow)
        self._sequencer.end(op, transition.seq, (transition, why, exc))

    def _store_mode_changed(self, old: str, new: str) -> None:
        """The store keeps this breaker's state elsewhere now; tell the listeners, in order.

        The store calls it from inside an operation, which may run under
        ``_order``: then the change is queued, and delivered once the lock is
        released (by this thread, or by the one holding it).
        """
        if not self._on_state_change:
            self._emit(self._on_store_mode_change, old, new)
            return
        sequencer = self._sequencer
        if sequencer is not None:  # goes out once the operation that made it is over
            sequencer.note((_ModeChange(old, new), "store_mode", None))
            self._changed(None, "")
            return
        self._pending.append((_ModeChange(old, new), "store_mode", None))
        if not self._order.locked():
            self._changed(None, "")

    def _log_change(self, transition: Transition, trigger: str, exc: BaseException | None) -> None:
        if _events.SINK is not None:
            _events.SINK.breaker_changed(self._name, transition.old, transition.new, exc)
        new = transition.new
        level = logging.WARNING if new is _OPEN else logging.INFO
        logger = self._logger
        if not logger.isEnabledFor(level):
            return
        template, args = _change_message(self._name, self._policy, transition, trigger, exc)
        # A shared store says where this state lives (an in-memory one always "memory").
        store_mode = (
            None if type(self._store) is MemoryStore else _store_mode(self._store, self._name)
        )
        if store_mode == "local":
            template += " (local fallback while Redis is unreachable)"
        extra: dict[str, object] = {
            "event": f"circuit_{new.value}",
            "breaker": self._name,
            "old_state": transition.old.value,
            "new_state": new.value,
            "trigger": trigger,
            "failures": transition.failures,
        }
        if store_mode is not None:
            extra["store_mode"] = store_mode
        if new is _OPEN:
            extra["open_for"] = round(transition.open_for, 6)
        if exc is not None:
            extra["error_type"], extra["error"] = error_fields(exc)
        # An adapter's fields are added to ours, not put in their place.
        target, template, extra = unwrap_adapter(logger, template, extra)
        target.log(level, template, *args, extra=extra)

    def _emit(self, hooks: tuple[Callable[..., object], ...], *args: object) -> None:
        for hook in hooks:
            try:
                hook(self, *args)
            except Exception as error:
                # Logged once per hook (by identity: the breaker holds its hooks for
                # its whole life): a listener failing on every call must not flood.
                if id(hook) in self._failed_hooks:
                    continue
                self._failed_hooks.add(id(hook))
                hook_name = name_of(hook)
                log_with_traceback(
                    self._logger,
                    logging.ERROR,
                    "listener %s of circuit %r raised %s; the breaker carries on, and further "
                    "failures of this listener are not logged",
                    hook_name,
                    self._name,
                    describe_error(error),
                    error=error,
                    extra={
                        "event": "breaker_listener_failed",
                        "breaker": self._name,
                        "hook": hook_name,
                    },
                )


class BreakerMetrics(Record):
    """A read-only snapshot of a breaker, from ``CircuitBreaker.metrics``.

    ``calls`` is ``successes + failures + ignored``: the guarded calls that
    ran to an end in this process. ``failure_rate`` and ``slow_call_rate``
    are over the window when the breaker has one, else over these counters
    (``ignored`` calls are in neither). A frozen dataclass.
    """

    # A frozen dataclass to its users (see resilient._compat.Record).
    __match_args__ = (
        "name",
        "state",
        "calls",
        "successes",
        "failures",
        "ignored",
        "slow_calls",
        "rejected",
        "failure_rate",
        "slow_call_rate",
        "remaining",
        "store_mode",
    )
    __slots__ = __match_args__

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
    store_mode: str
    """Where the state lives now: ``"memory"`` for a ``MemoryStore``; for a
    ``resilient.redis.RedisStore``, ``"redis"`` or, while Redis is unreachable,
    the fallback in force (``"local"``, ``"open"`` or ``"closed"``); a store
    of another kind answers through a ``mode(name)`` method, else ``"custom"``."""

    def __init__(
        self,
        name: str,
        state: CircuitState,
        calls: int,
        successes: int,
        failures: int,
        ignored: int,
        slow_calls: int,
        rejected: int,
        failure_rate: float,
        slow_call_rate: float,
        remaining: float,
        store_mode: str = "memory",
    ) -> None:
        _set(self, "name", name)
        _set(self, "state", state)
        _set(self, "calls", calls)
        _set(self, "successes", successes)
        _set(self, "failures", failures)
        _set(self, "ignored", ignored)
        _set(self, "slow_calls", slow_calls)
        _set(self, "rejected", rejected)
        _set(self, "failure_rate", failure_rate)
        _set(self, "slow_call_rate", slow_call_rate)
        _set(self, "remaining", remaining)
        _set(self, "store_mode", store_mode)


# -- helpers --------------------------------------------------------------------


class _ModeChange(NamedTuple):
    """Strictly private. A store mode change queued for the listeners."""

    old: str
    new: str


_Queued = tuple[Transition | _ModeChange, str, BaseException | None]
"""A change queued for the listeners: what, its trigger, the error that made it."""

_FORCED = {_CLOSED: "reset", _OPEN: "trip"}


def _store_mode(store: BreakerStore, name: str) -> str:
    mode = getattr(store, "mode", None)
    if callable(mode):
        return str(mode(name))
    return "memory" if isinstance(store, MemoryStore) else "custom"


def _check_not_misused(first: object) -> None:
    """Say what to do when the first argument shows a misunderstanding (not a threshold)."""
    if isinstance(first, str):
        raise TypeError(
            f"CircuitBreaker({first!r}): the first argument is failure_threshold (an int); "
            f"give the name by keyword: CircuitBreaker(name={first!r})"
        )
    if callable(first):
        raise TypeError(
            f"CircuitBreaker is not a decorator by itself (got {name_of(first)!r} as "
            "failure_threshold): build a breaker first, breaker = CircuitBreaker(name='users-api', "
            "failure_threshold=5), then decorate with @breaker (one breaker per dependency, "
            "shared by the functions that call it)"
        )


def _peek(counter: itertools.count[int]) -> int:
    """The value *counter* would give next, without taking it (its repr is 'count(7)')."""
    return int(repr(counter)[6:-1])


def _error_classes(name: str, value: object) -> tuple[ErrorClass, ...]:
    if isinstance(value, (str, ErrorClass)) or not isinstance(value, Collection):
        raise TypeError(f"{name} must be a collection of ErrorClass, got {value!r}")
    for item in cast("Collection[object]", value):
        if not isinstance(item, ErrorClass):
            raise TypeError(f"{name} must hold only ErrorClass members, got {item!r} in {value!r}")
    # A tuple: membership by identity first, without calling Enum.__hash__ (in Python).
    return tuple(frozenset(cast("Collection[ErrorClass]", value)))


def _success_trigger(transition: Transition, slow: bool) -> str:
    if transition.new is _CLOSED:
        return "trial_succeeded"
    if transition.old is _HALF_OPEN:
        return "slow_trial" if slow else "trial_succeeded"
    return "failure_rate"  # a window whose rate stays over its threshold as calls come in


def _change_message(
    name: str,
    policy: BreakerPolicy,
    transition: Transition,
    trigger: str,
    exc: BaseException | None,
) -> tuple[str, tuple[object, ...]]:
    """The log message of a state change: a %-template and its arguments."""
    new = transition.new
    if new is _HALF_OPEN:
        return (
            "circuit %r half-open: letting %s through to test the dependency",
            (name, trial_calls(policy.half_open_max_calls)),
        )
    if new is _CLOSED:
        if trigger == "reset":
            return "circuit %r closed by reset(); calls flow again", (name,)
        return (
            "circuit %r closed: %s succeeded; calls flow again",
            (name, trial_calls(policy.success_threshold)),
        )
    if trigger == "trip":
        why = "opened by trip()"
    elif transition.old is _HALF_OPEN:
        why = (
            "reopened: a trial call was too slow"
            if trigger == "slow_trial"
            else ("reopened: a trial call failed")
        )
    elif policy.window is None:
        failures = transition.failures
        why = (
            f"opened after {failures} consecutive failures"
            if failures != 1
            else "opened after 1 failure"
        )
    else:
        why = _rate_reason(policy, transition)
    if exc is not None:
        why += f" (the last: {describe_error(exc)})"
    trials = policy.half_open_max_calls
    return (
        "circuit %r %s; calls are rejected for the next %s s, then %s %s through",
        (
            name,
            why,
            seconds(transition.open_for),
            trial_calls(trials),
            "goes" if trials == 1 else "go",
        ),
    )


def _rate_reason(policy: BreakerPolicy, transition: Transition) -> str:
    window = policy.window
    assert window is not None
    calls = max(transition.calls, 1)
    scope = (
        f"of the last {transition.calls} calls"
        if window.calls is not None
        else f"of {transition.calls} calls in the last {seconds(window.seconds or 0.0)} s"
    )
    if transition.failures / calls >= window.failure_rate_threshold:
        return (
            f"opened: {transition.failures} {scope} failed "
            f"({transition.failures / calls:.0%}, threshold {window.failure_rate_threshold:.0%})"
        )
    return (
        f"opened: {transition.slow} {scope} were slow "
        f"({transition.slow / calls:.0%}, threshold {policy.slow_call_rate_threshold:.0%})"
    )


def _exception_types(name: str, value: object, *, empty: bool) -> tuple[type[Exception], ...]:
    types = cast("tuple[object, ...]", value) if isinstance(value, tuple) else (value,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            named = ""
            if isinstance(value, (str, bytes)):  # circuitbreaker's positional name, mistaken
                shown = value if isinstance(value, str) else value.decode(errors="replace")
                named = f": a name goes by keyword, CircuitBreaker(name={shown!r})"
            raise TypeError(
                f"{name} must be an exception type or a tuple of them, got {value!r}{named}"
            )
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
    for listener in cast("Iterable[object]", listeners):
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
