"""The classification table of the contract, ``Classifier.register`` and ``retry_after``.

The HTTP clients (urllib and http.client, httpx, aiohttp) are exercised for real,
against servers on 127.0.0.1 that the tests start on free ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.message
import errno
import http.client
import http.server
import importlib
import math
import os
import pickle
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import httpx2
import multidict
import pytest
import requests
import yarl
from freezegun import freeze_time
from hypothesis import given
from hypothesis import strategies as st

from resilient import (
    Classifier,
    ErrorClass,
    RetryState,
    classify,
    classify_requests_error,
    retry,
    retry_after,
)
from resilient.testing import ManualClock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from fake_llm_server import ANTHROPIC_PATH, OPENAI_PATH, FakeLLMServer, Reply

TRANSIENT = ErrorClass.TRANSIENT
DEGRADED = ErrorClass.DEGRADED
FATAL = ErrorClass.FATAL
TIMEOUT = ErrorClass.TIMEOUT
UNKNOWN = ErrorClass.UNKNOWN

# 2024-01-01T00:00:00Z as a Unix timestamp, the "now" of the HTTP-date tests.
NEW_YEAR_2024 = 1704067200.0

STATUS_TABLE = [
    (429, TRANSIENT),
    (425, TRANSIENT),
    (500, DEGRADED),
    (502, DEGRADED),
    (503, DEGRADED),
    (506, DEGRADED),
    (507, DEGRADED),
    (508, DEGRADED),
    (511, DEGRADED),
    (520, DEGRADED),
    (599, DEGRADED),
    (504, TIMEOUT),
    (408, TIMEOUT),
    (501, FATAL),
    (505, FATAL),
    (400, FATAL),
    (401, FATAL),
    (403, FATAL),
    (404, FATAL),
    (405, FATAL),
    (409, FATAL),
    (410, FATAL),
    (413, FATAL),
    (418, FATAL),
    (422, FATAL),
    (451, FATAL),
    (499, FATAL),
]

REQUESTS_TABLE = [
    (requests.exceptions.ConnectTimeout, TIMEOUT),
    (requests.exceptions.ReadTimeout, TIMEOUT),
    (requests.exceptions.Timeout, TIMEOUT),
    (requests.exceptions.ConnectionError, TRANSIENT),
    (requests.exceptions.ProxyError, TRANSIENT),
    (requests.exceptions.InvalidURL, FATAL),
    (requests.exceptions.InvalidSchema, FATAL),
    (requests.exceptions.MissingSchema, FATAL),
    (requests.exceptions.InvalidHeader, FATAL),
    (requests.exceptions.TooManyRedirects, FATAL),
]

BUILTIN_TABLE = [
    (TimeoutError, TIMEOUT),
    (asyncio.TimeoutError, TIMEOUT),
    (ConnectionError, TRANSIENT),
    (ConnectionResetError, TRANSIENT),
    (ConnectionAbortedError, TRANSIENT),
    (ConnectionRefusedError, TRANSIENT),
    (BrokenPipeError, TRANSIENT),
    (TypeError, FATAL),
    (AttributeError, FATAL),
    (NameError, FATAL),
    (UnboundLocalError, FATAL),
    (ImportError, FATAL),
    (ModuleNotFoundError, FATAL),
    (NotImplementedError, FATAL),
    (AssertionError, FATAL),
    (PermissionError, FATAL),
    (FileNotFoundError, FATAL),
    (IsADirectoryError, FATAL),
]

UNKNOWN_EXCEPTIONS = [
    Exception("boom"),
    ValueError("bad value"),
    KeyError("key"),
    RuntimeError("runtime"),
    OSError("plain os error"),
    ZeroDivisionError("division"),
    requests.exceptions.RequestException("base request error"),
    requests.exceptions.HTTPError("no response attached"),
]


class ResponseError(Exception):
    """An exception carrying a fake response, as many HTTP clients raise."""

    def __init__(self, status_code: object = None, headers: object = None) -> None:
        super().__init__(f"status {status_code}")
        self.response = SimpleNamespace(status_code=status_code, headers=headers)


class ResponseTimeout(TimeoutError):
    """A timeout that also carries a response with a status code."""

    def __init__(self, status_code: int) -> None:
        super().__init__("timed out")
        self.response = SimpleNamespace(status_code=status_code)


class Classified(Exception):
    """An exception that states its own class."""

    def __init__(self, error_class: object) -> None:
        super().__init__("classified")
        self.error_class = error_class


class CacheMiss(Exception):
    """A user exception for the registration tests."""


class StaleCache(CacheMiss):
    """A subclass of a registered exception type."""


def real_response(status_code: int = 200, headers: dict[str, str] | None = None) -> Any:
    """A real ``requests.Response`` built offline."""
    response = requests.Response()
    response.status_code = status_code
    response.headers.update(headers or {})
    return response


def http_error(status_code: int, headers: dict[str, str] | None = None) -> Exception:
    """What ``response.raise_for_status()`` raises, without any network."""
    return requests.HTTPError(f"{status_code} error", response=real_response(status_code, headers))


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter and fail the test with its stderr if it fails."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


# --- status codes -----------------------------------------------------------


@pytest.mark.parametrize(("status", "expected"), STATUS_TABLE)
def test_status_code_argument_is_classified_by_the_table(status: int, expected: ErrorClass) -> None:
    """A status given as ``status_code=`` is classified as the table says."""
    assert classify(Exception("failed"), status_code=status) is expected


@pytest.mark.parametrize(("status", "expected"), STATUS_TABLE)
def test_status_is_read_from_the_exception_response(status: int, expected: ErrorClass) -> None:
    """Without ``status_code=``, ``exc.response.status_code`` is classified."""
    assert classify(ResponseError(status)) is expected


@pytest.mark.parametrize(("status", "expected"), STATUS_TABLE)
def test_status_is_read_from_a_requests_http_error(status: int, expected: ErrorClass) -> None:
    """A real ``requests.HTTPError`` with a real ``Response`` is classified by its status."""
    assert classify(http_error(status)) is expected


def test_every_5xx_but_501_504_505_is_degraded() -> None:
    """The whole 5xx range is DEGRADED except the three named exceptions."""
    named = {501: FATAL, 504: TIMEOUT, 505: FATAL}
    for status in range(500, 600):
        assert classify(Exception(), status_code=status) is named.get(status, DEGRADED), status


def test_every_4xx_but_408_425_429_is_fatal() -> None:
    """The whole 4xx range is FATAL except the three named exceptions."""
    named = {408: TIMEOUT, 425: TRANSIENT, 429: TRANSIENT}
    for status in range(400, 500):
        assert classify(Exception(), status_code=status) is named.get(status, FATAL), status


@pytest.mark.parametrize(
    ("exc", "status", "expected"),
    [
        (TimeoutError("slow"), 404, FATAL),
        (ConnectionResetError("reset"), 503, DEGRADED),
        (TypeError("bug"), 429, TRANSIENT),
        (requests.exceptions.ReadTimeout("slow"), 401, FATAL),
        (requests.exceptions.ConnectionError("refused"), 408, TIMEOUT),
        (requests.exceptions.InvalidURL("bad url"), 503, DEGRADED),
    ],
)
def test_status_wins_over_the_exception_type(
    exc: BaseException, status: int, expected: ErrorClass
) -> None:
    """A failing status decides, whatever the type of the exception."""
    assert classify(exc, status_code=status) is expected


def test_status_on_the_response_wins_over_the_exception_type() -> None:
    """A timeout whose response says 404 is FATAL, not TIMEOUT."""
    assert classify(ResponseTimeout(404)) is FATAL


def test_status_code_argument_wins_over_the_response_status() -> None:
    """An explicit ``status_code=`` is used instead of the one on ``exc.response``."""
    assert classify(http_error(503), status_code=404) is FATAL


@pytest.mark.parametrize("status", [100, 200, 204, 301, 304, 600, 999])
def test_a_status_that_is_not_a_failure_falls_back_to_the_exception_type(status: int) -> None:
    """Statuses outside 4xx/5xx say nothing: the exception type decides."""
    assert classify(ConnectionResetError("reset"), status_code=status) is TRANSIENT
    assert classify(ResponseError(status)) is UNKNOWN


@pytest.mark.parametrize("status", ["503", 503.0, True, None, object()])
def test_a_status_on_the_response_that_is_not_an_int_is_ignored(status: object) -> None:
    """Only an ``int`` status code is read from ``exc.response``."""
    assert classify(ResponseError(status)) is UNKNOWN


def test_an_exception_whose_response_is_none_is_classified_by_type() -> None:
    """``requests`` exceptions raised before any response keep their type's class."""
    exc = requests.exceptions.ConnectTimeout("connect timed out")
    assert exc.response is None
    assert classify(exc) is TIMEOUT


# --- exception types --------------------------------------------------------


@pytest.mark.parametrize(("exc_type", "expected"), REQUESTS_TABLE)
def test_requests_exceptions_are_classified_by_the_table(
    exc_type: type[Exception], expected: ErrorClass
) -> None:
    """Each ``requests`` exception named in the table gets its class."""
    assert classify(exc_type("failed")) is expected


@pytest.mark.parametrize(("exc_type", "expected"), BUILTIN_TABLE)
def test_builtin_exceptions_are_classified_by_the_table(
    exc_type: type[Exception], expected: ErrorClass
) -> None:
    """Each builtin exception named in the table, and its subclasses, get their class."""
    assert classify(exc_type("failed")) is expected


def test_asyncio_timeout_error_is_timeout() -> None:
    """``asyncio.TimeoutError`` (an alias of the builtin since 3.11) is TIMEOUT."""
    assert classify(asyncio.TimeoutError()) is TIMEOUT


