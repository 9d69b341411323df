"""Specification of ``resilient.testing`` and the default clock."""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
import subprocess
import sys
import threading
import time

import pytest
from freezegun import freeze_time

from resilient import SystemClock
from resilient._clock import DEFAULTS, SYSTEM_CLOCK
from resilient.testing import ManualClock, cap_attempts, no_wait, use_clock


def test_manual_clock_starts_where_told() -> None:
    """monotonic() starts at `start`."""
    assert ManualClock(start=12.5).monotonic() == 12.5


@pytest.mark.parametrize(
    ("start", "error", "message"),
    [
        ("1", TypeError, "start must be a number, got '1'"),
        (b"1", TypeError, "start must be a number, got b'1'"),
        (None, TypeError, "start must be a number, got None"),
        (True, TypeError, "start must be a number, got True"),
        (float("nan"), ValueError, "start must be a finite number, got nan"),
        (float("inf"), ValueError, "start must be a finite number, got inf"),
        pytest.param(
            10**400,
            ValueError,
            "start must be a finite number, got an int of about 1e+400",
            id="10**400",
        ),
    ],
)
def test_manual_clock_refuses_a_start_that_is_not_a_finite_number(
    start: object, error: type[Exception], message: str
) -> None:
    """A string is not read as a number (float() would): TypeError naming start and the value."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        ManualClock(start=start)  # type: ignore[arg-type]


def test_manual_clock_sleep_advances_and_records() -> None:
    """sleep() returns at once, advances time and records the request."""
    clock = ManualClock()
    clock.sleep(1.5)
    clock.sleep(0.0)
    assert clock.monotonic() == 1.5
    assert clock.sleeps == [1.5, 0.0]


def test_manual_clock_asleep_advances_and_records() -> None:
    """asleep() behaves like sleep() inside an event loop."""
    clock = ManualClock()
    asyncio.run(clock.asleep(2.0))
    assert clock.monotonic() == 2.0
    assert clock.sleeps == [2.0]


def test_manual_clock_advance_moves_time_without_recording() -> None:
    """advance() is a hand-made passage of time, not a sleep."""
    clock = ManualClock()
    clock.advance(10)
    assert clock.monotonic() == 10.0
    assert clock.sleeps == []


def test_manual_clock_refuses_to_go_back() -> None:
    """A negative advance is an error naming the value."""
    with pytest.raises(ValueError, match="seconds must be a finite number >= 0, got -1"):
        ManualClock().advance(-1)


def test_manual_clock_is_thread_safe() -> None:
    """8 threads x 1000 sleeps lose no time and no record."""
    clock = ManualClock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(1000):
            clock.sleep(1.0)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.monotonic() == 8000.0
    assert len(clock.sleeps) == 8000


def test_system_clock_looks_time_up_at_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patching time.monotonic and time.sleep after construction reaches SystemClock."""
    clock = SystemClock()
    slept: list[float] = []
    monkeypatch.setattr(time, "monotonic", lambda: 123.0)
    monkeypatch.setattr(time, "sleep", slept.append)
    assert clock.monotonic() == 123.0
    clock.sleep(4.0)
    assert slept == [4.0]


def test_system_clock_asleep_looks_asyncio_sleep_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patching asyncio.sleep reaches SystemClock.asleep."""
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    asyncio.run(SystemClock().asleep(3.0))
    assert slept == [3.0]


def test_system_clock_follows_freezegun() -> None:
    """freezegun's frozen monotonic time is what SystemClock reads."""
    with freeze_time("2026-01-01") as frozen:
        before = SYSTEM_CLOCK.monotonic()
        frozen.tick(5)
        assert SYSTEM_CLOCK.monotonic() - before == pytest.approx(5.0)


def test_use_clock_restores_the_previous_default_even_on_error() -> None:
    """The default clock comes back after the block, whatever happened."""
    seen: list[object] = []

    def body() -> None:
        with use_clock(ManualClock()):
            seen.append(DEFAULTS.clock)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        body()
    assert isinstance(seen[0], ManualClock)
    assert DEFAULTS.clock is SYSTEM_CLOCK


def test_use_clock_refuses_a_non_clock() -> None:
    """use_clock checks its argument has the Clock methods."""
    with pytest.raises(TypeError, match="clock must provide monotonic"), use_clock(object()):  # type: ignore[arg-type]
        pass


def test_no_wait_nests_and_restores() -> None:
    """no_wait() inside no_wait() leaves it on until the outer block ends."""
    with no_wait():
        with no_wait():
            assert DEFAULTS.no_wait
        assert DEFAULTS.no_wait
    assert not DEFAULTS.no_wait


def test_cap_attempts_nested_keeps_the_smaller() -> None:
    """An inner, larger cap does not raise an outer, smaller one."""
    with cap_attempts(2):
        with cap_attempts(5):
            assert DEFAULTS.attempt_cap == 2
        assert DEFAULTS.attempt_cap == 2
    assert DEFAULTS.attempt_cap is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_cap_attempts_validates(bad: object) -> None:
    """cap_attempts needs an int >= 1 and names the bad value."""
    with (
        pytest.raises(ValueError, match=f"attempts must be an int >= 1, got {bad!r}"),
        cap_attempts(bad),
    ):  # type: ignore[arg-type]
        pass


def test_pytest_plugin_is_registered_by_entry_point() -> None:
    """The pytest11 entry point names the plugin module, and pytest loaded it."""
    points = importlib.metadata.entry_points(group="pytest11")
    assert any(p.value == "resilient._pytest_plugin" for p in points)
    assert "resilient._pytest_plugin" in sys.modules


def test_importing_the_testing_helpers_does_not_import_pytest() -> None:
    """``resilient.testing`` serves code that is not under pytest (and pytest costs
    a third of a second to import)."""
    code = "import sys, resilient.testing; print('pytest' in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "False"
