"""Specification of ``resilient.httpx``: the transports under httpx, httpx2 and the LLM SDKs.

Everything runs for real on loopback: the openai and anthropic SDKs (with
their own retries off) against a scripted fake of their APIs, and plain
``httpx``/``httpx2`` clients, sync and async, against the scripted flaky
server of the examples. Waits go through a ``ManualClock``; the tests that need
real time (bodies that drip, a read that stalls) state their margins.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient import (
    CircuitBreaker,
    CircuitOpenError,
    ErrorClass,
    RateLimiter,
    RetryBudget,
    TaskResult,
    classify,
    execute_task_safely,
    retry,
    retry_with_backoff,
    retrying,
)
from resilient.httpx import (
    DRAIN_LIMIT,
    IDEMPOTENT_METHODS,
    AsyncResilientTransport,
    ResilientTransport,
)
from resilient.testing import ManualClock, cap_attempts, no_wait, use_clock

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from fake_llm_server import ANTHROPIC_PATH, OPENAI_PATH, FakeLLMServer, Reply
from flaky_server import FlakyServer, Step

SDKS = ("openai", "anthropic")
LIBRARIES = (httpx, httpx2)
MESSAGES = [{"role": "user", "content": "hi"}]


# -- fixtures and helpers -----------------------------------------------------------


@pytest.fixture
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def flaky() -> Iterator[FlakyServer]:
    with FlakyServer(drip_interval=10.0, drip_size=10) as server:
        yield server


@pytest.fixture
def closed_port(refused_port: int) -> str:
    """A loopback URL nothing listens on: connecting is refused."""
    return f"http://127.0.0.1:{refused_port}"


class AsyncOnlyClock(ManualClock):
    """A ManualClock for the async transport: a blocking ``sleep`` would stall the event loop."""

    __slots__ = ()

    def sleep(self, seconds: float) -> None:
        raise AssertionError(f"the async transport called the blocking sleep({seconds})")


_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Close every SDK client a test made: their pooled sockets must not leak."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def path_of(sdk: str) -> str:
    return OPENAI_PATH if sdk == "openai" else ANTHROPIC_PATH


def sdk_module(sdk: str) -> Any:
    """The SDK's module, imported here: an xdist worker that runs no SDK test never pays for it."""
    return importlib.import_module(sdk)


def sdk_client(
    sdk: str, base_url: str, transport: Any, *, timeout: float | httpx2.Timeout = 5.0
) -> Any:
    """The real SDK client, its retries off, on an httpx2 client with *transport*."""
    http_client = httpx2.Client(transport=transport, timeout=timeout)
    _OPEN.append(http_client)
    if sdk == "openai":
        return sdk_module(sdk).OpenAI(
            api_key="test", base_url=base_url + "/v1", max_retries=0, http_client=http_client
        )
    return sdk_module(sdk).Anthropic(
        api_key="test", base_url=base_url, max_retries=0, http_client=http_client
    )


def received(server: FakeLLMServer, path: str) -> int:
    """``server.count(path)`` once it is at least 1: a client that gave up on a request
    may be faster than the server's thread recording it (a busy machine)."""
    give_up = time.monotonic() + 10.0
    while server.count(path) == 0 and time.monotonic() < give_up:
        time.sleep(0.005)
    return server.count(path)


def ask(sdk: str, client: Any, **options: Any) -> str:
    """One chat completion / message; the assistant's text."""
    if sdk == "openai":
        completion = client.chat.completions.create(model="m", messages=MESSAGES, **options)
        return str(completion.choices[0].message.content)
    message = client.messages.create(model="m", max_tokens=8, messages=MESSAGES, **options)
    return str(message.content[0].text)


def asked(sdk: str, client: Any, **options: Any) -> Exception:
    """What one SDK call raises."""
    try:
        ask(sdk, client, **options)
    except Exception as exc:
        return exc
    raise AssertionError(f"the {sdk} call did not fail")


