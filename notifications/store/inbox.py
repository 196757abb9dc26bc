"""The inbox API version 2, store side: lists, counts, one notification, state changes.

Every function takes the caller's :class:`~notifications.store.scope.Scope` (for version 2,
:meth:`Scope.dataset_api`: the token's user and, when the token names an organization, the
rows of that organization and of none). A list or a bulk change narrows it with an
:class:`InboxFilter`: ``status``, ``archived``, ``kind`` (exact kinds and prefixes, as
byte ranges), ``dataset_id`` and, for a bulk change, ``before``.

Lists are newest first by ``(created_at, seq)``, paged by keyset (``core/cursors.py``): a
page continues strictly after the last row of the one before, so rows that arrive or
change state meanwhile neither repeat nor skip a row of the pages still to come (a row
whose state no longer matches the filter simply leaves the list).

Counts (:class:`Counts`) are of unarchived rows in scope, narrowed by ``kind`` and
``dataset_id`` as the request gives them: ``unread`` and ``unseen`` (the "new" badge) of a
list ignore its ``status`` and ``archived``, and ``total`` is what the list's filter
matches. They are read in the statement of the page (uncorrelated scalar subqueries, which
SQLite runs once), so page and counts come from one snapshot.

State changes (:func:`patch`, :func:`bulk_ids`, :func:`bulk_filter`) are writer jobs of
one ``UPDATE`` each, built from a :class:`~notifications.core.states.RowUpdate`: its
``changed_when`` is part of the ``WHERE`` clause, so the statement's row count is exactly
the number of notifications whose state changed, and a row that would not change is not
written and makes no change-log entry. Repeating a change changes nothing.

Rows are the driver's tuples of :data:`FIELDS` (:data:`serialize.V2_FIELDS`, then ``seq``):
what :func:`serialize.v2_records` renders; :func:`get` and :func:`patch` hand one back as a
dict of the same names (``metadata`` as stored JSON text, which :func:`serialize.v2_record`
decodes).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from sqlalchemy import Connection

from notifications.core.cursors import Position
from notifications.core.kinds import KindFilter
from notifications.core.serialize import V2_FIELDS
from notifications.core.states import Op, RowUpdate
from notifications.store.engine import read_rows, run_sql, write
from notifications.store.rows import now_us
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
from notifications.store.writer import mark_changed

#: The fields of a returned row, in order.
FIELDS = (*V2_FIELDS, "seq")
_SELECT = ", ".join(FIELDS)
_CREATED_AT = FIELDS.index("created_at")
_SEQ = FIELDS.index("seq")
#: Most ids one bulk statement names (the API's own bound, well under SQLite's limit).
IDS_PER_STATEMENT = 1000
#: Most rows one bulk-by-filter transaction changes.
BULK_CHUNK = 2000

Status = Literal["unread", "read", "all"]
Archived = Literal["false", "true", "all"]


@dataclass(frozen=True)
class InboxFilter:
    """Which of the caller's notifications a list shows or a bulk change changes.

    The defaults are the list's: every status, archived rows left out, every kind, every
    dataset. ``before_us`` (bulk changes only) keeps rows created strictly before it.
    """

    status: Status = "all"
    archived: Archived = "false"
    kinds: KindFilter = field(default_factory=KindFilter)
    dataset_id: str | None = None
    before_us: int | None = None

    @classmethod
    def of(cls, request: Any) -> InboxFilter:
        """Return the filter of a request model (``V2ListQuery``, ``V2BulkFilter``,
        ``V2CountsQuery``): whichever of its fields the model has."""
        return cls(
            status=getattr(request, "status", "all"),
            archived=getattr(request, "archived", "false"),
            kinds=request.kinds,
            dataset_id=request.dataset,
            before_us=getattr(request, "before_us", None),
        )

    @property
    def shape(self) -> FilterShape:
        """What the filter's SQL depends on (a cache key; the values are parameters)."""
        return (self.dataset_id is not None, self.status, self.archived,
                kind_shape(self.kinds), self.before_us is not None)

    def params(self, scope: Scope) -> tuple[Any, ...]:
        """The parameters of :func:`filter_sql` of this filter's shape, for ``scope``."""
        return (*where_params(scope, self.dataset_id), *kind_params(self.kinds),
                *(() if self.before_us is None else (self.before_us,)))

    def scope_only(self) -> InboxFilter:
        """The filter the counts of ``unread`` and ``unseen`` use: kind and dataset only."""
        return InboxFilter(kinds=self.kinds, dataset_id=self.dataset_id, archived="all")


