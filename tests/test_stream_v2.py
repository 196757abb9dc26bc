"""The version 2 stream and the change-log watcher, with the hub in this process.

The frames are the spec's, written here (the variant's own live in notifications/http):
the realtime package decides what to send when, these decide how it looks.
"""
from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator
from typing import Any

import gevent
import gevent.queue
import pytest
from conftest import DATASET, OTHER_DATASET

from notifications.core import sse
from notifications.core.kinds import parse_kinds
from notifications.core.serialize import iso_utc, ntf_id, v2_record
from notifications.core.states import ACTION_UPDATES, Action
from notifications.realtime.events import dataset_events, inbox_events, organization_events
from notifications.realtime.history import REPLAY_PAGE
from notifications.realtime.hub import StreamHub, hub_of
from notifications.store import changelog, feed, inbox, marks, purge
from notifications.store.changelog import Change
from notifications.store.inbox import Counts
from notifications.store.rows import now_us
from notifications.store.scope import Scope

pytestmark = pytest.mark.both_databases


class SpecFrames:
    """The version 2 stream's events as the product spec words them."""

    def created(self, change: Change) -> str:
        assert change.row is not None
        return sse.event(json.dumps(v2_record(change.row)), name="notification.created",
                         id=change.position)

    def updated(self, change: Change) -> str:
        data = {"id": ntf_id(change.notification_id), "seen_at": iso_utc(change.seen_at),
                "read_at": iso_utc(change.read_at), "archived_at": iso_utc(change.archived_at)}
        return sse.event(json.dumps(data), name="notification.updated", id=change.position)

    def deleted(self, change: Change) -> str:
        return sse.event(json.dumps({"id": ntf_id(change.notification_id)}),
                         name="notification.deleted", id=change.position)

    def counts(self, counts: Counts, position: int | None) -> str:
        return sse.event(json.dumps(counts.as_dict()), name="counts", id=position)

    def reset(self, position: int) -> str:
        return sse.event(json.dumps({"detail": "Missed changes cannot be replayed; reload"}),
                         name="reset", id=position)

    def keep_alive(self) -> str:
        return sse.comment("keep-alive")


FRAMES = SpecFrames()


def parse(text: str) -> list[dict[str, Any]]:
    """Split SSE text into events: {"id", "event", "data"} (data decoded), comments, retry."""
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        event: dict[str, Any] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            if name == "":
                event["comment"] = value
            elif name == "data":
                event["data"] = json.loads(value)
            elif name == "id":
                event["id"] = int(value)
            else:
                event[name] = value
        events.append(event)
    return events


