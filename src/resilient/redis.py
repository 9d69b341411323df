"""Breaker state and retry budgets shared by processes and hosts, through Redis.

``RedisStore`` is a ``BreakerStore``: give it to every breaker that guards one
dependency, with the same ``name`` in every process, and the fleet trips,
waits and probes as one circuit. ``RedisRetryBudget`` is ``RetryBudget``'s
twin: one token bucket for the whole fleet.

Each operation is one Lua script (``resilient._redis_scripts``), so processes
never race; time comes from Redis ``TIME``, so hosts whose clocks disagree
agree on when an open period ends. Redis failing never takes the application
down: while it is unreachable a fallback decides (``on_store_error``), one
warning is logged per outage and one on recovery, and Redis is tried again at
most every ``retry_interval`` seconds.

Requires the ``redis`` package (``pip install "resilient-kit[redis]"``);
``import resilient`` does not import this module.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, cast

import redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from resilient import _redis_scripts as lua
from resilient._breaker_state import (
    Admission,
    BreakerPolicy,
    CircuitState,
    MemoryStore,
    StoredState,
    Transition,
    check_seconds,
)
from resilient._compat import name_of, seconds, trial_calls
from resilient._redact import describe_error, error_fields, type_name
from resilient.backoff import Backoff
from resilient.budget import RetryBudget

__all__ = [
    "DEFAULT_SOCKET_TIMEOUT",
    "FallbackMode",
    "RedisClientWarning",
    "RedisRetryBudget",
    "RedisStore",
    "StoreMode",
    "connect",
]

logger = logging.getLogger("resilient.redis")

StoreMode = Literal["redis", "local", "open", "closed"]
"""Where a breaker's state lives now: ``"redis"``, or the fallback in force."""

FallbackMode = Literal["local", "open", "closed"]
"""What ``on_store_error`` accepts: the fallback used while Redis is unreachable."""

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN
_STATES = (_CLOSED, _OPEN, _HALF_OPEN)
_FALLBACKS = ("local", "open", "closed")
_ADMIT_CLOSED = Admission(True, None, _CLOSED, 0.0)
_NO_DURATION = (b"0", b"-2", b"")  # ops that never open: any duration would do
_FALLBACK_WHAT = {
    "local": "an in-process breaker with the same settings decides for this process",
    "open": "calls are rejected (on_store_error='open')",
    "closed": "calls go through unguarded (on_store_error='closed')",
}

# Errors that mean "this server cannot serve any breaker now": the connection
# (refused, reset, timed out, the server loading), a cluster without a master
# for the slot, and a server that refuses every write (a read-only replica
# after a failover, a server out of memory). Every breaker of the store falls
# back. redis-py wraps socket errors in its own; OSError is for the few paths
# that do not.
_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    ClusterDownError,
    RedisClusterException,
    OSError,
)
_WRITES_REFUSED = (ReadOnlyError, OutOfMemoryError)
# Any other error of a script (WRONGTYPE: something else wrote one of its
# keys; an error the script raised on one breaker's data) is that breaker's
# alone: it falls back, the others keep using Redis.
_STORE_ERRORS: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)

DEFAULT_SOCKET_TIMEOUT = 0.25
"""Seconds ``from_url`` clients wait for a connection or an answer from Redis."""

# Upper bounds of the settings, in seconds: beyond them a value is a mistake
# (a unit error, an "infinite" sentinel) that would hang calls or overflow a
# Redis expiry.
_LIMITS = {
    "socket_timeout": 60.0,
    "connect_timeout": 60.0,
    "max_staleness": 3600.0,
    "retry_interval": 3600.0,
    "trial_timeout": 86400.0,
    "idle_ttl": 366 * 86400.0,
}
_LIMITS_SAID = {
    "socket_timeout": "a minute",
    "connect_timeout": "a minute",
    "max_staleness": "an hour",
    "retry_interval": "an hour",
    "trial_timeout": "a day",
    "idle_ttl": "366 days",
}


class RedisClientWarning(UserWarning):
    """A Redis client given to ``resilient.redis`` could hang calls while Redis is down."""


