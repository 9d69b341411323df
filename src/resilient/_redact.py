"""Strictly private. What counts as a secret, and taking secrets out of text.

One ``Redactor`` decides for every place the library writes something a
person or a log pipeline reads: the fields of ``JsonFormatter``, the messages
of the library's own log lines, URLs with credentials in them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = ["DEFAULT_REDACT_HEADERS", "DEFAULT_REDACT_KEYS", "REDACTED", "Redactor"]

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
        if scrub is not None and ("=" in text or ":" in text or "earer" in text):
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
    if headers:
        names = "|".join(re.escape(h) for h in sorted(headers, key=len, reverse=True))
        parts.append(rf"(?P<header>(?<![\w-])(?i:{names})[\"']?\s*[:=]\s*[\"']?)[^\r\n\"']+")
        parts.append(r"(?P<bearer>(?<![\w-])(?i:bearer)\s+)[\w\-.~+/]+=*")
    if is_secret is not None:
        parts.append(r"(?P<url>://[^/\s:@\"']+:)[^/\s@\"']+(?=@)")
        parts.append(
            r"(?P<key>(?<![\w.-])[A-Za-z_][\w.-]*)"
            r"(?P<sep>=\s*[\"']?|[\"']\s*[:=]\s*[\"']?)"
            r"(?P<value>(?<=[\"'])[^\"'\r\n]*|[^\s&,;\"')}\]]+)"
        )
    if not parts:
        return None
    pattern = re.compile("|".join(parts))
    prefixes = [name for name in ("header", "bearer", "url") if name in pattern.groupindex]

    def replace(match: re.Match[str]) -> str:
        for group in prefixes:
            prefix = match.group(group)
            if prefix is not None:
                return prefix + REDACTED
        key = match.group("key")
        if is_secret is not None and is_secret(key):
            return key + match.group("sep") + REDACTED
        return match.group(0)

    def scrub(text: str) -> str:
        return pattern.sub(replace, text)

    return scrub
