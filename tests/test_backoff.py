"""Delay strategies: bounds as properties, exact nominal delays, reproducibility, validation."""

from __future__ import annotations

import math
import random
import re
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from itertools import islice
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient._compat import MAX_SECONDS
from resilient.backoff import (
    Backoff,
    DecorrelatedJitter,
    EqualJitter,
    FullJitter,
    Jitter,
    NoJitter,
    ProportionalJitter,
    delays,
    nominal_delay,
)

RETRIES = 40  # how many delays each property draws from one iterator
TINY = 5e-324  # the smallest positive float
HUGE = sys.float_info.max

seconds = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
base_and_cap = st.tuples(seconds, seconds).map(sorted).map(tuple)
seeds = st.integers(min_value=0, max_value=2**64)
fractions = st.floats(min_value=0.0, max_value=1.0)

STRATEGIES: dict[str, Callable[[random.Random], Jitter]] = {
    "FullJitter": FullJitter,
    "EqualJitter": EqualJitter,
    "DecorrelatedJitter": DecorrelatedJitter,
    "ProportionalJitter(0.25)": lambda rng: ProportionalJitter(0.25, rng),
    "ProportionalJitter(1.0)": lambda rng: ProportionalJitter(1.0, rng),
    "NoJitter": NoJitter,
}


def reference_nominal(retry_number: int, base: float, cap: float) -> float:
    """``min(base * 2**n, cap)`` computed exactly, with no float overflow."""
    return float(min(Fraction(base) * 2**retry_number, Fraction(cap)))


def draw(iterator: Iterator[float], count: int = RETRIES) -> list[float]:
    """The first *count* delays of *iterator*."""
    return list(islice(iterator, count))


def nominals(base: float, cap: float, count: int = RETRIES) -> list[float]:
    """The nominal delays before the first *count* retries."""
    return [reference_nominal(n, base, cap) for n in range(count)]


class RecordingJitter:
    """A user strategy that returns the nominal delay and records ``previous``."""

    def __init__(self) -> None:
        self.previous: list[float] = []

    def __call__(self, nominal: float, previous: float, base: float, cap: float) -> float:
        self.previous.append(previous)
        return nominal


# --- bounds of every strategy ---------------------------------------------------


@pytest.mark.parametrize("make", list(STRATEGIES.values()), ids=list(STRATEGIES))
@given(bounds=base_and_cap, seed=seeds)
def test_every_strategy_stays_within_zero_and_max_delay(
    make: Callable[[random.Random], Jitter], bounds: tuple[float, float], seed: int
) -> None:
    """No strategy ever gives a negative delay or one above ``max_delay``."""
    base, cap = bounds
    for delay in draw(delays(base, cap, make(random.Random(seed)))):
        assert 0.0 <= delay <= cap


@pytest.mark.parametrize("jitter", [True, False])
@given(bounds=base_and_cap, seed=seeds)
def test_jitter_true_and_false_stay_within_zero_and_max_delay(
    jitter: bool, bounds: tuple[float, float], seed: int
) -> None:
    """``jitter=True`` and ``jitter=False`` never leave ``[0, max_delay]`` either."""
    base, cap = bounds
    for delay in draw(delays(base, cap, jitter, rng=random.Random(seed))):
        assert 0.0 <= delay <= cap


@given(bounds=base_and_cap, seed=seeds)
def test_full_jitter_lies_within_zero_and_nominal(bounds: tuple[float, float], seed: int) -> None:
    """``FullJitter`` is uniform in ``[0, nominal]``."""
    base, cap = bounds
    drawn = draw(delays(base, cap, FullJitter(random.Random(seed))))
    for delay, nominal in zip(drawn, nominals(base, cap), strict=True):
        assert 0.0 <= delay <= nominal


@given(bounds=base_and_cap, seed=seeds)
def test_equal_jitter_lies_within_half_nominal_and_nominal(
    bounds: tuple[float, float], seed: int
) -> None:
    """``EqualJitter`` is ``nominal / 2`` plus uniform ``[0, nominal / 2]``."""
    base, cap = bounds
    drawn = draw(delays(base, cap, EqualJitter(random.Random(seed))))
    for delay, nominal in zip(drawn, nominals(base, cap), strict=True):
        assert nominal / 2 <= delay <= nominal


