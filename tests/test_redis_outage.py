"""Redis going away mid-run: each fallback, the time a call may wait, and the way back.

Each test has a redis-server of its own, which it kills (SIGKILL) or freezes
(SIGSTOP) and then starts again on the same port (or thaws). Stores use short
retry intervals (0.2 s), and a short socket timeout (0.25 s; 0.5 s where the
system does not say how long a thread waited for a CPU) where Redis is
frozen, so real waits stay within a second. Where the claim is about real
time, the bound is the claim with a margin a busy machine cannot eat ("no
call waits two socket timeouts", measured without the time the call's thread
waited for a CPU); what a call waited for is counted, not guessed from how
long it took.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from _redis_stores import Stores
from resilient import CircuitBreaker, CircuitOpenError, CircuitState, FailureRateWindow
from resilient.redis import RedisRetryBudget, RedisStore, connect
from resilient.testing import ManualClock, force_state

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def _knows_cpu_waits() -> bool:
    """Whether the system says how long a thread waited for a CPU (Linux's schedstat)."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as stat:
            int(stat.read().split()[1])
    except (OSError, IndexError, ValueError):
        return False
    return True


# The socket timeout of the tests that freeze Redis (SIGSTOP). A call that waits it
# out is measured without the time its thread waited for a CPU (``Frozen``), so a
# loaded machine does not stretch it toward the bound of two. Where the system does
# not say (not Linux), durations are wall time, which a loaded machine stretches by a
# few tenths: half a second, so the bound keeps a margin that states the claim.
TIMEOUT = 0.25 if _knows_cpu_waits() else 0.5
# The socket timeout where Redis is up or refuses connections at once: the
# claim is not about timeouts, and a busy machine may answer later than 0.2 s.
PATIENT = 5.0
INTERVAL = 0.2


class Down(ConnectionError):
    """The dependency the breaker guards is down."""


def _raise_down() -> None:
    raise Down("connection refused")


def ok() -> str:
    return "ok"


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(Down):
            breaker.call(_raise_down)


class CountingClient:
    """A client that counts the scripts it tries to run."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.attempts = 0

    def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        self.attempts += 1
        return self._client.evalsha(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


@pytest.fixture
def server(redis_server_factory: Callable[[], Any]) -> Any:
    return redis_server_factory()


@pytest.fixture
def stores(store_kind: str, server: Any) -> Iterator[Stores]:
    """Stores of ``store_kind`` (sync, then async) on the test's own server."""
    with Stores(store_kind, server.url) as built:
        yield built


def _store(stores: Stores, **options: Any) -> Any:
    options.setdefault("retry_interval", INTERVAL)
    return stores(socket_timeout=PATIENT, **options)


def _wait_for_retry() -> None:
    time.sleep(INTERVAL + 0.05)


class Heard:
    """A listener that records state changes and store mode changes, in the order heard."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, str, str]] = []

    def on_state_change(
        self, breaker: CircuitBreaker, old: CircuitState, new: CircuitState
    ) -> None:
        self.heard.append(("state", old.value, new.value))

    def on_store_mode_change(self, breaker: CircuitBreaker, old_mode: str, new_mode: str) -> None:
        self.heard.append(("mode", old_mode, new_mode))


class ModesOnly:
    """A listener with the store mode hook alone (no state-change listener on its breaker)."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, str]] = []

    def on_store_mode_change(self, breaker: CircuitBreaker, old_mode: str, new_mode: str) -> None:
        self.heard.append((old_mode, new_mode))


# -- on_store_error="local" (the default) ---------------------------------------------


def test_a_local_breaker_takes_over_and_hands_back_when_redis_returns(
    server: Any, caplog: pytest.LogCaptureFixture, stores: Any
) -> None:
    """Killed: the local breaker counts and opens on its own. Back: Redis decides again."""
    store = _store(stores)
    breaker = CircuitBreaker(3, 60.0, name="api", store=store)
    assert breaker.call(ok) == "ok"
    server.stop()
    with caplog.at_level(logging.INFO, logger="resilient.redis"):
        assert breaker.call(ok) == "ok"
        assert breaker.metrics.store_mode == "local" == store.mode("api")
        fail(breaker, 3)
        with pytest.raises(CircuitOpenError):
            breaker.call(ok)
        assert breaker.state is OPEN
        server.start()
        _wait_for_retry()
        assert breaker.call(ok) == "ok"  # Redis (emptied by the restart) says closed
        assert breaker.metrics.store_mode == "redis"
        assert breaker.state is CLOSED
    [down] = _events(caplog, "breaker_store_unavailable")
    assert down.getMessage().startswith("circuit 'api' cannot reach Redis (ConnectionError")
    assert "an in-process breaker with the same settings decides" in down.getMessage()
    assert "retrying Redis every 0.2 s" in down.getMessage()
    assert (down.breaker, down.store_mode, down.retry_in) == ("api", "local", INTERVAL)
    assert down.error_type.endswith("ConnectionError")
    # redis-py's sync client says "Connection refused", its asyncio client "Connect call failed"
    # How the loss reads depends on the client and the Python: a refused
    # connect, or (redis.asyncio on 3.10) the server's closing of a pooled one.
    assert any(
        text in down.error
        for text in ("Connection refused", "Connect call failed", "Connection closed by server")
    )
    [back] = _events(caplog, "breaker_store_recovered")
    assert back.getMessage().startswith("circuit 'api' reached Redis again after ")
    assert (back.breaker, back.store_mode, back.previous_mode) == ("api", "redis", "local")
    assert back.outage_seconds > INTERVAL


def test_the_local_breaker_runs_its_own_trials_on_the_breakers_clock(
    server: Any, stores: Any
) -> None:
    """While Redis is down the local circuit opens, half-opens and closes as a memory one."""
    clock = ManualClock()
    breaker = CircuitBreaker(1, 30.0, name="api", store=_store(stores), clock=clock)
    breaker.call(ok)
    server.stop()
    fail(breaker)
    assert breaker.state is OPEN
    clock.advance(30.0)
    assert breaker.state is HALF_OPEN
    assert breaker.call(ok) == "ok"  # a local trial, with a local ticket
    assert breaker.state is CLOSED


def test_the_outcome_of_a_trial_redis_granted_is_dropped_while_redis_is_down(
    server: Any, stores: Any
) -> None:
    """Nothing to record it in: no error, and the local breaker is not touched by it."""
    breaker = CircuitBreaker(1, 0.1, name="api", store=_store(stores))
    fail(breaker)
    time.sleep(0.15)
    with breaker:  # admitted as Redis's trial
        server.stop()
    assert breaker.metrics.store_mode == "local"
    # The local breaker starts half-open, as Redis last was; the success did not close it.
    assert breaker.state is HALF_OPEN
    assert breaker.call(ok) == "ok"  # its own trial closes it
    assert breaker.state is CLOSED


def test_one_breakers_script_error_falls_back_that_breaker_alone(
    redis_client: Any, caplog: pytest.LogCaptureFixture, make_store: Any
) -> None:
    """A key overwritten with a string (WRONGTYPE) sends its breaker to the fallback, no other.

    The broken breaker stays in the fallback while its key stays broken (one
    warning, naming the keys and the error; no flapping at each retry), and
    comes back once the key is gone; the other breaker never leaves Redis.
    """
    interval = 0.05
    store = make_store(retry_interval=interval, max_staleness=0.0)
    modes = ModesOnly()
    broken = CircuitBreaker(3, name="broken", store=store, listeners=[modes])
    healthy = CircuitBreaker(3, name="healthy", store=store)
    redis_client.set("{resilient:broken}:breaker", "not a hash")
    seen = set()
    with caplog.at_level(logging.INFO, logger="resilient.redis"):
        for _ in range(4):  # after the first pass, each one a retry (an interval later), failing
            assert broken.call(ok) == "ok"
            seen.add(store.mode("broken"))
            fail(healthy)
            healthy.call(ok)
            assert store.mode("healthy") == "redis"
            time.sleep(interval + 0.005)
        assert redis_client.hget("{resilient:healthy}:breaker", "f") == b"0"  # it reached Redis
        redis_client.delete("{resilient:broken}:breaker")
        time.sleep(interval + 0.02)
        assert broken.call(ok) == "ok"
        assert store.mode("broken") == "redis"
    assert seen == {"local"}
    assert modes.heard == [("redis", "local"), ("local", "redis")]
    assert _events(caplog, "breaker_store_unavailable") == []
    [down] = _events(caplog, "breaker_store_command_failed")
    assert down.getMessage().startswith(
        "circuit 'broken': a Redis script on its keys {resilient:broken}:breaker and "
        "{resilient:broken}:window failed (ResponseError: WRONGTYPE"
    )
    assert "the other breakers of this store keep using Redis" in down.getMessage()
    assert (down.breaker, down.store_mode, down.scope) == ("broken", "local", "breaker")
    assert down.keys == ["{resilient:broken}:breaker", "{resilient:broken}:window"]
    assert down.error_type == "redis.exceptions.ResponseError"
    assert "WRONGTYPE" in down.error
    [back] = _events(caplog, "breaker_store_recovered")
    assert back.breaker == "broken"


def test_a_breaker_whose_writes_fail_is_not_handed_back_by_a_read(
    redis_client: Any, caplog: pytest.LogCaptureFixture, make_store: Any
) -> None:
    """Its window key made a hash: admissions (reads) work, recording fails; no flapping.

    A read that succeeds does not hand the breaker back: only a script that
    writes its keys does, so it stays in the fallback for as long as they are
    broken, with one warning.
    """
    interval = 0.05
    store = make_store(retry_interval=interval, max_staleness=0.0)
    window = FailureRateWindow(0.5, calls=10, minimum_calls=10)
    breaker = CircuitBreaker(name="api", window=window, store=store)
    breaker.call(ok)
    redis_client.delete("{resilient:api}:window")
    redis_client.hset("{resilient:api}:window", "written", "by someone else")
    seen = []
    with caplog.at_level(logging.INFO, logger="resilient.redis"):
        for _ in range(4):  # after the first pass, each one a retry (an interval later)
            breaker.call(ok)
            seen.append(store.mode("api"))
            time.sleep(interval + 0.005)
    assert set(seen) == {"local"}
    assert len(_events(caplog, "breaker_store_command_failed")) == 1
    assert _events(caplog, "breaker_store_recovered") == []


@pytest.mark.parametrize("refusal", ["read-only replica", "out of memory"])
def test_a_server_that_refuses_writes_is_an_outage_until_a_write_succeeds(
    server: Any, caplog: pytest.LogCaptureFixture, refusal: str, stores: Any
) -> None:
    """READONLY (a failover left us on a replica) or OOM: reads still work, so they prove nothing.

    One warning when the outage starts, none at the retries in between (a
    successful read does not end it), one when writes work again.
    """
    interval = 0.05
    admin = connect(server.url, socket_timeout=PATIENT)
    store = _store(stores, retry_interval=interval, max_staleness=0.0)
    breaker = CircuitBreaker(1000, name="api", store=store)
    breaker.call(ok)
    if refusal == "read-only replica":
        admin.replicaof("127.0.0.1", "9")  # a master that never answers: stays read-only
    else:
        admin.config_set("maxmemory", "1")
    seen = []
    with caplog.at_level(logging.INFO, logger="resilient.redis"):
        for _ in range(5):  # after the first pass, each one a retry (an interval later)
            fail(breaker)  # a write
            seen.append(store.mode("api"))
            breaker.call(ok)  # with nothing to write once the failure is local
            seen.append(store.mode("api"))
            time.sleep(interval + 0.005)
        if refusal == "read-only replica":
            admin.replicaof("NO", "ONE")
        else:
            admin.config_set("maxmemory", "0")
        time.sleep(interval + 0.02)
        breaker.call(ok)
        assert store.mode("api") == "redis"
    admin.close()
    assert set(seen) == {"local"}
    [down] = _events(caplog, "breaker_store_unavailable")
    expected = "ReadOnlyError" if refusal == "read-only replica" else "OutOfMemoryError"
    assert down.getMessage().startswith(f"circuit 'api' cannot write to Redis ({expected}: ")
    assert "until a write to Redis succeeds again" in down.getMessage()
    assert down.error_type == f"redis.exceptions.{expected}"
    assert down.scope == "store"
    assert len(_events(caplog, "breaker_store_recovered")) == 1


def test_the_budget_is_handed_back_only_when_a_write_succeeds(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only replica answers ``tokens``: the budget stays local until it can spend again."""
    interval = 0.05
    admin = connect(server.url, socket_timeout=PATIENT)
    budget = RedisRetryBudget(
        connect(server.url, socket_timeout=PATIENT), "api", retry_interval=interval
    )
    budget.record_failure()
    admin.replicaof("127.0.0.1", "9")
    with caplog.at_level(logging.INFO, logger="resilient.redis"):
        budget.record_failure()
        assert budget.mode == "local"
        for _ in range(3):
            time.sleep(interval + 0.01)
            budget.tokens  # noqa: B018 - a read, which a read-only replica answers
            assert budget.mode == "local"
        admin.replicaof("NO", "ONE")
        time.sleep(interval + 0.01)
        assert budget.record_failure() is True
        assert budget.mode == "redis"
    admin.close()
    [down] = _events(caplog, "retry_budget_store_unavailable")
    assert down.getMessage().startswith("retry budget 'api' cannot write to Redis (ReadOnlyError")
    assert len(_events(caplog, "retry_budget_store_recovered")) == 1


# -- the local fallback starts where Redis was -------------------------------------------


def test_the_local_breaker_starts_from_the_state_redis_last_gave(server: Any, stores: Any) -> None:
    """Open stays open for the rest of its period; half-open admits its trials and no more.

    The open period is on the breakers' clock (``time_source="breaker"``), so what
    is left of it is exact: 20 s of 30, however long the machine takes to stop Redis.
    """
    clock = ManualClock()
    store = _store(stores, time_source="breaker")
    tripped = CircuitBreaker(1, 30.0, name="tripped", store=store, clock=clock)
    probing = CircuitBreaker(1, 30.0, name="probing", store=store, clock=clock)
    fail(tripped)
    force_state(probing, "half_open")
    clock.advance(10.0)
    assert (tripped.state, probing.state) == (OPEN, HALF_OPEN)  # read from Redis
    server.stop()
    ran = []
    with pytest.raises(CircuitOpenError) as info:
        tripped.call(lambda: ran.append(1))
    assert tripped.metrics.store_mode == "local"
    assert info.value.remaining == 20.0  # what was left of Redis's open period
    with probing, pytest.raises(CircuitOpenError):  # one trial the local half-open admits
        probing.call(lambda: ran.append(2))
    assert ran == []
    assert probing.state is CLOSED  # its trial succeeded
    clock.advance(19.0)
    with pytest.raises(CircuitOpenError):  # still open locally, a second before the end
        tripped.call(ok)
    clock.advance(1.0)
    assert tripped.call(ok) == "ok"  # the local trial, once the remaining period is over
    assert tripped.state is CLOSED


# -- mode changes are visible --------------------------------------------------------------


def test_listeners_hear_store_mode_changes_in_order_with_state_changes(
    server: Any, caplog: pytest.LogCaptureFixture, stores: Any
) -> None:
    """Down: 'redis' -> 'local', then the local opening; back: 'local' -> 'redis'.

    A hook may call the breaker: the change is delivered outside its locks.
    """
    heard = Heard()
    calls_from_hook = []

    class CallsBack:
        def on_store_mode_change(
            self, breaker: CircuitBreaker, old_mode: str, new_mode: str
        ) -> None:
            calls_from_hook.append(breaker.metrics.store_mode)
            if new_mode == "redis":  # delivered from a call that held the ordering lock
                breaker.call(ok)

    store = _store(stores)
    breaker = CircuitBreaker(2, 60.0, name="api", store=store, listeners=[heard, CallsBack()])
    breaker.call(ok)
    server.stop()
    with caplog.at_level(logging.INFO):
        fail(breaker, 2)
        server.start()
        _wait_for_retry()
        breaker.call(ok)
    assert heard.heard == [
        ("mode", "redis", "local"),
        ("state", "closed", "open"),
        ("mode", "local", "redis"),
    ]
    assert calls_from_hook == ["local", "redis"]
    [opened] = [r for r in caplog.records if getattr(r, "event", None) == "circuit_open"]
    assert opened.getMessage().endswith("(local fallback while Redis is unreachable)")
    assert opened.store_mode == "local"
    [back] = _events(caplog, "breaker_store_recovered")
    assert back.getMessage().endswith(
        "the local breaker's state is dropped: it had the circuit open, Redis holds it "
        "closed, and Redis's state applies from now on"
    )
    assert (back.local_state, back.redis_state, back.states_differ) == ("open", "closed", True)


def test_a_breaker_without_state_listeners_hears_mode_changes_too(server: Any, stores: Any) -> None:
    """The hook alone, on a breaker whose store operations take no ordering lock."""
    modes = ModesOnly()
    store = _store(stores, max_staleness=0.0)
    breaker = CircuitBreaker(name="api", store=store, listeners=[modes])
    breaker.call(ok)
    server.stop()
    breaker.call(ok)
    breaker.call(ok)
    assert modes.heard == [("redis", "local")]


def test_transitions_logged_on_redis_say_their_store_mode(
    redis_client: Any, caplog: pytest.LogCaptureFixture, make_store: Any
) -> None:
    """store_mode is in every transition's extras; only the local fallback adds to the message."""
    breaker = CircuitBreaker(1, 30.0, name="api", store=make_store())
    with caplog.at_level(logging.INFO, logger="resilient.breaker"):
        fail(breaker)
    [record] = [r for r in caplog.records if r.name == "resilient.breaker"]
    assert record.store_mode == "redis"
    assert "local fallback" not in record.getMessage()
    assert not [r for r in caplog.records if r.name == "resilient.redis"]  # no outage was faked


def test_both_kinds_of_store_wait_as_long_for_the_session_server(
    redis_client: Any, make_store: Any
) -> None:
    """A test's store of either kind is as patient as the session's client.

    The async kind's client had the library's 0.25 s (its default then): on a loaded CI machine
    one late answer was an outage, whose WARNING came into a test counting
    the breaker's log records (test_transitions_logged_on_redis_say_their_store_mode).
    """
    patient = redis_client.connection_pool.connection_kwargs["socket_timeout"]
    client = make_store().client
    assert client.connection_pool.connection_kwargs["socket_timeout"] == patient
    assert make_store(socket_timeout=0.3).client.connection_pool.connection_kwargs[
        "socket_timeout"
    ] == pytest.approx(0.3)


# -- on_store_error="open" and "closed" ------------------------------------------------


def test_the_open_fallback_rejects_calls_until_redis_returns(
    server: Any, caplog: pytest.LogCaptureFixture, stores: Any
) -> None:
    """Every call is rejected without running, with the seconds until Redis is tried again.

    (With ``max_staleness=0`` the first call after the kill notices it; with the
    cache, calls admitted from it in the first ``max_staleness`` would run.)
    """
    store = _store(stores, on_store_error="open", max_staleness=0.0)
    breaker = CircuitBreaker(name="api", store=store)
    assert breaker.call(ok) == "ok"
    server.stop()
    ran = []
    with caplog.at_level(logging.INFO, logger="resilient.redis"):
        for _ in range(3):
            with pytest.raises(CircuitOpenError) as info:
                breaker.call(lambda: ran.append(1))
            assert 0.0 < info.value.remaining <= INTERVAL
    message = str(info.value)
    assert message.startswith(
        "circuit 'api' rejected the call without running it: Redis, where its state is "
        "shared, is unreachable (on_store_error='open'), not because the dependency failed; "
        "Redis is tried again in 0."
    )
    assert info.value.reason is not None
    assert info.value.reason in message
    assert ran == []
    assert breaker.metrics.store_mode == "open"
    assert breaker.state is OPEN
    [down] = _events(caplog, "breaker_store_unavailable")
    assert "calls are rejected (on_store_error='open')" in down.getMessage()
    server.start()
    _wait_for_retry()
    assert breaker.call(ok) == "ok"
    assert breaker.metrics.store_mode == "redis"


def test_the_closed_fallback_lets_calls_through_and_counts_nothing(
    server: Any, stores: Any
) -> None:
    """Calls run unguarded: failures neither open the circuit nor reach Redis later."""
    breaker = CircuitBreaker(2, 60.0, name="api", store=_store(stores, on_store_error="closed"))
    assert breaker.call(ok) == "ok"
    server.stop()
    fail(breaker, 5)
    assert breaker.call(ok) == "ok"
    assert (breaker.state, breaker.metrics.store_mode) == (CLOSED, "closed")
    server.start()
    _wait_for_retry()
    assert breaker.call(ok) == "ok"
    assert (breaker.failures, breaker.metrics.store_mode) == (0, "redis")


# -- time ---------------------------------------------------------------------------------


def _waiting_for_a_cpu() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (Linux; else 0.0)."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class Frozen:
    """Calls made while Redis is frozen: for each, whether it tried Redis and how long it took.

    What a call waited for is counted (the scripts it sent), not guessed from
    its duration, which a busy machine stretches.
    """

    def __init__(self, client: CountingClient) -> None:
        self._client = client
        self.tries: list[int] = []  # scripts each call sent
        # How long each call took, less the time its thread was runnable but waiting for a
        # CPU (other jobs of the machine ran): what it spent waiting on Redis or computing.
        self.durations: list[float] = []
        self.started = time.monotonic()
        self.elapsed = 0.0

    def call(self, function: Callable[[], object]) -> None:
        before, began, queued = self._client.attempts, time.monotonic(), _waiting_for_a_cpu()
        function()
        took = time.monotonic() - began
        self.durations.append(took - (_waiting_for_a_cpu() - queued))
        self.tries.append(self._client.attempts - before)
        self.elapsed = time.monotonic() - self.started

    @property
    def waited(self) -> int:
        """Calls that tried Redis, each waiting out the socket timeout."""
        return sum(1 for n in self.tries if n)

    @property
    def at_once(self) -> int:
        """Calls decided without trying Redis."""
        return len(self.tries) - self.waited

    def assert_one_try_per_retry_interval(self) -> None:
        """No call waits two socket timeouts; one call per retry interval waits one.

        A call that tries Redis waits TIMEOUT, and the next try comes INTERVAL
        after it failed: tries are at least TIMEOUT + INTERVAL apart, however
        slow the machine. The real-time bound says what the socket timeout
        promises, with a whole timeout of margin: no call waits two (the
        time a busy machine kept the thread from a CPU is not the call's).
        """
        assert max(self.tries) == 1
        assert max(self.durations) < 2 * TIMEOUT
        assert 1 <= self.waited <= self.elapsed / (TIMEOUT + INTERVAL) + 1


@pytest.mark.parametrize("fallback", ["local", "open", "closed"])
def test_no_call_waits_longer_than_the_socket_timeout_while_redis_hangs(
    server: Any, fallback: str
) -> None:
    """Redis frozen (SIGSTOP): one call per retry interval waits out the timeout, no more.

    Every call asks Redis (``max_staleness=0``), so none is spared by the cache.
    Calls go on until two have tried Redis (the retry after the interval
    waits too) and five have been decided at once, and for 0.6 s at least.
    Then Redis thaws, and the breaker reads it again: the claim is not about
    how fast (a retry on a loaded machine may outlast the short timeout and
    fall back once more), so the calls go on until it does, 10 s at most.
    """
    client = CountingClient(connect(server.url, socket_timeout=TIMEOUT))
    store = RedisStore(client, retry_interval=INTERVAL, on_store_error=fallback, max_staleness=0.0)
    breaker = CircuitBreaker(1000, name="api", store=store)
    breaker.call(ok)

    def call() -> None:
        try:
            breaker.call(ok)
        except CircuitOpenError:
            assert fallback == "open"

    server.pause()
    frozen = Frozen(client)
    while frozen.elapsed < 0.6 or frozen.waited < 2 or frozen.at_once < 5:
        assert frozen.elapsed < 10.0, (frozen.tries, frozen.durations)
        frozen.call(call)
        time.sleep(0.005)
    server.resume()
    frozen.assert_one_try_per_retry_interval()
    assert frozen.at_once >= 5  # the others decided without waiting
    deadline = time.monotonic() + 10.0
    while breaker.metrics.store_mode != "redis":
        assert time.monotonic() < deadline, "the breaker never read the thawed Redis again"
        call()
        time.sleep(0.02)
    assert breaker.call(ok) == "ok"
    assert breaker.metrics.store_mode == "redis"


def test_redis_is_tried_at_most_once_per_retry_interval(server: Any) -> None:
    """While Redis is down, calls do not each try to reach it."""
    client = CountingClient(connect(server.url, socket_timeout=PATIENT))
    breaker = CircuitBreaker(1000, name="api", store=RedisStore(client, retry_interval=INTERVAL))
    breaker.call(ok)
    server.stop()
    before = client.attempts
    started = time.monotonic()
    calls = 0
    while calls < 100 or time.monotonic() - started < 0.5:  # several intervals, many calls
        fail(breaker)
        calls += 1
        time.sleep(0.002)
    elapsed = time.monotonic() - started
    # A refused connection fails at once: tries are INTERVAL apart, however slow the machine.
    assert 1 <= client.attempts - before <= elapsed / INTERVAL + 1


def test_one_warning_per_outage_and_one_info_line_per_breaker(
    server: Any, caplog: pytest.LogCaptureFixture, stores: Any
) -> None:
    """Two outages of one store, two breakers: the store warns once per outage and once
    per recovery; each breaker's fallback and hand-back are INFO lines, once each."""
    store = _store(stores)
    breakers = [CircuitBreaker(1000, name=n, store=store) for n in ("a", "b")]
    with caplog.at_level(logging.INFO, logger="resilient.redis"):
        for _ in range(2):
            server.stop()
            for _ in range(20):
                for breaker in breakers:
                    fail(breaker)
            server.start()
            _wait_for_retry()
            for breaker in breakers:
                breaker.call(ok)
                breaker.call(ok)
    down = _events(caplog, "breaker_store_unavailable")
    back = _events(caplog, "breaker_store_recovered")
    assert sorted(r.breaker for r in down) == ["a", "a", "b", "b"]
    assert sorted(r.breaker for r in back) == ["a", "a", "b", "b"]
    assert {r.levelno for r in down + back} == {logging.INFO}
    warnings = [  # the library's (in debug mode asyncio warns of its slow callbacks)
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("resilient")
    ]
    assert [r.event for r in warnings] == [  # type: ignore[attr-defined]
        "redis_store_unavailable",
        "redis_store_recovered",
    ] * 2
    assert warnings[0].getMessage().startswith("Redis store 'resilient' cannot reach Redis (")
    assert warnings[1].getMessage().startswith("Redis store 'resilient' reached Redis again")


# -- the budget ------------------------------------------------------------------------------


def test_the_budget_carries_on_locally_from_the_last_tokens_and_warns_once(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Down: a local budget starts from what Redis last said. Back: Redis's tokens again."""
    client = connect(server.url, socket_timeout=PATIENT)
    budget = RedisRetryBudget(client, "api", max_tokens=10, retry_interval=INTERVAL)
    for _ in range(3):
        assert budget.record_failure()
    assert budget.tokens == 7.0
    server.stop()
    with caplog.at_level(logging.INFO, logger="resilient.redis"):
        assert budget.record_failure() is True  # 6 > 5, locally
        assert budget.mode == "local"
        assert budget.record_failure() is False  # 5 > 5 is false
        assert budget.tokens == 5.0
        budget.record_success()
        server.start()
        _wait_for_retry()
        assert budget.tokens == 10.0  # the restarted (empty) Redis: a full bucket
        assert budget.mode == "redis"
    [down] = _events(caplog, "retry_budget_store_unavailable")
    assert down.getMessage().startswith("retry budget 'api' cannot reach Redis (ConnectionError")
    assert "a local budget starting from 7 token(s)" in down.getMessage()
    assert (down.budget, down.tokens, down.store_mode) == ("api", 7.0, "local")
    [back] = _events(caplog, "retry_budget_store_recovered")
    assert back.getMessage().startswith("retry budget 'api' reached Redis again after ")


def test_the_budget_never_waits_longer_than_the_socket_timeout(server: Any) -> None:
    """Frozen Redis: one spend waits out the timeout, the next ones are local at once."""
    client = CountingClient(connect(server.url, socket_timeout=TIMEOUT))
    budget = RedisRetryBudget(client, "api", retry_interval=INTERVAL)
    budget.record_failure()
    server.pause()
    frozen = Frozen(client)
    for _ in range(20):
        frozen.call(budget.record_failure)
    server.resume()
    frozen.assert_one_try_per_retry_interval()
    assert frozen.tries[0] == 1  # the first spend found Redis frozen
    assert frozen.at_once >= 20 - frozen.elapsed / (TIMEOUT + INTERVAL) - 1