# -- the SDKs through the transport ---------------------------------------------------


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_connection_error_is_retried_max_retries_times(sdk: str, closed_port: str) -> None:
    """A refused connection (TRANSIENT, never sent) is retried max_retries times, POST or not."""
    clock = ManualClock()
    client = sdk_client(sdk, closed_port, ResilientTransport(max_retries=2, clock=clock))
    exc = asked(sdk, client)
    assert type(exc) is sdk_module(sdk).APIConnectionError
    assert classify(exc) is ErrorClass.TRANSIENT
    assert isinstance(exc.__cause__, httpx2.ConnectError)
    assert len(clock.sleeps) == 2
    assert exc.__cause__.__notes__[-1].startswith("resilient: 3 attempts over")


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_timeout_is_timeout_and_a_post_is_not_resent(sdk: str, llm: FakeLLMServer) -> None:
    """A read timeout is TIMEOUT; the POST may have been acted on: one request only."""
    llm.script(path_of(sdk), Reply(delay=2.0))
    clock = ManualClock()
    # Only the read times out: a connect timeout (a busy machine) is retried, rightly.
    client = sdk_client(
        sdk, llm.url, ResilientTransport(clock=clock), timeout=httpx2.Timeout(5.0, read=0.1)
    )
    exc = asked(sdk, client)
    assert type(exc) is sdk_module(sdk).APITimeoutError
    assert isinstance(exc.__cause__, httpx2.ReadTimeout)
    assert classify(exc) is ErrorClass.TIMEOUT
    assert clock.sleeps == []
    assert received(llm, path_of(sdk)) == 1


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_timeout_is_retried_when_idempotent(sdk: str, llm: FakeLLMServer) -> None:
    """With idempotent=True (completions have no side effect) a read timeout is retried."""
    llm.script(path_of(sdk), Reply(delay=2.0))
    clock = ManualClock()
    transport = ResilientTransport(idempotent=True, clock=clock)
    # 0.3 s: the 2 s answer times out, the prompt second one comes within it. A busy
    # machine may stall a later answer past it too: that one is retried as well.
    timeout = httpx2.Timeout(5.0, read=0.3)
    assert ask(sdk, sdk_client(sdk, llm.url, transport, timeout=timeout)) == "echo: hi"
    assert llm.count(path_of(sdk)) == len(clock.sleeps) + 1 >= 2


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_429_waits_what_retry_after_ms_asks(sdk: str, llm: FakeLLMServer) -> None:
    """A 429 with retry-after-ms: 1500 waits 1.5 s (not the 0.5 s backoff), then succeeds."""
    llm.script(path_of(sdk), Reply(429, headers={"retry-after-ms": "1500", "retry-after": "9"}))
    clock = ManualClock()
    client = sdk_client(sdk, llm.url, ResilientTransport(clock=clock))
    assert ask(sdk, client) == "echo: hi"
    assert clock.sleeps == [1.5]
    assert llm.count(path_of(sdk)) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_fatal_statuses_make_exactly_one_request(
    sdk: str, status: int, llm: FakeLLMServer
) -> None:
    """400/401/403/404/422: one request, no wait, the SDK's own typed error."""
    llm.script(path_of(sdk), Reply(status))
    clock = ManualClock()
    client = sdk_client(sdk, llm.url, ResilientTransport(idempotent=True, clock=clock))
    exc = asked(sdk, client)
    assert isinstance(exc, sdk_module(sdk).APIStatusError)
    assert exc.status_code == status
    assert llm.count(path_of(sdk)) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_500_on_a_post_is_not_resent_by_default(sdk: str, llm: FakeLLMServer) -> None:
    """A 500 may have been acted on: the POST is sent once and the SDK raises its error."""
    llm.script(path_of(sdk), Reply(500))
    clock = ManualClock()
    exc = asked(sdk, sdk_client(sdk, llm.url, ResilientTransport(clock=clock)))
    assert isinstance(exc, sdk_module(sdk).InternalServerError)
    assert llm.count(path_of(sdk)) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_500_on_a_post_is_resent_with_idempotent_true(sdk: str, llm: FakeLLMServer) -> None:
    """idempotent=True: the 500 is retried, and the second answer is the completion."""
    llm.script(path_of(sdk), Reply(500))
    transport = ResilientTransport(idempotent=True, clock=ManualClock())
    assert ask(sdk, sdk_client(sdk, llm.url, transport)) == "echo: hi"
    assert llm.count(path_of(sdk)) == 2


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_500_on_a_post_is_resent_with_an_idempotency_key(sdk: str, llm: FakeLLMServer) -> None:
    """A POST carrying an Idempotency-Key is retried, with the same key each time."""
    llm.script(path_of(sdk), Reply(500))
    client = sdk_client(sdk, llm.url, ResilientTransport(clock=ManualClock()))
    assert ask(sdk, client, extra_headers={"Idempotency-Key": "k-1"}) == "echo: hi"
    seen = llm.seen(path_of(sdk))
    assert [s.headers.get("idempotency-key") for s in seen] == ["k-1", "k-1"]


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_529_overloaded_and_503_are_retried_for_a_post(sdk: str, llm: FakeLLMServer) -> None:
    """529 and 503 say the request was not processed: retried whatever the method."""
    llm.script(path_of(sdk), Reply(529), Reply(503))
    transport = ResilientTransport(clock=ManualClock())
    assert ask(sdk, sdk_client(sdk, llm.url, transport)) == "echo: hi"
    assert llm.count(path_of(sdk)) == 3


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_retry_after_3600_returns_at_once(sdk: str, llm: FakeLLMServer) -> None:
    """A server asking for an hour is not retried early: the SDK raises its 429 at once."""
    llm.script(path_of(sdk), Reply(429, headers={"retry-after": "3600"}))
    clock = ManualClock()
    exc = asked(sdk, sdk_client(sdk, llm.url, ResilientTransport(clock=clock)))
    assert isinstance(exc, sdk_module(sdk).RateLimitError)
    assert llm.count(path_of(sdk)) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("sdk", SDKS)
def test_a_task_over_the_sdk_ends_at_once_on_an_hour_and_says_when(
    sdk: str, llm: FakeLLMServer
) -> None:
    """Retry-After: 3600 through the transport and the SDK: a task around the call ends after
    one request, its TaskResult.retry_after saying when to try again, a note saying why."""
    llm.script(path_of(sdk), Reply(429, headers={"retry-after": "3600"}))
    client = sdk_client(sdk, llm.url, ResilientTransport(clock=ManualClock()))
    clock = ManualClock()
    result = execute_task_safely("ask", lambda: ask(sdk, client), max_retries=3, clock=clock)
    assert (result.success, result.attempts, result.retry_after) == (False, 1, 3600.0)
    assert isinstance(result.exception, sdk_module(sdk).RateLimitError)
    assert "the server asked to wait 3600 s (Retry-After)" in result.exception.__notes__[0]
    assert (llm.count(path_of(sdk)), clock.sleeps) == (1, [])


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_retry_after_90_under_max_delay_1_is_waited_out(sdk: str, llm: FakeLLMServer) -> None:
    """Retry-After: 90 with max_delay=1 waits the 90 s (max_retry_after 120), then succeeds."""
    llm.script(path_of(sdk), Reply(429, headers={"retry-after": "90"}))
    clock = ManualClock()
    transport = ResilientTransport(max_delay=1.0, clock=clock)
    assert ask(sdk, sdk_client(sdk, llm.url, transport)) == "echo: hi"
    assert clock.sleeps == [90.0]


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_breaker_opens_and_rejects(sdk: str, llm: FakeLLMServer) -> None:
    """Two 503s open a breaker given to the transport; the next call never reaches the server."""
    llm.script(path_of(sdk), Reply(503), Reply(503))
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=60.0, name=f"llm-{sdk}")
    transport = ResilientTransport(max_retries=0, breaker=breaker, clock=ManualClock())
    client = sdk_client(sdk, llm.url, transport)
    for _ in range(2):
        assert isinstance(asked(sdk, client), sdk_module(sdk).APIStatusError)
    assert breaker.is_open
    exc = asked(sdk, client)
    # anthropic wraps what its transport raises in its APIConnectionError; openai does not.
    assert isinstance(exc if sdk == "openai" else exc.__cause__, CircuitOpenError)
    assert llm.count(path_of(sdk)) == 2


def _under(form: str, call: Callable[[], object], clock: ManualClock) -> object:
    """*call* once under *form* of the retry loop, on *clock*; what it raised (or returned)."""
    try:
        if form == "@retry":
            return retry(max_retries=3, clock=clock)(call)()
        if form == "retrying":
            for attempt in retrying(max_retries=3, clock=clock):
                with attempt:
                    return call()
        if form == "retry_with_backoff":
            with use_clock(clock):
                return retry_with_backoff(call, max_retries=3)
        return execute_task_safely("ask", call, max_retries=3, clock=clock)
    except Exception as exc:
        return exc


