"""Strictly private. Where the library's events reach ``resilient.telemetry``.

The event sites (a retry scheduled, a call given up, a budget refusal, a
breaker's transition or rejection, a task's end) read ``SINK``: ``None``
until ``resilient.telemetry`` enables an exporter, so while telemetry is off
each site costs one global read, and only on paths that already failed or
ended. Per-call breaker outcomes are not pushed at all: the breakers count
them anyway (``CircuitBreaker.metrics``), and the exporters read the live
breakers from ``live_breakers()`` when they are scraped.

Low in the import graph: it imports nothing of ours and nothing heavy.
"""

from __future__ import annotations

# Not ``typing.TYPE_CHECKING``: `from resilient import retry` must not load
# ``typing`` through this module. Type checkers treat any TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:  # the protocol is for the type checker: building it would cost the import
    import weakref
    from typing import Any, Protocol

    from resilient._breaker_state import CircuitState
    from resilient._classify import ErrorClass

    class Sink(Protocol):
        """What the event sites call while telemetry is on. Strictly private.

        Each method gets the facts the site's log line and listeners get, as
        plain values; it must not raise (``resilient.telemetry`` guards it).
        """

        def retried(
            self,
            function: str,
            attempt: int,
            error_class: ErrorClass,
            delay: float,
            exc: BaseException | None,
            result: Any,
        ) -> None:
            """Attempt *attempt* of *function* failed; the next one starts in *delay* seconds."""

        def gave_up(
            self,
            function: str,
            attempt: int,
            error_class: ErrorClass,
            exc: BaseException | None,
            result: Any,
        ) -> None:
            """A retried call of *function* ended in failure after *attempt* attempts."""

        def budget_refused(self, budget: object) -> None:
            """*budget* refused a retry: the call gave up instead."""

        def breaker_changed(
            self, breaker: str, old: CircuitState, new: CircuitState, exc: BaseException | None
        ) -> None:
            """The circuit *breaker* went from *old* to *new* (*exc*: the failure that did it)."""

        def breaker_rejected(self, breaker: str, error: BaseException) -> None:
            """The circuit *breaker* rejected a call with *error* (a ``CircuitOpenError``)."""

        def task_finished(
            self, task: str, outcome: str, elapsed: float, attempts: int, exc: BaseException | None
        ) -> None:
            """Task *task* ended: *outcome* is ``"success"``, ``"failure"`` or ``"rejected"``."""

        def pacing_refused(self, kind: str, name: str, error: BaseException) -> None:
            """A ``"limiter"`` or ``"concurrency"`` named *name* refused a call with *error*."""


__all__ = ["SINK", "live_breakers", "live_pacers", "register_breaker", "register_pacer"]


SINK: Sink | None = None
"""Set by ``resilient.telemetry`` only; ``None`` while telemetry is off."""

# Every breaker alive in this process, registered at construction so that an
# exporter enabled later still sees the breakers built before it. A plain dict
# of weak references keyed by id (a subclass may well be unhashable), not a
# WeakValueDictionary: iterating one runs Python code between items, and on
# CPython before 3.12 a reference dying in another thread meanwhile raises
# "dictionary changed size during iteration". Copying a plain dict is one C
# call under the GIL. Made by the first breaker, so that importing this module
# (the retry loop does) loads nothing.
_breakers: dict[int, weakref.ref[Any]] = {}


def register_breaker(breaker: object) -> None:
    """Remember *breaker* (weakly) for the exporters that read it when scraped."""
    import weakref  # noqa: PLC0415 - the first breaker pays for it, not `import`

    key = id(breaker)

    def forget(reference: weakref.ref[Any]) -> None:
        # Runs in whichever thread drops the last reference; a dict pop is
        # atomic. The identity check keeps a newer breaker given the same id.
        if _breakers.get(key) is reference:
            _breakers.pop(key, None)

    _breakers[key] = weakref.ref(breaker, forget)  # one atomic store: no lock needed


def live_breakers() -> list[Any]:
    """The breakers alive now, in no particular order."""
    references = list(_breakers.values())  # one C-level copy: safe against concurrent changes
    return [breaker for reference in references if (breaker := reference()) is not None]


# The rate limiters and concurrency limits alive in this process, kept as the
# breakers are: they count their own outcomes, read when the metrics are.
_pacers: dict[int, weakref.ref[Any]] = {}


def register_pacer(pacer: object) -> None:
    """Remember a ``RateLimiter`` or ``ConcurrencyLimit`` (weakly) for the exporters."""
    import weakref  # noqa: PLC0415 - the first pacer pays for it, not `import`

    key = id(pacer)

    def forget(reference: weakref.ref[Any]) -> None:
        if _pacers.get(key) is reference:
            _pacers.pop(key, None)

    _pacers[key] = weakref.ref(pacer, forget)


def live_pacers() -> list[Any]:
    """The rate limiters and concurrency limits alive now, in no particular order."""
    references = list(_pacers.values())
    return [pacer for reference in references if (pacer := reference()) is not None]
