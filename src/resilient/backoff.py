"""Delays between attempts: exponential growth, a cap, and jitter.

``delays()`` is the single source of the waits the retry loop makes, so a test
or a thundering-herd simulation can draw exactly the same sequence. This module
imports nothing else of ``resilient`` (but ``Jitter`` and ``JitterSpec``, the
types, handed on from ``resilient._types`` when asked for: defining a
``Protocol`` imports ``typing``, which the call paths never need).
"""

from __future__ import annotations

import functools
import itertools
import math

from resilient._compat import duration

# Not ``typing.TYPE_CHECKING``: see ``resilient/__init__.py``.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Iterator

    from resilient._types import Jitter, JitterSpec, Seconds

__all__ = [
    "Backoff",
    "DecorrelatedJitter",
    "EqualJitter",
    "FullJitter",
    "Jitter",
    "JitterSpec",
    "NoJitter",
    "ProportionalJitter",
    "delays",
    "nominal_delay",
]


class _Strategy:
    """Strictly private. The shared shape of the jitter strategies."""

    __slots__ = ("_rng",)

    def __init__(self, rng: random.Random | None = None) -> None:
        if rng is not None:
            import random  # noqa: PLC0415 - only when given one: see rng

            if not isinstance(rng, random.Random):
                raise TypeError(f"rng must be a random.Random, got {rng!r}")
        self._rng = rng

    @property
    def rng(self) -> random.Random:
        """The generator drawn from: the one given, else the one ``random``'s functions share.

        That one is thread-safe and what ``random.seed`` seeds. It is looked up
        when a delay is drawn, not when the strategy is made, so that
        importing this module does not import ``random``.
        """
        return self._rng if self._rng is not None else _shared_rng()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_shared: random.Random | None = None


def _shared_rng() -> random.Random:
    global _shared
    if _shared is None:
        import random  # noqa: PLC0415 - on the first drawn delay: the retry path never needs it

        _shared = random._inst  # pyright: ignore[reportPrivateUsage]  # the generator of random.random()
    return _shared


class NoJitter(_Strategy):
    """Exactly the nominal delay (what ``jitter=False`` means)."""

    __slots__ = ()

    def __call__(self, nominal: float, previous: float, base: float, cap: float) -> float:
        """Return *nominal* unchanged."""
        return nominal


class FullJitter(_Strategy):
    """Uniform in ``[0, nominal]``: spreads a herd of callers widest, so it finishes soonest."""

    __slots__ = ()

    def __call__(self, nominal: float, previous: float, base: float, cap: float) -> float:
        """Return a delay drawn uniformly from ``[0, nominal]``."""
        return self.rng.uniform(0.0, nominal)


class EqualJitter(_Strategy):
    """``nominal / 2`` plus uniform ``[0, nominal / 2]``: never much shorter than planned."""

    __slots__ = ()

    def __call__(self, nominal: float, previous: float, base: float, cap: float) -> float:
        """Return ``nominal / 2 + uniform(0, nominal / 2)``."""
        half = nominal / 2.0
        return half + self.rng.uniform(0.0, half)


class DecorrelatedJitter(_Strategy):
    """``min(cap, uniform(base, 3 x previous))``: spreads callers out fastest (AWS).

    Its next value depends on the last one, which ``delays()`` keeps per call.
    """

    __slots__ = ()

    def __call__(self, nominal: float, previous: float, base: float, cap: float) -> float:
        """Return ``min(cap, uniform(base, 3 * previous))``."""
        high = max(base, 3.0 * previous)
        return min(cap, self.rng.uniform(base, high))


class ProportionalJitter(_Strategy):
    """Uniform in ``[1 - fraction, 1 + fraction] x nominal``, never above the cap.

    ``ProportionalJitter(0.25)`` is what ``jitter=True`` means.
    """

    __slots__ = ("fraction",)

    def __init__(self, fraction: float = 0.25, rng: random.Random | None = None) -> None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise TypeError(f"fraction must be a number in [0, 1], got {fraction!r}")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
        super().__init__(rng)
        self.fraction = float(fraction)

    def __call__(self, nominal: float, previous: float, base: float, cap: float) -> float:
        """Return ``nominal x uniform(1 - fraction, 1 + fraction)``, at most *cap*."""
        factor = self.rng.uniform(1.0 - self.fraction, 1.0 + self.fraction)
        return min(cap, nominal * factor)

    def __repr__(self) -> str:
        return f"ProportionalJitter({self.fraction!r})"


_NO_JITTER = NoJitter()
_DEFAULT_JITTER = ProportionalJitter(0.25)


def resolve_jitter(jitter: JitterSpec, name: str = "jitter") -> Jitter:
    """Turn a ``jitter=`` argument into a strategy; ``TypeError`` when it is neither."""
    if jitter is True:
        return _DEFAULT_JITTER
    if jitter is False:
        return _NO_JITTER
    if isinstance(jitter, (int, float, str)) or not callable(jitter):
        raise TypeError(
            f"{name} must be True, False or a jitter strategy such as FullJitter(), got {jitter!r}"
        )
    return jitter