@pytest.mark.parametrize("form", ["@retry", "retrying", "retry_with_backoff", "task"])
@pytest.mark.parametrize("sdk", SDKS)
def test_a_call_the_transports_breaker_rejected_is_never_retried_by_sleeping(
    sdk: str, form: str, llm: FakeLLMServer
) -> None:
    """anthropic raises its APIConnectionError (TRANSIENT) from the CircuitOpenError: still a
    rejection for an outer retry or task: one attempt, no sleep, the SDK's error noted."""
    breaker = CircuitBreaker(name=f"llm-{sdk}")
    breaker.trip()
    transport = ResilientTransport(max_retries=0, breaker=breaker, clock=ManualClock())
    client = sdk_client(sdk, llm.url, transport)
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        return ask(sdk, client)

    clock = ManualClock()
    outcome = _under(form, call, clock)
    assert (len(calls), clock.sleeps, llm.count(path_of(sdk))) == (1, [], 0)
    if form == "task":
        assert isinstance(outcome, TaskResult)
        assert (outcome.error_class, outcome.attempts, outcome.rejected) == (
            ErrorClass.TIMEOUT,
            1,
            False,  # the function ran: another circuit, inside it, rejected its call
        )
        outcome = outcome.exception
    wanted = CircuitOpenError if sdk == "openai" else sdk_module(sdk).APIConnectionError
    assert type(outcome) is wanted  # the error the caller sees stays the SDK's own
    assert isinstance(outcome, Exception)
    assert isinstance(outcome if sdk == "openai" else outcome.__cause__, CircuitOpenError)
    if form != "task":  # a task's own line says how it ended
        assert getattr(outcome, "__notes__", []) == [
            f"resilient: 1 attempt over 0.000 s (then a call was rejected: circuit "
            f"'llm-{sdk}' is open)"
        ]


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_async_clients_go_through_the_async_transport(sdk: str, llm: FakeLLMServer) -> None:
    """AsyncOpenAI / AsyncAnthropic: a 429 (retry-after-ms) then a 529, then the answer."""
    llm.script(path_of(sdk), Reply(429, headers={"retry-after-ms": "700"}), Reply(529), Reply(503))
    clock = AsyncOnlyClock()

    async def main() -> str:
        transport = AsyncResilientTransport(clock=clock)
        async with httpx2.AsyncClient(transport=transport) as http_client:
            if sdk == "openai":
                client: Any = sdk_module(sdk).AsyncOpenAI(
                    api_key="t", base_url=llm.url + "/v1", max_retries=0, http_client=http_client
                )
                completion = await client.chat.completions.create(model="m", messages=MESSAGES)
                return str(completion.choices[0].message.content)
            client = sdk_module(sdk).AsyncAnthropic(
                api_key="t", base_url=llm.url, max_retries=0, http_client=http_client
            )
            message = await client.messages.create(model="m", max_tokens=8, messages=MESSAGES)
            return str(message.content[0].text)

    assert asyncio.run(main()) == "echo: hi"
    assert llm.count(path_of(sdk)) == 4
    assert clock.sleeps[0] == 0.7
    assert len(clock.sleeps) == 3


# -- plain httpx and httpx2 clients, sync and async -----------------------------------


@pytest.mark.parametrize("lib", LIBRARIES, ids=lambda m: m.__name__)
def test_get_retried_on_503_and_the_last_503_returned(lib: Any, flaky: FlakyServer) -> None:
    """A GET answered 503 every time is tried max_retries + 1 times; the last 503 is returned."""
    flaky.script("/always-503", [], then=503)
    clock = ManualClock()
    transport = ResilientTransport(max_retries=2, jitter=False, clock=clock)
    with lib.Client(transport=transport) as client:
        response = client.get(flaky.url + "/always-503")
    assert response.status_code == 503
    assert response.json() == {"path": "/always-503", "attempt": 3}  # the last, readable
    assert flaky.requests("/always-503") == 3
    assert clock.sleeps == [1.0, 1.0]  # Retry-After: 1 over the 0.5 s and ~1 s backoff


@pytest.mark.parametrize("lib", LIBRARIES, ids=lambda m: m.__name__)
def test_async_get_retried_on_503_and_the_last_503_returned(lib: Any, flaky: FlakyServer) -> None:
    """The async twin under either library's AsyncClient."""
    flaky.script("/always-503-async", [], then=503)
    clock = AsyncOnlyClock()

    async def main() -> Any:
        transport = AsyncResilientTransport(max_retries=2, clock=clock)
        async with lib.AsyncClient(transport=transport) as client:
            return await client.get(flaky.url + "/always-503-async")

    response = asyncio.run(main())
    assert response.status_code == 503
    assert response.json()["attempt"] == 3
    assert flaky.requests("/always-503-async") == 3
    assert len(clock.sleeps) == 2


def _chunks() -> Iterator[bytes]:
    yield b"part one, "
    yield b"part two"


async def _achunks() -> AsyncIterator[bytes]:
    yield b"part one, "
    yield b"part two"


@pytest.mark.parametrize("lib", LIBRARIES, ids=lambda m: m.__name__)
def test_a_streamed_upload_is_never_replayed(lib: Any, llm: FakeLLMServer) -> None:
    """A PUT (idempotent) of a one-shot stream answered 503 is not resent; bytes are."""
    llm.script("/upload", 503, 503, 503, 503)
    clock = ManualClock()
    with lib.Client(transport=ResilientTransport(jitter=False, clock=clock)) as client:
        response = client.put(llm.url + "/upload", content=_chunks())
        assert response.status_code == 503
        assert [s.body for s in llm.seen("/upload")] == [b"part one, part two"]
        assert client.put(llm.url + "/upload", content=b"in memory").status_code == 200
    assert llm.count("/upload") == 1 + 4  # bytes can be sent again: 3 x 503, then 200
    assert clock.sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("lib", LIBRARIES, ids=lambda m: m.__name__)
def test_an_async_streamed_upload_is_never_replayed(lib: Any, llm: FakeLLMServer) -> None:
    """The async twin: an async generator body is sent once."""
    llm.script("/upload-async", 503)

    async def main() -> Any:
        transport = AsyncResilientTransport(clock=ManualClock())
        async with lib.AsyncClient(transport=transport) as client:
            return await client.put(llm.url + "/upload-async", content=_achunks())

    response = asyncio.run(main())
    assert response.status_code == 503
    assert [s.body for s in llm.seen("/upload-async")] == [b"part one, part two"]


@pytest.mark.parametrize("lib", LIBRARIES, ids=lambda m: m.__name__)
def test_a_streamed_upload_is_retried_when_the_connection_was_refused(
    lib: Any, closed_port: str
) -> None:
    """Refused before anything was sent: even a one-shot body may be tried again."""
    clock = ManualClock()
    with (
        lib.Client(transport=ResilientTransport(max_retries=2, clock=clock)) as client,
        pytest.raises(lib.ConnectError),
    ):
        client.post(closed_port + "/upload", content=_chunks())
    assert len(clock.sleeps) == 2


