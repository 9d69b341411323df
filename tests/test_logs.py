"""JSON structured logging: JsonFormatter, StructuredLogger, bound_context."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import io
import itertools
import json
import logging
import math
import pathlib
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
from freezegun import freeze_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilient import CircuitOpenError, ErrorClass
from resilient._redact import _build_scrubber, describe_error, error_fields, redact
from resilient.logs import (
    DEFAULT_REDACT_KEYS,
    JsonFormatter,
    StructuredLogger,
    bound_context,
)

_names = itertools.count()

Lines = Callable[[], list[dict[str, Any]]]


def strict_loads(line: str) -> Any:
    """Parse JSON as a strict parser would: NaN and Infinity are errors."""

    def reject(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(line, parse_constant=reject)


def record(msg: object = "hello", **attrs: object) -> logging.LogRecord:
    """A record as a logger makes it, with ``attrs`` as its extra fields."""
    return logging.getLogger("test.record").makeRecord(
        "test.record", logging.INFO, __file__, 10, msg, (), None, extra=attrs
    )


def render(value: object = None, formatter: JsonFormatter | None = None, **attrs: object) -> Any:
    """Format a record carrying ``value`` (as field ``v``) and parse it back."""
    if value is not None:
        attrs["v"] = value
    line = (formatter or JsonFormatter()).format(record(**attrs))
    assert "\n" not in line
    return strict_loads(line)


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, Lines]]:
    """A fresh logger writing JSON lines to a buffer, and a reader of the lines."""
    logger = logging.getLogger(f"test.logs.{next(_names)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)

    def lines() -> list[dict[str, Any]]:
        return [strict_loads(line) for line in stream.getvalue().splitlines()]

    yield logger, lines
    logger.removeHandler(handler)


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Shape(enum.Enum):
    SQUARE = object()


class State(str, enum.Enum):
    OPEN = "open"


@dataclasses.dataclass
class Account:
    owner: str
    password: str
    tags: list[str] = dataclasses.field(default_factory=list)


class Creds(NamedTuple):
    user: str
    password: str


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class Opaque:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<Opaque>"


# -- the line ----------------------------------------------------------------


def test_line_has_level_message_logger_and_timestamp() -> None:
    """A record becomes one JSON object with the four core fields."""
    out = render()
    assert (out["level"], out["message"], out["logger"]) == ("INFO", "hello", "test.record")
    assert dt.datetime.fromisoformat(out["timestamp"]).tzinfo is not None


@freeze_time("2024-05-01 12:34:56.789123", tz_offset=5)
def test_timestamp_is_utc_iso_8601_from_record_created(
    capture: tuple[logging.Logger, Lines],
) -> None:
    """The timestamp is the UTC time of the record, whatever the local offset."""
    logger, lines = capture
    logger.info("frozen")
    stamp = lines()[0]["timestamp"]
    assert stamp == "2024-05-01T12:34:56.789+00:00"
    assert dt.datetime.fromisoformat(stamp) == dt.datetime(
        2024, 5, 1, 12, 34, 56, 789000, tzinfo=dt.timezone.utc
    )


def test_message_arguments_are_interpolated(capture: tuple[logging.Logger, Lines]) -> None:
    """%-style arguments are applied as the stdlib does."""
    logger, lines = capture
    logger.info("%s took %d ms", "query", 12)
    assert lines()[0]["message"] == "query took 12 ms"


def test_bad_message_arguments_are_logged_not_raised() -> None:
    """A format string that does not match its arguments still gives a line."""
    rec = record("%d items")
    rec.args = ("many",)
    out = strict_loads(JsonFormatter().format(rec))
    assert "%d items" in out["message"]
    assert "many" in out["message"]


def test_extra_fields_are_written(capture: tuple[logging.Logger, Lines]) -> None:
    """Every ``extra`` field appears, with its JSON type."""
    logger, lines = capture
    logger.info("done", extra={"user_id": 42, "path": "/x", "ms": 1.5, "ok": True, "n": None})
    out = lines()[0]
    assert {k: out[k] for k in ("user_id", "path", "ms", "ok", "n")} == {
        "user_id": 42,
        "path": "/x",
        "ms": 1.5,
        "ok": True,
        "n": None,
    }


def test_standard_record_attributes_are_not_written_by_default() -> None:
    """Only the core fields and the extras: no lineno, process, thread noise."""
    assert set(render(user=1)) == {"timestamp", "level", "logger", "message", "user"}


def test_fields_written_by_other_formatters_are_not_extras() -> None:
    """``message`` and ``asctime`` left on the record by another formatter are skipped."""
    rec = record(user=1)
    logging.Formatter("%(asctime)s %(message)s").format(rec)
    assert set(strict_loads(JsonFormatter().format(rec))) == {
        "timestamp",
        "level",
        "logger",
        "message",
        "user",
    }


# -- options -------------------------------------------------------------------


def test_rename_changes_field_names() -> None:
    """``rename`` renames core fields and extras alike."""
    out = render(formatter=JsonFormatter(rename={"level": "severity", "user": "uid"}), user=7)
    assert out["severity"] == "INFO"
    assert out["uid"] == 7
    assert "level" not in out
    assert "user" not in out


def test_static_fields_are_added_to_every_line() -> None:
    """``static`` fields appear on every line."""
    formatter = JsonFormatter(static={"service": "billing", "region": "eu"})
    assert render(formatter=formatter)["service"] == "billing"
    assert render(formatter=formatter)["region"] == "eu"


def test_include_adds_chosen_record_attributes(capture: tuple[logging.Logger, Lines]) -> None:
    """``include`` adds the named standard record attributes."""
    logger, lines = capture
    logger.handlers[0].setFormatter(JsonFormatter(include=("funcName", "lineno", "process")))
    logger.info("where")
    out = lines()[0]
    assert out["funcName"] == "test_include_adds_chosen_record_attributes"
    assert isinstance(out["lineno"], int)
    assert isinstance(out["process"], int)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"include": ("nonsense",)}, "include"),
        ({"max_length": 0}, "max_length"),
        ({"max_depth": -1}, "max_depth"),
        ({"max_items": True}, "max_items"),
        ({"redact_keys": ("",)}, "redact_keys"),
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], match: str) -> None:
    """A bad option raises ValueError naming it."""
    with pytest.raises(ValueError, match=match):
        JsonFormatter(**options)


# -- exceptions ----------------------------------------------------------------


def fail_with(exc: BaseException) -> BaseException:
    """Raise ``exc`` and return it with its traceback."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_exception_has_type_message_and_traceback(capture: tuple[logging.Logger, Lines]) -> None:
    """``exception`` holds the type, the message and the formatted traceback."""
    logger, lines = capture
    try:
        raise ValueError("bad input")
    except ValueError:
        logger.exception("failed")
    exc = lines()[0]["exception"]
    assert exc["type"] == "ValueError"
    assert exc["message"] == "bad input"
    assert exc["traceback"].startswith("Traceback (most recent call last):")
    assert "test_exception_has_type_message_and_traceback" in exc["traceback"]


def test_exception_type_is_qualified_outside_builtins() -> None:
    """A non-builtin exception type is written with its module."""
    err = fail_with(json.JSONDecodeError("bad", "doc", 0))
    rec = record()
    rec.exc_info = (type(err), err, err.__traceback__)
    assert strict_loads(JsonFormatter().format(rec))["exception"]["type"] == (
        "json.decoder.JSONDecodeError"
    )


def test_exception_cause_is_rendered() -> None:
    """``raise ... from`` puts the cause under ``cause``."""
    try:
        try:
            raise KeyError("k")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as err:
        rec = record()
        rec.exc_info = (type(err), err, err.__traceback__)
    exc = strict_loads(JsonFormatter().format(rec))["exception"]
    assert exc["cause"]["type"] == "KeyError"
    assert "context" not in exc
    assert "direct cause" in exc["traceback"]


