"""Pacing: how fast (``RateLimiter``) and how many at once (``ConcurrencyLimit``).

A rate limit and a concurrency limit are the two ways a dependency says
"not so much": a provider's requests-per-minute and tokens-per-minute, a
database that melts above N queries in flight. ``RateLimiter`` admits work at
a rate with a burst (GCRA, the virtual-scheduling form of a token bucket:
exact, O(1), one number of state); ``ConcurrencyLimit`` is a bulkhead that
bounds the calls in flight, optionally adapting that bound to the overload
signals the dependency sends (AIMD, as TCP does).

Both keep their state in this process unless given a ``store``: a
``PacingStore`` (``resilient.redis.RedisStore``) shares it with every process
that uses the same ``name``. The protocol is written for a store that runs
one atomic script per operation on a clock of its own; ``MemoryPacingStore``
is the in-process reference implementation.
"""

from __future__ import annotations

import contextvars
import datetime
import functools
import itertools
import logging
import math
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Collection
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar, cast, runtime_checkable

from resilient import _events
from resilient._classify import (
    ErrorClass,
    Rejection,
    Throttled,
    classify,
    response_status,
    retry_after,
)
from resilient._clock import DEFAULTS, SYSTEM_CLOCK, check_clock
from resilient._compat import (
    LAZY_RESULTS,
    MAX_SECONDS,
    check_callable,
    duration,
    is_async_callable,
    positive_number,
    refuse_lazy_result,
    seconds,
    shown,
)
from resilient._deadline import time_remaining
from resilient._redact import describe_error, error_fields

if TYPE_CHECKING:
    import asyncio
    from typing import TypeAlias

    from typing_extensions import ParamSpec, Self

    from resilient._types import Clock

    P = ParamSpec("P")
    _Record: TypeAlias = "_Turn | float | str"
    """What ``refund`` gives back: an in-process turn (a bare ``end``: see
    ``_refund_here``), or a store's."""

T = TypeVar("T")

__all__ = [
    "ConcurrencyLimit",
    "ConcurrencyLimitExceeded",
    "MemoryPacingStore",
    "PacingStore",
    "RateLimitExceeded",
    "RateLimiter",
    "RatePolicy",
    "Reservation",
]

logger = logging.getLogger("resilient.pacing")

_ONE = 1
"""The default cost: a cost that is this object needs no check."""

_EPSILON = 1e-9
"""Waits this short are no wait: float rounding at a conformance boundary."""

_BACKOFF_RATIO = 0.9
"""The multiplicative cut of an adaptive limit on an overload signal."""

_POLL_FIRST, _POLL_MAX = 0.005, 0.1
"""A ConcurrencyLimit waiting for a slot through a store asks again after these."""

_limiter_names = itertools.count(1)
_concurrency_names = itertools.count(1)

_MODULES = sys.modules
_get_running_loop: Callable[[], asyncio.AbstractEventLoop | None] | None = None
"""asyncio's ``_get_running_loop``, once asyncio is imported (no loop runs before)."""
_running_tasks: Collection[object] | None = None
"""Once asyncio is imported, its record of the task each event loop is running (empty:
no task runs in any thread); where it keeps none to read, ``_ANY_TASK``."""
_ANY_TASK = (None,)
"""Never empty: any thread may be in a task, ask ``_current_task``."""


# -- errors ---------------------------------------------------------------------------


class RateLimitExceeded(RuntimeError, Throttled):
    """A ``RateLimiter`` could not admit the call within the time allowed.

    Raised at once, without waiting, when the wait would exceed the
    ``timeout`` given to ``acquire`` or the time left under an enclosing
    ``deadline`` (``resilient.time_remaining()``). TRANSIENT for every
    classifier, and never counted as a circuit breaker failure: the
    dependency did not fail, this process held the call back.

    Attributes:
        limiter: the ``name`` of the limiter.
        retry_after: seconds until the limiter would admit the same cost,
            if nobody else takes it first.
        cost: the cost that was asked for.
        allowed: the longest wait that was allowed (seconds).

    A fresh instance per refusal; it pickles.
    """

    error_class = ErrorClass.TRANSIENT

    if TYPE_CHECKING:

        def __init__(
            self, limiter: str, retry_after: float, cost: float, allowed: float, /
        ) -> None: ...

    @property
    def limiter(self) -> str:
        """The ``name`` of the limiter that refused."""
        return str(self.args[0])

    @property
    def retry_after(self) -> float:
        """Seconds until the limiter would admit the same cost."""
        return float(self.args[1])

    @property
    def cost(self) -> float:
        """The cost asked for."""
        return float(self.args[2])

    @property
    def allowed(self) -> float:
        """The longest wait the caller allowed, in seconds."""
        return float(self.args[3])

    def __str__(self) -> str:
        if len(self.args) != 4:
            return super().__str__()
        limiter, wait, cost, allowed = self.args
        return (
            f"rate limiter {limiter!r} would admit cost {_number(cost)} in {seconds(wait)} s, "
            f"more than the {seconds(allowed)} s allowed; not waiting"
        )


class ConcurrencyLimitExceeded(RuntimeError, Throttled):
    """A ``ConcurrencyLimit`` had no free slot within ``max_wait``.

    TRANSIENT for every classifier, and never counted as a circuit breaker
    failure (the dependency did not fail).

    Attributes:
        concurrency: the ``name`` of the limit.
        limit: the limit when the call was refused.
        max_wait: the seconds the call waited for a slot.
        retry_after: ``None``: when a slot frees up is not known.

    A fresh instance per refusal; it pickles.
    """

    error_class = ErrorClass.TRANSIENT
    retry_after: float | None = None

    if TYPE_CHECKING:

        def __init__(self, concurrency: str, limit: int, max_wait: float, /) -> None: ...

    @property
    def concurrency(self) -> str:
        """The ``name`` of the limit that refused."""
        return str(self.args[0])

    @property
    def limit(self) -> int:
        """The limit when the call was refused."""
        return int(self.args[1])

    @property
    def max_wait(self) -> float:
        """Seconds the call waited for a slot."""
        return float(self.args[2])

    def __str__(self) -> str:
        if len(self.args) != 3:
            return super().__str__()
        name, limit, max_wait = self.args
        waited = f"within {seconds(max_wait)} s" if max_wait > 0 else "at once"
        return (
            f"concurrency limit {name!r} had no free slot {waited} "
            f"({limit} of {limit} in flight); not running the call"
        )


# -- the store protocol ---------------------------------------------------------------


class RatePolicy(NamedTuple):
    """The settings of one rate limiter, as a store receives them.

    Attributes:
        rate: units admitted per *per* seconds, sustained.
        per: the period of *rate*, in seconds.
        burst: units that may be admitted at once from a full limiter.
    """

    rate: float
    per: float
    burst: float

    @property
    def interval(self) -> float:
        """Seconds per unit: ``per / rate`` (the GCRA emission interval)."""
        return self.per / self.rate


class Reservation(NamedTuple):
    """A store's answer to ``rate_reserve`` (and to ``rate_confirm``).

    Attributes:
        admitted: whether the cost was reserved.
        wait: when admitted, seconds the caller must wait before it proceeds
            (``0.0``: at once); when refused, seconds until the same cost
            would be admitted if nobody took it first (the ``retry_after``).
        turn: when admitted, the store's record of the reservation, opaque
            to the caller: handed to ``rate_confirm`` if a pause may have
            moved it, and to ``rate_refund``. ``None`` for a store that keeps
            no record (the caller then neither confirms nor refunds).
        paused_until: where the latest pause the store knows of ends, on
            the store's own clock (``-inf``: none). A *mark*: the caller
            never compares it with its own clock, only with other marks of
            the same store, to learn of a pause another process ordered.
        mark: when admitted, the reservation's place among the pauses, on
            the same clock: the later of ``paused_until`` and the store's
            time when it answered, so a pause ordered after the reservation
            ends after this mark. ``None``: the store gives no marks, and a
            caller that waits asks ``rate_confirm`` at its turn.
    """

    admitted: bool
    wait: float
    turn: str | None = None
    paused_until: float = -math.inf
    mark: float | None = None


