"""The type-checked files of ``tests/typing``: valid Python that imports, and never collected.

mypy and pyright check them (``.ci/run``); this keeps them honest at run
time: each imports cleanly (its decorators and constructors run), and pytest
finds no test in them, so their checks, in functions nobody calls, never run.
"""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from pathlib import Path

import pytest

TYPING_DIR = Path(__file__).parent / "typing"
MODULES = sorted(path.stem for path in TYPING_DIR.glob("*.py"))


def test_there_are_typing_files() -> None:
    """The directory holds the API files the type checkers are pointed at."""
    assert {"breaker_api", "cleanup_api", "extras_api", "retry_api", "task_api"} <= set(MODULES)


@pytest.mark.slow  # a new interpreter imports both LLM SDKs
def test_every_typing_file_imports() -> None:
    """Each file imports in a fresh interpreter (its breakers stay out of this process)."""
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run(
        [sys.executable, "-c", code, *MODULES],
        cwd=TYPING_DIR,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_pytest_collects_nothing_from_typing_files(pytestconfig: pytest.Config) -> None:
    """No file there matches the patterns pytest collects (``python_files``), so pytest
    finds no test there (cheaper than a second pytest run, which says the same)."""
    patterns = pytestconfig.getini("python_files")
    collected = [
        path.name
        for path in TYPING_DIR.glob("*.py")
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns)
    ]
    assert patterns
    assert collected == []
