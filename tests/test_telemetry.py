"""``resilient.telemetry``: Prometheus and OpenTelemetry, opt-in, fed by the library's events.

Every metric is read back through the real libraries: the Prometheus text
exposition (``generate_latest``, parsed by ``prometheus_client``'s own
parser) and the OpenTelemetry SDK's ``InMemoryMetricReader`` and
``InMemorySpanExporter``. Each test uses a fresh registry and fresh
providers (never the global ones) and its own breaker names, and telemetry is
disabled after each test.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import resilient.telemetry as telemetry
from resilient import (
    CircuitBreaker,
    CircuitOpenError,
    ConcurrencyLimit,
    ConcurrencyLimitExceeded,
    RateLimiter,
    RateLimitExceeded,
    RetryBudget,
    _events,
    execute_task_safely,
    retry,
)
from resilient.testing import ManualClock

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(autouse=True)
def _telemetry_off() -> Iterator[None]:
    """Every test starts and ends with telemetry off."""
    telemetry.disable()
    yield
    telemetry.disable()


# -- reading the exporters back ---------------------------------------------------------


def scrape(registry: CollectorRegistry) -> Samples:
    """Every sample of the registry's text exposition, parsed by prometheus_client."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def family_names(registry: CollectorRegistry) -> set[str]:
    return {f.name for f in text_string_to_metric_families(generate_latest(registry).decode())}


class Otel:
    """A meter provider with an in-memory reader and a tracer provider with an in-memory exporter."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.spans = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.spans))
        self.tracer = self.tracers.get_tracer("test")

    def points(self) -> dict[tuple[str, frozenset[tuple[str, Any]]], Any]:
        """Every data point now: a number, or (count, sum) for a histogram."""
        data = self.reader.get_metrics_data()
        found: dict[tuple[str, frozenset[tuple[str, Any]]], Any] = {}
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "resilient"
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        key = (metric.name, frozenset((point.attributes or {}).items()))
                        found[key] = (
                            (point.count, point.sum)
                            if isinstance(point, HistogramDataPoint)
                            else getattr(point, "value", None)
                        )
        return found

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (event.name, dict(event.attributes or {}))
            for span in self.spans.get_finished_spans()
            for event in span.events
        ]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def otel() -> Otel:
    return Otel()


# -- the scripted run -------------------------------------------------------------------


def qualified(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


class Script:
    """One run of everything the issue names, on a ManualClock; keeps what it built.

    - ``fetch_user``: fails 3 times with ConnectionError, then succeeds (3 retries).
    - ``fetch_orders``: times out twice with ``max_retries=1`` (1 retry, then exhausted).
    - breaker ``{tag}-payments``: 2 failures open it, 1 call rejected, 1 FATAL
      failure ignored (before), recovery: half-open, a trial success closes it.
    - breaker ``{tag}-inventory``: tripped open, left open.
    - ``search``: the budget ``{tag}-search`` refuses the first retry.
    - tasks ``{tag}-sync-users`` succeeds, ``{tag}-sync-orders`` fails (FATAL),
      ``{tag}-charge`` is rejected by the open ``inventory`` breaker.
    """

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.clock = clock = ManualClock()
        user_failures = iter([ConnectionError("reset")] * 3)

        def fetch_user() -> str:
            error = next(user_failures, None)
            if error is not None:
                raise error
            return "user"

        def fetch_orders() -> str:
            raise TimeoutError("read timed out")

        self.budget = RetryBudget(max_tokens=2, token_ratio=0.1, name=f"{tag}-search")

        def search() -> str:
            raise ConnectionError("refused")

        def sync_users() -> str:
            return "synced"

        def sync_orders() -> str:
            raise TypeError("bad payload")

        self.fetch_user = retry(max_retries=5, base_delay=0.1, clock=clock)(fetch_user)
        self.fetch_orders = retry(max_retries=1, base_delay=0.1, clock=clock)(fetch_orders)
        self.search = retry(max_retries=3, base_delay=0.1, clock=clock, budget=self.budget)(search)
        self.payments = CircuitBreaker(2, 5.0, name=f"{tag}-payments", clock=clock)
        self.inventory = CircuitBreaker(1, 60.0, name=f"{tag}-inventory", clock=clock)
        self.names = {
            "fetch_user": qualified(fetch_user),
            "fetch_orders": qualified(fetch_orders),
            "search": qualified(search),
        }
        self.results: dict[str, Any] = {}

        assert self.fetch_user() == "user"
        with pytest.raises(TimeoutError):
            self.fetch_orders()
        with pytest.raises(ConnectionError):
            self.search()

        with pytest.raises(TypeError):  # FATAL: ignored, neither failure nor success
            self.payments.call(sync_orders)
        for _ in range(2):
            with pytest.raises(ConnectionError):
                self.payments.call(search)
        with pytest.raises(CircuitOpenError):
            self.payments.call(sync_users)
        clock.advance(5.0)
        assert self.payments.call(sync_users) == "synced"  # the trial closes it
        self.inventory.trip()

        for name, func, breaker in (
            ("sync-users", sync_users, None),
            ("sync-orders", sync_orders, None),
            ("charge", sync_users, self.inventory),
        ):
            self.results[name] = execute_task_safely(
                f"{tag}-{name}", func, max_retries=0, circuit_breaker=breaker, clock=clock
            )
        assert self.results["charge"].rejected


@pytest.fixture
def scripted(registry: CollectorRegistry, request: pytest.FixtureRequest) -> tuple[Script, Samples]:
    """The script run with Prometheus enabled, and the registry scraped afterwards."""
    telemetry.enable_prometheus(registry)
    script = Script(request.node.name)
    return script, scrape(registry)


# -- Prometheus: each metric after the scripted run ----------------------------------------


def test_every_retry_scheduled_is_counted_by_function_and_error_class(
    scripted: tuple[Script, Samples],
) -> None:
    """3 retries then success: resilient_retries_total{function,error_class} is 3."""
    script, samples = scripted
    user = script.names["fetch_user"]
    assert value(samples, "resilient_retries_total", function=user, error_class="transient") == 3
    orders = script.names["fetch_orders"]
    assert value(samples, "resilient_retries_total", function=orders, error_class="timeout") == 1


def test_calls_that_gave_up_are_counted_as_exhausted(scripted: tuple[Script, Samples]) -> None:
    """A call out of attempts and a call stopped by the budget each count once; a success never."""
    script, samples = scripted
    name = "resilient_retries_exhausted_total"
    orders, search = script.names["fetch_orders"], script.names["search"]
    assert value(samples, name, function=orders, error_class="timeout") == 1
    assert value(samples, name, function=search, error_class="transient") == 1
    user = script.names["fetch_user"]
    assert not any(key[0] == name and ("function", user) in key[1] for key in samples)


def test_budget_refusals_are_counted_by_budget_name(scripted: tuple[Script, Samples]) -> None:
    """The refused retry is counted under the budget's name."""
    script, samples = scripted
    budget = script.budget.name
    assert value(samples, "resilient_retry_budget_refusals_total", budget=budget) == 1


