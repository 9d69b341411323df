"""Strictly private. What a Redis store decides while Redis cannot serve a breaker.

No I/O: the store's drivers report that a script failed (``failed``) or that
Redis answered again (``store_recovered``, ``recovered``), and this module
decides who falls back (every breaker of the store for an outage of the
server, one breaker for an error of its keys), what the fallback answers
(``on_store_error``: a local breaker seeded from Redis's last answer, reject,
or let through), when Redis is tried again (one call per ``retry_interval``),
and what is logged (one WARNING per outage) and told to the mode watchers.
"""

from __future__ import annotations

import logging
import threading
import time

from resilient._breaker_state import (
    Admission,
    BreakerPolicy,
    CircuitState,
    MemoryStore,
    Transition,
)
from resilient._compat import name_of, seconds
from resilient._redact import describe_error, error_fields, log_with_traceback
from resilient.redis._lane import UNKNOWN, Lane
from resilient.redis._settings import OUTAGE_ERRORS, WRITES_REFUSED, FallbackMode, StoreMode

__all__ = ["ADMIT_CLOSED", "Fallback"]

logger = logging.getLogger("resilient.redis")

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN
ADMIT_CLOSED = Admission(True, None, _CLOSED, 0.0)
_FALLBACK_WHAT = {
    "local": "an in-process breaker with the same settings decides for this process",
    "open": "calls are rejected (on_store_error='open')",
    "closed": "calls go through unguarded (on_store_error='closed')",
}
# The store's own line speaks for its breakers and its limiters (``_pacing``) alike.
_STORE_WHAT = {
    **_FALLBACK_WHAT,
    "local": "in-process ones with the same settings decide for this process",
}