class RedisStore:
    """Breaker state in Redis, shared by every process that uses the same names.

    Every operation (admit a call, record a success or a failure, give a
    trial permit back, force a state, read it) is one Lua script: atomic, so
    the half-open period admits exactly ``half_open_max_calls`` trials across
    all processes. Open periods and time-based windows use Redis ``TIME``.
    Keys are ``{namespace:name}:breaker`` (and ``...:window``), hash-tagged
    for Redis Cluster, expiring after ``idle_ttl`` seconds without a write.

    The closed path costs at most one round trip per call: this process
    remembers the state each script answered for ``max_staleness`` seconds,
    so a closed call is admitted without asking Redis, and a success under
    the consecutive-failure rule with no failure pending costs no round trip
    at all (a call that finds the remembered state too old refreshes it
    first). Another process's opening therefore goes unseen here for at most
    ``max_staleness`` seconds. Rejections (open, or half-open with every
    trial permit taken) are remembered as long.

    When Redis fails, the scope of the failure decides who falls back: an
    unreachable server (or one that refuses writes: a read-only replica, out
    of memory) sends every breaker of the store to ``on_store_error``; an
    error of one breaker's script (a key something else overwrote) sends
    that breaker alone. A breaker is handed back to Redis only once a script
    that writes its keys succeeds.

    Args:
        client: a synchronous ``redis.Redis`` or ``redis.cluster.RedisCluster``.
            Give it a short ``socket_timeout`` and no retries, or use
            ``from_url``; a client that could hang calls draws a
            ``RedisClientWarning``. A ``redis.asyncio`` client is refused.
        namespace: the first part of every key; without ``:``, ``{`` or ``}``.
        on_store_error: what a breaker does while Redis is unreachable:
            ``"local"`` (an in-process breaker with the same settings takes
            over, starting from the state last read from Redis, and hands back
            when Redis answers again), ``"open"`` (reject calls) or
            ``"closed"`` (let calls through).
        max_staleness: seconds this process may act on the state it last read
            from Redis (``0`` asks Redis on every call: two round trips); at
            most an hour.
        retry_interval: seconds between attempts to reach Redis during an
            outage; calls in between use the fallback without waiting. At
            most an hour.
        trial_timeout: seconds a half-open period whose every permit is out
            waits for an outcome before it hands out fresh permits (a process
            that died holding one cannot keep the circuit half-open for ever).
            At most a day.
        idle_ttl: seconds without a write after which a breaker's keys expire
            (an open circuit's keys live at least until its open period ends).
            At most 366 days.
        time_source: ``"redis"`` (Redis ``TIME``), or ``"breaker"`` to use
            each breaker's clock instead, for tests with ``ManualClock``.

    Example:
        >>> from resilient import CircuitBreaker
        >>> from resilient.redis import RedisStore
        >>> store = RedisStore.from_url("redis://localhost:6379/0")  # doctest: +SKIP
        >>> breaker = CircuitBreaker(name="users-api", store=store)  # doctest: +SKIP
    """

    __slots__ = (
        "_acquire",
        "_client",
        "_down_until",
        "_failure",
        "_fallback",
        "_force",
        "_lanes",
        "_lock",
        "_outage",
        "_outage_since",
        "_probe",
        "_release",
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
        max_staleness: float = 0.1,
        retry_interval: float = 2.0,
        trial_timeout: float = 30.0,
        idle_ttl: float = 86400.0,
        time_source: Literal["redis", "breaker"] = "redis",
    ) -> None:
        _check_client(client, "RedisStore")
        _check_namespace(namespace)
        if on_store_error not in _FALLBACKS:
            raise ValueError(
                "on_store_error must be 'local', 'open' or 'closed', "
                f"got on_store_error={on_store_error!r}"
            )
        _check_limited("max_staleness", max_staleness)
        _check_limited("retry_interval", retry_interval, allow_zero=False)
        _check_limited("trial_timeout", trial_timeout, allow_zero=False)
        _check_limited("idle_ttl", idle_ttl, allow_zero=False)
        if time_source not in ("redis", "breaker"):
            raise ValueError(
                f"time_source must be 'redis' or 'breaker', got time_source={time_source!r}"
            )
        _warn_if_client_can_hang(client, "RedisStore", stacklevel=2)
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
        self._fallback = MemoryStore()
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()
        # A store-wide outage: time.monotonic() before which Redis is not tried, and its error.
        self._down_until = 0.0
        self._outage: BaseException | None = None
        self._outage_since = 0.0

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float | None = None,
        namespace: str = "resilient",
        on_store_error: FallbackMode = "local",
        max_staleness: float = 0.1,
        retry_interval: float = 2.0,
        trial_timeout: float = 30.0,
        idle_ttl: float = 86400.0,
    ) -> RedisStore:
        """Build a store on a new client for *url* that cannot hang a call.

        The client waits at most *socket_timeout* seconds for an answer and
        *connect_timeout* (default: *socket_timeout*) for a connection, and
        never retries by itself: the store's fallback takes over instead.

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
            A ``RedisStore``; nothing is sent to Redis until a breaker uses it.
        """
        client = connect(url, socket_timeout=socket_timeout, connect_timeout=connect_timeout)
        return cls(
            client,
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
        thread whose operation changed the mode.
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

    def keys(self, name: str) -> tuple[str, str]:
        """The Redis keys of breaker *name*: its circuit (a hash) and its window."""
        tag = f"{{{self.namespace}:{name}}}"
        return f"{tag}:breaker", f"{tag}:window"

    # -- the BreakerStore operations -------------------------------------------

    def acquire(self, name: str, policy: BreakerPolicy, now: float) -> Admission:
        """Admit a call or not; see ``BreakerStore``."""
        lane = self._lanes.get(name) or self._lane(name)
        if lane.mode == "redis":
            view = lane.view
            if view.fresh_until > time.monotonic():
                state = view.state
                if state is _CLOSED:
                    return _ADMIT_CLOSED
                if state is _OPEN:
                    remaining = view.open_until - self._now_for_cache(now)
                    if remaining > 0.0:
                        return Admission(False, None, _OPEN, remaining)
                elif view.permits_out:
                    return _PERMITS_OUT
        reply = self._run(lane, self._acquire, policy, now, _NO_DURATION, ())
        if reply is None:
            return self._fallback_acquire(lane, policy, now)
        state = _STATES[int(reply[1])]
        if int(reply[0]) == 2:
            self._log_lost_permits(lane, policy)
        transition = _transition(reply)
        if int(reply[6]):
            ticket = int(reply[7])
            if ticket < 0 and transition is None:
                return _ADMIT_CLOSED
            return Admission(True, None if ticket < 0 else ticket, state, 0.0, transition)
        remaining = float(reply[3]) if state is _OPEN else 0.0
        return Admission(False, None, state, remaining, transition)

    def record_success(
        self, name: str, policy: BreakerPolicy, trial: int | None, now: float, slow: bool
    ) -> Transition | None:
        """Record a success; see ``BreakerStore``.

        Under the consecutive-failure rule, a success on a closed circuit with
        no failure pending (as last read, at most ``max_staleness`` ago) has
        nothing to change, and costs no round trip.
        """
        lane = self._lanes.get(name) or self._lane(name)
        if trial is None:
            view = lane.view
            if (
                policy.window is None
                and view.state is _CLOSED
                and not view.failures
                and lane.mode == "redis"
                and view.fresh_until > time.monotonic()
            ):
                return None
        elif trial < 0:
            return self._local_outcome(lane, policy, trial, now, slow, success=True)
        # A success opens the circuit only through a window's rate, or as a slow trial.
        may_open = policy.window is not None or (trial is not None and slow)
        durations = self._durations(lane, policy) if may_open else _NO_DURATION
        args = (_ticket(trial), b"1" if slow else b"0")
        reply = self._run(lane, self._success, policy, now, durations, args)
        if reply is None:
            # Without a window the breaker does not read its clock for a success.
            clock_read = now if policy.window is not None else None
            if (
                trial is None
                and lane.mode == "local"
                and self._seed_local(lane, policy, clock_read)
            ):
                return self._fallback.record_success(name, policy, None, now, slow)
            return None  # a trial granted by Redis: its outcome cannot be recorded now
        return _transition(reply)

    def record_failure(
        self, name: str, policy: BreakerPolicy, trial: int | None, now: float, slow: bool
    ) -> Transition | None:
        """Record a counted failure; see ``BreakerStore``."""
        lane = self._lanes.get(name) or self._lane(name)
        if trial is not None and trial < 0:
            return self._local_outcome(lane, policy, trial, now, slow, success=False)
        args = (_ticket(trial), b"1" if slow else b"0")
        reply = self._run(lane, self._failure, policy, now, self._durations(lane, policy), args)
        if reply is None:
            if trial is None and lane.mode == "local":
                self._seed_local(lane, policy, now)
                return self._fallback.record_failure(name, policy, None, now, slow)
            return None
        return _transition(reply)

    def release(self, name: str, policy: BreakerPolicy, trial: int) -> None:
        """Give a trial permit back; see ``BreakerStore``."""
        lane = self._lanes.get(name) or self._lane(name)
        if trial < 0:
            # A local ticket; with a seed pending it is from an earlier outage: stale.
            if lane.mode == "local" and lane.seed is None:
                self._fallback.release(name, policy, -trial - 1)
            return
        self._run(lane, self._release, policy, 0.0, _NO_DURATION, (_ticket(trial),))

    def force(
        self, name: str, policy: BreakerPolicy, state: CircuitState, now: float
    ) -> Transition | None:
        """Put the circuit in *state*; see ``BreakerStore``.

        While Redis is unreachable only a ``"local"`` fallback can be forced.
        """
        lane = self._lanes.get(name) or self._lane(name)
        target = _STATES.index(CircuitState(state))
        durations = self._durations(lane, policy) if target == 1 else _NO_DURATION
        reply = self._run(lane, self._force, policy, now, durations, (str(target).encode(),))
        if reply is None:
            if lane.mode == "local":
                self._seed_local(lane, policy, now)
                return self._fallback.force(name, policy, state, now)
            return None
        return _transition(reply)

    def snapshot(self, name: str, policy: BreakerPolicy, now: float) -> StoredState:
        """Read the circuit; see ``BreakerStore``. Always asks Redis (when it answers)."""
        lane = self._lanes.get(name) or self._lane(name)
        reply = self._run(lane, self._snapshot, policy, now, _NO_DURATION, ())
        if reply is None:
            mode = lane.mode
            if mode == "local":
                self._seed_local(lane, policy, now)
                return self._fallback.snapshot(name, policy, now)
            if mode == "open":
                return StoredState(_OPEN, 0, self._retry_in(lane))
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

    def __repr__(self) -> str:
        return (
            f"RedisStore({self._client!r}, namespace={self.namespace!r}, "
            f"on_store_error={self.on_store_error!r})"
        )

    # -- one round trip, or the fallback -----------------------------------------

    def _lane(self, name: str) -> _Lane:
        with self._lock:
            lane = self._lanes.get(name)
            if lane is None:
                lane = self._lanes[name] = _Lane(name, self.keys(name))
            return lane

    def _run(
        self,
        lane: _Lane,
        script: Any,
        policy: BreakerPolicy,
        now: float,
        durations: tuple[bytes, bytes, bytes],
        args: tuple[bytes, ...],
    ) -> list[Any] | None:
        """Run *script* for *lane*; ``None`` when Redis cannot answer (the fallback decides)."""
        if (self._down_until or lane.mode != "redis") and not self._hand_back(lane, policy, now):
            return None
        try:
            return self._eval(lane, script, policy, now, durations, args)
        except _STORE_ERRORS as error:
            self._failed(lane, policy, error)
            return None

    def _eval(
        self,
        lane: _Lane,
        script: Any,
        policy: BreakerPolicy,
        now: float,
        durations: tuple[bytes, bytes, bytes],
        args: tuple[bytes, ...],
    ) -> list[Any]:
        """One script, one round trip; the answer refreshes what this process remembers."""
        if lane.policy is not policy:
            lane.bind(policy, self.idle_ttl, self.trial_timeout)
        redis_time = self.time_source == "redis"
        sent = time.monotonic()
        answer = script(
            keys=lane.keys,
            args=(b"" if redis_time else repr(now), lane.policy_field, *durations, *args),
            client=self._client,
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
        lane.view = _View(
            state,
            int(reply[2]),
            open_until,
            sent + self.max_staleness,
            int(reply[4]),
            "" if last == "-" else last,
            # acquire refused a trial: every permit of this half-open period is out
            state is _HALF_OPEN and script is self._acquire and not int(reply[6]),
        )
        return reply

    def _hand_back(self, lane: _Lane, policy: BreakerPolicy, now: float) -> bool:
        """During an outage (the store's or this breaker's): whether this call may use Redis.

        One call per ``retry_interval`` tries, with the probe script: it must
        write this breaker's keys, because a read-only replica or a server out
        of memory still answers reads. The others use the fallback at once.
        """
        if self._down_until:
            if not self._may_try():
                if lane.mode == "redis":
                    self._fall_back(lane, policy, self._outage, store_wide=True)
                return False
        elif lane.down_until and not self._lane_may_try(lane):
            return False
        try:
            reply = self._eval(lane, self._probe, policy, now, _NO_DURATION, ())
        except _STORE_ERRORS as error:
            if not isinstance(error, _OUTAGE_ERRORS):
                # Redis answered: the store's outage is over, only this breaker's keys fail.
                self._store_recovered()
            self._failed(lane, policy, error)
            return False
        self._store_recovered()
        with self._lock:
            lane.down_until = 0.0
        if lane.mode != "redis":
            self._recovered(lane, policy, now, _STATES[int(reply[1])])
        return True

    def _may_try(self) -> bool:
        """During a store-wide outage: whether this call is the one that tries Redis again."""
        if time.monotonic() < self._down_until:
            return False
        with self._lock:
            t = time.monotonic()
            if t < self._down_until:
                return False
            self._down_until = t + self.retry_interval  # the others wait for this try
            return True

    def _lane_may_try(self, lane: _Lane) -> bool:
        """During this breaker's own outage: whether this call tries its keys again."""
        if time.monotonic() < lane.down_until:
            return False
        with self._lock:
            t = time.monotonic()
            if t < lane.down_until:
                return False
            lane.down_until = t + self.retry_interval
            return True

    def _now_for_cache(self, now: float) -> float:
        return time.monotonic() if self.time_source == "redis" else now

    def _durations(self, lane: _Lane, policy: BreakerPolicy) -> tuple[bytes, bytes, bytes]:
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

    # -- outages -----------------------------------------------------------------

    def _failed(self, lane: _Lane, policy: BreakerPolicy, error: BaseException) -> None:
        """A script of *lane* failed: the store's outage, or this breaker's alone."""
        store_wide = isinstance(error, _OUTAGE_ERRORS)
        starting = False
        with self._lock:
            t = time.monotonic()
            if store_wide:
                starting = self._outage is None
                if starting:
                    self._outage_since = t
                self._down_until = t + self.retry_interval
                self._outage = error
            else:
                lane.down_until = t + self.retry_interval
        if starting:
            self._log_store_down(error)
        self._fall_back(lane, policy, error, store_wide=store_wide)

    def _store_recovered(self) -> None:
        """Redis answered: end the store-wide outage, if there was one, with one line."""
        if self._outage is None and not self._down_until:
            return
        with self._lock:
            ended = self._outage
            self._down_until = 0.0
            self._outage = None
            since = self._outage_since
        if ended is None:
            return
        outage = time.monotonic() - since
        logger.warning(
            "Redis store %r reached Redis again after %s s: each of its breakers hands its "
            "state back to Redis on its next call",
            self.namespace,
            seconds(round(outage, 3)),
            extra={
                "event": "redis_store_recovered",
                "namespace": self.namespace,
                "outage_seconds": round(outage, 6),
            },
        )

    def _log_store_down(self, error: BaseException) -> None:
        refused = isinstance(error, _WRITES_REFUSED)
        error_type, message = error_fields(error)
        logger.warning(
            "Redis store %r cannot %s Redis (%s): its breakers use their fallback (%s) "
            "until %s; retrying Redis every %s s",
            self.namespace,
            "write to" if refused else "reach",
            describe_error(error),
            _FALLBACK_WHAT[self.on_store_error],
            "a write to Redis succeeds again" if refused else "Redis answers again",
            seconds(self.retry_interval),
            extra={
                "event": "redis_store_unavailable",
                "namespace": self.namespace,
                "store_mode": self.on_store_error,
                "retry_in": self.retry_interval,
                "error_type": error_type,
                "error": message,
            },
        )

    def _fall_back(
        self,
        lane: _Lane,
        policy: BreakerPolicy,
        error: BaseException | None,
        *,
        store_wide: bool,
    ) -> None:
        """Hand *lane* to the fallback; log and tell the watchers once per outage."""
        with self._lock:
            if lane.mode != "redis" and (store_wide or not lane.store_wide):
                return  # this breaker's outage is already known and logged
            entering = lane.mode == "redis"
            if entering:
                lane.mode = self.on_store_error
                lane.down_since = time.monotonic()
                # The local breaker starts where Redis last was, not closed:
                # an outage of Redis must not reopen the floodgates.
                lane.seed = lane.view if lane.mode == "local" else None
                lane.view = _UNKNOWN
            lane.store_wide = store_wide
            lane.reason = _outage_reason(error, store_wide)
            seed = lane.seed
            mode = lane.mode
        what = _FALLBACK_WHAT[mode]
        starting = ""
        if mode == "local":
            starting = (
                ", starting from the state Redis last gave it "
                f"({_seeded(seed.state if seed is not None else _CLOSED)})"
            )
        extra: dict[str, object] = {
            "breaker": lane.name,
            "store_mode": mode,
            "scope": "store" if store_wide else "breaker",
            "retry_in": self.retry_interval,
        }
        if mode == "local":
            extra["seeded_state"] = (seed.state if seed is not None else _CLOSED).value
        described = "an earlier error"
        if error is not None:
            extra["error_type"], extra["error"] = error_fields(error)
            described = describe_error(error)
        if store_wide:
            # The store's own WARNING says it once per outage; each breaker's line is detail.
            refused = isinstance(error, _WRITES_REFUSED)
            extra["event"] = "breaker_store_unavailable"
            logger.info(
                "circuit %r cannot %s Redis (%s): %s until %s%s; retrying Redis every %s s",
                lane.name,
                "write to" if refused else "reach",
                described,
                what,
                "a write to Redis succeeds again" if refused else "Redis answers again",
                starting,
                seconds(self.retry_interval),
                extra=extra,
            )
        else:
            extra["event"] = "breaker_store_command_failed"
            extra["keys"] = list(lane.keys)
            logger.warning(
                "circuit %r: a Redis script on its keys %s failed (%s): %s until its keys "
                "work again%s; the other breakers of this store keep using Redis; retrying "
                "every %s s",
                lane.name,
                " and ".join(lane.keys),
                described,
                what,
                starting,
                seconds(self.retry_interval),
                extra=extra,
            )
        if entering:
            self._notify(lane, "redis", mode)

    def _recovered(
        self, lane: _Lane, policy: BreakerPolicy, now: float, redis_state: CircuitState
    ) -> None:
        with self._lock:
            if lane.mode == "redis":
                return
            was = lane.mode
            local_state: CircuitState | None = None
            if was == "local":
                seed = lane.seed
                local_state = (
                    seed.state
                    if seed is not None
                    else self._fallback.snapshot(lane.name, policy, now).state
                )
            lane.mode = "redis"
            lane.seed = None
            store_wide = lane.store_wide
            outage = time.monotonic() - lane.down_since
        extra: dict[str, object] = {
            "event": "breaker_store_recovered",
            "breaker": lane.name,
            "store_mode": "redis",
            "previous_mode": was,
            "outage_seconds": round(outage, 6),
            "redis_state": redis_state.value,
        }
        if was != "local":
            dropped = ""
        elif local_state is redis_state:
            dropped = "; the local breaker's state is dropped"
        else:
            assert local_state is not None
            extra["local_state"] = local_state.value
            dropped = (
                f"; the local breaker's state is dropped: it had the circuit "
                f"{local_state.value}, Redis holds it {redis_state.value}, and Redis's "
                "state applies from now on"
            )
        extra["states_differ"] = local_state is not None and local_state is not redis_state
        # After the store's outage, the store's own line said it; a state that
        # changed meanwhile is still worth a WARNING.
        level = logging.INFO if store_wide and not extra["states_differ"] else logging.WARNING
        logger.log(
            level,
            "circuit %r reached Redis again after %s s: its state is shared through Redis again%s",
            lane.name,
            seconds(round(outage, 3)),
            dropped,
            extra=extra,
        )
        self._notify(lane, was, "redis")

    def _notify(self, lane: _Lane, old: StoreMode, new: StoreMode) -> None:
        """Tell *lane*'s watchers; one that raises is logged once and never fails the call."""
        for ref in lane.watchers:
            callback = ref()
            if callback is None:
                continue
            try:
                callback(old, new)
            except Exception as error:
                if id(callback) in lane.failed_watchers:
                    continue
                lane.failed_watchers.add(id(callback))
                logger.error(
                    "mode watcher %s of circuit %r failed on %s -> %s: %s; the call goes on, "
                    "and later failures of this watcher are not logged",
                    name_of(callback),
                    lane.name,
                    old,
                    new,
                    describe_error(error),
                    exc_info=error,
                    extra={"event": "breaker_store_watcher_failed", "breaker": lane.name},
                )

    def _seed_local(self, lane: _Lane, policy: BreakerPolicy, now: float | None) -> bool:
        """Start the local breaker from Redis's last answer, once per outage.

        Returns False, seeding nothing, when that needs the breaker's clock
        (an open circuit's remaining time) and *now* is ``None``.
        """
        if lane.seed is None:
            return True
        with self._lock:
            view = lane.seed
            if view is None:  # pyright: ignore[reportUnnecessaryComparison]  # another thread took it
                return True
            if view.state is not _CLOSED and now is None:
                return False
            open_until = 0.0
            if view.state is _OPEN:
                assert now is not None
                open_until = now + (view.open_until - self._now_for_cache(now))
            self._fallback.seed(
                lane.name,
                policy,
                view.state,
                failures=view.failures,
                open_until=open_until,
                openings=view.openings,
                last_open_for=float(view.last) if view.last else None,
            )
            lane.seed = None
        return True

    def _fallback_acquire(self, lane: _Lane, policy: BreakerPolicy, now: float) -> Admission:
        mode = lane.mode
        if mode == "local":
            self._seed_local(lane, policy, now)
            admission = self._fallback.acquire(lane.name, policy, now)
            if admission.trial is None:
                return admission
            return admission._replace(trial=-admission.trial - 1)  # a local ticket
        if mode == "open":
            retry_in = self._retry_in(lane)
            return Admission(
                False,
                None,
                _OPEN,
                retry_in,
                None,
                f"{lane.reason} (on_store_error='open'), not because the dependency "
                f"failed; Redis is tried again in {retry_in:.3f} s",
            )
        return _ADMIT_CLOSED

    def _local_outcome(
        self,
        lane: _Lane,
        policy: BreakerPolicy,
        trial: int,
        now: float,
        slow: bool,
        *,
        success: bool,
    ) -> Transition | None:
        """The outcome of a trial the local fallback admitted; dropped once Redis is back."""
        if lane.mode != "local" or lane.seed is not None:
            return None  # Redis is back, or a ticket of an earlier outage
        record = self._fallback.record_success if success else self._fallback.record_failure
        return record(lane.name, policy, -trial - 1, now, slow)

    def _retry_in(self, lane: _Lane) -> float:
        return max(max(self._down_until, lane.down_until) - time.monotonic(), 1e-3)

    def _log_lost_permits(self, lane: _Lane, policy: BreakerPolicy) -> None:
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


class _View(NamedTuple):
    """Strictly private. What the last script answered for one breaker, in this process."""

    state: CircuitState
    failures: int
    open_until: float
    """When open: the end of the open period, on the clock the cache uses."""
    fresh_until: float
    """``time.monotonic()`` until which the state may be acted on without asking."""
    openings: int
    last: str
    """The last open duration, as stored (``""`` for none)."""
    permits_out: bool = False
    """Half-open, and acquire was refused: every trial permit is out."""


_UNKNOWN = _View(_CLOSED, 0, 0.0, -math.inf, 0, "")
_PERMITS_OUT = Admission(False, None, _HALF_OPEN, 0.0)


def _seeded(state: CircuitState) -> str:
    if state is _OPEN:
        return "open for the rest of its open period"
    if state is _HALF_OPEN:
        return "half-open (trial calls only)"
    return "closed"


def _outage_reason(error: BaseException | None, store_wide: bool) -> str:
    """Why calls are rejected under ``on_store_error="open"``, for ``CircuitOpenError``."""
    if not store_wide:
        return "a Redis script on its shared state failed"
    if isinstance(error, _WRITES_REFUSED):
        return "Redis, where its state is shared, refuses writes"
    return "Redis, where its state is shared, is unreachable"


class _Lane:
    """Strictly private. One breaker name in one ``RedisStore``: keys, cache and mode."""

    __slots__ = (
        "down_since",
        "down_until",
        "failed_watchers",
        "keys",
        "mode",
        "name",
        "policy",
        "policy_field",
        "reason",
        "seed",
        "store_wide",
        "view",
        "watchers",
    )

    def __init__(self, name: str, keys: tuple[str, str]) -> None:
        self.name = name
        self.keys = keys
        self.view = _UNKNOWN
        self.mode: StoreMode = "redis"
        self.down_since = 0.0
        self.down_until = 0.0  # this breaker's own outage: when its keys are tried again
        self.store_wide = False  # whether the fallback in force is for the store's outage
        self.reason = ""
        self.seed: _View | None = None  # the view the local breaker starts from, once
        self.watchers: tuple[Callable[[], Callable[[str, str], object] | None], ...] = ()
        self.failed_watchers: set[int] = set()
        """The ids of watchers whose failure was logged: each is logged once."""
        self.policy: BreakerPolicy | None = None
        self.policy_field = b""

    def bind(self, policy: BreakerPolicy, idle_ttl: float, trial_timeout: float) -> None:
        """Encode what *policy* fixes as the scripts' policy argument, once per policy."""
        window = policy.window
        if window is None:
            kind, size, width, required, signature = 0, 0, 0.0, 0, "-"
        elif window.seconds is None:
            assert window.calls is not None
            kind, size, width = 1, window.calls, 0.0
            required, signature = window.required_calls, _signature(window)
        else:
            assert window.buckets is not None
            kind, size, width = 2, window.buckets, window.seconds / window.buckets
            required, signature = window.required_calls, _signature(window)
        timeout = policy.recovery_timeout
        base, cap = (
            (timeout.base_delay, timeout.max_delay) if isinstance(timeout, Backoff) else (0.0, 0.0)
        )
        fields: tuple[object, ...] = (
            max(1, math.ceil(idle_ttl * 1000)),
            policy.failure_threshold,
            policy.half_open_max_calls,
            policy.success_threshold,
            kind,
            size,
            repr(width),
            required,
            repr(float(window.failure_rate_threshold)) if window is not None else "1.0",
            repr(policy.slow_call_rate_threshold),
            1 if policy.slow_calls else 0,
            repr(trial_timeout),
            signature,
            repr(base),
            repr(cap),
        )
        self.policy_field = " ".join(str(field) for field in fields).encode()
        self.policy = policy


class RedisRetryBudget:
    """``RetryBudget`` shared through Redis: one token bucket for a fleet.

    The same rule and methods: tokens start at *max_tokens*; each failed
    attempt costs one; each success refunds *token_ratio*; a retry is allowed
    only while more than half of *max_tokens* remain. Each method is one Lua
    script, so processes spending at once never exceed the bucket. Accepted
    wherever a ``RetryBudget`` is (``@retry(budget=...)``, the tasks).

    While Redis is unreachable, a local ``RetryBudget`` takes over, starting
    from the tokens last read from Redis; one warning is logged per outage
    and one on recovery, and Redis is tried again at most every
    *retry_interval* seconds; it is handed back only once a write to Redis
    succeeds (a read-only replica answers reads). The key
    ``{namespace:name}:budget`` expires after *idle_ttl* seconds without a
    write (an absent key is a full bucket).

    Args:
        client: a synchronous ``redis.Redis`` or ``redis.cluster.RedisCluster``;
            see ``RedisStore``.
        name: names the budget; budgets with the same name share tokens.
        max_tokens: the size of the bucket (> 0).
        token_ratio: tokens refunded per success, in (0, max_tokens].
        namespace: as for ``RedisStore``.
        retry_interval: as for ``RedisStore``.
        idle_ttl: as for ``RedisStore``.
    """

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
        retry_interval: float = 2.0,
        idle_ttl: float = 86400.0,
    ) -> None:
        _check_client(client, "RedisRetryBudget")
        _check_name("name", name)
        _check_namespace(namespace)
        local = RetryBudget(max_tokens, token_ratio)  # validates as RetryBudget does
        _check_limited("retry_interval", retry_interval, allow_zero=False)
        _check_limited("idle_ttl", idle_ttl, allow_zero=False)
        _warn_if_client_can_hang(client, "RedisRetryBudget", stacklevel=2)
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
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float | None = None,
        namespace: str = "resilient",
        retry_interval: float = 2.0,
        idle_ttl: float = 86400.0,
    ) -> RedisRetryBudget:
        """Build a budget on a new client for *url* that cannot hang a call.

        Args:
            url: as for ``RedisStore.from_url``.
            name: as for ``RedisRetryBudget``.
            max_tokens: as for ``RedisRetryBudget``.
            token_ratio: as for ``RedisRetryBudget``.
            namespace: as for ``RedisRetryBudget``.
            retry_interval: as for ``RedisRetryBudget``.
            idle_ttl: as for ``RedisRetryBudget``.
            socket_timeout: as for ``RedisStore.from_url``.
            connect_timeout: as for ``RedisStore.from_url``.

        Returns:
            A ``RedisRetryBudget``; nothing is sent until it is used.
        """
        client = connect(url, socket_timeout=socket_timeout, connect_timeout=connect_timeout)
        return cls(
            client,
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

    @property
    def tokens(self) -> float:
        """The tokens left now (one round trip)."""
        reply = self._call(self._read)
        return self._local.tokens if reply is None else self._seen(reply)

    @property
    def allows_retry(self) -> bool:
        """Whether a retry would be allowed now (more than half the tokens left)."""
        return self.tokens > self.max_tokens / 2

    def record_failure(self) -> bool:
        """Spend one token for a failed attempt; return whether a retry is allowed.

        One script: of many processes failing at once, exactly as many retry
        as the bucket allows.
        """
        reply = self._call(self._spend)
        if reply is None:
            return self._local.record_failure()
        self._seen(reply[1])
        return bool(reply[0])

    def record_success(self) -> None:
        """Refund *token_ratio* tokens for a successful attempt."""
        reply = self._call(self._refund)
        if reply is None:
            self._local.record_success()
        else:
            self._seen(reply)

    def __repr__(self) -> str:
        return (
            f"RedisRetryBudget(name={self.name!r}, max_tokens={self.max_tokens!r}, "
            f"token_ratio={self.token_ratio!r})"
        )

    def _seen(self, tokens: bytes | str | float) -> float:
        value = float(tokens)
        self._last_tokens = value
        return value

    def _call(self, script: Any) -> Any:
        """One script; ``None`` when Redis cannot answer (the local budget decides)."""
        if self._mode != "redis":
            with self._lock:
                t = time.monotonic()
                if t < self._down_until:
                    return None
                self._down_until = t + self.retry_interval  # this call tries; others wait
            try:  # a write first: a read-only replica or a full server still answers reads
                self._probe(keys=self._key, args=self._static, client=self._client)
            except _STORE_ERRORS as error:
                self._unavailable(error)
                return None
            self._recovered()
        try:
            reply = script(keys=self._key, args=self._static, client=self._client)
        except _STORE_ERRORS as error:
            self._unavailable(error)
            return None
        return reply

    def _unavailable(self, error: BaseException) -> None:
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
        refused = isinstance(error, _WRITES_REFUSED)
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


def connect(
    url: str,
    *,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: float | None = None,
) -> Any:
    """A ``redis.Redis`` for *url* with short timeouts and no retries of its own.

    Args:
        url: as ``redis.Redis.from_url`` reads it.
        socket_timeout: seconds to wait for an answer (> 0, at most a minute).
        connect_timeout: seconds to wait for a connection; default *socket_timeout*.

    Returns:
        The client; it connects on first use.
    """
    if not isinstance(url, str) or not url:
        raise TypeError(f"url must be a non-empty str, got {url!r}")
    _check_limited("socket_timeout", socket_timeout, allow_zero=False)
    if connect_timeout is None:
        connect_timeout = socket_timeout
    _check_limited("connect_timeout", connect_timeout, allow_zero=False)
    try:
        return redis.Redis.from_url(  # pyright: ignore[reportUnknownMemberType]
            url,
            socket_timeout=float(socket_timeout),
            socket_connect_timeout=float(connect_timeout),
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as error:  # redis-py's message does not say which argument
        raise ValueError(f"url is not a Redis URL ({error}), got url={url!r}") from error


# -- helpers --------------------------------------------------------------------


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
    )


def _ticket(trial: int | None) -> bytes:
    return b"" if trial is None else str(trial).encode()


def _signature(window: object) -> str:
    return hashlib.sha1(repr(window).encode(), usedforsecurity=False).hexdigest()[:16]


def _check_client(client: object, owner: str) -> None:
    if not callable(getattr(client, "register_script", None)):
        raise TypeError(
            f"client must be a redis.Redis (or redis.cluster.RedisCluster) client, got "
            f"{client!r}; use {owner}.from_url(url) to build one"
        )
    kind = type(client)
    if kind.__module__.startswith("redis.asyncio") or inspect.iscoroutinefunction(
        getattr(client, "execute_command", None)
    ):
        raise TypeError(
            f"client must be a synchronous redis.Redis (or redis.cluster.RedisCluster) client, "
            f"got a {kind.__module__}.{kind.__qualname__}, an asyncio client: the breaker "
            f"runs {owner}'s scripts synchronously, so the async client's commands would "
            "never be awaited. Give it a synchronous client for the same server: "
            f"resilient.redis.connect(url), or {owner}.from_url(url)"
        )


def _check_name(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str, got {value!r}")


def _check_namespace(namespace: object) -> None:
    _check_name("namespace", namespace)
    assert isinstance(namespace, str)
    if any(char in namespace for char in ":{}"):
        raise ValueError(
            "namespace must not contain ':', '{' or '}' (':' separates it from the name in "
            "the keys, so namespace='app:prod' with name='users' would share the keys of "
            "namespace='app' with name='prod:users'; braces would break the hash tag that "
            f"keeps a breaker's keys in one Redis Cluster slot), got namespace={namespace!r}"
        )


def _check_limited(name: str, value: object, *, allow_zero: bool = True) -> None:
    """``check_seconds``, and at most the bound of ``_LIMITS`` for *name*."""
    check_seconds(name, value, allow_zero=allow_zero)
    assert isinstance(value, (int, float))
    limit = _LIMITS[name]
    if value > limit:
        raise ValueError(
            f"{name} must be <= {seconds(limit)} s ({_LIMITS_SAID[name]}), got {name}={value!r}"
        )


def _warn_if_client_can_hang(client: Any, owner: str, stacklevel: int) -> None:
    """Warn once, at construction, when *client* could hang calls while Redis is down.

    *stacklevel* counts from the caller of this helper, as ``warnings.warn`` does.
    """
    found = _client_options(client)
    if found is None:
        kind = type_name(cast("type[object]", type(client)))
        warnings.warn(
            f"the Redis client given to {owner} is a {kind}, "
            "whose timeouts and retries cannot be checked: make sure it has a short socket "
            f"timeout (socket_timeout={DEFAULT_SOCKET_TIMEOUT}) and does not retry by itself "
            "(retry=Retry(NoBackoff(), 0)), or a Redis server that stops answering would hang "
            "the breakers' calls; or use from_url(url)",
            RedisClientWarning,
            stacklevel=stacklevel + 1,
        )
        return
    options, retries = found
    problems: list[str] = []
    if options.get("socket_timeout") is None:
        problems.append(
            "it has no socket timeout, so a Redis server that stops answering would hang "
            "every call the breakers make"
        )
    if retries:
        problems.append(
            f"it retries a failed command {retries} time(s) by itself (with its own "
            "backoff), so while Redis is down every call would wait for those retries "
            "before the fallback takes over"
        )
    if problems:
        warnings.warn(
            f"the Redis client given to {owner} could hang calls while Redis is unreachable: "
            + "; and ".join(problems)
            + f". Build it with socket_timeout={DEFAULT_SOCKET_TIMEOUT} and "
            "retry=Retry(NoBackoff(), 0), or use from_url(url)",
            RedisClientWarning,
            stacklevel=stacklevel + 1,
        )


def _client_options(client: Any) -> tuple[dict[str, Any], int] | None:
    """The connection options of *client* and how often it retries a command; None: unknown."""
    options = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if isinstance(options, dict):  # redis.Redis
        known = cast("dict[str, Any]", options)
        return dict(known), _retries(known)
    get_options = getattr(client, "get_connection_kwargs", None)
    if callable(get_options):
        # redis.cluster.RedisCluster: one client per node, each built from these
        # options; the cluster client retries on its own (its `retry`) on top.
        options = get_options()
        if isinstance(options, dict):
            known = cast("dict[str, Any]", options)
            return dict(known), max(_retries(known), _count(getattr(client, "retry", None)))
    return None


def _retries(options: dict[str, Any]) -> int:
    retry = options.get("retry")
    if retry is None:
        on_error = options.get("retry_on_error") or options.get("retry_on_timeout")
        return 1 if on_error else 0
    return _count(retry)


def _count(retry: object) -> int:
    """How many times a redis-py ``Retry`` retries (``get_retries()`` is redis-py 5.1+)."""
    if retry is None:
        return 0
    get_retries = getattr(retry, "get_retries", None)
    count = get_retries() if callable(get_retries) else getattr(retry, "_retries", 0)
    return int(count) if isinstance(count, int) else 0
