"""``requests`` integration: bounded timeouts, safe retries and a hard cap on each request.

Needs the extra ``resilient-kit[requests]``. ``import resilient`` never imports
this module (nor ``requests``): import ``resilient.http`` where you use it.

``create_resilient_session()`` returns a ``requests.Session`` whose adapter,
``ResilientAdapter``:

- gives every request the default ``(connect, read)`` timeout unless the call
  passes its own;
- retries connection failures only (refused, unreachable, DNS, connect
  timeout: the server cannot have seen the request), never a failure after
  the request may have been sent, whatever the method;
- marks the error of a non-idempotent request (POST, PATCH) that may have
  reached the server ``ErrorClass.FATAL``, so ``@retry`` does not resend it;
- cuts a request off at ``total_timeout``, body download included, with
  ``TotalTimeout``, and never returns the cut connection to the pool;
- shrinks every timeout, and the cap, to ``resilient.time_remaining()`` when
  it runs under ``@retry(deadline=...)``.

The cap is enforced by a watchdog thread (one per adapter, started on first
use, gone when idle or when the adapter is closed) that shuts down the socket
of a request still running at its deadline: a blocked ``recv`` returns at
once, whatever the server does.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import math
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests
import urllib3.poolmanager
from requests.adapters import DEFAULT_POOLBLOCK, DEFAULT_POOLSIZE, HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry
from urllib3.util.timeout import _DEFAULT_TIMEOUT, Timeout

from resilient._classify import ErrorClass
from resilient._compat import add_note
from resilient._retry import time_remaining

__all__ = [
    "IDEMPOTENT_METHODS",
    "ResilientAdapter",
    "TotalTimeout",
    "create_resilient_session",
    "get_json_or_none",
]

IDEMPOTENT_METHODS: frozenset[str] = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PUT", "TRACE"})
"""Methods that may be sent twice without a different effect (RFC 9110, 9.2.2).

