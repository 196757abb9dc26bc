"""Storing new notifications: ingest, the commands' sends, seeding and imports.

Every path builds complete rows first (:func:`new_row`, values in :data:`INSERT_FIELDS`
order) and hands them to a writer job that runs one INSERT of many rows through the driver
(``exec_driver_sql``): no per-row work in SQLAlchemy on the hot paths.

Each row also gets its ``created`` entry in the change log, from the table's trigger; see
:func:`insert_sql` for why the statement says ``OR FAIL``.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from notifications.store.engine import write
from notifications.store.models import notifications
from notifications.store.rows import COLUMNS, now_us, row_dict
from notifications.store.writer import mark_changed

#: Columns an INSERT sets, in the order of every row tuple (``seq`` comes from the table).
INSERT_FIELDS = (
    "id", "user_id", "organization_id", "dataset_id", "kind", "entity_type", "entity_id",
    "title", "body", "link", "metadata", "dedupe_key", "created_at", "read_at", "seen_at",
    "archived_at", "collapsed_count",
)

#: Compact JSON as stored; one encoder for every call (json.dumps with options builds one
#: each time).
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def new_row(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Complete a notification's fields with an id, a timestamp and defaults.

    A row stored read is stored seen as well (reading implies seeing): ``seen_at`` is
    ``read_at`` unless given.
    """
    row = {name: fields.get(name) for name in INSERT_FIELDS}
    row["id"] = row["id"] or str(uuid.uuid4())
    if row["seen_at"] is None:
        row["seen_at"] = row["read_at"]
    row["created_at"] = row["created_at"] if row["created_at"] is not None else now_us()
    row["collapsed_count"] = row["collapsed_count"] or 0
    for name in ("kind", "entity_type", "entity_id", "title"):
        row[name] = row[name] if row[name] is not None else ""
    metadata = row["metadata"]
    row["metadata"] = metadata if isinstance(metadata, str) else _dumps(metadata or {})
    return row


def as_tuple(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Return a complete row's values in :data:`INSERT_FIELDS` order."""
    return tuple(row[f] for f in INSERT_FIELDS)


def placeholder(conn: Connection) -> str:
    """Return the driver's positional placeholder (``?`` for sqlite3, ``%s`` for psycopg)."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def insert_sql(conn: Connection, *, skip_existing: bool = False) -> str:
    """Return the INSERT of :data:`INSERT_FIELDS` in the driver's own placeholder style.

    With ``skip_existing`` a row whose id or (user_id, dedupe_key) is stored already is
    left out (the unique indexes decide, so concurrent retries cannot both win).

    On SQLite the statement is ``INSERT OR FAIL``. Each row is a statement of its own
    (``executemany``), whose constraints are all checked before it writes anything, so a
    failing row has nothing of its own to undo, and the writer undoes the whole job anyway
    (its transaction or savepoint). With the default ``ABORT``, SQLite would keep a
    statement journal for every row, since the change-log trigger makes each statement
    write two tables: measured, the log then cost inserts 55 % of CPU instead of 15 %.
    """
    mark = placeholder(conn)
    verb = "INSERT OR FAIL" if conn.dialect.name == "sqlite" else "INSERT"
    return (f"{verb} INTO notifications ({', '.join(INSERT_FIELDS)}) "
            f"VALUES ({', '.join([mark] * len(INSERT_FIELDS))})"
            + (" ON CONFLICT DO NOTHING" if skip_existing else ""))


def _create_job(conn: Connection, rows: list[tuple[Any, ...]], ids: list[str]) -> list[Any]:
    conn.exec_driver_sql(insert_sql(conn), rows)
    mark_changed(conn)
    return list(conn.execute(
        select(*COLUMNS).where(notifications.c.id.in_(ids)).order_by(notifications.c.seq)
    ).all())


def create_notifications(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Store notifications in one transaction and return them as stored."""
    rows = [new_row(item) for item in items]
    if not rows:
        return []
    stored = write(_create_job, [as_tuple(r) for r in rows], [r["id"] for r in rows])
    return [row_dict(r) for r in stored]


#: Pairs per look-up query: keeps the OR chain well under SQLite's expression depth.
_LOOKUP_CHUNK = 200


def _existing_ids(conn: Connection,
                  pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    user_id, dedupe_key = notifications.c.user_id, notifications.c.dedupe_key
    found: dict[tuple[str, str], str] = {}
    for start in range(0, len(pairs), _LOOKUP_CHUNK):
        chunk = pairs[start:start + _LOOKUP_CHUNK]
        # One equality pair per OR branch: each is an index search on ux_notifications_dedupe
        # (a row-value IN list would scan that whole index instead).
        rows = conn.execute(
            select(user_id, dedupe_key, notifications.c.id).where(
                dedupe_key.is_not(None),
                or_(*(and_(user_id == user, dedupe_key == key) for user, key in chunk)),
            )
        ).all()
        found.update({(user, key): id_ for user, key, id_ in rows})
    return found


def _ingest_job(conn: Connection, rows: list[tuple[Any, ...]],
                pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    inserted = conn.exec_driver_sql(insert_sql(conn, skip_existing=True), rows).rowcount
    if inserted:
        mark_changed(conn)
    # All rows stored means no duplicates: the common case needs no look-up.
    if pairs and inserted != len(rows):
        return _existing_ids(conn, pairs)
    return {}


def ingest_notifications(items: Iterable[Mapping[str, Any]]) -> tuple[list[str], int]:
    """Store new notifications in one transaction, skipping repeated dedupe keys.

    Return the ids in input order (the stored id for a duplicate) and how many rows
    were created.
    """
    rows = [new_row(item) for item in items]
    if not rows:
        return [], 0
    pairs = list(dict.fromkeys(
        (r["user_id"], r["dedupe_key"]) for r in rows if r["dedupe_key"] is not None
    ))
    existing = write(_ingest_job, [as_tuple(r) for r in rows], pairs)
    ids = [
        existing.get((r["user_id"], r["dedupe_key"]), r["id"]) if r["dedupe_key"] is not None
        else r["id"]
        for r in rows
    ]
    created = sum(1 for row, id_ in zip(rows, ids, strict=True) if row["id"] == id_)
    return ids, created


def _page_cache_job(conn: Connection, cache_kib: int | None) -> None:
    if cache_kib is not None and conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA cache_size = -{int(cache_kib)}")


def set_page_cache(cache_kib: int) -> None:
    """Set the size of the writer's page cache (KiB)."""
    write(_page_cache_job, cache_kib)


def _insert_job(conn: Connection, rows: Sequence[tuple[Any, ...]], cache_kib: int | None,
                skip_existing: bool) -> int:
    _page_cache_job(conn, cache_kib)
    inserted = int(conn.exec_driver_sql(insert_sql(conn, skip_existing=skip_existing),
                                        list(rows)).rowcount)
    if inserted:
        mark_changed(conn)
    return inserted


def insert_tuples(rows: Sequence[tuple[Any, ...]], *, cache_kib: int | None = None,
                  skip_existing: bool = False) -> int:
    """Insert complete rows given as tuples in :data:`INSERT_FIELDS` order; return how many.

    ``cache_kib`` sets the writer's page cache first (seeding a million rows lands all over
    the unique index on ``id``; a cache that holds the indexes saves most of the reads).
    """
    if not rows:
        return 0
    return write(_insert_job, rows, cache_kib, skip_existing)
