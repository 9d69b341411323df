"""The pytest plugin that installing ``resilient-kit`` registers (``pytest11``).

Its own module, so that ``resilient.testing`` can be imported (in an
application's test helpers, a notebook, a benchmark) without importing pytest.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from resilient.testing import ManualClock, no_wait, use_clock

__all__ = ["resilient_clock", "resilient_no_wait"]


@pytest.fixture
def resilient_clock() -> Iterator[ManualClock]:
    """A ``ManualClock`` installed as the process default clock for one test."""
    clock = ManualClock()
    with use_clock(clock):
        yield clock


@pytest.fixture
def resilient_no_wait() -> Iterator[None]:
    """Every retry wait is zero for one test; attempt counts are unchanged."""
    with no_wait():
        yield
