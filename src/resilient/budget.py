"""A retry budget shared by many calls: the gRPC retry-throttling rule.

When a dependency is down, every caller retrying it multiplies the load it
sees. A budget caps that: retries are allowed only while recent attempts
mostly succeed.
"""

from __future__ import annotations

import threading

from resilient._compat import positive_number

__all__ = ["RetryBudget"]


class RetryBudget:
    """A thread-safe token bucket that decides whether a retry may be made.

    Tokens start at *max_tokens*. Each failed attempt costs one token, each
    success refunds *token_ratio* (never above *max_tokens*), and a retry is
    allowed only while more than half of *max_tokens* remain. Share one budget
    between every function that calls the same dependency.

    Args:
        max_tokens: the size of the bucket (> 0).
        token_ratio: tokens refunded per success, in (0, max_tokens].
        name: names the budget in telemetry (the ``budget`` label of
            ``resilient_retry_budget_refusals_total``); budgets left unnamed
            all report as ``"default"``.

    Example:
        >>> budget = RetryBudget(max_tokens=4, token_ratio=0.5)
        >>> budget.record_failure(), budget.record_failure()
        (True, False)
        >>> budget.record_success(); budget.tokens
        2.5
    """

    __slots__ = ("_lock", "_tokens", "max_tokens", "name", "token_ratio")

    def __init__(
        self, max_tokens: float = 10, token_ratio: float = 0.1, *, name: str = "default"
    ) -> None:
        tokens = positive_number("max_tokens", max_tokens)
        ratio = positive_number("token_ratio", token_ratio)
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        if not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        if ratio > tokens:
            raise ValueError(
                f"token_ratio must be <= max_tokens ({max_tokens!r}), got {token_ratio!r}"
            )
        self.name = name
        self.max_tokens = tokens
        self.token_ratio = ratio
        self._tokens = self.max_tokens
        self._lock = threading.Lock()

    @property
    def tokens(self) -> float:
        """The tokens left now."""
        return self._tokens

    @property
    def allows_retry(self) -> bool:
        """Whether a retry would be allowed now (more than half the tokens left)."""
        return self._tokens > self.max_tokens / 2

    def record_failure(self) -> bool:
        """Spend one token for a failed attempt; return whether a retry is allowed.

        Both happen in one critical section, so of many threads failing at
        once exactly as many retry as the bucket allows.
        """
        with self._lock:
            self._tokens = max(self._tokens - 1.0, 0.0)
            return self._tokens > self.max_tokens / 2

    def record_success(self) -> None:
        """Refund *token_ratio* tokens for a successful attempt."""
        with self._lock:
            self._tokens = min(self._tokens + self.token_ratio, self.max_tokens)

    def __repr__(self) -> str:
        named = "" if self.name == "default" else f"name={self.name!r}, "
        return (
            f"RetryBudget({named}max_tokens={self.max_tokens!r}, "
            f"token_ratio={self.token_ratio!r}, tokens={self._tokens!r})"
        )
