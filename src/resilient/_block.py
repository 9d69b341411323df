"""The block form of retry: ``for attempt in retrying(...): with attempt: ...``.

Strictly private: users import ``retrying`` from ``resilient``. For code that
cannot be a function (tenacity's ``Retrying``, stamina's ``retry_context``).
Every decision is the one ``@retry`` makes: the loop below only drives
``RetryCall`` (classification, budget, deadline, Retry-After, logs, telemetry,
the give-up note and the fallback all live there), so a change to the retry
policy applies to every form.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from resilient._classify import ErrorClass, Throttled, classify
from resilient._compat import seconds as seconds_text
from resilient._deadline import DEADLINE, enter_deadline
from resilient._redact import describe_error, error_fields
from resilient._retry import (
    _GIVE_UP,  # pyright: ignore[reportPrivateUsage]
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RETRYABLE,
    Policy,
    RetryCall,
    RetryTarget,
    awaited_budget_refusal,
    drop_response,
    fall_back,
    options_in,
    shared_policy,
)

if TYPE_CHECKING:
    import contextvars
    from logging import Logger

    from resilient._clock import Clock
    from resilient._types import (
        Budget,
        JitterSpec,
        Limiter,
        RetryOn,
        RetryState,
        Seconds,
        StopEvent,
    )

__all__ = ["Attempt", "Retrying", "retrying"]

T = TypeVar("T")

_RUNNING = 0
_SUCCEEDED = 1
_RETRY = 2
_FALLBACK = 3
_DONE = 4

_PAUSING: set[Any] = set()
"""Pauses on their way to the store, of event loops that take no attribute (see pause_soon)."""
_PAUSING_ATTRIBUTE = "_resilient_pausing"
"""The event loop's own set of those pauses (a closed loop, once dropped, releases them)."""


class Attempt(Generic[T]):
    """One attempt of a ``retrying`` block: use it as ``with attempt:`` around the work.

    The ``with`` block catches ``Exception`` subclasses only. A failure that is
    retried is swallowed (the loop goes on, after the wait); one that ends
    the call leaves the ``with`` block at once, the original exception with
    its note, unless the policy's ``fallback`` answers it.

    Attributes:
        number: the attempt's number, from 1.
        result: for ``retry_on_result``, set it to the attempt's value (the
            predicate judges it when the block ends); when the block gave up
            and a ``fallback`` answered, what the fallback returned.
    """

    __slots__ = ("_run", "_state", "_token", "number", "result")

    def __init__(self, run: _Attempts[T], number: int) -> None:
        self._run = run
        self.number = number
        self.result: T | None = None
        self._state = -1  # not entered yet
        self._token: contextvars.Token[Any] | None = None

    def __enter__(self) -> Attempt[T]:
        if self._state != -1:
            raise RuntimeError(f"attempt {self.number} was already used: one 'with' per attempt")
        self._state = _RUNNING
        call = self._run.call
        if call.deadline_at is not None:
            self._token = enter_deadline(call.deadline_at, call.clock)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._token is not None:
            DEADLINE.reset(self._token)
            self._token = None
        run = self._run
        call = run.call
        try:
            return self._outcome(run, call, exc)
        finally:
            if call.pause_for > 0.0:  # every caller sharing the limiter waits too
                if not (run.asynchronous and run.awaits_pause()):
                    run.pause()
                elif exc is not None and self._state == _DONE:
                    run.pause_soon()  # the failure leaves the loop now: no await to come

    def _outcome(self, run: _Attempts[T], call: RetryCall, exc: BaseException | None) -> bool:
        if exc is None:
            predicate = call.policy.retry_on_result
            if predicate is None or not predicate(self.result):
                self._state = _SUCCEEDED
                budget = call.policy.budget
                if budget is not None:  # a success refunds the budget (also on return or break)
                    budget.record_success()
                return False
            delay = call.after_failure(None, self.result)
            if delay == _GIVE_UP:
                self._state = _DONE  # the last value stays in attempt.result
                return False
            run.delay = delay
            self._state = _RETRY
            return False
        if not isinstance(exc, Exception):  # Ctrl-C, cancellation: straight through
            self._state = _DONE
            return False
        delay = call.after_failure(exc, None)
        if delay == _GIVE_UP:
            if call.fallback is None:
                self._state = _DONE
                call.last_error = None
                return False  # leaves the loop at once: the original exception, noted
            run.failure = exc
            self._state = _FALLBACK
            return True
        run.delay = delay
        run.failure = exc
        self._state = _RETRY
        return True

    def __repr__(self) -> str:
        return f"<Attempt {self.number}>"


