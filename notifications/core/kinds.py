"""The ``kind`` filter of the inbox API version 2 (pure: no database, no framework).

A request may repeat ``kind``; the filter matches a notification when any value does.
Each value is either

- an exact kind, ``review.created``: matches that kind only; or
- a prefix pattern, ``review.*``: matches every kind that begins with ``review.``
  (``review.created``, ``review.x.y``), and neither ``review`` itself nor
  ``reviews.created``. Ask for ``review`` as well when that kind exists: ``kind=review``
  ``&kind=review.*``.

A value is at most :data:`MAX_KIND_LENGTH` characters of letters, digits, ``_``, ``-`` and
``:`` in dot-separated segments (no empty segment), optionally ending in ``.*``; a request
carries at most :data:`MAX_KINDS` values. ``*`` anywhere else, and a bare ``*``, are
refused: leaving ``kind`` out already matches every kind.

:func:`parse_kinds` turns the values into a :class:`KindFilter` (exact kinds and
prefixes, with duplicates and values that another prefix covers removed). The store
turns a prefix into SQL with :func:`like_pattern` (``kind LIKE ? ESCAPE '\\'``) or, better,
with :func:`prefix_range` (``kind >= ? AND kind < ?``): SQLite's ``LIKE`` ignores the case
of ASCII letters unless ``PRAGMA case_sensitive_like`` is on, whereas the range compares
bytes, as :meth:`KindFilter.matches` does, and can use an index on ``kind``.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

#: Most ``kind`` values one request may carry.
MAX_KINDS = 20
#: Longest ``kind`` value, pattern included.
MAX_KIND_LENGTH = 100
#: What a ``kind`` value may be: dot-separated segments, optionally ending in ``.*``.
KIND_PATTERN = r"^[A-Za-z0-9_:-]+(?:\.[A-Za-z0-9_:-]+)*(?:\.\*)?$"
_KIND = re.compile(KIND_PATTERN)
#: The character :func:`like_pattern` escapes with; give it to SQL as ``ESCAPE '\\'``.
LIKE_ESCAPE = "\\"

#: One ``kind`` value as a request model field takes it (the pattern is in its schema).
KindValue = Annotated[
    str,
    Field(min_length=1, max_length=MAX_KIND_LENGTH, pattern=KIND_PATTERN,
          examples=["review.created", "review.*"]),
]


class KindError(ValueError):
    """A ``kind`` value, or the number of them, is not acceptable."""


@dataclass(frozen=True)
class KindFilter:
    """Which kinds a list, count or stream is limited to.

    ``exact`` holds whole kinds, ``prefixes`` the beginnings of kinds, each ending in
    ``.`` (``review.*`` is held as ``review.``); both sorted, without duplicates, and
    without a value that a shorter prefix covers. Both empty means every kind.
    """

    exact: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    @property
    def is_all(self) -> bool:
        """True when the filter lets every kind through (no ``kind`` was given)."""
        return not self.exact and not self.prefixes

    def matches(self, kind: str | None) -> bool:
        """Tell whether a notification of ``kind`` passes (case-sensitive, as the range is)."""
        if self.is_all:
            return True
        if kind is None:
            return False
        return kind in self.exact or kind.startswith(self.prefixes)


def _covered(value: str, prefixes: Iterable[str]) -> bool:
    return any(value != prefix and value.startswith(prefix) for prefix in prefixes)


def check_kind(value: str) -> str:
    """Return ``value`` when it is an acceptable ``kind`` value; raise :class:`KindError`."""
    if not isinstance(value, str) or not value:
        raise KindError("kind must be a non-empty string")
    if len(value) > MAX_KIND_LENGTH:
        raise KindError(f"kind must be at most {MAX_KIND_LENGTH} characters")
    if not _KIND.fullmatch(value):
        raise KindError(
            "kind must be a kind such as review.created or a prefix pattern such as review.* "
            "(letters, digits, _, - and : in dot-separated parts)"
        )
    return value


def parse_kinds(values: Iterable[str], *, limit: int = MAX_KINDS) -> KindFilter:
    """Turn the ``kind`` values of a request into a :class:`KindFilter`.

    Raises :class:`KindError` (a ``ValueError``) for more than ``limit`` values (a
    request's :data:`MAX_KINDS` unless told otherwise: preferences take more) or for a
    value that :func:`check_kind` refuses. No values gives the filter of every kind.
    """
    items = list(values)
    if len(items) > limit:
        raise KindError(f"at most {limit} kind values may be given")
    exact: set[str] = set()
    prefixes: set[str] = set()
    for value in items:
        check_kind(value)
        if value.endswith(".*"):
            prefixes.add(value[:-1])
        else:
            exact.add(value)
    kept_prefixes = {p for p in prefixes if not _covered(p, prefixes)}
    kept_exact = {e for e in exact if not _covered(e, kept_prefixes)}
    return KindFilter(tuple(sorted(kept_exact)), tuple(sorted(kept_prefixes)))


def like_pattern(prefix: str) -> str:
    """Return the ``LIKE`` pattern matching every text that begins with ``prefix``.

    ``%``, ``_`` and the escape character itself are escaped with :data:`LIKE_ESCAPE`; use
    the pattern as ``kind LIKE :pattern ESCAPE '\\'``. Mind that SQLite's ``LIKE`` ignores
    the case of ASCII letters by default (see :func:`prefix_range`).
    """
    escaped = (prefix.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
               .replace("%", LIKE_ESCAPE + "%").replace("_", LIKE_ESCAPE + "_"))
    return escaped + "%"


def prefix_range(prefix: str) -> tuple[str, str]:
    """Return ``(low, high)`` such that text begins with ``prefix`` iff ``low <= text < high``.

    The comparison is the byte order of UTF-8 text (SQLite's ``BINARY`` collation, and
    Python's order of ``str``): case-sensitive, like :meth:`KindFilter.matches`, and able
    to use an index. ``prefix`` must not be empty nor end in U+10FFFF (a
    :class:`KindFilter` prefix always ends in ``.``).
    """
    if not prefix or prefix[-1] == "\U0010ffff":
        raise ValueError("prefix must be non-empty and not end in U+10FFFF")
    following = ord(prefix[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are no text: the next character is U+E000
        following = 0xE000
    return prefix, prefix[:-1] + chr(following)