def test_breaker_calls_are_counted_by_outcome(scripted: tuple[Script, Samples]) -> None:
    """success, failure, ignored and rejected, as the breaker counted them."""
    script, samples = scripted
    name = script.payments.name
    counts = {
        outcome: value(samples, "resilient_breaker_calls_total", breaker=name, outcome=outcome)
        for outcome in ("success", "failure", "ignored", "rejected")
    }
    assert counts == {"success": 1, "failure": 2, "ignored": 1, "rejected": 1}
    inventory = script.inventory.name
    assert (
        value(samples, "resilient_breaker_calls_total", breaker=inventory, outcome="rejected") == 1
    )


def test_breaker_transitions_are_counted_from_and_to(scripted: tuple[Script, Samples]) -> None:
    """Opened, half-open after the timeout, closed by the trial; tripped open by hand."""
    script, samples = scripted
    name = "resilient_breaker_transitions_total"
    payments = script.payments.name
    found = {
        (dict(labels)["from_state"], dict(labels)["to_state"]): count
        for (sample, labels), count in samples.items()
        if sample == name and dict(labels)["breaker"] == payments
    }
    assert found == {("closed", "open"): 1, ("open", "half_open"): 1, ("half_open", "closed"): 1}
    inventory = script.inventory.name
    assert value(samples, name, breaker=inventory, from_state="closed", to_state="open") == 1


def test_breaker_state_is_one_for_the_current_state_and_zero_for_the_others(
    scripted: tuple[Script, Samples],
) -> None:
    """The recovered breaker reports closed, the tripped one open."""
    script, samples = scripted
    for breaker, current in ((script.payments, "closed"), (script.inventory, "open")):
        states = {
            state: value(samples, "resilient_breaker_state", breaker=breaker.name, state=state)
            for state in ("closed", "open", "half_open")
        }
        assert states == {s: (1.0 if s == current else 0.0) for s in states}


def test_breaker_store_mode_is_reported(scripted: tuple[Script, Samples]) -> None:
    """An in-memory breaker says so."""
    script, samples = scripted
    name = script.payments.name
    assert value(samples, "resilient_breaker_store_mode", breaker=name, mode="memory") == 1.0


def test_tasks_are_counted_by_outcome(scripted: tuple[Script, Samples]) -> None:
    """success, failure and rejected: one task each."""
    script, samples = scripted
    for task, outcome in (
        ("sync-users", "success"),
        ("sync-orders", "failure"),
        ("charge", "rejected"),
    ):
        name = f"{script.tag}-{task}"
        assert value(samples, "resilient_tasks_total", task=name, outcome=outcome) == 1
        others = {"success", "failure", "rejected"} - {outcome}
        assert all(
            value(samples, "resilient_tasks_total", task=name, outcome=o) is None for o in others
        )


def test_task_durations_are_a_histogram_of_the_tasks_that_ran(
    scripted: tuple[Script, Samples],
) -> None:
    """One observation per task that ran; a task rejected before running has none."""
    script, samples = scripted
    name = "resilient_task_duration_seconds_count"
    assert value(samples, name, task=f"{script.tag}-sync-users") == 1
    assert value(samples, name, task=f"{script.tag}-sync-orders") == 1
    assert value(samples, name, task=f"{script.tag}-charge") is None
    buckets = {
        dict(labels)["le"]
        for (sample, labels), _ in samples.items()
        if sample == "resilient_task_duration_seconds_bucket"
        and dict(labels)["task"] == f"{script.tag}-sync-users"
    }
    assert {"0.005", "300.0", "+Inf"} <= buckets


def test_task_duration_is_the_elapsed_time_of_the_result(registry: CollectorRegistry) -> None:
    """The histogram's sum is ``TaskResult.elapsed``: waits between attempts included."""
    telemetry.enable_prometheus(registry)
    clock = ManualClock()
    failures = iter([ConnectionError("reset")] * 2)

    def flaky() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "done"

    result = execute_task_safely(
        "timed-task", flaky, max_retries=3, base_delay=1.0, jitter=False, clock=clock
    )
    assert result.success
    assert result.elapsed == pytest.approx(3.0)
    samples = scrape(registry)
    assert value(samples, "resilient_task_duration_seconds_sum", task="timed-task") == 3.0
    assert (
        value(samples, "resilient_task_duration_seconds_bucket", task="timed-task", le="2.5") == 0
    )
    assert (
        value(samples, "resilient_task_duration_seconds_bucket", task="timed-task", le="5.0") == 1
    )


def test_the_metric_names_are_exactly_those_of_the_contract(registry: CollectorRegistry) -> None:
    """The families, with nothing run yet: names and types as the issue lists them."""
    telemetry.enable_prometheus(registry)
    text = generate_latest(registry).decode()
    types = {
        line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE")
    }
    assert {
        "resilient_retries_total": "counter",
        "resilient_retries_exhausted_total": "counter",
        "resilient_retry_budget_refusals_total": "counter",
        "resilient_breaker_calls_total": "counter",
        "resilient_breaker_transitions_total": "counter",
        "resilient_breaker_state": "gauge",
        "resilient_tasks_total": "counter",
        "resilient_task_duration_seconds": "histogram",
        "resilient_breaker_store_mode": "gauge",
    }.items() <= types.items()


def test_a_breaker_built_before_enabling_is_reported(registry: CollectorRegistry) -> None:
    """Breakers register themselves at construction, whether or not telemetry is on."""
    breaker = CircuitBreaker(1, 30.0, name="built-before")
    breaker.trip()
    telemetry.enable_prometheus(registry)
    samples = scrape(registry)
    assert value(samples, "resilient_breaker_state", breaker="built-before", state="open") == 1.0


def test_a_breaker_that_is_gone_is_no_longer_reported(registry: CollectorRegistry) -> None:
    """The registry of breakers holds them weakly."""
    telemetry.enable_prometheus(registry)
    breaker = CircuitBreaker(name="short-lived")
    assert value(scrape(registry), "resilient_breaker_state", breaker="short-lived", state="closed")
    del breaker
    gc.collect()
    assert not any(("breaker", "short-lived") in labels for _, labels in scrape(registry))