def test_exception_context_is_rendered() -> None:
    """An exception raised while handling another keeps it under ``context``."""
    try:
        try:
            raise KeyError("k")
        except KeyError:
            raise RuntimeError("outer")  # noqa: B904 - the implicit context is the point
    except RuntimeError as err:
        rec = record()
        rec.exc_info = (type(err), err, err.__traceback__)
    exc = strict_loads(JsonFormatter().format(rec))["exception"]
    assert exc["context"]["type"] == "KeyError"


def test_exception_notes_are_rendered() -> None:
    """PEP 678 notes (the retry summary, for one) are kept."""
    err = ValueError("x")
    err.__notes__ = ["3 attempts over 1.5 s"]
    rec = record()
    rec.exc_info = (ValueError, err, None)
    assert strict_loads(JsonFormatter().format(rec))["exception"]["notes"] == [
        "3 attempts over 1.5 s"
    ]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is new in 3.11")
def test_exception_group_members_are_rendered() -> None:
    """Each member of an exception group is listed under ``exceptions``."""
    group_type: Any = (
        getattr(__builtins__, "ExceptionGroup", None) or __import__("builtins").ExceptionGroup
    )
    err = fail_with(group_type("two failed", [ValueError("a"), TypeError("b")]))
    rec = record()
    rec.exc_info = (type(err), err, err.__traceback__)
    exc = strict_loads(JsonFormatter().format(rec))["exception"]
    assert [m["type"] for m in exc["exceptions"]] == ["ValueError", "TypeError"]
    assert [m["message"] for m in exc["exceptions"]] == ["a", "b"]


def test_local_variables_are_never_rendered(capture: tuple[logging.Logger, Lines]) -> None:
    """A traceback shows code, never the values of local variables."""
    logger, lines = capture

    def leaky() -> None:
        api_value = "LOC" + "ALVALUE-42"
        raise ValueError(f"length {len(api_value)}")

    try:
        leaky()
    except ValueError:
        logger.exception("failed")
    assert "LOCALVALUE-42" not in json.dumps(lines())


def test_exception_whose_str_raises_still_logs() -> None:
    """An exception whose ``__str__`` raises is still rendered."""

    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    err = fail_with(Nasty())
    rec = record(error=err)
    rec.exc_info = (Nasty, err, err.__traceback__)
    out = strict_loads(JsonFormatter().format(rec))
    assert "Nasty" in out["exception"]["type"]
    assert "Nasty" in out["error"]


# -- values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "2024-01-02T03:04:05+00:00"),
        (dt.date(2024, 1, 2), "2024-01-02"),
        (dt.time(3, 4), "03:04:00"),
        (dt.timedelta(seconds=1.5), "1.5"),
        (decimal.Decimal("1.10"), "1.10"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (pathlib.PurePosixPath("/tmp/x"), "/tmp/x"),
        (Color.RED, "red"),
        (Color.BLUE, 2),
        (Shape.SQUARE, "SQUARE"),
        (State.OPEN, "open"),
        (ErrorClass.TRANSIENT, "transient"),
        (b"caf\xc3\xa9 \xff", "café \\xff"),
        (bytearray(b"ab"), "ab"),
        ({3, 1, 2}, [1, 2, 3]),
        (frozenset({"a"}), ["a"]),
        ((1, "a"), [1, "a"]),
        (ValueError("bad"), "ValueError: bad"),
        (KeyError(), "KeyError"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (Opaque(), "<Opaque>"),
    ],
)
def test_values_json_cannot_hold_get_a_readable_form(value: object, expected: object) -> None:
    """Well-known types are written readably; the rest with ``repr``."""
    assert render(value)["v"] == expected


def test_dataclass_is_written_as_dict_and_redacted() -> None:
    """A dataclass becomes a dict of its fields, secrets redacted."""
    assert render(Account("ann", "hunter2", ["a"]))["v"] == {
        "owner": "ann",
        "password": "[REDACTED]",
        "tags": ["a"],
    }


def test_namedtuple_is_written_as_dict_and_redacted() -> None:
    """A namedtuple's field names are kept, so a secret field is redacted, at any depth."""
    out = render(Creds("ann", "hunter2"), w=[Creds("bob", "hunter3")])
    assert out["v"] == {"user": "ann", "password": "[REDACTED]"}
    assert out["w"] == [{"user": "bob", "password": "[REDACTED]"}]


def test_huge_int_does_not_spoil_the_line() -> None:
    """An int too long for int->str is written as capped hex; the other fields stay."""
    huge = 10**5000
    out = render(huge, w=[huge], x={huge: 1}, request_id="r1")
    assert out["request_id"] == "r1"
    assert "logging_error" not in out
    assert out["v"].startswith("0x")
    assert out["w"][0] == out["v"]
    assert out["x"] == {"<int (str() failed)>": 1}
    assert render(2**6000)["v"] == 2**6000  # converts: written as a number


def test_object_whose_repr_raises_still_logs() -> None:
    """An object whose ``__repr__`` raises is named instead."""
    assert "BadRepr" in render(BadRepr())["v"]


def test_non_string_dict_keys_are_converted() -> None:
    """Dict keys that are not strings are written as strings."""
    assert render({1: "a", None: "b", (1, 2): "c", Color.RED: "d"})["v"] == {
        "1": "a",
        "None": "b",
        "(1, 2)": "c",
        "red": "d",
    }


def test_cycles_are_cut() -> None:
    """A structure that contains itself is written once, the loop marked."""
    loop: dict[str, Any] = {"a": 1}
    loop["self"] = loop
    items: list[Any] = [1]
    items.append(items)
    assert render(loop)["v"] == {"a": 1, "self": "[circular]"}
    assert render(items)["v"] == [1, "[circular]"]


def test_shared_objects_that_are_not_cycles_are_written_twice() -> None:
    """The same list reached twice is not a cycle."""
    shared = [1]
    assert render({"a": shared, "b": shared})["v"] == {"a": [1], "b": [1]}


def test_depth_is_capped() -> None:
    """Nesting deeper than ``max_depth`` is cut with a marker."""
    deep: list[Any] = []
    node = deep
    for _ in range(10_000):
        node.append([])
        node = node[0]
    out = render(deep, JsonFormatter(max_depth=3))["v"]
    assert out == [[["[too deep]"]]]


def test_long_strings_are_cut() -> None:
    """A string longer than ``max_length`` is cut and says by how much."""
    out = render("x" * 50, JsonFormatter(max_length=10), msg="y" * 50)
    assert out["v"] == "x" * 10 + "...[40 more chars]"
    assert out["message"].startswith("y" * 10 + "...")


def test_huge_containers_are_capped() -> None:
    """A container with more than ``max_items`` items is cut."""
    out = render(list(range(100_000)), JsonFormatter(max_items=5))["v"]
    assert out[:5] == [0, 1, 2, 3, 4]
    assert len(out) == 6
    assert "99995 more" in out[5]


def test_newlines_and_quotes_cannot_forge_a_second_line(
    capture: tuple[logging.Logger, Lines],
) -> None:
    """A message or value with newlines and quotes stays inside its JSON string."""
    logger, lines = capture
    forged = 'x"}\n{"level":"CRITICAL","message":"forged'
    logger.info(forged, extra={"v": forged, "w": "a\r\nb\u2028c\x85d"})
    out = lines()
    assert len(out) == 1
    assert out[0]["message"] == forged
    assert out[0]["v"] == forged
    assert out[0]["w"] == "a\r\nb\u2028c\x85d"


