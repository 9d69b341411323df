"""The classification table of the contract, ``Classifier.register`` and ``retry_after``."""

from __future__ import annotations

import asyncio
import math
import pickle
import subprocess
import sys
import textwrap
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from freezegun import freeze_time
from hypothesis import given
from hypothesis import strategies as st

from resilient import Classifier, ErrorClass, classify, retry_after

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
        timeout=30,
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


@given(st.text())
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


def test_retry_after_reads_a_failing_response_that_is_falsy() -> None:
    """A 429 ``Response`` is falsy (``not response.ok``) and is still read."""
    response = real_response(429, {"Retry-After": "2"})
    assert not response
    assert retry_after(response) == 2.0
