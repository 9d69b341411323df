"""resilient.http against a real scripted server on loopback: no mocks of requests."""

from __future__ import annotations

import contextlib
import logging
import pickle
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3.response
from urllib3.util.timeout import Timeout

from resilient import ErrorClass, classify, retry, retry_after
from resilient.http import (
    ResilientAdapter,
    ResilientSession,
    TotalTimeout,
    _Watch,
    create_resilient_session,
    get_json_or_none,
)
from resilient.testing import ManualClock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from flaky_server import FlakyServer, Step

MakeSession = Callable[..., requests.Session]


# Real time as the claim: a cut at a cap or timeout of tenths of a second is asserted
# to fall long before what would happen without it (an answer, the end of a body, 10 s
# away), with LONG_BEFORE's margin: on a busy machine a process can stall for seconds
# (2.8 s seen under .ci/busy, against a bound of 1 s). Lower bounds need no margin.
SLOW_ANSWER = 10.0  # seconds until /slow answers and until a /drip body (200 bytes) ends
LONG_BEFORE = 5.0

# The tests that cut a body at the cap need its headers, sent at once, to come within
# it. The cap is short, so that each of them waits a fraction of a second; when a busy
# machine held the request or the headers past it, the run proves nothing and is
# repeated with the cap doubled. Lower bounds at the cap need no margin: 0.9 x the cap.
BODY_CAPS = (0.2, 0.4, 0.8, 1.6)
# So a body cut at the cap lasts longer than the last of them (10 s), and the read
# timeout (LONG_BEFORE) is longer too: at 1.6 s a 1 s body or read timeout would win.


class _Late(Exception):
    """The cap passed before the headers came (a busy machine): the run proves nothing."""


def _late_if_before_the_headers(error: BaseException) -> None:
    """Raise ``_Late`` if *error* is a cut before the response, or a request never sent."""
    if isinstance(error, TotalTimeout) and re.search(r"before the response|not sent: ", str(error)):
        raise _Late from error


def _headers(send: Callable[..., requests.Response], *args: Any, **kwargs: Any) -> Any:
    """``send(*args, **kwargs)``; a cut before its headers raised as ``_Late``."""
    try:
        return send(*args, **kwargs)
    except TotalTimeout as exc:
        _late_if_before_the_headers(exc)
        raise


def _under_a_cap_the_headers_beat(run: Callable[[float], None]) -> None:
    """``run(cap)`` for each cap of BODY_CAPS in turn, until a run is not ``_Late``."""
    for cap in BODY_CAPS:
        try:
            run(cap)
        except _Late:
            continue
        return
    raise AssertionError(f"the headers never came within a cap of {BODY_CAPS} s")


@pytest.fixture(scope="module")
def _server() -> Iterator[FlakyServer]:
    with FlakyServer(drip_interval=0.05, drip_size=200, slow_delay=SLOW_ANSWER) as server:
        yield server


@pytest.fixture
def flaky_server(_server: FlakyServer) -> FlakyServer:
    """The module's scripted server, with default scripts and zeroed counters."""
    _server.reset()
    return _server


@pytest.fixture
def make_session() -> Iterator[MakeSession]:
    """``create_resilient_session`` whose sessions are closed after the test."""
    sessions: list[requests.Session] = []

    def make(**kwargs: Any) -> requests.Session:
        session = create_resilient_session(**kwargs)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def refused_url(refused_port: int) -> str:
    """A loopback URL nobody listens on: connecting is refused at once."""
    return f"http://127.0.0.1:{refused_port}/"


def _counted(server: FlakyServer, path: str) -> int:
    """``server.requests(path)`` once it is at least 1: a client that gave up
    after sending may be faster than the server thread reading the request."""
    give_up = time.monotonic() + 10.0
    while server.requests(path) == 0 and time.monotonic() < give_up:
        time.sleep(0.005)
    return server.requests(path)


def _is_busy(response: requests.Response) -> bool:
    return response.status_code in (429, 503)


# -- retrying by status ----------------------------------------------------


