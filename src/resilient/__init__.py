"""resilient: survive failure without hiding it.

One error classifier drives retry with backoff and jitter, a retry budget, a
circuit breaker, JSON structured logs and cleanup. This module only hands
names on, and lazily (PEP 562): ``import resilient`` loads nothing else, and
each name loads its module the first time it is used, so ``from resilient
import retry`` pays for retry alone and ``create_resilient_session`` is the
only name that imports ``requests``.
"""

from __future__ import annotations

# Not ``typing.TYPE_CHECKING``: importing ``typing`` is most of what this
# module would cost. Type checkers treat any name ``TYPE_CHECKING`` as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from resilient._block import Attempt, Retrying, retrying
    from resilient._classify import (
        Classifier,
        ErrorClass,
        classify,
        classify_requests_error,
        retry_after,
    )
    from resilient._clock import SystemClock
    from resilient._deadline import time_remaining
    from resilient._retry import (
        retry,
        retry_with_backoff,
        retry_with_backoff_async,
    )
    from resilient._types import Clock, RetryState
    from resilient.backoff import (
        Backoff,
        DecorrelatedJitter,
        EqualJitter,
        FullJitter,
        ProportionalJitter,
    )
    from resilient.breaker import (
        BreakerListener,
        BreakerMetrics,
        BreakerStore,
        CircuitBreaker,
        CircuitOpenError,
        CircuitState,
        FailureRateWindow,
        MemoryStore,
    )
    from resilient.budget import RetryBudget
    from resilient.cleanup import (
        async_database_transaction,
        async_temp_file,
        atomic_write,
        database_transaction,
        safe_temp_file,
    )
    from resilient.http import create_resilient_session as create_resilient_session
    from resilient.http import get_json_or_none as get_json_or_none
    from resilient.logs import JsonFormatter, StructuredLogger, bound_context
    from resilient.pacing import (
        ConcurrencyLimit,
        ConcurrencyLimitExceeded,
        MemoryPacingStore,
        PacingStore,
        RateLimiter,
        RateLimitExceeded,
    )
    from resilient.task import (
        TaskResult,
        TaskSummary,
        execute_task_safely,
        execute_task_safely_async,
        run_tasks,
        run_tasks_async,
    )

# Each public name and the module that defines it.
_WHERE: dict[str, str] = {
    "Attempt": "resilient._block",
    "Backoff": "resilient.backoff",
    "BreakerListener": "resilient.breaker",
    "BreakerMetrics": "resilient.breaker",
    "BreakerStore": "resilient.breaker",
    "CircuitBreaker": "resilient.breaker",
    "CircuitOpenError": "resilient.breaker",
    "CircuitState": "resilient.breaker",
    "Classifier": "resilient._classify",
    "Clock": "resilient._types",
    "ConcurrencyLimit": "resilient.pacing",
    "ConcurrencyLimitExceeded": "resilient.pacing",
    "DecorrelatedJitter": "resilient.backoff",
    "EqualJitter": "resilient.backoff",
    "ErrorClass": "resilient._classify",
    "FailureRateWindow": "resilient.breaker",
    "FullJitter": "resilient.backoff",
    "JsonFormatter": "resilient.logs",
    "MemoryPacingStore": "resilient.pacing",
    "MemoryStore": "resilient.breaker",
    "PacingStore": "resilient.pacing",
    "ProportionalJitter": "resilient.backoff",
    "RateLimitExceeded": "resilient.pacing",
    "RateLimiter": "resilient.pacing",
    "RetryBudget": "resilient.budget",
    "RetryState": "resilient._types",
    "Retrying": "resilient._block",
    "StructuredLogger": "resilient.logs",
    "SystemClock": "resilient._clock",
    "TaskResult": "resilient.task",
    "TaskSummary": "resilient.task",
    "async_database_transaction": "resilient.cleanup",
    "async_temp_file": "resilient.cleanup",
    "atomic_write": "resilient.cleanup",
    "bound_context": "resilient.logs",
    "classify": "resilient._classify",
    "classify_requests_error": "resilient._classify",
    "create_resilient_session": "resilient.http",
    "database_transaction": "resilient.cleanup",
    "execute_task_safely": "resilient.task",
    "execute_task_safely_async": "resilient.task",
    "get_json_or_none": "resilient.http",
    "retry": "resilient._retry",
    "retry_after": "resilient._classify",
    "retry_with_backoff": "resilient._retry",
    "retry_with_backoff_async": "resilient._retry",
    "retrying": "resilient._block",
    "run_tasks": "resilient.task",
    "run_tasks_async": "resilient.task",
    "safe_temp_file": "resilient.cleanup",
    "time_remaining": "resilient._deadline",
}

# ``create_resilient_session`` and ``get_json_or_none`` are left out of
# ``__all__``: they need the ``requests`` extra, which ``import *`` must not.
__all__ = [
    "Attempt",
    "Backoff",
    "BreakerListener",
    "BreakerMetrics",
    "BreakerStore",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Classifier",
    "Clock",
    "ConcurrencyLimit",
    "ConcurrencyLimitExceeded",
    "DecorrelatedJitter",
    "EqualJitter",
    "ErrorClass",
    "FailureRateWindow",
    "FullJitter",
    "JsonFormatter",
    "MemoryPacingStore",
    "MemoryStore",
    "PacingStore",
    "ProportionalJitter",
    "RateLimitExceeded",
    "RateLimiter",
    "RetryBudget",
    "RetryState",
    "Retrying",
    "StructuredLogger",
    "SystemClock",
    "TaskResult",
    "TaskSummary",
    "async_database_transaction",
    "async_temp_file",
    "atomic_write",
    "bound_context",
    "classify",
    "classify_requests_error",
    "database_transaction",
    "execute_task_safely",
    "execute_task_safely_async",
    "retry",
    "retry_after",
    "retry_with_backoff",
    "retry_with_backoff_async",
    "retrying",
    "run_tasks",
    "run_tasks_async",
    "safe_temp_file",
    "time_remaining",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use, then keep it here."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'resilient' has no attribute {name!r}")
    value = getattr(__import__(module, fromlist=(name,)), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
