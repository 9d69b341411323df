"""Real processes, one Redis: one rate, one pause and one set of slots for all.

Four fresh worker processes (started once, reused by the tests of this module and of
test_redis_processes: the ``spawn_pool`` of conftest.py)
each build their own store and limiter on the session's server, meet at
barriers kept in Redis, and return what they saw. The workers are
module-level functions so a fresh process can import them.
"""

from __future__ import annotations

import itertools
import math
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from resilient import RateLimiter, RateLimitExceeded
from resilient.pacing import RatePolicy
from resilient.redis import RedisStore
from resilient.redis import connect as _connect
from resilient.redis._pacing import slot_keys

WORKERS = 4

# The rate claim: 4 processes x 2 threads, 200 units/s with bursts of 50, for 1.5 s.
RATE = 200.0
BURST = 50
DURATION = 1.5

pytestmark = pytest.mark.timeout(300)  # as the suite: a hang fails, a busy machine does not


def connect(url: str) -> Any:
    """A worker's client: a 5 s socket timeout, not the library's 1 s, which four busy
    processes on two shared cores can outlast (and then pace in a local fallback)."""
    return _connect(url, socket_timeout=5.0)


def barrier(client: Any, name: str, parties: int = WORKERS) -> None:
    """Wait until *parties* processes (workers, or workers and the test) reached *name*.

    Without polling: the last to arrive pushes a token per party, which each
    takes (BLPOP), so a process waiting for the others burns no CPU they need.
    """
    key = f"barrier:{name}"
    if client.incr(key) == parties:
        client.rpush(f"{key}:go", *["go"] * parties)
    deadline = time.monotonic() + 60.0
    while client.blpop([f"{key}:go"], timeout=1) is None:  # within the 5 s socket timeout
        if time.monotonic() > deadline:
            raise TimeoutError(f"barrier {name!r}: not every process arrived")


_runs = itertools.count()


@pytest.fixture
def pool(spawn_pool: ProcessPoolExecutor) -> ProcessPoolExecutor:
    """The WORKERS (4) processes of conftest.py, shared with the other module of
    processes: a barrier in each task keeps one task per process."""
    return spawn_pool


def _url(redis_client: Any) -> str:
    options = redis_client.connection_pool.connection_kwargs
    return f"redis://{options['host']}:{options['port']}/{options.get('db', 0)}"


def run_in_processes(
    pool: ProcessPoolExecutor,
    redis_client: Any,
    worker: Callable[..., Any],
    during: Callable[[str], None] | None = None,
) -> list[Any]:
    """Run ``worker(n, url, run)`` in the 4 processes at once; return what each returned."""
    run = f"run-{next(_runs)}"
    futures = [pool.submit(worker, n, _url(redis_client), run) for n in range(WORKERS)]
    if during is not None:
        during(run)
    return [future.result(timeout=240) for future in futures]


# -- one rate for the fleet ------------------------------------------------------------------


