"""The stream generators: what a dataset, an organization or a version 2 stream sends.

The variant that opens a stream passes its frames (:mod:`notifications.realtime.frames`);
what a reconnecting dataset stream sends first is decided by
:mod:`notifications.core.replay`; a version 2 stream replays from the change log
(:func:`inbox_events`).
"""
from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from typing import Any, assert_never

from notifications.core import replay, sse
from notifications.core.kinds import KindFilter
from notifications.core.serialize import iso_utc, ntf_id, v2_record
from notifications.realtime.frames import DatasetFrames, InboxFrames, OrganizationFrames
from notifications.realtime.history import REPLAY_PAGE, History
from notifications.realtime.hub import StreamHub
from notifications.realtime.subscriptions import OVERFLOW, WATCHER_FAILED, InboxKey
from notifications.store.changelog import CREATED, DELETED, REPLAY_LIMIT, Change
from notifications.store.inbox import Counts
from notifications.store.scope import Scope

log = logging.getLogger("notifications.stream")

#: The version 2 event of each kind of change-log entry.
CHANGE_EVENTS = {CREATED: "notification.created", "updated": "notification.updated",
                 DELETED: "notification.deleted"}


def change_event(change: Change) -> tuple[str, dict[str, Any]] | None:
    """Return the version 2 event of a change-log entry: its name and its data.

    ``notification.created`` carries the record, ``notification.updated`` the id and the
    state times after the change, ``notification.deleted`` the id. A created entry whose
    row is gone since (its deletion follows in the log) has no event: None. The version 2
    stream and the outbound webhooks send exactly this.
    """
    name = CHANGE_EVENTS[change.change]
    if change.change == CREATED:
        if change.row is None:
            return None
        return name, v2_record(change.row)
    if change.change == DELETED:
        return name, {"id": ntf_id(change.notification_id)}
    return name, {"id": ntf_id(change.notification_id), "seen_at": iso_utc(change.seen_at),
                  "read_at": iso_utc(change.read_at), "archived_at": iso_utc(change.archived_at)}


def dataset_events(hub: StreamHub, scope: Scope, dataset_id: str | None,
                   last_event_id: int | None, *, frames: DatasetFrames, ping_interval: float,
                   retry_ms: int, replay_limit: int, reset: bool = False,
                   sock: Any = None) -> Generator[str, None, None]:
    """Yield the dataset stream: replay after ``last_event_id``, then live events and pings.

    ``reset``: the client sent a Last-Event-ID that is no id this service gives out.
    """
    sub, frontier = hub.subscribe_dataset(scope, dataset_id, frames, sock)
    try:
        yield sse.retry(retry_ms)
        start = replay.opening(last_event_id, frontier, head=lambda: _head(hub),
                               unusable=reset)
        match start.first:
            case replay.Replay() as gap:
                yield from replay_frames(hub, frames, scope, dataset_id, gap, replay_limit)
            case replay.Reset(id=cursor):
                yield frames.reset(cursor)
            case replay.Cursor(id=cursor):
                yield sse.last_id(cursor)
        position = replay.Position(start.sent)
        for ping_due in sub.wake_ups(ping_interval):
            out = []
            while sub.items:
                item = sub.items.popleft()
                if item is OVERFLOW:
                    out.append(frames.reset(hub.last_seq))
                    position.move_to(hub.last_seq)
                elif item is WATCHER_FAILED:
                    out.append(frames.watcher_failed())
                elif position.fresh(item.seq):
                    out.append(item.frame)
            if out:
                yield "".join(out)
            if ping_due:
                yield frames.ping()
    finally:
        hub.unsubscribe_dataset(sub)


def _head(hub: StreamHub) -> int | None:
    """Read the database's newest sequence number; None when that fails."""
    try:
        return hub.history.head()
    except Exception:
        log.exception("could not read the stream position")
        return None


def replay_frames(hub: StreamHub, frames: DatasetFrames, scope: Scope, dataset_id: str | None,
                  gap: replay.Replay, replay_limit: int) -> Generator[str, None, None]:
    """Yield what a client missed (``gap``) a page at a time, or a reset.

    A page is read only when the previous one has been written to the client, so a client
    that does not read holds one page and causes no more database work; a gap over
    ``replay_limit`` rows is a reset, found out without reading the rows.
    """
    history = hub.history
    steps = replay.pages(
        gap, page_size=REPLAY_PAGE,
        read=lambda after: history.page(frames, scope, dataset_id, after, gap.upto),
        too_many=lambda: history.exceeds(scope, dataset_id, gap.after, gap.upto, replay_limit),
    )
    for step in steps:
        frame = _replay_frame(step, frames)
        del step  # a page sent is the client's: only the next one is held while it is read
        if frame:
            yield frame
        frame = None


def _replay_frame(step: replay.Step[str], frames: DatasetFrames) -> str | None:
    """Frame one step of a replay (None: nothing to send)."""
    match step:
        case replay.Send(body=text):
            return text
        case replay.Cursor(id=cursor):
            return sse.last_id(cursor)
        case replay.Reset(id=cursor):
            return frames.reset(cursor)
        case replay.Failed(error=error, tell=tell):
            log.error("replay failed", exc_info=error)
            return frames.replay_failed() if tell else None
        case _:
            assert_never(step)


