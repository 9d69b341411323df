"""Every ``python`` code block in the docs and the README runs as written.

A block may also promise its output: a ``text`` block right after it, preceded
by the line ``<!-- output -->`` (invisible once rendered), must be exactly what
the block writes to stdout and stderr, in order; ``...`` in it matches any text
(doctest's ``ELLIPSIS``), for timestamps and the like.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python\n(.*?)^```\n", re.DOTALL | re.MULTILINE)
OUTPUT = re.compile(r"\n*<!-- output -->\n```text\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks() -> list[tuple[str, str, str | None]]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for number, match in enumerate(FENCE.finditer(text), 1):
            shown = OUTPUT.match(text, match.end())
            expected = shown.group(1) if shown else None
            found.append((f"{page.relative_to(ROOT)}#{number}", match.group(1), expected))
    return found


BLOCKS = _blocks()


def test_the_docs_have_examples() -> None:
    """The collection below is not silently empty."""
    assert len(BLOCKS) >= 3
    assert any(expected is not None for _, _, expected in BLOCKS)


@pytest.mark.parametrize(
    ("where", "code", "expected"), BLOCKS, ids=[where for where, _, _ in BLOCKS]
)
def test_code_block_runs(where: str, code: str, expected: str | None, tmp_path: Path) -> None:
    """The block runs alone, in a fresh interpreter, in an empty directory,
    and prints what the page says it prints."""
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if expected is None else subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # stdout and stderr in the order written
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, f"{where} failed:\n{completed.stdout}\n{completed.stderr}"
    if expected is not None and not doctest.OutputChecker().check_output(
        expected, completed.stdout, doctest.ELLIPSIS
    ):
        pytest.fail(
            f"{where} printed something else than the page shows:\n"
            f"--- the page\n{expected}--- the block\n{completed.stdout}",
            pytrace=False,
        )