``ResilientAdapter`` retries only before a request is sent, so this set is a
second line of defence: a subclass that allows read retries still never
resends a POST or a PATCH.
"""

_MIN_CONNECT_TIMEOUT = 0.001  # a zero socket timeout would mean non-blocking, not "no time"
_CLOCK_SLACK = 0.001  # a socket timeout clamped to the deadline ends within this of it


class TotalTimeout(requests.exceptions.Timeout):
    """A request ran past its total time cap: ``total_timeout``, or the retry deadline.

    A ``requests.Timeout``, so ``except requests.Timeout`` catches it and
    ``resilient.classify`` calls it ``ErrorClass.TIMEOUT``. The connection it
    ran on has been closed, not returned to the pool. ``__cause__`` is the
    error the cut produced inside ``requests``.
    """


class ResilientAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` with default timeouts, connect-only retries and a total cap.

    Mount it on a session for ``http://`` and ``https://`` (what
    ``create_resilient_session`` does). Every argument is validated here,
    once.

    Args:
        connect_timeout: seconds to establish a connection, when the call
            passes no ``timeout=``.
        read_timeout: seconds to wait for each read from the server (the
            headers, then each chunk of the body), when the call passes no
            ``timeout=``.
        total_timeout: seconds one request may take from start to end of
            the body, connection retries included. A call's ``timeout=``
            does not change it. With ``stream=True`` it covers the request
            until the headers have arrived; the body is then the caller's,
            each read still bounded by the read timeout.
        connect_retries: how many times a connection that could not be
            established is tried again, at once (spacing retries out is the
            job of ``@retry``).
        pool_connections: as for ``HTTPAdapter``.
        pool_maxsize: as for ``HTTPAdapter``.
        pool_block: as for ``HTTPAdapter``.
    """

    __attrs__ = [  # noqa: RUF012 - requests' pickling protocol
        *HTTPAdapter.__attrs__,
        "connect_timeout",
        "read_timeout",
        "total_timeout",
        "connect_retries",
    ]

    def __init__(
        self,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        total_timeout: float = 60.0,
        connect_retries: int = 2,
        *,
        pool_connections: int = DEFAULT_POOLSIZE,
        pool_maxsize: int = DEFAULT_POOLSIZE,
        pool_block: bool = DEFAULT_POOLBLOCK,
    ) -> None:
        self.connect_timeout = _positive_seconds("connect_timeout", connect_timeout)
        self.read_timeout = _positive_seconds("read_timeout", read_timeout)
        self.total_timeout = _positive_seconds("total_timeout", total_timeout)
        if isinstance(connect_retries, bool) or not isinstance(connect_retries, int):
            raise TypeError(f"connect_retries must be an int, got {connect_retries!r}")
        if connect_retries < 0:
            raise ValueError(f"connect_retries must be >= 0, got {connect_retries!r}")
        self.connect_retries = connect_retries
        super().__init__(
            pool_connections=pool_connections,
            pool_maxsize=pool_maxsize,
            max_retries=self.build_retry(connect_retries),
            pool_block=pool_block,
        )

    def build_retry(self, connect_retries: int) -> Retry:
        """The urllib3 ``Retry`` this adapter uses: connection failures only.

        ``connect`` counts failures to establish a connection, which urllib3
        retries for any method since nothing was sent. Read failures are
        re-raised at once (``read=False``: a read timeout stays a
        ``ReadTimeout``), statuses are returned as they are (retrying a 503
        with ``Retry-After`` is the job of ``@retry``), redirects are left to
        ``requests``, and any other error is raised. Override to change it.
        """
        return Retry(
            total=None,
            connect=connect_retries,
            read=False,
            redirect=False,
            status=0,
            other=0,
            allowed_methods=IDEMPOTENT_METHODS,
            status_forcelist=(),
            backoff_factor=0,
            raise_on_status=False,
            respect_retry_after_header=False,
        )

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send *request* under the default timeouts and the total cap.

        *timeout* as in ``requests`` (a number, a ``(connect, read)`` tuple
        or a urllib3 ``Timeout``) replaces the defaults; ``None``, alone or
        in the tuple, means the default, never "wait forever". The ``total``
        of a urllib3 ``Timeout`` caps the request like ``total_timeout`` (the
        shorter applies). The body is read here (unless *stream*) so that
        the cap covers it, and a body cut by the cap is never returned.

        When the method is not in ``IDEMPOTENT_METHODS`` and a connection to
        the server was open, the exception raised gets ``error_class =
        ErrorClass.FATAL`` and a note: the request may have been acted on.

        Raises:
            TotalTimeout: the cap (or the retry deadline) passed first.
        """
        connect, read, total = self._timeouts(timeout)
        budget, why = self.total_timeout, f"total_timeout={self.total_timeout:g} s"
        if total is not None and total < budget:
            budget, why = total, f"the call's timeout total={total:g} s"
        remaining = time_remaining()
        if remaining is not None and remaining < budget:
            budget, why = remaining, "the retry deadline"
            if budget <= 0:
                raise TotalTimeout(
                    f"{request.method} {request.url} not sent: the retry deadline has passed",
                    request=request,
                )
        watch = self._watchdog.watch(budget)
        token = _IN_FLIGHT.set(watch)
        try:
            try:
                response = super().send(
                    request,
                    stream=stream,
                    # A urllib3 Timeout is accepted at run time, not by the annotation.
                    timeout=_DeadlineTimeout(connect, read, watch),  # type: ignore[arg-type]
                    verify=verify,
                    cert=cert,
                    proxies=dict(proxies) if proxies is not None else None,
                )
            except Exception as exc:
                if watch.passed():
                    raise _total_timeout(request, budget, why, "before the response") from exc
                raise
            if not stream:
                self._read_body(response, watch, budget, why)
            return response
        except Exception as exc:
            if watch.connected and (request.method or "").upper() not in IDEMPOTENT_METHODS:
                _mark_not_retryable(exc, request)
            raise
        finally:
            watch.cancel()
            _IN_FLIGHT.reset(token)

    def _read_body(
        self, response: requests.Response, watch: _Watch, budget: float, why: str
    ) -> None:
        """Read the whole body now, under the watch; on the cut, discard the connection."""
        connection = getattr(response.raw, "connection", None)
        try:
            response.content  # noqa: B018 - reads and caches the body
        except Exception as exc:
            if not watch.passed():
                raise
            response.close()
            if connection is not None:
                connection.close()
            raise _total_timeout(response.request, budget, why, "reading the body") from exc
        if watch.passed():
            # The cut can look like the end of the body (one delimited by the
            # connection's close): what was read may be short, never return it.
            response.close()
            if connection is not None:
                connection.close()
            raise _total_timeout(response.request, budget, why, "reading the body")

    def _timeouts(self, timeout: Any) -> tuple[float, float, float | None]:
        """The ``(connect, read, total)`` seconds for one call, defaults filled in.

        ``total`` is the ``total`` of a urllib3 ``Timeout`` the call passed (a
        cap on the request, like ``total_timeout``), else ``None``.
        """
        total: float | None = None
        if timeout is None:
            return self.connect_timeout, self.read_timeout, None
        if isinstance(timeout, Timeout):
            # The raw values: its properties mix in ``total`` and need a started timer.
            connect, read = timeout._connect, timeout._read
            if timeout.total is not None and timeout.total is not _DEFAULT_TIMEOUT:
                total = _positive_seconds("total timeout", timeout.total)
        elif isinstance(timeout, tuple):
            if len(timeout) != 2:
                raise ValueError(
                    f"timeout must be a number or a (connect, read) tuple, got {timeout!r}"
                )
            connect, read = timeout
        else:
            connect = read = timeout
        return (
            _call_seconds("connect timeout", connect, self.connect_timeout),
            _call_seconds("read timeout", read, self.read_timeout),
            total,
        )

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = DEFAULT_POOLBLOCK, **pool_kwargs: Any
    ) -> None:
        """Create the pool manager, with pools that let the watchdog reach their sockets."""
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS
        self._watchdog = _Watchdog()  # here, as unpickling calls this and not __init__

    def close(self) -> None:
        """As ``HTTPAdapter``, and stop the watchdog thread once no request is in flight.

        ``session.close()`` calls it. The adapter stays usable: a later
        request starts a new watchdog.
        """
        super().close()
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None:
            watchdog.stop(join_timeout=1.0)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """As ``HTTPAdapter``; HTTP(S) proxies get watched pools (SOCKS keeps its own)."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if manager.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme:
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager

    def __repr__(self) -> str:
        return (
            f"ResilientAdapter(connect_timeout={self.connect_timeout!r}, "
            f"read_timeout={self.read_timeout!r}, total_timeout={self.total_timeout!r}, "
            f"connect_retries={self.connect_retries!r})"
        )


