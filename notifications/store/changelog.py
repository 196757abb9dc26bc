"""The change log: what the streams and the watcher read, and its retention.

Every change to a notification -- created, a state time set or cleared, deleted -- is an
entry of the ``changes`` table, appended by SQLite triggers in the transaction of the
change, whatever made it (see ``schema.sql``). An entry's ``position`` only grows, and
entries commit in position order (SQLite has one writer at a time), so a reader keeps one
number: the last position it has read. Everything after it is :func:`changes_after` (for
the watcher, every user's) or :func:`user_changes_after` (one caller's, for a stream's
replay after ``Last-Event-ID``).

Retention deletes the oldest entries, and only ever a prefix of the log. The highest
position it deleted is the *floor* (the ``changes_floor`` counter): a reader at or above the
floor has missed nothing; a reader below it may have missed changes, and is told so
(``gap``, ``reset``) rather than handed an incomplete history. The triggers record no time
(a SQL function in a trigger costs every insert a statement journal), so retention dates
entries by marks: each pass records the head position and the time (``change_marks``), and
an entry at or below a mark older than ``NOTIFICATIONS_CHANGELOG_RETENTION`` is at least
that old. Entries are thus kept at least as long as the setting says, and at most one
retention interval longer.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection

from notifications.core.kinds import KindFilter
from notifications.core.states import State
from notifications.store.engine import reading, run_sql, write
from notifications.store.rows import ALL_FIELDS, decode_metadata, now_us
from notifications.store.scope import (
    KindShape,
    Scope,
    Shape,
    kind_params,
    kind_shape,
    kind_sql,
    where_params,
    where_sql,
)

#: Most entries :func:`changes_after` returns at once.
PAGE = 1000
#: Most changes a stream replays after ``Last-Event-ID``; with more it starts again.
REPLAY_LIMIT = 1000
#: Entries one retention transaction deletes.
TRIM_CHUNK = 5000

#: What an entry says, in the order of the log's columns.
LOG_FIELDS = ("position", "change", "notification_id", "seq", "user_id", "organization_id",
              "dataset_id", "kind", "seen_at", "read_at", "archived_at")
#: The stored row handed with a ``created`` entry: every column the variants' serialisers
#: read (``metadata`` decoded).
ROW_FIELDS = (*ALL_FIELDS, "seen_at", "archived_at", "collapsed_count")

CREATED = "created"
UPDATED = "updated"
DELETED = "deleted"

_LOG_SELECT = ", ".join(f"c.{name}" for name in LOG_FIELDS)
_ROW_SELECT = ", ".join(f"n.{name}" for name in ROW_FIELDS)
_FLOOR = "SELECT value FROM counters WHERE name = 'changes_floor'"
_HEAD = "SELECT coalesce(max(position), 0) FROM changes"


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the change log.

    ``change`` is :data:`CREATED`, :data:`UPDATED` or :data:`DELETED`; the state times are
    the notification's after the change (for a deletion, the state it had). ``row`` is the
    stored notification (:data:`ROW_FIELDS`) for a ``created`` entry when it was asked for
    and the notification is still stored, else None.
    """

    position: int
    change: str
    notification_id: str
    seq: int
    user_id: str
    organization_id: str | None
    dataset_id: str | None
    kind: str
    seen_at: int | None
    read_at: int | None
    archived_at: int | None
    row: dict[str, Any] | None = None

    @property
    def state(self) -> State:
        """The state times as a :class:`~notifications.core.states.State`."""
        return State(self.seen_at, self.read_at, self.archived_at)


def _change(values: Any, with_rows: bool) -> Change:
    n = len(LOG_FIELDS)
    row = None
    if with_rows and values[n] is not None:
        row = dict(zip(ROW_FIELDS, values[n:], strict=True))
        row["metadata"] = decode_metadata(row["metadata"])
    (position, change, notification_id, seq, user_id, organization_id, dataset_id, kind,
     seen_at, read_at, archived_at) = values[:n]
    return Change(position, change, notification_id, seq, user_id, organization_id,
                  dataset_id, kind, seen_at, read_at, archived_at, row)


@dataclass(frozen=True)
class Bounds:
    """The log's floor (positions at or below it may be gone) and head (the newest)."""

    floor: int
    head: int


