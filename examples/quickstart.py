"""Quick start: retry a flaky call, watch each retry in the log, see what happened.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import logging
import sys

from resilient import ErrorClass, RetryState, classify, retry


class FlakyService:
    """Pretends to be a remote API: two connection resets, then an answer."""

    def __init__(self) -> None:
        self.calls = 0

    def get_weather(self, city: str) -> dict[str, object]:
        self.calls += 1
        if self.calls <= 2:
            raise ConnectionResetError(f"connection reset by peer (call {self.calls})")
        return {"city": city, "temperature_c": 21.5}


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s "
        "attempt=%(attempt)s class=%(error_class)s delay=%(delay).2fs error=%(error)r",
    )
    service = FlakyService()
    history: list[RetryState] = []

    @retry(max_retries=4, base_delay=0.05, max_delay=1.0, on_retry=history.append)
    def weather(city: str) -> dict[str, object]:
        return service.get_weather(city)

    print(f"ConnectionResetError classifies as {classify(ConnectionResetError()).name}")
    print(f"PermissionError classifies as {classify(PermissionError()).name} (never retried)")
    print()
    result = weather("Lisbon")
    print()
    print(f"result: {result}")
    print(f"attempts: {service.calls} ({len(history)} retries)")
    for state in history:
        print(
            f"  retry after attempt {state.attempt}: {state.error_class.name}, "
            f"waited {state.delay:.3f}s, error was {state.exception!r}"
        )
    assert history[0].error_class is ErrorClass.TRANSIENT

    @retry(max_retries=4, base_delay=0.05)
    def forbidden() -> None:
        raise PermissionError("token lacks the scope weather:read")

    try:
        forbidden()
    except PermissionError as exc:
        print(f"\nFATAL errors are raised at once, unretried: {exc!r}")


if __name__ == "__main__":
    main()
