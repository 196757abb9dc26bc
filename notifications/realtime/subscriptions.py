"""Open streams as the watcher sees them: one subscription type per kind of stream.

Each has a doorbell (an event the stream sleeps on) and a mailbox of its own kind: a
dataset stream queues the frames of new rows, an organization stream keeps only the
newest unread count, and a version 2 stream only a flag that says "changes of yours
arrived": it reads them from the change log itself, so what waits for a client that stops
reading is in the database, never in the worker's memory.
"""
from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Final, NamedTuple

from gevent.event import Event

from notifications.core.kinds import KindFilter
from notifications.realtime.closing import ClientSocket
from notifications.realtime.frames import DatasetFrames
from notifications.store.changelog import Change
from notifications.store.scope import Orgs, Scope

#: Most undelivered events kept for one dataset stream (a client that stopped reading).
MAX_PENDING = 1000

#: The key of an organization stream: user and organization.
InboxKey = tuple[str, str | None]


class Subscription:
    """What every stream has: a doorbell, the socket it watches, whether it must end."""

    __slots__ = ("event", "closed", "client")

    def __init__(self, sock: Any = None) -> None:
        self.event = Event()
        self.closed = False
        self.client = ClientSocket.watch(sock, self.event.set)

    def has_mail(self) -> bool:
        """Tell whether something waits in the mailbox."""
        raise NotImplementedError

    def close(self) -> None:
        """Ask the stream to end (server shutdown)."""
        self.closed = True
        self.event.set()

    def stop_watching(self) -> None:
        """Release the socket watcher (the stream ended)."""
        if self.client is not None:
            self.client.stop()

    def wait(self, timeout: float) -> None:
        """Sleep until something is queued, the client leaves, or ``timeout`` passes."""
        if not self.has_mail() and not self.closed:
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
                if self.client is not None:
                    self.client.hang_up()
                return
            if self.client is not None and self.client.gone():
                return
            due = time.monotonic() >= next_beat
            yield due
            if due:
                # Counted from when the caller has sent it, as a slow socket may delay it.
                next_beat = time.monotonic() + interval


class Notice(enum.Enum):
    """What a dataset stream's mailbox holds besides notifications."""

    #: The events the stream lost to :data:`MAX_PENDING`: the client must reset.
    OVERFLOW = "overflow"
    #: The watcher failed to read new notifications (it retries).
    WATCHER_FAILED = "watcher failed"


OVERFLOW: Final = Notice.OVERFLOW
WATCHER_FAILED: Final = Notice.WATCHER_FAILED


class Delivery(NamedTuple):
    """A new row for a dataset stream: its sequence number and its frame."""

    seq: int
    frame: str


class DatasetSubscription(Subscription):
    """A dataset stream: the rows of a scope (and dataset), framed by the variant's frames."""

    __slots__ = ("scope", "dataset_id", "frames", "items")

    def __init__(self, scope: Scope, dataset_id: str | None, frames: DatasetFrames,
                 sock: Any = None) -> None:
        super().__init__(sock)
        self.scope = scope
        self.dataset_id = dataset_id
        self.frames = frames
        self.items: deque[Delivery | Notice] = deque()

    @property
    def key(self) -> str:
        """The user whose rows the stream follows."""
        return self.scope.user_id

    def has_mail(self) -> bool:
        return bool(self.items)

    def push(self, item: Delivery | Notice) -> None:
        """Queue an item for the stream and wake it."""
        if len(self.items) >= MAX_PENDING:
            # A client that stopped reading must not make the worker hold an unbounded
            # backlog for it: drop the backlog and tell it to reload instead.
            self.items.clear()
            self.items.append(OVERFLOW)
        elif not self.items or self.items[-1] is not OVERFLOW:
            self.items.append(item)
        self.event.set()

    def matches(self, row: dict[str, Any]) -> bool:
        """Tell whether a new row belongs on this stream."""
        scope = self.scope
        if row["user_id"] != scope.user_id:
            return False
        if scope.organization_id is not None and row["organization_id"] not in (
            None, scope.organization_id
        ):
            return False
        return self.dataset_id is None or row["dataset_id"] == self.dataset_id


class OrganizationSubscription(Subscription):
    """An organization stream: the newest unread count of one inbox."""

    __slots__ = ("key", "count")

    def __init__(self, key: InboxKey, sock: Any = None) -> None:
        super().__init__(sock)
        self.key = key
        self.count: int | None = None

    def has_mail(self) -> bool:
        return self.count is not None

    def set_count(self, count: int) -> None:
        """Replace the pending unread count (only the newest one matters) and wake the stream."""
        self.count = count
        self.event.set()

    def take(self) -> int | None:
        """Return the pending unread count, if any, and empty the mailbox."""
        count, self.count = self.count, None
        return count


class InboxSubscription(Subscription):
    """A version 2 stream: a scope narrowed by kinds and a dataset, rung when it may have news.

    The watcher rings it for a change it would see (:meth:`matches`); the stream then reads
    its own changes after its position. Ringing again before it has read changes nothing.
    """

    __slots__ = ("scope", "kinds", "dataset_id", "rung")

    def __init__(self, scope: Scope, kinds: KindFilter, dataset_id: str | None,
                 sock: Any = None) -> None:
        super().__init__(sock)
        self.scope = scope
        self.kinds = kinds
        self.dataset_id = dataset_id
        self.rung = False

    @property
    def key(self) -> str:
        """The user whose changes the stream follows."""
        return self.scope.user_id

    def has_mail(self) -> bool:
        return self.rung

    def ring(self) -> None:
        """Tell the stream that changes it sees may have arrived, and wake it."""
        self.rung = True
        self.event.set()

    def take(self) -> bool:
        """Tell whether the stream was rung since it last asked, and forget it."""
        rung, self.rung = self.rung, False
        return rung

    def matches(self, change: Change) -> bool:
        """Tell whether the stream sees ``change`` (its scope, kinds and dataset)."""
        scope = self.scope
        if change.user_id != scope.user_id:
            return False
        if scope.orgs is Orgs.ONE and change.organization_id != scope.organization_id:
            return False
        if scope.orgs is Orgs.ONE_OR_NONE and change.organization_id not in (
            None, scope.organization_id
        ):
            return False
        if self.dataset_id is not None and change.dataset_id != self.dataset_id:
            return False
        return self.kinds.matches(change.kind)