class Retrying(Generic[T]):
    """What ``retrying(...)`` returns: iterate it (``for`` or ``async for``) for attempts.

    Reusable: each loop over it is one retried call with its own attempts,
    start time and deadline; one object may be shared by threads.
    """

    __slots__ = ("_sync_refused", "_target")

    def __init__(self, target: RetryTarget) -> None:
        self._target = target
        self._sync_refused = _sync_refused(target.policy)

    def __iter__(self) -> Iterator[Attempt[T]]:
        """A fresh run of attempts for a ``for`` loop."""
        if self._sync_refused is not None:  # a fresh error each time, not one that grows
            raise TypeError(self._sync_refused)
        return _Attempts[T](self._target)

    def __aiter__(self) -> AsyncIterator[Attempt[T]]:
        """A fresh run of attempts for an ``async for`` loop: its waits are awaited."""
        attempts = _Attempts[T](self._target)
        attempts.asynchronous = True  # ``async for`` does not call the run's own __aiter__
        return attempts

    def __repr__(self) -> str:
        return f"<Retrying {self._target.label}>"


class _Attempts(Generic[T]):
    """Strictly private. One run of a ``retrying`` block: the attempts of one call."""

    __slots__ = ("asynchronous", "call", "current", "delay", "failure")

    def __init__(self, target: RetryTarget) -> None:
        self.call = RetryCall(target, None)
        self.current: Attempt[T] | None = None
        self.delay = 0.0
        self.failure: Exception | None = None
        self.asynchronous = False

    def __iter__(self) -> _Attempts[T]:
        return self

    def __aiter__(self) -> _Attempts[T]:
        self.asynchronous = True
        return self

    def awaits_pause(self) -> bool:
        """Whether an async loop awaits the limiter's pause (all but an in-process one's).

        A ``RateLimiter`` without a store pauses at once (a lock and two floats);
        a store's pause is a round trip, and another ``Limiter``'s may be one too.
        """
        limiter = self.call.policy.limiter
        return limiter is not None and getattr(limiter, "store", True) is not None

    async def pause_async(self) -> None:
        """``pause``, awaited: the async loop's, before it goes on or ends."""
        call = self.call
        limiter, seconds = call.policy.limiter, call.pause_for
        call.pause_for = 0.0
        if limiter is not None and seconds > 0.0:
            await limiter.pause_async(seconds)

    async def last_pause_async(self) -> None:
        """``pause_async`` once the loop gave up: a store that fails is one WARNING.

        The loop ends as it would have (the value, the fallback's answer): as
        ``pause_soon`` does for a failure that leaves the loop.
        """
        call = self.call
        limiter, seconds = call.policy.limiter, call.pause_for
        try:
            await self.pause_async()
        except Exception as error:
            if limiter is not None:
                _warn_pause_error(_PendingPause(limiter, seconds, call), error)

    def pause_soon(self) -> None:
        """``pause_async`` in a task of its own: the async loop's last failure leaves at once.

        The failure leaves the ``with`` block (a sync ``__exit__``, which cannot
        await) and the loop with it, so nothing awaits the store's round trip:
        it runs on, and the event loop's end (``asyncio.run`` cancels the tasks
        left, then waits for them) does not cut it off.
        """
        import asyncio  # noqa: PLC0415 - only the async form loads asyncio

        call = self.call
        limiter, seconds = call.policy.limiter, call.pause_for
        call.pause_for = 0.0
        if limiter is None:
            return
        pause = _PendingPause(limiter, seconds, call)
        task = asyncio.ensure_future(_pause_surely(pause))
        # The event loop keeps only a weak reference: the loop itself holds the task
        # (a closed loop, once dropped, releases it), else this module does.
        loop = task.get_loop()
        pending: set[Any] | None = getattr(loop, _PAUSING_ATTRIBUTE, None)
        if pending is None:
            pending = set()
            try:
                setattr(loop, _PAUSING_ATTRIBUTE, pending)
            except AttributeError:  # a loop without attributes (uvloop's)
                pending = _PAUSING
        pending.add(task)
        task.add_done_callback(pending.discard)
        task.add_done_callback(pause.ended)
        weakref.finalize(task, pause.lost, _CUT_OFF)

    def pause(self) -> None:
        """Pause the limiter as a 429 or 503's ``Retry-After`` asked (``call.pause_for``)."""
        call = self.call
        limiter, seconds = call.policy.limiter, call.pause_for
        call.pause_for = 0.0
        if limiter is None:
            return
        # In process (also from an async loop) the pause is a lock and two floats: at once.
        limiter.pause(seconds)

    def allowed(self) -> float | None:
        """The longest wait for the limiter's turn: the time left before the deadline."""
        call = self.call
        if call.deadline_at is None:
            return None
        return max(call.deadline_at - call.clock.monotonic(), 0.0)

    def refused(self, current: Attempt[T] | None, exc: Exception) -> Exception | None:
        """The limiter refused the next attempt: the exception to raise, or ``None`` (fallback)."""
        call = self.call
        call.refused(exc)
        self.failure = None
        if current is None or call.fallback is None:
            return exc  # before the first attempt there is none to hold a fallback's value
        current._state = _DONE  # pyright: ignore[reportPrivateUsage]
        current.result = fall_back(call, exc)
        return None

    def _after(self) -> Attempt[T] | None:
        """What the last attempt's end means: ``None`` to wait ``self.delay`` then go on.

        Raises StopIteration (mapped by the async form) when the loop is over.
        """
        current = self.current
        if current is None:
            self.current = Attempt(self, 1)
            return self.current
        state = current._state  # pyright: ignore[reportPrivateUsage]
        if state == _SUCCEEDED:
            current._state = _DONE  # pyright: ignore[reportPrivateUsage]
            raise StopIteration
        if state == _RETRY:
            return None
        if state == _FALLBACK:
            return current
        if state == -1:
            raise RuntimeError(
                f"attempt {current.number} of the retrying block was not used: write "
                "'with attempt:' around the code to retry"
            )
        raise StopIteration  # _DONE: the loop left by an exception, or results ran out

    def _next(self, current: Attempt[T]) -> Attempt[T]:
        """The attempt after *current*, once its wait is over."""
        self.failure = None  # only the last exception is kept alive
        call = self.call
        if call.closes is not None:  # an open response retried past: urllib's HTTPError
            drop_response(call)
        self.current = Attempt(self, current.number + 1)
        return self.current

    def _stop(self, current: Attempt[T]) -> Exception | None:
        """The call gave up with a fallback armed, or a stop_event ended the wait.

        Returns the failure to raise, or ``None`` when the fallback answers.
        """
        current._state = _DONE  # pyright: ignore[reportPrivateUsage]
        failure, self.failure = self.failure, None
        self.call.last_error = None
        if self.call.fallback is None or failure is None:
            return failure
        current.result = fall_back(self.call, failure)
        return None

    def __next__(self) -> Attempt[T]:
        current = self.current
        found = self._after()
        if found is not None and found is not current:
            return self._paced(None, found)  # the first attempt
        assert current is not None
        if found is None and (self.delay <= 0 or self.call.wait(self.delay)):
            return self._paced(current, self._next(current))
        failure = self._stop(current)
        if failure is not None:
            raise failure
        raise StopIteration

    def _paced(self, previous: Attempt[T] | None, attempt: Attempt[T]) -> Attempt[T]:
        """*attempt*, once the limiter admitted it (every attempt, the first included)."""
        limiter = self.call.policy.limiter
        if limiter is not None:
            try:
                limiter.acquire(timeout=self.allowed())
            except Throttled as exc:  # a store's own error is not a refusal: it propagates
                if self.refused(previous, exc) is not None:
                    raise  # the refusal itself, chained to the last failure
                raise StopIteration from None
        return attempt

    async def _paced_async(self, previous: Attempt[T] | None, attempt: Attempt[T]) -> Attempt[T]:
        call = self.call
        limiter = call.policy.limiter
        if limiter is None:
            return attempt
        try:
            await limiter.acquire_async(timeout=self.allowed())
        except Throttled as exc:  # a store's own error is not a refusal: it propagates
            if self.refused(previous, exc) is not None:
                raise  # the refusal itself, chained to the last failure
            if call.policy.fallback_is_async and previous is not None:
                previous.result = await previous.result  # type: ignore[misc]  # pyright: ignore[reportGeneralTypeIssues]
            raise StopAsyncIteration from None
        return attempt

    async def __anext__(self) -> Attempt[T]:
        current = self.current
        try:
            found = self._after()
        except StopIteration:
            if self.call.pause_for > 0.0:  # a returned value that gave up asked for a pause
                await self.last_pause_async()
            raise StopAsyncIteration from None
        if found is not None and found is not current:
            return await self._paced_async(None, found)
        assert current is not None
        if self.call.pause_for > 0.0:  # from the failure, before the wait, as a plain 'for' does
            await (self.pause_async() if found is None else self.last_pause_async())
        if found is None and (self.delay <= 0 or await self.call.await_wait(self.delay)):
            return await self._paced_async(current, self._next(current))
        fallback_is_async = self.call.policy.fallback_is_async
        failure = self._stop(current)
        if failure is not None:
            raise failure
        if fallback_is_async and self.call.fallback is not None:
            current.result = await current.result  # type: ignore[misc]  # pyright: ignore[reportGeneralTypeIssues]
        raise StopAsyncIteration


