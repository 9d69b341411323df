"""Time as the library sees it: the real clock and the process defaults.

Strictly private: users import ``Clock`` and ``SystemClock`` from ``resilient``
and the knobs from ``resilient.testing``. The ``Clock`` protocol is defined in
``resilient._types`` (a ``Protocol`` imports ``typing``, which the call paths
never need) and handed on here when asked for.
"""

from __future__ import annotations

import time

# Not ``typing.TYPE_CHECKING``: see ``resilient/__init__.py``.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from resilient._types import Clock as Clock


class SystemClock:
    """The real clock, looked up at each call.

    ``time.monotonic``, ``time.sleep`` and ``asyncio.sleep`` are read from
    their modules every time, never captured, so freezegun, time-machine and
    ``monkeypatch.setattr(time, "sleep", ...)`` reach the library.
    """

    __slots__ = ()

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Call ``time.sleep(seconds)``."""
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        """Await ``asyncio.sleep(seconds)``."""
        import asyncio  # noqa: PLC0415 - `import resilient` must not load asyncio

        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


class _Defaults:
    """Strictly private. The process-wide settings ``resilient.testing`` changes.

    One instance, read by primitives at each call (never captured), so that a
    setting reaches objects built before it was made.
    """

    __slots__ = ("attempt_cap", "clock", "no_wait")

    def __init__(self) -> None:
        self.clock: Clock = SYSTEM_CLOCK
        self.no_wait = False
        self.attempt_cap: int | None = None


DEFAULTS = _Defaults()


def resolve_clock(clock: Clock | None) -> Clock:
    """Return *clock*, or the process default clock when it is ``None``."""
    return DEFAULTS.clock if clock is None else clock


def check_clock(clock: object, name: str = "clock") -> None:
    """Raise ``TypeError`` unless *clock* is ``None`` or has the Clock methods."""
    if clock is None:
        return
    missing = [m for m in ("monotonic", "sleep", "asleep") if not callable(getattr(clock, m, None))]
    if missing:
        raise TypeError(
            f"{name} must provide monotonic(), sleep() and asleep(), "
            f"got {clock!r} (missing {', '.join(missing)})"
        )


if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        """``Clock``, from ``resilient._types``, on first use (PEP 562)."""
        if name == "Clock":
            from resilient._types import Clock  # noqa: PLC0415 - only users of the name pay for typing

            return Clock
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
