"""``requests`` integration: bounded timeouts, safe retries and a hard cap on each call.

Needs the extra ``resilient-kit[requests]``. ``import resilient`` never imports
this module (nor ``requests``): import ``resilient.http`` where you use it.

``create_resilient_session()`` returns a ``ResilientSession`` (a
``requests.Session``) with a ``ResilientAdapter`` mounted, which together:

- give every request the default ``(connect, read)`` timeout unless the call
  passes its own;
- retry connection failures only (refused, unreachable, DNS, connect
  timeout: the server cannot have seen the request), never a failure after
  the request may have been sent, whatever the method;
- mark the error of a non-idempotent request (POST, PATCH) that may have
  reached the server ``ErrorClass.FATAL``, so ``@retry`` does not resend it;
- cut a call off at ``total_timeout`` with ``TotalTimeout``: the whole call,
  from ``session.send`` (which ``get``, ``post``, ``request``... go through)
  through every redirect to the end of the final body, also when the body is
  streamed (``stream=True``) and read later; a cut connection never goes back
  to the pool;
- shrink every timeout, and the cap, to ``resilient.time_remaining()`` when
  it runs under ``@retry(deadline=...)``.

The cap is enforced by a watchdog thread (one per adapter, started on first
use, gone when idle or when the adapter is closed) that shuts down the socket
of a call still running at its deadline: a blocked ``recv`` returns at once,
whatever the server does.

What this relies on in urllib3 and requests, each use checked by the tests on
the oldest and the newest releases supported (``.ci/run``): a pool manager's
``pool_classes_by_scheme`` and a pool's ``ConnectionCls`` (to build
connections that report to the watch of the request using them, from
``connect`` and ``putrequest``); the response methods ``read``, ``read1``,
``read_chunked``, ``close`` and ``release_conn``, through which urllib3 reads a
body and hands its connection back to the pool (each response's class is
swapped for a subclass that wraps them); the raw ``_connect`` and ``_read``
of a caller's urllib3 ``Timeout``; and requests sending each redirect through
``Session.send(..., allow_redirects=False)``.
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
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit, urlunsplit

try:
    import requests
except ImportError as _missing:  # pragma: no cover - tested in a subprocess
    raise ImportError(
        "resilient.http needs the requests package, which is not installed: "
        'pip install "resilient-kit[requests]"'
    ) from _missing
import urllib3.poolmanager
from requests.adapters import DEFAULT_POOLBLOCK, DEFAULT_POOLSIZE, HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse
from urllib3.util.retry import Retry
from urllib3.util.timeout import Timeout

from resilient._classify import ErrorClass, retry_after
from resilient._compat import add_note, duration
from resilient._redact import REDACTED, Redactor
from resilient._retry import DEFAULT_MAX_RETRY_AFTER, time_remaining

if TYPE_CHECKING:
    from resilient.pacing import RateLimiter

if TYPE_CHECKING:
    from resilient._types import Seconds

__all__ = [
    "IDEMPOTENT_METHODS",
    "ResilientAdapter",
    "ResilientSession",
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
    """A call ran past its total time cap: ``total_timeout``, or the retry deadline.

    A ``requests.Timeout``, so ``except requests.Timeout`` catches it and
    ``resilient.classify`` calls it ``ErrorClass.TIMEOUT``. The message names
    the URL (credentials left out), the cap and what was running when it
    passed. The connection it ran on has been closed, not returned to the
    pool. ``__cause__``, when set, is the error the cut produced inside
    ``requests`` or ``urllib3``.
    """


class ResilientAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` with default timeouts, connect-only retries and a total cap.

    Mount it on a ``ResilientSession`` (what ``create_resilient_session``
    does), for ``http://`` and ``https://``. Every argument is validated
    here, once.

    Args:
        connect_timeout: seconds to establish a connection, when the call
            passes no ``timeout=``.
        read_timeout: seconds to wait for each read from the server (the
            headers, then each chunk of the body), when the call passes no
            ``timeout=``.
        total_timeout: seconds one call may take, from ``session.send`` to
            the end of the final body: connection retries, every redirect,
            and with ``stream=True`` the body read later, until it is
            consumed or the response closed. A call's ``timeout=`` does not
            lengthen it. Mounted on a plain ``requests.Session``, each
            redirect gets its own cap (the session cannot tell the adapter
            that a request is a redirect).
        connect_retries: how many times a connection that could not be
            established is tried again, at once (spacing retries out is the
            job of ``@retry``).
        pool_connections: as for ``HTTPAdapter``.
        pool_maxsize: as for ``HTTPAdapter``.
        pool_block: as for ``HTTPAdapter``.
        limiter: a ``RateLimiter`` every request sent acquires first, within
            the time left under the call's cap (``RateLimitExceeded``, not
            sent, when its turn comes later); a 429 or 503 with
            ``Retry-After`` pauses it for that long (at most 120 s), so
            every caller sharing it waits.
    """

    __attrs__ = [  # noqa: RUF012 - requests' pickling protocol
        *HTTPAdapter.__attrs__,
        "connect_timeout",
        "read_timeout",
        "total_timeout",
        "connect_retries",
        "limiter",
    ]

    def __init__(
        self,
        connect_timeout: Seconds = 5.0,
        read_timeout: Seconds = 30.0,
        total_timeout: Seconds = 60.0,
        connect_retries: int = 2,
        *,
        pool_connections: int = DEFAULT_POOLSIZE,
        pool_maxsize: int = DEFAULT_POOLSIZE,
        pool_block: bool = DEFAULT_POOLBLOCK,
        limiter: RateLimiter | None = None,
    ) -> None:
        if limiter is not None and not (
            callable(getattr(limiter, "acquire", None))
            and callable(getattr(limiter, "pause", None))
        ):
            raise TypeError(f"limiter must be a RateLimiter or None, got {limiter!r}")
        self.limiter = limiter
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
        of a urllib3 ``Timeout`` caps the call like ``total_timeout`` (the
        shorter applies). The body is read here (unless *stream*) so that
        the cap covers it, and a body cut by the cap is never returned. With
        *stream*, the cap keeps watching the body until it is consumed or
        the response closed: a read after the cap raises ``TotalTimeout``.

        When the method is not in ``IDEMPOTENT_METHODS`` and a connection to
        the server was open, the exception raised gets ``error_class =
        ErrorClass.FATAL`` and a note: the request may have been acted on.

        Raises:
            TotalTimeout: the cap (or the retry deadline) passed first.
        """
        connect, read, total = self._timeouts(timeout)
        now = time.monotonic()
        call = _CALL.get()
        if call is None:  # not sent by a ResilientSession: this exchange is the whole call
            call = _Call(now)
        call.exchange(request)
        call.tighten(call.started + self.total_timeout, f"total_timeout={self.total_timeout:g} s")
        if total is not None:
            call.tighten(call.started + total, f"the call's timeout total={total:g} s")
        remaining = time_remaining()
        if remaining is not None:
            call.tighten(now + remaining, "the retry deadline")
        if call.deadline - now <= 0:
            raise TotalTimeout(
                call.describe(request, "not sent: {why} has passed"), request=request
            )
        if self.limiter is not None:  # the turn comes first: its wait counts against the cap
            self.limiter.acquire(timeout=max(call.deadline - now, 0.0))
        watch = self._watchdog.watch(call, request)
        token = _IN_FLIGHT.set(watch)
        try:
            try:
                response = super().send(
                    request,
                    stream=stream,
                    # A urllib3 Timeout is accepted at run time, not by the annotation.
                    timeout=_DeadlineTimeout(connect, read, watch),  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
                    verify=verify,
                    cert=cert,
                    proxies=dict(proxies) if proxies is not None else None,
                )
            except Exception as exc:
                if watch.overdue():
                    raise watch.timeout("before the response") from exc
                raise
            _watch_body(response, watch)
            if self.limiter is not None and response.status_code in (429, 503):
                _pause(self.limiter, response)
            if not stream:
                try:
                    response.content  # noqa: B018 - reads and caches the body, under the watch
                except Exception:
                    response.close()
                    raise
                watch.cancel()  # done already, when urllib3 handed the connection back
            return response
        except Exception as exc:
            watch.cancel()
            if watch.connected and (request.method or "").upper() not in IDEMPOTENT_METHODS:
                _mark_not_retryable(exc, request)
            raise
        finally:
            _IN_FLIGHT.reset(token)

    def _timeouts(self, timeout: Any) -> tuple[float, float, float | None]:
        """The ``(connect, read, total)`` seconds for one call, defaults filled in.

        ``total`` is the ``total`` of a urllib3 ``Timeout`` the call passed (a
        cap on the call, like ``total_timeout``), else ``None``.
        """
        if timeout is None:
            return self.connect_timeout, self.read_timeout, None
        if isinstance(timeout, Timeout):
            # The raw values: its properties mix in ``total`` and need a started
            # timer. urllib3 validated them; its "default" marker is an object
            # that is not a number (not the same one in 1.26 and 2.x).
            return (
                _number_or(timeout._connect, self.connect_timeout),  # pyright: ignore[reportPrivateUsage]
                _number_or(timeout._read, self.read_timeout),  # pyright: ignore[reportPrivateUsage]
                _number_or(timeout.total, None),
            )
        if isinstance(timeout, tuple):
            pair = cast("tuple[object, ...]", timeout)
            if len(pair) != 2:
                raise ValueError(
                    f"timeout must be a number or a (connect, read) tuple, got {timeout!r}"
                )
            connect, read = pair
        else:
            connect = read = timeout
        return (
            _call_seconds("connect timeout", connect, self.connect_timeout),
            _call_seconds("read timeout", read, self.read_timeout),
            None,
        )

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = DEFAULT_POOLBLOCK, **pool_kwargs: Any
    ) -> None:
        """Create the pool manager, with pools whose connections report to the watchdog."""
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS
        self._watchdog = _Watchdog()  # here, as unpickling calls this and not __init__

    def close(self) -> None:
        """As ``HTTPAdapter``, closing every idle pooled connection now; stop the watchdog.

        ``session.close()`` calls it. urllib3 2 only drops its pools here and
        closes their connections when a pool is garbage collected, which a
        reference cycle (the traceback of a cut call, kept by the caller)
        can put off indefinitely: the sockets are closed here instead. The
        adapter stays usable: a later request starts a new watchdog.
        """
        managers = [getattr(self, "poolmanager", None), *self.proxy_manager.values()]
        for manager in managers:
            if manager is not None:
                for key in manager.pools.keys():  # noqa: SIM118 - a copy, taken under its lock
                    pool = manager.pools.get(key)
                    if pool is not None:
                        pool.close()
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


class ResilientSession(requests.Session):
    """A ``requests.Session`` whose calls are capped as a whole, redirects included.

    Each call of ``send`` (which ``get``, ``post``, ``request``... go
    through) opens one call: the ``ResilientAdapter`` that sends it, and
    every redirect ``requests`` follows from it, share one deadline, counted
    from here. A plain ``requests.Session`` would give each redirect a cap of
    its own.

    Args:
        adapter: mounted on ``http://`` and ``https://``; a default
            ``ResilientAdapter()`` when ``None``.

    Raises:
        TypeError: *adapter* is not a ``ResilientAdapter``.
    """

    def __init__(self, adapter: ResilientAdapter | None = None) -> None:
        if adapter is None:
            adapter = ResilientAdapter()
        elif not isinstance(adapter, ResilientAdapter):
            raise TypeError(f"adapter must be a ResilientAdapter, got {adapter!r}")
        super().__init__()
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """As ``requests.Session.send``, as one call under the adapter's cap.

        ``requests`` sends each redirect through here with
        ``allow_redirects=False`` while the call that received it is still
        running: such a request joins that call; any other starts a new one.
        """
        if kwargs.get("allow_redirects", True) is False and _CALL.get() is not None:
            return super().send(request, **kwargs)
        token = _CALL.set(_Call(time.monotonic()))
        try:
            return super().send(request, **kwargs)
        finally:
            _CALL.reset(token)


def create_resilient_session(
    connect_timeout: Seconds = 5.0,
    read_timeout: Seconds = 30.0,
    total_timeout: Seconds = 60.0,
    connect_retries: int = 2,
    *,
    limiter: RateLimiter | None = None,
) -> ResilientSession:
    """A ``ResilientSession`` with a ``ResilientAdapter`` on ``http://`` and ``https://``.

    Args:
        connect_timeout: default seconds to establish a connection.
        read_timeout: default seconds to wait for each read.
        total_timeout: hard cap on one call: redirects and body included,
            also a body streamed with ``stream=True``.
        connect_retries: immediate retries of a connection that failed to
            open; nothing else is retried.
        limiter: a ``RateLimiter`` every request acquires before it is sent
            (within the time left of the call); a 429 or 503 with
            ``Retry-After`` pauses it, for every caller sharing it.

    Returns:
        A new session (a ``requests.Session``); close it (or use it in a
        ``with`` block) when done.

    Raises:
        TypeError, ValueError: a parameter is not a positive finite number
            (``connect_retries``: not an int >= 0).
    """
    return ResilientSession(
        ResilientAdapter(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            total_timeout=total_timeout,
            connect_retries=connect_retries,
            limiter=limiter,
        )
    )


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


def _pause(limiter: RateLimiter, response: requests.Response) -> None:
    """A 429 or 503 asked every caller to wait: pause the shared limiter that long."""
    asked = retry_after(response)
    if asked is not None and asked > 0:
        limiter.pause(min(asked, DEFAULT_MAX_RETRY_AFTER))


def _positive_seconds(name: str, value: object) -> float:
    return duration(name, value, allow_zero=False)


def _call_seconds(name: str, value: object, default: float) -> float:
    if value is None:
        return default
    return _positive_seconds(name, value)


def _number_or(value: object, default: Any) -> Any:
    """*value* as float seconds when it is a number, else *default* (None or a marker)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return default