def _admit_for_a_while(n: int, url: str, run: str) -> list[tuple[float, float, float]]:
    """Two threads taking turns as fast as the shared rate allows, for DURATION seconds.

    Each turn is what ``RateLimiter.acquire`` does: one ``rate_reserve``,
    then one sleep of the wait it answers. The turn's slot on Redis's clock
    lies between the call's start plus the wait and its end plus the wait
    (this host's monotonic clock ticks with Redis's): both are returned, with
    the call's start (from then until its slot, the thread is asking).
    """
    client = connect(url)
    store = RedisStore(client)
    policy = RatePolicy(RATE, 1.0, BURST)
    barrier(client, f"{run}:ready")
    client.setnx(f"{run}:start", repr(time.monotonic() + 0.2))  # the first to arrive sets it
    start = float(client.get(f"{run}:start"))
    end = start + DURATION
    slots: list[tuple[float, float, float]] = []
    lock = threading.Lock()

    def take_turns() -> None:
        time.sleep(max(0.0, start - time.monotonic()))
        while True:
            sent = time.monotonic()
            reservation = store.rate_reserve(run, policy, 1.0, math.inf, sent)
            answered = time.monotonic()
            assert reservation.admitted
            with lock:
                slots.append((sent + reservation.wait, answered + reservation.wait, sent))
            if sent + reservation.wait >= end:
                return
            time.sleep(max(0.0, answered + reservation.wait - time.monotonic()))

    threads = [threading.Thread(target=take_turns) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    return slots


def test_4_processes_x_2_threads_admit_within_2_percent_of_rate_x_duration_plus_burst(
    pool: ProcessPoolExecutor, redis_client: Any
) -> None:
    """Fleet-wide turns over about 1.5 s of Redis time: burst + rate x t, within 2%.

    Counted over the span of the turns' own slots (each known to within its
    round trip), so a caller that wakes late changes nothing. The upper
    bound is GCRA's and holds whatever the machine does. The lower bound
    says the shared limiter wastes nothing while it is asked and answers
    promptly. Two kinds of time are left out of the span it counts, both
    measured in the run: time in which no thread was asking (all 8 stalled
    at once), and time inside a round trip that took over STALLED (Redis or
    the whole machine stalled; a normal round trip takes well under 1 ms): a
    GCRA limiter asked that late has refilled at most its burst and then
    drops the rest, turns it could never have granted. Wasting turns while
    threads ask and Redis answers promptly still fails. A run with less than
    a second left to count (the machine stalled for over half of it, at the
    start or inside) tells nothing either way: it runs again, 3 times at most.
    """
    counted = 0.0  # seconds of the run's span the lower bound counts
    for _ in range(3):
        reports = run_in_processes(pool, redis_client, _admit_for_a_while)
        slots = [slot for report in reports for slot in report]
        turns = len(slots)
        widest = max(hi for _, hi, _ in slots) - min(lo for lo, _, _ in slots)
        assert turns <= BURST + RATE * widest + 1e-6
        first, last = min(hi for _, hi, _ in slots), max(lo for lo, _, _ in slots)
        idle = _nobody_asking(slots, first, last)
        stalled = _stalled(slots, first, last)
        counted = last - first - idle - stalled
        if counted >= DURATION - 0.5:
            break
    else:
        pytest.fail(f"3 runs in a row stalled for over 0.5 s of {DURATION} s; the last: {counted}")
    expected = BURST + RATE * counted
    trips = sorted(hi - lo for lo, hi, _ in slots)
    assert turns >= 0.98 * expected, (turns, expected, idle, stalled, trips[len(trips) // 2])


# A round trip this long is a stall of Redis or of the machine, not the limiter's doing.
STALLED = 0.05


def _stalled(slots: list[tuple[float, float, float]], start: float, end: float) -> float:
    """Seconds of [start, end] inside some round trip that took longer than STALLED.

    A slot's bounds are its call's start and end plus the same wait, so
    ``hi - lo`` is the round trip, which ran from ``sent`` to ``sent + hi - lo``
    (within the time its thread was asking, so never counted as idle too).
    """
    slow = [(sent, sent + hi - lo) for lo, hi, sent in slots if hi - lo > STALLED]
    return _covered(slow, start, end)


def _nobody_asking(slots: list[tuple[float, float, float]], start: float, end: float) -> float:
    """Seconds of [start, end] in which no thread was asking for a turn.

    A thread asks from its call's start until its slot (the latest bound);
    then it sleeps to its slot and asks again, unless the machine stalls it.
    """
    asking = [(sent, hi) for _, hi, sent in slots]
    return max(0.0, (end - start) - _covered(asking, start, end))


def _covered(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of [start, end] inside the union of *intervals*."""
    covered, reach = 0.0, start
    for began, ended in sorted(intervals):
        began, ended = max(began, reach), min(ended, end)
        if ended > began:
            covered += ended - began
            reach = ended
    return covered


# -- a pause anywhere holds everywhere -----------------------------------------------------


Window = tuple[float, float]  # a call's start and end on this host's monotonic clock


def _pause_or_obey(n: int, url: str, run: str) -> tuple[bool, float, Window | None, Window]:
    """Process 0 pauses the shared limiter; the others, told so, try to acquire.

    Returns whether the acquire was admitted, the refusal's ``retry_after``,
    when the pause was called (process 0) and when the acquire was.
    """
    client = connect(url)
    limiter = RateLimiter(1000, burst=10, name=run, store=RedisStore(client))
    assert limiter.try_acquire()  # every process is admitted before the pause
    barrier(client, f"{run}:admitted")
    paused: Window | None = None
    if n == 0:
        began = time.monotonic()
        limiter.pause(30.0)  # a 429 with Retry-After: 30, seen by this process only
        paused = (began, time.monotonic())
    barrier(client, f"{run}:paused")
    began = time.monotonic()
    try:
        limiter.acquire(timeout=5.0)
    except RateLimitExceeded as refused:
        return False, refused.retry_after, paused, (began, time.monotonic())
    finally:
        client.close()
    return True, 0.0, paused, (began, time.monotonic())


def test_a_pause_in_one_process_stops_every_other_at_its_next_acquire(
    pool: ProcessPoolExecutor, redis_client: Any
) -> None:
    """Retry-After seen by one: the next acquire of each of the 4 refuses, for the pause's time.

    Each refusal's ``retry_after`` is the 30 s pause less the time between the
    pause and the refusal on Redis's clock, which lies between the calls'
    bounds measured on this host's monotonic clock (it ticks with Redis's):
    however long the machine stalled in between.
    """
    reports = run_in_processes(pool, redis_client, _pause_or_obey)
    assert [admitted for admitted, *_ in reports] == [False] * WORKERS
    [(paused_from, paused_to)] = [paused for _, _, paused, _ in reports if paused is not None]
    for _, retry_after, _, (asked_from, asked_to) in reports:
        late, early = asked_to - paused_from, max(0.0, asked_from - paused_to)
        assert 30.0 - late - 1e-3 <= retry_after <= 30.0 - early + 1e-3, reports


# -- a killed holder's slots come back ---------------------------------------------------------

LEASE_TTL = 1.0


# The holder: a fresh interpreter that imports only what it needs (a spawned
# multiprocessing child imports pytest and this module first: twice the CPU).
_HOLDER = """
import sys, time
from resilient import ConcurrencyLimit
from resilient.redis import RedisStore, connect
url, name, lease_ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
store = RedisStore(connect(url, socket_timeout=5.0))
limit = ConcurrencyLimit(3, name=name, lease_ttl=lease_ttl, store=store)
limit.__enter__()
limit.__enter__()
print("ready", flush=True)
time.sleep(600)  # until killed
"""


def _redis_now(client: Any) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


def test_a_process_killed_holding_slots_gives_them_back_after_lease_ttl(
    redis_client: Any,
) -> None:
    """SIGKILL while holding 2 of 3 slots: held until their leases end, free from then on."""
    started = _redis_now(redis_client)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, _url(redis_client), "pool", str(LEASE_TTL)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        # Bounded: a holder that hangs before taking its slots fails the test in a minute
        # (and is killed below), not at the suite's timeout.
        readable, _, _ = select.select([holder.stdout], [], [], 60.0)
        assert readable, "the holder did not take its slots within 60 s"
        assert holder.stdout.readline() == "ready\n", "the holder never took its slots"
        taken = _redis_now(redis_client)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        assert holder.stdout is not None
        holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    (key,) = slot_keys("resilient", "pool")
    leases = [score for _, score in redis_client.zrange(key, 0, -1, withscores=True)]
    assert len(leases) == 2
    # Each lease ends lease_ttl after it was taken, on Redis's clock.
    assert all(started + LEASE_TTL <= end <= taken + LEASE_TTL for end in leases)
    store = RedisStore(redis_client)
    mine = store.slot_acquire("pool", 3, 30.0, 0.0)  # the one slot left free
    assert mine is not None
    deadline = time.monotonic() + 30.0
    while True:
        before = _redis_now(redis_client)
        if store.slot_acquire("pool", 2, 30.0, 0.0) is not None:  # only once both are back
            break
        # Refused: the script ran after `before`, so the dead leases had not both ended.
        assert before < max(leases), "Redis's clock passed the leases' end, yet no slot came back"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert _redis_now(redis_client) >= max(leases)  # never before they ended