def test_ascii_off_still_escapes_unicode_line_separators() -> None:
    """With ``ensure_ascii=False`` the line is UTF-8, but U+2028 cannot split it."""
    line = JsonFormatter(ensure_ascii=False).format(record("café\u2028\u2029\x85"))
    assert "café" in line
    assert len(line.splitlines()) == 1
    assert strict_loads(line)["message"] == "café\u2028\u2029\x85"


def test_ascii_off_escapes_surrogates_so_the_handler_can_write() -> None:
    """A lone surrogate cannot be written as UTF-8: it is escaped, the handler never fails."""
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(ensure_ascii=False))
    logger = logging.getLogger(f"test.logs.{next(_names)}")
    logger.propagate = False
    logger.addHandler(handler)
    failures: list[logging.LogRecord] = []
    handler.handleError = failures.append  # type: ignore[method-assign]
    logger.warning("bad %s", "\udc80", extra={"v": "é\ud800"})
    stream.flush()
    assert failures == []
    line = stream.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]
    assert strict_loads(line)["message"] == "bad \udc80"
    assert strict_loads(line)["v"] == "é\ud800"
    assert "é" in line


def test_ascii_is_the_default() -> None:
    """By default every non-ASCII character is escaped."""
    assert JsonFormatter().format(record("café")).isascii()


# -- redaction -----------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "PASSWD",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refreshToken",
        "api_key",
        "apikey",
        "X-Api-Key",
        "apiKey",
        "authorization",
        "Authorization",
        "cookie",
        "Set-Cookie",
        "db.password",
        "passWord",
    ],
)
def test_secret_keys_are_redacted_at_any_depth(key: str) -> None:
    """A key naming a secret has its value replaced, top level and nested."""
    out = render({"a": [{key: "s3cr3t"}]}, **{key.replace(".", "_"): "s3cr3t"})
    assert "s3cr3t" not in json.dumps(out)
    assert out["v"]["a"][0][key] == "[REDACTED]"


@pytest.mark.parametrize(
    "key",
    [
        "ACCESSTOKEN",
        "accesstoken",
        "AccessToken",
        "DBPASSWORD",
        "dbpassword",
        "XAPIKEY",
        "xapikey",
        "CLIENTSECRET",
        "csrftoken",
        "SETCOOKIE",
        "max_tokens_secret",
    ],
)
def test_secret_keys_are_redacted_whatever_their_case_and_separators(key: str) -> None:
    """Matching is case-insensitive: ``ACCESSTOKEN`` is as secret as ``accessToken``."""
    out = render({key: "s3cr3t"}, **{key: "s3cr3t"})
    assert out["v"] == {key: "[REDACTED]"}
    assert out[key] == "[REDACTED]"
    assert render(f"{key}=s3cr3t")["v"] == f"{key}=[REDACTED]"


@pytest.mark.parametrize(
    "key",
    [
        "max_tokens",
        "MAX_TOKENS",
        "maxTokens",
        "token_count",
        "tokenizer",
        "secretary",
        "cookies_enabled",
        "pass",
    ],
)
def test_well_known_non_secrets_are_kept(key: str) -> None:
    """A short allow-list: ``max_tokens`` is a count, not a token."""
    assert render({key: 5})["v"] == {key: 5}


def test_whole_secret_value_is_redacted_whatever_its_type() -> None:
    """A secret key hides a nested dict or list entirely."""
    assert render({"token": {"a": 1}, "cookie": [1, 2]})["v"] == {
        "token": "[REDACTED]",
        "cookie": "[REDACTED]",
    }


def test_renaming_a_secret_key_keeps_it_redacted() -> None:
    """Redaction is decided on the key as logged, not on its new name."""
    formatter = JsonFormatter(rename={"password": "pw"}, static={"api_key": "k-1"})
    out = render(formatter=formatter, password="hunter2")
    assert (out["pw"], out["api_key"]) == ("[REDACTED]", "[REDACTED]")


def test_redact_keys_is_configurable() -> None:
    """``redact_keys`` replaces the list; ``()`` turns key redaction off."""
    custom = JsonFormatter(redact_keys=(*DEFAULT_REDACT_KEYS, "ssn"))
    assert render({"ssn": "1", "password": "2"}, custom)["v"] == {
        "ssn": "[REDACTED]",
        "password": "[REDACTED]",
    }
    assert render({"password": "2"}, JsonFormatter(redact_keys=()))["v"] == {"password": "2"}


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("Authorization: Bearer abc.def", "abc.def"),
        ("authorization=Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("{'Authorization': 'Bearer abc123', 'Accept': 'json'}", "abc123"),
        ('{"Cookie": "session=abc123; theme=dark"}', "abc123"),
        ("headers: X-Api-Key: k-123", "k-123"),
        ("sent Bearer eyJhbGciOi.x.y to upstream", "eyJhbGciOi"),
        ("sent BEARER eyJhbGciOi.x.y to upstream", "eyJhbGciOi"),
        ("sent bearer eyJhbGciOi.x.y to upstream", "eyJhbGciOi"),
        ("postgres://app:hunter2@db:5432/main", "hunter2"),
        ("GET /cb?code=1&access_token=tok-9&x=2", "tok-9"),
        ("Config(user='ann', password='hunter 2')", "hunter 2"),
        ('{"client_secret": "cs-77"}', "cs-77"),
    ],
)
def test_secrets_written_inside_strings_are_redacted(text: str, leak: str) -> None:
    """Header values, bearer tokens, URL passwords, key=value secrets in strings."""
    out = render(text, msg=text)
    assert leak not in json.dumps(out)
    assert "[REDACTED]" in out["v"]
    assert "[REDACTED]" in out["message"]


_SECRET_TEXTS = st.lists(
    st.sampled_from(
        [
            "password=hunter2",
            "token: abc",
            "Authorization: Bearer x.y",
            "postgres://app:pw@db/x",
            "?api_key=k-1&x=2",
            "Cookie: a=b",
            " ",
            ", ",
            "'",
            "]",
            "=",
            "ok",
        ]
    ),
    max_size=8,
).map("".join)


@given(_SECRET_TEXTS)
def test_redacting_twice_changes_nothing(text: str) -> None:
    """A message the library redacted is redacted again by JsonFormatter: the same text,
    not ``password=[REDACTED]]``."""
    once = redact(text)
    assert redact(once) == once


_SECRETS_IN_TEXT = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "password=hunter2",
                "Authorization: Bearer x.y",
                "postgres://app:pw@db/x",
                "dsn=postgres://app:pw@db/x",
                "url=https://u:pw@h/p?q=1",
                "retry=2;url=redis://:pw@r:6379/0",
                "?api_key=k-1&x=2",
                "{'password': 'hunter2'}",
                "n=2",
                "ok",
                "=",
                "'",
                "]",
            ]
        ),
        st.sampled_from([" ", ", ", "; ", "&", "?", "\n"]),
    ),
    max_size=8,
).map(lambda pieces: "".join(text + separator for text, separator in pieces))


