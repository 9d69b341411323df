"""Strictly private. What ``resilient.redis`` accepts: settings, clients, and Redis's errors.

Shared by the sync and the asyncio drivers: the bounds of the settings, the
checks of a client given to a store (its kind, its timeouts, its retries),
and which Redis errors mean an outage of the server rather than one
breaker's keys.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Generator
from typing import Any, Literal, TypeVar, cast

from redis.exceptions import (
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from resilient._compat import duration
from resilient._redact import type_name

__all__ = [
    "DEFAULT_SOCKET_TIMEOUT",
    "FALLBACKS",
    "OUTAGE_ERRORS",
    "STORE_ERRORS",
    "WRITES_REFUSED",
    "FallbackMode",
    "Op",
    "RedisClientWarning",
    "Send",
    "StoreMode",
    "check_client",
    "check_limited",
    "check_name",
    "check_namespace",
    "warn_if_client_can_hang",
]

T = TypeVar("T")

Send = tuple[Any, tuple[str, ...], tuple[Any, ...]]
"""What an operation asks its driver to send: a registered script, its keys, its arguments."""

Op = Generator[Send, Any, T]
"""A store operation: yields what to send, receives each reply, returns its result."""


StoreMode = Literal["redis", "local", "open", "closed"]
"""Where a breaker's state lives now: ``"redis"``, or the fallback in force."""

FallbackMode = Literal["local", "open", "closed"]
"""What ``on_store_error`` accepts: the fallback used while Redis is unreachable."""

FALLBACKS = ("local", "open", "closed")

# Errors that mean "this server cannot serve any breaker now": the connection
# (refused, reset, timed out, the server loading), a cluster without a master
# for the slot, and a server that refuses every write (a read-only replica
# after a failover, a server out of memory). Every breaker of the store falls
# back. redis-py wraps socket errors in its own; OSError is for the few paths
# that do not.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    ClusterDownError,
    RedisClusterException,
    OSError,
)
WRITES_REFUSED = (ReadOnlyError, OutOfMemoryError)
# Any other error of a script (WRONGTYPE: something else wrote one of its
# keys; an error the script raised on one breaker's data) is that breaker's
# alone: it falls back, the others keep using Redis.
STORE_ERRORS: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)

DEFAULT_SOCKET_TIMEOUT = 1.0
"""Seconds ``from_url`` clients wait for a connection or an answer from Redis.

Short enough that a frozen Redis costs a call at most a second (and then one
call per ``retry_interval``); long enough that a busy host's late answer is
not an outage: at 0.25 s, ten processes on a loaded two-core host lost Redis
mid-run in 3 of 8 runs of ``examples/llm_fleet.py`` (each time paced alone
meanwhile: 429s and lost goodput). redis-rb waits 1 s, Jedis 2 s.
"""

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


def is_async_client(client: object) -> bool:
    """Whether *client* is a ``redis.asyncio`` client (its commands are coroutines)."""
    kind = type(client)
    return kind.__module__.startswith("redis.asyncio") or inspect.iscoroutinefunction(
        getattr(client, "execute_command", None)
    )


def check_client(client: object, owner: str, *, asyncio: bool = False) -> None:
    """Refuse what is not a client of the kind *owner* drives (sync, or *asyncio*)."""
    sync_kind = "redis.Redis (or redis.cluster.RedisCluster)"
    async_kind = "redis.asyncio.Redis (or redis.asyncio.RedisCluster)"
    if not callable(getattr(client, "register_script", None)):
        raise TypeError(
            f"client must be a {async_kind if asyncio else sync_kind} client, got "
            f"{client!r}; use {owner}.from_url(url) to build one"
        )
    kind = type(client)
    found = f"{kind.__module__}.{kind.__qualname__}"
    if is_async_client(client) and not asyncio:
        twin = "AsyncRedisStore" if owner == "RedisStore" else f"Async{owner}"
        raise TypeError(
            f"client must be a synchronous {sync_kind} client, got a {found}, an asyncio "
            f"client: {owner} runs its scripts synchronously, so the async client's commands "
            f"would never be awaited. Give the asyncio client to resilient.redis.{twin} "
            "(the async call forms use it without blocking the event loop), or give "
            f"{owner} a synchronous client: resilient.redis.connect(url), or "
            f"{owner}.from_url(url)"
        )
    if asyncio and not is_async_client(client):
        twin = owner.removeprefix("Async")
        raise TypeError(
            f"client must be a {async_kind} client, got a {found}, a synchronous client: "
            f"{owner} awaits its scripts. Give the synchronous client to "
            f"resilient.redis.{twin}, or give {owner} an asyncio client: "
            f"resilient.redis.connect_async(url), or {owner}.from_url(url)"
        )


def check_name(name: str, value: object) -> None:
    """A name that becomes part of a Redis key: a non-empty str that UTF-8 can encode."""
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{name} must be text that UTF-8 can encode (it is part of a Redis key), "
            f"got {name}={value!r}: {error.reason} at position {error.start}"
        ) from None


def check_namespace(namespace: object) -> None:
    check_name("namespace", namespace)
    assert isinstance(namespace, str)
    if any(char in namespace for char in ":{}"):
        raise ValueError(
            "namespace must not contain ':', '{' or '}' (':' separates it from the name in "
            "the keys, so namespace='app:prod' with name='users' would share the keys of "
            "namespace='app' with name='prod:users'; braces would break the hash tag that "
            f"keeps a breaker's keys in one Redis Cluster slot), got namespace={namespace!r}"
        )


def check_limited(name: str, value: object, *, allow_zero: bool = True) -> float:
    """A duration (a ``timedelta`` too), and at most the bound of ``_LIMITS`` for *name*.

    Returns:
        The value in seconds.
    """
    return duration(
        name, value, allow_zero=allow_zero, maximum=_LIMITS[name], said=_LIMITS_SAID[name]
    )


def check_url(url: object, socket_timeout: object, connect_timeout: object) -> float:
    """Check ``connect``'s arguments; return the connect timeout to use."""
    if not isinstance(url, str) or not url:
        raise TypeError(f"url must be a non-empty str, got {url!r}")
    check_limited("socket_timeout", socket_timeout, allow_zero=False)
    if connect_timeout is None:
        connect_timeout = socket_timeout
    return check_limited("connect_timeout", connect_timeout, allow_zero=False)


def warn_if_client_can_hang(client: Any, owner: str, stacklevel: int) -> None:
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
