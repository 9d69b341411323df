"""Two processes, one circuit breaker: what one process learns, the other acts on.

Run it with the URL of a Redis server to use (it writes keys under the
namespace ``resilient-example`` only)::

    python examples/shared_breaker.py redis://localhost:6379/0

Without a URL it starts a throwaway ``redis-server`` on a free loopback port
(persistence off) if one is installed, and stops it at the end.

What happens: the *checkout* process calls an inventory service that is down;
its third failure opens the shared circuit. The *reports* process, which has
not failed once, is then rejected at once without calling the service. After
the open period (measured by Redis's clock) the reports process makes the one
trial call; it succeeds, and the checkout process sees the circuit closed.

The two processes hand each other the turn with events, never with sleeps:
checkout starts failing only once reports is up and waiting (starting a
process can take longer than the whole open period on a busy machine), and
reports calls as soon as checkout says the circuit is open.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator
from contextlib import contextmanager
from multiprocessing.synchronize import Event
from typing import TYPE_CHECKING

from resilient import CircuitBreaker, CircuitOpenError
from resilient.redis import RedisStore

if TYPE_CHECKING:  # ForkServerContext exists on POSIX only
    from multiprocessing.context import ForkServerContext, SpawnContext

NAMESPACE = "resilient-example"
OPEN_FOR = 1.0  # seconds the circuit stays open; short, so the example is quick


def inventory_breaker(url: str) -> CircuitBreaker:
    """The breaker both processes build: the same name, the same store."""
    store = RedisStore.from_url(url, namespace=NAMESPACE)
    return CircuitBreaker(3, OPEN_FOR, name="inventory-api", store=store)


HANDSHAKE_TIMEOUT = 60.0  # seconds a process waits for the other's signal before giving up


def checkout(url: str, ready: Event, opened: Event, done: Event) -> None:
    """Calls the inventory service while it is down, until the circuit opens."""
    _log_plainly()
    breaker = inventory_breaker(url)

    def reserve_item() -> None:
        raise ConnectionRefusedError("inventory service: connection refused")

    # Open the circuit only once reports is up: its start-up must not eat the open period.
    _wait_for(ready, "the reports process to start")
    for attempt in range(1, 4):
        try:
            breaker.call(reserve_item)
        except ConnectionRefusedError as error:
            print(f"checkout: call {attempt} failed: {error}", flush=True)
    print(f"checkout: the circuit is now {breaker.state.value}", flush=True)
    opened.set()
    _wait_for(done, "the reports process to run its trial")
    print(f"checkout: the circuit is now {breaker.state.value}", flush=True)


def reports(url: str, ready: Event, opened: Event) -> None:
    """Never saw a failure itself, yet is protected by what checkout learned."""
    _log_plainly()
    breaker = inventory_breaker(url)
    calls: list[int] = []

    def count_stock() -> int:
        calls.append(1)
        return 42

    ready.set()
    _wait_for(opened, "the checkout process to open the circuit")
    try:
        breaker.call(count_stock)
    except CircuitOpenError as error:
        print(f"reports: rejected without calling the service ({len(calls)} calls made)")
        print(f"reports: {error.remaining:.1f} s until a trial call, by Redis's clock", flush=True)
        time.sleep(error.remaining + 0.05)
    print(f"reports: trial call returned {breaker.call(count_stock)}", flush=True)
    print(f"reports: the circuit is now {breaker.state.value}", flush=True)


def main(url: str) -> int:
    """Run checkout and reports in two processes sharing the breaker in *url*."""
    inventory_breaker(url).reset()  # a fresh start if an earlier run left it open
    context = _process_context()
    ready, opened, done = context.Event(), context.Event(), context.Event()
    first = context.Process(target=checkout, args=(url, ready, opened, done), name="checkout")
    second = context.Process(target=reports, args=(url, ready, opened), name="reports")
    first.start()
    second.start()
    second.join(timeout=2 * HANDSHAKE_TIMEOUT)
    done.set()
    first.join(timeout=2 * HANDSHAKE_TIMEOUT)
    for process in (first, second):
        if process.is_alive():  # stuck: stop it rather than leave it behind
            process.kill()
            process.join()
    if (first.exitcode, second.exitcode) != (0, 0):
        print(f"a process failed: exit codes {first.exitcode}, {second.exitcode}")
        return 1
    print("shared breaker: both processes saw one circuit")
    return 0


def _process_context() -> ForkServerContext | SpawnContext:
    """How the two processes start: forked from a server process that has imported this
    script (and so resilient and redis) once (``forkserver``), where the platform has
    one; else each in a new interpreter (``spawn``)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(["__main__"])
    return forkserver


def _wait_for(event: Event, what: str) -> None:
    if not event.wait(timeout=HANDSHAKE_TIMEOUT):
        raise SystemExit(f"gave up after {HANDSHAKE_TIMEOUT:.0f} s waiting for {what}")


def _log_plainly() -> None:
    logging.basicConfig(format="%(processName)s %(levelname)s %(name)s: %(message)s")


@contextmanager
def throwaway_redis() -> Generator[str, None, None]:
    """Start redis-server on a free loopback port, persistence off; yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(
            "give the URL of a Redis server (python examples/shared_breaker.py "
            "redis://localhost:6379/0), or install redis-server to let the example start one"
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.kill()
            server.wait()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(sys.argv[1]))
    with throwaway_redis() as started:
        sys.exit(main(started))
