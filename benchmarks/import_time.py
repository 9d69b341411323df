"""How long importing resilient takes, against peers measured the same way.

Run: ``python benchmarks/import_time.py [--quick]`` (peers: ``pip install -e
'.[bench]'``).

Each figure is the best of several fresh interpreters, the CPU time of the
one statement measured (``from resilient import retry``, ``import
tenacity``, ...), read with ``time.process_time_ns`` around it inside the
child (CPU time, so that a busy machine does not count against it):
what a CLI or a serverless cold start pays, everything the statement loads
included (a lazy ``__init__`` that loads its modules on first attribute
access is measured with that access). Bytecode is cached, as for an
installed package: one unmeasured run of each statement writes it, whatever
``PYTHONDONTWRITEBYTECODE`` says in this shell. The interpreters run
interleaved (every statement once per round). It also lists the heavy
modules that ``import resilient`` and ``from resilient import *`` load.
"""

from __future__ import annotations

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _timing import FLOOR, OURS, REFERENCE, Goal, Report, Row, print_report

RETRY = "import: the retry decorator (ms, fresh interpreter)"
EVERYTHING = "import: every public name (ms, fresh interpreter)"
HEAVY = ("requests", "redis", "asyncio", "prometheus_client", "opentelemetry")

# group, name, statement, kind
STATEMENTS: tuple[tuple[str, str, str, str], ...] = (
    (RETRY, "from resilient import retry", "from resilient import retry", OURS),
    (RETRY, "from tenacity import retry", "from tenacity import retry", FLOOR),
    (RETRY, "from stamina import retry", "from stamina import retry", "peer"),
    (RETRY, "from backoff import on_exception", "from backoff import on_exception", "peer"),
    (RETRY, "from redress import retry", "from redress import retry", "peer"),
    (EVERYTHING, "import resilient (lazy: loads nothing yet)", "import resilient", REFERENCE),
    (EVERYTHING, "from resilient import *", "from resilient import *", OURS),
    (EVERYTHING, "import tenacity", "import tenacity", FLOOR),
    (EVERYTHING, "import stamina", "import stamina", "peer"),
    (EVERYTHING, "import backoff", "import backoff", "peer"),
    (EVERYTHING, "import redress", "import redress", "peer"),
    (EVERYTHING, "import pybreaker", "import pybreaker", "peer"),
    (EVERYTHING, "import circuitbreaker", "import circuitbreaker", "peer"),
)

GOALS = [
    Goal(
        "`from resilient import retry`",
        "<= 0.5x `from tenacity import retry`",
        RETRY,
        ("from resilient import retry",),
        "from tenacity import retry",
        0.5,
    ),
    Goal(
        "every public name imported",
        "<= 1.0x `import tenacity`",
        EVERYTHING,
        ("from resilient import *",),
        "import tenacity",
        1.0,
        when_missed=(
            "every public name means every module: `typing`, `logging`, `threading`, "
            "`re` and the standard-library modules they pull in, and the classes of the "
            "breaker, the tasks and pacing (enums, protocols, named tuples, records). "
            "`dataclasses` and `inspect` are not loaded (the records are dataclasses to "
            "their users, made without them). `import resilient` itself loads nothing and "
            "each name loads only its module, so a program pays for what it uses."
        ),
    ),
]

# Without PYTHONDONTWRITEBYTECODE, so that the warm-up run caches the bytecode.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
CHILD = (
    "import time\n"
    "start = time.process_time_ns()\n"
    "{statement}\n"
    "print(time.process_time_ns() - start)\n"
)


def _once(statement: str) -> float | None:
    """Milliseconds the statement took in a fresh interpreter, or None if it failed."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(statement=statement)],
        capture_output=True,
        text=True,
        check=False,
        env=ENV,
    )
    if done.returncode != 0:
        return None
    return int(done.stdout.strip().splitlines()[-1]) / 1e6


def heavy_modules(statement: str) -> list[str]:
    """The modules of HEAVY (or their submodules) that *statement* leaves loaded."""
    probe = (
        f"import sys\n{statement}\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=ENV
    )
    return list(eval(done.stdout.strip()))  # a list of module names printed just above


def run(quick: bool) -> Report:
    """Time every statement; see the module docstring."""
    runs = 5 if quick else 20
    working = [entry for entry in STATEMENTS if _once(entry[2]) is not None]  # also warms
    best: dict[str, float] = {}
    for _ in range(runs):
        for _group, name, statement, _kind in working:
            value = _once(statement)
            if value is not None:
                best[name] = min(best.get(name, value), value)
    report = Report(goals=list(GOALS))
    for group, name, _statement, kind in STATEMENTS:
        value = best.get(name)
        note = "" if value is not None else "not installed"
        report.rows.append(Row(group, name, value, kind, unit="ms", note=note))
    lazy = heavy_modules("import resilient")
    everything = heavy_modules("from resilient import *")
    report.goals.append(
        Goal(
            "`import resilient` loads no heavy module",
            "none of " + ", ".join(HEAVY),
            figure=(
                f"`import resilient`: {', '.join(lazy) or 'none'}; "
                f"`from resilient import *`: {', '.join(everything) or 'none'}"
            ),
            met=not lazy,
        )
    )
    return report


if __name__ == "__main__":
    print_report(run("--quick" in sys.argv))
