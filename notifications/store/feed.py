"""What the streams and ``tail`` read besides the change log: positions, counts, replays.

Every change a stream reports comes from the change log (:mod:`.changelog`); this module
holds where a watcher starts, the unread counts it recounts, and the replays of the
dataset and organization streams, which are read by ``seq``.
"""
from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select

from notifications.store.engine import read_rows, reading, run_sql
from notifications.store.models import notifications
from notifications.store.rows import SELECT_ALL, as_dicts
from notifications.store.scope import AdminFilter, Orgs, Scope, Shape, where_params, where_sql

#: Most new rows a stream watcher reads in one query.
CHANGE_BATCH = 1000


def newest_seq() -> int:
    """Return the newest sequence number (0 for an empty table)."""
    with reading() as conn:
        return int(conn.execute(select(func.max(notifications.c.seq))).scalar() or 0)


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