def _bounds(conn: Connection) -> Bounds:
    floor, head = run_sql(conn, f"SELECT ({_FLOOR}), ({_HEAD})").one()
    floor = int(floor or 0)
    # An empty log (every entry deleted) still has its head where the floor is.
    return Bounds(floor, max(int(head or 0), floor))


def bounds_in(conn: Connection) -> Bounds:
    """Return the log's floor and head as ``conn`` sees them (a writer job's view)."""
    return _bounds(conn)


def bounds() -> Bounds:
    """Return the log's floor and head, from one snapshot."""
    with reading() as conn:
        return _bounds(conn)


def head_position() -> int:
    """Return the newest position (0 while the log is empty): where a new reader starts."""
    return bounds().head


@dataclass(frozen=True)
class ChangePage:
    """The entries after a position, oldest first, and where the next page starts."""

    changes: list[Change]
    #: The last position read (the one asked for when there were no entries).
    position: int
    #: True when the page was full: more entries may follow at once.
    more: bool
    #: True when the reader cannot carry on from the position asked for: retention deleted
    #: entries after it (the entries here follow on from the oldest kept), or it is beyond
    #: the head (the database was replaced, by a restore). It missed changes and must start
    #: again from what is stored now.
    gap: bool


@lru_cache(maxsize=None)
def _page_sql(with_rows: bool) -> str:
    if not with_rows:
        return (f"SELECT {_LOG_SELECT} FROM changes AS c WHERE c.position > ? "
                "ORDER BY c.position LIMIT ?")
    return (f"SELECT {_LOG_SELECT}, {_ROW_SELECT} FROM changes AS c "
            f"LEFT JOIN notifications AS n ON c.change = '{CREATED}' AND n.seq = c.seq "
            "WHERE c.position > ? ORDER BY c.position LIMIT ?")


def changes_after(position: int, *, limit: int = PAGE, with_rows: bool = True) -> ChangePage:
    """Return every user's entries after ``position``, oldest first, at most ``limit``.

    With ``with_rows`` a ``created`` entry carries its stored row. The watcher calls this
    with its position whenever anyone committed, and again at once while ``more``.
    """
    with reading() as conn, conn.begin():
        # One snapshot for the page and the floor: "no gap" then means no gap.
        rows = run_sql(conn, _page_sql(with_rows), (position, limit)).all()
        found = _bounds(conn)
    changes = [_change(r, with_rows) for r in rows]
    return ChangePage(
        changes=changes,
        position=changes[-1].position if changes else max(position, 0),
        more=len(changes) == limit,
        gap=position < found.floor or position > found.head,
    )


@dataclass(frozen=True)
class Replay:
    """A caller's changes after a position, or why they cannot be replayed."""

    changes: list[Change]
    #: None when ``changes`` is the whole replay; otherwise why the reader must start again:
    #: ``gap`` (retention deleted changes after the position), ``ahead`` (the position is
    #: beyond the newest: it comes from another database, or the database was restored
    #: from an older backup) or ``too_many`` (more than the limit).
    reset: str | None
    #: The newest position of the snapshot read.
    head: int


@lru_cache(maxsize=512)
def _replay_sql(shape: Shape, dataset: bool, kinds: KindShape, upto: bool,
                with_rows: bool) -> str:
    where = where_sql(shape, dataset)
    if kinds != (0, 0):
        where += " AND " + kind_sql(kinds)
    where += " AND position > ?" + (" AND position <= ?" if upto else "")
    # The user's entries after the position, in order, from ix_changes_user.
    inner = f"SELECT * FROM changes WHERE {where} ORDER BY position LIMIT ?"
    if not with_rows:
        return f"SELECT {_LOG_SELECT} FROM ({inner}) AS c"
    # No ORDER BY outside: it would sort again what comes in order (the caller sorts).
    return (f"SELECT {_LOG_SELECT}, {_ROW_SELECT} FROM ({inner}) AS c "
            f"LEFT JOIN notifications AS n ON c.change = '{CREATED}' AND n.seq = c.seq")


