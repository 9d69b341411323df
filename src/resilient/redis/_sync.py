"""Strictly private. The sync driver of the Redis stores, on ``redis.Redis``.

It only sends: each operation of the core (``_core``) yields a script to run,
and this module runs it on the client and hands the reply (or the error) back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from resilient._breaker_state import (
    Admission,
    BreakerPolicy,
    CircuitState,
    StoredState,
    Transition,
)
from resilient.pacing import RatePolicy, Reservation
from resilient.redis._core import STORE_ERRORS, BreakerCore, BudgetCore, Op, driver_info
from resilient.redis._pacing import sync_only
from resilient.redis._settings import (
    DEFAULT_SOCKET_TIMEOUT,
    check_limited,
    check_url,
)

if TYPE_CHECKING:
    from resilient._types import Seconds

__all__ = ["RedisRetryBudget", "RedisStore", "connect"]

T = TypeVar("T")


def drive(op: Op[T], client: Any) -> T:
    """Run *op* to its end on *client*: send what it yields, hand back what comes."""
    try:
        script, keys, args = next(op)
        while True:
            try:
                reply = script(keys=keys, args=args, client=client)
            except STORE_ERRORS as error:
                script, keys, args = op.throw(error)
            else:
                script, keys, args = op.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def connect(
    url: str,
    *,
    socket_timeout: Seconds = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: Seconds | None = None,
) -> Any:
    """A ``redis.Redis`` for *url* with short timeouts and no retries of its own.

    Args:
        url: as ``redis.Redis.from_url`` reads it.
        socket_timeout: seconds to wait for an answer (> 0, at most a minute).
        connect_timeout: seconds to wait for a connection; default *socket_timeout*.

    Returns:
        The client; it connects on first use.
    """
    connect_timeout = check_url(url, socket_timeout, connect_timeout)
    try:
        return redis.Redis.from_url(  # pyright: ignore[reportUnknownMemberType]
            url,
            socket_timeout=check_limited("socket_timeout", socket_timeout, allow_zero=False),
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
            **driver_info(),
        )
    except ValueError as error:  # redis-py's message does not say which argument
        raise ValueError(f"url is not a Redis URL ({error}), got url={url!r}") from error


class RedisStore(BreakerCore):
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

    It is also a ``PacingStore``: a ``RateLimiter`` or ``ConcurrencyLimit``
    given ``store=`` and a ``name`` is shared by every process using that
    name. An acquire is one script (GCRA on Redis ``TIME``) that reserves the
    caller's turn and answers the wait, which the caller sleeps once; a
    ``pause`` is one key every acquire reads; a concurrency slot is a lease
    that expires ``lease_ttl`` after it was taken, so a killed process's
    slots come back. Keys: ``{namespace:name}:rate``, ``...:pause``,
    ``...:slots``. While Redis is unreachable, ``on_store_error="local"``
    paces each process alone at the same settings (``"open"`` admits
    nothing, ``"closed"`` everything), and hands back when Redis answers.

    Its round trips block the calling thread (for at most the client's
    socket timeout): in asyncio programs use ``AsyncRedisStore``.

    Args:
        client: a synchronous ``redis.Redis`` or ``redis.cluster.RedisCluster``.
            Give it a short ``socket_timeout`` and no retries, or use
            ``from_url``; a client that could hang calls draws a
            ``RedisClientWarning``. A ``redis.asyncio`` client is refused
            (give it to ``AsyncRedisStore``).
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

    _OWNER = "RedisStore"
    _ASYNCIO = False
    _connect = staticmethod(connect)
    __slots__ = ()

    # -- the BreakerStore operations -------------------------------------------

    def acquire(self, name: str, policy: BreakerPolicy, now: float) -> Admission:
        """Admit a call or not; see ``BreakerStore``."""
        lane = self._lanes.get(name) or self._lane(name)
        cached = self._cached(lane, now)
        if cached is not None:
            return cached
        return drive(self._acquire_op(lane, policy, now), self._client)

    def record_success(
        self, name: str, policy: BreakerPolicy, trial: int | None, now: float, slow: bool
    ) -> Transition | None:
        """Record a success; see ``BreakerStore``.

        Under the consecutive-failure rule, a success on a closed circuit with
        no failure pending (as last read, at most ``max_staleness`` ago) has
        nothing to change, and costs no round trip.
        """
        lane = self._lanes.get(name) or self._lane(name)
        if trial is None and self._success_is_noop(lane, policy):
            return None
        return drive(self._success_op(lane, policy, trial, now, slow), self._client)

    def record_failure(
        self, name: str, policy: BreakerPolicy, trial: int | None, now: float, slow: bool
    ) -> Transition | None:
        """Record a counted failure; see ``BreakerStore``."""
        lane = self._lanes.get(name) or self._lane(name)
        return drive(self._failure_op(lane, policy, trial, now, slow), self._client)

    def release(self, name: str, policy: BreakerPolicy, trial: int) -> None:
        """Give a trial permit back; see ``BreakerStore``."""
        lane = self._lanes.get(name) or self._lane(name)
        drive(self._release_op(lane, policy, trial), self._client)

    def force(
        self, name: str, policy: BreakerPolicy, state: CircuitState, now: float
    ) -> Transition | None:
        """Put the circuit in *state*; see ``BreakerStore``.

        While Redis is unreachable only a ``"local"`` fallback can be forced.
        """
        lane = self._lanes.get(name) or self._lane(name)
        return drive(self._force_op(lane, policy, state, now), self._client)

    def snapshot(self, name: str, policy: BreakerPolicy, now: float) -> StoredState:
        """Read the circuit; see ``BreakerStore``. Always asks Redis (when it answers)."""
        lane = self._lanes.get(name) or self._lane(name)
        return drive(self._snapshot_op(lane, policy, now), self._client)

    # -- the PacingStore operations (RateLimiter, ConcurrencyLimit) -----------------

    def rate_reserve(
        self, name: str, policy: RatePolicy, cost: float, max_wait: float, now: float
    ) -> Reservation:
        """Reserve *cost* units of rate limiter *name*: one script; see ``PacingStore``."""
        return drive(self._pacing.reserve_op(name, policy, cost, max_wait, now), self._client)

    def rate_confirm(self, name: str, policy: RatePolicy, turn: str, now: float) -> Reservation:
        """A waiter's turn has come, a pause known since: go, or wait what it added."""
        return drive(self._pacing.confirm_op(name, policy, turn, now), self._client)

    def rate_refund(
        self, name: str, policy: RatePolicy, cost: float, now: float, turn: str | None = None
    ) -> str | None:
        """Give back units of the reservation *turn*; see ``PacingStore``."""
        return drive(self._pacing.refund_op(name, policy, cost, now, turn), self._client)

    def rate_pause(self, name: str, policy: RatePolicy, seconds: float, now: float) -> float | None:
        """Admit nothing under *name* for *seconds*, in every process; see ``PacingStore``."""
        return drive(self._pacing.pause_op(name, policy, seconds, now), self._client)

    def slot_acquire(self, name: str, limit: int, lease_ttl: float, now: float) -> str | None:
        """Lease a slot of concurrency limit *name*; see ``PacingStore``."""
        return drive(self._pacing.slot_op(name, limit, lease_ttl, now), self._client)

    def slot_release(self, name: str, lease: str, now: float) -> None:
        """Give a leased slot back; see ``PacingStore``."""
        drive(self._pacing.release_op(name, lease, now), self._client)

    async def rate_reserve_async(
        self, name: str, policy: RatePolicy, cost: float, max_wait: float, now: float
    ) -> Reservation:
        """Refused: see ``AsyncRedisStore``."""
        raise sync_only("acquire_async (or async with)")

    async def rate_confirm_async(
        self, name: str, policy: RatePolicy, turn: str, now: float
    ) -> Reservation:
        """Refused: see ``AsyncRedisStore``."""
        raise sync_only("acquire_async (or async with)")

    async def rate_refund_async(
        self, name: str, policy: RatePolicy, cost: float, now: float, turn: str | None = None
    ) -> str | None:
        """Refused: see ``AsyncRedisStore``."""
        raise sync_only("refund_async")

    async def rate_pause_async(
        self, name: str, policy: RatePolicy, seconds: float, now: float
    ) -> float | None:
        """Refused: see ``AsyncRedisStore``."""
        raise sync_only("pause_async")

    async def slot_acquire_async(
        self, name: str, limit: int, lease_ttl: float, now: float
    ) -> str | None:
        """Refused: see ``AsyncRedisStore``."""
        raise sync_only("async with (or call_async)")

    async def slot_release_async(self, name: str, lease: str, now: float) -> None:
        """Refused: see ``AsyncRedisStore``."""
        raise sync_only("async with (or call_async)")


class RedisRetryBudget(BudgetCore):
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

    _OWNER = "RedisRetryBudget"
    _ASYNCIO = False
    _connect = staticmethod(connect)
    __slots__ = ()

    @property
    def tokens(self) -> float:
        """The tokens left now (one round trip)."""
        return drive(self._tokens_op(), self._client)

    @property
    def allows_retry(self) -> bool:
        """Whether a retry would be allowed now (more than half the tokens left)."""
        return self.tokens > self.max_tokens / 2

    def record_failure(self) -> bool:
        """Spend one token for a failed attempt; return whether a retry is allowed.

        One script: of many processes failing at once, exactly as many retry
        as the bucket allows.
        """
        return drive(self._spend_op(), self._client)

    def record_success(self) -> None:
        """Refund *token_ratio* tokens for a successful attempt."""
        drive(self._refund_op(), self._client)
