"""Strictly private. The Redis half of the pacing primitives: Lua and a sans-IO core.

A shared ``RateLimiter`` is GCRA (the virtual-scheduling form of a token
bucket), the rule of ``resilient.pacing._Gcra`` run in Lua, line for line,
on one key per limiter holding its state: the *theoretical arrival time*
(TAT), the latest turn handed out, the pause and their bookkeeping. An
acquire of *cost* units is one script that reads it on Redis ``TIME`` and

- computes when the units conform: ``start = max(now, paused_until)``,
  ``tat = max(TAT, start) + cost * interval``, admitted at
  ``max(tat - tolerance, start)``, where ``interval = per / rate`` and
  ``tolerance = burst * interval``;
- if the wait until then is within the caller's limit, *reserves* it and
  answers the wait with the reservation's record (its *turn*): the caller
  sleeps that long, once, and goes;
- otherwise answers the wait without reserving anything, so a caller that
  gives up (``timeout``, a deadline, ``try_acquire``) costs the others nothing.

A ``pause`` (by any process) moves every turn not yet reached, and the TAT,
later by the time it adds. Every answer carries the pause's end (the *mark*
``paused_until``, on Redis time) and a reservation its own mark (the later
of that and Redis's time): a limiter that has seen, in any answer, a pause
ending after its waiter's mark knows that pause was ordered after the
reservation, and only then runs ``RATE_CONFIRM`` at the waiter's turn, which
answers how much longer to wait. The mark orders pauses across the key's
expiry too: the key outlives its pause by a second, so a pause ordered after
it expired ends later than any pause before.
``refund`` (and a cancelled wait) gives units of one reservation back,
moving the TAT back only as far as the turns handed out since allow. The
key expires a second after its last moment that matters, so an idle
limiter leaves nothing in Redis.

Because every admission is a reservation of its own stretch of one
timeline, admitted units (less those refunded) over any interval of length
*t* never exceed ``burst + rate * t / per`` across all processes, and a
caller wakes at its turn or later (the answer's trip back only delays it).

A shared ``ConcurrencyLimit`` slot is a lease: a member of a sorted set scored
by its expiry on Redis time (``now + lease_ttl``). Acquiring drops the expired
leases, then adds one if fewer than ``limit`` remain; releasing removes it. A
process killed while holding slots (SIGKILL, a lost host) cannot release them:
they come back when their leases expire, ``lease_ttl`` after they were taken.

Keys carry the hash tag ``{namespace:name}``, as the breaker's do, so in a
Redis Cluster every key a script touches is in one slot, and every script
names its keys in ``KEYS`` (none is built inside Lua):

- ``{namespace:name}:rate``   the limiter's state (a string of 7 numbers)
- ``{namespace:name}:slots``  the leases (a sorted set, token -> expiry)
- ``{namespace:name}:probe``  written by the hand-back probe after an outage

Times are seconds as doubles: Redis ``TIME`` (about 1.8e9 s) keeps
sub-microsecond resolution in a double. ``ARGV[1]`` is ``""`` to read Redis
``TIME``, or a clock reading (tests on a ``ManualClock``), as the breaker
scripts take it. Replies are one string of space-separated fields.
"""

from __future__ import annotations

import collections
import itertools
import math
import os
import time
import weakref
from typing import Any, NamedTuple

from resilient._compat import seconds
from resilient._redact import describe_error, error_fields
from resilient.pacing import MemoryPacingStore, RatePolicy, Reservation
from resilient.redis._fallback import Fallback, logger
from resilient.redis._settings import (
    OUTAGE_ERRORS,
    STORE_ERRORS,
    WRITES_REFUSED,
    Op,
    StoreMode,
)

__all__ = [
    "PACING_PROBE",
    "RATE_ACQUIRE",
    "RATE_CONFIRM",
    "RATE_PAUSE",
    "RATE_REFUND",
    "SLOT_ACQUIRE",
    "SLOT_RELEASE",
    "Grant",
    "Lease",
    "PacingCore",
    "PacingLane",
    "RatePlan",
    "SlotPlan",
    "async_only",
    "probe_args",
    "rate_keys",
    "read_confirm",
    "read_grant",
    "read_lease",
    "read_pause",
    "read_turn",
    "slot_keys",
    "sync_only",
]

# -- the scripts ------------------------------------------------------------------

