"""The REST reads of both variants (pages and unread counts) and the admin commands' list.

Each is one plain-SQL statement on a pooled connection (:func:`read_rows`), its conditions
from :mod:`notifications.store.scope`: one statement reads one snapshot.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from notifications.store.engine import read_rows
from notifications.store.rows import ALL_FIELDS, FIELDS, SELECT_ALL, as_dicts
from notifications.store.scope import AdminFilter, Scope, Shape, where_params, where_sql


def _counts(shape: Shape, dataset: bool, unread: bool, with_unread: bool) -> str:
    """Return the total matching (and the scope's unread count) as scalar subqueries."""
    counts = f"(SELECT count(*) FROM notifications WHERE {where_sql(shape, dataset, unread)})"
    if with_unread:
        counts += f", (SELECT count(*) FROM notifications WHERE {where_sql(shape, unread=True)})"
    return counts


@lru_cache(maxsize=None)
def _page_sql(fields: tuple[str, ...], shape: Shape, dataset: bool, unread: bool,
              with_unread: bool) -> str:
    """Return one page with the total matching (and the unread count) on every row.

    The counts are uncorrelated scalar subqueries, which SQLite runs once per statement:
    page and counts come from one snapshot in one statement, with no transaction.
    """
    if not set(fields) <= FIELDS:
        raise ValueError(f"unknown fields: {sorted(set(fields) - FIELDS)}")
    return (f"SELECT {', '.join(fields)}, {_counts(shape, dataset, unread, with_unread)} "
            f"FROM notifications WHERE {where_sql(shape, dataset, unread)} "
            "ORDER BY created_at DESC, seq DESC LIMIT ? OFFSET ?")


@lru_cache(maxsize=None)
def _counts_sql(shape: Shape, dataset: bool, unread: bool, with_unread: bool) -> str:
    return f"SELECT {_counts(shape, dataset, unread, with_unread)}"


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
    shape = scope.shape
    dataset = dataset_id is not None
    where = where_params(scope, dataset_id)
    unread_params = where_params(scope) if with_unread else ()
    rows = read_rows(_page_sql(names, shape, dataset, unread_only, with_unread),
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
        counts = read_rows(_counts_sql(shape, dataset, unread_only, with_unread),
                           where + unread_params)[0]
        total, unread = counts[0], (counts[1] if with_unread else None)
    if fields is not None:
        return rows, total, unread
    return as_dicts(rows), total, unread


@lru_cache(maxsize=None)
def _count_sql(shape: Shape, dataset: bool) -> str:
    return f"SELECT count(*) FROM notifications WHERE {where_sql(shape, dataset, True)}"


def unread_count(scope: Scope, dataset_id: str | None = None) -> int:
    """Count the caller's unread notifications (optionally for one dataset)."""
    sql = _count_sql(scope.shape, dataset_id is not None)
    return int(read_rows(sql, where_params(scope, dataset_id))[0][0])


@lru_cache(maxsize=None)
def _newest_sql(shape: Shape, dataset: bool, unread: bool) -> str:
    return (f"SELECT {SELECT_ALL} FROM notifications WHERE {where_sql(shape, dataset, unread)} "
            "ORDER BY created_at DESC, seq DESC LIMIT ?")


def list_for_admin(
    *,
    user_id: str | None = None,
    organization_id: str | None = None,
    dataset_id: str | None = None,
    unread_only: bool = False,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Return the newest notifications matching optional filters (CLI ``list``)."""
    scope = AdminFilter(user_id, organization_id)
    sql = _newest_sql(scope.shape, dataset_id is not None, unread_only)
    return as_dicts(read_rows(sql, where_params(scope, dataset_id) + (limit,)))