def test_an_unhashable_breaker_subclass_is_built_and_reported(registry: CollectorRegistry) -> None:
    """The registry of breakers does not hash them: ``__eq__`` without ``__hash__`` is fine."""

    class Comparable(CircuitBreaker):
        def __eq__(self, other: object) -> bool:
            return isinstance(other, CircuitBreaker) and other.name == self.name

    telemetry.enable_prometheus(registry)
    breaker = Comparable(name="unhashable")
    samples = scrape(registry)
    assert value(samples, "resilient_breaker_state", breaker="unhashable", state="closed") == 1
    assert breaker == breaker


def test_breakers_sharing_a_name_are_one_series_summed_with_the_worst_state(
    registry: CollectorRegistry,
) -> None:
    """No duplicate samples: counts add up, and open wins over closed."""
    telemetry.enable_prometheus(registry)
    first = CircuitBreaker(1, 30.0, name="twin")
    second = CircuitBreaker(1, 30.0, name="twin")
    first.call(lambda: None)
    second.call(lambda: None)
    second.trip()
    text = generate_latest(registry).decode()
    assert text.count('resilient_breaker_state{breaker="twin",state="open"}') == 1
    samples = scrape(registry)
    assert value(samples, "resilient_breaker_calls_total", breaker="twin", outcome="success") == 2
    assert value(samples, "resilient_breaker_state", breaker="twin", state="open") == 1.0
    assert first.state == "closed"  # kept alive until here