@pytest.mark.parametrize("exc", UNKNOWN_EXCEPTIONS, ids=lambda exc: type(exc).__name__)
def test_anything_else_is_unknown(exc: BaseException) -> None:
    """An exception no rule matches is UNKNOWN."""
    assert classify(exc) is UNKNOWN


# --- error_class attribute ----------------------------------------------------


@pytest.mark.parametrize("error_class", list(ErrorClass))
def test_an_error_class_attribute_gives_that_class(error_class: ErrorClass) -> None:
    """An ``error_class`` attribute holding an ``ErrorClass`` is the answer."""
    assert classify(Classified(error_class)) is error_class


def test_an_error_class_attribute_wins_over_the_exception_type() -> None:
    """A ``TypeError`` that says it is TRANSIENT is TRANSIENT."""
    exc = TypeError("flaky")
    exc.error_class = TRANSIENT  # type: ignore[attr-defined]
    assert classify(exc) is TRANSIENT


def test_an_error_class_attribute_wins_over_the_status_code() -> None:
    """The attribute is checked before a status, given or read from the response."""
    exc = ResponseError(404)
    exc.error_class = TRANSIENT  # type: ignore[attr-defined]
    assert classify(exc) is TRANSIENT
    assert classify(exc, status_code=401) is TRANSIENT


def test_an_error_class_attribute_wins_over_registered_rules() -> None:
    """The attribute is checked even before the user's rules."""
    classifier = Classifier()
    classifier.register(Classified, FATAL)
    assert classifier(Classified(TIMEOUT)) is TIMEOUT


def test_an_error_class_class_attribute_is_honoured() -> None:
    """A class attribute works as well as an instance attribute."""

    class QuotaExceeded(Exception):
        error_class = ErrorClass.DEGRADED

    assert classify(QuotaExceeded()) is DEGRADED


@pytest.mark.parametrize("value", ["transient", None, 1, TRANSIENT.value])
def test_an_error_class_attribute_that_is_not_an_error_class_is_ignored(value: object) -> None:
    """Only an ``ErrorClass`` member counts; anything else falls through to the rules."""
    assert classify(Classified(value)) is UNKNOWN


# --- Classifier.register ------------------------------------------------------


def test_classify_is_a_classifier() -> None:
    """The default ``classify`` is an instance of ``Classifier``."""
    assert isinstance(classify, Classifier)


def test_a_fresh_classifier_applies_the_default_rules() -> None:
    """``Classifier()`` with no rule registered classifies as ``classify`` does."""
    classifier = Classifier()
    assert classifier(ConnectionResetError()) is TRANSIENT
    assert classifier(Exception(), status_code=503) is DEGRADED


def test_register_a_type() -> None:
    """A registered exception type gives its class."""
    classifier = Classifier()
    classifier.register(CacheMiss, TRANSIENT)
    assert classifier(CacheMiss()) is TRANSIENT


def test_register_a_type_matches_its_subclasses() -> None:
    """A registered type matches by ``isinstance``."""
    classifier = Classifier()
    classifier.register(CacheMiss, TRANSIENT)
    assert classifier(StaleCache()) is TRANSIENT


def test_register_a_tuple_of_types() -> None:
    """Each type of a registered tuple gives its class."""
    classifier = Classifier()
    classifier.register((KeyError, LookupError), TRANSIENT)
    assert classifier(KeyError()) is TRANSIENT
    assert classifier(IndexError()) is TRANSIENT


def test_register_a_predicate() -> None:
    """A predicate rule gives its class to the exceptions it returns true for."""
    classifier = Classifier()
    classifier.register(lambda exc: "deadlock" in str(exc), TRANSIENT)
    assert classifier(RuntimeError("deadlock detected")) is TRANSIENT
    assert classifier(RuntimeError("constraint violated")) is UNKNOWN


def test_a_registered_rule_wins_over_the_default_type_rules() -> None:
    """Registering ``TimeoutError`` as FATAL overrides the default TIMEOUT."""
    classifier = Classifier()
    classifier.register(TimeoutError, FATAL)
    assert classifier(TimeoutError()) is FATAL


def test_a_registered_rule_wins_over_the_status_code() -> None:
    """User rules come before the status rules, which are defaults too."""
    classifier = Classifier()
    classifier.register(requests.HTTPError, TRANSIENT)
    assert classifier(http_error(404)) is TRANSIENT
    assert classifier(Exception(), status_code=404) is FATAL


def test_the_first_registered_rule_wins() -> None:
    """When two rules match, the one registered first decides."""
    classifier = Classifier()
    classifier.register(CacheMiss, TRANSIENT)
    classifier.register(StaleCache, FATAL)
    assert classifier(StaleCache()) is TRANSIENT


def test_an_exception_no_rule_matches_falls_through_to_the_defaults() -> None:
    """Registered rules that do not match leave the default table in charge."""
    classifier = Classifier()
    classifier.register(CacheMiss, FATAL)
    classifier.register(lambda exc: False, FATAL)
    assert classifier(ConnectionResetError()) is TRANSIENT
    assert classifier(ValueError()) is UNKNOWN


def test_registering_on_a_new_classifier_leaves_classify_untouched() -> None:
    """Each ``Classifier`` has its own rules."""
    classifier = Classifier()
    classifier.register(CacheMiss, TRANSIENT)
    assert classify(CacheMiss()) is UNKNOWN


@pytest.mark.parametrize(
    ("rule", "error_class", "exc_type", "fragment"),
    [
        (KeyError, "transient", TypeError, "error_class must be an ErrorClass, got 'transient'"),
        (KeyError, None, TypeError, "error_class must be an ErrorClass, got None"),
        (KeyError, TRANSIENT.value, TypeError, "error_class must be an ErrorClass"),
        ("KeyError", TRANSIENT, TypeError, "rule must be an exception type"),
        (None, TRANSIENT, TypeError, "got None"),
        (42, TRANSIENT, TypeError, "rule must be an exception type, a tuple of them or a pred"),
        ((KeyError, "ValueError"), TRANSIENT, TypeError, "rule must be"),
        ((KeyError, int), TRANSIENT, TypeError, "rule must be"),
    ],
)
def test_register_rejects_bad_arguments_naming_the_parameter(
    rule: Any, error_class: Any, exc_type: type[Exception], fragment: str
) -> None:
    """A bad rule or class raises at once, saying which parameter and what value."""
    classifier = Classifier()
    with pytest.raises(exc_type) as info:
        classifier.register(rule, error_class)
    assert fragment in str(info.value)
    assert classifier(KeyError()) is UNKNOWN  # nothing was registered


# --- imports ------------------------------------------------------------------


def test_classify_does_not_import_requests() -> None:
    """Classifying, even an HTTP-looking failure, never imports ``requests``."""
    run_python(
        """
        import sys
        from types import SimpleNamespace
        import resilient

        class HttpFailure(Exception):
            response = SimpleNamespace(status_code=503, headers={"Retry-After": "5"})

        assert resilient.classify(ConnectionResetError()) is resilient.ErrorClass.TRANSIENT
        assert resilient.classify(HttpFailure()) is resilient.ErrorClass.DEGRADED
        assert resilient.classify(ValueError()) is resilient.ErrorClass.UNKNOWN
        assert resilient.retry_after(HttpFailure()) == 5.0
        assert "requests" not in sys.modules, "classify imported requests"
        """
    )


def test_classify_works_when_requests_cannot_be_imported() -> None:
    """With ``requests`` absent, the builtin and status rules still apply."""
    run_python(
        """
        import sys
        sys.modules["requests"] = None  # any `import requests` now fails
        from resilient import ErrorClass, classify

        assert classify(TimeoutError()) is ErrorClass.TIMEOUT
        assert classify(Exception(), status_code=429) is ErrorClass.TRANSIENT
        assert classify(ValueError()) is ErrorClass.UNKNOWN
        """
    )


def test_requests_exceptions_are_recognised_when_requests_is_imported_later() -> None:
    """The ``requests`` rules are looked up when they run, not at import."""
    run_python(
        """
        from resilient import ErrorClass, classify
        import requests

        assert classify(requests.ConnectTimeout()) is ErrorClass.TIMEOUT
        assert classify(requests.ConnectionError()) is ErrorClass.TRANSIENT
        assert classify(requests.exceptions.MissingSchema()) is ErrorClass.FATAL
        """
    )


def test_import_resilient_imports_neither_requests_redis_nor_asyncio() -> None:
    """``import resilient`` loads none of the optional or heavy modules."""
    done = run_python(
        """
        import sys
        import resilient
        print(sorted(m for m in ("requests", "redis", "asyncio") if m in sys.modules))
        """
    )
    assert done.stdout.strip() == "[]"


# --- pickling -----------------------------------------------------------------


@pytest.mark.parametrize("error_class", list(ErrorClass))
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_error_class_survives_a_pickle_round_trip(error_class: ErrorClass, protocol: int) -> None:
    """Every member unpickles to the very same member."""
    assert pickle.loads(pickle.dumps(error_class, protocol=protocol)) is error_class


# --- retry_after ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1", 1.0),
        ("1.5", 1.5),
        (" 30 ", 30.0),
        ("86400", 86400.0),
    ],
)
def test_retry_after_reads_seconds(header: str, expected: float) -> None:
    """A delay in seconds, integer or float-ish, is returned as a float."""
    assert retry_after(ResponseError(429, {"Retry-After": header})) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Mon, 01 Jan 2024 00:02:00 GMT", 120.0),
        ("Mon, 01 Jan 2024 00:00:00 GMT", 0.0),
        ("Mon, 01 Jan 2024 01:02:00 +0100", 120.0),
        ("Mon, 01 Jan 2024 00:02:00 -0000", 120.0),
        ("Tue, 02 Jan 2024 00:00:00 GMT", 86400.0),
    ],
)
def test_retry_after_reads_an_http_date_measured_from_now(header: str, expected: float) -> None:
    """An HTTP date gives the seconds from ``now=`` until it."""
    response = real_response(503, {"Retry-After": header})
    assert retry_after(response, now=NEW_YEAR_2024) == expected


