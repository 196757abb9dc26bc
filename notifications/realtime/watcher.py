"""The change watcher: one greenlet per worker that finds what other connections committed.

Every ``poll_interval`` (or at once, when this process commits a write and the hub rings
:meth:`ChangeWatcher.wake`, or when PostgreSQL notifies a commit of any node) it asks its
:class:`~notifications.store.notices.CommitSignal` whether anyone committed: SQLite's
``PRAGMA data_version``, which costs microseconds, or whether a notification came (on
PostgreSQL; while the listening connection is down it polls). Only then does it read the
change log after its position, a page at a time
(:func:`notifications.store.changelog.changes_after`; each created entry with its stored
row while this worker has a dataset stream, the only kind that takes rows from it). The
log is the one record of every kind of change -- created, state changed, deleted, by any
writer, purge and retention included -- so the watcher keeps one number.
It hands each page to its audience, the hub (new rows to the dataset streams, a ring to
the version 2 streams that would see a change), then the unread counts of the (user,
organization) pairs that changed, read once per pair, to the organization streams. The
database work of a tick therefore depends on what changed, never on how many streams are
open.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from typing import Any, Protocol

import gevent
from flask import Flask
from gevent import monkey
from gevent.event import Event

from notifications.realtime.subscriptions import InboxKey
from notifications.store import CommitSignal, changelog, feed
from notifications.store.changelog import Change
from notifications.store.models import db

log = logging.getLogger("notifications.stream")

#: Longest pause between watcher retries after a database error.
ERROR_BACKOFF = 2.0
#: Most change-log entries the watcher reads in one query.
CHANGE_PAGE = changelog.PAGE


class Audience(Protocol):
    """Where the watcher delivers what it found (the hub)."""

    def inboxes(self) -> Collection[InboxKey]:
        """Return the inboxes that have an open stream (their counts are worth reading)."""
        ...

    def wants_rows(self) -> bool:
        """Tell whether a stream needs the stored rows of created notifications."""
        ...

    def deliver_changes(self, changes: Sequence[Change]) -> None:
        """Hand a page of changes, oldest first, to the streams they concern."""
        ...

    def deliver_counts(self, counts: dict[InboxKey, int]) -> None:
        """Hand new unread counts to the streams of their inboxes."""
        ...

    def missed_changes(self) -> None:
        """Tell the streams that the watcher lost changes (the log was trimmed past it)."""
        ...

    def watcher_failed(self) -> None:
        """Tell the streams that reading failed (once per run of failures)."""
        ...


class ChangeWatcher:
    """The watcher of one worker process: its position in the change log, its loop."""

    def __init__(self, app: Flask, audience: Audience, poll_interval: float) -> None:
        self.app = app
        self.audience = audience
        self.poll_interval = poll_interval
        #: The last change-log position read.
        self.position = 0
        #: The newest sequence number of a created notification read (the dataset
        #: streams' ids).
        self.last_seq = 0
        #: Inboxes whose count is to be read at the next tick (kept until it was read).
        self.pending_counts: set[InboxKey] = set()
        self.stopping = False
        self.failing = False
        self.ticks = 0
        self.checks = 0
        self.queries = 0
        #: When the watcher last caught up (read by metrics).
        self.last_tick_at: float | None = None
        self._wake = Event()
        self._async: Any = None
        self._counter: CommitSignal | None = None
        self._listener: Any = None

    def start(self) -> None:
        """Take the database's current position and open the doorbell :meth:`wake` rings."""
        with self.app.app_context():
            self.position, self.last_seq = feed.watch_position()
            self._counter = CommitSignal(db.engine)
            self._counter.moved()
        if not self._counter.sqlite and monkey.is_module_patched("select"):
            # PostgreSQL: the listening connection rings the doorbell at each notification.
            # It waits on its socket through gevent, so only where gevent patched the
            # process (the server's workers); elsewhere the watcher polls.
            self._listener = gevent.spawn(self._counter.listen, self._wake.set)
        # The writer commits on its own thread; an async watcher is the thread-safe way
        # to ring the watcher's doorbell from there.
        self._async = gevent.get_hub().loop.async_(ref=False)
        self._async.start(self._wake.set)

    def wake(self) -> None:
        """Ask the watcher to look for changes now: this process committed (any thread)."""
        if self._counter is not None:
            self._counter.committed()
        if self._async is not None:
            self._async.send()

    def want_count(self, key: InboxKey) -> None:
        """Have the unread count of ``key`` read at once (a new stream of an uncounted inbox)."""
        self.pending_counts.add(key)
        self._wake.set()

    def stop(self) -> None:
        """End the loop (at its next wake-up, which this rings)."""
        self.stopping = True
        if self._counter is not None:
            self._counter.stop()
        if self._listener is not None:
            self._listener.kill(block=False)
        self._wake.set()

    def run(self) -> None:
        """Tick at every wake-up until stopped; back off while the database fails (a greenlet)."""
        backoff = self.poll_interval
        with self.app.app_context():
            while not self.stopping:
                self._wake.wait(self.poll_interval)
                self._wake.clear()
                if self.stopping:
                    break
                try:
                    self.tick()
                except Exception as exc:
                    log.error("stream watcher failed: %s", exc, exc_info=not self.failing)
                    if not self.failing:
                        self.failing = True
                        self.audience.watcher_failed()
                    # Reconnect: the connection itself may be what broke.
                    if self._counter is not None:
                        self._counter.reset()
                    gevent.sleep(backoff)
                    backoff = min(ERROR_BACKOFF, backoff * 2)
                else:
                    self.failing = False
                    self.last_tick_at = time.monotonic()
                    backoff = self.poll_interval

    def _changed(self) -> bool:
        """Cheap check: did anyone commit since the last look?"""
        self.checks += 1
        assert self._counter is not None
        return self._counter.moved()

    def _read_page(self) -> changelog.ChangePage:
        """Read the next page of the log, with the stored rows only if a stream needs them.

        Decoding every created row, in every worker, cost HTTP ingest a fifth of its
        throughput while no dataset stream was open to take them. A dataset stream that
        opened while the page was read (nothing switches greenlets there, but nothing has
        to rely on that) gets the page read again, with its rows.
        """
        rows = self.audience.wants_rows()
        self.queries += 1
        page = changelog.changes_after(self.position, limit=CHANGE_PAGE, with_rows=rows)
        if not rows and self.audience.wants_rows() and any(
                c.change == changelog.CREATED for c in page.changes):
            self.queries += 1
            page = changelog.changes_after(self.position, limit=CHANGE_PAGE)
        return page

    def tick(self) -> None:
        """Look for changes once and deliver them."""
        self.ticks += 1
        if self._changed():
            more = True
            while more:
                page = self._read_page()
                affected: set[InboxKey] = set()
                if page.gap:
                    # Retention deleted changes this watcher had not read (it was stopped
                    # or stuck for longer than the log keeps them): whatever they were,
                    # every open inbox is recounted and every stream starts again.
                    log.warning("stream watcher missed changes (log trimmed past position "
                                "%d); streams are reset", self.position)
                    affected |= set(self.audience.inboxes())
                    self.audience.missed_changes()
                for change in page.changes:
                    if change.change == changelog.CREATED and change.seq > self.last_seq:
                        self.last_seq = change.seq
                    affected.add((change.user_id, change.organization_id))
                # last_seq and the delivery move together, without a switch between them:
                # a dataset stream subscribing now gets every later row live.
                self.audience.deliver_changes(page.changes)
                self.position = page.position
                more = page.more
                # Pairs stay pending until their count is read, so a failed read loses none.
                inboxes = self.audience.inboxes()
                self.pending_counts |= {p for p in affected if p in inboxes}
        pairs = set(self.pending_counts)
        if pairs:
            self.queries += 1
            counts = feed.unread_counts(sorted(pairs, key=str))
            self.pending_counts -= pairs
            self.audience.deliver_counts(counts)
