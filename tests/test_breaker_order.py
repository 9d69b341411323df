"""The order listeners hear the changes that a shared store's overlapping operations learn."""

from __future__ import annotations

import threading
from typing import Any

from resilient import CircuitBreaker, CircuitState
from resilient._breaker_order import Sequencer
from resilient._breaker_state import Admission, StoredState, Transition

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def test_a_change_waits_for_the_operations_that_began_before_it_learned_it() -> None:
    sequencer = Sequencer()
    out: list[str] = []
    a = sequencer.begin()
    b = sequencer.begin()
    sequencer.end(b, 7, "b")  # B's answer came first, with the later number
    sequencer.drain(out)
    assert out == []  # A is still out: its change may come before B's
    c = sequencer.begin()  # began before A's change was learned: it might precede it
    sequencer.end(a, 6, "a")
    sequencer.drain(out)
    assert out == []
    sequencer.end(c, 0, None)
    sequencer.drain(out)
    assert out == ["a", "b"]
    assert not sequencer.holding


def test_unnumbered_changes_go_after_the_last_numbered_one_in_arrival_order() -> None:
    sequencer = Sequencer()
    out: list[str] = []
    a = sequencer.begin()
    sequencer.end(a, 3, "three")
    sequencer.note("mode change")
    b = sequencer.begin()
    sequencer.end(b, 4, "four")
    sequencer.note("another")
    sequencer.drain(out)
    assert out == ["three", "mode change", "four", "another"]


class SlowFirstStore:
    """A shared store whose first force() answers only when told to, after the second."""

    def __init__(self) -> None:
        self.first_may_answer = threading.Event()
        self.second_answered = threading.Event()
        self.calls = 0
        self.lock = threading.Lock()

    def force(self, name: str, policy: Any, state: CircuitState, now: float) -> Transition:
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if first:  # ran first on the server (sequence 1), its answer is slow to arrive
            assert self.first_may_answer.wait(5)
            return Transition(CLOSED, OPEN, 0, 60.0, seq=1)
        self.second_answered.set()
        return Transition(OPEN, CLOSED, 0, seq=2)

    def acquire(self, *args: Any) -> Admission:
        return Admission(True, None, CLOSED, 0.0)

    def record_success(self, *args: Any) -> None:
        return None

    def record_failure(self, *args: Any) -> None:
        return None

    def release(self, *args: Any) -> None:
        return None

    def snapshot(self, *args: Any) -> StoredState:
        return StoredState(CLOSED, 0, 0.0)


def test_overlapping_operations_run_at_once_and_are_heard_in_the_stores_order() -> None:
    """The second operation is not held behind the first (no lock across a round trip);
    its change, learned first, is told after the first's, as the store numbered them."""
    store = SlowFirstStore()
    heard: list[tuple[str, str]] = []

    class Listener:
        def on_state_change(self, breaker: Any, old: CircuitState, new: CircuitState) -> None:
            heard.append((old.value, new.value))

    breaker = CircuitBreaker(name="api", store=store, listeners=[Listener()])
    first = threading.Thread(target=breaker.trip)
    first.start()
    while store.calls < 1:
        threading.Event().wait(0.001)
    second = threading.Thread(target=breaker.reset)
    second.start()
    assert store.second_answered.wait(5)  # ran while the first was still out
    second.join(5)
    assert heard == []  # the first's change may come earlier: the second's waits
    store.first_may_answer.set()
    first.join(5)
    assert heard == [("closed", "open"), ("open", "closed")]
