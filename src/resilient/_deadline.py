"""Strictly private. The deadline of the retried call running now, and ``time_remaining()``.

Below the retry loop and pacing alike: ``@retry(deadline=...)`` publishes its
deadline here, and a ``RateLimiter``, ``ConcurrencyLimit`` or
``resilient.http`` reads what is left of it, without importing the loop.
"""

from __future__ import annotations

import contextvars

# Not ``typing.TYPE_CHECKING``: see ``resilient/__init__.py``.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from resilient._types import Clock

__all__ = ["enter_deadline", "time_remaining"]

# The absolute deadline of the innermost call running under `deadline=`, with
# the clock it is measured on.
DEADLINE: contextvars.ContextVar[tuple[float, Clock] | None] = contextvars.ContextVar(
    "resilient_deadline", default=None
)


def time_remaining() -> float | None:
    """Seconds left before the deadline of the retried call running now.

    ``None`` outside any call made under ``@retry(deadline=...)``. Nested
    deadlines take the earlier. An attempt can use it to shrink its own
    timeouts, as ``resilient.http`` does.
    """
    current = DEADLINE.get()
    if current is None:
        return None
    deadline, clock = current
    return max(deadline - clock.monotonic(), 0.0)


def enter_deadline(
    deadline_at: float, clock: Clock
) -> contextvars.Token[tuple[float, Clock] | None] | None:
    """Publish *deadline_at* (on *clock*) to ``time_remaining()`` unless an outer one is earlier.

    Returns the token to hand to ``DEADLINE.reset`` when the call ends, or
    ``None`` when nothing was published.
    """
    outer = time_remaining()
    if outer is not None and outer <= deadline_at - clock.monotonic():
        return None
    return DEADLINE.set((deadline_at, clock))