#: (dataset, status, archived, kind shape, before): what the SQL of a filter depends on.
FilterShape = tuple[bool, str, str, KindShape, bool]

_STATUS = {"unread": "read_at IS NULL", "read": "read_at IS NOT NULL", "all": ""}
_ARCHIVED = {"false": "archived_at IS NULL", "true": "archived_at IS NOT NULL", "all": ""}
#: The extra conditions of the three counts, on top of scope, kind and dataset. The unseen
#: count names ``read_at IS NULL`` too: unseen rows are unread (reading implies seeing),
#: and with it the count reads the partial index of unread rows alone.
_UNREAD = "read_at IS NULL AND archived_at IS NULL"
_UNSEEN = "read_at IS NULL AND seen_at IS NULL AND archived_at IS NULL"


@lru_cache(maxsize=1024)
def filter_sql(scope: Shape, shape: FilterShape) -> str:
    """Return the conditions of a scope and a filter, ``?`` placeholders.

    The parameters are :meth:`InboxFilter.params` of the same scope and filter.
    """
    dataset, status, archived, kinds, before = shape
    parts = [where_sql(scope, dataset)]
    parts += [c for c in (_STATUS[status], _ARCHIVED[archived]) if c]
    if kinds != (0, 0):
        parts.append(kind_sql(kinds))
    if before:
        parts.append("created_at < ?")
    return " AND ".join(parts)


@dataclass(frozen=True)
class Counts:
    """Counts of the caller's notifications (see the module's docstring)."""

    total: int
    unread: int
    unseen: int

    def as_dict(self) -> dict[str, int]:
        """The ``counts`` object of the responses."""
        return {"total": self.total, "unread": self.unread, "unseen": self.unseen}


def _counts_select(scope: Shape, shape: FilterShape) -> str:
    dataset, _, _, kinds, _ = shape
    # What InboxFilter.scope_only keeps: the kind and the dataset.
    scoped = filter_sql(scope, (dataset, "all", "all", kinds, False))
    return (f"(SELECT count(*) FROM notifications WHERE {filter_sql(scope, shape)}), "
            f"(SELECT count(*) FROM notifications WHERE {scoped} AND {_UNREAD}), "
            f"(SELECT count(*) FROM notifications WHERE {scoped} AND {_UNSEEN})")


def _counts_params(scope: Scope, flt: InboxFilter) -> tuple[Any, ...]:
    scoped = flt.scope_only().params(scope)
    return flt.params(scope) + scoped + scoped


@lru_cache(maxsize=1024)
def _page_sql(scope: Shape, shape: FilterShape, after: bool) -> str:
    where = filter_sql(scope, shape)
    if after:
        where += " AND (created_at, seq) < (?, ?)"
    return (f"SELECT {_SELECT}, {_counts_select(scope, shape)} FROM notifications "
            f"WHERE {where} ORDER BY created_at DESC, seq DESC LIMIT ?")


@lru_cache(maxsize=1024)
def _counts_sql(scope: Shape, shape: FilterShape) -> str:
    return f"SELECT {_counts_select(scope, shape)}"


