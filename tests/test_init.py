"""The public face: ``resilient/__init__.py`` hands every name on, lazily."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import resilient


def _run(code: str) -> str:
    """Run *code* in a fresh interpreter and return what it printed."""
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def test_import_resilient_loads_no_other_module() -> None:
    """``import resilient`` loads only the package itself: no submodule, no heavy stdlib."""
    loaded = _run(
        """
        import sys
        before = set(sys.modules)
        import resilient
        print(" ".join(sorted(set(sys.modules) - before - {"__future__"})))
        """
    )
    assert loaded == "resilient"


@pytest.mark.parametrize(
    ("statement", "heavy"),
    [
        ("import resilient", "requests redis asyncio json prometheus_client opentelemetry"),
        ("from resilient import retry, CircuitBreaker", "requests redis asyncio json"),
        ("from resilient import *", "requests redis asyncio prometheus_client opentelemetry"),
    ],
)
def test_no_optional_or_heavy_dependency_is_imported(statement: str, heavy: str) -> None:
    """Optional extras, asyncio and json load only when a feature that needs them is used."""
    loaded = _run(
        f"""
        import sys
        {statement}
        print(" ".join(name for name in {heavy.split()!r} if name in sys.modules))
        """
    )
    assert loaded == ""


def test_every_name_in_all_resolves_to_an_object_of_that_name() -> None:
    """``__all__`` is complete and each name is what it says (not a module)."""
    for name in resilient.__all__:
        value = getattr(resilient, name)
        assert getattr(value, "__name__", name) == name, name
        assert type(value).__name__ != "module", name


def test_retry_and_classify_stay_functions_after_their_modules_load() -> None:
    """The private module names keep ``resilient.retry`` the decorator, whatever loads first."""
    printed = _run(
        """
        import resilient.breaker, resilient.task, resilient.testing
        import resilient
        print(type(resilient.retry).__name__, type(resilient.classify).__name__)
        """
    )
    assert printed == "function Classifier"


def test_http_names_load_requests_only_when_used() -> None:
    """The original design's ``from resilient import create_resilient_session`` works, lazily."""
    printed = _run(
        """
        import sys
        import resilient
        print("requests" in sys.modules)
        from resilient import create_resilient_session, get_json_or_none
        print("requests" in sys.modules, create_resilient_session.__module__)
        """
    )
    assert printed.split() == ["False", "True", "resilient.http"]


def test_dir_lists_every_public_name() -> None:
    """``dir(resilient)`` offers the lazy names too, for completion in a REPL."""
    names = dir(resilient)
    assert set(resilient.__all__) <= set(names)
    assert {"create_resilient_session", "get_json_or_none"} <= set(names)


def test_an_unknown_name_raises_attribute_error_naming_it() -> None:
    """A typo is an ``AttributeError`` that says which name, as for any module."""
    with pytest.raises(AttributeError, match="'resilient' has no attribute 'retri'"):
        resilient.retri  # noqa: B018 - the attribute access is the test


def test_the_retry_decorator_loads_only_what_its_loop_needs() -> None:
    """``from resilient import retry``, decorating and a successful call load no heavy module.

    Not ``typing`` (types live apart), ``dataclasses`` and ``inspect`` (a plain
    function's kind is read off its code flags), ``logging`` (looked up on the
    first failure), ``random`` (on the first drawn delay), nor ``re``,
    ``asyncio``, ``json``, ``threading``: they cost more to import than the
    whole retry loop. (Those the interpreter had already loaded before the
    statement do not count.)
    """
    loaded = _run(
        """
        import sys
        before = set(sys.modules)
        from resilient import retry

        @retry(max_retries=2, base_delay=0.5)
        def fetch(x):
            return x + 1

        fetch(1)
        print(" ".join(sorted(set(sys.modules) - before)))
        """
    ).split()
    heavy = {
        "typing",
        "typing_extensions",
        "dataclasses",
        "inspect",
        "logging",
        "re",
        "asyncio",
        "json",
        "threading",
        "contextlib",
        "random",
        "requests",
        "redis",
    }
    assert "resilient._retry" in loaded
    assert sorted(heavy.intersection(loaded)) == []


def test_pacing_and_time_remaining_do_not_load_the_retry_loop() -> None:
    """Dependencies point down: pacing reads the deadline from a module below the loop.

    ``resilient.time_remaining`` stays one function, whichever path names it.
    """
    printed = _run(
        """
        import sys
        import resilient.pacing
        from resilient import time_remaining
        print("resilient._retry" in sys.modules, "resilient._block" in sys.modules)
        import resilient._retry
        print(time_remaining is resilient._retry.time_remaining is resilient.time_remaining)
        print(time_remaining.__module__, time_remaining())
        """
    )
    assert printed.split() == ["False", "False", "True", "resilient._deadline", "None"]


def test_the_protocols_still_load_where_they_always_were() -> None:
    """``Clock`` and ``Jitter`` (defined apart, loaded on use) are reachable by every old path."""
    printed = _run(
        """
        import typing
        import resilient, resilient._clock, resilient.backoff
        from resilient.backoff import *
        print(resilient.Clock is resilient._clock.Clock)
        print(resilient.backoff.Jitter is Jitter, JitterSpec == (bool | Jitter))
        print(all(getattr(t, "_is_protocol", False) for t in (resilient.Clock, Jitter)))
        """
    )
    assert printed.split() == ["True", "True", "True", "True"]


def test_an_unknown_name_of_a_lazy_module_raises_attribute_error() -> None:
    """The modules that hand names on lazily still refuse the names they do not have."""
    import resilient._clock
    import resilient.backoff

    with pytest.raises(AttributeError, match=r"'resilient\.backoff' has no attribute 'Jiter'"):
        resilient.backoff.Jiter  # noqa: B018 - the attribute access is the test
    with pytest.raises(AttributeError, match=r"'resilient\._clock' has no attribute 'Clok'"):
        resilient._clock.Clok  # noqa: B018


def test_every_public_name_loads_no_json_encoder_nor_typing_extensions() -> None:
    """``from resilient import *`` sets up no JSON encoder and leaves ``typing_extensions`` out.

    The first ``JsonFormatter`` loads ``json``; ``typing_extensions`` is for
    type checkers only.
    """
    loaded = _run(
        """
        import sys
        before = set(sys.modules)
        from resilient import *
        print(" ".join(sorted(set(sys.modules) - before)))
        """
    ).split()
    assert "resilient.logs" in loaded
    assert sorted({"json", "json.encoder", "typing_extensions"}.intersection(loaded)) == []


def test_every_public_name_loads_neither_dataclasses_nor_inspect() -> None:
    """``from resilient import *`` leaves out ``dataclasses`` and ``inspect`` (with ``ast``
    and ``dis``): about 5 ms, a fifth of what ``import tenacity`` costs. The records
    (``TaskResult``...) load ``dataclasses`` only when asked for their fields."""
    loaded = _run(
        """
        import sys
        from resilient import *
        heavy = ("dataclasses", "inspect", "ast", "dis")
        print("loaded:", *(name for name in heavy if name in sys.modules))
        import dataclasses
        print("fields:", len(dataclasses.fields(TaskResult)))
        """
    ).splitlines()
    assert loaded == ["loaded:", "fields: 10"]