def test_retry_after_measures_an_http_date_from_the_current_time() -> None:
    """Without ``now=``, the current (here frozen) time is the origin."""
    response = real_response(503, {"Retry-After": "Mon, 01 Jan 2024 00:02:00 GMT"})
    with freeze_time("2024-01-01 00:00:00"):
        assert retry_after(response) == 120.0


@pytest.mark.parametrize(
    "header",
    [
        "Sun, 31 Dec 2023 23:59:59 GMT",  # past
        "Wed, 21 Oct 2015 07:28:00 GMT",  # long past
        "-1",
        "-0.5",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        pytest.param("9" * 400, id="400-nines"),  # overflows to inf as a float
        "",
        "   ",
        "soon",
        "120 seconds",
        "0x10",
        "1,5",
        "\u00b2",  # a digit for str.isdigit(), not for float()
        "Mon, 01 Jan 99999999999999999999 00:00:00 GMT",  # year overflows
        "Mon, 32 Jan 2024 00:00:00 GMT",
        "Mon, 01 Foo 2024 00:00:00 GMT",
    ],
)
def test_retry_after_gives_none_for_past_negative_non_finite_or_garbage(header: str) -> None:
    """A value that cannot be waited for gives ``None``, never an exception."""
    response = real_response(503, {"Retry-After": header})
    assert retry_after(response, now=NEW_YEAR_2024) is None


# Any str that UTF-8 encodes, as st.text() draws, but without hypothesis computing the
# codec's table (1.3 s of CPU on Python 3.10, per process, on a fresh clone): every
# character but the surrogates, which are exactly what UTF-8 cannot encode.
UNICODE = st.characters(exclude_categories=("Cs",))


@given(st.text(UNICODE))
def test_retry_after_never_raises_and_gives_none_or_finite_seconds(header: str) -> None:
    """Whatever a server sends, the answer is ``None`` or a finite delay >= 0."""
    result = retry_after(SimpleNamespace(headers={"Retry-After": header}), now=NEW_YEAR_2024)
    assert result is None or (result >= 0 and math.isfinite(result))


def test_retry_after_without_the_header_is_none() -> None:
    """A response that does not ask for a delay gives ``None``."""
    assert retry_after(real_response(503)) is None
    assert retry_after(http_error(503)) is None


@pytest.mark.parametrize(
    "obj",
    [
        Exception("no response"),
        requests.exceptions.ConnectionError("no response yet"),
        ResponseError(503, headers=None),
        SimpleNamespace(headers={"Retry-After": 5}),
        SimpleNamespace(headers=object()),
        None,
    ],
    ids=["no-response", "response-none", "headers-none", "not-a-str", "odd-headers", "none"],
)
def test_retry_after_is_none_when_there_is_nothing_to_read(obj: object) -> None:
    """No response, no headers or a header that is not text: ``None``."""
    assert retry_after(obj) is None


def test_retry_after_reads_the_response_of_an_exception() -> None:
    """The header is read from ``exc.response``."""
    assert retry_after(ResponseError(429, {"Retry-After": "7"})) == 7.0


def test_retry_after_reads_the_response_of_a_requests_http_error() -> None:
    """The header of the real ``Response`` attached to ``HTTPError`` is read."""
    assert retry_after(http_error(429, {"Retry-After": "7"})) == 7.0


def test_retry_after_reads_a_requests_response_directly() -> None:
    """A ``Response`` itself can be given, with case-insensitive headers."""
    assert retry_after(real_response(429, {"retry-after": "3"})) == 3.0


@pytest.mark.parametrize("name", ["Retry-After", "retry-after", "RETRY-AFTER"])
def test_retry_after_in_a_plain_dict_is_read_in_any_case(name: str) -> None:
    """Header names are case-insensitive, also in a plain ``dict`` of headers."""
    assert retry_after(ResponseError(429, {name: "3"})) == 3.0
    assert retry_after(SimpleNamespace(headers={name: "3"})) == 3.0


@pytest.mark.parametrize("name", ["retry-after-ms", "Retry-After-Ms", "RETRY-AFTER-MS"])
def test_retry_after_ms_in_a_plain_dict_is_read_in_any_case(name: str) -> None:
    """``retry-after-ms`` in any case still wins over ``Retry-After`` in a plain ``dict``."""
    assert retry_after(ResponseError(429, {name: "1500", "retry-after": "9"})) == 1.5


def test_retry_after_reads_a_failing_response_that_is_falsy() -> None:
    """A 429 ``Response`` is falsy (``not response.ok``) and is still read."""
    response = real_response(429, {"Retry-After": "2"})
    assert not response
    assert retry_after(response) == 2.0


# --- classify_requests_error ----------------------------------------------------


def test_classify_requests_error_prefers_an_explicit_status_to_the_response() -> None:
    """``status_code=`` wins over ``exc.response.status_code``, both ways round."""
    assert classify_requests_error(http_error(503), status_code=404) is FATAL
    assert classify_requests_error(http_error(404), status_code=503) is DEGRADED
    assert classify_requests_error(http_error(404)) is FATAL


@given(
    exc=st.sampled_from(
        [
            http_error(503),
            http_error(404),
            requests.exceptions.ConnectTimeout("slow"),
            requests.exceptions.ConnectionError("refused"),
            ConnectionResetError("reset"),
            ValueError("bad"),
            Classified(DEGRADED),
        ]
    ),
    status=st.none() | st.integers(min_value=100, max_value=599),
)
def test_classify_requests_error_is_the_same_decision_as_classify(
    exc: BaseException, status: int | None
) -> None:
    """The original design's name gives what ``classify`` gives, for any status."""
    assert classify_requests_error(exc, status_code=status) is classify(exc, status_code=status)


# --- loopback servers for the HTTP clients ------------------------------------------