@dataclass(frozen=True)
class Page:
    """One page of a list: rows newest first, where the next page starts, and the counts."""

    #: Driver tuples of :data:`FIELDS` (each followed by the three counts).
    rows: list[Any]
    #: The position to continue after (``next_cursor``), None on the last page.
    next: Position | None
    counts: Counts


def list_page(scope: Scope, flt: InboxFilter, *, limit: int,
              after: Position | None = None) -> Page:
    """Return the page of ``limit`` rows after ``after`` (None: the first page).

    ``next`` is set only when more rows follow (one row more than the page is read).
    """
    if flt.before_us is not None:
        raise ValueError("a list has no 'before' filter")
    shape = flt.shape
    counts_params = _counts_params(scope, flt)
    cursor = () if after is None else (after[0], after[1])
    rows = read_rows(_page_sql(scope.shape, shape, after is not None),
                     counts_params + flt.params(scope) + cursor + (limit + 1,))
    n = len(FIELDS)
    if rows:
        counts = Counts(*rows[0][n:n + 3])
    else:
        # An empty page (nothing matches, or past the end): the counts alone.
        counts = Counts(*read_rows(_counts_sql(scope.shape, shape), counts_params)[0])
    following = None
    if len(rows) > limit:
        rows = rows[:limit]
        following = Position(rows[-1][_CREATED_AT], rows[-1][_SEQ])
    return Page(rows, following, counts)


def counts(scope: Scope, kinds: KindFilter | None = None,
           dataset_id: str | None = None) -> Counts:
    """Return the counts endpoint's answer: unarchived rows in scope, of ``kinds`` and
    ``dataset_id`` when given (``total``), and how many of them are unread and unseen."""
    flt = InboxFilter(kinds=kinds or KindFilter(), dataset_id=dataset_id)
    return Counts(*read_rows(_counts_sql(scope.shape, flt.shape),
                             _counts_params(scope, flt))[0])


def _row(values: Sequence[Any] | None) -> dict[str, Any] | None:
    return None if values is None else dict(zip(FIELDS, values, strict=False))


@lru_cache(maxsize=64)
def _one_sql(scope: Shape) -> str:
    return f"SELECT {_SELECT} FROM notifications WHERE id = ? AND {where_sql(scope)}"


def get(scope: Scope, notification_id: str) -> dict[str, Any] | None:
    """Return one of the caller's notifications by its stored id, None when there is none.

    A foreign notification is not told from a missing one.
    """
    rows = read_rows(_one_sql(scope.shape), (notification_id, *where_params(scope)))
    return _row(rows[0]) if rows else None


def _stamps(update: RowUpdate) -> int:
    return sum(1 for change in update.changes if change.op is Op.STAMP)


@lru_cache(maxsize=64)
def set_sql(update: RowUpdate) -> str:
    """Return the ``SET`` list of ``update`` (``?`` for the time), collapse keys included.

    A notification that an update brings back (marked unread, unarchived: a column it
    clears was set) leaves its collapse group: its ``collapse_key`` is cleared in the same
    statement. So it never collides, in ``ux_notifications_collapse``, with a newer
    notification of its key that is unread, and the notification a user brought back on
    purpose is never replaced by the next one with its key.
    """
    cleared = [c.column for c in update.changes if c.op is Op.CLEAR]
    sql = update.set_sql("?")
    if not cleared:
        return sql
    revived = " OR ".join(f"{column} IS NOT NULL" for column in cleared)
    return sql + f", collapse_key = CASE WHEN {revived} THEN NULL ELSE collapse_key END"


@lru_cache(maxsize=256)
def _patch_sql(scope: Shape, update: RowUpdate) -> str:
    return (f"UPDATE notifications SET {set_sql(update)} "
            f"WHERE id = ? AND {where_sql(scope)} AND {update.where_sql()}")


class Patched(NamedTuple):
    """What :func:`patch` did: the row after it (None: no such notification), and whether
    its state changed."""

    row: dict[str, Any] | None
    changed: bool


