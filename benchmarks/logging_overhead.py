"""What a log line costs: resilient's JSON logging against the stdlib floor and peers.

Every variant logs the same event, a message with three extra fields
(``user_id``, ``path``, ``duration_ms``), to an in-memory stream, all in one
run, interleaved, best of several rounds. Two figures per variant:

- ``line``: the whole ``logger.info(...)`` call through a ``StreamHandler``
  (record creation, handler lock, formatting, write);
- ``format``: ``formatter.format(record)`` alone on a prepared record (the
  part a formatter is responsible for; not applicable to structlog).

The floor is the stdlib ``logging.Formatter`` with a typical plain format
(time, level, logger, message); the bare ``Formatter()`` (message only) is
shown too. Run: ``python benchmarks/logging_overhead.py [--lines N]``.
Needs ``python-json-logger`` and ``structlog`` (the ``bench`` extra);
variants whose package is missing are skipped.
"""

from __future__ import annotations

import argparse
import gc
import io
import logging
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(__file__))

from _timing import machine

from resilient.logs import JsonFormatter, StructuredLogger

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
EXTRA = {"user_id": 42, "path": "/api/items", "duration_ms": 12.5}
MESSAGE = "request handled"


def stdlib_logger(name: str, formatter: logging.Formatter, stream: io.StringIO) -> logging.Logger:
    """A logger of its own, writing to ``stream`` through ``formatter`` only."""
    logger = logging.getLogger(f"bench.{name}")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    return logger


def build_variants(
    stream: io.StringIO,
) -> tuple[dict[str, Callable[[], None]], dict[str, logging.Formatter]]:
    """Return the line callables and the formatters, by variant name."""
    formatters: dict[str, logging.Formatter] = {
        "stdlib plain (floor)": logging.Formatter(PLAIN_FORMAT),
        "stdlib bare Formatter()": logging.Formatter(),
        "resilient JsonFormatter": JsonFormatter(),
    }
    try:
        from pythonjsonlogger.json import JsonFormatter as PjlFormatter

        formatters["python-json-logger"] = PjlFormatter(
            "%(levelname)s %(name)s %(message)s", timestamp=True
        )
    except ImportError:
        print("python-json-logger not installed: skipped")

    lines: dict[str, Callable[[], None]] = {}
    for name, formatter in formatters.items():
        logger = stdlib_logger(name, formatter, stream)
        lines[name] = lambda logger=logger: logger.info(MESSAGE, extra=EXTRA)

    structured = StructuredLogger("bench.structured")
    StructuredLogger.configure(stream=stream, logger="bench.structured")
    structured.logger.propagate = False
    lines["resilient StructuredLogger"] = lambda: structured.info(MESSAGE, **EXTRA)

    try:
        import structlog

        slog = structlog.wrap_logger(
            structlog.WriteLogger(stream),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(),
            ],
        )
        lines["structlog JSONRenderer"] = lambda: slog.info(MESSAGE, **EXTRA)
    except ImportError:
        print("structlog not installed: skipped")
    return lines, formatters


def best_ns(func: Callable[[], None], count: int, stream: io.StringIO) -> float:
    """Nanoseconds per call of ``func``, over ``count`` calls."""
    stream.seek(0)
    stream.truncate()
    start = time.perf_counter_ns()
    for _ in range(count):
        func()
    return (time.perf_counter_ns() - start) / count


def measure(
    funcs: dict[str, Callable[[], None]], count: int, rounds: int, stream: io.StringIO
) -> dict[str, float]:
    """Best of ``rounds`` interleaved rounds, per variant."""
    best = {name: float("inf") for name in funcs}
    gc.disable()  # as timeit does
    try:
        for _ in range(rounds):
            for name, func in funcs.items():
                best[name] = min(best[name], best_ns(func, count, stream))
    finally:
        gc.enable()
    return best


def report(title: str, results: dict[str, float], floor: str) -> None:
    """Print ns per line and the ratio to the floor."""
    print(f"\n{title}")
    print(f"{'variant':<30} {'ns/line':>9} {'x floor':>8}")
    for name, ns in results.items():
        print(f"{name:<30} {ns:>9.0f} {ns / results[floor]:>8.2f}")


def main() -> None:
    """Run every variant and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000, help="lines per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (best is kept)")
    args = parser.parse_args()
    print(machine())

    stream = io.StringIO()
    lines, formatters = build_variants(stream)
    floor = "stdlib plain (floor)"
    report("whole logger.info() call", measure(lines, args.lines, args.rounds, stream), floor)

    record = logging.getLogger("bench.record").makeRecord(
        "bench.record", logging.INFO, __file__, 1, MESSAGE, (), None, extra=EXTRA
    )
    formats = {name: (lambda f=f: f.format(record)) for name, f in formatters.items()}
    report(
        "formatter.format(record) alone", measure(formats, args.lines, args.rounds, stream), floor
    )

    for name, formatter in formatters.items():
        if name != floor:
            print(f"\n{name}:\n  {formatter.format(record)}")


if __name__ == "__main__":
    main()