class LoopbackServer(http.server.ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 that counts the requests of each ``/flaky`` key."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), LoopbackHandler)
        self.lock = threading.Lock()
        self.hits: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def count(self, key: str) -> int:
        with self.lock:
            self.hits[key] = self.hits.get(key, 0) + 1
            return self.hits[key]


class LoopbackHandler(http.server.BaseHTTPRequestHandler):
    """``/status/<code>``, ``/flaky/<key>?failures=<n>`` (503 n times, then 200) and ``/redirect``.

    ``?retry_after=<value>`` adds a ``Retry-After`` header to a failing answer.
    """

    server: LoopbackServer

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        kind, _, arg = url.path.strip("/").partition("/")
        headers = {}
        if kind == "status":
            code = int(arg)
        elif kind == "flaky":
            code = 503 if self.server.count(arg) <= int(query.get("failures", "0")) else 200
        elif kind == "redirect":
            code = 302
            headers["Location"] = self.path
        else:
            code = 400
        if code >= 400 and "retry_after" in query:
            headers["Retry-After"] = query["retry_after"]
        body = b"ok" if code == 200 else b""
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read the answers, not the access log."""


class RawServer:
    """A TCP server on 127.0.0.1 that misbehaves the same way to every request.

    - ``"close"``: hangs up without answering;
    - ``"garbage"``: answers with a line that is not HTTP;
    - ``"short"``: promises 100 bytes of body, sends 3 and hangs up;
    - ``"silent"``: reads the request and never answers.
    """

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.held: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/"

    def serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # the accept timeout: look at the stop flag again
                continue
            conn.settimeout(1.0)
            with contextlib.suppress(OSError):
                conn.recv(65536)
                if self.behaviour == "garbage":
                    conn.sendall(b"HELLO THERE\r\n\r\n")
                elif self.behaviour == "short":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
            if self.behaviour == "silent":
                self.held.append(conn)
            else:
                conn.close()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    """One loopback HTTP server for the module."""
    running = LoopbackServer()
    thread = threading.Thread(target=running.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    yield running
    running.shutdown()
    thread.join(timeout=5)
    running.server_close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[str], RawServer]]:
    """Start misbehaving servers; all are stopped after the test."""
    started: list[RawServer] = []

    def start(behaviour: str) -> RawServer:
        started.append(RawServer(behaviour))
        return started[-1]

    yield start
    for raw in started:
        raw.stop()


@pytest.fixture
def closed_port_url(refused_port: int) -> str:
    """A loopback URL on a port nothing listens on: connecting is refused."""
    return f"http://127.0.0.1:{refused_port}/"


LIVE_STATUS_TABLE = [
    (503, DEGRADED),
    (500, DEGRADED),
    (502, DEGRADED),
    (429, TRANSIENT),
    (504, TIMEOUT),
    (408, TIMEOUT),
    (401, FATAL),
    (403, FATAL),
    (404, FATAL),
    (501, FATAL),
]


# --- urllib and http.client --------------------------------------------------------


def urlopen_error(url: str, timeout: float = 5.0) -> Exception:
    """What ``urllib.request.urlopen(url)`` raises, its response closed."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
    except Exception as exc:
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()
        return exc
    raise AssertionError(f"{url} did not fail")


def url_http_error(code: object, headers: dict[str, str] | None = None) -> Exception:
    """An ``HTTPError`` built offline, as ``urlopen`` raises it."""
    message = email.message.Message()
    for name, value in (headers or {}).items():
        message[name] = value
    return urllib.error.HTTPError("http://service.test/", code, "failed", message, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("status", "expected"), LIVE_STATUS_TABLE)
def test_urllib_http_error_is_classified_by_its_code(
    server: LoopbackServer, status: int, expected: ErrorClass
) -> None:
    """A real ``HTTPError`` from ``urlopen`` is classified by ``.code`` as the status table says."""
    exc = urlopen_error(f"{server.url}/status/{status}")
    assert isinstance(exc, urllib.error.HTTPError)
    assert exc.code == status
    assert classify(exc) is expected


@pytest.mark.parametrize("status", [304, 200, 100])
def test_urllib_http_error_whose_code_is_not_a_failure_is_unknown(status: int) -> None:
    """``urlopen`` raises a 304 too: not a failure status, and the type says nothing more."""
    assert classify(url_http_error(status)) is UNKNOWN


def test_urllib_raises_a_304_that_is_unknown(server: LoopbackServer) -> None:
    """A real 304 from ``urlopen`` is an ``HTTPError`` and UNKNOWN."""
    exc = urlopen_error(f"{server.url}/status/304")
    assert isinstance(exc, urllib.error.HTTPError)
    assert classify(exc) is UNKNOWN


@pytest.mark.parametrize("code", ["503", None, True, 503.0])
def test_urllib_http_error_with_a_code_that_is_not_an_int_is_unknown(code: object) -> None:
    """Only an ``int`` code is a status."""
    assert classify(url_http_error(code)) is UNKNOWN


def test_urllib_http_error_retry_after_is_read_from_its_headers(server: LoopbackServer) -> None:
    """``retry_after`` reads the headers an ``HTTPError`` carries itself (it has no ``.response``)."""
    exc = urlopen_error(f"{server.url}/status/503?retry_after=7")
    assert not hasattr(exc, "response")
    assert retry_after(exc) == 7.0
    assert retry_after(urlopen_error(f"{server.url}/status/429?retry_after=2")) == 2.0
    assert retry_after(urlopen_error(f"{server.url}/status/503")) is None


def test_urllib_http_error_retry_after_reads_an_http_date_and_ignores_case() -> None:
    """The headers of an ``HTTPError`` are read as any others: any case, seconds or a date."""
    exc = url_http_error(503, {"retry-after": "Mon, 01 Jan 2024 00:02:00 GMT"})
    assert retry_after(exc, now=NEW_YEAR_2024) == 120.0


def test_urllib_http_error_without_headers_has_no_retry_after() -> None:
    """An ``HTTPError`` built with ``hdrs=None`` asks for no delay."""
    exc = urllib.error.HTTPError("http://service.test/", 503, "failed", None, None)  # type: ignore[arg-type]
    assert retry_after(exc) is None
    assert classify(exc) is DEGRADED


def test_urllib_connection_refused_is_transient(closed_port_url: str) -> None:
    """``urlopen`` on a closed port raises ``URLError(ConnectionRefusedError)``: TRANSIENT."""
    exc = urlopen_error(closed_port_url)
    assert type(exc) is urllib.error.URLError
    assert isinstance(exc.reason, ConnectionRefusedError)
    assert classify(exc) is TRANSIENT


def test_urllib_read_timeout_is_timeout(raw_server: Callable[[str], RawServer]) -> None:
    """A server that never answers makes ``urlopen`` raise a timeout: TIMEOUT."""
    exc = urlopen_error(raw_server("silent").url, timeout=0.05)
    assert isinstance(exc, (TimeoutError, urllib.error.URLError))
    assert classify(exc) is TIMEOUT


@pytest.mark.parametrize(
    ("behaviour", "exc_type", "expected"),
    [
        ("close", http.client.RemoteDisconnected, TRANSIENT),
        ("garbage", http.client.BadStatusLine, DEGRADED),
        ("short", http.client.IncompleteRead, TRANSIENT),
    ],
)
def test_urllib_raises_http_client_errors_that_are_classified(
    raw_server: Callable[[str], RawServer],
    behaviour: str,
    exc_type: type[Exception],
    expected: ErrorClass,
) -> None:
    """What ``urlopen`` raises unwrapped when a server misbehaves, and its class."""
    exc = urlopen_error(raw_server(behaviour).url)
    assert type(exc) is exc_type
    assert classify(exc) is expected


@pytest.mark.parametrize(
    ("url", "exc_type"),
    [
        ("ftpx://service.test/", urllib.error.URLError),  # unknown url type
        ("http:///no-host", urllib.error.URLError),  # no host given
        ("http://127.0.0.1:notaport/", http.client.InvalidURL),  # nonnumeric port
        ("http://127.0.0.1:1/a b", http.client.InvalidURL),  # a control character
    ],
)
def test_urllib_urls_that_cannot_be_requested_are_fatal(
    url: str, exc_type: type[Exception]
) -> None:
    """A URL ``urlopen`` refuses before any connection is made is FATAL."""
    exc = urlopen_error(url)
    assert type(exc) is exc_type
    assert classify(exc) is FATAL


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (ConnectionRefusedError(111, "Connection refused"), TRANSIENT),
        (ConnectionResetError(104, "Connection reset by peer"), TRANSIENT),
        (TimeoutError("timed out"), TIMEOUT),  # socket.timeout is this class since 3.10
        (socket.gaierror(-2, "Name or service not known"), TRANSIENT),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), TRANSIENT),
        (OSError(errno.EHOSTUNREACH, "No route to host"), TRANSIENT),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), TRANSIENT),
        (FileNotFoundError(2, "No such file or directory"), FATAL),
        (PermissionError(13, "Permission denied"), FATAL),
        (ValueError("not an OSError"), UNKNOWN),
        (TypeError("a bug below urlopen"), FATAL),
        ("unknown url type: ftpx", FATAL),
        ("no host given", FATAL),
        ("file not on local host", FATAL),
        (None, FATAL),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_urllib_url_error_is_classified_by_its_reason(reason: object, expected: ErrorClass) -> None:
    """A ``URLError`` is what its reason is; an ``OSError`` nothing else names is TRANSIENT; text is FATAL."""
    assert classify(urllib.error.URLError(reason)) is expected  # type: ignore[arg-type]


def test_urllib_url_error_with_a_text_reason_is_classified_by_its_cause() -> None:
    """``URLError(f"ftp error: {exp}") from exp`` is what ``exp`` is."""
    refused = ConnectionRefusedError(111, "Connection refused")
    with pytest.raises(urllib.error.URLError) as info:
        raise urllib.error.URLError(f"ftp error: {refused}") from refused
    assert classify(info.value) is TRANSIENT


def test_urllib_url_errors_nested_are_followed_and_a_cycle_ends() -> None:
    """A reason that is itself a ``URLError`` is followed; a reason cycle does not loop."""
    assert classify(urllib.error.URLError(urllib.error.URLError(TimeoutError()))) is TIMEOUT
    assert classify(urllib.error.URLError(url_http_error(503))) is DEGRADED
    looped = urllib.error.URLError("placeholder")
    looped.reason = urllib.error.URLError(looped)  # type: ignore[assignment]
    assert classify(looped) is UNKNOWN


def test_urllib_url_error_reason_goes_through_the_classifiers_own_rules() -> None:
    """The reason is classified by the same classifier, its registered rules included."""
    classifier = Classifier()
    classifier.register(ConnectionRefusedError, FATAL)
    assert classifier(urllib.error.URLError(ConnectionRefusedError())) is FATAL
    assert classify(urllib.error.URLError(ConnectionRefusedError())) is TRANSIENT
    assert classify(urllib.error.URLError(Classified(DEGRADED))) is DEGRADED


def test_urllib_content_too_short_is_transient() -> None:
    """``urlretrieve`` got less than ``Content-Length`` promised: the body was cut, TRANSIENT."""
    exc = urllib.error.ContentTooShortError(
        "retrieval incomplete: got only 3 out of 100 bytes", None
    )  # type: ignore[arg-type]
    assert classify(exc) is TRANSIENT


HTTP_CLIENT_TABLE = [
    (http.client.RemoteDisconnected("Remote end closed connection without response"), TRANSIENT),
    (http.client.IncompleteRead(b"abc", 97), TRANSIENT),
    (http.client.BadStatusLine("HELLO"), DEGRADED),
    (http.client.LineTooLong("header line"), DEGRADED),
    (http.client.InvalidURL("nonnumeric port: 'x'"), FATAL),
    (http.client.UnknownProtocol("HTTP/2.0"), FATAL),
    (http.client.UnknownTransferEncoding(), FATAL),
    (http.client.UnimplementedFileMode(), FATAL),
    (http.client.NotConnected(), FATAL),
    (http.client.ImproperConnectionState(), FATAL),
    (http.client.CannotSendRequest("Request-sent"), FATAL),
    (http.client.CannotSendHeader(), FATAL),
    (http.client.ResponseNotReady("Idle"), FATAL),
    (http.client.HTTPException("got more than 100 headers"), UNKNOWN),
]


@pytest.mark.parametrize(("exc", "expected"), HTTP_CLIENT_TABLE, ids=lambda v: type(v).__name__)
def test_http_client_errors_are_classified_by_type(exc: Exception, expected: ErrorClass) -> None:
    """Each ``http.client`` error gets the class the docs give it."""
    assert classify(exc) is expected


@given(st.integers(min_value=100, max_value=599))
def test_every_status_through_urllib_http_error_is_the_status_table(code: int) -> None:
    """``HTTPError(code)`` gets what ``classify(exc, status_code=code)`` gives a plain exception."""
    assert classify(url_http_error(code)) is classify(Exception(), status_code=code)