def test_429_retried_by_result_honours_retry_after(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """A returned 429 is retried after the Retry-After it carries, then the 200 returned."""
    session, clock = make_session(), ManualClock()

    @retry(retry_on_result=_is_busy, base_delay=0.1, jitter=False, clock=clock)
    def fetch() -> requests.Response:
        return session.get(flaky_server.url + "/rate-limited")

    response = fetch()
    assert response.status_code == 200
    assert clock.sleeps == [1.0, 1.0]
    assert flaky_server.requests("/rate-limited") == 3


def test_429_raised_by_get_json_or_none_honours_retry_after(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """The HTTPError of a 429 carries its response, so @retry waits what it asks."""
    session, clock = make_session(), ManualClock()
    fetch = retry(base_delay=0.1, jitter=False, clock=clock)(get_json_or_none)
    assert fetch(session, flaky_server.url + "/rate-limited") == {
        "path": "/rate-limited",
        "attempt": 3,
    }
    assert clock.sleeps == [1.0, 1.0]


def test_retry_after_beyond_max_delay_is_waited_out_through_the_session(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """A real 429 with Retry-After: 90 under max_delay=1 is waited in full, then retried once."""
    flaky_server.script("/slow-down", [Step(429, retry_after="90")], then=200)
    session, clock = make_session(), ManualClock()
    fetch = retry(max_delay=1.0, jitter=False, clock=clock)(get_json_or_none)
    assert fetch(session, flaky_server.url + "/slow-down") == {"path": "/slow-down", "attempt": 2}
    assert clock.sleeps == [90.0]
    assert flaky_server.requests("/slow-down") == 2


def test_retry_after_of_an_hour_through_the_session_gives_up_at_once(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """A real 503 with Retry-After: 3600 is raised after one request, saying what was asked."""
    flaky_server.script("/maintenance", [], then=Step(503, retry_after="3600"))
    session, clock = make_session(), ManualClock()
    fetch = retry(clock=clock)(get_json_or_none)
    with pytest.raises(requests.HTTPError) as caught:
        fetch(session, flaky_server.url + "/maintenance")
    assert flaky_server.requests("/maintenance") == 1
    assert clock.sleeps == []
    assert "the server asked to wait 3600 s (Retry-After)" in caught.value.__notes__[0]


def test_a_long_retry_after_pauses_the_session_limiter_at_most_max_retry_after(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """A 503 asking for an hour pauses the session's shared limiter 120 s (the default
    max_retry_after, as the retries' own rule), not an hour: the server's ask is a hint."""
    from resilient import RateLimiter

    flaky_server.script("/down-for-an-hour", [], then=Step(503, retry_after="3600"))
    clock = ManualClock()
    limiter = RateLimiter(100, burst=100, clock=clock)
    session = make_session(limiter=limiter)
    assert session.get(flaky_server.url + "/down-for-an-hour").status_code == 503
    clock.advance(119.0)
    assert not limiter.try_acquire()
    clock.advance(1.0)
    assert limiter.try_acquire()


def test_503_then_success(flaky_server: FlakyServer, make_session: MakeSession) -> None:
    """DEGRADED answers are retried until the service recovers."""
    flaky_server.script("/flaky", [503, 503], then=200)
    session, clock = make_session(), ManualClock()
    fetch = retry(base_delay=0.5, jitter=False, clock=clock)(get_json_or_none)
    assert fetch(session, flaky_server.url + "/flaky") == {"path": "/flaky", "attempt": 3}
    assert clock.sleeps == [1.0, 1.0]  # Retry-After: 1 wins over the 0.5 s and 1 s planned
    assert flaky_server.requests("/flaky") == 3


def test_401_is_not_retried(flaky_server: FlakyServer, make_session: MakeSession) -> None:
    """A FATAL status is raised at once: the server sees exactly one request."""
    session, clock = make_session(), ManualClock()
    fetch = retry(clock=clock)(get_json_or_none)
    with pytest.raises(requests.HTTPError) as caught:
        fetch(session, flaky_server.url + "/private")
    assert caught.value.response is not None
    assert caught.value.response.status_code == 401
    assert flaky_server.requests("/private") == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (429, ErrorClass.TRANSIENT),
        (500, ErrorClass.DEGRADED),
        (503, ErrorClass.DEGRADED),
        (504, ErrorClass.TIMEOUT),
        (401, ErrorClass.FATAL),
        (409, ErrorClass.FATAL),
    ],
)
def test_raise_for_status_errors_classify_by_status(
    flaky_server: FlakyServer, make_session: MakeSession, status: int, expected: ErrorClass
) -> None:
    """The HTTPError of a real response is classified by its status code."""
    flaky_server.script("/status", [], then=status)
    response = make_session().get(flaky_server.url + "/status")
    with pytest.raises(requests.HTTPError) as caught:
        response.raise_for_status()
    assert classify(caught.value) is expected


def test_returned_503_is_retried_then_the_last_response_returned(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """When attempts run out on rejected results, the last response is returned, not raised."""
    session, clock = make_session(), ManualClock()

    @retry(max_retries=2, retry_on_result=_is_busy, jitter=False, clock=clock)
    def fetch() -> requests.Response:
        return session.get(flaky_server.url + "/dead")

    assert fetch().status_code == 503
    assert flaky_server.requests("/dead") == 3
    assert clock.sleeps == [1.0, 2.0]  # max(Retry-After 1, 1 s), then max(1, 2 s)


# -- connection failures ---------------------------------------------------


def test_connection_reset_is_retried_by_retry(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """A reset after the request was sent is TRANSIENT for @retry, which tries again."""
    session, clock = make_session(), ManualClock()
    fetch = retry(clock=clock)(get_json_or_none)
    assert fetch(session, flaky_server.url + "/reset") == {"path": "/reset", "attempt": 2}
    assert len(clock.sleeps) == 1


def test_connection_reset_is_not_retried_by_the_adapter(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """The request reached the server: the adapter raises, it does not resend."""
    with pytest.raises(requests.ConnectionError) as caught:
        make_session().get(flaky_server.url + "/reset")
    assert classify(caught.value) is ErrorClass.TRANSIENT
    assert flaky_server.requests("/reset") == 1


@pytest.mark.parametrize("connect_retries", [0, 1, 3])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_refused_connection_is_retried_connect_retries_times(
    make_session: MakeSession,
    refused_url: str,
    caplog: pytest.LogCaptureFixture,
    connect_retries: int,
    method: str,
) -> None:
    """Nothing was sent, so the adapter retries a refused connection for any method."""
    session = make_session(connect_retries=connect_retries)
    with (
        caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"),
        pytest.raises(requests.ConnectionError) as caught,
    ):
        session.request(method, refused_url, data=b"x")
    retries = [r for r in caplog.records if r.getMessage().startswith("Retrying")]
    assert len(retries) == connect_retries
    assert not isinstance(caught.value, requests.Timeout)
    assert classify(caught.value) is ErrorClass.TRANSIENT


@pytest.mark.parametrize(
    ("method", "expected"),
    [("POST", ErrorClass.FATAL), ("PATCH", ErrorClass.FATAL), ("GET", ErrorClass.TIMEOUT)],
)
def test_read_timeout_is_never_retried_by_the_adapter(
    flaky_server: FlakyServer, make_session: MakeSession, method: str, expected: ErrorClass
) -> None:
    """The server may have acted on it: one request, then a ReadTimeout.

    TIMEOUT for an idempotent method; FATAL for one that is not, so that
    @retry does not send it again either.
    """
    session = make_session(read_timeout=0.05)
    with pytest.raises(requests.ReadTimeout) as caught:
        session.request(method, flaky_server.url + "/slow", json={"order": 1})
    assert classify(caught.value) is expected
    assert _counted(flaky_server, "/slow") == 1


def test_post_reset_after_sending_is_not_resent(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """A POST whose connection broke after sending is raised, never sent twice."""
    flaky_server.script("/echo", ["reset"], then="echo")
    with pytest.raises(requests.ConnectionError):
        make_session(connect_retries=5).post(flaky_server.url + "/echo", data=b"pay 10 EUR")
    assert flaky_server.requests("/echo") == 1


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize(
    ("path", "settings", "error"),
    [
        ("/pay", {}, requests.ConnectionError),
        ("/slow", {"read_timeout": 0.05}, requests.ReadTimeout),
        ("/slow", {"total_timeout": 0.3}, TotalTimeout),
    ],
    ids=["reset", "read-timeout", "total-timeout"],
)
def test_non_idempotent_request_that_reached_the_server_is_not_retried_by_retry(
    flaky_server: FlakyServer,
    make_session: MakeSession,
    method: str,
    path: str,
    settings: dict[str, float],
    error: type[Exception],
) -> None:
    """@retry around the session never resends a POST or PATCH the server may have acted on."""
    flaky_server.script("/pay", ["reset"], then="echo")
    session, clock = make_session(**settings), ManualClock()

    @retry(max_retries=2, clock=clock)
    def pay() -> requests.Response:
        return session.request(method, flaky_server.url + path, data=b"pay 10 EUR")

    with pytest.raises(error) as caught:
        pay()
    assert _counted(flaky_server, path) == 1
    assert clock.sleeps == []
    assert classify(caught.value) is ErrorClass.FATAL
    assert any("not idempotent" in note for note in getattr(caught.value, "__notes__", []))


def test_non_idempotent_request_refused_before_sending_is_retried_by_retry(
    make_session: MakeSession, refused_url: str
) -> None:
    """Nothing reached the server: a refused POST stays TRANSIENT and @retry tries again."""
    session, clock = make_session(connect_retries=0), ManualClock()

    @retry(max_retries=2, clock=clock)
    def pay() -> requests.Response:
        return session.post(refused_url, data=b"pay 10 EUR")

    with pytest.raises(requests.ConnectionError) as caught:
        pay()
    assert len(clock.sleeps) == 2
    assert classify(caught.value) is ErrorClass.TRANSIENT
    assert not hasattr(caught.value, "error_class")


# -- timeouts ---------------------------------------------------------------


def test_default_read_timeout_is_applied(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """A call without timeout= gets the session's read timeout."""
    session = make_session(read_timeout=0.05)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        session.get(flaky_server.url + "/slow")
    assert time.monotonic() - started < LONG_BEFORE


@pytest.mark.parametrize("timeout", [(1.0, 0.05), 0.05])
def test_a_shorter_per_call_timeout_is_respected(
    flaky_server: FlakyServer, make_session: MakeSession, timeout: Any
) -> None:
    """timeout= on the call replaces the session's 30 s default read timeout."""
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        make_session().get(flaky_server.url + "/slow", timeout=timeout)
    assert time.monotonic() - started < LONG_BEFORE


def test_a_longer_per_call_timeout_is_respected(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """A call may wait longer than the session default, within the total cap."""
    flaky_server.script("/slow", [Step(action="slow", delay=0.15)])
    session = make_session(read_timeout=0.05)
    # 10 s, not 1: the 0.15 s answer gets a busy machine's stalls too.
    assert session.get(flaky_server.url + "/slow", timeout=(10.0, 10.0)).status_code == 200


def test_none_in_a_per_call_timeout_means_the_default(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """(connect, None) keeps the default read timeout: the session never waits forever."""
    with pytest.raises(requests.ReadTimeout):
        make_session(read_timeout=0.05).get(flaky_server.url + "/slow", timeout=(1.0, None))


@pytest.mark.parametrize("headers", [{}, {"Connection": "close"}], ids=["keep-alive", "close"])
def test_drip_body_is_cut_at_total_timeout(
    flaky_server: FlakyServer, make_session: MakeSession, headers: dict[str, str]
) -> None:
    """A body dripped for 10 s is cut at the 0.3 s cap, although each byte comes in time."""
    flaky_server.script("/drip", [], then=Step(action="drip", body_size=200, headers=headers))
    session = make_session(read_timeout=1.0, total_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TotalTimeout) as caught:
        session.get(flaky_server.url + "/drip")
    elapsed = time.monotonic() - started
    assert 0.25 < elapsed < LONG_BEFORE
    assert isinstance(caught.value, requests.Timeout)
    assert classify(caught.value) is ErrorClass.TIMEOUT


def test_body_delimited_by_close_is_never_returned_cut_short(
    make_session: MakeSession,
) -> None:
    """With no Content-Length the cut looks like the end of the body: TotalTimeout, not a 200."""

    def run(cap: float) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
        session = make_session(read_timeout=LONG_BEFORE, total_timeout=cap)
        with _one_shot_server(head, b".", 200, 0.05) as url:  # 10 s in all
            with pytest.raises(TotalTimeout) as caught:
                session.get(url)
            _late_if_before_the_headers(caught.value)
            assert str(caught.value).endswith("reading the body"), str(caught.value)

    _under_a_cap_the_headers_beat(run)


@pytest.mark.parametrize(
    "timeout",
    [Timeout(connect=1.0, read=5.0, total=0.2), Timeout(total=0.2)],
    ids=["connect-read-total", "total-only"],
)
def test_a_urllib3_timeout_total_caps_the_request(
    flaky_server: FlakyServer, make_session: MakeSession, timeout: Timeout
) -> None:
    """A caller's urllib3 Timeout(total=...) is honoured as a cap, below total_timeout."""
    session = make_session(read_timeout=10.0, total_timeout=10.0)
    started = time.monotonic()
    with pytest.raises(TotalTimeout, match=r"total=0\.2"):
        session.get(flaky_server.url + "/slow", timeout=timeout)
    assert time.monotonic() - started < LONG_BEFORE
    assert _counted(flaky_server, "/slow") == 1


def test_a_urllib3_timeout_total_never_lifts_total_timeout(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """A total longer than total_timeout does not extend it; its read timeout still applies."""
    session = make_session(total_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(TotalTimeout, match=r"total_timeout=0\.2"):
        session.get(flaky_server.url + "/slow", timeout=Timeout(total=30.0))
    assert time.monotonic() - started < LONG_BEFORE
    with pytest.raises(requests.ReadTimeout):
        make_session().get(flaky_server.url + "/slow", timeout=Timeout(read=0.05, total=30.0))


def test_a_cut_connection_is_not_reused(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """After the cut, the next request opens a fresh connection and works."""
    session = make_session()
    assert session.get(flaky_server.url + "/ok").status_code == 200
    assert session.get(flaky_server.url + "/ok").status_code == 200
    assert flaky_server.connections == 1  # keep-alive: one connection so far
    with pytest.raises(TotalTimeout):
        session.get(flaky_server.url + "/drip", timeout=Timeout(total=0.2))
    assert flaky_server.connections == 1  # the drip reused it...
    assert session.get(flaky_server.url + "/ok").json()["attempt"] == 3
    assert flaky_server.connections == 2  # ...and it was not given back


def test_total_timeout_caps_a_slow_answer_before_the_headers(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """With a read timeout longer than the cap, the cap ends the wait for the headers."""
    session = make_session(read_timeout=5.0, total_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(TotalTimeout):
        session.get(flaky_server.url + "/slow")
    assert time.monotonic() - started < LONG_BEFORE


# -- the cap covers the whole call: redirects, streamed bodies ---------------

TRICKLE_INTERVAL = 0.02  # seconds between two bytes of a trickled body
_HAS_READ1 = hasattr(urllib3.response.HTTPResponse, "read1")  # urllib3 2.x, not 1.26


@pytest.fixture(scope="module")
def _trickle() -> Iterator[FlakyServer]:
    with FlakyServer(drip_interval=TRICKLE_INTERVAL, drip_size=50) as server:
        yield server


@pytest.fixture
def trickle_server(_trickle: FlakyServer) -> FlakyServer:
    """A scripted server whose "drip" bodies come one byte every 20 ms (50 bytes: 1 s)."""
    _trickle.reset()
    return _trickle


def _redirect_chain(server: FlakyServer, hops: list[Step], final: str = "/ok") -> str:
    """Script /hop0 -> /hop1 -> ... -> *final*, hop n playing ``hops[n]``; return the first URL."""
    for n, step in enumerate(hops):
        target = f"/hop{n + 1}" if n + 1 < len(hops) else final
        server.script(
            f"/hop{n}", [], then=replace(step, headers={**step.headers, "Location": target})
        )
    return server.url + "/hop0"


def _slow_redirect(delay: float) -> Step:
    return Step(status=302, action="slow", delay=delay)


def _trickled_redirect(body_size: int) -> Step:
    # The server closes after a drip: say so, or the next hop may race the close.
    return Step(status=302, action="drip", body_size=body_size, headers={"Connection": "close"})


@pytest.mark.parametrize("stream", [False, True], ids=["read", "stream"])
def test_a_chain_of_slow_redirects_shares_one_cap(
    flaky_server: FlakyServer, make_session: MakeSession, stream: bool
) -> None:
    """Four hops of 0.15 s each, every one well within the 0.4 s cap: the call is cut at 0.4 s.

    Where the cut falls depends on the machine (waiting for hop2 on time; for
    hop1, a body, or between hops when it is slow); that it falls after a
    redirect, on the one cap of the whole call, is the claim. A machine that
    stalls past the cap before hop0 answers proves nothing either way (a cap
    per hop would cut it too): that run is repeated, three times at most.
    """
    base = re.escape(flaky_server.url)
    for _run in range(3):
        flaky_server.reset()
        url = _redirect_chain(flaky_server, [_slow_redirect(0.15)] * 3, final="/slow-end")
        flaky_server.script("/slow-end", [], then=Step(action="slow", delay=0.15))
        session = make_session(read_timeout=1.0, total_timeout=0.4)
        started = time.monotonic()
        with pytest.raises(TotalTimeout) as caught:
            session.get(url, stream=stream)
        assert 0.35 < time.monotonic() - started < LONG_BEFORE  # no hang; the claim is counted:
        assert flaky_server.requests("/slow-end") == 0  # the chain takes 0.6 s at least
        if not str(caught.value).startswith(f"GET {flaky_server.url}/hop0 cut off"):
            break
    cut = re.fullmatch(
        rf"GET {base}/hop(\d) (?:cut off after 0\.4 s \(total_timeout=0\.4 s\) "
        rf"(?:before the response|reading the body)|not sent: total_timeout=0\.4 s has passed) "
        rf"\((\d) redirects? after {base}/hop0\)",
        str(caught.value),
    )
    assert cut is not None, str(caught.value)
    assert cut[1] == cut[2] != "0"


@pytest.mark.parametrize("stream", [False, True], ids=["read", "stream"])
def test_redirect_bodies_trickled_count_against_the_cap(
    trickle_server: FlakyServer, make_session: MakeSession, stream: bool
) -> None:
    """requests reads each redirect's body: 3 x 0.2 s of trickle is cut at the 0.3 s cap."""
    url = _redirect_chain(trickle_server, [_trickled_redirect(10)] * 3)
    session = make_session(read_timeout=1.0, total_timeout=0.3)
    started = time.monotonic()
    # Cut while a hop's body trickles, or (on a busy machine) between two hops.
    with pytest.raises(
        TotalTimeout, match=r"/hop\d (?:cut off after |not sent: total_timeout=)0\.3 s"
    ):
        session.get(url, stream=stream)
    assert 0.25 < time.monotonic() - started < LONG_BEFORE  # no hang; the claim is counted:
    assert trickle_server.requests("/ok") == 0


def test_a_redirect_chain_within_the_cap_is_followed(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """Hops that fit in the cap together end with the final answer and its history."""
    url = _redirect_chain(flaky_server, [_slow_redirect(0.02)] * 3)
    # 0.06 s of hops in a 10 s cap: a busy machine's stalls fit too (1 s did not, once).
    response = make_session(total_timeout=10.0).get(url)
    assert response.json() == {"path": "/ok", "attempt": 1}
    assert [r.status_code for r in response.history] == [302, 302, 302]


def test_a_redirect_is_not_sent_once_the_cap_has_passed(make_session: MakeSession) -> None:
    """Time spent between hops counts too: past the cap, the next hop is never sent.

    (The first hop, answered at once, must fit in the cap: BODY_CAPS. Each run
    has a server of its own: a late run's request is not counted in the next.)
    """

    def run(cap: float) -> None:
        with FlakyServer() as server:
            url = _redirect_chain(server, [_slow_redirect(0.0)] * 2)

            def linger(response: requests.Response, *args: Any, **kwargs: Any) -> None:
                time.sleep(cap + 0.05)  # a response hook, run after each hop

            with pytest.raises(TotalTimeout) as caught:
                make_session(total_timeout=cap).get(url, hooks={"response": linger})
            if str(caught.value).startswith(f"GET {server.url}/hop0 "):
                _late_if_before_the_headers(caught.value)
            assert server.requests("/hop0") == 1
            assert server.requests("/hop1") == 0
            assert str(caught.value) == (
                f"GET {server.url}/hop1 not sent: total_timeout={cap:g} s has passed "
                f"(1 redirect after {server.url}/hop0)"
            )

    _under_a_cap_the_headers_beat(run)


def test_a_plain_session_caps_each_redirect_on_its_own(flaky_server: FlakyServer) -> None:
    """Mounted on a plain requests.Session, the adapter cannot see a call: one cap per hop.

    A response hook lingers past the cap after the first hop: the next hop is
    still sent, on a cap of its own, and the chain ends with the final answer.
    (Each hop, answered at once, must fit in its cap: BODY_CAPS. Hops that took
    time of their own, adding up past the cap, raced it on a busy machine.)
    """
    url = _redirect_chain(flaky_server, [_slow_redirect(0.0)] * 2)

    def run(cap: float) -> None:
        lingered: list[float] = []

        def linger(response: requests.Response, *args: Any, **kwargs: Any) -> None:
            if not lingered:  # a response hook, run after each hop: the first one lingers
                lingered.append(cap + 0.05)
                time.sleep(cap + 0.05)

        session = requests.Session()
        session.mount("http://", ResilientAdapter(total_timeout=cap))
        try:
            try:
                response = session.get(url, hooks={"response": linger})
            except TotalTimeout as exc:
                if "before the response" in str(exc):  # a hop answered late: proves nothing
                    raise _Late from exc
                raise
            assert response.json()["path"] == "/ok"
            assert [r.status_code for r in response.history] == [302, 302]
            assert lingered == [cap + 0.05]
        finally:
            session.close()

    _under_a_cap_the_headers_beat(run)


_BODY_READERS: dict[str, Callable[[requests.Response], object]] = {
    "iter_content-1": lambda r: b"".join(r.iter_content(chunk_size=1)),
    "iter_content-None": lambda r: b"".join(r.iter_content(chunk_size=None)),
    "iter_lines": lambda r: list(r.iter_lines()),
    "raw.read-1": lambda r: [r.raw.read(1) for _ in range(50)],
    "raw.read": lambda r: r.raw.read(),
    "content": lambda r: r.content,
    **({"raw.read1-1": lambda r: [r.raw.read1(1) for _ in range(50)]} if _HAS_READ1 else {}),
}


@pytest.mark.parametrize(
    ("reader", "headers"),
    [
        *((name, {}) for name in _BODY_READERS),
        # http.client lets go of the socket of a response that will close it.
        *((name, {"Connection": "close"}) for name in ("iter_content-1", "raw.read")),
    ],
    ids=[
        *_BODY_READERS,
        *(f"{name}-close" for name in ("iter_content-1", "raw.read")),
    ],
)
def test_a_streamed_body_is_cut_at_the_cap(
    trickle_server: FlakyServer,
    make_session: MakeSession,
    reader: str,
    headers: dict[str, str],
) -> None:
    """stream=True: a body trickled for 10 s is cut at the cap, however it is read.

    (The headers, sent at once, must come within the cap: BODY_CAPS.)
    """
    trickle_server.script("/drip", [], then=Step(action="drip", body_size=500, headers=headers))

    def run(cap: float) -> None:
        session = make_session(read_timeout=LONG_BEFORE, total_timeout=cap)
        started = time.monotonic()
        with _headers(session.get, trickle_server.url + "/drip", stream=True) as response:
            assert response.status_code == 200
            with pytest.raises(TotalTimeout) as caught:
                _BODY_READERS[reader](response)
        took = time.monotonic() - started
        assert 0.9 * cap < took < LONG_BEFORE  # at the cap, long before the end
        assert str(caught.value) == (
            f"GET {trickle_server.url}/drip cut off after {cap:g} s (total_timeout={cap:g} s) "
            "reading the body"
        )
        assert classify(caught.value) is ErrorClass.TIMEOUT

    _under_a_cap_the_headers_beat(run)


@contextlib.contextmanager
def _one_shot_server(
    head: bytes, piece: bytes, pieces: int, interval: float, tail: bytes = b""
) -> Iterator[str]:
    """A one-shot loopback server: *head* at once, then *pieces* x *piece*, *interval* apart,
    then *tail*; it stops sending when the context exits."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:  # shut: the client never connected
            return
        with conn, contextlib.suppress(OSError):  # cut by the client
            conn.recv(65536)
            conn.sendall(head)
            for _ in range(pieces):
                if stop.wait(interval):
                    return
                conn.sendall(piece)
            conn.sendall(tail)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        stop.set()
        _shut(listener)
        server.join(2.0)


def _chunked_trickle(
    chunks: int, interval: float = TRICKLE_INTERVAL
) -> contextlib.AbstractContextManager[str]:
    """A one-shot loopback server answering with *chunks* one-byte chunks, *interval* apart."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    return _one_shot_server(head, b"1\r\n.\r\n", chunks, interval, tail=b"0\r\n\r\n")


def _shut(listener: socket.socket) -> None:
    """Close *listener*, waking a thread still waiting in its ``accept()``."""
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()


@pytest.mark.parametrize("stream", [False, True], ids=["read", "stream"])
def test_a_chunked_body_is_cut_at_the_cap(make_session: MakeSession, stream: bool) -> None:
    """A chunked body, read chunk by chunk by urllib3, is cut at the cap like any other."""

    def run(cap: float) -> None:
        session = make_session(read_timeout=LONG_BEFORE, total_timeout=cap)
        started = time.monotonic()
        with _chunked_trickle(500) as url, pytest.raises(TotalTimeout) as caught:
            session.get(url, stream=stream).content  # noqa: B018
        _late_if_before_the_headers(caught.value)
        assert str(caught.value).endswith("reading the body"), str(caught.value)
        assert 0.9 * cap < time.monotonic() - started < LONG_BEFORE  # the body lasts 10 s

    _under_a_cap_the_headers_beat(run)


def test_a_chunked_body_within_the_cap_is_whole(make_session: MakeSession) -> None:
    """Chunk by chunk, a body that ends within the cap arrives whole.

    (0.1 s of chunks in a 10 s cap: a busy machine's stalls fit too; 1 s left 0.9 s.)
    """
    session = make_session(read_timeout=10.0, total_timeout=10.0)
    with _chunked_trickle(5) as url, session.get(url, stream=True) as response:
        assert b"".join(response.iter_content(chunk_size=None)) == b"....."
    assert _watchdog_of(session).pending() == 0


@pytest.mark.parametrize("stream", [False, True], ids=["read", "stream"])
def test_a_socket_timeout_at_the_deadline_is_a_total_timeout(
    make_session: MakeSession, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """The read timeout clamped to the deadline may run out before the watchdog fires.

    urllib3 then closes the connection and hands it back on its way out:
    still a TotalTimeout, not a ReadTimeout the caller never asked for.
    """
    monkeypatch.setattr(_Watch, "fire", lambda self: None)  # the watchdog always late

    def run(cap: float) -> None:
        session = make_session(read_timeout=5.0, total_timeout=cap)
        with _chunked_trickle(2, interval=SLOW_ANSWER) as url:  # headers, then nothing for 10 s
            started = time.monotonic()
            with pytest.raises(TotalTimeout) as caught:
                _headers(session.get, url, stream=stream).raw.read()
            _late_if_before_the_headers(caught.value)
            assert str(caught.value).endswith("reading the body"), str(caught.value)
            assert 0.9 * cap < time.monotonic() - started < LONG_BEFORE

    _under_a_cap_the_headers_beat(run)


@pytest.mark.parametrize("late", ["before the read", "during the read"])
def test_a_read_that_finds_the_body_cut_closes_its_connection_and_hands_it_back(
    trickle_server: FlakyServer,
    make_session: MakeSession,
    monkeypatch: pytest.MonkeyPatch,
    late: str,
) -> None:
    """The cap passed with the body unread, or while a read returned: no read reaches urllib3
    to close the connection, so the library does, and hands it back to the pool; left open,
    the garbage collector closed it later with a ResourceWarning (seen on a busy machine)."""
    monkeypatch.setattr(_Watch, "fire", lambda self: None)  # the read itself finds the cap passed
    trickle_server.script("/drip", [], then=Step(action="drip", body_size=5))
    session = make_session(read_timeout=5.0, total_timeout=LONG_BEFORE)
    response = session.get(trickle_server.url + "/drip", stream=True)
    raw: Any = response.raw
    conn = raw.connection
    sock = conn.sock or conn.last_socket  # http.client lets go of it when the server will close
    assert sock.fileno() != -1
    watch = raw._resilient_watch
    if late == "before the read":
        watch.deadline = time.monotonic()  # the cap is due: the read does not start
    else:  # the cut lands while the read runs: the read returns, its data is not handed over
        read = urllib3.response.HTTPResponse.read

        def read_then_cut(self: Any, *args: Any, **kwargs: Any) -> Any:
            data = read(self, *args, **kwargs)
            watch.expired = True
            return data

        monkeypatch.setattr(urllib3.response.HTTPResponse, "read", read_then_cut)
    with pytest.raises(TotalTimeout, match="reading the body"):
        raw.read(1)
    assert raw.connection is None  # handed back to the pool
    assert sock.fileno() == -1  # closed, not left to the garbage collector
    with pytest.raises(TotalTimeout, match="reading the body"):  # and again, once it is gone
        raw.read(1)


def test_a_streamed_body_read_after_the_cap_raises_at_once(
    trickle_server: FlakyServer, make_session: MakeSession
) -> None:
    """Left unread past the cap, the body is gone: reading it raises, never returns part.

    The body was sent whole with the headers; the cut at the cap is the watchdog's
    ``fire``, called here as the watchdog calls it at the deadline (the dripping-body
    tests wait for the real one), so that no test sleeps past a cap.
    """
    trickle_server.script("/whole", [], then=Step())
    session = make_session(read_timeout=LONG_BEFORE, total_timeout=LONG_BEFORE)
    response = session.get(trickle_server.url + "/whole", stream=True)
    assert response.status_code == 200
    response.raw._resilient_watch.fire()  # the cap passes, the body unread
    for _ in range(2):  # and again: a cut body never reads as a short one
        with pytest.raises(TotalTimeout, match="reading the body"):
            response.raw.read()
    response.close()


def test_a_streamed_body_read_within_the_cap_is_whole(
    trickle_server: FlakyServer, make_session: MakeSession
) -> None:
    """A trickled body that ends within the cap is returned whole, however slowly it came.

    (0.16 s of trickle in a 10 s cap: a busy machine's stalls fit too; 1 s left 0.84 s.)
    """
    trickle_server.script("/drip", [], then=Step(action="drip", body_size=8))
    session = make_session(read_timeout=10.0, total_timeout=10.0)
    with session.get(trickle_server.url + "/drip", stream=True) as response:
        assert b"".join(response.iter_content(chunk_size=1)) == b"." * 8


def test_a_retry_deadline_caps_a_streamed_body(
    trickle_server: FlakyServer, make_session: MakeSession
) -> None:
    """The retry deadline in force at the request still caps its body, read after the return."""
    trickle_server.script("/drip", [], then=Step(action="drip", body_size=500))  # 10 s
    session = make_session(read_timeout=LONG_BEFORE)  # total_timeout=60

    def run(cap: float) -> None:
        @retry(deadline=cap, max_retries=0)  # the headers come within it; the 10 s body cannot
        def fetch() -> requests.Response:
            return _headers(session.get, trickle_server.url + "/drip", stream=True)

        with fetch() as response, pytest.raises(TotalTimeout, match="the retry deadline"):
            response.raw.read()

    _under_a_cap_the_headers_beat(run)


def test_a_post_cut_while_its_body_streams_is_not_retried(
    trickle_server: FlakyServer, make_session: MakeSession
) -> None:
    """A response came, so the POST reached the server: its cut body is FATAL for @retry."""
    trickle_server.script("/drip", [], then=Step(action="drip", body_size=500))  # 10 s

    def run(cap: float) -> None:
        session = make_session(read_timeout=LONG_BEFORE, total_timeout=cap)
        with (
            _headers(
                session.post, trickle_server.url + "/drip", data=b"x", stream=True
            ) as response,
            pytest.raises(TotalTimeout) as caught,
        ):
            response.raw.read()
        assert classify(caught.value) is ErrorClass.FATAL
        assert any("not idempotent" in note for note in caught.value.__notes__)

    _under_a_cap_the_headers_beat(run)


def test_a_cut_streamed_connection_is_not_reused(make_session: MakeSession) -> None:
    """The connection under a body cut by the cap is closed, not given back to the pool.

    (Each run has a server of its own: a late run's connection is not counted in the next.)
    """

    def run(cap: float) -> None:
        with FlakyServer(drip_interval=TRICKLE_INTERVAL, drip_size=500) as server:  # 10 s
            session = make_session(read_timeout=LONG_BEFORE)
            assert session.get(server.url + "/ok").status_code == 200
            with (
                _headers(
                    session.get, server.url + "/drip", stream=True, timeout=Timeout(total=cap)
                ) as response,
                pytest.raises(TotalTimeout),
            ):
                response.raw.read()
            assert server.connections == 1  # the drip reused the first connection...
            assert session.get(server.url + "/ok").status_code == 200
            assert server.connections == 2  # ...and it was not given back

    _under_a_cap_the_headers_beat(run)


def test_the_message_names_the_url_without_credentials(
    trickle_server: FlakyServer, make_session: MakeSession
) -> None:
    """User, password and secret query values stay out of the TotalTimeout message."""
    host = trickle_server.url.removeprefix("http://")
    url = f"http://ada:hunter2@{host}/drip?api_key=k3y&page=2"
    with pytest.raises(TotalTimeout) as caught:
        make_session(read_timeout=1.0, total_timeout=0.1).get(url)
    message = str(caught.value)
    assert f"GET http://{host}/drip?api_key=[REDACTED]&page=2 cut off after 0.1 s" in message
    assert "hunter2" not in message
    assert "ada" not in message
    assert "k3y" not in message


# -- nothing left watching a finished call -----------------------------------


def _watchdog_of(session: requests.Session) -> Any:
    adapter = session.get_adapter("http://")
    assert isinstance(adapter, ResilientAdapter)
    return adapter._watchdog


@pytest.mark.parametrize(
    "consume",
    [
        lambda r: r.content,
        lambda r: b"".join(r.iter_content(chunk_size=3)),
        lambda r: list(r.iter_lines()),
        lambda r: r.raw.read(),
        lambda r: r.close(),
    ],
    ids=["content", "iter_content", "iter_lines", "raw.read", "closed-unread"],
)
def test_a_streamed_response_done_within_the_cap_leaves_nothing_watched(
    trickle_server: FlakyServer,
    make_session: MakeSession,
    consume: Callable[[requests.Response], object],
) -> None:
    """Consumed or closed: no watch pending, and one watchdog thread for 5 calls, not 5."""
    closing = {"Connection": "close"}  # the server closes after a drip: no reuse race
    trickle_server.script("/drip", [], then=Step(action="drip", body_size=2, headers=closing))
    before = set(_watchdog_threads())
    session = make_session(read_timeout=10.0, total_timeout=10.0)  # a busy machine's stalls fit
    watchdog = _watchdog_of(session)
    for _ in range(5):
        response = session.get(trickle_server.url + "/drip", stream=True)
        assert watchdog.pending() == 1  # the body is still to come
        consume(response)
        assert watchdog.pending() == 0
    assert len(set(_watchdog_threads()) - before) == 1


def test_a_response_read_by_the_session_leaves_nothing_watched(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """Without stream=True the body is read before the call returns: nothing left to fire."""
    session = make_session(total_timeout=5.0)
    for path in ("/ok", "/missing", "/dead"):
        session.get(flaky_server.url + path)
    session.head(flaky_server.url + "/ok")
    assert _watchdog_of(session).pending() == 0


@pytest.mark.parametrize("stream", [False, True], ids=["read", "stream"])
def test_a_finished_call_never_cuts_its_connection_once_pooled(
    make_session: MakeSession, stream: bool
) -> None:
    """A call capped at c s hands its connection back; a (c + 0.05) s call on it is not cut.

    Were the first watch still armed, it would cut the shared socket under
    the second call at c s. (Each run has a server of its own: a late run's
    connection is not counted in the next. The session's own timeouts, 10 s,
    leave the second call's answer room on a busy machine: with a read timeout
    of 1 s, the 0.85 s answer of the run at c = 0.8 had 0.15 s of margin.)
    """

    def run(cap: float) -> None:
        with FlakyServer() as server:
            server.script("/slow", [], then=Step(action="slow", delay=cap + 0.05))
            session = make_session(read_timeout=10.0, total_timeout=10.0)
            try:
                first = session.get(server.url + "/ok", stream=stream, timeout=Timeout(total=cap))
                body = first.json()  # read whole: the connection is back
            except TotalTimeout as exc:  # a stall past the cap before the first call was done
                raise _Late from exc
            assert body == {"path": "/ok", "attempt": 1}
            assert session.get(server.url + "/slow").json() == {"path": "/slow", "attempt": 1}
            assert server.connections == 1  # one kept-alive connection served both

    _under_a_cap_the_headers_beat(run)


def test_cuts_never_reach_other_calls_sharing_the_pool(
    trickle_server: FlakyServer, make_session: MakeSession
) -> None:
    """4 threads mix calls cut at 40 ms with streamed calls read whole: only the first are cut.

    And when all is done, no watch is left armed to cut a pooled connection. (The
    session's own timeouts, 10 s, leave the 32 calls read whole room on a busy machine.)
    """
    session = make_session(read_timeout=10.0, total_timeout=10.0, connect_retries=0)
    outcomes: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(8):
            try:
                session.get(trickle_server.url + "/drip", timeout=Timeout(total=0.04))
                outcome = "drip: not cut"
            except TotalTimeout:
                outcome = "drip: cut"
            except Exception as exc:  # reported below
                outcome = f"drip: {exc!r}"
            with lock:
                outcomes.append(outcome)
            try:
                with session.get(trickle_server.url + "/ok", stream=True) as response:
                    outcome = "ok" if response.json()["path"] == "/ok" else "ok: wrong body"
            except Exception as exc:  # reported below
                outcome = f"ok: {exc!r}"
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(outcomes)) == ["drip: cut", "ok"], outcomes
    assert outcomes.count("ok") == 32
    assert _watchdog_of(session).pending() == 0


def test_resilient_session_mounts_its_adapter() -> None:
    """ResilientSession() mounts a default ResilientAdapter; a wrong adapter is refused."""
    with ResilientSession() as session:
        assert isinstance(session.get_adapter("https://example.invalid/"), ResilientAdapter)
    with pytest.raises(TypeError, match="adapter must be a ResilientAdapter, got"):
        ResilientSession(requests.adapters.HTTPAdapter())  # type: ignore[arg-type]


# -- deadlines ---------------------------------------------------------------


def test_timeouts_shrink_under_a_retry_deadline(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """Inside @retry(deadline=0.3) a 2 s answer is cut at the deadline, not at 30 s."""
    session = make_session()  # read_timeout=30, total_timeout=60

    @retry(deadline=0.3, base_delay=0.01)
    def fetch() -> requests.Response:
        return session.get(flaky_server.url + "/slow")

    started = time.monotonic()
    with pytest.raises(TotalTimeout):
        fetch()
    assert time.monotonic() - started < LONG_BEFORE
    assert _counted(flaky_server, "/slow") == 1


def test_no_request_is_sent_once_the_deadline_has_passed(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """With no time left, the session raises TotalTimeout without touching the network."""
    session, clock = make_session(), ManualClock()

    @retry(deadline=1.0, max_retries=0, clock=clock)
    def fetch() -> requests.Response:
        clock.advance(2.0)  # the attempt's own work used the whole deadline
        return session.get(flaky_server.url + "/ok")

    with pytest.raises(TotalTimeout, match="deadline has passed"):
        fetch()
    assert flaky_server.total == 0


# -- get_json_or_none -------------------------------------------------------


def test_get_json_or_none_returns_the_json(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """A 2xx gives its parsed body; keyword arguments go to session.get."""
    got = get_json_or_none(make_session(), flaky_server.url + "/ok", params={"q": "1"})
    assert got == {"path": "/ok", "attempt": 1}


def test_get_json_or_none_gives_none_on_404(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """A 404 is an answer: None, not an error."""
    assert get_json_or_none(make_session(), flaky_server.url + "/missing") is None


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
def test_get_json_or_none_raises_other_errors_with_the_response(
    flaky_server: FlakyServer, make_session: MakeSession, status: int
) -> None:
    """Any other failing status raises HTTPError carrying the response and its Retry-After."""
    flaky_server.script("/status", [], then=status)
    with pytest.raises(requests.HTTPError) as caught:
        get_json_or_none(make_session(), flaky_server.url + "/status")
    assert caught.value.response is not None
    assert caught.value.response.status_code == status
    assert retry_after(caught.value) == (1.0 if status in (429, 503) else None)


def test_get_json_or_none_raises_on_a_redirect_it_was_told_not_to_follow(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """A 3xx is neither JSON nor a 404: HTTPError with the response."""
    flaky_server.script("/moved", [], then=Step(status=302, headers={"Location": "/ok"}))
    with pytest.raises(requests.HTTPError) as caught:
        get_json_or_none(make_session(), flaky_server.url + "/moved", allow_redirects=False)
    assert caught.value.response is not None
    assert caught.value.response.status_code == 302


def test_get_json_or_none_follows_redirects_by_default(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """requests follows the redirect as usual."""
    flaky_server.script("/moved", [], then=Step(status=302, headers={"Location": "/ok"}))
    assert get_json_or_none(make_session(), flaky_server.url + "/moved") == {
        "path": "/ok",
        "attempt": 1,
    }


def test_get_json_or_none_raises_on_a_body_that_is_not_json(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """A 2xx that is not JSON is an error, not None."""
    flaky_server.script("/drip", [Step(action="drip", body_size=2)])
    with pytest.raises(requests.JSONDecodeError):
        get_json_or_none(make_session(), flaky_server.url + "/drip")


# -- construction ------------------------------------------------------------


@pytest.mark.parametrize("name", ["connect_timeout", "read_timeout", "total_timeout"])
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1.0, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("5", TypeError),
        (True, TypeError),
        (None, TypeError),
    ],
)
def test_bad_timeouts_fail_at_construction(name: str, value: Any, error: type) -> None:
    """Each timeout must be a positive finite number; the message names it and the value."""
    with pytest.raises(error, match=rf"{name} .*{value!r}"):
        create_resilient_session(**{name: value})


@pytest.mark.parametrize(
    ("value", "error"), [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)]
)
def test_bad_connect_retries_fail_at_construction(value: object, error: type) -> None:
    """connect_retries must be an int >= 0."""
    with pytest.raises(error, match=rf"connect_retries .*{value!r}"):
        create_resilient_session(connect_retries=value)  # type: ignore[arg-type]


def test_bad_per_call_timeout_is_refused(make_session: MakeSession, refused_url: str) -> None:
    """A negative timeout on the call is refused before anything is sent."""
    with pytest.raises(ValueError, match="read timeout"):
        make_session().get(refused_url, timeout=(1.0, -1.0))


def test_session_mounts_one_adapter_for_http_and_https(make_session: MakeSession) -> None:
    """Both schemes use the configured ResilientAdapter."""
    session = make_session(connect_timeout=1.0, connect_retries=0)
    for url in ("http://example.invalid/", "https://example.invalid/"):
        adapter = session.get_adapter(url)
        assert isinstance(adapter, ResilientAdapter)
        assert adapter.connect_timeout == 1.0
        assert adapter.max_retries.connect == 0


def test_a_pickled_session_still_works(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """The adapter survives pickling with its settings, and keeps enforcing the cap."""

    def run(cap: float) -> None:
        session = pickle.loads(pickle.dumps(make_session(total_timeout=cap)))  # the drip: 10 s
        try:
            assert _headers(session.get, flaky_server.url + "/ok").status_code == 200
            with pytest.raises(TotalTimeout) as caught:
                session.get(flaky_server.url + "/drip")
            _late_if_before_the_headers(caught.value)
            assert str(caught.value) == (
                f"GET {flaky_server.url}/drip cut off after {cap:g} s (total_timeout={cap:g} s) "
                "reading the body"
            )
        finally:
            session.close()

    _under_a_cap_the_headers_beat(run)


def _watchdog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "resilient-http-watchdog"]


def test_closing_the_session_stops_its_watchdog_thread(flaky_server: FlakyServer) -> None:
    """session.close() ends the adapter's watchdog; a later request starts a new one."""
    before = set(_watchdog_threads())
    session = create_resilient_session()
    try:
        assert session.get(flaky_server.url + "/ok").status_code == 200
        started = set(_watchdog_threads()) - before
        assert len(started) == 1
        session.close()
        give_up = time.monotonic() + 10.0
        while any(t.is_alive() for t in started) and time.monotonic() < give_up:
            time.sleep(0.01)
        assert not any(t.is_alive() for t in started)
        assert session.get(flaky_server.url + "/ok").status_code == 200  # still usable
    finally:
        session.close()
    assert set(_watchdog_threads()) <= before


def test_closing_the_session_closes_its_pooled_sockets_at_once(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """session.close() closes the idle connections' sockets, even while their pool lives on.

    A cut call's traceback (kept by a caller, or in a reference cycle until
    the collector runs) holds the pool; urllib3 2 closes a dropped pool's
    connections only when it is collected, so they stayed open until then.
    """
    session = make_session()
    assert session.get(flaky_server.url + "/ok").status_code == 200
    adapter = session.get_adapter(flaky_server.url)
    assert isinstance(adapter, ResilientAdapter)
    held = [adapter.poolmanager.pools.get(key) for key in adapter.poolmanager.pools.keys()]  # noqa: SIM118
    sockets = [
        conn.sock
        for pool in held
        if pool is not None and pool.pool is not None
        for conn in list(pool.pool.queue)
        if conn is not None and conn.sock is not None
    ]
    assert len(sockets) == 1  # the connection /ok went back to the pool with
    session.close()
    assert [sock.fileno() for sock in sockets] == [-1]


def test_many_threads_share_one_session(
    flaky_server: FlakyServer, make_session: MakeSession
) -> None:
    """8 threads x 25 requests through one session: every request answered."""
    session = make_session(total_timeout=5.0)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                assert session.get(flaky_server.url + "/ok").status_code == 200
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert flaky_server.requests("/ok") == 200


def test_import_resilient_does_not_import_requests() -> None:
    """The extra stays optional: resilient.http loads only when imported."""
    code = (
        "import sys, resilient; "
        "assert 'requests' not in sys.modules, 'requests'; "
        "assert 'resilient.http' not in sys.modules, 'resilient.http'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=240)


def test_importing_it_without_requests_says_which_extra_to_install() -> None:
    """Without requests, ``import resilient.http`` fails with the extra to install."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['requests'] = None  # as if requests were not installed\n"
        "try:\n"
        "    import resilient.http\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "resilient.http needs the requests package, which is not installed: "
        'pip install "resilient-kit[requests]"'
    )


def test_session_timeouts_take_a_timedelta() -> None:
    """``create_resilient_session``'s timeouts accept a ``timedelta``; bounded like any."""
    from datetime import timedelta

    from resilient.http import create_resilient_session

    session = create_resilient_session(
        connect_timeout=timedelta(seconds=2), read_timeout=timedelta(milliseconds=1500)
    )
    adapter = session.get_adapter("https://example.com")
    assert (adapter.connect_timeout, adapter.read_timeout) == (2.0, 1.5)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"total_timeout must be at most 315576000 s"):
        create_resilient_session(total_timeout=1e10)
    with pytest.raises(ValueError, match=r"read_timeout must be a finite number > 0"):
        create_resilient_session(read_timeout=timedelta(seconds=-1))