@given(bounds=base_and_cap, fraction=fractions, seed=seeds)
def test_proportional_jitter_lies_within_its_fraction_of_nominal_capped(
    bounds: tuple[float, float], fraction: float, seed: int
) -> None:
    """``ProportionalJitter(f)`` lies in ``[(1 - f) nominal, min((1 + f) nominal, max)]``."""
    base, cap = bounds
    drawn = draw(delays(base, cap, ProportionalJitter(fraction, random.Random(seed))))
    for delay, nominal in zip(drawn, nominals(base, cap), strict=True):
        assert (1 - fraction) * nominal <= delay <= min((1 + fraction) * nominal, cap)


@given(bounds=base_and_cap, seed=seeds)
def test_jitter_true_is_proportional_within_a_quarter_of_nominal(
    bounds: tuple[float, float], seed: int
) -> None:
    """``jitter=True`` lies in ``[0.75 nominal, min(1.25 nominal, max)]``."""
    base, cap = bounds
    drawn = draw(delays(base, cap, True, rng=random.Random(seed)))
    for delay, nominal in zip(drawn, nominals(base, cap), strict=True):
        assert 0.75 * nominal <= delay <= min(1.25 * nominal, cap)


@given(bounds=base_and_cap, seed=seeds)
def test_decorrelated_jitter_lies_within_base_and_three_times_previous_capped(
    bounds: tuple[float, float], seed: int
) -> None:
    """Each ``DecorrelatedJitter`` delay is in ``[base, min(3 x previous, max)]``."""
    base, cap = bounds
    previous = base
    for delay in draw(delays(base, cap, DecorrelatedJitter(random.Random(seed)))):
        assert base <= delay <= min(3 * previous, cap)
        previous = delay


def test_decorrelated_jitter_grows_when_base_is_positive() -> None:
    """Starting from ``base``, decorrelated delays reach the cap eventually."""
    drawn = draw(delays(1.0, 60.0, DecorrelatedJitter(random.Random(7))), 200)
    assert max(drawn) > 30.0


# --- exact nominal delays ----------------------------------------------------------


@pytest.mark.parametrize("jitter", [False, NoJitter()], ids=["False", "NoJitter"])
@given(bounds=base_and_cap)
def test_no_jitter_gives_exactly_the_nominal_delays(
    jitter: bool | Jitter, bounds: tuple[float, float]
) -> None:
    """Without jitter the n-th delay is exactly ``min(base * 2**n, max)``, n = 0, 1, ..."""
    base, cap = bounds
    assert draw(delays(base, cap, jitter)) == nominals(base, cap)


def test_no_jitter_gives_the_doubling_sequence_of_the_contract() -> None:
    """``delays(1, 10, jitter=False)`` is 1, 2, 4, 8, 10, 10, ..."""
    assert draw(delays(1.0, 10.0, jitter=False), 7) == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_no_jitter_reaches_a_cap_just_above_a_power_of_two() -> None:
    """A cap one ulp above ``base * 2**k`` is reached at retry ``k + 1``, not stuck below."""
    cap = math.nextafter(2.0**27, math.inf)
    assert draw(delays(1.0, cap, jitter=False), 30)[26:] == [2.0**26, 2.0**27, cap, cap]


@given(
    retry_number=st.integers(min_value=0, max_value=3000),
    base=st.floats(min_value=TINY, max_value=1e6),
    cap=st.floats(min_value=1e6, max_value=HUGE),
)
def test_nominal_delay_is_exactly_the_capped_power_of_two(
    retry_number: int, base: float, cap: float
) -> None:
    """``nominal_delay`` equals the exact ``min(base * 2**n, max)``, tiny base and huge cap included."""
    assert nominal_delay(retry_number, base, cap) == reference_nominal(retry_number, base, cap)


