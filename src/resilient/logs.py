"""JSON structured logging, safe by default: ``JsonFormatter``, ``StructuredLogger``.

``JsonFormatter`` is a plain ``logging.Formatter``: plug it into any handler
and every record becomes one line of JSON, with the ``extra`` fields, the
exception (chain and groups included) and the fields of ``bound_context``.
Whatever a record carries, formatting never raises, never writes more than one
line, never renders local variables, and replaces secrets by ``"[REDACTED]"``.

``StructuredLogger`` is a thin front for a stdlib logger that takes fields as
keyword arguments, binds fields, and writes JSON to stderr by itself while the
application has not configured logging.

Example:
    >>> import logging
    >>> record = logging.makeLogRecord(
    ...     {"msg": "hi", "levelname": "INFO", "name": "app", "created": 0.0, "password": "x"}
    ... )
    >>> print(JsonFormatter().format(record))
    {"timestamp":"1970-01-01T00:00:00.000+00:00","level":"INFO","logger":"app","message":"hi","password":"[REDACTED]"}
"""

from __future__ import annotations

import builtins
import logging
import math
import sys
import time
import traceback
from collections.abc import Callable, Generator, Iterable, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from enum import Enum
from itertools import islice
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, TextIO, cast

if TYPE_CHECKING:
    import datetime as _datetime

from resilient._redact import (
    DEFAULT_REDACT_HEADERS,
    DEFAULT_REDACT_KEYS,
    REDACTED,
    Redactor,
    log_with_traceback,
    redact_rest,
    safe_repr,
    safe_str,
    type_name,
)

__all__ = [
    "DEFAULT_REDACT_HEADERS",
    "DEFAULT_REDACT_KEYS",
    "JsonFormatter",
    "StructuredLogger",
    "bound_context",
]


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

# Every attribute a LogRecord has before ``extra`` is applied, plus those that
# formatters add later: anything else on a record is an extra field.
_STANDARD_ATTRS: frozenset[str] = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__
) | {"message", "asctime", "taskName"}

# Output fields that no extra or context key may overwrite.
_RESERVED_FIELDS: frozenset[str] = frozenset({"level", "message", "timestamp", "logger", "service"})

# Fields the formatter itself writes after the extras: no extra may take them.
_FORMATTER_FIELDS: frozenset[str] = frozenset({"exception", "stack_info"})

# A StructuredLogger field with one of these names is passed as ``ctx_<name>``:
# the stdlib refuses extras that clash with record attributes, and the
# reserved fields are the logger's own.
_CLASHING_FIELDS: frozenset[str] = _STANDARD_ATTRS | _RESERVED_FIELDS | _FORMATTER_FIELDS

_CONTEXT: ContextVar[Mapping[str, object]] = ContextVar(
    "resilient_log_context", default=MappingProxyType({})
)

_RECORD_SIZE = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
_MILLIS: tuple[str, ...] = ()
"""``'.042+00:00"'`` for every millisecond: built by the first ``JsonFormatter``."""
_REDACTED_JSON = '"[REDACTED]"'

_NoneType = type(None)
_SCALARS = frozenset({int, bool, _NoneType})
_KEY_CACHE_SIZE = 4096


# Ints with at most this many bits always convert to text (sys.set_int_max_str_digits
# cannot go below 640 digits); longer ones may not.
_SAFE_INT_BITS = 2000


