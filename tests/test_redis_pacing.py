"""The pacing store of ``RedisStore``: GCRA reservations, pause and leases, through real Redis.

Claims about the rule run on a ``ManualClock`` (``time_source="breaker"``:
the scripts take the caller's clock instead of Redis ``TIME``), so nothing
here sleeps; the claims about Redis time, processes and killed holders are
in ``test_redis_pacing_processes.py``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _pacing_clocks import SteppedClock, run_queue_through_a_pause
from resilient import ConcurrencyLimit, RateLimiter, RateLimitExceeded
from resilient.pacing import MemoryPacingStore, PacingStore, RatePolicy
from resilient.redis import AsyncRedisStore, RedisStore, connect, connect_async
from resilient.redis._pacing import RATE_ACQUIRE, RATE_CONFIRM, RATE_PAUSE, rate_keys, slot_keys
from resilient.testing import ManualClock

POLICY = RatePolicy(10.0, 1.0, 3.0)  # 10/s, bursts of 3: one unit every 0.1 s


class CountingClient:
    """A client that counts what it sends: each script run, and each script load, is a round trip."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.round_trips = 0
        self.loads = 0

    def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        self.round_trips += 1
        return self._client.evalsha(*args, **kwargs)

    def script_load(self, *args: Any, **kwargs: Any) -> Any:
        self.loads += 1
        return self._client.script_load(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Clients a test opened on a server of its own are closed after it (no socket leaks)."""
    yield
    while _opened:
        _opened.pop().close()


_opened: list[Any] = []


def closing(client: Any) -> Any:
    """*client*, closed once the test ends."""
    _opened.append(client)
    return client


def _manual(redis_client: Any, **options: Any) -> RedisStore:
    """A store whose scripts read the caller's clock: time moves only when a test moves it."""
    return RedisStore(redis_client, time_source="breaker", **options)


# -- the store speaks the protocol ---------------------------------------------------------


def test_redis_store_is_a_pacing_store(redis_client: Any) -> None:
    """RateLimiter and ConcurrencyLimit accept it: it has every method of the protocol."""
    assert isinstance(RedisStore(redis_client), PacingStore)


_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("reserve"),
            st.floats(0.0, 0.5),  # time passing before the call
            st.sampled_from([0.5, 1.0, 2.0, 3.0]),  # cost
            st.sampled_from([0.0, 0.05, 0.3, 1.0, math.inf]),  # max wait
        ),
        st.tuples(
            st.just("refund"),
            st.floats(0.0, 0.5),
            st.sampled_from([0.5, 1.0, 2.0]),  # cost
            st.integers(0, 39),  # which reservation
        ),
        st.tuples(st.just("confirm"), st.floats(0.0, 0.5), st.just(0.0), st.integers(0, 39)),
        st.tuples(st.just("pause"), st.floats(0.0, 0.5), st.sampled_from([0.05, 0.4, 1.5])),
    ),
    max_size=40,
)


@settings(max_examples=60)
@given(ops=_OPS)
def test_the_scripts_decide_as_the_reference_store(redis_server: Any, ops: list[Any]) -> None:
    """Any schedule of reserves, confirms, refunds and pauses: Redis answers what
    MemoryPacingStore answers, to the turn records it hands back."""
    client = connect(redis_server.url, socket_timeout=5.0)  # a busy machine answers late
    try:
        client.delete(*rate_keys("resilient", "ref"))
        redis_store = RedisStore(client, time_source="breaker")
        reference = MemoryPacingStore()
        turns: list[tuple[str, str]] = []  # (Redis's record, the reference's) per reservation
        now = 1000.0
        for op in ops:
            now += op[1]
            if op[0] == "reserve":
                _, _, cost, max_wait = op
                got = redis_store.rate_reserve("ref", POLICY, cost, max_wait, now)
                want = reference.rate_reserve("ref", POLICY, cost, max_wait, now)
                assert got.admitted == want.admitted, (op, got, want)
                assert got.wait == pytest.approx(want.wait, abs=1e-9), (op, got, want)
                if got.admitted:
                    assert got.turn is not None
                    assert want.turn is not None
                    turns.append((got.turn, want.turn))
            elif op[0] == "pause":
                redis_store.rate_pause("ref", POLICY, op[2], now)
                reference.rate_pause("ref", POLICY, op[2], now)
            elif turns:
                index = op[3] % len(turns)
                ours, theirs = turns[index]
                if op[0] == "refund":
                    got_turn = redis_store.rate_refund("ref", POLICY, op[2], now, ours)
                    want_turn = reference.rate_refund("ref", POLICY, op[2], now, theirs)
                else:
                    got = redis_store.rate_confirm("ref", POLICY, ours, now)
                    want = reference.rate_confirm("ref", POLICY, theirs, now)
                    assert got.wait == pytest.approx(want.wait, abs=1e-9), op
                    got_turn, want_turn = got.turn, want.turn
                assert got_turn is not None
                assert want_turn is not None
                assert [float(x) for x in got_turn.split()] == pytest.approx(
                    [float(x) for x in want_turn.split()], abs=1e-9
                ), op
                turns[index] = (got_turn, want_turn)
    finally:
        client.close()


