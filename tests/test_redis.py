"""``resilient.redis``: breaker state and retry budgets shared through a real Redis.

Each ``RedisStore`` here stands for one process: it has its own cache of the
last answers, so two stores on one server behave as two processes do (the
tests with real processes are in ``test_redis_processes``; Redis going away
mid-run in ``test_redis_outage``; the Lua scripts against the reference model
in ``test_redis_state_machine``). Where Redis time must pass, open periods are
a few tenths of a second.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import redis
from freezegun import freeze_time
from hypothesis import example, given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from resilient import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    FailureRateWindow,
    RetryBudget,
    execute_task_safely,
    retry,
)
from resilient.backoff import Backoff, FullJitter
from resilient.breaker import MemoryStore
from resilient.redis import RedisClientWarning, RedisRetryBudget, RedisStore, connect
from resilient.testing import ManualClock, force_state

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class Down(ConnectionError):
    """The dependency the breakers guard is down."""


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(Down):
            breaker.call(_raise_down)


def _raise_down() -> None:
    raise Down("connection refused")


def ok() -> str:
    return "ok"


T = TypeVar("T")


def _redis_now(client: Any) -> float:
    seconds, microseconds = client.time()
    return float(seconds) + microseconds / 1e6


def within_redis_time(
    client: Any, seconds: float, scenario: Callable[[Callable[[], None]], T]
) -> T:
    """Run *scenario*, whose claims hold only until *seconds* of Redis time after it calls
    ``start()`` (an open period, a trial timeout, a window span); return what it returns.

    A run that failed once that time was over (a busy machine stalled it) proves
    nothing either way: it runs again from an empty database, three times at most.
    A failure within the time is a failure.
    """
    started: list[float] = []

    def start() -> None:
        started.append(_redis_now(client))

    for attempt in range(1, 4):
        client.flushdb()
        started.clear()
        try:
            return scenario(start)
        except (Exception, pytest.fail.Exception):
            late = bool(started) and _redis_now(client) - started[-1] >= seconds
            if not late or attempt == 3:
                raise
    raise AssertionError("unreachable")


class CountingClient:
    """A client that counts the scripts it runs: each one is one round trip."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.round_trips = 0

    def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        self.round_trips += 1
        return self._client.evalsha(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class Transitions:
    """A listener that records the state changes it hears."""

    def __init__(self) -> None:
        self.heard: list[tuple[CircuitState, CircuitState]] = []

    def on_state_change(
        self, breaker: CircuitBreaker, old: CircuitState, new: CircuitState
    ) -> None:
        self.heard.append((old, new))


# -- the module -------------------------------------------------------------------


def test_the_module_reaches_the_redis_package_not_itself() -> None:
    """``resilient.redis`` imports the redis-py package, never itself, however it is loaded."""
    code = (
        "import sys, resilient.redis as ours\n"
        "from resilient.redis import RedisStore, RedisRetryBudget\n"
        "import redis\n"
        "assert ours.redis is redis is sys.modules['redis'], ours.redis\n"
        "assert hasattr(redis, 'Redis') and redis.__name__ == 'redis'\n"
        "print(RedisStore.__module__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "resilient.redis"


# -- construction -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"namespace": ""}, TypeError, "namespace must be a non-empty str, got ''"),
        (
            {"on_store_error": "reject"},
            ValueError,
            "on_store_error must be 'local', 'open' or 'closed', got on_store_error='reject'",
        ),
        ({"max_staleness": -1}, ValueError, "max_staleness must be a finite number >= 0, got -1"),
        ({"retry_interval": 0}, ValueError, "retry_interval must be a finite number > 0, got 0"),
        ({"trial_timeout": float("inf")}, ValueError, "trial_timeout must be a finite number > 0"),
        ({"idle_ttl": "1d"}, TypeError, "idle_ttl must be a number of seconds, got '1d'"),
        (
            {"time_source": "local"},
            ValueError,
            "time_source must be 'redis' or 'breaker', got time_source='local'",
        ),
        (
            {"idle_ttl": 1e300},
            ValueError,
            "idle_ttl must be <= 31622400 s (366 days), got idle_ttl=1e+300",
        ),
        (
            {"retry_interval": 86400},
            ValueError,
            "retry_interval must be <= 3600 s (an hour), got retry_interval=86400",
        ),
        (
            {"max_staleness": 1e9},
            ValueError,
            "max_staleness must be <= 3600 s (an hour), got max_staleness=1000000000.0",
        ),
        (
            {"trial_timeout": 86401},
            ValueError,
            "trial_timeout must be <= 86400 s (a day), got trial_timeout=86401",
        ),
        (
            {"namespace": "app:prod"},
            ValueError,
            "namespace must not contain ':', '{' or '}' (':' separates it from the name",
        ),
        ({"namespace": "{app}"}, ValueError, "got namespace='{app}'"),
    ],
)
def test_bad_store_settings_fail_at_construction(
    redis_client: Any, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Each bad setting is refused when the store is built, naming the parameter and value."""
    with pytest.raises(error) as info:
        RedisStore(redis_client, **options)
    assert message in str(info.value)


def test_a_store_needs_a_redis_client() -> None:
    """Anything without ``register_script`` is refused, with what to do instead."""
    with pytest.raises(
        TypeError, match=r"client must be a redis.Redis .* got 'redis://x'.*from_url"
    ):
        RedisStore("redis://x")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"socket_timeout": 0}, "socket_timeout must be a finite number > 0, got 0"),
        ({"connect_timeout": -1.0}, "connect_timeout must be a finite number > 0, got -1.0"),
        (
            {"socket_timeout": 1e9},
            r"socket_timeout must be <= 60 s \(a minute\), got socket_timeout=1000000000.0",
        ),
        ({"connect_timeout": 3600}, r"connect_timeout must be <= 60 s \(a minute\)"),
    ],
)
def test_from_url_refuses_timeouts_that_would_not_bound_a_call(
    options: dict[str, Any], message: str
) -> None:
    """A zero or negative timeout is refused at construction."""
    with pytest.raises(ValueError, match=message):
        RedisStore.from_url("redis://127.0.0.1:9/0", **options)


@pytest.mark.parametrize("build", [RedisStore.from_url, connect])
def test_a_url_that_is_not_redis_is_refused_naming_the_url(build: Any) -> None:
    """redis-py's own message says which schemes it knows, not which argument was wrong."""
    with pytest.raises(ValueError, match=r"url is not a Redis URL \(.*\), got url='http://x'"):
        build("http://x")


def test_from_url_builds_a_client_with_short_timeouts_and_no_retries() -> None:
    """Its client waits 1 s at most for a connection or an answer, and never retries."""
    store = RedisStore.from_url("redis://127.0.0.1:9/0")
    options = store.client.connection_pool.connection_kwargs
    assert options["socket_timeout"] == 1.0
    assert options["socket_connect_timeout"] == 1.0
    assert options["retry"]._retries == 0  # get_retries() only exists from redis-py 5.1 on
    store.client.close()


def test_a_client_without_a_socket_timeout_warns_once_at_the_callers_line(
    redis_server: Any,
) -> None:
    """The warning names the problem and the fix, and points at the line that built the store."""
    client = redis.Redis(port=redis_server.port, socket_timeout=None, retry=Retry(NoBackoff(), 0))
    with pytest.warns(RedisClientWarning) as record:
        RedisStore(client)  # the line the warning must point at
    line = sys._getframe().f_lineno - 1
    assert len(record) == 1
    warning = record[0]
    assert (warning.filename, warning.lineno) == (__file__, line)
    message = str(warning.message)
    assert "no socket timeout" in message
    assert "socket_timeout=1.0" in message
    assert "from_url(url)" in message
    client.close()


def test_a_client_that_retries_by_itself_warns_too(redis_server: Any) -> None:
    """redis-py's default client retries 10 times with backoff: seconds per call while down."""
    client = redis.Redis(port=redis_server.port, socket_timeout=1.0)
    client.connection_pool.connection_kwargs["retry"] = Retry(NoBackoff(), 3)
    with pytest.warns(RedisClientWarning, match=r"retries a failed command 3 time\(s\)") as record:
        RedisRetryBudget(client, "api")
    assert record[0].filename == __file__
    client.close()


def test_a_budget_refuses_bad_namespaces_and_intervals_too(redis_client: Any) -> None:
    """The same bounds and namespace rule as the store."""
    with pytest.raises(ValueError, match="namespace must not contain ':'"):
        RedisRetryBudget(redis_client, "api", namespace="app:prod")
    with pytest.raises(ValueError, match=r"idle_ttl must be <= 31622400 s \(366 days\)"):
        RedisRetryBudget(redis_client, "api", idle_ttl=1e12)


def test_namespace_and_name_never_map_to_the_same_keys(redis_client: Any) -> None:
    """A name may hold ':'; the namespace may not, so ("app", "prod:users") is its own circuit."""
    store = RedisStore(redis_client, namespace="app")
    assert store.keys("prod:users") == ("{app:prod:users}:breaker", "{app:prod:users}:window")
    tripped = CircuitBreaker(1, name="prod:users", store=store)
    fail(tripped)
    assert tripped.state is OPEN
    assert redis_client.keys("*") == [b"{app:prod:users}:breaker"]
    with pytest.raises(ValueError, match=r"got namespace='app:prod'"):
        RedisStore(redis_client, namespace="app:prod")


@pytest.mark.parametrize("owner", [RedisStore, RedisRetryBudget])
def test_an_asyncio_client_is_refused_with_what_to_use_instead(
    redis_server: Any, owner: Any
) -> None:
    """redis.asyncio clients would fail at the first call: refused when the store is built."""
    import redis.asyncio

    client = redis.asyncio.Redis(port=redis_server.port, socket_timeout=0.25)
    arguments = (client,) if owner is RedisStore else (client, "api")
    with pytest.raises(TypeError) as info:
        owner(*arguments)
    message = str(info.value)
    assert message.startswith(
        "client must be a synchronous redis.Redis (or redis.cluster.RedisCluster) client, "
        "got a redis.asyncio.client.Redis, an asyncio client"
    )
    assert "resilient.redis.connect(url)" in message
    assert f"{owner.__name__}.from_url(url)" in message


def test_a_client_whose_settings_cannot_be_read_draws_a_warning_saying_so(
    redis_client: Any,
) -> None:
    """A wrapper that hides the connection options: the store says it cannot check them."""

    class Wrapper:
        def __init__(self, client: Any) -> None:
            self.register_script = client.register_script

    with pytest.warns(RedisClientWarning, match="whose timeouts and retries cannot be checked"):
        RedisStore(Wrapper(redis_client))


# Slow: a new cluster node says cluster_state:ok only about 2 s after it starts (Redis
# waits that long before a master takes writes), a wait that the fixture cannot shorten;
# first, it overlaps the other workers' tests instead of ending the run.
@pytest.mark.slow
def test_a_redis_cluster_client_is_checked_for_timeouts_and_retries(
    redis_cluster_node: Any,
) -> None:
    """RedisCluster's defaults (no socket timeout, 3 retries) warn; a well-built one works."""
    from redis.cluster import RedisCluster

    default = RedisCluster(host="127.0.0.1", port=redis_cluster_node.port)
    with pytest.warns(RedisClientWarning) as record:
        RedisStore(default)
    message = str(record[0].message)
    assert "it has no socket timeout" in message
    assert "it retries a failed command" in message
    default.close()
    built = RedisCluster(
        host="127.0.0.1",
        port=redis_cluster_node.port,
        # Any timeout is well built; 5 s, as the suite's clients not about timeouts: a
        # busy machine's late answer must not send the store to its fallback here.
        socket_timeout=5.0,
        socket_connect_timeout=5.0,
        retry=Retry(NoBackoff(), 0),
    )
    window = FailureRateWindow(0.5, calls=4, minimum_calls=2)
    breaker = CircuitBreaker(name="api", window=window, store=RedisStore(built))
    fail(breaker, 2)  # both keys in one slot: the scripts run on a cluster
    assert breaker.state is OPEN
    assert RedisRetryBudget(built, "api").record_failure() is True
    built.close()


def test_a_well_built_client_draws_no_warning(redis_client: Any) -> None:
    """A short socket timeout and no retries: silence (warnings are errors in this suite)."""
    RedisStore(redis_client)
    RedisRetryBudget(redis_client, "api")


def test_a_store_sends_nothing_until_a_breaker_uses_it(redis_client: Any, make_store: Any) -> None:
    """Building a store and a breaker on it writes no key."""
    store = make_store()
    CircuitBreaker(name="idle", store=store)
    assert redis_client.keys("*") == []


# -- one circuit for every process ------------------------------------------------------


def test_failures_in_one_process_open_the_circuit_for_another(
    redis_client: Any, make_store: Any
) -> None:
    """Process A's failures open the circuit; process B is rejected without calling.

    B's ``remaining`` is the 60 s open period less the Redis time from the
    opening to the rejection, which this host's monotonic clock (it ticks with
    Redis's) bounds from outside, however long the machine stalled in between.
    """
    a = CircuitBreaker(3, 60.0, name="users-api", store=make_store())
    b = CircuitBreaker(3, 60.0, name="users-api", store=make_store())
    fail(a, 2)
    opening = time.monotonic()
    fail(b, 1)  # the third failure, counted in the shared circuit, opens it
    called = []
    with pytest.raises(CircuitOpenError) as info:
        b.call(lambda: called.append(True))
    rejected = time.monotonic()
    assert not called
    assert info.value.breaker_name == "users-api"
    assert 60.0 - (rejected - opening) - 1e-3 <= info.value.remaining <= 60.0
    assert a.state is OPEN
    assert b.is_open


def test_a_success_anywhere_resets_the_consecutive_count(
    redis_client: Any, make_store: Any
) -> None:
    """Consecutive means consecutive across the fleet: B's success clears A's failures."""
    a = CircuitBreaker(3, name="api", store=make_store())
    b = CircuitBreaker(3, name="api", store=make_store())
    fail(a, 2)
    assert b.failures == 2
    assert b.call(ok) == "ok"
    assert a.failures == 0
    fail(a, 2)
    assert a.state is CLOSED


def test_constructing_a_breaker_never_resets_the_stored_state(
    redis_client: Any, make_store: Any
) -> None:
    """A new process's breaker (new store, same name) finds the circuit as it was."""
    CircuitBreaker(2, 60.0, name="db", store=make_store()).trip()
    again = CircuitBreaker(2, 60.0, name="db", store=make_store())
    assert again.state is OPEN
    with pytest.raises(CircuitOpenError):
        again.call(ok)


def test_after_the_open_period_in_redis_time_a_trial_closes_it_for_everyone(
    redis_client: Any, make_store: Any
) -> None:
    """0.5 s of Redis time later one trial is admitted; its success closes the circuit for all.

    (b's rejection must come within the half second: a run a stalled machine pushed past
    it runs again.)
    """

    def opened_for_both(start: Callable[[], None]) -> tuple[CircuitBreaker, CircuitBreaker]:
        a = CircuitBreaker(1, 0.5, name="api", store=make_store())
        b = CircuitBreaker(1, 0.5, name="api", store=make_store())
        start()
        fail(a)
        with pytest.raises(CircuitOpenError):
            b.call(ok)
        return a, b

    a, b = within_redis_time(redis_client, 0.5, opened_for_both)
    time.sleep(0.55)
    assert a.state is HALF_OPEN
    assert b.call(ok) == "ok"
    assert a.state is CLOSED
    assert a.call(ok) == "ok"


def test_a_trial_failure_reopens_the_circuit_and_the_timer_restarts(
    redis_client: Any, make_store: Any
) -> None:
    """The failed trial's process and every other see it open again, for a new full period."""
    clock = ManualClock()  # the claim is not about Redis time: the breakers' clock will do
    a, b = (
        CircuitBreaker(1, 0.2, name="api", store=make_store(time_source="breaker"), clock=clock)
        for _ in range(2)
    )
    fail(a)
    clock.advance(0.25)
    fail(b)  # the trial
    assert a.state is OPEN
    assert 0.1 < a.remaining <= 0.2


def test_exactly_half_open_max_calls_trials_across_stores_and_threads(
    redis_client: Any, make_store: Any
) -> None:
    """16 threads on 4 stores race for the trials of one half-open period: 3 get one."""
    clock = ManualClock()
    stores = [make_store(time_source="breaker") for _ in range(4)]
    breakers = [
        CircuitBreaker(
            1, 0.2, name="api", store=s, half_open_max_calls=3, success_threshold=3, clock=clock
        )
        for s in stores
    ]
    fail(breakers[0])
    clock.advance(0.25)
    start, tried = threading.Barrier(16), threading.Barrier(16)
    admitted: list[int] = []
    rejected: list[int] = []

    def race(n: int) -> None:
        breaker = breakers[n % 4]
        start.wait()
        try:
            with breaker:
                admitted.append(n)
                tried.wait()  # hold the permit until every thread has tried
            return
        except CircuitOpenError:
            rejected.append(n)
        tried.wait()

    threads = [threading.Thread(target=race, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert (len(admitted), len(rejected)) == (3, 13)
    assert breakers[1].state is CLOSED  # three trial successes


def test_a_half_open_period_whose_permit_holder_died_starts_over(
    redis_client: Any, caplog: pytest.LogCaptureFixture, make_store: Any
) -> None:
    """A permit never handed back blocks trials for trial_timeout, then fresh ones are given.

    The late outcome of the lost trial no longer counts.
    """

    def permit_lost(start: Callable[[], None]) -> tuple[CircuitBreaker, Any, Any, Any]:
        # The rejection must come within trial_timeout: a run pushed past it runs again.
        dead = make_store(trial_timeout=0.5)
        breaker = CircuitBreaker(1, 0.1, name="api", store=make_store(trial_timeout=0.5))
        fail(breaker)
        time.sleep(0.15)
        policy = breaker._policy
        start()
        lost = dead.acquire("api", policy, 0.0)  # the "process" that takes the permit, then dies
        assert lost.admitted
        assert lost.trial is not None
        with pytest.raises(CircuitOpenError) as info:
            breaker.call(ok)
        assert info.value.state is HALF_OPEN
        return breaker, dead, policy, lost

    breaker, dead, policy, lost = within_redis_time(redis_client, 0.5, permit_lost)
    time.sleep(0.55)
    with caplog.at_level(logging.WARNING, logger="resilient.redis"):
        assert breaker.call(ok) == "ok"
    assert breaker.state is CLOSED
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "breaker_trials_lost"]
    assert "'api'" in record.getMessage()
    assert "trial_timeout=0.5 s" in record.getMessage()
    assert dead.record_failure("api", policy, lost.trial, 0.0, False) is None
    assert breaker.state is CLOSED


def test_released_permits_are_handed_out_again(redis_client: Any, make_store: Any) -> None:
    """A trial ended by an excluded error gives its permit back to the fleet."""
    clock = ManualClock()
    a = CircuitBreaker(
        1,
        0.1,
        name="api",
        store=make_store(time_source="breaker"),
        exclude=KeyError,
        clock=clock,
    )
    b = CircuitBreaker(1, 0.1, name="api", store=make_store(time_source="breaker"), clock=clock)
    fail(a)
    clock.advance(0.15)

    def missing() -> None:
        raise KeyError("not a health signal")

    with pytest.raises(KeyError):
        a.call(missing)
    assert b.call(ok) == "ok"
    assert a.state is CLOSED


def test_growing_open_periods_are_stored_per_circuit(redis_client: Any, make_store: Any) -> None:
    """A Backoff recovery_timeout doubles with each opening without a recovery, fleet-wide."""
    clock = ManualClock(100.0)
    recovery = Backoff(10.0, 100.0, jitter=False)
    store = make_store(time_source="breaker")
    a = CircuitBreaker(1, recovery, name="api", store=store, clock=clock)
    fail(a)
    assert a.remaining == 10.0
    clock.advance(10.0)
    fail(a)  # the trial fails
    assert a.remaining == 20.0
    b = CircuitBreaker(
        1, recovery, name="api", store=make_store(time_source="breaker"), clock=clock
    )
    clock.advance(20.0)
    fail(b)  # another process's trial: it reads the openings from Redis
    assert b.remaining == 40.0


def test_a_jittered_duration_drawn_for_a_stale_count_gives_way_to_the_nominal_one(
    redis_client: Any, make_store: Any
) -> None:
    """When another process opened meanwhile, the script ignores a draw made for an old count.

    The open duration of a jittered ``Backoff`` is drawn in Python for the
    openings this process last read; if they changed in Redis since, the
    script uses the un-jittered duration for the stored count.
    """
    clock = ManualClock(100.0)
    recovery = Backoff(10.0, 1000.0, jitter=FullJitter())
    stale = make_store(time_source="breaker", max_staleness=60.0)
    a = CircuitBreaker(1, recovery, name="api", store=stale, clock=clock)
    assert a.call(ok) == "ok"  # a's cache: closed, no openings
    other = make_store(time_source="breaker")
    b = CircuitBreaker(1, recovery, name="api", store=other, clock=clock)
    b.trip()  # openings: 1, for at most 10 s
    b.trip()  # openings: 2, for at most 20 s
    a.trip()  # a drew for 0 openings (at most 10 s): the script uses 10 x 2**2 instead
    assert a.remaining == 40.0
    assert b.remaining == 40.0


def test_a_failure_rate_window_is_shared(redis_client: Any, make_store: Any) -> None:
    """Two processes' calls fill one count-based window; its rate opens the circuit."""
    window = FailureRateWindow(0.5, calls=4, minimum_calls=4)
    a = CircuitBreaker(name="api", window=window, store=make_store())
    b = CircuitBreaker(name="api", window=window, store=make_store())
    a.call(ok)
    b.call(ok)
    fail(a)
    assert (b.metrics.failure_rate, b.state) == (1 / 3, CLOSED)
    fail(b)
    assert a.state is OPEN
    assert a.metrics.failure_rate == 0.5


def test_a_time_based_window_ages_out_in_redis_time(redis_client: Any, make_store: Any) -> None:
    """Failures leave a 0.5 s window once 0.5 s of Redis time has passed, whatever the clocks.

    Five buckets of 0.1 s: a failure stays at least 0.4 s, time to count them (a run a
    stalled machine pushed past it runs again).
    """
    window = FailureRateWindow(0.9, seconds=0.5, buckets=5, minimum_calls=5)

    def counted(start: Callable[[], None]) -> CircuitBreaker:
        breaker = CircuitBreaker(
            name="api", window=window, store=make_store(), clock=ManualClock(0.0)
        )
        start()
        fail(breaker, 3)
        assert breaker.failures == 3
        return breaker

    breaker = within_redis_time(redis_client, 0.4, counted)
    time.sleep(0.55)
    assert breaker.failures == 0
    assert breaker.metrics.failure_rate == 0.0


def test_slow_calls_count_in_a_shared_window(redis_client: Any, make_store: Any) -> None:
    """Slow successes (timed on the breaker's clock) open the circuit at the slow-call rate."""
    clock = ManualClock()
    window = FailureRateWindow(1.0, calls=2, minimum_calls=2)
    breaker = CircuitBreaker(
        name="api",
        window=window,
        slow_call_duration=1.0,
        slow_call_rate_threshold=1.0,
        store=make_store(),
        clock=clock,
    )

    def slow() -> str:
        clock.advance(2.0)
        return "late"

    breaker.call(slow)
    assert breaker.state is CLOSED
    breaker.call(slow)
    assert breaker.state is OPEN
    assert breaker.metrics.slow_call_rate == 1.0


# -- clocks --------------------------------------------------------------------------


def test_breakers_whose_clocks_differ_by_30_s_agree_on_the_open_period(
    redis_client: Any, make_store: Any
) -> None:
    """Redis TIME decides: neither clock's reading (nor moving it) ends the 0.6 s open period.

    (The three rejections must come within the 0.6 s: a run a stalled machine pushed
    past it runs again.)
    """

    def rejected_by_both(start: Callable[[], None]) -> tuple[CircuitBreaker, CircuitBreaker]:
        behind, ahead = ManualClock(1000.0), ManualClock(1030.0)
        a = CircuitBreaker(1, 0.6, name="api", store=make_store(), clock=behind)
        b = CircuitBreaker(1, 0.6, name="api", store=make_store(), clock=ahead)
        start()
        fail(a)
        for breaker in (a, b):
            with pytest.raises(CircuitOpenError) as info:
                breaker.call(ok)
            assert 0.0 < info.value.remaining <= 0.6
        ahead.advance(3600.0)
        with pytest.raises(CircuitOpenError):
            b.call(ok)
        return a, b

    a, b = within_redis_time(redis_client, 0.6, rejected_by_both)
    time.sleep(0.65)
    assert (a.state, b.state) == (HALF_OPEN, HALF_OPEN)
    assert b.call(ok) == "ok"
    assert a.state is CLOSED


def test_with_the_breakers_clocks_the_same_skew_would_split_the_fleet(
    redis_client: Any, make_store: Any
) -> None:
    """The contrast: time_source='breaker' lets the clock 30 s ahead end the period at once."""
    behind, ahead = ManualClock(1000.0), ManualClock(1030.0)
    a = CircuitBreaker(1, 0.3, name="api", store=make_store(time_source="breaker"), clock=behind)
    b = CircuitBreaker(1, 0.3, name="api", store=make_store(time_source="breaker"), clock=ahead)
    fail(a)
    assert a.state is OPEN
    assert b.state is HALF_OPEN


# -- keys lost mid-run -------------------------------------------------------------------

_WINDOWS = {
    "count": FailureRateWindow(0.5, calls=4, minimum_calls=2),
    "time": FailureRateWindow(0.5, seconds=2.0, buckets=2, minimum_calls=2),
}


@settings(max_examples=40)
@given(
    kind=st.sampled_from(sorted(_WINDOWS)),
    steps=st.lists(
        st.sampled_from(["ok", "fail", "tick", "lose window", "lose circuit"]), max_size=25
    ),
)
@example(kind="count", steps=["fail", "fail", "ok", "lose window", "ok", "fail"])
@example(kind="time", steps=["fail", "ok", "lose window", "ok", "ok", "fail"])
@example(kind="count", steps=["fail", "lose circuit", "ok", "ok", "fail"])
def test_a_lost_key_is_an_empty_window_or_a_new_circuit_never_phantom_counts(
    redis_server: Any, kind: str, steps: list[str]
) -> None:
    """Keys evicted or expired mid-run: Redis answers as MemoryStore does when the same is lost.

    The window's key lost (its circuit survives): the window is empty, as if
    cleared. The circuit's hash lost (its window survives): a new closed
    circuit with an empty window. After every step, the same state, counts
    and rates. (40 examples: each runs against the real server.)
    """
    client = redis_server.client()
    try:
        client.flushdb()
        clock = ManualClock(1000.0)
        reference = MemoryStore()
        store = RedisStore(client, time_source="breaker", max_staleness=0.0)
        pair = [
            CircuitBreaker(
                name="api", window=_WINDOWS[kind], clock=clock, store=s, recovery_timeout=3.0
            )
            for s in (reference, store)
        ]
        hash_key, window_key = store.keys("api")
        for step in steps:
            if step == "tick":
                clock.advance(0.7)
            elif step == "lose window":
                client.delete(window_key)
                window = reference.bind("api", pair[0]._policy).window
                assert window is not None
                window.clear()
            elif step == "lose circuit":
                client.delete(hash_key)
                reference.seed("api", pair[0]._policy, CLOSED)
            else:
                outcomes = []
                for breaker in pair:
                    try:
                        breaker.call(ok if step == "ok" else _raise_down)
                        outcomes.append("ran")
                    except Down:
                        outcomes.append("ran")
                    except CircuitOpenError:
                        outcomes.append("rejected")
                assert outcomes[0] == outcomes[1]
            expected, got = (b.metrics for b in pair)
            assert (got.state, got.failure_rate) == (expected.state, expected.failure_rate)
            assert pair[1].failures == pair[0].failures
        assert store.mode("api") == "redis"
    finally:
        client.close()


def test_a_trial_permit_of_a_lost_circuit_is_refused_by_its_successor(
    redis_client: Any, make_store: Any
) -> None:
    """The hash lost and recreated: its epochs start elsewhere, so an old ticket matches none.

    Process A holds a trial permit when the circuit's hash is lost; process B
    trips the new circuit and takes the trial of its half-open period. A's
    late success must not close B's circuit.
    """
    clock = ManualClock()

    def breaker() -> CircuitBreaker:
        store = make_store(time_source="breaker", max_staleness=0.0)
        return CircuitBreaker(1, 10.0, name="api", store=store, clock=clock)

    a, b = breaker(), breaker()
    fail(a)
    clock.advance(10.0)
    with a:  # A's trial
        redis_client.delete("{resilient:api}:breaker")
        b.trip()
        clock.advance(10.0)
        b.__enter__()  # B's trial in the new circuit's half-open period
    assert a.state is HALF_OPEN  # A's success belonged to the lost circuit
    b.__exit__(None, None, None)
    assert a.state is CLOSED


def test_the_epoch_survives_in_redis_with_all_its_digits(
    redis_client: Any, make_store: Any
) -> None:
    """Seeded from TIME in microseconds: 16 digits, stored exactly (Lua would write 1.7e+15)."""
    breaker = CircuitBreaker(1, name="api", store=make_store())
    fail(breaker)
    epoch = redis_client.hget("{resilient:api}:breaker", "e")
    assert epoch.isdigit()
    assert abs(int(epoch) / 1e6 - float(redis_client.time()[0])) < 60


def test_an_open_period_too_long_for_a_redis_expiry_still_opens(
    redis_client: Any, make_store: Any
) -> None:
    """recovery_timeout of ten years (the longest any duration may be): the keys' expiry
    is sent as an integer Redis accepts, not as '3.1e+11' and refused."""
    store = make_store()
    breaker = CircuitBreaker(1, 315_576_000.0, name="api", store=store)
    fail(breaker)
    assert breaker.state is OPEN
    assert store.mode("api") == "redis"
    assert redis_client.pttl("{resilient:api}:breaker") > 3 * 10**11


def test_a_half_open_rejection_is_remembered_for_max_staleness(redis_client: Any) -> None:
    """Every permit out: a storm of calls is rejected without a round trip each."""
    client = CountingClient(redis_client)
    breaker = CircuitBreaker(name="api", store=RedisStore(client, max_staleness=60.0))
    force_state(breaker, "half_open")
    with breaker:  # the one trial
        before = client.round_trips
        for _ in range(20):
            with pytest.raises(CircuitOpenError) as info:
                breaker.call(ok)
            assert info.value.state is HALF_OPEN
        assert client.round_trips - before == 1
    assert breaker.state is CLOSED  # the trial's outcome refreshed what the cache says


# -- keys -----------------------------------------------------------------------------


def test_keys_are_hash_tagged_per_breaker_and_namespaced(
    redis_client: Any, make_store: Any
) -> None:
    """Both keys of one breaker carry {namespace:name}, so a cluster keeps them in one slot."""
    store = make_store(namespace="svc")
    window = FailureRateWindow(0.5, calls=10)
    CircuitBreaker(name="users-api", window=window, store=store).call(ok)
    assert store.keys("users-api") == ("{svc:users-api}:breaker", "{svc:users-api}:window")
    assert sorted(redis_client.keys("*")) == [b"{svc:users-api}:breaker", b"{svc:users-api}:window"]
    other = CircuitBreaker(1, name="users-api", store=make_store(namespace="other"))
    fail(other)
    assert other.state is OPEN
    assert CircuitBreaker(name="users-api", window=window, store=store).state is CLOSED


def test_keys_expire_when_idle_but_outlive_an_open_period(
    redis_client: Any, make_store: Any
) -> None:
    """idle_ttl after the last write the keys are gone, except while the circuit is open.

    A key read once its 0.2 s are over (a busy machine can stall that long) is gone
    already: that is the claim too; no expiry, or a longer one, is not.
    """

    def tripped(start: Callable[[], None]) -> CircuitBreaker:
        long_open = CircuitBreaker(1, 5.0, name="tripped", store=make_store(idle_ttl=0.2))
        start()
        fail(long_open)
        assert 4000 < redis_client.pttl("{resilient:tripped}:breaker") <= 5200
        return long_open

    long_open = within_redis_time(redis_client, 1.0, tripped)
    store = make_store(idle_ttl=0.2)
    window = FailureRateWindow(0.5, calls=10)
    written = time.monotonic()
    CircuitBreaker(name="quiet", window=window, store=store).call(ok)
    for key in ("{resilient:quiet}:breaker", "{resilient:quiet}:window"):
        ttl = redis_client.pttl(key)
        if ttl == -2:  # gone: only once idle_ttl has passed
            assert time.monotonic() - written >= 0.2, key
        else:
            assert 0 < ttl <= 200, (key, ttl)
    time.sleep(0.3)
    assert redis_client.exists("{resilient:quiet}:breaker", "{resilient:quiet}:window") == 0
    assert long_open.state is OPEN


# -- round trips and the local cache ------------------------------------------------------


def _round_trips(breaker: CircuitBreaker, client: CountingClient, calls: int, func: Any) -> float:
    before = client.round_trips
    for _ in range(calls):
        with contextlib.suppress(Down):
            breaker.call(func)
    return (client.round_trips - before) / calls


def test_closed_successes_under_the_consecutive_rule_cost_no_round_trip(redis_client: Any) -> None:
    """After the first answer, successes with nothing pending are decided in this process."""
    client = CountingClient(redis_client)
    breaker = CircuitBreaker(name="api", store=RedisStore(client, max_staleness=60.0))
    assert breaker.call(ok) == "ok"
    assert _round_trips(breaker, client, 100, ok) == 0.0


def test_closed_failures_and_windowed_calls_cost_one_round_trip(redis_client: Any) -> None:
    """A counted failure, or any call with a window, is one script: admission comes cached."""
    client = CountingClient(redis_client)
    store = RedisStore(client, max_staleness=60.0)
    consecutive = CircuitBreaker(1000, name="a", store=store)
    consecutive.call(ok)
    # Redis loads each script on its first use here (a fresh server has none): not counted.
    _round_trips(consecutive, client, 1, _raise_down)
    _round_trips(consecutive, client, 1, ok)
    assert _round_trips(consecutive, client, 50, _raise_down) == 1.0
    assert _round_trips(consecutive, client, 1, ok) == 1.0  # clears the pending failures
    windowed = CircuitBreaker(name="b", store=store, window=FailureRateWindow(1.0, calls=100))
    windowed.call(ok)
    assert _round_trips(windowed, client, 50, ok) == 1.0


def test_without_the_cache_every_call_asks_redis_twice(redis_client: Any) -> None:
    """max_staleness=0: admission and outcome are each a round trip (nothing unseen, ever)."""
    client = CountingClient(redis_client)
    breaker = CircuitBreaker(1000, name="api", store=RedisStore(client, max_staleness=0.0))
    _round_trips(breaker, client, 1, _raise_down)  # Redis loads the scripts on first use
    assert _round_trips(breaker, client, 20, _raise_down) == 2.0


def test_retry_over_a_redis_breaker_costs_one_round_trip_per_attempt(redis_client: Any) -> None:
    """``@retry`` over ``@breaker``: after each retried failure the loop asks the breaker how
    long it stays open; the failure just recorded refreshed what the store remembers, so
    that answer costs no round trip of its own (it used to cost one, uncounted)."""
    client = CountingClient(redis_client)
    breaker = CircuitBreaker(1000, name="api", store=RedisStore(client, max_staleness=60.0))

    @retry(max_retries=4, base_delay=0.0)
    @breaker
    def flaky() -> None:
        _raise_down()

    breaker.call(ok)
    with contextlib.suppress(Down):
        breaker.call(_raise_down)  # Redis loads the failure script on first use
    before = client.round_trips
    with pytest.raises(Down):
        flaky()
    assert client.round_trips - before == 5  # five attempts, one script each


def test_an_opening_elsewhere_goes_unseen_for_at_most_max_staleness(
    redis_client: Any, make_store: Any
) -> None:
    """A process that just read 'closed' admits calls for at most max_staleness after a trip.

    Each call's start is read before it asks: a call admitted from the cache
    began before the cache expired, and the cache was filled before the trip,
    so it began within max_staleness of the trip, to the tick, however slow
    the machine (no margin needed). And it is a cache: a call that began within
    max_staleness of the read was admitted from it (a machine that stalled the
    trip itself past max_staleness leaves no such call to check).
    """
    staleness = 0.5
    a = CircuitBreaker(name="api", store=make_store(max_staleness=staleness))
    b = CircuitBreaker(name="api", store=make_store())
    read = time.monotonic()  # the cache is filled after this
    a.call(ok)  # a reads 'closed'
    b.trip()
    tripped = time.monotonic()
    admitted = 0
    first = None
    while True:
        began = time.monotonic()
        first = began if first is None else first
        try:
            a.call(ok)
        except CircuitOpenError:
            break
        admitted += 1
        assert began - tripped < staleness, "the cache outlived max_staleness"
        time.sleep(0.01)
    # The cache did admit calls after the trip (it is one), unless none began in time.
    assert admitted > 0 or first - read >= staleness, (admitted, first - read)


def test_an_open_circuit_rejects_from_the_cache_without_a_round_trip(redis_client: Any) -> None:
    """Rejections while open cost nothing more until max_staleness or the period ends."""
    client = CountingClient(redis_client)
    breaker = CircuitBreaker(1, 60.0, name="api", store=RedisStore(client, max_staleness=60.0))
    fail(breaker)
    before = client.round_trips
    for _ in range(20):
        with pytest.raises(CircuitOpenError):
            breaker.call(ok)
    assert client.round_trips == before


@pytest.mark.parametrize("build", ["connect", "RedisStore.from_url"])
def test_a_pool_opening_20_connections_looks_up_redis_pys_version_once(
    redis_server: Any, monkeypatch: pytest.MonkeyPatch, build: str
) -> None:
    """``connect``'s pool (and so ``RedisStore.from_url``'s) resolves its driver info
    once, not in each new connection: redis-py 7.0 to 8.1 read their installed version
    (``importlib.metadata``, 1-2 ms) in every connection's ``__init__``."""
    import redis.utils

    if build == "connect":
        client = connect(redis_server.url, socket_timeout=5.0)
    else:
        client = RedisStore.from_url(redis_server.url, socket_timeout=5.0).client
    looked_up: list[int] = []
    real = redis.utils.get_lib_version

    def counted() -> str:
        looked_up.append(1)
        return real()  # type: ignore[no-any-return]

    monkeypatch.setattr(redis.utils, "get_lib_version", counted)
    pool = client.connection_pool
    opened = [pool.get_connection() for _ in range(20)]  # each one connected and ready
    try:
        assert len({id(each) for each in opened}) == 20
        assert looked_up == []
        infos = [getattr(each, "driver_info", None) for each in opened]
        if infos[0] is not None:  # redis-py 7.0+: every connection still names the version
            assert {info.lib_version for info in infos} == {redis.__version__}
    finally:
        for each in opened:
            pool.release(each)
        client.close()


class HeldReplies(redis.Redis):
    """A client that runs each script at once, in the order asked, but hands its answer
    back only when the test releases it: answers come back in the order the test says."""

    holding = False

    def evalsha(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if not self.holding:
            return super().evalsha(*args, **kwargs)
        with self.one_at_a_time:  # Redis runs them in the order they were asked
            reply = super().evalsha(*args, **kwargs)
            gate = threading.Event()
            self.held.append(gate)
        assert gate.wait(timeout=30)
        return reply

    def hold(self) -> None:
        self.one_at_a_time = threading.Lock()
        self.held: list[threading.Event] = []
        self.holding = True


@pytest.mark.parametrize("frozen", [False, True], ids=["clock-moves", "clock-frozen"])
def test_an_older_answer_coming_back_last_never_reopens_a_remembered_open_circuit(
    redis_server: Any, redis_client: Any, frozen: bool
) -> None:
    """Two threads fail at once: Redis counts the first (closed, 1 failure), then the
    second, which opens; the opening's answer comes back first. The circuit is still
    remembered open: the next call is rejected from the cache, without running. Also
    under a frozen ``time.monotonic`` (freezegun without tick), where every reading is
    equal: the order of the answers is not read from the clock."""
    with freeze_time("2024-01-01") if frozen else contextlib.nullcontext():
        older_answer_last(redis_server)


def older_answer_last(redis_server: Any) -> None:
    client = HeldReplies.from_url(redis_server.url, socket_timeout=5.0, retry=Retry(NoBackoff(), 0))
    breaker = CircuitBreaker(2, 60.0, name="api", store=RedisStore(client, max_staleness=60.0))
    assert breaker.call(ok) == "ok"  # closed, remembered for 60 s
    client.hold()
    first = threading.Thread(target=fail, args=(breaker,))
    first.start()
    while len(client.held) < 1:
        time.sleep(0.001)
    second = threading.Thread(target=fail, args=(breaker,))
    second.start()
    while len(client.held) < 2:
        time.sleep(0.001)
    client.held[1].set()  # the opening's answer first
    second.join(timeout=30)
    client.held[0].set()  # then the older one: closed, 1 failure
    first.join(timeout=30)
    client.holding = False
    ran: list[bool] = []
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: ran.append(True))
    assert ran == []
    client.close()


# -- listeners ---------------------------------------------------------------------------


def test_listeners_hear_the_changes_this_process_made_in_order(
    redis_client: Any, make_store: Any
) -> None:
    """A's listener hears open, half-open, closed; B's hears nothing of what A did."""
    heard_a, heard_b = Transitions(), Transitions()
    clock = ManualClock()

    def breaker(heard: Transitions) -> CircuitBreaker:
        store = make_store(time_source="breaker")
        return CircuitBreaker(1, 0.1, name="api", store=store, listeners=[heard], clock=clock)

    a, b = breaker(heard_a), breaker(heard_b)
    fail(a)
    clock.advance(0.15)
    a.call(ok)
    assert heard_a.heard == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert b.state is CLOSED
    assert heard_b.heard == []


def test_the_breaker_logs_the_transitions_this_process_made(
    redis_client: Any, caplog: pytest.LogCaptureFixture, make_store: Any
) -> None:
    """The opening is logged as for an in-memory breaker, with its structured fields."""
    breaker = CircuitBreaker(2, 30.0, name="api", store=make_store())
    with caplog.at_level(logging.INFO, logger="resilient.breaker"):
        fail(breaker, 2)
    [record] = caplog.records
    assert record.getMessage().startswith("circuit 'api' opened after 2 consecutive failures")
    assert (record.event, record.failures, record.open_for) == ("circuit_open", 2, 30.0)


def test_metrics_say_the_store_mode(redis_client: Any, make_store: Any) -> None:
    """'redis' while Redis answers; a memory breaker says 'memory'."""
    store = make_store()
    breaker = CircuitBreaker(name="api", store=store)
    breaker.call(ok)
    assert breaker.metrics.store_mode == "redis" == store.mode("api")
    assert CircuitBreaker().metrics.store_mode == "memory"


# -- the retry budget ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_tokens": 0}, ValueError, "max_tokens must be a finite number > 0, got 0"),
        ({"token_ratio": -0.1}, ValueError, "token_ratio must be a finite number > 0, got -0.1"),
        ({"max_tokens": 2, "token_ratio": 3}, ValueError, "token_ratio must be <= max_tokens"),
        ({"max_tokens": True}, TypeError, "max_tokens must be a number, got True"),
        ({"retry_interval": -1}, ValueError, "retry_interval must be a finite number > 0"),
    ],
)
def test_bad_budget_settings_fail_as_retry_budgets_do(
    redis_client: Any, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """The same checks and messages as ``RetryBudget``."""
    with pytest.raises(error, match=message):
        RedisRetryBudget(redis_client, "api", **options)


def test_a_budget_needs_a_name(redis_client: Any) -> None:
    """An empty name would share one bucket between unrelated budgets."""
    with pytest.raises(TypeError, match="name must be a non-empty str, got ''"):
        RedisRetryBudget(redis_client, "")


@settings(max_examples=25)
@given(
    max_tokens=st.sampled_from([1, 4, 10, 2.5]),
    ratio=st.sampled_from([0.1, 0.5, 1.0]),
    steps=st.lists(st.booleans(), max_size=30),
)
def test_the_shared_budget_follows_the_retry_budget_rule_exactly(
    redis_server: Any, max_tokens: float, ratio: float, steps: list[bool]
) -> None:
    """Any sequence of outcomes: the same answers and the same tokens as ``RetryBudget``."""
    client = redis_server.client()
    try:
        client.flushdb()
        shared = RedisRetryBudget(client, "api", max_tokens=max_tokens, token_ratio=ratio)
        local = RetryBudget(max_tokens, ratio)
        for failed in steps:
            if failed:
                assert shared.record_failure() is local.record_failure()
            else:
                shared.record_success()
                local.record_success()
            assert shared.tokens == local.tokens
            assert shared.allows_retry is local.allows_retry
    finally:
        client.close()


def test_budgets_with_one_name_share_their_tokens(redis_client: Any) -> None:
    """Two processes' budgets spend from one bucket; another name is another bucket."""
    a = RedisRetryBudget(redis_client, "api", max_tokens=4, token_ratio=0.5)
    b = RedisRetryBudget(redis_client, "api", max_tokens=4, token_ratio=0.5)
    assert a.record_failure() is True  # 3 > 2
    assert b.record_failure() is False  # 2 > 2 is false: the fleet's retries are spent
    assert a.tokens == b.tokens == 2.0
    b.record_success()
    assert a.tokens == 2.5
    assert a.allows_retry
    assert RedisRetryBudget(redis_client, "other", max_tokens=4).tokens == 4.0
    assert redis_client.exists("{resilient:api}:budget") == 1


def test_retry_and_tasks_accept_the_shared_budget(redis_client: Any) -> None:
    """@retry(budget=...) and execute_task_safely(budget=...) spend and refund it."""
    budget = RedisRetryBudget(redis_client, "api", max_tokens=4, token_ratio=1.0)
    attempts = []

    @retry(max_retries=5, base_delay=0.0, jitter=False, budget=budget)
    def flaky() -> str:
        attempts.append(1)
        raise Down("still down")

    with pytest.raises(Down):
        flaky()
    assert len(attempts) == 2  # the second failure leaves 2 tokens: no more retries
    assert budget.tokens == 2.0
    result = execute_task_safely("fetch", ok, max_retries=3, budget=budget)
    assert result.success
    assert budget.tokens == 3.0


# -- the other call forms and clients --------------------------------------------------------


def test_eight_threads_on_one_store_lose_no_count(redis_client: Any, make_store: Any) -> None:
    """8 threads x 100 calls through one breaker: the shared window holds all 800.

    Every count goes to Redis while it answers; a late answer is an outage, and
    the fallback rightly counts in this process instead. So the client waits
    30 s (the async kind's loop thread waits as long), not 5 s: on a busy
    machine 800 round trips through one event loop must not fake an outage,
    and if one happens all the same the test says so instead of counting short.
    """
    window = FailureRateWindow(1.0, calls=800, minimum_calls=800)
    store = make_store(socket_timeout=30.0)
    breaker = CircuitBreaker(name="api", window=window, store=store)
    modes: list[str] = []
    store.watch_mode("api", lambda old, new: modes.append(new))
    start = threading.Barrier(8)

    def work(n: int) -> None:
        start.wait()
        for k in range(100):
            with contextlib.suppress(Down):
                breaker.call(_raise_down if (k + n) % 4 == 0 else ok)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert modes == [], f"Redis did not answer within 30 s: the fallback took calls ({modes})"
    stored = breaker._store.snapshot("api", breaker._policy, 0.0)
    assert (stored.window_calls, stored.window_failures) == (800, 200)
    assert breaker.metrics.calls == 800


def test_the_async_forms_use_the_store_too(redis_client: Any) -> None:
    """call_async and async with count in Redis (each round trip blocks the loop briefly)."""
    import asyncio

    # a asks Redis on every call: its cache would admit the third call (b opened it).
    a = CircuitBreaker(2, 60.0, name="api", store=RedisStore(redis_client, max_staleness=0.0))
    b = CircuitBreaker(2, 60.0, name="api", store=RedisStore(redis_client))

    async def down() -> None:
        raise Down("connection refused")

    async def scenario() -> None:
        with pytest.raises(Down):
            await a.call_async(down)
        with pytest.raises(Down):
            async with b:
                await down()
        with pytest.raises(CircuitOpenError):
            await a.call_async(down)

    asyncio.run(scenario())
    assert b.state is OPEN


def test_a_client_that_decodes_responses_works_as_well(redis_server: Any) -> None:
    """decode_responses=True turns every answer into str: the store reads those too."""
    client = connect(redis_server.url, socket_timeout=5.0)
    decoding = redis.Redis(
        port=redis_server.port,
        socket_timeout=5.0,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    try:

        def opened(start: Callable[[], None]) -> CircuitBreaker:
            breaker = CircuitBreaker(1, 0.5, name="api", store=RedisStore(decoding))
            start()
            fail(breaker)
            assert breaker.state is OPEN  # within the open period (else the run runs again)
            return breaker

        breaker = within_redis_time(client, 0.5, opened)
        time.sleep(0.55)
        assert breaker.call(ok) == "ok"
        budget = RedisRetryBudget(decoding, "api", max_tokens=4)
        assert budget.record_failure() is True
        assert budget.tokens == 3.0
    finally:
        client.close()
        decoding.close()


def test_force_state_and_reset_go_through_the_store(redis_client: Any, make_store: Any) -> None:
    """resilient.testing.force_state and reset() change the shared circuit for everyone."""
    from resilient.testing import force_state

    a = CircuitBreaker(name="api", store=make_store())
    b = CircuitBreaker(name="api", store=make_store())
    force_state(a, "open")
    assert b.state is OPEN
    force_state(a, "half_open")
    assert b.state is HALF_OPEN
    b.reset()
    assert a.state is CLOSED


def test_a_budget_from_a_url_needs_no_client(redis_server: Any) -> None:
    """RedisRetryBudget.from_url builds the same short-timeout client as the store."""
    budget = RedisRetryBudget.from_url(redis_server.url, "from-url", max_tokens=2)
    assert budget._client.connection_pool.connection_kwargs["socket_timeout"] == 1.0
    assert budget.record_failure() is False  # 1 > 1 is false
    budget._client.delete("{resilient:from-url}:budget")
    budget._client.close()


def test_a_store_without_a_mode_reports_custom() -> None:
    """A third-party store that cannot say where its state lives is 'custom', not 'memory'."""

    class Delegating:
        def __init__(self) -> None:
            self._inner = MemoryStore()

        def __getattr__(self, name: str) -> Any:
            if name == "mode":
                raise AttributeError(name)
            return getattr(self._inner, name)

    breaker = CircuitBreaker(name="api", store=Delegating())  # type: ignore[arg-type]
    assert breaker.call(ok) == "ok"
    assert breaker.metrics.store_mode == "custom"


def test_importing_it_without_the_redis_package_says_which_extra_to_install() -> None:
    """Without redis-py, ``import resilient.redis`` fails with the extra to install."""
    code = (
        "import sys\n"
        "sys.modules['redis'] = None  # as if redis-py were not installed\n"
        "try:\n"
        "    import resilient.redis\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "resilient.redis needs the redis package, which is not installed: "
        'pip install "resilient-kit[redis]"'
    )


def test_store_and_budget_durations_take_a_timedelta(redis_client: Any) -> None:
    """Every period of the Redis store and budget, and ``connect``'s timeouts, accept a
    ``timedelta`` (issue 19); read back in seconds."""
    from datetime import timedelta

    store = RedisStore(
        redis_client,
        max_staleness=timedelta(milliseconds=50),
        retry_interval=timedelta(seconds=1),
        trial_timeout=timedelta(seconds=20),
        idle_ttl=timedelta(hours=1),
    )
    assert (store.max_staleness, store.retry_interval, store.idle_ttl) == (0.05, 1.0, 3600.0)  # type: ignore[attr-defined]
    budget = RedisRetryBudget(redis_client, "td", retry_interval=timedelta(seconds=3))
    assert budget.retry_interval == 3.0  # type: ignore[attr-defined]
    client = connect("redis://localhost:1", socket_timeout=timedelta(seconds=2))
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 2.0
    assert client.connection_pool.connection_kwargs["socket_connect_timeout"] == 2.0
    with pytest.raises(ValueError, match=r"^idle_ttl must be a finite number > 0"):
        RedisStore(redis_client, idle_ttl=timedelta(seconds=-1))


def test_name_is_required_error_stays_short_with_a_redis_store(redis_client: Any) -> None:
    """A Redis breaker without a name: the error names the store's type, never the
    client's repr (its connection details)."""
    with pytest.raises(
        ValueError, match=r"^name is required with store=RedisStore\(\.\.\.\)"
    ) as info:
        CircuitBreaker(store=RedisStore(redis_client))
    assert "ConnectionPool" not in str(info.value)
    assert "port" not in str(info.value)