@pytest.mark.parametrize(
    ("base", "cap"),
    [(1.0, 60.0), (0.1, 1.0), (TINY, HUGE), (TINY, 1.0), (1e-9, 1e300), (HUGE, HUGE), (2.0, 2.0)],
)
@pytest.mark.parametrize("retry_number", [2100, 10**6, 10**100])  # 2**2100 x TINY > HUGE
def test_attempt_number_one_million_does_not_overflow(
    base: float, cap: float, retry_number: int
) -> None:
    """Far past the cap (10**6, even 10**100) the delay is ``max_delay``: the exponent is clamped."""
    assert nominal_delay(retry_number, base, cap) == cap
    if cap <= MAX_SECONDS:  # a Backoff refuses longer delays (ten years)
        assert Backoff(base, cap, jitter=False).delay(retry_number) == cap


@pytest.mark.parametrize("retry_number", [0, 1, 10**6])
def test_nominal_delay_with_zero_base_is_zero(retry_number: int) -> None:
    """``base_delay=0`` means no wait at all, whatever the retry."""
    assert nominal_delay(retry_number, 0.0, 60.0) == 0.0


def test_nominal_delay_takes_a_timedelta() -> None:
    """Either duration of ``nominal_delay`` may be a ``timedelta``, meaning its seconds."""
    from datetime import timedelta

    assert nominal_delay(2, timedelta(milliseconds=500), 60.0) == 2.0
    assert nominal_delay(10, 1.0, timedelta(minutes=1)) == 60.0
    assert nominal_delay(3, timedelta(seconds=1), timedelta(seconds=5)) == 5.0


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((0, "1", 2.0), TypeError, "base_delay must be a number of seconds, got '1'"),
        ((0, 1.0, "2"), TypeError, "max_delay must be a number of seconds, got '2'"),
        ((0, None, 2.0), TypeError, "base_delay must be a number of seconds, got None"),
        ((0, 1.0, b"2"), TypeError, "max_delay must be a number of seconds, got b'2'"),
        ((0, True, 2.0), TypeError, "base_delay must be a number of seconds, got True"),
        ((0, -1.0, 2.0), ValueError, "base_delay must be a finite number >= 0, got -1.0"),
        ((0, 1.0, math.nan), ValueError, "max_delay must be a finite number >= 0, got nan"),
        ((0, 1.0, math.inf), ValueError, "max_delay must be a finite number >= 0, got inf"),
        (("1", 1.0, 2.0), TypeError, "retry_number must be an int, got '1'"),
        ((1.5, 1.0, 2.0), TypeError, "retry_number must be an int, got 1.5"),
        ((True, 1.0, 2.0), TypeError, "retry_number must be an int, got True"),
        ((-1, 1.0, 2.0), ValueError, "retry_number must be >= 0, got -1"),
    ],
)
def test_nominal_delay_refuses_bad_input_naming_the_parameter(
    args: tuple[Any, Any, Any], error: type[Exception], message: str
) -> None:
    """A string, None or a negative value is refused with the parameter and the value named
    (a string duration used to raise AttributeError: no total_seconds)."""
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        nominal_delay(*args)


def test_zero_delays_give_zeros_for_every_strategy() -> None:
    """``delays(0, 0, ...)`` waits nothing, whatever the jitter."""
    for make in STRATEGIES.values():
        assert draw(delays(0, 0, make(random.Random(1))), 5) == [0.0] * 5


# --- iterators and randomness ------------------------------------------------------


def test_each_delays_call_returns_a_fresh_iterator() -> None:
    """Two calls give two independent iterators, each starting at retry 0."""
    first = delays(1.0, 60.0, jitter=False)
    draw(first, 3)
    assert next(delays(1.0, 60.0, jitter=False)) == 1.0
    assert next(first) == 8.0


def test_previous_delay_is_kept_per_iterator_not_in_the_strategy() -> None:
    """Interleaved iterators sharing one strategy each see their own previous delay."""
    strategy = RecordingJitter()
    first = delays(1.0, 60.0, strategy)
    second = delays(1.0, 60.0, strategy)
    next(first), next(first), next(first)  # previous becomes 1, 2, 4
    next(second)
    next(first)
    assert strategy.previous == [1.0, 1.0, 2.0, 1.0, 4.0]


