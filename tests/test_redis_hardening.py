"""``resilient.redis`` under adversarial settings: work and memory bounded by design.

Each claim is measured in what Redis or the store does (commands run,
structures kept), never in time: the counts are the same on any machine.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from resilient import CircuitBreaker, ConcurrencyLimit, FailureRateWindow, RateLimiter
from resilient.redis import (
    AsyncRedisRetryBudget,
    AsyncRedisStore,
    RedisRetryBudget,
    RedisStore,
    connect_async,
)
from resilient.testing import ManualClock

_namespaces = itertools.count()


class Down(Exception):
    """The dependency failed."""


def ok() -> str:
    return "ok"


def down() -> None:
    raise Down("down")


def _commands(client: Any) -> int:
    """Commands Redis ran since its statistics were last reset (scripts' own included)."""
    stats = client.info("commandstats")
    return sum(
        int(entry["calls"])
        for name, entry in stats.items()
        if name not in ("cmdstat_info", "cmdstat_config|resetstat", "cmdstat_config")
    )


def _commands_of_a_call_after(client: Any, buckets: int, idle: float) -> tuple[int, float]:
    """Redis commands run by one call *idle* seconds after calls at 0 s and 500 s, on a
    window of 1000 s (the first and the middle bucket, with any bucket width), and the
    window's failure rate after it."""
    clock = ManualClock()
    store = RedisStore(
        client, namespace=f"idle-{next(_namespaces)}", time_source="breaker", max_staleness=0
    )
    window = FailureRateWindow(0.9, seconds=1000, buckets=buckets, minimum_calls=1000)
    breaker = CircuitBreaker(name="api", window=window, store=store, clock=clock)
    for at in (0.0, 500.0):  # calls in two buckets half a span apart, then quiet
        clock.advance(at - clock.monotonic())
        for _ in range(3):
            breaker.call(ok)
            with pytest.raises(Down):
                breaker.call(down)
    clock.advance(idle)
    client.config_resetstat()
    breaker.call(ok)
    commands = _commands(client)
    return commands, breaker.metrics.failure_rate


# The failure rate after the call: 3 successes and 3 failures in each of the two buckets
# (at 0 s and 500 s), then the success. 900 s and 999 s: the first bucket aged out, the
# middle one is live; from 1000 s, both aged out.
_RATE_AFTER_IDLE = {
    150.0: 6 / 13,
    400.0: 6 / 13,
    900.0: 3 / 7,
    999.0: 3 / 7,
    1000.0: 0.0,
    5000.0: 0.0,
}


@pytest.mark.parametrize("idle", sorted(_RATE_AFTER_IDLE))
def test_a_call_after_an_idle_spell_runs_the_same_commands_whatever_the_bucket_count(
    redis_client: Any, idle: float
) -> None:
    """Catching up is O(1) on Redis: 10,000 buckets run exactly the commands 10 do, also
    when the oldest bucket ages out and the middle one stays (900 s: a script that
    visited every bucket number in between ran thousands of commands and held Redis);
    and the window then holds exactly its live buckets (a walk that stepped to the next
    bucket number rather than the next entered bucket emptied it at the first gap)."""
    many, rate = _commands_of_a_call_after(redis_client, 10_000, idle)
    assert (many, rate) == _commands_of_a_call_after(redis_client, 10, idle)
    assert many <= 20
    assert rate == pytest.approx(_RATE_AFTER_IDLE[idle])


def test_a_window_on_redis_keeps_only_the_buckets_that_saw_calls(redis_client: Any) -> None:
    """The window's hash holds the entered buckets; past the span it is gone."""
    clock = ManualClock()
    store = RedisStore(redis_client, time_source="breaker", max_staleness=0)
    window = FailureRateWindow(0.9, seconds=1000, buckets=10_000, minimum_calls=1000)
    breaker = CircuitBreaker(name="api", window=window, store=store, clock=clock)
    for at in (0.0, 0.05, 0.15, 500.0):
        clock.advance(at - clock.monotonic())
        with pytest.raises(Down):
            breaker.call(down)
    _, window_key = store.keys("api")
    entered = {f for f in redis_client.hkeys(window_key) if f.startswith(b"c")}
    assert len(entered) == 3  # buckets 0, 1 and 5000, not 10,000
    clock.advance(600.0)  # 0.0 and 0.1 s age out
    breaker.call(ok)
    assert breaker.metrics.failure_rate == 0.5  # the failure at 500 s and this success
    clock.advance(2000.0)  # idle for longer than the span
    assert breaker.metrics.failure_rate == 0.0
    assert redis_client.exists(window_key) == 0


# -- per-name state: released with the breakers ----------------------------------------


def _names_kept(store: RedisStore) -> set[str]:
    """The names the store keeps something for: its lanes and its fallback's circuits."""
    lanes = set(store._lanes)  # pyright: ignore[reportPrivateUsage]  # no public view of them
    local = set(store._fb.local._circuits)  # pyright: ignore[reportPrivateUsage]
    return lanes | local


def test_a_store_releases_the_state_of_names_whose_breakers_are_gone(redis_client: Any) -> None:
    """1,000 breakers, each its own name, dropped (a hundred after a call through
    Redis): the store keeps nothing for their names, only for the breaker still alive.

    (What is kept is compared whole: one name kept fails it, so a thousand names
    prove what ten thousand did, at a tenth of the CPU.)"""
    store = RedisStore(redis_client)
    for n in range(1_000):
        breaker = CircuitBreaker(name=f"tenant-{n}", store=store)
        if n % 10 == 0:  # a round trip each: a hundred keep the test quick
            assert breaker.call(ok) == "ok"
    del breaker
    gc.collect()
    kept = CircuitBreaker(name="kept", store=store)
    assert kept.call(ok) == "ok"
    assert _names_kept(store) == {"kept"}
    other = CircuitBreaker(name="kept", store=store)  # a second breaker of the same name
    del kept
    gc.collect()
    CircuitBreaker(name="next", store=store)
    assert _names_kept(store) == {"kept", "next"}  # "kept" still has a breaker
    assert other.call(ok) == "ok"


def test_the_local_fallback_of_dropped_breakers_is_released_too(refused_port: int) -> None:
    """During an outage each name gets a local breaker; it goes with its breakers."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(
        port=refused_port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    store = RedisStore(client, on_store_error="local", retry_interval=3600)
    for n in range(1_000):
        breaker = CircuitBreaker(1, name=f"tenant-{n}", store=store)
        with pytest.raises(Down):
            breaker.call(down)  # opens the local breaker of that name
        assert breaker.metrics.store_mode == "local"
    del breaker
    gc.collect()
    CircuitBreaker(name="next", store=store)
    assert _names_kept(store) == {"next"}


def _pacing_names_kept(store: RedisStore) -> set[str]:
    """The limiter names the store keeps something for: lanes, claims, the local fallback."""
    core = store._pacing  # pyright: ignore[reportPrivateUsage]  # no public view of them
    local = core._local  # pyright: ignore[reportPrivateUsage]
    return (
        set(core._lanes)  # pyright: ignore[reportPrivateUsage]
        | set(core._claims)  # pyright: ignore[reportPrivateUsage]
        | set(local._rates)  # pyright: ignore[reportPrivateUsage]
        | set(local._leases)  # pyright: ignore[reportPrivateUsage]
    )


def test_a_store_releases_the_state_of_limiter_names_whose_limiters_are_gone(
    redis_client: Any,
) -> None:
    """Rate limiters and concurrency limits built per tenant and dropped (a hundred after
    a round trip each): the store keeps nothing for their names, only for those alive."""
    store = RedisStore(redis_client)
    for n in range(2_000):
        limiter = RateLimiter(5, name=f"rate-{n}", store=store)
        limit = ConcurrencyLimit(2, name=f"slots-{n}", store=store)
        if n % 20 == 0:
            assert limiter.try_acquire()
            with limit:
                pass
    del limiter, limit
    gc.collect()
    kept = RateLimiter(1, per=3600, name="kept", store=store)
    assert kept.try_acquire()
    assert _pacing_names_kept(store) == {"kept"}
    other = RateLimiter(1, per=3600, name="kept", store=store)  # a second one of that name
    del kept
    gc.collect()
    RateLimiter(5, name="next", store=store)
    assert _pacing_names_kept(store) == {"kept", "next"}  # "kept" still has a limiter
    assert not other.try_acquire()  # the name's state: the first one spent the burst


def test_the_local_pacing_fallback_of_dropped_limiters_is_released_too(
    refused_port: int,
) -> None:
    """During an outage each name paces locally; that state goes with its limiters."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(
        port=refused_port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    store = RedisStore(client, on_store_error="local", retry_interval=3600)
    for n in range(200):
        limiter = RateLimiter(1, per=3600, name=f"tenant-{n}", store=store)
        assert limiter.try_acquire()  # the local fallback admits it
        assert not limiter.try_acquire()  # and paces it
    del limiter
    gc.collect()
    RateLimiter(1, name="next", store=store)
    assert _pacing_names_kept(store) == {"next"}


# -- names Redis cannot key --------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda client: CircuitBreaker(name="svc-\ud800", store=RedisStore(client)),
        lambda client: RedisRetryBudget(client, "svc-\ud800"),
    ],
    ids=["breaker on a RedisStore", "RedisRetryBudget"],
)
def test_a_name_that_cannot_be_encoded_is_refused_at_construction(
    redis_client: Any, build: Callable[[Any], object]
) -> None:
    """A lone surrogate: refused when built, naming ``name``, not a UnicodeEncodeError
    from every call before the function runs."""
    with pytest.raises(
        ValueError,
        match=r"^name must be text that UTF-8 can encode .*got name='svc-\\ud800': "
        r"surrogates not allowed at position 4$",
    ):
        build(redis_client)


