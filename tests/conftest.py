"""Shared test settings."""

from __future__ import annotations

import os

from hypothesis import settings

# CI runs on two shared cores: no per-example deadline, a fixed example budget.
settings.register_profile("default", deadline=None, print_blob=True)
settings.register_profile("ci", deadline=None, print_blob=True, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")