class JsonFormatter(logging.Formatter):
    """Render each record as one line of JSON.

    The fields, in order: ``timestamp`` (ISO 8601, UTC, millisecond precision,
    from ``record.created``), ``level``, ``logger``, ``message``, the static
    fields, the included record attributes, every ``extra`` field, the fields
    of the current ``bound_context``, ``exception`` and ``stack_info``.

    Args:
        rename: output field name -> the name to write instead, for the core
            fields and any other field (``{"level": "severity"}``).
        static: fields added to every line (``{"service": "billing"}``).
        include: standard record attributes to add (``("funcName", "lineno")``).
        redact_keys: key names whose values are replaced by ``"[REDACTED]"`` at
            any depth; a key matches when, lower-cased and with every
            character that is not a letter or digit removed, it contains a
            name so squashed (``access_token``, ``ACCESSTOKEN``, ``X-Api-Key``,
            ``DBPASSWORD`` match ``token``, ``api_key``, ``password``), after
            a few well-known non-secrets are cut out of it (``max_tokens``,
            ``token_count``, ``tokenizer``, ``secretary`` do not match).
            The decision is made on the key as logged, before ``rename``.
            ``()`` turns key redaction off.
        redact_headers: header names whose values are redacted inside strings
            (``"Authorization: Bearer abc"``); ``Bearer <token>`` is redacted
            anywhere while this is not empty.
        ensure_ascii: escape every non-ASCII character (the default). With
            ``False`` the line is UTF-8 text, and the Unicode line separators
            U+0085, U+2028, U+2029 are still escaped.
        max_length: longest string written (message and values); longer ones
            are cut and say by how much. Tracebacks get ten times as much.
        max_depth: deepest nesting of containers rendered.
        max_items: most items rendered per list, dict or set.
    """

    def __init__(
        self,
        *,
        rename: Mapping[str, str] | None = None,
        static: Mapping[str, object] | None = None,
        include: Iterable[str] = (),
        redact_keys: Iterable[str] | None = None,
        redact_headers: Iterable[str] | None = None,
        ensure_ascii: bool = True,
        max_length: int = 10_000,
        max_depth: int = 10,
        max_items: int = 1_000,
    ) -> None:
        super().__init__()
        from json.encoder import (  # noqa: PLC0415 - `import resilient` sets up no JSON encoder
            encode_basestring,
            encode_basestring_ascii,
        )

        _build_tables(ensure_ascii)
        for name, value in (
            ("max_length", max_length),
            ("max_depth", max_depth),
            ("max_items", max_items),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        rename = dict(rename or {})
        for old, new in rename.items():
            if not isinstance(old, str) or not isinstance(new, str) or not new:
                raise TypeError(f"rename must map str to non-empty str, got {old!r}: {new!r}")
        include = tuple(include)
        unknown = [name for name in include if name not in _STANDARD_ATTRS]
        if unknown:
            raise ValueError(f"include must name standard LogRecord attributes, got {unknown!r}")
        self.max_length = max_length
        self.max_depth = max_depth
        self.max_items = max_items
        self._rename = rename
        self._renames_extras = bool(set(rename) - {"timestamp", "level", "logger", "message"})
        self._ensure_ascii = ensure_ascii
        self._quote: Callable[[str], str] = (
            encode_basestring_ascii if ensure_ascii else encode_basestring
        )
        self._encode = _nested_encoder(ensure_ascii, self._default)
        self._key_cache: dict[str, tuple[str, bool, str | None]] = {}
        self._heads: dict[tuple[object, object], str] = {}
        redactor = Redactor(redact_keys, redact_headers)
        self._is_secret = redactor.is_secret
        self._scrubber = redactor.scrubber

        def sep(field: str) -> str:
            return f",{self._quote(rename.get(field, field))}:"

        core = tuple(
            rename.get(field, field) for field in ("timestamp", "level", "logger", "message")
        )
        self._core_keys = core
        self._ts_open = "{" + self._quote(core[0]) + ':"'
        self._ts_cache: tuple[int, str] = (-1, "")
        self._level_sep = sep("level")
        self._logger_sep = sep("logger")
        self._message_sep = sep("message")
        self._exception_sep = sep("exception")
        self._stack_sep = sep("stack_info")
        self._include = tuple((attr, sep(attr)) for attr in include)
        static_fields = {
            rename.get(key, key): REDACTED if self._is_secret(str(key)) else value
            for key, value in (static or {}).items()
        }
        self._static_json = "".join(
            f",{self._quote(str(key))}:{self._to_json(value)}"
            for key, value in static_fields.items()
        )
        # "service" is not reserved here: it is how StructuredLogger (or an
        # ``extra``) sets it; StructuredLogger keeps user fields off it.
        self._reserved = frozenset(
            {
                *_RESERVED_FIELDS - {"service"},
                *core,
                *(rename.get(field, field) for field in _FORMATTER_FIELDS),
                *(rename.get(attr, attr) for attr in include),
                *static_fields,
            }
        )

    # -- the hot path -------------------------------------------------------

    def format(self, record: logging.LogRecord) -> str:
        """Return ``record`` as one line of JSON; never raises."""
        try:
            line = self._render(record)
        except Exception as error:
            line = self._emergency_line(record, error)
        if not self._ensure_ascii and not line.isascii():
            line = line.translate(_UNSAFE_CHARACTERS)
        return line

    def _render(self, record: logging.LogRecord) -> str:
        # Written out by hand: json.JSONEncoder.encode builds a new C encoder
        # at each call, which costs more than this whole function.
        attrs = record.__dict__
        try:
            message = record.getMessage()
        except Exception:
            message = f"{safe_repr(record.msg)} % {safe_repr(record.args)}"
        quote = self._quote
        limit = self.max_length
        scrub = self._scrubber
        if len(message) > limit or (
            scrub is not None
            and ("=" in message or ":" in message or "earer" in message or "EARER" in message)
        ):
            message = self._clean_str(message)
        head = self._heads.get((record.levelname, record.name))
        if head is None:
            head = self._head(record.levelname, record.name)
        created = record.created
        second = int(created)
        cached_second, prefix = self._ts_cache
        if second != cached_second:
            prefix = self._new_second(second)
        parts = [
            prefix,
            _MILLIS[int((created - second) * 1000) % 1000],
            head,
            quote(message),
            self._static_json,
        ]
        for attr, key_json in self._include:
            parts.append(key_json)
            parts.append(self._to_json(attrs.get(attr)))
        keys = self._key_cache
        items: Iterable[tuple[str, Any]] = attrs.items()
        if next(iter(attrs)) == "name":
            # Built by LogRecord.__init__ as usual: the extras come after the
            # standard attributes (those other formatters add are skipped below).
            items = islice(items, _RECORD_SIZE, None)
        altered: set[str] = set()
        for key, value in items:
            if key in _STANDARD_ATTRS:
                continue
            cached = keys.get(key)
            if cached is None:
                cached = self._key_entry(key)
            key_json, secret, final = cached
            if final is not None:  # renamed, or clashing with a reserved field
                final = _free_key(final, self._reserved, attrs, altered)
                altered.add(final)
                key_json = f",{quote(final)}:"
            parts.append(key_json)
            if secret:
                parts.append(_REDACTED_JSON)
                continue
            kind = type(value)  # pyright: ignore[reportUnknownVariableType]  # value: Any
            if kind is str:
                if len(value) > limit or (
                    scrub is not None
                    and ("=" in value or ":" in value or "earer" in value or "EARER" in value)
                ):
                    value = self._clean_str(value)
                parts.append(quote(value))
            elif kind is int:
                try:
                    parts.append(int.__repr__(value))
                except ValueError:  # more digits than int->str allows
                    parts.append(self._to_json(value))
            elif kind is float and value - value == 0:  # finite
                parts.append(float.__repr__(value))
            else:
                parts.append(self._to_json(value))
        ambient = _CONTEXT.get()
        if ambient:
            self._add_ambient(ambient, attrs, altered, parts)
        exc_info = record.exc_info
        if exc_info and exc_info[1] is not None:
            parts.append(self._exception_sep)
            parts.append(self._to_json(self._exception(exc_info[1], 0, set())))
        if record.stack_info:
            parts.append(self._stack_sep)
            parts.append(quote(self._clean_str(str(record.stack_info), 10)))
        parts.append("}")
        return "".join(parts)

    def _head(self, level: object, name: object) -> str:
        """The JSON text from the level to the message (cached per level and logger)."""
        head = (
            f"{self._level_sep}{self._quote(safe_str(level))}"
            f"{self._logger_sep}{self._quote(safe_str(name))}{self._message_sep}"
        )
        if len(self._heads) >= _KEY_CACHE_SIZE:
            self._heads.clear()
        self._heads[(level, name)] = head
        return head

    def _new_second(self, second: int) -> str:
        prefix = self._ts_open + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        self._ts_cache = (second, prefix)
        return prefix

    def _timestamp(self, created: float) -> str:
        second = int(created)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return text + _MILLIS[int((created - second) * 1000) % 1000][:-1]

    def _key_entry(self, key: str) -> tuple[str, bool, str | None]:
        """The JSON prefix of an extra field, whether it is secret, its new name if any."""
        final = self._rename.get(key, key) if self._renames_extras else key
        # Decided on the key as logged: renaming ``password`` must not unredact it.
        secret = self._is_secret(key) or (final != key and self._is_secret(final))
        entry = (
            f",{self._quote(final)}:",
            secret,
            final if final in self._reserved or final != key else None,
        )
        if len(self._key_cache) >= _KEY_CACHE_SIZE:
            self._key_cache.clear()
        self._key_cache[key] = entry
        return entry

    def _to_json(self, value: object) -> str:
        """JSON text of any value, sanitized."""
        return self._encode(self.sanitize(value))

    def _clean_str(self, text: str, scale: int = 1) -> str:
        scrub = self._scrubber
        if scrub is not None and ("=" in text or ":" in text or "earer" in text or "EARER" in text):
            text = scrub(text)
        limit = self.max_length * scale
        if len(text) > limit:
            text = f"{text[:limit]}...[{len(text) - limit} more chars]"
        return text

    # -- everything that is not a plain scalar ------------------------------

    def sanitize(self, value: object) -> object:
        """Return a JSON-ready, redacted copy of ``value``; never raises.

        The rendering used for every field: containers copied with secret keys
        redacted, readable forms for datetimes, decimals, UUIDs, paths,
        dataclasses, enums, bytes and exceptions, ``repr`` for anything else.
        Handy as a processor in other pipelines (structlog).
        """
        try:
            return self._clean(value, 0, set())
        except Exception:
            return f"<unrenderable {type(value).__qualname__}>"

    def _clean(self, value: object, depth: int, path: set[int]) -> object:
        kind = type(value)
        if kind is str:
            return self._clean_str(value)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        if kind is int:
            return self._clean_int(value)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        if kind in _SCALARS:
            return value
        if kind is float:
            return value if math.isfinite(value) else str(value)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        if isinstance(value, tuple):
            # A namedtuple: a dict of its fields, like a dataclass.
            row = cast("tuple[object, ...]", value)
            fields = getattr(type(row), "_fields", None)
            if isinstance(fields, tuple):
                names = cast("tuple[object, ...]", fields)
                if all(type(name) is str for name in names):
                    as_dict = dict(zip(cast("tuple[str, ...]", names), row, strict=False))
                    return self._clean_fields(row, as_dict, depth, path)
        if isinstance(value, (dict, list, tuple, set, frozenset, Mapping)):
            return self._clean_container(value, depth, path)
        if isinstance(value, Enum):
            inner = value.value
            if type(inner) in (str, int, float, bool):
                return self._clean(inner, depth, path)
            return value.name
        if isinstance(value, BaseException):
            return self._clean_str(_describe(value))
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = cast("bytes | bytearray | memoryview[int]", value)
            return self._clean_str(bytes(data).decode("utf-8", "backslashreplace"))
        if isinstance(value, str):
            return self._clean_str(str.__str__(value))
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return self._clean_int(int(value))
        if isinstance(value, float):
            return self._clean(float(value), depth, path)
        readable = _readable(value)
        if readable is not None:
            return self._clean_str(readable)
        if hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type):
            return self._clean_dataclass(value, depth, path)
        return self._clean_str(safe_repr(value))

    def _clean_container(self, value: Any, depth: int, path: set[int]) -> object:
        ident = id(value)
        if ident in path:
            return "[circular]"
        if depth >= self.max_depth:
            return "[too deep]"
        path.add(ident)
        try:
            limit = self.max_items
            if isinstance(value, (dict, Mapping)):
                mapping = cast("Mapping[object, object]", value)
                out: dict[str, object] = {}
                for count, (key, item) in enumerate(mapping.items()):
                    if count == limit:
                        out["..."] = f"{len(mapping) - limit} more items"
                        break
                    name = key if type(key) is str else _key_text(key)
                    if self._is_secret(name):
                        out[name] = REDACTED
                    else:
                        out[name] = self._clean(item, depth + 1, path)
                return out
            items: list[object] = []
            for count, item in enumerate(value):
                if count == limit:
                    items.append(f"... {len(value) - limit} more items")
                    break
                items.append(self._clean(item, depth + 1, path))
            if isinstance(value, (set, frozenset)):
                items.sort(key=_sort_key)
            return items
        finally:
            path.discard(ident)

    def _clean_int(self, value: int) -> object:
        if value.bit_length() <= _SAFE_INT_BITS:
            return value
        try:
            int.__repr__(value)
        except ValueError:  # more digits than sys.get_int_max_str_digits() allows
            return self._clean_str(hex(value))
        return value

    def _clean_dataclass(self, value: object, depth: int, path: set[int]) -> object:
        # dataclasses is imported: value's class was made by it. Fields are
        # read one level at a time (never dataclasses.asdict, which deep-copies).
        fields = sys.modules["dataclasses"].fields(value)
        as_dict: dict[str, object] = {
            field.name: getattr(value, field.name, None) for field in fields
        }
        return self._clean_fields(value, as_dict, depth, path)

    def _clean_fields(
        self, value: object, as_dict: dict[str, object], depth: int, path: set[int]
    ) -> object:
        """``value`` (a dataclass or namedtuple) as the dict ``as_dict`` of its fields."""
        ident = id(value)
        if ident in path:
            return "[circular]"
        path.add(ident)
        try:
            return self._clean_container(as_dict, depth, path)
        finally:
            path.discard(ident)

    def _default(self, value: object) -> object:
        # Not reached in practice (every value is sanitized before encoding);
        # kept so that the encoder can never fail on a type it does not know.
        return self._clean_str(safe_repr(value))

    def _add_ambient(
        self,
        ambient: Mapping[str, object],
        attrs: dict[str, Any],
        altered: set[str],
        parts: list[str],
    ) -> None:
        # StructuredLogger already copied the context into the record (under
        # the same, possibly ctx_-prefixed, names): only plain stdlib records
        # get it here.
        for key, value in ambient.items():
            name = "ctx_" + key if key in _CLASHING_FIELDS else key
            if name in attrs or name in altered:
                continue
            if name in self._reserved:
                name = _free_key(name, self._reserved, attrs, altered)
            altered.add(name)
            parts.append(f",{self._quote(name)}:")
            parts.append(_REDACTED_JSON if self._is_secret(name) else self._to_json(value))

    def _exception(self, exc: BaseException, depth: int, seen: set[int]) -> dict[str, object]:
        seen.add(id(exc))
        out: dict[str, object] = {
            "type": type_name(type(exc)),
            "message": self._clean_str(safe_str(exc)),
        }
        if depth == 0:
            out["traceback"] = self._clean_str(_format_traceback(exc), 10)
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, (list, tuple)) and notes:
            out["notes"] = self.sanitize(list(cast("Iterable[object]", notes)))
        if depth >= self.max_depth:
            return out
        cause = exc.__cause__
        context = exc.__context__
        if cause is not None and id(cause) not in seen:
            out["cause"] = self._exception(cause, depth + 1, seen)
        elif context is not None and not exc.__suppress_context__ and id(context) not in seen:
            out["context"] = self._exception(context, depth + 1, seen)
        group = _exception_group()
        if group is not None and isinstance(exc, group):
            members = tuple(getattr(exc, "exceptions", ()))
            out["exceptions"] = [
                self._exception(member, depth + 1, seen)
                for member in members[: self.max_items]
                if id(member) not in seen
            ]
        return out

    def _emergency_line(self, record: logging.LogRecord, error: Exception) -> str:
        try:
            try:
                timestamp = self._timestamp(record.created)
            except Exception:
                timestamp = self._timestamp(time.time())
            ts_key, level_key, logger_key, message_key = self._core_keys
            import json  # noqa: PLC0415 - loaded by the first JsonFormatter already

            return json.dumps(
                {
                    ts_key: timestamp,
                    level_key: safe_str(getattr(record, "levelname", "")),
                    logger_key: safe_str(getattr(record, "name", "")),
                    message_key: self._emergency_message(record),
                    "logging_error": _describe(error),
                },
                ensure_ascii=True,
                separators=(",", ":"),
            )
        except Exception:
            return '{"level":"ERROR","message":"unrenderable log record"}'

    def _emergency_message(self, record: logging.LogRecord) -> str:
        """The message of a record that failed to render, redacted; the rest cut if that fails."""
        text = safe_repr(getattr(record, "msg", ""))
        try:
            return self._clean_str(text)
        except Exception:
            return redact_rest(text)[: self.max_length]