@given(_SECRETS_IN_TEXT)
def test_no_secret_survives_redaction_whatever_surrounds_it(text: str) -> None:
    """Secrets in a text (after a key that names one, in a URL, a bearer token) are gone
    once redacted, also as the value of a key that names none (``dsn=postgres://app:pw@db``),
    and redacting again changes nothing."""
    once = redact(text)
    for secret in ("hunter2", ":pw@", "k-1", "x.y"):
        assert secret not in once
    assert redact(once) == once


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("dsn=postgres://app:pw@db/x", "dsn=postgres://app:[REDACTED]@db/x"),
        (
            "connecting url=redis://:s3cret@cache:6379/0 (attempt 2)",
            "connecting url=redis://:[REDACTED]@cache:6379/0 (attempt 2)",
        ),
        ("next=/login?password=hunter2", "next=/login?password=[REDACTED]"),
        (
            "postgres://app:pw@db/x?api_key=k-1&x=2postgres://app:pw@db/x",
            "postgres://app:[REDACTED]@db/x?api_key=[REDACTED]&x=2postgres://app:[REDACTED]@db/x",
        ),
        ("retries=3 timeout=5", "retries=3 timeout=5"),
    ],
)
def test_a_value_under_a_key_that_names_no_secret_is_searched_for_secrets(
    text: str, redacted: str
) -> None:
    """The value of ``dsn=`` or ``url=`` is not a secret by its key, but the password in
    it is (it was written out whole: the key's match hid the URL from the search)."""
    assert redact(text) == redacted


_PIECES = st.sampled_from(
    [
        "q=",
        "a:",
        "dsn=",
        "password=hunter2",
        "postgres://app:pw@db/x",
        "?api_key=k-1",
        "Bearer x.y",
        "'",
        "&",
        " ",
        "[REDACTED]",
        "ok",
    ]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(_PIECES, st.sampled_from(["=", ":", " ", "&", "'", ", ", "\n"])),
        min_size=1,
        max_size=6,
    ).map(lambda pieces: "".join(piece + sep for piece, sep in pieces)),
    st.integers(1, 3000),
)
def test_no_secret_survives_in_deep_or_long_texts(unit: str, times: int) -> None:
    """A text of thousands of nested or repeated ``key=`` values (``q=q=q=...``) is redacted
    without recursing: no RecursionError, no secret left, redacting again changes nothing."""
    text = unit * times
    once = redact(text)
    for secret in ("hunter2", ":pw@", "k-1", "x.y"):
        assert secret not in once
    assert redact(once) == once


def test_a_value_nested_past_the_depth_searched_is_redacted_whole() -> None:
    """Values inside values are searched eight deep; deeper, the rest of the value is
    redacted rather than searched again (which would cost the square of its length)."""
    assert redact("q=" * 3 + "password=hunter2") == "q=q=q=password=[REDACTED]"
    assert redact("q=" * 5000 + "x") == "q=" * 9 + "[REDACTED]"


