"""Outbound webhooks: endpoints, their deliveries, and the one sender's lease.

An endpoint's ``position`` is how far into the change log its deliveries have been made.
The sender reads the entries after it on a pooled connection and hands the writer one job
(:func:`add_deliveries`) that stores their deliveries and moves the position -- only if it
is still the position read. Two senders that read the same entries thus make one set of
deliveries between them, and a change is never skipped: the log keeps every entry above
the lowest endpoint position (:func:`notifications.store.changelog.trim` holds back).

A delivery's body is frozen when it is made, and its id (the ``webhook-id``) with it, so
every attempt sends the same bytes. Deliveries of an endpoint are sent in position order,
the next only once the one before is ``delivered`` or ``failed`` (:func:`next_delivery`).
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, create_engine, delete, func, insert, or_, select, text, update
from sqlalchemy.pool import NullPool

from notifications.core import webhooks as hooks
from notifications.store import changelog
from notifications.store.engine import reading, write
from notifications.store.models import webhook_deliveries as deliveries_table
from notifications.store.models import webhook_endpoints as endpoints_table
from notifications.store.models import webhook_sender_lease as lease_table
from notifications.store.rows import now_us

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
#: The name of the sender's lease row.
SENDER = "webhooks"
#: Delivered deliveries one retention transaction deletes.
TRIM_CHUNK = 5000


@dataclass(frozen=True)
class Endpoint:
    """A webhook endpoint; ``secret`` is the signing key as stored (base64)."""

    id: str
    url: str
    events: tuple[str, ...]
    secret: str
    position: int
    created_at: int

    @property
    def key(self) -> bytes:
        """The signing key's bytes."""
        return hooks.secret_key(self.secret)


@dataclass(frozen=True)
class Delivery:
    """One change for one endpoint, and where its attempts stand."""

    id: str
    endpoint_id: str
    position: int
    type: str
    body: str
    status: str
    attempts: int
    created_at: int
    window_start: int
    next_attempt_at: int
    last_attempt_at: int | None
    last_status: int | None
    last_error: str | None
    delivered_at: int | None


@dataclass(frozen=True)
class NewDelivery:
    """A delivery to store: the change's position, the event and its frozen body."""

    position: int
    type: str
    body: str


_E = endpoints_table.c
_D = deliveries_table.c
_ENDPOINT_COLUMNS = (_E.id, _E.url, _E.events, _E.secret, _E.position, _E.created_at)
_DELIVERY_COLUMNS = tuple(deliveries_table.c)


def _endpoint(row: Sequence[object]) -> Endpoint:
    id_, url, events, secret, position, created_at = row
    return Endpoint(str(id_), str(url), tuple(str(events).split(",")), str(secret),
                    int(position), int(created_at))  # type: ignore[call-overload]


def _delivery(row: Sequence[object]) -> Delivery:
    return Delivery(*row)  # type: ignore[arg-type]


# --- endpoints ----------------------------------------------------------------------------


def _add_endpoint_job(conn: Connection, url: str, events: tuple[str, ...],
                      secret: str) -> Endpoint:
    # From the newest change on: an endpoint gets what happens after it was added. Read in
    # the writer's transaction, so no change can commit between the read and the insert.
    position = changelog.bounds_in(conn).head
    endpoint = Endpoint("ep_" + uuid.uuid4().hex[:24], url, events, secret, position,
                        now_us())
    conn.execute(insert(endpoints_table).values(
        id=endpoint.id, url=url, events=hooks.events_text(events), secret=secret,
        position=position, created_at=endpoint.created_at))
    return endpoint


def add_endpoint(url: str, events: tuple[str, ...], secret: str) -> Endpoint:
    """Store a new endpoint (``secret``: the key's base64), starting at the log's head."""
    return write(_add_endpoint_job, url, events, secret)


def endpoints() -> list[Endpoint]:
    """Return every endpoint, oldest first."""
    with reading() as conn:
        rows = conn.execute(select(*_ENDPOINT_COLUMNS).order_by(_E.created_at, _E.id)).all()
    return [_endpoint(r) for r in rows]


def endpoint(endpoint_id: str) -> Endpoint | None:
    """Return one endpoint, or None."""
    with reading() as conn:
        row = conn.execute(select(*_ENDPOINT_COLUMNS).where(_E.id == endpoint_id)).first()
    return None if row is None else _endpoint(row)