_MARKED = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "reserve", "pause", "confirm"]),
        st.floats(0.0, 0.5),  # time passing before the call
        st.sampled_from([0.0, 0.05, 0.4, 1.5]),  # a pause's length
        st.integers(0, 29),  # which reservation confirms
    ),
    max_size=30,
)


@settings(max_examples=60)
@given(ops=_MARKED)
def test_a_reservation_s_mark_is_passed_exactly_by_the_pauses_ordered_after_it(
    redis_server: Any, ops: list[Any]
) -> None:
    """The marks a waiter decides by: once a pause that extended the pause in force was
    ordered after a reservation, the latest pause end answered is above the reservation's
    mark (the waiter asks at its turn); until then it is not (the waiter just goes)."""
    client = connect(redis_server.url, socket_timeout=5.0)  # a busy machine answers late
    try:
        client.delete(*rate_keys("resilient", "marks"))
        store = RedisStore(client, time_source="breaker")
        marks: list[float] = []  # per reservation: its mark
        turns: list[str] = []
        paused_since: list[bool] = []  # per reservation: a pause extended after it
        seen = -math.inf  # the latest pause end answered
        now = 500.0
        for kind, gap, seconds, pick in ops:
            now += gap
            if kind == "reserve":
                got = store.rate_reserve("marks", POLICY, 1.0, math.inf, now)
                assert got.mark is not None
                assert got.turn is not None
                assert got.paused_until == max(seen, got.paused_until)  # never goes back
                seen = got.paused_until
                marks.append(got.mark)
                turns.append(got.turn)
                paused_since.append(False)
            elif kind == "pause":
                end = store.rate_pause("marks", POLICY, seconds, now)
                assert end is not None
                if end > seen:  # it extended the pause: every reservation so far is before it
                    paused_since = [True] * len(marks)
                    seen = end
                assert end == seen
            elif marks:  # a waiter confirms: its mark is now after every pause so far
                index = pick % len(marks)
                got = store.rate_confirm("marks", POLICY, turns[index], now)
                assert got.mark is not None
                assert got.turn is not None
                assert got.paused_until == seen
                marks[index], turns[index], paused_since[index] = got.mark, got.turn, False
            assert [seen > mark for mark in marks] == paused_since, (kind, seen, marks)
    finally:
        client.close()


_ARRIVALS = st.lists(
    st.tuples(st.floats(0.0, 0.3), st.sampled_from([1.0, 2.0, 3.0])), min_size=1, max_size=60
)


@settings(max_examples=60)
@given(arrivals=_ARRIVALS)
def test_admitted_units_never_exceed_burst_plus_rate_times_t(
    redis_server: Any, arrivals: list[tuple[float, float]]
) -> None:
    """Callers that each wait what Redis answers go at times that never beat the rate."""
    client = connect(redis_server.url, socket_timeout=5.0)  # a busy machine answers late
    try:
        client.delete(*rate_keys("resilient", "bound"))
        store = RedisStore(client, time_source="breaker")
        now = 50.0
        admitted: list[tuple[float, float]] = []  # (when the caller goes, its cost)
        for gap, cost in arrivals:
            now += gap
            reservation = store.rate_reserve("bound", POLICY, cost, math.inf, now)
            assert reservation.admitted
            admitted.append((now + reservation.wait, cost))
        admitted.sort()
        for i, (start, _) in enumerate(admitted):
            units = 0.0
            for at, cost in admitted[i:]:
                units += cost
                allowed = POLICY.burst + POLICY.rate * (at - start) / POLICY.per
                assert units <= allowed + 1e-6, (start, at, units, allowed)
    finally:
        client.close()


def test_a_refused_reserve_changes_nothing(redis_client: Any) -> None:
    """A wait beyond the caller's limit is answered, and the next caller's turn is unchanged."""
    store = _manual(redis_client)
    for _ in range(3):
        assert store.rate_reserve("api", POLICY, 1, 0.0, 10.0).admitted
    refused = store.rate_reserve("api", POLICY, 1, 0.05, 10.0)
    assert not refused.admitted
    assert refused.wait == pytest.approx(0.1)
    assert store.rate_reserve("api", POLICY, 1, math.inf, 10.0).wait == pytest.approx(0.1)


def test_keys_are_hash_tagged_per_name_and_expire_when_past(redis_client: Any) -> None:
    """One slot per name in a cluster; an idle limiter leaves nothing behind for long."""
    store = RedisStore(redis_client, namespace="app")
    store.rate_reserve("users", POLICY, 3, math.inf, 0.0)
    lease = store.slot_acquire("users", 2, 30.0, 0.0)
    assert lease is not None
    (rate,) = rate_keys("app", "users")
    (slots,) = slot_keys("app", "users")
    assert (rate, slots) == ("{app:users}:rate", "{app:users}:slots")
    # The TAT is 3 units at 0.1 s each ahead: kept a second past it, for a waiter's confirm.
    assert 1000 < redis_client.pttl(rate) <= 1301
    store.rate_pause("users", POLICY, 2.0, 0.0)
    assert 2000 < redis_client.pttl(rate) <= 3001  # the pause, and its second
    assert 29_000 < redis_client.pttl(slots) <= 30_001
    store.slot_release("users", lease, 0.0)
    assert redis_client.exists(slots) == 0


