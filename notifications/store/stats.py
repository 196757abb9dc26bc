"""The ``stats`` command's figures: totals and the busiest users, organizations, datasets."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from notifications.store.engine import reading
from notifications.store.models import notifications
from notifications.store.rows import UNREAD_FLAG


def table_bytes() -> int:
    """Return the bytes the service's tables and their indexes take (PostgreSQL)."""
    with reading() as conn:
        return int(conn.exec_driver_sql(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class AS c "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        ).scalar_one())


def stats(top: int = 10) -> dict[str, Any]:
    """Return totals and the busiest users, organizations and datasets, from one snapshot."""
    unread = func.sum(UNREAD_FLAG)
    columns = notifications.c

    def grouped(conn: Connection, column: Any) -> list[dict[str, Any]]:
        rows = conn.execute(
            select(column, func.count(), unread).where(column.is_not(None))
            .group_by(column).order_by(func.count().desc(), column).limit(top)
        ).all()
        return [{"id": r[0], "total": r[1], "unread": int(r[2] or 0)} for r in rows]

    with reading() as conn:
        total, unread_total, users, orgs, datasets = conn.execute(
            select(
                func.count(), unread, func.count(columns.user_id.distinct()),
                func.count(columns.organization_id.distinct()),
                func.count(columns.dataset_id.distinct()),
            )
        ).one()
        return {
            "total": total,
            "unread": int(unread_total or 0),
            "users": users,
            "organizations": orgs,
            "datasets": datasets,
            "top_users": grouped(conn, columns.user_id),
            "top_organizations": grouped(conn, columns.organization_id),
            "top_datasets": grouped(conn, columns.dataset_id),
        }