def organization_events(hub: StreamHub, key: InboxKey, *, frames: OrganizationFrames,
                        keepalive_interval: float,
                        sock: Any = None) -> Generator[str, None, None]:
    """Yield the organization stream: the unread count on connect and on change."""
    sub = hub.subscribe_organization(key, sock)
    try:
        last: int | None = None
        for keepalive_due in sub.wake_ups(keepalive_interval):
            count = sub.take()
            if count is not None and count != last:
                last = count
                yield frames.unread(count)
            if keepalive_due:
                yield frames.keep_alive()
    finally:
        hub.unsubscribe_organization(sub)


def inbox_events(hub: StreamHub, scope: Scope, *, kinds: KindFilter | None = None,
                 dataset_id: str | None = None, last_event_id: int | None = None,
                 reset: bool = False, frames: InboxFrames, keepalive_interval: float,
                 retry_ms: int, replay_limit: int = REPLAY_LIMIT,
                 sock: Any = None) -> Generator[str, None, None]:
    """Yield the version 2 stream of ``scope`` (narrowed to ``kinds`` and ``dataset_id``).

    First ``retry:`` and the counts; then, after ``last_event_id`` (a change-log
    position), every change the client missed in order, up to ``replay_limit`` of them,
    or a reset when they are more, the log no longer holds them, or the position is none
    it gave out; then each change as it comes, the counts whenever they change, and a
    keep-alive every ``keepalive_interval``. ``reset``: the client sent a Last-Event-ID
    that is no position at all.

    The counts of a new stream (no ``last_event_id``) carry the position it starts from,
    so a client that reconnects before any change replays from there. A read that fails
    ends the stream: the client reconnects with its Last-Event-ID and misses nothing.
    """
    sub = hub.subscribe_inbox(scope, kinds, dataset_id, sock)
    stream = _InboxStream(hub.history, frames, scope, sub.kinds, dataset_id, replay_limit)
    try:
        yield sse.retry(retry_ms)
        if sub.closed:
            return
        try:
            # Rung from now on: a change after this read reaches the stream.
            sub.take()
            if reset or last_event_id is None:
                # The head first: the counts then include every change up to it.
                stream.position = hub.history.log_head()
                if reset:
                    yield stream.first_counts(None)
                    yield frames.reset(stream.position)
                else:
                    yield stream.first_counts(stream.position)
            else:
                # The counts are of now; the changes the client missed follow, and any
                # later than these counts bring new ones.
                yield stream.first_counts(None)
                stream.position = last_event_id
                yield from stream.catch_up()
            for keepalive_due in sub.wake_ups(keepalive_interval):
                if sub.take():
                    yield from stream.catch_up()
                if keepalive_due:
                    yield frames.keep_alive()
        except Exception:
            log.exception("version 2 stream of %s failed; it ends", scope.user_id)
    finally:
        hub.unsubscribe_inbox(sub)


class _InboxStream:
    """A version 2 stream's position and last counts, and the reads that move them.

    ``position``: every change the stream sees up to it has been sent (or is in the
    counts it started with).
    """

    def __init__(self, history: History, frames: InboxFrames, scope: Scope, kinds: KindFilter,
                 dataset_id: str | None, replay_limit: int) -> None:
        self.history = history
        self.frames = frames
        self.scope = scope
        self.kinds = kinds
        self.dataset_id = dataset_id
        self.replay_limit = replay_limit
        self.position = 0
        self.sent_counts: Counts | None = None

    def first_counts(self, position: int | None) -> str:
        """Read and frame the counts the stream opens with."""
        self.sent_counts = self.history.counts(self.scope, self.kinds, self.dataset_id)
        return self.frames.counts(self.sent_counts, position)

    def counts_frame(self, position: int | None) -> str | None:
        """Read the counts; frame them if they are not the ones last sent."""
        counts = self.history.counts(self.scope, self.kinds, self.dataset_id)
        if counts == self.sent_counts:
            return None
        self.sent_counts = counts
        return self.frames.counts(counts, position)

    def catch_up(self) -> Iterator[str]:
        """Yield the changes after the position, a page at a time, or a reset; then the
        counts if they changed.

        A page is read once the one before has been taken, so a client that does not read
        costs one page of memory and no reads; what it has not read waits in the log, and
        more than the replay limit of it is a reset.
        """
        history, frames = self.history, self.frames
        where = (self.frames, self.scope, self.kinds, self.dataset_id)
        first = history.changes(*where, self.position,
                                limit=min(REPLAY_PAGE, self.replay_limit))
        head, changed = first.head, first.count > 0 or first.reset is not None
        if first.reset is None:
            if first.text:
                yield first.text
        elif first.reset == "too_many":
            ends = history.page_ends(self.scope, self.kinds, self.dataset_id, self.position,
                                     first.head, self.replay_limit)
            if ends is None:
                yield frames.reset(head)
            else:
                for end in ends:
                    page = history.changes(*where, self.position, upto=end, limit=REPLAY_PAGE)
                    if page.reset is not None:
                        # Retention overtook the replay: start again from what is stored.
                        head = max(head, page.head)
                        yield frames.reset(head)
                        break
                    if page.text:  # an empty chunk would end a chunked response
                        yield page.text
                    del page  # sent: only the page being read is held
                    self.position = end
        else:
            yield frames.reset(head)
        # Every change up to the head of the last read has been sent (or reset).
        self.position = head
        if changed:
            frame = self.counts_frame(self.position)
            if frame:
                yield frame