# -- round trips ------------------------------------------------------------------------


def test_an_admitted_acquire_is_one_round_trip_at_once_or_after_a_wait(
    redis_client: Any,
) -> None:
    """Admitted at once: one script; admitted after a wait: one script too (no pause known)."""
    client = CountingClient(redis_client)
    clock = ManualClock()
    limiter = RateLimiter(
        10, burst=3, name="api", store=RedisStore(client, time_source="breaker"), clock=clock
    )
    limiter.acquire()  # Redis loads the script on its first use: not counted
    before, sleeps = client.round_trips, len(clock.sleeps)
    limiter.acquire()
    assert (client.round_trips - before, len(clock.sleeps) - sleeps) == (1, 0)  # at once
    limiter.acquire()
    limiter.acquire()  # the burst is spent: the next ones wait their turns
    before, loads, sleeps = client.round_trips, client.loads, len(clock.sleeps)
    for _ in range(50):
        limiter.acquire()
    assert len(clock.sleeps) - sleeps == 50  # each waited its turn, one sleep each
    assert client.round_trips - before == 50
    assert client.loads == loads


def test_a_waiting_caller_sleeps_the_returned_wait_once_and_goes(redis_client: Any) -> None:
    """No polling, no second question: the wait Redis answers is slept in one piece, then
    the caller goes."""
    client = CountingClient(redis_client)
    clock = ManualClock()
    store = RedisStore(client, time_source="breaker")
    limiter = RateLimiter(2, burst=1, name="api", store=store, clock=clock)
    limiter.acquire()  # Redis loads the script on its first use: not counted
    before, sleeps = client.round_trips, len(clock.sleeps)
    limiter.acquire()
    limiter.acquire()
    assert client.round_trips - before == 2  # each: its reservation, nothing more
    assert clock.sleeps[sleeps:] == [pytest.approx(0.5), pytest.approx(0.5)]


def test_on_redis_time_a_waiting_acquire_is_one_round_trip(redis_client: Any) -> None:
    """On Redis TIME (the marks are Redis's clock), 20 acquires at 200/s: 20 scripts, and
    the last one went no earlier than the rate allows."""
    import time

    client = CountingClient(redis_client)
    limiter = RateLimiter(200, name="timed", store=RedisStore(client))
    limiter.acquire()  # Redis loads the script on its first use: not counted
    before = client.round_trips
    started = time.monotonic()
    for _ in range(20):
        limiter.acquire()
    assert client.round_trips - before == 20
    assert time.monotonic() - started >= 19 * 0.005  # the 20 turns after the first: paced


def test_a_concurrency_slot_is_one_round_trip_each_way(redis_client: Any) -> None:
    """Taking a free slot and giving it back: one script each."""
    client = CountingClient(redis_client)
    limit = ConcurrencyLimit(4, name="pool", store=RedisStore(client), lease_ttl=30)
    with limit:
        pass
    before = client.round_trips
    for _ in range(20):
        with limit:
            pass
    assert client.round_trips - before == 40


# -- shared between stores (processes: see test_redis_pacing_processes.py) -------------------


def test_limiters_of_one_name_share_one_rate(redis_client: Any) -> None:
    """Two stores (two processes' worth) draw on one bucket: the burst is spent once."""
    clock = ManualClock(100.0)
    first = RateLimiter(10, burst=3, name="api", store=_manual(redis_client), clock=clock)
    second = RateLimiter(10, burst=3, name="api", store=_manual(redis_client), clock=clock)
    other = RateLimiter(10, burst=3, name="other", store=_manual(redis_client), clock=clock)
    assert [first.try_acquire(), second.try_acquire(), first.try_acquire()] == [True] * 3
    assert not second.try_acquire()
    assert other.try_acquire()  # another name, another bucket
    clock.advance(0.1)
    assert second.try_acquire()


def test_a_pause_seen_by_one_holds_every_limiter_of_the_name(redis_client: Any) -> None:
    """One caller's Retry-After: every store's next acquire refuses, with the pause's wait."""
    clock = ManualClock(100.0)
    first = RateLimiter(10, burst=3, name="api", store=_manual(redis_client), clock=clock)
    second = RateLimiter(10, burst=3, name="api", store=_manual(redis_client), clock=clock)
    first.pause(2.0)
    with pytest.raises(RateLimitExceeded) as refused:
        second.acquire(timeout=1.0)
    assert refused.value.retry_after == pytest.approx(2.0)
    clock.advance(2.0)
    assert second.try_acquire()


def test_a_cost_refunded_is_available_again(redis_client: Any) -> None:
    """An estimate that was too high: the difference comes back to the whole fleet."""
    clock = ManualClock(100.0)
    tokens = RateLimiter(
        1000, per=60, burst=1000, name="tpm", store=_manual(redis_client), clock=clock
    )
    tokens.acquire(800)
    assert not tokens.try_acquire(300)
    tokens.refund(600)
    assert tokens.try_acquire(300)