def create_resilient_session(
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    total_timeout: float = 60.0,
    connect_retries: int = 2,
) -> requests.Session:
    """A ``requests.Session`` with a ``ResilientAdapter`` on ``http://`` and ``https://``.

    Args:
        connect_timeout: default seconds to establish a connection.
        read_timeout: default seconds to wait for each read.
        total_timeout: hard cap on one request, body included.
        connect_retries: immediate retries of a connection that failed to
            open; nothing else is retried.

    Returns:
        A new session; close it (or use it in a ``with`` block) when done.

    Raises:
        TypeError, ValueError: a parameter is not a positive finite number
            (``connect_retries``: not an int >= 0).
    """
    adapter = ResilientAdapter(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        total_timeout=total_timeout,
        connect_retries=connect_retries,
    )
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def get_json_or_none(session: requests.Session, url: str, **kwargs: Any) -> Any:
    """GET *url* and return its parsed JSON body, or ``None`` when it is a 404.

    Any other status that is not 2xx raises ``requests.HTTPError`` with the
    response attached (``raise_for_status``), so ``resilient.classify`` sees
    the status and ``@retry`` the ``Retry-After``. Network errors and
    timeouts propagate as ``requests`` raises them.

    Args:
        session: any ``requests.Session``, typically ``create_resilient_session()``.
        url: the URL to get.
        **kwargs: passed to ``session.get`` (``params``, ``headers``, ``timeout``...).

    Returns:
        The decoded JSON, or ``None`` for a 404.

    Raises:
        requests.HTTPError: a status other than 2xx and 404.
        requests.JSONDecodeError: a 2xx whose body is not JSON.
    """
    response = session.get(url, **kwargs)
    if response.status_code == 404:
        response.close()
        return None
    response.raise_for_status()
    if not 200 <= response.status_code < 300:
        raise requests.HTTPError(
            f"{response.status_code} {response.reason} for url: {response.url} "
            "(expected a 2xx or a 404)",
            response=response,
        )
    return response.json()


