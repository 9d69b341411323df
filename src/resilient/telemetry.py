"""Metrics and traces of retries, breakers, budgets and tasks: Prometheus, OpenTelemetry.

Off until asked for. ``enable_prometheus()`` puts the metrics in a
``prometheus_client`` registry; ``enable_opentelemetry()`` creates
instruments on an OpenTelemetry meter and adds an event to the current span
for every retry and every rejected call; ``disable()`` stops both. Nothing
from ``prometheus_client`` or ``opentelemetry`` is imported before the
matching ``enable_*`` runs (they are the extras ``resilient-kit[prometheus]``
and ``resilient-kit[otel]``).

Every figure comes from the events the library already has, the ones its
logs and its breaker listeners see: a retry scheduled, a call given up, a
budget refusal, a breaker's transition or rejection, a task's end. While
telemetry is off each of those sites costs one global read, and only on a
path that failed or ended; the success path of ``@retry`` and the closed
path of a breaker have no site at all. Per-call breaker outcomes are never
pushed: every breaker counts them anyway (``CircuitBreaker.metrics``), and
they are read from the live breakers when the metrics are collected.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from resilient import _events
from resilient._compat import name_of
from resilient._redact import describe_error, error_fields, log_with_traceback, type_name

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import TracerProvider
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from resilient._breaker_state import CircuitState
    from resilient._classify import ErrorClass

__all__ = ["disable", "enable_opentelemetry", "enable_prometheus"]

logger = logging.getLogger("resilient.telemetry")

TASK_DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
"""Upper bounds (seconds) of the task duration histogram: a task with its
retries and their waits can take minutes, so the buckets reach 5 minutes."""

STATES: tuple[str, ...] = ("closed", "open", "half_open")
"""The values of the ``state`` label: every breaker reports all three."""

OUTCOMES: tuple[str, ...] = ("success", "failure", "ignored", "rejected")
"""The values of the ``outcome`` label of the breaker calls."""

_SEVERITY = {"closed": 0, "half_open": 1, "open": 2}


# -- the public functions -------------------------------------------------------------


def enable_prometheus(registry: CollectorRegistry | None = None) -> None:
    """Publish the library's metrics in a Prometheus registry.

    Calling it again with the same registry does nothing; with another
    registry, the metrics leave the first and start from zero in the new
    one (the pushed counts are those made since the registry was enabled;
    the breakers' counts are theirs, since they were built). Breakers built
    before the call are included.

    Args:
        registry: a ``prometheus_client.CollectorRegistry``; default
            ``prometheus_client.REGISTRY``, the one ``start_http_server``
            and ``generate_latest()`` serve.

    Raises:
        ImportError: ``prometheus_client`` is not installed
            (``pip install 'resilient-kit[prometheus]'``).
        TypeError: *registry* is not a registry.
        ValueError: *registry* already holds metrics of these names
            (``prometheus_client``'s own check); nothing was changed.
    """
    try:
        import prometheus_client  # noqa: PLC0415 - imported only once asked for
    except ImportError as error:
        raise ImportError(
            "enable_prometheus() needs prometheus_client: pip install 'resilient-kit[prometheus]'"
        ) from error
    target = prometheus_client.REGISTRY if registry is None else registry
    if not (
        callable(getattr(target, "register", None))
        and callable(getattr(target, "unregister", None))
    ):
        raise TypeError(
            f"registry must be a prometheus_client.CollectorRegistry or None, got {registry!r}"
        )
    global _prometheus
    with _lock:
        if _prometheus is not None and _prometheus.registry is target:
            return
        exporter = _Prometheus()
        exporter.attach(target)  # first: if the registry refuses, nothing has changed
        if _prometheus is not None:
            _prometheus.detach()
        _prometheus = exporter
        _install()


def enable_opentelemetry(
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
) -> None:
    """Record the library's metrics as OpenTelemetry instruments, its retries and
    rejections as span events.

    The instruments are created on the meter ``"resilient"`` of
    *meter_provider*. Each retry and each rejected call adds an event to the
    span current in the thread or task that made the call (when it records).
    Calling it again with the same providers does nothing; with others, the
    instruments are created there and the previous ones stop reporting.

    Args:
        meter_provider: an ``opentelemetry.metrics.MeterProvider``; default
            the global one (``opentelemetry.metrics.get_meter_provider()``,
            which forwards to the provider set later, if none is set yet).
        tracer_provider: an ``opentelemetry.trace.TracerProvider``; default
            the global one. ``resilient`` starts no span of its own: the
            events go on the current span, whichever provider started it, so
            this only has to be a tracer provider (it is checked).

    Raises:
        ImportError: ``opentelemetry-api`` is not installed
            (``pip install 'resilient-kit[otel]'``).
        TypeError: a provider of the wrong kind.
    """
    try:
        from opentelemetry import metrics, trace  # noqa: PLC0415 - imported only once asked for
    except ImportError as error:
        raise ImportError(
            "enable_opentelemetry() needs opentelemetry-api: pip install 'resilient-kit[otel]'"
        ) from error
    meters = metrics.get_meter_provider() if meter_provider is None else meter_provider
    tracers = trace.get_tracer_provider() if tracer_provider is None else tracer_provider
    if not callable(getattr(meters, "get_meter", None)):
        raise TypeError(
            "meter_provider must be an opentelemetry.metrics.MeterProvider or None, "
            f"got {meter_provider!r}"
        )
    if not callable(getattr(tracers, "get_tracer", None)):
        raise TypeError(
            "tracer_provider must be an opentelemetry.trace.TracerProvider or None, "
            f"got {tracer_provider!r}"
        )
    global _otel, _otel_idle
    with _lock:
        if _otel is not None and _otel.meter_provider is meters:
            return
        if _otel is not None:
            _otel.active = False
        # The instruments of a meter cannot be removed, and asking again for one
        # returns the first (with its first callbacks): re-enabling on the same
        # provider reuses the exporter that created them.
        if _otel_idle is not None and _otel_idle.meter_provider is meters:
            _otel = _otel_idle
        else:
            _otel = _OpenTelemetry(meters)
        _otel_idle = None
        _otel.active = True
        _install()


def disable() -> None:
    """Stop every exporter: the metrics leave the Prometheus registry, the
    OpenTelemetry instruments stop reporting, no span event is added.

    The event sites go back to costing one global read. Enabling Prometheus
    again starts its pushed counts from zero (a counter reset, which
    ``rate()`` takes in its stride); OpenTelemetry instruments, which a meter
    keeps, carry on. Harmless when nothing is enabled.
    """
    global _prometheus, _otel, _otel_idle
    with _lock:
        if _prometheus is not None:
            _prometheus.detach()
            _prometheus = None
        if _otel is not None:
            _otel.active = False
            _otel_idle = _otel
            _otel = None
        _install()


# -- the state (under _lock) -----------------------------------------------------------

_lock = threading.Lock()
_prometheus: _Prometheus | None = None
_otel: _OpenTelemetry | None = None
_otel_idle: _OpenTelemetry | None = None
"""The exporter of the last provider, kept after ``disable()`` to be resumed."""


def _install() -> None:
    """Point the event sites at the exporters enabled now, or at nothing."""
    exporters: list[Any] = []
    if _prometheus is not None:
        exporters.append(_prometheus)
    if _otel is not None:
        exporters.append(_otel)
    _events.SINK = _Exporters(tuple(exporters)) if exporters else None


class _Exporters:
    """Strictly private. The event sink while telemetry is on: every event to every exporter.

    The exporters' methods are looked up once, here. One that raises is
    logged once (per exporter and event) and never breaks the call that made
    the event.
    """

    __slots__ = (
        "_breaker_changed",
        "_breaker_rejected",
        "_budget_refused",
        "_gave_up",
        "_pacing_refused",
        "_retried",
        "_task_finished",
    )

    def __init__(self, exporters: tuple[Any, ...]) -> None:
        def hooks(event: str) -> tuple[Callable[..., None], ...]:
            # An exporter that has nothing to do for an event sets it to None.
            found = (getattr(exporter, event) for exporter in exporters)
            return tuple(hook for hook in found if hook is not None)

        self._retried = hooks("retried")
        self._gave_up = hooks("gave_up")
        self._budget_refused = hooks("budget_refused")
        self._breaker_changed = hooks("breaker_changed")
        self._breaker_rejected = hooks("breaker_rejected")
        self._task_finished = hooks("task_finished")
        self._pacing_refused = hooks("pacing_refused")

    def retried(
        self,
        function: str,
        attempt: int,
        error_class: ErrorClass,
        delay: float,
        exc: BaseException | None,
        result: Any,
    ) -> None:
        for hook in self._retried:
            try:
                hook(function, attempt, error_class, delay, exc, result)
            except Exception as error:
                _failed_once(hook, error)

    def gave_up(
        self,
        function: str,
        attempt: int,
        error_class: ErrorClass,
        exc: BaseException | None,
        result: Any,
    ) -> None:
        for hook in self._gave_up:
            try:
                hook(function, attempt, error_class, exc, result)
            except Exception as error:
                _failed_once(hook, error)

    def budget_refused(self, budget: object) -> None:
        for hook in self._budget_refused:
            try:
                hook(budget)
            except Exception as error:
                _failed_once(hook, error)

    def breaker_changed(
        self, breaker: str, old: CircuitState, new: CircuitState, exc: BaseException | None
    ) -> None:
        for hook in self._breaker_changed:
            try:
                hook(breaker, old, new, exc)
            except Exception as error:
                _failed_once(hook, error)

    def breaker_rejected(self, breaker: str, error: BaseException) -> None:
        for hook in self._breaker_rejected:
            try:
                hook(breaker, error)
            except Exception as failure:
                _failed_once(hook, failure)

    def task_finished(
        self, task: str, outcome: str, elapsed: float, attempts: int, exc: BaseException | None
    ) -> None:
        for hook in self._task_finished:
            try:
                hook(task, outcome, elapsed, attempts, exc)
            except Exception as error:
                _failed_once(hook, error)

    def pacing_refused(self, kind: str, name: str, error: BaseException) -> None:
        for hook in self._pacing_refused:
            try:
                hook(kind, name, error)
            except Exception as failure:
                _failed_once(hook, failure)


_reported: set[str] = set()


def _failed_once(where: object, error: Exception) -> None:
    """Log a failure of telemetry once per place it happens: it must never flood.

    *where* is an exporter's hook (its qualified name says which) or a phrase.
    """
    name = where if isinstance(where, str) else name_of(where)
    if name in _reported:
        return
    _reported.add(name)
    error_type, message = error_fields(error)
    log_with_traceback(
        logger,
        logging.ERROR,
        "telemetry failed in %s: %s; the calls carry on, and further failures there are not logged",
        name,
        describe_error(error),
        error=error,
        extra={
            "event": "telemetry_failed",
            "where": name,
            "error_type": error_type,
            "error": message,
        },
    )


# -- the tallies --------------------------------------------------------------------------


class _Tally:
    """Strictly private. Event counts by label values, for one exporter.

    Adding is a dict lookup and ``next()`` on an ``itertools.count`` (atomic,
    so threads lose nothing without a lock); the lock is taken only to add a
    new label set, and to read.
    """

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._counts: dict[tuple[str | None, ...], itertools.count[int]] = {}
        self._lock = threading.Lock()

    def add(self, key: tuple[str | None, ...]) -> None:
        counter = self._counts.get(key)
        if counter is None:
            with self._lock:
                counter = self._counts.setdefault(key, itertools.count())
        next(counter)

    def items(self) -> list[tuple[tuple[str | None, ...], int]]:
        """Every label set with its count, now."""
        with self._lock:
            pairs = list(self._counts.items())
        return [(key, _peek(counter)) for key, counter in pairs]


def _peek(counter: itertools.count[int]) -> int:
    """The value *counter* would give next, without taking it (its repr is 'count(7)')."""
    return int(repr(counter)[6:-1])


class _Series:
    """Strictly private. One histogram series: a count per bucket (the last: above all), a sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(TASK_DURATION_BUCKETS) + 1)
        self.total = 0.0


class _Durations:
    """Strictly private. The task duration histogram, by task; thread-safe."""

    __slots__ = ("_lock", "_series")

    def __init__(self) -> None:
        self._series: dict[str, _Series] = {}
        self._lock = threading.Lock()

    def observe(self, task: str, seconds: float) -> None:
        index = bisect.bisect_left(TASK_DURATION_BUCKETS, seconds)  # `le` bounds: <= wins
        with self._lock:
            series = self._series.get(task)
            if series is None:
                series = self._series[task] = _Series()
            series.counts[index] += 1
            series.total += seconds

    def items(self) -> list[tuple[str, list[int], float]]:
        """Each task's count per bucket and sum, now."""
        with self._lock:
            return [(task, list(s.counts), s.total) for task, s in self._series.items()]


# -- the facts, as labels ---------------------------------------------------------------


def _error_type(exc: BaseException | None, result: object) -> str:
    """The OpenTelemetry ``error.type``: the exception's qualified type name, as the
    logs' ``error_type``; for a result rejected by ``retry_on_result``, its status
    code, or ``_OTHER`` (the semantic conventions' fallback)."""
    if exc is not None:
        return type_name(type(exc))
    code = getattr(result, "status_code", None)
    return str(code) if isinstance(code, int) and not isinstance(code, bool) else "_OTHER"


def _budget_name(budget: object) -> str:
    name = getattr(budget, "name", None)
    return name if isinstance(name, str) and name else "default"


def _label(value: str) -> str:
    """*value* as a label value every exporter can encode.

    A name the user gave (a breaker's, a task's) may hold a lone surrogate,
    which UTF-8 cannot encode: Prometheus's exposition would fail whole, every
    metric of the process lost with it. Such a name is written with the
    surrogate escaped (``svc-\\ud800``); any other name is itself.
    """
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _labels(key: tuple[str | None, ...]) -> tuple[str, ...]:
    """A tally's key as label values: ``None`` as ``""``, each encodable (``_label``)."""
    return tuple(_label(part) if part else "" for part in key)


class _BreakerView:
    """Strictly private. What one breaker name reports, summed over the breakers that share it."""

    __slots__ = ("modes", "outcomes", "state")

    def __init__(self) -> None:
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.state = "closed"
        self.modes: set[str] = set()


def _read_breakers() -> dict[str, _BreakerView]:
    """The live breakers by name, read now (a breaker on a shared store asks the store).

    Breakers built with the same name (sharing a store, or by mistake) are
    one series: their counts are summed, and the state is the most severe
    one (open, then half-open, then closed).
    """
    views: dict[str, _BreakerView] = {}
    for breaker in _events.live_breakers():
        try:
            metrics = breaker.metrics
        except Exception as error:
            _failed_once(f"reading circuit {breaker.name!r}", error)
            continue
        name = _label(metrics.name)
        view = views.get(name)
        if view is None:
            view = views[name] = _BreakerView()
        outcomes = view.outcomes
        outcomes["success"] += metrics.successes
        outcomes["failure"] += metrics.failures
        outcomes["ignored"] += metrics.ignored
        outcomes["rejected"] += metrics.rejected
        state = str(metrics.state)
        if _SEVERITY.get(state, 0) > _SEVERITY.get(view.state, 0):
            view.state = state
        view.modes.add(str(metrics.store_mode))
    return views


PACING_OUTCOMES: tuple[str, ...] = ("admitted", "waited", "refused")
"""The values of the ``outcome`` label of the rate limiters' acquires: admitted at
once, admitted after a wait, refused (``RateLimitExceeded``, or ``try_acquire`` saying no)."""


def _read_pacers() -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """The live rate limiters' counts and concurrency limits' ``[limit, in_flight]``, by name.

    Objects built with the same name (sharing a store) are one series: the
    counts and the calls in flight add up, the limit is the largest.
    """
    limiters: dict[str, list[int]] = {}
    limits: dict[str, list[int]] = {}
    for pacer in _events.live_pacers():
        try:
            counts = getattr(pacer, "_pacing_counts", None)
            if counts is not None:
                total = limiters.setdefault(_label(pacer.name), [0, 0, 0])
                for index, count in enumerate(counts()):
                    total[index] += count
            else:
                pair = limits.setdefault(_label(pacer.name), [0, 0])
                pair[0] = max(pair[0], pacer.limit)
                pair[1] += pacer.in_flight
        except Exception as error:
            _failed_once(f"reading {pacer!r}", error)
    return limiters, limits


# -- Prometheus -----------------------------------------------------------------------------


class _Prometheus:
    """Strictly private. The Prometheus exporter: one collector holding every metric.

    The events are counted in tallies of its own, and everything (the
    tallies, the breakers read now) becomes metric families when the registry
    collects. One collector, so ``disable()`` removes it whole.
    """

    def __init__(self) -> None:
        self.registry: Any = None
        self.retries = _Tally()
        self.exhausted = _Tally()
        self.refusals = _Tally()
        self.transitions = _Tally()
        self.tasks = _Tally()
        self.durations = _Durations()

    def attach(self, registry: Any) -> None:
        registry.register(self)
        self.registry = registry

    def detach(self) -> None:
        if self.registry is not None:
            with contextlib.suppress(KeyError):  # someone unregistered it already
                self.registry.unregister(self)
            self.registry = None

    # -- the events

    def retried(
        self,
        function: str,
        attempt: int,
        error_class: ErrorClass,
        delay: float,
        exc: BaseException | None,
        result: Any,
    ) -> None:
        self.retries.add((function, error_class.value))

    def gave_up(
        self,
        function: str,
        attempt: int,
        error_class: ErrorClass,
        exc: BaseException | None,
        result: Any,
    ) -> None:
        self.exhausted.add((function, error_class.value))

    def budget_refused(self, budget: object) -> None:
        self.refusals.add((_budget_name(budget),))

    def breaker_changed(
        self, breaker: str, old: CircuitState, new: CircuitState, exc: BaseException | None
    ) -> None:
        self.transitions.add((breaker, old.value, new.value))

    breaker_rejected = None
    """Rejections are counted by the breaker itself, and read when collected."""

    pacing_refused = None
    """Refusals are counted by the rate limiters themselves, and read when collected."""

    def task_finished(
        self, task: str, outcome: str, elapsed: float, attempts: int, exc: BaseException | None
    ) -> None:
        self.tasks.add((task, outcome))
        if attempts:
            self.durations.observe(task, elapsed)

    # -- the collector protocol of prometheus_client

    def describe(self) -> list[Metric]:
        """The metric families, without samples: what the registry checks for clashes."""
        return list(self._families(empty=True))

    def collect(self) -> Iterator[Metric]:
        """Every family with its samples: the tallies, then the breakers read now."""
        return self._families(empty=False)

    def _families(self, *, empty: bool) -> Iterator[Metric]:
        from prometheus_client.core import (  # noqa: PLC0415 - see enable_prometheus
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        for name, help_text, labels, tally in (
            (
                "resilient_retries",
                "Retries scheduled, by retried function and error class.",
                ("function", "error_class"),
                self.retries,
            ),
            (
                "resilient_retries_exhausted",
                "Retried calls that gave up and failed, by function and the last error class.",
                ("function", "error_class"),
                self.exhausted,
            ),
            (
                "resilient_retry_budget_refusals",
                "Retries a retry budget refused.",
                ("budget",),
                self.refusals,
            ),
            (
                "resilient_breaker_transitions",
                "Circuit breaker state changes made by this process.",
                ("breaker", "from_state", "to_state"),
                self.transitions,
            ),
            (
                "resilient_tasks",
                "Tasks run by execute_task_safely and run_tasks, by outcome.",
                ("task", "outcome"),
                self.tasks,
            ),
        ):
            counter = CounterMetricFamily(name, help_text, labels=labels)
            for key, count in () if empty else sorted(tally.items(), key=_sort_key):
                counter.add_metric(_labels(key), count)
            yield counter
        histogram = HistogramMetricFamily(
            "resilient_task_duration_seconds",
            "Seconds each task took, retries and waits included (tasks that ran).",
            labels=("task",),
        )
        for task, counts, total in () if empty else sorted(self.durations.items()):
            cumulative = list(itertools.accumulate(counts))
            bounds = zip(TASK_DURATION_BUCKETS, cumulative[:-1], strict=True)
            buckets = [(repr(bound), n) for bound, n in bounds]
            buckets.append(("+Inf", cumulative[-1]))
            histogram.add_metric((_label(task),), buckets, total)
        yield histogram

        views = {} if empty else _read_breakers()
        calls = CounterMetricFamily(
            "resilient_breaker_calls",
            "Calls through each circuit breaker in this process, by outcome.",
            labels=("breaker", "outcome"),
        )
        states = GaugeMetricFamily(
            "resilient_breaker_state",
            "1 for the state each circuit breaker is in (as its store sees it), 0 for the others.",
            labels=("breaker", "state"),
        )
        modes = GaugeMetricFamily(
            "resilient_breaker_store_mode",
            "1 for where each breaker's state lives now: memory, redis, or a Redis outage "
            "fallback (local, open, closed).",
            labels=("breaker", "mode"),
        )
        for name in sorted(views):
            view = views[name]
            for outcome, count in view.outcomes.items():
                calls.add_metric((name, outcome), count)
            for state in STATES:
                states.add_metric((name, state), 1.0 if state == view.state else 0.0)
            for mode in sorted(view.modes):
                modes.add_metric((name, mode), 1.0)
        yield from (calls, states, modes)

        limiters, limits = ({}, {}) if empty else _read_pacers()
        acquires = CounterMetricFamily(
            "resilient_rate_limiter_acquires",
            "Acquires of each rate limiter in this process: admitted at once, after a wait, "
            "or refused.",
            labels=("limiter", "outcome"),
        )
        for name in sorted(limiters):
            for outcome, count in zip(PACING_OUTCOMES, limiters[name], strict=True):
                acquires.add_metric((name, outcome), count)
        limit_gauge = GaugeMetricFamily(
            "resilient_concurrency_limit",
            "The calls each concurrency limit allows in flight now (moves when adaptive).",
            labels=("concurrency",),
        )
        in_flight = GaugeMetricFamily(
            "resilient_concurrency_in_flight",
            "The calls holding a slot of each concurrency limit in this process now.",
            labels=("concurrency",),
        )
        for name in sorted(limits):
            limit_gauge.add_metric((name,), limits[name][0])
            in_flight.add_metric((name,), limits[name][1])
        yield from (acquires, limit_gauge, in_flight)


def _sort_key(item: tuple[tuple[str | None, ...], int]) -> tuple[str, ...]:
    return tuple(part or "" for part in item[0])


# -- OpenTelemetry -----------------------------------------------------------------------


class _OpenTelemetry:
    """Strictly private. The OpenTelemetry exporter: instruments on one meter, span events.

    The counts are kept in tallies of its own and observed at collection (an
    observable counter costs the event a dict lookup; a synchronous one,
    microseconds); the durations go to a synchronous histogram, as
    OpenTelemetry has no observable one.
    """

    def __init__(self, meter_provider: Any) -> None:
        from opentelemetry import trace  # noqa: PLC0415 - see enable_opentelemetry
        from opentelemetry.metrics import Observation  # noqa: PLC0415

        self.meter_provider = meter_provider
        self.active = False
        self._observation = Observation
        self._current_span = trace.get_current_span
        self.retries = _Tally()
        self.exhausted = _Tally()
        self.refusals = _Tally()
        self.transitions = _Tally()
        self.tasks = _Tally()
        meter = meter_provider.get_meter("resilient", _version())
        for name, unit, description, tally, attributes in (
            (
                "resilient.retry.scheduled",
                "{retry}",
                "Retries scheduled, by retried function and error class.",
                self.retries,
                ("function", "error_class", "error.type"),
            ),
            (
                "resilient.retry.exhausted",
                "{call}",
                "Retried calls that gave up and failed.",
                self.exhausted,
                ("function", "error_class", "error.type"),
            ),
            (
                "resilient.retry_budget.refusals",
                "{retry}",
                "Retries a retry budget refused.",
                self.refusals,
                ("budget",),
            ),
            (
                "resilient.breaker.transitions",
                "{transition}",
                "Circuit breaker state changes made by this process.",
                self.transitions,
                ("breaker", "from_state", "to_state", "error.type"),
            ),
            (
                "resilient.task.completed",
                "{task}",
                "Tasks run by execute_task_safely and run_tasks, by outcome.",
                self.tasks,
                ("task", "outcome", "error.type"),
            ),
        ):
            meter.create_observable_counter(
                name,
                callbacks=[functools.partial(self._observe_tally, tally, attributes)],
                unit=unit,
                description=description,
            )
        self.durations = meter.create_histogram(
            "resilient.task.duration",
            unit="s",
            description="Seconds each task took, retries and waits included (tasks that ran).",
            explicit_bucket_boundaries_advisory=TASK_DURATION_BUCKETS,
        )
        meter.create_observable_counter(
            "resilient.breaker.calls",
            callbacks=[self._observe_calls],
            unit="{call}",
            description="Calls through each circuit breaker in this process, by outcome.",
        )
        meter.create_observable_gauge(
            "resilient.breaker.state",
            callbacks=[self._observe_states],
            description="1 for the state each circuit breaker is in, 0 for the others.",
        )
        meter.create_observable_gauge(
            "resilient.breaker.store_mode",
            callbacks=[self._observe_modes],
            description="1 for where each breaker's state lives now.",
        )
        meter.create_observable_counter(
            "resilient.rate_limiter.acquires",
            callbacks=[self._observe_acquires],
            unit="{acquire}",
            description="Acquires of each rate limiter: admitted at once, after a wait, refused.",
        )
        meter.create_observable_gauge(
            "resilient.concurrency.limit",
            callbacks=[functools.partial(self._observe_limits, 0)],
            unit="{call}",
            description="The calls each concurrency limit allows in flight now.",
        )
        meter.create_observable_gauge(
            "resilient.concurrency.in_flight",
            callbacks=[functools.partial(self._observe_limits, 1)],
            unit="{call}",
            description="The calls holding a slot of each concurrency limit now.",
        )

    # -- the events

    def retried(
        self,
        function: str,
        attempt: int,
        error_class: ErrorClass,
        delay: float,
        exc: BaseException | None,
        result: Any,
    ) -> None:
        error_type = _error_type(exc, result)
        self.retries.add((function, error_class.value, error_type))
        span = self._current_span()
        if span.is_recording():
            span.add_event(
                "resilient.retry",
                {
                    "function": function,
                    "attempt": attempt,
                    "delay": delay,
                    "error_class": error_class.value,
                    "error.type": error_type,
                },
            )

    def gave_up(
        self,
        function: str,
        attempt: int,
        error_class: ErrorClass,
        exc: BaseException | None,
        result: Any,
    ) -> None:
        self.exhausted.add((function, error_class.value, _error_type(exc, result)))

    def budget_refused(self, budget: object) -> None:
        self.refusals.add((_budget_name(budget),))

    def breaker_changed(
        self, breaker: str, old: CircuitState, new: CircuitState, exc: BaseException | None
    ) -> None:
        error_type = None if exc is None else type_name(type(exc))
        self.transitions.add((breaker, old.value, new.value, error_type))

    def breaker_rejected(self, breaker: str, error: BaseException) -> None:
        span = self._current_span()
        if span.is_recording():
            span.add_event(
                "resilient.breaker.rejected",
                {
                    "breaker": _label(breaker),
                    "state": str(getattr(error, "state", "open")),
                    "remaining": float(getattr(error, "remaining", 0.0)),
                    "error.type": type_name(type(error)),
                },
            )

    def pacing_refused(self, kind: str, name: str, error: BaseException) -> None:
        span = self._current_span()
        if span.is_recording():
            attributes: dict[str, Any] = {kind: _label(name), "error.type": type_name(type(error))}
            wait = getattr(error, "retry_after", None)
            if isinstance(wait, float):
                attributes["retry_after"] = wait
            span.add_event(
                f"resilient.{'rate_limiter' if kind == 'limiter' else kind}.refused", attributes
            )

    def task_finished(
        self, task: str, outcome: str, elapsed: float, attempts: int, exc: BaseException | None
    ) -> None:
        self.tasks.add((task, outcome, None if exc is None else type_name(type(exc))))
        if attempts:
            self.durations.record(elapsed, {"task": _label(task), "outcome": outcome})

    # -- the observable instruments, read at collection

    def _observe_tally(
        self, tally: _Tally, names: tuple[str, ...], options: CallbackOptions
    ) -> Iterable[Observation]:
        if not self.active:
            return []
        return [
            self._observation(
                count,
                {
                    name: _label(part)
                    for name, part in zip(names, key, strict=True)
                    if part is not None
                },
            )
            for key, count in tally.items()
        ]

    def _observe_calls(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self.active:
            return []
        return [
            self._observation(count, {"breaker": name, "outcome": outcome})
            for name, view in _read_breakers().items()
            for outcome, count in view.outcomes.items()
        ]

    def _observe_states(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self.active:
            return []
        return [
            self._observation(1 if state == view.state else 0, {"breaker": name, "state": state})
            for name, view in _read_breakers().items()
            for state in STATES
        ]

    def _observe_modes(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self.active:
            return []
        return [
            self._observation(1, {"breaker": name, "mode": mode})
            for name, view in _read_breakers().items()
            for mode in sorted(view.modes)
        ]

    def _observe_acquires(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self.active:
            return []
        limiters, _ = _read_pacers()
        return [
            self._observation(count, {"limiter": name, "outcome": outcome})
            for name, counts in limiters.items()
            for outcome, count in zip(PACING_OUTCOMES, counts, strict=True)
        ]

    def _observe_limits(self, index: int, options: CallbackOptions) -> Iterable[Observation]:
        if not self.active:
            return []
        _, limits = _read_pacers()
        return [
            self._observation(pair[index], {"concurrency": name}) for name, pair in limits.items()
        ]


def _version() -> str | None:
    from importlib.metadata import (  # noqa: PLC0415 - only when OpenTelemetry is enabled
        PackageNotFoundError,
        version,
    )

    try:
        return version("resilient-kit")
    except PackageNotFoundError:
        return None
