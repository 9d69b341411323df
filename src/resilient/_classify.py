"""One vocabulary for failure: ``ErrorClass`` and the classifier that assigns it.

Strictly private: users import these names from ``resilient`` (a module named
``classify`` would shadow the function ``resilient.classify`` once imported).

Every other primitive decides from an ``ErrorClass``: whether to retry, whether
a failure counts against a breaker, how loudly to log. This module imports
nothing else of ``resilient`` and never imports ``requests``: a ``requests``
exception can only exist once ``requests`` has been imported, so the rules
look it up in ``sys.modules`` when they run.
"""

from __future__ import annotations

import enum
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Classifier", "ErrorClass", "classify", "classify_requests_error", "retry_after"]


class ErrorClass(enum.Enum):
    """What kind of failure an exception (or an HTTP status) is.

    - ``TRANSIENT``: will likely succeed if tried again soon (429, a reset
      connection).
    - ``DEGRADED``: the other side is failing (500, 502, 503); retry with
      care, count against a circuit breaker.
    - ``FATAL``: retrying cannot help (401, 404, a ``TypeError``).
    - ``TIMEOUT``: no answer in time (504, 408, a read timeout).
    - ``UNKNOWN``: nothing says; not retried by default.
    """

    TRANSIENT = "transient"
    DEGRADED = "degraded"
    FATAL = "fatal"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"

    def __repr__(self) -> str:
        return f"ErrorClass.{self.name}"


class Rejection(Exception):
    """Strictly private. Base of the errors raised for a call refused without running.

    ``CircuitOpenError`` is one. The dependency is unavailable, so it is
    TIMEOUT for every classifier; and since waiting out a backoff cannot make
    it admit the call sooner, retry and tasks stop at once on it.
    """

    error_class = ErrorClass.TIMEOUT


Predicate = Callable[[BaseException], bool]
Rule = type[BaseException] | tuple[type[BaseException], ...] | Predicate

_FATAL_STATUSES = frozenset({501, 505})
_TIMEOUT_STATUSES = frozenset({408, 504})
_TRANSIENT_STATUSES = frozenset({425, 429})

_FATAL_BUILTINS: tuple[type[BaseException], ...] = (
    TypeError,
    AttributeError,
    NameError,
    ImportError,
    NotImplementedError,
    AssertionError,
    PermissionError,
    FileNotFoundError,
    IsADirectoryError,
)


def status_class(status_code: int) -> ErrorClass | None:
    """Classify an HTTP status code; ``None`` for codes that are not failures.

    429 and 425 are TRANSIENT; 504 and 408 TIMEOUT; 501, 505 and every other
    4xx FATAL; every other 5xx DEGRADED; anything below 400 is not a failure.
    """
    if status_code in _TRANSIENT_STATUSES:
        return ErrorClass.TRANSIENT
    if status_code in _TIMEOUT_STATUSES:
        return ErrorClass.TIMEOUT
    if status_code in _FATAL_STATUSES or 400 <= status_code < 500:
        return ErrorClass.FATAL
    if 500 <= status_code < 600:
        return ErrorClass.DEGRADED
    return None


def response_status(obj: object) -> int | None:
    """Return ``obj.response.status_code`` when it is an ``int``, else ``None``."""
    response = getattr(obj, "response", None)
    if response is None:
        return None
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _requests_class(exc_type: type[BaseException]) -> ErrorClass | None:
    requests = sys.modules.get("requests")
    if requests is None:
        return None
    rex = requests.exceptions
    if issubclass(exc_type, rex.Timeout):  # ConnectTimeout and ReadTimeout included
        return ErrorClass.TIMEOUT
    if issubclass(
        exc_type,
        (
            rex.InvalidURL,
            rex.InvalidSchema,
            rex.MissingSchema,
            rex.InvalidHeader,
            rex.TooManyRedirects,
        ),
    ):
        return ErrorClass.FATAL
    if issubclass(exc_type, rex.ConnectionError):
        return ErrorClass.TRANSIENT
    return None


def _builtin_class(exc_type: type[BaseException]) -> ErrorClass | None:
    # asyncio.TimeoutError is builtin TimeoutError since Python 3.11; on 3.10
    # it is its own class, found through sys.modules without importing asyncio.
    if issubclass(exc_type, TimeoutError):
        return ErrorClass.TIMEOUT
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and issubclass(exc_type, asyncio.TimeoutError):
        return ErrorClass.TIMEOUT
    if issubclass(exc_type, ConnectionError):
        return ErrorClass.TRANSIENT
    if issubclass(exc_type, _FATAL_BUILTINS):
        return ErrorClass.FATAL
    return None


_TYPE_CACHE: dict[type[BaseException], ErrorClass] = {}
_TYPE_CACHE_LIMIT = 512