@overload
def retrying(  # an async def fallback: attempt.result is what it returns, awaited
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
    fallback: Callable[[Exception], Awaitable[T]],
    logger: Logger | None = None,
    stop_event: StopEvent | None = None,
    limiter: Limiter | None = None,
    name: str | None = None,
) -> Retrying[T]: ...


@overload
def retrying(
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
    fallback: Callable[[Exception], T],
    logger: Logger | None = None,
    stop_event: StopEvent | None = None,
    limiter: Limiter | None = None,
    name: str | None = None,
) -> Retrying[T]: ...


@overload
def retrying(
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
    name: str | None = None,
) -> Retrying[Any]: ...


def retrying(
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
    name: str | None = None,
) -> Retrying[Any]:
    """Retry a block of code: ``for attempt in retrying(...): with attempt: ...``.

    The options, rules, logs, telemetry and note are ``@retry``'s; iterate
    with ``async for`` in ``async def`` code (the waits are awaited). Each
    attempt is an ``Attempt`` (``attempt.number`` from 1); the code to retry
    goes in its ``with`` block. A failure that is not retried, or the last
    one, leaves the loop at once (the original exception, noted); a success
    ends the loop. With a ``fallback``, giving up ends the loop quietly and
    the last attempt's ``result`` holds the fallback's value.

    Args:
        max_retries: as for ``@retry``, and every option down to
            ``stop_event``.
        base_delay: see ``retry``.
        max_delay: see ``retry``.
        jitter: see ``retry``.
        retryable_classes: see ``retry``.
        deadline: see ``retry``; ``time_remaining()`` works inside the block.
        classifier: see ``retry``.
        on_retry: see ``retry``.
        budget: see ``retry``.
        clock: see ``retry``.
        retry_on_result: judges ``attempt.result`` (set it in the block).
        max_retry_after: see ``retry``.
        on: see ``retry``.
        fallback: see ``retry``; its value lands in the last ``attempt.result``.
        logger: see ``retry``.
        stop_event: see ``retry``.
        limiter: see ``retry``: each attempt takes its turn before it is
            handed out (a refusal before the first attempt raises, as there
            is no attempt to hold a fallback's value).
        name: what the logs and the telemetry call the block (their
            ``function``); by default the function the block is written in.

    Returns:
        A reusable ``Retrying``: each loop over it is one retried call.
    """
    policy = shared_policy(**options_in(locals()))  # the keywords above but name
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"name must be a non-empty str or None, got {name!r}")
    target = RetryTarget(_no_function, policy, form="retrying()")
    if name is None:
        caller = sys._getframe(1)  # pyright: ignore[reportPrivateUsage]  # the block's function
        code = caller.f_code
        module = caller.f_globals.get("__name__", "?")
        label = getattr(code, "co_qualname", code.co_name)
        target.name, target.label = f"{module}.{label}", label
    else:
        target.name = target.label = name
    return Retrying(target)