@runtime_checkable
class PacingStore(Protocol):
    """Where the state of rate limiters and concurrency limits lives, keyed by name.

    A ``RateLimiter`` or ``ConcurrencyLimit`` built with ``store=`` and a
    ``name`` makes every decision through these methods, so every process
    using the same store and name shares one limit. ``MemoryPacingStore`` is
    the reference implementation (its ``_Gcra`` is the rule, executable); a
    shared store (``resilient.redis``) runs each method as one atomic
    script. What a store must do:

    - **One call per operation, atomic.** Each method is one indivisible
      read-modify-write of one name's state. An admitted acquire is one
      ``rate_reserve`` call, whether it waits or not; a caller that waits
      calls ``rate_confirm`` at its turn only if a pause may have moved it
      (see below).
    - **Its own clock.** *now* is the caller's clock reading, in seconds
      from an arbitrary origin. A store with a clock of its own (Redis
      ``TIME``) uses that instead and ignores *now*; every duration it
      returns is relative (seconds from the moment of the call), so
      callers on different hosts never compare clocks.
    - **The rate is GCRA with reservation.** With ``T = policy.interval``
      and ``tau = policy.burst * T``, ``rate_reserve`` computes
      ``start = max(now, paused_until)``, ``new_tat = max(tat, start) +
      cost * T`` and ``at = max(start, new_tat - tau)``; the wait is
      ``at - now`` (``0.0`` when below 1e-9). If ``wait <= max_wait`` it
      stores ``tat = new_tat``, remembers ``at`` as the latest turn handed
      out, and answers ``Reservation(True, wait, turn)``: the caller sleeps
      *wait* once. Otherwise it changes nothing and answers
      ``Reservation(False, wait)``. *max_wait* is ``>= 0`` and may be
      ``math.inf``.
    - **A pause holds every new acquire, and the waiters that hear of it.**
      ``rate_pause`` extends ``paused_until`` to ``now + seconds`` (never
      shortens it); turns handed out and not yet reached (after *now*) move
      later by the time the pause added, and the TAT with them, so the
      schedule resumes after the pause as it was. ``rate_confirm(turn)``
      answers the wait still ahead of a waiter (``0.0``: go), with the turn
      updated. Which waiters ask: a store that shares state between
      processes answers *marks* (``Reservation.paused_until`` and
      ``.mark``; ``rate_pause`` returns the pause's end as one), and the
      limiter keeps the latest ``paused_until`` it has seen in any answer;
      a waiter confirms only if that is later than its reservation's
      ``mark`` (a pause ordered after its reservation, by this limiter or
      heard of through it). A waiter whose process never heard of the
      pause goes at its turn; the pause holds everyone's next acquire. A
      store that answers no mark (``mark=None``, as ``MemoryPacingStore``,
      where asking costs nothing) has every waiter confirm.
    - **Refunds never let the rate be exceeded.** ``rate_refund(turn, cost)``
      gives back up to *cost* units of that reservation (never more than it
      took): the TAT moves back by as much as the turns handed out since
      allow (each of them must keep its units after its own turn), and
      never below *now*. It answers the updated turn. Without a turn it
      does nothing.
    - **Slots are leases.** ``slot_acquire`` admits when fewer than *limit*
      unexpired leases are held under *name*, and returns a new lease id
      (a string unique in the store) that expires *lease_ttl* seconds later
      unless released; else ``None``, at once (it never waits: the limit
      waits, and asks again). ``slot_release`` drops the lease; releasing an
      expired or unknown lease does nothing. A crashed process's leases
      thus come back after *lease_ttl*.
    - **Async twins.** Every method has an ``async`` twin with the same
      arguments and answer, which the async forms (``acquire_async``,
      ``async with``, ``call_async``) await. A store that serves only one
      kind raises ``TypeError`` from the other, naming the form to use.
    - **Errors.** What a store does while its backend is unreachable is its
      own policy (``RedisStore(on_store_error=...)``); an exception it
      raises propagates to the caller of the limiter unchanged.
    """

    def rate_reserve(
        self, name: str, policy: RatePolicy, cost: float, max_wait: float, now: float
    ) -> Reservation:
        """Reserve *cost* units if they can be admitted within *max_wait* seconds."""
        ...

    async def rate_reserve_async(
        self, name: str, policy: RatePolicy, cost: float, max_wait: float, now: float
    ) -> Reservation:
        """``rate_reserve``'s twin, awaited by the async forms."""
        ...

    def rate_confirm(self, name: str, policy: RatePolicy, turn: str, now: float) -> Reservation:
        """A waiter's wait has passed: ``wait`` 0.0 to go, or the wait a pause added."""
        ...

    async def rate_confirm_async(
        self, name: str, policy: RatePolicy, turn: str, now: float
    ) -> Reservation:
        """``rate_confirm``'s twin."""
        ...

    def rate_refund(
        self, name: str, policy: RatePolicy, cost: float, now: float, turn: str | None = None
    ) -> str | None:
        """Give back up to *cost* units of the reservation *turn*; the updated turn."""
        ...

    async def rate_refund_async(
        self, name: str, policy: RatePolicy, cost: float, now: float, turn: str | None = None
    ) -> str | None:
        """``rate_refund``'s twin."""
        ...

    def rate_pause(self, name: str, policy: RatePolicy, seconds: float, now: float) -> float | None:
        """Admit nothing under *name* for *seconds* (extends, never shortens, a pause).

        Returns:
            Where the pause in force ends, as a mark (see ``Reservation``),
            or ``None`` from a store that gives no marks.
        """
        ...

    async def rate_pause_async(
        self, name: str, policy: RatePolicy, seconds: float, now: float
    ) -> float | None:
        """``rate_pause``'s twin."""
        ...

    def slot_acquire(self, name: str, limit: int, lease_ttl: float, now: float) -> str | None:
        """Take a slot if fewer than *limit* are held: a lease id, else ``None``."""
        ...

    async def slot_acquire_async(
        self, name: str, limit: int, lease_ttl: float, now: float
    ) -> str | None:
        """``slot_acquire``'s twin."""
        ...

    def slot_release(self, name: str, lease: str, now: float) -> None:
        """Give the slot of *lease* back."""
        ...

    async def slot_release_async(self, name: str, lease: str, now: float) -> None:
        """``slot_release``'s twin."""
        ...


_STORE_METHODS = (
    "rate_reserve",
    "rate_confirm",
    "rate_refund",
    "rate_pause",
    "slot_acquire",
    "slot_release",
)


# -- the rule -------------------------------------------------------------------------


class _Turn(NamedTuple):
    """Strictly private. One reservation, as the GCRA state records it.

    ``end``: where its units end on the timeline (the TAT it left, moved by
    pauses and by refunds of earlier reservations since); ``at``: its turn;
    ``refunded`` and ``shift``: the state's totals when ``end`` and ``at``
    were last brought up to date; ``units``: what it may still give back.
    """

    end: float
    at: float
    refunded: float
    shift: float
    units: float


class _Held:
    """Strictly private. A task's last acquire, shared by everyone who copies its context."""

    __slots__ = ("turn",)

    def __init__(self, turn: _Record | None) -> None:
        self.turn = turn


class _Gcra:
    """Strictly private. The state of one rate limiter, and the rule (see ``PacingStore``).

    Every admitted unit owns ``interval`` seconds of a timeline (GCRA's
    virtual schedule), on which the units are laid end to end up to the TAT;
    a unit is admitted no earlier than ``tolerance`` before the end of its
    stretch, and its stretch never starts before its turn. Those two facts
    give the bound (at most ``burst + t / interval`` units in any ``t``);
    pauses and refunds keep both:

    - a pause inserts the time it adds before every turn not yet reached,
      so the stretches and turns after *now* move together (``shift`` sums
      what pauses added; ``episode``/``episode_shift`` are when the current
      run of pauses started and ``shift`` before it, so a waiter can tell
      whether it was still waiting then);
    - a refund shortens its reservation's stretch and pulls the later ones
      back by as much, which is allowed only as far as none of them then
      starts before its own turn: ``amax`` (the latest turn handed out)
      bounds that; ``refunded`` sums those pulls, so a reservation knows
      where its stretch ends now.

    The in-process ``RateLimiter`` holds one, a ``MemoryPacingStore`` one per
    name; the functions below are the rule for both.
    Redis runs the same rule in Lua (``resilient.redis._pacing``).
    """

    __slots__ = ("amax", "episode", "episode_shift", "paused_until", "refunded", "shift", "tat")

    def __init__(self) -> None:
        self.tat = -math.inf
        self.amax = -math.inf
        self.refunded = 0.0
        self.paused_until = -math.inf
        self.shift = 0.0
        self.episode = -math.inf
        self.episode_shift = 0.0


def _reserve(
    s: _Gcra, interval: float, tolerance: float, cost: float, most: float, now: float
) -> tuple[bool, float, _Turn | None]:
    """Reserve *cost* units within *most* seconds: admitted, the wait, the turn."""
    paused = s.paused_until
    start = paused if paused > now else now
    tat = s.tat
    new_tat = (tat if tat > start else start) + cost * interval
    at = new_tat - tolerance
    if at < start:
        at = start
    wait = at - now
    if wait <= _EPSILON:
        wait = 0.0
    if wait > most:
        return False, wait, None
    s.tat = new_tat
    if at > s.amax:
        s.amax = at
    return True, wait, _Turn(new_tat, at, s.refunded, s.shift, cost)