def _class_of_type(exc_type: type[BaseException]) -> ErrorClass:
    """The default class of an exception type, cached per type.

    Caching by type is sound: these rules read nothing but the type, and a
    ``requests`` (or, on 3.10, ``asyncio``) exception type cannot exist before
    its module is imported.
    """
    found = _TYPE_CACHE.get(exc_type)
    if found is None:
        found = _requests_class(exc_type) or _builtin_class(exc_type) or ErrorClass.UNKNOWN
        if len(_TYPE_CACHE) >= _TYPE_CACHE_LIMIT:  # types made in a loop must not grow it
            _TYPE_CACHE.clear()
        _TYPE_CACHE[exc_type] = found
    return found


class Classifier:
    """An ordered list of rules that turns an exception into an ``ErrorClass``.

    The order, first match wins: an ``error_class`` attribute on the exception
    that is an ``ErrorClass``; the rules added with ``register`` (in the order
    they were added); the HTTP status (the ``status_code`` argument, or
    ``exc.response.status_code``); the built-in exception rules; ``UNKNOWN``.

    Example:
        >>> my_classifier = Classifier()
        >>> my_classifier.register(KeyError, ErrorClass.TRANSIENT)
        >>> my_classifier(KeyError("cache miss"))
        ErrorClass.TRANSIENT
    """

    __slots__ = ("_rules",)

    def __init__(self) -> None:
        self._rules: list[tuple[Rule, ErrorClass]] = []

    def register(self, rule: Rule, error_class: ErrorClass) -> None:
        """Add a rule that wins over the default rules.

        Args:
            rule: an exception type, a tuple of them, or a predicate
                ``(exc) -> bool``.
            error_class: the class given to exceptions the rule matches.
        """
        if not isinstance(error_class, ErrorClass):
            raise TypeError(f"error_class must be an ErrorClass, got {error_class!r}")
        if not (_is_exception_types(rule) or callable(rule)):
            raise TypeError(
                f"rule must be an exception type, a tuple of them or a predicate, got {rule!r}"
            )
        self._rules.append((rule, error_class))

    def __call__(self, exc: BaseException, status_code: int | None = None) -> ErrorClass:
        """Classify *exc*; *status_code*, when given, wins over the one on ``exc``."""
        own = getattr(exc, "error_class", None)
        if own is not None and isinstance(own, ErrorClass):
            return own
        if self._rules:
            for rule, error_class in self._rules:
                if _matches(rule, exc):
                    return error_class
        code = status_code
        if code is None and getattr(exc, "response", None) is not None:
            code = response_status(exc)
        if code is not None:
            by_status = status_class(code)
            if by_status is not None:
                return by_status
        return _class_of_type(type(exc))

    def __repr__(self) -> str:
        return f"Classifier(rules={len(self._rules)})"


def _is_exception_types(rule: object) -> bool:
    if isinstance(rule, tuple):
        return all(isinstance(t, type) and issubclass(t, BaseException) for t in rule)
    return isinstance(rule, type) and issubclass(rule, BaseException)


def _matches(rule: Rule, exc: BaseException) -> bool:
    if isinstance(rule, (type, tuple)):
        return isinstance(exc, rule)
    return bool(rule(exc))


classify = Classifier()
"""The default classifier; every primitive uses it unless given ``classifier=``."""


def classify_requests_error(exc: BaseException, status_code: int | None = None) -> ErrorClass:
    """Classify *exc* with the default rules: the name the original design used.

    The same decision as ``classify(exc, status_code)``: an explicit
    *status_code* wins over ``exc.response.status_code``, and exceptions of
    other HTTP clients and of the standard library are classified too.

    Returns:
        The ``ErrorClass`` of *exc*.
    """
    return classify(exc, status_code)


def retry_after(exc_or_response: object, *, now: float | None = None) -> float | None:
    """Seconds to wait that a ``Retry-After`` header asks for, or ``None``.

    Accepts an exception with a ``.response``, or a response itself (anything
    with a ``headers`` mapping). The header may hold seconds (``"120"``) or an
    HTTP date; a date is measured from *now* (a Unix timestamp, default the
    current time). A negative, past, non-finite or unparsable value gives
    ``None``.
    """
    response = getattr(exc_or_response, "response", None)
    if response is None:
        response = exc_or_response
    headers: Any = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("Retry-After")
    except Exception:  # a headers object we do not understand is not a header
        return None
    if not isinstance(value, str):
        return None
    return parse_retry_after(value, now=now)


def parse_retry_after(value: str, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` value (seconds or HTTP date); ``None`` when invalid."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "1.5" is not valid HTTP but is common; "-1", "nan" and "inf" are not usable.
        return seconds if 0 <= seconds < float("inf") else None
    from email.utils import parsedate_to_datetime  # noqa: PLC0415 - rare and slow to import

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # a year 10**20
        return None
    if when.tzinfo is None:  # "-0000" dates: HTTP dates are always GMT
        import datetime  # noqa: PLC0415

        when = when.replace(tzinfo=datetime.timezone.utc)
    delta = when.timestamp() - (time.time() if now is None else now)
    return delta if delta >= 0 else None
