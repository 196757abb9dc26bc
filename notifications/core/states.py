"""The states of a notification in the inbox API version 2 (pure: no database, no framework).

A notification has three times, microseconds since the epoch or None:

- ``seen_at``: the user has seen it in a list (it no longer counts as new). Never undone.
- ``read_at``: the user has read it. Reading sets ``seen_at`` too when it is unset;
  "unread" clears ``read_at`` only (the notification stays seen). Either way an existing
  time is kept: reading a read notification changes nothing.
- ``archived_at``: the user has archived it; lists and counts leave it out unless asked.
  Archiving keeps an existing time; "unarchive" clears it.

Every change is one of two operations on one column (:class:`Op`): *stamp* (set it to the
operation's time when it is NULL, keep it otherwise) or *clear* (set it to NULL). An
:class:`Action` (``seen``, ``read``, ``unread``, ``archive``, ``unarchive``) is a few of
them, and a PATCH is a few actions (:func:`patch_actions`). Both are described by a
:class:`RowUpdate`, which works on one state in Python (:meth:`RowUpdate.apply`) and on
many rows in one SQL ``UPDATE`` alike. A row *changed* when at least one of its columns
takes a new value: a stamp on a NULL column, or a clear of a set one; so the store puts
:attr:`RowUpdate.changed_when` in the ``WHERE`` clause, and the statement's row count is
exactly the number of notifications whose state changed (unchanged rows are not written,
and make no change-log entry). With SQLAlchemy Core, for instance::

    update = ACTION_UPDATES[Action.READ]
    values = {c.column: func.coalesce(t.c[c.column], now) if c.op is Op.STAMP else None
              for c in update.changes}
    where = or_(*(t.c[col].is_(None) if null else t.c[col].is_not(None)
                  for col, null in update.changed_when))
    changed = conn.execute(sa.update(t).where(scope, where).values(values)).rowcount

or in SQL text: ``UPDATE notifications SET {update.set_sql()} WHERE ... AND
{update.where_sql()}`` with the time bound to ``:now``.

Rows written before version 2 may be read without being seen. "read" on such a row stamps
``seen_at`` and so counts as a change; a store that fills ``seen_at`` from ``read_at``
when it adds the column keeps "read implies seen" true of every row.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

#: The state columns, in the order updates name them.
STATE_COLUMNS = ("seen_at", "read_at", "archived_at")


class Action(StrEnum):
    """What a bulk request does to each notification it names."""

    SEEN = "seen"
    READ = "read"
    UNREAD = "unread"
    ARCHIVE = "archive"
    UNARCHIVE = "unarchive"


class Op(StrEnum):
    """What an update does to one state column."""

    #: Set the column to the operation's time when it is NULL; keep an existing time.
    STAMP = "stamp"
    #: Set the column to NULL.
    CLEAR = "clear"


@dataclass(frozen=True)
class State:
    """The state times of one notification (microseconds since the epoch, or None)."""

    seen_at: int | None = None
    read_at: int | None = None
    archived_at: int | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> State:
        """Return the state of a stored row (a missing column counts as None)."""
        return cls(row.get("seen_at"), row.get("read_at"), row.get("archived_at"))


@dataclass(frozen=True)
class ColumnChange:
    """One operation on one state column."""

    column: str
    op: Op

    def changes(self, value: int | None) -> bool:
        """Tell whether the operation gives a column holding ``value`` a new value."""
        return value is None if self.op is Op.STAMP else value is not None

    def apply(self, value: int | None, now: int) -> int | None:
        """Return the column's value after the operation at time ``now``."""
        if self.op is Op.CLEAR:
            return None
        return now if value is None else value