def _remove_endpoint_job(conn: Connection, endpoint_id: str) -> bool:
    conn.execute(delete(deliveries_table).where(_D.endpoint_id == endpoint_id))
    return bool(conn.execute(delete(endpoints_table).where(_E.id == endpoint_id)).rowcount)


def remove_endpoint(endpoint_id: str) -> bool:
    """Delete an endpoint and its deliveries; False when there was none."""
    return write(_remove_endpoint_job, endpoint_id)


def status_counts() -> dict[str, dict[str, int]]:
    """Return each endpoint's number of deliveries per status."""
    with reading() as conn:
        rows = conn.execute(select(_D.endpoint_id, _D.status, func.count())
                            .group_by(_D.endpoint_id, _D.status)).all()
    found: dict[str, dict[str, int]] = {}
    for endpoint_id, status, count in rows:
        found.setdefault(endpoint_id, {})[status] = int(count)
    return found


# --- making deliveries ---------------------------------------------------------------------


def _add_deliveries_job(conn: Connection, endpoint_id: str, expected: int, position: int,
                        items: Sequence[NewDelivery], now: int) -> bool:
    moved = conn.execute(update(endpoints_table)
                         .where(_E.id == endpoint_id, _E.position == expected)
                         .values(position=position)).rowcount
    if not moved:
        return False  # removed, or another sender made these deliveries already
    if items:
        conn.execute(insert(deliveries_table), [
            {"id": "msg_" + uuid.uuid4().hex, "endpoint_id": endpoint_id,
             "position": item.position, "type": item.type, "body": item.body,
             "status": PENDING, "attempts": 0, "created_at": now, "window_start": now,
             "next_attempt_at": now}
            for item in items
        ])
    return True


def add_deliveries(endpoint_id: str, expected: int, position: int,
                   items: Sequence[NewDelivery]) -> bool:
    """Store ``items`` and move the endpoint from ``expected`` to ``position``, in one
    transaction; False (nothing stored) when the endpoint is gone or no longer at
    ``expected``."""
    return write(_add_deliveries_job, endpoint_id, expected, position, list(items), now_us())


# --- sending -------------------------------------------------------------------------------


def next_delivery(endpoint_id: str) -> Delivery | None:
    """Return the endpoint's oldest pending delivery: the only one it may be sent now."""
    with reading() as conn:
        row = conn.execute(select(*_DELIVERY_COLUMNS)
                           .where(_D.endpoint_id == endpoint_id, _D.status == PENDING)
                           .order_by(_D.position).limit(1)).first()
    return None if row is None else _delivery(row)


def _attempt_job(conn: Connection, delivery_id: str, attempted_at: int, ok: bool,
                 answer: int | None, error: str | None, base: float, window: float
                 ) -> str | None:
    row = conn.execute(select(_D.status, _D.attempts, _D.window_start)
                       .where(_D.id == delivery_id)).first()
    if row is None or row[0] != PENDING:
        return None  # removed with its endpoint, or settled by someone else meanwhile
    attempts = int(row[1]) + 1
    values: dict[str, object] = {"attempts": attempts, "last_attempt_at": attempted_at,
                                 "last_status": answer, "last_error": error}
    now = now_us()
    if ok:
        values.update(status=DELIVERED, delivered_at=now, last_error=None)
    else:
        deadline = int(row[2]) + int(window * 1_000_000)
        if now >= deadline:
            values["status"] = FAILED
        else:
            delay = int(hooks.retry_delay(attempts, base, window) * 1_000_000)
            values["next_attempt_at"] = min(now + delay, deadline)
    conn.execute(update(deliveries_table).where(_D.id == delivery_id).values(**values))
    return str(values.get("status", PENDING))


def record_attempt(delivery_id: str, attempted_at: int, *, ok: bool, answer: int | None,
                   error: str | None, base: float, window: float) -> str | None:
    """Record an attempt's outcome; schedule the next one (or mark the delivery failed).

    A failure waits :func:`~notifications.core.webhooks.retry_delay` (from ``base``
    seconds), but no later than the end of the retry ``window``; a failure at or after
    that end marks the delivery failed. Return the new status (None: the delivery is no
    longer pending).
    """
    return write(_attempt_job, delivery_id, attempted_at, ok, answer, error, base, window)