# Real time: the server sends the headers at once, then the body too slowly to
# end within the cap (one byte every 10 s; or 200 bytes over 10 s, each read
# answered within 0.05 s, which no read timeout trips). The client's own read
# timeout is 10 s: uncapped, each call would last 10 s. The claim: total_timeout
# cuts the body, the call ends within DRIP_CLAIM (5 s: a stall of 1.9 s past a
# 1 s cap was seen under .ci/busy). Each client first makes a request that
# leaves a kept-alive connection behind, so the timed request needs no connect.
# The cut must fall in the body, so the headers must come within the cap: the
# cap is short, and when a busy machine held them past it (the response hook
# never ran), the run is repeated with the cap doubled.
DRIP_CAPS, DRIP_CLAIM, DRIP_READ_TIMEOUT = (0.2, 0.4, 0.8, 1.6), 5.0, 10.0


def _cut_in_the_body(lib: Any, url: str, mode: str) -> tuple[float, float, str]:
    """GET *url* under each cap of DRIP_CAPS in turn until the headers come within it.

    *mode*: ``"sync"``, ``"async"`` or ``"stream"`` (``client.stream``, the body
    read later). Returns the cap, the seconds the timed call took and the
    message of the ``ReadTimeout`` that ended it.
    """
    for cap in DRIP_CAPS:
        heard: list[object] = []
        if mode == "async":
            outcome = asyncio.run(_cut_async(lib, url, cap, heard))
        else:
            outcome = _cut_sync(lib, url, cap, heard, stream=mode == "stream")
        if outcome is not None and heard:  # the cut fell in the body
            return (cap, *outcome)
    raise AssertionError(f"the headers never came within a cap of {DRIP_CAPS} s")


def _cut_sync(
    lib: Any, url: str, cap: float, heard: list[object], *, stream: bool
) -> tuple[float, str] | None:
    """One run of ``_cut_in_the_body``: None if a stall cut the warm-up request."""
    transport = ResilientTransport(total_timeout=cap)
    hooks = {"response": [heard.append]}  # called with the headers, before the body
    with lib.Client(transport=transport, event_hooks=hooks, timeout=DRIP_READ_TIMEOUT) as client:
        try:
            assert client.get(url.rsplit("/", 1)[0] + "/ok").status_code == 200  # to reuse
        except lib.TimeoutException:
            return None
        heard.clear()
        started = time.monotonic()
        with pytest.raises(lib.ReadTimeout) as caught:
            _read_whole(client, url, stream=stream)
        return time.monotonic() - started, str(caught.value)


def _read_whole(client: Any, url: str, *, stream: bool) -> None:
    if stream:
        with client.stream("GET", url) as response:
            response.read()
    else:
        client.get(url)


async def _cut_async(
    lib: Any, url: str, cap: float, heard: list[object]
) -> tuple[float, str] | None:
    """``_cut_sync``'s async twin, on an ``AsyncClient``."""

    async def hear(response: Any) -> None:
        heard.append(response)

    transport = AsyncResilientTransport(total_timeout=cap)
    hooks = {"response": [hear]}
    async with lib.AsyncClient(
        transport=transport, event_hooks=hooks, timeout=DRIP_READ_TIMEOUT
    ) as client:
        try:
            assert (await client.get(url.rsplit("/", 1)[0] + "/ok")).status_code == 200
        except lib.TimeoutException:
            return None
        heard.clear()
        started = time.monotonic()
        with pytest.raises(lib.ReadTimeout) as caught:
            await client.get(url)
        return time.monotonic() - started, str(caught.value)


@pytest.mark.parametrize("lib", LIBRARIES, ids=lambda m: m.__name__)
def test_total_timeout_cuts_a_body_that_drips(lib: Any, flaky: FlakyServer) -> None:
    """The final body is under total_timeout too: a dripping body raises ReadTimeout."""
    _, took, _ = _cut_in_the_body(lib, flaky.url + "/drip", "sync")
    assert took < DRIP_CLAIM


@pytest.mark.parametrize("lib", LIBRARIES, ids=lambda m: m.__name__)
def test_total_timeout_cuts_a_body_that_drips_async(lib: Any, flaky: FlakyServer) -> None:
    """The async twin: each read of the body is bounded by the time left."""
    _, took, _ = _cut_in_the_body(lib, flaky.url + "/drip", "async")
    assert took < DRIP_CLAIM


@pytest.mark.parametrize("lib", LIBRARIES, ids=lambda m: m.__name__)
def test_total_timeout_cuts_a_streamed_body_read_later(lib: Any, flaky: FlakyServer) -> None:
    """With client.stream(...), the cap still holds while the caller reads the body."""
    _, took, _ = _cut_in_the_body(lib, flaky.url + "/drip", "stream")
    assert took < DRIP_CLAIM


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("lib", LIBRARIES, ids=lambda m: m.__name__)
def test_total_timeout_cuts_a_body_that_keeps_dripping_fast(
    lib: Any, mode: str, llm: FakeLLMServer
) -> None:
    """Bytes every 0.05 s never trip a read timeout, but the whole body is still capped."""
    llm.script("/fast-drip", Reply(body=b"x" * 200, drip=0.05))
    cap, took, message = _cut_in_the_body(lib, llm.url + "/fast-drip", mode)
    assert re.match(
        rf"total_timeout={cap:g} s passed while reading the body of GET 127\.0\.0\.1", message
    ), message
    assert took < DRIP_CLAIM