def test_a_slot_is_a_lease_shared_by_name(redis_client: Any) -> None:
    """Two stores, one limit of 2: a third caller is refused until a slot comes back."""
    clock = ManualClock(100.0)
    first = _manual(redis_client)
    second = _manual(redis_client)
    a = first.slot_acquire("pool", 2, 30.0, clock.monotonic())
    b = second.slot_acquire("pool", 2, 30.0, clock.monotonic())
    assert a is not None
    assert b is not None
    assert a != b
    assert first.slot_acquire("pool", 2, 30.0, clock.monotonic()) is None
    second.slot_release("pool", b, clock.monotonic())
    assert first.slot_acquire("pool", 2, 30.0, clock.monotonic()) is not None


def test_a_lease_never_released_expires_after_its_ttl(redis_client: Any) -> None:
    """A holder that never comes back (killed) holds its slot lease_ttl seconds, no longer."""
    store = _manual(redis_client)
    assert store.slot_acquire("pool", 1, 5.0, 100.0) is not None
    assert store.slot_acquire("pool", 1, 5.0, 104.9) is None
    assert store.slot_acquire("pool", 1, 5.0, 105.0) is not None


def test_16_threads_never_hold_more_slots_than_the_limit(redis_client: Any) -> None:
    """Real threads racing on one shared limit: the count in Redis never passes it."""
    limit = ConcurrencyLimit(3, max_wait=30.0, name="pool", store=RedisStore(redis_client))
    seen: list[int] = []
    lock = threading.Lock()
    (key,) = slot_keys("resilient", "pool")

    def work() -> None:
        for _ in range(10):
            with limit:
                held = redis_client.zcard(key)
                with lock:
                    seen.append(held)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(seen) == 160
    assert max(seen) <= 3


def test_the_sync_store_refuses_the_async_forms(redis_client: Any) -> None:
    """acquire_async on a RedisStore would block the loop: a TypeError names what to use."""
    limiter = RateLimiter(10, name="api", store=RedisStore(redis_client))
    with pytest.raises(TypeError, match="AsyncRedisStore"):
        asyncio.run(limiter.acquire_async())


# -- outages --------------------------------------------------------------------------


def test_while_redis_is_down_each_process_paces_alone_at_the_same_settings(
    redis_server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """on_store_error='local': the same rate, in this process; one WARNING; hand back after."""
    server = redis_server_factory()
    # Stopped, never frozen: refused at once. 5 s, as a live server on a busy machine
    # may answer later than a short timeout and fake an outage.
    store = RedisStore(
        closing(connect(server.url, socket_timeout=5.0)), time_source="breaker", retry_interval=0.01
    )
    clock = ManualClock(100.0)
    limiter = RateLimiter(10, burst=2, name="api", store=store, clock=clock)
    assert limiter.try_acquire()
    server.stop()
    with caplog.at_level(logging.INFO, logger="resilient.redis"):
        # A fresh local bucket at the same settings: a burst of 2, then one every 0.1 s.
        assert [limiter.try_acquire() for _ in range(3)] == [True, True, False]
        clock.advance(0.1)
        assert limiter.try_acquire()
        assert store._pacing.mode("api") == "local"  # pyright: ignore[reportPrivateUsage]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [getattr(r, "event", None) for r in warnings] == ["redis_store_unavailable"]
    detail = [r for r in caplog.records if getattr(r, "event", None) == "pacing_store_unavailable"]
    assert len(detail) == 1
    assert detail[0].getMessage().startswith("rate limiter 'api' cannot reach Redis")
    assert "paces this process alone" in detail[0].getMessage()
    server.start()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="resilient.redis"):
        _until_handed_back(store, limiter, "api")
    events = [getattr(r, "event", None) for r in caplog.records]
    assert "pacing_store_recovered" in events
    assert "redis_store_recovered" in events