def test_a_status_read_from_the_instance_is_not_cached_per_type() -> None:
    """One type, many codes and reasons: each instance is read again."""
    for _ in range(2):
        assert classify(url_http_error(503)) is DEGRADED
        assert classify(url_http_error(404)) is FATAL
        assert classify(url_http_error(429)) is TRANSIENT
        assert classify(urllib.error.URLError(TimeoutError())) is TIMEOUT
        assert classify(urllib.error.URLError("no host given")) is FATAL
        assert classify(urllib.error.URLError(ConnectionRefusedError())) is TRANSIENT


def test_urllib_http_error_follows_the_rule_order() -> None:
    """``error_class`` first, then registered rules, then an explicit status, then ``.code``."""
    own = url_http_error(404)
    own.error_class = TRANSIENT  # type: ignore[attr-defined]
    assert classify(own) is TRANSIENT
    classifier = Classifier()
    classifier.register(urllib.error.HTTPError, TIMEOUT)
    assert classifier(url_http_error(404)) is TIMEOUT
    assert classify(url_http_error(503), status_code=404) is FATAL
    assert classify(url_http_error(404), status_code=503) is DEGRADED
    # An explicit status that is not a failure wins too: the type decides, not `.code`.
    assert classify(url_http_error(503), status_code=200) is UNKNOWN


# --- @retry around urlopen ---------------------------------------------------------


def read_url(url: str) -> bytes:
    """``urlopen(url).read()``, closing an ``HTTPError`` before it propagates.

    An ``HTTPError`` holds the open response; one a retry drops unclosed
    warns (``ResourceWarning``) when the garbage collector reaches it.
    """
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        exc.close()
        raise


def test_retry_around_urlopen_retries_503s_and_succeeds(server: LoopbackServer) -> None:
    """``@retry(base_delay=0)`` around ``urlopen``: two 503s, then the 200 is returned."""
    key = uuid.uuid4().hex
    retried: list[RetryState] = []

    @retry(base_delay=0, clock=ManualClock(), on_retry=retried.append)
    def fetch() -> bytes:
        return read_url(f"{server.url}/flaky/{key}?failures=2")

    assert fetch() == b"ok"
    assert server.hits[key] == 3
    assert [(state.error_class, state.delay) for state in retried] == [(DEGRADED, 0.0)] * 2
    assert [type(state.exception) for state in retried] == [urllib.error.HTTPError] * 2


def test_retry_around_urlopen_honours_retry_after(server: LoopbackServer) -> None:
    """A 503 asking ``Retry-After: 3`` makes the retry wait 3 s, not the computed 0 s."""
    key = uuid.uuid4().hex
    clock = ManualClock()

    @retry(base_delay=0, jitter=False, clock=clock)
    def fetch() -> bytes:
        return read_url(f"{server.url}/flaky/{key}?failures=2&retry_after=3")

    assert fetch() == b"ok"
    assert clock.sleeps == [3.0, 3.0]


def test_retry_around_urlopen_raises_a_404_at_once(server: LoopbackServer) -> None:
    """A 404 is FATAL: one request, no sleep, the ``HTTPError`` itself raised."""
    clock = ManualClock()
    calls = []

    @retry(base_delay=0, clock=clock)
    def fetch() -> bytes:
        calls.append(1)
        return read_url(f"{server.url}/status/404")

    with pytest.raises(urllib.error.HTTPError) as info:
        fetch()
    assert info.value.code == 404
    assert calls == [1]
    assert clock.sleeps == []


def test_retry_around_urlopen_retries_a_refused_connection(closed_port_url: str) -> None:
    """``URLError(ConnectionRefusedError)`` is retried until attempts run out."""
    calls = []

    @retry(max_retries=2, base_delay=0, clock=ManualClock())
    def fetch() -> bytes:
        calls.append(1)
        return read_url(closed_port_url)

    with pytest.raises(urllib.error.URLError):
        fetch()
    assert calls == [1, 1, 1]


# --- httpx ----------------------------------------------------------------------------


def httpx_status_error(status: int, headers: dict[str, str] | None = None) -> Exception:
    """What ``response.raise_for_status()`` raises for *status*, from a mock transport."""
    transport = httpx.MockTransport(lambda request: httpx.Response(status, headers=headers))
    with httpx.Client(transport=transport) as client:
        response = client.get("http://service.test/")
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        return exc
    raise AssertionError(f"{status} did not raise")


def httpx_error(url: str, **client_options: Any) -> Exception:
    """What a real ``httpx`` GET of *url* raises."""
    try:
        with httpx.Client(**client_options) as client:
            client.get(url).raise_for_status()
    except Exception as exc:
        return exc
    raise AssertionError(f"{url} did not fail")


@pytest.mark.parametrize(("status", "expected"), LIVE_STATUS_TABLE)
def test_httpx_status_error_is_classified_by_its_response(
    status: int, expected: ErrorClass
) -> None:
    """``HTTPStatusError`` is classified by ``.response.status_code``."""
    assert classify(httpx_status_error(status)) is expected


@pytest.mark.parametrize(("status", "expected"), [(503, DEGRADED), (404, FATAL), (429, TRANSIENT)])
def test_httpx_status_error_from_a_loopback_server(
    server: LoopbackServer, status: int, expected: ErrorClass
) -> None:
    """The same through a real connection."""
    exc = httpx_error(f"{server.url}/status/{status}")
    assert isinstance(exc, httpx.HTTPStatusError)
    assert classify(exc) is expected


def test_httpx_status_error_of_a_redirect_is_unknown() -> None:
    """``raise_for_status`` raises for a 3xx too: not a failure status, so UNKNOWN."""
    assert classify(httpx_status_error(304)) is UNKNOWN


def test_httpx_status_error_retry_after_is_read_from_its_response() -> None:
    """``retry_after`` reads the header of ``exc.response``."""
    assert retry_after(httpx_status_error(429, {"Retry-After": "4"})) == 4.0
    assert retry_after(httpx_status_error(503, {"retry-after": "0"})) == 0.0


@given(st.integers(min_value=100, max_value=599))
def test_every_status_through_httpx_status_error_is_the_status_table(code: int) -> None:
    """``HTTPStatusError`` with any status gets what the status table gives."""
    request = httpx.Request("GET", "http://service.test/")
    exc = httpx.HTTPStatusError(
        "failed", request=request, response=httpx.Response(code, request=request)
    )
    assert classify(exc) is classify(Exception(), status_code=code)


def test_httpx_connection_refused_is_transient(closed_port_url: str) -> None:
    """A real ``ConnectError`` from a closed port is TRANSIENT."""
    exc = httpx_error(closed_port_url)
    assert type(exc) is httpx.ConnectError
    assert classify(exc) is TRANSIENT


@pytest.mark.parametrize(
    ("behaviour", "exc_type", "expected"),
    [
        ("close", httpx.RemoteProtocolError, TRANSIENT),
        ("garbage", httpx.RemoteProtocolError, TRANSIENT),
        ("short", httpx.RemoteProtocolError, TRANSIENT),
        ("silent", httpx.ReadTimeout, TIMEOUT),
    ],
)
def test_httpx_errors_from_a_misbehaving_server(
    raw_server: Callable[[str], RawServer],
    behaviour: str,
    exc_type: type[Exception],
    expected: ErrorClass,
) -> None:
    """What ``httpx`` really raises when a server misbehaves, and its class.

    Only the silent server's read is timed out short: the others' answers (a close,
    a line, a short body) get 5 s, a busy machine's stalls included (with 0.05 s, a
    server thread late to hang up made a ReadTimeout of a RemoteProtocolError).
    """
    timeout = httpx.Timeout(5.0, read=0.05) if behaviour == "silent" else httpx.Timeout(5.0)
    exc = httpx_error(raw_server(behaviour).url, timeout=timeout)
    assert type(exc) is exc_type
    assert classify(exc) is expected


@pytest.mark.parametrize(
    ("url", "exc_type"),
    [
        ("ftpx://service.test/", httpx.UnsupportedProtocol),
        ("service.test/no-scheme", httpx.UnsupportedProtocol),
        ("http://127.0.0.1:notaport/", httpx.InvalidURL),
    ],
)
def test_httpx_urls_that_cannot_be_requested_are_fatal(url: str, exc_type: type[Exception]) -> None:
    """A URL ``httpx`` refuses before connecting is FATAL."""
    exc = httpx_error(url)
    assert type(exc) is exc_type
    assert classify(exc) is FATAL


def test_httpx_too_many_redirects_is_fatal(server: LoopbackServer) -> None:
    """A redirect loop ends in a real ``TooManyRedirects``: FATAL."""
    exc = httpx_error(f"{server.url}/redirect", follow_redirects=True, max_redirects=2)
    assert type(exc) is httpx.TooManyRedirects
    assert classify(exc) is FATAL


HTTPX_TABLE = [
    (httpx.TimeoutException, TIMEOUT),
    (httpx.ConnectTimeout, TIMEOUT),
    (httpx.ReadTimeout, TIMEOUT),
    (httpx.WriteTimeout, TIMEOUT),
    (httpx.PoolTimeout, TIMEOUT),
    (httpx.ConnectError, TRANSIENT),
    (httpx.ReadError, TRANSIENT),
    (httpx.WriteError, TRANSIENT),
    (httpx.CloseError, TRANSIENT),
    (httpx.NetworkError, TRANSIENT),
    (httpx.RemoteProtocolError, TRANSIENT),
    (httpx.ProtocolError, TRANSIENT),
    (httpx.ProxyError, TRANSIENT),
    (httpx.TransportError, TRANSIENT),
    (httpx.LocalProtocolError, FATAL),
    (httpx.UnsupportedProtocol, FATAL),
    (httpx.TooManyRedirects, FATAL),
    (httpx.InvalidURL, FATAL),
    (httpx.StreamConsumed, FATAL),
    (httpx.ResponseNotRead, FATAL),
    (httpx.DecodingError, UNKNOWN),
    (httpx.RequestError, UNKNOWN),
    (httpx.HTTPError, UNKNOWN),
]


