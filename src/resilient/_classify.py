"""One vocabulary for failure: ``ErrorClass`` and the classifier that assigns it.

Strictly private: users import these names from ``resilient`` (a module named
``classify`` would shadow the function ``resilient.classify`` once imported).

Every other primitive decides from an ``ErrorClass``: whether to retry, whether
a failure counts against a breaker, how loudly to log. This module imports
nothing else of ``resilient`` and never imports an HTTP client (``requests``,
``httpx``, ``httpx2``, ``aiohttp``, an LLM SDK, not even ``urllib.request`` or
``http.client``): a client's exception can only exist once its module has been imported, so the
rules look the classes up in ``sys.modules`` when they run.
"""

from __future__ import annotations

import enum
import sys
import time
from collections.abc import Mapping

# Not ``typing.TYPE_CHECKING``: see ``resilient/__init__.py``.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeAlias

    Predicate: TypeAlias = Callable[[BaseException], bool]
    Rule: TypeAlias = type[BaseException] | tuple[type[BaseException], ...] | Predicate
    # How a type's class is read off one instance: (exc, status already known, classifier).
    InstanceRule: TypeAlias = Callable[[BaseException, int | None, "Classifier"], "ErrorClass"]

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


_UNKNOWN = ErrorClass.UNKNOWN
"""``ErrorClass.UNKNOWN`` for the hot paths: before Python 3.12 reading a member off
the class runs a descriptor in Python, about ten times the cost of a global."""


class Rejection(Exception):
    """Strictly private. Base of the errors raised for a call refused without running.

    ``CircuitOpenError`` is one. The dependency is unavailable, so it is
    TIMEOUT for every classifier; and since waiting out a backoff cannot make
    it admit the call sooner, retry and tasks stop at once on it.
    """

    error_class = ErrorClass.TIMEOUT


def rejection_in(exc: BaseException) -> BaseException | None:
    """Strictly private. The ``Rejection`` *exc* is, or was raised from or while handling.

    The classifier's chain walk: the ``__cause__``, else the ``__context__``
    unless suppressed, up to ``_MAX_CHAIN`` links. So an SDK error raised from
    a ``CircuitOpenError`` (the anthropic SDK wraps what its transport raised)
    is a rejected call too: retry and tasks stop on it at once.
    """
    if isinstance(exc, Rejection):
        return exc
    current = exc
    for _ in range(_MAX_CHAIN):
        linked = current.__cause__
        if linked is None and not current.__suppress_context__:
            linked = current.__context__
        if linked is None or linked is exc:
            return None
        if isinstance(linked, Rejection):
            return linked
        current = linked
    return None


class Throttled(Exception):
    """Strictly private. Base of the errors raised when pacing held a call back.

    ``RateLimitExceeded`` and ``ConcurrencyLimitExceeded`` are ones. They
    are TRANSIENT, and a circuit breaker never counts them as failures: the
    dependency did not fail, this process chose not to call it.
    """

    error_class = ErrorClass.TRANSIENT


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


def _types(module: Any, *names: str) -> tuple[type[BaseException], ...]:
    """The exception classes *names* of *module* that exist (older releases lack some)."""
    found = (getattr(module, name, None) for name in names)
    return tuple(t for t in found if isinstance(t, type) and issubclass(t, BaseException))


def _requests_class(exc_type: type[BaseException]) -> ErrorClass | None:
    rex = getattr(sys.modules.get("requests"), "exceptions", None)
    if rex is None:
        return None
    if issubclass(exc_type, _types(rex, "Timeout")):  # ConnectTimeout and ReadTimeout included
        return ErrorClass.TIMEOUT
    fatal = _types(
        rex, "InvalidURL", "InvalidSchema", "MissingSchema", "InvalidHeader", "TooManyRedirects"
    )
    if issubclass(exc_type, fatal):
        return ErrorClass.FATAL
    # ChunkedEncodingError: the connection broke mid-body, as httpx's ReadError.
    if issubclass(exc_type, _types(rex, "ConnectionError", "ChunkedEncodingError")):
        return ErrorClass.TRANSIENT
    return None