def _pause(s: _Gcra, seconds: float, now: float) -> bool:
    """Extend the pause to ``now + seconds``, moving the turns ahead with it; whether it changed."""
    until = now + seconds
    paused = s.paused_until
    if seconds <= 0.0 or until <= paused:
        return False
    if paused <= now:  # a new run of pauses starts here
        s.episode = now
        s.episode_shift = s.shift
        added = seconds
    else:
        added = until - paused
    s.shift += added
    s.paused_until = until
    if s.amax > now:  # turns handed out and not yet reached: they move, and the TAT with them
        s.tat += added
        s.amax += added
    return True


def _catch_up(s: _Gcra, turn: _Turn) -> _Turn:
    """*turn* moved by the pauses that found it still waiting (since it was last updated)."""
    shift = s.shift
    if shift <= turn.shift:
        return turn
    before = s.episode_shift
    if turn.shift > before:  # made during the latest run of pauses: each extension moves it
        moved = True
    elif turn.shift == before:  # made before that run: moved if its turn was still ahead
        moved = turn.at > s.episode
    else:  # runs of pauses since: as the earlier ones would have moved it
        moved = turn.at + (before - turn.shift) > s.episode
    if not moved:
        return turn._replace(shift=shift)
    added = shift - turn.shift
    return turn._replace(end=turn.end + added, at=turn.at + added, shift=shift)


def _confirm(s: _Gcra, turn: _Turn, now: float) -> tuple[float, _Turn]:
    """A waiter's wait has passed: the wait still ahead of it (0.0: go), and its turn."""
    turn = _catch_up(s, turn)
    wait = turn.at - now
    return (wait if wait > _EPSILON else 0.0), turn


def _refund(s: _Gcra, turn: _Turn, cost: float, interval: float, now: float) -> _Turn:
    """Give back up to *cost* units of *turn*, as far as the bound allows; the updated turn."""
    turn = _catch_up(s, turn)
    refunded = s.refunded
    if refunded < turn.refunded:
        return turn  # a record of state that has since been reset (a store's expiry)
    end = turn.end - (refunded - turn.refunded)
    tat = s.tat
    back = min(cost, turn.units) * interval
    if tat - now < back:
        back = tat - now  # never before now: a full limiter is full
    last = tat - end <= _EPSILON
    if not last and end - s.amax < back:
        back = end - s.amax  # later turns stay after their own stretch
    if back <= 0.0:
        return turn._replace(end=end, refunded=refunded)
    s.tat = tat - back
    if not last:
        s.refunded = refunded = refunded + back
    return _Turn(end - back, turn.at, refunded, turn.shift, turn.units - back / interval)


def _encode_turn(turn: _Turn) -> str:
    return " ".join(repr(float(x)) for x in turn)


def _decode_turn(turn: str) -> _Turn | None:
    try:
        fields = [float(x) for x in turn.split()]
    except ValueError:
        return None
    return _Turn(*fields) if len(fields) == 5 else None


class MemoryPacingStore:
    """A ``PacingStore`` in this process: the reference implementation of the protocol.

    Thread-safe. Limiters and limits built without ``store=`` do not use it
    (they keep their state in themselves, faster); it is for tests, for a
    shared store's fallback while its backend is unreachable, and as the
    executable form of the protocol's rules. It reads time only from the
    *now* it is given.
    """

    __slots__ = ("_leases", "_lock", "_rates", "_serial")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rates: dict[str, _Gcra] = {}
        self._leases: dict[str, dict[str, float]] = {}
        self._serial = itertools.count(1)

    def _forget(self, name: str) -> None:
        """Drop what is kept for *name* (a shared store's fallback, once its limiters are gone)."""
        with self._lock:
            self._rates.pop(name, None)
            self._leases.pop(name, None)

    def _state(self, name: str) -> _Gcra:
        state = self._rates.get(name)
        if state is None:
            state = self._rates[name] = _Gcra()
        return state

    def rate_reserve(
        self, name: str, policy: RatePolicy, cost: float, max_wait: float, now: float
    ) -> Reservation:
        """See ``PacingStore.rate_reserve``."""
        interval = policy.interval
        with self._lock:
            admitted, wait, turn = _reserve(
                self._state(name), interval, policy.burst * interval, cost, max_wait, now
            )
        return Reservation(admitted, wait, None if turn is None else _encode_turn(turn))

    async def rate_reserve_async(
        self, name: str, policy: RatePolicy, cost: float, max_wait: float, now: float
    ) -> Reservation:
        """See ``PacingStore.rate_reserve``."""
        return self.rate_reserve(name, policy, cost, max_wait, now)

    def rate_confirm(self, name: str, policy: RatePolicy, turn: str, now: float) -> Reservation:
        """See ``PacingStore.rate_confirm``."""
        record = _decode_turn(turn)
        if record is None:
            return Reservation(True, 0.0, turn)
        with self._lock:
            wait, record = _confirm(self._state(name), record, now)
        return Reservation(True, wait, _encode_turn(record))

    async def rate_confirm_async(
        self, name: str, policy: RatePolicy, turn: str, now: float
    ) -> Reservation:
        """See ``PacingStore.rate_confirm``."""
        return self.rate_confirm(name, policy, turn, now)

    def rate_refund(
        self, name: str, policy: RatePolicy, cost: float, now: float, turn: str | None = None
    ) -> str | None:
        """See ``PacingStore.rate_refund``."""
        record = None if turn is None else _decode_turn(turn)
        if record is None:
            return turn
        with self._lock:
            record = _refund(self._state(name), record, cost, policy.interval, now)
        return _encode_turn(record)

    async def rate_refund_async(
        self, name: str, policy: RatePolicy, cost: float, now: float, turn: str | None = None
    ) -> str | None:
        """See ``PacingStore.rate_refund``."""
        return self.rate_refund(name, policy, cost, now, turn)

    def rate_pause(self, name: str, policy: RatePolicy, seconds: float, now: float) -> None:
        """See ``PacingStore.rate_pause``."""
        with self._lock:
            _pause(self._state(name), seconds, now)

    async def rate_pause_async(
        self, name: str, policy: RatePolicy, seconds: float, now: float
    ) -> None:
        """See ``PacingStore.rate_pause``."""
        self.rate_pause(name, policy, seconds, now)

    def slot_acquire(self, name: str, limit: int, lease_ttl: float, now: float) -> str | None:
        """See ``PacingStore.slot_acquire``."""
        with self._lock:
            leases = self._leases.setdefault(name, {})
            if len(leases) >= limit:
                for lease, expires in list(leases.items()):
                    if expires <= now:
                        del leases[lease]
                if len(leases) >= limit:
                    return None
            lease = str(next(self._serial))
            leases[lease] = now + lease_ttl
            return lease

    async def slot_acquire_async(
        self, name: str, limit: int, lease_ttl: float, now: float
    ) -> str | None:
        """See ``PacingStore.slot_acquire``."""
        return self.slot_acquire(name, limit, lease_ttl, now)

    def slot_release(self, name: str, lease: str, now: float) -> None:
        """See ``PacingStore.slot_release``."""
        with self._lock:
            leases = self._leases.get(name)
            if leases is not None:
                leases.pop(lease, None)

    async def slot_release_async(self, name: str, lease: str, now: float) -> None:
        """See ``PacingStore.slot_release``."""
        self.slot_release(name, lease, now)

    def __repr__(self) -> str:
        return "MemoryPacingStore()"


# -- RateLimiter ----------------------------------------------------------------------


