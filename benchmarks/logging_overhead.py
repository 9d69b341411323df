"""What a log line costs: resilient's JSON logging against the stdlib floor and peers.

Run: ``python benchmarks/logging_overhead.py [--quick]``. Needs
``python-json-logger`` and ``structlog`` (the ``bench`` extra); variants
whose package is missing are shown as not installed.

Every variant logs the same event, a message with three extra fields
(``user_id``, ``path``, ``duration_ms``), to an in-memory stream emptied
before each batch, all in one run, interleaved, best of several rounds. Two
tables:

- the whole ``logger.info(...)`` call through a ``StreamHandler`` (record
  creation, handler lock, formatting, write): what an application pays per
  line, and the only figure comparable with structlog, which has no
  formatter of its own;
- ``formatter.format(record)`` alone on a prepared record (the part a
  formatter is responsible for).

The floor is the stdlib ``logging.Formatter`` with a typical plain format
(time, level, logger, message); the bare ``Formatter()`` (message only) is
shown too.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from _timing import FLOOR, OURS, REFERENCE, Goal, Report, measure, print_report, rows_of

from resilient.logs import JsonFormatter, StructuredLogger

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
EXTRA: dict[str, Any] = {"user_id": 42, "path": "/api/items", "duration_ms": 12.5}
MESSAGE = "request handled"

LINE = "JSON log line: logger.info() with 3 extra fields, whole call"
FORMAT = "formatter.format(record) alone"
FLOOR_NAME = "floor: stdlib Formatter, plain format"
OURS_NAME = "resilient JsonFormatter"


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


def formatters() -> tuple[dict[str, logging.Formatter], dict[str, str]]:
    """Every formatter measured, by variant name, and notes on those missing."""
    found: dict[str, logging.Formatter] = {
        FLOOR_NAME: logging.Formatter(PLAIN_FORMAT),
        "stdlib Formatter(), message only": logging.Formatter(),
        OURS_NAME: JsonFormatter(),
    }
    notes: dict[str, str] = {}
    try:
        from pythonjsonlogger.json import JsonFormatter as PjlFormatter
    except ImportError:
        notes["python-json-logger"] = "not installed"
    else:
        found["python-json-logger"] = PjlFormatter(
            "%(levelname)s %(name)s %(message)s", timestamp=True
        )
    return found, notes


def lines(
    stream: io.StringIO, found: dict[str, logging.Formatter], notes: dict[str, str]
) -> dict[str, Callable[[], None]]:
    """One callable per variant that logs the event once to *stream*."""
    calls: dict[str, Callable[[], None]] = {
        name: functools.partial(stdlib_logger(name, formatter, stream).info, MESSAGE, extra=EXTRA)
        for name, formatter in found.items()
    }
    structured = StructuredLogger("bench.structured")
    StructuredLogger.configure(stream=stream, logger="bench.structured")
    structured.logger.propagate = False
    calls["resilient StructuredLogger"] = functools.partial(structured.info, MESSAGE, **EXTRA)
    try:
        import structlog
    except ImportError:
        notes["structlog JSONRenderer"] = "not installed"
    else:
        slog = structlog.wrap_logger(
            structlog.WriteLogger(stream),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(),
            ],
        )
        calls["structlog JSONRenderer"] = functools.partial(slog.info, MESSAGE, **EXTRA)
    return calls


def run(quick: bool) -> Report:
    """Measure both tables; see the module docstring."""
    stream = io.StringIO()

    def empty() -> None:
        stream.seek(0)
        stream.truncate()

    found, notes = formatters()
    report = Report()
    kinds = {
        FLOOR_NAME: FLOOR,
        OURS_NAME: OURS,
        "stdlib Formatter(), message only": REFERENCE,
        "resilient StructuredLogger": REFERENCE,
    }
    line_results: dict[str, float | None] = {
        **measure(lines(stream, found, notes), quick=quick, setup=empty)
    }
    line_results.update(dict.fromkeys(notes))
    report.rows += rows_of(LINE, line_results, kinds, notes)

    record = logging.getLogger("bench.record").makeRecord(
        "bench.record", logging.INFO, __file__, 1, MESSAGE, (), None, extra=EXTRA
    )
    formats = {name: functools.partial(f.format, record) for name, f in found.items()}
    format_results: dict[str, float | None] = {**measure(formats, quick=quick)}
    format_notes = {k: v for k, v in notes.items() if k in ("python-json-logger",)}
    format_results.update(dict.fromkeys(format_notes))
    report.rows += rows_of(FORMAT, format_results, kinds, format_notes)

    line_ratio = _ratio(line_results, OURS_NAME, FLOOR_NAME)
    format_ratio = _ratio(format_results, OURS_NAME, FLOOR_NAME)
    report.goals.append(
        Goal(
            "`JsonFormatter`",
            "<= 1.15x the plain `logging.Formatter`",
            LINE,
            limit=1.15,
            figure=(
                f"{line_ratio:.2f}x per logger.info() line (format() alone: {format_ratio:.2f}x)"
            ),
            met=line_ratio <= 1.15,
        )
    )
    return report


def _ratio(results: dict[str, float | None], subject: str, floor: str) -> float:
    top, bottom = results[subject], results[floor]
    assert top is not None  # both are always measured
    assert bottom is not None
    return top / bottom


if __name__ == "__main__":
    print_report(run("--quick" in sys.argv))
    for name, formatter in formatters()[0].items():
        if name != FLOOR_NAME:
            record = logging.makeLogRecord({"msg": MESSAGE, **EXTRA})
            print(f"\n{name}:\n  {formatter.format(record)}")