class _StatusAttribute:
    """Strictly private: classify by a status the exception carries itself.

    ``urllib.error.HTTPError.code`` and aiohttp's ``ClientResponseError.status``
    are read from the instance at every call, never cached per type. A status
    already known (given, or from ``exc.response``) wins over it; a status that
    is not a failure leaves the decision to *otherwise*, the class of the type.
    """

    __slots__ = ("attribute", "otherwise")

    def __init__(self, attribute: str, otherwise: ErrorClass) -> None:
        self.attribute = attribute
        self.otherwise = otherwise

    def __call__(
        self, exc: BaseException, status_code: int | None, classifier: Classifier
    ) -> ErrorClass:
        if status_code is None:
            code = getattr(exc, self.attribute, None)
            if isinstance(code, int) and not isinstance(code, bool):
                return status_class(code) or self.otherwise
        return self.otherwise


class _AiohttpStatus(_StatusAttribute):
    """Strictly private: aiohttp's ``.status``, unless aiohttp could not parse the answer.

    A response head aiohttp cannot parse (a bad status line, a header line too
    long) is raised as ``ClientResponseError(status=400)`` from an
    ``HttpProcessingError``: the 400 is aiohttp's, not the server's. That is
    the other side failing, DEGRADED, as ``http.client.BadStatusLine`` is.
    """

    __slots__ = ()

    def __call__(
        self, exc: BaseException, status_code: int | None, classifier: Classifier
    ) -> ErrorClass:
        if status_code is None and isinstance(
            exc.__cause__, _types(sys.modules.get("aiohttp.http_exceptions"), "HttpProcessingError")
        ):
            return ErrorClass.DEGRADED
        return _StatusAttribute.__call__(self, exc, status_code, classifier)


_HTTP_ERROR_RULE = _StatusAttribute("code", ErrorClass.UNKNOWN)

# urllib never nests a URLError in another; a longer chain is a cycle built by hand.
_MAX_NESTED_REASONS = 4


def _url_error_class(
    exc: BaseException, status_code: int | None, classifier: Classifier
) -> ErrorClass:
    """A ``URLError`` is what its reason is.

    ``urlopen`` wraps every ``OSError`` raised while connecting and sending the
    request (refused, unreachable, DNS, TLS, timeout) in ``URLError(err)``. The
    reason is classified as it would be on its own (so ``ConnectionRefusedError``
    is TRANSIENT, ``socket.timeout`` TIMEOUT, a ``FileNotFoundError`` of a
    ``file:`` URL FATAL); an ``OSError`` that no rule knows (a DNS failure,
    ``ENETUNREACH``, a TLS error) means the request could not be made on this
    connection, TRANSIENT as a ``requests`` ``ConnectionError`` is. A string
    reason ("unknown url type", "no host given") names a request that cannot be
    made as written: FATAL, unless an exception caused it (``raise ... from``).
    """
    error = sys.modules.get("urllib.error")  # loaded: exc is one of its classes
    url_error, http_error = _types(error, "URLError"), _types(error, "HTTPError")
    reason: object = exc
    for _ in range(_MAX_NESTED_REASONS):
        reason = _reason_of(reason)
        if not isinstance(reason, url_error) or isinstance(reason, http_error):
            break
    else:
        return ErrorClass.UNKNOWN
    if not isinstance(reason, BaseException):
        return ErrorClass.FATAL
    found = classifier(reason)
    if found is ErrorClass.UNKNOWN and isinstance(reason, OSError):
        return ErrorClass.TRANSIENT
    return found


