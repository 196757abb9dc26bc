"""Real-time delivery: one watcher per worker process fans changes out to open streams.

The watcher is a single greenlet. Every ``POLL_INTERVAL`` (or at once, when this process
commits a write and :func:`signals.changed` fires) it asks SQLite for ``PRAGMA
data_version`` on its own long-lived connection, which costs microseconds and changes only
when another connection committed. Only then does it read what is new (rows after its
last sequence number, rows read after its last ``read`` counter value) and hand the
result to the subscribers of the users concerned, in memory. The database work of a tick
therefore depends on what changed, never on how many streams are open.

Stream generators get plain values (a scope, filters, a cursor) and the process's
:class:`StreamHub`; they hold no database connection while they wait.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any

import gevent
import gevent.lock
from flask import Flask, Response, current_app
from gevent.event import Event

from notifications.core import logs, sse
from notifications.core.errors import Unavailable
from notifications.core.serialize import dataset_notification
from notifications.store import ChangeCounter, feed, leases
from notifications.store import listeners as signals
from notifications.store.models import db
from notifications.store.scope import Scope
from notifications.store.writer import on_hub

log = logging.getLogger("notifications.stream")

#: How long a stream lease lives without renewal: a dead worker's slots free up after it.
LEASE_TTL = 30.0
#: How often a worker renews the leases of its open streams.
LEASE_RENEW = 10.0
#: The lease of a stream opened while its worker stops: it holds no slot.
NO_LEASE = ""
#: Longest pause between watcher retries after a database error.
ERROR_BACKOFF = 2.0

#: Rows read (and framed) at a time when replaying what a reconnecting client missed: a
#: stream holds at most one page, and reads the next once the client has taken the last.
REPLAY_PAGE = 50
#: Replay pages a worker reads and frames at once, and stream leases it takes at once.
SLOTS = {"replay": 2, "lease": 2}

#: Most undelivered events kept for one stream (a client that stopped reading).
MAX_PENDING = 1000
#: Queued instead of the events a stream lost to :data:`MAX_PENDING`.
OVERFLOW: Any = object()

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class Subscriber:
    """One open stream as the watcher sees it: a mailbox and a doorbell."""

    __slots__ = ("key", "scope", "dataset_id", "items", "event", "closed", "readable", "_io",
                 "_sock")

    def __init__(self, key: Any, scope: Scope | None = None, dataset_id: str | None = None,
                 sock: Any = None) -> None:
        self.key = key
        self.scope = scope
        self.dataset_id = dataset_id
        self.items: deque[Any] = deque()
        self.event = Event()
        self.closed = False
        self.readable = False
        self._sock = None
        self._io = None
        if sock is not None:
            self._watch(sock)

    def _watch(self, sock: Any) -> None:
        # A client that goes away makes its socket readable (EOF). Waiting for that
        # frees the stream at once instead of at the next ping or keep-alive write.
        try:
            fileno = sock.fileno()
        except (OSError, ValueError):
            return
        self._sock = getattr(sock, "_sock", sock)
        self._io = gevent.get_hub().loop.io(fileno, 1)
        self._io.start(self._on_readable)

    def _on_readable(self) -> None:
        self.readable = True
        self.event.set()

    def client_gone(self) -> bool:
        """Tell whether the client closed its end (checked when the socket is readable)."""
        if self._io is None or not self.readable:
            return False
        self.readable = False
        try:
            data = self._sock.recv(1, _PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True
        if data == b"":
            return True
        # The client sent bytes (it should not): stop watching rather than spin.
        self.stop_watching()
        return False

    def stop_watching(self) -> None:
        """Release the socket watcher."""
        if self._io is not None:
            self._io.stop()
            self._io.close()
            self._io = None

    def hang_up(self) -> None:
        """Stop reading from the client, so the server closes the connection after the stream.

        Without it a keep-alive connection would wait for a next request, and a
        graceful shutdown would wait for that.
        """
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def push(self, item: Any) -> None:
        """Queue an item for the stream and wake it."""
        if len(self.items) >= MAX_PENDING:
            # A client that stopped reading must not make the worker hold an unbounded
            # backlog for it: drop the backlog and tell it to reload instead.
            self.items.clear()
            self.items.append(OVERFLOW)
        elif not self.items or self.items[-1] is not OVERFLOW:
            self.items.append(item)
        self.event.set()

    def set_count(self, count: int) -> None:
        """Replace the pending unread count (only the newest one matters) and wake the stream."""
        self.items.clear()
        self.items.append(count)
        self.event.set()

    def close(self) -> None:
        """Ask the stream to end (server shutdown)."""
        self.closed = True
        self.event.set()

    def wait(self, timeout: float) -> None:
        """Sleep until something is queued, the client leaves, or ``timeout`` passes."""
        if not self.items and not self.closed:
            self.event.wait(max(0.0, timeout))
        self.event.clear()

    def wake_ups(self, interval: float) -> Iterator[bool]:
        """Yield at each wake-up whether a heartbeat is due (one per ``interval``).

        It ends when the server closes the stream (then it stops reading from the client)
        or when the client has gone.
        """
        next_beat = time.monotonic() + interval
        while True:
            self.wait(next_beat - time.monotonic())
            if self.closed:
                self.hang_up()
                return
            if self.client_gone():
                return
            due = time.monotonic() >= next_beat
            yield due
            if due:
                # Counted from when the caller has sent it, as a slow socket may delay it.
                next_beat = time.monotonic() + interval

    def matches(self, row: dict[str, Any]) -> bool:
        """Tell whether a new row belongs on this (dataset) stream."""
        scope = self.scope
        if scope is None or row["user_id"] != scope.user_id:
            return False
        if scope.organization_id is not None and row["organization_id"] not in (
            None, scope.organization_id
        ):
            return False
        return self.dataset_id is None or row["dataset_id"] == self.dataset_id


def owner_prefix(pid: int) -> str:
    """Return how the lease owner names of process ``pid`` on this host begin."""
    return f"{socket.gethostname()}:{pid}:"


def _owner_name() -> str:
    """Name this process as the owner of stream leases, unique across the node's workers."""
    return f"{owner_prefix(os.getpid())}{uuid.uuid4().hex[:8]}"


