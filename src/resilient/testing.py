"""Test helpers: a clock you drive by hand, and switches that make waits free.

The pytest fixtures ``resilient_clock`` and ``resilient_no_wait`` built on
them come from the plugin that installing the package registers (the
``pytest11`` entry point, module ``resilient._pytest_plugin``), so importing
this module does not import pytest.

Example:
    >>> from resilient import retry
    >>> from resilient.testing import ManualClock
    >>> clock = ManualClock()
    >>> calls = []
    >>> @retry(max_retries=2, base_delay=1.0, jitter=False, clock=clock)
    ... def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise ConnectionError("reset")
    ...     return "ok"
    >>> flaky(), clock.sleeps
    ('ok', [1.0, 2.0])
"""

from __future__ import annotations

import math
import threading
from collections.abc import Generator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from resilient._clock import DEFAULTS, Clock, check_clock
from resilient._compat import duration, shown
from resilient.breaker import CircuitBreaker, CircuitState

if TYPE_CHECKING:
    from resilient._types import Seconds

__all__ = ["ManualClock", "cap_attempts", "force_state", "no_wait", "use_clock"]


class ManualClock:
    """A clock that only moves when told to.

    ``sleep`` and ``asleep`` return at once, advance the time by the requested
    amount and record it in ``sleeps``; ``advance`` moves time by hand. Safe to
    share between threads.

    Args:
        start: the initial value of ``monotonic()``.

    Raises:
        TypeError, ValueError: *start* is not a finite number, naming it and the value.
    """

    __slots__ = ("_lock", "_now", "sleeps")

    def __init__(self, start: float = 0.0) -> None:
        self._now = _start(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """The current manual time."""
        return self._now

    def advance(self, seconds: Seconds) -> None:
        """Move time forward by *seconds* (not negative; a ``timedelta`` works too)."""
        step = duration("seconds", seconds, maximum=math.inf)
        with self._lock:
            self._now += step

    def sleep(self, seconds: float) -> None:
        """Record *seconds* and advance time by it, without blocking."""
        self._record(seconds)

    async def asleep(self, seconds: float) -> None:
        """Record *seconds* and advance time by it; yields to the event loop once."""
        self._record(seconds)
        import asyncio  # noqa: PLC0415 - only async callers pay for asyncio

        await asyncio.sleep(0)

    def _record(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(seconds, 0.0)

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r}, sleeps={len(self.sleeps)})"


def _start(start: object) -> float:
    """A ``ManualClock``'s *start* as a float; never a string that ``float()`` would parse."""
    if isinstance(start, (bool, str, bytes, bytearray)):
        raise TypeError(f"start must be a number, got {start!r}")
    try:
        now = float(start)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    except (TypeError, ValueError):
        raise TypeError(f"start must be a number, got {start!r}") from None
    except OverflowError:  # an int too large for a float: 10**400
        raise ValueError(f"start must be a finite number, got {shown(start)}") from None
    if not math.isfinite(now):
        raise ValueError(f"start must be a finite number, got {start!r}")
    return now


@contextmanager
def use_clock(clock: Clock) -> Generator[Clock, None, None]:
    """Make *clock* the process default for the duration of the block.

    Every primitive built without ``clock=`` reads the default at each call,
    so this reaches objects built before the block too.
    """
    check_clock(clock)
    previous = DEFAULTS.clock
    DEFAULTS.clock = clock
    try:
        yield clock
    finally:
        DEFAULTS.clock = previous


@contextmanager
def no_wait() -> Generator[None, None, None]:
    """Make every wait of every retry zero, without changing how many attempts run."""
    previous = DEFAULTS.no_wait
    DEFAULTS.no_wait = True
    try:
        yield
    finally:
        DEFAULTS.no_wait = previous


@contextmanager
def cap_attempts(attempts: int) -> Generator[None, None, None]:
    """Run at most *attempts* attempts per retried call inside the block.

    A configured smaller count is kept: this only ever lowers it.
    """
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"attempts must be an int >= 1, got {attempts!r}")
    previous = DEFAULTS.attempt_cap
    DEFAULTS.attempt_cap = attempts if previous is None else min(previous, attempts)
    try:
        yield
    finally:
        DEFAULTS.attempt_cap = previous


def force_state(breaker: CircuitBreaker, state: CircuitState | str) -> None:
    """Put *breaker* in *state* at once, as if its history had led there.

    ``"closed"`` is ``breaker.reset()``; ``"open"`` is ``breaker.trip()`` (the
    recovery timeout starts now); ``"half_open"`` is as if the recovery
    timeout had just passed: the next ``half_open_max_calls`` calls are trials.
    The change goes through the breaker's store, its log and its listeners.

    Args:
        breaker: a ``CircuitBreaker``.
        state: a ``CircuitState`` or its value (``"closed"``, ``"open"``,
            ``"half_open"``).
    """
    if not isinstance(breaker, CircuitBreaker):
        raise TypeError(f"breaker must be a CircuitBreaker, got {breaker!r}")
    try:
        target = CircuitState(state)
    except ValueError:
        raise ValueError(f"state must be 'closed', 'open' or 'half_open', got {state!r}") from None
    breaker._force(target)  # pyright: ignore[reportPrivateUsage]  # the package's own helper
