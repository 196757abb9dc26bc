"""The stream generators: what a dataset or an organization stream sends, frame by frame.

The variant that opens a stream passes its frames (:mod:`notifications.realtime.frames`);
what a reconnecting dataset stream sends first is decided by
:mod:`notifications.core.replay`.
"""
from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any, assert_never

from notifications.core import replay, sse
from notifications.realtime.frames import DatasetFrames, OrganizationFrames
from notifications.realtime.history import REPLAY_PAGE
from notifications.realtime.hub import StreamHub
from notifications.realtime.subscriptions import OVERFLOW, WATCHER_FAILED, InboxKey
from notifications.store.scope import Scope

log = logging.getLogger("notifications.stream")


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