@pytest.mark.parametrize(
    "unit",
    ["q=", "a://b:", "a://b:@", "k=v ", "a='", "url=https://u:pw@h/p?q=1&", "Bearer "],
)
def test_redaction_takes_linear_time(unit: str) -> None:
    """A 200 kB message of any shape is redacted in well under 10 s of CPU (a linear pass
    takes under 0.1 s; the quadratic URL search it replaces took about 90 s).

    The CPU this thread used, not the wall clock: on a loaded machine the wall
    clock ran 25 to 50 times the CPU time of the pass, and the claim is its cost.
    """
    text = unit * (200_000 // len(unit))
    started = time.thread_time()
    redact(text)
    assert time.thread_time() - started < 10.0


def test_a_redaction_that_fails_redacts_the_rest_of_the_text() -> None:
    """Redaction never raises: when the search fails, the text is kept up to the first
    ``=``, ``:`` or "bearer" and the rest is redacted."""

    def failing(key: str) -> bool:
        raise MemoryError

    scrub = _build_scrubber((), failing)
    assert scrub is not None
    assert scrub("fetch failed: password=hunter2") == "fetch failed:[REDACTED]"
    assert scrub("no marker here") == "no marker here"


def test_a_record_whose_message_cannot_be_redacted_keeps_logger_time_and_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Logging never raises and never loses the line: a formatter whose redaction fails
    still writes the level, logger, timestamp and the message, redacted conservatively."""
    formatter = JsonFormatter()

    def failing(text: str) -> str:
        raise RecursionError

    monkeypatch.setattr(formatter, "_scrubber", failing)
    line = strict_loads(formatter.format(record(msg="token=abc and more")))
    assert line["logger"] == "test.record"
    assert line["level"] == "INFO"
    assert line["message"] == "'token=[REDACTED]"
    assert "timestamp" in line
    assert "RecursionError" in line["logging_error"]


@pytest.mark.parametrize("message", ["a=" * 500 + "x", "q=" * 100_000, "a://b:" * 20_000])
def test_json_formatter_renders_any_message_with_its_fields(message: str) -> None:
    """A message of hundreds of ``k=`` pairs is rendered as usual (it was replaced by
    ``unrenderable log record``, losing logger, timestamp and message)."""
    line = render(msg=message, request_id="r-1")
    assert line["logger"] == "test.record"
    assert line["request_id"] == "r-1"
    assert line["message"].startswith(message[:6])
    assert "logging_error" not in line


def test_structured_logger_keeps_its_fields_whatever_the_message(
    slog: tuple[StructuredLogger, Lines],
) -> None:
    """``StructuredLogger`` writes its fields with a deeply nested ``k=`` message."""
    log, lines = slog
    log.info("a=" * 600 + "x", order_id=7)
    (line,) = lines()
    assert line["order_id"] == 7
    assert line["message"].startswith("a=a=")


def _raised_from(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__cause__ = inner
    return outer


def _raised_while_handling(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__context__ = inner
    return outer


class _Reasoned(Exception):
    def __init__(self, text: str, reason: BaseException) -> None:
        super().__init__(text)
        self.reason = reason


class _OpenCircuit(CircuitOpenError):
    pass


@pytest.mark.parametrize(
    ("error", "described"),
    [
        (ConnectionError("refused"), "ConnectionError: refused"),
        (
            _raised_from(
                ConnectionError(
                    "Max retries exceeded with url: /x (Caused by [Errno 111] refused)"
                ),
                ConnectionRefusedError(111, "refused"),
            ),
            "ConnectionError, caused by ConnectionRefusedError: [Errno 111] refused",
        ),
        (  # requests: ConnectionError(error) raised while handling that error
            _raised_while_handling(
                ConnectionError(inner := OSError("Max retries (Caused by: boom)")), inner
            ),
            "ConnectionError, caused by OSError: Max retries (Caused by: boom)",
        ),
        (  # an unrelated error being handled is not a cause
            _raised_while_handling(ValueError("bad input"), KeyError("x")),
            "ValueError: bad input",
        ),
        (  # urllib3's MaxRetryError and urllib's URLError hold theirs as .reason
            _Reasoned(
                "<urlopen error [Errno 111] refused>", ConnectionRefusedError(111, "refused")
            ),
            "_Reasoned, caused by ConnectionRefusedError: [Errno 111] refused",
        ),
        (  # redis-py: "Error 111 connecting to host:6379. Connection refused."
            _raised_from(
                ConnectionError("Error 111 connecting to db:6379. Connection refused."),
                ConnectionRefusedError(111, "Connection refused"),
            ),
            "ConnectionError, caused by ConnectionRefusedError: [Errno 111] Connection refused",
        ),
        (  # a wrapper that says more than its cause keeps its text
            _raised_from(ValueError("bad config"), KeyError("port")),
            "ValueError: bad config (caused by KeyError: 'port')",
        ),
        (  # chains of any depth, secrets redacted at every level
            _raised_from(
                RuntimeError("login failed"),
                _raised_from(OSError("wrapped"), PermissionError("password=hunter2")),
            ),
            "RuntimeError: login failed (caused by PermissionError: password=[REDACTED])",
        ),
        (
            _raised_from(RuntimeError("x" * 300), TimeoutError("y" * 300)),
            f"RuntimeError: {'x' * 200}...[100 more chars] "
            f"(caused by TimeoutError: {'y' * 200}...[100 more chars])",
        ),
        (  # asyncio.timeout raises TimeoutError from the CancelledError it used
            # (redis-py's pool wait): the timeout is the cause worth naming
            _raised_from(
                ConnectionError("No connection available."),
                _raised_from(TimeoutError(), asyncio.CancelledError()),
            ),
            "ConnectionError: No connection available. (caused by TimeoutError)",
        ),
        (  # a cancellation right under the wrapper is not named either
            _raised_from(RuntimeError("gave up"), asyncio.CancelledError()),
            "RuntimeError: gave up",
        ),
        (  # an open circuit chained to the last failure is not caused by it
            _raised_from(_OpenCircuit("db", 3.0), ConnectionError("down")),
            "_OpenCircuit: circuit 'db' is open: call rejected without running; "
            "next trial call in 3.000 s",
        ),
    ],
)
def test_an_error_is_described_by_its_innermost_cause(error: BaseException, described: str) -> None:
    """The message names what went wrong at the bottom of a wrapped error, shortened."""
    assert describe_error(error) == described
    _, text = error_fields(error)
    assert text == redact(str(error))  # the field keeps the error's own full text


def test_a_pool_wait_timeout_of_redis_asyncio_is_described_by_its_timeout() -> None:
    """redis-py's asyncio pool wait, as it raises it on this Python: the timeout that
    ``asyncio.timeout`` (``async_timeout`` before 3.11) raises is named, not the
    ``CancelledError`` it raises it from."""
    from redis.asyncio.connection import async_timeout

    async def wait_for_a_connection() -> None:
        try:
            async with async_timeout(0.001):
                await asyncio.sleep(10)
        except asyncio.TimeoutError as err:
            raise ConnectionError("No connection available.") from err

    with pytest.raises(ConnectionError) as caught:
        asyncio.run(wait_for_a_connection())
    assert describe_error(caught.value) == (
        "ConnectionError: No connection available. (caused by TimeoutError)"
    )


def test_a_cause_chain_that_loops_is_described() -> None:
    """A cycle of causes ends; it is described, never looped over forever."""
    first, second = ValueError("first"), KeyError("second")
    first.__cause__, second.__cause__ = second, first
    assert describe_error(first) == "ValueError: first (caused by KeyError: 'second')"


def test_ordinary_text_is_left_alone() -> None:
    """Prose with colons and equals signs is not redacted."""
    text = "error: retry 2 of 3, delay=1.5 s, max_tokens=10, https://example.com/a"
    assert render(text)["v"] == text


def test_secrets_in_exception_messages_are_redacted(
    capture: tuple[logging.Logger, Lines],
) -> None:
    """An exception message (and its traceback) cannot leak a header value."""
    logger, lines = capture
    try:
        raise PermissionError("rejected Authorization: Bearer tok-55")
    except PermissionError:
        logger.exception("call failed")
    assert "tok-55" not in json.dumps(lines())


# -- reserved fields -----------------------------------------------------------


@pytest.mark.parametrize("field", ["level", "timestamp", "logger"])
def test_extra_cannot_overwrite_core_fields(field: str) -> None:
    """An extra named like a core field is kept under ``ctx_``."""
    out = render(**{field: "forged"})
    assert out[field] != "forged"
    assert out[f"ctx_{field}"] == "forged"


def test_prefixed_key_never_collides_with_an_existing_field() -> None:
    """``ctx_`` is repeated until the name is free."""
    out = render(level="a", ctx_level="b")
    assert (out["level"], out["ctx_level"], out["ctx_ctx_level"]) == ("INFO", "b", "a")


def test_extra_named_exception_cannot_duplicate_the_exception_field() -> None:
    """The formatter's own ``exception`` (renamed or not) is reserved: one key per line."""
    error = ValueError("boom")
    for formatter, key in (
        (JsonFormatter(), "exception"),
        (JsonFormatter(rename={"exception": "err"}), "err"),
    ):
        rec = record(**{key: "forged"})
        rec.exc_info = (ValueError, error, None)
        line = formatter.format(rec)
        assert line.count(f'"{key}":') == 1
        out = strict_loads(line)
        assert (out[key]["message"], out[f"ctx_{key}"]) == ("boom", "forged")


def test_static_fields_are_reserved_too() -> None:
    """An extra cannot overwrite a static field."""
    out = render(formatter=JsonFormatter(static={"service": "real"}), service="forged")
    assert (out["service"], out["ctx_service"]) == ("real", "forged")


# -- the library's own events --------------------------------------------------


def test_retry_event_renders_with_structured_fields(capture: tuple[logging.Logger, Lines]) -> None:
    """A retry event keeps its fields: the class as its value, the error as text."""
    _, lines = capture
    handler = logging.getLogger(capture[0].name).handlers[0]
    retry_logger = logging.getLogger("resilient.retry")
    retry_logger.addHandler(handler)
    try:
        error = fail_with(ConnectionError("connection reset"))
        retry_logger.warning(
            "retrying",
            extra={
                "function": "fetch",
                "attempt": 2,
                "error_class": ErrorClass.TRANSIENT,
                "delay": 0.5,
                "error": error,
            },
        )
    finally:
        retry_logger.removeHandler(handler)
    out = lines()[0]
    assert out["logger"] == "resilient.retry"
    assert out["message"] == "retrying"
    assert {k: out[k] for k in ("function", "attempt", "error_class", "delay", "error")} == {
        "function": "fetch",
        "attempt": 2,
        "error_class": "transient",
        "delay": 0.5,
        "error": "ConnectionError: connection reset",
    }


def test_breaker_event_renders_with_structured_fields() -> None:
    """A state change with str-enum states renders their values."""
    out = render(breaker="db", old_state=State.OPEN, new_state="half_open", failures=5)
    assert (out["breaker"], out["old_state"], out["new_state"], out["failures"]) == (
        "db",
        "open",
        "half_open",
        5,
    )


# -- StructuredLogger ----------------------------------------------------------


@pytest.fixture
def slog(capture: tuple[logging.Logger, Lines]) -> tuple[StructuredLogger, Lines]:
    """A StructuredLogger on the capturing logger, service ``svc``."""
    logger, lines = capture
    return StructuredLogger(logger.name, service="svc"), lines


@pytest.mark.parametrize(
    ("method", "level"),
    [
        ("debug", "DEBUG"),
        ("info", "INFO"),
        ("warning", "WARNING"),
        ("error", "ERROR"),
        ("critical", "CRITICAL"),
        ("exception", "ERROR"),
    ],
)
def test_each_method_logs_at_its_level(
    slog: tuple[StructuredLogger, Lines], method: str, level: str
) -> None:
    """debug ... critical write at their level; exception at ERROR."""
    log, lines = slog
    getattr(log, method)("event")
    out = lines()[0]
    assert (out["level"], out["message"], out["service"]) == (level, "event", "svc")


def test_fields_and_context_are_written(slog: tuple[StructuredLogger, Lines]) -> None:
    """Keyword fields and the ``context`` mapping both become fields."""
    log, lines = slog
    log.info("charged", context={"order": "o-1"}, amount=12)
    out = lines()[0]
    assert (out["order"], out["amount"]) == ("o-1", 12)


def test_keyword_fields_win_over_context(slog: tuple[StructuredLogger, Lines]) -> None:
    """A field given twice takes the keyword value."""
    log, lines = slog
    log.info("x", context={"a": 1}, a=2)
    assert lines()[0]["a"] == 2


@pytest.mark.parametrize("field", ["level", "message", "timestamp", "logger", "service"])
def test_context_cannot_overwrite_reserved_fields(
    slog: tuple[StructuredLogger, Lines], field: str
) -> None:
    """A reserved name in the context is kept under ``ctx_``."""
    log, lines = slog
    log.info("real", context={field: "forged"})
    out = lines()[0]
    assert out[field] != "forged"
    assert out[f"ctx_{field}"] == "forged"


@pytest.mark.parametrize("field", ["name", "msg", "args", "module", "process", "exc_info"])
def test_fields_named_like_record_attributes_are_kept(
    slog: tuple[StructuredLogger, Lines], field: str
) -> None:
    """Fields the stdlib would refuse as ``extra`` are kept under ``ctx_``."""
    log, lines = slog
    log.info("x", **{field: "mine"})
    assert lines()[0][f"ctx_{field}"] == "mine"


def test_field_named_exception_is_kept_under_ctx(slog: tuple[StructuredLogger, Lines]) -> None:
    """A user field ``exception`` never clashes with the logged exception."""
    log, lines = slog
    log.error("failed", exc=ValueError("boom"), exception="user field")
    (out,) = lines()
    assert (out["exception"]["type"], out["ctx_exception"]) == ("ValueError", "user field")


@pytest.mark.parametrize(
    ("arguments", "field", "value"),
    [
        ({"exc": "oops"}, "exc", "oops"),
        ({"exc": ValueError}, "exc", "<class 'ValueError'>"),
        ({"context": [("a", 1)]}, "context", [["a", 1]]),
        ({"context": "text"}, "context", "text"),
    ],
)
def test_bad_exc_or_context_is_written_not_raised(
    slog: tuple[StructuredLogger, Lines], arguments: dict[str, Any], field: str, value: object
) -> None:
    """Logging never raises: an ``exc`` or ``context`` of the wrong type becomes a field."""
    log, lines = slog
    log.info("x", **arguments)
    log.exception("y", **arguments)
    first, second = lines()
    assert (first["message"], first[field]) == ("x", value)
    assert (second["message"], second[field]) == ("y", value)
    assert "exception" not in first


def test_context_whose_items_raise_is_not_raised(slog: tuple[StructuredLogger, Lines]) -> None:
    """A mapping that fails to iterate still gives a line, saying why."""

    class Broken(dict[str, object]):
        def items(self) -> Any:
            raise RuntimeError("no items")

    log, lines = slog
    log.info("x", context=Broken(a=1))
    (out,) = lines()
    assert out["message"] == "x"
    assert re.search("RuntimeError: no items", out["logging_error"])


def test_bind_adds_fields_to_every_line(slog: tuple[StructuredLogger, Lines]) -> None:
    """A bound logger adds its fields; the original is unchanged."""
    log, lines = slog
    bound = log.bind(request_id="r-1").bind(user="ann")
    bound.info("one")
    log.info("two")
    first, second = lines()
    assert (first["request_id"], first["user"], first["service"]) == ("r-1", "ann", "svc")
    assert "request_id" not in second


def test_traceback_is_the_passed_exceptions_not_the_handled_one(
    slog: tuple[StructuredLogger, Lines],
) -> None:
    """``exc=`` renders that exception's own traceback, not the one being handled."""
    log, lines = slog

    def first_failure() -> None:
        raise ValueError("first")

    def second_failure() -> None:
        raise KeyError("second")

    try:
        first_failure()
    except ValueError as err:
        saved = err
    try:
        second_failure()
    except KeyError:
        log.error("saved failure", exc=saved)
    exc = lines()[0]["exception"]
    assert exc["type"] == "ValueError"
    assert "first_failure" in exc["traceback"]
    assert "second_failure" not in exc["traceback"]


def test_exception_without_exc_uses_the_one_being_handled(
    slog: tuple[StructuredLogger, Lines],
) -> None:
    """``exception()`` inside ``except`` renders the handled exception."""
    log, lines = slog
    try:
        raise KeyError("handled")
    except KeyError:
        log.exception("oops")
    assert lines()[0]["exception"]["type"] == "KeyError"


def test_error_without_exc_has_no_exception(slog: tuple[StructuredLogger, Lines]) -> None:
    """``error()`` does not pick up the exception being handled by itself."""
    log, lines = slog
    try:
        raise KeyError("handled")
    except KeyError:
        log.error("plain")
    assert "exception" not in lines()[0]


def test_exc_that_was_never_raised_is_rendered(slog: tuple[StructuredLogger, Lines]) -> None:
    """An exception object that was never raised still gives type and message."""
    log, lines = slog
    log.warning("noted", exc=TimeoutError("slow"))
    exc = lines()[0]["exception"]
    assert (exc["type"], exc["message"]) == ("TimeoutError", "slow")


def test_caller_is_the_source_location(slog: tuple[StructuredLogger, Lines]) -> None:
    """funcName and lineno point at the code that called the logger."""
    log, lines = slog
    logging.getLogger(log.name).handlers[0].setFormatter(JsonFormatter(include=("funcName",)))
    log.bind(a=1).info("where")
    assert lines()[0]["funcName"] == "test_caller_is_the_source_location"


def test_stdlib_levels_and_filters_apply(slog: tuple[StructuredLogger, Lines]) -> None:
    """The logger's level and filters decide, as for any stdlib logger."""
    log, lines = slog
    stdlib = logging.getLogger(log.name)
    stdlib.setLevel(logging.WARNING)
    stdlib.addFilter(lambda rec: getattr(rec, "keep", True))
    log.info("below the level")
    log.warning("filtered", keep=False)
    log.warning("kept")
    assert [line["message"] for line in lines()] == ["kept"]


def test_configure_installs_one_json_handler() -> None:
    """``configure`` adds a JSON handler and level; calling again replaces it."""
    name = f"test.logs.configured.{next(_names)}"
    stream = io.StringIO()
    StructuredLogger.configure(stream=io.StringIO(), level="DEBUG", logger=name)
    handler = StructuredLogger.configure(stream=stream, level=logging.INFO, logger=name)
    stdlib = logging.getLogger(name)
    stdlib.propagate = False
    try:
        assert stdlib.handlers == [handler]
        assert stdlib.level == logging.INFO
        StructuredLogger(name).debug("hidden")
        StructuredLogger(name).info("shown", n=1)
        out = [strict_loads(line) for line in stream.getvalue().splitlines()]
        assert [(o["message"], o["n"]) for o in out] == [("shown", 1)]
    finally:
        stdlib.removeHandler(handler)


def test_configure_passes_formatter_options() -> None:
    """Options after ``logger`` go to the JsonFormatter."""
    name = f"test.logs.configured.{next(_names)}"
    stream = io.StringIO()
    handler = StructuredLogger.configure(
        stream=stream, logger=name, rename={"level": "severity"}, static={"env": "prod"}
    )
    stdlib = logging.getLogger(name)
    stdlib.propagate = False
    try:
        StructuredLogger(name).info("x")
        out = strict_loads(stream.getvalue())
        assert (out["severity"], out["env"]) == ("INFO", "prod")
    finally:
        stdlib.removeHandler(handler)


@pytest.mark.parametrize("name", ["", "   ", "root"])
def test_a_structured_logger_refuses_the_root_logger(name: str) -> None:
    """``StructuredLogger("")`` would write to the root logger: refused, naming ``name``."""
    with pytest.raises(ValueError, match=rf"^name must name a logger of your own .*got {name!r}"):
        StructuredLogger(name)


def test_unconfigured_logging_writes_json_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    """With no handler anywhere on the chain, lines go to stderr as JSON."""
    name = f"test.logs.unconfigured.{next(_names)}"
    logging.getLogger(name).propagate = False  # pytest's own handlers sit on the root
    log = StructuredLogger(name, service="svc")
    log.debug("dropped")
    log.info("first use", n=1)
    out, err = capfd.readouterr()
    assert out == ""
    lines = [strict_loads(line) for line in err.splitlines()]
    assert [(x["message"], x["n"], x["service"]) for x in lines] == [("first use", 1, "svc")]


def test_unconfigured_logging_honours_a_level_set_on_the_logger(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A level set on the logger still applies while nothing is configured."""
    name = f"test.logs.unconfigured.{next(_names)}"
    stdlib = logging.getLogger(name)
    stdlib.propagate = False
    stdlib.setLevel(logging.ERROR)
    log = StructuredLogger(name)
    log.warning("dropped")
    log.error("kept")
    assert [strict_loads(x)["message"] for x in capfd.readouterr().err.splitlines()] == ["kept"]


def test_fresh_interpreter_without_logging_config_writes_json_to_stderr() -> None:
    """In a new process that never configured logging, info lines reach stderr."""
    code = (
        "from resilient.logs import StructuredLogger\n"
        "log = StructuredLogger('app', service='svc')\n"
        "log.debug('hidden')\n"
        "log.info('hello', n=1)\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError:\n"
        "    log.exception('boom')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=True
    )
    lines = [strict_loads(line) for line in done.stderr.splitlines()]
    assert [(x["level"], x["message"]) for x in lines] == [("INFO", "hello"), ("ERROR", "boom")]
    assert lines[1]["exception"]["type"] == "ZeroDivisionError"


# -- the library's own tracebacks ------------------------------------------------------


class _Leaky(Exception):
    """An error whose text holds a secret, and whose cause does too."""


def _leaky() -> _Leaky:
    try:
        raise ConnectionError("db at postgres://app:hunter2@db/x refused")
    except ConnectionError as cause:
        error = _Leaky("login failed: password=hunter2")
        error.__cause__ = cause
        return error


def _listener_fails() -> None:
    from resilient import CircuitBreaker

    class Listener:
        def on_state_change(self, *args: object) -> None:
            raise _leaky()

    CircuitBreaker(name="leaky-listener", listeners=[Listener()]).trip()


def _breaker_classifier_fails() -> None:
    from resilient import CircuitBreaker

    def classifier(exc: BaseException) -> ErrorClass:
        raise _leaky()

    def down() -> None:
        raise ConnectionError("down")

    with contextlib.suppress(ConnectionError):
        CircuitBreaker(name="leaky-classifier", classifier=classifier).call(down)


def _task_classifier_fails() -> None:
    from resilient import execute_task_safely

    def classifier(exc: BaseException) -> ErrorClass:
        raise _leaky()

    def down() -> None:
        raise ConnectionError("down")

    execute_task_safely("leaky", down, max_retries=0, classifier=classifier)


def _task_on_retry_fails() -> None:
    from resilient import execute_task_safely
    from resilient.testing import ManualClock

    answers = iter([ConnectionError("down")])

    def flaky() -> str:
        error = next(answers, None)
        if error is not None:
            raise error
        return "ok"

    def on_retry(state: object) -> None:
        raise _leaky()

    execute_task_safely("leaky", flaky, on_retry=on_retry, clock=ManualClock())


def _cleanup_fails() -> None:
    from resilient import database_transaction

    class Connection:
        def cursor(self) -> Any:
            return self

        def close(self) -> None:
            pass

        def commit(self) -> None:
            pass

        def rollback(self) -> None:
            raise _leaky()

    with contextlib.suppress(ValueError), database_transaction(Connection()):
        raise ValueError("the body failed")


_TRACEBACK_SITES: dict[str, tuple[Callable[[], None], str]] = {
    "breaker_listener_failed": (_listener_fails, "resilient.breaker"),
    "breaker_classifier_failed": (_breaker_classifier_fails, "resilient.breaker"),
    "task_classifier_failed": (_task_classifier_fails, "resilient.task"),
    "task_on_retry_failed": (_task_on_retry_fails, "resilient.task"),
    "cleanup_failed": (_cleanup_fails, "resilient.cleanup"),
}


@pytest.mark.parametrize("event", sorted(_TRACEBACK_SITES))
def test_the_librarys_tracebacks_are_redacted_under_a_plain_formatter(event: str) -> None:
    """A plain ``logging.Formatter`` prints the traceback of the library's failure lines
    with secrets redacted, the cause's too; the record still carries the exception."""
    trigger, name = _TRACEBACK_SITES[event]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(funcName)s: %(message)s"))
    records: list[logging.LogRecord] = []
    handler.addFilter(lambda record: records.append(record) or True)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        trigger()
    finally:
        logger.removeHandler(handler)
    record = next(r for r in records if getattr(r, "event", None) == event)
    text = stream.getvalue()
    assert "Traceback (most recent call last)" in text
    assert "_Leaky: login failed: password=[REDACTED]" in text
    assert "postgres://app:[REDACTED]@db/x" in text  # the cause, printed above it
    assert "hunter2" not in text
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], _Leaky)  # for JsonFormatter and error trackers
    assert record.funcName != "log_with_traceback"  # the line's source is the library's call site