def _sync_refused(policy: Policy) -> str | None:
    """Why a ``for`` loop over the block is refused, decided once; ``None`` when it is not.

    An ``async def`` fallback, or a budget whose round trips are awaited:
    only ``async for`` can await them.
    """
    if policy.fallback_is_async:
        return (
            "fallback must be a plain function in a 'for' loop: it is 'async def', and "
            "only 'async for attempt in retrying(...)' can await it"
        )
    return awaited_budget_refusal(
        policy.budget,
        "a 'for' loop over retrying()",
        "'async for attempt in retrying(...)' in async def code",
    )


_CUT_OFF = "the event loop ended before the pause reached the store"


class _PendingPause:
    """Strictly private. One pause on its way to the store, said in a WARNING if lost."""

    __slots__ = ("call", "limiter", "seconds", "settled")

    def __init__(self, limiter: Limiter, seconds: float, call: RetryCall) -> None:
        self.limiter = limiter
        self.seconds = seconds
        self.call = call
        self.settled = False

    def ended(self, task: Any) -> None:
        """The task's done-callback: a task cancelled before its first step never ran."""
        if task.cancelled():
            self.lost(_CUT_OFF)

    def lost(self, why: str) -> None:
        """The pause never reached the store: one WARNING (once), nobody else will know."""
        if not self.settled:
            _warn_pause_failed(self, why, "CancelledError", why)


