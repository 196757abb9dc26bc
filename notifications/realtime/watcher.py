"""The change watcher: one greenlet per worker that finds what other connections committed.

Every ``poll_interval`` (or at once, when this process commits a write and the hub rings
:meth:`ChangeWatcher.wake`) it asks SQLite for ``PRAGMA data_version`` on its own
long-lived connection, which costs microseconds and changes only when another connection
committed. Only then does it read what is new (rows after its last sequence number, rows
read after its last ``read`` counter value) and hand the result to its audience, the
hub. The database work of a tick therefore depends on what changed, never on how many
streams are open.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Any, Protocol

import gevent
from flask import Flask
from gevent.event import Event

from notifications.realtime.subscriptions import InboxKey
from notifications.store import ChangeCounter, feed
from notifications.store.models import db

log = logging.getLogger("notifications.stream")

#: Longest pause between watcher retries after a database error.
ERROR_BACKOFF = 2.0


class Audience(Protocol):
    """Where the watcher delivers what it found (the hub)."""

    def inboxes(self) -> Collection[InboxKey]:
        """Return the inboxes that have an open stream (their counts are worth reading)."""
        ...

    def deliver_row(self, row: dict[str, Any]) -> None:
        """Hand a new row to the streams it belongs on."""
        ...

    def deliver_counts(self, counts: dict[InboxKey, int]) -> None:
        """Hand new unread counts to the streams of their inboxes."""
        ...

    def watcher_failed(self) -> None:
        """Tell the streams that reading failed (once per run of failures)."""
        ...


class ChangeWatcher:
    """The watcher of one worker process: its position, its counters, its loop."""

    def __init__(self, app: Flask, audience: Audience, poll_interval: float) -> None:
        self.app = app
        self.audience = audience
        self.poll_interval = poll_interval
        self.last_seq = 0
        self.last_read = 0
        self.last_purges: int | None = None
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
        self._counter: ChangeCounter | None = None

    def start(self) -> None:
        """Take the database's current position and open the doorbell :meth:`wake` rings."""
        with self.app.app_context():
            self.last_seq, self.last_read = feed.stream_position()
            self._counter = ChangeCounter(db.engine)
            self._counter.moved()
        # The writer commits on its own thread; an async watcher is the thread-safe way
        # to ring the watcher's doorbell from there.
        self._async = gevent.get_hub().loop.async_(ref=False)
        self._async.start(self._wake.set)

    def wake(self) -> None:
        """Ask the watcher to look for changes now (safe from any thread)."""
        if self._async is not None:
            self._async.send()

    def want_count(self, key: InboxKey) -> None:
        """Have the unread count of ``key`` read at once (a new stream of an uncounted inbox)."""
        self.pending_counts.add(key)
        self._wake.set()

    def stop(self) -> None:
        """End the loop (at its next wake-up, which this rings)."""
        self.stopping = True
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

    def tick(self) -> None:
        """Look for changes once and deliver them."""
        self.ticks += 1
        affected: set[InboxKey] = set()
        if self._changed():
            more = True
            while more:
                self.queries += 1
                changes = feed.changes_since(self.last_seq, self.last_read)
                self.last_seq, self.last_read = changes.last_seq, changes.last_read
                more = changes.more
                if changes.purges != self.last_purges:
                    # Deleted unread rows cannot be traced to users: recount every
                    # open inbox (purges are rare administrator actions).
                    if self.last_purges is not None:
                        affected |= set(self.audience.inboxes())
                    self.last_purges = changes.purges
                for row in changes.rows:
                    self.audience.deliver_row(row)
                    affected.add((row["user_id"], row["organization_id"]))
                affected |= changes.read_pairs
        # Pairs stay pending until their count is read, so a failed tick loses none.
        inboxes = self.audience.inboxes()
        self.pending_counts |= {p for p in affected if p in inboxes}
        pairs = set(self.pending_counts)
        if pairs:
            self.queries += 1
            counts = feed.unread_counts(sorted(pairs, key=str))
            self.pending_counts -= pairs
            self.audience.deliver_counts(counts)