def deliveries(endpoint_id: str | None = None, *, failed: bool = False,
               limit: int = 100) -> list[Delivery]:
    """Return deliveries, newest first: of one endpoint, or only the failed ones."""
    query = select(*_DELIVERY_COLUMNS)
    if endpoint_id is not None:
        query = query.where(_D.endpoint_id == endpoint_id)
    if failed:
        query = query.where(_D.status == FAILED)
    with reading() as conn:
        rows = conn.execute(query.order_by(_D.created_at.desc(), _D.position.desc())
                            .limit(limit)).all()
    return [_delivery(r) for r in rows]


def _retry_job(conn: Connection, delivery_id: str) -> bool:
    now = now_us()
    return bool(conn.execute(update(deliveries_table).where(_D.id == delivery_id).values(
        status=PENDING, attempts=0, window_start=now, next_attempt_at=now,
        delivered_at=None)).rowcount)


def retry(delivery_id: str) -> bool:
    """Make a delivery due now, with a new retry window; False when there is none."""
    return write(_retry_job, delivery_id)


def _trim_job(conn: Connection, before: int, chunk: int) -> int:
    doomed = (select(_D.id).where(_D.status == DELIVERED, _D.delivered_at < before)
              .limit(chunk).scalar_subquery())
    return int(conn.execute(delete(deliveries_table).where(_D.id.in_(doomed))).rowcount)


def trim_delivered(before: int, chunk: int = TRIM_CHUNK) -> int:
    """Delete deliveries delivered before ``before`` (µs); failed ones stay listed."""
    deleted = 0
    while True:
        count = write(_trim_job, before, chunk)
        deleted += count
        if count < chunk:
            return deleted


# --- the sender's lease ----------------------------------------------------------------------


def _lease_job(conn: Connection, owner: str, ttl_us: int) -> bool:
    now = now_us()
    mine = conn.execute(
        update(lease_table)
        .where(lease_table.c.name == SENDER,
               or_(lease_table.c.owner == owner, lease_table.c.expires_at <= now))
        .values(owner=owner, expires_at=now + ttl_us)).rowcount
    if mine:
        return True
    if conn.execute(select(lease_table.c.owner).where(lease_table.c.name == SENDER)).first():
        return False  # someone else's, and alive
    conn.execute(insert(lease_table).values(name=SENDER, owner=owner, expires_at=now + ttl_us))
    return True


def take_lease(owner: str, ttl_us: int) -> bool:
    """Take or renew the sender's lease for ``ttl_us``; False while another holds it.

    The expiry is counted from when the writer runs the job, never earlier than the caller
    asked: a caller that counts its lease from before the call holds it no longer than
    the database says.
    """
    return write(_lease_job, owner, ttl_us)


def _release_job(conn: Connection, owner: str) -> int:
    return int(conn.execute(delete(lease_table).where(lease_table.c.name == SENDER,
                                                      lease_table.c.owner == owner)).rowcount)


def release_lease(owner: str) -> int:
    """Give the sender's lease up (a worker that stops sending)."""
    return write(_release_job, owner)


def lease_holder() -> tuple[str, int] | None:
    """Return who holds the sender's lease and until when (µs), or None."""
    with reading() as conn:
        row = conn.execute(select(lease_table.c.owner, lease_table.c.expires_at)
                           .where(lease_table.c.name == SENDER)).first()
    return None if row is None else (str(row[0]), int(row[1]))


def release_dead_lease(url: str, owner_prefix: str) -> int:
    """Delete the sender's lease if its owner starts with ``owner_prefix`` (a dead worker).

    Runs in the server's master, like
    :func:`notifications.store.leases.release_worker_leases`: one statement on a
    connection of its own.
    """
    engine = create_engine(url, poolclass=NullPool,
                           connect_args={"timeout": 2.0} if url.startswith("sqlite") else {})
    try:
        with engine.begin() as conn:
            return int(conn.execute(
                text("DELETE FROM webhook_sender_lease "
                     "WHERE substr(owner, 1, :n) = :prefix"),
                {"n": len(owner_prefix), "prefix": owner_prefix},
            ).rowcount)
    finally:
        engine.dispose()