class StructuredLogger:
    """A logger that takes fields as keyword arguments and writes JSON.

    It writes through ``logging.getLogger(name)``, so the application's
    handlers, levels and filters decide; ``service`` is added to every line.
    While logging is not configured (no handler on the logger or its parents),
    lines at INFO and above (or the level set on the logger) go to stderr as
    JSON instead of being dropped or printed bare by ``logging.lastResort``.

    Args:
        name: the stdlib logger name; not the root logger's (``""``, ``"root"``).
        service: the ``service`` field of every line (none when ``None``).

    Example:
        >>> log = StructuredLogger("billing", service="billing-api")
        >>> log.bind(request_id="r-1").info("charged", amount=12)  # doctest: +SKIP
    """

    __slots__ = ("_fields", "_logger", "_service", "_shadow")

    def __init__(self, name: str, service: str | None = None) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        if not name.strip() or name == "root":
            raise ValueError(
                f"name must name a logger of your own (e.g. your module's __name__), got {name!r}: "
                "that is the root logger, whose level and handlers are the whole application's"
            )
        if service is not None and not isinstance(service, str):
            raise TypeError(f"service must be a str or None, got {service!r}")
        self._logger = logging.getLogger(name)
        self._service = service
        self._fields: dict[str, object] = {}
        self._shadow: list[logging.Logger] = []  # shared with bound children

    @property
    def name(self) -> str:
        """The name of the stdlib logger written to."""
        return self._logger.name

    @property
    def service(self) -> str | None:
        """The ``service`` field of every line."""
        return self._service

    @property
    def logger(self) -> logging.Logger:
        """The stdlib logger written to."""
        return self._logger

    def bind(self, **fields: object) -> StructuredLogger:
        """Return a logger that adds ``fields`` to every line (after this one's)."""
        child = StructuredLogger.__new__(StructuredLogger)
        child._logger = self._logger
        child._service = self._service
        child._shadow = self._shadow
        child._fields = {**self._fields, **_field_names(fields)}
        return child

    def debug(
        self,
        message: str,
        exc: BaseException | None = None,
        context: Mapping[str, object] | None = None,
        **fields: object,
    ) -> None:
        """Log ``message`` at DEBUG with ``context`` and ``fields``."""
        self._log(logging.DEBUG, message, exc, context, fields)

    def info(
        self,
        message: str,
        exc: BaseException | None = None,
        context: Mapping[str, object] | None = None,
        **fields: object,
    ) -> None:
        """Log ``message`` at INFO with ``context`` and ``fields``."""
        self._log(logging.INFO, message, exc, context, fields)

    def warning(
        self,
        message: str,
        exc: BaseException | None = None,
        context: Mapping[str, object] | None = None,
        **fields: object,
    ) -> None:
        """Log ``message`` at WARNING; ``exc``'s own traceback is rendered."""
        self._log(logging.WARNING, message, exc, context, fields)

    def error(
        self,
        message: str,
        exc: BaseException | None = None,
        context: Mapping[str, object] | None = None,
        **fields: object,
    ) -> None:
        """Log ``message`` at ERROR; ``exc``'s own traceback is rendered."""
        self._log(logging.ERROR, message, exc, context, fields)

    def critical(
        self,
        message: str,
        exc: BaseException | None = None,
        context: Mapping[str, object] | None = None,
        **fields: object,
    ) -> None:
        """Log ``message`` at CRITICAL; ``exc``'s own traceback is rendered."""
        self._log(logging.CRITICAL, message, exc, context, fields)

    def exception(
        self,
        message: str,
        exc: BaseException | None = None,
        context: Mapping[str, object] | None = None,
        **fields: object,
    ) -> None:
        """Log at ERROR with ``exc``, or without it the exception being handled."""
        self._log(logging.ERROR, message, exc, context, fields, handled=True)

    def _log(
        self,
        level: int,
        message: str,
        exc: BaseException | None,
        context: Mapping[str, object] | None,
        fields: dict[str, object],
        handled: bool = False,
    ) -> None:
        logger = self._logger
        if logger.hasHandlers():
            if not logger.isEnabledFor(level):
                return
        else:
            if level < _unconfigured_level(logger) or logger.manager.disable >= level:
                return
            logger = self._fallback_logger()
        exc_info: ExcInfo | bool | None = None
        if exc is None:
            if handled:
                exc_info = True
        elif isinstance(exc, BaseException):
            exc_info = (type(exc), exc, exc.__traceback__)
        else:  # not an exception: written as a field, never raised on
            fields = {"exc": exc, **fields}
            exc_info = True if handled else None
        if context is not None and not isinstance(context, Mapping):
            fields = {"context": context, **fields}
            context = None
        ambient = _CONTEXT.get()
        try:
            if fields.keys() & _CLASHING_FIELDS:
                fields = _field_names(fields)
            if ambient or self._fields or context:
                extra: dict[str, object] = {}
                if ambient:
                    extra.update(_field_names(ambient))
                if self._fields:
                    extra.update(self._fields)
                if context:
                    extra.update(_field_names(context))
                extra.update(fields)
            else:
                extra = fields  # the caller's **fields: a dict of our own
        except Exception as error:  # a context whose items() raises, ...
            extra = {"logging_error": _describe(error)}
        if self._service is not None:
            extra["service"] = self._service
        try:
            # stacklevel 3: the caller of info() / error() / ... is the source
            logger.log(level, message, exc_info=exc_info, extra=extra, stacklevel=3)
        except Exception as error:
            log_with_traceback(
                logging.getLogger(__name__),
                logging.DEBUG,
                "log call failed",
                error=error,
                extra={"event": "log_call_failed"},
            )

    def _fallback_logger(self) -> logging.Logger:
        # A logger outside the hierarchy, with the real one's filters, writing
        # JSON to stderr: used only while nothing would handle the record.
        if not self._shadow:
            shadow = logging.Logger(self._logger.name)
            shadow.propagate = False
            shadow.addHandler(_fallback_handler())
            self._shadow.append(shadow)
        shadow = self._shadow[0]
        shadow.filters = self._logger.filters
        return shadow

    @staticmethod
    def configure(
        stream: TextIO | None = None,
        level: int | str = logging.INFO,
        logger: str | logging.Logger | None = None,
        **formatter_options: Any,
    ) -> logging.Handler:
        """Write JSON lines from ``logger`` (the root by default) to ``stream``.

        One line for scripts: adds a handler with a ``JsonFormatter`` built from
        ``formatter_options`` and sets the level. Calling it again replaces the
        handler it added before, never the application's own.

        Args:
            stream: where to write; ``None`` means ``sys.stderr`` at each write.
            level: the level set on the logger.
            logger: a logger or logger name; the root logger when ``None``.
            formatter_options: passed to ``JsonFormatter``.

        Returns:
            The handler added.
        """
        target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
        handler: logging.Handler
        handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter(**formatter_options))
        setattr(handler, _CONFIGURED_MARK, True)
        for old in list(target.handlers):
            if getattr(old, _CONFIGURED_MARK, False):
                target.removeHandler(old)
        target.addHandler(handler)
        target.setLevel(level)
        return handler