_REDACTOR = Redactor()


def _public_url(url: str | None) -> str:
    """*url* fit for a message: no user or password, secret query values redacted."""
    if not url:
        return "(no URL)"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(
        f"{key}={REDACTED}" if sep and _REDACTOR.is_secret(unquote(key)) else f"{key}{sep}{value}"
        for key, sep, value in (field.partition("=") for field in parts.query.split("&"))
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query if parts.query else "", ""))


def _mark_not_retryable(exc: BaseException, request: requests.PreparedRequest) -> None:
    """Make *exc* FATAL for ``classify``: its non-idempotent request may have been acted on."""
    if getattr(exc, "error_class", None) is ErrorClass.FATAL:
        return
    try:
        exc.error_class = ErrorClass.FATAL  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
    except AttributeError:  # an exception type that takes no attributes
        return
    add_note(
        exc,
        f"resilient.http: not retryable (ErrorClass.FATAL): {request.method} is not "
        "idempotent and the request may have reached the server; resending it could "
        "repeat its effect",
    )


# The call that the session is sending in this context: redirects join it.
_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "resilient_http_call", default=None
)

# The watch of the exchange this thread is sending, for the connections it uses.
_IN_FLIGHT: contextvars.ContextVar[_Watch | None] = contextvars.ContextVar(
    "resilient_http_watch", default=None
)


