"""The two Redis breaker stores, for tests that prove the same rules of both.

``RedisStore`` (sync, on ``redis.Redis``) and ``AsyncRedisStore`` (on
``redis.asyncio.Redis``) are one core with two drivers; the tests of the
store's rules (fleet counts, half-open permits, fallbacks, outages, skew,
expiry...) run once per kind. Those tests drive breakers from plain
functions and threads, so the async store runs on one event loop of its own
(``SharedLoop``), and ``Blocking`` hands each of its operations to that loop and
waits for the answer: what runs is ``AsyncRedisStore``'s own code, awaited on a
``redis.asyncio`` client. The breaker's async forms over it are tested
directly (tests/test_redis_async.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from resilient.redis import AsyncRedisRetryBudget, AsyncRedisStore, RedisStore, connect_async

T = TypeVar("T")

KINDS = ("sync", "async")


class SharedLoop:
    """An event loop that the threads waiting on it run in turn.

    A caller runs the loop itself until its own answer is there (its coroutine
    a task of the loop, ``run_until_complete``), unless another thread already
    runs it: then it hands its coroutine over and waits, and takes over
    (``run_forever``) if its answer is still due when that thread's is done.
    Every coroutine runs on this one loop, interleaved with the others at
    their awaits, as on a loop thread of its own; what is saved is the switch
    to that thread and back on every operation (on 3.10, about a third of the
    CPU each operation costs), and the handoff itself when nobody else runs
    the loop (a fifth of the rest).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._turn = threading.Condition()
        self._running = False  # a thread is in run_forever

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run *coroutine* on the loop; wait for its result here (at most 30 s).

        A breaker built on this loop can outlive it (telemetry reads every live
        breaker): once the loop is closed, the coroutine is closed too, so it is
        never left unawaited for the garbage collector to warn about.
        """
        if _in_a_running_loop():
            # This thread runs a loop of its own, so cannot run this one: a thread does.
            with concurrent.futures.ThreadPoolExecutor(1) as helper:
                return helper.submit(self.run, coroutine).result()
        with self._turn:
            idle = not self._running
            self._running = True
        if idle:  # nobody runs the loop: this thread does, with no handoff at all
            try:
                return self._run_here(coroutine)
            finally:
                with self._turn:
                    self._running = False
                    self._turn.notify_all()
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        except RuntimeError:
            coroutine.close()
            raise
        future.add_done_callback(self._wake)
        deadline = time.monotonic() + 30
        while not future.done():
            with self._turn:
                while self._running and not future.done():
                    if not self._turn.wait(timeout=max(0.0, deadline - time.monotonic())):
                        raise TimeoutError("no answer from the event loop in 30 s")
                if future.done():
                    break
                self._running = True
            future.add_done_callback(lambda _: self.loop.stop())
            give_up = self.loop.call_later(max(0.0, deadline - time.monotonic()), self.loop.stop)
            try:
                self.loop.run_forever()
            finally:
                give_up.cancel()
                with self._turn:
                    self._running = False
                    self._turn.notify_all()
            if not future.done() and time.monotonic() >= deadline:
                raise TimeoutError("no answer from the event loop in 30 s")
        return future.result()

    def _run_here(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """``run`` on the thread that holds the turn: the coroutine as a task of the
        loop, run until it is done (the coroutines other threads hand over meanwhile too)."""
        try:
            task = self.loop.create_task(coroutine)
        except RuntimeError:  # the loop is closed
            coroutine.close()
            raise
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            task.cancel()

        give_up = self.loop.call_later(30, expire)
        try:
            return self.loop.run_until_complete(task)
        except asyncio.CancelledError:
            if not expired:
                raise
            raise TimeoutError("no answer from the event loop in 30 s") from None
        finally:
            give_up.cancel()

    def _wake(self, _future: object) -> None:
        with self._turn:
            self._turn.notify_all()

    def close(self) -> None:
        self.loop.close()


class Blocking:
    """An ``AsyncRedisStore`` driven from sync code: each operation awaited on the shared loop.

    ``snapshot`` asks Redis (``snapshot_async``), as ``RedisStore.snapshot``
    does. Every other attribute is the store's own; the ``*_async`` names are
    hidden, so a breaker uses this object through its sync operations.
    """

    def __init__(self, store: AsyncRedisStore, loop: SharedLoop) -> None:
        self.store = store
        self._loop = loop

    def acquire(self, *args: Any) -> Any:
        return self._loop.run(self.store.acquire_async(*args))

    def record_success(self, *args: Any) -> Any:
        return self._loop.run(self.store.record_success_async(*args))

    def record_failure(self, *args: Any) -> Any:
        return self._loop.run(self.store.record_failure_async(*args))

    def release(self, *args: Any) -> Any:
        return self._loop.run(self.store.release_async(*args))

    def force(self, *args: Any) -> Any:
        return self._loop.run(self.store.force_async(*args))

    def snapshot(self, *args: Any) -> Any:
        return self._loop.run(self.store.snapshot_async(*args))

    def __getattr__(self, name: str) -> Any:
        if name.endswith("_async"):
            raise AttributeError(name)
        return getattr(self.store, name)

    def __repr__(self) -> str:
        return f"Blocking({self.store!r})"


class BlockingBudget:
    """An ``AsyncRedisRetryBudget`` driven from sync code, as ``Blocking`` drives a store."""

    def __init__(self, budget: AsyncRedisRetryBudget, loop: SharedLoop) -> None:
        self.budget = budget
        self._loop = loop

    @property
    def tokens(self) -> float:
        return self._loop.run(self.budget.tokens_async())

    def record_failure(self) -> bool:
        return self._loop.run(self.budget.record_failure_async())

    def record_success(self) -> None:
        self._loop.run(self.budget.record_success_async())

    def __getattr__(self, name: str) -> Any:
        if name.endswith("_async"):
            raise AttributeError(name)
        return getattr(self.budget, name)


class Stores:
    """Builds stores of one kind on one server: ``stores(**settings)``; closes what it built."""

    def __init__(self, kind: str, url: str, client: Any = None) -> None:
        assert kind in KINDS
        self.kind = kind
        self.url = url
        self._client = client
        self._loop: SharedLoop | None = None
        self._async_clients: list[Any] = []

    def client_async(self, **options: Any) -> Any:
        """A new ``redis.asyncio`` client of the server, on the shared loop."""
        if self._loop is None:
            self._loop = SharedLoop()
        client = connect_async(self.url, **options)
        self._async_clients.append(client)
        return client

    def __call__(self, client: Any = None, **settings: Any) -> Any:
        """A store of this kind; *client*: a sync client to use (sync kind only)."""
        options = _client_options(settings)
        if self.kind == "sync":
            if client is None:
                own = self._client is None or options
                client = self.sync_client(**options) if own else self._client
            return RedisStore(client, **settings)
        assert client is None, "give the async kind its client through client_async()"
        store = AsyncRedisStore(self.client_async(**self._as_patient(options)), **settings)
        assert self._loop is not None
        return Blocking(store, self._loop)

    def budget(self, name: str, **settings: Any) -> Any:
        """A retry budget of this kind."""
        from resilient.redis import RedisRetryBudget

        options = _client_options(settings)
        if self.kind == "sync":
            own = self._client is None or options
            client = self.sync_client(**options) if own else self._client
            return RedisRetryBudget(client, name, **settings)
        budget = AsyncRedisRetryBudget(
            self.client_async(**self._as_patient(options)), name, **settings
        )
        assert self._loop is not None
        return BlockingBudget(budget, self._loop)

    def _as_patient(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options of a new async client: the test's own, else as patient as the sync kind's.

        Without options the sync kind uses the shared client (a 5 s socket
        timeout); an async client built with the library's 1 s default
        instead saw an outage that did not happen on a loaded machine (its
        store's WARNING, and the local fallback, in a test about something else).
        """
        if options or self._client is None:
            return options
        kwargs = self._client.connection_pool.connection_kwargs
        return {"socket_timeout": kwargs["socket_timeout"]}

    def sync_client(self, **options: Any) -> Any:
        from resilient.redis import connect

        client = connect(self.url, **options)
        self._sync_clients = [*getattr(self, "_sync_clients", []), client]
        return client

    def close(self) -> None:
        if self._loop is not None:
            for client in self._async_clients:
                self._loop.run(client.aclose())
            self._loop.close()
            self._loop = None
        for client in getattr(self, "_sync_clients", []):
            client.close()

    def __enter__(self) -> Stores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _in_a_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _client_options(settings: dict[str, Any]) -> dict[str, Any]:
    """Client options given among a store's settings (the tests' socket_timeout)."""
    return {key: settings.pop(key) for key in ("socket_timeout",) if key in settings}