def check_delays(base_delay: Seconds, max_delay: Seconds) -> tuple[float, float]:
    """Validate a ``(base_delay, max_delay)`` pair, naming the bad parameter.

    Returns:
        Both in seconds (either may be given as a ``datetime.timedelta``).
    """
    base = duration("base_delay", base_delay)
    cap = duration("max_delay", max_delay)
    if base > cap:
        raise ValueError(
            "base_delay must be <= max_delay, "
            f"got base_delay={base_delay!r} > max_delay={max_delay!r}"
        )
    return base, cap


def nominal_delay(retry_number: int, base_delay: Seconds, max_delay: Seconds) -> float:
    """The un-jittered delay before retry *retry_number* (0 for the first retry).

    ``min(base_delay * 2 ** retry_number, max_delay)``, with the exponent
    clamped before the power so that any retry number, 10**6 included, costs
    the same and never overflows. Either duration may be a ``datetime.timedelta``.

    Raises:
        TypeError, ValueError: *retry_number* is not an int >= 0, or a duration
            is not a finite number of seconds >= 0 (or a ``timedelta``); the
            message names the parameter and the value.
    """
    if isinstance(retry_number, bool) or not isinstance(retry_number, int):
        raise TypeError(f"retry_number must be an int, got {retry_number!r}")
    if retry_number < 0:
        raise ValueError(f"retry_number must be >= 0, got {retry_number!r}")
    # Arithmetic, no wait: no upper bound (Backoff and delays() bound theirs).
    base = duration("base_delay", base_delay, maximum=math.inf)
    cap = duration("max_delay", max_delay, maximum=math.inf)
    return _nominal_delay(retry_number, base, cap)


def _nominal_delay(retry_number: int, base_delay: float, max_delay: float) -> float:
    """``nominal_delay`` in seconds: what the delay strategies compute with."""
    if base_delay <= 0.0:
        return 0.0
    # Past this exponent the product exceeds max_delay whatever base_delay is;
    # from the binary exponents, exact (log2 rounding could make it one short).
    limit = math.frexp(max_delay)[1] - math.frexp(base_delay)[1] + 1
    try:
        return min(math.ldexp(base_delay, min(retry_number, limit)), max_delay)
    except OverflowError:  # only when max_delay is within a factor 2 of the largest float
        return max_delay