class _Call:
    """Strictly private. One call of ``session.send``: when it started, its deadline and why.

    Each exchange (the request, then each redirect) may only bring the
    deadline closer: caps are counted from ``started``, the retry deadline
    is absolute.
    """

    __slots__ = ("deadline", "exchanges", "first_url", "started", "why")

    def __init__(self, started: float) -> None:
        self.started = started
        self.deadline = math.inf
        self.why = ""
        self.exchanges = 0
        self.first_url: str | None = None

    def exchange(self, request: requests.PreparedRequest) -> None:
        self.exchanges += 1
        if self.first_url is None:
            self.first_url = request.url

    def tighten(self, deadline: float, why: str) -> None:
        if deadline < self.deadline:
            self.deadline, self.why = deadline, why

    def describe(self, request: requests.PreparedRequest, what: str) -> str:
        """``"<METHOD> <url> <what>"``, *what* formatted with the cap, and the redirects."""
        text = f"{request.method} {_public_url(request.url)} " + what.format(
            why=self.why, cap=self.deadline - self.started
        )
        if self.exchanges > 1:
            redirects = self.exchanges - 1
            text += (
                f" ({redirects} redirect{'s' if redirects > 1 else ''} "
                f"after {_public_url(self.first_url)})"
            )
        return text


class _Watch:
    """Strictly private. One exchange's deadline and the connection to cut at it.

    ``fire`` (the watchdog) and ``attach``/``release``/``cancel`` (the
    request, its response) take the same lock, so a connection is cut only
    while this exchange holds it: ``release`` runs before urllib3 puts the
    connection back in the pool.
    """

    __slots__ = (
        "_conn",
        "_lock",
        "call",
        "connected",
        "deadline",
        "done",
        "expired",
        "request",
    )

    def __init__(self, call: _Call, request: requests.PreparedRequest) -> None:
        self.call = call
        self.request = request
        self.deadline = call.deadline
        self.done = False  # finished: body consumed, response closed, or the send failed
        self.expired = False  # the deadline came first; sticky
        # A connection to the server was open for this request: it may have been sent.
        self.connected = False
        self._conn: Any = None
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def pending(self) -> bool:
        """Whether the watchdog still has to fire this watch."""
        return not (self.done or self.expired)

    def overdue(self) -> bool:
        """Whether the cap has passed: the watchdog fired, or the deadline is due.

        A socket timeout clamped to the deadline runs out a hair before the
        watchdog fires, and urllib3 may have handed the connection back on
        the way out: mark the watch expired all the same, so that every
        later read fails too, and cut the connection if it still has one.
        """
        if not self.expired and self.deadline - time.monotonic() > _CLOCK_SLACK:
            return False  # the common case, on every read: no lock
        with self._lock:
            if not self.expired:
                self.expired = True
                if self._conn is not None:
                    _cut(self._conn)
            return self.expired

    def attach(self, conn: Any) -> None:
        with self._lock:
            if self.done:
                return
            self._conn = conn
            if self.expired:
                _cut(conn)

    def release(self) -> bool:
        """The exchange is over with its connection; return whether it was cut (never reuse it)."""
        with self._lock:
            self.done = True
            self._conn = None
            return self.expired

    def cancel(self) -> None:
        with self._lock:
            self.done = True
            self._conn = None

    def fire(self) -> None:
        with self._lock:
            if self.done or self.expired:
                return
            self.expired = True
            if self._conn is not None:
                _cut(self._conn)

    def timeout(self, when: str) -> TotalTimeout:
        """The ``TotalTimeout`` for this watch, cut *when* (``"reading the body"``...)."""
        error = TotalTimeout(
            self.call.describe(self.request, "cut off after {cap:.3g} s ({why}) " + when),
            request=self.request,
        )
        if when == _READING_BODY and (self.request.method or "").upper() not in IDEMPOTENT_METHODS:
            _mark_not_retryable(error, self.request)  # a response came: it reached the server
        return error


