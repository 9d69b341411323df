"""Every ``python`` code block in the docs and the README runs as written.

Each block runs as a script in an empty directory, as if in a fresh
interpreter: a preloaded *zygote* forks one child per block (``_zygote.py``),
which halves the suite's CPU time and changes nothing a block can see but the
modules already loaded (never ``requests`` or the other optional clients; the
blocks that import the openai or anthropic SDK run in a zygote that has them).

A block may also promise its output: a ``text`` block right after it, preceded
by the line ``<!-- output -->`` (invisible once rendered), must be exactly what
the block writes to stdout and stderr, in order; ``...`` in it matches any text
(doctest's ``ELLIPSIS``), for timestamps and the like.

A block preceded by the line ``<!-- needs: redis -->`` runs with the
environment variable ``REDIS_URL`` naming an empty database of a real,
throwaway redis-server (the fixture of the Redis tests: it skips without the
binary, and fails under CI, which installs it).

The API reference (``docs/reference/``) is generated from docstrings by
mkdocstrings; the tests here check that it covers every public name and that
every ``::: target`` it names exists, so a typo fails here, not only in the
site build (``mkdocs build --strict``, run by ``.ci/run``).
"""

from __future__ import annotations

import doctest
import importlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import resilient
from _zygote import Zygote

ROOT = Path(__file__).resolve().parent.parent
# A fence may carry attributes after the language: ```python title="tenacity"
FENCE = re.compile(r"^```python(?:[ \t][^\n]*)?\n(.*?)^```\n", re.DOTALL | re.MULTILINE)
OUTPUT = re.compile(r"\n*<!-- output -->\n```text\n(.*?)^```", re.DOTALL | re.MULTILINE)
NEEDS_REDIS = re.compile(r"<!-- needs: redis -->\n+\Z")
# ``::: target`` and its indented options (``members: false`` renders no member)
DIRECTIVE = re.compile(r"^::: ([\w.]+)\n((?:[ \t]+\S.*\n)*)", re.MULTILINE)


class Block(NamedTuple):
    where: str
    code: str
    expected: str | None
    needs_redis: bool


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _blocks() -> list[Block]:
    found = []
    for page in _pages():
        text = page.read_text(encoding="utf-8")
        for number, match in enumerate(FENCE.finditer(text), 1):
            shown = OUTPUT.match(text, match.end())
            found.append(
                Block(
                    where=f"{page.relative_to(ROOT)}#{number}",
                    code=match.group(1),
                    expected=shown.group(1) if shown else None,
                    needs_redis=bool(NEEDS_REDIS.search(text, 0, match.start())),
                )
            )
    return found


BLOCKS = _blocks()


def test_the_docs_have_examples() -> None:
    """The collection below is not silently empty, and reaches the folders of docs/."""
    assert len(BLOCKS) >= 3
    assert any(block.expected is not None for block in BLOCKS)
    assert any(block.where.startswith("docs/migrate/") for block in BLOCKS)
    assert any(block.needs_redis for block in BLOCKS)


def test_every_output_marker_is_checked() -> None:
    """An ``<!-- output -->`` that does not follow its block directly (prose between
    them) would never be compared with what the block prints: every marker counts."""
    for page in _pages():
        markers = page.read_text(encoding="utf-8").count("<!-- output -->")
        where = f"{page.relative_to(ROOT)}#"
        checked = sum(1 for b in BLOCKS if b.where.startswith(where) and b.expected is not None)
        assert markers == checked, f"{page.relative_to(ROOT)}: an output marker is not checked"


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    """One interpreter with the common modules loaded, forking a child per block."""
    runner = Zygote()
    yield runner
    runner.close()


# A block that imports an LLM SDK runs in the zygote that has them loaded (conftest.py).
USES_AN_SDK = re.compile(r"^(?:import|from) (?:openai|anthropic)\b", re.MULTILINE)


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_code_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The block runs alone, as in a fresh interpreter, in an empty directory,
    and prints what the page says it prints."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # stdout and stderr in the order written
    if block.needs_redis:
        request.getfixturevalue("redis_client")  # a running server, its database emptied
        env["REDIS_URL"] = request.getfixturevalue("redis_server").patient_url
    script = tmp_path / "example.py"
    script.write_text(block.code, encoding="utf-8")
    runner: Zygote = request.getfixturevalue(
        "sdk_zygote" if USES_AN_SDK.search(block.code) else "zygote"
    )
    completed = runner.run(script, env=env, merge_stderr=block.expected is not None)
    assert completed.returncode == 0, (
        f"{block.where} failed:\n{completed.stdout}\n{completed.stderr}"
    )
    if block.expected is not None and not doctest.OutputChecker().check_output(
        block.expected, completed.stdout, doctest.ELLIPSIS
    ):
        pytest.fail(
            f"{block.where} printed something else than the page shows:\n"
            f"--- the page\n{block.expected}--- the block\n{completed.stdout}",
            pytrace=False,
        )


# -- the API reference --------------------------------------------------------------

# Rendered as whole modules (``::: resilient.http``): users import them by path.
REFERENCE_MODULES = (
    "resilient.backoff",
    "resilient.http",
    "resilient.httpx",
    "resilient.logs",
    "resilient.redis",
    "resilient.testing",
)


def _directives(*, with_members: bool = False) -> list[str]:
    """The targets of the reference's ``:::`` lines (only those that render their
    members, with ``with_members``)."""
    return [
        target
        for page in sorted((ROOT / "docs" / "reference").glob("*.md"))
        for target, options in DIRECTIVE.findall(page.read_text(encoding="utf-8"))
        if not (with_members and re.search(r"^\s+members: false$", options, re.MULTILINE))
    ]


def _resolve(target: str) -> Any:
    """The object a ``::: target`` line names: a module, or a name inside one."""
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError:
        module, _, name = target.rpartition(".")
        return getattr(importlib.import_module(module), name)


def _public_modules() -> list[str]:
    """Every module of the package whose path is public (no leading underscore)."""
    package = Path(resilient.__file__).parent
    return sorted(f"resilient.{path.stem}" for path in package.glob("[!_]*.py"))


def test_every_reference_directive_names_an_object() -> None:
    """A ``::: target`` with a typo fails here, not only in the site build."""
    directives = _directives()
    assert directives
    for target in directives:
        assert target.startswith("resilient"), target
        _resolve(target)


def test_the_reference_covers_every_public_name() -> None:
    """Every name of ``resilient.__all__``, and of the ``__all__`` of every public
    module, has its entry in the API reference: its own ``::: name``, or its module's."""
    directives = set(_directives())
    missing_modules = [module for module in REFERENCE_MODULES if module not in directives]
    assert not missing_modules, f"no `::: module` directive for {missing_modules}"
    covered = set(directives)
    for target in _directives(with_members=True):
        obj = _resolve(target)
        if getattr(obj, "__name__", None) == target and hasattr(obj, "__all__"):  # a module
            covered.update(f"{target}.{name}" for name in obj.__all__)

    def documented(module: str, name: str) -> bool:
        top_level = resilient._WHERE.get(name) == module and f"resilient.{name}" in covered
        return f"{module}.{name}" in covered or top_level

    missing = [
        f"resilient.{name}"
        for name in resilient.__all__
        if not documented(resilient._WHERE[name], name)
    ]
    for module in _public_modules():
        names = getattr(importlib.import_module(module), "__all__", ())
        missing += [f"{module}.{name}" for name in names if not documented(module, name)]
    assert not missing, f"public names missing from docs/reference/: {sorted(missing)}"