class StreamHub:
    """The per-process watcher, its subscribers and the leases of its streams."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.poll_interval: float = app.config["POLL_INTERVAL"]
        self.owner = _owner_name()
        self.dataset_subs: dict[str, set[Subscriber]] = {}
        self.org_subs: dict[tuple[str, str | None], set[Subscriber]] = {}
        self.counts: dict[tuple[str, str | None], int] = {}
        self.pending_counts: set[tuple[str, str | None]] = set()
        self.leases: set[str] = set()
        self.released: set[str] = set()
        self.last_seq = 0
        self.last_read = 0
        self.last_purges: int | None = None
        self.started = False
        self.stopping = False
        self.failing = False
        self.ticks = 0
        self.checks = 0
        self.queries = 0
        self.peak_streams = 0
        self.open_streams = 0
        #: Most streams this worker admits at once (set by the server from its
        #: worker_connections; None: no bound) and how many it has admitted.
        self.stream_capacity: int | None = None
        self.admitted = 0
        #: Events handed to streams, and when the watcher last caught up (read by metrics).
        self.delivered = 0
        self.last_tick_at: float | None = None
        self.started_at = time.monotonic()
        self._pid = os.getpid()
        self._wake = Event()
        self._lease_wake = Event()
        self._async: Any = None
        self._counter: ChangeCounter | None = None
        self._greenlets: list[gevent.Greenlet] = []
        self._start_lock: Any = None
        # Stream set-up and replay share the threadpool (and the worker's CPU) with every
        # other request: bounded, a burst of streams queues here and leaves the rest free.
        self._slots: dict[str, Any] = {}

    # --- life cycle --------------------------------------------------------------

    def start(self) -> None:
        """Start the watcher of this process (once; again after a fork)."""
        if self._pid != os.getpid():
            # A forked child has none of its parent's greenlets or connections, and its
            # leases are its own (an app built before the fork, gunicorn --preload).
            self._pid = os.getpid()
            self.owner = _owner_name()
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
        with self.app.app_context():
            self.last_seq, self.last_read = feed.stream_position()
            self._counter = ChangeCounter(db.engine)
            self._counter.moved()
        # The writer commits on its own thread; an async watcher is the thread-safe way
        # to ring the watcher's doorbell from there.
        self._async = gevent.get_hub().loop.async_(ref=False)
        self._async.start(self._wake.set)
        signals.on_change(self.wake)
        self._greenlets = [gevent.spawn(self._watch_loop), gevent.spawn(self._lease_loop)]
        self._chain_sigterm()
        # Only now may streams subscribe: last_seq is the position they start from.
        self.started = True

    def _chain_sigterm(self) -> None:
        """End streams when the worker is told to stop, also under a plain ``gunicorn`` run."""
        previous = signal.getsignal(signal.SIGTERM)
        if not on_hub() or not callable(previous):
            return

        def on_sigterm(signum: int, frame: Any) -> None:
            previous(signum, frame)
            gevent.spawn(self.shutdown)

        signal.signal(signal.SIGTERM, on_sigterm)

    def wake(self) -> None:
        """Ask the watcher to look for changes now (safe from any thread)."""
        if self._async is not None:
            self._async.send()

    def shutdown(self, timeout: float = 2.0) -> None:
        """End every open stream and give up this process's leases."""
        if self.stopping:
            return
        self.stopping = True
        for subs in (*self.dataset_subs.values(), *self.org_subs.values()):
            for sub in list(subs):
                sub.close()
        self._wake.set()
        self._lease_wake.set()
        if self.started and self._pid == os.getpid():
            try:
                with self.app.app_context():
                    leases.release_owner(self.owner)
            except Exception:  # the lease expires by itself anyway
                log.warning("could not release stream leases at shutdown", exc_info=True)
        gevent.joinall(self._greenlets, timeout=timeout)
        if self.started:
            log.info("%s", self.stats_line())

    def stats_line(self) -> str:
        """Summarise the watcher's database work (logged at shutdown; read by the bench)."""
        uptime = max(1e-9, time.monotonic() - self.started_at)
        return (
            f"stream watcher stats: uptime={uptime:.1f}s ticks={self.ticks} "
            f"checks={self.checks} queries={self.queries} peak_streams={self.peak_streams} "
            f"db_per_second={(self.checks + self.queries) / uptime:.2f}"
        )

    def _count_stream(self) -> None:
        self.open_streams += 1
        self.peak_streams = max(self.peak_streams, self.open_streams)

    # --- subscriptions -----------------------------------------------------------

    def subscribe_dataset(self, scope: Scope, dataset_id: str | None,
                          sock: Any = None) -> tuple[Subscriber, int]:
        """Register a dataset stream; return it and the last sequence it will not get live."""
        self.start()
        sub = Subscriber(scope.user_id, scope, dataset_id, sock)
        self.dataset_subs.setdefault(scope.user_id, set()).add(sub)
        self._count_stream()
        if self.stopping:
            sub.close()
        # No switch between registering and reading last_seq: every later row reaches
        # the subscriber live, every earlier one is replay's job.
        return sub, self.last_seq

    def subscribe_organization(self, key: tuple[str, str | None], sock: Any = None) -> Subscriber:
        """Register an organization stream; its first unread count follows at once."""
        self.start()
        sub = Subscriber(key, sock=sock)
        subs = self.org_subs.setdefault(key, set())
        subs.add(sub)
        self._count_stream()
        if key in self.counts:
            sub.set_count(self.counts[key])
        else:
            self.pending_counts.add(key)
            self._wake.set()
        if self.stopping:
            sub.close()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget a stream (it ended)."""
        sub.stop_watching()
        table: dict[Any, set[Subscriber]] = (
            self.dataset_subs if sub.scope is not None else self.org_subs  # type: ignore[assignment]
        )
        subs = table.get(sub.key)
        if subs is not None and sub in subs:
            self.open_streams -= 1
            subs.discard(sub)
            if not subs:
                del table[sub.key]
                self.counts.pop(sub.key, None)

    # --- leases ------------------------------------------------------------------

    def acquire_lease(self, user_id: str, limit: int,
                      kind: str = "organization") -> leases.LeaseResult:
        """Take a stream slot of ``kind`` for ``user_id`` (counted across the node's workers)."""
        self.start()
        if self.stopping:
            # The stream ends at once and its client reconnects to another worker: it needs
            # no slot, and one taken now would outlive this worker's release of its leases
            # (a client reconnecting in a loop to a reloading worker ran out of slots).
            return leases.LeaseResult(NO_LEASE, 0, 0)
        # A burst of new streams waits here, a few at a time, rather than queue a lease
        # write each in front of everyone else's writes.
        with self._slot("lease"):
            result = leases.acquire_lease(user_id, self.owner, limit, int(LEASE_TTL * 1e6),
                                           kind)
        if result.lease_id is not None:
            self.leases.add(result.lease_id)
        return result

    def release_lease(self, lease_id: str) -> None:
        """Give a slot back; the delete is batched by the lease greenlet (at once when stopping)."""
        if lease_id not in self.leases:
            return
        self.leases.discard(lease_id)
        if self.stopping:
            # The lease greenlet has ended, and the shutdown's release of every lease of this
            # worker may have run already: a lease left now would hold its slot until it expired.
            try:
                with self.app.app_context():
                    leases.release_leases([lease_id])
            except Exception:  # the master frees a dead worker's slots anyway
                log.warning("could not release a stream lease while stopping", exc_info=True)
            return
        self.released.add(lease_id)
        self._lease_wake.set()

    def _lease_loop(self) -> None:
        next_renewal = time.monotonic() + LEASE_RENEW
        with self.app.app_context():
            while not self.stopping:
                if not self.released:
                    self._lease_wake.wait(max(0.0, next_renewal - time.monotonic()))
                    self._lease_wake.clear()
                # Work is dropped only once done: a lease whose delete failed would
                # otherwise be renewed with the others for the life of the process.
                try:
                    if self.released:
                        batch = set(self.released)
                        leases.release_leases(list(batch))
                        self.released -= batch
                    if time.monotonic() >= next_renewal:
                        if self.leases:
                            leases.renew_leases(self.owner, int(LEASE_TTL * 1e6))
                        next_renewal = time.monotonic() + LEASE_RENEW
                except Exception:
                    log.warning("stream lease upkeep failed; retrying", exc_info=True)
                    gevent.sleep(1.0)

    # --- the watcher -------------------------------------------------------------

    def _watch_loop(self) -> None:
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
                        self._broadcast_error()
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
        affected: set[tuple[str, str | None]] = set()
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
                        affected |= set(self.org_subs)
                    self.last_purges = changes.purges
                for row in changes.rows:
                    self._deliver_row(row)
                    affected.add((row["user_id"], row["organization_id"]))
                affected |= changes.read_pairs
        # Pairs stay pending until their count is read, so a failed tick loses none.
        self.pending_counts |= {p for p in affected if p in self.org_subs}
        pairs = set(self.pending_counts)
        if pairs:
            self.queries += 1
            counts = feed.unread_counts(sorted(pairs, key=str))
            self.pending_counts -= pairs
            for key, count in counts.items():
                subs = self.org_subs.get(key)
                if not subs:
                    continue
                self.counts[key] = count
                self.delivered += len(subs)
                for sub in subs:
                    sub.set_count(count)

    def _deliver_row(self, row: dict[str, Any]) -> None:
        subs = self.dataset_subs.get(row["user_id"])
        if not subs:
            return
        frame = None
        for sub in subs:
            if sub.matches(row):
                if frame is None:
                    frame = notification_frame(row)
                self.delivered += 1
                sub.push((row["seq"], frame))

    def _broadcast_error(self) -> None:
        frame = sse.event(
            json.dumps({"detail": "Internal error while reading notifications; retrying"}),
            name="error",
        )
        for subs in self.dataset_subs.values():
            for sub in subs:
                sub.push((None, frame))

    # --- per-stream reads ----------------------------------------------------------

    def head(self) -> int:
        """Read the newest sequence number from the database (not the watcher's view)."""
        with self.app.app_context():
            return feed.stream_position()[0]

    def replay(self, scope: Scope, dataset_id: str | None, after: int, upto: int,
               limit: int) -> list[dict[str, Any]]:
        """Read one page of what a reconnecting client missed (``after < seq <= upto``)."""
        with self._slot("replay"), self.app.app_context():
            return feed.replay(scope, dataset_id, after, upto, limit)

    def replay_page(self, scope: Scope, dataset_id: str | None, after: int,
                    upto: int) -> tuple[str, int, int]:
        """Read and frame the next page of a replay; return the frames, their count, last seq.

        The page is read and framed holding one of the worker's replay slots, and the
        slot is given back with a switch to the other greenlets: however many streams
        replay at once, a short request waits behind at most that many pages.
        """
        with self._slot("replay"), self.app.app_context():
            rows = feed.replay(scope, dataset_id, after, upto, REPLAY_PAGE)
            text = "".join(notification_frame(row) for row in rows)
        gevent.sleep(0)
        return text, len(rows), rows[-1]["seq"] if rows else after

    def _slot(self, name: str) -> Any:
        """Return the context that holds one of the worker's ``name`` slots (on the hub)."""
        if not on_hub():
            return nullcontext()  # threads of a test client: nothing to share
        if name not in self._slots:
            self._slots[name] = gevent.lock.BoundedSemaphore(SLOTS[name])
        return self._slots[name]

    def replay_exceeds(self, scope: Scope, dataset_id: str | None, after: int, upto: int,
                       limit: int) -> bool:
        """Tell whether a client missed more than ``limit`` rows (then it gets a reset)."""
        with self._slot("replay"), self.app.app_context():
            return feed.replay_exceeds(scope, dataset_id, after, upto, limit)


#: Seconds a client refused for want of room is asked to wait.
NO_ROOM_RETRY_AFTER = 5


def open_stream(hub: StreamHub, open_response: Callable[[], Response]) -> Response:
    """Open a stream if this worker has room for another; the room frees when it closes.

    Counted when admitted, not when the stream's generator first runs, so that a burst of
    stream requests cannot all pass the check together.
    """
    if hub.stream_capacity is not None and hub.admitted >= hub.stream_capacity:
        raise Unavailable(
            "This server has no room for another stream right now",
            hint="Retry after the number of seconds in Retry-After.",
            headers={"Retry-After": str(NO_ROOM_RETRY_AFTER)},
        )
    hub.admitted += 1
    try:
        response = open_response()
    except BaseException:
        hub.admitted -= 1
        raise

    def leave() -> None:
        hub.admitted -= 1

    response.call_on_close(leave)
    return response


def notification_frame(row: dict[str, Any]) -> str:
    """Frame a stored row as a dataset-stream ``notification`` event."""
    return sse.event(json.dumps(dataset_notification(row)), name="notification", id=row["seq"])


PING = sse.event("", name="ping")
KEEP_ALIVE = sse.comment("keep-alive")


def dataset_events(hub: StreamHub, scope: Scope, dataset_id: str | None,
                   last_event_id: int | None, *, ping_interval: float, retry_ms: int,
                   replay_limit: int, reset: bool = False, sock: Any = None) -> Iterator[str]:
    """Yield the dataset stream: replay after ``last_event_id``, then live events and pings."""
    sub, frontier = hub.subscribe_dataset(scope, dataset_id, sock)
    try:
        yield sse.retry(retry_ms)
        sent = frontier
        if not reset and last_event_id is not None and last_event_id > frontier:
            # Ahead of this worker's watcher: another worker may have seen newer rows.
            # Valid if the database has it; the watcher delivers what follows it.
            try:
                reset = last_event_id > hub.head()
            except Exception:
                log.exception("could not read the stream position")
                reset = True
            if not reset:
                sent = last_event_id
        if reset:
            # An id this server never gave out: the client's list cannot be trusted.
            yield reset_frame(frontier)
        elif last_event_id is not None and last_event_id >= frontier:
            yield sse.last_id(last_event_id)
        elif last_event_id is None:
            # Give the client a cursor now, so that a reconnect before the first
            # notification still replays what it missed meanwhile.
            yield sse.last_id(frontier)
        else:
            yield from replay_frames(hub, scope, dataset_id, last_event_id, frontier,
                                     replay_limit)
        for ping_due in sub.wake_ups(ping_interval):
            frames = []
            while sub.items:
                item = sub.items.popleft()
                if item is OVERFLOW:
                    frames.append(reset_frame(hub.last_seq))
                    sent = max(sent, hub.last_seq)
                    continue
                seq, frame = item
                if seq is None or seq > sent:
                    frames.append(frame)
                    sent = max(sent, seq or 0)
            if frames:
                yield "".join(frames)
            if ping_due:
                yield PING
    finally:
        hub.unsubscribe(sub)


def replay_frames(hub: StreamHub, scope: Scope, dataset_id: str | None, after: int,
                  frontier: int, replay_limit: int) -> Iterator[str]:
    """Yield what a client missed (``after < seq <= frontier``) a page at a time, or a reset.

    A page is read only when the previous one has been written to the client, so a client
    that does not read holds one page and causes no more database work; a gap over
    ``replay_limit`` rows is a reset, found out without reading the rows.
    """
    try:
        text, count, last = hub.replay_page(scope, dataset_id, after, frontier)
        if count == REPLAY_PAGE and hub.replay_exceeds(scope, dataset_id, after, frontier,
                                                       replay_limit):
            yield reset_frame(frontier)
            return
    except Exception:
        log.exception("replay failed")
        yield sse.event(json.dumps({"detail": "Could not replay missed notifications"}),
                        name="error")
        yield reset_frame(frontier)
        return
    if not count:
        yield sse.last_id(frontier)
        return
    while count:
        yield text
        if count < REPLAY_PAGE:
            return
        del text
        try:
            text, count, last = hub.replay_page(scope, dataset_id, last, frontier)
        except Exception:
            # Part of the gap has been sent: what follows the client's cursor cannot be
            # vouched for, so the client reloads.
            log.exception("replay failed")
            yield reset_frame(frontier)
            return


def reset_frame(frontier: int) -> str:
    """Tell the client to reload its list; its cursor moves to ``frontier``."""
    return sse.event(
        json.dumps({"detail": "Missed notifications cannot be replayed; reload the list"}),
        name="reset", id=frontier,
    )


def organization_events(hub: StreamHub, key: tuple[str, str | None], *,
                        keepalive_interval: float, sock: Any = None) -> Iterator[str]:
    """Yield the organization stream: the unread count on connect and on change."""
    sub = hub.subscribe_organization(key, sock)
    try:
        last: int | None = None
        for keepalive_due in sub.wake_ups(keepalive_interval):
            count = None
            while sub.items:
                count = sub.items.popleft()
            if count is not None and count != last:
                last = count
                yield sse.event(json.dumps({"unread": count}), name="unread")
            if keepalive_due:
                yield KEEP_ALIVE
    finally:
        hub.unsubscribe(sub)


SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # Tell nginx-style proxies not to buffer, or events would arrive in bursts.
    "X-Accel-Buffering": "no",
}


def event_stream(events: Iterator[str]) -> Response:
    """Wrap an event generator in a streaming response with the SSE headers."""
    return Response(events, status=200, headers=SSE_HEADERS,
                    content_type="text/event-stream; charset=utf-8")


def hub_of(app: Flask | None = None) -> StreamHub:
    """Return the stream hub of the app (of the current app by default)."""
    return (app or current_app).extensions["notifications.streams"]


def init_app(app: Flask) -> None:
    """Attach a (not yet started) stream hub; it starts with the first stream."""
    logs.to_stderr(log)
    app.extensions["notifications.streams"] = StreamHub(app)