def test_with_the_default_timeout_a_redis_that_stalls_half_a_second_is_no_outage(
    redis_server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """from_url's default (1 s): Redis frozen for 0.4 s (a busy host's late answer) delays
    the acquire, and the fleet stays shared: no fallback, no WARNING. (At 0.25 s, ten
    processes on a loaded host paced alone after such stalls.)"""
    server = redis_server_factory()
    store = RedisStore.from_url(server.url)
    closing(store.client)
    limiter = RateLimiter(1, per=60, burst=2, name="api", store=store)
    assert limiter.try_acquire()  # connected, the script loaded
    server.pause()
    thaw = threading.Timer(0.4, server.resume)
    thaw.start()
    try:
        with caplog.at_level(logging.WARNING, logger="resilient.redis"):
            assert limiter.try_acquire()  # answered once Redis thaws
    finally:
        thaw.join()
        server.resume()
    assert store._pacing.mode("api") == "redis"  # pyright: ignore[reportPrivateUsage]
    assert not caplog.records
    assert not limiter.try_acquire()  # the burst of 2 was spent in Redis, not locally


@pytest.mark.slow
def test_with_the_default_timeout_a_frozen_redis_holds_an_acquire_a_second_at_most(
    redis_server_factory: Any,
) -> None:
    """from_url's default still bounds a call: Redis frozen, the acquire waits out the 1 s
    timeout (plus a busy machine's delay), then paces locally; the next ones do not wait."""
    import time

    server = redis_server_factory()
    store = RedisStore.from_url(server.url, retry_interval=60.0)
    closing(store.client)
    limiter = RateLimiter(1, per=60, burst=3, name="api", store=store)
    assert limiter.try_acquire()
    server.pause()
    try:
        started = time.monotonic()
        assert limiter.try_acquire()  # after the timeout: the local fallback admits it
        waited = time.monotonic() - started
        assert limiter.try_acquire()  # at once: Redis is not asked again for 60 s
        again = time.monotonic() - started - waited
    finally:
        server.resume()
    assert 1.0 <= waited < 3.0, waited  # one timeout: no call waits three
    assert again < 1.0, again  # less than the timeout it would wait out, had Redis been asked
    assert store._pacing.mode("api") == "local"  # pyright: ignore[reportPrivateUsage]


def _until_handed_back(store: RedisStore, limiter: RateLimiter, name: str) -> None:
    import time

    deadline = time.monotonic() + 10.0
    while store._pacing.mode(name) != "redis":  # pyright: ignore[reportPrivateUsage]
        assert time.monotonic() < deadline, "the limiter was never handed back to Redis"
        limiter.try_acquire()
        time.sleep(0.01)


@pytest.mark.parametrize(("mode", "admitted"), [("open", False), ("closed", True)])
def test_on_store_error_open_refuses_and_closed_admits(
    redis_server_factory: Any, mode: Any, admitted: bool
) -> None:
    """'open': nothing is admitted while Redis is down; 'closed': everything is, unpaced."""
    server = redis_server_factory()
    store = RedisStore(closing(connect(server.url, socket_timeout=5.0)), on_store_error=mode)
    limiter = RateLimiter(1, name="api", store=store)
    limit = ConcurrencyLimit(1, name="pool", store=store)
    server.stop()
    assert [limiter.try_acquire() for _ in range(3)] == [admitted] * 3
    if admitted:
        with limit, limit:
            pass  # unguarded: a second slot is had as well
    else:
        with pytest.raises(Exception, match="pool"):
            limit.call(lambda: None)


def test_a_broken_key_sends_that_name_alone_to_the_fallback(
    redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Something else wrote the limiter's key: it paces locally, the other names keep Redis."""
    redis_client.hset("{resilient:api}:rate", "x", "1")
    store = RedisStore(redis_client, retry_interval=60.0)
    broken = RateLimiter(10, burst=2, name="api", store=store)
    fine = RateLimiter(10, burst=2, name="other", store=store)
    with caplog.at_level(logging.WARNING, logger="resilient.redis"):
        assert broken.try_acquire()
        assert fine.try_acquire()
    assert store._pacing.mode("api") == "local"  # pyright: ignore[reportPrivateUsage]
    assert store._pacing.mode("other") == "redis"  # pyright: ignore[reportPrivateUsage]
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert getattr(record, "event", None) == "pacing_store_command_failed"
    assert "rate limiter 'api'" in record.getMessage()
    assert "WRONGTYPE" in record.getMessage()


class LosingClient:
    """A client whose next script runs in Redis, but whose answer is lost (a socket timeout);
    or, with *refuse*, is never sent (Redis unreachable)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.lose_next = False
        self.refuse = False

    def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        if self.refuse:
            raise RedisConnectionError("Connection refused")
        reply = self._client.evalsha(*args, **kwargs)
        if self.lose_next:
            self.lose_next = False
            raise RedisTimeoutError("Timeout reading from socket")
        return reply

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _until_redis_again(store: RedisStore, name: str, take: Any) -> None:
    import time

    deadline = time.monotonic() + 10.0
    while store._pacing.mode(name) != "redis":  # pyright: ignore[reportPrivateUsage]
        assert time.monotonic() < deadline, "the limit was never handed back to Redis"
        time.sleep(0.02)  # the retry interval
        take()


def test_a_lease_whose_answer_was_lost_is_released_when_redis_answers_again(
    redis_client: Any,
) -> None:
    """The slot's script ran, its answer timed out: Redis holds a lease nobody has. It is
    released as soon as Redis answers again, not lease_ttl (60 s) later."""
    (key,) = slot_keys("resilient", "pool")
    losing = LosingClient(redis_client)
    store = RedisStore(losing, retry_interval=0.01)
    limit = ConcurrencyLimit(2, name="pool", lease_ttl=60, store=store)
    with limit:
        pass  # loads the scripts
    losing.lose_next = True
    with limit:  # the answer is lost: a local slot, meanwhile
        assert store._pacing.mode("pool") == "local"  # pyright: ignore[reportPrivateUsage]
    assert redis_client.zcard(key) == 1  # the lease Redis gave, to nobody

    def take() -> None:
        with limit:
            pass

    _until_redis_again(store, "pool", take)
    assert redis_client.zcard(key) == 0


def test_a_lease_released_while_redis_is_unreachable_is_released_when_it_answers(
    redis_client: Any,
) -> None:
    """A slot taken in Redis, given back while Redis is unreachable: dropped once Redis
    answers again, not held lease_ttl (60 s) for nobody."""
    (key,) = slot_keys("resilient", "pool")
    losing = LosingClient(redis_client)
    store = RedisStore(losing, retry_interval=0.01)
    limit = ConcurrencyLimit(2, name="pool", lease_ttl=60, store=store)
    with limit:
        assert redis_client.zcard(key) == 1
        losing.refuse = True  # Redis goes away while the call runs
    assert redis_client.zcard(key) == 1
    losing.refuse = False

    def take() -> None:
        with limit:
            pass

    _until_redis_again(store, "pool", take)
    assert redis_client.zcard(key) == 0


# -- the asyncio store -------------------------------------------------------------------


class AsyncCountingClient:
    """An asyncio client that counts the scripts it runs: each one is one round trip."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.round_trips = 0

    async def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        self.round_trips += 1
        return await self._client.evalsha(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_the_async_store_paces_acquire_async_in_one_round_trip_at_once_or_after_a_wait(
    redis_server: Any,
) -> None:
    """AsyncRedisStore: an acquire_async admitted at once awaits one script; a waiting one
    awaits its reservation, sleeps once, and goes."""

    async def main() -> tuple[int, int, list[float]]:
        # as patient as the sync tests' shared client: the library's 1 s default
        # could see a busy machine's late answer as an outage (the local fallback)
        client = connect_async(redis_server.url, socket_timeout=5.0)
        try:
            await client.delete(*rate_keys("resilient", "api"))
            counting = AsyncCountingClient(client)
            clock = ManualClock()
            store = AsyncRedisStore(counting, time_source="breaker")
            limiter = RateLimiter(2, burst=2, name="api", store=store, clock=clock)
            await limiter.acquire_async()  # Redis loads the script on its first use
            before = counting.round_trips
            await limiter.acquire_async()  # the burst's second unit: at once
            at_once = counting.round_trips - before
            before, sleeps = counting.round_trips, len(clock.sleeps)
            await limiter.acquire_async()
            await limiter.acquire_async()
            return at_once, counting.round_trips - before, clock.sleeps[sleeps:]
        finally:
            await client.aclose()

    at_once, waited, sleeps = asyncio.run(main())
    assert at_once == 1
    assert waited == 2
    assert sleeps == [pytest.approx(0.5), pytest.approx(0.5)]


def test_sync_and_async_stores_of_one_name_share_one_limiter(
    redis_server: Any, redis_client: Any
) -> None:
    """A RedisStore and an AsyncRedisStore on one server: one burst, one pause, one set of slots."""
    clock = ManualClock(100.0)
    sync_limiter = RateLimiter(10, burst=2, name="api", store=_manual(redis_client), clock=clock)
    sync_store = RedisStore(redis_client)
    assert sync_limiter.try_acquire()

    async def main() -> tuple[bool, float, bool]:
        # as patient as the sync tests' shared client: the library's 1 s default
        # could see a busy machine's late answer as an outage (the local fallback)
        client = connect_async(redis_server.url, socket_timeout=5.0)
        try:
            store = AsyncRedisStore(client, time_source="breaker")
            limiter = RateLimiter(10, burst=2, name="api", store=store, clock=clock)
            admitted = await limiter.acquire_async(timeout=0.0) is None
            await limiter.pause_async(3.0)
            slots = ConcurrencyLimit(1, name="pool", store=AsyncRedisStore(client))
            async with slots:
                taken_elsewhere = sync_store.slot_acquire("pool", 1, 30.0, 0.0) is None
            try:
                await limiter.acquire_async(timeout=1.0)
            except RateLimitExceeded as refused:
                return admitted, refused.retry_after, taken_elsewhere
            return admitted, 0.0, taken_elsewhere
        finally:
            await client.aclose()

    admitted, retry_after, taken_elsewhere = asyncio.run(main())
    assert admitted
    assert retry_after == pytest.approx(3.0)
    assert taken_elsewhere
    assert not sync_limiter.try_acquire()  # the burst was spent by both, and the pause holds


def test_the_async_store_refuses_the_sync_forms(redis_server: Any) -> None:
    """acquire() cannot await an asyncio client: a TypeError names the async form."""

    client = connect_async(redis_server.url)
    store = AsyncRedisStore(client)
    try:
        with pytest.raises(TypeError, match="acquire_async"):
            RateLimiter(10, name="api", store=store).acquire()
        with (
            pytest.raises(TypeError, match="async with"),
            ConcurrencyLimit(1, name="pool", store=store),
        ):
            pass
    finally:
        asyncio.run(client.aclose())


# -- which waiters a pause holds; a turn given back is never handed out twice ----------------


class PauseWhileAsleep(ManualClock):
    """A ManualClock on which *during* runs halfway through the first sleep (a 429 arrives)."""

    def __init__(self, start: float = 100.0) -> None:
        super().__init__(start)
        self.during: Any = None

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds / 2)
        if self.during is not None and len(self.sleeps) == 1:
            self.during()
        self.advance(seconds / 2)

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds / 2)
        if self.during is not None and len(self.sleeps) == 1:
            await self.during()
        self.advance(seconds / 2)


def _load_rate_scripts(redis_client: Any) -> None:
    """Redis knows the limiter's scripts: each run is one round trip from the first."""
    for script in (RATE_ACQUIRE, RATE_CONFIRM, RATE_PAUSE):
        redis_client.script_load(script)


def test_a_pause_this_limiter_orders_holds_its_waiting_caller(redis_client: Any) -> None:
    """A caller asleep towards its turn; the same limiter pauses 2 s (a 429 on another
    thread): at its turn the caller asks Redis (a second script), and waits the pause."""
    client = CountingClient(redis_client)
    clock = PauseWhileAsleep()
    limiter = RateLimiter(
        1, name="api", store=RedisStore(client, time_source="breaker"), clock=clock
    )
    _load_rate_scripts(redis_client)
    limiter.acquire()  # the turn at 100
    clock.during = lambda: limiter.pause(2.0)  # at 100.5
    scripts = client.round_trips
    limiter.acquire()  # its turn at 101, moved to 103 by the pause
    assert clock.sleeps == [pytest.approx(1.0), pytest.approx(2.0)]
    assert clock.monotonic() == pytest.approx(103.0)
    assert client.round_trips - scripts == 3  # reserve, pause, confirm: the acquire made two


def test_a_pause_this_async_limiter_orders_holds_its_waiting_task(
    redis_server: Any, redis_client: Any
) -> None:
    """AsyncRedisStore: a task asleep towards its turn, a pause_async of the same limiter:
    at its turn the task confirms (a second script) and waits the pause."""

    async def main() -> tuple[list[float], float, int]:
        client = connect_async(redis_server.url, socket_timeout=5.0)
        try:
            await client.delete(*rate_keys("resilient", "api"))
            counting = AsyncCountingClient(client)
            clock = PauseWhileAsleep()
            store = AsyncRedisStore(counting, time_source="breaker")
            limiter = RateLimiter(1, name="api", store=store, clock=clock)
            _load_rate_scripts(redis_client)
            await limiter.acquire_async()  # the turn at 100

            async def pause() -> None:
                await limiter.pause_async(2.0)

            clock.during = pause
            scripts = counting.round_trips
            await limiter.acquire_async()  # its turn at 101, moved to 103
            return clock.sleeps, clock.monotonic(), counting.round_trips - scripts
        finally:
            await client.aclose()

    sleeps, now, round_trips = asyncio.run(main())
    assert sleeps == [pytest.approx(1.0), pytest.approx(2.0)]
    assert now == pytest.approx(103.0)
    assert round_trips == 3  # reserve, pause, confirm


def test_a_pause_heard_of_from_redis_holds_a_caller_already_waiting(redis_client: Any) -> None:
    """Another process pauses while a caller waits; another acquire of the caller's limiter
    meets the pause in Redis's answer: the waiter, told so, confirms and waits the pause."""
    client = CountingClient(redis_client)
    clock = PauseWhileAsleep()
    limiter = RateLimiter(
        1, name="api", store=RedisStore(client, time_source="breaker"), clock=clock
    )
    other = RateLimiter(1, name="api", store=_manual(redis_client), clock=clock)
    limiter.acquire()  # the turn at 100

    def elsewhere() -> None:
        other.pause(2.0)  # another process's 429
        assert not limiter.try_acquire()  # this process meets the pause

    clock.during = elsewhere
    limiter.acquire()
    assert clock.sleeps == [pytest.approx(1.0), pytest.approx(2.0)]
    assert clock.monotonic() == pytest.approx(103.0)


def test_a_pause_unheard_of_lets_a_waiter_go_at_its_turn_and_holds_the_next_acquire(
    redis_client: Any,
) -> None:
    """Five threads asleep towards their turns; another store (another process) pauses 1 s
    and nothing tells this process: they go at the turns they were given, one script each,
    and the next acquire, here or there, waits the pause (and the turns it moved)."""
    client = CountingClient(redis_client)
    clock = SteppedClock(threads=6)
    limiter = RateLimiter(
        20, name="api", store=RedisStore(client, time_source="breaker"), clock=clock
    )
    other = RateLimiter(20, name="api", store=_manual(redis_client), clock=clock)
    limiter.try_acquire()  # loads the script: the burst of 1 is spent
    redis_client.delete(*rate_keys("resilient", "api"))
    before = client.round_trips
    went = run_queue_through_a_pause(limiter, clock, other)
    assert went == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2, 0.25], abs=0.011)
    assert client.round_trips - before == 6  # one reservation each, no confirmation
    for limiter_here_or_there in (limiter, other):
        with pytest.raises(RateLimitExceeded) as refused:
            limiter_here_or_there.acquire(timeout=0.5)
        # the pause (from 0 to 1) moved the five turns not yet reached: the next is at 1.30
        assert refused.value.retry_after == pytest.approx(1.30 - clock.monotonic(), abs=1e-6)


