"""Strictly private. Where a circuit breaker's state lives, and the rules it follows.

``resilient.breaker`` holds the call forms; this module holds what a store
implements: the states, the policy a store applies (``BreakerPolicy``), the
answers of its operations, the ``BreakerStore`` protocol, the in-memory store
and its sliding windows. Every store operation is one atomic transition of one
circuit, so a shared store (``resilient.redis``) runs each as one script.
Users import the public names from ``resilient`` or ``resilient.breaker``.
"""

from __future__ import annotations

import enum
import itertools
import math
import threading
from collections import deque
from typing import TYPE_CHECKING, Protocol

from resilient._compat import MAX_SECONDS, NamedTuple, Record, duration
from resilient.backoff import Backoff

if TYPE_CHECKING:
    from resilient._types import Seconds

_set = object.__setattr__  # how a record's __init__ sets its fields

__all__ = [
    "ASYNC_OPERATIONS",
    "Admission",
    "AsyncBreakerStore",
    "BreakerPolicy",
    "BreakerStore",
    "CircuitState",
    "FailureRateWindow",
    "MemoryStore",
    "StoredState",
    "Transition",
    "check_int",
    "check_rate",
    "check_seconds",
    "check_store",
    "is_async_store",
]


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


MAX_WINDOW_CALLS = 1_000_000
"""The largest count-based window: one byte per call, in memory or on Redis."""
MAX_WINDOW_BUCKETS = 10_000
"""The most buckets a time-based window may have."""


