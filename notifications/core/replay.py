"""What a dataset stream sends a client that reconnects: the decisions, without any I/O.

A client reconnects with the id of the last event it saw (``Last-Event-ID``). The stream
compares it with its *frontier*, the newest sequence number its worker's watcher had seen
when the stream subscribed: every later row reaches the stream live, every earlier one the
client missed is replay's job.

- No id: a cursor at the frontier, so that a reconnect before the first notification still
  replays what the client missed meanwhile.
- An id below the frontier: the rows in between, a page at a time; past the replay limit,
  or when a read fails, a reset (the client reloads its list).
- The frontier itself: a cursor, nothing to replay.
- An id above the frontier: another worker's watcher may be ahead of this one. The id is
  valid if the database has it (the client keeps it, and the live rows up to it are
  skipped); otherwise this service never gave it out, and the client resets.
- Something that is no id at all: a reset.

The stream supplies the reads as callables and turns the answers into frames.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Send a bare ``id:``: the client's Last-Event-ID becomes ``id``."""

    id: int


@dataclass(frozen=True, slots=True)
class Reset:
    """Tell the client to reload its list; its Last-Event-ID becomes ``id``."""

    id: int


@dataclass(frozen=True, slots=True)
class Replay:
    """Send the rows the client missed: ``after < seq <= upto``."""

    after: int
    upto: int


@dataclass(frozen=True, slots=True)
class Opening:
    """What a stream sends first, and the newest id the client has once it is sent."""

    first: Cursor | Reset | Replay
    sent: int


def opening(last_event_id: int | None, frontier: int, *, head: Callable[[], int | None],
            unusable: bool = False) -> Opening:
    """Decide how a stream that subscribed at ``frontier`` begins.

    ``unusable`` says the client sent something that is no id. ``head`` returns the newest
    sequence number in the database, or None when it cannot be read; it is called only
    for an id above the frontier.
    """
    if unusable:
        return Opening(Reset(frontier), frontier)
    if last_event_id is None or last_event_id == frontier:
        return Opening(Cursor(frontier), frontier)
    if last_event_id < frontier:
        return Opening(Replay(last_event_id, frontier), frontier)
    newest = head()
    if newest is None or last_event_id > newest:
        return Opening(Reset(frontier), frontier)
    return Opening(Cursor(last_event_id), last_event_id)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a replay as read: its body, how many rows it holds, the last row's seq."""

    body: T
    count: int
    last: int


@dataclass(frozen=True, slots=True)
class Send(Generic[T]):
    """Send a page's body."""

    body: T


@dataclass(frozen=True, slots=True)
class Failed:
    """A read failed (a reset follows); ``tell``: the client gets an error event first."""

    error: Exception
    tell: bool


Step = Send[T] | Cursor | Reset | Failed


def pages(replay: Replay, *, page_size: int, read: Callable[[int], Page[T]],
          too_many: Callable[[], bool]) -> Iterator[Step[T]]:
    """Yield the steps of a replay, reading a page only once the previous one is taken.

    ``read(after)`` reads the page of rows after ``after`` (at most ``page_size``, none past
    ``replay.upto``). ``too_many()`` tells whether the gap exceeds the replay limit; it is
    asked only when the first page is full, so a gap over the limit is a reset found out
    without reading it. A client that does not read holds one page and causes no more
    reads.
    """
    try:
        page = read(replay.after)
        if page.count == page_size and too_many():
            yield Reset(replay.upto)
            return
    except Exception as exc:
        yield Failed(exc, tell=True)
        yield Reset(replay.upto)
        return
    if not page.count:
        yield Cursor(replay.upto)
        return
    while page.count:
        yield Send(page.body)
        if page.count < page_size:
            return
        after = page.last
        del page  # sent: only the page being read is held
        try:
            page = read(after)
        except Exception as exc:
            # Part of the gap has been sent: what follows the client's cursor cannot be
            # vouched for, so the client reloads.
            yield Failed(exc, tell=False)
            yield Reset(replay.upto)
            return


@dataclass(slots=True)
class Position:
    """The newest id a client has: a live row at or below it is one the client has already."""

    sent: int

    def fresh(self, seq: int) -> bool:
        """Tell whether the row ``seq`` is new to the client, which then has it."""
        if seq > self.sent:
            self.sent = seq
            return True
        return False

    def move_to(self, seq: int) -> None:
        """Move past ``seq`` (the client was told to reset there)."""
        self.sent = max(self.sent, seq)
