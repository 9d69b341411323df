"""The types users see from the cleanup context managers and the structured logs.

Checked by ``mypy --strict`` and ``pyright --strict``, imported by
``tests/test_typing_files.py``, never run (conventions: ``retry_api.py``).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO

from typing_extensions import assert_type

from resilient import (
    JsonFormatter,
    StructuredLogger,
    async_database_transaction,
    async_temp_file,
    atomic_write,
    bound_context,
    database_transaction,
    safe_temp_file,
)


def temporary_files(directory: Path) -> None:
    with safe_temp_file() as path:
        assert_type(path, Path)
    with safe_temp_file(suffix=".json", prefix="report-", dir=directory) as path:
        assert_type(path, Path)
    with safe_temp_file(".json", "report-", str(directory)) as path:
        assert_type(path, Path)


async def async_temporary_files() -> None:
    async with async_temp_file(suffix=".json") as path:
        assert_type(path, Path)


def atomic_writes(target: Path, mode: str) -> None:
    with atomic_write(target) as text:
        assert_type(text, TextIO)
    with atomic_write("out.txt", "w", encoding="utf-8", newline="\n", permissions=0o644) as text:
        assert_type(text, TextIO)
    with atomic_write(target, "wb") as binary:
        assert_type(binary, BinaryIO)
    with atomic_write(target, "xb", permissions=0o600) as binary:
        assert_type(binary, BinaryIO)
    with atomic_write(target, mode) as unknown:
        assert_type(unknown, IO[Any])


def transactions(connection: sqlite3.Connection) -> None:
    with database_transaction(connection) as cursor:
        assert_type(cursor, sqlite3.Cursor)
        cursor.execute("SELECT 1")


async def async_transactions(connection: Any) -> None:
    async with async_database_transaction(connection) as cursor:
        assert_type(cursor, Any)


def logs() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(rename={"message": "msg"}, static={"service": "api"}))
    log = StructuredLogger("shop", service="checkout")
    assert_type(log.bind(order_id=7), StructuredLogger)
    assert_type(log.info("order placed", context={"order": 7}, total=12.5), None)
    assert_type(log.exception("order failed", exc=ValueError("bad")), None)
    with bound_context(request_id="r-1") as fields:
        assert_type(fields, Mapping[str, object])


def rejected(target: Path) -> None:
    safe_temp_file(suffix=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    atomic_write(target, "w").__enter__().write(b"bytes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    atomic_write(target, permissions="600")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    # Text-only arguments in a binary mode: ValueError at run time, so an error for the checkers.
    atomic_write(target, "wb", encoding="utf-8")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
    atomic_write(target, "xb", errors="strict")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
    atomic_write(target, "wb+", newline="\n")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
    database_transaction(object())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    StructuredLogger("shop").info("placed", exc="not an exception")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    JsonFormatter({"message": "msg"})  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


def rejected_unknown_mode(target: Path, mode: str) -> None:
    # A mode only known at run time may be binary: the text-only arguments need a literal mode.
    atomic_write(target, mode, encoding="utf-8")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
