"""Strictly private. What counts as a secret, and taking secrets out of text.

One ``Redactor`` decides for every place the library writes something a
person or a log pipeline reads: the fields of ``JsonFormatter``, the messages
of the library's own log lines, URLs with credentials in them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable

# Not ``typing.TYPE_CHECKING``: see ``resilient/__init__.py``.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from logging import Logger, LoggerAdapter
    from typing import Any

__all__ = [
    "DEFAULT_REDACT_HEADERS",
    "DEFAULT_REDACT_KEYS",
    "REDACTED",
    "Redactor",
    "default_redactor",
    "describe_error",
    "error_fields",
    "innermost_cause",
    "log_with_traceback",
    "redact",
    "redact_rest",
    "safe_repr",
    "safe_str",
    "type_name",
    "unwrap_adapter",
]

DEFAULT_REDACT_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "set-cookie",
)
"""Key names whose values are replaced by ``"[REDACTED]"``, at any depth."""

DEFAULT_REDACT_HEADERS: tuple[str, ...] = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
)
"""Header names whose values are redacted inside strings (``"Authorization: ..."``)."""

REDACTED = "[REDACTED]"

_NON_ALNUM = re.compile(r"[^a-z0-9]+")

# Well-known key names that contain a secret name but hold no secret (counts,
# limits, tools), squashed (lower case, no separators). They are cut out of a
# key before it is searched for secret names: ``max_tokens`` is kept, and
# ``max_tokens_secret`` is still redacted.
_NOT_SECRETS: tuple[str, ...] = (
    "maxtokens",
    "numtokens",
    "inputtokens",
    "outputtokens",
    "prompttokens",
    "completiontokens",
    "totaltokens",
    "tokencount",
    "tokenizer",
    "secretary",
    "cookiesenabled",
)

_KEY_CACHE_SIZE = 4096


class Redactor:
    """Strictly private. Which keys name secrets, and a scrubber for secrets inside text.

    Args:
        keys: key names whose values are secret (``None``: the defaults);
            ``()`` turns key redaction off.
        headers: header names whose values are secret inside text
            (``None``: the defaults).
    """

    __slots__ = ("_cache", "_names", "scrubber")

    def __init__(
        self, keys: Iterable[str] | None = None, headers: Iterable[str] | None = None
    ) -> None:
        names = DEFAULT_REDACT_KEYS if keys is None else tuple(keys)
        bad = [name for name in names if not isinstance(name, str) or not _squash(name)]
        if bad:
            raise ValueError(f"redact_keys must be non-empty names, got {bad!r}")
        self._names = frozenset(_squash(name) for name in names)
        self._cache: dict[str, bool] = {}
        header_names = tuple(DEFAULT_REDACT_HEADERS if headers is None else headers)
        self.scrubber: Callable[[str], str] | None = _build_scrubber(
            header_names, self.is_secret if self._names else None
        )
        """``text -> text`` with the secrets inside replaced; ``None`` when nothing can be."""

    def is_secret(self, key: str) -> bool:
        """Whether a value logged under *key* is a secret (cached per key)."""
        cache = self._cache
        found = cache.get(key)
        if found is None:
            found = _names_secret(key, self._names)
            if len(cache) >= _KEY_CACHE_SIZE:
                cache.clear()
            cache[key] = found
        return found

    def scrub(self, text: str) -> str:
        """*text* with the secrets written inside it replaced by ``"[REDACTED]"``."""
        scrub = self.scrubber
        # "earer" and "EARER": a bearer token written in capitals is one too.
        if scrub is not None and ("=" in text or ":" in text or "earer" in text or "EARER" in text):
            return scrub(text)
        return text


def _squash(name: str) -> str:
    """``name`` lower-cased, without anything that is not a letter or digit."""
    return _NON_ALNUM.sub("", name.lower())


def _names_secret(key: str, names: frozenset[str]) -> bool:
    """Whether squashed ``key``, well-known non-secrets cut out, contains one of ``names``."""
    if not names:
        return False
    squashed = _squash(key)
    for allowed in _NOT_SECRETS:
        if allowed in squashed:
            squashed = squashed.replace(allowed, " ")
    return any(name in squashed for name in names)


def _build_scrubber(
    headers: tuple[str, ...], is_secret: Callable[[str], bool] | None
) -> Callable[[str], str] | None:
    """Return a function that redacts secrets written inside a string."""
    parts: list[str] = []
    open_tail: re.Pattern[str] | None = None
    if headers:
        names = "|".join(re.escape(h) for h in sorted(headers, key=len, reverse=True))
        # A value that ends where a header's or a bearer token's secret starts
        # (``q=Bearer abc``, ``x:Cookie: abc``): searched on past its end.
        open_tail = re.compile(
            rf"(?<![\w-])(?:(?i:bearer)\s*|(?i:{names})[\"']?\s*[:=]\s*[\"']?)\Z"
        )
        parts.append(rf"(?P<header>(?<![\w-])(?i:{names})[\"']?\s*[:=]\s*[\"']?)[^\r\n\"']+")
        parts.append(r"(?P<bearer>(?<![\w-])(?i:bearer)\s+)[\w\-.~+/]+=*")
    if is_secret is not None:
        # The password runs to the last "@" that a host follows: passwords
        # with "@" or "/" in them (unencoded, but seen) are redacted whole.
        # A password redacted already ("[REDACTED]@host") is left alone: redacting
        # twice must not run on to a later "@" and swallow the text in between.
        # It stops before the next "://" (another URL): searched from every
        # "://", it would cost the square of the text's length.
        parts.append(
            r"(?P<url>://[^/\s:@\"']*:)(?!\[REDACTED\]@)(?:(?!://)[^\s\"'?#])*"
            r"(?=@(?:\[[0-9A-Fa-f:.]+\]|[\w.\-]+)(?::\d+)?(?:[/?#\s\"']|$))"
        )
        parts.append(
            r"(?P<key>(?<![\w.-])[A-Za-z_][\w.-]*)"
            r"(?P<sep>=\s*[\"']?|[\"']\s*[:=]\s*[\"']?)"
            # A value redacted already is matched whole: redacting twice changes nothing.
            # A plain value runs on over a "[REDACTED]" inside it (``url=a?password=[REDACTED]``).
            r"(?P<value>(?<=[\"'])[^\"'\r\n]*|\[REDACTED\]"
            r"|[^\s&,;\"')}\]]+(?:(?<=\[REDACTED)\][^\s&,;\"')}\]]*)*)"
        )
    if not parts:
        return None
    pattern = re.compile("|".join(parts))
    prefixes = [name for name in ("header", "bearer", "url") if name in pattern.groupindex]
    search = pattern.search

    def scrub(text: str) -> str:
        # One pass, no recursion: the value of a key that names no secret
        # (``dsn=postgres://app:pw@db``) is searched in place, as a text that
        # ends where the value ends (``ends``: the ends of the values being
        # searched, innermost last). Values nested deeper than _MAX_NESTING
        # (``q=q=q=...``) are redacted whole: searching each again would cost
        # the square of the text's length.
        out: list[str] = []
        ends = [len(text)]
        pos = 0
        while ends:
            end = ends[-1]
            match = search(text, pos, end)
            if match is None:
                out.append(text[pos:end])
                pos = end
                ends.pop()
                continue
            out.append(text[pos : match.start()])
            pos = match.end()
            replaced = False
            for group in prefixes:
                prefix = match.group(group)
                if prefix is not None:
                    out.append(prefix + REDACTED)
                    replaced = True
                    break
            if replaced:
                continue
            key = match.group("key")
            sep = match.group("sep")
            value = match.group("value")
            end_of_value = value[-_TAIL:]
            tail = (
                open_tail.search(end_of_value)
                if open_tail is not None
                and ("=" in end_of_value or ":" in end_of_value or "earer" in end_of_value.lower())
                else None
            )
            if is_secret is not None and is_secret(key):
                out.append(key + sep + REDACTED)
                if tail is not None:  # ``password=x;Bearer abc``: the token is searched for too
                    pos = match.end() - len(end_of_value) + tail.start()
            elif tail is not None:  # ``q=Bearer abc``: the secret runs on past the value
                out.append(key + sep)
                pos = match.start("value")
            elif "=" not in value and ":" not in value and "earer" not in value.lower():
                out.append(match.group(0))
            elif len(ends) > _MAX_NESTING:
                out.append(key + sep + REDACTED)
            else:  # a URL with a password, a secret key=value, a bearer token: search the value
                out.append(key + sep)
                pos = match.start("value")
                ends.append(match.end())
        return "".join(out)

    def safe_scrub(text: str) -> str:
        try:
            return scrub(text)
        except Exception:  # MemoryError, a bug: never raise, never let a secret through
            return redact_rest(text)

    return safe_scrub


# How much of a value's end is searched for the start of a header or bearer token.
_TAIL = 256

# How deep values inside values (``url=https://h/?next=/a?token=...``) are searched.
_MAX_NESTING = 8

_FIRST_MARKER = re.compile(r"[=:]|(?i:bearer)")


def redact_rest(text: str) -> str:
    """*text* up to the first ``=``, ``:`` or "bearer", the rest redacted: the last resort."""
    try:
        match = _FIRST_MARKER.search(text)
        if match is None:
            return text
        return text[: match.end()] + REDACTED
    except Exception:
        return REDACTED


_MESSAGE_LIMIT = 500

_default_redactor: Redactor | None = None


def default_redactor() -> Redactor:
    """The redaction of the library's own log messages: the default keys and headers.

    Built on first use: its pattern costs more to compile than importing
    everything that imports this module.
    """
    global _default_redactor
    if _default_redactor is None:
        _default_redactor = Redactor()
    return _default_redactor


def redact(text: str) -> str:
    """*text* with secrets (``password=...``, ``Authorization: ...``, URL passwords) redacted."""
    return (_default_redactor or default_redactor()).scrub(text)


def type_name(kind: type) -> str:
    """The qualified name of an exception type: ``requests.exceptions.ConnectionError``.

    Builtins (and ``__main__``) are named without their module: ``TimeoutError``.
    """
    module = getattr(kind, "__module__", "")
    qualname = getattr(kind, "__qualname__", kind.__name__)
    return qualname if module in ("builtins", "__main__", None, "") else f"{module}.{qualname}"


def error_fields(exc: BaseException) -> tuple[str, str]:
    """``(error_type, error)``: the two log fields every library log line uses for *exc*.

    ``error_type`` is the qualified type name, ``error`` the message, redacted.
    """
    return type_name(type(exc)), redact(safe_str(exc))


def describe_error(exc: BaseException) -> str:
    """The failure for a log message, secrets redacted, shortened; never raises.

    ``"ConnectionError: connection refused"``: the short type name and the
    message. An error that wraps another names the innermost cause, which is
    what went wrong: a ``requests`` ``ConnectionError`` whose text is urllib3's
    "Max retries exceeded with url ..." reads ``"ConnectionError, caused by
    ConnectionRefusedError: [Errno 111] Connection refused"``. When the
    wrapper's text says more than the cause's (it does not repeat it), both
    are shown: ``"ValueError: bad config (caused by KeyError: 'port')"``. The
    ``error`` field of the line keeps the error's full text.
    """
    from resilient._classify import Rejection  # noqa: PLC0415 - loaded by then; no import cycle

    text = _shorten(redact(safe_str(exc)))
    name = type(exc).__qualname__
    # A refusal (an open circuit) says all there is; the failure it is chained to did not cause it.
    root = exc if isinstance(exc, Rejection) else innermost_cause(exc)
    if root is exc:
        return f"{name}: {text}" if text else name
    root_text = _shorten(redact(safe_str(root)), _CAUSE_LIMIT)
    root_name = type(root).__qualname__
    if root_name == name:  # httpx's ConnectError caused by httpcore's: say which is which
        root_name = type_name(type(root))
    cause = f"{root_name}: {root_text}" if root_text else root_name
    if not text or _restates(text, root, root_text):
        return f"{name}, caused by {cause}"
    return f"{name}: {_shorten(text, _CAUSE_LIMIT)} (caused by {cause})"


_CAUSE_LIMIT = 200


def _restates(text: str, root: BaseException, root_text: str) -> bool:
    """Whether a wrapper's *text* only restates its cause's (urllib3's "Max retries
    exceeded ... [Errno 111] Connection refused", redis-py's "Error 111 connecting to
    host:6379. Connection refused.")."""
    if root_text and root_text in text:
        return True
    reason = getattr(root, "strerror", None) if isinstance(root, OSError) else None
    return isinstance(reason, str) and bool(reason) and reason in text


def _shorten(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    if len(text) > limit:
        return f"{text[:limit]}...[{len(text) - limit} more chars]"
    return text


def innermost_cause(exc: BaseException) -> BaseException:
    """The error at the bottom of what *exc* wraps: *exc* itself when it wraps nothing.

    A wrapped error is the explicit cause (``raise ... from error``), an
    error the wrapper holds as its ``reason`` (urllib3's ``MaxRetryError``,
    ``urllib.error.URLError``), or the error being handled when the wrapper
    was raised, when the wrapper holds it among its arguments (``requests``
    raises ``ConnectionError(error)`` that way). An unrelated error that was
    merely being handled is not a cause. The search stops above an
    ``asyncio.CancelledError``: ``asyncio.timeout`` raises its ``TimeoutError``
    from the cancellation it used to interrupt the wait, and the timeout is
    what went wrong, not the cancellation.
    """
    seen = {id(exc)}
    current = exc
    for _ in range(16):
        inner = _wrapped(current)
        if inner is None or id(inner) in seen or _is_cancellation(inner):
            break
        seen.add(id(inner))
        current = inner
    return current


def _is_cancellation(exc: BaseException) -> bool:
    # asyncio is not imported for this: an asyncio cancellation implies it is loaded.
    aio = sys.modules.get("asyncio")
    return aio is not None and isinstance(exc, aio.CancelledError)


def _wrapped(exc: BaseException) -> BaseException | None:
    cause = exc.__cause__
    if cause is not None:
        return cause
    try:
        reason: object = getattr(exc, "reason", None)
        if isinstance(reason, BaseException):
            return reason
        context = exc.__context__
        if context is not None and not exc.__suppress_context__:
            args: object = exc.args
            if isinstance(args, tuple) and any(arg is context for arg in args):
                return context
    except Exception:  # a property that raises: treat the error as wrapping nothing
        return None
    return None


def safe_str(value: object) -> str:
    """``str(value)``, or a placeholder when that raises; never raises."""
    try:
        text = str(value)
    except Exception:
        return f"<{type(value).__qualname__} (str() failed)>"
    return text if type(text) is str else safe_repr(value)


def safe_repr(value: object) -> str:
    """``repr(value)``, or a placeholder when that raises; never raises."""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__qualname__} (repr() failed)>"
    return text if type(text) is str else f"<{type(value).__qualname__}>"


def unwrap_adapter(
    logger: Logger | LoggerAdapter[Any], message: str, extra: dict[str, object]
) -> tuple[Logger, str, dict[str, object]]:
    """The ``Logger`` under *logger*, and the message and fields to give it.

    A ``logging.LoggerAdapter`` (or several, nested) processes the message as
    it would (a subclass may prefix it) and its ``extra`` is merged with
    *extra*, the library's fields winning a clash: ``LoggerAdapter.process``
    itself replaces a call's ``extra`` with the adapter's (unless
    ``merge_extra=True``, Python 3.13+), which would lose every structured
    field of the library's lines. A ``Logger`` is returned as it is.
    """
    current: Any = logger
    while callable(getattr(current, "process", None)) and hasattr(current, "extra"):
        message, kwargs = current.process(message, {"extra": extra})
        extra = {**(kwargs.get("extra") or {}), **extra}
        current = current.logger
    return current, message, extra


def log_with_traceback(
    logger: Logger | LoggerAdapter[Any],
    level: int,
    message: str,
    *args: object,
    error: BaseException,
    extra: dict[str, object],
) -> None:
    """``logger.log(level, message, *args, exc_info=error, extra=extra)``, traceback redacted.

    For the library's own lines about a failure (a listener, a hook, a
    cleanup): the record keeps the exception (``JsonFormatter`` renders and
    redacts it, error trackers read it), and its ``exc_text``, which every
    ``logging.Formatter`` prints instead of formatting the traceback itself
    (the plain one, ``basicConfig``'s, the last-resort handler of unconfigured
    logging), is the traceback with secrets redacted. Never raises for an
    ``Exception`` of the formatting.
    """
    if not logger.isEnabledFor(level):
        return
    logger, message, extra = unwrap_adapter(logger, message, extra)
    # The source of the line, as logger.log would find it.
    caller = sys._getframe(1)  # pyright: ignore[reportPrivateUsage]
    record = logger.makeRecord(
        logger.name,
        level,
        caller.f_code.co_filename,
        caller.f_lineno,
        message,
        args,
        (type(error), error, error.__traceback__),
        caller.f_code.co_name,
        extra,
    )
    record.exc_text = redact(format_traceback(error))
    logger.handle(record)


def format_traceback(exc: BaseException) -> str:
    """The traceback of *exc* as ``logging.Formatter.formatException`` writes it; never raises."""
    import traceback  # noqa: PLC0415 - only failure lines need it

    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception as error:
        return f"<traceback unavailable: {describe_error(error)}>"
    return text[:-1] if text.endswith("\n") else text
