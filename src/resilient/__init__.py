"""resilient: survive failure without hiding it.

One error classifier drives retry with backoff and jitter, a retry budget, a
circuit breaker, JSON structured logs and cleanup. This module only re-exports.
"""

from resilient._clock import Clock, SystemClock
from resilient.backoff import (
    Backoff,
    DecorrelatedJitter,
    EqualJitter,
    FullJitter,
    ProportionalJitter,
)
from resilient.classify import Classifier, ErrorClass, classify, retry_after

__all__ = [
    "Backoff",
    "Classifier",
    "Clock",
    "DecorrelatedJitter",
    "EqualJitter",
    "ErrorClass",
    "FullJitter",
    "ProportionalJitter",
    "SystemClock",
    "classify",
    "retry_after",
]