@pytest.mark.parametrize(
    ("exc_type", "expected"), HTTPX_TABLE, ids=lambda v: getattr(v, "__name__", v)
)
def test_httpx_exceptions_are_classified_by_type(
    exc_type: type[Exception], expected: ErrorClass
) -> None:
    """Each ``httpx`` exception class gets the class the docs give it."""
    exc = exc_type() if issubclass(exc_type, httpx.StreamError) else exc_type("failed")
    assert classify(exc) is expected


# --- aiohttp ----------------------------------------------------------------------------


class _Aiohttp:
    """``aiohttp``, imported at its first use: 0.3 s of CPU per test process on Python
    3.10, paid only by the worker that runs the aiohttp tests (one unit in conftest.py)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # pytest's probes of module attributes, at collection
            raise AttributeError(name)
        import aiohttp

        return getattr(aiohttp, name)


aiohttp: Any = _Aiohttp()


def aiohttp_error(url: str, *, max_redirects: int = 10, read_timeout: float = 5.0) -> Exception:
    """What a real ``aiohttp`` GET of *url* raises (``raise_for_status=True``)."""

    async def get() -> Exception:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=read_timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, raise_for_status=True, max_redirects=max_redirects) as response,
            ):
                await response.read()
        except Exception as exc:
            return exc
        raise AssertionError(f"{url} did not fail")

    return asyncio.run(get())


def aiohttp_response_error(status: int, headers: dict[str, str] | None = None) -> Exception:
    """A ``ClientResponseError`` as ``raise_for_status`` builds it, offline."""
    request_info = aiohttp.RequestInfo(
        yarl.URL("http://service.test/"), "GET", multidict.CIMultiDictProxy(multidict.CIMultiDict())
    )
    return aiohttp.ClientResponseError(
        request_info,
        (),
        status=status,
        message="failed",
        headers=multidict.CIMultiDictProxy(multidict.CIMultiDict(headers or {})),
    )


@pytest.mark.parametrize(("status", "expected"), LIVE_STATUS_TABLE)
def test_aiohttp_response_error_is_classified_by_its_status(
    server: LoopbackServer, status: int, expected: ErrorClass
) -> None:
    """A real ``ClientResponseError`` is classified by ``.status``."""
    exc = aiohttp_error(f"{server.url}/status/{status}")
    assert type(exc) is aiohttp.ClientResponseError
    assert classify(exc) is expected


def test_aiohttp_response_error_retry_after_is_read_from_its_headers(
    server: LoopbackServer,
) -> None:
    """``retry_after`` reads ``ClientResponseError.headers``."""
    assert retry_after(aiohttp_error(f"{server.url}/status/503?retry_after=6")) == 6.0
    assert retry_after(aiohttp_error(f"{server.url}/status/503")) is None
    assert retry_after(aiohttp_response_error(429, {"retry-after": "2"})) == 2.0


@given(st.integers(min_value=100, max_value=599))
def test_every_status_through_aiohttp_response_error_is_the_status_table(code: int) -> None:
    """``ClientResponseError(status=code)`` gets what the status table gives."""
    assert classify(aiohttp_response_error(code)) is classify(Exception(), status_code=code)


def test_aiohttp_status_is_not_cached_per_type() -> None:
    """One type, many statuses: each instance is read again."""
    assert classify(aiohttp_response_error(503)) is DEGRADED
    assert classify(aiohttp_response_error(404)) is FATAL
    assert classify(aiohttp_response_error(503), status_code=429) is TRANSIENT


def test_aiohttp_connection_refused_is_transient(closed_port_url: str) -> None:
    """A real ``ClientConnectorError`` from a closed port is TRANSIENT."""
    exc = aiohttp_error(closed_port_url)
    assert isinstance(exc, aiohttp.ClientConnectorError)
    assert classify(exc) is TRANSIENT


@pytest.mark.parametrize(
    ("behaviour", "exc_type", "expected"),
    [
        ("close", "ServerDisconnectedError", TRANSIENT),
        ("garbage", "ClientResponseError", DEGRADED),  # aiohttp's own 400, not the server's
        ("short", "ClientPayloadError", TRANSIENT),
        ("silent", "ServerTimeoutError", TIMEOUT),
    ],
)
def test_aiohttp_errors_from_a_misbehaving_server(
    raw_server: Callable[[str], RawServer],
    behaviour: str,
    exc_type: str,
    expected: ErrorClass,
) -> None:
    """What ``aiohttp`` really raises when a server misbehaves, and its class.

    Only the silent server's read is timed out short (as for httpx, above).
    """
    read_timeout = 0.05 if behaviour == "silent" else 5.0
    exc = aiohttp_error(raw_server(behaviour).url, read_timeout=read_timeout)
    assert isinstance(exc, getattr(aiohttp, exc_type))
    assert classify(exc) is expected


def test_aiohttp_unparsable_answer_still_yields_to_an_explicit_status(
    raw_server: Callable[[str], RawServer],
) -> None:
    """The parse-error rule reads the instance; an explicit ``status_code=`` still wins."""
    exc = aiohttp_error(raw_server("garbage").url)
    assert isinstance(exc, aiohttp.ClientResponseError)
    assert classify(exc, status_code=404) is FATAL


@pytest.mark.parametrize(
    ("url", "exc_type"),
    [
        ("ftpx://service.test/", "NonHttpUrlClientError"),
        ("http:///no-host", "InvalidUrlClientError"),
    ],
)
def test_aiohttp_urls_that_cannot_be_requested_are_fatal(url: str, exc_type: str) -> None:
    """A URL ``aiohttp`` refuses before connecting is FATAL."""
    exc = aiohttp_error(url)
    assert type(exc) is getattr(aiohttp, exc_type)
    assert classify(exc) is FATAL


def test_aiohttp_too_many_redirects_is_fatal(server: LoopbackServer) -> None:
    """A redirect loop ends in a real ``TooManyRedirects`` (a 302 status): FATAL."""
    exc = aiohttp_error(f"{server.url}/redirect", max_redirects=2)
    assert type(exc) is aiohttp.TooManyRedirects
    assert classify(exc) is FATAL


def aiohttp_connection_key() -> Any:
    """What aiohttp's connector errors are built from."""
    return SimpleNamespace(host="service.test", port=443, is_ssl=True, ssl=True, proxy=None)


AIOHTTP_TABLE = [
    (lambda: aiohttp.ServerTimeoutError("timeout"), TIMEOUT),
    (lambda: aiohttp.ConnectionTimeoutError("connect timeout"), TIMEOUT),
    (lambda: aiohttp.SocketTimeoutError("read timeout"), TIMEOUT),
    (
        lambda: aiohttp.ClientConnectorError(aiohttp_connection_key(), OSError(111, "refused")),
        TRANSIENT,
    ),
    (
        lambda: aiohttp.ClientConnectorDNSError(aiohttp_connection_key(), OSError(-2, "dns")),
        TRANSIENT,
    ),
    (
        lambda: aiohttp.ClientProxyConnectionError(aiohttp_connection_key(), OSError(111, "x")),
        TRANSIENT,
    ),
    (lambda: aiohttp.ClientOSError(104, "reset"), TRANSIENT),
    (lambda: aiohttp.ClientConnectionResetError("reset"), TRANSIENT),
    (lambda: aiohttp.ServerDisconnectedError(), TRANSIENT),
    (lambda: aiohttp.ServerConnectionError("gone"), TRANSIENT),
    (lambda: aiohttp.ClientConnectionError("gone"), TRANSIENT),
    (lambda: aiohttp.ClientPayloadError("cut short"), TRANSIENT),
    (lambda: aiohttp.ServerFingerprintMismatch(b"expected", b"got", "service.test", 443), FATAL),
    (lambda: aiohttp.InvalidURL("http:///x"), FATAL),
    (lambda: aiohttp.InvalidUrlClientError("http:///x"), FATAL),
    (lambda: aiohttp.InvalidUrlRedirectClientError("http:///x", "bad redirect"), FATAL),
    (lambda: aiohttp.NonHttpUrlClientError("ftp://x"), FATAL),
    (lambda: aiohttp.NonHttpUrlRedirectClientError("ftp://x"), FATAL),
    (lambda: aiohttp.ClientError("anything"), UNKNOWN),
]


@pytest.mark.parametrize(
    ("make", "expected"), AIOHTTP_TABLE, ids=lambda v: getattr(v, "__name__", v)
)
def test_aiohttp_exceptions_are_classified_by_type(
    make: Callable[[], Exception], expected: ErrorClass
) -> None:
    """Each ``aiohttp`` exception class gets the class the docs give it."""
    assert classify(make()) is expected


# --- no client is imported by classifying ---------------------------------------------


def test_classify_imports_no_http_client() -> None:
    """Classifying and reading ``Retry-After`` import no client, not even the stdlib's."""
    done = run_python(
        """
        import sys
        from types import SimpleNamespace
        import resilient

        class HttpFailure(Exception):
            response = SimpleNamespace(status_code=503, headers={"Retry-After": "5"})

        assert resilient.classify(ConnectionRefusedError()) is resilient.ErrorClass.TRANSIENT
        assert resilient.classify(HttpFailure()) is resilient.ErrorClass.DEGRADED
        assert resilient.classify(OSError()) is resilient.ErrorClass.UNKNOWN
        assert resilient.retry_after(HttpFailure()) == 5.0
        clients = ("requests", "httpx", "aiohttp", "urllib.request", "urllib.error", "http.client")
        print(sorted(name for name in clients if name in sys.modules))
        """
    )
    assert done.stdout.strip() == "[]"