class StallingBody(httpx.AsyncByteStream, httpx2.AsyncByteStream):
    """An async body whose second chunk comes after 10 s, whatever the request's timeouts say."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"first"
        await asyncio.sleep(10.0)
        yield b"too late"


@pytest.mark.parametrize("cap_passed", [True, False], ids=["cap-passed", "time-left"])
@pytest.mark.parametrize("lib", LIBRARIES, ids=lambda m: m.__name__)
def test_a_read_of_the_body_that_times_out_once_the_cap_passed_says_so(
    lib: Any, cap_passed: bool
) -> None:
    """Sync: a body read whose timeout (shrunk to the time left) runs out once total_timeout
    has passed raises the cap's ReadTimeout, as the async twin does, not the bare "timed
    out" of the socket; with time left it is the caller's own read timeout, as it came.

    (On a busy machine a server that paused longer than the shrunk read timeout between
    two bytes of a dripping body got the bare message.)
    """
    clock = ManualClock()

    class TimesOut(httpx.SyncByteStream, httpx2.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b"first"
            clock.advance(3.0 if cap_passed else 0.5)
            raise lib.ReadTimeout("timed out")

    inner = lib.MockTransport(lambda request: lib.Response(200, stream=TimesOut()))
    transport = ResilientTransport(inner, total_timeout=2.0, clock=clock)
    with lib.Client(transport=transport) as client, pytest.raises(lib.ReadTimeout) as caught:
        client.get("http://api.test/drips")
    if cap_passed:
        assert str(caught.value) == (
            "total_timeout=2 s passed while reading the body of GET api.test"
        )
        assert str(caught.value.__cause__) == "timed out"
    else:
        assert str(caught.value) == "timed out"


@pytest.mark.parametrize("lib", LIBRARIES, ids=lambda m: m.__name__)
def test_total_timeout_bounds_each_read_of_an_async_body(lib: Any) -> None:
    """Async: a read that stalls (under a transport that ignores timeouts) is cut at the cap.

    Real time: the cap is 0.1 s, the stall 10 s, the claim 5 s.
    """

    async def handler(request: Any) -> Any:
        return lib.Response(200, stream=StallingBody())

    async def main() -> float:
        transport = AsyncResilientTransport(lib.MockTransport(handler), total_timeout=0.1)
        async with lib.AsyncClient(transport=transport) as client:
            started = time.monotonic()
            with pytest.raises(lib.ReadTimeout, match=r"total_timeout=0\.1 s passed"):
                await client.get("http://api.test/stalls")
            return time.monotonic() - started

    assert asyncio.run(main()) < DRIP_CLAIM


def test_total_timeout_stops_before_a_wait_that_would_pass_it(flaky: FlakyServer) -> None:
    """A wait that would end past total_timeout is not started: the 503 is returned."""
    flaky.script("/busy", [], then=Step(503, retry_after="5"))
    clock = ManualClock()
    transport = ResilientTransport(total_timeout=3.0, clock=clock)
    with httpx2.Client(transport=transport) as client:
        assert client.get(flaky.url + "/busy").status_code == 503
    assert clock.sleeps == []
    assert flaky.requests("/busy") == 1


# -- the rules, one by one ------------------------------------------------------------


def scripted(*answers: Any) -> Callable[[Any], Any]:
    """A handler for httpx2.MockTransport: each request gets the next answer."""
    queue = list(answers)
    seen: list[Any] = []

    def handler(request: Any) -> Any:
        seen.append(request)
        answer = queue.pop(0) if queue else 200
        if isinstance(answer, Exception):
            raise answer
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return httpx2.Response(status, headers=headers, json={"n": len(seen)})

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


def mock_client(handler: Callable[[Any], Any], **options: Any) -> httpx2.Client:
    options.setdefault("clock", ManualClock())
    options.setdefault("jitter", False)
    transport = ResilientTransport(httpx2.MockTransport(handler), **options)
    return httpx2.Client(transport=transport, base_url="http://api.test")


@pytest.mark.parametrize("status", [500, 502, 504, 408])
@pytest.mark.parametrize(
    ("method", "retried"), [("GET", True), ("PUT", True), ("DELETE", True), ("POST", False)]
)
def test_other_retryable_statuses_only_for_idempotent_methods(
    status: int, method: str, retried: bool
) -> None:
    """500, 502, 504, 408: retried for idempotent methods, never for a POST."""
    handler = scripted(status)
    with mock_client(handler) as client:
        response = client.request(method, "/x", content=b"{}")
    assert len(handler.seen) == (2 if retried else 1)  # type: ignore[attr-defined]
    assert response.status_code == (200 if retried else status)


@pytest.mark.parametrize("status", [429, 503, 529])
def test_not_processed_statuses_are_retried_for_a_post(status: int) -> None:
    """429, 503, 529: the request was not acted on; a POST is sent again."""
    handler = scripted(status)
    with mock_client(handler) as client:
        assert client.post("/x", content=b"{}").status_code == 200
    assert len(handler.seen) == 2  # type: ignore[attr-defined]


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE", "POST", "PATCH"]),
    status=st.sampled_from([400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504, 529]),
    idempotent=st.booleans(),
    key=st.booleans(),
)
def test_which_answers_are_retried_for_which_requests(
    method: str, status: int, idempotent: bool, key: bool
) -> None:
    """429/503/529 always; 408/500/502/504 only when idempotent (method, flag or key); 4xx never."""
    handler = scripted(status)
    headers = {"Idempotency-Key": "k"} if key else {}
    with mock_client(handler, idempotent=idempotent) as client:
        response = client.request(method, "/x", headers=headers)
    may_resend = method in IDEMPOTENT_METHODS or idempotent or key
    retried = status in (429, 503, 529) or (status in (408, 500, 502, 504) and may_resend)
    assert len(handler.seen) == (2 if retried else 1)  # type: ignore[attr-defined]
    assert response.status_code == (200 if retried else status)


def test_x_should_retry_true_retries_a_post_and_false_stops_anything() -> None:
    """x-should-retry: true on a 409 POST is retried; false on a 503 GET is returned at once."""
    handler = scripted((409, {"x-should-retry": "true"}))
    with mock_client(handler) as client:
        assert client.post("/x", content=b"{}").status_code == 200
    assert len(handler.seen) == 2  # type: ignore[attr-defined]
    handler = scripted((503, {"x-should-retry": "false"}))
    with mock_client(handler) as client:
        assert client.get("/x").status_code == 503
    assert len(handler.seen) == 1  # type: ignore[attr-defined]


def test_max_retry_after_sets_the_longest_server_wait_honoured() -> None:
    """max_retry_after=10: a Retry-After of 10 s is waited out (beyond max_delay=1), one of
    11 s is not: that 429 is returned at once."""
    clock = ManualClock()
    handler = scripted((429, {"retry-after": "10"}), (429, {"retry-after": "11"}))
    with mock_client(handler, max_retry_after=10, max_delay=1.0, clock=clock) as client:
        assert client.post("/v1/chat").status_code == 429
    assert clock.sleeps == [10.0]
    assert len(handler.seen) == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("error", "unsent"),
    [
        (httpx2.ConnectError("refused"), True),
        (httpx2.ConnectTimeout("no connection in time"), True),
        (httpx2.PoolTimeout("no pooled connection free"), True),
        (httpx2.ReadTimeout("no answer in time"), False),
        (httpx2.ReadError("connection reset"), False),
        (httpx2.WriteError("broken pipe"), False),
        (httpx2.RemoteProtocolError("server hung up"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
@pytest.mark.parametrize("idempotent", [False, True])
def test_a_post_is_resent_after_errors_before_sending_only(
    error: Exception, unsent: bool, idempotent: bool
) -> None:
    """Connect errors and timeouts, pool timeouts: nothing was sent, a POST is sent again.
    After sending (read, write, a hang-up), only with idempotent=True."""
    handler = scripted(error)
    with mock_client(handler, idempotent=idempotent) as client:
        if unsent or idempotent:
            assert client.post("/x", content=b"{}").status_code == 200
        else:
            with pytest.raises(type(error)):
                client.post("/x", content=b"{}")
    assert len(handler.seen) == (2 if unsent or idempotent else 1)  # type: ignore[attr-defined]


def test_read_errors_are_retried_only_for_idempotent_requests() -> None:
    """A read error after sending: a GET is retried, a POST raises at once."""
    for method, calls in (("GET", 2), ("POST", 1)):
        handler = scripted(httpx2.ReadError("connection reset"))
        with mock_client(handler) as client:
            if calls == 1:
                with pytest.raises(httpx2.ReadError):
                    client.request(method, "/x")
            else:
                assert client.request(method, "/x").status_code == 200
        assert len(handler.seen) == calls  # type: ignore[attr-defined]


def test_fatal_errors_are_raised_at_once() -> None:
    """An error classified FATAL (a bad URL) is raised untouched, without a note."""
    error = httpx2.UnsupportedProtocol("ftp is not supported")
    handler = scripted(error)
    with mock_client(handler) as client, pytest.raises(httpx2.UnsupportedProtocol) as caught:
        client.get("/x")
    assert caught.value is error
    assert not getattr(error, "__notes__", [])


def test_exhausted_error_is_raised_with_a_note() -> None:
    """Connection errors every time: the last one is raised, noting the attempts."""
    handler = scripted(*[httpx2.ConnectError("refused") for _ in range(4)])
    with mock_client(handler) as client, pytest.raises(httpx2.ConnectError) as caught:
        client.get("/x")
    assert caught.value.__notes__[-1].startswith("resilient: 4 attempts over")
    assert "(retries exhausted)" in caught.value.__notes__[-1]


def test_the_budget_stops_retries() -> None:
    """A RetryBudget that refuses: no retry, the 503 returned."""
    budget = RetryBudget(max_tokens=2, token_ratio=0.1)
    handler = scripted(503, 503, 503)
    with mock_client(handler, budget=budget) as client:
        assert client.get("/x").status_code == 503
    assert len(handler.seen) == 1  # type: ignore[attr-defined]


def test_successes_refill_the_budget() -> None:
    """Each answer below 400 gives the budget back its token_ratio: retries are allowed again."""
    budget = RetryBudget(max_tokens=4, token_ratio=2)
    budget.record_failure(), budget.record_failure()  # 2 of 4 left: a retry is refused
    with mock_client(scripted(200, 503), budget=budget) as client:
        assert client.get("/x").status_code == 200
        assert budget.tokens == 4.0
        assert client.get("/x").status_code == 200  # the 503 is retried now
    assert budget.tokens == 4.0  # 4 - 1 (the 503) + 2 (the 200), at most 4


def test_the_testing_switches_apply() -> None:
    """no_wait() makes the waits zero; cap_attempts(2) stops at two attempts."""
    clock = ManualClock()
    handler = scripted(503, 503, 503)
    with no_wait(), mock_client(handler, clock=clock) as client:
        assert client.get("/x").status_code == 200
    assert clock.sleeps == []
    handler = scripted(503, 503, 503)
    with cap_attempts(2), mock_client(handler) as client:
        assert client.get("/x").status_code == 503
    assert len(handler.seen) == 2  # type: ignore[attr-defined]


class LongBody(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A failed response's body of 1 MiB, still to be read: counts what is read, and closing."""

    CHUNK = 16384

    def __init__(self) -> None:
        self.read = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(64):
            self.read += self.CHUNK
            yield b"x" * self.CHUNK

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self:
            yield chunk

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_failing_response_is_drained_within_the_limit_and_closed(mode: str) -> None:
    """Between attempts the failed response is read, at most DRAIN_LIMIT bytes of it, and closed."""
    bodies: list[LongBody] = []

    def handler(request: Any) -> Any:
        if bodies:
            return httpx2.Response(200)
        bodies.append(LongBody())
        return httpx2.Response(503, stream=bodies[0])

    if mode == "sync":
        with mock_client(handler) as client:
            assert client.get("/x").status_code == 200
    else:

        async def main() -> int:
            transport = AsyncResilientTransport(
                httpx2.MockTransport(handler), jitter=False, clock=ManualClock()
            )
            async with httpx2.AsyncClient(
                transport=transport, base_url="http://api.test"
            ) as client:
                return (await client.get("/x")).status_code

        assert asyncio.run(main()) == 200
    (body,) = bodies
    assert body.closed
    assert DRAIN_LIMIT <= body.read < DRAIN_LIMIT + LongBody.CHUNK  # not the whole 1 MiB