def delays(
    base_delay: Seconds,
    max_delay: Seconds,
    jitter: JitterSpec = True,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield the delays before retries 1, 2, 3, ... of one call, forever.

    Each value lies in ``[0, max_delay]``. A fresh iterator belongs to one call:
    ``DecorrelatedJitter`` keeps its previous value there, never in the
    strategy, so one strategy may be shared by every call and thread.

    Args:
        base_delay: the nominal delay before the first retry.
        max_delay: the cap on any delay.
        jitter: ``True`` (proportional, +-25 %), ``False`` or a strategy.
        rng: a ``random.Random`` used instead of the strategy's own; for
            ``jitter=True`` it makes the default jitter reproducible.
    """
    base, cap = check_delays(base_delay, max_delay)
    strategy = resolve_jitter(jitter)
    if rng is not None:
        strategy = _with_rng(strategy, rng)
    return _delays(base, cap, strategy)


def _with_rng(strategy: Jitter, rng: random.Random) -> Jitter:
    if isinstance(strategy, ProportionalJitter):
        return ProportionalJitter(strategy.fraction, rng)
    if isinstance(strategy, _Strategy):
        return type(strategy)(rng)
    return strategy


def _delays(base: float, cap: float, strategy: Jitter) -> Iterator[float]:
    step = _stepper(base, cap, strategy)
    state = _Steps(base)
    while True:
        yield step(state)


class _Steps:
    """Strictly private. The state of one call's delays: what a ``_stepper`` reads and moves.

    The retry loop keeps the same two fields in its own per-call object, so a
    failed attempt builds no iterator of its own.
    """

    __slots__ = ("nominal", "previous")

    def __init__(self, base: float) -> None:
        self.nominal = base if base > 0.0 else 0.0
        """The un-jittered delay of the next retry: doubled after each, up to the cap."""
        self.previous = base
        """The last delay drawn (``base`` before the first): ``DecorrelatedJitter`` grows it."""


def _stepper(base: float, cap: float, strategy: Jitter) -> Callable[[_Steps], float]:
    """The next delay of one call, from its state (a ``_Steps``, or an object with its fields).

    ``delays()`` yields these values and the retry loop draws them, one source
    for both. The nominal delay doubles, exactly, until the cap (``nominal_delay()``
    without a power per retry; ``base <= cap``, checked when the policy was made).
    """
    if type(strategy) is ProportionalJitter:  # the default: drawn inline, see below
        return _proportional(cap, strategy)

    def step(state: _Steps) -> float:
        nominal = state.nominal
        delay = strategy(nominal, state.previous, base, cap)
        # A user strategy must not make us sleep a negative or uncapped time.
        state.previous = delay = min(max(delay, 0.0), cap)
        state.nominal = nominal * 2.0 if nominal * 2.0 < cap else cap
        return delay

    return step


def _proportional(cap: float, strategy: ProportionalJitter) -> Callable[[_Steps], float]:
    """``ProportionalJitter``'s step, each delay drawn as its ``__call__`` draws it, inlined.

    The same numbers for the same generator state (``random.uniform(a, b)`` is
    ``a + (b - a) * random()``), at a fraction of the calls: computing a delay
    cost more than the rest of a failed attempt.
    """
    rng = strategy._rng  # pyright: ignore[reportPrivateUsage]  # the property, inlined
    low = 1.0 - strategy.fraction
    span = (1.0 + strategy.fraction) - low

    def step(state: _Steps) -> float:
        nominal = state.nominal
        draw = rng if rng is not None else _shared or _shared_rng()
        delay = nominal * (low + span * draw.random())
        doubled = nominal * 2.0
        # min() by comparison: a builtin call costs more than the arithmetic.
        state.nominal = doubled if doubled < cap else cap
        return delay if delay < cap else cap

    return step


def proportional_draw(policy: Backoff) -> tuple[float, float, random.Random | None] | None:
    """Strictly private. ``(low, span, rng)`` of ``steps(policy)`` when it is ``_proportional``.

    The retry loop draws that step itself, the same numbers with one call
    less per retry (a test holds its delays to ``delays()``'s): each delay is
    ``nominal * (low + span * rng.random())``, at most the cap (the shared
    generator when *rng* is ``None``); the nominal delay doubles up to the cap.
    ``None`` for any other step.
    """
    strategy = policy.jitter
    if policy.max_delay == 0.0 or type(strategy) is not ProportionalJitter:
        return None
    low = 1.0 - strategy.fraction
    return low, (1.0 + strategy.fraction) - low, strategy._rng


def _next_delay(
    strategy: Jitter, retry_number: int, previous: float, base: float, cap: float
) -> float:
    delay = strategy(_nominal_delay(retry_number, base, cap), previous, base, cap)
    # A user strategy must not make us sleep a negative or uncapped time.
    return min(max(delay, 0.0), cap)


class Backoff:
    """A reusable delay policy: base, cap and jitter, validated once.

    ``CircuitBreaker(recovery_timeout=Backoff(30, 600, FullJitter()))`` waits
    longer after each trip that did not recover. ``iter(policy)`` is
    ``delays(base_delay, max_delay, jitter)``.
    """

    __slots__ = ("base_delay", "jitter", "max_delay")

    def __init__(
        self, base_delay: Seconds = 1.0, max_delay: Seconds = 60.0, jitter: JitterSpec = True
    ) -> None:
        self.base_delay, self.max_delay = check_delays(base_delay, max_delay)
        self.jitter: Jitter = resolve_jitter(jitter)

    def __iter__(self) -> Iterator[float]:
        """A fresh iterator of delays, as ``delays()`` returns."""
        return _iterators(self)()

    def delay(self, retry_number: int, previous: float | None = None) -> float:
        """The delay before retry *retry_number* (0-based), given the previous delay.

        For state kept outside the process (a breaker in Redis) where no
        iterator can live: pass the delay used last time as *previous*.
        """
        prev = self.base_delay if previous is None else previous
        return _next_delay(self.jitter, retry_number, prev, self.base_delay, self.max_delay)

    def __repr__(self) -> str:
        return (
            f"Backoff(base_delay={self.base_delay!r}, max_delay={self.max_delay!r}, "
            f"jitter={self.jitter!r})"
        )


def _iterators(policy: Backoff) -> Callable[[], Iterator[float]]:
    """Strictly private. What ``iter(policy)`` does, as one callable made once.

    The choice of generator is made here, not at each call. The iterators
    follow the policy as it is when this is called.
    """
    if policy.max_delay == 0.0:  # every strategy's value is clamped to [0, 0]
        return functools.partial(itertools.repeat, 0.0)
    return functools.partial(_delays, policy.base_delay, policy.max_delay, policy.jitter)


def steps(policy: Backoff) -> Callable[[_Steps], float] | None:
    """Strictly private. The retry loop's ``next(iter(policy))``: one delay from a call's state.

    The loop keeps ``nominal`` and ``previous`` (``_Steps``'s fields, same
    start values) on its own per-call object and calls this once per retry:
    exactly the values ``iter(policy)`` yields, with no iterator to build.
    ``None`` when every delay is 0.0 (``max_delay`` is 0): nothing to call.
    """
    if policy.max_delay == 0.0:  # every strategy's value is clamped to [0, 0]
        return None
    return _stepper(policy.base_delay, policy.max_delay, policy.jitter)


if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        """``Jitter`` and ``JitterSpec``, from ``resilient._types``, on first use (PEP 562)."""
        if name in ("Jitter", "JitterSpec"):
            from resilient import _types  # noqa: PLC0415 - only users of the names pay for typing

            return getattr(_types, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