@contextmanager
def bound_context(**fields: object) -> Generator[Mapping[str, object], None, None]:
    """Add ``fields`` to every line logged inside the ``with`` block.

    The fields live in a context variable: they reach every ``StructuredLogger``
    line and every record formatted by a ``JsonFormatter`` in the same thread
    or asyncio task, and never another thread's or task's. Nested blocks add
    to (and may override) the outer fields.

    Yields:
        The fields now bound (read-only).

    Example:
        >>> with bound_context(request_id="r-42") as bound:
        ...     dict(bound)
        {'request_id': 'r-42'}
    """
    merged = MappingProxyType({**_CONTEXT.get(), **fields})
    token = _CONTEXT.set(merged)
    try:
        yield merged
    finally:
        _CONTEXT.reset(token)


# -- helpers ----------------------------------------------------------------

_CONFIGURED_MARK = "_resilient_configured"

# Escaped even with ensure_ascii=False: the Unicode line separators, so that
# no reader splits the line there, and surrogates, which no UTF-8 stream can
# write (a lone one would make the handler fail). Filled by the first
# JsonFormatter(ensure_ascii=False).
_UNSAFE_CHARACTERS: dict[int, str] = {}


def _build_tables(ensure_ascii: bool) -> None:
    """Fill the lookup tables of the hot path once, when a formatter first needs them.

    Not at import: the 3,000 strings cost more than all the rest of this module.
    """
    global _MILLIS
    if not _MILLIS:
        _MILLIS = tuple(f'.{millis:03d}+00:00"' for millis in range(1000))  # pyright: ignore[reportConstantRedefinition]
    if not ensure_ascii and not _UNSAFE_CHARACTERS:
        _UNSAFE_CHARACTERS.update(
            {
                0x85: "\\u0085",
                0x2028: "\\u2028",
                0x2029: "\\u2029",
                **{code: f"\\u{code:04x}" for code in range(0xD800, 0xE000)},
            }
        )


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]  # pyright: ignore[reportMissingTypeArgument]
    """Strictly private: a StreamHandler that writes to ``sys.stderr`` as it is now."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


_FALLBACK: list[logging.Handler] = []


def _fallback_handler() -> logging.Handler:
    if not _FALLBACK:
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        _FALLBACK.append(handler)
    return _FALLBACK[0]


def _unconfigured_level(logger: logging.Logger) -> int:
    # The level a logger would have; the root's untouched default (WARNING)
    # counts as INFO, so that a first script shows its info lines.
    current: logging.Logger | None = logger
    while current is not None:
        if current.level:
            if current is logging.root and current.level == logging.WARNING:
                return logging.INFO
            return current.level
        current = current.parent
    return logging.INFO


def _field_names(fields: Mapping[Any, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in fields.items():
        name = key if type(key) is str else _key_text(key)
        out["ctx_" + name if name in _CLASHING_FIELDS else name] = value
    return out


def _free_key(
    key: str, reserved: frozenset[str], attrs: Mapping[str, object], altered: set[str]
) -> str:
    """``key``, prefixed with ``ctx_`` until it names no other output field."""
    while key in reserved or key in altered or (key in attrs and key not in _STANDARD_ATTRS):
        key = "ctx_" + key
    return key


def _nested_encoder(ensure_ascii: bool, default: Callable[[Any], Any]) -> Callable[[Any], str]:
    """A reusable encoder for sanitized values (no cycle check: none is left)."""
    import json.encoder  # noqa: PLC0415 - `import resilient` sets up no JSON encoder

    make = getattr(json.encoder, "c_make_encoder", None)
    if make is not None:
        quote = (
            json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
        )
        iterencode = make(None, default, quote, None, ":", ",", False, False, False)

        def encode(value: Any) -> str:
            return "".join(iterencode(value, 0))

        return encode
    return json.JSONEncoder(
        ensure_ascii=ensure_ascii,
        check_circular=False,
        allow_nan=False,
        separators=(",", ":"),
        default=default,
    ).encode


def _readable(value: object) -> str | None:
    """The readable text of a few well-known types (without importing them)."""
    modules = sys.modules
    datetime = modules.get("datetime")
    if datetime is not None:
        if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
            return str(cast("_datetime.date | _datetime.time", value).isoformat())
        if isinstance(value, datetime.timedelta):
            return str(cast("_datetime.timedelta", value).total_seconds())
    for module, name in (("decimal", "Decimal"), ("uuid", "UUID"), ("pathlib", "PurePath")):
        found = modules.get(module)
        if found is not None and isinstance(value, getattr(found, name)):
            return str(value)
    return None


def _exception_group() -> type[BaseException] | None:
    # BaseExceptionGroup is builtin from Python 3.11; on 3.10 only the
    # ``exceptiongroup`` backport has it, if the application imported it.
    group: type[BaseException] | None = getattr(builtins, "BaseExceptionGroup", None)
    if group is None:
        group = getattr(sys.modules.get("exceptiongroup"), "BaseExceptionGroup", None)
    return group


def _format_traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception as error:
        return f"<traceback unavailable: {_describe(error)}>"


def _describe(exc: BaseException) -> str:
    text = safe_str(exc)
    name = type_name(type(exc))
    return f"{name}: {text}" if text else name


def _key_text(key: object) -> str:
    if type(key) in (int, float, bool) or key is None:
        return safe_str(key)
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, Enum):
        return str(key.value) if type(key.value) in (str, int) else key.name
    return safe_repr(key)


def _sort_key(item: object) -> tuple[str, str]:
    return (type(item).__name__, safe_repr(item))
