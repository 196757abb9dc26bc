"""A stored notification as the reads return it: its columns, times and metadata.

Times are integers, microseconds since the Unix epoch (UTC). Metadata is stored as compact
JSON text and returned decoded, unless a caller asks for the text.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func

from notifications.store.models import notifications

#: Columns every read returns, under their public names.
COLUMNS = tuple(
    notifications.c[name] for name in (
        "seq", "id", "user_id", "organization_id", "dataset_id", "kind", "entity_type",
        "entity_id", "title", "body", "link", "metadata", "created_at", "read_at",
        "dedupe_key",
    )
)
#: Every column of :data:`COLUMNS`, in order: the keys of a returned row.
ALL_FIELDS = tuple(c.name for c in COLUMNS)
#: Stored columns a read may select, by name (the serialisers name what they need).
FIELDS = frozenset(ALL_FIELDS)
#: :data:`ALL_FIELDS` as a SELECT list.
SELECT_ALL = ", ".join(ALL_FIELDS)
#: The version 2 state columns, which only the reads that show them select.
STATE_FIELDS = ("seen_at", "archived_at", "collapsed_count")
#: Every stored column (an export's records).
STORED_FIELDS = (*ALL_FIELDS, *STATE_FIELDS)
#: 1 for an unread row and 0 for a read one, to sum into unread counts (Core expression).
UNREAD_FLAG = func.coalesce(notifications.c.read_at.is_(None), False).cast(
    notifications.c.seq.type)


def now_us() -> int:
    """Return the current UTC time in microseconds since the epoch."""
    return time.time_ns() // 1000


def decode_metadata(text: str | None) -> dict[str, Any]:
    """Return stored metadata as a dict (empty when there is none)."""
    return json.loads(text) if text else {}


def row_dict(row: Any) -> dict[str, Any]:
    """Turn a SQLAlchemy result row into a plain dict with ``metadata`` decoded."""
    data = dict(row._mapping)
    data["metadata"] = decode_metadata(data["metadata"])
    return data


def as_dicts(rows: Iterable[Sequence[Any]], *, decode: bool = True,
             fields: Sequence[str] = ALL_FIELDS) -> list[dict[str, Any]]:
    """Turn driver rows of :data:`SELECT_ALL` (or ``fields``) into dicts.

    ``metadata`` is decoded, by default.
    """
    # A page's rows carry its counts after the columns: zip stops at the last column.
    dicts = [dict(zip(fields, row, strict=False)) for row in rows]
    if decode:
        for data in dicts:
            data["metadata"] = decode_metadata(data["metadata"])
    return dicts
