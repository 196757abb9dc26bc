"""What a reconnecting dataset stream reads: the database's head and the rows it missed.

Replay shares the threadpool (and the worker's CPU) with every other request, so it runs
in a few slots per worker: however many streams replay at once, a short request waits
behind at most that many pages.
"""
from __future__ import annotations

import gevent
from flask import Flask

from notifications.core.replay import Page
from notifications.realtime.frames import DatasetFrames
from notifications.realtime.slots import Slots
from notifications.store import feed
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
            return feed.stream_position()[0]

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
