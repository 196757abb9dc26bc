"""What the streams and ``tail`` read: the change feed, its counters, and replays.

A watcher keeps a position: the newest ``seq`` it has seen and the value of the ``read``
counter. :func:`changes_since` returns what moved after it: new rows, and the (user,
organization) pairs whose rows were marked read (each marked row carries the counter's new
value in ``read_seq``). The writer jobs that change read state call
:func:`bump_read_counter` in their transaction, and a purge of unread rows also
:func:`note_deleted_unread`, since a deleted row cannot be seen.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, func, select, update

from notifications.store.engine import read_rows, reading, run_sql
from notifications.store.models import counters, notifications
from notifications.store.rows import COLUMNS, SELECT_ALL, as_dicts, row_dict
from notifications.store.scope import AdminFilter, Orgs, Scope, Shape, where_params, where_sql

#: Most new rows a stream watcher reads in one query.
CHANGE_BATCH = 1000

#: The ``read`` counter's next value, as :func:`bump_read_counter` will set it (a subquery
#: for the ``read_seq`` of the rows a job marks read before it bumps the counter).
NEXT_READ = "(SELECT value + 1 FROM counters WHERE name = 'read')"
_BUMP_READ = "UPDATE counters SET value = value + 1 WHERE name = 'read'"


def bump_read_counter(conn: Connection) -> None:
    """Move the ``read`` counter on, in the caller's (writer job's) transaction."""
    run_sql(conn, _BUMP_READ)


def note_deleted_unread(conn: Connection) -> None:
    """Record, in the caller's transaction, that unread rows were deleted (purge).

    Streams cannot see a deleted row; this counter tells their watchers to recount.
    """
    conn.execute(
        update(counters).where(counters.c.name == "purge").values(value=counters.c.value + 1)
    )


def stream_position() -> tuple[int, int]:
    """Return the newest sequence number and the value of the ``read`` counter."""
    with reading() as conn:
        seq = conn.execute(select(func.max(notifications.c.seq))).scalar() or 0
        read = conn.execute(
            select(counters.c.value).where(counters.c.name == "read")
        ).scalar() or 0
    return int(seq), int(read)


def watch_position() -> tuple[int, int]:
    """Return where a stream watcher starts: the change log's head and the newest ``seq``.

    Both come from one snapshot, so every change after the head is one of a row the
    watcher has not seen yet (or a later change of one it has).
    """
    with reading() as conn:
        head, floor, seq = run_sql(conn, _WATCH_POSITION).one()
    # An empty log (retention deleted every entry) has its head where the floor is.
    return max(int(head or 0), int(floor or 0)), int(seq or 0)


_WATCH_POSITION = (
    "SELECT (SELECT max(position) FROM changes), "
    "(SELECT value FROM counters WHERE name = 'changes_floor'), "
    "(SELECT max(seq) FROM notifications)"
)


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
    seq = notifications.c.seq
    with reading() as conn:
        rows = conn.execute(select(*COLUMNS).where(seq > last_seq).order_by(seq).limit(limit)).all()
        read = conn.execute(
            select(counters.c.value).where(counters.c.name == "read")
        ).scalar() or 0
        purges = conn.execute(
            select(counters.c.value).where(counters.c.name == "purge")
        ).scalar() or 0
        pairs: set[tuple[str, str | None]] = set()
        if read > last_read:
            read_seq = notifications.c.read_seq
            pairs = {
                (r[0], r[1]) for r in conn.execute(
                    select(notifications.c.user_id, notifications.c.organization_id).distinct()
                    .where(read_seq > last_read, read_seq <= read)
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


@lru_cache(maxsize=None)
def _unread_sql(shape: Shape) -> str:
    return f"SELECT count(*) FROM notifications WHERE {where_sql(shape, unread=True)}"


def unread_counts(pairs: Iterable[tuple[str, str | None]]) -> dict[tuple[str, str | None], int]:
    """Count unread rows of each (user, exact organization) pair, in one snapshot."""
    counts = {}
    with reading() as conn, conn.begin():
        for user_id, org_id in pairs:
            # Exactly that organization's rows, or exactly the rows of none.
            scope = Scope(user_id, orgs=Orgs.ONE, organization_id=org_id)
            sql = _unread_sql(scope.shape)
            counts[(user_id, org_id)] = int(
                run_sql(conn, sql, where_params(scope)).scalar_one())
    return counts


@lru_cache(maxsize=None)
def _after_sql(shape: Shape, dataset: bool, offset: bool) -> str:
    """Return a scope's rows with ``after < seq <= upto`` in order (``?``: after, upto, limit)."""
    return (f"SELECT {'seq' if offset else SELECT_ALL} FROM notifications "
            f"WHERE {where_sql(shape, dataset)} AND seq > ? AND seq <= ? "
            "ORDER BY seq LIMIT ?" + (" OFFSET ?" if offset else ""))


def replay(scope: Scope, dataset_id: str | None, after: int, upto: int,
           limit: int) -> list[dict[str, Any]]:
    """Return the caller's rows with ``after < seq <= upto`` in order (at most ``limit``)."""
    sql = _after_sql(scope.shape, dataset_id is not None, False)
    return as_dicts(read_rows(sql, where_params(scope, dataset_id) + (after, upto, limit)))


def replay_exceeds(scope: Scope, dataset_id: str | None, after: int, upto: int,
                   limit: int) -> bool:
    """Tell whether more than ``limit`` of the caller's rows have ``after < seq <= upto``."""
    sql = _after_sql(scope.shape, dataset_id is not None, True)
    return bool(read_rows(sql, where_params(scope, dataset_id) + (after, upto, 1, limit)))


def rows_after(last_seq: int, upto: int, *, user_id: str | None = None,
               organization_id: str | None = None,
               limit: int = CHANGE_BATCH) -> list[dict[str, Any]]:
    """Return rows with ``last_seq < seq <= upto`` in order, optionally for one user/org."""
    scope = AdminFilter(user_id, organization_id)
    sql = _after_sql(scope.shape, False, False)
    return as_dicts(read_rows(sql, where_params(scope) + (last_seq, upto, limit)))
