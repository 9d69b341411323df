"""Shared test settings."""

from __future__ import annotations

import atexit
import fnmatch
import gc
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import freezegun
import pytest
from hypothesis import settings

# CI runs on two shared cores: no per-example deadline, a fixed example budget.
settings.register_profile("default", deadline=None, print_blob=True)
settings.register_profile("ci", deadline=None, print_blob=True, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


# freezegun, at each start, reads every attribute of every loaded module to patch the
# references to the time functions it finds. The SDKs' modules are thousands of
# pydantic types that never read the time, and reading the attributes of `openai`
# imports its lazily loaded resources: the first freeze_time of a worker took a
# second of CPU (seconds on a busy machine), each later one a tenth. Left alone,
# those modules keep the real time functions; no test runs them under freezegun.
freezegun.configure(extend_ignore_list=["anthropic", "openai"])


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``slow`` marker (see ``pytest_collection_modifyitems``)."""
    config.addinivalue_line(
        "markers",
        "slow: takes seconds (interpreters started, real-time waits); under xdist it starts "
        "first, so that the run does not wait for it at the end",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` first; otherwise the collection's order (a stable sort)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# Tests that share a module fixture starting interpreters (a run of an example, a
# pool of spawned processes), by node-id prefix: under xdist the tests of a prefix
# run on one worker, so that the fixture runs once, not once per worker.
SHARED_FIXTURE_PREFIXES = (
    "tests/test_examples.py::test_agent_loop_",
    "tests/test_examples.py::test_load_",
)

# The tests that call the real openai and anthropic SDKs in the test process (their
# parameter names the SDK): one unit, so that one worker imports the SDKs, not every
# worker (two seconds of CPU each on Python 3.10).
SDK_TESTS = re.compile(
    r"^tests/test_(classify|httpx)\.py::(test_anthropic_\w+$|\w+\[(openai|anthropic)[-\]])"
)

# The tests that run scripts in the ``sdk_zygote`` (the LLM page's blocks, the LLM
# agent example, the imports of the type-checked files), by node-id prefix: one unit,
# so that one worker starts that zygote.
SDK_ZYGOTE_PREFIXES = (
    "tests/test_docs.py::test_code_block_runs[docs/llm.md#",
    "tests/test_examples.py::test_llm_agent_",
    "tests/test_typing_files.py::test_every_typing_file_imports",
)

# The modules whose tests share the ``spawn_pool`` (four spawned processes): one unit,
# so that one worker spawns them (half a second of CPU each, importing a test module).
SPAWN_POOL_PREFIXES = ("tests/test_redis_pacing_processes.py::", "tests/test_redis_processes.py::")


# The tests that import aiohttp (test_classify imports it at its first use; 0.3 s of CPU
# on Python 3.10): in the unit of the SDK tests, whose openai imports it anyway.
AIOHTTP_TESTS = re.compile(r"^tests/test_classify\.py::test_\w*aiohttp")


def _work_unit(nodeid: str) -> str:
    """The xdist unit of a test: its shared fixture's prefix, one of the SDK units, or itself."""
    if SDK_TESTS.match(nodeid) or AIOHTTP_TESTS.match(nodeid):
        return "the LLM SDKs in process"
    if nodeid.startswith(SDK_ZYGOTE_PREFIXES):
        return "the LLM SDKs in a zygote"
    if nodeid.startswith(SPAWN_POOL_PREFIXES):
        return "the pool of spawned processes"
    return next((p for p in SHARED_FIXTURE_PREFIXES if nodeid.startswith(p)), nodeid)


# The first units (the shared ones, then the slow tests) and the last ones are handed out
# one at a time; the others BATCH at a time, one message for several tests.
SINGLY_FIRST, SINGLY_LAST, BATCH = 64, 64, 4


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: harmless when xdist is off
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n``'s distribution (``load``): test by test, in order, slow tests first.

    xdist's own ``load`` hands each worker runs of consecutive tests, so a slow
    test ran wherever its module fell in the collection, often last, while the
    other workers waited for it. Here each test is a unit of its own, handed
    out in the order of ``pytest_collection_modifyitems`` (slow ones first),
    except the tests of a ``SHARED_FIXTURE_PREFIXES`` prefix and the SDK
    tests (``SDK_TESTS``): one unit each, handed out before the others (the
    longest first). The first and the last ``SINGLY_FIRST``/``SINGLY_LAST``
    units go out one at a time, the others ``BATCH`` at a time: a message per
    test cost the controller and the workers 0.5 ms of CPU each, 1.5 s for the
    suite. Any other ``--dist`` is xdist's.
    """
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SlowFirstScheduling(LoadScopeScheduling):
        """Strictly private: xdist's ``loadscope`` with a unit per test, or per shared fixture.

        xdist keeps every unit it handed a worker and counts the worker's pending
        tests over all of them after each test (quadratic: a second of the
        controller's CPU for this suite); here a unit is forgotten once done, and
        a test's index in the worker's collection is looked up, not searched for.
        """

        _handed = 0  # units handed out so far

        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

        def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
            nodeid = self.registered_collections[node][item_index]
            units = self.assigned_work[node]
            scope = self._split_scope(nodeid)
            units[scope][nodeid] = True
            if all(units[scope].values()):
                del units[scope]
            self._reschedule(node)

        def _assign_work_unit(self, node: Any) -> None:
            indexes = self.__dict__.setdefault("_indexes", {})
            if node not in indexes:
                indexes[node] = {n: i for i, n in enumerate(self.registered_collections[node])}
            singly = self._handed < SINGLY_FIRST or len(self.workqueue) < SINGLY_LAST
            batch = 1 if singly else BATCH
            tests: list[int] = []
            for _ in range(batch):
                if not self.workqueue:
                    break
                scope, work_unit = self.workqueue.popitem(last=False)
                self.assigned_work.setdefault(node, {})[scope] = work_unit
                tests += [indexes[node][n] for n, done in work_unit.items() if not done]
                self._handed += 1
            node.send_runtest_some(tests)

    return SlowFirstScheduling(config, log)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: harmless when xdist is off
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: a few more workers than CPUs.

    A third of the suite's time is spent waiting, not computing: on loopback
    servers that trickle bodies, on socket timeouts, on the examples and the
    Redis processes run as subprocesses. Extra workers fill those waits; on two
    cores, four workers take the suite from about 60 s to about 45 s.
    """
    cpus = os.cpu_count() or 1
    return min(2 * cpus, cpus + 4)


# -- the fixed costs of each test process ------------------------------------------------
#
# pytest rewrites the asserts of every test module (and of the `resilient` package: its
# distribution registers a pytest plugin) as it imports them, and caches the rewritten
# bytecode in __pycache__ (*-pytest-*.pyc). On a fresh clone that cache is empty, and
# every xdist worker, all started at once, rewrote all of them: 3 s of CPU per worker on
# Python 3.10. Instead, each worker first rewrites its share into the cache, and its
# collection then finds the others' shares there.


def _rewritten_files(config: pytest.Config, hook: Any, state: Any) -> list[Path]:
    """The test modules under the run's arguments, and the package files pytest rewrites."""
    patterns = config.getini("python_files")
    skipped = [*config.getini("norecursedirs"), "__pycache__"]
    roots = [Path(config.invocation_params.dir, arg.split("::")[0]) for arg in config.args]
    files = {root for root in roots if root.is_file() and root.suffix == ".py"}
    for root in (root for root in roots if root.is_dir()):
        for directory, subdirectories, names in os.walk(root):
            subdirectories[:] = [
                d for d in subdirectories if not any(fnmatch.fnmatch(d, s) for s in skipped)
            ]
            files.update(
                Path(directory, name)
                for name in names
                if any(fnmatch.fnmatch(name, pattern) for pattern in patterns)
            )
    spec = importlib.util.find_spec("resilient")
    if spec is not None and hook._is_marked_for_rewrite("resilient", state):
        for location in spec.submodule_search_locations or ():
            files.update(Path(location).rglob("*.py"))
    return [Path(os.path.abspath(file)) for file in files]


def _rewrite_share_into_cache(config: pytest.Config, worker: int, workers: int) -> None:
    """Rewrite this worker's share (by size) of the files that lack a cached rewrite.

    Uses pytest's private rewriting functions, as its import hook does: any
    change there ends the warm-up (each worker then rewrites what it imports,
    as without it), never the run.
    """
    try:
        from _pytest.assertion import rewrite

        hook = config.pluginmanager.rewrite_hook
        state = config.stash[rewrite.assertstate_key]
        files = sorted(_rewritten_files(config, hook, state), key=lambda f: (-f.stat().st_size, f))
        shares: list[list[Path]] = [[] for _ in range(workers)]
        sizes = [0] * workers
        for file in files:  # the largest first, each to the least loaded share
            share = sizes.index(min(sizes))
            shares[share].append(file)
            sizes[share] += file.stat().st_size
        for file in shares[worker]:
            cache = rewrite.get_cache_dir(file)
            pyc = cache / (file.name[:-3] + rewrite.PYC_TAIL)
            if rewrite.try_makedirs(cache) and rewrite._read_pyc(file, pyc) is None:
                source_key, code = rewrite._rewrite_test(file, config)
                rewrite._write_pyc(state, code, source_key, pyc)
    except Exception:  # a pytest without these internals: no warm-up
        return


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    """Under xdist, with a writable cache: each worker fills its share of the rewrite cache."""
    worker = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    config = session.config
    rewriting = config.getoption("assertmode") == "rewrite" and not sys.dont_write_bytecode
    if worker and workers > 1 and rewriting:
        _rewrite_share_into_cache(config, int(worker[1]) % workers, workers)


# At exit, the interpreter frees each module while the cyclic garbage collector runs over
# every object left: a second or two of CPU for a worker that imported the SDKs (300,000
# objects), all the workers at once at the very end of the run, which waited for them.
# Frozen objects are left to the process's end; nothing runs after the session.
atexit.register(gc.freeze)

# The same collector, during the run: each full collection (every few hundred young ones,
# and each gc.collect() of a test that checks what is released) went over every object of
# the test process, 200,000 after the collection of the tests, 400,000 once the SDKs were
# imported: 2 to 3 s of CPU per worker on Python 3.10. Between tests, what is alive after
# a collection (the modules, the collected tests, whatever a test imported) is frozen, so
# that later collections look only at what the tests make. A test's garbage is collected
# before the freeze, never frozen; at the end of the session everything is unfrozen again,
# for pytest's last collection (which reports objects finalised with an error).

_modules_at_freeze = 0


def _collect_and_freeze() -> None:
    global _modules_at_freeze
    gc.collect()
    gc.freeze()
    _modules_at_freeze = len(sys.modules)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what the collection of the tests left alive."""
    _collect_and_freeze()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After a test that imported many modules (an SDK, a client library), freeze them too."""
    if len(sys.modules) > _modules_at_freeze + 100:
        _collect_and_freeze()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Unfreeze, so that the last collections see every object again."""
    gc.unfreeze()


@pytest.fixture(scope="session")
def sdk_zygote() -> Iterator[Any]:
    """A zygote (tests/_zygote.py) with the openai and anthropic SDKs loaded, for the
    scripts that use them: each runs as in a fresh interpreter, without importing them."""
    from _zygote import SDK_PRELOAD, Zygote

    runner = Zygote(SDK_PRELOAD)
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def spawn_pool() -> Iterator[Any]:
    """Four fresh processes, for the tests of processes sharing one Redis (their
    ``WORKERS``); started once, on the worker of their unit.

    Forked from a fork server, a fresh interpreter that imported the two modules
    of those tests once, where the platform has ``forkserver``; else spawned, each
    importing them again (a third of a second of CPU each on a fresh clone).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if "forkserver" in multiprocessing.get_all_start_methods():
        context: Any = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["test_redis_processes", "test_redis_pacing_processes"])
    else:
        context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=context) as workers:
        yield workers


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port where connecting is refused at once, for the whole test.

    The socket stays bound (never listening) until the test ends: connecting
    is refused, and no other test of the run (another xdist worker's server
    included) can take the port meanwhile, as it could once a probe closed.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


