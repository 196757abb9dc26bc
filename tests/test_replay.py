"""What a reconnecting dataset stream sends, decided without a server, a database or gevent."""
from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest

from notifications.core.replay import (
    Cursor,
    Failed,
    Opening,
    Page,
    Position,
    Replay,
    Reset,
    Send,
    Step,
    opening,
    pages,
)

pytestmark = pytest.mark.both_databases

FRONTIER = 100


def no_head() -> int | None:
    raise AssertionError("the database's head was read although the frontier decides")


# --- how a stream begins ---------------------------------------------------------------------


def test_no_id_gets_a_cursor_at_the_frontier() -> None:
    assert opening(None, FRONTIER, head=no_head) == Opening(Cursor(FRONTIER), FRONTIER)


def test_the_frontier_itself_gets_a_cursor_and_no_replay() -> None:
    assert opening(FRONTIER, FRONTIER, head=no_head) == Opening(Cursor(FRONTIER), FRONTIER)


def test_an_id_behind_the_frontier_replays_the_gap() -> None:
    assert opening(40, FRONTIER, head=no_head) == Opening(Replay(40, FRONTIER), FRONTIER)
    assert opening(0, FRONTIER, head=no_head) == Opening(Replay(0, FRONTIER), FRONTIER)


def test_something_that_is_no_id_is_a_reset_whatever_the_cursor() -> None:
    for last_event_id in (None, 0, FRONTIER, FRONTIER + 5):
        assert opening(last_event_id, FRONTIER, head=no_head, unusable=True) == Opening(
            Reset(FRONTIER), FRONTIER)


def test_an_id_ahead_of_this_watcher_that_the_database_has_is_kept() -> None:
    """Another worker's watcher saw it first: the client keeps it, live rows up to it are
    skipped."""
    for newest in (FRONTIER + 5, FRONTIER + 50):
        head = functools.partial(int, newest)
        assert opening(FRONTIER + 5, FRONTIER, head=head) == Opening(Cursor(FRONTIER + 5),
                                                                     FRONTIER + 5)


def test_an_id_past_the_database_head_is_a_reset() -> None:
    assert opening(FRONTIER + 6, FRONTIER, head=lambda: FRONTIER + 5) == Opening(
        Reset(FRONTIER), FRONTIER)


def test_an_id_ahead_is_a_reset_when_the_head_cannot_be_read() -> None:
    assert opening(FRONTIER + 1, FRONTIER, head=lambda: None) == Opening(
        Reset(FRONTIER), FRONTIER)


# --- paged replay ----------------------------------------------------------------------------

PAGE = 3


class Reads:
    """Fake reads: the rows after the replay's start, a page at a time, with a record of calls."""

    def __init__(self, rows: int, *, fail_at: int | None = None, too_many: bool = False,
                 too_many_fails: bool = False) -> None:
        self.seqs = list(range(1, rows + 1))
        self.fail_at = fail_at
        self.too_many_answer = too_many
        self.too_many_fails = too_many_fails
        self.calls: list[tuple[object, ...]] = []
        self.reads = 0

    def read(self, after: int) -> Page[list[int]]:
        """Read the rows after ``after``; the read numbered ``fail_at`` (from 0) fails."""
        self.calls.append(("read", after))
        self.reads += 1
        if self.reads - 1 == self.fail_at:
            raise OSError("disk I/O error")
        body = [seq for seq in self.seqs if seq > after][:PAGE]
        return Page(body, len(body), body[-1] if body else after)

    def too_many(self) -> bool:
        self.calls.append(("too_many",))
        if self.too_many_fails:
            raise OSError("disk I/O error")
        return self.too_many_answer

    def steps(self, after: int = 0) -> Iterator[Step[list[int]]]:
        return pages(Replay(after, FRONTIER), page_size=PAGE, read=self.read,
                     too_many=self.too_many)


def kinds(steps: list[Step[list[int]]]) -> list[object]:
    """The steps with errors reduced to their type (exceptions do not compare equal)."""
    return [(type(s.error), s.tell) if isinstance(s, Failed) else s for s in steps]


def test_nothing_missed_is_a_cursor_at_the_frontier() -> None:
    reads = Reads(0)
    assert list(reads.steps()) == [Cursor(FRONTIER)]
    assert reads.calls == [("read", 0)]


def test_a_short_first_page_is_sent_without_asking_the_gap_size() -> None:
    reads = Reads(2)
    assert list(reads.steps()) == [Send([1, 2])]
    assert reads.calls == [("read", 0)]


def test_a_full_first_page_asks_whether_the_gap_is_over_the_limit() -> None:
    reads = Reads(7)
    assert list(reads.steps()) == [Send([1, 2, 3]), Send([4, 5, 6]), Send([7])]
    assert reads.calls == [("read", 0), ("too_many",), ("read", 3), ("read", 6)]


def test_a_gap_over_the_limit_is_a_reset_and_sends_nothing_read() -> None:
    reads = Reads(7, too_many=True)
    assert list(reads.steps()) == [Reset(FRONTIER)]
    assert reads.calls == [("read", 0), ("too_many",)]


def test_a_gap_of_whole_pages_ends_at_the_empty_read_after_them() -> None:
    reads = Reads(6)
    assert list(reads.steps()) == [Send([1, 2, 3]), Send([4, 5, 6])]
    assert reads.calls[-1] == ("read", 6)


def test_each_page_is_read_only_once_the_previous_one_was_taken() -> None:
    reads = Reads(9)
    steps = reads.steps()
    assert next(steps) == Send([1, 2, 3])
    assert reads.calls == [("read", 0), ("too_many",)]
    assert next(steps) == Send([4, 5, 6])
    assert reads.calls[-1] == ("read", 3)


@pytest.mark.parametrize("reads", [Reads(5, fail_at=0), Reads(5, too_many_fails=True)],
                         ids=["first read", "gap size"])
def test_a_failure_before_anything_was_sent_is_told_then_a_reset(reads: Reads) -> None:
    assert kinds(list(reads.steps())) == [(OSError, True), Reset(FRONTIER)]


def test_a_failure_after_a_page_was_sent_is_a_reset_without_an_error_event() -> None:
    reads = Reads(7, fail_at=1)
    steps = list(reads.steps())
    assert kinds(steps) == [Send([1, 2, 3]), (OSError, False), Reset(FRONTIER)]
    failed = steps[1]
    assert isinstance(failed, Failed) and isinstance(failed.error, OSError)


def test_the_replay_starts_after_the_clients_id() -> None:
    reads = Reads(5)
    assert list(reads.steps(after=3)) == [Send([4, 5])]


# --- live rows after the opening -------------------------------------------------------------


def test_live_rows_the_client_has_are_skipped() -> None:
    position = Position(10)
    assert [seq for seq in (9, 10, 11, 11, 12) if position.fresh(seq)] == [11, 12]
    assert position.sent == 12


def test_a_reset_moves_the_position_forward_only() -> None:
    position = Position(10)
    position.move_to(5)
    assert position.sent == 10
    position.move_to(20)
    assert position.sent == 20 and not position.fresh(20) and position.fresh(21)


def test_steps_take_any_body() -> None:
    """The stream passes framed text; the decisions never look inside."""

    def read(after: int) -> Page[str]:
        return Page("id: 1\nevent: notification\n\n", 1, after + 1)

    def too_many() -> bool:
        raise AssertionError("a short first page needs no gap size")

    assert list(pages(Replay(0, 1), page_size=2, read=read, too_many=too_many)) == [
        Send("id: 1\nevent: notification\n\n")]