class FailureRateWindow(Record):
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
        seconds: a time-based window over the last *seconds* seconds (or a
            ``timedelta``), made of *buckets* buckets read from the breaker's
            clock; read back in seconds.
        minimum_calls: calls the window must hold before a rate is judged; for
            a count-based window at most *calls* is used.
        buckets: how many buckets a time-based window has; default one per
            second (at most 600).

    A count-based window keeps one byte per call, so *calls* is at most
    ``MAX_WINDOW_CALLS`` (1,000,000); a time-based window keeps its entered
    buckets, so *buckets* is at most ``MAX_WINDOW_BUCKETS`` (10,000): finer
    buckets cost memory (and, on Redis, work inside the server) and tell
    nothing a person reads off a failure rate. Larger values are refused here,
    not with a ``MemoryError`` at the first call. A frozen dataclass (equal
    windows are one window).
    """

    # A frozen dataclass to its users (see resilient._compat.Record).
    __slots__ = ("buckets", "calls", "failure_rate_threshold", "minimum_calls", "seconds")
    __match_args__ = ("failure_rate_threshold", "calls", "seconds", "minimum_calls", "buckets")

    failure_rate_threshold: float
    calls: int | None
    seconds: float | None
    minimum_calls: int
    buckets: int | None

    def __init__(
        self,
        failure_rate_threshold: float = 0.5,
        calls: int | None = None,
        seconds: Seconds | None = None,
        minimum_calls: int = 100,
        buckets: int | None = None,
    ) -> None:
        check_rate("failure_rate_threshold", failure_rate_threshold)
        check_int("minimum_calls", minimum_calls)
        if calls is not None and seconds is not None:
            raise ValueError(
                "give calls= (a count-based window) or seconds= (a time-based window), "
                f"not both: got calls={calls!r}, seconds={seconds!r}"
            )
        if seconds is None:
            if buckets is not None:
                raise ValueError(
                    f"buckets only applies to a time-based window (seconds=), got {buckets!r}"
                )
            if calls is None:
                calls = 100
            check_int("calls", calls, maximum=MAX_WINDOW_CALLS)
        else:
            seconds = check_seconds("seconds", seconds, allow_zero=False)
            if buckets is None:
                buckets = max(1, min(math.ceil(seconds), 600))
            check_int("buckets", buckets, maximum=MAX_WINDOW_BUCKETS)
        _set(self, "failure_rate_threshold", failure_rate_threshold)
        _set(self, "calls", calls)
        _set(self, "seconds", seconds)
        _set(self, "minimum_calls", minimum_calls)
        _set(self, "buckets", buckets)

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


# -- the store: where the state lives ---------------------------------------


class BreakerPolicy(Record):
    """The rules a store applies to one breaker's state; built by the breaker.

    A store receives it with every operation, so a shared store needs no
    configuration of its own.
    """

    __slots__ = (
        "failure_threshold",
        "half_open_max_calls",
        "recovery_timeout",
        "required_calls",
        "slow_call_rate_threshold",
        "slow_calls",
        "success_threshold",
        "window",
    )
    __match_args__ = (
        "failure_threshold",
        "recovery_timeout",
        "half_open_max_calls",
        "success_threshold",
        "window",
        "slow_call_rate_threshold",
        "slow_calls",
    )

    failure_threshold: int
    recovery_timeout: float | Backoff
    half_open_max_calls: int
    success_threshold: int
    window: FailureRateWindow | None
    slow_call_rate_threshold: float
    slow_calls: bool
    required_calls: int
    """The window's ``required_calls`` (0 without a window), read once here:
    ``rate_exceeded`` runs on every success a window holding failures sees."""

    def __init__(
        self,
        failure_threshold: int,
        recovery_timeout: float | Backoff,
        half_open_max_calls: int,
        success_threshold: int,
        window: FailureRateWindow | None,
        slow_call_rate_threshold: float,
        slow_calls: bool,
    ) -> None:
        _set(self, "failure_threshold", failure_threshold)
        _set(self, "recovery_timeout", recovery_timeout)
        _set(self, "half_open_max_calls", half_open_max_calls)
        _set(self, "success_threshold", success_threshold)
        _set(self, "window", window)
        _set(self, "slow_call_rate_threshold", slow_call_rate_threshold)
        _set(self, "slow_calls", slow_calls)
        _set(self, "required_calls", 0 if window is None else window.required_calls)

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
        if window is None or calls < self.required_calls:
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
    calls: int = 0
    """With a window: the calls it held at the time of the change."""
    slow: int = 0
    """With a window: the slow calls it held at the time of the change."""
    seq: int = 0
    """A shared store's count of this circuit's changes, after this one (0: not
    numbered): the breaker tells its listeners about overlapping operations'
    changes in this order."""


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
    reason: str | None = None
    """When rejected for another reason than the circuit's state (a shared
    store that is unreachable): why, for ``CircuitOpenError``'s message."""


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

    Optionally a store has ``attach(name) -> object``: each breaker calls it
    once, when built, and keeps what it returns for its life, so a store
    that keeps something per name (``RedisStore``'s cache) can release it
    when every breaker of that name is gone, and refuse a name it cannot
    store with a ``ValueError``.
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


class AsyncBreakerStore(Protocol):
    """A ``BreakerStore`` whose operations are coroutines (``acquire_async``...).

    The breaker's async forms (``call_async``, ``async with``, ``@`` on an
    ``async def``) await them, so a store that makes round trips never blocks
    the event loop. Its plain ``snapshot`` answers without I/O (the state as
    this process last knew it), for ``breaker.state`` and ``metrics``. A
    store that has only these operations refuses the sync call forms.
    """

    async def acquire_async(self, name: str, policy: BreakerPolicy, now: float) -> Admission:
        """``BreakerStore.acquire``, awaited."""
        ...

    async def record_success_async(
        self, name: str, policy: BreakerPolicy, trial: int | None, now: float, slow: bool
    ) -> Transition | None:
        """``BreakerStore.record_success``, awaited."""
        ...

    async def record_failure_async(
        self, name: str, policy: BreakerPolicy, trial: int | None, now: float, slow: bool
    ) -> Transition | None:
        """``BreakerStore.record_failure``, awaited."""
        ...

    async def release_async(self, name: str, policy: BreakerPolicy, trial: int) -> None:
        """``BreakerStore.release``, awaited."""
        ...

    async def force_async(
        self, name: str, policy: BreakerPolicy, state: CircuitState, now: float
    ) -> Transition | None:
        """``BreakerStore.force``, awaited."""
        ...

    async def snapshot_async(self, name: str, policy: BreakerPolicy, now: float) -> StoredState:
        """``BreakerStore.snapshot``, awaited (asks the store)."""
        ...

    def snapshot(self, name: str, policy: BreakerPolicy, now: float) -> StoredState:
        """The state as this process last knew it, without I/O."""
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

    def _shared_window(self, name: str, window: FailureRateWindow) -> FailureRateWindow:
        """The window the circuit of *name* follows if it equals *window*, else *window*.

        A breaker built over the circuit takes it in place of its own equal
        window: breakers of one circuit with equal windows then hold one object,
        which is what the closed path's lock-free checks compare. The circuit is
        made here the first time (as ``bind`` makes it), so breakers built at
        once in several threads agree on the object too.
        """
        circuit = self._circuits.get(name)
        if circuit is None:
            with self._lock:
                circuit = self._circuits.setdefault(name, _Circuit(window))
        in_use = circuit.window_config
        return in_use if in_use is not None and in_use == window else window

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
            # Exactly half_open_max_calls trials per half-open period: a trial
            # that ends keeps its permit; only one given back without an
            # outcome (release) can be handed out again.
            if circuit.trials < policy.half_open_max_calls:
                circuit.trials += 1
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
                circuit.trials -= 1

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

    def seed(
        self,
        name: str,
        policy: BreakerPolicy,
        state: CircuitState,
        *,
        failures: int = 0,
        open_until: float = 0.0,
        openings: int = 0,
        last_open_for: float | None = None,
    ) -> None:
        """Start the circuit of *name* over in *state*, as another store last held it.

        A fallback taking over from a shared store begins where that store
        was: an open circuit stays open until *open_until* (on the breaker's
        clock), a half-open one admits fresh trials. The window starts empty;
        *failures* is the consecutive count (consecutive rule only).
        """
        circuit = self.bind(name, policy)
        with circuit.lock:
            if circuit.window is not None:
                circuit.window.clear()
            circuit.failures = failures if circuit.window is None else 0
            circuit.open_until = open_until
            circuit.openings = openings
            circuit.last_open_for = last_open_for
            circuit._enter(state)  # pyright: ignore[reportPrivateUsage]  # this module's own class

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

    def discard(self, name: str) -> None:
        """Forget the circuit of *name* (a store that holds this one as a cache drops it)."""
        with self._lock:
            self._circuits.pop(name, None)

    def __repr__(self) -> str:
        return f"MemoryStore(circuits={len(self._circuits)})"


_ADMIT_CLOSED = Admission(True, None, _CLOSED, 0.0)


class _Circuit:
    """Strictly private. One circuit's state in a ``MemoryStore``.

    Every change happens under ``lock``; the breaker reads ``state``,
    ``failures``, ``open_until``, ``window.quiet`` and ``timed.until``
    (``timed`` is ``window`` when that is a time window, else ``None``)
    without it (a stale read only admits or rejects a call that raced with a
    transition, which it could anyway; a quiet window is one a success leaves
    as it is; a time window counts a success without the lock before its
    ``until``, see ``_TimeWindow``).
    """

    __slots__ = (
        "epoch",
        "failures",
        "last_open_for",
        "lock",
        "open_until",
        "openings",
        "state",
        "timed",
        "trial_successes",
        "trials",
        "window",
        "window_config",
    )

    def __init__(self, window: FailureRateWindow | None) -> None:
        self.lock = threading.Lock()
        self.state = _CLOSED
        self.failures = 0
        self.epoch = 0
        self.trials = 0
        self.trial_successes = 0
        self.open_until = 0.0
        self.openings = 0
        self.last_open_for: float | None = None
        self.window_config: FailureRateWindow | None = window
        self.window = _new_window(window)
        self.timed = self.window if isinstance(self.window, _TimeWindow) else None

    def conform(self, window: FailureRateWindow | None) -> None:
        """Follow the window of the latest breaker bound to this circuit."""
        if window is not self.window_config and window != self.window_config:
            with self.lock:
                self.window_config = window
                self.window = _new_window(window)
                self.timed = self.window if isinstance(self.window, _TimeWindow) else None
                if self.timed is not None:
                    self.timed.admit_hits(self.state is _CLOSED)

    def enter_success(
        self, policy: BreakerPolicy, now: float, counted: _TimeWindow | None = None
    ) -> bool:
        """Count the success of a call admitted closed, unless the store must record it.

        What ``MemoryStore.record_success`` does with such a success, in one
        short critical section: the closed path of a breaker with a window
        calls this instead. Returns False, having counted nothing, when the
        success would open the circuit (state changes are left to the store's
        operations, which the breaker orders for its listeners) or when the
        window is not the one of *policy* (the store's operations conform it).

        *counted*: the time window that already counted this success without
        the lock and found its ``until`` passed meanwhile (a failure came in);
        the count is taken back and the success judged here.
        """
        lock = self.lock
        # acquire/release rather than `with`: this runs on every success, and
        # the with statement costs about twice as much (measured on 3.11).
        lock.acquire()
        try:
            if counted is not None:
                counted.take_back()
            window = self.window
            if window is None or (
                window.config is not policy.window and window.config != policy.window
            ):
                return False
            if self.state is not _CLOSED:
                return True  # dropped, as record_success drops it
            return window.add_success(policy, now)
        finally:
            lock.release()

    def open(self, policy: BreakerPolicy, now: float) -> Transition:
        duration = policy.open_duration(self.openings, self.last_open_for)
        old = self.state
        self.openings += 1
        self.last_open_for = duration
        self.open_until = now + duration
        self._enter(_OPEN)
        window = self.window
        if window is None:
            return Transition(old, _OPEN, self.failures, duration)
        return Transition(old, _OPEN, window.failures, duration, window.calls, window.slow)

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
        self.trials = 0
        self.trial_successes = 0
        self.state = state
        if self.timed is not None:
            self.timed.admit_hits(state is _CLOSED)

    def _failures(self) -> int:
        return self.failures if self.window is None else self.window.failures


# -- sliding windows ----------------------------------------------------------


class _CountWindow:
    """Strictly private. The outcomes of the last *size* calls, in a ring.

    ``quiet`` while the ring is full of successes that were not slow: one
    more success then changes nothing (any rotation of it is the same ring),
    so a breaker's closed path reads that one flag and takes no lock.
    """

    __slots__ = ("_pos", "_ring", "_size", "calls", "config", "failures", "quiet", "slow")

    def __init__(self, size: int, config: FailureRateWindow | None = None) -> None:
        # Per call: bit 0 failed, bit 1 slow. While the ring fills, _pos is
        # calls and every slot from it on is still 0.
        self._ring = bytearray(size)
        self._size = size
        self._pos = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0
        self.quiet = False
        self.config = config

    def add_success(self, policy: BreakerPolicy, now: float) -> bool:
        """Enter a success (not slow) unless it opens the circuit; whether it was entered."""
        pos = self._pos
        evicted = self._ring[pos]  # 0 while the ring fills
        calls = self.calls if self.calls == self._size else self.calls + 1
        failures = self.failures - (evicted & 1)
        slow = self.slow - (evicted >> 1)
        if (failures or slow) and policy.rate_exceeded(calls, failures, slow):
            return False
        self._ring[pos] = 0
        self._pos = pos + 1 if pos + 1 < self._size else 0
        self.calls, self.failures, self.slow = calls, failures, slow
        self.quiet = calls == self._size and not failures and not slow
        return True

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
        self.quiet = self.calls == len(ring) and not self.failures and not self.slow

    def advance(self, now: float) -> None:
        """Nothing ages out of a count-based window."""

    def clear(self) -> None:
        self._ring = bytearray(len(self._ring))
        self._pos = self.calls = self.failures = self.slow = 0
        self.quiet = False


class _TimeWindow:
    """Strictly private. Calls of the last *seconds*, in *buckets* time buckets.

    Bucket *k* covers ``[k * width, (k + 1) * width)`` of the clock; the
    window holds the current bucket and the ``buckets - 1`` before it. Only
    the buckets that were entered are kept, oldest first, so catching up after
    an idle spell costs the buckets that age out (each entered once), not the
    bucket count: a window idle for longer than its span is simply emptied.

    A success needs no lock while the circuit is closed, the window holds no
    failure and no slow call (a success then cannot open the circuit) and the
    clock is still in the current bucket: ``until`` is where that bucket ends
    then, ``-inf`` otherwise. Before it, the breaker counts a success with ``next(hits)``
    (atomic) and compares with ``until`` again. Every operation under the
    circuit's lock first folds the successes counted that way into the current
    bucket (``_fold``), so the totals it reads are exact. An operation that
    enters a failure or a slow call, or takes the circuit out of closed, sets
    ``until`` to ``-inf`` before it folds: a success counted after that fold
    then finds ``until`` passed, and its thread takes the lock to judge it
    (``take_back``, then ``add_success``), so no success escapes the
    failure-rate rule.
    """

    __slots__ = (
        "_buckets",
        "_current",
        "_folded",
        "_last",
        "_next",
        "_size",
        "_width",
        "calls",
        "config",
        "failures",
        "hits",
        "lockless",
        "quiet",
        "slow",
        "until",
    )

    _buckets: deque[list[int]]
    _current: list[int]
    _last: int | None
    _next: float
    _folded: int
    calls: int
    failures: int
    slow: int
    hits: itertools.count[int]
    until: float

    def __init__(
        self, seconds: float, buckets: int, config: FailureRateWindow | None = None
    ) -> None:
        self.config = config
        self.quiet = False  # never: every success counts in its bucket (see _CountWindow)
        self._width = seconds / buckets
        self._size = buckets
        self.lockless = True  # whether the circuit is closed (see admit_hits)
        self.clear()

    def _fold(self) -> None:
        """Move the successes counted without the lock into the current bucket (under it)."""
        # next() both reads the counter and takes one value for itself: the
        # successes are the values handed out since the last fold, this one excluded.
        taken = next(self.hits)
        counted = taken - self._folded
        self._folded = taken + 1
        if counted and self._current:
            self._current[0] += counted
            self.calls += counted

    def admit_hits(self, closed: bool) -> None:
        """Count successes without the lock only while the circuit is *closed*."""
        self.lockless = closed
        if not closed:
            self.until = -math.inf  # before the fold: see the class docstring
        self._fold()

    def take_back(self) -> None:
        """Uncount one success counted without the lock, so that the lock's path enters it."""
        self._fold()
        if self._current:
            self._current[0] -= 1
            self.calls -= 1

    def advance(self, now: float) -> int:
        """Drop the buckets that aged out by *now*; return the current bucket."""
        current = math.floor(now / self._width)
        last = self._last
        if last is None or current - last >= self._size:
            self.clear()  # idle for the whole span (or new): empty, whatever the bucket count
        elif current > last:
            self._fold()  # into the bucket they were counted in, before it is left
            buckets = self._buckets
            oldest_live = current - self._size + 1
            while buckets and buckets[0][3] < oldest_live:
                calls, failures, slow, _ = buckets.popleft()
                self.calls -= calls
                self.failures -= failures
                self.slow -= slow
        else:  # a clock swapped for one that is behind: stay in the newest bucket
            self._fold()
            return last
        self._last = current
        self._current = entry = [0, 0, 0, current]
        self._buckets.append(entry)
        self._next = float(current + 1)
        calm = self.lockless and not self.failures and not self.slow
        self.until = (current + 1) * self._width if calm else -math.inf
        return current

    def add_success(self, policy: BreakerPolicy, now: float) -> bool:
        """Enter a success (not slow) unless it opens the circuit; whether it was entered."""
        # now / width < _next is floor(now / width) <= _last, without calling floor.
        if now / self._width >= self._next:
            self.advance(now)
        else:
            self._fold()
        calls = self.calls + 1
        if (self.failures or self.slow) and policy.rate_exceeded(calls, self.failures, self.slow):
            return False
        self._current[0] += 1
        self.calls = calls
        return True

    def record(self, failed: bool, slow: bool, now: float) -> None:
        self.advance(now)
        entry = self._current
        entry[0] += 1
        entry[1] += failed
        entry[2] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow
        if failed or slow:
            # No more successes without the lock; then those counted so far are
            # folded in, before the rate is judged (see the class docstring).
            self.until = -math.inf
            self._fold()

    def clear(self) -> None:
        self._buckets = deque()  # [calls, failures, slow, number], oldest first
        self._current = []  # the newest bucket's entry (none before the first advance)
        self.calls = self.failures = self.slow = 0
        self._last = None  # the newest bucket's number
        self._next = -math.inf  # where the bucket after it starts, in widths
        self.until = -math.inf  # no bucket yet: the next success advances first, under the lock
        self.hits = itertools.count()  # successes counted without the lock...
        self._folded = 0  # ...of which those below this value are in the buckets


def _new_window(config: FailureRateWindow | None) -> _CountWindow | _TimeWindow | None:
    if config is None:
        return None
    if config.seconds is not None:
        assert config.buckets is not None  # set by FailureRateWindow
        return _TimeWindow(config.seconds, config.buckets, config)
    assert config.calls is not None
    return _CountWindow(config.calls, config)


# -- validation shared with the breaker --------------------------------------


def check_int(name: str, value: object, minimum: int = 1, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum:_}, got {value!r}")


def check_seconds(
    name: str,
    value: object,
    *,
    allow_zero: bool = True,
    backoff_ok: bool = False,
    maximum: float = MAX_SECONDS,
) -> float:
    """*value* in seconds (a number or a ``timedelta``), bounded; else an error naming *name*."""
    also = " or a Backoff" if backoff_ok else ""
    return duration(name, value, allow_zero=allow_zero, maximum=maximum, also=also)


def check_rate(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in (0, 1], got {value!r}")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")


OPERATIONS = ("acquire", "record_success", "record_failure", "release", "force", "snapshot")
ASYNC_OPERATIONS = tuple(f"{op}_async" for op in OPERATIONS)


def is_async_store(store: object) -> bool:
    """Whether *store* has the coroutine operations of ``AsyncBreakerStore``."""
    return all(callable(getattr(store, op, None)) for op in ASYNC_OPERATIONS)


def check_store(store: object) -> None:
    if is_async_store(store) and callable(getattr(store, "snapshot", None)):
        return
    missing = [op for op in OPERATIONS if not callable(getattr(store, op, None))]
    if missing:
        raise TypeError(
            f"store must implement BreakerStore (or AsyncBreakerStore), got {store!r} "
            f"(missing {', '.join(missing)})"
        )
