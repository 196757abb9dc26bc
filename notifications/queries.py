"""Data access: every SQL statement the service runs lives here."""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from . import signals
from .database import reading, writing
from .models import counters_table as counters
from .models import notifications_table as t
from .models import stream_leases_table as leases

#: Columns every read returns, under their public names.
COLUMNS = (
    t.c.seq, t.c.id, t.c.user_id, t.c.organization_id, t.c.dataset_id, t.c.kind,
    t.c.entity_type, t.c.entity_id, t.c.title, t.c.body, t.c.link,
    t.c.metadata, t.c.created_at, t.c.read_at,
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


def row_dict(row: Any) -> dict[str, Any]:
    """Turn a result row into a plain dict with ``metadata`` decoded."""
    data = dict(row._mapping)
    data["metadata"] = json.loads(data["metadata"]) if data["metadata"] else {}
    return data


# --- reads -------------------------------------------------------------------------


def list_notifications(
    scope: Scope,
    *,
    limit: int,
    offset: int = 0,
    dataset_id: str | None = None,
    unread_only: bool = False,
    with_unread: bool = False,
) -> tuple[list[dict[str, Any]], int, int | None]:
    """Return one page newest first, the total matching, and optionally the unread count."""
    where = _filters(scope, dataset_id, unread_only)
    with reading() as conn:
        rows = conn.execute(
            select(*COLUMNS).where(where)
            .order_by(t.c.created_at.desc(), t.c.seq.desc())
            .limit(limit).offset(offset)
        ).all()
        total = conn.execute(select(func.count()).select_from(t).where(where)).scalar_one()
        unread = _unread(conn, scope) if with_unread else None
    return [row_dict(r) for r in rows], total, unread


def _unread(conn: Connection, scope: Scope, dataset_id: str | None = None) -> int:
    where = _filters(scope, dataset_id, unread_only=True)
    return conn.execute(select(func.count()).select_from(t).where(where)).scalar_one()


def unread_count(scope: Scope, dataset_id: str | None = None) -> int:
    """Count the caller's unread notifications (optionally for one dataset)."""
    with reading() as conn:
        return _unread(conn, scope, dataset_id)


def get_notification(notification_id: str) -> dict[str, Any] | None:
    """Return one notification by public id, whoever owns it (for the CLI)."""
    with reading() as conn:
        row = conn.execute(select(*COLUMNS).where(t.c.id == notification_id)).first()
    return row_dict(row) if row else None


def list_for_admin(
    *,
    user_id: str | None = None,
    organization_id: str | None = None,
    dataset_id: str | None = None,
    unread_only: bool = False,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Return the newest notifications matching optional filters (CLI ``list``)."""
    conditions: list[Any] = []
    if user_id is not None:
        conditions.append(t.c.user_id == user_id)
    if organization_id is not None:
        conditions.append(t.c.organization_id == organization_id)
    if dataset_id is not None:
        conditions.append(t.c.dataset_id == dataset_id)
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


def _mark(conn: Connection, where: Any) -> int:
    stamp = now_us()
    result = conn.execute(
        update(t).where(where, t.c.read_at.is_(None))
        .values(read_at=stamp, read_seq=_bump_read_counter(conn))
    )
    return result.rowcount


def mark_one_read(scope: Scope, notification_id: str) -> bool:
    """Mark one of the caller's unread notifications read; False if there is none."""
    with writing() as conn:
        changed = _mark(conn, and_(*_scope(scope), t.c.id == notification_id))
    signals.changed()
    return changed == 1


def mark_all_read(scope: Scope, dataset_id: str | None = None) -> int:
    """Mark every unread notification in scope read; return how many changed."""
    with writing() as conn:
        changed = _mark(conn, _filters(scope, dataset_id))
    signals.changed()
    return changed


def mark_ids_read(scope: Scope, ids: Sequence[str]) -> int:
    """Mark the given notifications read, silently skipping unknown or foreign ids."""
    if not ids:
        return 0
    with writing() as conn:
        changed = _mark(conn, and_(*_scope(scope), t.c.id.in_(list(ids))))
    signals.changed()
    return changed


def new_row(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Complete a notification's fields with an id, a timestamp and defaults."""
    row = {name: fields.get(name) for name in INSERT_FIELDS}
    row["id"] = row["id"] or str(uuid.uuid4())
    row["created_at"] = row["created_at"] if row["created_at"] is not None else now_us()
    for name in ("kind", "entity_type", "entity_id", "title"):
        row[name] = row[name] if row[name] is not None else ""
    metadata = row["metadata"]
    row["metadata"] = metadata if isinstance(metadata, str) else json.dumps(
        metadata or {}, separators=(",", ":"), ensure_ascii=False
    )
    return row


_INSERT_SQL = (
    f"INSERT INTO notifications ({', '.join(INSERT_FIELDS)}) "
    f"VALUES ({', '.join(':' + f for f in INSERT_FIELDS)})"
)


def insert_rows(conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert complete rows (see :func:`new_row`) in the caller's transaction."""
    from sqlalchemy import text

    batch = list(rows)
    if batch:
        conn.execute(text(_INSERT_SQL), batch)


def create_notifications(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Store notifications in one transaction and return them as stored."""
    rows = [new_row(item) for item in items]
    with writing() as conn:
        insert_rows(conn, rows)
        stored = conn.execute(
            select(*COLUMNS).where(t.c.id.in_([r["id"] for r in rows])).order_by(t.c.seq)
        ).all()
    signals.changed()
    return [row_dict(r) for r in stored]


# --- real-time streams -------------------------------------------------------------

#: Most new rows a stream watcher reads in one query.
CHANGE_BATCH = 1000


def data_version(dbapi_connection: Any) -> int:
    """Return SQLite's change counter of one connection: it moves when another commits."""
    return dbapi_connection.execute("PRAGMA data_version").fetchone()[0]


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


def acquire_lease(user_id: str, owner: str, limit: int, ttl_us: int) -> LeaseResult:
    """Take one of ``limit`` stream slots of a user, counting live leases of every worker."""
    now = now_us()
    with writing() as conn:
        conn.execute(delete(leases).where(leases.c.user_id == user_id, leases.c.expires_at <= now))
        active, earliest = conn.execute(
            select(func.count(), func.min(leases.c.expires_at)).where(leases.c.user_id == user_id)
        ).one()
        if active >= limit:
            # When a slot may free up at the latest: the oldest lease lapses unless renewed.
            wait = -(-(int(earliest) - now) // 1_000_000)
            return LeaseResult(None, int(active), max(1, wait))
        lease_id = uuid.uuid4().hex
        conn.execute(insert(leases).values(
            id=lease_id, user_id=user_id, owner=owner, expires_at=now + ttl_us
        ))
    return LeaseResult(lease_id, int(active) + 1, 0)


def release_leases(lease_ids: Sequence[str]) -> int:
    """Drop the given leases (streams that ended)."""
    if not lease_ids:
        return 0
    with writing() as conn:
        return conn.execute(delete(leases).where(leases.c.id.in_(list(lease_ids)))).rowcount


def renew_leases(owner: str, ttl_us: int) -> int:
    """Push back the expiry of every lease held by ``owner`` (a live worker)."""
    with writing() as conn:
        return conn.execute(
            update(leases).where(leases.c.owner == owner).values(expires_at=now_us() + ttl_us)
        ).rowcount


def release_owner(owner: str) -> int:
    """Drop every lease of ``owner`` (a worker shutting down)."""
    with writing() as conn:
        return conn.execute(delete(leases).where(leases.c.owner == owner)).rowcount


def active_leases(user_id: str) -> int:
    """Count a user's unexpired stream leases."""
    with reading() as conn:
        return conn.execute(
            select(func.count()).select_from(leases)
            .where(leases.c.user_id == user_id, leases.c.expires_at > now_us())
        ).scalar_one()
