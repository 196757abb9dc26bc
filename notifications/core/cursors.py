"""The opaque paging cursor of the inbox API version 2 (pure: no database, no framework).

Lists are newest first by ``(created_at, seq)``: the creation time, then the row position
that only grows (rows created in the same microsecond, and rows imported with old times,
keep one order). A page ends with its oldest row; the cursor to the next page carries that
row's ``(created_at, seq)`` (a :class:`Position`), and the next page holds the rows that
sort after it (keyset paging: rows added or changed meanwhile shift nothing, and no offset
is ever counted). The cursor also carries a short fingerprint of the filter the list was
made with, so a cursor sent with another filter is refused rather than silently paging a
different list.

Format (version 2): 30 bytes, written as 40 characters of unpadded url-safe base64
(``A-Z a-z 0-9 - _``), so a cursor needs no escaping in a query string::

    offset  size  field
    0       1     version, 0x02
    1       8     created_at, signed big-endian (microseconds since the epoch)
    9       8     seq, unsigned big-endian, 1 to 2**63 - 1
    17      6     filter fingerprint: BLAKE2b-48 of the canonical filter
    23      7     check: BLAKE2b-56 of bytes 0 to 22

(Version 1 carried ``seq`` alone; no such cursor was ever handed out, and one is refused
as malformed.) The canonical filter is the compact JSON array
``[status, archived, kinds, dataset_id]`` with ``kinds`` sorted and without duplicates and
``dataset_id`` a lower-case UUID or ``null`` (see :func:`filter_fingerprint`); the page
size is not part of it, so a client may change ``limit`` from page to page. The check
catches a cursor that was cut, edited or made up; it is not a secret signature, and needs
not be one: a cursor only says where to continue, and every query is limited to the
caller's own rows anyway.

:func:`decode_cursor` raises :class:`InvalidCursor` (a ``ValueError``), which the request
models turn into an ordinary 422 ``validation_failed`` on ``cursor``; code that decodes a
cursor outside a model can raise :meth:`InvalidCursor.as_validation_failed` instead.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from typing import Literal, NamedTuple

from notifications.core.errors import ValidationFailed

#: Version byte of the format above.
CURSOR_VERSION = 2
#: Length of every cursor this version writes (and the most :func:`decode_cursor` reads).
CURSOR_LENGTH = 40
#: Length of a filter fingerprint, in bytes.
FINGERPRINT_SIZE = 6
#: Largest ``seq`` a cursor may carry (SQLite's largest integer).
MAX_SEQ = 2**63 - 1
#: Range of ``created_at`` a cursor may carry (SQLite's integers).
MIN_TIME = -(2**63)
MAX_TIME = 2**63 - 1

_CHECK_SIZE = 7
_HEAD_SIZE = 1 + 8 + 8 + FINGERPRINT_SIZE
_RAW_SIZE = _HEAD_SIZE + _CHECK_SIZE
_TEXT = re.compile(rf"[A-Za-z0-9_-]{{{CURSOR_LENGTH}}}")
_FILTER_PERSON = b"ntf-v2-filter"
_CHECK_PERSON = b"ntf-v2-cursor"

Reason = Literal["malformed", "damaged", "other_filter"]
_MESSAGES: dict[str, str] = {
    "malformed": "cursor is not a cursor this service hands out",
    "damaged": "cursor is damaged; start again without a cursor",
    "other_filter": "cursor was made for a list with another filter; start again without a "
                    "cursor, or send the filter it was made with",
}


class Position(NamedTuple):
    """Where a page ended: its last (oldest) row's creation time and ``seq``."""

    created_at: int
    seq: int