class RateLimiter:
    """Admit work at *rate* units per *per* seconds, with bursts of up to *burst*.

    GCRA (the virtual-scheduling form of a token bucket): over any interval
    of length ``t`` it admits at most ``burst + rate * t / per`` units, and
    it starts full, so there is no first-period overshoot. A caller that
    must wait reserves its turn and sleeps once, through the clock; with a
    ``store`` the limit holds for every process sharing the ``name``.

    Args:
        rate: units per *per* seconds (> 0).
        per: the period of *rate*, in seconds or a ``timedelta`` (> 0):
            ``RateLimiter(500, per=60)`` is 500 requests per minute.
        burst: units admitted at once from a full limiter (>= 1, default 1:
            evenly spaced). A ``cost`` may never exceed it.
        name: names the limiter in logs and telemetry (the ``limiter`` label)
            and in the store; required with *store*.
        store: a ``PacingStore`` that shares the state
            (``resilient.redis.RedisStore``); default: this object.
        clock: where time is read and waited; default the process clock.

    Example:
        >>> from resilient.testing import ManualClock
        >>> limiter = RateLimiter(2, per=1.0, burst=2, clock=ManualClock())
        >>> limiter.try_acquire(), limiter.try_acquire(), limiter.try_acquire()
        (True, True, False)
    """

    __slots__ = (
        "__weakref__",
        "_admitted",
        "_claim",
        "_clock",
        "_interval",
        "_local",
        "_lock",
        "_logged_until",
        "_paused_seen",
        "_policy",
        "_refused",
        "_state",
        "_tolerance",
        "_turns",
        "_undoing",
        "_waited",
        "burst",
        "name",
        "per",
        "rate",
        "store",
    )

    def __init__(
        self,
        rate: float,
        per: float | datetime.timedelta = 1.0,
        *,
        burst: float = 1,
        name: str | None = None,
        store: PacingStore | None = None,
        clock: Clock | None = None,
    ) -> None:
        _check_positive("rate", rate)
        per = _check_duration("per", per, allow_zero=False)
        if _check_positive("burst", burst) < 1:
            raise ValueError(
                f"burst must be >= 1, got {burst!r}: with, @limiter and retry(limiter=) "
                "take cost 1, which a smaller burst could never admit"
            )
        self._claim = _check_name(name, store)
        check_clock(clock)
        self.rate: float = float(rate)
        """Units per *per* seconds."""
        self.per: float = per
        """The period of *rate*, in seconds."""
        self.burst: float = burst
        """Units admitted at once from a full limiter; the largest cost."""
        self.name: str = name if name is not None else f"limiter-{next(_limiter_names)}"
        """The name in logs, telemetry and the store."""
        self.store: PacingStore | None = store
        """Where the state is shared, or ``None``."""
        self._clock = clock
        self._policy = RatePolicy(self.rate, per, float(burst))
        self._interval = per / self.rate
        self._tolerance = float(burst) * self._interval
        if not (math.isfinite(self._interval) and math.isfinite(self._tolerance)):
            raise ValueError(
                f"rate and per must give a finite interval per unit, got rate={rate!r}, per={per!r}"
            )
        if self._tolerance > MAX_SECONDS:
            # The longest wait (a cost of burst, from empty), and the time an emptied
            # limiter takes to refill: past ten years, a sleep the platform may refuse.
            raise ValueError(
                f"rate, per and burst must give a limiter that refills within "
                f"{MAX_SECONDS:.0f} s (ten years), got rate={rate!r}, per={per!r}, "
                f"burst={burst!r}: burst * per / rate is {self._tolerance:.3g} s, "
                "the longest wait for an acquire"
            )
        self._lock = threading.Lock()
        self._state = _Gcra()
        self._local = threading.local()
        """``turn``: this thread's last acquire outside asyncio tasks (``refund`` gives it back)."""
        self._turns: contextvars.ContextVar[_Held | None] = contextvars.ContextVar(
            f"resilient.pacing.turn:{self.name}", default=None
        )
        """An asyncio task's last acquire, one record shared by whoever copies the context."""
        self._undoing: set[asyncio.Future[Any]] = set()
        """Refunds and releases of answers that arrived after their caller was cancelled."""
        self._logged_until = -math.inf  # the end of the last pause logged at INFO
        self._paused_seen = -math.inf
        """The latest ``paused_until`` mark the store has answered: the pauses this object knows."""
        self._admitted = 0
        self._waited = 0
        self._refused = 0
        _events.register_pacer(self)

    # -- the call forms ---------------------------------------------------------------

    def acquire(
        self, cost: float = 1, *, timeout: float | datetime.timedelta | None = None
    ) -> None:
        """Wait until *cost* units are admitted.

        The wait goes through the clock. When it would be longer than
        *timeout*, or than the time left under an enclosing ``deadline``
        (``resilient.time_remaining()``), nothing is reserved and
        ``RateLimitExceeded`` is raised at once, with ``retry_after``. A
        ``pause`` ordered while the caller waits holds it too if this
        limiter knows of it: it waits again (refused, its turn given back,
        if that would exceed what it allows). In process every pause is
        known; through a store, the pauses this limiter ordered or saw in
        the store's answers (one that only another process heard of lets
        the caller go at its turn, and holds every next acquire). Through a
        store, an admitted acquire is one round trip, waited or not, unless
        a pause known here has to be checked at the turn.

        Args:
            cost: units to take (> 0, at most ``burst``).
            timeout: the longest wait accepted, in seconds; ``None``: no
                bound but the deadline's.

        Raises:
            RateLimitExceeded: the wait would exceed what is allowed.
            ValueError: *cost* is above ``burst`` and could never be admitted.
        """
        if cost is not _ONE:
            cost = self._check_cost(cost)
        allowed = self._allowed(timeout)
        clock = DEFAULTS.clock if self._clock is None else self._clock
        now = time.monotonic() if clock is SYSTEM_CLOCK else clock.monotonic()
        store = self.store
        turn: _Turn | str | None
        mark: float | None = None  # None: ask at the turn whether a pause moved it
        if store is None:
            admitted, wait, turn = self._reserve(cost, allowed, now)
        else:
            admitted, wait, turn, paused_until, mark = store.rate_reserve(
                self.name, self._policy, cost, allowed, now
            )
            self._count(admitted, wait, paused_until)
        if not admitted:
            raise self._refusal(wait, cost, allowed)
        while wait > 0.0:
            try:
                clock.sleep(wait)
                allowed -= wait
                if mark is not None and self._paused_seen <= mark:
                    break  # no pause known here was ordered after the reservation: go
                wait, turn, mark = self._confirm(turn, clock)
            except BaseException:
                self._give_back(cost, turn)
                raise
            if wait > allowed:  # a pause moved the turn past what the caller allows
                self._give_back(cost, turn)
                raise self._refusal(wait, cost, allowed)
        self._remember(turn)

    async def acquire_async(
        self, cost: float = 1, *, timeout: float | datetime.timedelta | None = None
    ) -> None:
        """Wait until *cost* units are admitted; ``acquire``'s ``async`` twin.

        The wait is ``await clock.asleep(...)``. A cancelled wait gives the
        reservation back, as far as later turns allow; so does a task
        cancelled while the store's answer is on its way (the answer is
        awaited apart, then undone).

        Raises:
            RateLimitExceeded: the wait would exceed what is allowed.
            ValueError: *cost* is above ``burst`` and could never be admitted.
        """
        if cost is not _ONE:
            cost = self._check_cost(cost)
        allowed = self._allowed(timeout)
        clock = DEFAULTS.clock if self._clock is None else self._clock
        now = clock.monotonic()
        store = self.store
        turn: _Turn | str | None
        mark: float | None = None  # None: ask at the turn whether a pause moved it
        if store is None:
            admitted, wait, turn = self._reserve(cost, allowed, now)
        else:
            reserving = store.rate_reserve_async(self.name, self._policy, cost, allowed, now)
            admitted, wait, turn, paused_until, mark = await _shielded(
                reserving,
                self._undo_reservation(cost),
                self._undoing,
                f"rate limiter {self.name!r}",
            )
            self._count(admitted, wait, paused_until)
        if not admitted:
            raise self._refusal(wait, cost, allowed)
        while wait > 0.0:
            try:
                await clock.asleep(wait)
                allowed -= wait
                if mark is not None and self._paused_seen <= mark:
                    break  # no pause known here was ordered after the reservation: go
                wait, turn, mark = await self._confirm_async(turn, clock)
            except BaseException:
                await self._give_back_async(cost, turn)
                raise
            if wait > allowed:  # a pause moved the turn past what the caller allows
                await self._give_back_async(cost, turn)
                raise self._refusal(wait, cost, allowed)
        self._remember(turn)

    def try_acquire(self, cost: float = 1) -> bool:
        """Take *cost* units if they are admitted now, without waiting.

        Returns:
            Whether they were taken.

        Raises:
            ValueError: *cost* is above ``burst`` and could never be admitted.
        """
        if cost is not _ONE:  # the default (and a literal 1, on CPython) skips the check
            cost = self._check_cost(cost)
            span = cost * self._interval
        else:
            span = self._interval  # 1 * interval, without an int-by-float product
        clock = DEFAULTS.clock if self._clock is None else self._clock
        now = time.monotonic() if clock is SYSTEM_CLOCK else clock.monotonic()
        if self.store is not None:
            admitted, _, turn, paused_until, _ = self.store.rate_reserve(
                self.name, self._policy, cost, 0.0, now
            )
            self._count(admitted, 0.0, paused_until)
            if admitted:
                self._remember(turn)
            return admitted
        # _reserve with no wait allowed, inlined: the path measured against a bare Lock.
        state = self._state
        with self._lock:
            tat = state.tat
            new_tat = (tat if tat > now else now) + span
            # Admitted when conforming (to 1e-9 s: float rounding) and not paused.
            if new_tat - self._tolerance - now > 1e-9 or state.paused_until > now:
                self._refused += 1
                return False
            state.tat = new_tat
            if now > state.amax:
                state.amax = now
            self._admitted += 1
            # What refund gives back. Until a pause or a refund has moved the schedule, a
            # unit's turn is its end alone (see _refund_here): a _Turn costs a third of
            # the rest of this path.
            if cost is _ONE and not (state.refunded or state.shift):
                record: _Record = new_tat
            else:
                record = _Turn(new_tat, now, state.refunded, state.shift, cost)
        # _remember, inlined (the path measured against a bare Lock): while no asyncio
        # task runs in any thread, this is not one.
        tasks = _running_tasks
        if tasks is None and "asyncio" in _MODULES:
            tasks = _task_registry()
        if tasks and _current_task() is not None:
            self._turns.set(_Held(record))
        else:
            self._local.turn = record
        return True

    def refund(self, cost: float) -> None:
        """Give back up to *cost* units of the last acquire of this thread (or task).

        Pace tokens per minute by acquiring an estimate before the call and
        refunding the difference once the real usage is known. The units
        come back as far as that never lets the limiter exceed its rate:
        turns handed out since to other callers keep theirs, so a refund
        made while later callers queue may give back less (or nothing).
        Never more than that acquire took; nothing without one.
        """
        cost = _check_positive("cost", cost)
        turn, held = self._recall()
        if turn is None:
            return
        now = self._now()
        if isinstance(turn, str):
            assert self.store is not None
            turn = self.store.rate_refund(self.name, self._policy, cost, now, turn)
        else:
            turn = self._refund_here(turn, cost, now)
        self._keep(turn, held)

    async def refund_async(self, cost: float) -> None:
        """``refund``'s ``async`` twin (it awaits the store)."""
        cost = _check_positive("cost", cost)
        turn, held = self._recall()
        if turn is None:
            return
        now = self._now()
        if isinstance(turn, str):
            assert self.store is not None
            turn = await self.store.rate_refund_async(self.name, self._policy, cost, now, turn)
        else:
            turn = self._refund_here(turn, cost, now)
        self._keep(turn, held)

    def _now(self) -> float:
        clock = DEFAULTS.clock if self._clock is None else self._clock
        return clock.monotonic()

    def _remember(self, turn: _Record | None) -> None:
        """Keep *turn* as the last acquire of this asyncio task, or else of this thread.

        A task's record is one shared object: the tasks and threads that copy
        the task's context (``gather``, ``wait_for``, ``create_task``,
        ``to_thread``) see the same record, so a refund made by any of them
        takes from it and all of them together never give back more than the
        acquire took.
        """
        tasks = _running_tasks  # while no asyncio task runs in any thread, this is not one
        if tasks is None and "asyncio" in _MODULES:
            tasks = _task_registry()
        if tasks and _current_task() is not None:
            self._turns.set(_Held(turn))
        else:
            self._local.turn = turn

    def _recall(self) -> tuple[_Record | None, _Held | None]:
        """The last acquire of this asyncio task, or else of this thread, and where it is held.

        ``None`` as the record: none. Outside a task, a thread with no acquire
        of its own reads the record of the context it runs in (a function run
        by ``asyncio.to_thread`` refunds its task's acquire); the holder is
        then the shared one, ``None`` for this thread's own. A shared record
        is taken out of its holder until ``_keep`` puts the refund's update
        back, so two refunds at once (threads, or a store's answer awaited)
        never both give back the same units.
        """
        if _current_task() is None:
            turn: _Record | None = getattr(self._local, "turn", None)
            if turn is not None:
                return turn, None
        held = self._turns.get()
        if held is None:
            return None, None
        with self._lock:  # claimed until _keep: a refund at the same time finds none
            turn = held.turn
            held.turn = None
        return turn, held

    def _keep(self, turn: _Record | None, held: _Held | None) -> None:
        """Put a refund's updated *turn* back where ``_recall`` found it."""
        if held is None:
            self._local.turn = turn
        else:
            held.turn = turn

    def _refund_here(self, turn: _Turn | float, cost: float, now: float) -> _Turn:
        """Give back units of an in-process *turn*.

        ``try_acquire()`` records a unit taken before any pause or refund
        moved the schedule by its ``end`` alone: ``refunded`` and ``shift``
        were 0, and its turn (``at``) was no later than any pause ordered
        since began, which moves no turn: ``-inf`` says as much to ``_catch_up``.
        """
        if not isinstance(turn, _Turn):
            turn = _Turn(turn, -math.inf, 0.0, 0.0, 1.0)
        with self._lock:
            return _refund(self._state, turn, cost, self._interval, now)

    def pause(self, seconds: float | datetime.timedelta) -> None:
        """Admit nothing for *seconds*: a server's ``Retry-After`` holds for every caller.

        Every turn not yet reached moves later by the time the pause adds,
        so the schedule resumes after it as it was; the callers of this
        limiter already waiting for their turn wait the pause too. With a
        store, every process sharing the name pauses: its next acquire waits
        the pause, and its callers already waiting do when their limiter has
        heard of it from the store (a waiter that has not goes at the turn
        it was given). A pause only ever extends: a shorter one while a
        longer one runs changes nothing.
        """
        duration = _check_duration("seconds", seconds, allow_zero=True)
        clock = DEFAULTS.clock if self._clock is None else self._clock
        now = clock.monotonic()
        if self.store is not None:
            self._heard(self.store.rate_pause(self.name, self._policy, duration, now))
        else:
            with self._lock:
                if not _pause(self._state, duration, now):
                    return
        self._log_pause(duration, now)

    async def pause_async(self, seconds: float | datetime.timedelta) -> None:
        """``pause``'s ``async`` twin (it awaits the store)."""
        duration = _check_duration("seconds", seconds, allow_zero=True)
        clock = DEFAULTS.clock if self._clock is None else self._clock
        now = clock.monotonic()
        if self.store is not None:
            self._heard(await self.store.rate_pause_async(self.name, self._policy, duration, now))
        else:
            with self._lock:
                if not _pause(self._state, duration, now):
                    return
        self._log_pause(duration, now)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def __aenter__(self) -> Self:
        await self.acquire_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __call__(self, func: Callable[P, T]) -> Callable[P, T]:
        """Use as ``@limiter``: every call of *func* (sync or ``async``) acquires cost 1 first."""
        check_callable(func, "@limiter", sync_only=False)
        if is_async_callable(func):
            afunc: Callable[..., Awaitable[Any]] = func

            async def paced_async(*args: Any, **kwargs: Any) -> Any:
                await self.acquire_async()
                return await afunc(*args, **kwargs)

            return functools.wraps(func)(paced_async)  # type: ignore[return-value]  # pyright: ignore[reportReturnType]

        def paced(*args: Any, **kwargs: Any) -> Any:
            self.acquire()
            result = func(*args, **kwargs)
            if type(result) in LAZY_RESULTS:
                refuse_lazy_result(result, func, "@limiter")
            return result

        return functools.wraps(func)(paced)

    def __repr__(self) -> str:
        shared = "" if self.store is None else f", store={self.store!r}"
        return (
            f"RateLimiter({_number(self.rate)}, per={_number(self.per)}, "
            f"burst={_number(self.burst)}, name={self.name!r}{shared})"
        )

    # -- helpers ----------------------------------------------------------------------

    def _refusal(self, wait: float, cost: float, allowed: float) -> RateLimitExceeded:
        error = RateLimitExceeded(self.name, wait, cost, allowed)
        if _events.SINK is not None:
            _events.SINK.pacing_refused("limiter", self.name, error)
        return error

    def _pacing_counts(self) -> tuple[int, int, int]:
        """Acquires admitted at once, admitted after a wait, refused: read by the telemetry."""
        return self._admitted, self._waited, self._refused

    def _reserve(
        self, cost: float, max_wait: float, now: float
    ) -> tuple[bool, float, _Turn | None]:
        """The in-process ``rate_reserve`` (see ``PacingStore``), counted."""
        with self._lock:
            admitted, wait, turn = _reserve(
                self._state, self._interval, self._tolerance, cost, max_wait, now
            )
            if not admitted:
                self._refused += 1
            elif wait > 0.0:
                self._waited += 1
            else:
                self._admitted += 1
        return admitted, wait, turn

    def _count(self, admitted: bool, wait: float, paused_until: float) -> None:
        """Count a store's answer, and learn the pause it reports."""
        with self._lock:
            if paused_until > self._paused_seen:
                self._paused_seen = paused_until
            if not admitted:
                self._refused += 1
            elif wait > 0.0:
                self._waited += 1
            else:
                self._admitted += 1

    def _heard(self, paused_until: float | None) -> None:
        """A store answered where the latest pause ends: waiters reserved before it will ask."""
        if paused_until is not None:
            with self._lock:
                if paused_until > self._paused_seen:
                    self._paused_seen = paused_until

    def _confirm(
        self, turn: _Turn | str | None, clock: Clock
    ) -> tuple[float, _Turn | str | None, float | None]:
        """A wait has passed: the wait a pause ordered meanwhile added (0.0: go), the turn,
        and its mark (``None``: ask again at the next turn)."""
        if turn is None:
            return 0.0, None, None
        now = clock.monotonic()
        if isinstance(turn, str):
            assert self.store is not None
            answer = self.store.rate_confirm(self.name, self._policy, turn, now)
            self._heard(answer.paused_until)
            return answer.wait, answer.turn, answer.mark
        with self._lock:
            wait, moved = _confirm(self._state, turn, now)
        return wait, moved, None

    async def _confirm_async(
        self, turn: _Turn | str | None, clock: Clock
    ) -> tuple[float, _Turn | str | None, float | None]:
        if not isinstance(turn, str):
            return self._confirm(turn, clock)
        assert self.store is not None
        now = clock.monotonic()
        answer = await self.store.rate_confirm_async(self.name, self._policy, turn, now)
        self._heard(answer.paused_until)
        return answer.wait, answer.turn, answer.mark

    def _give_back(self, cost: float, turn: _Turn | str | None) -> None:
        """A reserved wait was interrupted: the units were not used.

        They come back as far as turns handed out since allow (a refund):
        a newcomer given the place of a turn that later turns queue behind
        would be admitted together with them, above the rate.
        """
        if turn is None:
            return
        clock = DEFAULTS.clock if self._clock is None else self._clock
        now = clock.monotonic()
        if isinstance(turn, str):
            assert self.store is not None
            self.store.rate_refund(self.name, self._policy, cost, now, turn)
            return
        with self._lock:
            _refund(self._state, turn, cost, self._interval, now)

    async def _give_back_async(self, cost: float, turn: _Turn | str | None) -> None:
        if not isinstance(turn, str):
            self._give_back(cost, turn)
            return
        assert self.store is not None
        clock = DEFAULTS.clock if self._clock is None else self._clock
        now = clock.monotonic()
        giving = self.store.rate_refund_async(self.name, self._policy, cost, now, turn)
        # A cancellation during the refund's round trip does not stop it.
        await _shielded(giving, None, self._undoing, f"rate limiter {self.name!r}")

    def _undo_reservation(self, cost: float) -> Callable[[Reservation], Awaitable[object]]:
        """What undoes a reservation whose caller was cancelled while the store answered."""

        async def undo(reservation: Reservation) -> None:
            if reservation.admitted:
                await self._give_back_async(cost, reservation.turn)

        return undo

    def _log_pause(self, duration: float, now: float) -> None:
        """Log a pause at INFO once: when it starts, not each time it is extended.

        A pause asked while the last one logged is still in force (a burst of
        429s, each with its ``Retry-After``) only extends it: that is a DEBUG
        line. One asked after it ended is a new pause, logged at INFO again.
        """
        if duration <= 0.0:
            return
        with self._lock:
            extended = now < self._logged_until
            self._logged_until = max(self._logged_until, now + duration)
        where = "" if self.store is None else " in every process sharing it"
        if not extended:
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "rate limiter %r paused for %s s%s: no call is admitted until then",
                    self.name,
                    seconds(duration),
                    where,
                    extra={"event": "rate_limiter_paused", "limiter": self.name, "pause": duration},
                )
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "rate limiter %r pause extended to %s s from now%s: no call is admitted until then",
                self.name,
                seconds(duration),
                where,
                extra={
                    "event": "rate_limiter_pause_extended",
                    "limiter": self.name,
                    "pause": duration,
                },
            )

    def _check_cost(self, cost: object) -> float:
        value = _check_positive("cost", cost)
        if value > self.burst:
            raise ValueError(
                f"cost must be <= burst ({_number(self.burst)}) of rate limiter {self.name!r}, "
                f"got {cost!r}: it could never be admitted"
            )
        return value

    @staticmethod
    def _allowed(timeout: object) -> float:
        """The longest wait allowed: *timeout*, bounded by an enclosing deadline."""
        allowed = math.inf if timeout is None else _check_duration("timeout", timeout)
        remaining = time_remaining()
        if remaining is not None and remaining < allowed:
            return remaining
        return allowed