def test_a_breaker_counts_failing_responses_but_not_fatal_ones() -> None:
    """A 503 counts against the breaker; a 404 (FATAL) is ignored; a 200 resets it."""
    breaker = CircuitBreaker(failure_threshold=3, name="api")
    handler = scripted(503, 404, 200)
    with mock_client(handler, max_retries=0, breaker=breaker) as client:
        client.get("/x")
        assert breaker.failures == 1
        client.get("/x")
        assert breaker.failures == 1
        client.get("/x")
        assert breaker.failures == 0


def test_an_open_breaker_raises_circuit_open_error_from_send() -> None:
    """An open circuit: CircuitOpenError from the client's call, nothing sent."""
    breaker = CircuitBreaker(failure_threshold=1, name="down")
    breaker.trip()
    handler = scripted()
    clock = ManualClock()
    with (
        mock_client(handler, breaker=breaker, clock=clock) as client,
        pytest.raises(CircuitOpenError) as caught,
    ):
        client.get("/x")
    assert handler.seen == []  # type: ignore[attr-defined]
    assert clock.sleeps == []  # rejected: not waited for and tried again
    assert not getattr(caught.value, "__notes__", [])


def _send_through(mode: str, handler: Callable[[Any], Any], **options: Any) -> Any:
    """GET /x through ResilientTransport (sync) or AsyncResilientTransport (async)."""
    options.setdefault("jitter", False)
    if mode == "sync":
        with mock_client(handler, **options) as client:
            return client.get("/x")

    async def answer(request: Any) -> Any:
        return handler(request)

    async def main() -> Any:
        transport = AsyncResilientTransport(httpx2.MockTransport(answer), **options)
        async with httpx2.AsyncClient(transport=transport, base_url="http://api.test") as client:
            return await client.get("/x")

    return asyncio.run(main())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_response_that_opens_the_circuit_is_returned_without_a_wait(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The second 503 opens the circuit: no wait for an attempt that could only be rejected,
    and that 503 is returned as it came (as when retries run out), not a CircuitOpenError."""
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=60.0, name="api", clock=clock)
    handler = scripted(503, 503, 503, 503)
    with caplog.at_level(logging.WARNING, "resilient.retry"):
        response = _send_through(mode, handler, breaker=breaker, base_delay=10, clock=clock)
    assert response.status_code == 503
    assert response.json() == {"n": 2}  # the answer that opened it, its body intact
    assert len(handler.seen) == 2  # type: ignore[attr-defined]
    assert clock.sleeps == [10.0]  # the wait before attempt 2; none after it opened
    assert breaker.is_open
    assert [r.getMessage() for r in caplog.records if r.name == "resilient.retry"] == [
        "retrying GET api.test in 10 s (attempt 2 of 4) after 503 Service Unavailable",
        "giving up on GET api.test after 2 attempts over 10.000 s (circuit 'api' is open for "
        "60 s more): 503 Service Unavailable; the last response is returned",
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_error_that_opens_the_circuit_is_raised_without_a_wait(mode: str) -> None:
    """A connect error that opens the circuit is raised itself (pybreaker #60), with a note
    saying why the call ended, and no wait is started."""
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=60.0, name="api", clock=clock)
    refused = [httpx2.ConnectError("connection refused") for _ in range(4)]
    handler = scripted(*refused)
    with pytest.raises(httpx2.ConnectError) as caught:
        _send_through(mode, handler, breaker=breaker, base_delay=10, clock=clock)
    assert caught.value is refused[1]
    assert clock.sleeps == [10.0]
    assert caught.value.__notes__ == [
        "resilient: 2 attempts over 10.000 s (circuit 'api' is open for 60 s more)"
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("last", "ending", "outcome"),
    [
        (503, "the last response is returned", "returned"),
        (httpx2.ConnectError("connection refused"), "the last error is raised", "raised"),
    ],
    ids=["response", "error"],
)
def test_the_give_up_line_says_whether_the_response_is_returned_or_the_error_raised(
    mode: str, last: Any, ending: str, outcome: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As ``@retry``'s: the message ends with what happens next, and ``outcome`` says the same."""
    handler = scripted(503, last)
    with caplog.at_level(logging.ERROR, "resilient.retry"):
        if outcome == "raised":
            with pytest.raises(httpx2.ConnectError):
                _send_through(mode, handler, max_retries=1, clock=ManualClock())
        else:
            assert (
                _send_through(mode, handler, max_retries=1, clock=ManualClock()).status_code == 503
            )
    (line,) = [r for r in caplog.records if getattr(r, "event", None) == "retry_gave_up"]
    assert line.getMessage().endswith(f"; {ending}")
    assert getattr(line, "outcome") == outcome  # noqa: B009 - an ``extra`` field


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_circuit_that_admits_a_trial_before_the_wait_ends_is_waited_for(mode: str) -> None:
    """Open for 5 s, a 20 s wait: the next attempt is the half-open trial, so it is made."""
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=5.0, name="api", clock=clock)
    handler = scripted(503, 503, 200)
    response = _send_through(mode, handler, breaker=breaker, base_delay=10, clock=clock)
    assert response.status_code == 200
    assert clock.sleeps == [10.0, 20.0]
    assert not breaker.is_open


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_circuit_opened_by_others_during_the_wait_ends_the_call_at_the_rejection(
    mode: str,
) -> None:
    """Another caller opens the circuit while this call waits: the next attempt is rejected
    (nothing sent) and the CircuitOpenError is raised with a note, not waited out again."""

    class TrippedWhileWaiting(ManualClock):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            breaker.trip()

        async def asleep(self, seconds: float) -> None:
            await super().asleep(seconds)
            breaker.trip()

    clock = TrippedWhileWaiting()
    breaker = CircuitBreaker(failure_threshold=5, name="api", clock=clock)
    handler = scripted(503, 503, 503, 503)
    with pytest.raises(CircuitOpenError) as caught:
        _send_through(mode, handler, breaker=breaker, base_delay=10, clock=clock)
    assert len(handler.seen) == 1  # type: ignore[attr-defined]
    assert clock.sleeps == [10.0]
    assert caught.value.__notes__ == [
        "resilient: 1 attempt over 10.000 s (then the circuit opened)"
    ]


def test_the_async_transport_counts_on_the_breaker_and_rejects() -> None:
    """AsyncResilientTransport: 503s count on the breaker; once open, CircuitOpenError, nothing sent."""
    seen: list[Any] = []

    async def handler(request: Any) -> Any:
        seen.append(request)
        return httpx2.Response(503)

    breaker = CircuitBreaker(failure_threshold=2, name="async-api")

    async def main() -> None:
        transport = AsyncResilientTransport(
            httpx2.MockTransport(handler), max_retries=1, breaker=breaker, clock=ManualClock()
        )
        async with httpx2.AsyncClient(transport=transport, base_url="http://api.test") as client:
            assert (await client.get("/x")).status_code == 503
            with pytest.raises(CircuitOpenError):
                await client.get("/x")

    asyncio.run(main())
    assert len(seen) == 2
    assert breaker.is_open


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_429_pauses_the_limiter_for_every_caller_up_to_max_retry_after(mode: str) -> None:
    """A 429's Retry-After pauses the limiter the transport shares with other callers for that
    long; a longer ask than max_retry_after (120 s) pauses it 120 s, not what was asked."""
    clock = ManualClock()
    limiter = RateLimiter(100, burst=100, name="llm", clock=clock)
    handler = scripted((429, {"retry-after": "2"}), (429, {"retry-after": "600"}))
    options: dict[str, Any] = {"limiter": limiter, "max_retries": 0, "clock": clock}
    held: list[bool] = []

    def after_each(status: int, advance: float) -> None:
        """The call's status, then whether another caller is held now and after *advance*."""
        assert status == 429
        held.append(not limiter.try_acquire())
        clock.advance(advance)
        held.append(not limiter.try_acquire())

    if mode == "sync":
        with mock_client(handler, **options) as client:
            after_each(client.post("/v1/chat").status_code, 2.0)
            after_each(client.post("/v1/chat").status_code, 119.0)
            clock.advance(1.0)
    else:

        async def main() -> None:
            transport = AsyncResilientTransport(httpx2.MockTransport(handler), **options)
            async with httpx2.AsyncClient(
                transport=transport, base_url="http://api.test"
            ) as client:
                after_each((await client.post("/v1/chat")).status_code, 2.0)
                after_each((await client.post("/v1/chat")).status_code, 119.0)
            clock.advance(1.0)

        asyncio.run(main())
    assert held == [True, False, True, True]
    assert limiter.try_acquire()  # 120 s after the second 429, not 600


def test_logs_name_method_and_host_never_path_or_query(caplog: pytest.LogCaptureFixture) -> None:
    """Each retry line reads on its own and is labelled by method and host only."""
    handler = scripted(503, 503)
    with caplog.at_level(logging.WARNING, "resilient.retry"), mock_client(handler) as client:
        client.get("/users/42/secret?token=abc")
    retry_lines = [r for r in caplog.records if r.name == "resilient.retry"]
    assert [r.getMessage() for r in retry_lines] == [
        "retrying GET api.test in 0.5 s (attempt 2 of 4) after 503 Service Unavailable",
        "retrying GET api.test in 1 s (attempt 3 of 4) after 503 Service Unavailable",
    ]
    for record in retry_lines:
        assert record.function == "GET api.test"  # type: ignore[attr-defined]
        assert (record.method, record.host) == ("GET", "api.test")  # type: ignore[attr-defined]
        assert "secret" not in str(record.__dict__)
        assert "token" not in str(record.__dict__)


def test_a_529_reads_as_overloaded_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """529 has no registered reason phrase (and HTTP/2 sends none): the line says Overloaded."""
    with caplog.at_level(logging.WARNING, "resilient.retry"), mock_client(scripted(529)) as client:
        client.post("/v1/messages")
    assert [r.getMessage() for r in caplog.records] == [
        "retrying POST api.test in 0.5 s (attempt 2 of 4) after 529 Overloaded"
    ]
    assert caplog.records[0].error == "529 Overloaded"  # type: ignore[attr-defined]


def test_giving_up_is_logged_with_what_the_server_asked(caplog: pytest.LogCaptureFixture) -> None:
    """A Retry-After beyond max_retry_after: one ERROR line saying so, the response returned."""
    handler = scripted((429, {"retry-after": "600"}))
    with caplog.at_level(logging.ERROR, "resilient.retry"), mock_client(handler) as client:
        assert client.post("/v1/chat").status_code == 429
    (record,) = caplog.records
    assert record.getMessage() == (
        "giving up on POST api.test after 1 attempt over 0.000 s (the server asked to wait "
        "600 s (Retry-After), more than max_retry_after=120 s): 429 Too Many Requests; the "
        "last response is returned"
    )


def test_telemetry_counts_retries_by_method_and_host() -> None:
    """The retries are counted under function="GET api.test", like @retry's."""
    prometheus_client = pytest.importorskip("prometheus_client")
    from resilient import telemetry

    registry = prometheus_client.CollectorRegistry()
    telemetry.enable_prometheus(registry=registry)
    try:
        with mock_client(scripted(503, 503)) as client:
            client.get("/x?key=1")
        value = registry.get_sample_value(
            "resilient_retries_total", {"function": "GET api.test", "error_class": "degraded"}
        )
    finally:
        telemetry.disable()
    assert value == 2.0


# -- construction ---------------------------------------------------------------------


@pytest.mark.parametrize("transport_type", [ResilientTransport, AsyncResilientTransport])
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_retries": -1}, ValueError, "max_retries must be >= 0, got -1"),
        ({"max_retries": 2.5}, TypeError, "max_retries must be an int, got 2.5"),
        ({"base_delay": -1.0}, ValueError, "base_delay must be a finite number >= 0, got -1.0"),
        ({"max_delay": float("nan")}, ValueError, "max_delay must be a finite number >= 0"),
        (
            {"max_retry_after": -5},
            ValueError,
            "max_retry_after must be a finite number >= 0, got -5",
        ),
        ({"total_timeout": 0}, ValueError, "total_timeout must be a finite number > 0, got 0"),
        (
            {"total_timeout": "9"},
            TypeError,
            "total_timeout must be a number of seconds or None, got '9'",
        ),
        ({"total_timeout": 1e10}, ValueError, "total_timeout must be at most 315576000 s"),
        ({"max_retry_after": 1e10}, ValueError, "max_retry_after must be at most 315576000 s"),
        ({"idempotent": "yes"}, TypeError, "idempotent must be True or False, got 'yes'"),
        ({"breaker": object()}, TypeError, "breaker must be a CircuitBreaker or None"),
        ({"budget": 3}, TypeError, "budget must have record_failure() and record_success(), got 3"),
        ({"classifier": "x"}, TypeError, "classifier must be callable, got 'x'"),
        ({"clock": 1}, TypeError, "clock must provide monotonic()"),
        ({"jitter": "no"}, TypeError, "jitter must be True, False or a jitter strategy"),
        ({"transport": "x"}, TypeError, "transport must be an httpx or httpx2"),
        ({"limiter": 1}, TypeError, "limiter must be a RateLimiter or None, got 1"),
        (
            {"concurrency": 1},
            TypeError,
            "concurrency must be a ConcurrencyLimit or None, got 1",
        ),
        ({"jitter": None}, TypeError, "jitter must be True, False or a jitter strategy"),
        ({"base_delay": 5.0, "max_delay": 1.0}, ValueError, "base_delay must be <= max_delay"),
        ({"total_timeout": True}, TypeError, "total_timeout must be a number of seconds"),
    ],
)
def test_bad_settings_are_refused_at_construction(
    transport_type: Any, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Each bad setting raises at construction, naming the parameter and the value."""
    with pytest.raises(error) as caught:
        transport_type(**options)
    assert message in str(caught.value)


def test_durations_accept_timedelta() -> None:
    """max_delay, max_retry_after and total_timeout take a timedelta too."""
    from datetime import timedelta

    transport = ResilientTransport(
        max_delay=timedelta(seconds=5),
        max_retry_after=timedelta(minutes=1),
        total_timeout=timedelta(seconds=30),
    )
    assert "max_retry_after=60.0, total_timeout=30.0" in repr(transport)


def test_the_httpx_extra_pulls_no_client() -> None:
    """``resilient-kit[httpx]`` requires nothing: the user chooses httpx or httpx2 (an SDK brings
    httpx2), and never gets a second HTTP client.

    Read from pyproject.toml, the source: an editable install's metadata keeps what the
    tree said when it was installed (the built wheel's is checked by
    tests/packaging/check_wheel.py).
    """
    with (Path(__file__).resolve().parent.parent / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    assert project["optional-dependencies"]["httpx"] == []
    clients = [r for r in project["dependencies"] if re.match(r"httpx", r, re.IGNORECASE)]
    assert clients == []


def test_import_without_httpx_or_httpx2_names_the_extra() -> None:
    """Without either client, importing resilient.httpx says what to install."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['httpx'] = None; sys.modules['httpx2'] = None\n"
            "import resilient.httpx",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode != 0
    assert "ImportError: resilient.httpx needs httpx (>= 0.27) or httpx2 (>= 2)" in done.stderr
    assert "resilient-kit[httpx]" in done.stderr


def test_import_resilient_does_not_import_resilient_httpx() -> None:
    """``import resilient`` loads neither this module nor the clients."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, resilient; print(sorted(m for m in ('resilient.httpx', 'httpx', "
            "'httpx2') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    assert done.stdout.strip() == "[]"
