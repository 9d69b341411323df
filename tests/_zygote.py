"""Run many small Python scripts fast, each as if in a fresh interpreter.

``tests/test_docs.py`` runs every code block of the docs as a script. Starting
an interpreter and importing the same modules a hundred times is most of that
suite's time, so a *zygote* process imports them once and forks one child per
script: the child starts with those modules loaded and nothing else changed
(no logging configured, no thread started, no event loop), runs the script as
``__main__`` in its own directory with its own environment and standard
streams, and exits; whatever the script does dies with the child.

Modules that a page asserts are *not* loaded (``requests`` before the first
use of the HTTP names) are never preloaded. On a platform without ``fork``
every script runs in a fresh interpreter instead.

The scripts that use the openai and anthropic SDKs (the LLM page's blocks, the
LLM agent example, the type-checked API files) run in a zygote of their own
that has the SDKs loaded too (``SDK_PRELOAD``): importing them is two seconds
of CPU on Python 3.10, once per zygote instead of once per script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

# Loaded once in the zygote. Never `requests`, `redis`, `httpx`, `aiohttp`,
# `prometheus_client` or `opentelemetry`: pages show that resilient loads
# them only when a feature that needs them is used.
PRELOAD = (
    "asyncio",
    "concurrent.futures",
    "contextlib",
    "dataclasses",
    "email.utils",
    "http.client",
    "http.server",
    "json",
    "logging",
    "pathlib",
    "random",
    "socket",
    "sqlite3",
    "tempfile",
    "threading",
    "urllib.error",
    "urllib.request",
    "resilient",
    "resilient._classify",
    "resilient._retry",
    "resilient.backoff",
    "resilient.breaker",
    "resilient.budget",
    "resilient.cleanup",
    "resilient.logs",
    "resilient.task",
)

# The SDK zygote's modules: the same, the SDKs and the HTTP client they use.
SDK_PRELOAD = (*PRELOAD, "httpx2", "openai", "anthropic")

_SERVER = r"""
import importlib, io, json, os, runpy, signal, sys, traceback
for name in sys.argv[1:]:
    importlib.import_module(name)
channel_in, channel_out = sys.stdin.buffer, sys.stdout.buffer
channel_out.write(b"ready\n"); channel_out.flush()
for line in channel_in:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            signal.alarm(240)  # a script that hangs dies, as subprocess.run(timeout=240) would
            os.chdir(job["cwd"])
            os.environ.clear(); os.environ.update(job["env"])
            null = os.open(os.devnull, os.O_RDONLY); os.dup2(null, 0); os.close(null)
            out = os.open(job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            err = out if job["merge"] else os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, 1); os.dup2(err, 2)
            # Unbuffered, as PYTHONUNBUFFERED=1: stdout and stderr in the order written.
            sys.stdin = open(0, "r", closefd=False)
            sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", line_buffering=True, write_through=True)
            sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True, write_through=True)
            sys.argv = [job["script"], *job["args"]]
            sys.path[0] = os.path.dirname(job["script"])
            code = 0
            try:
                runpy.run_path(job["script"], run_name="__main__")
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
                if not isinstance(exit.code, (int, type(None))):
                    print(exit.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
                code = 1
            import atexit
            atexit._run_exitfuncs()
            sys.stdout.flush(); sys.stderr.flush()
        except BaseException:
            traceback.print_exc()
            code = 70
        os._exit(code)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    channel_out.write(json.dumps({"code": status}).encode() + b"\n"); channel_out.flush()
"""


class Completed(NamedTuple):
    """What a script did: its exit code and what it wrote."""

    returncode: int
    stdout: str
    stderr: str


class Zygote:
    """One preloaded interpreter that forks a child per script."""

    def __init__(self, preload: tuple[str, ...] = PRELOAD) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._outputs = tempfile.TemporaryDirectory(prefix="resilient-zygote-")
        self._runs = 0
        if hasattr(os, "fork"):
            self._process = subprocess.Popen(
                [sys.executable, "-c", _SERVER, *preload],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            assert self._process.stdout is not None
            if self._process.stdout.readline() != b"ready\n":
                raise RuntimeError("the zygote did not start")

    def run(
        self,
        script: Path,
        *args: str,
        env: dict[str, str],
        merge_stderr: bool,
        cwd: Path | None = None,
    ) -> Completed:
        """Run *script* as ``__main__`` in *cwd* (default: its directory), as
        ``python script *args`` would; stderr into stdout if *merge_stderr*."""
        cwd = script.parent if cwd is None else cwd
        process = self._process
        if process is None or process.poll() is not None:
            return self._run_fresh(script, *args, env=env, merge_stderr=merge_stderr, cwd=cwd)
        self._runs += 1
        out = Path(self._outputs.name, f"{self._runs}.stdout")
        err = out.with_suffix(".stderr")
        job = {
            "script": str(script),
            "args": list(args),
            "cwd": str(cwd),
            "env": env,
            "stdout": str(out),
            "stderr": str(err),
            "merge": merge_stderr,
        }
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(json.dumps(job).encode() + b"\n")
        process.stdin.flush()
        answer = json.loads(process.stdout.readline())
        stdout = out.read_text(encoding="utf-8", errors="replace")
        stderr = "" if merge_stderr else err.read_text(encoding="utf-8", errors="replace")
        for path in (out, err):
            path.unlink(missing_ok=True)
        return Completed(answer["code"], stdout, stderr)

    @staticmethod
    def _run_fresh(
        script: Path, *args: str, env: dict[str, str], merge_stderr: bool, cwd: Path
    ) -> Completed:
        completed = subprocess.run(
            [sys.executable, str(script), *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            env=env,
            text=True,
            timeout=240,
            check=False,
        )
        return Completed(completed.returncode, completed.stdout, completed.stderr or "")

    def close(self) -> None:
        """Stop the zygote: killed, since between scripts it holds nothing (every child
        has been waited for), and its interpreter's shutdown, with the SDKs loaded, took
        more than 10 s on a very busy machine and is CPU spent for nothing."""
        process, self._process = self._process, None
        if process is not None:
            assert process.stdin is not None
            assert process.stdout is not None
            process.kill()
            process.wait(timeout=60)
            process.stdin.close()
            process.stdout.close()
        self._outputs.cleanup()