@pytest.fixture(params=["memory", "redis"])
def pacing_store(request: pytest.FixtureRequest) -> PacingStore:
    """The reference store, and RedisStore on the caller's clock."""
    if request.param == "memory":
        return MemoryPacingStore()
    client = request.getfixturevalue("redis_client")
    return _manual(client)


def test_a_turn_given_back_behind_later_turns_is_never_handed_out_twice(
    pacing_store: PacingStore,
) -> None:
    """Turns at 0, 1 and 2; the one at 1 is cancelled: the next caller gets 3, not 1 or 2
    (two callers in one turn). The last turn given back is handed out again."""
    policy = RatePolicy(1.0, 1.0, 1.0)
    waits = [pacing_store.rate_reserve("q", policy, 1, math.inf, 0.0) for _ in range(3)]
    assert [r.wait for r in waits] == [0.0, 1.0, 2.0]
    assert waits[1].turn is not None
    pacing_store.rate_refund("q", policy, 1, 0.0, waits[1].turn)
    fourth = pacing_store.rate_reserve("q", policy, 1, math.inf, 0.0)
    assert fourth.wait == pytest.approx(3.0)
    assert fourth.turn is not None
    pacing_store.rate_refund("q", policy, 1, 0.0, fourth.turn)  # the last one: it comes back
    assert pacing_store.rate_reserve("q", policy, 1, math.inf, 0.0).wait == pytest.approx(3.0)


