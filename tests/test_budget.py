"""``RetryBudget``: the gRPC retry-throttling rule, against a model and under threads."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient import RetryBudget

THREADS = 8


class ReferenceBudget:
    """The gRPC rule in exact arithmetic, one line per clause of the contract."""

    def __init__(self, max_tokens: Fraction, token_ratio: Fraction) -> None:
        self.max_tokens = max_tokens
        self.token_ratio = token_ratio
        self.tokens = max_tokens  # starts full

    def record_failure(self) -> bool:
        self.tokens = max(self.tokens - 1, Fraction(0))  # a failure costs one token
        return self.tokens > self.max_tokens / 2  # retry only while above half

    def record_success(self) -> None:
        self.tokens = min(self.tokens + self.token_ratio, self.max_tokens)  # refund, capped


def run_in_threads(work: Callable[[], None], count: int = THREADS) -> None:
    """Run *work* in *count* threads released together by a barrier; re-raise any error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            barrier.wait(timeout=10)
            work()
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors


# --- the rule -------------------------------------------------------------------------


def test_defaults_are_ten_tokens_and_a_tenth_refund() -> None:
    """``RetryBudget()`` is ``max_tokens=10, token_ratio=0.1``."""
    budget = RetryBudget()
    assert (budget.max_tokens, budget.token_ratio) == (10.0, 0.1)


def test_a_new_budget_starts_full_and_allows_retries() -> None:
    """Tokens start at ``max_tokens``."""
    budget = RetryBudget(max_tokens=4, token_ratio=0.5)
    assert budget.tokens == 4.0
    assert budget.allows_retry


def test_a_failure_costs_one_token() -> None:
    """Each ``record_failure`` spends exactly one token."""
    budget = RetryBudget(max_tokens=10, token_ratio=0.5)
    budget.record_failure()
    assert budget.tokens == 9.0


def test_a_success_refunds_token_ratio() -> None:
    """Each ``record_success`` refunds ``token_ratio`` tokens."""
    budget = RetryBudget(max_tokens=10, token_ratio=0.5)
    budget.record_failure()
    budget.record_success()
    assert budget.tokens == 9.5


def test_refunds_are_capped_at_max_tokens() -> None:
    """Successes never raise the tokens above ``max_tokens``."""
    budget = RetryBudget(max_tokens=10, token_ratio=0.75)
    budget.record_failure()
    for _ in range(5):
        budget.record_success()
    assert budget.tokens == 10.0


def test_tokens_never_go_below_zero() -> None:
    """Failures on an empty bucket leave it at zero."""
    budget = RetryBudget(max_tokens=3, token_ratio=0.5)
    for _ in range(10):
        budget.record_failure()
    assert budget.tokens == 0.0


def test_retries_are_allowed_only_while_tokens_exceed_half() -> None:
    """With 10 tokens, failures leaving 9, 8, 7, 6 allow a retry; 5 (exactly half) does not."""
    budget = RetryBudget(max_tokens=10, token_ratio=0.1)
    answers = [budget.record_failure() for _ in range(7)]
    assert answers == [True, True, True, True, False, False, False]


def test_allows_retry_agrees_with_the_last_failure() -> None:
    """``allows_retry`` reads the same threshold without spending a token."""
    budget = RetryBudget(max_tokens=4, token_ratio=0.5)
    assert budget.record_failure() is budget.allows_retry is True
    assert budget.record_failure() is budget.allows_retry is False
    assert budget.tokens == 2.0


def test_successes_reopen_retries_after_throttling() -> None:
    """Once refunds lift the tokens above half again, retries are allowed again."""
    budget = RetryBudget(max_tokens=10, token_ratio=0.5)
    for _ in range(5):
        budget.record_failure()
    assert not budget.allows_retry
    budget.record_success()
    assert budget.tokens == 5.5
    assert budget.allows_retry


def test_integer_configuration_is_stored_as_float() -> None:
    """Ints are accepted and converted."""
    budget = RetryBudget(max_tokens=4, token_ratio=1)
    assert (budget.max_tokens, budget.token_ratio, budget.tokens) == (4.0, 1.0, 4.0)
    assert isinstance(budget.tokens, float)


def test_repr_shows_configuration_and_tokens() -> None:
    """The repr says how full the bucket is."""
    budget = RetryBudget(max_tokens=4, token_ratio=0.5)
    budget.record_failure()
    assert repr(budget) == "RetryBudget(max_tokens=4.0, token_ratio=0.5, tokens=3.0)"


# --- against the model ----------------------------------------------------------------

# Dyadic ratios and integer sizes keep the float bucket exact, so it must match
# the Fraction model to the last bit.
dyadic_ratios = st.sampled_from([0.0625, 0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0])
sizes = st.integers(min_value=1, max_value=50)
operations = st.lists(st.sampled_from(["failure", "success"]), max_size=300)