def test_decorrelated_state_is_not_shared_between_calls() -> None:
    """A new call's first decorrelated delay starts from ``base`` again."""
    strategy = DecorrelatedJitter(random.Random(3))
    draw(delays(1.0, 1000.0, strategy), 50)  # a long call climbs towards the cap
    for _ in range(100):
        assert 1.0 <= next(delays(1.0, 1000.0, strategy)) <= 3.0


@pytest.mark.parametrize("make", list(STRATEGIES.values()), ids=list(STRATEGIES))
def test_a_seeded_rng_makes_a_strategy_reproducible(
    make: Callable[[random.Random], Jitter],
) -> None:
    """The same seed gives the same sequence of delays."""
    one = draw(delays(0.5, 30.0, make(random.Random(42))))
    two = draw(delays(0.5, 30.0, make(random.Random(42))))
    assert one == two


@pytest.mark.parametrize("jitter", [True, FullJitter(), DecorrelatedJitter()], ids=repr)
def test_the_rng_argument_of_delays_makes_the_sequence_reproducible(jitter: Jitter | bool) -> None:
    """``delays(..., rng=Random(seed))`` repeats itself for the same seed."""
    one = draw(delays(0.5, 30.0, jitter, rng=random.Random(42)))
    two = draw(delays(0.5, 30.0, jitter, rng=random.Random(42)))
    assert one == two


def test_different_seeds_give_different_sequences() -> None:
    """The rng really drives the jitter."""
    one = draw(delays(0.5, 30.0, FullJitter(), rng=random.Random(1)))
    two = draw(delays(0.5, 30.0, FullJitter(), rng=random.Random(2)))
    assert one != two


def test_the_rng_argument_replaces_the_rng_of_the_strategy() -> None:
    """``rng=`` is used instead of the strategy's own, which is left untouched."""
    own = random.Random(1)
    state = own.getstate()
    strategy = ProportionalJitter(0.5, own)
    drawn = draw(delays(0.5, 30.0, strategy, rng=random.Random(2)))
    assert drawn == draw(delays(0.5, 30.0, ProportionalJitter(0.5, random.Random(2))))
    assert own.getstate() == state


def test_a_user_strategy_is_called_with_nominal_previous_base_and_cap() -> None:
    """Any callable with the ``Jitter`` signature is a strategy."""
    seen: list[tuple[float, float, float, float]] = []

    def half(nominal: float, previous: float, base: float, cap: float) -> float:
        seen.append((nominal, previous, base, cap))
        return nominal / 2

    assert draw(delays(2.0, 5.0, half), 3) == [1.0, 2.0, 2.5]
    assert seen == [(2.0, 2.0, 2.0, 5.0), (4.0, 1.0, 2.0, 5.0), (5.0, 2.0, 2.0, 5.0)]


@pytest.mark.parametrize("value", [-3.0, 1e9, math.inf])
def test_a_user_strategy_out_of_bounds_is_clamped_to_zero_and_max(value: float) -> None:
    """A misbehaving user strategy cannot make a negative or uncapped wait."""
    drawn = draw(delays(1.0, 10.0, lambda *_: value), 3)
    assert drawn == [min(max(value, 0.0), 10.0)] * 3


# --- Backoff ------------------------------------------------------------------------


def test_backoff_iterates_like_delays() -> None:
    """``iter(Backoff(...))`` is ``delays(base, max, jitter)``."""
    assert draw(iter(Backoff(1.0, 10.0, jitter=False)), 6) == draw(delays(1.0, 10.0, False), 6)


def test_backoff_gives_a_fresh_iterator_each_time() -> None:
    """Iterating a ``Backoff`` twice starts from the first retry both times."""
    policy = Backoff(1.0, 10.0, jitter=False)
    assert draw(iter(policy), 3) == draw(iter(policy), 3) == [1.0, 2.0, 4.0]


