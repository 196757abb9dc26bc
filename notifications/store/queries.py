"""Data access: the reads, and the writer jobs with the functions that submit them.

A read opens its own connection (:func:`reading`). A write is split in two: a *job*, a
private ``_..._job(conn, ...)`` function that only the writer thread runs inside its
transaction, and the public function that prepares plain values and waits for the job
(:func:`write`). Jobs call :func:`mark_changed` when open streams should look again.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from notifications.store.engine import read_rows, reading, write
from notifications.store.models import counters
from notifications.store.models import db
from notifications.store.models import notifications as t
from notifications.store.models import stream_leases as leases
from notifications.store.writer import mark_changed

#: Columns every read returns, under their public names.
COLUMNS = (
    t.c.seq, t.c.id, t.c.user_id, t.c.organization_id, t.c.dataset_id, t.c.kind,
    t.c.entity_type, t.c.entity_id, t.c.title, t.c.body, t.c.link,
    t.c.metadata, t.c.created_at, t.c.read_at, t.c.dedupe_key,
)
INSERT_FIELDS = (
    "id", "user_id", "organization_id", "dataset_id", "kind", "entity_type", "entity_id",
    "title", "body", "link", "metadata", "dedupe_key", "created_at", "read_at",
)


def now_us() -> int:
    """Return the current UTC time in microseconds since the epoch."""
    return time.time_ns() // 1000


@dataclass(frozen=True)
class Scope:
    """Which rows a caller may touch.

    ``exact_org`` (organization variant): only rows of ``organization_id``.
    Otherwise (dataset variant): the user's rows with no organization or, when the
    token names one, rows of that organization.
    """

    user_id: str
    organization_id: str | None = None
    exact_org: bool = False


def _scope(scope: Scope) -> list[Any]:
    conditions: list[Any] = [t.c.user_id == scope.user_id]
    if scope.exact_org:
        conditions.append(t.c.organization_id == scope.organization_id)
    elif scope.organization_id is not None:
        conditions.append(
            or_(t.c.organization_id.is_(None), t.c.organization_id == scope.organization_id)
        )
    return conditions


def _filters(scope: Scope, dataset_id: str | None = None, unread_only: bool = False) -> Any:
    conditions = _scope(scope)
    if dataset_id is not None:
        conditions.append(t.c.dataset_id == dataset_id)
    if unread_only:
        conditions.append(t.c.read_at.is_(None))
    return and_(*conditions)


def _matching(user_id: str | None = None, organization_id: str | None = None,
              dataset_id: str | None = None) -> list[Any]:
    """Return an equality condition for each given filter of the admin commands."""
    return [
        column == value
        for column, value in ((t.c.user_id, user_id), (t.c.organization_id, organization_id),
                              (t.c.dataset_id, dataset_id))
        if value is not None
    ]


def row_dict(row: Any) -> dict[str, Any]:
    """Turn a result row into a plain dict with ``metadata`` decoded."""
    data = dict(row._mapping)
    data["metadata"] = json.loads(data["metadata"]) if data["metadata"] else {}
    return data


# --- reads ---------------------------------------------------------------------------
#
# The hot paths (lists, counts, marks) run plain SQL, written out once per shape of filter
# and cached: building, cache-keying and compiling a Core statement cost more than SQLite
# takes to run it (about 0.3 ms against 0.03 ms for an unread count).

#: Stored columns a page may select, by name (the serialisers name what they need).
FIELDS = frozenset(c.name for c in COLUMNS)
#: Every column of :data:`COLUMNS`, in order: what :func:`list_notifications` returns.
ALL_FIELDS = tuple(c.name for c in COLUMNS)


def _scope_kind(scope: Scope) -> str:
    if scope.exact_org:
        return "exact" if scope.organization_id is not None else "no-org"
    return "either" if scope.organization_id is not None else "user"


def _scope_params(scope: Scope) -> tuple[Any, ...]:
    if scope.organization_id is not None:
        return (scope.user_id, scope.organization_id)
    return (scope.user_id,)


@lru_cache(maxsize=None)
def _where_sql(kind: str, dataset: bool, unread: bool) -> str:
    """Return the conditions of :func:`_filters` as SQL with ``?`` placeholders."""
    parts = ["user_id = ?"]
    if kind == "exact":
        parts.append("organization_id = ?")
    elif kind == "no-org":
        parts.append("organization_id IS NULL")
    elif kind == "either":
        parts.append("(organization_id IS NULL OR organization_id = ?)")
    if dataset:
        parts.append("dataset_id = ?")
    if unread:
        parts.append("read_at IS NULL")
    return " AND ".join(parts)


def _where_params(scope: Scope, dataset_id: str | None) -> tuple[Any, ...]:
    params = _scope_params(scope)
    return params + (dataset_id,) if dataset_id is not None else params


@lru_cache(maxsize=None)
def _page_sql(fields: tuple[str, ...], kind: str, dataset: bool, unread: bool,
              with_unread: bool) -> str:
    """Return one page with the total matching (and the unread count) on every row.

    The counts are uncorrelated scalar subqueries, which SQLite runs once per statement:
    page and counts come from one snapshot in one statement, with no transaction.
    """
    if not set(fields) <= FIELDS:
        raise ValueError(f"unknown fields: {sorted(set(fields) - FIELDS)}")
    where = _where_sql(kind, dataset, unread)
    counts = f"(SELECT count(*) FROM notifications WHERE {where})"
    if with_unread:
        counts += f", (SELECT count(*) FROM notifications WHERE {_where_sql(kind, False, True)})"
    return (f"SELECT {', '.join(fields)}, {counts} FROM notifications WHERE {where} "
            "ORDER BY created_at DESC, seq DESC LIMIT ? OFFSET ?")


@lru_cache(maxsize=None)
def _counts_sql(kind: str, dataset: bool, unread: bool, with_unread: bool) -> str:
    counts = f"(SELECT count(*) FROM notifications WHERE {_where_sql(kind, dataset, unread)})"
    if with_unread:
        counts += f", (SELECT count(*) FROM notifications WHERE {_where_sql(kind, False, True)})"
    return f"SELECT {counts}"


def list_notifications(
    scope: Scope,
    *,
    limit: int,
    offset: int = 0,
    dataset_id: str | None = None,
    unread_only: bool = False,
    with_unread: bool = False,
    fields: tuple[str, ...] | None = None,
) -> tuple[list[Any], int, int | None]:
    """Return one page newest first, the total matching, and optionally the unread count.

    Rows are dicts of every column, metadata decoded; given ``fields`` (the serialisers'
    lists) they are the driver's tuples of those fields instead, which the serialisers read
    by position without a copy (each carries the counts after ``fields``).
    """
    names = ALL_FIELDS if fields is None else fields
    kind = _scope_kind(scope)
    dataset = dataset_id is not None
    where = _where_params(scope, dataset_id)
    unread_params = _scope_params(scope) if with_unread else ()
    rows = read_rows(_page_sql(names, kind, dataset, unread_only, with_unread),
                     where + unread_params + where + (limit, offset))
    n = len(names)
    if rows:
        total, unread = rows[0][n], (rows[0][n + 1] if with_unread else None)
    elif offset == 0:
        # Nothing matches at all, so nothing in scope is unread either (the unread rows
        # are a subset of what the filter matches).
        total, unread = 0, (0 if with_unread else None)
    else:
        # A page beyond the end: the counts alone.
        counts = read_rows(_counts_sql(kind, dataset, unread_only, with_unread),
                           where + unread_params)[0]
        total, unread = counts[0], (counts[1] if with_unread else None)
    if fields is not None:
        return rows, total, unread
    dicts = [dict(zip(ALL_FIELDS, row[:n])) for row in rows]
    for data in dicts:
        data["metadata"] = json.loads(data["metadata"]) if data["metadata"] else {}
    return dicts, total, unread


@lru_cache(maxsize=None)
def _count_sql(kind: str, dataset: bool) -> str:
    return f"SELECT count(*) FROM notifications WHERE {_where_sql(kind, dataset, True)}"


def unread_count(scope: Scope, dataset_id: str | None = None) -> int:
    """Count the caller's unread notifications (optionally for one dataset)."""
    sql = _count_sql(_scope_kind(scope), dataset_id is not None)
    return read_rows(sql, _where_params(scope, dataset_id))[0][0]


