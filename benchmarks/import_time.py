"""How long `import resilient` takes, against peers measured the same way.

Run: python benchmarks/import_time.py  (peers: pip install -e '.[bench]')

Each figure is the best of several fresh interpreters, `-X importtime`'s
cumulative time for the top-level module: what a CLI or a serverless cold start
pays. It also checks that `import resilient` loads neither requests, redis
nor asyncio.
"""

from __future__ import annotations

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _timing import machine

RUNS = int(os.environ.get("BENCH_RUNS", "15"))
MODULES = ["resilient", "tenacity", "stamina", "backoff", "pybreaker", "redress"]


# Bytecode must be cached, as it is for an installed package: a first, unmeasured
# import writes it, whatever PYTHONDONTWRITEBYTECODE says in this shell.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def import_us(module: str) -> float | None:
    """Best-of-RUNS cumulative import time of *module* in microseconds."""
    best: float | None = None
    warm = subprocess.run([sys.executable, "-c", f"import {module}"], env=ENV, check=False)
    if warm.returncode != 0:
        return None
    for _ in range(RUNS):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=False,
            env=ENV,
        )
        if done.returncode != 0:
            return None
        for line in done.stderr.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[2] == module:
                value = float(parts[1])
                best = value if best is None else min(best, value)
    return best


def main() -> None:
    print(machine())
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, resilient; "
            "print(sorted(m for m in ('requests', 'redis', 'asyncio') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"heavy modules loaded by `import resilient`: {loaded}")
    times = {module: import_us(module) for module in MODULES}
    tenacity = times.get("tenacity")
    print(f"\n  {'module':12} {'ms':>8} {'x tenacity':>11}")
    for module, value in times.items():
        if value is None:
            print(f"  {module:12} {'n/a':>8}")
            continue
        ratio = f"{value / tenacity:11.2f}" if tenacity else f"{'n/a':>11}"
        print(f"  {module:12} {value / 1000:8.1f} {ratio}")
    print("\ngoal: resilient <= 0.5 x tenacity")


if __name__ == "__main__":
    main()