class Stream:
    """A version 2 stream's generator, read by a greenlet of its own as a server would."""

    def __init__(self, hub: StreamHub, scope: Scope, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_interval", 60)
        self.events: Generator[str, None, None] = inbox_events(
            hub, scope, frames=FRAMES, retry_ms=3000, **kwargs)
        self.queue: gevent.queue.Queue[dict[str, Any]] = gevent.queue.Queue()
        self.reader = gevent.spawn(self._read)

    def _read(self) -> None:
        for text in self.events:
            for event in parse(text):
                self.queue.put(event)
        self.queue.put({"closed": True})

    def next(self, timeout: float = 5) -> dict[str, Any]:
        try:
            return self.queue.get(timeout=timeout)
        except gevent.queue.Empty:
            raise AssertionError(f"no event within {timeout}s") from None

    def take(self, n: int, timeout: float = 5) -> list[dict[str, Any]]:
        return [self.next(timeout) for _ in range(n)]

    def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Return what arrives within ``seconds`` (nothing, for a quiet stream)."""
        found = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                found.append(self.queue.get(timeout=left))
            except gevent.queue.Empty:
                break
        return found

    def close(self) -> None:
        self.reader.kill()


@pytest.fixture
def hub(app: Any) -> Iterator[StreamHub]:
    hub = hub_of(app)
    hub.start()
    yield hub
    hub.shutdown()


def counts(app: Any, scope: Scope, **kwargs: Any) -> dict[str, int]:
    with app.app_context():
        return inbox.counts(scope, **kwargs).as_dict()


def head(app: Any) -> int:
    with app.app_context():
        return changelog.head_position()


def opened(hub: StreamHub, scope: Scope, **kwargs: Any) -> tuple[Stream, dict[str, Any]]:
    """Open a stream; return it and its opening counts event."""
    stream = Stream(hub, scope, **kwargs)
    assert stream.next() == {"retry": "3000"}
    first = stream.next()
    assert first["event"] == "counts"
    return stream, first


# --- what a stream sends ------------------------------------------------------------------


def test_a_new_stream_sends_counts_then_created_updated_deleted(app: Any, hub: StreamHub,
                                                                 make: Any) -> None:
    scope = Scope.dataset_api("alice", "acme")
    old = make("alice", 2, organization_id="acme")
    stream, first = opened(hub, scope)
    # The opening counts carry the position the stream starts from.
    assert first == {"event": "counts", "id": head(app),
                     "data": {"total": 2, "unread": 2, "unseen": 2}}

    (row,) = make("alice", 1, organization_id="acme", kind="review.created", title="new")
    created = stream.next()
    assert created["event"] == "notification.created" and created["id"] > first["id"]
    with app.app_context():
        stored = inbox.get(scope, row["id"])
    assert stored is not None
    assert created["data"] == v2_record(stored)
    assert stream.next() == {"event": "counts", "id": created["id"],
                             "data": {"total": 3, "unread": 3, "unseen": 3}}

    with app.app_context():
        inbox.patch(scope, row["id"], ACTION_UPDATES[Action.READ])
    updated = stream.next()
    assert updated["event"] == "notification.updated" and updated["id"] > created["id"]
    with app.app_context():
        stored = inbox.get(scope, row["id"])
    assert stored is not None
    assert updated["data"] == {"id": ntf_id(row["id"]), "seen_at": iso_utc(stored["seen_at"]),
                               "read_at": iso_utc(stored["read_at"]), "archived_at": None}
    assert updated["data"]["read_at"] is not None
    assert stream.next()["data"] == {"total": 3, "unread": 2, "unseen": 2}

    with app.app_context():
        purge.purge(now_us() + 1, read_only=True)
    deleted = stream.next()
    assert deleted == {"event": "notification.deleted", "id": deleted["id"],
                       "data": {"id": ntf_id(row["id"])}}
    assert stream.next()["data"] == {"total": 2, "unread": 2, "unseen": 2}

    with app.app_context():
        purge.purge(now_us() + 1)
    gone = stream.take(2)
    assert [e["event"] for e in gone] == ["notification.deleted"] * 2
    assert [e["data"]["id"] for e in gone] == [ntf_id(r["id"]) for r in old]
    assert gone[0]["id"] < gone[1]["id"]
    assert stream.next()["data"] == {"total": 0, "unread": 0, "unseen": 0}
    assert stream.quiet() == []
    stream.close()
    assert not hub.inbox_subs


def test_an_archive_and_a_seen_change_the_counts_they_move(app: Any, hub: StreamHub,
                                                           make: Any) -> None:
    scope = Scope.dataset_api("alice")
    rows = make("alice", 2)
    stream, first = opened(hub, scope)
    with app.app_context():
        inbox.bulk_ids(scope, [rows[0]["id"]], ACTION_UPDATES[Action.SEEN])
    assert stream.next()["data"]["seen_at"] is not None
    assert stream.next()["data"] == {"total": 2, "unread": 2, "unseen": 1}
    with app.app_context():
        inbox.bulk_ids(scope, [r["id"] for r in rows], ACTION_UPDATES[Action.ARCHIVE])
    changes = stream.take(2)
    assert all(e["data"]["archived_at"] is not None for e in changes)
    # One counts event for the two changes of one write.
    assert stream.next()["data"] == {"total": 0, "unread": 0, "unseen": 0}
    # A change that changes nothing (archived again) logs nothing and sends nothing.
    with app.app_context():
        inbox.bulk_ids(scope, [r["id"] for r in rows], ACTION_UPDATES[Action.ARCHIVE])
    assert stream.quiet() == []
    stream.close()


def test_keep_alive_comments_come_on_their_interval(app: Any, hub: StreamHub) -> None:
    stream, _ = opened(hub, Scope("alice"), keepalive_interval=0.05)
    assert stream.take(3) == [{"comment": "keep-alive"}] * 3
    stream.close()


def test_only_what_the_scope_and_filter_see_is_sent(app: Any, hub: StreamHub,
                                                    make: Any) -> None:
    scope = Scope.dataset_api("alice", "acme")
    everything, _ = opened(hub, scope)
    kinds = parse_kinds(["review.*", "api.quota.warning"])
    filtered, first = opened(hub, scope, kinds=kinds, dataset_id=DATASET)
    assert first["data"] == {"total": 0, "unread": 0, "unseen": 0}

    make("bob", 1, organization_id="acme", kind="review.created", dataset_id=DATASET)
    make("alice", 1, organization_id="other", kind="review.created", dataset_id=DATASET)
    make("alice", 1, organization_id="acme", kind="version.published", dataset_id=DATASET)
    make("alice", 1, organization_id="acme", kind="review.created", dataset_id=OTHER_DATASET)
    no_org = make("alice", 1, kind="review.approved", dataset_id=DATASET)
    exact = make("alice", 1, organization_id="acme", kind="api.quota.warning",
                 dataset_id=DATASET)
    seen = []
    while len([e for e in seen if e["event"] == "notification.created"]) < 2:
        seen.append(filtered.next())
    seen += filtered.quiet()
    created = [e["data"]["id"] for e in seen if e["event"] == "notification.created"]
    assert created == [ntf_id(no_org[0]["id"]), ntf_id(exact[0]["id"])]
    assert seen[-1]["event"] == "counts"
    assert seen[-1]["data"] == counts(app, scope, kinds=kinds, dataset_id=DATASET)
    assert {e["event"] for e in seen} == {"notification.created", "counts"}
    # Without a filter: everything of alice's in acme or no organization (four rows).
    assert len([e for e in everything.quiet() if e["event"] == "notification.created"]) == 4
    # A change of another organization's row does not even ring the filtered stream.
    (sub,) = [s for s in hub.inbox_subs["alice"] if s.dataset_id == DATASET]
    make("alice", 1, organization_id="other", kind="review.created", dataset_id=DATASET)
    with app.app_context():
        hub.tick()
    assert not sub.rung
    filtered.close()
    everything.close()


# --- reconnecting ------------------------------------------------------------------------


def test_reconnect_replays_every_missed_change_in_order(app: Any, hub: StreamHub,
                                                         make: Any) -> None:
    scope = Scope.dataset_api("alice")
    live, _ = opened(hub, scope)
    rows = make("alice", 3)
    before = live.take(4)
    last_id = before[-1]["id"]
    live.close()
    # Missed: a new row, a read, an archive, a deletion, and bob's row in between.
    missed_rows = make("alice", 1)
    make("bob", 2)
    with app.app_context():
        marks.mark_ids_read(scope, [rows[0]["id"]])
        inbox.bulk_ids(scope, [rows[1]["id"]], ACTION_UPDATES[Action.ARCHIVE])
        purge.purge(now_us() + 1, read_only=True)
    again, first = opened(hub, scope, last_event_id=last_id)
    # The counts of now, without an id: the client's own id stays until it has the changes.
    assert "id" not in first and first["data"] == counts(app, scope)
    replayed = again.take(4)
    assert [e["event"] for e in replayed] == [
        "notification.created", "notification.updated", "notification.updated",
        "notification.deleted"]
    assert replayed[0]["data"]["id"] == ntf_id(missed_rows[0]["id"])
    assert [e["data"]["id"] for e in replayed[1:]] == [ntf_id(rows[0]["id"]),
                                                       ntf_id(rows[1]["id"]),
                                                       ntf_id(rows[0]["id"])]
    ids = [e["id"] for e in replayed]
    assert ids == sorted(ids) and ids[0] > last_id
    # Counts were sent on connect and have not changed since: not again.
    assert again.quiet() == []
    # Then live, from where the replay ended.
    (later,) = make("alice", 1)
    assert again.next()["data"]["id"] == ntf_id(later["id"])
    again.close()


def test_reconnecting_with_the_newest_id_replays_nothing(app: Any, hub: StreamHub,
                                                         make: Any) -> None:
    make("alice", 2)
    stream, first = opened(hub, Scope("alice"), last_event_id=head(app))
    assert stream.quiet() == []
    stream.close()


@pytest.mark.parametrize("missed, reset", [(1000, False), (1001, True)])
def test_a_gap_over_the_limit_is_a_reset(app: Any, hub: StreamHub, make: Any,
                                         monkeypatch: pytest.MonkeyPatch, missed: int,
                                         reset: bool) -> None:
    scope = Scope("alice")
    start = head(app)
    make("alice", missed)
    make("bob", 10)
    calls: list[tuple[int | None, int, bool]] = []
    user_changes_after = changelog.user_changes_after

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append((kwargs.get("upto"), kwargs["limit"], kwargs.get("with_rows", True)))
        return user_changes_after(*args, **kwargs)

    monkeypatch.setattr(changelog, "user_changes_after", counted)
    stream, _ = opened(hub, scope, last_event_id=start)
    if reset:
        event = stream.next()
        assert event["event"] == "reset" and event["id"] == head(app)
        assert "detail" in event["data"]
        # Found out without reading a row: the first page, then the positions only.
        assert [(limit, rows) for _, limit, rows in calls] == [(REPLAY_PAGE, True),
                                                                (1000, False)]
        # The counts sent on connect are those of now: not again.
        assert stream.quiet() == []
    else:
        events = stream.take(missed)
        assert [e["event"] for e in events] == ["notification.created"] * missed
        ids = [e["id"] for e in events]
        assert ids == sorted(ids) and len(set(ids)) == missed
        # Rows are read a page at a time.
        assert len(calls) == 2 + missed // REPLAY_PAGE
        assert all(limit == REPLAY_PAGE and rows for _, limit, rows in calls[2:])
        assert stream.quiet() == []
    stream.close()


@pytest.mark.parametrize("missed, reset", [(10, False), (11, True)])
def test_a_replay_limit_below_a_page_holds(app: Any, hub: StreamHub, make: Any, missed: int,
                                           reset: bool) -> None:
    start = head(app)
    make("alice", missed)
    stream, _ = opened(hub, Scope("alice"), last_event_id=start, replay_limit=10)
    events = stream.quiet()
    if reset:
        assert [e["event"] for e in events] == ["reset"]
    else:
        assert [e["event"] for e in events] == ["notification.created"] * missed
    stream.close()


def test_a_position_the_log_no_longer_holds_is_a_reset(app: Any, hub: StreamHub,
                                                       make: Any) -> None:
    start = head(app)
    make("alice", 3)
    with app.app_context():
        assert changelog.trim(0)["deleted"] >= 3
        assert changelog.bounds().floor > start
    stream, _ = opened(hub, Scope("alice"), last_event_id=start)
    event = stream.next()
    assert event["event"] == "reset" and event["id"] == head(app)
    assert stream.quiet() == []
    # The stream goes on live from there.
    (row,) = make("alice", 1)
    assert stream.next()["data"]["id"] == ntf_id(row["id"])
    stream.close()


@pytest.mark.parametrize("kwargs", [{"reset": True}, {"last_event_id": 10**9}],
                         ids=["garbage", "ahead"])
def test_an_id_this_log_never_gave_out_is_a_reset(app: Any, hub: StreamHub, make: Any,
                                                  kwargs: dict[str, Any]) -> None:
    make("alice", 1)
    stream, first = opened(hub, Scope("alice"), **kwargs)
    assert "id" not in first
    event = stream.next()
    assert event["event"] == "reset" and event["id"] == head(app)
    assert stream.quiet() == []
    stream.close()


def test_a_client_that_stops_reading_holds_no_backlog_then_resets(app: Any, hub: StreamHub,
                                                                  make: Any) -> None:
    # The generator itself, not read while the changes come: a client that stopped reading.
    events = inbox_events(hub, Scope("alice"), frames=FRAMES, retry_ms=3000,
                          keepalive_interval=60)
    assert [e["event"] for e in parse(next(events) + next(events))[1:]] == ["counts"]
    (sub,) = hub.inbox_subs["alice"]
    make("alice", 1001)
    with app.app_context():
        hub.tick()
    # What the stream has not read waits in the log: the subscription holds a flag.
    assert sub.rung and sub.__slots__ == ("scope", "kinds", "dataset_id", "rung")
    with gevent.Timeout(5):
        text = next(events)
    (event,) = parse(text)
    assert event["event"] == "reset" and event["id"] == head(app)
    with gevent.Timeout(5):
        assert parse(next(events))[0]["data"]["total"] == 1001
    events.close()
    assert not hub.inbox_subs


def test_a_failed_read_ends_the_stream(app: Any, hub: StreamHub, make: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    stream, _ = opened(hub, Scope("alice"))

    def fails(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(changelog, "user_changes_after", fails)
    make("alice", 1)
    assert stream.next() == {"closed": True}
    assert not hub.inbox_subs


def test_streams_opened_after_shutdown_end_at_once(app: Any) -> None:
    hub = hub_of(app)
    hub.shutdown()
    stream = Stream(hub, Scope("alice"))
    assert stream.take(2) == [{"retry": "3000"}, {"closed": True}]
    assert not hub.inbox_subs


# --- the watcher --------------------------------------------------------------------------


def test_the_watcher_reads_the_log_once_per_tick_whatever_the_streams(
        app: Any, hub: StreamHub, make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    changes_after = changelog.changes_after

    def counted(position: int, **kwargs: Any) -> Any:
        reads.append(position)
        return changes_after(position, **kwargs)

    monkeypatch.setattr(changelog, "changes_after", counted)
    streams = [opened(hub, Scope(f"user{i % 5}"))[0] for i in range(20)]
    # Ticks only when the test says.
    hub.watcher.stop()
    gevent.sleep(0.05)
    with app.app_context():
        hub.tick()
    reads.clear()
    for i in range(5):
        make(f"user{i}", 1)
    with app.app_context():
        hub.tick()
    assert len(reads) == 1
    for stream in streams:
        assert stream.next()["event"] == "notification.created"
        assert stream.next()["event"] == "counts"
    assert hub.position == head(app)
    for stream in streams:
        stream.close()


def test_the_watcher_reads_stored_rows_only_for_dataset_streams(
        app: Any, hub: StreamHub, make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding every new row in every worker is only worth it when a stream takes rows."""
    from notifications.http.variants import DATASET_FRAMES
    from notifications.realtime.events import dataset_events

    asked: list[bool] = []
    changes_after = changelog.changes_after

    def counted(position: int, **kwargs: Any) -> Any:
        asked.append(kwargs.get("with_rows", True))
        return changes_after(position, **kwargs)

    monkeypatch.setattr(changelog, "changes_after", counted)
    hub.watcher.stop()
    gevent.sleep(0.05)
    inbox, _ = opened(hub, Scope("alice"))
    make("alice", 1)
    with app.app_context():
        hub.tick()
    assert asked == [False]
    assert inbox.next()["event"] == "notification.created"

    alerts = dataset_events(hub, Scope("alice"), None, None, frames=DATASET_FRAMES,
                            ping_interval=60, retry_ms=3000, replay_limit=10)
    assert next(alerts) == "retry: 3000\n\n"
    next(alerts)  # the cursor
    asked.clear()
    [row] = make("alice", 1, title="for the dataset stream")
    with app.app_context():
        hub.tick()
    assert asked == [True]
    assert row["id"] in next(alerts)
    alerts.close()
    inbox.close()


def test_a_dataset_stream_opened_during_a_read_gets_the_rows_read_again(
        app: Any, hub: StreamHub, make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[bool] = []
    changes_after = changelog.changes_after

    def counted(position: int, **kwargs: Any) -> Any:
        asked.append(kwargs.get("with_rows", True))
        return changes_after(position, **kwargs)

    monkeypatch.setattr(changelog, "changes_after", counted)
    answers = iter([False, True, True])
    monkeypatch.setattr(hub, "wants_rows", lambda: next(answers))
    delivered: list[Any] = []
    monkeypatch.setattr(hub, "deliver_changes", delivered.extend)
    hub.watcher.stop()
    gevent.sleep(0.05)
    [row] = make("alice", 1)
    with app.app_context():
        hub.tick()
    assert asked == [False, True]
    assert [c.row["id"] for c in delivered if c.row is not None] == [row["id"]]


def test_the_watcher_pages_through_a_large_change(app: Any, hub: StreamHub, make: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from notifications.realtime import watcher

    monkeypatch.setattr(watcher, "CHANGE_PAGE", 7)
    position = hub.position
    make("alice", 20)
    with app.app_context():
        hub.tick()
    assert hub.position == head(app) == position + 20
    with app.app_context():
        assert hub.last_seq == feed.newest_seq()


def test_purge_and_marks_update_organization_counts_through_the_log(
        app: Any, hub: StreamHub, make: Any) -> None:
    from notifications.http.variants import ORGANIZATION_FRAMES

    org = organization_events(hub, ("alice", "acme"), frames=ORGANIZATION_FRAMES,
                              keepalive_interval=60)
    rows = make("alice", 3, organization_id="acme")
    make("alice", 2, organization_id="other")

    def unread() -> int:
        with gevent.Timeout(5):
            return int(json.loads(next(org).split("data: ")[1])["unread"])

    assert unread() == 3
    with app.app_context():
        marks.mark_ids_read(Scope.organization_api("alice", "acme"), [rows[0]["id"]])
    assert unread() == 2
    with app.app_context():
        inbox.bulk_ids(Scope("alice"), [rows[1]["id"]], ACTION_UPDATES[Action.READ])
    assert unread() == 1
    # A purge of unread rows and a retention pass delete rows: the log says whose.
    with app.app_context():
        purge.purge(now_us() + 1, read_only=True)
        purge.purge(now_us() + 1)
    assert unread() == 0
    org.close()


def test_dataset_stream_frames_are_the_stored_rows(app: Any, hub: StreamHub,
                                                   make: Any) -> None:
    from notifications.http.variants import DATASET_FRAMES

    events = dataset_events(hub, Scope("alice"), None, None, frames=DATASET_FRAMES,
                            ping_interval=60, retry_ms=3000, replay_limit=10)
    assert next(events) == "retry: 3000\n\n"
    assert next(events) == f"id: {hub.last_seq}\n\n"
    rows = make("alice", 2, dataset_id=DATASET, metadata={"is_alert": True},
                title="t", body="b")
    with app.app_context():
        hub.tick()
        stored = feed.replay(Scope("alice"), None, rows[0]["seq"] - 1, rows[-1]["seq"], 10)
    with gevent.Timeout(5):
        text = next(events)
    # Byte for byte what the rows read from the table frame as, ids their seq.
    assert text == "".join(DATASET_FRAMES.notification(row) for row in stored)
    assert hub.last_seq == rows[-1]["seq"]
    events.close()


def test_a_watcher_the_log_was_trimmed_past_resets_its_streams(app: Any, hub: StreamHub,
                                                               make: Any) -> None:
    from notifications.http.variants import DATASET_FRAMES
    from notifications.realtime.subscriptions import OVERFLOW

    dataset = dataset_events(hub, Scope("alice"), None, None, frames=DATASET_FRAMES,
                             ping_interval=60, retry_ms=3000, replay_limit=10)
    next(dataset), next(dataset)
    stream, _ = opened(hub, Scope("alice"))
    hub.watcher.position = -1  # below any floor: as if it had slept through a trim
    make("alice", 1)
    with app.app_context():
        changelog.trim(0)
        hub.tick()
    (sub,) = hub.dataset_subs["alice"]
    assert OVERFLOW in sub.items
    assert "event: reset" in next(dataset)
    assert stream.next()["event"] == "reset"
    dataset.close()
    stream.close()