def list_for_admin(
    *,
    user_id: str | None = None,
    organization_id: str | None = None,
    dataset_id: str | None = None,
    unread_only: bool = False,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Return the newest notifications matching optional filters (CLI ``list``)."""
    conditions = _matching(user_id, organization_id, dataset_id)
    if unread_only:
        conditions.append(t.c.read_at.is_(None))
    with reading() as conn:
        rows = conn.execute(
            select(*COLUMNS).where(and_(True, *conditions))
            .order_by(t.c.created_at.desc(), t.c.seq.desc()).limit(limit)
        ).all()
    return [row_dict(r) for r in rows]


def stats(top: int = 10) -> dict[str, Any]:
    """Return totals and the busiest users, organizations and datasets."""
    unread = func.sum(func.coalesce(t.c.read_at.is_(None), False).cast(t.c.seq.type))

    def grouped(conn: Connection, column: Any) -> list[dict[str, Any]]:
        rows = conn.execute(
            select(column, func.count(), unread).where(column.is_not(None))
            .group_by(column).order_by(func.count().desc(), column).limit(top)
        ).all()
        return [{"id": r[0], "total": r[1], "unread": int(r[2] or 0)} for r in rows]

    with reading() as conn:
        total, unread_total, users, orgs, datasets = conn.execute(
            select(
                func.count(), unread, func.count(t.c.user_id.distinct()),
                func.count(t.c.organization_id.distinct()), func.count(t.c.dataset_id.distinct()),
            )
        ).one()
        return {
            "total": total,
            "unread": int(unread_total or 0),
            "users": users,
            "organizations": orgs,
            "datasets": datasets,
            "top_users": grouped(conn, t.c.user_id),
            "top_organizations": grouped(conn, t.c.organization_id),
            "top_datasets": grouped(conn, t.c.dataset_id),
        }


# --- writes ------------------------------------------------------------------------


def _bump_read_counter(conn: Connection) -> int:
    return conn.execute(
        update(counters).where(counters.c.name == "read")
        .values(value=counters.c.value + 1).returning(counters.c.value)
    ).scalar_one()


def _mark_job(conn: Connection, where: Any, read_at: int) -> int:
    next_read = select(counters.c.value + 1).where(counters.c.name == "read").scalar_subquery()
    changed = conn.execute(
        update(t).where(where, t.c.read_at.is_(None)).values(read_at=read_at, read_seq=next_read)
    ).rowcount
    if changed:
        _bump_read_counter(conn)
        mark_changed(conn)
    return changed


#: The ``read`` counter's next value, as :func:`_bump_read_counter` will set it.
_NEXT_READ = "(SELECT value + 1 FROM counters WHERE name = 'read')"
_BUMP_READ = "UPDATE counters SET value = value + 1 WHERE name = 'read'"


@lru_cache(maxsize=512)
def _mark_sql(kind: str, dataset: bool, ids: int, paramstyle: str) -> str:
    """Return the UPDATE that marks a scope's unread rows read (only ``ids`` of them, if any)."""
    where = _where_sql(kind, dataset, True)
    if ids:
        where += f" AND id IN ({', '.join('?' * ids)})" if ids > 1 else " AND id = ?"
    sql = f"UPDATE notifications SET read_at = ?, read_seq = {_NEXT_READ} WHERE {where}"
    return sql if paramstyle == "qmark" else sql.replace("?", "%s")


def _mark_sql_job(conn: Connection, kind: str, dataset: bool, ids: int,
                  params: tuple[Any, ...]) -> int:
    changed = conn.exec_driver_sql(_mark_sql(kind, dataset, ids, conn.dialect.paramstyle),
                                   params).rowcount
    if changed:
        conn.exec_driver_sql(_BUMP_READ)
        mark_changed(conn)
    return changed


def _mark_scope(scope: Scope, dataset_id: str | None = None,
                ids: Sequence[str] = ()) -> int:
    """Mark the unread rows of a scope read (all, or only ``ids``); return how many changed.

    The ``read`` counter moves (and watchers are told) only when a row changed.
    """
    params = (now_us(), *_where_params(scope, dataset_id), *ids)
    return write(_mark_sql_job, _scope_kind(scope), dataset_id is not None, len(ids), params)


def _mark(where: Any) -> int:
    """Mark the unread rows matching ``where`` read; return how many changed.

    The ``read`` counter moves (and watchers are told) only when a row changed: a
    mark-read that finds nothing to mark must not wake every stream to recount.
    """
    return write(_mark_job, where, now_us())


def mark_one_read(scope: Scope, notification_id: str) -> bool:
    """Mark one of the caller's unread notifications read; False if there is none."""
    return _mark_scope(scope, ids=(notification_id,)) == 1


def mark_all_read(scope: Scope, dataset_id: str | None = None) -> int:
    """Mark every unread notification in scope read; return how many changed."""
    return _mark_scope(scope, dataset_id)


def mark_ids_read(scope: Scope, ids: Sequence[str]) -> int:
    """Mark the given notifications read, silently skipping unknown or foreign ids."""
    if not ids:
        return 0
    # One statement for all of them (at most 1000, well under SQLite's parameter limit).
    return _mark_scope(scope, ids=tuple(dict.fromkeys(ids)))


def new_row(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Complete a notification's fields with an id, a timestamp and defaults."""
    row = {name: fields.get(name) for name in INSERT_FIELDS}
    row["id"] = row["id"] or str(uuid.uuid4())
    row["created_at"] = row["created_at"] if row["created_at"] is not None else now_us()
    for name in ("kind", "entity_type", "entity_id", "title"):
        row[name] = row[name] if row[name] is not None else ""
    metadata = row["metadata"]
    row["metadata"] = metadata if isinstance(metadata, str) else _dumps(metadata or {})
    return row


#: Compact JSON as stored; one encoder for every call (json.dumps with options builds one each time).
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def insert_sql(conn: Connection, *, skip_existing: bool = False) -> str:
    """Return the INSERT of :data:`INSERT_FIELDS` in the driver's own placeholder style.

    Run through ``exec_driver_sql``: no per-row work in SQLAlchemy on the hot paths. With
    ``skip_existing`` a row whose id or (user_id, dedupe_key) is stored already is left
    out (the unique indexes decide, so concurrent retries cannot both win).
    """
    mark = placeholder(conn)
    return (f"INSERT INTO notifications ({', '.join(INSERT_FIELDS)}) "
            f"VALUES ({', '.join([mark] * len(INSERT_FIELDS))})"
            + (" ON CONFLICT DO NOTHING" if skip_existing else ""))


def placeholder(conn: Connection) -> str:
    """Return the driver's positional placeholder (``?`` for sqlite3, ``%s`` for psycopg)."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def as_tuple(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Return a complete row's values in :data:`INSERT_FIELDS` order."""
    return tuple(row[f] for f in INSERT_FIELDS)


def _create_job(conn: Connection, rows: list[tuple[Any, ...]], ids: list[str]) -> list[Any]:
    conn.exec_driver_sql(insert_sql(conn), rows)
    mark_changed(conn)
    return conn.execute(select(*COLUMNS).where(t.c.id.in_(ids)).order_by(t.c.seq)).all()


def create_notifications(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Store notifications in one transaction and return them as stored."""
    rows = [new_row(item) for item in items]
    if not rows:
        return []
    stored = write(_create_job, [as_tuple(r) for r in rows], [r["id"] for r in rows])
    return [row_dict(r) for r in stored]


def _page_cache_job(conn: Connection, cache_kib: int | None) -> None:
    if cache_kib is not None and conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA cache_size = -{int(cache_kib)}")


def set_page_cache(cache_kib: int) -> None:
    """Set the size of the writer's page cache (KiB)."""
    write(_page_cache_job, cache_kib)


def _insert_job(conn: Connection, rows: Sequence[tuple[Any, ...]], cache_kib: int | None,
                skip_existing: bool) -> int:
    _page_cache_job(conn, cache_kib)
    inserted = conn.exec_driver_sql(insert_sql(conn, skip_existing=skip_existing),
                                    list(rows)).rowcount
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


# --- real-time streams -------------------------------------------------------------

#: Most new rows a stream watcher reads in one query.
CHANGE_BATCH = 1000


def stream_position() -> tuple[int, int]:
    """Return the newest sequence number and the value of the ``read`` counter."""
    with reading() as conn:
        seq = conn.execute(select(func.max(t.c.seq))).scalar() or 0
        read = conn.execute(
            select(counters.c.value).where(counters.c.name == "read")
        ).scalar() or 0
    return int(seq), int(read)


@dataclass
class Changes:
    """What changed after a watcher's position: new rows and read-state changes."""

    rows: list[dict[str, Any]]
    read_pairs: set[tuple[str, str | None]]
    last_seq: int
    last_read: int
    more: bool
    #: Value of the ``purge`` counter: when it moves, unread rows were deleted.
    purges: int = 0


def changes_since(last_seq: int, last_read: int, limit: int = CHANGE_BATCH) -> Changes:
    """Return rows with ``seq > last_seq`` and the (user, organization) pairs read since."""
    with reading() as conn:
        rows = conn.execute(
            select(*COLUMNS).where(t.c.seq > last_seq).order_by(t.c.seq).limit(limit)
        ).all()
        read = conn.execute(
            select(counters.c.value).where(counters.c.name == "read")
        ).scalar() or 0
        purges = conn.execute(
            select(counters.c.value).where(counters.c.name == "purge")
        ).scalar() or 0
        pairs: set[tuple[str, str | None]] = set()
        if read > last_read:
            pairs = {
                (r[0], r[1]) for r in conn.execute(
                    select(t.c.user_id, t.c.organization_id).distinct()
                    .where(t.c.read_seq > last_read, t.c.read_seq <= read)
                )
            }
    new_rows = [row_dict(r) for r in rows]
    return Changes(
        rows=new_rows,
        read_pairs=pairs,
        last_seq=new_rows[-1]["seq"] if new_rows else last_seq,
        last_read=max(int(read), last_read),
        more=len(new_rows) == limit,
        purges=int(purges),
    )


def note_deleted_unread(conn: Connection) -> None:
    """Record, in the caller's transaction, that unread rows were deleted (purge).

    Streams cannot see a deleted row; this counter tells their watchers to recount.
    """
    conn.execute(
        update(counters).where(counters.c.name == "purge").values(value=counters.c.value + 1)
    )


def unread_counts(pairs: Iterable[tuple[str, str | None]]) -> dict[tuple[str, str | None], int]:
    """Count unread rows of each (user, exact organization) pair, in one snapshot."""
    counts = {}
    with reading() as conn:
        for user_id, org_id in pairs:
            org = t.c.organization_id.is_(None) if org_id is None else t.c.organization_id == org_id
            counts[(user_id, org_id)] = conn.execute(
                select(func.count()).select_from(t)
                .where(t.c.user_id == user_id, org, t.c.read_at.is_(None))
            ).scalar_one()
    return counts


def replay(scope: Scope, dataset_id: str | None, after: int, upto: int,
           limit: int) -> list[dict[str, Any]]:
    """Return the caller's rows with ``after < seq <= upto`` in order (at most ``limit``)."""
    with reading() as conn:
        rows = conn.execute(
            select(*COLUMNS)
            .where(_filters(scope, dataset_id), t.c.seq > after, t.c.seq <= upto)
            .order_by(t.c.seq).limit(limit)
        ).all()
    return [row_dict(r) for r in rows]


def replay_exceeds(scope: Scope, dataset_id: str | None, after: int, upto: int,
                   limit: int) -> bool:
    """Tell whether more than ``limit`` of the caller's rows have ``after < seq <= upto``."""
    with reading() as conn:
        return conn.execute(
            select(t.c.seq)
            .where(_filters(scope, dataset_id), t.c.seq > after, t.c.seq <= upto)
            .order_by(t.c.seq).limit(1).offset(limit)
        ).first() is not None


def rows_after(last_seq: int, upto: int, *, user_id: str | None = None,
               organization_id: str | None = None,
               limit: int = CHANGE_BATCH) -> list[dict[str, Any]]:
    """Return rows with ``last_seq < seq <= upto`` in order, optionally for one user/org."""
    conditions: list[Any] = [t.c.seq > last_seq, t.c.seq <= upto]
    if user_id is not None:
        conditions.append(t.c.user_id == user_id)
    if organization_id is not None:
        conditions.append(t.c.organization_id == organization_id)
    with reading() as conn:
        rows = conn.execute(
            select(*COLUMNS).where(*conditions).order_by(t.c.seq).limit(limit)
        ).all()
    return [row_dict(r) for r in rows]


@dataclass(frozen=True)
class LeaseResult:
    """Outcome of asking for a stream slot."""

    lease_id: str | None
    active: int
    retry_after: int


def _acquire_lease_job(conn: Connection, user_id: str, owner: str, limit: int, now: int,
                       ttl_us: int, kind: str) -> LeaseResult:
    mine = (leases.c.user_id == user_id, leases.c.kind == kind)
    conn.execute(delete(leases).where(*mine, leases.c.expires_at <= now))
    active, earliest = conn.execute(
        select(func.count(), func.min(leases.c.expires_at)).where(*mine)
    ).one()
    if active >= limit:
        # When a slot may free up at the latest: the oldest lease lapses unless renewed.
        wait = -(-(int(earliest) - now) // 1_000_000)
        return LeaseResult(None, int(active), max(1, wait))
    lease_id = uuid.uuid4().hex
    conn.execute(insert(leases).values(
        id=lease_id, user_id=user_id, owner=owner, expires_at=now + ttl_us, kind=kind
    ))
    return LeaseResult(lease_id, int(active) + 1, 0)


def acquire_lease(user_id: str, owner: str, limit: int, ttl_us: int,
                  kind: str = "organization") -> LeaseResult:
    """Take one of ``limit`` stream slots of a user, counting live leases of every worker.

    Each ``kind`` of stream (``organization``, ``dataset``) has slots of its own.
    """
    return write(_acquire_lease_job, user_id, owner, limit, now_us(), ttl_us, kind)


def _run_statement_job(conn: Connection, statement: Any) -> int:
    return conn.execute(statement).rowcount


def release_leases(lease_ids: Sequence[str]) -> int:
    """Drop the given leases (streams that ended)."""
    if not lease_ids:
        return 0
    return write(_run_statement_job, delete(leases).where(leases.c.id.in_(list(lease_ids))))


def renew_leases(owner: str, ttl_us: int) -> int:
    """Push back the expiry of every lease held by ``owner`` (a live worker)."""
    return write(_run_statement_job, update(leases).where(leases.c.owner == owner)
                 .values(expires_at=now_us() + ttl_us))


def release_owner(owner: str) -> int:
    """Drop every lease of ``owner`` (a worker shutting down)."""
    return write(_run_statement_job, delete(leases).where(leases.c.owner == owner))


# --- ingest, administration, export and import --------------------------------------


#: Pairs per look-up query: keeps the OR chain well under SQLite's expression depth.
_LOOKUP_CHUNK = 200


def _existing_ids(conn: Connection, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for start in range(0, len(pairs), _LOOKUP_CHUNK):
        chunk = pairs[start:start + _LOOKUP_CHUNK]
        # One equality pair per OR branch: each is an index search on ux_notifications_dedupe
        # (a row-value IN list would scan that whole index instead).
        rows = conn.execute(
            select(t.c.user_id, t.c.dedupe_key, t.c.id).where(
                t.c.dedupe_key.is_not(None),
                or_(*(and_(t.c.user_id == user, t.c.dedupe_key == key) for user, key in chunk)),
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
    created = sum(1 for row, id_ in zip(rows, ids) if row["id"] == id_)
    return ids, created


def mark_read_for_user(
    user_id: str,
    ids: Sequence[str] | None = None,
    *,
    organization_id: str | None = None,
    dataset_id: str | None = None,
) -> int:
    """Mark a user's unread notifications read (all, or only ``ids``); return how many."""
    conditions = _matching(user_id, organization_id, dataset_id)
    if ids is not None:
        if not ids:
            return 0
        conditions.append(t.c.id.in_(list(ids)))
    return _mark(and_(*conditions))


def _purge_filter(before_us: int, read_only: bool) -> list[Any]:
    conditions: list[Any] = [t.c.created_at < before_us]
    if read_only:
        conditions.append(t.c.read_at.is_not(None))
    return conditions


_UNREAD_FLAG = func.coalesce(t.c.read_at.is_(None), False).cast(t.c.seq.type)


def _purge_job(conn: Connection, conditions: list[Any], cursor: int,
               chunk: int) -> tuple[int | None, int, int]:
    page = (
        select(t.c.seq, _UNREAD_FLAG.label("unread")).where(t.c.seq > cursor, *conditions)
        .order_by(t.c.seq).limit(chunk).subquery()
    )
    last, count, unread = conn.execute(
        select(func.max(page.c.seq), func.count(), func.sum(page.c.unread))
    ).one()
    if not count:
        return None, 0, 0
    conn.execute(delete(t).where(t.c.seq > cursor, t.c.seq <= last, *conditions))
    if unread:
        _bump_read_counter(conn)
        note_deleted_unread(conn)
    mark_changed(conn)
    return last, count, int(unread or 0)


def purge(before_us: int, *, read_only: bool = False, dry_run: bool = False,
          chunk: int = 5000) -> dict[str, int]:
    """Delete notifications created before ``before_us``; return deleted and unread counts.

    Deletes in short transactions of ``chunk`` rows so writers never wait long. Deleting
    unread rows changes unread counts without a read, so the ``read`` counter is bumped:
    watchers of that counter recount, as they do after a mark-read.
    """
    conditions = _purge_filter(before_us, read_only)
    if dry_run:
        with reading() as conn:
            total, unread = conn.execute(
                select(func.count(), func.sum(_UNREAD_FLAG)).where(*conditions)
            ).one()
        return {"deleted": total, "unread": int(unread or 0)}
    deleted = unread_deleted = 0
    cursor = 0
    while True:
        last, count, unread = write(_purge_job, conditions, cursor, chunk)
        if last is None:
            break
        deleted += count
        unread_deleted += unread
        cursor = last
    return {"deleted": deleted, "unread": unread_deleted}


def export_rows(
    *, user_id: str | None = None, since_us: int | None = None, chunk: int = 10_000,
    decode_metadata: bool = True,
) -> Iterable[dict[str, Any]]:
    """Yield matching notifications in storage order from one consistent snapshot.

    With ``decode_metadata=False`` metadata stays the stored JSON text (faster to copy out).
    """
    conditions = _matching(user_id)
    if since_us is not None:
        conditions.append(t.c.created_at >= since_us)
    cursor = 0
    with reading() as conn:
        # One transaction for every page: the export is a snapshot even while others write.
        with conn.begin():
            while True:
                result = conn.execute(
                    select(*COLUMNS).where(t.c.seq > cursor, *conditions)
                    .order_by(t.c.seq).limit(chunk)
                )
                names = list(result.keys())
                rows = result.all()
                if not rows:
                    return
                for row in rows:
                    data = dict(zip(names, row))
                    if decode_metadata:
                        data["metadata"] = json.loads(data["metadata"]) if data["metadata"] else {}
                    yield data
                cursor = rows[-1].seq


#: Staging column types that are not TEXT.
_STAGE_TYPES = {"created_at": "BIGINT", "read_at": "BIGINT"}


class Importer:
    """Stage validated rows, then copy them into the table, skipping stored ids.

    Staging goes to a temporary table of a connection of the importer's own, which takes
    no lock on the database, so a file that turns out to be invalid half-way leaves
    nothing behind. The copy then goes through the writer in short transactions, in file
    order, with a pause between them in which other processes' writers get their turn.
    """

    def __init__(self) -> None:
        self.conn = db.engine.connect()
        self.staged = 0
        columns = ", ".join(f"{name} {_STAGE_TYPES.get(name, 'TEXT')}" for name in INSERT_FIELDS)
        self.conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE import_staging (line INTEGER PRIMARY KEY, {columns})"
        )
        self.conn.commit()
        mark = placeholder(self.conn)
        self._stage_sql = (
            f"INSERT INTO import_staging (line, {', '.join(INSERT_FIELDS)}) "
            f"VALUES ({', '.join([mark] * (len(INSERT_FIELDS) + 1))})"
        )
        self._page_sql = (
            f"SELECT line, {', '.join(INSERT_FIELDS)} FROM import_staging "
            f"WHERE line > {mark} ORDER BY line LIMIT {mark}"
        )

    def stage(self, rows: Sequence[Sequence[Any]]) -> None:
        """Stage rows: the line number, then the values in ``INSERT_FIELDS`` order."""
        if rows:
            with self.conn.begin():
                self.conn.exec_driver_sql(self._stage_sql, list(rows))
            self.staged += len(rows)

    def copy(self, chunk: int = 5_000, pause: float = 0.005) -> int:
        """Copy the staged rows into the table; return how many were new.

        ``chunk`` bounds how long one transaction holds the write lock (a few tens of
        milliseconds); ``pause`` is longer than a waiting writer's retry interval.
        """
        inserted = 0
        line = 0
        while True:
            page = self.conn.exec_driver_sql(self._page_sql, (line, chunk)).all()
            self.conn.commit()
            if not page:
                return inserted
            line = page[-1][0]
            inserted += insert_tuples([tuple(row[1:]) for row in page], skip_existing=True)
            time.sleep(pause)

    def close(self) -> None:
        """Drop the staging table and release the connection."""
        try:
            self.conn.rollback()
            self.conn.exec_driver_sql("DROP TABLE IF EXISTS import_staging")
            self.conn.commit()
        finally:
            self.conn.close()
