"""What streams read themselves: a dataset stream's replay, a version 2 stream's changes.

A reconnecting dataset stream reads the database's head and the rows it missed. A version
2 stream reads its own changes from the change log whenever the watcher rings it (and
after ``Last-Event-ID``), and its counts.

These reads share the threadpool (and the worker's CPU) with every other request, so it runs
in a few slots per worker: however many streams replay at once, a short request waits
behind at most that many pages.
"""
from __future__ import annotations

from dataclasses import dataclass

import gevent
from flask import Flask

from notifications.core.kinds import KindFilter
from notifications.core.replay import Page
from notifications.realtime.frames import DatasetFrames, InboxFrames
from notifications.realtime.slots import Slots
from notifications.store import changelog, feed, inbox
from notifications.store.changelog import CREATED, DELETED, Change
from notifications.store.inbox import Counts
from notifications.store.scope import Scope

#: Rows read (and framed) at a time when replaying what a reconnecting client missed: a
#: stream holds at most one page, and reads the next once the client has taken the last.
REPLAY_PAGE = 50
#: Replay pages a worker reads and frames at once.
REPLAY_SLOTS = 2


class History:
    """The reads of replay, each holding one of the worker's replay slots."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._slots = Slots(REPLAY_SLOTS)

    def head(self) -> int:
        """Read the newest sequence number from the database (not the watcher's view)."""
        with self.app.app_context():
            return feed.newest_seq()

    def page(self, frames: DatasetFrames, scope: Scope, dataset_id: str | None, after: int,
             upto: int) -> Page[str]:
        """Read and frame the rows after ``after`` (up to ``upto``), :data:`REPLAY_PAGE` at most.

        The slot is given back with a switch to the other greenlets.
        """
        with self._slots.hold(), self.app.app_context():
            rows = feed.replay(scope, dataset_id, after, upto, REPLAY_PAGE)
            text = "".join(frames.notification(row) for row in rows)
        gevent.sleep(0)
        return Page(text, len(rows), rows[-1]["seq"] if rows else after)

    def exceeds(self, scope: Scope, dataset_id: str | None, after: int, upto: int,
                limit: int) -> bool:
        """Tell whether a client missed more than ``limit`` rows (then it gets a reset)."""
        with self._slots.hold(), self.app.app_context():
            return feed.replay_exceeds(scope, dataset_id, after, upto, limit)

    # --- version 2 streams ------------------------------------------------------------

    def log_head(self) -> int:
        """Read the change log's newest position (where a new version 2 stream starts)."""
        with self.app.app_context():
            return changelog.head_position()

    def counts(self, scope: Scope, kinds: KindFilter, dataset_id: str | None) -> Counts:
        """Read a version 2 stream's counts."""
        with self._slots.hold(), self.app.app_context():
            return inbox.counts(scope, kinds, dataset_id)

    def changes(self, frames: InboxFrames, scope: Scope, kinds: KindFilter,
                dataset_id: str | None, after: int, *, upto: int | None = None,
                limit: int = REPLAY_PAGE) -> ChangesRead:
        """Read and frame a caller's changes after ``after`` (up to ``upto``).

        More than ``limit`` of them, or a position the log no longer (or never) had, give
        no frames and the reason (see :func:`changelog.user_changes_after`).
        """
        with self._slots.hold(), self.app.app_context():
            found = changelog.user_changes_after(scope, after, kinds=kinds,
                                                 dataset_id=dataset_id, upto=upto, limit=limit)
            text = "".join(frame_change(frames, c) for c in found.changes)
        gevent.sleep(0)
        last = found.changes[-1].position if found.changes else None
        return ChangesRead(text, len(found.changes), last, found.head, found.reset)

    def page_ends(self, scope: Scope, kinds: KindFilter, dataset_id: str | None, after: int,
                  upto: int, limit: int) -> list[int] | None:
        """Return where each :data:`REPLAY_PAGE` of a caller's changes in ``(after, upto]``
        ends, or None when they are more than ``limit`` (or cannot be replayed).

        Only positions are read and kept: the pages themselves are read one at a time.
        """
        with self._slots.hold(), self.app.app_context():
            found = changelog.user_changes_after(scope, after, kinds=kinds,
                                                 dataset_id=dataset_id, upto=upto,
                                                 limit=limit, with_rows=False)
        gevent.sleep(0)
        if found.reset is not None:
            return None
        positions = [c.position for c in found.changes]
        ends = positions[REPLAY_PAGE - 1::REPLAY_PAGE]
        if len(positions) % REPLAY_PAGE:
            ends.append(positions[-1])
        return ends


@dataclass(frozen=True, slots=True)
class ChangesRead:
    """One read of a version 2 stream's changes: their frames, or why it must reset."""

    #: The frames of the changes, in order ("" when there are none or on a reset).
    text: str
    #: How many changes were read.
    count: int
    #: The position of the last change read; None when none was.
    last: int | None
    #: The log's newest position in the read's snapshot.
    head: int
    #: None, or why the changes cannot be replayed (``gap``, ``ahead``, ``too_many``).
    reset: str | None


def frame_change(frames: InboxFrames, change: Change) -> str:
    """Frame one change of the log; a created row that is gone since frames as nothing
    (its deletion follows in the log)."""
    if change.change == CREATED:
        return frames.created(change) if change.row is not None else ""
    if change.change == DELETED:
        return frames.deleted(change)
    return frames.updated(change)