class Fallback:
    """Strictly private. The outages of one store and the fallback of its breakers.

    ``down_until`` (``time.monotonic()``) is when Redis is tried again after
    an outage of the server; each lane has its own for an error of its keys.
    Every change happens under the store's *lock*, never across a round trip.
    """

    __slots__ = (
        "down_until",
        "local",
        "lock",
        "mode",
        "namespace",
        "outage",
        "outage_since",
        "redis_time",
        "retry_interval",
    )

    def __init__(
        self,
        namespace: str,
        mode: FallbackMode,
        retry_interval: float,
        redis_time: bool,
        lock: threading.Lock,
    ) -> None:
        self.namespace = namespace
        self.mode: FallbackMode = mode
        self.retry_interval = retry_interval
        self.redis_time = redis_time
        self.lock = lock
        self.local = MemoryStore()
        self.down_until = 0.0
        self.outage: BaseException | None = None
        self.outage_since = 0.0

    def forget(self, name: str) -> None:
        """Drop the local breaker of *name*: every breaker of that name is gone."""
        self.local.discard(name)

    def now_for_cache(self, now: float) -> float:
        """The clock a lane's cached open period is on: monotonic for Redis time."""
        return time.monotonic() if self.redis_time else now

    # -- when Redis is tried again ------------------------------------------------

    def may_try(self) -> bool:
        """During a store-wide outage: whether this call is the one that tries Redis again."""
        if time.monotonic() < self.down_until:
            return False
        with self.lock:
            t = time.monotonic()
            if t < self.down_until:
                return False
            self.down_until = t + self.retry_interval  # the others wait for this try
            return True

    def lane_may_try(self, lane: Lane) -> bool:
        """During this breaker's own outage: whether this call tries its keys again."""
        if time.monotonic() < lane.down_until:
            return False
        with self.lock:
            t = time.monotonic()
            if t < lane.down_until:
                return False
            lane.down_until = t + self.retry_interval
            return True

    def retry_in(self, lane: Lane) -> float:
        return max(max(self.down_until, lane.down_until) - time.monotonic(), 1e-3)

    # -- outages -----------------------------------------------------------------

    def failed(self, lane: Lane, policy: BreakerPolicy, error: BaseException) -> None:
        """A script of *lane* failed: the store's outage, or this breaker's alone."""
        store_wide = isinstance(error, OUTAGE_ERRORS)
        if store_wide:
            self.store_failed(error)
        else:
            with self.lock:
                lane.down_until = time.monotonic() + self.retry_interval
        self.fall_back(lane, policy, error, store_wide=store_wide)

    def store_failed(self, error: BaseException) -> None:
        """Redis cannot serve any name of the store: start or extend its outage (one WARNING)."""
        with self.lock:
            t = time.monotonic()
            starting = self.outage is None
            if starting:
                self.outage_since = t
            self.down_until = t + self.retry_interval
            self.outage = _without_frames(error)
        if starting:
            self._log_store_down(error)

    def lane_answered(self, lane: Lane) -> None:
        """A write to *lane*'s keys succeeded: its own outage, if any, is over."""
        with self.lock:
            lane.down_until = 0.0

    def store_recovered(self) -> None:
        """Redis answered: end the store-wide outage, if there was one, with one line."""
        if self.outage is None and not self.down_until:
            return
        with self.lock:
            ended = self.outage
            self.down_until = 0.0
            self.outage = None
            since = self.outage_since
        if ended is None:
            return
        outage = time.monotonic() - since
        logger.warning(
            "Redis store %r reached Redis again after %s s: each of its breakers and limiters "
            "hands its state back to Redis on its next call",
            self.namespace,
            seconds(round(outage, 3)),
            extra={
                "event": "redis_store_recovered",
                "namespace": self.namespace,
                "outage_seconds": round(outage, 6),
            },
        )

    def _log_store_down(self, error: BaseException) -> None:
        refused = isinstance(error, WRITES_REFUSED)
        error_type, message = error_fields(error)
        logger.warning(
            "Redis store %r cannot %s Redis (%s): its breakers and limiters use their "
            "fallback (%s) until %s; retrying Redis every %s s",
            self.namespace,
            "write to" if refused else "reach",
            describe_error(error),
            _STORE_WHAT[self.mode],
            "a write to Redis succeeds again" if refused else "Redis answers again",
            seconds(self.retry_interval),
            extra={
                "event": "redis_store_unavailable",
                "namespace": self.namespace,
                "store_mode": self.mode,
                "retry_in": self.retry_interval,
                "error_type": error_type,
                "error": message,
            },
        )

    def fall_back(
        self,
        lane: Lane,
        policy: BreakerPolicy,
        error: BaseException | None,
        *,
        store_wide: bool,
    ) -> None:
        """Hand *lane* to the fallback; log and tell the watchers once per outage."""
        with self.lock:
            if lane.mode != "redis" and (store_wide or not lane.store_wide):
                return  # this breaker's outage is already known and logged
            entering = lane.mode == "redis"
            if entering:
                lane.mode = self.mode
                lane.down_since = time.monotonic()
                # The local breaker starts where Redis last was, not closed:
                # an outage of Redis must not reopen the floodgates.
                lane.seed = lane.view if lane.mode == "local" else None
                lane.view = UNKNOWN
            lane.store_wide = store_wide
            lane.reason = _outage_reason(error, store_wide)
            seed = lane.seed
            mode = lane.mode
        what = _FALLBACK_WHAT[mode]
        starting = ""
        if mode == "local":
            starting = (
                ", starting from the state Redis last gave it "
                f"({_seeded(seed.state if seed is not None else _CLOSED)})"
            )
        extra: dict[str, object] = {
            "breaker": lane.name,
            "store_mode": mode,
            "scope": "store" if store_wide else "breaker",
            "retry_in": self.retry_interval,
        }
        if mode == "local":
            extra["seeded_state"] = (seed.state if seed is not None else _CLOSED).value
        described = "an earlier error"
        if error is not None:
            extra["error_type"], extra["error"] = error_fields(error)
            described = describe_error(error)
        if store_wide:
            # The store's own WARNING says it once per outage; each breaker's line is detail.
            refused = isinstance(error, WRITES_REFUSED)
            extra["event"] = "breaker_store_unavailable"
            logger.info(
                "circuit %r cannot %s Redis (%s): %s until %s%s; retrying Redis every %s s",
                lane.name,
                "write to" if refused else "reach",
                described,
                what,
                "a write to Redis succeeds again" if refused else "Redis answers again",
                starting,
                seconds(self.retry_interval),
                extra=extra,
            )
        else:
            extra["event"] = "breaker_store_command_failed"
            extra["keys"] = list(lane.keys)
            logger.warning(
                "circuit %r: a Redis script on its keys %s failed (%s): %s until its keys "
                "work again%s; the other breakers of this store keep using Redis; retrying "
                "every %s s",
                lane.name,
                " and ".join(lane.keys),
                described,
                what,
                starting,
                seconds(self.retry_interval),
                extra=extra,
            )
        if entering:
            self.notify(lane, "redis", mode)

    def recovered(
        self, lane: Lane, policy: BreakerPolicy, now: float, redis_state: CircuitState
    ) -> None:
        """*lane* is handed back to Redis: drop the fallback, say so, tell the watchers."""
        with self.lock:
            if lane.mode == "redis":
                return
            was = lane.mode
            local_state: CircuitState | None = None
            if was == "local":
                seed = lane.seed
                local_state = (
                    seed.state
                    if seed is not None
                    else self.local.snapshot(lane.name, policy, now).state
                )
            lane.mode = "redis"
            lane.seed = None
            store_wide = lane.store_wide
            outage = time.monotonic() - lane.down_since
        extra: dict[str, object] = {
            "event": "breaker_store_recovered",
            "breaker": lane.name,
            "store_mode": "redis",
            "previous_mode": was,
            "outage_seconds": round(outage, 6),
            "redis_state": redis_state.value,
        }
        if was != "local":
            dropped = ""
        elif local_state is redis_state:
            dropped = "; the local breaker's state is dropped"
        else:
            assert local_state is not None
            extra["local_state"] = local_state.value
            dropped = (
                f"; the local breaker's state is dropped: it had the circuit "
                f"{local_state.value}, Redis holds it {redis_state.value}, and Redis's "
                "state applies from now on"
            )
        extra["states_differ"] = local_state is not None and local_state is not redis_state
        # After the store's outage, the store's own line said it; a state that
        # changed meanwhile is still worth a WARNING.
        level = logging.INFO if store_wide and not extra["states_differ"] else logging.WARNING
        logger.log(
            level,
            "circuit %r reached Redis again after %s s: its state is shared through Redis again%s",
            lane.name,
            seconds(round(outage, 3)),
            dropped,
            extra=extra,
        )
        self.notify(lane, was, "redis")

    def notify(self, lane: Lane, old: StoreMode, new: StoreMode) -> None:
        """Tell *lane*'s watchers; one that raises is logged once and never fails the call."""
        for ref in lane.watchers:
            callback = ref()
            if callback is None:
                continue
            try:
                callback(old, new)
            except Exception as error:
                if id(callback) in lane.failed_watchers:
                    continue
                lane.failed_watchers.add(id(callback))
                log_with_traceback(
                    logger,
                    logging.ERROR,
                    "mode watcher %s of circuit %r failed on %s -> %s: %s; the call goes on, "
                    "and later failures of this watcher are not logged",
                    name_of(callback),
                    lane.name,
                    old,
                    new,
                    describe_error(error),
                    error=error,
                    extra={"event": "breaker_store_watcher_failed", "breaker": lane.name},
                )

    # -- what the fallback answers ------------------------------------------------

    def seed_local(self, lane: Lane, policy: BreakerPolicy, now: float | None) -> bool:
        """Start the local breaker from Redis's last answer, once per outage.

        Returns False, seeding nothing, when that needs the breaker's clock
        (an open circuit's remaining time) and *now* is ``None``.
        """
        if lane.seed is None:
            return True
        with self.lock:
            view = lane.seed
            if view is None:  # pyright: ignore[reportUnnecessaryComparison]  # another thread took it
                return True
            if view.state is not _CLOSED and now is None:
                return False
            open_until = 0.0
            if view.state is _OPEN:
                assert now is not None
                open_until = now + (view.open_until - self.now_for_cache(now))
            self.local.seed(
                lane.name,
                policy,
                view.state,
                failures=view.failures,
                open_until=open_until,
                openings=view.openings,
                last_open_for=float(view.last) if view.last else None,
            )
            lane.seed = None
        return True

    def acquire(self, lane: Lane, policy: BreakerPolicy, now: float) -> Admission:
        """Admit a call or not while *lane* cannot use Redis."""
        mode = lane.mode
        if mode == "local":
            self.seed_local(lane, policy, now)
            admission = self.local.acquire(lane.name, policy, now)
            if admission.trial is None:
                return admission
            return admission._replace(trial=-admission.trial - 1)  # a local ticket
        if mode == "open":
            retry_in = self.retry_in(lane)
            return Admission(
                False,
                None,
                _OPEN,
                retry_in,
                None,
                f"{lane.reason} (on_store_error='open'), not because the dependency "
                f"failed; Redis is tried again in {retry_in:.3f} s",
            )
        return ADMIT_CLOSED

    def local_outcome(
        self,
        lane: Lane,
        policy: BreakerPolicy,
        trial: int,
        now: float,
        slow: bool,
        *,
        success: bool,
    ) -> Transition | None:
        """The outcome of a trial the local fallback admitted; dropped once Redis is back."""
        if lane.mode != "local" or lane.seed is not None:
            return None  # Redis is back, or a ticket of an earlier outage
        record = self.local.record_success if success else self.local.record_failure
        return record(lane.name, policy, -trial - 1, now, slow)


def _without_frames(error: BaseException) -> BaseException:
    """*error* (and what it chains to) without tracebacks, to be kept for the outage.

    A traceback holds the frames of the call that met the outage, and through
    them that breaker and the call's arguments: kept for the whole outage,
    they would outlive every breaker dropped meanwhile. Store errors are never
    raised to a caller, so nothing else needs them.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
    return error


def _seeded(state: CircuitState) -> str:
    if state is _OPEN:
        return "open for the rest of its open period"
    if state is _HALF_OPEN:
        return "half-open (trial calls only)"
    return "closed"


def _outage_reason(error: BaseException | None, store_wide: bool) -> str:
    """Why calls are rejected under ``on_store_error="open"``, for ``CircuitOpenError``."""
    if not store_wide:
        return "a Redis script on its shared state failed"
    if isinstance(error, WRITES_REFUSED):
        return "Redis, where its state is shared, refuses writes"
    return "Redis, where its state is shared, is unreachable"
