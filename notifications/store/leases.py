"""Stream leases: one row per open stream, so per-user stream limits hold across workers.

A worker takes a lease as a writer job that counts the user's live leases of the same kind
in the same transaction, renews its leases while it lives, and drops them when a stream
ends or it shuts down. A worker that dies without doing so has its leases dropped by the
server's master (:func:`release_worker_leases`), or they lapse when they expire.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, create_engine, delete, func, insert, select, text, update
from sqlalchemy.pool import NullPool

from notifications.store.engine import write
from notifications.store.models import stream_leases
from notifications.store.rows import now_us


@dataclass(frozen=True)
class LeaseResult:
    """Outcome of asking for a stream slot."""

    lease_id: str | None
    active: int
    retry_after: int


def _acquire_job(conn: Connection, user_id: str, owner: str, limit: int, now: int,
                 ttl_us: int, kind: str) -> LeaseResult:
    mine = (stream_leases.c.user_id == user_id, stream_leases.c.kind == kind)
    conn.execute(delete(stream_leases).where(*mine, stream_leases.c.expires_at <= now))
    active, earliest = conn.execute(
        select(func.count(), func.min(stream_leases.c.expires_at)).where(*mine)
    ).one()
    if active >= limit:
        # When a slot may free up at the latest: the oldest lease lapses unless renewed.
        wait = -(-(int(earliest) - now) // 1_000_000)
        return LeaseResult(None, int(active), max(1, wait))
    lease_id = uuid.uuid4().hex
    conn.execute(insert(stream_leases).values(
        id=lease_id, user_id=user_id, owner=owner, expires_at=now + ttl_us, kind=kind
    ))
    return LeaseResult(lease_id, int(active) + 1, 0)


def acquire_lease(user_id: str, owner: str, limit: int, ttl_us: int,
                  kind: str = "organization") -> LeaseResult:
    """Take one of ``limit`` stream slots of a user, counting live leases of every worker.

    Each ``kind`` of stream (``organization``, ``dataset``) has slots of its own.
    """
    return write(_acquire_job, user_id, owner, limit, now_us(), ttl_us, kind)


def _rowcount_job(conn: Connection, statement: Any) -> int:
    return int(conn.execute(statement).rowcount)


def release_leases(lease_ids: Sequence[str]) -> int:
    """Drop the given leases (streams that ended)."""
    if not lease_ids:
        return 0
    ended = delete(stream_leases).where(stream_leases.c.id.in_(list(lease_ids)))
    return write(_rowcount_job, ended)


def renew_leases(owner: str, ttl_us: int) -> int:
    """Push back the expiry of every lease held by ``owner`` (a live worker)."""
    return write(_rowcount_job, update(stream_leases).where(stream_leases.c.owner == owner)
                 .values(expires_at=now_us() + ttl_us))


def release_owner(owner: str) -> int:
    """Drop every lease of ``owner`` (a worker shutting down)."""
    return write(_rowcount_job, delete(stream_leases).where(stream_leases.c.owner == owner))


def release_worker_leases(url: str, owner_prefix: str) -> int:
    """Delete the stream leases whose owner starts with ``owner_prefix`` (a dead worker's).

    Runs in the server's master, which has no app and no writer: the connection lives for
    this one statement, so no connection is ever shared with a forked worker.
    """
    engine = create_engine(url, poolclass=NullPool,
                           connect_args={"timeout": 2.0} if url.startswith("sqlite") else {})
    try:
        with engine.begin() as conn:
            return int(conn.execute(
                text("DELETE FROM stream_leases WHERE substr(owner, 1, :n) = :prefix"),
                {"n": len(owner_prefix), "prefix": owner_prefix},
            ).rowcount)
    finally:
        engine.dispose()