# -- helpers ---------------------------------------------------------------


def _positive_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _call_seconds(name: str, value: object, default: float) -> float:
    if value is None or value is _DEFAULT_TIMEOUT:
        return default
    return _positive_seconds(name, value)


def _total_timeout(
    request: requests.PreparedRequest, budget: float, why: str, when: str
) -> TotalTimeout:
    return TotalTimeout(
        f"{request.method} {request.url} cut off after {budget:.3g} s ({why}) {when}",
        request=request,
    )


def _mark_not_retryable(exc: BaseException, request: requests.PreparedRequest) -> None:
    """Make *exc* FATAL for ``classify``: its non-idempotent request may have been acted on."""
    try:
        exc.error_class = ErrorClass.FATAL  # type: ignore[attr-defined]
    except AttributeError:  # an exception type that takes no attributes
        return
    add_note(
        exc,
        f"resilient.http: not retryable (ErrorClass.FATAL): {request.method} is not "
        "idempotent and the request may have reached the server; resending it could "
        "repeat its effect",
    )


# The watch of the request this thread is sending, so that a pool getting a
# connection back can detach it before anyone else may take it.
_IN_FLIGHT: contextvars.ContextVar[_Watch | None] = contextvars.ContextVar(
    "resilient_http_watch", default=None
)


class _Watch:
    """Strictly private. One request's deadline and the connection to cut at it.

    ``fire`` (the watchdog) and ``attach``/``detach``/``cancel`` (the request)
    take the same lock, so a connection is cut only while this request holds it.
    """

    __slots__ = ("_conn", "_lock", "connected", "deadline", "done", "expired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.done = False
        self.expired = False
        # A connection to the server was open for this request: it may have been sent.
        self.connected = False
        self._conn: Any = None
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def passed(self) -> bool:
        """Whether the deadline has passed: fired, or a timeout clamped to it just ran out."""
        return self.expired or self.remaining() <= _CLOCK_SLACK

    def attach(self, conn: Any) -> None:
        with self._lock:
            if self.done:
                return
            self._conn = conn
            if self.expired:
                _cut(conn)

    def detach(self, conn: Any) -> bool:
        """Forget *conn*; return whether it was cut (then it must not be reused)."""
        with self._lock:
            if self._conn is not conn:
                return False
            self._conn = None
            return self.expired

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            if self._conn is not None:
                _cut(self._conn)

    def cancel(self) -> None:
        with self._lock:
            self.done = True
            self._conn = None


def _cut(conn: Any) -> None:
    """Shut the socket of *conn* down both ways: a blocked ``recv`` returns at once."""
    # http.client drops conn.sock once the headers say the server will close:
    # the response still reads from it, so the connection remembers it.
    sock = getattr(conn, "sock", None) or getattr(conn, "last_socket", None)
    if sock is not None and not isinstance(sock, socket.socket):
        sock = getattr(sock, "socket", None)  # urllib3's TLS-in-TLS transport
    if isinstance(sock, socket.socket):
        # The plain socket's method: an SSLSocket's would drop its state under a reader.
        with contextlib.suppress(OSError):  # already closed or reset
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """Strictly private. One daemon thread that fires watches at their deadlines.

    Started by the first watch, it exits after ``IDLE_EXIT`` seconds with
    nothing to watch, or as soon as nothing is left to watch after ``stop``.
    Cancelled watches stay in the heap until they are due or a compaction
    drops them.
    """

    __slots__ = ("_compact_at", "_cond", "_heap", "_seq", "_stopping", "_thread")

    IDLE_EXIT = 30.0

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Watch]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._compact_at = 64
        self._stopping = False

    def watch(self, seconds: float) -> _Watch:
        watch = _Watch(time.monotonic() + seconds)
        with self._cond:
            self._stopping = False
            if len(self._heap) >= self._compact_at:
                self._heap = [entry for entry in self._heap if not entry[2].done]
                heapq.heapify(self._heap)
                self._compact_at = max(64, 2 * len(self._heap))
            heapq.heappush(self._heap, (watch.deadline, next(self._seq), watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="resilient-http-watchdog", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is watch:  # earlier than what the thread waits for
                self._cond.notify()
        return watch

    def stop(self, join_timeout: float) -> None:
        """Make the thread exit as soon as no watch is pending; wait up to *join_timeout* s."""
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(join_timeout)

    def _run(self) -> None:
        while True:
            due: list[_Watch] = []
            with self._cond:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].done or self._heap[0][0] <= now):
                    watch = heapq.heappop(self._heap)[2]
                    if not watch.done:
                        due.append(watch)
                if self._stopping and not due:
                    self._heap = [entry for entry in self._heap if not entry[2].done]
                    heapq.heapify(self._heap)
                    if not self._heap:
                        self._thread = None
                        return
                if not due:
                    if not self._heap:
                        if not self._cond.wait(self.IDLE_EXIT) and not self._heap:
                            self._thread = None
                            return
                    else:
                        self._cond.wait(self._heap[0][0] - now)
            for watch in due:
                watch.fire()