_NOW = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
local function fmt(x) return string.format('%.17g', x) end
local function ms(seconds) return math.ceil(seconds * 1000) + 1 end
"""

_STATE = """
-- One limiter's state, one string: tat amax refunded paused shift episode episode_shift
-- (see resilient.pacing._Gcra: the same rule, line for line). NONE stands for "never".
local NONE = -1e300
local function load(key)
  local f = {}
  local v = redis.call('GET', key)
  if v then
    for x in string.gmatch(v, '%S+') do f[#f + 1] = tonumber(x) end
  end
  return {tat = f[1] or NONE, amax = f[2] or NONE, refunded = f[3] or 0,
          paused = f[4] or NONE, shift = f[5] or 0, episode = f[6] or NONE,
          episode_shift = f[7] or 0}
end
local function save(key, s)
  -- Kept a second past the last moment it matters (a waiter confirming late finds it).
  local last = math.max(s.tat, s.amax, s.paused)
  redis.call('SET', key, fmt(s.tat) .. ' ' .. fmt(s.amax) .. ' ' .. fmt(s.refunded) .. ' '
             .. fmt(s.paused) .. ' ' .. fmt(s.shift) .. ' ' .. fmt(s.episode) .. ' '
             .. fmt(s.episode_shift), 'PX', math.max(ms(last - now), 1) + 1000)
end
-- A reservation's record: end at refunded shift units.
local function turn_out(t)
  return fmt(t[1]) .. ' ' .. fmt(t[2]) .. ' ' .. fmt(t[3]) .. ' ' .. fmt(t[4]) .. ' ' .. fmt(t[5])
end
local function turn_in(text)
  local t = {}
  for x in string.gmatch(text, '%S+') do t[#t + 1] = tonumber(x) end
  return t
end
local function catch_up(s, t)
  if s.shift <= t[4] then return t end
  local moved
  if t[4] > s.episode_shift then
    moved = true
  elseif t[4] == s.episode_shift then
    moved = t[2] > s.episode
  else
    moved = t[2] + (s.episode_shift - t[4]) > s.episode
  end
  if moved then
    local added = s.shift - t[4]
    t[1] = t[1] + added
    t[2] = t[2] + added
  end
  t[4] = s.shift
  return t
end
"""

RATE_ACQUIRE = (
    _NOW
    + _STATE
    + """
-- KEYS: state. ARGV: now, interval, tolerance, cost, max wait (< 0: none). Answers
-- 'admitted wait paused_for paused_until mark' and, if admitted, the reservation's record.
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local s = load(KEYS[1])
local start = now
local paused = 0
if s.paused > now then
  start = s.paused
  paused = s.paused - now
end
local tat = s.tat
if tat < start then tat = start end
tat = tat + cost * interval
local at = tat - tolerance
if at < start then at = start end
local wait = at - now
if wait <= 1e-9 then wait = 0 end  -- float noise is no wait
local marks = ' ' .. fmt(paused) .. ' ' .. fmt(s.paused) .. ' ' .. fmt(math.max(s.paused, now))
if max_wait >= 0 and wait > max_wait then
  return '0 ' .. fmt(wait) .. marks
end
s.tat = tat
if at > s.amax then s.amax = at end
save(KEYS[1], s)
local turn = turn_out({tat, at, s.refunded, s.shift, cost})
return '1 ' .. fmt(wait) .. marks .. ' ' .. turn
"""
)
"""Reserve *cost* units if they conform within the wait allowed; answer ``admitted wait paused``."""

RATE_CONFIRM = (
    _NOW
    + _STATE
    + """
-- KEYS: state. ARGV: now, the record. A waiter whose wait has passed: answers the wait a
-- pause ordered meanwhile added (0: go), the marks (paused_until, the record's) and the
-- record, moved with its turn.
local s = load(KEYS[1])
local t = catch_up(s, turn_in(ARGV[2]))
local wait = t[2] - now
if wait <= 1e-9 then wait = 0 end
return fmt(wait) .. ' ' .. fmt(s.paused) .. ' ' .. fmt(math.max(s.paused, now)) .. ' '
       .. turn_out(t)
"""
)
"""Confirm a waiter's turn at its end: go, or wait what a pause added."""

RATE_REFUND = (
    _NOW
    + _STATE
    + """
-- KEYS: state. ARGV: now, interval, cost, the record. Gives back up to cost units of that
-- reservation, as far as the turns handed out since allow; answers the updated record.
local interval = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local s = load(KEYS[1])
local t = catch_up(s, turn_in(ARGV[4]))
if s.refunded < t[3] then return turn_out(t) end  -- a record of state since expired
local finish = t[1] - (s.refunded - t[3])
t[1] = finish
t[3] = s.refunded
if t[5] < cost then cost = t[5] end
local back = cost * interval
if s.tat - now < back then back = s.tat - now end
local last = s.tat - finish <= 1e-9
if not last and finish - s.amax < back then back = finish - s.amax end
if back <= 0 then return turn_out(t) end
s.tat = s.tat - back
if not last then s.refunded = s.refunded + back end
save(KEYS[1], s)
return turn_out({finish - back, t[2], s.refunded, t[4], t[5] - back / interval})
"""
)
"""Give back units of one reservation: the TAT moves back as far as the bound allows."""

RATE_PAUSE = (
    _NOW
    + _STATE
    + """
-- KEYS: state. ARGV: now, seconds. A pause only ever lengthens; turns handed out and not
-- yet reached move later by what it adds. Answers what remains of it, and its end (the mark).
local seconds = tonumber(ARGV[2])
local s = load(KEYS[1])
local until_ = now + seconds
if seconds > 0 and until_ > s.paused then
  local added
  if s.paused <= now then
    s.episode = now
    s.episode_shift = s.shift
    added = seconds
  else
    added = until_ - s.paused
  end
  s.shift = s.shift + added
  s.paused = until_
  if s.amax > now then
    s.tat = s.tat + added
    s.amax = s.amax + added
  end
  save(KEYS[1], s)
end
return fmt(math.max(s.paused - now, 0)) .. ' ' .. fmt(s.paused)
"""
)
"""Admit nobody for *seconds* (or longer, if a longer pause is in force); move the waiters."""

SLOT_ACQUIRE = (
    _NOW
    + """
-- KEYS: slots. ARGV: now, limit, lease ttl, token. Answers 'admitted held free_in'.
local limit = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now))
local held = redis.call('ZCARD', KEYS[1])
if held < limit then
  redis.call('ZADD', KEYS[1], fmt(now + ttl), ARGV[4])
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', KEYS[1], ms(tonumber(last[2]) - now))
  return '1 ' .. (held + 1) .. ' 0'
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return '0 ' .. held .. ' ' .. fmt(tonumber(first[2]) - now)
"""
)
"""Lease a slot if fewer than *limit* unexpired leases are out."""

SLOT_RELEASE = """
-- KEYS: slots. ARGV: token. 1: released; 0: the lease had expired (or was never there).
return redis.call('ZREM', KEYS[1], ARGV[1])
"""
"""Give a leased slot back."""

PACING_PROBE = """
-- Before handing a limiter back to Redis after an outage: its data key must hold
-- the right type, and a write must succeed (a read-only replica, or a server out
-- of memory, answers reads and refuses writes). KEYS: data key, probe key. ARGV: type.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= ARGV[1] then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. kind .. ', not a '
                           .. ARGV[1])
end
redis.call('SET', KEYS[2], '1', 'PX', 1000)
return 1
"""
"""Check a limiter's key and that Redis takes writes; raises WRONGTYPE otherwise."""

_UNLIMITED = b"-1"
_NEVER = -1e299  # the scripts write "never" as -1e300


# -- keys -------------------------------------------------------------------------


def rate_keys(namespace: str, name: str) -> tuple[str]:
    """The key of rate limiter *name*: its state (the TAT, the pause and their bookkeeping)."""
    return (f"{{{namespace}:{name}}}:rate",)


def slot_keys(namespace: str, name: str) -> tuple[str]:
    """The key of concurrency limit *name*: its leases."""
    return (f"{{{namespace}:{name}}}:slots",)


def probe_args(data_key: str) -> tuple[tuple[str, str], tuple[bytes]]:
    """Keys and arguments of ``PACING_PROBE`` for a limiter whose data is *data_key*."""
    kind = b"zset" if data_key.endswith(":slots") else b"string"
    return (data_key, data_key.rsplit(":", 1)[0] + ":probe"), (kind,)


# -- what to send -----------------------------------------------------------------


def _now(now: float | None) -> bytes:
    return b"" if now is None else repr(float(now)).encode()


class RatePlan:
    """Strictly private. One shared limiter's settings, encoded once for its scripts."""

    __slots__ = ("_interval", "_tolerance", "burst", "interval", "keys", "per", "rate")

    def __init__(self, namespace: str, name: str, rate: float, per: float, burst: float) -> None:
        self.keys = rate_keys(namespace, name)
        self.rate = float(rate)
        self.per = float(per)
        self.burst = float(burst)
        self.interval = self.per / self.rate
        """Seconds one unit takes to come back."""
        self._interval = repr(self.interval).encode()
        self._tolerance = repr(self.burst * self.interval).encode()

    def acquire_args(
        self, now: float | None, cost: float, max_wait: float | None
    ) -> tuple[bytes, ...]:
        """``RATE_ACQUIRE``'s arguments.

        *now* ``None`` reads Redis ``TIME``; *max_wait* ``None`` or infinite: no limit.
        """
        limit = (
            _UNLIMITED
            if max_wait is None or math.isinf(max_wait)
            else repr(max(0.0, float(max_wait))).encode()
        )
        return (_now(now), self._interval, self._tolerance, repr(float(cost)).encode(), limit)

    def refund_args(self, now: float | None, cost: float, turn: str) -> tuple[bytes, ...]:
        """``RATE_REFUND``'s arguments."""
        return (_now(now), self._interval, repr(float(cost)).encode(), turn.encode())

    @staticmethod
    def confirm_args(now: float | None, turn: str) -> tuple[bytes, ...]:
        """``RATE_CONFIRM``'s arguments."""
        return (_now(now), turn.encode())

    @staticmethod
    def pause_args(now: float | None, seconds: float) -> tuple[bytes, ...]:
        """``RATE_PAUSE``'s arguments."""
        return (_now(now), repr(float(seconds)).encode())


class SlotPlan:
    """Strictly private. One shared concurrency limit: its key and its lease ids."""

    __slots__ = ("_prefix", "_serial", "keys")

    def __init__(self, namespace: str, name: str) -> None:
        self.keys = slot_keys(namespace, name)
        # Lease ids unique across processes and hosts: random per plan, then a count.
        self._prefix = os.urandom(8).hex() + ":"
        self._serial = itertools.count(1)

    def token(self) -> str:
        """A new lease id (``itertools.count`` is atomic under the GIL)."""
        return self._prefix + str(next(self._serial))

    @staticmethod
    def acquire_args(
        now: float | None, limit: int, lease_ttl: float, token: str
    ) -> tuple[bytes, ...]:
        """``SLOT_ACQUIRE``'s arguments."""
        return (
            _now(now),
            str(int(limit)).encode(),
            repr(float(lease_ttl)).encode(),
            token.encode(),
        )


# -- what a reply means -----------------------------------------------------------


class Grant(NamedTuple):
    """What ``RATE_ACQUIRE`` answered.

    Attributes:
        admitted: the units are reserved; go after *wait*.
        wait: seconds from now until the units conform (the slot reserved if
            admitted, or the slot the caller would have had if not).
        paused_for: seconds of pause left when the script ran (0: none).
        paused_until: the end of the latest pause, on Redis time (``-inf``:
            none): a mark (see ``resilient.pacing.Reservation``).
        mark: the reservation's mark: the later of *paused_until* and Redis
            time when the script ran.
        turn: if admitted, the reservation's record (for confirm and refund).
    """

    admitted: bool
    wait: float
    paused_for: float
    paused_until: float
    mark: float
    turn: str | None = None


class Lease(NamedTuple):
    """What ``SLOT_ACQUIRE`` answered.

    Attributes:
        admitted: a slot is leased to the caller's token.
        held: unexpired leases now, the caller's included if admitted.
        free_in: if refused, seconds until the oldest lease expires (a slot
            may come back earlier, when its holder releases it).
    """

    admitted: bool
    held: int
    free_in: float


def _fields(reply: object) -> list[bytes | str]:
    if isinstance(reply, (bytes, str)):
        return list(reply.split())
    return [str(reply)]


def _mark(field: bytes | str) -> float:
    """A mark; the scripts' "never" (-1e300) is ``-inf``."""
    value = float(field)
    return value if value > _NEVER else -math.inf


def read_grant(reply: object) -> Grant:
    """Decode ``RATE_ACQUIRE``'s answer."""
    admitted, wait, paused, until, mark, *turn = _fields(reply)
    record = " ".join(_text(field) for field in turn) if turn else None
    return Grant(
        int(admitted) == 1,
        max(0.0, float(wait)),
        float(paused),
        _mark(until),
        _mark(mark),
        record,
    )


def read_confirm(reply: object) -> Reservation:
    """Decode ``RATE_CONFIRM``'s answer: the wait left, the marks, and the record."""
    wait, until, mark, *turn = _fields(reply)
    record = " ".join(_text(field) for field in turn)
    return Reservation(True, max(0.0, float(wait)), record, _mark(until), _mark(mark))


def read_pause(reply: object) -> float:
    """Decode ``RATE_PAUSE``'s answer: where the pause in force ends, as a mark."""
    return _mark(_fields(reply)[1])


def read_turn(reply: object) -> str:
    """Decode ``RATE_REFUND``'s answer: the record."""
    return " ".join(_text(field) for field in _fields(reply))


def _text(field: bytes | str) -> str:
    return field.decode() if isinstance(field, bytes) else field


def read_lease(reply: object) -> Lease:
    """Decode ``SLOT_ACQUIRE``'s answer."""
    admitted, held, free_in = _fields(reply)
    return Lease(int(admitted) == 1, int(held), max(0.0, float(free_in)))


# -- the store's pacing half, without its I/O ----------------------------------------

_LOCAL = "local:"  # lease ids of the local fallback's slots start with this
_UNGUARDED = "unguarded"  # the lease id under on_store_error="closed"
_WHAT = {
    "local": "it paces this process alone, at the same settings,",
    "open": "it admits nothing (on_store_error='open')",
    "closed": "it admits every call at once, unpaced (on_store_error='closed'),",
}


class PacingLane:
    """Strictly private. One limiter name in one Redis store: its plans and its mode."""

    __slots__ = ("down_since", "down_until", "kind", "mode", "name", "rate", "slots", "unsure")

    def __init__(self, namespace: str, name: str) -> None:
        self.name = name
        self.rate: RatePlan | None = None
        self.slots = SlotPlan(namespace, name)
        self.unsure: list[str] = []
        """Leases whose script was sent but whose answer was lost: Redis may hold them."""
        self.kind = "limiter"
        self.mode: StoreMode = "redis"
        self.down_since = 0.0
        self.down_until = 0.0  # this name's own outage (an error of its keys)

    def rate_plan(self, namespace: str, policy: RatePolicy) -> RatePlan:
        """The encoded arguments of *policy*, rebuilt only when the policy changes."""
        plan = self.rate
        if plan is None or (plan.rate, plan.per, plan.burst) != policy:
            plan = self.rate = RatePlan(namespace, self.name, *policy)
        return plan


class _Claim:
    """Strictly private. What a limiter keeps so that its name's state stays (see ``claim``)."""

    __slots__ = ("__weakref__",)


class PacingCore:
    """Strictly private. The pacing half of a Redis store: ``PacingStore``'s operations as ops.

    Each operation is a generator (``Op``, as the breaker's in ``_core``): it
    yields the script to send and receives the reply, or the driver's error.
    Outages are the store's (``Fallback``): one that a breaker saw is one
    that the limiters see, one WARNING for the store, and Redis is tried
    again once per ``retry_interval`` for all of them. Meanwhile each name
    follows ``on_store_error``: ``"local"`` paces this process alone with
    ``MemoryPacingStore`` at the same settings; ``"open"`` admits nothing;
    ``"closed"`` admits everything at once.
    """

    __slots__ = (
        "_acquire",
        "_claims",
        "_confirm",
        "_dropped",
        "_fb",
        "_lanes",
        "_local",
        "_pause",
        "_probe",
        "_redis_time",
        "_refund",
        "_release",
        "_slot",
        "namespace",
    )

    def __init__(self, client: Any, namespace: str, fallback: Fallback, redis_time: bool) -> None:
        self.namespace = namespace
        self._fb = fallback
        self._redis_time = redis_time
        self._acquire = client.register_script(RATE_ACQUIRE)
        self._refund = client.register_script(RATE_REFUND)
        self._confirm = client.register_script(RATE_CONFIRM)
        self._pause = client.register_script(RATE_PAUSE)
        self._slot = client.register_script(SLOT_ACQUIRE)
        self._release = client.register_script(SLOT_RELEASE)
        self._probe = client.register_script(PACING_PROBE)
        self._lanes: dict[str, PacingLane] = {}
        self._local = MemoryPacingStore()
        self._claims: dict[str, set[weakref.ref[object]]] = {}
        self._dropped: collections.deque[tuple[str, weakref.ref[object]]] = collections.deque()

    def claim(self, name: str) -> object:
        """Keep what this core holds for limiter *name* while the returned object lives.

        A ``RateLimiter`` or ``ConcurrencyLimit`` keeps it: once every one of
        that name is gone, the name's lane (its plans, its mode, the leases
        whose answer was lost: Redis lets those expire) and its local
        fallback's state are released, so limiters built per tenant and
        dropped do not grow the store for ever.
        """
        claim: object = _Claim()
        dropped = self._dropped
        ref: weakref.ref[object] = weakref.ref(claim, lambda gone: dropped.append((name, gone)))
        with self._fb.lock:
            self._sweep()
            self._claims.setdefault(name, set()).add(ref)
        return claim

    def _sweep(self) -> None:
        """Release the names whose limiters are all gone (under the lock)."""
        dropped = self._dropped
        while dropped:
            name, ref = dropped.popleft()
            claims = self._claims.get(name)
            if claims is None or ref not in claims:
                continue
            claims.discard(ref)
            if not claims:
                del self._claims[name]
                self._lanes.pop(name, None)
                self._local._forget(name)  # pyright: ignore[reportPrivateUsage]

    def mode(self, name: str) -> StoreMode:
        """Where the state of limiter *name* lives now, in this process."""
        lane = self._lanes.get(name)
        return "redis" if lane is None else lane.mode

    def lane(self, name: str) -> PacingLane:
        """The lane of *name*, made on first use."""
        lane = self._lanes.get(name)
        if lane is None:
            with self._fb.lock:
                lane = self._lanes.get(name)
                if lane is None:
                    lane = self._lanes[name] = PacingLane(self.namespace, name)
        return lane

    # -- the operations ---------------------------------------------------------------

    def reserve_op(
        self, name: str, policy: RatePolicy, cost: float, max_wait: float, now: float
    ) -> Op[Reservation]:
        """``PacingStore.rate_reserve``: one script, the wait it answers."""
        lane = self.lane(name)
        lane.kind = "rate limiter"
        plan = lane.rate_plan(self.namespace, policy)
        args = plan.acquire_args(self._now(now), cost, max_wait)
        reply = yield from self._run(lane, self._acquire, plan.keys, args, plan.keys[0])
        if reply is None:
            mode = lane.mode
            if mode == "local":
                local = self._local.rate_reserve(name, policy, cost, max_wait, now)
                turn = None if local.turn is None else _LOCAL + local.turn
                return local._replace(turn=turn)
            if mode == "open":
                return Reservation(False, self._retry_in(lane))
            return Reservation(True, 0.0)
        grant = read_grant(reply)
        mark = grant.mark if grant.admitted else None
        return Reservation(grant.admitted, grant.wait, grant.turn, grant.paused_until, mark)

    def confirm_op(self, name: str, policy: RatePolicy, turn: str, now: float) -> Op[Reservation]:
        """``PacingStore.rate_confirm``: a waiter at its turn, a pause known since its
        reservation: how much longer it waits."""
        if turn.startswith(_LOCAL):  # a turn of the fallback: it answers, no round trip
            local = self._local.rate_confirm(name, policy, turn[len(_LOCAL) :], now)
            return local._replace(turn=_LOCAL + str(local.turn))
        lane = self.lane(name)
        plan = lane.rate_plan(self.namespace, policy)
        args = plan.confirm_args(self._now(now), turn)
        reply = yield from self._run(lane, self._confirm, plan.keys, args, plan.keys[0])
        if reply is None:  # Redis cannot say: the turn it handed out stands
            return Reservation(True, 0.0, turn)
        return read_confirm(reply)

    def refund_op(
        self, name: str, policy: RatePolicy, cost: float, now: float, turn: str | None
    ) -> Op[str | None]:
        """``PacingStore.rate_refund``: conditional on the turns handed out since *turn*."""
        if turn is None:
            return None
        if turn.startswith(_LOCAL):
            local = self._local.rate_refund(name, policy, cost, now, turn[len(_LOCAL) :])
            return None if local is None else _LOCAL + local
        lane = self.lane(name)
        plan = lane.rate_plan(self.namespace, policy)
        args = plan.refund_args(self._now(now), cost, turn)
        reply = yield from self._run(lane, self._refund, plan.keys, args, plan.keys[0])
        return turn if reply is None else read_turn(reply)

    def pause_op(
        self, name: str, policy: RatePolicy, seconds: float, now: float
    ) -> Op[float | None]:
        """``PacingStore.rate_pause``: every process's next acquire reads it; the answer is
        the pause's end, the mark that tells this process's waiters to confirm."""
        lane = self.lane(name)
        plan = lane.rate_plan(self.namespace, policy)
        args = plan.pause_args(self._now(now), seconds)
        reply = yield from self._run(lane, self._pause, plan.keys, args, plan.keys[0])
        if reply is None:
            if lane.mode == "local":
                self._local.rate_pause(name, policy, seconds, now)
            return None
        return read_pause(reply)

    def slot_op(self, name: str, limit: int, lease_ttl: float, now: float) -> Op[str | None]:
        """``PacingStore.slot_acquire``: a lease in Redis, or ``None`` at once."""
        lane = self.lane(name)
        lane.kind = "concurrency limit"
        token = lane.slots.token()
        args = lane.slots.acquire_args(self._now(now), limit, lease_ttl, token)
        keys = lane.slots.keys
        reply = yield from self._run(lane, self._slot, keys, args, keys[0], unsure=token)
        if reply is None:
            mode = lane.mode
            if mode == "local":
                lease = self._local.slot_acquire(name, limit, lease_ttl, now)
                return None if lease is None else _LOCAL + lease
            return None if mode == "open" else _UNGUARDED
        return token if read_lease(reply).admitted else None

    def release_op(self, name: str, lease: str, now: float) -> Op[None]:
        """``PacingStore.slot_release``. A lease of the fallback goes back to it."""
        if lease == _UNGUARDED:
            return
        if lease.startswith(_LOCAL):
            self._local.slot_release(name, lease[len(_LOCAL) :], now)
            return
        lane = self.lane(name)
        keys = lane.slots.keys
        reply = yield from self._run(lane, self._release, keys, (lease.encode(),), keys[0])
        if reply is None:  # not sent, or its answer lost: dropped once Redis answers again
            with self._fb.lock:
                lane.unsure.append(lease)

    # -- one round trip, or the fallback ----------------------------------------------

    def _now(self, now: float) -> float | None:
        return None if self._redis_time else now

    def _run(
        self,
        lane: PacingLane,
        script: Any,
        keys: tuple[str, ...],
        args: tuple[bytes, ...],
        data: str,
        *,
        unsure: str | None = None,
    ) -> Op[Any]:
        """Run *script*; ``None`` when Redis cannot answer (``on_store_error`` decides).

        *unsure*: the lease the script takes or drops. If the answer is lost
        (a socket timeout: the script may have run), the lease is released
        when Redis answers again, rather than held by nobody for its ttl.
        """
        if self._fb.down_until or lane.mode != "redis":
            handed_back = yield from self._hand_back(lane, data)
            if not handed_back:
                return None
        try:
            return (yield (script, keys, args))
        except STORE_ERRORS as error:
            if unsure is not None:
                with self._fb.lock:
                    lane.unsure.append(unsure)
            self._failed(lane, error)
            return None

    def _hand_back(self, lane: PacingLane, data: str) -> Op[bool]:
        """During an outage: whether this call may use Redis (one call per interval probes)."""
        fb = self._fb
        if fb.down_until:
            if not fb.may_try():
                if lane.mode == "redis":
                    self._fall_back(lane, fb.outage, store_wide=True)
                return False
        elif lane.down_until and not self._lane_may_try(lane):
            return False
        probe_keys, probe_args_ = probe_args(data)
        try:
            yield (self._probe, probe_keys, probe_args_)
        except STORE_ERRORS as error:
            if not isinstance(error, OUTAGE_ERRORS):
                fb.store_recovered()  # Redis answered: only this name's keys fail
            self._failed(lane, error)
            return False
        fb.store_recovered()
        with fb.lock:
            lane.down_until = 0.0
            unsure, lane.unsure = lane.unsure, []
        for index, lease in enumerate(unsure):  # the leases Redis may hold for nobody
            try:
                yield (self._release, lane.slots.keys, (lease.encode(),))
            except STORE_ERRORS as error:
                with fb.lock:
                    lane.unsure.extend(unsure[index:])
                self._failed(lane, error)
                return False
        if lane.mode != "redis":
            self._recovered(lane)
        return True

    def _retry_in(self, lane: PacingLane) -> float:
        """Seconds until Redis is tried again for *lane* (the wait an ``"open"`` refusal gives)."""
        return max(max(self._fb.down_until, lane.down_until) - time.monotonic(), 1e-3)

    def _lane_may_try(self, lane: PacingLane) -> bool:
        if time.monotonic() < lane.down_until:
            return False
        with self._fb.lock:
            t = time.monotonic()
            if t < lane.down_until:
                return False
            lane.down_until = t + self._fb.retry_interval
            return True

    def _failed(self, lane: PacingLane, error: BaseException) -> None:
        store_wide = isinstance(error, OUTAGE_ERRORS)
        if store_wide:
            self._fb.store_failed(error)
        else:
            with self._fb.lock:
                lane.down_until = time.monotonic() + self._fb.retry_interval
        self._fall_back(lane, error, store_wide=store_wide)

    def _fall_back(
        self, lane: PacingLane, error: BaseException | None, *, store_wide: bool
    ) -> None:
        """Hand *lane* to ``on_store_error``; one line per name per outage."""
        with self._fb.lock:
            if lane.mode != "redis":
                return
            lane.mode = self._fb.mode
            lane.down_since = time.monotonic()
        mode = lane.mode
        refused = isinstance(error, WRITES_REFUSED)
        extra: dict[str, object] = {
            "event": "pacing_store_unavailable" if store_wide else "pacing_store_command_failed",
            "limiter": lane.name,
            "store_mode": mode,
            "scope": "store" if store_wide else "limiter",
            "retry_in": self._fb.retry_interval,
        }
        described = "an earlier error"
        if error is not None:
            extra["error_type"], extra["error"] = error_fields(error)
            described = describe_error(error)
        if store_wide:
            # The store's own WARNING says it once per outage; each limiter's line is detail.
            logger.info(
                "%s %r cannot %s Redis (%s): %s until %s; retrying Redis every %s s",
                lane.kind,
                lane.name,
                "write to" if refused else "reach",
                described,
                _WHAT[mode],
                "a write to Redis succeeds again" if refused else "Redis answers again",
                seconds(self._fb.retry_interval),
                extra=extra,
            )
        else:
            extra["keys"] = [*lane.slots.keys, *rate_keys(self.namespace, lane.name)]
            logger.warning(
                "%s %r: a Redis script on its keys failed (%s): %s until its keys work "
                "again; the rest of this store keeps using Redis; retrying every %s s",
                lane.kind,
                lane.name,
                described,
                _WHAT[mode],
                seconds(self._fb.retry_interval),
                extra=extra,
            )

    def _recovered(self, lane: PacingLane) -> None:
        with self._fb.lock:
            if lane.mode == "redis":
                return
            was = lane.mode
            lane.mode = "redis"
            outage = time.monotonic() - lane.down_since
        logger.info(
            "%s %r reached Redis again after %s s: it is shared through Redis again%s",
            lane.kind,
            lane.name,
            seconds(round(outage, 3)),
            "; the local pacing state is dropped" if was == "local" else "",
            extra={
                "event": "pacing_store_recovered",
                "limiter": lane.name,
                "store_mode": "redis",
                "previous_mode": was,
                "outage_seconds": round(outage, 6),
            },
        )


def sync_only(form: str) -> TypeError:
    """The error of an async form given a ``RedisStore``, naming what to use instead."""
    return TypeError(
        f"RedisStore runs its scripts synchronously, so {form} would block the event loop "
        "on every round trip: give the limiter an AsyncRedisStore (on a redis.asyncio "
        "client) for the async forms, or use the sync forms (acquire, with) with RedisStore"
    )


def async_only(form: str) -> TypeError:
    """The error of a sync form given an ``AsyncRedisStore``, naming what to use instead."""
    return TypeError(
        "AsyncRedisStore awaits its scripts on a redis.asyncio client, which a sync form "
        f"cannot do: use {form} in async code, or give the limiter a RedisStore (on a "
        "synchronous client) for the sync forms"
    )