def test_the_librarys_tracebacks_are_redacted_when_logging_is_unconfigured() -> None:
    """No handler anywhere: the last-resort handler prints a redacted traceback."""
    code = (
        "from resilient import CircuitBreaker\n"
        "class Listener:\n"
        "    def on_state_change(self, *args):\n"
        "        raise ValueError('login failed: password=hunter2')\n"
        "CircuitBreaker(name='db', listeners=[Listener()]).trip()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=True
    )
    assert "listener Listener.on_state_change of circuit 'db' raised" in done.stderr
    assert "ValueError: login failed: password=[REDACTED]" in done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert "hunter2" not in done.stderr


def _traceback_sites_outside_the_helper() -> list[str]:
    """Calls in the library that hand a logger a traceback themselves (``exc_info=`` or
    ``stack_info=`` passed, ``.exception(message)`` called), with their function."""
    import ast

    import resilient

    root = pathlib.Path(resilient.__file__).parent
    found: list[str] = []

    def visit(node: ast.AST, owner: str, path: pathlib.Path) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            owner = node.name
        if isinstance(node, ast.Call):
            keywords = {k.arg for k in node.keywords}
            method = node.func.attr if isinstance(node.func, ast.Attribute) else None
            if keywords & {"exc_info", "stack_info"} or (
                method == "exception" and (node.args or node.keywords)
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno} in {owner}")
        for child in ast.iter_child_nodes(node):
            visit(child, owner, path)

    for path in sorted(root.rglob("*.py")):
        visit(ast.parse(path.read_text(encoding="utf-8")), "<module>", path)
    return found


