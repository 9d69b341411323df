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

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from resilient import _events
from resilient._redact import describe_error, type_name

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
        TypeError: *registry* has no ``register`` method.
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
        if _prometheus is not None:
            _prometheus.detach()
        _prometheus = _Prometheus()
        _prometheus.attach(target)
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

    An exporter that raises is logged once (per exporter and event) and never
    breaks the call that made the event.
    """

    __slots__ = ("exporters",)

    def __init__(self, exporters: tuple[Any, ...]) -> None:
        self.exporters = exporters

    def _each(self, event: str, *args: Any) -> None:
        for exporter in self.exporters:
            try:
                getattr(exporter, event)(*args)
            except Exception as error:
                _failed_once(f"{type(exporter).__name__}.{event}", error)

    def retried(
        self,
        function: str,
        attempt: int,
        error_class: ErrorClass,
        delay: float,
        exc: BaseException | None,
        result: Any,
    ) -> None:
        self._each("retried", function, attempt, error_class, delay, exc, result)

    def gave_up(
        self,
        function: str,
        attempt: int,
        error_class: ErrorClass,
        exc: BaseException | None,
        result: Any,
    ) -> None:
        self._each("gave_up", function, attempt, error_class, exc, result)

    def budget_refused(self, budget: object) -> None:
        self._each("budget_refused", budget)

    def breaker_changed(
        self, breaker: str, old: CircuitState, new: CircuitState, exc: BaseException | None
    ) -> None:
        self._each("breaker_changed", breaker, old, new, exc)

    def breaker_rejected(self, breaker: str, error: BaseException) -> None:
        self._each("breaker_rejected", breaker, error)

    def task_finished(
        self, task: str, outcome: str, elapsed: float, attempts: int, exc: BaseException | None
    ) -> None:
        self._each("task_finished", task, outcome, elapsed, attempts, exc)


_reported: set[str] = set()


def _failed_once(where: str, error: Exception) -> None:
    if where in _reported:
        return
    _reported.add(where)
    logger.error(
        "telemetry %s raised %s; the calls carry on, and further failures there are not logged",
        where,
        describe_error(error),
        exc_info=error,
        extra={"event": "telemetry_failed", "where": where},
    )


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
        view = views.get(metrics.name)
        if view is None:
            view = views[metrics.name] = _BreakerView()
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


# -- Prometheus -----------------------------------------------------------------------------


class _Prometheus:
    """Strictly private. The Prometheus exporter: one collector holding every metric.

    Pushed facts live in ``prometheus_client`` metrics kept off any registry;
    the breakers are read when the registry collects. One collector, so
    ``disable()`` removes it whole.
    """

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram  # noqa: PLC0415 - see enable_prometheus

        self.registry: Any = None
        self.retries = Counter(
            "resilient_retries",
            "Retries scheduled, by retried function and error class.",
            ("function", "error_class"),
            registry=None,
        )
        self.exhausted = Counter(
            "resilient_retries_exhausted",
            "Retried calls that gave up and failed, by function and the last error class.",
            ("function", "error_class"),
            registry=None,
        )
        self.refusals = Counter(
            "resilient_retry_budget_refusals",
            "Retries a retry budget refused.",
            ("budget",),
            registry=None,
        )
        self.transitions = Counter(
            "resilient_breaker_transitions",
            "Circuit breaker state changes made by this process.",
            ("breaker", "from_state", "to_state"),
            registry=None,
        )
        self.tasks = Counter(
            "resilient_tasks",
            "Tasks run by execute_task_safely and run_tasks, by outcome.",
            ("task", "outcome"),
            registry=None,
        )
        self.durations = Histogram(
            "resilient_task_duration_seconds",
            "Seconds each task took, retries and waits included (tasks that ran).",
            ("task",),
            buckets=TASK_DURATION_BUCKETS,
            registry=None,
        )

    def attach(self, registry: Any) -> None:
        registry.register(self)
        self.registry = registry

    def detach(self) -> None:
        if self.registry is not None:
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
        self.retries.labels(function, error_class.value).inc()

    def gave_up(
        self,
        function: str,
        attempt: int,
        error_class: ErrorClass,
        exc: BaseException | None,
        result: Any,
    ) -> None:
        self.exhausted.labels(function, error_class.value).inc()

    def budget_refused(self, budget: object) -> None:
        self.refusals.labels(_budget_name(budget)).inc()

    def breaker_changed(
        self, breaker: str, old: CircuitState, new: CircuitState, exc: BaseException | None
    ) -> None:
        self.transitions.labels(breaker, old.value, new.value).inc()

    def breaker_rejected(self, breaker: str, error: BaseException) -> None:
        """Counted by the breaker itself, and read when collected."""

    def task_finished(
        self, task: str, outcome: str, elapsed: float, attempts: int, exc: BaseException | None
    ) -> None:
        self.tasks.labels(task, outcome).inc()
        if attempts:
            self.durations.labels(task).observe(elapsed)

    # -- the collector protocol of prometheus_client

    def _pushed(self) -> tuple[Any, ...]:
        return (
            self.retries,
            self.exhausted,
            self.refusals,
            self.transitions,
            self.tasks,
            self.durations,
        )

    def describe(self) -> list[Metric]:
        """The metric families, without samples: what the registry checks for clashes."""
        found: list[Metric] = [family for metric in self._pushed() for family in metric.describe()]
        return found + list(_breaker_families({}))

    def collect(self) -> Iterator[Metric]:
        """Every sample: the pushed counters, then the breakers read now."""
        for metric in self._pushed():
            yield from metric.collect()
        yield from _breaker_families(_read_breakers())


def _breaker_families(views: dict[str, _BreakerView]) -> Iterable[Metric]:
    from prometheus_client.core import (  # noqa: PLC0415 - see enable_prometheus
        CounterMetricFamily,
        GaugeMetricFamily,
    )

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
    return (calls, states, modes)


# -- OpenTelemetry -----------------------------------------------------------------------


class _OpenTelemetry:
    """Strictly private. The OpenTelemetry exporter: instruments on one meter, span events."""

    def __init__(self, meter_provider: Any) -> None:
        from opentelemetry import trace  # noqa: PLC0415 - see enable_opentelemetry
        from opentelemetry.metrics import Observation  # noqa: PLC0415

        self.meter_provider = meter_provider
        self.active = False
        self._observation = Observation
        self._current_span = trace.get_current_span
        meter = meter_provider.get_meter("resilient", _version())
        self.retries = meter.create_counter(
            "resilient.retry.scheduled",
            unit="{retry}",
            description="Retries scheduled, by retried function and error class.",
        )
        self.exhausted = meter.create_counter(
            "resilient.retry.exhausted",
            unit="{call}",
            description="Retried calls that gave up and failed.",
        )
        self.refusals = meter.create_counter(
            "resilient.retry_budget.refusals",
            unit="{retry}",
            description="Retries a retry budget refused.",
        )
        self.transitions = meter.create_counter(
            "resilient.breaker.transitions",
            unit="{transition}",
            description="Circuit breaker state changes made by this process.",
        )
        self.tasks = meter.create_counter(
            "resilient.task.completed",
            unit="{task}",
            description="Tasks run by execute_task_safely and run_tasks, by outcome.",
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
        self.retries.add(
            1, {"function": function, "error_class": error_class.value, "error.type": error_type}
        )
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
        self.exhausted.add(
            1,
            {
                "function": function,
                "error_class": error_class.value,
                "error.type": _error_type(exc, result),
            },
        )

    def budget_refused(self, budget: object) -> None:
        self.refusals.add(1, {"budget": _budget_name(budget)})

    def breaker_changed(
        self, breaker: str, old: CircuitState, new: CircuitState, exc: BaseException | None
    ) -> None:
        attributes = {"breaker": breaker, "from_state": old.value, "to_state": new.value}
        if exc is not None:
            attributes["error.type"] = type_name(type(exc))
        self.transitions.add(1, attributes)

    def breaker_rejected(self, breaker: str, error: BaseException) -> None:
        span = self._current_span()
        if span.is_recording():
            state = getattr(error, "state", "open")
            span.add_event(
                "resilient.breaker.rejected",
                {
                    "breaker": breaker,
                    "state": str(state),
                    "remaining": float(getattr(error, "remaining", 0.0)),
                    "error.type": type_name(type(error)),
                },
            )

    def task_finished(
        self, task: str, outcome: str, elapsed: float, attempts: int, exc: BaseException | None
    ) -> None:
        attributes = {"task": task, "outcome": outcome}
        if exc is not None:
            attributes["error.type"] = type_name(type(exc))
        self.tasks.add(1, attributes)
        if attempts:
            self.durations.record(elapsed, {"task": task, "outcome": outcome})

    # -- the observable instruments, read at collection

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


def _version() -> str | None:
    from importlib.metadata import (  # noqa: PLC0415 - only when OpenTelemetry is enabled
        PackageNotFoundError,
        version,
    )

    try:
        return version("resilient-kit")
    except PackageNotFoundError:
        return None
