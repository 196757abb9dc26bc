"""The stream hub of a worker process: its life cycle and the fan-out to open streams.

One hub per process owns the subscriptions of the open streams, the change watcher that
reads the change log (:mod:`notifications.realtime.watcher`), the leases of its streams
(:mod:`notifications.realtime.leases`) and the reads of replay and of the version 2
streams (:mod:`notifications.realtime.history`). It starts with the first stream, again in a
forked child, and :meth:`StreamHub.shutdown` ends every stream when the worker stops.

Stream generators (:mod:`notifications.realtime.events`) get plain values (a scope,
filters, a cursor) and the hub; they hold no database connection while they wait.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypeVar

import gevent
import gevent.lock
from flask import Flask

from notifications.core import logs
from notifications.core.kinds import KindFilter
from notifications.extension import state
from notifications.realtime.frames import DatasetFrames
from notifications.realtime.history import History
from notifications.realtime.leases import Leases
from notifications.realtime.subscriptions import (
    OVERFLOW,
    WATCHER_FAILED,
    DatasetSubscription,
    Delivery,
    InboxKey,
    InboxSubscription,
    OrganizationSubscription,
    Subscription,
)
from notifications.realtime.watcher import ChangeWatcher
from notifications.store import listeners as signals
from notifications.store.changelog import CREATED, Change
from notifications.store.leases import LeaseResult
from notifications.store.scope import Scope

log = logging.getLogger("notifications.stream")

K = TypeVar("K")
S = TypeVar("S", bound=Subscription)


class StreamHub:
    """The per-process watcher, its subscribers and the leases of its streams."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.poll_interval: float = app.config["POLL_INTERVAL"]
        self.dataset_subs: dict[str, set[DatasetSubscription]] = {}
        self.org_subs: dict[InboxKey, set[OrganizationSubscription]] = {}
        #: The version 2 streams, by user.
        self.inbox_subs: dict[str, set[InboxSubscription]] = {}
        #: The last unread count read for each inbox with an open stream.
        self.counts: dict[InboxKey, int] = {}
        self.started = False
        self.stopping = False
        self.peak_streams = 0
        self.open_streams = 0
        #: Most streams this worker admits at once (set by the server from its
        #: worker_connections; None: no bound) and how many it has admitted.
        self.stream_capacity: int | None = None
        self.admitted = 0
        #: Events handed to streams (read by metrics).
        self.delivered = 0
        self.started_at = time.monotonic()
        self.history = History(app)
        self._pid = os.getpid()
        self._start_lock: Any = None
        self._greenlets: list[gevent.Greenlet] = []
        self._parts()

    def _parts(self) -> None:
        """Make the parts of the hub that belong to one process."""
        self.leases = Leases(self.app)
        self.watcher = ChangeWatcher(self.app, self, self.poll_interval)

    # --- life cycle --------------------------------------------------------------

    def start(self) -> None:
        """Start the watcher of this process (once; again after a fork)."""
        if self._pid != os.getpid():
            # A forked child has none of its parent's greenlets or connections, and its
            # leases are its own (an app built before the fork, gunicorn --preload).
            self._pid = os.getpid()
            self._parts()
            self._start_lock = None
            self.started = self.stopping = False
        if self.started:
            return
        if self._start_lock is None:
            self._start_lock = gevent.lock.RLock()
        with self._start_lock:
            if not self.started:
                self._start()

    def _start(self) -> None:
        # ``stopping`` is left as it is: a worker told to stop before its first stream
        # (shutdown() came first) ends the streams that still come in at once.
        self.started_at = time.monotonic()
        self.watcher.start()
        signals.on_change(self.wake)
        self._greenlets = [gevent.spawn(self.watcher.run), gevent.spawn(self.leases.run)]
        # Only now may streams subscribe: the watcher's last_seq is where they start from.
        self.started = True

    def wake(self) -> None:
        """Have the watcher look for changes now: this process committed (from any thread)."""
        self.watcher.wake()

    def shutdown(self, timeout: float = 2.0) -> None:
        """End every open stream and give up this process's leases."""
        if self.stopping:
            return
        self.stopping = True
        streams: list[Subscription] = [sub for by_key in self.subscriptions().values()
                                       for subs in by_key.values() for sub in subs]
        for sub in streams:
            sub.close()
        self.watcher.stop()
        self.leases.stop(release_all=self.started and self._pid == os.getpid())
        gevent.joinall(self._greenlets, timeout=timeout)
        if self.started:
            log.info("%s", self.stats_line())

    def subscriptions(self) -> dict[str, Mapping[Any, set[Any]]]:
        """Return the open streams of each variant, by the variant's name.

        What ends them at shutdown and what ``/metrics`` counts, so a stream of any
        variant is in both.
        """
        return {"dataset": self.dataset_subs, "organization": self.org_subs,
                "v2": self.inbox_subs}

    def open_streams_by_kind(self) -> dict[str, int]:
        """Count the open streams of each variant (``/metrics``)."""
        return {kind: sum(len(subs) for subs in by_key.values())
                for kind, by_key in self.subscriptions().items()}

    def stats_line(self) -> str:
        """Summarise the watcher's database work (logged at shutdown; read by the bench)."""
        uptime = max(1e-9, time.monotonic() - self.started_at)
        watcher = self.watcher
        return (
            f"stream watcher stats: uptime={uptime:.1f}s ticks={watcher.ticks} "
            f"checks={watcher.checks} queries={watcher.queries} "
            f"peak_streams={self.peak_streams} "
            f"db_per_second={(watcher.checks + watcher.queries) / uptime:.2f}"
        )

    @property
    def owner(self) -> str:
        """The name this process's stream leases are held under."""
        return self.leases.owner

    @property
    def last_seq(self) -> int:
        """The newest sequence number the watcher has delivered."""
        return self.watcher.last_seq

    @property
    def position(self) -> int:
        """The last change-log position the watcher has read."""
        return self.watcher.position

    @property
    def last_tick_at(self) -> float | None:
        """When the watcher last caught up (read by metrics)."""
        return self.watcher.last_tick_at

    def tick(self) -> None:
        """Look for changes once and deliver them (the watcher does it on its own)."""
        self.watcher.tick()

    # --- subscriptions -----------------------------------------------------------

    def subscribe_dataset(self, scope: Scope, dataset_id: str | None, frames: DatasetFrames,
                          sock: Any = None) -> tuple[DatasetSubscription, int]:
        """Register a dataset stream; return it and the last sequence it will not get live."""
        self.start()
        sub = DatasetSubscription(scope, dataset_id, frames, sock)
        self.dataset_subs.setdefault(sub.key, set()).add(sub)
        self._count_stream()
        if self.stopping:
            sub.close()
        # No switch between registering and reading last_seq: every later row reaches
        # the subscriber live, every earlier one is replay's job.
        return sub, self.watcher.last_seq

    def subscribe_organization(self, key: InboxKey,
                               sock: Any = None) -> OrganizationSubscription:
        """Register an organization stream; its first unread count follows at once."""
        self.start()
        sub = OrganizationSubscription(key, sock)
        self.org_subs.setdefault(key, set()).add(sub)
        self._count_stream()
        if key in self.counts:
            sub.set_count(self.counts[key])
        else:
            self.watcher.want_count(key)
        if self.stopping:
            sub.close()
        return sub

    def subscribe_inbox(self, scope: Scope, kinds: KindFilter | None = None,
                        dataset_id: str | None = None, sock: Any = None) -> InboxSubscription:
        """Register a version 2 stream: it is rung for every later change it would see."""
        self.start()
        sub = InboxSubscription(scope, kinds or KindFilter(), dataset_id, sock)
        self.inbox_subs.setdefault(sub.key, set()).add(sub)
        self._count_stream()
        if self.stopping:
            sub.close()
        return sub

    def unsubscribe_dataset(self, sub: DatasetSubscription) -> None:
        """Forget a dataset stream (it ended)."""
        self._forget(self.dataset_subs, sub.key, sub)

    def unsubscribe_organization(self, sub: OrganizationSubscription) -> None:
        """Forget an organization stream (it ended); the last one of its inbox drops the count."""
        if self._forget(self.org_subs, sub.key, sub):
            self.counts.pop(sub.key, None)

    def unsubscribe_inbox(self, sub: InboxSubscription) -> None:
        """Forget a version 2 stream (it ended)."""
        self._forget(self.inbox_subs, sub.key, sub)

    def _count_stream(self) -> None:
        self.open_streams += 1
        self.peak_streams = max(self.peak_streams, self.open_streams)

    def _forget(self, table: dict[K, set[S]], key: K, sub: S) -> bool:
        """Drop ``sub`` from ``table``; tell whether that left its key without streams."""
        sub.stop_watching()
        subs = table.get(key)
        if subs is None or sub not in subs:
            return False
        self.open_streams -= 1
        subs.discard(sub)
        if subs:
            return False
        del table[key]
        return True

    # --- fan-out (what the watcher delivers) ---------------------------------------

    def inboxes(self) -> Collection[InboxKey]:
        """Return the inboxes with an open stream."""
        return self.org_subs.keys()

    def wants_rows(self) -> bool:
        """Tell whether the watcher must read created rows: a dataset stream is open.

        Version 2 streams read the log themselves and organization streams take counts.
        """
        return bool(self.dataset_subs)

    def deliver_changes(self, changes: Sequence[Change]) -> None:
        """Hand a page of the change log to the streams it concerns.

        A created row goes to the dataset streams it belongs on; a version 2 stream that
        would see a change is rung (once: it reads every change after its position).
        """
        dataset_subs, inbox_subs = self.dataset_subs, self.inbox_subs
        for change in changes:
            if change.change == CREATED and change.row is not None and dataset_subs:
                self.deliver_row(change.row)
            for sub in inbox_subs.get(change.user_id, ()):
                if not sub.rung and sub.matches(change):
                    self.delivered += 1
                    sub.ring()

    def deliver_row(self, row: dict[str, Any]) -> None:
        """Queue a new row on the dataset streams it belongs on."""
        subs = self.dataset_subs.get(row["user_id"])
        if not subs:
            return
        frames: DatasetFrames | None = None
        frame = ""
        for sub in subs:
            if sub.matches(row):
                if sub.frames is not frames:
                    # Framed once for all the streams of one variant.
                    frames = sub.frames
                    frame = frames.notification(row)
                self.delivered += 1
                sub.push(Delivery(row["seq"], frame))

    def deliver_counts(self, counts: dict[InboxKey, int]) -> None:
        """Hand new unread counts to the organization streams of their inboxes."""
        for key, count in counts.items():
            subs = self.org_subs.get(key)
            if not subs:
                continue
            self.counts[key] = count
            self.delivered += len(subs)
            for sub in subs:
                sub.set_count(count)

    def missed_changes(self) -> None:
        """The watcher lost changes: dataset streams reset, version 2 streams read again."""
        for subs in self.dataset_subs.values():
            for sub in subs:
                sub.push(OVERFLOW)
        for inbox_subs in self.inbox_subs.values():
            for inbox_sub in inbox_subs:
                inbox_sub.ring()

    def watcher_failed(self) -> None:
        """Tell every dataset stream that reading new notifications failed for now."""
        for subs in self.dataset_subs.values():
            for sub in subs:
                sub.push(WATCHER_FAILED)

    # --- leases --------------------------------------------------------------------

    def acquire_lease(self, user_id: str, limit: int,
                      kind: str = "organization") -> LeaseResult:
        """Take a stream slot of ``kind`` for ``user_id`` (counted across the node's workers)."""
        self.start()
        return self.leases.acquire(user_id, limit, kind)

    def release_lease(self, lease_id: str) -> None:
        """Give a stream slot back."""
        self.leases.release(lease_id)


def hub_of(app: Flask | None = None) -> StreamHub:
    """Return the stream hub of the app (of the current app by default)."""
    return state(app).hub


def init_app(app: Flask) -> None:
    """Attach a (not yet started) stream hub; it starts with the first stream."""
    logs.to_stderr(log)
    state(app).hub = StreamHub(app)
