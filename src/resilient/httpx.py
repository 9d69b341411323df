"""Transports for ``httpx`` and ``httpx2`` clients: this library's retry loop under any client.

Needs the extra ``resilient-kit[httpx]`` and one of the two clients: ``httpx``
(>= 0.27) or ``httpx2`` (>= 2, the client the openai >= 3 and anthropic >= 2
SDKs are built on). ``import resilient`` never imports this module.

``ResilientTransport`` (sync) and ``AsyncResilientTransport`` wrap a transport
of either library and serve either library's ``Client``. Given to an LLM SDK
with the SDK's own retries off::

    client = openai.OpenAI(
        http_client=httpx2.Client(transport=ResilientTransport()), max_retries=0
    )

every call of the SDK follows this library's rules, logs and telemetry
instead of the SDK's own loop:

- Always retried, whatever the method: failures before the request was sent
  (connect errors and timeouts, pool timeouts) and answers that say it was
  not processed (429, 503, 529, or any answer with ``x-should-retry: true``).
- Retried only when the request is idempotent (GET, HEAD, OPTIONS, PUT,
  DELETE, TRACE), carries an ``Idempotency-Key`` header, or the transport was
  built with ``idempotent=True``: the other retryable statuses (500, 502,
  504, 408...) and the errors after sending (read and write errors and
  timeouts, a server that hung up).
- Never retried: FATAL answers (400, 401, 403, 404, 422...), an answer with
  ``x-should-retry: false``, a request whose body is a one-shot stream once
  it may have been sent. Between attempts the failed response is read (at
  most ``DRAIN_LIMIT`` bytes) and closed; when retries run out the last
  response is returned as it came, so ``raise_for_status`` or the SDK raises
  its own typed error.

The decisions live once, in ``_Call``; the two transports only send, wait and
drain, each in its own way.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from resilient import _events
from resilient._classify import ErrorClass, Rejection, classify, retry_after
from resilient._clock import DEFAULTS, check_clock
from resilient._compat import add_note, duration, seconds
from resilient._retry import (
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RETRYABLE,
    check_max_retry_after,
    server_wait,
)
from resilient.backoff import Backoff


def _optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


_httpx2: Any = _optional("httpx2")
_httpx: Any = _optional("httpx")
if _httpx is None and _httpx2 is None:
    raise ImportError(
        "resilient.httpx needs httpx (>= 0.27) or httpx2 (>= 2): "
        "pip install 'resilient-kit[httpx]' httpx2 (or httpx)"
    )


if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx
    import httpx2

    from resilient._clock import Clock
    from resilient._types import Budget, JitterSpec, Seconds
    from resilient.breaker import CircuitBreaker
    from resilient.pacing import ConcurrencyLimit, RateLimiter

    class _SyncBase(httpx2.BaseTransport, httpx.BaseTransport):  # type: ignore[misc]  # pyright: ignore[reportIncompatibleMethodOverride]
        """What a client of either library accepts as a transport."""

    class _AsyncBase(httpx2.AsyncBaseTransport, httpx.AsyncBaseTransport):  # type: ignore[misc]  # pyright: ignore[reportIncompatibleMethodOverride]
        """What an async client of either library accepts as a transport."""

    class _SyncStream(httpx2.SyncByteStream, httpx.SyncByteStream):
        """A response body stream of either library."""

    class _AsyncStream(httpx2.AsyncByteStream, httpx.AsyncByteStream):
        """An async response body stream of either library."""

else:
    _LIBRARIES = tuple(m for m in (_httpx2, _httpx) if m is not None)
    _SyncBase = type("_SyncBase", tuple(m.BaseTransport for m in _LIBRARIES), {})
    _AsyncBase = type("_AsyncBase", tuple(m.AsyncBaseTransport for m in _LIBRARIES), {})
    _SyncStream = type("_SyncStream", tuple(m.SyncByteStream for m in _LIBRARIES), {})
    _AsyncStream = type("_AsyncStream", tuple(m.AsyncByteStream for m in _LIBRARIES), {})

__all__ = [
    "DRAIN_LIMIT",
    "IDEMPOTENT_METHODS",
    "NOT_PROCESSED_STATUSES",
    "AsyncResilientTransport",
    "ResilientTransport",
]

IDEMPOTENT_METHODS: frozenset[str] = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PUT", "TRACE"})
"""Methods that may be sent twice without a different effect (RFC 9110, 9.2.2)."""

NOT_PROCESSED_STATUSES: frozenset[int] = frozenset({429, 503, 529})
"""Answers that say the request was not acted on: retried whatever the method.

