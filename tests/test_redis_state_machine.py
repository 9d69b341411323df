"""``RedisStore`` against the same reference model as ``MemoryStore``.

The state machines of ``test_breaker_state_machine`` (consecutive failures; a
count- or time-based failure-rate window with slow calls; fixed and growing
open periods; resets, trips, excluded errors) run again with every breaker on
a ``RedisStore`` and a real server: after every step the breaker's state,
counts, metrics and remaining time must be the model's, so the Lua scripts
follow the semantics of the in-memory store. The store reads the breakers'
``ManualClock`` (``time_source="breaker"``) so the model can move time; the
tests of Redis time are in ``test_redis``.

Each machine runs twice: with this process's cache of the last answer (the
closed path asks Redis at most once per call) and without it (every
operation asks Redis).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.stateful import invariant, run_state_machine_as_test

from test_breaker_state_machine import ConsecutiveRule, Model, WindowRule

SETTINGS = settings(max_examples=20, stateful_step_count=25)
pytestmark = pytest.mark.slow  # seconds of Redis round trips per test

_namespaces = itertools.count()


def _on_redis(machine: type[Any], make_store: Any, max_staleness: float) -> type[Any]:
    """*machine* with each breaker on a fresh namespace of a Redis store (sync or async)."""

    class OnRedis(machine):  # type: ignore[misc, valid-type]
        reads_every_property = False  # a round trip per property: see BreakerMachine

        def start(self, model: Model, **config: Any) -> None:
            store = make_store(
                namespace=f"model-{next(_namespaces)}",
                time_source="breaker",
                max_staleness=max_staleness,
            )
            super().start(model, store=store, name="modelled", **config)

        @invariant()
        def agrees_with_the_model(self) -> None:
            """The machine's invariant, on one read of the store.

            ``failures`` and ``metrics`` each read it: with nothing else
            running, twice the same snapshot, and a round trip each (a third
            of the machine's round trips). Every field of that one snapshot is
            still checked against the model.
            """
            store = self.breaker._store
            self.breaker._store = _OneSnapshot(store)
            try:
                super().agrees_with_the_model()
            finally:
                self.breaker._store = store

    OnRedis.__name__ = f"{machine.__name__}OnRedis"
    return OnRedis


class _OneSnapshot:
    """A store whose ``snapshot`` asks the wrapped store once, then answers the same."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._taken: tuple[tuple[Any, ...], Any] | None = None

    def snapshot(self, *args: Any) -> Any:
        if self._taken is None:
            self._taken = (args, self._store.snapshot(*args))
        taken_for, stored = self._taken
        assert args == taken_for, "the invariant read the store for another name or time"
        return stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.mark.parametrize("max_staleness", [60.0, 0.0], ids=["cached", "uncached"])
def test_consecutive_rule_on_redis_follows_the_model(make_store: Any, max_staleness: float) -> None:
    """Consecutive failures, trials and open periods in Redis behave as the model says."""
    run_state_machine_as_test(
        lambda: _on_redis(ConsecutiveRule, make_store, max_staleness)(), settings=SETTINGS
    )


@pytest.mark.parametrize("max_staleness", [60.0, 0.0], ids=["cached", "uncached"])
def test_window_rule_on_redis_follows_the_model(make_store: Any, max_staleness: float) -> None:
    """Count- and time-based windows with slow calls in Redis behave as the model says."""
    run_state_machine_as_test(
        lambda: _on_redis(WindowRule, make_store, max_staleness)(), settings=SETTINGS
    )
