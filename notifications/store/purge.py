"""Deleting old notifications: the ``purge`` command, and the job retention shares.

Rows go in short writer transactions of a bounded number of rows each, so writers never
wait long. Each deleted row gets a ``deleted`` entry in the change log from the table's
trigger, so streams whose unread counts changed recount.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, func, select

from notifications.store.engine import reading, write
from notifications.store.models import notifications
from notifications.store.rows import UNREAD_FLAG
from notifications.store.writer import mark_changed


def delete_chunk_job(conn: Connection, conditions: list[Any], cursor: int,
                     chunk: int) -> tuple[int | None, int, int]:
    """Writer job: delete the next ``chunk`` rows after ``cursor`` that match ``conditions``.

    Return the last ``seq`` deleted (None when none matched), how many rows and how many
    unread rows went.
    """
    seq = notifications.c.seq
    page = (
        select(seq, UNREAD_FLAG.label("unread")).where(seq > cursor, *conditions)
        .order_by(seq).limit(chunk).subquery()
    )
    last, count, unread = conn.execute(
        select(func.max(page.c.seq), func.count(), func.sum(page.c.unread))
    ).one()
    if not count:
        return None, 0, 0
    conn.execute(delete(notifications).where(seq > cursor, seq <= last, *conditions))
    mark_changed(conn)
    return last, count, int(unread or 0)


def purge(before_us: int, *, read_only: bool = False, dry_run: bool = False,
          chunk: int = 5000) -> dict[str, int]:
    """Delete notifications created before ``before_us``; return deleted and unread counts.

    ``read_only`` keeps unread rows; ``dry_run`` only counts what would go.
    """
    conditions: list[Any] = [notifications.c.created_at < before_us]
    if read_only:
        conditions.append(notifications.c.read_at.is_not(None))
    if dry_run:
        with reading() as conn:
            total, unread = conn.execute(
                select(func.count(), func.sum(UNREAD_FLAG)).where(*conditions)
            ).one()
        return {"deleted": total, "unread": int(unread or 0)}
    deleted = unread_deleted = 0
    cursor = 0
    while True:
        last, count, unread = write(delete_chunk_job, conditions, cursor, chunk)
        if last is None:
            break
        deleted += count
        unread_deleted += unread
        cursor = last
    return {"deleted": deleted, "unread": unread_deleted}