_READING_BODY = "reading the body"


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
    Finished watches stay in the heap until they are due or a compaction
    drops them; ``pending()`` counts the others.
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

    def watch(self, call: _Call, request: requests.PreparedRequest) -> _Watch:
        watch = _Watch(call, request)
        with self._cond:
            self._stopping = False
            if len(self._heap) >= self._compact_at:
                self._heap = [entry for entry in self._heap if entry[2].pending()]
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

    def pending(self) -> int:
        """How many watches still have to be fired or finished."""
        with self._cond:
            return sum(1 for entry in self._heap if entry[2].pending())

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
                while self._heap and (not self._heap[0][2].pending() or self._heap[0][0] <= now):
                    watch = heapq.heappop(self._heap)[2]
                    if watch.pending():
                        due.append(watch)
                if self._stopping and not due:
                    self._heap = [entry for entry in self._heap if entry[2].pending()]
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


# What the mixins below are mixed into, for the type checkers; at run time
# they derive from object, as mixins do.
if TYPE_CHECKING:
    _ConnectionBase = HTTPConnection
    _ResponseBase = HTTPResponse
else:
    _ConnectionBase = _ResponseBase = object


class _WatchedConnectionMixin(_ConnectionBase):
    """Strictly private. A connection that reports to the watch of the request using it.

    It also remembers its socket after http.client lets go of it.
    """

    last_socket: Any = None

    def connect(self) -> None:
        super().connect()
        self.last_socket = getattr(self, "sock", None)
        watch = _IN_FLIGHT.get()
        if watch is not None:
            watch.connected = True
            watch.attach(self)

    def putrequest(self, *args: Any, **kwargs: Any) -> None:
        watch = _IN_FLIGHT.get()
        if watch is not None:
            if getattr(self, "sock", None) is not None:  # a kept-alive connection, reused
                watch.connected = True
            watch.attach(self)
        super().putrequest(*args, **kwargs)


