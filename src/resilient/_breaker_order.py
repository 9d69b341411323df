"""Strictly private. The order in which a breaker's listeners hear state changes.

With the in-memory store a breaker makes each change under a lock that also
queues it, so the queue is in order. A shared store's operations are round
trips: holding a lock across them would serialise every operation of a
breaker in the process (and cannot be done across an ``await``). Instead each
operation takes a number when it starts, the store's answer carries the
circuit's sequence number (``Transition.seq``: the store counts the changes
of each circuit), and a change learned by an operation is held until every
operation that started before it learned it has finished: none of those can
still bring an earlier change. Held changes go out in sequence order.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from typing import Any

__all__ = ["Sequencer"]


class Sequencer:
    """Strictly private. Orders the changes that overlapping store operations learn.

    ``begin()`` before an operation, ``end(op, change)`` after it (also when
    it failed), then ``drain(out)`` moves the changes whose turn has come to
    *out*, in order. Changes without a sequence number (``seq == 0``: a
    local fallback's, a store mode change) go after the last numbered one
    seen, in the order they came.
    """

    __slots__ = ("_arrivals", "_held", "_inflight", "_last_seq", "_lock", "_next")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self._inflight: set[int] = set()
        # (seq, arrival, barrier, item): barrier is the last operation begun when it came.
        self._held: list[tuple[int, int, int, Any]] = []
        self._arrivals = itertools.count()
        self._last_seq = 0

    def begin(self) -> int:
        """Number an operation that starts now."""
        with self._lock:
            op = self._next
            self._next = op + 1
            self._inflight.add(op)
            return op

    def end(self, op: int, seq: int, item: object | None) -> None:
        """Operation *op* is over; hold *item* (a change it learned, or ``None``) for its turn."""
        with self._lock:
            self._inflight.discard(op)
            if item is not None:
                self._hold(seq, item)

    def note(self, item: object) -> None:
        """Hold *item*, learned without a sequence number, for its turn."""
        with self._lock:
            self._hold(0, item)

    def _hold(self, seq: int, item: object) -> None:
        if seq:
            self._last_seq = max(self._last_seq, seq)
        else:
            seq = self._last_seq
        heapq.heappush(self._held, (seq, next(self._arrivals), self._next - 1, item))

    @property
    def holding(self) -> bool:
        """Whether any change waits for its turn."""
        return bool(self._held)

    def drain(self, out: Any) -> None:
        """Append to *out* (``out.append``) the held changes whose turn has come, in order."""
        with self._lock:
            held = self._held
            if not held:
                return
            # Every operation up to `low - 1` has finished.
            low = min(self._inflight) if self._inflight else self._next
            while held and held[0][2] < low:
                out.append(heapq.heappop(held)[3])