def _reason_of(url_error: object) -> object:
    reason = getattr(url_error, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    cause = getattr(url_error, "__cause__", None)  # URLError(f"ftp error: {exp}") from exp
    return cause if cause is not None else reason


def _stdlib_rule(exc_type: type[BaseException]) -> ErrorClass | InstanceRule | None:
    """``urllib.error`` and ``http.client``, found in ``sys.modules`` (never imported here).

    ``urlopen`` raises ``http.client`` errors unwrapped once the request is sent:
    ``RemoteDisconnected`` (the server closed a kept-alive connection, a
    ``ConnectionResetError``) and ``IncompleteRead`` (the body was cut short) are
    TRANSIENT; ``BadStatusLine`` and ``LineTooLong`` (an answer that is not
    HTTP we can read) are DEGRADED, the other side failing; ``InvalidURL``,
    ``UnknownProtocol`` (an HTTP version we cannot speak, as 505) and the
    connection-misuse errors (``NotConnected``, ``CannotSendRequest``,
    ``ResponseNotReady``...) are FATAL: asking again cannot change them.
    """
    error = sys.modules.get("urllib.error")
    if error is not None:
        if issubclass(exc_type, _types(error, "HTTPError")):
            return _HTTP_ERROR_RULE
        if issubclass(exc_type, _types(error, "ContentTooShortError")):  # a cut download
            return ErrorClass.TRANSIENT
        if issubclass(exc_type, _types(error, "URLError")):
            return _url_error_class
    client = sys.modules.get("http.client")
    if client is None:
        return None
    if issubclass(exc_type, _types(client, "RemoteDisconnected", "IncompleteRead")):
        return ErrorClass.TRANSIENT
    if issubclass(exc_type, _types(client, "BadStatusLine", "LineTooLong")):
        return ErrorClass.DEGRADED
    fatal = _types(
        client,
        "InvalidURL",
        "UnknownProtocol",
        "UnknownTransferEncoding",
        "UnimplementedFileMode",
        "NotConnected",
        "ImproperConnectionState",
    )
    if issubclass(exc_type, fatal):
        return ErrorClass.FATAL
    return None


def _httpx_class(exc_type: type[BaseException]) -> ErrorClass | None:
    """httpx's and httpx2's exceptions by type; ``HTTPStatusError`` by its response.

    ``httpx2`` (the client of the openai >= 3 and anthropic >= 2 SDKs) has the
    same exception tree as ``httpx`` and is classified exactly alike.

    ``TimeoutException`` (connect, read, write, pool) is TIMEOUT. A URL or a
    request that cannot be sent as written (``InvalidURL``,
    ``UnsupportedProtocol``, ``TooManyRedirects``, ``LocalProtocolError``: we
    broke HTTP) and misuse of a stream (``StreamError``) are FATAL. Every other
    ``TransportError`` (``ConnectError``, ``ReadError``, ``WriteError``,
    ``RemoteProtocolError``: the server hung up, ``ProxyError``) is TRANSIENT.
    ``DecodingError`` (a body that arrived and cannot be decoded) stays UNKNOWN.
    """
    modules = sys.modules
    return _httpx_module_class(modules.get("httpx"), exc_type) or _httpx_module_class(
        modules.get("httpx2"), exc_type
    )


def _httpx_module_class(httpx: Any, exc_type: type[BaseException]) -> ErrorClass | None:
    if httpx is None:
        return None
    if issubclass(exc_type, _types(httpx, "TimeoutException")):
        return ErrorClass.TIMEOUT
    fatal = _types(
        httpx,
        "InvalidURL",
        "UnsupportedProtocol",
        "TooManyRedirects",
        "LocalProtocolError",
        "StreamError",
    )
    if issubclass(exc_type, fatal):
        return ErrorClass.FATAL
    if issubclass(exc_type, _types(httpx, "TransportError")):
        return ErrorClass.TRANSIENT
    return None


def _aiohttp_rule(exc_type: type[BaseException]) -> ErrorClass | InstanceRule | None:
    """aiohttp's exceptions; ``ClientResponseError`` is classified by its ``.status``.

    (Unless aiohttp could not parse the response: see ``_AiohttpStatus``.)

    ``ServerTimeoutError`` (connect and socket-read timeouts) is TIMEOUT. An
    invalid or non-HTTP URL (also one a redirect pointed to), too many
    redirects and a certificate fingerprint that does not match the pinned one
    are FATAL. Every other ``ClientConnectionError`` (``ClientConnectorError``,
    its DNS, proxy and TLS variants, ``ServerDisconnectedError``,
    ``ClientOSError``) and ``ClientPayloadError`` (the body was cut short) are
    TRANSIENT.
    """
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None:
        return None
    if issubclass(exc_type, _types(aiohttp, "ClientResponseError")):
        redirects = issubclass(exc_type, _types(aiohttp, "TooManyRedirects"))
        return _AiohttpStatus("status", ErrorClass.FATAL if redirects else ErrorClass.UNKNOWN)
    if issubclass(exc_type, _types(aiohttp, "ServerTimeoutError")):
        return ErrorClass.TIMEOUT
    fatal = _types(
        aiohttp,
        "InvalidURL",
        "NonHttpUrlClientError",
        "RedirectClientError",
        "ServerFingerprintMismatch",
    )
    if issubclass(exc_type, fatal):
        return ErrorClass.FATAL
    if issubclass(exc_type, _types(aiohttp, "ClientConnectionError", "ClientPayloadError")):
        return ErrorClass.TRANSIENT
    return None


# The errors of the SDKs generated by Stainless (openai, anthropic and others of
# the same shape), by the names of the classes they derive from.
_SDK_CLASSES = {"APITimeoutError": ErrorClass.TIMEOUT, "APIConnectionError": ErrorClass.TRANSIENT}


def _sdk_class(exc_type: type[BaseException]) -> ErrorClass | None:
    """The LLM SDKs' errors by type, found by name, never by importing an SDK.

    Every Stainless-generated SDK (``openai``, ``anthropic``...) defines the
    same tree under its own ``APIError``: ``APIConnectionError`` (the request
    got no answer) is TRANSIENT, its subclass ``APITimeoutError`` TIMEOUT.
    ``APIStatusError`` carries its ``response``, so the status decides before
    this rule runs (529 "overloaded" DEGRADED, 400/401/403/404/422 FATAL).
    """
    mro = exc_type.__mro__
    if not any(base.__name__ == "APIError" for base in mro):
        return None
    for base in mro:
        found = _SDK_CLASSES.get(base.__name__)
        if found is not None:
            return found
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


_TYPE_CACHE: dict[type[BaseException], ErrorClass | InstanceRule] = {}
_TYPE_CACHE_LIMIT = 512


def _type_rule(exc_type: type[BaseException]) -> ErrorClass | InstanceRule:
    """The default rule of an exception type: a class, or how to read one off an instance.

    Cached per type. That is sound: these rules read nothing but the type (the
    instance rules read the instance at every call), and a ``requests``,
    ``httpx``, ``aiohttp``, ``urllib`` (or, on 3.10, ``asyncio``) exception
    type cannot exist before its module is imported. The client rules come
    before the builtin ones: many client errors are also ``OSError`` or
    ``ValueError`` subclasses.
    """
    found = (
        _requests_class(exc_type)
        or _stdlib_rule(exc_type)
        or _httpx_class(exc_type)
        or _aiohttp_rule(exc_type)
        or _sdk_class(exc_type)
        or _builtin_class(exc_type)
        or ErrorClass.UNKNOWN
    )
    if len(_TYPE_CACHE) >= _TYPE_CACHE_LIMIT:  # types made in a loop must not grow it
        _TYPE_CACHE.clear()
    _TYPE_CACHE[exc_type] = found
    return found


class Classifier:
    """An ordered list of rules that turns an exception into an ``ErrorClass``.

    The order, first match wins: an ``error_class`` attribute on the exception
    that is an ``ErrorClass``; the rules added with ``register`` (in the order
    they were added); the HTTP status (the ``status_code`` argument, else
    ``exc.response.status_code``, urllib's ``HTTPError.code`` or aiohttp's
    ``ClientResponseError.status``); the exception type (``requests``,
    ``urllib`` and ``http.client``, ``httpx`` and ``httpx2``, ``aiohttp``, the
    LLM SDKs generated by Stainless, then builtins; a ``URLError`` by its
    reason), both overridden by an ``x-should-retry`` header on the
    exception's response (``false``: FATAL; ``true``: FATAL or UNKNOWN become
    TRANSIENT); when that says UNKNOWN, the ``__cause__`` (else the
    unsuppressed ``__context__``) chain, up to 5 links, each classified alone;
    ``UNKNOWN``.

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
        # By its type alone when no status can decide (_default's last rule), else _default.
        by_type = _TYPE_CACHE.get(type(exc))
        if (
            isinstance(by_type, ErrorClass)
            and status_code is None
            and getattr(exc, "response", None) is None
        ):
            found = by_type
        else:
            found = self._default(exc, status_code)
        if found is _UNKNOWN:
            return self._from_chain(exc)
        return found

    def _default(self, exc: BaseException, status_code: int | None = None) -> ErrorClass:
        """The default rules on *exc* alone: its status, ``x-should-retry``, then its type."""
        response = getattr(exc, "response", None)
        if response is not None and status_code is None:
            status_code = response_status(exc)
        found = None if status_code is None else status_class(status_code)
        if found is None:
            by_type = _TYPE_CACHE.get(type(exc)) or _type_rule(type(exc))
            found = by_type if isinstance(by_type, ErrorClass) else by_type(exc, status_code, self)
        if response is not None:
            verdict = should_retry(response)
            if verdict is not None:
                return _verdict_class(found, verdict)
        return found

    def _from_chain(self, exc: BaseException) -> ErrorClass:
        """What the exceptions *exc* was raised from, or while handling, say; else UNKNOWN.

        The ``__cause__`` (``raise ... from``), else the ``__context__`` unless
        suppressed (``from None``), up to ``_MAX_CHAIN`` links; each link as
        *exc* itself would be (its ``error_class``, the registered rules, the
        defaults); the first answer that is not UNKNOWN wins. So an SDK error
        raised from a connection error is retried like that connection error.
        """
        current = exc
        for _ in range(_MAX_CHAIN):
            linked = current.__cause__
            if linked is None and not current.__suppress_context__:
                linked = current.__context__
            if linked is None or linked is exc:
                break
            current = linked
            found = self._explicit(current) or self._default(current)
            if found is not ErrorClass.UNKNOWN:
                return found
        return ErrorClass.UNKNOWN

    def _explicit(self, exc: BaseException) -> ErrorClass | None:
        """The exception's own ``error_class``, else the first registered rule's; or ``None``."""
        own = getattr(exc, "error_class", None)
        if own is not None and isinstance(own, ErrorClass):
            return own
        for rule, error_class in self._rules:
            if _matches(rule, exc):
                return error_class
        return None

    def __repr__(self) -> str:
        return f"Classifier(rules={len(self._rules)})"


# How many links of an exception's __cause__/__context__ chain are read.
_MAX_CHAIN = 5


def should_retry(response: object) -> bool | None:
    """The server's explicit verdict: the ``x-should-retry`` header, ``true``/``false``.

    Sent by the LLM providers (and honoured by their SDKs). ``None`` when the
    response carries no such header, or a value that is neither.
    """
    headers: Any = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        value = _header(headers, "x-should-retry")
    except Exception:  # a headers object we do not understand is not a header
        return None
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def _header(headers: Any, name: str) -> object:
    """The header *name* (lower case) of *headers*, whatever the case it was stored in.

    HTTP header names are case-insensitive. The clients' header objects
    (``requests``, ``httpx``, aiohttp, ``urllib``) look them up so; a plain
    ``dict`` does not, so when the direct lookup misses, the keys are compared
    case-insensitively. ``None`` when absent; may raise for an odd object.
    """
    value: object = headers.get(name)
    if value is None and isinstance(headers, Mapping):
        return _header_ignoring_case(headers, name)  # pyright: ignore[reportUnknownArgumentType]
    return value


def _header_ignoring_case(headers: Mapping[Any, Any], name: str) -> object:
    """The value of the first key of *headers* that is *name* (lower case) in any case."""
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return value
    return None


def _verdict_class(found: ErrorClass, verdict: bool) -> ErrorClass:
    """Apply ``x-should-retry``: ``false``: FATAL; ``true``: FATAL or UNKNOWN become TRANSIENT."""
    if not verdict:
        return ErrorClass.FATAL
    if found is ErrorClass.FATAL or found is ErrorClass.UNKNOWN:
        return ErrorClass.TRANSIENT
    return found


def _is_exception_types(rule: object) -> bool:
    if isinstance(rule, tuple):
        return all(isinstance(t, type) and issubclass(t, BaseException) for t in rule)  # pyright: ignore[reportUnknownVariableType]
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
    """Seconds to wait that a ``retry-after-ms`` or ``Retry-After`` header asks for, or ``None``.

    ``retry-after-ms`` (milliseconds, sent by the LLM providers) is read
    first; then ``Retry-After``, which may hold seconds (``"120"``) or an
    HTTP date, measured from *now*. A negative, past, non-finite or
    unparsable value gives ``None`` (an unusable ``retry-after-ms`` falls back
    to ``Retry-After``); this never raises.

    Args:
        exc_or_response: an exception with a ``.response`` (``requests``,
            ``httpx``); without one, the exception's own ``headers``
            (``urllib.error.HTTPError``, aiohttp's ``ClientResponseError``);
            or a response itself (anything with a ``headers`` mapping).
        now: the Unix timestamp a date is measured from; default the current
            time.

    Returns:
        The seconds to wait, or ``None``.
    """
    response = getattr(exc_or_response, "response", None)
    if response is None:
        response = exc_or_response
    headers: Any = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        millis = _header(headers, "retry-after-ms")
        value = _header(headers, "retry-after")
    except Exception:  # a headers object we do not understand is not a header
        return None
    if isinstance(millis, str):
        try:
            asked = float(millis) / 1000.0
        except ValueError:
            pass
        else:
            if 0 <= asked < float("inf"):
                return asked
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
