"""Strictly private. The sans-IO core of the Redis stores: what to send, what a reply means.

Written once for the sync driver (``_sync``, on ``redis.Redis``) and the
asyncio one (``_async``, on ``redis.asyncio.Redis``). Each store operation is
a generator: it yields what to send (a registered script, its keys and its
arguments) and receives Redis's answer, or has the driver's error thrown in
at the ``yield``; what it returns is the operation's result. The core decides
everything else: whether the remembered state answers without a round trip,
the arguments of each script, what its reply means, when an outage starts
and ends, and what the fallback answers meanwhile (``_fallback``). A driver
only sends and awaits::

    op = core.acquire_op(lane, policy, now)
    request = next(op)                      # (script, keys, args)
    reply = script(keys=..., args=..., client=...)   # or await it
    op.send(reply)                          # StopIteration carries the result

No lock is ever held across a ``yield``.
"""

from __future__ import annotations

import collections
import inspect
import itertools
import math
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from typing_extensions import Self

import resilient.redis._scripts as lua
from resilient._breaker_state import (
    Admission,
    BreakerPolicy,
    CircuitState,
    StoredState,
    Transition,
)
from resilient._compat import seconds, trial_calls
from resilient.backoff import Backoff
from resilient.budget import RetryBudget
from resilient.redis._fallback import ADMIT_CLOSED, Fallback, logger
from resilient.redis._lane import Lane, View
from resilient.redis._settings import (
    DEFAULT_SOCKET_TIMEOUT,
    FALLBACKS,
    OUTAGE_ERRORS,
    STORE_ERRORS,
    WRITES_REFUSED,
    FallbackMode,
    Op,
    Send,
    StoreMode,
    check_client,
    check_limited,
    check_name,
    check_namespace,
    warn_if_client_can_hang,
)

if TYPE_CHECKING:
    from resilient._types import Seconds

__all__ = ["STORE_ERRORS", "BreakerCore", "BudgetCore", "Driven", "Op", "Send", "driver_info"]

T = TypeVar("T")


_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN
_STATES = (_CLOSED, _OPEN, _HALF_OPEN)
_NO_DURATION = (b"0", b"-2", b"")  # ops that never open: any duration would do
_PERMITS_OUT = Admission(False, None, _HALF_OPEN, 0.0)


class Driven:
    """Strictly private. The base of the Redis stores and budgets: what each driver says."""

    _OWNER: ClassVar[str]
    """The driver's public name, for the messages about its client."""
    _ASYNCIO: ClassVar[bool]
    """Whether the driver awaits a ``redis.asyncio`` client."""
    _connect: ClassVar[Callable[..., Any]]
    """The driver's client for a URL (``connect`` or ``connect_async``), for ``from_url``."""

    __slots__ = ()