class InvalidCursor(ValueError):
    """A cursor that cannot be used: ``reason`` says why.

    ``malformed``: not 28 url-safe base64 characters, or an unknown version; ``damaged``:
    the check does not match (cut, edited or made up), or the position is out of range;
    ``other_filter``: a sound cursor made for a list with another filter.
    """

    def __init__(self, reason: Reason) -> None:
        super().__init__(_MESSAGES[reason])
        self.reason: Reason = reason

    def as_validation_failed(self, loc: tuple[str, ...] = ("query", "cursor")) -> ValidationFailed:
        """Return the 422 error to raise for this cursor, located at ``loc``."""
        return ValidationFailed([{
            "type": "cursor_invalid", "loc": list(loc), "msg": str(self), "input": None,
            "ctx": {"reason": self.reason},
        }])


def filter_fingerprint(
    status: str, archived: str, kinds: Iterable[str], dataset_id: str | None
) -> bytes:
    """Return the :data:`FINGERPRINT_SIZE`-byte fingerprint of a list filter.

    ``status`` and ``archived`` are the filter's values as text (``"unread"``, ``"false"``);
    ``kinds`` the ``kind`` values as given (order and repetition do not matter);
    ``dataset_id`` the canonical UUID text or None. Equal filters give equal fingerprints.
    """
    canonical = json.dumps(
        [status, archived, sorted(set(kinds)), dataset_id.lower() if dataset_id else None],
        separators=(",", ":"), ensure_ascii=True,
    ).encode()
    return hashlib.blake2b(canonical, digest_size=FINGERPRINT_SIZE, person=_FILTER_PERSON).digest()


def _check(head: bytes) -> bytes:
    return hashlib.blake2b(head, digest_size=_CHECK_SIZE, person=_CHECK_PERSON).digest()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def encode_cursor(created_at: int, seq: int, fingerprint: bytes) -> str:
    """Return the cursor that continues after the row at ``(created_at, seq)``.

    That is the last (oldest) row of a page of the list of ``fingerprint``: ``created_at``
    from :data:`MIN_TIME` to :data:`MAX_TIME`, ``seq`` from 1 to :data:`MAX_SEQ`;
    ``fingerprint`` comes from :func:`filter_fingerprint`. Raises ``ValueError`` otherwise.
    """
    if not _is_int(created_at) or not MIN_TIME <= created_at <= MAX_TIME:
        raise ValueError(f"created_at must be an integer from {MIN_TIME} to {MAX_TIME}")
    if not _is_int(seq) or not 1 <= seq <= MAX_SEQ:
        raise ValueError(f"seq must be an integer from 1 to {MAX_SEQ}")
    if not isinstance(fingerprint, bytes) or len(fingerprint) != FINGERPRINT_SIZE:
        raise ValueError(f"fingerprint must be {FINGERPRINT_SIZE} bytes")
    head = (bytes([CURSOR_VERSION]) + created_at.to_bytes(8, "big", signed=True)
            + seq.to_bytes(8, "big") + fingerprint)
    return base64.urlsafe_b64encode(head + _check(head)).decode("ascii").rstrip("=")


def decode_cursor(text: str, fingerprint: bytes) -> Position:
    """Return the position a cursor continues after; the next page has the rows after it.

    ``fingerprint`` is that of the filter of the request the cursor came with. Raises
    :class:`InvalidCursor` when the cursor is malformed, damaged or made for another filter.
    """
    if not isinstance(text, str) or not _TEXT.fullmatch(text):
        raise InvalidCursor("malformed")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - the pattern admits only base64
        raise InvalidCursor("malformed") from None
    if len(raw) != _RAW_SIZE or raw[0] != CURSOR_VERSION:
        raise InvalidCursor("malformed")
    head, check = raw[:_HEAD_SIZE], raw[_HEAD_SIZE:]
    if not hmac.compare_digest(check, _check(head)):
        raise InvalidCursor("damaged")
    created_at = int.from_bytes(head[1:9], "big", signed=True)
    seq = int.from_bytes(head[9:17], "big")
    if not 1 <= seq <= MAX_SEQ:
        raise InvalidCursor("damaged")
    if not hmac.compare_digest(head[17:], fingerprint):
        raise InvalidCursor("other_filter")
    return Position(created_at, seq)
