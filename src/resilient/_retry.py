"""Retry with exponential backoff and jitter: ``@retry`` and ``retry_with_backoff``.

Strictly private: users import these names from ``resilient`` (a module named
``retry`` would shadow the function ``resilient.retry`` once imported).

The happy path is one clock reading and one ``try`` around the call, in a
wrapper that takes the function's own parameters when they are all named.
Everything that happens after a failure (classification, the budget, the
deadline, the wait, the log line) lives in ``RetryCall``, built on the first
failure and shared by the sync and the async loop.

Importing this module loads neither ``typing``, ``dataclasses``, ``inspect``
nor ``logging`` (together they cost several times what the rest does): the
types live in ``resilient._types``, and the logger is looked up on the first
failure.
"""

from __future__ import annotations

import _thread
import functools
import sys
import time
from collections.abc import Collection
from types import CellType, CodeType, FunctionType

from resilient import _events
from resilient._classify import (
    _TYPE_CACHE,  # pyright: ignore[reportPrivateUsage]
    _UNKNOWN,  # pyright: ignore[reportPrivateUsage]
    Classifier,
    ErrorClass,
    Rejection,
    Throttled,
    _type_rule,  # pyright: ignore[reportPrivateUsage]
    classify,
    rejection_in,
    response_status,
    retry_after,
    should_retry,
    status_class,
)
from resilient._clock import DEFAULTS, SYSTEM_CLOCK, check_clock
from resilient._compat import (
    LAZY_RESULTS,
    add_note,
    check_callable,
    duration,
    is_async_callable,
    name_of,
    qualified_name_of,
    refuse_lazy_result,
    seconds,
)
from resilient._deadline import DEADLINE, enter_deadline, time_remaining
from resilient.backoff import (
    Backoff,
    _shared_rng,  # pyright: ignore[reportPrivateUsage]
    _Steps,  # pyright: ignore[reportPrivateUsage]
    _Strategy,  # pyright: ignore[reportPrivateUsage]
    proportional_draw,
    steps,
)

# Not ``typing.TYPE_CHECKING``: see ``resilient/__init__.py``.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from logging import Logger
    from random import Random
    from typing import Any, NoReturn, TypeVar, overload

    from typing_extensions import ParamSpec, deprecated

    from resilient._clock import Clock
    from resilient._types import (
        AsyncFallbackDecorator,
        Budget,
        FallbackDecorator,
        Gate,
        JitterSpec,
        Limiter,
        RetryOn,
        RetryState,
        Seconds,
        StopEvent,
    )

    P = ParamSpec("P")
    T = TypeVar("T")
    R = TypeVar("R")
else:

    def overload(func):  # ``typing.overload`` for type checkers only, without importing ``typing``
        return func

    def deprecated(message):  # for type checkers only: marks the overload they must reject
        return overload


__all__ = [
    "DEFAULT_RETRYABLE",
    "retry",
    "retry_with_backoff",
    "retry_with_backoff_async",
    "time_remaining",
]

DEFAULT_RETRYABLE: frozenset[ErrorClass] = frozenset(
    {ErrorClass.TRANSIENT, ErrorClass.DEGRADED, ErrorClass.TIMEOUT}
)
"""The classes retried unless ``retryable_classes=`` says otherwise."""

_WARNING = 30  # logging.WARNING and logging.ERROR, without importing logging
_ERROR = 40

_logger: Logger | None = None


def _log() -> Logger:
    """The ``resilient.retry`` logger, looked up on the first failure that needs it."""
    global _logger
    if _logger is None:
        import logging  # noqa: PLC0415 - `from resilient import retry` must not load logging

        _logger = logging.getLogger("resilient.retry")
    return _logger


