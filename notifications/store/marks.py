"""Marking notifications read: both APIs' mark-read and the ``mark-read`` command.

Each is one UPDATE of the scope's unread rows, run as a writer job. Streams find the
change in the change log; only a job that changed a row signals a change
(:func:`.writer.mark_changed`), so a mark-read that finds nothing to mark does not wake
every stream.

Reading implies seeing: a marked row's ``seen_at`` is set to the same time when it is NULL
(these variants' responses do not show it). Each marked row gets an ``updated`` entry in
the change log from the table's trigger.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection

from notifications.store.engine import run_sql, write
from notifications.store.rows import now_us
from notifications.store.scope import AdminFilter, Scope, Shape, where_params, where_sql
from notifications.store.writer import mark_changed


@lru_cache(maxsize=512)
def _mark_sql(shape: Shape, dataset: bool, ids: int) -> str:
    """Return the UPDATE that marks a scope's unread rows read (only ``ids`` of them, if any)."""
    where = where_sql(shape, dataset, True)
    if ids:
        where += f" AND id IN ({', '.join('?' * ids)})" if ids > 1 else " AND id = ?"
    return ("UPDATE notifications SET read_at = ?, seen_at = COALESCE(seen_at, ?) "
            f"WHERE {where}")


def _mark_job(conn: Connection, shape: Shape, dataset: bool, ids: int,
              params: tuple[Any, ...]) -> int:
    changed = int(run_sql(conn, _mark_sql(shape, dataset, ids), params).rowcount)
    if changed:
        mark_changed(conn)
    return changed


def _mark(scope: Scope | AdminFilter, dataset_id: str | None = None,
          ids: Sequence[str] = ()) -> int:
    """Mark the unread rows of a scope read (all, or only ``ids``); return how many changed."""
    now = now_us()
    params = (now, now, *where_params(scope, dataset_id), *ids)
    return write(_mark_job, scope.shape, dataset_id is not None, len(ids), params)


def mark_one_read(scope: Scope, notification_id: str) -> bool:
    """Mark one of the caller's unread notifications read; False if there is none."""
    return _mark(scope, ids=(notification_id,)) == 1


def mark_all_read(scope: Scope, dataset_id: str | None = None) -> int:
    """Mark every unread notification in scope read; return how many changed."""
    return _mark(scope, dataset_id)


def mark_ids_read(scope: Scope, ids: Sequence[str]) -> int:
    """Mark the given notifications read, silently skipping unknown or foreign ids."""
    if not ids:
        return 0
    # One statement for all of them (at most 1000, well under SQLite's parameter limit).
    return _mark(scope, ids=tuple(dict.fromkeys(ids)))


def mark_read_for_user(
    user_id: str,
    ids: Sequence[str] | None = None,
    *,
    organization_id: str | None = None,
    dataset_id: str | None = None,
) -> int:
    """Mark a user's unread notifications read (all, or only ``ids``); return how many.

    ``organization_id`` and ``dataset_id`` narrow it to that organization's or dataset's
    rows (the ``mark-read`` command's filters).
    """
    scope = AdminFilter(user_id, organization_id)
    if ids is None:
        return _mark(scope, dataset_id)
    return _mark(scope, dataset_id, tuple(dict.fromkeys(ids))) if ids else 0