@dataclass(frozen=True)
class Transition:
    """A state before and after an update; ``changed`` when any time differs."""

    before: State
    after: State

    @property
    def changed_columns(self) -> tuple[str, ...]:
        """The state columns that took a new value, in :data:`STATE_COLUMNS` order."""
        return tuple(c for c in STATE_COLUMNS
                     if getattr(self.before, c) != getattr(self.after, c))

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class RowUpdate:
    """The column operations of an action or a PATCH, as plain data for the store.

    ``changes`` holds at most one operation per column, in :data:`STATE_COLUMNS` order.
    """

    changes: tuple[ColumnChange, ...]

    @property
    def changed_when(self) -> tuple[tuple[str, bool], ...]:
        """``(column, is_null)`` pairs: a row changes when *any* pair holds for it.

        ``is_null`` True means "the column IS NULL" (a stamp would fill it), False means
        "the column IS NOT NULL" (a clear would empty it).
        """
        return tuple((c.column, c.op is Op.STAMP) for c in self.changes)

    def set_sql(self, now: str = ":now") -> str:
        """Return the ``SET`` list in SQL text; ``now`` is the placeholder of the time.

        Stamps are ``COALESCE(column, now)``, so a row the ``WHERE`` admits for another of
        its columns keeps an existing time.
        """
        return ", ".join(
            f"{c.column} = COALESCE({c.column}, {now})" if c.op is Op.STAMP
            else f"{c.column} = NULL"
            for c in self.changes
        )

    def where_sql(self) -> str:
        """Return :attr:`changed_when` as one parenthesised SQL condition."""
        return "(" + " OR ".join(
            f"{column} IS NULL" if is_null else f"{column} IS NOT NULL"
            for column, is_null in self.changed_when
        ) + ")"

    def apply(self, state: State, now: int) -> Transition:
        """Return what the update does to ``state`` at time ``now`` (microseconds)."""
        values = {c.column: c.apply(getattr(state, c.column), now) for c in self.changes}
        return Transition(state, replace(state, **values))


_STAMP_SEEN = ColumnChange("seen_at", Op.STAMP)

#: The column operations of each action.
ACTION_CHANGES: Mapping[Action, tuple[ColumnChange, ...]] = {
    Action.SEEN: (_STAMP_SEEN,),
    Action.READ: (_STAMP_SEEN, ColumnChange("read_at", Op.STAMP)),
    Action.UNREAD: (ColumnChange("read_at", Op.CLEAR),),
    Action.ARCHIVE: (ColumnChange("archived_at", Op.STAMP),),
    Action.UNARCHIVE: (ColumnChange("archived_at", Op.CLEAR),),
}


def update_for(actions: Iterable[Action]) -> RowUpdate:
    """Return the one update doing all of ``actions`` (order does not matter).

    Raises ``ValueError`` when two of them contradict each other (``read`` and ``unread``,
    ``archive`` and ``unarchive``) or when there is none.
    """
    by_column: dict[str, ColumnChange] = {}
    for action in actions:
        for change in ACTION_CHANGES[Action(action)]:
            known = by_column.setdefault(change.column, change)
            if known != change:
                raise ValueError(f"the actions both stamp and clear {change.column}")
    if not by_column:
        raise ValueError("an update needs at least one action")
    return RowUpdate(tuple(by_column[c] for c in STATE_COLUMNS if c in by_column))


#: The update of each bulk action.
ACTION_UPDATES: Mapping[Action, RowUpdate] = {a: update_for([a]) for a in Action}


def patch_actions(
    *, seen: bool | None = None, read: bool | None = None, archived: bool | None = None
) -> tuple[Action, ...]:
    """Return the actions of a PATCH body; None is a key the body leaves out.

    Raises ``ValueError`` for ``seen=False`` (seen cannot be undone) and for a body that
    asks for nothing (the request models refuse both first, with a 422).
    """
    if seen is False:
        raise ValueError("seen cannot be undone")
    actions: list[Action] = []
    if seen:
        actions.append(Action.SEEN)
    if read is not None:
        actions.append(Action.READ if read else Action.UNREAD)
    if archived is not None:
        actions.append(Action.ARCHIVE if archived else Action.UNARCHIVE)
    if not actions:
        raise ValueError("a PATCH must set at least one of seen, read and archived")
    return tuple(actions)


def apply_action(state: State, action: Action, now: int) -> Transition:
    """Return what a bulk ``action`` does to ``state`` at time ``now``."""
    return ACTION_UPDATES[Action(action)].apply(state, now)


def apply_patch(
    state: State, now: int, *, seen: bool | None = None, read: bool | None = None,
    archived: bool | None = None,
) -> Transition:
    """Return what a PATCH does to ``state`` at time ``now`` (see :func:`patch_actions`)."""
    return update_for(patch_actions(seen=seen, read=read, archived=archived)).apply(state, now)
