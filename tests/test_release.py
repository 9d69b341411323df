"""Release readiness: CI runs ``.ci/run`` on every supported Python, and a version tag
publishes the sdist and the wheel through trusted publishing.

The workflow files are read as text (no YAML parser among the test dependencies): each
test states one property a release relies on.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def _supported() -> list[str]:
    """The CPython versions pyproject.toml's classifiers name, oldest first."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return re.findall(r'"Programming Language :: Python :: (3\.\d+)"', text)


def test_the_classifiers_name_every_python_from_the_floor_to_3_13() -> None:
    """requires-python's floor, then every minor version up to 3.13, each named."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    floor = re.search(r'^requires-python = ">=(3\.\d+)"$', text, re.MULTILINE)
    assert floor is not None
    first = int(floor.group(1).split(".")[1])
    assert _supported() == [f"3.{minor}" for minor in range(first, 14)]


def test_ci_runs_the_ci_script_on_every_supported_python() -> None:
    """One job per supported Python, each running .ci/run with that interpreter."""
    ci = (WORKFLOWS / "ci.yml").read_text(encoding="utf-8")
    matrix = re.search(r"^\s+python: \[(.*)\]$", ci, re.MULTILINE)
    assert matrix is not None
    assert re.findall(r'"(3\.\d+)"', matrix.group(1)) == _supported()
    assert re.search(r"^\s+run: \.ci/run$", ci, re.MULTILINE)
    assert "PYTHON: python${{ matrix.python }}" in ci
    assert re.search(r"^\s+pull_request:", ci, re.MULTILINE)


def test_a_version_tag_builds_and_publishes_through_trusted_publishing() -> None:
    """On a v* tag: the tag must match the version, the sdist and the wheel are built and
    checked, and PyPI's trusted publishing uploads them (an OIDC token, no secret)."""
    release = (WORKFLOWS / "release.yml").read_text(encoding="utf-8")
    assert re.search(r'^\s+tags: \["v\*"\]$', release, re.MULTILINE)
    assert '"v${version}"' in release  # the tag is checked against pyproject's version
    assert "python -m build" in release  # sdist and wheel (build's default: both)
    assert "twine check --strict dist/*" in release
    assert "uses: pypa/gh-action-pypi-publish@release/v1" in release
    assert re.search(r"^\s+id-token: write", release, re.MULTILINE)
    assert "secrets." not in release
    assert "password:" not in release
