"""Run by `.ci/run` with pytest in the wheel's fresh venv: the plugin's fixtures are there.

(Not named ``test_*``: the suite does not collect it; `.ci/run` passes it by name.)
"""

from __future__ import annotations

from resilient import retry
from resilient.testing import ManualClock


def flaky_twice() -> object:
    calls: list[int] = []

    @retry(max_retries=2, base_delay=1.0, jitter=False)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "ok"

    return flaky()


def test_the_installed_plugin_gives_a_manual_clock(resilient_clock: ManualClock) -> None:
    assert flaky_twice() == "ok"
    assert resilient_clock.sleeps == [1.0, 2.0]


def test_the_installed_plugin_removes_waits(
    resilient_clock: ManualClock, resilient_no_wait: None
) -> None:
    assert flaky_twice() == "ok"
    assert not any(resilient_clock.sleeps)