429 (rate limited), 503 (unavailable) and 529 (Anthropic's "overloaded").
"""

DRAIN_LIMIT = 65536
"""Bytes of a failed response read before it is closed (to reuse its connection)."""

logger = logging.getLogger("resilient.retry")

_WAIT_PREFIX = "the server asked to wait"


class ResilientTransport(_SyncBase):
    """An httpx/httpx2 transport that retries, waits and counts as ``@retry`` does.

    Give it to a ``Client`` of either library (``httpx.Client(transport=...)``,
    ``httpx2.Client(transport=...)``), or through one to an SDK built on them
    (with the SDK's own retries off: ``max_retries=0``). Every setting is
    validated here, once.

    Args:
        transport: the transport that sends each attempt; default the
            ``HTTPTransport()`` of the library of the client using this one
            (made on its first request).
        max_retries: retries after the first attempt (``0``: one attempt).
        base_delay: nominal seconds before the first retry, doubled each time.
        max_delay: cap on the computed backoff of one wait (not on a
            server's ``Retry-After``).
        max_retry_after: the longest ``Retry-After`` / ``retry-after-ms``
            honoured, in seconds; an answer asking for longer is returned at
            once.
        jitter: as for ``@retry``: ``True``, ``False`` or a strategy.
        total_timeout: seconds for the whole call: every attempt, every wait
            and the final response's body (read by the client later). Each
            attempt's timeouts shrink to the time left; a wait that would
            end past it is not started (the last answer is returned, the last
            error raised); a body still arriving when it passes raises the
            library's ``ReadTimeout``. ``None``: no cap.
        idempotent: treat every request as idempotent (an API whose POSTs
            have no side effect, such as LLM completions): its 500s and read
            errors are retried too.
        breaker: a ``CircuitBreaker`` every attempt goes through: errors and
            responses whose status classifies as a counted failure count; an
            open circuit raises ``CircuitOpenError`` from the client's call.
            A failure after which the circuit would still be open at the end
            of the wait ends the call at once, no wait: its response is
            returned (its error raised) as when retries run out.
        budget: a ``RetryBudget`` (or its Redis twin) each retry spends from;
            no retry when it refuses.
        limiter: a ``RateLimiter`` every attempt acquires first, within the
            time left under *total_timeout*: a turn that comes later ends the
            call with ``RateLimitExceeded`` (noted when attempts were made).
            A 429 or 503 with ``Retry-After`` pauses it for that long (at
            most *max_retry_after*), for every caller sharing it.
        concurrency: a ``ConcurrencyLimit`` every attempt holds a slot of,
            after the limiter's turn, from sending until its response is
            read and closed (the final one: until the client closes it; keep
            ``stream=True`` responses in a ``with``). No slot within its
            ``max_wait`` ends the call with ``ConcurrencyLimitExceeded``. Its
            outcomes (429, 503, ``Retry-After``, timeouts) feed an adaptive
            limit.
        classifier: ``(exc) -> ErrorClass`` for errors and for failing
            responses (given as the library's ``HTTPStatusError``).
        clock: where time is read and waited; default the process clock.

    Raises:
        TypeError, ValueError: a bad setting, naming the parameter and value.
    """

    def __init__(
        self,
        transport: httpx2.BaseTransport | httpx.BaseTransport | None = None,
        *,
        max_retries: int = 3,
        base_delay: Seconds = 0.5,
        max_delay: Seconds = 30.0,
        max_retry_after: Seconds = DEFAULT_MAX_RETRY_AFTER,
        jitter: JitterSpec = True,
        total_timeout: Seconds | None = None,
        idempotent: bool = False,
        breaker: CircuitBreaker | None = None,
        budget: Budget | None = None,
        limiter: RateLimiter | None = None,
        concurrency: ConcurrencyLimit | None = None,
        classifier: Callable[..., ErrorClass] = classify,
        clock: Clock | None = None,
    ) -> None:
        if transport is not None and not callable(getattr(transport, "handle_request", None)):
            raise TypeError(
                "transport must be an httpx or httpx2 transport (with handle_request()), "
                f"got {transport!r}"
            )
        self._transport = transport
        self._default: dict[str, Any] = {}
        self._plan = _Plan(
            max_retries=max_retries,
            base_delay=base_delay,
            max_delay=max_delay,
            max_retry_after=max_retry_after,
            jitter=jitter,
            total_timeout=total_timeout,
            idempotent=idempotent,
            breaker=breaker,
            budget=budget,
            limiter=limiter,
            concurrency=concurrency,
            classifier=classifier,
            clock=clock,
        )

    def handle_request(self, request: Any) -> Any:
        """Send *request*, retrying as the rules say; return the final response.

        Raises:
            CircuitOpenError: the breaker is open; nothing was sent.
            Exception: the last error of the wrapped transport, unchanged
                (with a note when it was retried).
        """
        plan = self._plan
        send = self._sender(request)
        if not plan.direct:
            return self._retry(_Call(plan, request), send, request)
        # The first attempt as plainly as it gets: the call's state is built on failure.
        start = (DEFAULTS.clock if plan.clock is None else plan.clock).monotonic()
        try:
            response = send(request)
        except Exception as exc:
            call = _Call(plan, request, start)
            delay = call.after_error(exc)
            if delay is None:
                raise
        else:
            if response.status_code < 400:
                if plan.budget is not None:
                    plan.budget.record_success()
                return response
            call = _Call(plan, request, start)
            delay = call.after_response(response)
            if delay is None:
                return response
            _drain(response)
        if delay > 0:
            call.clock.sleep(delay)
        return self._retry(call, send, request)

    def _retry(self, call: _Call, send: Callable[[Any], Any], request: Any) -> Any:
        """The attempts after the first (all of them under a cap, a breaker or pacing)."""
        plan = self._plan
        while True:
            lease = None
            if plan.limiter is not None or plan.concurrency is not None:
                lease = call.pace()
            call.start_attempt()
            try:
                response = call.through_breaker(send, request)
            except Exception as exc:
                call.release(lease, exc=exc)
                delay = call.after_error(exc)
                if delay is None:
                    raise
            except BaseException as exc:
                call.release(lease, exc=exc)
                raise
            else:
                if plan.limiter is not None:
                    call.pause(response)
                delay = call.after_response(response)
                if delay is None:
                    return call.finish(response, lease=lease)
                _drain(response)
                call.release(lease, response=response)
            if delay > 0:
                call.clock.sleep(delay)

    def _sender(self, request: Any) -> Callable[[Any], Any]:
        transport = self._transport
        if transport is None:
            module = _library_of(request)
            transport = self._default.get(module.__name__)
            if transport is None:
                transport = self._default.setdefault(module.__name__, module.HTTPTransport())
        return transport.handle_request

    def close(self) -> None:
        """Close the wrapped transport (and the default ones this transport made)."""
        if self._transport is not None:
            self._transport.close()
        for made in self._default.values():
            made.close()

    def __repr__(self) -> str:
        return f"ResilientTransport({self._plan.describe(self._transport)})"


class AsyncResilientTransport(_AsyncBase):
    """``ResilientTransport``'s ``async`` twin, for the ``AsyncClient`` of httpx and httpx2.

    Same parameters and rules (see ``ResilientTransport``); *transport* is an
    async transport (default the ``AsyncHTTPTransport()`` of the client's
    library), waits use ``await clock.asleep(...)``, attempts go through
    ``breaker.call_async``, and ``total_timeout`` also bounds each read of the
    final body with ``asyncio`` timeouts.
    """

    def __init__(
        self,
        transport: httpx2.AsyncBaseTransport | httpx.AsyncBaseTransport | None = None,
        *,
        max_retries: int = 3,
        base_delay: Seconds = 0.5,
        max_delay: Seconds = 30.0,
        max_retry_after: Seconds = DEFAULT_MAX_RETRY_AFTER,
        jitter: JitterSpec = True,
        total_timeout: Seconds | None = None,
        idempotent: bool = False,
        breaker: CircuitBreaker | None = None,
        budget: Budget | None = None,
        limiter: RateLimiter | None = None,
        concurrency: ConcurrencyLimit | None = None,
        classifier: Callable[..., ErrorClass] = classify,
        clock: Clock | None = None,
    ) -> None:
        if transport is not None and not callable(getattr(transport, "handle_async_request", None)):
            raise TypeError(
                "transport must be an httpx or httpx2 async transport (with "
                f"handle_async_request()), got {transport!r}"
            )
        self._transport = transport
        self._default: dict[str, Any] = {}
        self._plan = _Plan(
            max_retries=max_retries,
            base_delay=base_delay,
            max_delay=max_delay,
            max_retry_after=max_retry_after,
            jitter=jitter,
            total_timeout=total_timeout,
            idempotent=idempotent,
            breaker=breaker,
            budget=budget,
            limiter=limiter,
            concurrency=concurrency,
            classifier=classifier,
            clock=clock,
        )

    async def handle_async_request(self, request: Any) -> Any:
        """Send *request*, retrying as the rules say; return the final response."""
        plan = self._plan
        send = self._sender(request)
        if not plan.direct:
            return await self._retry(_Call(plan, request), send, request)
        start = (DEFAULTS.clock if plan.clock is None else plan.clock).monotonic()
        try:
            response = await send(request)
        except Exception as exc:
            call = _Call(plan, request, start)
            delay = call.after_error(exc)
            if delay is None:
                raise
        else:
            if response.status_code < 400:
                if plan.budget is not None:
                    plan.budget.record_success()
                return response
            call = _Call(plan, request, start)
            delay = call.after_response(response)
            if delay is None:
                return response
            await _adrain(response)
        if delay > 0:
            await call.clock.asleep(delay)
        return await self._retry(call, send, request)

    async def _retry(self, call: _Call, send: Callable[[Any], Any], request: Any) -> Any:
        """The attempts after the first (all of them under a cap, a breaker or pacing)."""
        plan = self._plan
        while True:
            lease = None
            if plan.limiter is not None or plan.concurrency is not None:
                lease = await call.pace_async()
            call.start_attempt()
            try:
                response = await call.through_breaker_async(send, request)
            except Exception as exc:
                await call.release_async(lease, exc=exc)
                delay = call.after_error(exc)
                if delay is None:
                    raise
            except BaseException as exc:
                await call.release_async(lease, exc=exc)
                raise
            else:
                if plan.limiter is not None:
                    await call.pause_async(response)
                delay = call.after_response(response)
                if delay is None:
                    return call.finish(response, asynchronous=True, lease=lease)
                await _adrain(response)
                await call.release_async(lease, response=response)
            if delay > 0:
                await call.clock.asleep(delay)

    def _sender(self, request: Any) -> Callable[[Any], Any]:
        transport = self._transport
        if transport is None:
            module = _library_of(request)
            transport = self._default.get(module.__name__)
            if transport is None:
                transport = self._default.setdefault(module.__name__, module.AsyncHTTPTransport())
        return transport.handle_async_request

    async def aclose(self) -> None:
        """Close the wrapped transport (and the default ones this transport made)."""
        if self._transport is not None:
            await self._transport.aclose()
        for made in self._default.values():
            await made.aclose()

    def __repr__(self) -> str:
        return f"AsyncResilientTransport({self._plan.describe(self._transport)})"


# -- the decisions, shared by both transports ----------------------------------


class _Plan:
    """Strictly private. The validated settings of one transport."""

    __slots__ = (
        "backoff",
        "breaker",
        "budget",
        "classifier",
        "clock",
        "concurrency",
        "direct",
        "idempotent",
        "limiter",
        "max_attempts",
        "max_retries",
        "max_retry_after",
        "total_timeout",
    )

    def __init__(
        self,
        *,
        max_retries: int,
        base_delay: Seconds,
        max_delay: Seconds,
        max_retry_after: Seconds,
        jitter: JitterSpec,
        total_timeout: Seconds | None,
        idempotent: bool,
        breaker: CircuitBreaker | None,
        budget: Budget | None,
        limiter: RateLimiter | None,
        concurrency: ConcurrencyLimit | None,
        classifier: Callable[..., ErrorClass],
        clock: Clock | None,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise TypeError(f"max_retries must be an int, got {max_retries!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        self.backoff = Backoff(base_delay, max_delay, jitter)
        self.max_retry_after = check_max_retry_after(max_retry_after)
        cap = None
        if total_timeout is not None:
            cap = duration("total_timeout", total_timeout, allow_zero=False, also=" or None")
        if not isinstance(idempotent, bool):
            raise TypeError(f"idempotent must be True or False, got {idempotent!r}")
        if breaker is not None and not (
            callable(getattr(breaker, "call", None))
            and callable(getattr(breaker, "call_async", None))
        ):
            raise TypeError(f"breaker must be a CircuitBreaker or None, got {breaker!r}")
        if budget is not None and not (
            callable(getattr(budget, "record_failure", None))
            and callable(getattr(budget, "record_success", None))
        ):
            raise TypeError(
                f"budget must have record_failure() and record_success(), got {budget!r}"
            )
        if not callable(classifier):
            raise TypeError(f"classifier must be callable, got {classifier!r}")
        if limiter is not None and not all(
            callable(getattr(limiter, method, None))
            for method in ("acquire", "acquire_async", "pause", "pause_async")
        ):
            raise TypeError(f"limiter must be a RateLimiter or None, got {limiter!r}")
        if concurrency is not None and not all(
            callable(getattr(concurrency, method, None)) for method in ("_enter", "_enter_async")
        ):
            raise TypeError(f"concurrency must be a ConcurrencyLimit or None, got {concurrency!r}")
        check_clock(clock)
        self.limiter = limiter
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.max_attempts = max_retries + 1
        self.total_timeout = cap
        self.idempotent = idempotent
        self.breaker = breaker
        self.budget = budget
        self.classifier = classifier
        self.clock = clock
        self.direct = (
            total_timeout is None and breaker is None and limiter is None and concurrency is None
        )
        """Whether the first attempt is sent plainly (no cap, breaker or pacing to go through)."""

    def describe(self, transport: object) -> str:
        backoff = self.backoff
        return (
            f"transport={transport!r}, max_retries={self.max_retries!r}, "
            f"base_delay={backoff.base_delay!r}, max_delay={backoff.max_delay!r}, "
            f"max_retry_after={self.max_retry_after!r}, total_timeout={self.total_timeout!r}, "
            f"idempotent={self.idempotent!r}"
        )


class _Call:
    """Strictly private. One call of ``send``: its attempts and what follows each.

    The sans-IO part of the transports: it is told what an attempt gave (an
    error or a response) and answers how long to wait before the next one,
    or ``None``: stop (raise the error, return the response).
    """

    __slots__ = (
        "attempt",
        "clock",
        "deadline",
        "delays",
        "host",
        "idempotent",
        "label",
        "max_attempts",
        "method",
        "module",
        "plan",
        "replayable",
        "request",
        "start",
        "timeouts",
    )

    def __init__(self, plan: _Plan, request: Any, started: float | None = None) -> None:
        """A call whose first attempt ran already when *started* (its start) is given."""
        self.plan = plan
        self.request = request
        self.clock = clock = DEFAULTS.clock if plan.clock is None else plan.clock
        self.start = clock.monotonic() if started is None else started
        self.deadline = None if plan.total_timeout is None else self.start + plan.total_timeout
        self.method = method = str(request.method).upper()
        self.host = str(request.url.host)
        self.label = f"{method} {self.host}"
        self.idempotent = (
            plan.idempotent or method in IDEMPOTENT_METHODS or "idempotency-key" in request.headers
        )
        self.replayable = _replayable(request)
        self.module = _library_of(request)
        self.attempt = 0 if started is None else 1
        self.delays: Iterator[float] | None = None
        cap = DEFAULTS.attempt_cap
        self.max_attempts = plan.max_attempts if cap is None else min(cap, plan.max_attempts)
        timeouts = request.extensions.get("timeout")
        self.timeouts: dict[str, Any] | None = dict(timeouts) if timeouts is not None else None

    # -- one attempt -----------------------------------------------------------

    def start_attempt(self) -> None:
        """Count the attempt; under ``total_timeout``, shrink its timeouts to the time left."""
        self.attempt += 1
        if self.deadline is None:
            return
        left = max(self.deadline - self.clock.monotonic(), 0.001)
        shrunk = {
            key: left if value is None else min(value, left)
            for key, value in (self.timeouts or dict.fromkeys(_TIMEOUT_KEYS)).items()
        }
        self.request.extensions = {**self.request.extensions, "timeout": shrunk}

    def through_breaker(self, send: Callable[[Any], Any], request: Any) -> Any:
        """Send one attempt, through the breaker when there is one.

        Inside the breaker a failing response is raised as the library's
        ``HTTPStatusError`` (as ``raise_for_status`` would), so that the
        breaker classifies and counts it as any HTTP error; it is caught here
        again and the response goes on.
        """
        breaker = self.plan.breaker
        if breaker is None:
            return send(request)
        try:
            return breaker.call(_counted, send, self.module, request)
        except self.module.HTTPStatusError as failure:
            return failure.response

    async def through_breaker_async(self, send: Callable[[Any], Any], request: Any) -> Any:
        breaker = self.plan.breaker
        if breaker is None:
            return await send(request)
        try:
            return await breaker.call_async(_counted_async, send, self.module, request)
        except self.module.HTTPStatusError as failure:
            return failure.response

    def pace(self) -> Any:
        """Take the limiter's turn, then a concurrency slot, for the next attempt.

        Returns the slot's lease. A refusal (``RateLimitExceeded``: the turn
        comes past ``total_timeout``; ``ConcurrencyLimitExceeded``: no slot
        within its ``max_wait``) ends the call: it is raised, with a note and
        a log line when attempts were made before it (the failed answers were
        read and closed: there is none to return).
        """
        plan = self.plan
        try:
            if plan.limiter is not None:
                plan.limiter.acquire(timeout=self.time_left())
            if plan.concurrency is not None:
                return plan.concurrency._enter()  # pyright: ignore[reportPrivateUsage]
        except Exception as refusal:
            self.refused(refusal)
            raise
        return None

    async def pace_async(self) -> Any:
        """``pace``'s twin: ``await acquire_async``, an async slot."""
        plan = self.plan
        try:
            if plan.limiter is not None:
                await plan.limiter.acquire_async(timeout=self.time_left())
            if plan.concurrency is not None:
                return await plan.concurrency._enter_async()  # pyright: ignore[reportPrivateUsage]
        except Exception as refusal:
            self.refused(refusal)
            raise
        return None

    def refused(self, refusal: Exception) -> None:
        """Pacing refused the next attempt: note and log it as a give-up after retries."""
        if self.attempt > 0:
            reason = "then pacing refused the next attempt"
            self.give_up(refusal, None, ErrorClass.TRANSIENT, reason)

    def time_left(self) -> float | None:
        if self.deadline is None:
            return None
        return max(self.deadline - self.clock.monotonic(), 0.0)

    def pause_for(self, response: Any) -> float:
        """Seconds a 429 or 503 asked every caller to wait, at most ``max_retry_after``."""
        if response.status_code not in (429, 503):
            return 0.0
        asked = retry_after(response)
        return 0.0 if asked is None else min(asked, self.plan.max_retry_after)

    def pause(self, response: Any) -> None:
        seconds_ = self.pause_for(response)
        if seconds_ > 0 and self.plan.limiter is not None:
            self.plan.limiter.pause(seconds_)

    async def pause_async(self, response: Any) -> None:
        seconds_ = self.pause_for(response)
        if seconds_ > 0 and self.plan.limiter is not None:
            await self.plan.limiter.pause_async(seconds_)

    def signal(self, exc: BaseException | None, response: Any) -> bool | None:
        """An attempt's outcome for an adaptive limit: overload, success (False), or neither."""
        concurrency = self.plan.concurrency
        assert concurrency is not None
        if exc is not None:
            return concurrency._failure_signal(exc)  # pyright: ignore[reportPrivateUsage]
        status = response.status_code
        if status in (429, 503) or retry_after(response) is not None:
            return True
        if status >= 500:
            return concurrency._failure_signal(_status_error(self.module, self.request, response))  # pyright: ignore[reportPrivateUsage]
        return False if status < 400 else None

    def release(
        self, lease: Any, *, exc: BaseException | None = None, response: Any = None
    ) -> None:
        """Give the attempt's slot back with its outcome."""
        concurrency = self.plan.concurrency
        if concurrency is not None:
            concurrency._exit(lease, self.signal(exc, response))  # pyright: ignore[reportPrivateUsage]

    async def release_async(
        self, lease: Any, *, exc: BaseException | None = None, response: Any = None
    ) -> None:
        concurrency = self.plan.concurrency
        if concurrency is not None:
            await concurrency._exit_async(lease, self.signal(exc, response))  # pyright: ignore[reportPrivateUsage]

    # -- what follows it -------------------------------------------------------

    def after_error(self, exc: Exception) -> float | None:
        """The wait before the next attempt after *exc*, or ``None``: raise it."""
        if isinstance(exc, Rejection):  # an open circuit: waiting cannot help
            if self.attempt > 1:
                self.give_up(exc, None, ErrorClass.TIMEOUT, "then the circuit opened")
            return None
        error_class = _classify(self.plan.classifier, exc)
        if error_class not in DEFAULT_RETRYABLE:
            return self.stop(exc, None, error_class, f"not retryable: {error_class.name}")
        if not self.unsent(exc):
            if not self.replayable:
                return self.stop(exc, None, error_class, "its one-shot body may have been sent")
            if not self.idempotent:
                return self.stop(
                    exc, None, error_class, f"{self.method} may have reached the server"
                )
        return self.next_wait(exc, None, error_class, None)

    def after_response(self, response: Any) -> float | None:
        """The wait before the next attempt after *response*, or ``None``: return it."""
        status = response.status_code
        if status < 400:
            if self.plan.budget is not None:
                self.plan.budget.record_success()
            return None
        error = _status_error(self.module, self.request, response)
        error_class = _classify(self.plan.classifier, error)
        if error_class not in DEFAULT_RETRYABLE:
            return self.stop(None, response, error_class, f"not retryable: {error_class.name}")
        if not self.replayable:
            return self.stop(None, response, error_class, "its one-shot body was sent")
        not_processed = status in NOT_PROCESSED_STATUSES or _says_retry(response)
        if not (not_processed or self.idempotent):
            return self.stop(None, response, error_class, f"{self.method} may have been acted on")
        return self.next_wait(None, response, error_class, retry_after(response))

    def unsent(self, exc: BaseException) -> bool:
        """Whether *exc* happened before the request could have reached the server."""
        module = self.module
        return isinstance(exc, (module.ConnectError, module.ConnectTimeout, module.PoolTimeout))

    def next_wait(
        self, exc: BaseException | None, response: Any, error_class: ErrorClass, asked: float | None
    ) -> float | None:
        """Spend from the budget, apply Retry-After and the cap; log the retry."""
        plan = self.plan
        allowed = plan.budget is None or plan.budget.record_failure()
        if self.attempt >= self.max_attempts:
            return self.stop(exc, response, error_class, "retries exhausted")
        if not allowed:
            if _events.SINK is not None:
                _events.SINK.budget_refused(plan.budget)
            return self.stop(exc, response, error_class, "the retry budget refused a retry")
        if self.delays is None:
            self.delays = iter(plan.backoff)
        delay = server_wait(next(self.delays), asked, plan.max_retry_after)
        if delay is None:
            assert asked is not None
            reason = (
                f"{_WAIT_PREFIX} {seconds(asked)} s (Retry-After), more than "
                f"max_retry_after={seconds(plan.max_retry_after)} s"
            )
            return self.stop(exc, response, error_class, reason, always=True)
        if DEFAULTS.no_wait:
            delay = 0.0
        if plan.breaker is not None:
            closed_for = _open_for(plan.breaker)
            if closed_for > delay:  # the next attempt would only be rejected
                reason = f"circuit {plan.breaker.name!r} is open for {seconds(closed_for)} s more"
                return self.stop(exc, response, error_class, reason, always=True)
        now = self.clock.monotonic()
        if self.deadline is not None and now + delay > self.deadline:
            if asked is not None and delay == asked:
                reason = f"{_WAIT_PREFIX} {seconds(asked)} s (Retry-After), past total_timeout"
                return self.stop(exc, response, error_class, reason, always=True)
            return self.stop(exc, response, error_class, "total_timeout would pass during the wait")
        if logger.isEnabledFor(logging.WARNING):
            self.log_retry(exc, response, error_class, delay, asked, now)
        if _events.SINK is not None:
            _events.SINK.retried(self.label, self.attempt, error_class, delay, exc, response)
        return delay

    def stop(
        self,
        exc: BaseException | None,
        response: Any,
        error_class: ErrorClass,
        reason: str,
        *,
        always: bool = False,
    ) -> float | None:
        """End the call here (``None``): say so when something was retried (or *always*)."""
        if self.attempt > 1 or always:
            self.give_up(exc, response, error_class, reason)
        return None

    def give_up(
        self, exc: BaseException | None, response: Any, error_class: ErrorClass, reason: str
    ) -> None:
        elapsed = self.clock.monotonic() - self.start
        ran = self.attempt - isinstance(exc, Rejection)
        what = f"{ran} attempt{'s' if ran != 1 else ''} over {elapsed:.3f} s ({reason})"
        if exc is not None:
            add_note(exc, f"resilient: {what}")
        if _events.SINK is not None:
            _events.SINK.gave_up(self.label, ran, error_class, exc, response)
        if not logger.isEnabledFor(logging.ERROR):
            return
        error_type, error, described = _fields(exc, response)
        outcome = "returned" if exc is None else "raised"
        logger.error(
            "giving up on %s after %s: %s; %s",
            self.label,
            what,
            described,
            "the last response is returned" if exc is None else "the last error is raised",
            extra={
                "event": "retry_gave_up",
                "function": self.label,
                "method": self.method,
                "host": self.host,
                "attempt": ran,
                "max_attempts": self.max_attempts,
                "error_class": error_class,
                "reason": reason,
                "elapsed": round(elapsed, 6),
                "error_type": error_type,
                "error": error,
                "status": None if response is None else response.status_code,
                "outcome": outcome,
            },
        )

    def log_retry(
        self,
        exc: BaseException | None,
        response: Any,
        error_class: ErrorClass,
        delay: float,
        asked: float | None,
        now: float,
    ) -> None:
        error_type, error, described = _fields(exc, response)
        extra: dict[str, object] = {
            "event": "retry_scheduled",
            "function": self.label,
            "method": self.method,
            "host": self.host,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "error_class": error_class,
            "delay": round(delay, 6),
            "elapsed": round(now - self.start, 6),
            "error_type": error_type,
            "error": error,
            "status": None if response is None else response.status_code,
        }
        if asked is not None:
            extra["retry_after"] = round(asked, 6)
        logger.warning(
            "retrying %s in %s s%s (attempt %d of %d) after %s",
            self.label,
            seconds(delay),
            " as Retry-After asked" if asked is not None and delay == asked else "",
            self.attempt + 1,
            self.max_attempts,
            described,
            extra=extra,
        )

    # -- the final response ----------------------------------------------------

    def finish(self, response: Any, *, asynchronous: bool = False, lease: Any = None) -> Any:
        """The response to hand back: under ``total_timeout``, its body capped too.

        With a ``concurrency`` limit, its slot is held until the body is closed.
        """
        if self.deadline is not None:
            cap = _AsyncCappedBody if asynchronous else _CappedBody
            response.stream = cap(response.stream, self)
        concurrency = self.plan.concurrency
        if concurrency is not None:
            signal = self.signal(None, response)
            if getattr(response, "is_closed", False):  # its body was read already: done
                concurrency._exit(lease, signal)  # pyright: ignore[reportPrivateUsage]
            else:
                slot = _AsyncSlotBody if asynchronous else _SlotBody
                response.stream = slot(response.stream, self, lease, signal)
        return response

    def body_timeout(self) -> Exception:
        """The library's ``ReadTimeout``: ``total_timeout`` passed while the body arrived."""
        message = (
            f"total_timeout={seconds(self.plan.total_timeout or 0.0)} s passed while reading "
            f"the body of {self.label}"
        )
        return self.module.ReadTimeout(message, request=self.request)  # type: ignore[no-any-return]

    def left(self) -> float:
        assert self.deadline is not None
        return self.deadline - self.clock.monotonic()


_TIMEOUT_KEYS = ("connect", "read", "write", "pool")


def _counted(send: Callable[[Any], Any], module: Any, request: Any) -> Any:
    """One attempt inside the breaker: a failing status raises, so that it counts."""
    response = send(request)
    if response.status_code >= 400:
        raise _status_error(module, request, response)
    return response


async def _counted_async(send: Callable[[Any], Any], module: Any, request: Any) -> Any:
    response = await send(request)
    if response.status_code >= 400:
        raise _status_error(module, request, response)
    return response


def _open_for(breaker: Any) -> float:
    """Seconds *breaker* stays open (``0.0`` unless open), read after a retried failure.

    The breaker's own reading for a composed retry loop (no round trip when a
    shared store remembers the state), else its public ``remaining``.
    """
    read = getattr(breaker, "__resilient_remaining__", None)
    if read is not None:
        return float(read())
    return float(getattr(breaker, "remaining", 0.0))


def _classify(classifier: Callable[..., ErrorClass], exc: BaseException) -> ErrorClass:
    found = classifier(exc)
    return found if isinstance(found, ErrorClass) else ErrorClass.UNKNOWN


def _status_error(module: Any, request: Any, response: Any) -> Exception:
    """The library's ``HTTPStatusError`` for *response*, as ``raise_for_status`` makes it."""
    return module.HTTPStatusError(  # type: ignore[no-any-return]
        f"{response.status_code} {_reason(response)}", request=request, response=response
    )


def _says_retry(response: Any) -> bool:
    value = response.headers.get("x-should-retry")
    return isinstance(value, str) and value.strip().lower() == "true"


_UNREGISTERED_REASONS = {529: "Overloaded"}
"""Words for statuses outside the IANA registry, which the clients leave without a phrase."""


def _reason(response: Any) -> str:
    """The response's reason phrase; for a 529 (Anthropic's, or over HTTP/2): "Overloaded"."""
    try:
        phrase = str(response.reason_phrase)
    except Exception:  # a response without a known phrase
        phrase = ""
    return phrase or _UNREGISTERED_REASONS.get(response.status_code, "")


def _fields(exc: BaseException | None, response: Any) -> tuple[str | None, str, str]:
    """``(error_type, error, described)``: the log fields and the words of the message."""
    if exc is not None:
        from resilient._redact import describe_error, error_fields  # noqa: PLC0415 - logs only

        error_type, error = error_fields(exc)
        return error_type, error, describe_error(exc)
    status = f"{response.status_code} {_reason(response)}".strip()
    return None, status, status


def _library_of(request: Any) -> Any:
    """The module (``httpx2`` or ``httpx``) whose ``Request`` *request* is."""
    module = type(request).__module__.partition(".")[0]
    if _httpx2 is not None and module == "httpx2":
        return _httpx2
    if _httpx is not None and module == "httpx":
        return _httpx
    return _httpx2 if _httpx2 is not None else _httpx


def _replayable(request: Any) -> bool:
    """Whether the body of *request* can be sent again: in memory, or none."""
    stream = request.stream
    return any(
        isinstance(stream, module.ByteStream) for module in (_httpx2, _httpx) if module is not None
    )


def _drain(response: Any) -> None:
    """Read a failed response (at most ``DRAIN_LIMIT`` bytes) and close it."""
    with contextlib.suppress(Exception):  # a broken body: closing is all that is left
        read = 0
        for chunk in response.iter_raw():
            read += len(chunk)
            if read >= DRAIN_LIMIT:
                break
    with contextlib.suppress(Exception):
        response.close()


async def _adrain(response: Any) -> None:
    with contextlib.suppress(Exception):
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read >= DRAIN_LIMIT:
                break
    with contextlib.suppress(Exception):
        await response.aclose()


class _CappedBody(_SyncStream):
    """Strictly private. The final response's body, cut when ``total_timeout`` passes."""

    def __init__(self, stream: Any, call: _Call) -> None:
        self._stream = stream
        self._call = call

    def __iter__(self) -> Iterator[bytes]:
        call = self._call
        chunks = iter(self._stream)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except call.module.ReadTimeout as exc:
                # The read's timeout shrank to the time left when the attempt began:
                # once the cap has passed, it is the cap that ran out.
                if call.left() > 0:
                    raise
                self._stream.close()
                raise call.body_timeout() from exc
            if call.left() <= 0:
                self._stream.close()
                raise call.body_timeout()
            yield chunk

    def close(self) -> None:
        self._stream.close()


class _AsyncCappedBody(_AsyncStream):
    """Strictly private. ``_CappedBody``'s async twin; each read also bounded in time."""

    def __init__(self, stream: Any, call: _Call) -> None:
        self._stream = stream
        self._call = call

    async def __aiter__(self) -> AsyncIterator[bytes]:
        import asyncio  # noqa: PLC0415 - only async bodies under a cap need it

        call = self._call
        chunks = self._stream.__aiter__()
        while True:
            left = call.left()
            if left <= 0:
                await self._stream.aclose()
                raise call.body_timeout()
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), left)
            except StopAsyncIteration:
                return
            except asyncio.TimeoutError:
                await self._stream.aclose()
                raise call.body_timeout() from None
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class _SlotBody(_SyncStream):
    """Strictly private. The final response's body, holding its concurrency slot until closed."""

    def __init__(self, stream: Any, call: _Call, lease: Any, signal: bool | None) -> None:
        self._stream = stream
        self._release: tuple[_Call, Any, bool | None] | None = (call, lease, signal)

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            held, self._release = self._release, None
            if held is not None:
                call, lease, signal = held
                concurrency = call.plan.concurrency
                assert concurrency is not None
                concurrency._exit(lease, signal)  # pyright: ignore[reportPrivateUsage]


class _AsyncSlotBody(_AsyncStream):
    """Strictly private. ``_SlotBody``'s async twin."""

    def __init__(self, stream: Any, call: _Call, lease: Any, signal: bool | None) -> None:
        self._stream = stream
        self._release: tuple[_Call, Any, bool | None] | None = (call, lease, signal)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            held, self._release = self._release, None
            if held is not None:
                call, lease, signal = held
                concurrency = call.plan.concurrency
                assert concurrency is not None
                await concurrency._exit_async(lease, signal)  # pyright: ignore[reportPrivateUsage]