def test_every_line_the_library_logs_with_a_traceback_goes_through_the_redacting_helper() -> None:
    """No module hands a logger a traceback but ``log_with_traceback``, which redacts it
    whatever the formatter; the one exception is ``StructuredLogger``'s own methods, whose
    traceback is the caller's exception (``JsonFormatter`` renders it, redacted)."""
    assert _traceback_sites_outside_the_helper() == [
        f"logs.py:{line} in _log" for line in _lines_of("logs.py", "exc_info=exc_info")
    ]


def _lines_of(module: str, text: str) -> list[int]:
    import resilient

    source = (pathlib.Path(resilient.__file__).parent / module).read_text(encoding="utf-8")
    return [n for n, line in enumerate(source.splitlines(), 1) if text in line]


def test_json_lines_of_the_librarys_failures_keep_the_structured_exception() -> None:
    """``JsonFormatter`` still renders the exception itself (type, message, traceback), redacted."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("resilient.breaker")
    logger.addHandler(handler)
    try:
        _listener_fails()
    finally:
        logger.removeHandler(handler)
    lines = [strict_loads(x) for x in stream.getvalue().splitlines()]
    [line] = [x for x in lines if x.get("event") == "breaker_listener_failed"]
    assert line["exception"]["type"].endswith("_Leaky")
    assert line["exception"]["message"] == "login failed: password=[REDACTED]"
    assert "hunter2" not in stream.getvalue()


def test_importing_the_module_does_not_import_asyncio() -> None:
    """``resilient.logs`` stays light: no asyncio at import."""
    code = "import sys, resilient.logs; print('asyncio' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=True
    )
    assert done.stdout.strip() == "False"


# -- bound_context -------------------------------------------------------------


def test_bound_context_reaches_every_line_inside(slog: tuple[StructuredLogger, Lines]) -> None:
    """Fields bound by ``bound_context`` are on every line inside, none after."""
    log, lines = slog
    with bound_context(request_id="r-9"):
        log.info("inside")
        with bound_context(step=2):
            log.info("nested")
    log.info("after")
    inside, nested, after = lines()
    assert inside["request_id"] == "r-9"
    assert (nested["request_id"], nested["step"]) == ("r-9", 2)
    assert "request_id" not in after


def test_bound_context_reaches_plain_stdlib_records(capture: tuple[logging.Logger, Lines]) -> None:
    """A stdlib logger's records formatted by JsonFormatter get the context too."""
    logger, lines = capture
    with bound_context(request_id="r-3", level="forged"):
        logger.info("plain", extra={"user": 1})
    out = lines()[0]
    assert (out["request_id"], out["user"], out["level"]) == ("r-3", 1, "INFO")
    assert out["ctx_level"] == "forged"