class _WatchedHTTPConnection(_WatchedConnectionMixin, HTTPConnection):
    """Strictly private."""


class _WatchedHTTPSConnection(_WatchedConnectionMixin, HTTPSConnection):
    """Strictly private."""


class _WatchedPoolMixin:
    """Strictly private. urllib3 names the pool class in its messages: keep the usual name."""

    def __str__(self) -> str:
        return super().__str__().replace("_Watched", "", 1)


class _WatchedHTTPConnectionPool(_WatchedPoolMixin, HTTPConnectionPool):
    """Strictly private."""

    # pyright finds urllib3's own HTTPConnection at odds with urllib3's
    # BaseHTTPConnection protocol (a Final against a list), and so ours.
    ConnectionCls = _WatchedHTTPConnection  # pyright: ignore[reportAssignmentType]


class _WatchedHTTPSConnectionPool(_WatchedPoolMixin, HTTPSConnectionPool):
    """Strictly private."""

    ConnectionCls = _WatchedHTTPSConnection  # pyright: ignore[reportAssignmentType]


_WATCHED_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": _WatchedHTTPConnectionPool,
    "https": _WatchedHTTPSConnectionPool,
}


class _WatchedResponseMixin(_ResponseBase):
    """Strictly private. Body reads under the watch; it lets go before the pool gets the connection.

    Mixed into the class of each urllib3 response the adapter returns (see
    ``_watch_body``), so urllib3's own calls (``stream`` calling ``read``,
    the end of the body calling ``release_conn``) go through it too.
    """

    _resilient_watch: _Watch

    def read(self, *args: Any, **kwargs: Any) -> Any:
        return _guarded(self, super().read, args, kwargs)

    def read_chunked(self, *args: Any, **kwargs: Any) -> Generator[bytes, None, None]:
        chunks = _guarded(self, super().read_chunked, args, kwargs)
        while True:
            chunk = _guarded(self, next, (chunks, None), {})
            if chunk is None:
                return
            yield chunk

    def release_conn(self) -> None:
        conn = self.connection
        if self._resilient_watch.release() and conn is not None:
            conn.close()  # cut: a fresh socket for whoever takes it from the pool
        super().release_conn()

    def close(self) -> None:
        self._resilient_watch.cancel()
        super().close()