def test_classify_works_when_no_client_can_be_imported() -> None:
    """With httpx and aiohttp absent, every other rule still applies."""
    run_python(
        """
        import sys
        sys.modules["httpx"] = None
        sys.modules["aiohttp"] = None
        import urllib.error
        from resilient import ErrorClass, classify

        assert classify(urllib.error.URLError(ConnectionRefusedError())) is ErrorClass.TRANSIENT
        assert classify(TimeoutError()) is ErrorClass.TIMEOUT
        assert classify(OSError()) is ErrorClass.UNKNOWN
        """
    )


def test_client_exceptions_are_recognised_when_the_client_is_imported_later() -> None:
    """The rules look the clients up when they run: classifying before the import is harmless."""
    run_python(
        """
        from resilient import ErrorClass, classify

        assert classify(OSError()) is ErrorClass.UNKNOWN
        assert classify(ValueError()) is ErrorClass.UNKNOWN
        import aiohttp
        import httpx
        import urllib.error

        assert classify(httpx.ConnectError("refused")) is ErrorClass.TRANSIENT
        assert classify(aiohttp.ClientOSError(104, "reset")) is ErrorClass.TRANSIENT
        assert classify(aiohttp.InvalidURL("x")) is ErrorClass.FATAL
        error = urllib.error.HTTPError("http://x/", 503, "down", None, None)
        assert classify(error) is ErrorClass.DEGRADED
        """
    )


def test_retry_closes_the_http_errors_it_retries_past(server: LoopbackServer) -> None:
    """A plain ``urlopen(url).read()`` retried twice leaves no unclosed response behind."""
    import gc

    key = uuid.uuid4().hex

    @retry(base_delay=0, clock=ManualClock())
    def fetch() -> bytes:
        body: bytes = urllib.request.urlopen(
            f"{server.url}/flaky/{key}?failures=2", timeout=5
        ).read()
        return body

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fetch() == b"ok"
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


# --- the LLM era: httpx2, the Stainless SDKs, chains, x-should-retry -------------------

SDKS = ("openai", "anthropic")


@pytest.mark.parametrize(
    ("exc_type", "expected"), HTTPX_TABLE, ids=lambda v: getattr(v, "__name__", v)
)
def test_httpx2_exceptions_are_classified_exactly_like_httpx(
    exc_type: type[Exception], expected: ErrorClass
) -> None:
    """Each ``httpx2`` exception class gets the class of its ``httpx`` namesake."""
    twin = getattr(httpx2, exc_type.__name__)
    assert twin is not exc_type
    exc = twin() if issubclass(twin, httpx2.StreamError) else twin("failed")
    assert classify(exc) is expected


def test_httpx2_connection_refused_is_transient(closed_port_url: str) -> None:
    """A real ``httpx2`` GET of a refused port raises ``ConnectError``: TRANSIENT."""
    with pytest.raises(httpx2.ConnectError) as caught, httpx2.Client() as client:
        client.get(closed_port_url)
    assert classify(caught.value) is TRANSIENT


@pytest.mark.parametrize(("status", "expected"), LIVE_STATUS_TABLE)
def test_httpx2_status_error_is_classified_by_its_response(
    status: int, expected: ErrorClass
) -> None:
    """``httpx2.HTTPStatusError`` from ``raise_for_status`` is classified by its status."""
    transport = httpx2.MockTransport(lambda request: httpx2.Response(status))
    with httpx2.Client(transport=transport) as client:
        response = client.get("http://service.test/")
    with pytest.raises(httpx2.HTTPStatusError) as caught:
        response.raise_for_status()
    assert classify(caught.value) is expected


@pytest.fixture
def llm_server() -> Iterator[FakeLLMServer]:
    """A scripted fake of the OpenAI and Anthropic APIs on loopback."""
    with FakeLLMServer() as running:
        yield running


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback URL whose listener accepts connections (backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def sdk_call(sdk: str, base_url: str, *, timeout: float = 5.0) -> Exception:
    """What one real SDK call (``max_retries=0``: the SDK's retries off) raises.

    The client is closed before returning: its pool's connection to the server
    would otherwise be left to the garbage collector (an unclosed socket).
    """
    try:
        if sdk == "openai":
            with sdk_module(sdk).OpenAI(
                api_key="test", base_url=base_url + "/v1", max_retries=0, timeout=timeout
            ) as client:
                client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
        else:
            with sdk_module(sdk).Anthropic(
                api_key="test", base_url=base_url, max_retries=0, timeout=timeout
            ) as client_:
                client_.messages.create(
                    model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
                )
    except Exception as exc:
        return exc
    raise AssertionError(f"the {sdk} call did not fail")


def sdk_module(sdk: str) -> Any:
    """The SDK's module, imported here: an xdist worker that runs no SDK test never pays for it."""
    return importlib.import_module(sdk)


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_connection_error_is_transient(sdk: str, closed_port_url: str) -> None:
    """A real SDK call to a refused port raises ``APIConnectionError``: TRANSIENT."""
    exc = sdk_call(sdk, closed_port_url.rstrip("/"))
    assert type(exc) is sdk_module(sdk).APIConnectionError
    assert isinstance(exc.__cause__, httpx2.ConnectError)
    assert classify(exc) is TRANSIENT


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_timeout_is_timeout(sdk: str, silent_url: str) -> None:
    """A real SDK call to a listener that never answers raises ``APITimeoutError``: TIMEOUT."""
    exc = sdk_call(sdk, silent_url, timeout=0.1)
    assert type(exc) is sdk_module(sdk).APITimeoutError
    assert classify(exc) is TIMEOUT


SDK_STATUSES = [
    (400, FATAL),
    (401, FATAL),
    (403, FATAL),
    (404, FATAL),
    (409, FATAL),
    (422, FATAL),
    (429, TRANSIENT),
    (500, DEGRADED),
    (503, DEGRADED),
    (504, TIMEOUT),
    (529, DEGRADED),
]


@pytest.mark.parametrize(("status", "expected"), SDK_STATUSES)
@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_status_errors_are_classified_by_status(
    sdk: str, status: int, expected: ErrorClass, llm_server: FakeLLMServer
) -> None:
    """A real SDK call answered with *status* raises its ``APIStatusError``, classified by status."""
    llm_server.script(OPENAI_PATH if sdk == "openai" else ANTHROPIC_PATH, Reply(status))
    exc = sdk_call(sdk, llm_server.url)
    assert isinstance(exc, sdk_module(sdk).APIStatusError)
    assert exc.status_code == status
    assert classify(exc) is expected


def _connections_to(port: int) -> int:
    """How many TCP sockets of this process are connected to loopback *port* (Linux)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            with socket.socket(fileno=os.dup(int(fd))) as dup:
                if dup.family == socket.AF_INET and dup.getpeername()[1] == port:
                    count += 1
        except OSError:  # not a socket, not connected, or closed meanwhile
            continue
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="lists descriptors via /proc")
@pytest.mark.parametrize("sdk", SDKS)
def test_an_sdk_call_of_these_tests_leaves_no_connection_open(
    sdk: str, llm_server: FakeLLMServer
) -> None:
    """``sdk_call`` closes its client: no socket is left for the garbage collector.

    The error it returns holds the SDK's frames, and so its client and the
    pool's connection; left unclosed, that socket warned (``ResourceWarning``,
    an error here) in whichever later test happened to run the collector.
    """
    llm_server.script(OPENAI_PATH if sdk == "openai" else ANTHROPIC_PATH, Reply(400))
    port = urllib.parse.urlsplit(llm_server.url).port
    assert port is not None
    exc = sdk_call(sdk, llm_server.url)
    assert isinstance(exc, sdk_module(sdk).APIStatusError)
    assert _connections_to(port) == 0


def test_anthropic_overloaded_529_is_degraded(llm_server: FakeLLMServer) -> None:
    """Anthropic's 529 "overloaded" (its own ``OverloadedError``) is DEGRADED."""
    llm_server.script(ANTHROPIC_PATH, Reply(529))
    exc = sdk_call("anthropic", llm_server.url)
    assert type(exc) is sdk_module("anthropic").OverloadedError
    assert classify(exc) is DEGRADED


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_errors_built_as_the_sdk_builds_them(sdk: str) -> None:
    """The SDK's own constructors (no network): connection, timeout, status errors."""
    module = sdk_module(sdk)
    request = httpx2.Request("POST", "https://api.test/v1/x")
    assert classify(module.APIConnectionError(request=request)) is TRANSIENT
    assert classify(module.APITimeoutError(request=request)) is TIMEOUT
    response = httpx2.Response(529, request=request)
    assert classify(module.APIStatusError("overloaded", response=response, body=None)) is DEGRADED
    response = httpx2.Response(422, request=request)
    assert classify(module.UnprocessableEntityError("bad", response=response, body=None)) is FATAL


def test_a_stainless_shaped_sdk_is_recognised_without_importing_anything() -> None:
    """Any SDK with Stainless's tree (``APIError`` > ``APIConnectionError`` > ``APITimeoutError``)."""

    class APIError(Exception):
        pass

    class APIConnectionError(APIError):
        pass

    class APITimeoutError(APIConnectionError):
        pass

    class MyTimeout(APITimeoutError):
        pass

    assert classify(APIConnectionError("down")) is TRANSIENT
    assert classify(MyTimeout("slow")) is TIMEOUT
    assert classify(APIError("other")) is UNKNOWN

    # The same name with no APIError above it (another library's class): not the SDK shape.
    lookalike = type("APIConnectionError", (Exception,), {})
    assert classify(lookalike("down")) is UNKNOWN


