"""Strictly private. Small helpers the modules share: Python-version shims, callable kinds."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeGuard


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)`` (PEP 678), also on Python 3.10, where it is done by hand."""
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:
        notes = getattr(exc, "__notes__", None)
        exc.__notes__ = [*notes, note] if isinstance(notes, list) else [note]  # type: ignore[attr-defined]


def is_async_callable(func: object) -> TypeGuard[Callable[..., Awaitable[Any]]]:
    """Whether calling *func* returns a coroutine: an ``async def`` function or method,
    a ``functools.partial`` of one, or an object whose ``__call__`` is ``async def``."""
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - the attribute, not callable()
    return not inspect.isfunction(func) and inspect.iscoroutinefunction(call)