class BreakerCore(Driven):
    """Strictly private. A Redis breaker store without its I/O: settings, lanes, decisions.

    The drivers subclass it and add the sending (``drive`` or ``drive_async``)
    and the names of their call forms; everything they share lives here (and
    in ``Fallback``): settings, construction, ``from_url``, so the sync and
    the asyncio stores cannot drift apart.
    """

    __slots__ = (
        "_acquire",
        "_client",
        "_dropped",
        "_failure",
        "_fb",
        "_flights",
        "_force",
        "_lanes",
        "_lock",
        "_pacing",
        "_probe",
        "_release",
        "_requests",
        "_snapshot",
        "_success",
        "idle_ttl",
        "max_staleness",
        "namespace",
        "on_store_error",
        "retry_interval",
        "time_source",
        "trial_timeout",
    )

    def __init__(
        self,
        client: Any,
        *,
        namespace: str = "resilient",
        on_store_error: FallbackMode = "local",
        max_staleness: Seconds = 0.1,
        retry_interval: Seconds = 2.0,
        trial_timeout: Seconds = 30.0,
        idle_ttl: Seconds = 86400.0,
        time_source: Literal["redis", "breaker"] = "redis",
    ) -> None:
        # _pacing builds on this module (its operations are Ops): imported once used.
        from resilient.redis._pacing import PacingCore  # noqa: PLC0415

        owner = self._OWNER
        check_client(client, owner, asyncio=self._ASYNCIO)
        check_namespace(namespace)
        if on_store_error not in FALLBACKS:
            raise ValueError(
                "on_store_error must be 'local', 'open' or 'closed', "
                f"got on_store_error={on_store_error!r}"
            )
        max_staleness = check_limited("max_staleness", max_staleness)
        retry_interval = check_limited("retry_interval", retry_interval, allow_zero=False)
        trial_timeout = check_limited("trial_timeout", trial_timeout, allow_zero=False)
        idle_ttl = check_limited("idle_ttl", idle_ttl, allow_zero=False)
        if time_source not in ("redis", "breaker"):
            raise ValueError(
                f"time_source must be 'redis' or 'breaker', got time_source={time_source!r}"
            )
        warn_if_client_can_hang(client, owner, stacklevel=2)  # points at the user's call
        self._client = client
        self.namespace = namespace
        self.on_store_error: FallbackMode = on_store_error
        self.max_staleness = float(max_staleness)
        self.retry_interval = float(retry_interval)
        self.trial_timeout = float(trial_timeout)
        self.idle_ttl = float(idle_ttl)
        self.time_source = time_source
        self._acquire = client.register_script(lua.ACQUIRE)
        self._success = client.register_script(lua.SUCCESS)
        self._failure = client.register_script(lua.FAILURE)
        self._release = client.register_script(lua.RELEASE)
        self._force = client.register_script(lua.FORCE)
        self._snapshot = client.register_script(lua.SNAPSHOT)
        self._probe = client.register_script(lua.PROBE)
        self._lanes: dict[str, Lane] = {}
        # (name, claim) of breakers gone: appended by the garbage collector's
        # callbacks (which must take no lock), swept when a lane is made.
        self._dropped: collections.deque[tuple[str, weakref.ref[object]]] = collections.deque()
        self._lock = threading.Lock()
        # The order of the round trips: a number is drawn as each script is sent and
        # as each answer comes back (next() of a count is atomic), so "sent before
        # that answer came" never depends on a clock that may be frozen or coarse.
        self._requests = itertools.count()
        self._fb = Fallback(
            namespace, on_store_error, self.retry_interval, time_source == "redis", self._lock
        )
        self._pacing = PacingCore(client, namespace, self._fb, time_source == "redis")
        # The refreshes in flight, per name (the asyncio driver's single flight).
        self._flights: dict[str, Any] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout: Seconds = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: Seconds | None = None,
        namespace: str = "resilient",
        on_store_error: FallbackMode = "local",
        max_staleness: Seconds = 0.1,
        retry_interval: Seconds = 2.0,
        trial_timeout: Seconds = 30.0,
        idle_ttl: Seconds = 86400.0,
    ) -> Self:
        """Build a store on a new client for *url* that cannot hang a call.

        The client (a ``redis.Redis`` for ``RedisStore``, a ``redis.asyncio``
        one for ``AsyncRedisStore``) waits at most *socket_timeout* seconds
        for an answer and *connect_timeout* for a connection, and never
        retries by itself: the store's fallback takes over instead.

        Args:
            url: ``redis://[:password@]host:port/db``, ``rediss://...`` or
                ``unix://...``, as ``redis.Redis.from_url`` reads it.
            socket_timeout: seconds to wait for an answer, > 0.
            connect_timeout: seconds to wait for a connection, > 0 (default:
                *socket_timeout*).
            namespace: as for ``RedisStore``.
            on_store_error: as for ``RedisStore``.
            max_staleness: as for ``RedisStore``.
            retry_interval: as for ``RedisStore``.
            trial_timeout: as for ``RedisStore``.
            idle_ttl: as for ``RedisStore``.

        Returns:
            The store; nothing is sent to Redis until a breaker uses it (an
            asyncio client connects in the event loop of its first command).
        """
        return cls(
            cls._connect(url, socket_timeout=socket_timeout, connect_timeout=connect_timeout),
            namespace=namespace,
            on_store_error=on_store_error,
            max_staleness=max_staleness,
            retry_interval=retry_interval,
            trial_timeout=trial_timeout,
            idle_ttl=idle_ttl,
        )

    @property
    def client(self) -> Any:
        """The Redis client the scripts run on."""
        return self._client

    def __repr__(self) -> str:
        return (
            f"{self._OWNER}({self._client!r}, namespace={self.namespace!r}, "
            f"on_store_error={self.on_store_error!r})"
        )

    # -- names, modes, watchers ------------------------------------------------------

    def mode(self, name: str) -> StoreMode:
        """Where the state of breaker *name* lives now, in this process.

        ``"redis"`` while Redis answers; during an outage, the fallback in
        force (``on_store_error``). ``CircuitBreaker.metrics.store_mode``
        reads it, so listeners and metrics can tell.
        """
        lane = self._lanes.get(name)
        return "redis" if lane is None else lane.mode

    def watch_mode(self, name: str, callback: Callable[[str, str], object]) -> None:
        """Call ``callback(old_mode, new_mode)`` each time ``mode(name)`` changes.

        ``CircuitBreaker`` registers here to deliver ``on_store_mode_change``
        to its listeners. A bound method is held weakly (its object may be
        collected); the call is made outside the store's lock, from the
        thread (or task) whose operation changed the mode.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        ref: Callable[[], Callable[[str, str], object] | None] = (
            weakref.WeakMethod(callback)
            if inspect.ismethod(callback)
            else (lambda: callback)  # a function: held as given
        )
        lane = self._lanes.get(name) or self._lane(name)
        with self._lock:  # the watchers of collected breakers go as new ones come
            alive = tuple(known for known in lane.watchers if known() is not None)
            lane.watchers = (*alive, ref)

    def check_name(self, name: str) -> None:
        """Refuse, naming ``name``, a name that cannot be part of a Redis key.

        A rate limiter or concurrency limit built on this store calls it when
        it is built (a breaker's ``attach`` does the same check).

        Raises:
            ValueError: *name* cannot be encoded as UTF-8 (a lone surrogate).
        """
        check_name("name", name)

    def claim_name(self, name: str) -> object:
        """Keep what this store holds for limiter *name* while the returned object lives.

        A rate limiter or concurrency limit built on this store calls it when
        it is built, and keeps the object: the name's state in this process
        (its plans, its mode, its local fallback) is released once every
        limiter of that name is gone. The name is checked as ``check_name`` does.

        Raises:
            ValueError: *name* cannot be encoded as UTF-8 (a lone surrogate).
        """
        check_name("name", name)
        return self._pacing.claim(name)

    def attach(self, name: str) -> object:
        """Keep what this store holds for breaker *name* while the returned object lives.

        ``CircuitBreaker`` calls it once, when built, and keeps the object:
        the name's cache, mode and fallback state are released once every
        breaker of that name is gone (a breaker per request or per tenant
        must not grow the store for ever). The name is checked here, so a
        breaker whose name cannot be a Redis key fails when it is built.

        Raises:
            ValueError: *name* cannot be encoded as UTF-8 (a lone surrogate).
        """
        check_name("name", name)
        claim: object = _Claim()
        dropped = self._dropped
        ref: weakref.ref[object] = weakref.ref(claim, lambda gone: dropped.append((name, gone)))
        with self._lock:
            self._sweep()
            lane = self._lanes.get(name)
            if lane is None:
                lane = self._lanes[name] = Lane(name, self.keys(name))
            lane.claims.add(ref)
        return claim

    def _sweep(self) -> None:
        """Release the lanes whose breakers are all gone (under the lock)."""
        dropped = self._dropped
        while dropped:
            name, ref = dropped.popleft()
            lane = self._lanes.get(name)
            if lane is None or ref not in lane.claims:
                continue
            lane.claims.discard(ref)
            if not lane.claims:
                del self._lanes[name]
                self._fb.forget(name)

    def keys(self, name: str) -> tuple[str, str]:
        """The Redis keys of breaker *name*: its circuit (a hash) and its window."""
        tag = f"{{{self.namespace}:{name}}}"
        return f"{tag}:breaker", f"{tag}:window"

    def _lane(self, name: str) -> Lane:
        check_name("name", name)
        with self._lock:
            self._sweep()
            lane = self._lanes.get(name)
            if lane is None:
                lane = self._lanes[name] = Lane(name, self.keys(name))
            return lane

    # -- answers without a round trip ------------------------------------------------

    def _cached(self, lane: Lane, now: float, shared: bool = False) -> Admission | None:
        """What the remembered state answers for an acquire, or ``None``: ask Redis.

        *shared*: the caller waited for a refresh another caller made; that
        answer is newer than the caller's arrival, so it is used even if the
        time it took to be woken made it older than ``max_staleness``.
        """
        if lane.mode != "redis":
            return None
        view = lane.view
        if not shared and view.fresh_until <= time.monotonic():
            return None
        state = view.state
        if state is _CLOSED:
            return ADMIT_CLOSED
        if state is _OPEN:
            remaining = view.open_until - self._fb.now_for_cache(now)
            if remaining > 0.0:
                return Admission(False, None, _OPEN, remaining)
            return None
        return _PERMITS_OUT if view.permits_out else None

    def _known(self, lane: Lane, policy: BreakerPolicy, now: float) -> StoredState:
        """The circuit as this process knows it, without a round trip.

        The state, counted failures and openings of Redis's last answer (the
        window's totals are not remembered: 0), or the fallback's.
        """
        mode = lane.mode
        if mode == "local":
            self._fb.seed_local(lane, policy, now)
            return self._fb.local.snapshot(lane.name, policy, now)
        if mode == "open":
            return StoredState(_OPEN, 0, self._fb.retry_in(lane))
        if mode == "closed":
            return StoredState(_CLOSED, 0, 0.0)
        view = lane.view
        remaining = view.open_until - self._fb.now_for_cache(now) if view.state is _OPEN else 0.0
        return StoredState(view.state, view.failures, remaining, openings=view.openings)

    def peek(self, name: str, policy: BreakerPolicy, now: float) -> StoredState | None:
        """The circuit as last read, if that is at most ``max_staleness`` old; else ``None``.

        No round trip: the retry loop reads it after each retried failure.
        """
        lane = self._lanes.get(name)
        if lane is None or (lane.mode == "redis" and lane.view.fresh_until <= time.monotonic()):
            return None
        return self._known(lane, policy, now)

    def _shares_refresh(self, lane: Lane) -> bool:
        """Whether calls finding *lane*'s state stale may wait for one refresh in flight.

        Only while Redis answers and the answer stays fresh for a while
        (``max_staleness > 0``): with ``0`` every call asks for itself.
        """
        return bool(self.max_staleness) and lane.mode == "redis" and not self._fb.down_until

    def _success_is_noop(self, lane: Lane, policy: BreakerPolicy) -> bool:
        """A closed success with no failure pending under the consecutive rule: nothing to send."""
        view = lane.view
        return (
            policy.window is None
            and view.state is _CLOSED
            and not view.failures
            and lane.mode == "redis"
            and view.fresh_until > time.monotonic()
        )

    # -- the operations ----------------------------------------------------------------

    def _acquire_op(self, lane: Lane, policy: BreakerPolicy, now: float) -> Op[Admission]:
        reply = yield from self._run(lane, self._acquire, policy, now, _NO_DURATION, ())
        if reply is None:
            return self._fb.acquire(lane, policy, now)
        state = _STATES[int(reply[1])]
        if int(reply[0]) == 2:
            self._log_lost_permits(lane, policy)
        transition = _transition(reply)
        if int(reply[6]):
            ticket = int(reply[7])
            if ticket < 0 and transition is None:
                return ADMIT_CLOSED
            return Admission(True, None if ticket < 0 else ticket, state, 0.0, transition)
        remaining = float(reply[3]) if state is _OPEN else 0.0
        return Admission(False, None, state, remaining, transition)

    def _success_op(
        self, lane: Lane, policy: BreakerPolicy, trial: int | None, now: float, slow: bool
    ) -> Op[Transition | None]:
        if trial is not None and trial < 0:
            return self._fb.local_outcome(lane, policy, trial, now, slow, success=True)
        # A success opens the circuit only through a window's rate, or as a slow trial.
        may_open = policy.window is not None or (trial is not None and slow)
        durations = self._durations(lane, policy) if may_open else _NO_DURATION
        args = (_ticket(trial), b"1" if slow else b"0")
        reply = yield from self._run(lane, self._success, policy, now, durations, args)
        if reply is None:
            # Without a window the breaker does not read its clock for a success.
            clock_read = now if policy.window is not None else None
            if (
                trial is None
                and lane.mode == "local"
                and self._fb.seed_local(lane, policy, clock_read)
            ):
                return self._fb.local.record_success(lane.name, policy, None, now, slow)
            return None  # a trial granted by Redis: its outcome cannot be recorded now
        return _transition(reply)

    def _failure_op(
        self, lane: Lane, policy: BreakerPolicy, trial: int | None, now: float, slow: bool
    ) -> Op[Transition | None]:
        if trial is not None and trial < 0:
            return self._fb.local_outcome(lane, policy, trial, now, slow, success=False)
        args = (_ticket(trial), b"1" if slow else b"0")
        durations = self._durations(lane, policy)
        reply = yield from self._run(lane, self._failure, policy, now, durations, args)
        if reply is None:
            if trial is None and lane.mode == "local":
                self._fb.seed_local(lane, policy, now)
                return self._fb.local.record_failure(lane.name, policy, None, now, slow)
            return None
        return _transition(reply)

    def _release_op(self, lane: Lane, policy: BreakerPolicy, trial: int) -> Op[None]:
        if trial < 0:
            # A local ticket; with a seed pending it is from an earlier outage: stale.
            if lane.mode == "local" and lane.seed is None:
                self._fb.local.release(lane.name, policy, -trial - 1)
            return
        yield from self._run(lane, self._release, policy, 0.0, _NO_DURATION, (_ticket(trial),))

    def _force_op(
        self, lane: Lane, policy: BreakerPolicy, state: CircuitState, now: float
    ) -> Op[Transition | None]:
        target = _STATES.index(CircuitState(state))
        durations = self._durations(lane, policy) if target == 1 else _NO_DURATION
        args = (str(target).encode(),)
        reply = yield from self._run(lane, self._force, policy, now, durations, args)
        if reply is None:
            if lane.mode == "local":
                self._fb.seed_local(lane, policy, now)
                return self._fb.local.force(lane.name, policy, state, now)
            return None
        return _transition(reply)

    def _snapshot_op(self, lane: Lane, policy: BreakerPolicy, now: float) -> Op[StoredState]:
        reply = yield from self._run(lane, self._snapshot, policy, now, _NO_DURATION, ())
        if reply is None:
            mode = lane.mode
            if mode == "local":
                self._fb.seed_local(lane, policy, now)
                return self._fb.local.snapshot(lane.name, policy, now)
            if mode == "open":
                return StoredState(_OPEN, 0, self._fb.retry_in(lane))
            return StoredState(_CLOSED, 0, 0.0)
        return StoredState(
            _STATES[int(reply[1])],
            int(reply[2]),
            float(reply[3]),
            int(reply[14]),
            int(reply[15]),
            int(reply[16]),
            int(reply[4]),
        )

    # -- one round trip, or the fallback -----------------------------------------------

    def _run(
        self,
        lane: Lane,
        script: Any,
        policy: BreakerPolicy,
        now: float,
        durations: tuple[bytes, bytes, bytes],
        args: tuple[bytes, ...],
    ) -> Op[list[Any] | None]:
        """Run *script* for *lane*; ``None`` when Redis cannot answer (the fallback decides)."""
        if self._fb.down_until or lane.mode != "redis":
            handed_back = yield from self._hand_back(lane, policy, now)
            if not handed_back:
                return None
        try:
            return (yield from self._eval(lane, script, policy, now, durations, args))
        except STORE_ERRORS as error:
            self._fb.failed(lane, policy, error)
            return None

    def _eval(
        self,
        lane: Lane,
        script: Any,
        policy: BreakerPolicy,
        now: float,
        durations: tuple[bytes, bytes, bytes],
        args: tuple[bytes, ...],
    ) -> Op[list[Any]]:
        """One script, one round trip; the answer refreshes what this process remembers."""
        if lane.policy is not policy:
            lane.bind(policy, self.idle_ttl, self.trial_timeout)
        redis_time = self.time_source == "redis"
        started = time.monotonic()
        sent = next(self._requests)
        answer = yield (
            script,
            lane.keys,
            (b"" if redis_time else repr(now), lane.policy_field, *durations, *args),
        )
        reply: list[Any] = answer.split()
        state = _STATES[int(reply[1])]
        # When open: on Redis time, from the answer's arrival (so never early);
        # on the breaker's clock, exactly the stored end.
        open_until = 0.0
        if state is _OPEN:
            open_until = time.monotonic() + float(reply[3]) if redis_time else float(reply[17])
        last = reply[5]
        if isinstance(last, bytes):
            last = last.decode()
        self._remember(
            lane,
            View(
                state,
                int(reply[2]),
                open_until,
                started + self.max_staleness,
                int(reply[4]),
                "" if last == "-" else last,
                # acquire refused a trial: every permit of this half-open period is out
                state is _HALF_OPEN and script is self._acquire and not int(reply[6]),
                (int(reply[18]), int(reply[19])),
                next(self._requests),
            ),
            sent,
        )
        return reply

    def _remember(self, lane: Lane, view: View, sent: int) -> None:
        """Remember *view*, the answer to the request numbered *sent*, unless it is older.

        Overlapping operations (threads, coroutines) each have a connection,
        and their answers may come back in another order than Redis ran
        their scripts: the remembered state must never move backwards (an
        open circuit remembered as closed would let calls through without a
        trial). An answer is older when its request went out before the
        remembered answer came back and it shows an earlier (epoch, version)
        of the circuit; a request sent after that came back was run after
        it, whatever its numbers say (a circuit whose keys were lost starts
        again from Redis ``TIME``). "Before" is read from the store's count of
        round trips, not from ``time.monotonic()``: under a frozen clock
        (freezegun without tick) every reading is equal.
        """
        with self._lock:
            held = lane.view
            if sent < held.received:
                if view.seq < held.seq:
                    return  # a late answer: the caller still acts on it, the cache does not
                if view.seq == held.seq and held.fresh_until > view.fresh_until:
                    view = view._replace(fresh_until=held.fresh_until)
            lane.view = view

    def _hand_back(self, lane: Lane, policy: BreakerPolicy, now: float) -> Op[bool]:
        """During an outage (the store's or this breaker's): whether this call may use Redis.

        One call per ``retry_interval`` tries, with the probe script: it must
        write this breaker's keys, because a read-only replica or a server out
        of memory still answers reads. The others use the fallback at once.
        """
        fb = self._fb
        if fb.down_until:
            if not fb.may_try():
                if lane.mode == "redis":
                    fb.fall_back(lane, policy, fb.outage, store_wide=True)
                return False
        elif lane.down_until and not fb.lane_may_try(lane):
            return False
        try:
            reply = yield from self._eval(lane, self._probe, policy, now, _NO_DURATION, ())
        except STORE_ERRORS as error:
            if not isinstance(error, OUTAGE_ERRORS):
                # Redis answered: the store's outage is over, only this breaker's keys fail.
                fb.store_recovered()
            fb.failed(lane, policy, error)
            return False
        fb.store_recovered()
        fb.lane_answered(lane)
        if lane.mode != "redis":
            fb.recovered(lane, policy, now, _STATES[int(reply[1])])
        return True

    def _durations(self, lane: Lane, policy: BreakerPolicy) -> tuple[bytes, bytes, bytes]:
        """The open duration to use if this operation opens the circuit.

        A fixed ``recovery_timeout`` is always valid. A ``Backoff`` is drawn
        here (its jitter is Python) for the openings last read; the script
        uses it only if no other process has opened or closed since, and the
        un-jittered duration otherwise.
        """
        timeout = policy.recovery_timeout
        if not isinstance(timeout, Backoff):
            return repr(float(timeout)).encode(), b"-1", b""
        view = lane.view
        previous = float(view.last) if view.last else None
        drawn = policy.open_duration(view.openings, previous)
        return repr(drawn).encode(), str(view.openings).encode(), view.last.encode()

    def _log_lost_permits(self, lane: Lane, policy: BreakerPolicy) -> None:
        logger.warning(
            "circuit %r: no outcome came back for the %s of its half-open "
            "period within trial_timeout=%s s (a process holding them may have died); "
            "a new half-open period lets %s through",
            lane.name,
            trial_calls(policy.half_open_max_calls),
            seconds(self.trial_timeout),
            trial_calls(policy.half_open_max_calls),
            extra={
                "event": "breaker_trials_lost",
                "breaker": lane.name,
                "trial_timeout": self.trial_timeout,
            },
        )


class _Claim:
    """Strictly private. What a breaker holds to keep its name's state in a store."""

    __slots__ = ("__weakref__",)


class BudgetCore(Driven):
    """Strictly private. A Redis retry budget without its I/O: settings and decisions."""

    __slots__ = (
        "_client",
        "_down_until",
        "_key",
        "_last_tokens",
        "_local",
        "_lock",
        "_mode",
        "_outage_start",
        "_probe",
        "_read",
        "_refund",
        "_spend",
        "_static",
        "idle_ttl",
        "max_tokens",
        "name",
        "namespace",
        "retry_interval",
        "token_ratio",
    )

    def __init__(
        self,
        client: Any,
        name: str,
        *,
        max_tokens: float = 10,
        token_ratio: float = 0.1,
        namespace: str = "resilient",
        retry_interval: Seconds = 2.0,
        idle_ttl: Seconds = 86400.0,
    ) -> None:
        owner = self._OWNER
        check_client(client, owner, asyncio=self._ASYNCIO)
        check_name("name", name)
        check_namespace(namespace)
        local = RetryBudget(max_tokens, token_ratio)  # validates as RetryBudget does
        retry_interval = check_limited("retry_interval", retry_interval, allow_zero=False)
        idle_ttl = check_limited("idle_ttl", idle_ttl, allow_zero=False)
        warn_if_client_can_hang(client, owner, stacklevel=2)  # points at the user's call
        self._client = client
        self.name = name
        self.namespace = namespace
        self.max_tokens = local.max_tokens
        self.token_ratio = local.token_ratio
        self.retry_interval = float(retry_interval)
        self.idle_ttl = float(idle_ttl)
        self._local = local
        self._key = (f"{{{namespace}:{name}}}:budget",)
        self._static = (
            repr(self.max_tokens).encode(),
            repr(self.token_ratio).encode(),
            str(max(1, math.ceil(self.idle_ttl * 1000))).encode(),
        )
        self._spend = client.register_script(lua.BUDGET_SPEND)
        self._refund = client.register_script(lua.BUDGET_REFUND)
        self._read = client.register_script(lua.BUDGET_READ)
        self._probe = client.register_script(lua.BUDGET_PROBE)
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._mode: Literal["redis", "local"] = "redis"
        self._outage_start = 0.0
        self._last_tokens = self.max_tokens

    @classmethod
    def from_url(
        cls,
        url: str,
        name: str,
        *,
        max_tokens: float = 10,
        token_ratio: float = 0.1,
        socket_timeout: Seconds = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: Seconds | None = None,
        namespace: str = "resilient",
        retry_interval: Seconds = 2.0,
        idle_ttl: Seconds = 86400.0,
    ) -> Self:
        """Build a budget on a new client for *url* that cannot hang a call.

        Args:
            url: as for ``RedisStore.from_url``.
            name: as for ``RedisRetryBudget``.
            max_tokens: as for ``RedisRetryBudget``.
            token_ratio: as for ``RedisRetryBudget``.
            socket_timeout: as for ``RedisStore.from_url``.
            connect_timeout: as for ``RedisStore.from_url``.
            namespace: as for ``RedisRetryBudget``.
            retry_interval: as for ``RedisRetryBudget``.
            idle_ttl: as for ``RedisRetryBudget``.

        Returns:
            The budget; nothing is sent until it is used.
        """
        return cls(
            cls._connect(url, socket_timeout=socket_timeout, connect_timeout=connect_timeout),
            name,
            max_tokens=max_tokens,
            token_ratio=token_ratio,
            namespace=namespace,
            retry_interval=retry_interval,
            idle_ttl=idle_ttl,
        )

    @property
    def mode(self) -> Literal["redis", "local"]:
        """``"redis"``, or ``"local"`` while Redis is unreachable."""
        return self._mode

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, max_tokens={self.max_tokens!r}, "
            f"token_ratio={self.token_ratio!r})"
        )

    # -- the operations ----------------------------------------------------------------

    def _tokens_op(self) -> Op[float]:
        reply = yield from self._call(self._read)
        return self._local.tokens if reply is None else self._seen(reply)

    def _spend_op(self) -> Op[bool]:
        reply = yield from self._call(self._spend)
        if reply is None:
            return self._local.record_failure()
        self._seen(reply[1])
        return bool(reply[0])

    def _refund_op(self) -> Op[None]:
        reply = yield from self._call(self._refund)
        if reply is None:
            self._local.record_success()
        else:
            self._seen(reply)

    def _seen(self, tokens: bytes | str | float) -> float:
        value = float(tokens)
        self._last_tokens = value
        return value

    def _call(self, script: Any) -> Op[Any]:
        """One script; ``None`` when Redis cannot answer (the local budget decides)."""
        if self._mode != "redis":
            with self._lock:
                t = time.monotonic()
                if t < self._down_until:
                    return None
                self._down_until = t + self.retry_interval  # this call tries; others wait
            try:  # a write first: a read-only replica or a full server still answers reads
                yield (self._probe, self._key, self._static)
            except STORE_ERRORS as error:
                self._unavailable(error)
                return None
            self._recovered()
        try:
            return (yield (script, self._key, self._static))
        except STORE_ERRORS as error:
            self._unavailable(error)
            return None

    def _unavailable(self, error: BaseException) -> None:
        from resilient._redact import describe_error, error_fields  # noqa: PLC0415

        with self._lock:
            self._down_until = time.monotonic() + self.retry_interval
            if self._mode == "local":
                return
            self._mode = "local"
            self._outage_start = time.monotonic()
            local = RetryBudget(self.max_tokens, self.token_ratio)
            local._tokens = self._last_tokens  # pyright: ignore[reportPrivateUsage]  # carry on from what Redis last said
            self._local = local
        error_type, message = error_fields(error)
        refused = isinstance(error, WRITES_REFUSED)
        logger.warning(
            "retry budget %r cannot %s Redis (%s): a local budget starting from %s "
            "token(s) decides for this process until %s; retrying Redis every %s s",
            self.name,
            "write to" if refused else "reach",
            describe_error(error),
            seconds(round(self._last_tokens, 3)),
            "a write to Redis succeeds again" if refused else "Redis answers again",
            seconds(self.retry_interval),
            extra={
                "event": "retry_budget_store_unavailable",
                "budget": self.name,
                "store_mode": "local",
                "tokens": self._last_tokens,
                "retry_in": self.retry_interval,
                "error_type": error_type,
                "error": message,
            },
        )

    def _recovered(self) -> None:
        with self._lock:
            if self._mode == "redis":
                return
            self._mode = "redis"
            self._down_until = 0.0
            outage = time.monotonic() - self._outage_start
        logger.warning(
            "retry budget %r reached Redis again after %s s: its tokens are shared through "
            "Redis again; the local budget is dropped",
            self.name,
            seconds(round(outage, 3)),
            extra={
                "event": "retry_budget_store_recovered",
                "budget": self.name,
                "store_mode": "redis",
                "outage_seconds": round(outage, 6),
            },
        )


