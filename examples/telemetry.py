"""Telemetry: a retried call and a circuit breaker, counted in Prometheus.

Run: python examples/telemetry.py (needs ``pip install 'resilient-kit[prometheus]'``)

A service calls ``enable_prometheus()`` once at start-up (the default
registry) and serves it, e.g. with ``prometheus_client.start_http_server(9100)``.
Here the metrics go to a registry of their own, printed at the end in the
text format Prometheus scrapes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from resilient import CircuitBreaker, CircuitOpenError, retry, telemetry

calls = {"inventory": 0}
payments = CircuitBreaker(failure_threshold=2, recovery_timeout=30.0, name="payments")


@retry(max_retries=3, base_delay=0.01)
def fetch_stock(sku: str) -> int:
    """A remote API that resets the connection twice, then answers."""
    calls["inventory"] += 1
    if calls["inventory"] <= 2:
        raise ConnectionResetError("connection reset by peer")
    return 7


@payments
def charge(amount: int) -> str:
    """A payment gateway that is down."""
    raise ConnectionError("payments gateway unreachable")


def main() -> None:
    registry = CollectorRegistry()
    telemetry.enable_prometheus(registry)

    print(f"stock of sku-42: {fetch_stock('sku-42')} (after {calls['inventory']} attempts)")
    for attempt in range(1, 4):
        try:
            charge(10)
        except CircuitOpenError:
            print(f"charge {attempt}: rejected, the circuit is open")
        except ConnectionError as exc:
            print(f"charge {attempt}: failed: {exc}")
    print()
    print(generate_latest(registry).decode(), end="")
    telemetry.disable()


if __name__ == "__main__":
    main()