@given(bounds=base_and_cap, retry_number=st.integers(min_value=0, max_value=2000))
def test_backoff_delay_without_jitter_is_the_nominal_delay(
    bounds: tuple[float, float], retry_number: int
) -> None:
    """``Backoff(jitter=False).delay(n)`` is exactly ``min(base * 2**n, max)``."""
    base, cap = bounds
    expected = reference_nominal(retry_number, base, cap)
    assert Backoff(base, cap, jitter=False).delay(retry_number) == expected


@given(bounds=base_and_cap, retry_number=st.integers(min_value=0, max_value=100), seed=seeds)
def test_backoff_delay_with_default_jitter_stays_within_a_quarter_of_nominal(
    bounds: tuple[float, float], retry_number: int, seed: int
) -> None:
    """``Backoff().delay(n)`` follows the bounds of ``jitter=True``."""
    base, cap = bounds
    policy = Backoff(base, cap, ProportionalJitter(0.25, random.Random(seed)))
    nominal = reference_nominal(retry_number, base, cap)
    assert 0.75 * nominal <= policy.delay(retry_number) <= min(1.25 * nominal, cap)


@given(
    bounds=base_and_cap,
    previous=st.floats(min_value=0.0, max_value=1e6),
    seed=seeds,
)
def test_backoff_delay_with_decorrelated_jitter_uses_the_previous_delay(
    bounds: tuple[float, float], previous: float, seed: int
) -> None:
    """``delay(n, previous)`` lies in ``[base, min(3 x previous, max)]`` (``base`` if above)."""
    base, cap = bounds
    policy = Backoff(base, cap, DecorrelatedJitter(random.Random(seed)))
    assert base <= policy.delay(5, previous) <= min(max(3 * previous, base), cap)


def test_backoff_delay_without_previous_starts_from_base() -> None:
    """``delay(n)`` with no previous delay treats ``base`` as the previous one."""
    strategy = RecordingJitter()
    Backoff(2.0, 60.0, strategy).delay(3)
    assert strategy.previous == [2.0]


def test_backoff_converts_its_delays_to_float() -> None:
    """Integer seconds are stored as floats."""
    policy = Backoff(1, 10, jitter=False)
    assert (policy.base_delay, policy.max_delay) == (1.0, 10.0)
    assert isinstance(policy.base_delay, float)


def test_backoff_repr_shows_its_configuration() -> None:
    """The repr names base, cap and jitter."""
    text = repr(Backoff(1.0, 10.0, ProportionalJitter(0.5)))
    assert text == "Backoff(base_delay=1.0, max_delay=10.0, jitter=ProportionalJitter(0.5))"


# --- validation -----------------------------------------------------------------------

BAD_DELAYS = [
    (-1.0, 10.0, ValueError, "base_delay must be a finite number >= 0, got -1.0"),
    (math.nan, 10.0, ValueError, "base_delay must be a finite number >= 0, got nan"),
    (math.inf, math.inf, ValueError, "base_delay must be a finite number >= 0, got inf"),
    (
        "1",
        10.0,
        TypeError,
        "base_delay must be a number of seconds, got '1' (a datetime.timedelta works too)",
    ),
    (
        None,
        10.0,
        TypeError,
        "base_delay must be a number of seconds, got None (a datetime.timedelta works too)",
    ),
    (
        True,
        10.0,
        TypeError,
        "base_delay must be a number of seconds, got True (a datetime.timedelta works too)",
    ),
    (1.0, -0.5, ValueError, "max_delay must be a finite number >= 0, got -0.5"),
    (1.0, math.nan, ValueError, "max_delay must be a finite number >= 0, got nan"),
    (1.0, math.inf, ValueError, "max_delay must be a finite number >= 0, got inf"),
    (
        1.0,
        "60",
        TypeError,
        "max_delay must be a number of seconds, got '60' (a datetime.timedelta works too)",
    ),
    (
        1.0,
        False,
        TypeError,
        "max_delay must be a number of seconds, got False (a datetime.timedelta works too)",
    ),
    (10.0, 1.0, ValueError, "base_delay must be <= max_delay, got base_delay=10.0 > max_delay=1.0"),
]


