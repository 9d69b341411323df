"""Overhead of a circuit breaker per call, against its peers, all in one run.

Run: ``python benchmarks/breaker_overhead.py [--quick]``. Prints nanoseconds
per call and ratios; asserts nothing. What is measured:

- the closed happy path (the protected function returns at once): a bare
  call; the floor, a hand-written decorator that forwards ``*args,
  **kwargs`` into a ``try``/``except``; ours (``@breaker``, and
  ``breaker.call(f)``, measured through one more closure frame than the
  rest); pybreaker; circuitbreaker; redress (its breaker is an allow/record
  API, so it is wrapped by hand the way its docs show);
- a rejected call when open, against calling a function that raises a fresh
  ``RuntimeError`` and catching it (the least any rejection can cost);
- 4 threads making 200,000 calls each through one shared breaker, against
  one thread making the same 800,000 calls.

Goals (issue 3): closed <= 2.5 x floor; rejection <= 2 x bare
raise/catch; 4 threads <= 1.3 x one thread.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import timeit
from collections.abc import Callable

from resilient.breaker import CircuitBreaker, CircuitOpenError

QUICK = "--quick" in sys.argv
NUMBER = 50_000 if QUICK else 200_000
REPEAT = 5 if QUICK else 9
THREADS = 4
PER_THREAD = 50_000 if QUICK else 200_000


def protected() -> int:
    return 1


def floor_decorator(func: Callable[..., int]) -> Callable[..., int]:
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            return func(*args, **kwargs)
        except Exception:
            raise

    return wrapper


def ns_per_call(func: Callable[[], object]) -> float:
    """The best of REPEAT runs of NUMBER calls, in nanoseconds per call."""
    timer = timeit.Timer(func)
    return min(timer.repeat(repeat=REPEAT, number=NUMBER)) / NUMBER * 1e9


def closed_candidates() -> dict[str, Callable[[], object]]:
    floor = floor_decorator(protected)
    breaker = CircuitBreaker(name="bench")
    decorated = CircuitBreaker(name="bench-decorator")(protected)

    def ours_call() -> object:
        return breaker.call(protected)

    candidates: dict[str, Callable[[], object]] = {
        "bare call": protected,
        "floor: try/except wrapper": floor,
        "resilient breaker.call(f) (+1 frame)": ours_call,
        "resilient @breaker": decorated,
    }
    try:
        import pybreaker
    except ImportError:
        print("note: pybreaker is not installed; skipped")
    else:
        candidates["pybreaker @breaker"] = pybreaker.CircuitBreaker()(protected)
    try:
        import circuitbreaker
    except ImportError:
        print("note: circuitbreaker is not installed; skipped")
    else:
        candidates["circuitbreaker @circuit"] = circuitbreaker.circuit(protected)
    redress_guarded = _redress_wrapper()
    if redress_guarded is not None:
        candidates["redress allow/record"] = redress_guarded
    return candidates


def _redress_wrapper() -> Callable[[], object] | None:
    try:
        from redress import CircuitBreaker as RedressBreaker
        from redress import CircuitOpenError as RedressOpen
        from redress.errors import ErrorClass as RedressClass
    except ImportError:
        print("note: redress (with a CircuitBreaker) is not installed; skipped")
        return None
    breaker = RedressBreaker()

    def guarded(*args: object, **kwargs: object) -> int:
        if not breaker.allow().allowed:
            raise RedressOpen("open")
        try:
            result = protected(*args, **kwargs)
        except Exception:
            breaker.record_failure(RedressClass.TRANSIENT)
            raise
        breaker.record_success()
        return result

    return guarded


def raise_open(*args: object, **kwargs: object) -> int:
    raise RuntimeError("circuit 'bench' is open")


def rejection_candidates() -> dict[str, Callable[[], object]]:
    breaker = CircuitBreaker(name="bench-open", recovery_timeout=3600.0)
    breaker.trip()
    decorated = breaker(protected)

    # try/except, not contextlib.suppress: its cost would swamp what is measured.
    def bare() -> None:
        try:  # noqa: SIM105
            raise_open()
        except RuntimeError:
            pass

    def ours_call() -> None:
        try:  # noqa: SIM105
            breaker.call(protected)
        except CircuitOpenError:
            pass

    def ours_decorated() -> None:
        try:  # noqa: SIM105
            decorated()
        except CircuitOpenError:
            pass

    candidates: dict[str, Callable[[], object]] = {
        "bare raise/catch": bare,
        "resilient breaker.call(f), open": ours_call,
        "resilient @breaker, open": ours_decorated,
    }
    try:
        import pybreaker
    except ImportError:
        pass
    else:
        peer = pybreaker.CircuitBreaker(reset_timeout=3600)
        peer.open()
        peer_decorated = peer(protected)

        def pybreaker_open() -> None:
            try:  # noqa: SIM105
                peer_decorated()
            except pybreaker.CircuitBreakerError:
                pass

        candidates["pybreaker, open"] = pybreaker_open
    return candidates


def threaded_seconds(func: Callable[[], object], threads: int, per_thread: int) -> float:
    """Wall time for *threads* threads to make *per_thread* calls each."""
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            func()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start


def threads_vs_one(func: Callable[[], object]) -> tuple[float, float]:
    """Best of three: (4 threads, one thread making the same number of calls)."""
    many = min(threaded_seconds(func, THREADS, PER_THREAD) for _ in range(3))
    one = min(threaded_seconds(func, 1, THREADS * PER_THREAD) for _ in range(3))
    return many, one


def main() -> None:
    # Opening the benchmark's breakers logs "circuit opened"; keep the output clean.
    logging.getLogger("resilient.breaker").addHandler(logging.NullHandler())
    print(f"python {sys.version.split()[0]}; {NUMBER:,} calls x best of {REPEAT}")
    print("\nclosed circuit, the protected function returns at once")
    results = {name: ns_per_call(func) for name, func in closed_candidates().items()}
    floor = results["floor: try/except wrapper"]
    for name, ns in results.items():
        print(f"  {name:<38} {ns:8.1f} ns/call  {ns / floor:5.2f} x floor")

    print("\nopen circuit, the call is rejected")
    rejected = {name: ns_per_call(func) for name, func in rejection_candidates().items()}
    bare = rejected["bare raise/catch"]
    for name, ns in rejected.items():
        print(f"  {name:<38} {ns:8.1f} ns/call  {ns / bare:5.2f} x bare raise/catch")

    print(f"\n{THREADS} threads x {PER_THREAD:,} calls vs 1 thread x {THREADS * PER_THREAD:,}")
    threaded: dict[str, Callable[[], object]] = {
        "floor: try/except wrapper": floor_decorator(protected),
        "resilient @breaker": CircuitBreaker(name="bench-threads")(protected),
    }
    try:
        import pybreaker
    except ImportError:
        pass
    else:
        threaded["pybreaker @breaker"] = pybreaker.CircuitBreaker()(protected)
    for name, func in threaded.items():
        many, one = threads_vs_one(func)
        print(f"  {name:<38} {many:6.3f} s vs {one:6.3f} s  {many / one:5.2f} x one thread")


if __name__ == "__main__":
    main()
