"""The ``export`` command's read: every matching notification, from one snapshot."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from notifications.store.engine import reading, run_sql
from notifications.store.rows import STORED_FIELDS, as_dicts
from notifications.store.scope import AdminFilter, where_params, where_sql


def export_rows(
    *, user_id: str | None = None, since_us: int | None = None, chunk: int = 10_000,
    decode_metadata: bool = True,
) -> Iterator[dict[str, Any]]:
    """Yield matching notifications, every stored column, in storage order from one snapshot.

    With ``decode_metadata=False`` metadata stays the stored JSON text (faster to copy out).
    """
    scope = AdminFilter(user_id)
    since = "" if since_us is None else " AND created_at >= ?"
    sql = (f"SELECT {', '.join(STORED_FIELDS)} FROM notifications "
           f"WHERE {where_sql(scope.shape)}{since} AND seq > ? ORDER BY seq LIMIT ?")
    params = where_params(scope) + (() if since_us is None else (since_us,))
    cursor = 0
    with reading() as conn:
        # One transaction for every page: the export is a snapshot even while others write.
        with conn.begin():
            while True:
                rows = run_sql(conn, sql, params + (cursor, chunk)).all()
                if not rows:
                    return
                yield from as_dicts(rows, decode=decode_metadata, fields=STORED_FIELDS)
                cursor = rows[-1][0]