class _DeadlineTimeout(Timeout):
    """Strictly private. A urllib3 ``Timeout`` whose values shrink to the watch's remaining time.

    urllib3 reads ``connect_timeout`` before each connection attempt and
    ``read_timeout`` before waiting for the headers, so a retried connection
    or a late start never waits past the deadline.
    """

    def __init__(self, connect: float, read: float, watch: _Watch) -> None:
        super().__init__(connect=connect, read=read)
        self.connect_seconds = connect
        self.read_seconds = read
        self.watch = watch

    def clone(self) -> _DeadlineTimeout:
        return _DeadlineTimeout(self.connect_seconds, self.read_seconds, self.watch)

    @property
    def connect_timeout(self) -> float:
        return max(min(self.connect_seconds, self.watch.remaining()), _MIN_CONNECT_TIMEOUT)

    @property
    def read_timeout(self) -> float:
        return max(min(self.read_seconds, self.watch.remaining()), 0.0)  # 0: urllib3 times out


class _WatchedPoolMixin:
    """Strictly private. Hands each connection to the watch of the request using it."""

    def __str__(self) -> str:  # urllib3 names the pool class in its error messages
        return super().__str__().replace("_Watched", "", 1)

    def _make_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        timeout = kwargs.get("timeout")
        if isinstance(timeout, _DeadlineTimeout):
            timeout.watch.attach(conn)
            if getattr(conn, "sock", None) is not None:  # a reused, open connection
                timeout.watch.connected = True
        return super()._make_request(conn, *args, **kwargs)  # type: ignore[misc]

    def _put_conn(self, conn: Any) -> None:
        watch = _IN_FLIGHT.get()
        if conn is not None and watch is not None and watch.detach(conn):
            conn.close()  # cut at the deadline: a fresh socket next time
        super()._put_conn(conn)  # type: ignore[misc]


class _SocketMemoMixin:
    """Strictly private. A connection that remembers its socket after http.client lets go."""

    last_socket: Any = None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.last_socket = getattr(self, "sock", None)
        watch = _IN_FLIGHT.get()
        if watch is not None:
            watch.connected = True


class _WatchedHTTPConnection(_SocketMemoMixin, HTTPConnection):
    """Strictly private."""


class _WatchedHTTPSConnection(_SocketMemoMixin, HTTPSConnection):
    """Strictly private."""


class _WatchedHTTPConnectionPool(_WatchedPoolMixin, HTTPConnectionPool):
    """Strictly private."""

    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(_WatchedPoolMixin, HTTPSConnectionPool):
    """Strictly private."""

    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": _WatchedHTTPConnectionPool,
    "https": _WatchedHTTPSConnectionPool,
}
