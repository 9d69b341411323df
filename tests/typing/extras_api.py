"""The types users see from ``resilient.http``, ``resilient.telemetry`` and ``resilient.testing``.

Checked by ``mypy --strict`` and ``pyright --strict``, imported by
``tests/test_typing_files.py``, never run (conventions: ``retry_api.py``).
"""

from __future__ import annotations

from typing import Any

import requests
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from requests.adapters import HTTPAdapter
from typing_extensions import assert_type

from resilient import CircuitBreaker, Clock, create_resilient_session, get_json_or_none
from resilient.http import ResilientAdapter, ResilientSession, TotalTimeout
from resilient.telemetry import disable, enable_opentelemetry, enable_prometheus
from resilient.testing import ManualClock, cap_attempts, force_state, no_wait, use_clock


def sessions() -> None:
    session = create_resilient_session()
    assert_type(session, ResilientSession)
    assert_type(create_resilient_session(2.0, 10.0, 30.0, 1), ResilientSession)
    assert_type(
        create_resilient_session(
            connect_timeout=2.0, read_timeout=10.0, total_timeout=30.0, connect_retries=0
        ),
        ResilientSession,
    )
    plain: requests.Session = session  # a requests.Session wherever one is expected
    assert_type(session.get("https://example.org", timeout=(1.0, 5.0)), requests.Response)
    assert_type(get_json_or_none(session, "https://example.org/user/1"), Any)
    assert_type(get_json_or_none(plain, "https://example.org", params={"q": "x"}), Any)
    adapter = ResilientAdapter(1.0, 5.0, 10.0, 2, pool_maxsize=20)
    assert_type(ResilientSession(adapter), ResilientSession)
    assert_type(ResilientSession(), ResilientSession)
    timeout: requests.Timeout = TotalTimeout("too slow")
    print(timeout)


def telemetry() -> None:
    assert_type(enable_prometheus(), None)
    assert_type(enable_prometheus(CollectorRegistry()), None)
    assert_type(enable_prometheus(registry=CollectorRegistry()), None)
    assert_type(enable_opentelemetry(), None)
    assert_type(
        enable_opentelemetry(meter_provider=MeterProvider(), tracer_provider=TracerProvider()),
        None,
    )
    assert_type(disable(), None)


def testing_helpers() -> None:
    clock = ManualClock(start=100.0)
    assert_type(clock.monotonic(), float)
    assert_type(clock.sleep(1.5), None)
    assert_type(clock.advance(2), None)
    assert_type(clock.sleeps, list[float])
    as_protocol: Clock = clock  # a ManualClock is a Clock
    with use_clock(clock) as installed:
        assert_type(installed, Clock)
    with no_wait() as nothing:
        assert_type(nothing, None)
    with cap_attempts(2):
        pass
    assert_type(force_state(CircuitBreaker(), "half_open"), None)
    print(as_protocol)


async def async_clock() -> None:
    clock = ManualClock()
    assert_type(await clock.asleep(0.5), None)


def rejected(session: ResilientSession) -> None:
    create_resilient_session(connect_timeout="5")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    create_resilient_session(pool_maxsize=10)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    ResilientSession(adapter=HTTPAdapter())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    get_json_or_none("https://example.org", session)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    enable_prometheus(registry="default")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    enable_opentelemetry(meter_provider=TracerProvider())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    ManualClock(start="0")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    use_clock(object())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    cap_attempts("3")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    force_state("api", "open")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