# -- a real Redis server for the Redis tests ------------------------------------------
#
# Each pytest process (each xdist worker) starts its own redis-server on a free
# loopback port, persistence off, and stops it at the end of the session; tests
# that stop and restart a server get one of their own (``redis_server_factory``).
# Without the binary the Redis tests skip, except under CI (CI=true), where they
# fail: .ci/run installs redis-server, and a CI run that skipped them would prove
# nothing.


def _require_redis() -> str:
    """The path of redis-server, once the redis package imports; else skip (or fail in CI)."""
    missing = []
    binary = shutil.which("redis-server")
    if binary is None:
        missing.append("the redis-server binary is not on PATH (apt-get install redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        missing.append("the redis package is not installed (pip install -e '.[test]')")
    if missing:
        reason = "Redis tests need a real server: " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(f"{reason}. Under CI they must run, not skip.", pytrace=False)
        pytest.skip(reason)
    assert binary is not None
    return binary


# Seconds a Redis client in a test waits for an answer when the test is not about timeouts.
PATIENT_SOCKET_TIMEOUT = 5.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A redis-server process on a loopback port, persistence off; stop and start it at will."""

    def __init__(self, binary: str, directory: Path, *options: str) -> None:
        self.binary = binary
        self.directory = directory
        self.options = options  # more redis-server arguments
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def patient_url(self) -> str:
        """``url`` with 5 s socket timeouts in its query, which override a client's own.

        For scripts that build their clients from a URL with the library's
        defaults (the docs' blocks, the examples): on a busy machine Redis may
        answer later than the default timeout, and they would log an outage that did not happen.
        """
        timeout = PATIENT_SOCKET_TIMEOUT
        return f"{self.url}?socket_timeout={timeout}&socket_connect_timeout={timeout}"

    def start(self) -> None:
        """Start the server (on the same port as before, if it ran before) and wait for PING."""
        for _attempt in range(5):
            port = self.port or _free_port()
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.directory),
                    "--daemonize", "no",
                    "--loglevel", "warning",
                    *self.options,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if self._wait_ready(port):
                self.port = port
                return
            self.stop()  # the port was taken meanwhile: try another
            if self.port:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start (last port tried: {port})")

    def _wait_ready(self, port: int) -> bool:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        """Kill the server (SIGKILL: no goodbye to the clients) and wait for it to exit."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a server frozen by ``pause``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def client(self, **options: Any) -> Any:
        """A client with no retries, as ``RedisStore.from_url`` builds, and a 5 s socket timeout.

        Not the library's 1 s default: on a busy machine an answer can take
        longer than that, and a test whose claim is not about timeouts must not
        see an outage that did not happen. Tests of timeouts give their own.
        """
        from resilient.redis import connect

        options.setdefault("socket_timeout", PATIENT_SOCKET_TIMEOUT)
        return connect(self.url, **options)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for this test process (each xdist worker has its own)."""
    binary = _require_redis()
    with tempfile.TemporaryDirectory(prefix="resilient-redis-") as directory:
        server = RedisServer(binary, Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[Any]:
    """A client of the session's server, whose database is emptied before each test."""
    client = redis_server.client()
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Start servers of the test's own, to stop and restart; all stopped afterwards."""
    binary = _require_redis()
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer(binary, tmp_path)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.process is not None:
            server.resume()  # a paused server must run to die cleanly
        server.stop()


@pytest.fixture
def redis_cluster_node(tmp_path: Path) -> Iterator[RedisServer]:
    """A one-node Redis Cluster (every slot on one server) of the test's own."""
    binary = _require_redis()
    server = RedisServer(
        binary, tmp_path, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"
    )
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as conn:
            conn.sendall(b"CLUSTER ADDSLOTSRANGE 0 16383\r\n")
            assert conn.recv(64).startswith(b"+OK")
            deadline = time.monotonic() + 10.0
            while True:
                conn.sendall(b"CLUSTER INFO\r\n")
                if b"cluster_state:ok" in conn.recv(4096):
                    break
                assert time.monotonic() < deadline, "the one-node cluster did not become ok"
                time.sleep(0.01)
        yield server
    finally:
        server.stop()


# -- the two kinds of Redis store ---------------------------------------------------------


@pytest.fixture(params=["sync", "async"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """``"sync"`` (RedisStore) or ``"async"`` (AsyncRedisStore): a test of both runs twice."""
    return str(request.param)


@pytest.fixture
def make_store(
    store_kind: str, redis_server: RedisServer, redis_client: Any
) -> Iterator[Callable[..., Any]]:
    """``make_store(**settings)``: a store of ``store_kind`` on the session's server."""
    from _redis_stores import Stores

    with Stores(store_kind, redis_server.url, redis_client) as stores:
        yield stores
