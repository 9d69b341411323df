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
from resilient.classify import Classifier, ErrorClass, classify, retry_after
from resilient.cleanup import (
    async_database_transaction,
    async_temp_file,
    atomic_write,
    database_transaction,
    safe_temp_file,
)
from resilient.logs import JsonFormatter, StructuredLogger, bound_context
from resilient.retry import (
    RetryState,
    retry,
    retry_with_backoff,
    retry_with_backoff_async,
    time_remaining,
)
from resilient.task import (
    TaskResult,
    TaskSummary,
    execute_task_safely,
    execute_task_safely_async,
    run_tasks,
    run_tasks_async,
)

__all__ = [
    "Backoff",
    "BreakerListener",
    "BreakerMetrics",
    "BreakerStore",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Classifier",
    "Clock",
    "DecorrelatedJitter",
    "EqualJitter",
    "ErrorClass",
    "FailureRateWindow",
    "FullJitter",
    "JsonFormatter",
    "MemoryStore",
    "ProportionalJitter",
    "RetryBudget",
    "RetryState",
    "StructuredLogger",
    "SystemClock",
    "TaskResult",
    "TaskSummary",
    "async_database_transaction",
    "async_temp_file",
    "atomic_write",
    "bound_context",
    "classify",
    "database_transaction",
    "execute_task_safely",
    "execute_task_safely_async",
    "retry",
    "retry_after",
    "retry_with_backoff",
    "retry_with_backoff_async",
    "run_tasks",
    "run_tasks_async",
    "safe_temp_file",
    "time_remaining",
]
