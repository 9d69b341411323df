"""Overhead of ``resilient.httpx.ResilientTransport`` on a GET that succeeds.

Run: ``python benchmarks/httpx_overhead.py [--quick]``. Two tables:

- **loopback GET** (the design's goal): an ``httpx2.Client`` GETs a small JSON
  document from a keep-alive server on 127.0.0.1 (``examples/flaky_server.py``),
  through its bare ``HTTPTransport`` (the floor) and through a
  ``ResilientTransport`` wrapping the same kind of transport. The goal is
  ``<= 1.05x``: on a real network the difference vanishes further.
- **in memory**: the same GET answered by an ``httpx2.MockTransport``, with no
  socket at all, so that the transport's own cost per call shows in
  nanoseconds (the client's request and response handling are most of it).

``httpx`` (not ``httpx2``) is measured the same way when it is installed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from _timing import FLOOR, OURS, REFERENCE, Goal, Report, measure, print_report, rows_of
from flaky_server import FlakyServer

from resilient.httpx import ResilientTransport

LOOPBACK = "ResilientTransport, loopback GET"
IN_MEMORY = "ResilientTransport, in memory (MockTransport)"
FLOOR_NAME = "floor: httpx2.Client, bare HTTPTransport"
OURS_NAME = "resilient ResilientTransport (httpx2)"

GOALS = [
    Goal(
        "`ResilientTransport`, success",
        "<= 1.05x the wrapped transport, loopback GET",
        LOOPBACK,
        (OURS_NAME,),
        FLOOR_NAME,
        1.05,
        when_missed=(
            "The transport adds one object per call (the call's settings: method, "
            "host, idempotence) and a status check; compare the in-memory table, "
            "where that cost stands alone."
        ),
    )
]


def _getter(client: Any, url: str) -> Callable[[], object]:
    def get() -> object:
        return client.get(url).status_code

    return get


def loopback(quick: bool) -> Report:
    """Bare vs wrapped transport, httpx2 (and httpx), against one loopback server."""
    import httpx2

    clients: list[Any] = []
    with FlakyServer() as server:
        url = server.url + "/ok"
        candidates: dict[str, Callable[[], object]] = {}
        kinds: dict[str, str] = {}

        def add(name: str, kind: str, client: Any) -> None:
            clients.append(client)
            candidates[name] = _getter(client, url)
            kinds[name] = kind

        add(FLOOR_NAME, FLOOR, httpx2.Client(transport=httpx2.HTTPTransport()))
        add(OURS_NAME, OURS, httpx2.Client(transport=ResilientTransport(httpx2.HTTPTransport())))
        try:
            import httpx
        except ImportError:
            pass
        else:
            add("httpx.Client, bare HTTPTransport", REFERENCE, httpx.Client())
            add(
                "resilient ResilientTransport (httpx)",
                REFERENCE,
                httpx.Client(transport=ResilientTransport(httpx.HTTPTransport())),
            )
        for get in candidates.values():
            get()  # warm: connections open, kept alive
        results = measure(candidates, quick=quick, repeat=10 if quick else 40)
        for client in clients:
            client.close()
    return Report(rows=rows_of(LOOPBACK, dict(results), kinds), goals=list(GOALS))


def in_memory(quick: bool) -> Report:
    """The same GET answered in memory: the transport's own cost per call."""
    import httpx2

    def answer(request: Any) -> Any:
        return httpx2.Response(200, json={"ok": True})

    bare = httpx2.Client(transport=httpx2.MockTransport(answer))
    wrapped = httpx2.Client(transport=ResilientTransport(httpx2.MockTransport(answer)))
    url = "http://api.test/ok"
    candidates = {
        "httpx2.Client, MockTransport": _getter(bare, url),
        "resilient ResilientTransport over MockTransport": _getter(wrapped, url),
    }
    kinds = {
        "httpx2.Client, MockTransport": FLOOR,
        "resilient ResilientTransport over MockTransport": REFERENCE,
    }
    results = measure(candidates, quick=quick, repeat=10 if quick else 40)
    bare.close()
    wrapped.close()
    return Report(rows=rows_of(IN_MEMORY, dict(results), kinds))


def run(quick: bool) -> Report:
    """Both tables; see the module docstring."""
    first, second = loopback(quick), in_memory(quick)
    return Report(rows=first.rows + second.rows, goals=first.goals)


if __name__ == "__main__":
    print_report(run("--quick" in sys.argv))