# the chain


class Wrapper(Exception):
    """An exception of a library that wraps the real failure."""


def raised_from(cause: BaseException | None, *, depth: int = 1) -> BaseException:
    """A ``Wrapper`` raised ``from`` *cause* through *depth* wrappers."""
    exc: BaseException | None = cause
    for n in range(depth):
        try:
            raise Wrapper(f"wrapper {n}") from exc
        except Wrapper as caught:
            exc = caught
    assert exc is not None
    return exc


def test_a_wrapper_raised_from_a_connection_error_is_transient() -> None:
    """``raise Wrapper from ConnectionResetError``: retried like the connection error."""
    assert classify(raised_from(ConnectionResetError())) is TRANSIENT
    assert classify(raised_from(TimeoutError())) is TIMEOUT
    assert classify(raised_from(http_error(503))) is DEGRADED


def wrap_while_handling(*, suppress: bool) -> None:
    """Raise a ``Wrapper`` inside the ``except`` of a connection reset."""
    try:
        raise ConnectionResetError("reset")
    except ConnectionResetError:
        if suppress:
            raise Wrapper("hidden") from None
        raise Wrapper("while handling")  # noqa: B904 - the implicit context is the point


def test_an_exception_raised_while_handling_another_takes_its_context() -> None:
    """An error raised in an ``except`` block (``__context__``) answers for an UNKNOWN one."""
    with pytest.raises(Wrapper) as caught:
        wrap_while_handling(suppress=False)
    assert classify(caught.value) is TRANSIENT


def test_a_suppressed_context_is_not_read() -> None:
    """``raise ... from None`` hides the context: the wrapper stays UNKNOWN."""
    with pytest.raises(Wrapper) as caught:
        wrap_while_handling(suppress=True)
    assert caught.value.__context__ is not None
    assert classify(caught.value) is UNKNOWN


def test_the_chain_is_read_five_links_deep_and_no_deeper() -> None:
    """Five wrappers over a connection error: TRANSIENT; six: UNKNOWN."""
    assert classify(raised_from(ConnectionResetError(), depth=5)) is TRANSIENT
    assert classify(raised_from(ConnectionResetError(), depth=6)) is UNKNOWN


def test_a_cyclic_chain_ends() -> None:
    """A chain that loops back on itself (built by hand) is UNKNOWN, not a hang."""
    first, second = Wrapper("a"), Wrapper("b")
    first.__cause__, second.__cause__ = second, first
    assert classify(first) is UNKNOWN


def test_the_chain_is_read_only_when_the_rules_say_unknown() -> None:
    """A FATAL wrapper stays FATAL whatever it was raised from; the first known link wins."""
    bug = TypeError("bug")
    bug.__cause__ = ConnectionResetError()
    assert classify(bug) is FATAL
    inner = Wrapper("inner")
    inner.__cause__ = ConnectionResetError()
    middle = TimeoutError("middle")
    middle.__cause__ = inner
    top = Wrapper("top")
    top.__cause__ = middle
    assert classify(top) is TIMEOUT


def test_the_chain_uses_registered_rules_and_error_class_attributes() -> None:
    """Each link is classified as it would be alone: registered rules and ``error_class`` too."""
    classifier = Classifier()
    classifier.register(KeyError, TRANSIENT)
    assert classifier(raised_from(KeyError("cache"))) is TRANSIENT
    marked = ValueError("marked")
    marked.error_class = DEGRADED  # type: ignore[attr-defined]
    assert classify(raised_from(marked)) is DEGRADED


def test_an_explicit_unknown_is_not_second_guessed() -> None:
    """A rule or attribute that says UNKNOWN on the exception itself stops there."""
    classifier = Classifier()
    classifier.register(Wrapper, UNKNOWN)
    assert classifier(raised_from(ConnectionResetError())) is UNKNOWN
    exc = raised_from(ConnectionResetError())
    exc.error_class = UNKNOWN  # type: ignore[attr-defined]
    assert classify(exc) is UNKNOWN


# x-should-retry


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (409, "true", TRANSIENT),  # the lock timeout the SDKs retry: the server says so
        (400, "true", TRANSIENT),
        (503, "true", DEGRADED),  # true keeps a retryable class as it is
        (504, "true", TIMEOUT),
        (503, "false", FATAL),
        (429, "false", FATAL),
        (500, "False", FATAL),
        (409, " TRUE ", TRANSIENT),
        (503, "maybe", DEGRADED),  # neither true nor false: ignored
        (409, "", FATAL),
    ],
)
def test_x_should_retry_overrides_the_status(
    status: int, header: str, expected: ErrorClass
) -> None:
    """``x-should-retry: true`` makes FATAL or UNKNOWN TRANSIENT; ``false`` makes anything FATAL."""
    assert classify(http_error(status, {"x-should-retry": header})) is expected


def test_x_should_retry_true_on_an_unknown_error_with_a_response() -> None:
    """An error without a failing status, whose response says retry, is TRANSIENT."""
    assert classify(ResponseError(200, {"x-should-retry": "true"})) is TRANSIENT


@pytest.mark.parametrize("name", ["x-should-retry", "X-Should-Retry", "X-SHOULD-RETRY"])
@pytest.mark.parametrize(("header", "expected"), [("true", TRANSIENT), ("false", FATAL)])
def test_x_should_retry_in_a_plain_dict_is_read_in_any_case(
    name: str, header: str, expected: ErrorClass
) -> None:
    """Header names are case-insensitive, also in a plain ``dict`` of headers."""
    assert classify(ResponseError(409, {name: header})) is expected


@pytest.mark.parametrize("sdk", SDKS)
def test_x_should_retry_from_a_real_sdk_error(sdk: str, llm_server: FakeLLMServer) -> None:
    """The SDK's 409 carrying ``x-should-retry: true`` is TRANSIENT; a 500 with ``false`` FATAL."""
    path = OPENAI_PATH if sdk == "openai" else ANTHROPIC_PATH
    llm_server.script(path, Reply(409, headers={"x-should-retry": "true"}))
    assert classify(sdk_call(sdk, llm_server.url)) is TRANSIENT
    llm_server.script(path, Reply(500, headers={"x-should-retry": "false"}))
    assert classify(sdk_call(sdk, llm_server.url)) is FATAL


def test_a_registered_rule_wins_over_x_should_retry() -> None:
    """The user's rules come before the server's verdict."""
    classifier = Classifier()
    classifier.register(requests.HTTPError, DEGRADED)
    assert classifier(http_error(503, {"x-should-retry": "false"})) is DEGRADED


# retry-after-ms


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),  # milliseconds first
        ({"Retry-After-Ms": "20"}, 0.02),  # any case
        ({"retry-after-ms": "0"}, 0.0),
        ({"retry-after-ms": "soon", "Retry-After": "9"}, 9.0),  # unusable: falls back
        ({"retry-after-ms": "-5", "Retry-After": "9"}, 9.0),
        ({"retry-after-ms": "inf", "Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "nan"}, None),
    ],
)
def test_retry_after_reads_retry_after_ms_first(
    headers: dict[str, str], expected: float | None
) -> None:
    """``retry-after-ms`` (the LLM providers' header) before ``Retry-After``."""
    assert retry_after(real_response(429, headers)) == expected


@pytest.mark.parametrize("sdk", SDKS)
def test_retry_after_ms_from_a_real_sdk_error(sdk: str, llm_server: FakeLLMServer) -> None:
    """The 429 a real SDK raises carries its ``retry-after-ms``."""
    path = OPENAI_PATH if sdk == "openai" else ANTHROPIC_PATH
    llm_server.script(path, Reply(429, headers={"retry-after-ms": "750", "retry-after": "1"}))
    exc = sdk_call(sdk, llm_server.url)
    assert isinstance(exc, sdk_module(sdk).RateLimitError)
    assert retry_after(exc) == 0.75


def test_retry_after_ms_from_httpx2_headers() -> None:
    """An ``httpx2.Response`` is read the same way."""
    response = httpx2.Response(429, headers={"retry-after-ms": "40"})
    assert retry_after(response) == 0.04


# requests' ChunkedEncodingError


def test_requests_chunked_encoding_error_is_transient() -> None:
    """The connection broke mid-body: TRANSIENT, like the other clients' equivalents."""
    assert classify(requests.exceptions.ChunkedEncodingError("cut")) is TRANSIENT


def test_requests_chunked_encoding_error_from_a_real_cut_body() -> None:
    """A real chunked body cut short makes ``requests`` raise ``ChunkedEncodingError``: TRANSIENT."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with pytest.raises(requests.exceptions.ChunkedEncodingError) as caught:
                requests.get(f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout=5)
        finally:
            thread.join(timeout=5)
    assert classify(caught.value) is TRANSIENT


# nothing imported


def test_classify_imports_no_llm_client() -> None:
    """``import resilient`` and classifying load neither httpx, httpx2, openai nor anthropic."""
    done = run_python(
        """
        import sys
        import resilient

        class APIError(Exception): ...
        class APIConnectionError(APIError): ...

        wrapped = RuntimeError("wrapper")
        wrapped.__cause__ = APIConnectionError()
        assert resilient.classify(wrapped) is resilient.ErrorClass.TRANSIENT
        print(sorted(m for m in ("httpx", "httpx2", "openai", "anthropic") if m in sys.modules))
        """
    )
    assert done.stdout.strip() == "[]"