# -- ConcurrencyLimit -----------------------------------------------------------------


class ConcurrencyLimit:
    """A bulkhead: at most ``limit`` calls in flight; the others wait or are refused.

    A call that finds no free slot waits up to *max_wait* seconds (also
    bounded by an enclosing ``deadline``) for one, then raises
    ``ConcurrencyLimitExceeded``. With ``adaptive=True`` the limit moves
    with the outcomes (AIMD): an overload signal (status 429 or 503, a
    ``Retry-After``, a TIMEOUT or DEGRADED class) cuts it to 0.9 of itself,
    at most once per round of calls in flight; successes while at least half
    of it is in use raise it by one per round (a round: as many calls as the
    limit); it stays within ``[min_limit, max_limit]``.

    Args:
        limit: the calls allowed in flight (an int >= 1); where an adaptive
            limit starts.
        max_wait: seconds (or a ``timedelta``) a call waits for a slot;
            ``0``: refuse at once.
        adaptive: move the limit by AIMD on the outcomes.
        min_limit: the floor of an adaptive limit (>= 1, <= *limit*).
        max_limit: the ceiling of an adaptive limit (>= *limit*); ``None``:
            no ceiling but the half-used rule.
        lease_ttl: with a store, seconds after which a slot whose holder
            never released it (a killed process) comes back; set it above
            your longest call.
        name: names the limit in logs, telemetry (the ``concurrency`` label)
            and the store; required with *store*.
        store: a ``PacingStore`` that shares the slots between processes.
        clock: where time is read; default the process clock.
        classifier: classifies failures for the adaptive rule.

    Example:
        >>> limit = ConcurrencyLimit(2)
        >>> with limit:
        ...     limit.in_flight
        1
    """

    __slots__ = (
        "__weakref__",
        "_async_waiters",
        "_claim",
        "_clock",
        "_completed",
        "_cond",
        "_ignore_until",
        "_in_flight",
        "_leases",
        "_limit",
        "_limit_f",
        "_lock",
        "_successes",
        "_sync_waiters",
        "_undoing",
        "_used_high",
        "adaptive",
        "classifier",
        "lease_ttl",
        "max_limit",
        "max_wait",
        "min_limit",
        "name",
        "store",
    )

    def __init__(
        self,
        limit: int,
        *,
        max_wait: float | datetime.timedelta = 0.0,
        adaptive: bool = False,
        min_limit: int = 1,
        max_limit: int | None = None,
        lease_ttl: float | datetime.timedelta = 60.0,
        name: str | None = None,
        store: PacingStore | None = None,
        clock: Clock | None = None,
        classifier: Callable[..., ErrorClass] = classify,
    ) -> None:
        _check_int("limit", limit)
        _check_int("min_limit", min_limit)
        if min_limit > limit:
            raise ValueError(f"min_limit must be <= limit ({limit}), got {min_limit!r}")
        if max_limit is not None:
            _check_int("max_limit", max_limit)
            if max_limit < limit:
                raise ValueError(f"max_limit must be >= limit ({limit}), got {max_limit!r}")
        if not isinstance(adaptive, bool):
            raise TypeError(f"adaptive must be a bool, got {adaptive!r}")
        if not callable(classifier):
            raise TypeError(f"classifier must be callable, got {classifier!r}")
        self._claim = _check_name(name, store)
        check_clock(clock)
        self.max_wait: float = _check_duration("max_wait", max_wait, allow_zero=True)
        """Seconds a call waits for a slot."""
        self.lease_ttl: float = _check_duration("lease_ttl", lease_ttl, allow_zero=False)
        """Seconds a store keeps a slot whose holder never released it."""
        self.adaptive: bool = adaptive
        """Whether the limit moves by AIMD."""
        self.min_limit: int = min_limit
        """The floor of an adaptive limit."""
        self.max_limit: int | None = max_limit
        """The ceiling of an adaptive limit, or ``None``."""
        self.name: str = name if name is not None else f"concurrency-{next(_concurrency_names)}"
        """The name in logs, telemetry and the store."""
        self.store: PacingStore | None = store
        """Where the slots are shared, or ``None``."""
        self.classifier: Callable[..., ErrorClass] = classifier
        """Classifies failures for the adaptive rule."""
        self._clock = clock
        self._limit = limit
        self._limit_f = float(limit)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._in_flight = 0
        self._leases: list[str] = []
        """Store leases taken by ``with``: any one may be released (they are alike)."""
        self._sync_waiters = 0
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._undoing: set[asyncio.Future[Any]] = set()
        """Releases of leases that arrived after their caller was cancelled."""
        self._completed = 0
        self._ignore_until = 0
        self._successes = 0
        self._used_high = False
        _events.register_pacer(self)

    @property
    def limit(self) -> int:
        """The calls allowed in flight now (moves when adaptive)."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """The calls holding a slot of this object now (with a store: this process's)."""
        return self._in_flight

    # -- the call forms ---------------------------------------------------------------

    def call(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call ``func(*args, **kwargs)`` in a slot; its outcome feeds the adaptive rule.

        Raises:
            ConcurrencyLimitExceeded: no slot within ``max_wait``.
        """
        check_callable(func, "concurrency.call()", sync_only=True)
        lease = self._enter()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self._exit(lease, self._failure_signal(exc))
            raise
        if type(result) in LAZY_RESULTS:
            self._exit(lease, None)
            refuse_lazy_result(result, func, "concurrency.call()")
        self._exit(lease, _result_signal(result))
        return result

    async def call_async(
        self, func: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any
    ) -> T:
        """Await ``func(*args, **kwargs)`` in a slot; ``call``'s ``async`` twin.

        Raises:
            ConcurrencyLimitExceeded: no slot within ``max_wait``.
        """
        check_callable(func, "concurrency.call_async()", sync_only=False)
        lease = await self._enter_async()
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            await self._exit_async(lease, self._failure_signal(exc))
            raise
        await self._exit_async(lease, _result_signal(result))
        return result

    def record_overload(self) -> None:
        """Tell an adaptive limit that a call saw an overload signal without raising.

        For ``with limit:`` blocks whose response says 429 or 503 as a value;
        ``call`` and the integrations read the response themselves.
        """
        if self.adaptive:
            with self._lock:
                self._overloaded()

    def __enter__(self) -> Self:
        if self.store is None:
            if not self.adaptive:
                with self._lock:  # the fast path: a free slot, nothing else to do
                    if self._in_flight < self._limit:
                        self._in_flight += 1
                        return self
            self._enter()
        else:
            self._leases.append(self._enter_store())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.store is None and not self.adaptive:
            with self._lock:
                self._in_flight -= 1
                if self._sync_waiters or self._async_waiters:
                    self._wake()
            return
        lease = self._leases.pop() if self.store is not None else None
        self._exit(lease, False if exc is None else self._failure_signal(exc))

    async def __aenter__(self) -> Self:
        lease = await self._enter_async()
        if lease is not None:
            self._leases.append(lease)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lease = self._leases.pop() if self.store is not None else None
        await self._exit_async(lease, False if exc is None else self._failure_signal(exc))

    def __call__(self, func: Callable[P, T]) -> Callable[P, T]:
        """Use as ``@limit``: every call of *func* (sync or ``async``) runs in a slot."""
        check_callable(func, "@concurrency", sync_only=False)
        if is_async_callable(func):
            afunc: Callable[..., Awaitable[Any]] = func

            async def limited_async(*args: Any, **kwargs: Any) -> Any:
                return await self.call_async(afunc, *args, **kwargs)

            return functools.wraps(func)(limited_async)  # type: ignore[return-value]  # pyright: ignore[reportReturnType]

        def limited(*args: Any, **kwargs: Any) -> Any:
            return self.call(func, *args, **kwargs)

        return functools.wraps(func)(limited)

    def __repr__(self) -> str:
        adaptive = "" if not self.adaptive else ", adaptive=True"
        shared = "" if self.store is None else f", store={self.store!r}"
        return (
            f"ConcurrencyLimit({self._limit}, name={self.name!r}{adaptive}{shared}, "
            f"in_flight={self._in_flight})"
        )

    # -- slots ------------------------------------------------------------------------

    def _enter(self) -> str | None:
        """Take a slot, waiting up to ``max_wait``; the store's lease id, if any."""
        if self.store is not None:
            return self._enter_store()
        with self._lock:
            if self._in_flight < self._limit:
                self._take()
                return None
        wait = self._allowed()
        if wait <= 0.0:
            raise self._refusal(wait)
        with self._lock:
            self._sync_waiters += 1
            try:
                while self._in_flight >= self._limit:
                    started = time.monotonic()
                    if not self._cond.wait(wait):
                        raise self._refusal(self._allowed())
                    wait -= time.monotonic() - started
                    if wait <= 0.0 and self._in_flight >= self._limit:
                        raise self._refusal(self._allowed())
                self._take()
            except BaseException:
                if self._in_flight < self._limit:
                    self._wake()  # a wake-up it took (Ctrl-C, a timeout crossing it): pass it on
                raise
            finally:
                self._sync_waiters -= 1
        return None

    def _enter_store(self) -> str:
        store = self.store
        assert store is not None
        clock = DEFAULTS.clock if self._clock is None else self._clock
        wait = self._allowed()
        pause = _POLL_FIRST
        while True:
            lease = store.slot_acquire(self.name, self._limit, self.lease_ttl, clock.monotonic())
            if lease is not None:
                with self._lock:
                    self._take()
                return lease
            if wait <= 0.0:
                raise self._refusal(self._allowed())
            step = min(pause, wait)
            clock.sleep(step)
            wait -= step
            pause = min(pause * 2, _POLL_MAX)

    async def _enter_async(self) -> str | None:
        if self.store is not None:
            return await self._enter_store_async()
        import asyncio  # noqa: PLC0415 - only the async forms load asyncio

        with self._lock:
            if self._in_flight < self._limit:
                self._take()
                return None
        wait = self._allowed()
        if wait <= 0.0:
            raise self._refusal(wait)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            future: asyncio.Future[None] = loop.create_future()
            waiter = (loop, future)
            with self._lock:
                if self._in_flight < self._limit:
                    self._take()
                    return None
                self._async_waiters.append(waiter)
            woken = False
            try:
                left = deadline - loop.time()
                if left <= 0.0:
                    raise self._refusal(self._allowed())
                # Not wait_for: before 3.12 it returns when the wake-up and a
                # cancellation cross, and the cancelled task would run the call.
                done, _ = await asyncio.wait((future,), timeout=left)
                if not done:
                    raise self._refusal(self._allowed())
                woken = True
            finally:
                with self._lock:
                    if waiter in self._async_waiters:
                        self._async_waiters.remove(waiter)
                    elif not woken and self._in_flight < self._limit:
                        self._wake()  # woken, then cancelled or timed out: pass the wake-up on

    async def _enter_store_async(self) -> str:
        store = self.store
        assert store is not None
        clock = DEFAULTS.clock if self._clock is None else self._clock
        wait = self._allowed()
        pause = _POLL_FIRST
        what = f"concurrency limit {self.name!r}"
        while True:
            asking = store.slot_acquire_async(
                self.name, self._limit, self.lease_ttl, clock.monotonic()
            )
            lease = await _shielded(asking, self._undo_lease, self._undoing, what)
            if lease is not None:
                with self._lock:
                    self._take()
                return lease
            if wait <= 0.0:
                raise self._refusal(self._allowed())
            step = min(pause, wait)
            await clock.asleep(step)
            wait -= step
            pause = min(pause * 2, _POLL_MAX)

    def _take(self) -> None:
        """Count a slot taken (the lock is held)."""
        self._in_flight += 1
        if self.adaptive and self._in_flight * 2 >= self._limit:
            self._used_high = True

    def _exit(self, lease: str | None, overload: bool | None) -> None:
        """Give a slot back with its outcome: overload, success (False) or neither (None)."""
        try:
            if lease is not None and self.store is not None:
                clock = DEFAULTS.clock if self._clock is None else self._clock
                self.store.slot_release(self.name, lease, clock.monotonic())
        finally:  # a store that fails keeps the lease until lease_ttl; this object frees its count
            self._release(overload)

    async def _exit_async(self, lease: str | None, overload: bool | None) -> None:
        try:
            if lease is not None and self.store is not None:
                clock = DEFAULTS.clock if self._clock is None else self._clock
                releasing = self.store.slot_release_async(self.name, lease, clock.monotonic())
                # A cancellation during the round trip does not stop the release.
                await _shielded(releasing, None, self._undoing, f"concurrency limit {self.name!r}")
        finally:
            self._release(overload)

    async def _undo_lease(self, lease: str | None) -> None:
        """Release a lease granted to a caller cancelled while the store answered."""
        if lease is not None and self.store is not None:
            clock = DEFAULTS.clock if self._clock is None else self._clock
            await self.store.slot_release_async(self.name, lease, clock.monotonic())

    def _release(self, overload: bool | None) -> None:
        with self._lock:
            self._in_flight -= 1
            if self.adaptive:
                self._completed += 1
                if overload:
                    self._overloaded()
                elif overload is False:
                    self._succeeded()
            if self._sync_waiters or self._async_waiters:
                self._wake()

    def _wake(self) -> None:
        """Wake one waiter of each kind (the lock is held); losers of the race wait again."""
        if self._sync_waiters:
            self._cond.notify()
        while self._async_waiters:
            loop, future = self._async_waiters.pop(0)
            if not future.done():
                loop.call_soon_threadsafe(_resolve, future)
                break

    def _allowed(self) -> float:
        remaining = time_remaining()
        if remaining is not None and remaining < self.max_wait:
            return remaining
        return self.max_wait

    def _refusal(self, waited: float) -> ConcurrencyLimitExceeded:
        error = ConcurrencyLimitExceeded(self.name, self._limit, max(waited, 0.0))
        if _events.SINK is not None:
            _events.SINK.pacing_refused("concurrency", self.name, error)
        return error

    # -- the adaptive rule (the lock is held) -------------------------------------------

    def _failure_signal(self, exc: BaseException) -> bool | None:
        """Whether a failure is an overload signal (True), or says nothing (None)."""
        if not self.adaptive or not isinstance(exc, Exception) or isinstance(exc, _NEUTRAL):
            return None  # a breaker's rejection or pacing's refusal: the call never reached it
        if response_status(exc) in _OVERLOAD_STATUSES or retry_after(exc) is not None:
            return True
        try:
            error_class = self.classifier(exc)
        except Exception:
            return None
        return True if error_class in _OVERLOAD_CLASSES else None

    def _overloaded(self) -> None:
        if self._completed < self._ignore_until:
            return  # this round was cut already: calls in flight then see the same overload
        old = self._limit
        self._limit_f = max(float(self.min_limit), self._limit_f * _BACKOFF_RATIO)
        self._limit = max(self.min_limit, int(self._limit_f))
        self._ignore_until = self._completed + self._in_flight + 1
        self._successes = 0
        self._used_high = False
        if self._limit != old:
            self._log_change(old, "an overload signal")

    def _succeeded(self) -> None:
        self._successes += 1
        if self._successes < self._limit:
            return
        used, self._successes = self._used_high, 0
        self._used_high = self._in_flight * 2 >= self._limit
        if not used or (self.max_limit is not None and self._limit >= self.max_limit):
            return
        old = self._limit
        self._limit_f = float(self._limit + 1)
        self._limit += 1
        self._log_change(old, "a round of successes")

    def _log_change(self, old: int, why: str) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "concurrency limit %r moved from %d to %d after %s",
                self.name,
                old,
                self._limit,
                why,
                extra={
                    "event": "concurrency_limit_changed",
                    "concurrency": self.name,
                    "old_limit": old,
                    "limit": self._limit,
                },
            )


# -- helpers --------------------------------------------------------------------------

_OVERLOAD_STATUSES = frozenset({429, 503})
_NEUTRAL = (Throttled, Rejection)
_OVERLOAD_CLASSES = (ErrorClass.TIMEOUT, ErrorClass.DEGRADED)


async def _shielded(
    call: Awaitable[T],
    undo: Callable[[Any], Awaitable[object]] | None,
    keep: set[asyncio.Future[Any]],
    what: str,
) -> T:
    """Await a store's round trip that a cancellation of the caller must not cut off.

    A task cancelled (or timed out) while its script is in flight cannot
    know whether the store acted: the script may have run. The round trip
    goes on in a task of its own (held in *keep* until it ends), the caller
    gets its ``CancelledError`` at once, and the answer, when it comes, is
    handed to *undo* (a reservation refunded, a lease released). *what*
    names the limiter in the log line of an undo that fails.
    """
    import asyncio  # noqa: PLC0415 - only the async forms load asyncio

    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        keep.add(task)
        task.add_done_callback(functools.partial(_undo_answer, undo=undo, keep=keep, what=what))
        raise


def _undo_answer(
    task: asyncio.Future[Any],
    *,
    undo: Callable[[Any], Awaitable[object]] | None,
    keep: set[asyncio.Future[Any]],
    what: str,
) -> None:
    keep.discard(task)
    if undo is None or task.cancelled() or task.exception() is not None:
        return  # nothing was granted (or the store failed: nobody is left to tell)
    import asyncio  # noqa: PLC0415

    async def run() -> None:
        try:
            await undo(task.result())
        except Exception as error:
            error_type, message = error_fields(error)
            logger.warning(
                "%s could not give back what a cancelled caller was granted (%s): "
                "it comes back when it expires",
                what,
                describe_error(error),
                extra={"event": "pacing_undo_failed", "error_type": error_type, "error": message},
            )

    undoing = asyncio.ensure_future(run())
    keep.add(undoing)
    undoing.add_done_callback(keep.discard)


def _loop_getter() -> Callable[[], asyncio.AbstractEventLoop | None]:
    """asyncio's ``_get_running_loop``, kept in ``_get_running_loop`` (asyncio is imported)."""
    global _get_running_loop  # bound once, when asyncio is first seen
    from asyncio.events import (  # noqa: PLC0415
        _get_running_loop as getter,  # pyright: ignore[reportPrivateUsage]
    )

    _get_running_loop = getter
    return getter


def _task_registry() -> Collection[object]:
    """Bind ``_running_tasks`` (asyncio is imported): the dict its C tasks keep, if they do.

    Python 3.10 to 3.13 keep the task each loop is running in
    ``asyncio.tasks._current_tasks``, one dict for all threads; 3.14 keeps it
    per thread, out of reach: there every acquire asks ``_current_task``.
    """
    global _running_tasks
    import asyncio.tasks  # noqa: PLC0415 - imported already: only bound here

    found: object = getattr(asyncio.tasks, "_current_tasks", None)
    try:
        import _asyncio  # noqa: PLC0415
    except ImportError:  # pragma: no cover - CPython always builds it
        kept = None
    else:
        kept = getattr(_asyncio, "_current_tasks", None)
    tasks: Collection[object] = _ANY_TASK
    if isinstance(found, dict) and kept is found:  # the dict the C tasks update
        tasks = cast("dict[object, object]", found)
    _running_tasks = tasks
    return tasks


def _current_task() -> object | None:
    """The asyncio task running in this thread; ``None`` outside one (or any event loop)."""
    get_loop = _get_running_loop
    if get_loop is None:
        if "asyncio.events" not in _MODULES:
            return None  # no event loop can run before asyncio is imported
        get_loop = _loop_getter()
    loop = get_loop()
    if loop is None:
        return None
    from asyncio import current_task  # noqa: PLC0415 - imported: a loop runs

    return current_task(loop)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _result_signal(result: object) -> bool:
    """Whether a returned value (a response) says overload; else it is a success."""
    code = getattr(result, "status_code", None)
    if isinstance(code, int) and code in _OVERLOAD_STATUSES:
        return True
    if code is not None and getattr(result, "headers", None) is not None:
        return retry_after(result) is not None
    return False


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _check_positive(name: str, value: object) -> float:
    return positive_number(name, value)


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    if value > sys.float_info.max:  # an adaptive limit moves as a float
        raise ValueError(f"{name} must be an int that a float can hold, got {shown(value)}")


def _check_duration(name: str, value: object, *, allow_zero: bool = True) -> float:
    """Seconds (or a timedelta), finite, at most ten years: the library's one duration rule."""
    return duration(name, value, allow_zero=allow_zero)


def _check_name(name: object, store: object) -> object:
    """Check *name* (and *store*); return what the object built keeps so that a store
    keeping something per name (``RedisStore``) keeps it while the object lives."""
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        if not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
    if store is None:
        return None
    missing = [
        method
        for base in _STORE_METHODS
        for method in (base, f"{base}_async")
        if not callable(getattr(store, method, None))
    ]
    if missing:
        raise TypeError(
            f"store must implement PacingStore, got {store!r} (missing {', '.join(missing)})"
        )
    if name is None:
        raise ValueError("a store shares state by name: pass name= with store=")
    claim = getattr(store, "claim_name", None)
    if callable(claim):  # a store that keeps something per name releases it with the objects
        return claim(name)
    check = getattr(store, "check_name", None)
    if callable(check):  # a store that keys by name may refuse one it cannot key (RedisStore)
        check(name)
    return None
