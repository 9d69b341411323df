"""Strictly private. What a Redis store keeps per breaker name: keys, cache and mode."""

from __future__ import annotations

import hashlib
import math
import weakref
from collections.abc import Callable
from typing import NamedTuple

from resilient._breaker_state import BreakerPolicy, CircuitState
from resilient.backoff import Backoff
from resilient.redis._settings import StoreMode

__all__ = ["UNKNOWN", "Lane", "View"]

_CLOSED = CircuitState.CLOSED


class View(NamedTuple):
    """Strictly private. What the last script answered for one breaker, in this process."""

    state: CircuitState
    failures: int
    open_until: float
    """When open: the end of the open period, on the clock the cache uses."""
    fresh_until: float
    """``time.monotonic()`` until which the state may be acted on without asking."""
    openings: int
    last: str
    """The last open duration, as stored (``""`` for none)."""
    permits_out: bool = False
    """Half-open, and acquire was refused: every trial permit is out."""
    seq: tuple[int, int] = (-1, -1)
    """The circuit's (epoch, version) the answer showed: the order of the answers."""
    received: int = -1
    """The store's round-trip count when the answer came: a request numbered
    below it was sent before this answer came back."""


UNKNOWN = View(_CLOSED, 0, 0.0, -math.inf, 0, "")


class Lane:
    """Strictly private. One breaker name in one Redis store: keys, cache and mode."""

    __slots__ = (
        "claims",
        "down_since",
        "down_until",
        "failed_watchers",
        "keys",
        "mode",
        "name",
        "policy",
        "policy_field",
        "reason",
        "seed",
        "store_wide",
        "view",
        "watchers",
    )

    def __init__(self, name: str, keys: tuple[str, str]) -> None:
        self.name = name
        self.keys = keys
        self.view = UNKNOWN
        self.mode: StoreMode = "redis"
        self.down_since = 0.0
        self.down_until = 0.0  # this breaker's own outage: when its keys are tried again
        self.store_wide = False  # whether the fallback in force is for the store's outage
        self.reason = ""
        self.seed: View | None = None  # the view the local breaker starts from, once
        self.watchers: tuple[Callable[[], Callable[[str, str], object] | None], ...] = ()
        self.failed_watchers: set[int] = set()
        """The ids of watchers whose failure was logged: each is logged once."""
        self.policy: BreakerPolicy | None = None
        self.policy_field = b""
        self.claims: set[weakref.ref[object]] = set()
        """The breakers using this name (see ``BreakerCore.attach``), held weakly."""

    def bind(self, policy: BreakerPolicy, idle_ttl: float, trial_timeout: float) -> None:
        """Encode what *policy* fixes as the scripts' policy argument, once per policy."""
        window = policy.window
        if window is None:
            kind, size, width, required, signature = 0, 0, 0.0, 0, "-"
        elif window.seconds is None:
            assert window.calls is not None
            kind, size, width = 1, window.calls, 0.0
            required, signature = window.required_calls, _signature(window)
        else:
            assert window.buckets is not None
            kind, size, width = 2, window.buckets, window.seconds / window.buckets
            required, signature = window.required_calls, _signature(window)
        timeout = policy.recovery_timeout
        base, cap = (
            (timeout.base_delay, timeout.max_delay) if isinstance(timeout, Backoff) else (0.0, 0.0)
        )
        fields: tuple[object, ...] = (
            max(1, math.ceil(idle_ttl * 1000)),
            policy.failure_threshold,
            policy.half_open_max_calls,
            policy.success_threshold,
            kind,
            size,
            repr(width),
            required,
            repr(float(window.failure_rate_threshold)) if window is not None else "1.0",
            repr(policy.slow_call_rate_threshold),
            1 if policy.slow_calls else 0,
            repr(trial_timeout),
            signature,
            repr(base),
            repr(cap),
        )
        self.policy_field = " ".join(str(field) for field in fields).encode()
        self.policy = policy


# The layout of the window's key, in the signature: a window stored by a version
# of the scripts with another layout is dropped, not misread.
_WINDOW_LAYOUT = "2"


def _signature(window: object) -> str:
    text = f"{_WINDOW_LAYOUT}:{window!r}"
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]