def test_a_breaker_whose_metrics_fail_is_skipped_and_logged_once(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A scrape never fails because of one breaker: the others are reported."""

    class Broken(CircuitBreaker):
        @property
        def metrics(self) -> Any:
            raise OSError("store unreachable")

    telemetry.enable_prometheus(registry)
    broken = Broken(name="broken-metrics")
    healthy = CircuitBreaker(name="healthy-next-to-broken")
    with caplog.at_level(logging.ERROR, logger="resilient.telemetry"):
        scrape(registry)
        samples = scrape(registry)
    assert value(samples, "resilient_breaker_state", breaker=healthy.name, state="closed") == 1
    assert not any(("breaker", broken.name) in labels for _, labels in samples)
    lines = [r for r in caplog.records if r.name == "resilient.telemetry"]
    assert len(lines) == 1
    assert "broken-metrics" in lines[0].getMessage()
    assert "OSError: store unreachable" in lines[0].getMessage()


# -- Redis: the state the breaker sees ------------------------------------------------------------


def test_a_breaker_on_redis_reports_the_state_stored_there(
    registry: CollectorRegistry, redis_client: Any
) -> None:
    """Opened by another process (another store, gone since): reported open here."""
    from resilient.redis import RedisStore

    telemetry.enable_prometheus(registry)
    elsewhere = CircuitBreaker(1, 30.0, name="shared-api", store=RedisStore(redis_client))
    with pytest.raises(ConnectionError):
        elsewhere.call(_refused)
    del elsewhere
    gc.collect()
    here = CircuitBreaker(1, 30.0, name="shared-api", store=RedisStore(redis_client))
    samples = scrape(registry)
    assert value(samples, "resilient_breaker_state", breaker="shared-api", state="open") == 1.0
    assert value(samples, "resilient_breaker_store_mode", breaker="shared-api", mode="redis") == 1
    assert (
        value(samples, "resilient_breaker_calls_total", breaker="shared-api", outcome="failure")
        == 0
    )
    assert here.metrics.failures == 0


def test_a_breaker_on_an_unreachable_redis_reports_its_fallback(
    registry: CollectorRegistry, refused_port: int
) -> None:
    """While Redis cannot be reached the store mode says which fallback is in force."""
    from resilient.redis import RedisStore

    store = RedisStore.from_url(f"redis://127.0.0.1:{refused_port}/0", socket_timeout=0.2)
    breaker = CircuitBreaker(name="redis-down", store=store)
    telemetry.enable_prometheus(registry)
    logging.disable(logging.WARNING)  # the store's outage warning
    try:
        breaker.call(lambda: None)
        samples = scrape(registry)
    finally:
        logging.disable(logging.NOTSET)
    assert value(samples, "resilient_breaker_store_mode", breaker="redis-down", mode="local") == 1
    assert value(samples, "resilient_breaker_state", breaker="redis-down", state="closed") == 1


def _refused() -> None:
    raise ConnectionError("refused")


# -- OpenTelemetry: the same facts ---------------------------------------------------------------


@pytest.fixture
def otel_scripted(otel: Otel, request: pytest.FixtureRequest) -> tuple[Script, Otel]:
    """The script run with OpenTelemetry enabled, inside one span."""
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    with otel.tracer.start_as_current_span("request"):
        script = Script(request.node.name)
    return script, otel


def test_otel_counts_retries_with_the_error_type(otel_scripted: tuple[Script, Otel]) -> None:
    """resilient.retry.scheduled carries function, error_class and error.type."""
    script, otel = otel_scripted
    points = otel.points()
    attributes = {
        "function": script.names["fetch_user"],
        "error_class": "transient",
        "error.type": "ConnectionError",
    }
    assert points[("resilient.retry.scheduled", frozenset(attributes.items()))] == 3
    exhausted = {
        "function": script.names["fetch_orders"],
        "error_class": "timeout",
        "error.type": "TimeoutError",
    }
    assert points[("resilient.retry.exhausted", frozenset(exhausted.items()))] == 1


def test_otel_counts_budget_refusals(otel_scripted: tuple[Script, Otel]) -> None:
    script, otel = otel_scripted
    key = ("resilient.retry_budget.refusals", frozenset({("budget", script.budget.name)}))
    assert otel.points()[key] == 1


def test_otel_observes_breaker_calls_state_and_store_mode(
    otel_scripted: tuple[Script, Otel],
) -> None:
    """Read from the live breakers at collection, as for Prometheus."""
    script, otel = otel_scripted
    points = otel.points()
    name = script.payments.name

    def point(metric: str, **attributes: str) -> Any:
        return points.get((metric, frozenset({"breaker": name, **attributes}.items())))

    calls = {o: point("resilient.breaker.calls", outcome=o) for o in telemetry.OUTCOMES}
    assert calls == {"success": 1, "failure": 2, "ignored": 1, "rejected": 1}
    states = {s: point("resilient.breaker.state", state=s) for s in telemetry.STATES}
    assert states == {"closed": 1, "open": 0, "half_open": 0}
    assert point("resilient.breaker.store_mode", mode="memory") == 1


def test_otel_counts_transitions_with_the_failure_that_opened(
    otel_scripted: tuple[Script, Otel],
) -> None:
    script, otel = otel_scripted
    found = {
        (dict(attrs)["from_state"], dict(attrs)["to_state"], dict(attrs).get("error.type")): n
        for (metric, attrs), n in otel.points().items()
        if metric == "resilient.breaker.transitions"
        and dict(attrs)["breaker"] == script.payments.name
    }
    assert found == {
        ("closed", "open", "ConnectionError"): 1,
        ("open", "half_open", None): 1,
        ("half_open", "closed", None): 1,
    }


def test_otel_counts_tasks_and_their_durations(otel_scripted: tuple[Script, Otel]) -> None:
    script, otel = otel_scripted
    points = otel.points()
    tag = script.tag
    completed = {
        (dict(attrs)["task"], dict(attrs)["outcome"], dict(attrs).get("error.type")): n
        for (metric, attrs), n in points.items()
        if metric == "resilient.task.completed"
    }
    assert completed == {
        (f"{tag}-sync-users", "success", None): 1,
        (f"{tag}-sync-orders", "failure", "TypeError"): 1,
        (f"{tag}-charge", "rejected", "resilient.breaker.CircuitOpenError"): 1,
    }
    durations = {
        dict(attrs)["task"]: count_sum
        for (metric, attrs), count_sum in points.items()
        if metric == "resilient.task.duration"
    }
    assert set(durations) == {f"{tag}-sync-users", f"{tag}-sync-orders"}
    assert all(count == 1 for count, _ in durations.values())


def test_otel_task_duration_buckets_are_seconds(otel: Otel) -> None:
    """The histogram advises bucket bounds in seconds (the SDK's defaults are for milliseconds)."""
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    execute_task_safely("bucketed", lambda: None)
    data = otel.reader.get_metrics_data()
    assert data is not None
    [histogram] = [
        m
        for r in data.resource_metrics
        for s in r.scope_metrics
        for m in s.metrics
        if m.name == "resilient.task.duration"
    ]
    [point] = histogram.data.data_points
    assert isinstance(point, HistogramDataPoint)
    assert tuple(point.explicit_bounds) == telemetry.TASK_DURATION_BUCKETS
    assert histogram.unit == "s"


def test_otel_adds_one_span_event_per_retry(otel_scripted: tuple[Script, Otel]) -> None:
    """attempt, delay and error.type on the current span, for each retry, in order."""
    script, otel = otel_scripted
    retries = [
        attrs
        for name, attrs in otel.events()
        if name == "resilient.retry" and attrs["function"] == script.names["fetch_user"]
    ]
    assert [a["attempt"] for a in retries] == [1, 2, 3]
    assert all(a["error.type"] == "ConnectionError" for a in retries)
    assert all(a["error_class"] == "transient" for a in retries)
    assert script.clock.sleeps[:3] == [a["delay"] for a in retries]


def test_otel_adds_one_span_event_per_rejection(otel_scripted: tuple[Script, Otel]) -> None:
    """The payments rejection and the rejected task each leave an event."""
    script, otel = otel_scripted
    rejections = [attrs for name, attrs in otel.events() if name == "resilient.breaker.rejected"]
    assert [(a["breaker"], a["state"]) for a in rejections] == [
        (script.payments.name, "open"),
        (script.inventory.name, "open"),
    ]
    assert all(a["error.type"] == "resilient.breaker.CircuitOpenError" for a in rejections)
    assert rejections[0]["remaining"] == pytest.approx(5.0)


def test_otel_adds_no_event_without_a_recording_span(otel: Otel) -> None:
    """Outside any span nothing is recorded, and nothing breaks."""
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    Script("no-span")
    assert otel.events() == []
    assert otel.points()  # the metrics still are


def test_a_rejected_retry_result_has_its_status_code_as_error_type(otel: Otel) -> None:
    """``retry_on_result``: no exception, so error.type is the response's status code."""

    class Response:
        status_code = 503

    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    clock = ManualClock()
    answers = iter([Response(), "ok"])

    @retry(retry_on_result=lambda r: isinstance(r, Response), clock=clock)
    def poll() -> object:
        return next(answers)

    with otel.tracer.start_as_current_span("poll"):
        assert poll() == "ok"
    [(_, attrs)] = [e for e in otel.events() if e[0] == "resilient.retry"]
    assert attrs["error.type"] == "503"
    assert attrs["error_class"] == "degraded"


class _Fetcher:
    """A callable whose repr holds its token and whose address differs per instance."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"<_Fetcher token={self.token!r} at {id(self):#x}>"

    def __call__(self, url: str) -> None:
        raise ConnectionError("reset")

    def fetch(self, url: str) -> None:
        raise ConnectionError("reset")


def _fetch(url: str, token: str) -> None:
    raise ConnectionError("reset")


def _retry_twenty_ways() -> None:
    """20 instances of one class, 20 per-call partials, 20 bound methods of new instances."""
    for n in range(20):
        for func in (
            _Fetcher(f"secret-{n}"),
            functools.partial(_fetch, token=f"secret-{n}"),
            _Fetcher(f"secret-{n}").fetch,
        ):
            with pytest.raises(ConnectionError):
                retry(max_retries=1, clock=ManualClock())(func)(f"/item/{n}")


_BOUNDED = {f"{__name__}._Fetcher", f"{__name__}._fetch", f"{__name__}._Fetcher.fetch"}


def test_prometheus_function_labels_are_bounded_by_the_code_not_the_objects(
    registry: CollectorRegistry,
) -> None:
    """One series per function or class, whatever the count of instances or partials;
    no argument (a token) and no address in any label."""
    telemetry.enable_prometheus(registry)
    _retry_twenty_ways()
    text = generate_latest(registry).decode()
    samples = scrape(registry)
    functions = {
        dict(labels)["function"]
        for (name, labels) in samples
        if name.startswith("resilient_retries")
    }
    assert functions == _BOUNDED
    for function in _BOUNDED:
        assert (
            value(samples, "resilient_retries_total", function=function, error_class="transient")
            == 20
        )
    assert "secret-" not in text
    assert "0x" not in text


def test_otel_function_attributes_are_bounded_by_the_code_not_the_objects(otel: Otel) -> None:
    """The same bound for OpenTelemetry's points and span events."""
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    with otel.tracer.start_as_current_span("batch"):
        _retry_twenty_ways()
    functions = {
        dict(attributes)["function"]
        for (name, attributes) in otel.points()
        if name.startswith("resilient.retry.")
    }
    assert functions == _BOUNDED
    events = [attrs for name, attrs in otel.events() if name == "resilient.retry"]
    assert {attrs["function"] for attrs in events} == _BOUNDED
    assert "secret-" not in repr((otel.points(), otel.events()))


# -- switching on and off --------------------------------------------------------------------------


def _retry_once(name: str = "switched") -> None:
    failures = iter([ConnectionError("reset")])

    def once() -> None:
        error = next(failures, None)
        if error is not None:
            raise error

    once.__qualname__ = name
    retry(clock=ManualClock())(once)()


def _retries(registry: CollectorRegistry, name: str = "switched") -> float | None:
    return value(
        scrape(registry),
        "resilient_retries_total",
        function=f"{__name__}.{name}",
        error_class="transient",
    )


def test_enabling_prometheus_twice_is_harmless(registry: CollectorRegistry) -> None:
    """No error, no duplicate series, each event counted once."""
    telemetry.enable_prometheus(registry)
    telemetry.enable_prometheus(registry)
    _retry_once()
    assert _retries(registry) == 1
    text = generate_latest(registry).decode()
    assert text.count("# TYPE resilient_retries_total counter") == 1


def test_enabling_prometheus_on_another_registry_starts_afresh_there(
    registry: CollectorRegistry,
) -> None:
    """The first registry no longer has the metrics; the new one counts from zero."""
    telemetry.enable_prometheus(registry)
    _retry_once()
    other = CollectorRegistry()
    telemetry.enable_prometheus(other)
    _retry_once()
    assert _retries(other) == 1
    assert not any(name.startswith("resilient_") for name in family_names(registry))


def test_enable_prometheus_defaults_to_the_global_registry() -> None:
    """``prometheus_client.REGISTRY`` (read, and left as found)."""
    from prometheus_client import REGISTRY

    telemetry.enable_prometheus()
    try:
        assert "resilient_retries" in family_names(REGISTRY)
    finally:
        telemetry.disable()
    assert "resilient_retries" not in family_names(REGISTRY)


def test_enable_prometheus_refuses_what_is_not_a_registry() -> None:
    with pytest.raises(TypeError, match=r"registry must be a prometheus_client\.CollectorRegistry"):
        telemetry.enable_prometheus("REGISTRY")  # type: ignore[arg-type]
    assert _events.SINK is None


def test_a_registry_that_already_has_the_names_refuses_and_nothing_changes(
    registry: CollectorRegistry,
) -> None:
    """prometheus_client's duplicate check stands; the registry enabled before stays."""
    from prometheus_client import Counter

    telemetry.enable_prometheus(registry)
    taken = CollectorRegistry()
    Counter("resilient_retries", "someone else's", registry=taken)
    with pytest.raises(ValueError, match="resilient_retries"):
        telemetry.enable_prometheus(taken)
    _retry_once("still_counted")
    assert _retries(registry, "still_counted") == 1


def test_disable_after_the_collector_was_unregistered_by_hand(registry: CollectorRegistry) -> None:
    telemetry.enable_prometheus(registry)
    assert telemetry._prometheus is not None
    registry.unregister(telemetry._prometheus)
    telemetry.disable()
    assert _events.SINK is None


@pytest.mark.parametrize(
    ("enable", "missing", "extra"),
    [
        (telemetry.enable_prometheus, "prometheus_client", "resilient-kit[prometheus]"),
        (telemetry.enable_opentelemetry, "opentelemetry", "resilient-kit[otel]"),
    ],
)
def test_without_the_extra_enabling_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, enable: Callable[[], None], missing: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` raises ImportError
    with pytest.raises(ImportError, match=re.escape(f"pip install '{extra}'")):
        enable()
    assert _events.SINK is None


def test_enable_opentelemetry_refuses_what_is_not_a_provider(otel: Otel) -> None:
    with pytest.raises(TypeError, match="meter_provider must be"):
        telemetry.enable_opentelemetry(meter_provider=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tracer_provider must be"):
        telemetry.enable_opentelemetry(otel.meters, tracer_provider=42)  # type: ignore[arg-type]
    assert _events.SINK is None


def test_enable_opentelemetry_defaults_to_the_global_providers_even_set_later() -> None:
    """Enabled before the application sets its providers, it reports through them
    (a fresh interpreter: the global providers can be set once per process)."""
    code = textwrap.dedent(
        """
        import logging
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from resilient import CircuitBreaker, retry, telemetry
        from resilient.testing import ManualClock

        logging.disable(logging.CRITICAL)
        telemetry.enable_opentelemetry()
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        spans = InMemorySpanExporter()
        tracers = TracerProvider()
        tracers.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(tracers)
        breaker = CircuitBreaker(name="global")
        failures = [ConnectionError("reset")]

        @retry(clock=ManualClock())
        def fetch():
            if failures:
                raise failures.pop()

        with trace.get_tracer("test").start_as_current_span("request"):
            fetch()
        data = reader.get_metrics_data()
        print(sorted({m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}))
        print([e.name for s in spans.get_finished_spans() for e in s.events])
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=False
    )
    assert completed.returncode == 0, completed.stderr
    instruments, events = completed.stdout.strip().splitlines()
    assert instruments == str(
        [
            "resilient.breaker.calls",
            "resilient.breaker.state",
            "resilient.breaker.store_mode",
            "resilient.retry.scheduled",
        ]
    )
    assert events == "['resilient.retry']"


def test_enabling_opentelemetry_twice_is_harmless(otel: Otel) -> None:
    """The same providers again: each event still counted once."""
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    _retry_once("otel_twice")
    scheduled = [n for (m, _), n in otel.points().items() if m == "resilient.retry.scheduled"]
    assert scheduled == [1]


def test_enabling_opentelemetry_on_another_provider_stops_the_first(otel: Otel) -> None:
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    breaker = CircuitBreaker(name="moved-otel")
    other = Otel()
    telemetry.enable_opentelemetry(meter_provider=other.meters, tracer_provider=other.tracers)
    _retry_once("otel_moved")
    assert not any(m == "resilient.retry.scheduled" for m, _ in otel.points())
    assert not any(m == "resilient.breaker.state" for m, _ in otel.points())
    assert any(m == "resilient.retry.scheduled" for m, _ in other.points())
    assert breaker.name == "moved-otel"


def test_disable_stops_prometheus(registry: CollectorRegistry) -> None:
    """The metrics leave the registry, and no event reaches them any more."""
    telemetry.enable_prometheus(registry)
    _retry_once()
    telemetry.disable()
    assert _events.SINK is None
    assert not any(name.startswith("resilient_") for name in family_names(registry))
    _retry_once()  # reaches no exporter
    assert not any(name.startswith("resilient_") for name in family_names(registry))


def test_disable_stops_opentelemetry(otel: Otel) -> None:
    """No observations, no span events; enabled again, only what came before is counted."""
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    breaker = CircuitBreaker(1, 30.0, name="disabled-otel")
    _retry_once("otel_before")
    telemetry.disable()
    with otel.tracer.start_as_current_span("after"):
        _retry_once("otel_after")
        breaker.trip()
        with pytest.raises(CircuitOpenError):
            breaker.call(lambda: None)
    assert otel.points() == {}
    assert otel.events() == []
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    points = otel.points()
    functions = {dict(a).get("function") for m, a in points if m == "resilient.retry.scheduled"}
    assert functions == {f"{__name__}.otel_before"}


def test_opentelemetry_enabled_again_on_the_same_provider_reports_again(otel: Otel) -> None:
    """Instruments cannot be created twice on a meter: the first ones come back to life."""
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    telemetry.disable()
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    breaker = CircuitBreaker(1, 30.0, name="resumed-otel")
    breaker.trip()
    points = otel.points()
    key = ("resilient.breaker.state", frozenset({("breaker", "resumed-otel"), ("state", "open")}))
    assert points[key] == 1


def test_disable_when_nothing_is_enabled_is_harmless() -> None:
    telemetry.disable()
    telemetry.disable()
    assert _events.SINK is None


def test_prometheus_and_opentelemetry_together_see_the_same_events(
    registry: CollectorRegistry, otel: Otel
) -> None:
    telemetry.enable_prometheus(registry)
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    _retry_once("both")
    assert _retries(registry, "both") == 1
    scheduled = [n for (m, _), n in otel.points().items() if m == "resilient.retry.scheduled"]
    assert scheduled == [1]


def test_an_exporter_that_raises_never_breaks_the_call(
    otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    """The call succeeds; the failure is logged once, however often it happens."""
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)

    class Exploding:
        def add(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("exporter down")

    assert telemetry._otel is not None
    telemetry._otel.retries = Exploding()  # type: ignore[assignment]
    with caplog.at_level(logging.ERROR, logger="resilient.telemetry"):
        _retry_once("exploding_1")
        _retry_once("exploding_2")
    lines = [r for r in caplog.records if r.name == "resilient.telemetry"]
    assert len(lines) == 1
    assert (
        lines[0]
        .getMessage()
        .startswith(
            "telemetry failed in _OpenTelemetry.retried: RuntimeError: exporter down; "
            "the calls carry on"
        )
    )
    assert lines[0].__dict__["event"] == "telemetry_failed"
    assert lines[0].__dict__["error_type"] == "RuntimeError"
    assert lines[0].__dict__["error"] == "exporter down"


# -- what costs nothing ----------------------------------------------------------------------------


class SpySink:
    """Records every event the sites send."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.seen.append(name)

        return record


@pytest.fixture
def spy() -> Iterator[SpySink]:
    sink = SpySink()
    _events.SINK = sink
    try:
        yield sink
    finally:
        _events.SINK = None


def test_the_success_paths_send_no_event(spy: SpySink) -> None:
    """``@retry`` success (sync and async) and a closed breaker's calls never reach the sink."""
    import asyncio

    breaker = CircuitBreaker(name="spied")

    @retry
    def ok() -> int:
        return 1

    @retry
    async def ok_async() -> int:
        return 1

    @breaker
    def guarded() -> int:
        return 1

    for _ in range(3):
        ok()
        guarded()
        breaker.call(ok)
        with breaker:
            pass
    asyncio.run(ok_async())
    assert spy.seen == []


def test_a_closed_breakers_failure_without_a_transition_sends_no_event(spy: SpySink) -> None:
    """Per-call outcomes are read from the breaker, not pushed."""
    breaker = CircuitBreaker(5, name="spied-failure")
    with pytest.raises(ConnectionError):
        breaker.call(_refused)
    assert spy.seen == []


def test_each_event_site_sends_its_event(spy: SpySink) -> None:
    """A retry, a give-up, a refusal, a transition, a rejection, a task's end."""
    clock = ManualClock()
    budget = RetryBudget(max_tokens=2)
    with pytest.raises(ConnectionError):
        retry(max_retries=1, clock=clock)(_refused)()
    assert spy.seen == ["retried", "gave_up"]
    spy.seen.clear()
    with pytest.raises(ConnectionError):
        retry(budget=budget, clock=clock)(_refused)()
    assert spy.seen == ["budget_refused", "gave_up"]
    spy.seen.clear()
    breaker = CircuitBreaker(1, 30.0, name="spied-events")
    breaker.trip()
    with pytest.raises(CircuitOpenError):
        breaker.call(_refused)
    assert spy.seen == ["breaker_changed", "breaker_rejected"]
    spy.seen.clear()
    execute_task_safely("spied-task", lambda: None)
    assert spy.seen == ["task_finished"]


def test_without_enabling_nothing_is_imported() -> None:
    """``import resilient``, ``resilient.telemetry`` and the primitives at work load neither
    ``prometheus_client`` nor ``opentelemetry`` (a fresh interpreter)."""
    code = textwrap.dedent(
        """
        import sys
        import resilient
        import resilient.telemetry
        from resilient import CircuitBreaker, execute_task_safely, retry
        from resilient.testing import ManualClock

        breaker = CircuitBreaker(1, 30.0)
        try:
            retry(max_retries=1, clock=ManualClock())(breaker(lambda: 1 / 0))()
        except Exception:
            pass
        execute_task_safely("t", lambda: None)
        resilient.telemetry.disable()
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("prometheus_client", "opentelemetry")))
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


# -- threads -------------------------------------------------------------------------------------------


def test_counts_are_exact_under_threads(registry: CollectorRegistry) -> None:
    """8 threads retrying at once: every retry is counted, none twice."""
    telemetry.enable_prometheus(registry)
    threads, calls = 8, 200
    clock = ManualClock()
    local = threading.local()

    def flaky() -> None:
        local.count = getattr(local, "count", 0) + 1
        if local.count % 2:
            raise ConnectionError("reset")

    wrapped = retry(max_retries=1, clock=clock)(flaky)
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(calls):
                wrapped()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    assert not errors
    name = qualified(flaky)
    assert value(
        scrape(registry), "resilient_retries_total", function=name, error_class="transient"
    ) == (threads * calls)


def test_task_counts_and_durations_are_exact_under_threads(registry: CollectorRegistry) -> None:
    """400 tasks on 8 threads: each counted once, each duration observed once."""
    from resilient import run_tasks

    telemetry.enable_prometheus(registry)
    tasks = [("threaded-task", work_briefly) for _ in range(400)]
    summary = run_tasks(tasks, concurrency=8)
    assert summary.succeeded == 400
    samples = scrape(registry)
    assert value(samples, "resilient_tasks_total", task="threaded-task", outcome="success") == 400
    assert value(samples, "resilient_task_duration_seconds_count", task="threaded-task") == 400
    assert (
        value(samples, "resilient_task_duration_seconds_bucket", task="threaded-task", le="+Inf")
        == 400
    )


def work_briefly() -> int:
    return sum(range(100))


def test_the_registry_of_breakers_is_read_safely_while_threads_add_to_it() -> None:
    """Reading the live breakers while another thread registers more never fails
    (unguarded, iterating the weak dictionary raises "changed size during iteration")."""

    class Registered:
        """Stands for a breaker: the registry only keeps a weak reference to it."""

    kept = [Registered() for _ in range(5000)]
    for item in kept:
        _events.register_breaker(item)
    stop = threading.Event()
    errors: list[BaseException] = []

    def register() -> None:
        recent: list[Registered] = []
        try:
            while not stop.is_set():
                item = Registered()
                recent.append(item)
                _events.register_breaker(item)
                if len(recent) > 5000:
                    recent.clear()
        except BaseException as exc:
            errors.append(exc)

    interval = sys.getswitchinterval()
    # Threads switch every 0.1 ms (not 5): unguarded, the 150 reads fail every time (the
    # first failure came within 61 reads in 60 runs).
    # Not 1 us: on a busy machine each forced switch waits for the OS scheduler.
    sys.setswitchinterval(1e-4)
    adder = threading.Thread(target=register)
    adder.start()
    try:
        for _ in range(150):
            assert len(_events.live_breakers()) >= len(kept)
    finally:
        stop.set()
        adder.join(timeout=30)
        sys.setswitchinterval(interval)
    assert not errors


def test_scraping_while_threads_build_breakers_never_fails(registry: CollectorRegistry) -> None:
    """Breakers built (and collected) by other threads during scrapes break nothing."""
    telemetry.enable_prometheus(registry)
    stop = threading.Event()
    errors: list[BaseException] = []

    def build() -> None:
        try:
            while not stop.is_set():
                for _ in range(50):
                    CircuitBreaker(name="churn")
        except BaseException as exc:
            errors.append(exc)

    builders = [threading.Thread(target=build) for _ in range(2)]
    for b in builders:
        b.start()
    try:
        for _ in range(30):
            scrape(registry)
    finally:
        stop.set()
        for b in builders:
            b.join(timeout=30)
    assert not errors


# -- the budget's name -------------------------------------------------------------------------------


def test_a_budget_is_named_default_unless_named() -> None:
    assert RetryBudget().name == "default"
    assert RetryBudget(name="search-api").name == "search-api"
    assert repr(RetryBudget(4, 0.5, name="x")) == (
        "RetryBudget(name='x', max_tokens=4.0, token_ratio=0.5, tokens=4.0)"
    )


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("", ValueError, "name must be a non-empty str, got ''"),
        (None, TypeError, "name must be a str, got None"),
        (3, TypeError, "name must be a str, got 3"),
    ],
)
def test_a_bad_budget_name_fails_at_construction(
    name: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        RetryBudget(name=name)  # type: ignore[arg-type]


def test_an_unnamed_budget_reports_as_default(registry: CollectorRegistry) -> None:
    telemetry.enable_prometheus(registry)
    before = value(scrape(registry), "resilient_retry_budget_refusals_total", budget="default")
    with pytest.raises(ConnectionError):
        retry(budget=RetryBudget(max_tokens=1), clock=ManualClock())(_refused)()
    after = value(scrape(registry), "resilient_retry_budget_refusals_total", budget="default")
    assert (after or 0) - (before or 0) == 1


def test_a_redis_budget_reports_under_its_name(
    registry: CollectorRegistry, redis_client: Any
) -> None:
    from resilient.redis import RedisRetryBudget

    telemetry.enable_prometheus(registry)
    budget = RedisRetryBudget(redis_client, "fleet-search", max_tokens=1)
    with pytest.raises(ConnectionError):
        retry(budget=budget, clock=ManualClock())(_refused)()
    samples = scrape(registry)
    assert value(samples, "resilient_retry_budget_refusals_total", budget="fleet-search") == 1


# -- the same facts as the listeners and the async forms ---------------------------------------------


def test_transitions_counted_are_those_the_listeners_hear(registry: CollectorRegistry) -> None:
    """A breaker with a listener (its changes are queued and delivered in order) counts each once."""
    heard: list[tuple[str, str]] = []

    class Listener:
        def on_state_change(self, breaker: CircuitBreaker, old: Any, new: Any) -> None:
            heard.append((old.value, new.value))

    telemetry.enable_prometheus(registry)
    clock = ManualClock()
    breaker = CircuitBreaker(1, 1.0, name="listened", clock=clock, listeners=[Listener()])
    for _ in range(3):
        with pytest.raises(ConnectionError):
            breaker.call(_refused)
        clock.advance(1.0)
        breaker.call(lambda: None)
    samples = scrape(registry)
    counted = {
        (dict(labels)["from_state"], dict(labels)["to_state"]): n
        for (name, labels), n in samples.items()
        if name == "resilient_breaker_transitions_total" and dict(labels)["breaker"] == "listened"
    }
    assert counted == {pair: heard.count(pair) for pair in set(heard)}
    assert sum(counted.values()) == len(heard) == 9


def test_async_retries_and_rejections_reach_the_current_span(otel: Otel) -> None:
    """The span current in the task making the call gets the events."""
    import asyncio

    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    clock = ManualClock()
    failures = iter([ConnectionError("reset")] * 2)
    breaker = CircuitBreaker(1, 30.0, name="async-rejecting", clock=clock)
    breaker.trip()

    @retry(clock=clock)
    async def fetch() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "ok"

    async def main() -> None:
        with otel.tracer.start_as_current_span("async-request"):
            assert await fetch() == "ok"
            with pytest.raises(CircuitOpenError):
                await breaker.call_async(fetch)

    asyncio.run(main())
    [span] = otel.spans.get_finished_spans()
    assert [event.name for event in span.events] == [
        "resilient.retry",
        "resilient.retry",
        "resilient.breaker.rejected",
    ]


# -- pacing --------------------------------------------------------------------------------


def paced_run(tag: str) -> tuple[RateLimiter, ConcurrencyLimit]:
    """A limiter with 2 admitted at once, 1 after a wait, 2 refused; a limit of 3 with 1 inside."""
    clock = ManualClock()
    limiter = RateLimiter(1, burst=2, name=f"{tag}-api", clock=clock)
    assert limiter.try_acquire()
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    limiter.acquire()  # waits a second
    with pytest.raises(RateLimitExceeded):
        limiter.acquire(timeout=0.5)
    limit = ConcurrencyLimit(3, name=f"{tag}-db")
    return limiter, limit


def test_rate_limiter_acquires_and_concurrency_gauges_in_prometheus(
    registry: CollectorRegistry,
) -> None:
    """resilient_rate_limiter_acquires_total by outcome; the limit and in-flight gauges."""
    telemetry.enable_prometheus(registry)
    _limiter, limit = paced_run("prom")  # kept alive: the exporters read live limiters
    with limit:
        samples = scrape(registry)
    name = "resilient_rate_limiter_acquires_total"
    assert {
        outcome: value(samples, name, limiter="prom-api", outcome=outcome)
        for outcome in ("admitted", "waited", "refused")
    } == {"admitted": 2, "waited": 1, "refused": 2}
    assert value(samples, "resilient_concurrency_limit", concurrency="prom-db") == 3
    assert value(samples, "resilient_concurrency_in_flight", concurrency="prom-db") == 1
    assert value(scrape(registry), "resilient_concurrency_in_flight", concurrency="prom-db") == 0
    types = {
        line.split()[2]: line.split()[3]
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith("# TYPE")
    }
    assert types["resilient_rate_limiter_acquires_total"] == "counter"
    assert types["resilient_concurrency_limit"] == "gauge"
    assert types["resilient_concurrency_in_flight"] == "gauge"


def test_pacing_in_opentelemetry_with_a_span_event_per_refusal(otel: Otel) -> None:
    """The same facts under resilient.*; each refusal that raised is an event on the span."""
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    with otel.tracer.start_as_current_span("request"):
        limiter, limit = paced_run("otel")
    with limit:
        points = otel.points()
    acquires = "resilient.rate_limiter.acquires"
    assert points[(acquires, frozenset({"limiter": "otel-api", "outcome": "waited"}.items()))] == 1
    assert points[(acquires, frozenset({"limiter": "otel-api", "outcome": "refused"}.items()))] == 2
    assert (
        points[("resilient.concurrency.limit", frozenset({"concurrency": "otel-db"}.items()))] == 3
    )
    names = [name for name, _ in otel.events()]
    assert names[0] == "resilient.rate_limiter.refused"
    assert otel.events()[0][1]["limiter"] == "otel-api"
    assert otel.events()[0][1]["retry_after"] == pytest.approx(1.0)
    del limiter


def test_a_refused_slot_is_an_event_on_the_span(otel: Otel) -> None:
    """ConcurrencyLimitExceeded adds resilient.concurrency.refused to the current span."""
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    limit = ConcurrencyLimit(1, name="span-db")
    with (
        otel.tracer.start_as_current_span("request"),
        limit,
        pytest.raises(ConcurrencyLimitExceeded),
    ):
        limit.call(lambda: None)
    assert otel.events() == [
        (
            "resilient.concurrency.refused",
            {"concurrency": "span-db", "error.type": "resilient.pacing.ConcurrencyLimitExceeded"},
        )
    ]


def test_the_block_form_is_counted_as_the_decorator_is(registry: CollectorRegistry) -> None:
    """``retrying()`` blocks, ``for`` and ``async for``, feed the same metrics as ``@retry``:
    retries, calls that gave up, budget refusals, under the block's name (issue 19)."""
    from resilient import retrying

    telemetry.enable_prometheus(registry)
    clock = ManualClock()

    def block(name: str, **options: Any) -> None:
        for attempt in retrying(name=name, clock=clock, **options):
            with attempt:
                raise TimeoutError("read timed out")

    async def block_async(name: str) -> None:
        async for attempt in retrying(name=name, max_retries=1, clock=clock):
            with attempt:
                raise TimeoutError("read timed out")

    @retry(max_retries=1, clock=clock)
    def decorated() -> None:
        raise TimeoutError("read timed out")

    budget = RetryBudget(max_tokens=2, token_ratio=0.1, name="block-search")
    for run in (
        lambda: block("block-sync", max_retries=1),
        lambda: asyncio.run(block_async("block-async")),
        lambda: block("block-budget", max_retries=3, budget=budget),
        decorated,
    ):
        with pytest.raises(TimeoutError):
            run()
    samples = scrape(registry)
    for function in ("block-sync", "block-async", qualified(decorated)):
        labels = {"function": function, "error_class": "timeout"}
        assert value(samples, "resilient_retries_total", **labels) == 1
        assert value(samples, "resilient_retries_exhausted_total", **labels) == 1
    assert value(samples, "resilient_retry_budget_refusals_total", budget="block-search") == 1


# -- names no exporter can encode ----------------------------------------------------------


def _use_unencodable_names() -> None:
    """A breaker, a task, a budget, a limiter and a concurrency limit whose names hold a
    lone surrogate (UTF-8 cannot encode it); each used once, the breaker tripped."""
    breaker = CircuitBreaker(1, name="svc-\ud800", clock=ManualClock())
    with pytest.raises(ConnectionError):
        breaker.call(_fail_once)
    with pytest.raises(CircuitOpenError):
        breaker.call(_fail_once)
    execute_task_safely("task-\ud800", lambda: 1)
    budget = RetryBudget(max_tokens=1, name="budget-\ud800")
    with pytest.raises(ConnectionError):
        retry(max_retries=2, budget=budget, clock=ManualClock())(_always_fails)()
    limiter = RateLimiter(1, name="limiter-\ud800", clock=ManualClock())
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    _BREAKERS_KEPT.append((breaker, limiter, ConcurrencyLimit(2, name="slots-\ud800")))


_BREAKERS_KEPT: list[object] = []


def _fail_once() -> None:
    raise ConnectionError("down")


def _always_fails() -> None:
    raise ConnectionError("down")


def test_a_name_utf8_cannot_encode_does_not_break_the_prometheus_scrape(
    registry: CollectorRegistry,
) -> None:
    """One name with a lone surrogate made generate_latest raise UnicodeEncodeError: every
    metric of the process was lost. The name is written with the surrogate escaped."""
    telemetry.enable_prometheus(registry)
    try:
        _use_unencodable_names()
        text = generate_latest(registry).decode("utf-8")
    finally:
        _BREAKERS_KEPT.clear()
    for label in (
        'breaker="svc-\\\\ud800"',
        'task="task-\\\\ud800"',
        'budget="budget-\\\\ud800"',
        'limiter="limiter-\\\\ud800"',
        'concurrency="slots-\\\\ud800"',
    ):
        assert label in text
    assert 'resilient_breaker_state{breaker="svc-\\\\ud800",state="open"} 1.0' in text


def test_a_name_utf8_cannot_encode_reaches_opentelemetry_encodable(otel: Otel) -> None:
    """The same names reach OpenTelemetry's points and span events encodable (an OTLP
    exporter encodes every attribute as UTF-8)."""
    telemetry.enable_opentelemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    try:
        with otel.tracer.start_as_current_span("batch"):
            _use_unencodable_names()
        found = repr((otel.points(), otel.events()))
        attributes = [
            value for _, pairs in otel.points() for _, value in pairs if isinstance(value, str)
        ] + [v for _, attrs in otel.events() for v in attrs.values() if isinstance(v, str)]
    finally:
        _BREAKERS_KEPT.clear()
    for value in attributes:
        value.encode("utf-8")  # raises if not encodable
    for name in ("svc", "task", "budget", "limiter", "slots"):
        assert f"{name}-\\\\ud800" in found
