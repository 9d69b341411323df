"""The type-checked files of ``tests/typing``: valid Python that imports, and never collected.

mypy and pyright check them (``.ci/run``); this keeps them honest at run
time: each imports cleanly (its decorators and constructors run), and pytest
finds no test in them, so their checks, in functions nobody calls, never run.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import pytest

from _zygote import Zygote

TYPING_DIR = Path(__file__).parent / "typing"
MODULES = sorted(path.stem for path in TYPING_DIR.glob("*.py"))


def test_there_are_typing_files() -> None:
    """The directory holds the API files the type checkers are pointed at."""
    assert {"breaker_api", "cleanup_api", "extras_api", "retry_api", "task_api"} <= set(MODULES)


def test_every_typing_file_imports(tmp_path: Path, sdk_zygote: Zygote) -> None:
    """Each file imports as in a fresh interpreter (its breakers stay out of this process):
    in a child of the zygote that has the LLM SDKs loaded, which one of the files uses."""
    script = tmp_path / "import_them.py"
    script.write_text(
        f"import importlib, sys\nsys.path.insert(0, {str(TYPING_DIR)!r})\n"
        f"for name in {MODULES!r}:\n    importlib.import_module(name)\n",
        encoding="utf-8",
    )
    done = sdk_zygote.run(script, env=dict(os.environ), merge_stderr=False, cwd=TYPING_DIR)
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