def user_changes_after(
    scope: Scope,
    position: int,
    *,
    kinds: KindFilter | None = None,
    dataset_id: str | None = None,
    upto: int | None = None,
    limit: int = REPLAY_LIMIT,
    with_rows: bool = True,
) -> Replay:
    """Return the changes a caller sees after ``position`` (up to ``upto``), oldest first.

    The caller sees the entries of the scope's rows, narrowed to ``kinds`` and
    ``dataset_id`` when given (the organization, dataset and kind of an entry are the
    notification's). More than ``limit`` of them, a position below the floor, or one
    beyond the head give no changes and the reason in :attr:`Replay.reset`.
    """
    kinds = kinds or KindFilter()
    shape = kind_shape(kinds)
    sql = _replay_sql(scope.shape, dataset_id is not None, shape, upto is not None, with_rows)
    params = (*where_params(scope, dataset_id), *kind_params(kinds), position,
              *(() if upto is None else (upto,)), limit + 1)
    with reading() as conn, conn.begin():
        found = _bounds(conn)
        if position < found.floor:
            return Replay([], "gap", found.head)
        if position > found.head:
            return Replay([], "ahead", found.head)
        rows = run_sql(conn, sql, params).all()
    if len(rows) > limit:
        return Replay([], "too_many", found.head)
    changes = sorted((_change(r, with_rows) for r in rows), key=lambda c: c.position)
    return Replay(changes, None, found.head)


# --- retention ------------------------------------------------------------------------------


def _mark_job(conn: Connection, now: int | None, keep_us: int) -> tuple[int, int | None]:
    """Mark the head at ``now``; return the time used and the newest mark ``keep_us`` old.

    Marks below that one are no longer needed and go.
    """
    now = now_us() if now is None else now
    # The writer holds the lock: every entry up to the head is committed, none is coming.
    head = _bounds(conn).head
    # A position marked before keeps its first time: its entries are at least that old.
    run_sql(conn,
        "INSERT INTO change_marks (position, marked_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (head, now))
    boundary = run_sql(conn,
        "SELECT max(position) FROM change_marks WHERE marked_at <= ?", (now - keep_us,)
    ).scalar()
    if boundary is not None:
        run_sql(conn, "DELETE FROM change_marks WHERE position < ?", (boundary,))
    return now, None if boundary is None else int(boundary)


#: The lowest position an outbound webhook endpoint has made its deliveries up to: the
#: entries after it are still to be turned into deliveries, and stay.
_HELD_FOR_WEBHOOKS = "SELECT min(position) FROM webhook_endpoints"


def _trim_job(conn: Connection, boundary: int, chunk: int) -> tuple[int, int, int]:
    """Delete the oldest entries, at most ``chunk``, none above ``boundary`` and none a
    webhook endpoint has not yet taken.

    Return how many went, the position deleted up to (the new floor), and the boundary
    the held-back entries leave.
    """
    held = run_sql(conn, _HELD_FOR_WEBHOOKS).scalar()
    if held is not None:
        boundary = min(boundary, int(held))
    floor = _bounds(conn).floor
    if boundary <= floor:
        return 0, floor, boundary
    lowest = run_sql(conn, "SELECT min(position) FROM changes").scalar()
    upto = boundary if lowest is None else min(boundary, int(lowest) + chunk - 1)
    deleted = int(run_sql(conn, "DELETE FROM changes WHERE position <= ?",
                                       (upto,)).rowcount)
    run_sql(conn,
        "UPDATE counters SET value = ? WHERE name = 'changes_floor' AND value < ?", (upto, upto))
    return deleted, max(upto, _bounds(conn).floor), boundary


def trim(keep_us: int, *, now: int | None = None, chunk: int = TRIM_CHUNK,
         pause: Callable[[], None] | None = None) -> dict[str, int]:
    """Apply the log's retention: delete the entries at least ``keep_us`` old, oldest first.

    Marks the head at ``now`` (default: the time the writer runs the mark) first, see the
    module's docstring; then deletes the entries at or below the newest mark at least
    ``keep_us`` old, ``chunk`` per writer transaction, with ``pause()`` between two of them.
    An entry a webhook endpoint has not yet turned into a delivery is never deleted: it
    waits for the sender (each transaction checks, so an endpoint cannot fall behind
    between two of them). Return how many entries went and the floor after.
    """
    _, boundary = write(_mark_job, now, keep_us)
    floor = bounds().floor
    deleted = 0
    while boundary is not None and floor < boundary:
        count, floor, boundary = write(_trim_job, boundary, chunk)
        deleted += count
        if floor < boundary and pause is not None:
            pause()
    return {"deleted": deleted, "floor": floor}