class Policy:
    """Strictly private. The validated configuration of one decorator."""

    __slots__ = (
        "backoff",
        "budget",
        "classifier",
        "classify",
        "clock",
        "deadline",
        "draw_low",
        "draw_rng",
        "draw_span",
        "fallback",
        "fallback_is_async",
        "first_steps",
        "guarded",
        "limiter",
        "logger",
        "max_attempts",
        "max_delay",
        "max_retries",
        "max_retry_after",
        "needs_full_loop",
        "next_delay",
        "on",
        "on_retry",
        "plain_classifier",
        "reads_now",
        "retry_on_result",
        "retryable",
        "stop_event",
        "stop_wait",
    )

    def __init__(
        self,
        *,
        max_retries: int,
        base_delay: Seconds,
        max_delay: Seconds,
        jitter: JitterSpec,
        retryable_classes: Collection[ErrorClass],
        deadline: Seconds | None,
        classifier: Callable[..., ErrorClass],
        on_retry: Callable[[RetryState], object] | None,
        budget: Budget | None,
        clock: Clock | None,
        retry_on_result: Callable[[Any], bool] | None,
        max_retry_after: Seconds = 120.0,
        on: RetryOn | None = None,
        fallback: Callable[[Exception], Any] | None = None,
        logger: Logger | None = None,
        stop_event: StopEvent | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise TypeError(f"max_retries must be an int, got {max_retries!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        self.backoff = Backoff(base_delay, max_delay, jitter)
        _check_retryable_classes(retryable_classes)
        if deadline is not None:
            deadline = duration("deadline", deadline, allow_zero=False, also=" or None")
        for name, hook in (
            ("classifier", classifier),
            ("on_retry", on_retry),
            ("retry_on_result", retry_on_result),
            ("fallback", fallback),
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
        if limiter is not None and not all(
            callable(getattr(limiter, method, None))
            for method in ("acquire", "acquire_async", "pause", "pause_async")
        ):
            raise TypeError(f"limiter must be a RateLimiter, got {limiter!r}")
        self.limiter = limiter
        self.max_retry_after = check_max_retry_after(max_retry_after)
        self.on = _check_on(on)
        """Exception types (a tuple), a predicate, or ``None``: retried whatever their class."""
        self.logger = _check_logger(logger)
        self.stop_event = stop_event
        self.stop_wait = _check_stop_event(stop_event)
        """How a wait listens to *stop_event*: ``"thread"``, ``"async"`` or ``""`` (checks only)."""
        self.fallback = fallback
        self.fallback_is_async = fallback is not None and is_async_callable(fallback)
        self.max_retries = max_retries
        # A tuple: membership by identity first, without calling Enum.__hash__ (in Python);
        # in declaration order, so TRANSIENT, the commonest, is found first.
        chosen = frozenset(retryable_classes)
        self.retryable = tuple(member for member in ErrorClass if member in chosen)
        self.deadline = None if deadline is None else float(deadline)
        self.classifier = classifier
        self.on_retry = on_retry
        self.budget = budget
        self.clock = clock
        self.retry_on_result = retry_on_result
        self.classify: Callable[[BaseException], ErrorClass] = (
            # Bound once: a Classifier is called through its type's __call__
            # slot, which costs more than the method it runs.
            classifier.__call__ if type(classifier) is Classifier else classifier
        )
        self.plain_classifier: Classifier | None = (
            classifier
            if isinstance(classifier, Classifier) and type(classifier) is Classifier
            else None
        )
        """The classifier when its answer for a plain exception is its type's (``_plain_class``)
        as long as it has no rules of its own: read at every failure, so a rule registered
        later turns the shortcut off."""
        self.max_attempts = max_retries + 1
        self.next_delay = steps(self.backoff)
        """One delay of ``iter(self.backoff)`` from a call's state (``RetryCall`` is a
        ``_Steps``); ``None`` when every delay is 0.0."""
        self.first_steps = _Steps(self.backoff.base_delay)
        """That state before the first retry, which each call copies."""
        self.max_delay = self.backoff.max_delay
        # next_delay spelled out when it is the default jitter's (see proportional_draw):
        # after_failure draws it without a call. draw_low is None for any other step.
        drawn = proportional_draw(self.backoff)
        self.draw_low: float | None = None
        self.draw_span = 0.0
        self.draw_rng: Random | None = None
        if drawn is not None:
            self.draw_low, self.draw_span, self.draw_rng = drawn
        self.needs_full_loop = (
            deadline is not None
            or budget is not None
            or retry_on_result is not None
            or limiter is not None
        )
        """Whether the happy path must do more than call the function."""
        self.guarded = budget is not None or stop_event is not None
        """Whether a retry asks more than the attempt count (the budget, ``stop_event``):
        without them ``after_failure`` skips those checks with one test."""
        self.reads_now = deadline is not None or on_retry is not None
        """Whether every retry needs the time (the deadline, ``on_retry``), logged or not."""


OPTIONS = (
    "max_retries",
    "base_delay",
    "max_delay",
    "jitter",
    "retryable_classes",
    "deadline",
    "classifier",
    "on_retry",
    "budget",
    "clock",
    "retry_on_result",
    "max_retry_after",
    "on",
    "fallback",
    "logger",
    "stop_event",
    "limiter",
)
"""The keyword options of ``@retry`` and ``retrying()``, which ``Policy`` takes."""


def options_in(scope: dict[str, Any]) -> dict[str, Any]:
    """Strictly private. The options among the ``locals()`` of a form that takes them all."""
    return {name: scope[name] for name in OPTIONS}


_SHARED_POLICIES: dict[tuple[int, ...], tuple[Policy, tuple[object, ...]]] = {}
_SHARED_POLICIES_LIMIT = 256


def shared_policy(**options: Any) -> Policy:
    """The ``Policy`` for *options*, validated once for the same option objects.

    The function form (``retry_with_backoff``) and the block form
    (``retrying``) take their options at every call, and validating them
    costs far more than a call that succeeds. Options are matched by identity
    (the defaults, a module's constants, the same strategy), never by
    equality, so ``True`` is not taken for ``1``. Only inert values are
    remembered (numbers, strings, frozensets, exception types and tuples of
    them, jitter strategies, the default classifier): a list (which may
    change between two calls), a ``timedelta`` (made anew by each call), a
    budget, a limiter, a logger, a clock or a function is validated at every
    call and never kept alive here. The policy is immutable, so calls and
    threads share it.
    """
    values = tuple(options.values())
    key = tuple(map(id, values))  # unique while cached: the entry keeps the values alive
    found = _SHARED_POLICIES.get(key)
    if found is not None:
        return found[0]
    policy = Policy(**options)
    if all(_inert(value) for value in values):
        if len(_SHARED_POLICIES) >= _SHARED_POLICIES_LIMIT:  # numbers computed per call
            _SHARED_POLICIES.clear()
        _SHARED_POLICIES[key] = (policy, values)
    return policy


def _inert(value: object) -> bool:
    """Whether *value* may be remembered: validated once it stays valid, and holds nothing."""
    kind = type(value)
    return (
        kind in _INERT_TYPES
        or value is classify
        or isinstance(value, (type, _Strategy))
        or (kind is tuple and all(isinstance(item, type) for item in cast_objects(value)))
    )


_INERT_TYPES = frozenset({type(None), bool, int, float, str, frozenset, ErrorClass})


def _check_retryable_classes(value: object) -> None:
    """Refuse anything but a collection of ``ErrorClass``; exception types point to ``on=``."""
    items: tuple[object, ...] = ()
    if isinstance(value, type) and issubclass(value, BaseException):
        items = (value,)
    elif isinstance(value, (str, ErrorClass)) or not isinstance(value, Collection):
        raise TypeError(f"retryable_classes must be a collection of ErrorClass, got {value!r}")
    else:
        items = tuple(cast_objects(value))  # pyright: ignore[reportUnknownArgumentType]
    types = [t for t in items if isinstance(t, type) and issubclass(t, BaseException)]
    if types:
        names = ", ".join(t.__name__ for t in types)
        raise TypeError(
            f"retryable_classes takes ErrorClass members (TRANSIENT, DEGRADED, ...), got the "
            f"exception type{'s' if len(types) > 1 else ''} {names} in {value!r}: to retry "
            f"exceptions by type whatever their class, write on=({names},)"
        )
    for item in items:
        if not isinstance(item, ErrorClass):
            raise TypeError(
                f"retryable_classes must hold only ErrorClass members, got {item!r} in {value!r}"
            )


def _check_on(on: object) -> tuple[type[Exception], ...] | Callable[[BaseException], bool] | None:
    """``on=`` as the loop uses it: a tuple of ``Exception`` types, a predicate, or ``None``."""
    if on is None:
        return None
    if isinstance(on, (type, tuple, list, set, frozenset)):
        types: tuple[object, ...] = (
            (on,) if isinstance(on, type) else tuple(cast_objects(on))  # pyright: ignore[reportUnknownArgumentType]
        )
        if not types:
            raise ValueError(f"on must name at least one exception type, got {on!r}")
        for t in types:
            if not (isinstance(t, type) and issubclass(t, BaseException)):
                raise TypeError(
                    "on must be an exception type, a tuple of them, or a predicate "
                    f"(exc) -> bool, got {t!r} in {on!r}"
                )
            if not issubclass(t, Exception):
                raise TypeError(
                    f"on must name Exception subclasses, got {on!r}: {t.__name__} is never "
                    "caught, so never retried"
                )
        return types  # type: ignore[return-value]  # pyright: ignore[reportReturnType]
    if not callable(on):
        raise TypeError(
            "on must be an exception type, a tuple of them, or a predicate (exc) -> bool, "
            f"got {on!r}"
        )
    return on  # pyright: ignore[reportReturnType]


def cast_objects(value: object) -> Iterable[object]:
    """*value*, an iterable checked by the caller, as type checkers should see it."""
    return value  # type: ignore[return-value]  # pyright: ignore[reportReturnType]


def _check_logger(logger: object) -> Logger | None:
    if logger is not None and not (
        callable(getattr(logger, "isEnabledFor", None)) and callable(getattr(logger, "log", None))
    ):
        raise TypeError(
            f"logger must be a logging.Logger (or LoggerAdapter), got {logger!r}"
            + (f": write logger=logging.getLogger({logger!r})" if isinstance(logger, str) else "")
        )
    if callable(getattr(logger, "process", None)) and hasattr(logger, "extra"):
        return _FieldsKept(logger)  # type: ignore[return-value]  # pyright: ignore[reportReturnType]
    return logger  # type: ignore[return-value]  # pyright: ignore[reportReturnType]


class _FieldsKept:
    """Strictly private. A ``LoggerAdapter`` given as ``logger=``, its extra merged with ours.

    ``LoggerAdapter.process`` replaces a call's ``extra`` with the adapter's
    own (unless ``merge_extra=True``, Python 3.13+): every structured field of
    the retry lines would be lost. Each line goes through
    ``_redact.unwrap_adapter`` instead, as the breaker's do: the adapter (or
    nested ones) still processes the message, its fields kept, ours added.
    """

    __slots__ = ("adapter",)

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter

    def isEnabledFor(self, level: int) -> bool:
        return bool(self.adapter.isEnabledFor(level))

    def warning(self, msg: str, *args: object, extra: dict[str, object]) -> None:
        self.log(_WARNING, msg, *args, extra=extra)

    def error(self, msg: str, *args: object, extra: dict[str, object]) -> None:
        self.log(_ERROR, msg, *args, extra=extra)

    def log(self, level: int, msg: str, *args: object, extra: dict[str, object]) -> None:
        from resilient._redact import unwrap_adapter  # noqa: PLC0415 - only log lines need it

        logger, msg, extra = unwrap_adapter(self.adapter, msg, extra)
        logger.log(level, msg, *args, extra=extra)


def _check_stop_event(event: object) -> str:
    """Refuse a ``stop_event`` without ``is_set()``; say how a wait can listen to it."""
    if event is None:
        return ""
    if not callable(getattr(event, "is_set", None)):
        raise TypeError(
            f"stop_event must be a threading.Event or an asyncio.Event (with is_set()), "
            f"got {event!r}"
        )
    wait = getattr(event, "wait", None)
    if not callable(wait):
        return ""
    return "async" if is_async_callable(wait) else "thread"


_GIVE_UP = -1.0

DEFAULT_MAX_RETRY_AFTER = 120.0
"""The longest ``Retry-After`` honoured unless ``max_retry_after=`` says otherwise (openai's)."""


def check_max_retry_after(value: object) -> float:
    """Validate ``max_retry_after`` (seconds, or a ``timedelta``); return it in seconds."""
    return duration("max_retry_after", value)


def server_wait(computed: float, asked: float | None, max_retry_after: float) -> float | None:
    """The wait before a retry, given the server's ``Retry-After``; ``None``: do not retry.

    *computed* is the backoff's delay (already capped by ``max_delay``). A
    server's wait is honoured in full, beyond ``max_delay``, up to
    *max_retry_after*; one that asks for longer is not retried early: ``None``.
    """
    if asked is None:
        return computed
    if asked > max_retry_after:
        return None
    return asked if asked > computed else computed


_SLEEP = time.sleep
"""``time.sleep`` as imported: a wait that listens to a stop_event uses it only unpatched."""
_WAIT_SLICE = 86400.0
"""The longest single ``Event.wait`` (under ``threading.TIMEOUT_MAX`` on every platform)."""
_POLL = 0.02
"""How often a coroutine looks at a ``threading.Event`` while it waits."""

# The default of a function parameter that was not given (``None`` is a value
# a user may pass by mistake, and deserves its own error).
_NO_FUNCTION: Any = object()


class RetryTarget:
    """Strictly private. What one decoration (or one function-form call) retries.

    Built once: the function, its names for messages and fields, the policy,
    and the circuit breaker it is composed with (``@retry`` over ``@breaker``),
    which the loop consults before each wait.
    """

    __slots__ = ("form", "func", "gate", "label", "logs_outcome", "name", "policy")

    def __init__(
        self,
        func: Callable[..., Any],
        policy: Policy,
        *,
        named_after: object = None,
        form: str = "@retry",
        logs_outcome: bool = True,
    ) -> None:
        self.func = func
        self.policy = policy
        named = func if named_after is None else named_after
        self.name = qualified_name_of(named)
        """The qualified name, module included: the ``function`` field of the logs."""
        self.label = name_of(named)
        """The name in log messages."""
        self.form = form
        """How the user called us, for error messages."""
        self.gate = _gate_of(func)
        self.logs_outcome = logs_outcome
        """False when the caller logs how the call ended (a task does): no "giving up" line."""


class RetryCall(_Steps):
    """Strictly private. The state of one retried call, built when it first needs it.

    Its delays are its own ``_Steps`` (inherited): each retry's comes from
    ``policy.next_delay(self)``, the values of ``iter(policy.backoff)``.
    """

    __slots__ = (
        "attempt",
        "clock",
        "closed_for",
        "closes",
        "deadline_at",
        "error_class",
        "failure",
        "fallback",
        "gate",
        "last_error",
        "logger",
        "matched_on",
        "max_attempts",
        "paced_out",
        "pause_for",
        "policy",
        "start",
        "target",
    )

    def __init__(
        self, target: RetryTarget, start: float | None, failure: Exception | None = None
    ) -> None:
        self.target = target
        self.failure = failure
        """The failure the loop has yet to handle: the first attempt's, made by the caller.

        Handed over here rather than as an argument, so that no frame keeps it
        alive (with its traceback and frames) once the loop has moved on.
        """
        self.policy = policy = target.policy
        self.gate = target.gate
        self.clock = clock = DEFAULTS.clock if policy.clock is None else policy.clock
        self.start = start = clock.monotonic() if start is None else start
        self.deadline_at = None if policy.deadline is None else start + policy.deadline
        self.attempt = 0
        first = policy.first_steps
        self.nominal, self.previous = first.nominal, first.previous  # a fresh _Steps
        self.closed_for = 0.0
        """Set when the composed breaker stopped the call: seconds it stays open."""
        self.last_error: BaseException | None = None
        """The last failure that ran, to chain a later rejection to."""
        cap = DEFAULTS.attempt_cap
        self.max_attempts = policy.max_attempts if cap is None else min(cap, policy.max_attempts)
        self.logger = policy.logger or _logger or _log()
        self.error_class = _UNKNOWN
        """How the last failure was classified."""
        self.matched_on = False
        """Whether the last failure matched ``on=``: retried whatever its class."""
        self.fallback: Callable[[Exception], Any] | None = None
        """The policy's ``fallback`` once the call gave up in a way it covers, else ``None``."""
        self.pause_for = 0.0
        """Seconds the limiter must pause: a 429 or 503 asked for it with Retry-After."""
        self.paced_out: BaseException | None = None
        """The limiter's refusal of the next attempt: it did not run."""
        self.closes: BaseException | None = None
        """A failure retried past that holds a response open (urllib's ``HTTPError``, which
        has an ``fp``): the loop closes it after the wait (``_drop``)."""

    def spends(self, exc: BaseException | None, result: Any) -> tuple[bool, ErrorClass | None]:
        """Whether ``after_failure`` reaches the budget for this failure (an awaited budget
        is spent before it, by the async loop), and the failure's class, which
        ``after_failure`` is then given (``None`` for a rejection, not classified): the
        classifier runs once per failure."""
        if exc is not None and rejection_in(exc) is not None:
            return False, None
        policy = self.policy
        error_class = policy.classify(exc) if exc is not None else _result_class(result)
        if error_class in policy.retryable:
            return True, error_class
        on = policy.on  # after_failure's own test (an `on=` predicate runs a second time)
        return (
            on is not None
            and exc is not None
            and bool(isinstance(exc, on) if isinstance(on, tuple) else on(exc))
        ), error_class

    def after_failure(
        self,
        exc: BaseException | None,
        result: Any = None,
        spent: bool | None = None,
        known: ErrorClass | None = None,
    ) -> float:
        """Decide what follows a failed attempt: the delay to wait, or ``_GIVE_UP``.

        Stops at once on a rejected call; classifies (unless *known* is the
        class ``spends`` found); spends from the budget (unless *spent* says
        what an awaited budget answered); applies Retry-After, the composed
        breaker, the deadline and the testing switches; then logs and calls
        ``on_retry``.
        """
        policy = self.policy
        self.attempt = attempt = self.attempt + 1
        plain: ErrorClass | None = None  # see _plain_class: its class, when its type decides
        if exc is not None:
            classifier = policy.plain_classifier
            if classifier is not None and not classifier._rules:  # pyright: ignore[reportPrivateUsage]
                exc_type = type(exc)
                try:  # a subscript, not .get(): a method call costs more than the lookup
                    plain = _PLAIN[exc_type]
                except KeyError:  # the first failure of this type
                    plain = _plain_class(exc_type)
                if plain is not None and exc.__dict__:  # an attribute of its own: read them all
                    plain = None
        # Waiting cannot make the circuit admit it sooner, also when an SDK wrapped it
        # (an exception with neither cause nor context is walked no further; a plain
        # exception is no rejection itself).
        if exc is not None and (
            exc.__context__ is not None
            or exc.__cause__ is not None
            or (plain is None and isinstance(exc, Rejection))
        ):
            rejection = rejection_in(exc)
            if rejection is not None:
                if exc is rejection and exc.__cause__ is None and self.last_error is not None:
                    exc.__cause__ = self.last_error
                self.last_error = None
                return self.give_up(exc, None, ErrorClass.TIMEOUT, _rejected_reason(rejection))
        self.last_error = exc
        if policy.limiter is not None and plain is None:  # a plain exception asks for no pause
            self.pause_for = _server_pause(exc, result, policy.max_retry_after)
        if plain is not None:
            error_class = plain
        elif known is not None:  # classified by spends(): the classifier runs once
            error_class = known
        else:
            error_class = policy.classify(exc) if exc is not None else _result_class(result)
        self.error_class = error_class
        if error_class not in policy.retryable:
            on = policy.on
            if (
                on is None
                or exc is None
                or not (isinstance(exc, on) if isinstance(on, tuple) else on(exc))
            ):
                return self.give_up(exc, result, error_class, f"not retryable: {error_class.name}")
            self.matched_on = True
        else:
            self.matched_on = False
        if not policy.guarded:  # no budget, no stop_event: the attempt count alone
            if attempt >= self.max_attempts:
                return self.give_up(exc, result, error_class, "retries exhausted")
        else:
            if spent is None:  # a failure counts against the budget, the last one too
                spent = policy.budget is None or policy.budget.record_failure()
            if attempt >= self.max_attempts:
                return self.give_up(exc, result, error_class, "retries exhausted")
            if not spent:
                if _events.SINK is not None:
                    _events.SINK.budget_refused(policy.budget)
                return self.give_up(exc, result, error_class, "the retry budget refused a retry")
            if policy.stop_event is not None and policy.stop_event.is_set():
                return self.give_up(exc, result, error_class, "stop_event is set")
        low = policy.draw_low
        if low is not None:  # policy.next_delay(self), inlined: see proportional_draw
            nominal = self.nominal
            rng = policy.draw_rng
            draw = rng if rng is not None else _random or _shared_random()
            delay = nominal * (low + policy.draw_span * draw.random())
            doubled = nominal * 2.0
            cap = policy.max_delay
            self.nominal = doubled if doubled < cap else cap
            if delay > cap:
                delay = cap
        else:
            step = policy.next_delay
            delay = 0.0 if step is None else step(self)
        asked = None
        # Only a result or an exception with a response or headers can carry a Retry-After.
        if plain is None and (exc is None or hasattr(exc, "response") or hasattr(exc, "headers")):
            asked = retry_after(result if exc is None else exc)
            if asked is not None:
                waited = server_wait(delay, asked, policy.max_retry_after)
                if waited is None:
                    return self.server_too_slow(exc, result, error_class, asked, None)
                delay = waited
        if DEFAULTS.no_wait:
            delay = 0.0
        gate = self.gate
        if gate is not None:
            closed_for = gate.__resilient_remaining__()  # no round trip to a fresh store
            if closed_for > delay:  # the next attempt would only be rejected
                self.closed_for = closed_for
                reason = f"circuit {gate.name!r} is open for {seconds(closed_for)} s more"
                return self.give_up(exc, result, error_class, reason)
        log = self.logger.isEnabledFor(_WARNING)
        if log or policy.reads_now:
            now = self.clock.monotonic()  # read only when something needs it
            deadline_at = self.deadline_at
            if deadline_at is not None and now + delay > deadline_at:
                if asked is not None and delay == asked:
                    return self.server_too_slow(exc, result, error_class, asked, deadline_at)
                return self.give_up(
                    exc, result, error_class, "the deadline would pass during the wait"
                )
            if log:
                self.log_retry(exc, result, error_class, delay, asked, now)
            if policy.on_retry is not None:
                self.tell(policy.on_retry, exc, result, error_class, delay, now)
        if _events.SINK is not None:
            _events.SINK.retried(self.target.name, attempt, error_class, delay, exc, result)
        if plain is None and hasattr(exc, "fp"):  # an open response: urllib's HTTPError
            self.closes = exc
        return delay

    def tell(
        self,
        on_retry: Callable[[RetryState], object],
        exc: BaseException | None,
        result: Any,
        error_class: ErrorClass,
        delay: float,
        now: float,
    ) -> None:
        """Call ``on_retry`` with this retry's ``RetryState``."""
        from resilient._types import RetryState  # noqa: PLC0415 - only hooks pay for dataclasses

        on_retry(
            RetryState(
                self.target.name, self.attempt, exc, error_class, delay, now - self.start, result
            )
        )

    def log_retry(
        self,
        exc: BaseException | None,
        result: Any,
        error_class: ErrorClass,
        delay: float,
        asked: float | None,
        now: float,
    ) -> None:
        target = self.target
        error_type, error = _error_fields(exc, result)
        extra: dict[str, object] = {
            "event": "retry_scheduled",
            "function": target.name,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "error_class": error_class,
            "delay": round(delay, 6),
            "elapsed": round(now - self.start, 6),
            "error_type": error_type,
            "error": error,
        }
        if asked is not None:
            extra["retry_after"] = round(asked, 6)
        self.logger.warning(
            "retrying %s in %s s%s (attempt %d of %d) after %s",
            target.label,
            seconds(delay),
            " as Retry-After asked" if asked is not None and delay == asked else "",
            self.attempt + 1,
            self.max_attempts,
            _describe(exc, result),
            extra=extra,
        )

    def server_too_slow(
        self,
        exc: BaseException | None,
        result: Any,
        error_class: ErrorClass,
        asked: float,
        deadline_at: float | None,
    ) -> float:
        """Give up on a server whose ``Retry-After`` cannot be honoured: never retry it early."""
        if deadline_at is None:
            limit = f"more than max_retry_after={seconds(self.policy.max_retry_after)} s"
        else:
            limit = "past the deadline"
        reason = f"the server asked to wait {seconds(asked)} s (Retry-After), {limit}"
        return self.give_up(exc, result, error_class, reason, always=True)

    def give_up(
        self,
        exc: BaseException | None,
        result: Any,
        error_class: ErrorClass,
        reason: str,
        *,
        always: bool = False,
    ) -> float:
        """Note on the exception and log why the call ends here; return ``_GIVE_UP``.

        Nothing is noted or logged when nothing was retried (the caller sees
        the error untouched), unless *always*: a server's wait refused says so.
        Every reason but a failure the policy does not retry arms the fallback.
        """
        retryable = error_class in self.policy.retryable or self.matched_on
        if retryable or (exc is not None and rejection_in(exc) is not None):
            self.fallback = self.policy.fallback
        ran = self.attempt - (exc is not None and self.not_run(exc))
        if ran == 0 or (
            not always and self.attempt == 1 and (self.max_attempts == 1 or not retryable)
        ):
            return _GIVE_UP  # nothing was retried: the caller sees the error untouched
        elapsed = self.clock.monotonic() - self.start
        what = f"{ran} attempt{'s' if ran != 1 else ''} over {elapsed:.3f} s ({reason})"
        if exc is not None:
            _note(exc, f"resilient: {what}")
        if _events.SINK is not None:
            _events.SINK.gave_up(self.target.name, ran, error_class, exc, result)
        logger = self.logger
        if self.target.logs_outcome and logger.isEnabledFor(_ERROR):
            error_type, error = _error_fields(exc, result)
            outcome = "returned" if exc is None else "fallback" if self.fallback else "raised"
            logger.error(
                "giving up on %s after %s: %s; %s",
                self.target.label,
                what,
                _describe(exc, result),
                _ENDINGS[outcome],
                extra={
                    "event": "retry_gave_up",
                    "function": self.target.name,
                    "attempt": ran,
                    "max_attempts": self.max_attempts,
                    "error_class": error_class,
                    "reason": reason,
                    "elapsed": round(elapsed, 6),
                    "error_type": error_type,
                    "error": error,
                    "outcome": outcome,
                },
            )
        return _GIVE_UP

    def wait(self, delay: float) -> bool:
        """Wait *delay* seconds before the next attempt; ``False`` when ``stop_event`` ended it.

        With the real clock a wait listens to a ``threading.Event`` and ends
        as soon as it is set; with any other clock (or an ``asyncio.Event``,
        which a thread cannot wait on) the event is checked when the wait ends.
        """
        event = self.policy.stop_event
        if event is None:
            self.clock.sleep(delay)
            return True
        if self.policy.stop_wait == "thread" and self.real_time(time.sleep is _SLEEP):
            end = time.monotonic() + delay
            remaining = delay
            # In slices: Event.wait refuses a timeout above threading.TIMEOUT_MAX.
            wait: Callable[[float], bool] = getattr(event, "wait")  # noqa: B009 - not in StopEvent
            while not wait(min(remaining, _WAIT_SLICE)):
                remaining = end - time.monotonic()
                if remaining <= 0:
                    break
        else:
            self.clock.sleep(delay)
        return self.go_on(event)

    async def await_wait(self, delay: float) -> bool:
        """``wait``'s twin for ``async`` functions: an ``asyncio.Event`` ends the wait at once."""
        event = self.policy.stop_event
        if event is None:
            await self.clock.asleep(delay)
            return True
        import asyncio  # noqa: PLC0415 - only async loops with a stop_event get here

        if not self.real_time(asyncio.sleep is asyncio.tasks.sleep):
            await self.clock.asleep(delay)
            return self.go_on(event)
        end = time.monotonic() + delay
        if self.policy.stop_wait == "async":
            wait_async: Callable[[], Awaitable[object]] = getattr(event, "wait")  # noqa: B009
            waiter = asyncio.ensure_future(wait_async())
            try:
                await asyncio.wait((waiter,), timeout=delay)
            finally:
                waiter.cancel()
            if not waiter.done() or waiter.cancelled() or waiter.exception() is None:
                return self.go_on(event)
            # Its wait() raised: an asyncio.Event bound to another event loop. Look at it instead.
        # A threading.Event seen from a coroutine: looked at every few hundredths.
        while not event.is_set() and (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, _POLL))
        return self.go_on(event)

    def real_time(self, sleep_unpatched: bool) -> bool:
        """Whether waits happen in real time: the system clock, its sleep not patched."""
        return self.clock is SYSTEM_CLOCK and sleep_unpatched

    def go_on(self, event: StopEvent) -> bool:
        """After a wait: ``True`` to make the next attempt, else give up (``stop_event``)."""
        if not event.is_set():
            return True
        self.give_up(self.last_error, None, self.error_class, "stop_event was set during the wait")
        return False

    def not_run(self, exc: BaseException) -> bool:
        """Whether *exc* is the composed breaker refusing the call: the function did not run.

        (A rejection from a breaker used inside the function means it ran.)
        """
        gate = self.gate
        return exc is self.paced_out or (
            gate is not None
            and isinstance(exc, Rejection)
            and getattr(exc, "breaker_name", None) == gate.name
        )

    def refused(self, exc: Exception) -> None:
        """The limiter refused the next attempt within the time left: the call ends with it.

        Waiting out a backoff cannot help (the limiter already said the wait
        is longer than the time left), so the refusal ends the call at once,
        chained to the last failure of the function, noted and logged as a
        give-up (and handed to ``fallback`` when there is one).
        """
        if exc.__cause__ is None and self.last_error is not None:
            exc.__cause__ = self.last_error
        self.last_error = None
        self.attempt += 1
        self.paced_out = exc
        wait = getattr(exc, "retry_after", None)
        name = getattr(self.policy.limiter, "name", "?")
        when = f" in {seconds(wait)} s" if isinstance(wait, float) else ""
        reason = f"rate limiter {name!r} would admit the next attempt only{when}, past the deadline"
        self.give_up(exc, None, ErrorClass.TRANSIENT, reason)


# What a give-up line says happens next: its ``outcome`` field (the key), and the end
# of its message.
_ENDINGS: dict[str, str] = {
    "raised": "the last error is raised",
    "fallback": "the fallback answers",
    "returned": "the last result is returned",
}


def fall_back(call: RetryCall, failure: Exception) -> Any:
    """What ``fallback(failure)`` gives: an exception it raises has *failure* as its context.

    As if the fallback ran in an ``except`` block around the call, so the
    traceback of a fallback that fails shows what it was answering. An
    ``async def`` fallback's coroutine is wrapped to do the same when awaited.
    """
    fallback = call.fallback
    assert fallback is not None
    try:
        value = fallback(failure)
    except BaseException as exc:
        _chain(exc, failure)
        raise
    if call.policy.fallback_is_async:
        return _awaited_fallback(value, failure)
    return value


async def _awaited_fallback(value: Awaitable[Any], failure: Exception) -> Any:
    try:
        return await value
    except BaseException as exc:
        _chain(exc, failure)
        raise


def _chain(exc: BaseException, failure: Exception) -> None:
    """Make *failure* the context of *exc*, unless it has one or says ``from None``."""
    if exc is not failure and exc.__context__ is None and not exc.__suppress_context__:
        exc.__context__ = failure


def _note(exc: BaseException, note: str) -> None:
    """Add the give-up *note*, replacing the one an earlier call left on the same object.

    An exception object raised again (a module-level instance, a mock's
    ``side_effect``) keeps one note of ours, the last, not one per call.
    """
    with _NOTE_LOCK:  # one object given up on by two threads at once still gets one note
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list) and notes:
            notes[:] = [n for n in cast_objects(notes) if not _is_give_up_note(n)]  # pyright: ignore[reportUnknownArgumentType]
        add_note(exc, note)


_NOTE_LOCK = _thread.allocate_lock()


def _is_give_up_note(note: object) -> bool:
    """Whether *note* is a give-up note of ours: ``resilient: 3 attempts over 1.000 s (...)``."""
    if not isinstance(note, str) or not note.startswith("resilient: "):
        return False
    count, space, rest = note[11:].partition(" ")
    return count.isdigit() and bool(space) and rest.startswith(("attempt over ", "attempts over "))


def _drop(failure: BaseException | None) -> None:
    """Close what a failure we retry past holds open: urllib's ``HTTPError`` is a response.

    Left to the garbage collector, its socket would end in a ``ResourceWarning``.
    Called only for failures with an ``fp`` (``RetryCall.closes``: it is rare).
    """
    close = getattr(failure, "close", None)
    if callable(close):
        import contextlib  # noqa: PLC0415 - rare: only failures with a response to close

        with contextlib.suppress(Exception):  # a half-broken response: best effort
            close()


def drop_response(call: RetryCall) -> None:
    """Close the response *call* retried past (``call.closes``), as the loops above do.

    For the ``retrying`` block, whose next attempt starts in ``_block``.
    """
    _drop(call.closes)
    call.closes = None


def _server_pause(exc: BaseException | None, result: Any, max_retry_after: float) -> float:
    """Seconds a 429 or 503 asked every caller to wait (``Retry-After``), capped; else 0.0."""
    source: Any = result if exc is None else exc
    code = response_status(source)
    if code is None:
        code = getattr(source, "status_code", None)
    if code != 429 and code != 503:
        return 0.0
    asked = retry_after(source)
    return 0.0 if asked is None else min(asked, max_retry_after)


_random: Random | None = None


def _shared_random() -> Random:
    """The generator ``random``'s functions share (``backoff``'s), kept here once drawn from."""
    global _random
    _random = _shared_rng()
    return _random


_PLAIN: dict[type[BaseException], ErrorClass | None] = {}
"""``_plain_class`` of the exception types seen, ``None`` included."""
_PLAIN_LIMIT = 512

_READ_ATTRIBUTES = ("error_class", "response", "headers", "status_code", "fp")
"""What the classifier and the retry loop read off a failure besides its type and chain."""
_OWN_LOOKUP = ("__getattr__", "__getattribute__", "__dict__")


def _plain_class(exc_type: type[BaseException]) -> ErrorClass | None:
    """The class a rule-less ``Classifier`` gives every plain instance of *exc_type*, or ``None``.

    A plain instance is one with an empty ``__dict__`` whose type defines
    none of ``_READ_ATTRIBUTES`` and looks attributes up as every exception
    does: nothing on it can carry a status, a response, an ``error_class`` or
    a ``Retry-After``, so the default rules decide by its type alone (the
    cached ``_type_rule``), and the loop need not look for any of them. Only
    a class the type decides on its own (not an instance rule such as
    urllib's ``HTTPError.code``) and not UNKNOWN (which walks the chain) is
    returned. Cached per type, as ``_type_rule`` is.
    """
    found: ErrorClass | None = None
    if not any(hasattr(exc_type, name) for name in _READ_ATTRIBUTES) and not any(
        name in vars(base)
        for base in exc_type.__mro__
        if base is not BaseException and base is not object
        for name in _OWN_LOOKUP
    ):
        rule = _TYPE_CACHE.get(exc_type) or _type_rule(exc_type)
        if isinstance(rule, ErrorClass) and rule is not _UNKNOWN:
            found = rule
    if len(_PLAIN) >= _PLAIN_LIMIT:  # types made in a loop must not grow it
        _PLAIN.clear()
    _PLAIN[exc_type] = found
    return found


def _rejected_reason(exc: BaseException) -> str:
    name = getattr(exc, "breaker_name", None)
    circuit = f"circuit {name!r}" if isinstance(name, str) else "a circuit"
    return f"then a call was rejected: {circuit} is open"


def _result_class(result: object) -> ErrorClass:
    """Classify a result rejected by ``retry_on_result``: a response by its status code.

    A rejected value without a failing status (a 200 with an empty body, a
    sentinel) is TRANSIENT: the predicate said it is worth another attempt.
    """
    code = getattr(result, "status_code", None)
    if not isinstance(code, int) or isinstance(code, bool):
        code = response_status(result)
    found = (status_class(code) if code is not None else None) or ErrorClass.TRANSIENT
    verdict = None if code is None else should_retry(result)  # x-should-retry, as for errors
    if verdict is None:
        return found
    if not verdict:
        return ErrorClass.FATAL
    return ErrorClass.TRANSIENT if found is ErrorClass.FATAL else found


def _describe(exc: BaseException | None, result: object) -> str:
    """The failure for a log message: the error, or the rejected result."""
    if exc is not None:
        from resilient._redact import describe_error  # noqa: PLC0415 - only log lines need it

        return describe_error(exc)
    code = getattr(result, "status_code", None)
    return f"rejected result (status {code})" if code is not None else "rejected result"


def _error_fields(exc: BaseException | None, result: object) -> tuple[str | None, str]:
    if exc is not None:
        from resilient._redact import error_fields  # noqa: PLC0415 - only log lines need it

        return error_fields(exc)
    return None, _describe(None, result)


def run_retry(call: RetryCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The retry loop: call until success or a reason to give up; raise the last error."""
    func, policy, clock = call.target.func, call.policy, call.clock
    token = None if call.deadline_at is None else enter_deadline(call.deadline_at, clock)
    limiter, stop_event, budget = policy.limiter, policy.stop_event, policy.budget
    try:
        failure, call.failure = call.failure, None  # taken over: see RetryCall.failure
        result: Any = None
        while True:
            if failure is None:
                if limiter is not None:
                    try:  # every attempt, the first included, within the time left
                        limiter.acquire()
                    except Throttled as exc:  # a store's own error is not a refusal
                        call.refused(exc)
                        if call.fallback is None:
                            raise
                        return fall_back(call, exc)
                try:
                    result = func(*args, **kwargs) if kwargs else func(*args)
                except Exception as exc:
                    failure = exc
                else:
                    if type(result) in LAZY_RESULTS:
                        refuse_lazy_result(result, func, call.target.form)
                    if policy.retry_on_result is None or not policy.retry_on_result(result):
                        if budget is not None:  # a success refunds the budget
                            budget.record_success()
                        return result
            delay = call.after_failure(failure, result)
            if limiter is not None and call.pause_for > 0.0:  # every caller sharing it waits
                limiter.pause(call.pause_for)
                call.pause_for = 0.0
            if delay > 0 and stop_event is None:
                clock.sleep(delay)  # call.wait(), without a stop_event to listen to
            elif delay == _GIVE_UP or (delay > 0 and not call.wait(delay)):
                if failure is None:
                    return result
                if call.fallback is None:
                    raise failure
                return fall_back(call, failure)
            if call.closes is not None:  # an open response: urllib's HTTPError
                drop_response(call)
            failure = None  # only the last exception is kept alive
    finally:
        call.last_error = None  # nothing chains to it once the loop is over: free it now
        if token is not None:
            DEADLINE.reset(token)


async def run_retry_async(call: RetryCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The retry loop of ``async`` functions; ``run_retry``'s twin."""
    func, policy = call.target.func, call.policy
    token = None if call.deadline_at is None else enter_deadline(call.deadline_at, call.clock)
    limiter = policy.limiter
    try:
        failure, call.failure = call.failure, None  # taken over: see RetryCall.failure
        result: Any = None
        while True:
            if failure is None:
                if limiter is not None:
                    try:  # every attempt, the first included, within the time left
                        await limiter.acquire_async()
                    except Throttled as exc:  # a store's own error is not a refusal
                        call.refused(exc)
                        if call.fallback is None:
                            raise
                        value = fall_back(call, exc)
                        return await value if policy.fallback_is_async else value
                try:
                    result = await (func(*args, **kwargs) if kwargs else func(*args))
                except Exception as exc:
                    failure = exc
                else:
                    if policy.retry_on_result is None or not policy.retry_on_result(result):
                        if policy.budget is not None:  # a success refunds the budget
                            refund = getattr(policy.budget, "record_success_async", None)
                            if refund is None:
                                policy.budget.record_success()
                            else:  # a budget whose round trips are awaited
                                await refund()
                        return result
            spent = known = None
            if policy.budget is not None:
                spend = getattr(policy.budget, "record_failure_async", None)
                if spend is not None:
                    spends, known = call.spends(failure, result)
                    if spends:
                        spent = bool(await spend())
            delay = call.after_failure(failure, result, spent, known)
            if call.pause_for > 0.0 and limiter is not None:  # every caller sharing it waits
                await limiter.pause_async(call.pause_for)
                call.pause_for = 0.0
            if delay > 0 and policy.stop_event is None:
                await call.clock.asleep(delay)  # call.await_wait(), without a stop_event
            elif delay == _GIVE_UP or (delay > 0 and not await call.await_wait(delay)):
                if failure is None:
                    return result
                if call.fallback is None:
                    raise failure
                value = fall_back(call, failure)
                return await value if policy.fallback_is_async else value
            if call.closes is not None:  # an open response: urllib's HTTPError
                drop_response(call)
            failure = None  # only the last exception is kept alive
    finally:
        call.last_error = None  # nothing chains to it once the loop is over: free it now
        if token is not None:
            DEADLINE.reset(token)


def _decorate(func: Callable[P, T], policy: Policy) -> Callable[P, T]:
    """Wrap *func* in the wrapper its policy needs; the happy path is specialised here.

    The wrappers without a deadline, budget, limiter or result predicate read
    the clock (the call's start, which the elapsed time of the note, the logs
    and ``RetryState`` count from) and call the function; everything else
    happens in ``RetryCall`` after a failure. A call without keywords is
    forwarded as ``func(*args)``: ``func(*args, **kwargs)`` copies the empty
    dict of keywords first, which costs about a tenth of the whole wrapper.
    For a plain function of named parameters those wrappers are written
    again with its parameters (``_wrap``), which costs less still.
    """
    if isinstance(func, (staticmethod, classmethod)):
        # Stacked above @staticmethod or @classmethod: wrap the function inside.
        descriptor: Any = func  # pyright: ignore[reportUnknownVariableType]
        return type(descriptor)(_decorate(descriptor.__func__, policy))  # type: ignore[no-any-return]
    if _is_count(func):
        raise TypeError(
            f"@retry takes its options by keyword: write @retry(max_retries={func!r}), "
            f"not @retry({func!r})"
        )
    check_callable(func, "@retry", sync_only=False)
    if policy.fallback_is_async and not is_async_callable(func):
        _refuse_async_fallback(policy, "@retry on the plain function " + repr(name_of(func)))
    if policy.budget is not None and not is_async_callable(func):
        refused = awaited_budget_refusal(
            policy.budget,
            f"@retry on the plain function {name_of(func)!r}",
            "@retry on an async def function",
        )
        if refused is not None:
            raise TypeError(refused)
    target = RetryTarget(func, policy)
    full_loop = policy.needs_full_loop
    own_clock = policy.clock

    if is_async_callable(func):
        if full_loop:

            async def retrying_async(*args: Any, **kwargs: Any) -> Any:
                return await run_retry_async(RetryCall(target, None), args, kwargs)

        elif own_clock is not None:
            afunc: Callable[..., Awaitable[Any]] = func

            async def retrying_async(*args: Any, **kwargs: Any) -> Any:
                start = own_clock.monotonic()
                try:
                    # Without keywords, no copy of the empty dict: see _decorate.
                    return await (afunc(*args, **kwargs) if kwargs else afunc(*args))
                except Exception as exc:
                    call = RetryCall(target, start, exc)  # the call takes the failure over
                # Outside the `except`: later failures must not chain onto this one.
                return await run_retry_async(call, args, kwargs)

        else:
            afunc = func

            async def retrying_async(*args: Any, **kwargs: Any) -> Any:
                # The process clock, read directly when it is the system's: a method
                # call costs as much as the reading.
                start = (
                    time.monotonic()
                    if DEFAULTS.clock is SYSTEM_CLOCK
                    else DEFAULTS.clock.monotonic()
                )
                try:
                    # Without keywords, no copy of the empty dict: see _decorate.
                    return await (afunc(*args, **kwargs) if kwargs else afunc(*args))
                except Exception as exc:
                    call = RetryCall(target, start, exc)  # the call takes the failure over
                # Outside the `except`: later failures must not chain onto this one.
                return await run_retry_async(call, args, kwargs)

        return _wrap(
            func,
            retrying_async,
            None if full_loop else "retrying_async_own_clock" if own_clock else "retrying_async",
        )

    if full_loop:

        def retrying(*args: Any, **kwargs: Any) -> Any:
            return run_retry(RetryCall(target, None), args, kwargs)

    else:
        # The clock the happy path may read directly, with no check of the result: the
        # system clock once a call under it returned something that is not a coroutine (a
        # plain def that returns one returns one every time, so the first call tells).
        checked_under: Clock | None = None

        def first_call(clock: Clock, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            """A call that checks its result: the first one, or one under a test clock."""
            nonlocal checked_under
            start = clock.monotonic()
            result: Any = None
            call: RetryCall | None = None
            try:
                result = func(*args, **kwargs)
            except Exception as exc:
                call = RetryCall(target, start, exc)  # the call takes the failure over
            else:
                if type(result) in LAZY_RESULTS:
                    refuse_lazy_result(result, func, "@retry")
            if call is not None:  # outside the `except`: later failures must not chain onto this
                result = run_retry(call, args, kwargs)  # which checks each result it returns
            if clock is SYSTEM_CLOCK or clock is own_clock:
                checked_under = clock
            return result

        sfunc: Callable[..., Any] = func  # typed as the wrappers call it: maybe without keywords

        if own_clock is not None:

            def retrying(*args: Any, **kwargs: Any) -> Any:
                if checked_under is None:
                    return first_call(own_clock, args, kwargs)
                start = own_clock.monotonic()
                try:
                    # Without keywords, no copy of the empty dict: see _decorate.
                    return sfunc(*args, **kwargs) if kwargs else sfunc(*args)
                except Exception as exc:
                    call = RetryCall(target, start, exc)  # the call takes the failure over
                return run_retry(call, args, kwargs)  # outside the `except`: see first_call

        else:

            def retrying(*args: Any, **kwargs: Any) -> Any:
                # One test for both: the process clock is the system's, and checked.
                if DEFAULTS.clock is not checked_under:
                    return first_call(DEFAULTS.clock, args, kwargs)
                # The system clock read directly: a method call costs as much as the reading.
                start = time.monotonic()
                try:
                    # Without keywords, no copy of the empty dict: see _decorate.
                    return sfunc(*args, **kwargs) if kwargs else sfunc(*args)
                except Exception as exc:
                    call = RetryCall(target, start, exc)  # the call takes the failure over
                return run_retry(call, args, kwargs)  # outside the `except`: see first_call

    return _wrap(
        func, retrying, None if full_loop else "retrying_own_clock" if own_clock else "retrying"
    )


def _gate_of(func: Callable[..., Any]) -> Gate | None:
    """The breaker that ``@breaker`` (or ``functools.wraps`` over it) left on *func*.

    Read from *func*'s own ``__dict__``, never through ``getattr``: a proxy
    (an ``xmlrpc.client.ServerProxy`` method, a mock) answers every attribute,
    and asking it would send a call of its own.
    """
    try:
        # Typed as what @breaker leaves there; anything else is told apart below.
        attributes: dict[str, Gate] = object.__getattribute__(func, "__dict__")
    except AttributeError:
        return None
    gate = attributes.get("__resilient_breaker__") if type(attributes) is dict else None
    return gate if hasattr(type(gate), "__resilient_remaining__") else None


def _wrap(
    func: Callable[..., Any], generic: Callable[..., Any], signed: str | None
) -> Callable[..., Any]:
    """*generic*, a wrapper of ``_decorate``, or its twin *signed* in ``_SIGNED``, written
    for *func*'s own parameters.

    A wrapper taking ``*args, **kwargs`` builds a tuple and a dict at every
    call and forwards them through ``CALL_FUNCTION_EX``, which costs more than
    the rest of the happy path together (the clock read included). For a plain
    function whose parameters are named (no ``*args``/``**kwargs``), the
    happy path of ``_decorate``'s wrappers is written again with those very
    parameters: same names, kinds and defaults, so every call binds as it
    would have bound to *func*, and is forwarded as it came. A default the
    caller left out is passed on explicitly: the function's own object (its
    keyword-only defaults are its very dict; a tuple assigned to its
    ``__defaults__`` after decoration is not seen).
    """
    wrapper = None if signed is None else _signed(func, generic, signed)
    return functools.wraps(func)(generic if wrapper is None else wrapper)


_SIGNED_LIMIT = 16
"""Parameters beyond which the generic wrapper is kept (a wrapper is compiled per count)."""

_CO_VARARGS = 0x04  # inspect.CO_VARARGS and CO_VARKEYWORDS, without importing inspect
_CO_VARKEYWORDS = 0x08

# The happy path of _decorate's wrappers, for a function of named parameters (see _wrap):
# PARAMETERS, ARGUMENTS, FORWARDED and KEYWORDS stand for them, as each line needs them
# (_signed_code). Each wrapper's code says it was written here: a traceback shows these lines
# (a module loaded without __file__, e.g. from a frozen bundle, names _SIGNED_SOURCE instead).
_SIGNED_SOURCE: str = globals().get("__file__") or "<resilient._retry>"
_SIGNED_LINE = sys._getframe().f_lineno + 2  # pyright: ignore[reportPrivateUsage]
_SIGNED = """\
def wrappers(checked_under, first_call, sfunc, afunc, own_clock, target, keywords):
    def retrying(PARAMETERS):
        if DEFAULTS.clock is not checked_under:
            return first_call(DEFAULTS.clock, (ARGUMENTS), KEYWORDS)
        start = time.monotonic()
        try:
            return sfunc(FORWARDED)
        except Exception as exc:
            call = RetryCall(target, start, exc)
        return run_retry(call, (ARGUMENTS), KEYWORDS)

    def retrying_own_clock(PARAMETERS):
        if checked_under is None:
            return first_call(own_clock, (ARGUMENTS), KEYWORDS)
        start = own_clock.monotonic()
        try:
            return sfunc(FORWARDED)
        except Exception as exc:
            call = RetryCall(target, start, exc)
        return run_retry(call, (ARGUMENTS), KEYWORDS)

    async def retrying_async(PARAMETERS):
        clock = DEFAULTS.clock
        start = time.monotonic() if clock is SYSTEM_CLOCK else clock.monotonic()
        try:
            return await afunc(FORWARDED)
        except Exception as exc:
            call = RetryCall(target, start, exc)
        return await run_retry_async(call, (ARGUMENTS), KEYWORDS)

    async def retrying_async_own_clock(PARAMETERS):
        start = own_clock.monotonic()
        try:
            return await afunc(FORWARDED)
        except Exception as exc:
            call = RetryCall(target, start, exc)
        return await run_retry_async(call, (ARGUMENTS), KEYWORDS)
"""

_SIGNED_CODE: dict[tuple[str, int, int], CodeType] = {}
"""The code of a wrapper of ``_SIGNED``, by its name and its count of positional and
keyword-only parameters."""

_SIGNED_RENAMED: dict[tuple[str, tuple[str, ...], int, int], CodeType] = {}
"""That code with a function's parameter names, by the wrapper's name, the parameters'
names, how many are positional and how many positional-only: methods share ``(self)``."""
_SIGNED_RENAMED_LIMIT = 1024


def _signed(
    func: Callable[..., Any], generic: Callable[..., Any], name: str
) -> Callable[..., Any] | None:
    """The wrapper *name* of ``_SIGNED`` for *func*, sharing *generic*'s cells; ``None``
    when *func* is not a plain function of at most ``_SIGNED_LIMIT`` named parameters."""
    if type(func) is not FunctionType:
        return None
    code = func.__code__
    positional, keyword_only = code.co_argcount, code.co_kwonlyargcount
    if code.co_flags & (_CO_VARARGS | _CO_VARKEYWORDS) or positional + keyword_only > _SIGNED_LIMIT:
        return None
    template = _signed_code(name, positional, keyword_only)
    names = code.co_varnames[: positional + keyword_only]
    key = (name, names, positional, code.co_posonlyargcount)
    renamed = _SIGNED_RENAMED.get(key)
    if renamed is None:
        renamed = _renamed(template, names, positional, code.co_posonlyargcount)
        if renamed is None:
            return None
        if len(_SIGNED_RENAMED) >= _SIGNED_RENAMED_LIMIT:
            _SIGNED_RENAMED.clear()
        _SIGNED_RENAMED[key] = renamed
    cells = dict(zip(generic.__code__.co_freevars, generic.__closure__ or (), strict=True))
    cells["keywords"] = CellType(names[positional:])
    if not all(name in cells for name in template.co_freevars):
        return None  # a wrapper of _decorate no longer has a variable the template reads
    wrapper = FunctionType(
        renamed,
        globals(),
        template.co_name,
        func.__defaults__,
        tuple(cells[name] for name in template.co_freevars),  # checked_under: the same cell
    )
    if func.__kwdefaults__ is not None:
        wrapper.__kwdefaults__ = func.__kwdefaults__  # the same dict: a change reaches both
    return wrapper


def _renamed(
    template: CodeType, names: tuple[str, ...], positional: int, positional_only: int
) -> CodeType | None:
    """*template* (``_signed_code``) taking the parameters *names*, of which so many are
    positional (and positional-only); ``None`` when it is not compiled as expected.

    The template's parameters are ``a0, a1, ...`` then the keyword-only ``k0, k1, ...``.
    The keywords it forwards are constants: one tuple of names (``KW_NAMES``, or a
    ``BUILD_CONST_KEY_MAP``), or one string per name when the compiler builds the dict
    one key at a time (16 keywords and more). Either is renamed; the code is refused
    (the generic wrapper is kept) unless every keyword is found named so, once.
    """
    keyword_only = len(names) - positional
    parameters = tuple(f"a{i}" for i in range(positional))
    keywords = tuple(f"k{i}" for i in range(keyword_only))
    if template.co_varnames[: len(names)] != parameters + keywords:
        return None
    rename = dict(zip(keywords, names[positional:], strict=True))
    found: list[str] = []

    def renamed(constant: Any) -> Any:
        if type(constant) is str and constant in rename:
            found.append(constant)
            return rename[constant]
        if type(constant) is tuple and all(c in rename for c in constant):  # pyright: ignore
            found.extend(constant)  # pyright: ignore[reportUnknownArgumentType]
            return tuple(rename[c] for c in constant)  # pyright: ignore
        return constant  # pyright: ignore[reportUnknownVariableType]

    consts = tuple(renamed(c) for c in template.co_consts)
    if sorted(found) != sorted(keywords):  # each keyword forwarded by its name, once
        return None
    own = template.co_varnames[len(names) :]
    return template.replace(
        co_varnames=names + tuple("." + name for name in own),  # never a parameter's name
        co_freevars=tuple("." + name for name in template.co_freevars),
        co_posonlyargcount=positional_only,
        co_consts=consts,  # the keywords forwarded, named as the function names them
    )


def _signed_code(name: str, positional: int, keyword_only: int) -> CodeType:
    """The code of the wrapper *name* of ``_SIGNED`` for so many parameters (compiled once)."""
    found = _SIGNED_CODE.get((name, positional, keyword_only))
    if found is None:
        lines = _SIGNED.splitlines()
        first = next(n for n, line in enumerate(lines) if line.endswith(f" {name}(PARAMETERS):"))
        last = next(
            (
                n
                for n in range(first + 1, len(lines))
                if lines[n].startswith(("    def ", "    async def "))
            ),
            len(lines),
        )
        parameters = [f"a{i}" for i in range(positional)]
        keywords = [f"k{i}" for i in range(keyword_only)]
        arguments = "".join(f"{a}, " for a in parameters)
        text = (
            "\n".join([lines[0], *lines[first:last]])  # the enclosing def: its closure
            .replace("PARAMETERS", ", ".join(parameters + (["*", *keywords] if keywords else [])))
            .replace("(ARGUMENTS)", f"({arguments})")
            .replace("FORWARDED", arguments + ", ".join(f"{k}={k}" for k in keywords))
            .replace(
                "KEYWORDS",
                f"dict(zip(keywords, ({''.join(k + ', ' for k in keywords)})))"
                if keywords
                else "{}",
            )
        )
        (wrappers,) = (
            c for c in compile(text, _SIGNED_SOURCE, "exec").co_consts if type(c) is CodeType
        )
        (code,) = (c for c in wrappers.co_consts if type(c) is CodeType)
        found = _SIGNED_CODE[name, positional, keyword_only] = code.replace(
            co_firstlineno=_SIGNED_LINE + first  # its line in this file, and the next ones after it
        )
    return found


@overload
def retry(func: Callable[P, T], /) -> Callable[P, T]: ...


@overload
def retry(  # noqa: F811 - the overload shim above is typing.overload to type checkers
    *,
    max_retries: int = 3,
    base_delay: Seconds = 1.0,
    max_delay: Seconds = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    deadline: Seconds | None = None,
    classifier: Callable[..., ErrorClass] = classify,
    on_retry: Callable[[RetryState], object] | None = None,
    budget: Budget | None = None,
    clock: Clock | None = None,
    retry_on_result: Callable[[Any], bool] | None = None,
    max_retry_after: Seconds = DEFAULT_MAX_RETRY_AFTER,
    on: RetryOn | None = None,
    fallback: None = None,
    logger: Logger | None = None,
    stop_event: StopEvent | None = None,
    limiter: Limiter | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]: ...


@overload
def retry(  # type: ignore[overload-overlap]  # noqa: F811  # pyright: ignore[reportOverlappingOverload]
    *,
    max_retries: int = 3,
    base_delay: Seconds = 1.0,
    max_delay: Seconds = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    deadline: Seconds | None = None,
    classifier: Callable[..., ErrorClass] = classify,
    on_retry: Callable[[RetryState], object] | None = None,
    budget: Budget | None = None,
    clock: Clock | None = None,
    retry_on_result: Callable[[Any], bool] | None = None,
    max_retry_after: Seconds = DEFAULT_MAX_RETRY_AFTER,
    on: RetryOn | None = None,
    fallback: Callable[[Exception], Awaitable[R]],
    logger: Logger | None = None,
    stop_event: StopEvent | None = None,
    limiter: Limiter | None = None,
) -> AsyncFallbackDecorator[R]: ...


@overload
def retry(  # noqa: F811
    *,
    max_retries: int = 3,
    base_delay: Seconds = 1.0,
    max_delay: Seconds = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    deadline: Seconds | None = None,
    classifier: Callable[..., ErrorClass] = classify,
    on_retry: Callable[[RetryState], object] | None = None,
    budget: Budget | None = None,
    clock: Clock | None = None,
    retry_on_result: Callable[[Any], bool] | None = None,
    max_retry_after: Seconds = DEFAULT_MAX_RETRY_AFTER,
    on: RetryOn | None = None,
    fallback: Callable[[Exception], R],
    logger: Logger | None = None,
    stop_event: StopEvent | None = None,
    limiter: Limiter | None = None,
) -> FallbackDecorator[R]: ...


def retry(  # noqa: F811
    func: Callable[P, T] = _NO_FUNCTION,
    /,
    *,
    max_retries: int = 3,
    base_delay: Seconds = 1.0,
    max_delay: Seconds = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    deadline: Seconds | None = None,
    classifier: Callable[..., ErrorClass] = classify,
    on_retry: Callable[[RetryState], object] | None = None,
    budget: Budget | None = None,
    clock: Clock | None = None,
    retry_on_result: Callable[[Any], bool] | None = None,
    max_retry_after: Seconds = DEFAULT_MAX_RETRY_AFTER,
    on: RetryOn | None = None,
    fallback: Callable[[Exception], Any] | None = None,
    logger: Logger | None = None,
    stop_event: StopEvent | None = None,
    limiter: Limiter | None = None,
) -> (
    Callable[P, T]
    | Callable[[Callable[P, T]], Callable[P, T]]
    | FallbackDecorator[Any]
    | AsyncFallbackDecorator[Any]
):
    """Retry a function, sync or ``async``, when it fails in a retryable way.

    Use as ``@retry`` or ``@retry(...)``. At most ``max_retries + 1`` attempts
    are made; before retry *n* (0-based) it waits
    ``min(base_delay * 2**n, max_delay)``, jittered. Failures are classified by
    *classifier*; only classes in *retryable_classes* (and the exceptions
    *on* matches) are retried, anything else is raised at once. When the call
    gives up, the last exception is raised (the original object, with a PEP
    678 note saying how many attempts were made over how long), or
    *fallback*'s value returned. Only ``Exception`` subclasses are ever caught.

    Args:
        max_retries: retries after the first attempt (``0``: one attempt).
        base_delay: nominal seconds before the first retry.
        max_delay: cap on the computed backoff of any single wait (not on a
            server's ``Retry-After``: see *max_retry_after*).
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
        max_retry_after: the longest ``Retry-After`` (or ``retry-after-ms``)
            honoured, in seconds, even beyond *max_delay*. A server that asks
            for longer, or for a wait past the *deadline*, is not retried
            early: the call gives up at once, the note saying what it asked.
        on: exception types (or a predicate ``(exc) -> bool``) retried
            whatever their class; other failures follow *retryable_classes*.
        fallback: ``(exc) -> result``, called instead of raising when the call
            gives up on a retryable failure (attempts, deadline, budget, an
            open circuit, *stop_event*); its value is the call's result. A
            failure that is not retried (FATAL...) is raised, never hidden.
            ``async def`` functions may have an ``async def`` fallback. An
            exception the fallback raises has the failure as its context.
        logger: where this function's retry lines go instead of the
            ``resilient.retry`` logger; same messages and fields.
        stop_event: a ``threading.Event`` or ``asyncio.Event``; once set, no
            new attempt starts and a wait in progress ends early (graceful
            shutdown): the call gives up with its last failure.
        limiter: a ``RateLimiter`` every attempt, the first included,
            acquires within the time left (``RateLimitExceeded`` at once
            when its turn would come past the *deadline*); a 429 or 503
            carrying a ``Retry-After`` pauses it for that long (at most
            *max_retry_after*), so every caller sharing it waits.

    Returns:
        The decorated function, with the same signature.
    """
    policy = Policy(**options_in(locals()))  # every keyword of the signature above
    if func is _NO_FUNCTION:
        return functools.partial(_decorate, policy=policy)
    return _decorate(func, policy)


@overload
@deprecated("retry_with_backoff() cannot run an 'async def' function: use retry_with_backoff_async")
def retry_with_backoff(
    func: Callable[..., Awaitable[Any]],
    /,
    *args: Any,
    max_retries: int = 3,
    base_delay: Seconds = 1.0,
    max_delay: Seconds = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    max_retry_after: Seconds = DEFAULT_MAX_RETRY_AFTER,
    on: RetryOn | None = None,
    fallback: Callable[[Exception], Any] | None = None,
    **kwargs: Any,
) -> None: ...


@overload
def retry_with_backoff(  # noqa: F811
    func: Callable[..., T],
    /,
    *args: Any,
    max_retries: int = 3,
    base_delay: Seconds = 1.0,
    max_delay: Seconds = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    max_retry_after: Seconds = DEFAULT_MAX_RETRY_AFTER,
    on: RetryOn | None = None,
    fallback: Callable[[Exception], T] | None = None,
    **kwargs: Any,
) -> T: ...


def retry_with_backoff(  # noqa: F811
    func: Callable[..., T] = _NO_FUNCTION,
    /,
    *args: Any,
    max_retries: int = 3,
    base_delay: Seconds = 1.0,
    max_delay: Seconds = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    max_retry_after: Seconds = DEFAULT_MAX_RETRY_AFTER,
    on: RetryOn | None = None,
    fallback: Callable[[Exception], T] | None = None,
    **kwargs: Any,
) -> T | None:
    """Call ``func(*args, **kwargs)`` and retry it as ``@retry`` would.

    The keyword arguments not named here go to *func* (so *func* cannot
    receive arguments named like these). For the other options of ``@retry``
    (deadline, budget, clock...) use ``retry(...)(func)(*args)``.
    ``max_retry_after``, ``on`` and ``fallback`` are ``@retry``'s.
    ``async def`` functions need ``retry_with_backoff_async``.

    Returns:
        What *func* returned on the first attempt that succeeded, or what
        *fallback* returned when the call gave up.
    """
    if func is _NO_FUNCTION:
        raise TypeError(
            "retry_with_backoff(func, *args) calls func now and needs it; to decorate a "
            "function, use @retry(max_retries=..., base_delay=...) instead"
        )
    check_callable(func, "retry_with_backoff()", sync_only=True)
    policy = _plain_policy(
        max_retries, base_delay, max_delay, jitter, retryable_classes, max_retry_after, on, fallback
    )
    if policy.fallback_is_async:
        _refuse_async_fallback(policy, "retry_with_backoff()")
    result: T = run_retry(RetryCall(RetryTarget(func, policy), None), args, kwargs)
    return result


async def retry_with_backoff_async(
    func: Callable[..., Awaitable[T]],
    /,
    *args: Any,
    max_retries: int = 3,
    base_delay: Seconds = 1.0,
    max_delay: Seconds = 60.0,
    jitter: JitterSpec = True,
    retryable_classes: Collection[ErrorClass] = DEFAULT_RETRYABLE,
    max_retry_after: Seconds = DEFAULT_MAX_RETRY_AFTER,
    on: RetryOn | None = None,
    fallback: Callable[[Exception], T | Awaitable[T]] | None = None,
    **kwargs: Any,
) -> T:
    """Await ``func(*args, **kwargs)`` and retry it; the ``async`` twin of ``retry_with_backoff``.

    Returns:
        What *func* returned on the first attempt that succeeded, or what
        *fallback* returned (awaited, when it is ``async def``) when the call
        gave up.
    """
    check_callable(func, "retry_with_backoff_async()", sync_only=False)
    policy = _plain_policy(
        max_retries, base_delay, max_delay, jitter, retryable_classes, max_retry_after, on, fallback
    )
    result: T = await run_retry_async(RetryCall(RetryTarget(func, policy), None), args, kwargs)
    return result


def _is_count(value: object) -> bool:
    """Whether *value* is an int, as in ``@retry(5)``."""
    return isinstance(value, int) and not isinstance(value, bool)


def awaited_budget_refusal(budget: object, form: str, instead: str) -> str | None:
    """Why a sync *form* refuses *budget*: its round trips are awaited; ``None`` if it is not.

    An ``AsyncRedisRetryBudget`` (anything with ``record_failure_async``): a
    sync loop could only block the event loop on it. Checked where the
    options are validated, never per call.
    """
    if budget is None or not callable(getattr(budget, "record_failure_async", None)):
        return None
    return (
        f"{form} cannot use budget={budget!r}: its operations are coroutines (its round "
        "trips are awaited on a redis.asyncio client), which a sync call form cannot "
        f"await without blocking the event loop; use {instead} (or give it a synchronous "
        "budget such as resilient.RetryBudget or resilient.redis.RedisRetryBudget)"
    )


def _refuse_async_fallback(policy: Policy, form: str) -> NoReturn:
    raise TypeError(
        f"fallback must be a plain function for {form}: "
        f"{name_of(policy.fallback)!r} is 'async def', and its coroutine would be returned "
        "unawaited; use a plain function, or retry an 'async def' function"
    )


def _plain_policy(
    max_retries: int,
    base_delay: Seconds,
    max_delay: Seconds,
    jitter: JitterSpec,
    retryable_classes: Collection[ErrorClass],
    max_retry_after: Seconds,
    on: RetryOn | None,
    fallback: Callable[[Exception], Any] | None,
) -> Policy:
    return shared_policy(
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
        max_retry_after=max_retry_after,
        on=on,
        fallback=fallback,
    )