def test_explicit_fields_win_over_bound_context(slog: tuple[StructuredLogger, Lines]) -> None:
    """A field passed to the call overrides the same bound field, once."""
    log, lines = slog
    with bound_context(user="ambient"):
        log.info("x", user="explicit")
    out = lines()[0]
    assert out["user"] == "explicit"


def test_threads_keep_their_own_bound_context(slog: tuple[StructuredLogger, Lines]) -> None:
    """Eight real threads, interleaved, each see only their own request id."""
    log, lines = slog
    barrier = threading.Barrier(8)

    def work(index: int) -> None:
        with bound_context(request_id=f"r-{index}"):
            barrier.wait()
            for _ in range(20):
                log.info("step", thread_index=index)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out = lines()
    assert len(out) == 160
    assert all(line["request_id"] == f"r-{line['thread_index']}" for line in out)


def test_asyncio_tasks_keep_their_own_bound_context(slog: tuple[StructuredLogger, Lines]) -> None:
    """Concurrent tasks, switching at every await, each see only their own fields."""
    log, lines = slog

    async def work(index: int) -> None:
        with bound_context(task_id=index):
            for _ in range(5):
                log.info("step", task_index=index)
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(work(i) for i in range(6)))

    asyncio.run(main())
    out = lines()
    assert len(out) == 30
    assert all(line["task_id"] == line["task_index"] for line in out)


def test_bound_context_yields_the_bound_fields() -> None:
    """The ``with`` target is the read-only mapping now bound."""
    with bound_context(a=1), bound_context(b=2) as bound:
        assert dict(bound) == {"a": 1, "b": 2}
        with pytest.raises(TypeError):
            bound["c"] = 3  # type: ignore[index]


# -- properties ----------------------------------------------------------------

SECRET = "Zq9-S3CRET-VALUE-qZ"
SECRET_KEYS = st.sampled_from(
    [
        "password",
        "PASSWORD",
        "db_password",
        "access_token",
        "X-Api-Key",
        "apiKey",
        "secret",
        "Authorization",
        "set-cookie",
        "Cookie",
        "passwd",
        "api_key",
    ]
)
# Any str that UTF-8 encodes, as st.text() draws, but without hypothesis computing the
# codec's table (1.3 s of CPU on Python 3.10, per process, on a fresh clone): every
# character but the surrogates, which are exactly what UTF-8 cannot encode.
UNICODE = st.characters(exclude_categories=("Cs",))

leaves = st.one_of(
    st.text(UNICODE, max_size=20),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.binary(max_size=20),
    st.datetimes(timezones=st.just(dt.timezone.utc) | st.none()),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.uuids(),
    st.sampled_from([Color.RED, Color.BLUE, Shape.SQUARE, ErrorClass.FATAL]),
    st.builds(object),
    st.builds(BadRepr),
    st.builds(lambda text: ValueError(text), st.text(UNICODE, max_size=10)),
)
keys = st.one_of(
    st.text(UNICODE, max_size=10), st.integers(), st.sampled_from(["level", "message"])
)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Lists, tuples and dicts of ``children``."""
    return st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(keys, children, max_size=4),
    )


anything = st.recursive(leaves, containers, max_leaves=25)
formatter = JsonFormatter()
pretty = JsonFormatter(ensure_ascii=False)


def one_json_line(line: str) -> Any:
    """Assert ``line`` is exactly one line of strict JSON; return it parsed."""
    assert line.splitlines() == [line]
    return strict_loads(line)


@settings(max_examples=150, deadline=None)
@given(anything, st.text(UNICODE, max_size=30))
def test_any_structure_logs_as_one_line_of_valid_json(value: Any, message: str) -> None:
    """Whatever the value and message, the output is one line of JSON that parses back."""
    for fmt in (formatter, pretty):
        out = one_json_line(fmt.format(record(message, v=value, w=[value, {"k": value}])))
        assert out["message"] == message or "[REDACTED]" in out["message"]
        assert "v" in out


@settings(max_examples=60, deadline=None)
@given(anything)
def test_structures_with_cycles_log_as_one_line_of_valid_json(value: Any) -> None:
    """A generated structure that contains itself still gives one line of JSON."""
    box: list[Any] = [value]
    box.append(box)
    table: dict[str, Any] = {"value": value, "box": box}
    table["table"] = table
    one_json_line(formatter.format(record(v=table)))


planted = st.recursive(
    st.one_of(
        leaves,
        st.builds(lambda key: {key: SECRET}, SECRET_KEYS),
        st.builds(lambda key: {key: [SECRET, {"x": SECRET}]}, SECRET_KEYS),
    ),
    containers,
    max_leaves=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted, SECRET_KEYS)
def test_secrets_never_appear_in_the_output(value: Any, key: str) -> None:
    """A value under a secret key, at any depth, never reaches the line."""
    rec = record(v=value, **{key.replace("-", "_"): SECRET})
    assert SECRET not in formatter.format(rec)
    assert SECRET not in pretty.format(rec)


RESERVED = ["level", "message", "timestamp", "logger", "service"]


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*RESERVED, "name", "msg", "args", "exc_info", "ctx_level"])
        | st.text(UNICODE, min_size=1, max_size=8),
        st.text(UNICODE, max_size=10) | st.integers(),
        max_size=8,
    ),
    st.dictionaries(st.sampled_from(RESERVED), st.text(UNICODE, max_size=5), max_size=3),
)
def test_reserved_fields_cannot_be_overwritten(
    context: dict[str, Any], ambient: dict[str, Any]
) -> None:
    """Neither context nor bound context can change level, message, timestamp, logger, service."""
    name = "test.logs.reserved"
    stdlib = logging.getLogger(name)
    stdlib.propagate = False
    stdlib.setLevel(logging.DEBUG)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    stdlib.addHandler(handler)
    try:
        with bound_context(**ambient):
            StructuredLogger(name, service="svc").bind(**context).info("real", context=context)
    finally:
        stdlib.removeHandler(handler)
    out = one_json_line(stream.getvalue().rstrip("\n"))
    assert (out["level"], out["message"], out["logger"], out["service"]) == (
        "INFO",
        "real",
        name,
        "svc",
    )
    assert dt.datetime.fromisoformat(out["timestamp"]).tzinfo is not None
    assert not math.isnan(len(out))