def _warn_pause_failed(pause: _PendingPause, described: str, error_type: str, message: str) -> None:
    """``limiter_pause_failed``: the limiter is not paused for the failure that gave up."""
    limiter, call = pause.limiter, pause.call
    pause.settled = True
    # the protocol has a name; a duck-typed limiter without one is named by its class,
    # never by a repr that could hold addresses or settings
    name = getattr(limiter, "name", None) or type(limiter).__qualname__
    call.logger.warning(
        "could not pause rate limiter %s for %s s after giving up on %s (%s): "
        "other callers are not held back by this failure's Retry-After",
        name,
        seconds_text(pause.seconds),
        call.target.label,
        described,
        extra={
            "event": "limiter_pause_failed",
            "function": call.target.name,
            "limiter": name,
            "pause": pause.seconds,
            "error_type": error_type,
            "error": message,
        },
    )


def _warn_pause_error(pause: _PendingPause, error: Exception) -> None:
    """``limiter_pause_failed`` for the store's own error."""
    error_type, message = error_fields(error)
    _warn_pause_failed(pause, describe_error(error), error_type, message)


async def _pause_surely(pause: _PendingPause) -> None:
    """Pause the limiter, once more if the event loop's end cancels the first try.

    A pause only ever extends, so asking twice is harmless. A store that
    fails, or a pause the event loop's end cuts off, is one WARNING: nobody
    is left to raise it to.
    """
    import asyncio  # noqa: PLC0415 - only the async form loads asyncio

    limiter, seconds = pause.limiter, pause.seconds
    try:
        for retried in (False, True):
            try:
                await limiter.pause_async(seconds)
            except asyncio.CancelledError:
                if retried:
                    raise
                continue  # the loop is ending (asyncio.run cancels what is left): ask again
            except Exception as error:
                _warn_pause_error(pause, error)
            pause.settled = True
            return
    finally:  # cancelled twice, or closed with its loop while it waited
        pause.lost(_CUT_OFF)


def _no_function() -> None:  # pragma: no cover - a block has no function: never called
    """What a block's ``RetryTarget`` holds where a decorator holds the function."""