# -- what a reply means -------------------------------------------------------------


def _transition(reply: list[Any]) -> Transition | None:
    old = int(reply[8])
    if old == -1:
        return None
    return Transition(
        _STATES[old],
        _STATES[int(reply[9])],
        int(reply[10]),
        float(reply[11]),
        int(reply[12]),
        int(reply[13]),
        int(reply[18]),
    )


def _ticket(trial: int | None) -> bytes:
    return b"" if trial is None else str(trial).encode()


def driver_info() -> dict[str, Any]:
    """The pool's ``driver_info``, resolved once: not once per connection it opens.

    redis-py 7.0 to 8.1 (8.1 is the newest for Python 3.10) look up their own
    installed version (``importlib.metadata``, 1-2 ms) in every new connection's
    ``__init__`` when the pool comes from a URL: with ``redis.asyncio``, a pool
    opening its 100 connections in one turn of the loop (a burst of calls, or
    calls piling up while Redis hangs) blocked the event loop for 100-200 ms;
    with ``redis``, each thread that opens a connection pays it. Both
    ``connect`` and ``connect_async`` hand their pool this. Older
    versions read it once at import and 8.2 caches it: there, nothing to do.
    """
    try:
        from redis.driver_info import DriverInfo  # noqa: PLC0415 - redis-py 7.0+ only
    except ImportError:
        return {}
    return {"driver_info": DriverInfo()}
