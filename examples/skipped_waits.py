"""A clock on which every wait passes at once, for the examples' ``--skip-waits``.

Made the process's default clock (``resilient.testing.use_clock``), it lets the
retries compute, log and report each wait as usual without sleeping it. It reads
the real time plus the waits it skipped, so the durations measured on it (a
task's ``elapsed``, a retry deadline) are those of a run that slept them. The
real timeouts of sockets are untouched.
"""

from __future__ import annotations

import time

__all__ = ["SkippedWaits"]


class SkippedWaits:
    """A ``resilient.Clock`` whose ``sleep`` and ``asleep`` return at once."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def monotonic(self) -> float:
        """The real ``time.monotonic()``, plus every wait skipped so far."""
        return time.monotonic() + self.skipped

    def sleep(self, seconds: float) -> None:
        """Skip the wait: count it, return at once."""
        self.skipped += seconds

    async def asleep(self, seconds: float) -> None:
        """Skip the wait: count it, return at once."""
        self.skipped += seconds