def _patch_job(conn: Connection, scope: Shape, update: RowUpdate,
               params: tuple[Any, ...], row_params: tuple[Any, ...]) -> Patched:
    changed = run_sql(conn, _patch_sql(scope, update), params).rowcount == 1
    if changed:
        mark_changed(conn)
    found = run_sql(conn, _one_sql(scope), row_params).first()
    return Patched(_row(found), changed)


def patch(scope: Scope, notification_id: str, update: RowUpdate, *,
          now: int | None = None) -> Patched:
    """Apply ``update`` (a PATCH body's, see ``V2PatchBody.update``) to one notification.

    Return the row as it is after the update, read in the same transaction; a PATCH that
    changes nothing (repeated, or asking for the state the row has) returns the row as it
    is, with ``changed`` False.
    """
    now = now_us() if now is None else now
    row_params = (notification_id, *where_params(scope))
    params = (*(now,) * _stamps(update), *row_params)
    return write(_patch_job, scope.shape, update, params, row_params)


@lru_cache(maxsize=256)
def _ids_sql(scope: Shape, update: RowUpdate, ids: int) -> str:
    match = "id = ?" if ids == 1 else f"id IN ({', '.join('?' * ids)})"
    return (f"UPDATE notifications SET {set_sql(update)} "
            f"WHERE {match} AND {where_sql(scope)} AND {update.where_sql()}")


def _update_job(conn: Connection, sql: str, params: tuple[Any, ...]) -> int:
    changed = int(run_sql(conn, sql, params).rowcount)
    if changed:
        mark_changed(conn)
    return changed


def bulk_ids(scope: Scope, ids: Sequence[str], update: RowUpdate, *,
             now: int | None = None) -> int:
    """Apply ``update`` to the caller's notifications among ``ids`` (stored ids).

    Ids of no notification of the caller are skipped. Return how many notifications'
    state changed.
    """
    wanted = list(dict.fromkeys(ids))
    now = now_us() if now is None else now
    stamps = (now,) * _stamps(update)
    changed = 0
    for start in range(0, len(wanted), IDS_PER_STATEMENT):
        chunk = wanted[start:start + IDS_PER_STATEMENT]
        changed += write(_update_job, _ids_sql(scope.shape, update, len(chunk)),
                         (*stamps, *chunk, *where_params(scope)))
    return changed


@lru_cache(maxsize=256)
def _filter_update_sql(scope: Shape, shape: FilterShape, update: RowUpdate) -> str:
    # The rows of one chunk come from the filter's own indexes; the UPDATE then finds them
    # by seq. Rows created after the bulk change began (seq above the bound) are left out.
    chosen = (f"SELECT seq FROM notifications WHERE {filter_sql(scope, shape)} "
              f"AND {update.where_sql()} AND +seq <= ? LIMIT ?")
    return f"UPDATE notifications SET {set_sql(update)} WHERE seq IN ({chosen})"


def bulk_filter(scope: Scope, flt: InboxFilter, update: RowUpdate, *,
                now: int | None = None, chunk: int = BULK_CHUNK) -> int:
    """Apply ``update`` to the caller's notifications that ``flt`` selects.

    These are the rows the list with the same filter shows (and, with ``before_us``, only
    those created before it), as they stand when the change begins: rows created later
    are left alone. The change goes in writer transactions of at most ``chunk`` rows,
    each one ``UPDATE``, so that a large one does not hold the write lock for long. Return
    how many notifications' state changed.
    """
    now = now_us() if now is None else now
    upto = read_rows("SELECT coalesce(max(seq), 0) FROM notifications")[0][0]
    sql = _filter_update_sql(scope.shape, flt.shape, update)
    params = (*(now,) * _stamps(update), *flt.params(scope), upto, chunk)
    changed = 0
    while True:
        # A changed row no longer matches ``changed_when``: each chunk finds new rows.
        count = write(_update_job, sql, params)
        changed += count
        if count < chunk:
            return changed