class _WatchedRead1Mixin(_ResponseBase):
    """Strictly private. ``read1`` under the watch, for the urllib3 versions that have it."""

    _resilient_watch: _Watch

    def read1(self, *args: Any, **kwargs: Any) -> Any:
        return _guarded(self, super().read1, args, kwargs)


def _guarded(
    response: Any, read: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``read(*args, **kwargs)`` on a watched body: ``TotalTimeout`` once the cap has cut it.

    A cut can end a body quietly (one delimited by the connection's close, or
    a short read urllib3 1.26 does not check), so after a cut even a read
    that returned raises: a body cut short is never handed over as whole.
    """
    watch: _Watch = response._resilient_watch
    if watch.expired or (not watch.done and watch.overdue()):
        raise _cut_body(response)
    try:
        data = read(*args, **kwargs)
    except Exception as exc:
        if watch.overdue():  # also when urllib3 handed the connection back on the way out
            raise _cut_body(response) from exc
        raise
    if watch.expired:
        raise _cut_body(response)
    return data


def _cut_body(response: Any) -> TotalTimeout:
    """The error for a read of a body the cap cut; its connection closed and handed back.

    A read that fails in urllib3 does both; a read that finds the cap passed
    before it starts (or a cut after a read returned) never fails in urllib3,
    and its socket, shut down but open, was left to the garbage collector.
    """
    watch: _Watch = response._resilient_watch
    response.close()  # the body's file and the connection: the socket is closed once both are
    response.release_conn()  # back to the pool, closed (the watch expired: _WatchedResponseMixin)
    return watch.timeout(_READING_BODY)


_WATCHED_RESPONSE_CLASSES: dict[type, type] = {}


def _watch_body(response: requests.Response, watch: _Watch) -> None:
    """Put the body of *response* under *watch*, until it is consumed or closed."""
    raw: Any = response.raw
    base = type(cast(object, raw))
    watched = _WATCHED_RESPONSE_CLASSES.get(base)
    if watched is None:
        mixins: tuple[type, ...] = (_WatchedResponseMixin,)
        if hasattr(base, "read1"):
            mixins += (_WatchedRead1Mixin,)
        watched = type(
            f"Watched{base.__name__}",
            (*mixins, base),
            {
                "__doc__": f"Strictly private. A {base.__name__} whose body reads are capped.",
                "__module__": __name__,
            },
        )
        _WATCHED_RESPONSE_CLASSES[base] = watched
    raw._resilient_watch = watch
    raw.__class__ = watched
    if raw.connection is None:  # nothing to watch: no body, or already handed back
        watch.cancel()