@pytest.mark.parametrize(
    "build",
    [
        lambda client: CircuitBreaker(name="svc-\ud800", store=AsyncRedisStore(client)),
        lambda client: AsyncRedisRetryBudget(client, "svc-\ud800"),
        lambda client: RateLimiter(5, name="svc-\ud800", store=AsyncRedisStore(client)),
        lambda client: ConcurrencyLimit(2, name="svc-\ud800", store=AsyncRedisStore(client)),
    ],
    ids=[
        "breaker on an AsyncRedisStore",
        "AsyncRedisRetryBudget",
        "RateLimiter",
        "ConcurrencyLimit",
    ],
)
def test_the_async_twins_refuse_a_name_that_cannot_be_encoded_at_construction(
    refused_port: int, build: Callable[[Any], object]
) -> None:
    """The asyncio store and budget check the name when built too (the client never
    connects: the refusal comes before any call)."""
    client = connect_async(f"redis://127.0.0.1:{refused_port}")
    with pytest.raises(
        ValueError,
        match=r"^name must be text that UTF-8 can encode .*got name='svc-\\ud800'",
    ):
        build(client)


def test_a_namespace_that_cannot_be_encoded_is_refused(redis_client: Any) -> None:
    """The namespace is part of every key too."""
    with pytest.raises(ValueError, match=r"^namespace must be text that UTF-8 can encode"):
        RedisStore(redis_client, namespace="app-\udcff")


def test_a_name_that_encodes_is_accepted_whatever_its_script(redis_client: Any) -> None:
    """Non-ASCII names are fine: only what UTF-8 cannot encode is refused."""
    breaker = CircuitBreaker(name="サービス-é-🚀", store=RedisStore(redis_client))
    assert breaker.call(ok) == "ok"


@pytest.mark.parametrize(
    "build",
    [
        lambda store: RateLimiter(5, name="svc-\ud800", store=store),
        lambda store: ConcurrencyLimit(2, name="svc-\ud800", store=store),
    ],
    ids=["RateLimiter", "ConcurrencyLimit"],
)
def test_a_pacing_name_that_cannot_be_encoded_is_refused_at_construction(
    redis_client: Any, build: Callable[[RedisStore], object]
) -> None:
    """The pacing primitives on a RedisStore refuse it too, when built."""
    with pytest.raises(ValueError, match=r"^name must be text that UTF-8 can encode"):
        build(RedisStore(redis_client))