@pytest.mark.parametrize(("base", "cap", "exc_type", "message"), BAD_DELAYS)
def test_delays_rejects_bad_delays_naming_the_parameter_and_value(
    base: Any, cap: Any, exc_type: type[Exception], message: str
) -> None:
    """A bad ``base_delay``/``max_delay`` raises when ``delays()`` is called, not when iterated."""
    with pytest.raises(exc_type) as info:
        delays(base, cap)
    assert str(info.value) == message


@pytest.mark.parametrize(("base", "cap", "exc_type", "message"), BAD_DELAYS)
def test_backoff_rejects_bad_delays_naming_the_parameter_and_value(
    base: Any, cap: Any, exc_type: type[Exception], message: str
) -> None:
    """``Backoff`` validates its delays at construction."""
    with pytest.raises(exc_type) as info:
        Backoff(base, cap)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "jitter",
    ["yes", "true", 3, 1, 0, 0.5, None, object()],
    ids=lambda value: "object()" if type(value) is object else repr(value),
)
def test_an_unknown_jitter_is_rejected_naming_the_parameter_and_value(jitter: Any) -> None:
    """Only ``True``, ``False`` or a strategy are accepted as ``jitter``."""
    for build in (lambda: delays(1.0, 10.0, jitter), lambda: Backoff(1.0, 10.0, jitter)):
        with pytest.raises(TypeError) as info:
            build()
        assert str(info.value).startswith("jitter must be True, False or a jitter strategy")
        assert str(info.value).endswith(f"got {jitter!r}")


@pytest.mark.parametrize(
    ("fraction", "exc_type", "message"),
    [
        (-0.1, ValueError, "fraction must be in [0, 1], got -0.1"),
        (1.5, ValueError, "fraction must be in [0, 1], got 1.5"),
        (math.nan, ValueError, "fraction must be in [0, 1], got nan"),
        (math.inf, ValueError, "fraction must be in [0, 1], got inf"),
        ("0.5", TypeError, "fraction must be a number in [0, 1], got '0.5'"),
        (None, TypeError, "fraction must be a number in [0, 1], got None"),
        (True, TypeError, "fraction must be a number in [0, 1], got True"),
    ],
)
def test_proportional_jitter_rejects_a_fraction_outside_zero_one(
    fraction: Any, exc_type: type[Exception], message: str
) -> None:
    """The fraction must be a number in ``[0, 1]``, and the message says which and what."""
    with pytest.raises(exc_type) as info:
        ProportionalJitter(fraction)
    assert str(info.value) == message


@pytest.mark.parametrize("fraction", [0, 0.0, 0.25, 1, 1.0])
def test_proportional_jitter_accepts_the_ends_of_zero_one(fraction: float) -> None:
    """0 and 1 are valid fractions, ints included."""
    assert ProportionalJitter(fraction).fraction == float(fraction)


@pytest.mark.parametrize(
    "rng", [42, "seed", random, object()], ids=["int", "str", "module", "object"]
)
@pytest.mark.parametrize(
    "build",
    [
        FullJitter,
        EqualJitter,
        DecorrelatedJitter,
        NoJitter,
        lambda rng: ProportionalJitter(0.25, rng),
        lambda rng: delays(1.0, 10.0, True, rng=rng),
        lambda rng: delays(1.0, 10.0, False, rng=rng),
        lambda rng: delays(1.0, 10.0, FullJitter(), rng=rng),
    ],
    ids=["Full", "Equal", "Decorrelated", "No", "Proportional", "True", "False", "delays-Full"],
)
def test_a_bad_rng_is_rejected_naming_the_parameter_and_value(
    build: Callable[[Any], object], rng: Any
) -> None:
    """``rng`` must be a ``random.Random``; the message repeats what was given."""
    with pytest.raises(TypeError) as info:
        build(rng)
    assert str(info.value) == f"rng must be a random.Random, got {rng!r}"


def test_a_system_random_is_a_valid_rng() -> None:
    """Any ``random.Random``, ``SystemRandom`` included, is accepted."""
    for delay in draw(delays(1.0, 10.0, FullJitter(random.SystemRandom()))):
        assert 0.0 <= delay <= 10.0
