"""Strictly private. The types that cross the library's edge, kept off its call paths.

The protocols users implement (``Clock``, ``Jitter``; for type checkers only,
what ``budget=`` accepts and the breaker as the retry loop sees it) and the
``RetryState`` an ``on_retry`` hook receives. They live apart because
defining a ``Protocol`` imports ``typing``, more than the whole retry loop
costs to import; the loop needs none of them. So ``from resilient import retry`` never
loads this module: ``resilient.Clock``, ``resilient.backoff.Jitter`` and
``resilient.RetryState`` do, when first used, and the loop does once it has a
``RetryState`` to hand to a hook.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from resilient._compat import Record

__all__ = ["Clock", "Jitter", "JitterSpec", "RetryState", "Seconds"]


class Clock(Protocol):
    """What every primitive that waits or reads time is given.

    ``monotonic`` reads seconds from an arbitrary origin; ``sleep`` blocks the
    thread; ``asleep`` suspends the running coroutine.
    """

    def monotonic(self) -> float:
        """Seconds since an arbitrary, fixed origin; never goes backwards."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for *seconds*."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Suspend the calling coroutine for *seconds*."""
        ...


class Jitter(Protocol):
    """A jitter strategy: turns the nominal delay of one retry into the real one.

    ``previous`` is the delay actually used before the previous retry (``base``
    before the first), for strategies such as ``DecorrelatedJitter`` whose next
    value depends on the last one. The result must lie in ``[0, cap]``.
    """

    def __call__(self, nominal: float, previous: float, base: float, cap: float) -> float:
        """Return the delay to use before this retry."""
        ...


JitterSpec = bool | Jitter
"""What a ``jitter=`` parameter accepts: ``True``, ``False`` or a strategy."""

Seconds = float | timedelta
"""What a duration parameter accepts: seconds, or a ``datetime.timedelta``."""


class RetryState(Record):
    """What ``on_retry`` is told before each wait. Immutable, one per retry.

    Attributes:
        function: the qualified name of the retried function.
        attempt: the number of the attempt that just failed (1 for the first).
        exception: the exception it raised, or ``None`` when a result was
            rejected by ``retry_on_result``.
        error_class: how the failure was classified.
        delay: the seconds about to be waited.
        elapsed: seconds since the call started.
        result: the rejected return value, when ``exception`` is ``None``.
    """

    # A frozen dataclass to its users (see resilient._compat.Record); its
    # fields live in __dict__, as a dataclass's without slots do.
    __match_args__ = (
        "function",
        "attempt",
        "exception",
        "error_class",
        "delay",
        "elapsed",
        "result",
    )

    function: str
    attempt: int
    exception: BaseException | None
    error_class: ErrorClass
    delay: float
    elapsed: float
    result: Any

    def __init__(
        self,
        function: str,
        attempt: int,
        exception: BaseException | None,
        error_class: ErrorClass,
        delay: float,
        elapsed: float,
        result: Any = None,
    ) -> None:
        fields = self.__dict__
        fields["function"] = function
        fields["attempt"] = attempt
        fields["exception"] = exception
        fields["error_class"] = error_class
        fields["delay"] = delay
        fields["elapsed"] = elapsed
        fields["result"] = result


# What only type checkers read: not built at run time.
if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import TypeAlias, TypeVar, overload

    from typing_extensions import ParamSpec

    from resilient._classify import ErrorClass

    P = ParamSpec("P")
    T = TypeVar("T")
    R_co = TypeVar("R_co", covariant=True)

    RetryOn: TypeAlias = (
        "type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool]"
    )
    """What ``on=`` accepts: exception types, or a predicate on the exception."""

    class StopEvent(Protocol):
        """What ``stop_event=`` accepts: a ``threading.Event`` or an ``asyncio.Event``."""

        def is_set(self) -> bool:
            """Whether the event is set: no new attempt starts once it is."""
            ...

    class FallbackDecorator(Protocol[R_co]):
        """What ``@retry(fallback=f)`` returns: the decorated function returns what it
        returns or what *f* returns (``f`` returning ``None`` makes the result optional)."""

        @overload
        def __call__(
            self, func: Callable[P, Coroutine[Any, Any, T]], /
        ) -> Callable[P, Coroutine[Any, Any, T | R_co]]: ...

        @overload
        def __call__(self, func: Callable[P, T], /) -> Callable[P, T | R_co]: ...

    class AsyncFallbackDecorator(Protocol[R_co]):
        """What ``@retry(fallback=f)`` returns for an ``async def`` *f*: a decorator for
        ``async def`` functions, whose result is theirs or *f*'s."""

        def __call__(
            self, func: Callable[P, Coroutine[Any, Any, T]], /
        ) -> Callable[P, Coroutine[Any, Any, T | R_co]]: ...

    class Budget(Protocol):
        """What ``budget=`` accepts: ``RetryBudget`` or its Redis-backed twin."""

        def record_failure(self) -> bool:
            """Spend for a failed attempt; return whether a retry is allowed."""
            ...

        def record_success(self) -> None:
            """Refund for a successful attempt."""
            ...

    class Gate(Protocol):
        """A circuit breaker, as the retry loop sees one it is composed with."""

        @property
        def name(self) -> str:
            """The breaker's name."""
            ...

        @property
        def remaining(self) -> float:
            """Seconds until the circuit admits a trial call; 0.0 unless open."""
            ...

        def __resilient_remaining__(self) -> float:
            """``remaining``, without a round trip when a shared store remembers it."""
            ...

    class Limiter(Protocol):
        """What ``limiter=`` accepts: a ``RateLimiter``, as the retry loop sees one.

        A protocol, so that the loop (below ``resilient.pacing``) never imports it.
        """

        @property
        def name(self) -> str:
            """The limiter's name in logs and telemetry."""
            ...

        def acquire(self, cost: float = 1, *, timeout: Seconds | None = None) -> None:
            """Wait until *cost* units are admitted; ``RateLimitExceeded`` past *timeout*."""
            ...

        async def acquire_async(self, cost: float = 1, *, timeout: Seconds | None = None) -> None:
            """``acquire``'s ``async`` twin."""
            ...

        def pause(self, seconds: Seconds) -> None:
            """Admit nothing for *seconds*."""
            ...

        async def pause_async(self, seconds: Seconds) -> None:
            """``pause``'s ``async`` twin."""
            ...