def test_a_cancelled_async_waiter_behind_others_leaves_its_turn_unused(
    redis_server: Any,
) -> None:
    """AsyncRedisStore: a task cancelled in its wait, with a later turn queued, gives back
    nothing; the last one cancelled gives its turn back."""
    from test_pacing import HeldClock

    async def main() -> tuple[float, float]:
        client = connect_async(redis_server.url, socket_timeout=5.0)
        try:
            await client.delete(*rate_keys("resilient", "held"))
            store = AsyncRedisStore(client, time_source="breaker")
            clock = HeldClock()
            limiter = RateLimiter(1, name="held", store=store, clock=clock)

            async def next_turn() -> float:
                with pytest.raises(RateLimitExceeded) as caught:
                    await limiter.acquire_async(timeout=0.0)
                return caught.value.retry_after

            await limiter.acquire_async()  # the turn at 0
            first = asyncio.ensure_future(limiter.acquire_async())  # the turn at 1
            await _until(lambda: len(clock.sleeps) == 1)  # reserved, and waiting
            second = asyncio.ensure_future(limiter.acquire_async())  # the turn at 2
            await _until(lambda: len(clock.sleeps) == 2)
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            behind = await next_turn()
            second.cancel()
            await asyncio.gather(second, return_exceptions=True)
            return behind, await next_turn()
        finally:
            await client.aclose()

    behind, last = asyncio.run(main())
    assert behind == pytest.approx(3.0)
    assert last == pytest.approx(2.0)