@given(max_tokens=sizes, token_ratio=dyadic_ratios, ops=operations)
def test_any_sequence_of_outcomes_matches_the_reference_model(
    max_tokens: int, token_ratio: float, ops: list[str]
) -> None:
    """After every success or failure, tokens and the retry answer equal the model's."""
    if token_ratio > max_tokens:
        token_ratio = float(max_tokens)
    budget = RetryBudget(max_tokens=max_tokens, token_ratio=token_ratio)
    model = ReferenceBudget(Fraction(max_tokens), Fraction(token_ratio))
    for op in ops:
        if op == "failure":
            assert budget.record_failure() is model.record_failure()
        else:
            budget.record_success()
            model.record_success()
        assert budget.tokens == model.tokens
        assert budget.allows_retry is (model.tokens > model.max_tokens / 2)
        assert 0.0 <= budget.tokens <= budget.max_tokens


# --- threads -----------------------------------------------------------------------------


def test_concurrent_failures_allow_exactly_as_many_retries_as_the_bucket_holds() -> None:
    """8 threads failing from a full bucket get exactly the model's count of allowed retries."""
    budget = RetryBudget(max_tokens=1000, token_ratio=0.5)
    per_thread = 200
    allowed: list[int] = []
    lock = threading.Lock()

    def fail_many() -> None:
        count = sum(budget.record_failure() for _ in range(per_thread))
        with lock:
            allowed.append(count)

    run_in_threads(fail_many)
    model = ReferenceBudget(Fraction(1000), Fraction(1, 2))
    expected = sum(model.record_failure() for _ in range(THREADS * per_thread))
    assert sum(allowed) == expected == 499  # tokens 999 .. 501 allow, 500 does not
    assert budget.tokens == 0.0


def test_concurrent_failures_and_successes_lose_no_update() -> None:
    """8 threads mixing outcomes away from floor and cap end on the exact model value."""
    budget = RetryBudget(max_tokens=100_000, token_ratio=0.5)
    for _ in range(50_000):  # half-empty: no later operation touches the floor or the cap
        budget.record_failure()
    per_thread = 2_000

    def mixed() -> None:
        for _ in range(per_thread):
            budget.record_failure()
            budget.record_success()
            budget.record_success()
            budget.record_failure()

    run_in_threads(mixed)
    # Each thread: 2 * per_thread failures (-1) and 2 * per_thread successes (+0.5).
    assert budget.tokens == 50_000 - THREADS * per_thread * (2 * 1 - 2 * 0.5)


def test_concurrent_successes_never_exceed_max_tokens() -> None:
    """Refunds racing at the cap leave the bucket exactly full."""
    budget = RetryBudget(max_tokens=10, token_ratio=0.25)
    for _ in range(3):
        budget.record_failure()

    def succeed_many() -> None:
        for _ in range(500):
            budget.record_success()

    run_in_threads(succeed_many)
    assert budget.tokens == 10.0


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc_type", "message"),
    [
        ({"max_tokens": 0}, ValueError, "max_tokens must be a finite number > 0, got 0"),
        ({"max_tokens": -1}, ValueError, "max_tokens must be a finite number > 0, got -1"),
        ({"max_tokens": math.nan}, ValueError, "max_tokens must be a finite number > 0, got nan"),
        ({"max_tokens": math.inf}, ValueError, "max_tokens must be a finite number > 0, got inf"),
        (
            {"max_tokens": 10**400},  # too large for a float: never an OverflowError
            ValueError,
            "max_tokens must be a finite number > 0, got an int of about 1e+400",
        ),
        ({"max_tokens": "10"}, TypeError, "max_tokens must be a number, got '10'"),
        ({"max_tokens": None}, TypeError, "max_tokens must be a number, got None"),
        ({"max_tokens": True}, TypeError, "max_tokens must be a number, got True"),
        ({"token_ratio": 0}, ValueError, "token_ratio must be a finite number > 0, got 0"),
        ({"token_ratio": -0.1}, ValueError, "token_ratio must be a finite number > 0, got -0.1"),
        ({"token_ratio": math.nan}, ValueError, "token_ratio must be a finite number > 0, got nan"),
        ({"token_ratio": math.inf}, ValueError, "token_ratio must be a finite number > 0, got inf"),
        (
            {"token_ratio": 10**400},
            ValueError,
            "token_ratio must be a finite number > 0, got an int of about 1e+400",
        ),
        ({"token_ratio": "0.1"}, TypeError, "token_ratio must be a number, got '0.1'"),
        ({"token_ratio": False}, TypeError, "token_ratio must be a number, got False"),
        (
            {"max_tokens": 2, "token_ratio": 3},
            ValueError,
            "token_ratio must be <= max_tokens (2), got 3",
        ),
    ],
)
def test_bad_configuration_is_rejected_naming_the_parameter_and_value(
    kwargs: dict[str, Any], exc_type: type[Exception], message: str
) -> None:
    """A bad ``max_tokens`` or ``token_ratio`` raises at construction with a precise message."""
    with pytest.raises(exc_type) as info:
        RetryBudget(**kwargs)
    assert str(info.value) == message


def test_token_ratio_equal_to_max_tokens_is_valid() -> None:
    """One success may refill the whole bucket."""
    budget = RetryBudget(max_tokens=2, token_ratio=2)
    budget.record_failure()
    budget.record_failure()
    budget.record_success()
    assert budget.tokens == 2.0
