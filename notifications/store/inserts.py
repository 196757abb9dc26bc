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
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, or_, select

from notifications.store import preferences
from notifications.store.engine import run_sql, write
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


#: Where a row tuple holds the values that mutes, dedupe and collapse keys look at.
_USER = INSERT_FIELDS.index("user_id")
_KIND = INSERT_FIELDS.index("kind")
_DATASET = INSERT_FIELDS.index("dataset_id")
_DEDUPE = INSERT_FIELDS.index("dedupe_key")
_COLLAPSED = INSERT_FIELDS.index("collapsed_count")
#: The columns of a row stored through a collapse key.
COLLAPSE_FIELDS = (*INSERT_FIELDS, "collapse_key")
_COLLAPSE_INSERT = (
    f"INSERT INTO notifications ({', '.join(COLLAPSE_FIELDS)}) "
    f"VALUES ({', '.join('?' * len(COLLAPSE_FIELDS))})"
)
#: The one row the partial unique index ``ux_notifications_collapse`` may hold for a key.
_COLLAPSE_LIVE = (
    "SELECT seq, collapsed_count FROM notifications WHERE user_id = ? AND collapse_key = ? "
    "AND collapse_key IS NOT NULL AND read_at IS NULL AND archived_at IS NULL"
)
_DEDUPE_STORED = "SELECT 1 FROM notifications WHERE user_id = ? AND dedupe_key = ?"


def _muted(conn: Connection, rows: Sequence[tuple[Any, ...]],
           critical: frozenset[int]) -> frozenset[int]:
    """Return the indexes of the rows that a mute of their user matches (not critical ones)."""
    users = list(dict.fromkeys(
        row[_USER] for i, row in enumerate(rows) if i not in critical))
    prefs = preferences.load(conn, users) if users else {}
    if not prefs:
        return frozenset()
    return frozenset(
        i for i, row in enumerate(rows)
        if i not in critical and (p := prefs.get(row[_USER])) is not None
        and p.mutes(row[_KIND], row[_DATASET])
    )


def _collapse_one(conn: Connection, row: tuple[Any, ...], key: str) -> int:
    """Store one row with a collapse key, replacing the user's live one; return 1 or 0.

    0 when the row's dedupe key is stored already: a duplicate replaces nothing.
    """
    user = row[_USER]
    if row[_DEDUPE] is not None and run_sql(
            conn, _DEDUPE_STORED, (user, row[_DEDUPE])).first() is not None:
        return 0
    live = run_sql(conn, _COLLAPSE_LIVE, (user, key)).first()
    count = 0
    if live is not None:
        # The trigger logs `deleted`, then the insert's logs `created`: in this order.
        run_sql(conn, "DELETE FROM notifications WHERE seq = ?", (live[0],))
        count = live[1] + 1
    stored = (*row[:_COLLAPSED], count, *row[_COLLAPSED + 1:], key)
    run_sql(conn, _COLLAPSE_INSERT, stored)
    return 1


def _store_job(conn: Connection, rows: list[tuple[Any, ...]], pairs: list[tuple[str, str]],
               critical: frozenset[int], collapse: dict[int, str],
               with_rows: bool) -> Ingested:
    """Mute, then store in input order: runs of plain rows in one statement each, a row
    with a collapse key on its own (replacing the live row of its key)."""
    muted = _muted(conn, rows, critical)
    kept = [i for i in range(len(rows)) if i not in muted] if muted else range(len(rows))
    inserted = 0
    if not collapse:
        if len(kept) == len(rows):
            batch = rows
        else:
            batch = [rows[i] for i in kept]
        if batch:
            inserted = conn.exec_driver_sql(insert_sql(conn, skip_existing=True), batch).rowcount
    else:
        run: list[tuple[Any, ...]] = []
        for i in kept:
            key = collapse.get(i)
            if key is None:
                run.append(rows[i])
                continue
            if run:
                inserted += conn.exec_driver_sql(insert_sql(conn, skip_existing=True),
                                                 run).rowcount
                run = []
            inserted += _collapse_one(conn, rows[i], key)
        if run:
            inserted += conn.exec_driver_sql(insert_sql(conn, skip_existing=True), run).rowcount
    if inserted or collapse:
        mark_changed(conn)
    # All kept rows stored means no duplicates: the common case needs no look-up.
    existing = _existing_ids(conn, pairs) if pairs and inserted != len(kept) else {}
    stored: list[Any] = []
    if with_rows:
        ids = [rows[i][0] for i in kept]
        stored = list(conn.execute(
            select(*COLUMNS).where(notifications.c.id.in_(ids)).order_by(notifications.c.seq)
        ).all()) if ids else []
    return Ingested(existing, muted, stored)


class Ingested(NamedTuple):
    """What the store job did: stored ids of duplicates, the muted rows, rows if asked."""

    existing: dict[tuple[str, str], str]
    muted: frozenset[int]
    rows: list[Any]


def _store(items: Iterable[Mapping[str, Any]],
           with_rows: bool) -> tuple[list[dict[str, Any]], Ingested]:
    rows: list[dict[str, Any]] = []
    critical: set[int] = set()
    collapse: dict[int, str] = {}
    for i, item in enumerate(items):
        rows.append(new_row(item))
        if item.get("critical"):
            critical.add(i)
        if (key := item.get("collapse_key")) is not None:
            collapse[i] = key
    if not rows:
        return rows, Ingested({}, frozenset(), [])
    pairs = list(dict.fromkeys(
        (r["user_id"], r["dedupe_key"]) for r in rows if r["dedupe_key"] is not None
    ))
    done = write(_store_job, [as_tuple(r) for r in rows], pairs, frozenset(critical), collapse,
                 with_rows)
    return rows, done


def ingest_notifications(items: Iterable[Mapping[str, Any]]) -> tuple[list[str | None], int]:
    """Store new notifications in one transaction (one writer job).

    In that job, and in input order: an item that a mute of its user matches is left out
    (unless its ``critical`` is true); an item whose dedupe key its user has used already
    is skipped; an item with a ``collapse_key`` replaces its user's unread, unarchived
    notification with that key (deleted, and the new one stored with ``collapsed_count``
    one higher).

    Return the ids in input order (the stored id for a duplicate, None for a muted item)
    and how many rows were created.
    """
    rows, done = _store(items, with_rows=False)
    ids: list[str | None] = []
    created = 0
    for i, row in enumerate(rows):
        if i in done.muted:
            ids.append(None)
        elif row["dedupe_key"] is not None:
            id_ = done.existing.get((row["user_id"], row["dedupe_key"]), row["id"])
            created += id_ == row["id"]
            ids.append(id_)
        else:
            created += 1
            ids.append(row["id"])
    return ids, created


def send_notifications(
    items: Iterable[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[Mapping[str, Any]]]:
    """Store notifications as :func:`ingest_notifications` does; return them as stored.

    Return the stored rows (in input order) and the items that were muted (their fields).
    """
    given = list(items)
    _, done = _store(given, with_rows=True)
    return [row_dict(r) for r in done.rows], [given[i] for i in sorted(done.muted)]


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