# -- cancelled while the script is in flight ----------------------------------------------


class GatedClient:
    """An asyncio client whose answers wait at a gate after Redis ran the script."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.gate = asyncio.Event()
        self.answered = 0

    async def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        reply = await self._client.evalsha(*args, **kwargs)
        self.answered += 1
        await self.gate.wait()
        return reply

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


def test_a_task_cancelled_while_its_reservation_is_in_flight_gives_it_back(
    redis_server: Any,
) -> None:
    """Redis reserved the turn, the task was cancelled before the answer came: once the
    answer arrives the turn is given back, not held by nobody until it passes."""

    async def main() -> float:
        client = connect_async(redis_server.url, socket_timeout=5.0)
        try:
            await client.delete(*rate_keys("resilient", "flight"))
            gated = GatedClient(client)
            gated.gate.set()
            clock = ManualClock(100.0)
            limiter = RateLimiter(
                1,
                per=10.0,
                name="flight",
                clock=clock,
                store=AsyncRedisStore(gated, time_source="breaker"),
            )
            await limiter.acquire_async()  # loads the scripts; the turn at 100
            gated.gate.clear()
            answered = gated.answered
            caller = asyncio.ensure_future(limiter.acquire_async())  # reserves 110
            await _until(lambda: gated.answered > answered)  # Redis ran it
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            gated.gate.set()  # the answer comes, after the cancellation
            await _until(lambda: not limiter._undoing)
            with pytest.raises(RateLimitExceeded) as caught:
                await limiter.acquire_async(timeout=0.0)
            return caught.value.retry_after
        finally:
            await client.aclose()

    assert asyncio.run(main()) == pytest.approx(10.0)  # the turn at 110 is free again


def test_a_task_cancelled_while_its_slot_is_in_flight_releases_the_lease(
    redis_server: Any,
) -> None:
    """Redis leased the slot, the task was cancelled before the answer came: the lease is
    released when it arrives, not held until lease_ttl."""

    async def main() -> int:
        client = connect_async(redis_server.url, socket_timeout=5.0)
        try:
            (slots,) = slot_keys("resilient", "pool")
            await client.delete(slots)
            gated = GatedClient(client)
            limit = ConcurrencyLimit(2, name="pool", lease_ttl=60, store=AsyncRedisStore(gated))

            async def hold() -> None:
                async with limit:
                    await asyncio.sleep(10)

            answered = gated.answered
            caller = asyncio.ensure_future(hold())
            await _until(lambda: gated.answered > answered)  # Redis leased the slot
            assert await client.zcard(slots) == 1
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            gated.gate.set()
            await _until(lambda: not limit._undoing)
            return int(await client.zcard(slots))
        finally:
            await client.aclose()

    assert asyncio.run(main()) == 0
