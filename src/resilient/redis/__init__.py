"""Breaker state and retry budgets shared by processes and hosts, through Redis.

``RedisStore`` is a ``BreakerStore``: give it to every breaker that guards one
dependency, with the same ``name`` in every process, and the fleet trips,
waits and probes as one circuit. ``RedisRetryBudget`` is ``RetryBudget``'s
twin: one token bucket for the whole fleet. A ``RateLimiter`` or
``ConcurrencyLimit`` given ``store=RedisStore(...)`` and a ``name`` paces the
whole fleet: one rate, one pause, one set of slots (leases that expire).
In asyncio programs, ``AsyncRedisStore`` and ``AsyncRedisRetryBudget`` do the
same on a ``redis.asyncio`` client without ever blocking the event loop.

Each operation is one Lua script, so processes never race; time comes from
Redis ``TIME``, so hosts whose clocks disagree agree on when an open period
ends. Redis failing never takes the application down: while it is
unreachable a fallback decides (``on_store_error``), one warning is logged
per outage and one on recovery, and Redis is tried again at most every
``retry_interval`` seconds.

Requires the ``redis`` package (``pip install "resilient-kit[redis]"``);
``import resilient`` does not import this module.
"""

from __future__ import annotations

try:
    import redis  # noqa: F401  # pyright: ignore[reportUnusedImport]  # redis-py, never this package
except ImportError as _missing:  # pragma: no cover - tested in a subprocess
    raise ImportError(
        "resilient.redis needs the redis package, which is not installed: "
        'pip install "resilient-kit[redis]"'
    ) from _missing

from resilient.redis._async import AsyncRedisRetryBudget, AsyncRedisStore, connect_async
from resilient.redis._settings import (
    DEFAULT_SOCKET_TIMEOUT,
    FallbackMode,
    RedisClientWarning,
    StoreMode,
)
from resilient.redis._sync import RedisRetryBudget, RedisStore, connect

# Public names say where users import them from (reprs, pickles, the docs).
for _public in (
    AsyncRedisRetryBudget,
    AsyncRedisStore,
    RedisClientWarning,
    RedisRetryBudget,
    RedisStore,
    connect,
    connect_async,
):
    _public.__module__ = __name__
del _public

__all__ = [
    "DEFAULT_SOCKET_TIMEOUT",
    "AsyncRedisRetryBudget",
    "AsyncRedisStore",
    "FallbackMode",
    "RedisClientWarning",
    "RedisRetryBudget",
    "RedisStore",
    "StoreMode",
    "connect",
    "connect_async",
]
