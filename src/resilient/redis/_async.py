"""Strictly private. The asyncio driver of the Redis stores, on ``redis.asyncio.Redis``.

It only awaits: each operation of the core (``_core``) yields a script to
run, and this module awaits it on the client and hands the reply (or the
error) back. The one thing it adds is single flight: coroutines that find a
breaker's remembered state stale at the same moment wait for one refresh
instead of each making a round trip.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import TimeoutError as RedisTimeoutError

from resilient._breaker_state import (
    Admission,
    BreakerPolicy,
    CircuitState,
    StoredState,
    Transition,
)
from resilient.pacing import RatePolicy, Reservation
from resilient.redis._core import STORE_ERRORS, BreakerCore, BudgetCore, Op, driver_info
from resilient.redis._pacing import async_only
from resilient.redis._settings import DEFAULT_SOCKET_TIMEOUT, check_limited, check_url

if TYPE_CHECKING:
    from resilient._types import Seconds

__all__ = ["MAX_CONNECTIONS", "AsyncRedisRetryBudget", "AsyncRedisStore", "connect_async"]

MAX_CONNECTIONS = 100
"""Connections a ``connect_async`` client opens at most; more coroutines wait for one."""

T = TypeVar("T")


async def drive_async(op: Op[T], client: Any) -> T:
    """Run *op* to its end on *client*: await what it yields, hand back what comes."""
    try:
        script, keys, args = next(op)
        while True:
            try:
                reply = await script(keys=keys, args=args, client=client)
            except STORE_ERRORS as error:
                script, keys, args = op.throw(error)
            except asyncio.TimeoutError as error:  # not an OSError before Python 3.11
                timeout = RedisTimeoutError(f"Redis did not answer in time ({error!r})")
                script, keys, args = op.throw(timeout)
            else:
                script, keys, args = op.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def connect_async(
    url: str,
    *,
    socket_timeout: Seconds = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: Seconds | None = None,
) -> Any:
    """A ``redis.asyncio.Redis`` for *url* with short timeouts and no retries of its own.

    Its pool opens at most 100 connections; a coroutine that finds them all
    busy waits for one (without blocking the loop) for at most
    *socket_timeout*, then fails as an unreachable Redis would.

    Args:
        url: as ``redis.asyncio.Redis.from_url`` reads it.
        socket_timeout: seconds to wait for an answer (> 0, at most a minute).
        connect_timeout: seconds to wait for a connection; default *socket_timeout*.

    Returns:
        The client; it connects on first use, in the event loop of that use.
    """
    connect_timeout = check_url(url, socket_timeout, connect_timeout)
    socket_timeout = check_limited("socket_timeout", socket_timeout, allow_zero=False)
    try:
        # A pool that makes a coroutine wait (asynchronously, at most a socket timeout)
        # for a free connection: the default one raises at once when all of them are
        # busy, and many coroutines asking at once would look like an outage of Redis.
        pool = redis.asyncio.BlockingConnectionPool.from_url(  # pyright: ignore[reportUnknownMemberType]
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=float(socket_timeout),
            socket_timeout=float(socket_timeout),
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
            **driver_info(),
        )
    except ValueError as error:  # redis-py's message does not say which argument
        raise ValueError(f"url is not a Redis URL ({error}), got url={url!r}") from error
    # The client owns the pool, so aclose() closes its connections (from_pool: redis-py 5.0.1+).
    from_pool = getattr(redis.asyncio.Redis, "from_pool", None)
    if from_pool is not None:
        return from_pool(pool)
    client = redis.asyncio.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True
    return client


class AsyncRedisStore(BreakerCore):
    """``RedisStore`` for asyncio programs: the same shared state, never blocking the loop.

    Everything ``RedisStore`` says holds (one Lua script per operation, Redis
    ``TIME``, hash-tagged keys that expire when idle, the remembered state
    for ``max_staleness`` seconds, the fallback modes, one warning per
    outage, hand-back after a write): the two are one core with two drivers.
    This one awaits its round trips on a ``redis.asyncio`` client, so a slow
    or frozen Redis delays only the calls waiting for it (for at most the
    client's socket timeout), never the event loop.

    Coroutines that find a breaker's remembered state stale at the same
    moment share one refresh: one round trip, then each decides from the
    fresh answer (a half-open circuit still hands out its trial permits one
    script at a time). With ``max_staleness=0`` every call asks Redis.

    The breaker's async forms use it: ``await breaker.call_async(...)``,
    ``async with breaker:``, ``@breaker`` on an ``async def``, and
    ``await breaker.reset_async()`` / ``trip_async()``. The sync forms
    (``call``, ``with``, ``@`` on a plain function, ``reset()``, ``trip()``)
    raise ``TypeError``. ``breaker.state`` and ``breaker.metrics`` answer
    from what this process last read (no round trip; the window's totals
    read 0); ``await store.snapshot_async(name, ...)`` asks Redis.

    It is also the asyncio ``PacingStore``: ``RateLimiter`` and
    ``ConcurrencyLimit`` given ``store=AsyncRedisStore(...)`` pace their
    async forms (``acquire_async``, ``async with``) through the same scripts
    as ``RedisStore``, one awaited round trip per admitted acquire; their
    sync forms raise ``TypeError``.

    Args:
        client: a ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster``,
            with a short ``socket_timeout`` and no retries (``from_url``
            builds one); a synchronous client is refused (give it to
            ``RedisStore``). Use the store from the event loop the client
            belongs to.
        namespace: as for ``RedisStore``.
        on_store_error: as for ``RedisStore``.
        max_staleness: as for ``RedisStore``.
        retry_interval: as for ``RedisStore``.
        trial_timeout: as for ``RedisStore``.
        idle_ttl: as for ``RedisStore``.
        time_source: as for ``RedisStore``.

    Example:
        >>> from resilient import CircuitBreaker
        >>> from resilient.redis import AsyncRedisStore
        >>> store = AsyncRedisStore.from_url("redis://localhost:6379/0")  # doctest: +SKIP
        >>> breaker = CircuitBreaker(name="users-api", store=store)  # doctest: +SKIP
        >>> await breaker.call_async(fetch_user, 42)  # doctest: +SKIP
    """

    _OWNER = "AsyncRedisStore"
    _ASYNCIO = True
    _connect = staticmethod(connect_async)
    __slots__ = ()

    # -- the AsyncBreakerStore operations ------------------------------------------

    async def acquire_async(self, name: str, policy: BreakerPolicy, now: float) -> Admission:
        """Admit a call or not; see ``BreakerStore.acquire``."""
        lane = self._lanes.get(name) or self._lane(name)
        cached = self._cached(lane, now)
        if cached is not None:
            return cached
        if not self._shares_refresh(lane):
            return await drive_async(self._acquire_op(lane, policy, now), self._client)
        flight = self._flights.get(name)
        if flight is not None:  # another coroutine is refreshing: its answer may do
            await asyncio.shield(flight)
            cached = self._cached(lane, now, shared=True)
            if cached is not None:
                return cached
            return await drive_async(self._acquire_op(lane, policy, now), self._client)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flights[name] = mine
        try:
            return await drive_async(self._acquire_op(lane, policy, now), self._client)
        finally:
            if self._flights.get(name) is mine:
                del self._flights[name]
            mine.set_result(None)

    async def record_success_async(
        self, name: str, policy: BreakerPolicy, trial: int | None, now: float, slow: bool
    ) -> Transition | None:
        """Record a success; see ``BreakerStore.record_success`` and ``RedisStore``."""
        lane = self._lanes.get(name) or self._lane(name)
        if trial is None and self._success_is_noop(lane, policy):
            return None
        return await drive_async(self._success_op(lane, policy, trial, now, slow), self._client)

    async def record_failure_async(
        self, name: str, policy: BreakerPolicy, trial: int | None, now: float, slow: bool
    ) -> Transition | None:
        """Record a counted failure; see ``BreakerStore.record_failure``."""
        lane = self._lanes.get(name) or self._lane(name)
        return await drive_async(self._failure_op(lane, policy, trial, now, slow), self._client)

    async def release_async(self, name: str, policy: BreakerPolicy, trial: int) -> None:
        """Give a trial permit back; see ``BreakerStore.release``."""
        lane = self._lanes.get(name) or self._lane(name)
        await drive_async(self._release_op(lane, policy, trial), self._client)

    async def force_async(
        self, name: str, policy: BreakerPolicy, state: CircuitState, now: float
    ) -> Transition | None:
        """Put the circuit in *state*; see ``BreakerStore.force``."""
        lane = self._lanes.get(name) or self._lane(name)
        return await drive_async(self._force_op(lane, policy, state, now), self._client)

    async def snapshot_async(self, name: str, policy: BreakerPolicy, now: float) -> StoredState:
        """Read the circuit from Redis (when it answers); see ``BreakerStore.snapshot``."""
        lane = self._lanes.get(name) or self._lane(name)
        return await drive_async(self._snapshot_op(lane, policy, now), self._client)

    def snapshot(self, name: str, policy: BreakerPolicy, now: float) -> StoredState:
        """The circuit as this process last read it, without a round trip.

        What ``breaker.state`` and ``breaker.metrics`` show: a sync property
        cannot await Redis. The window's totals are not remembered (0).
        """
        lane = self._lanes.get(name) or self._lane(name)
        return self._known(lane, policy, now)

    # -- the PacingStore operations (RateLimiter, ConcurrencyLimit) -----------------

    async def rate_reserve_async(
        self, name: str, policy: RatePolicy, cost: float, max_wait: float, now: float
    ) -> Reservation:
        """Reserve *cost* units of rate limiter *name*: one script; see ``PacingStore``."""
        op = self._pacing.reserve_op(name, policy, cost, max_wait, now)
        return await drive_async(op, self._client)

    async def rate_confirm_async(
        self, name: str, policy: RatePolicy, turn: str, now: float
    ) -> Reservation:
        """A waiter's turn has come, a pause known since: go, or wait what it added."""
        return await drive_async(self._pacing.confirm_op(name, policy, turn, now), self._client)

    async def rate_refund_async(
        self, name: str, policy: RatePolicy, cost: float, now: float, turn: str | None = None
    ) -> str | None:
        """Give back units of the reservation *turn*; see ``PacingStore``."""
        op = self._pacing.refund_op(name, policy, cost, now, turn)
        return await drive_async(op, self._client)

    async def rate_pause_async(
        self, name: str, policy: RatePolicy, seconds: float, now: float
    ) -> float | None:
        """Admit nothing under *name* for *seconds*, in every process; see ``PacingStore``."""
        op = self._pacing.pause_op(name, policy, seconds, now)
        return await drive_async(op, self._client)

    async def slot_acquire_async(
        self, name: str, limit: int, lease_ttl: float, now: float
    ) -> str | None:
        """Lease a slot of concurrency limit *name*; see ``PacingStore``."""
        return await drive_async(self._pacing.slot_op(name, limit, lease_ttl, now), self._client)

    async def slot_release_async(self, name: str, lease: str, now: float) -> None:
        """Give a leased slot back; see ``PacingStore``."""
        await drive_async(self._pacing.release_op(name, lease, now), self._client)

    def rate_reserve(
        self, name: str, policy: RatePolicy, cost: float, max_wait: float, now: float
    ) -> Reservation:
        """Refused: the sync forms cannot await Redis; see ``RedisStore``."""
        raise async_only("acquire_async (or async with)")

    def rate_confirm(self, name: str, policy: RatePolicy, turn: str, now: float) -> Reservation:
        """Refused: see ``rate_confirm_async``."""
        raise async_only("acquire_async (or async with)")

    def rate_refund(
        self, name: str, policy: RatePolicy, cost: float, now: float, turn: str | None = None
    ) -> str | None:
        """Refused: see ``rate_refund_async``."""
        raise async_only("refund_async")

    def rate_pause(self, name: str, policy: RatePolicy, seconds: float, now: float) -> float | None:
        """Refused: see ``rate_pause_async``."""
        raise async_only("pause_async")

    def slot_acquire(self, name: str, limit: int, lease_ttl: float, now: float) -> str | None:
        """Refused: see ``slot_acquire_async``."""
        raise async_only("async with (or call_async)")

    def slot_release(self, name: str, lease: str, now: float) -> None:
        """Refused: see ``slot_release_async``."""
        raise async_only("async with (or call_async)")


class AsyncRedisRetryBudget(BudgetCore):
    """``RedisRetryBudget`` for asyncio programs: one token bucket for a fleet, awaited.

    The same rule, key and fallback as ``RedisRetryBudget``; its round trips
    are awaited on a ``redis.asyncio`` client, so the async retry loop
    (``@retry`` on an ``async def``, ``retry_with_backoff`` of a coroutine
    function, ``execute_task_safely`` of one) never blocks the event loop
    on Redis. ``@retry(budget=...)`` on a plain function refuses it.

    Args:
        client: a ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster``;
            see ``AsyncRedisStore``.
        name: as for ``RedisRetryBudget``.
        max_tokens: as for ``RedisRetryBudget``.
        token_ratio: as for ``RedisRetryBudget``.
        namespace: as for ``RedisRetryBudget``.
        retry_interval: as for ``RedisRetryBudget``.
        idle_ttl: as for ``RedisRetryBudget``.
    """

    _OWNER = "AsyncRedisRetryBudget"
    _ASYNCIO = True
    _connect = staticmethod(connect_async)
    __slots__ = ()

    async def tokens_async(self) -> float:
        """The tokens left now (one round trip)."""
        return await drive_async(self._tokens_op(), self._client)

    async def record_failure_async(self) -> bool:
        """Spend one token for a failed attempt; return whether a retry is allowed."""
        return await drive_async(self._spend_op(), self._client)

    async def record_success_async(self) -> None:
        """Refund *token_ratio* tokens for a successful attempt."""
        await drive_async(self._refund_op(), self._client)

    def record_failure(self) -> bool:
        """Refused: a sync caller cannot await Redis. Use ``await record_failure_async()``."""
        raise self._sync_refused("record_failure")

    def record_success(self) -> None:
        """Refused: a sync caller cannot await Redis. Use ``await record_success_async()``."""
        raise self._sync_refused("record_success")

    def _sync_refused(self, method: str) -> TypeError:
        return TypeError(
            f"{self!r}.{method}() cannot run synchronously: its round trips are awaited on a "
            f"redis.asyncio client. Use it from async def functions (the async retry loop "
            f"awaits {method}_async()), or use resilient.redis.RedisRetryBudget with a "
            "synchronous client for plain functions"
        )
