"""The change log: every write appends its entries in its own transaction, and the reads
the streams and the watcher use (pages, per-user replay, gaps) and its retention."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import DATASET, SECRET, Runner, raw_connect

from notifications import create_app
from notifications.core.errors import ConfigError
from notifications.core.kinds import parse_kinds
from notifications.core.states import ACTION_UPDATES, Action, update_for
from notifications.extension import state
from notifications.ops import retention
from notifications.store import changelog, inbox, inserts, marks, purge, seeding, write
from notifications.store.engine import SCHEMA_VERSION
from notifications.store.importer import Importer
from notifications.store.inbox import InboxFilter
from notifications.store.rows import now_us
from notifications.store.scope import Scope

pytestmark = pytest.mark.both_databases

DAY_US = 86_400 * 1_000_000
INGEST_TOKEN = "ingest-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "INGEST_TOKEN": INGEST_TOKEN}


def backend_of(app: Any) -> str:
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    return "postgresql" if url.startswith("postgres") else "sqlite"


def entries(app: Any, after: int = 0) -> list[tuple[Any, ...]]:
    """The log after a position, read with a plain connection: (position, change, id, seq,
    user, org, dataset, kind, seen_at, read_at, archived_at)."""
    with raw_connect(app) as conn:
        return [tuple(e) for e in conn.execute(
            "SELECT * FROM changes WHERE position > ? ORDER BY position", (after,)).fetchall()]


def head(app: Any) -> int:
    with app.app_context():
        return changelog.head_position()


def row(app: Any, notification_id: str) -> dict[str, Any]:
    with raw_connect(app) as conn:
        return conn.rows("SELECT * FROM notifications WHERE id = ?", (notification_id,))[0]


def kinds_of(found: list[tuple[Any, ...]]) -> list[tuple[str, str]]:
    """(change, notification id) of each entry, in order."""
    return [(e[1], e[2]) for e in found]


# --- every write source -----------------------------------------------------------------


def test_created_notifications_are_logged_with_their_row(app: Any, make: Any) -> None:
    rows = make("alice", 2, organization_id="acme", dataset_id=DATASET, kind="review.created")
    rows += make("bob", 1, read_at=5)
    found = entries(app)
    assert kinds_of(found) == [("created", r["id"]) for r in rows]
    assert [e[0] for e in found] == [1, 2, 3]
    assert found[0][3:] == (rows[0]["seq"], "alice", "acme", DATASET, "review.created",
                            None, None, None)
    # A row stored read is stored seen (reading implies seeing).
    assert found[2][3:] == (rows[2]["seq"], "bob", None, None, "", 5, 5, None)
    assert row(app, rows[2]["id"])["seen_at"] == 5


def test_ingest_logs_only_what_it_stored(app: Any, client: Any) -> None:
    items = [{"user_id": "alice", "dedupe_key": "k1"}, {"user_id": "alice", "dedupe_key": "k1"},
             {"user_id": "bob"}]
    response = client.post("/internal/v1/notifications", data=json.dumps({"notifications": items}),
                           headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
                           content_type="application/json")
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    assert [(e[1], e[4]) for e in entries(app)] == [("created", "alice"), ("created", "bob")]
    # The same dedupe key again: nothing stored, nothing logged.
    with app.app_context():
        ids, created = inserts.ingest_notifications([{"user_id": "alice", "dedupe_key": "k1"}])
    assert created == 0 and len(entries(app)) == 2


def test_insert_tuples_and_seeding_are_logged(app: Any) -> None:
    with app.app_context():
        rows = [inserts.as_tuple(inserts.new_row({"user_id": "carol", "read_at": 7}))
                for _ in range(3)]
        assert inserts.insert_tuples(rows) == 3
        assert inserts.insert_tuples(rows, skip_existing=True) == 0
        seeded = seeding.seed(users=2, per_user=5, orgs=1, datasets=1, random_seed=1)
    found = entries(app)
    assert len(found) == 3 + seeded == 13
    assert all(e[1] == "created" for e in found)
    assert found[0][8:] == (7, 7, None)
    # Seeded rows that are read are seen at the same time.
    assert all(e[8] == e[9] for e in found)
    with raw_connect(app) as conn:
        assert tuple(conn.execute(
            "SELECT count(*) FROM notifications WHERE seen_at IS DISTINCT FROM read_at"
        ).fetchone()) == (0,)


def test_imports_are_logged(app: Any, runner: Runner, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"user_id": f"u{i}", "title": f"t{i}",
                                        "created_at": f"2026-01-01T00:00:0{i}Z"}) + "\n"
                            for i in range(4)))
    result = runner.invoke("import", str(path))
    assert result.exit_code == 0, result.output
    assert [(e[1], e[4]) for e in entries(app)] == [("created", f"u{i}") for i in range(4)]
    # The importer's own path, and a second copy that finds every id stored already.
    with app.app_context():
        importer = Importer()
        try:
            importer.stage([(1, *inserts.as_tuple(inserts.new_row({"user_id": "z"})))])
            assert importer.copy() == 1
            assert importer.copy() == 0
        finally:
            importer.close()
    assert [e[4] for e in entries(app)][-1] == "z" and len(entries(app)) == 5


def test_marks_of_both_variants_are_logged_once(app: Any, client: Any, auth: Any,
                                                make: Any) -> None:
    alerts = make("alice", 3, dataset_id=DATASET)
    inbox_rows = make("alice", 2, organization_id="acme", kind="review.created")
    start = head(app)
    # The dataset variant: one, then all.
    response = client.post(f"/api/v1/notifications/{alerts[0]['id']}/read",
                           headers=auth.headers("alice"))
    assert response.status_code == 200
    response = client.post("/api/v1/notifications/read-all", headers=auth.headers("alice"),
                           query_string={"dataset_id": DATASET})
    assert response.get_json() == {"ok": True, "count": 2}
    # The organization variant, by ids (one already read: not changed, not logged).
    response = client.post("/api/v1/org/notifications/mark-read",
                           headers={**auth.headers("alice", "acme"),
                                    "Content-Type": "application/json"},
                           data=json.dumps({"ids": ["ntf_" + r["id"].replace("-", "")
                                                    for r in inbox_rows]}))
    assert response.status_code == 200
    client.post("/api/v1/org/notifications/mark-read",
                headers={**auth.headers("alice", "acme"), "Content-Type": "application/json"},
                data=json.dumps({"ids": ["ntf_" + inbox_rows[0]["id"].replace("-", "")]}))
    found = entries(app, start)
    expected = [alerts[0]["id"], *sorted([alerts[1]["id"], alerts[2]["id"]]),
                *sorted(r["id"] for r in inbox_rows)]
    assert [e[1] for e in found] == ["updated"] * 5
    assert [found[0][2], *sorted([found[1][2], found[2][2]]),
            *sorted([found[3][2], found[4][2]])] == expected
    for entry in found:
        # Reading implies seeing: both times set, and equal.
        assert entry[9] is not None and entry[8] == entry[9] and entry[10] is None
        stored = row(app, entry[2])
        assert (stored["seen_at"], stored["read_at"]) == (entry[8], entry[9])


def test_the_mark_read_command_is_logged(app: Any, runner: Runner, make: Any) -> None:
    rows = make("alice", 2) + make("bob", 1)
    start = head(app)
    result = runner.invoke("mark-read", "--user", "alice", "--all")
    assert result.exit_code == 0, result.output
    assert sorted(kinds_of(entries(app, start))) == sorted(("updated", r["id"]) for r in rows[:2])
    assert runner.invoke("mark-read", "--user", "alice", "--all").exit_code == 0
    assert len(entries(app, start)) == 2
    with app.app_context():
        assert marks.mark_read_for_user("bob", [rows[2]["id"]]) == 1
    assert entries(app)[-1][1:3] == ("updated", rows[2]["id"])


def test_purge_and_retention_log_each_deletion_with_its_last_state(app: Any, make: Any) -> None:
    now = now_us()
    old = make("alice", 3, created_at=now - 40 * DAY_US)
    kept = make("alice", 1)
    with app.app_context():
        marks.mark_ids_read(Scope("alice"), [old[0]["id"]])
        start = changelog.head_position()
        assert purge.purge(now - 30 * DAY_US, read_only=True) == {"deleted": 1, "unread": 0}
        read_time = entries(app, start)[0][9]
        assert kinds_of(entries(app, start)) == [("deleted", old[0]["id"])]
        assert read_time is not None and entries(app, start)[0][8] == read_time
        assert purge.purge(now - 30 * DAY_US, dry_run=True)["deleted"] == 2
        assert len(entries(app, start)) == 1  # a dry run changes nothing
    state(app).retention = retention.parse_policy("unread=30d")
    start = head(app)
    assert retention.run_once(app) == {"deleted": 2, "unread": 2}
    found = entries(app, start)
    assert sorted(kinds_of(found)) == sorted(("deleted", r["id"]) for r in old[1:])
    assert all(e[8:] == (None, None, None) for e in found)
    assert [r["id"] for r in kept] == [row(app, kept[0]["id"])["id"]]


def test_v2_changes_are_logged_only_when_the_state_changes(app: Any, make: Any) -> None:
    rows = make("alice", 3, organization_id="acme")
    scope = Scope.dataset_api("alice", "acme")
    start = head(app)
    with app.app_context():
        assert inbox.patch(scope, rows[0]["id"], update_for([Action.READ]), now=10).changed
        assert not inbox.patch(scope, rows[0]["id"], update_for([Action.READ]), now=20).changed
        assert not inbox.patch(scope, rows[0]["id"], update_for([Action.SEEN]), now=30).changed
        assert inbox.patch(scope, rows[0]["id"], update_for([Action.UNREAD]), now=40).changed
        assert inbox.bulk_ids(scope, [r["id"] for r in rows], ACTION_UPDATES[Action.ARCHIVE],
                              now=50) == 3
        assert inbox.bulk_filter(scope, InboxFilter(archived="true"),
                                 ACTION_UPDATES[Action.UNARCHIVE], now=60) == 3
        assert inbox.bulk_filter(scope, InboxFilter(), ACTION_UPDATES[Action.UNARCHIVE],
                                 now=70) == 0
    found = entries(app, start)
    first = rows[0]["id"]
    assert [(e[1], e[2], e[8:]) for e in found[:2]] == [
        ("updated", first, (10, 10, None)),   # read: seen and read at 10
        ("updated", first, (10, None, None)),  # unread: stays seen
    ]
    assert sorted((e[2], e[10]) for e in found[2:5]) == sorted((r["id"], 50) for r in rows)
    assert [e[10] for e in found[5:]] == [None] * 3 and len(found) == 8


def test_raw_writes_are_logged_too(app: Any, make: Any) -> None:
    """Writes from outside the service (a sqlite3 shell, a psql session) are logged too."""
    rows = make("alice", 2)
    start = head(app)
    with raw_connect(app) as conn:
        conn.execute("UPDATE notifications SET archived_at = 99 WHERE id = ?", (rows[0]["id"],))
        # Columns the log does not follow, and a state set to the value it has: no entry.
        conn.execute("UPDATE notifications SET title = 'edited'")
        conn.execute("UPDATE notifications SET read_at = NULL, seen_at = seen_at")
        conn.execute("DELETE FROM notifications WHERE id = ?", (rows[1]["id"],))
        conn.execute("INSERT INTO notifications (id, user_id, created_at) VALUES ('raw', 'dan', 1)")
    found = entries(app, start)
    assert [(e[1], e[2], e[10]) for e in found] == [
        ("updated", rows[0]["id"], 99), ("deleted", rows[1]["id"], None), ("created", "raw", None),
    ]


def test_an_entry_commits_with_its_change_and_not_before(app: Any, make: Any) -> None:
    make("alice")
    before = entries(app)
    conn = raw_connect(app, autocommit=True)
    try:
        conn.begin_write()
        conn.execute("INSERT INTO notifications (id, user_id, created_at) VALUES ('tx', 'dan', 1)")
        assert entries(app) == before  # another connection sees neither row nor entry
        conn.execute("ROLLBACK")
        assert entries(app) == before
        conn.begin_write()
        conn.execute("INSERT INTO notifications (id, user_id, created_at) VALUES ('tx', 'dan', 1)")
        conn.execute("COMMIT")
    finally:
        conn.close()
    assert [e[2] for e in entries(app)] == [before[0][2], "tx"]
    # SQLite hands out the next position again after a rollback; a PostgreSQL sequence
    # does not (positions only ever grow on both).
    assert entries(app)[-1][0] == before[-1][0] + (2 if backend_of(app) == "postgresql" else 1)


def test_a_failed_job_leaves_no_entry(app: Any, make: Any) -> None:
    make("alice")
    before = entries(app)

    def half_done(conn: Any) -> None:
        inserts._insert_job(conn, [inserts.as_tuple(inserts.new_row({"user_id": "x"}))],
                            None, False)
        raise RuntimeError("changed my mind")

    with app.app_context():
        with pytest.raises(RuntimeError):
            write(half_done)
        # A batch with a repeated id fails whole: neither row is stored nor logged.
        duplicate = inserts.new_row({"user_id": "y"})
        with pytest.raises(Exception, match="(?i)unique"):
            inserts.create_notifications([duplicate, duplicate])
        inserts.create_notifications([{"user_id": "z"}])
    found = entries(app)
    assert found[:-1] == before and [e[4] for e in found[len(before):]] == ["z"]
    assert found[-1][0] > before[-1][0]


def test_a_failed_job_in_a_group_commit_leaves_only_its_own_entries_out(app: Any) -> None:
    """Jobs of one transaction: the failing one is undone alone (its savepoint)."""
    import threading

    from notifications.store import current_store
    from notifications.store import writer as writer_module

    with app.app_context():
        writer = current_store().writer
    release = threading.Event()
    started = threading.Event()

    def slow(conn: Any) -> None:
        started.set()
        release.wait(5)

    def good(conn: Any, user: str) -> None:
        inserts._insert_job(conn, [inserts.as_tuple(inserts.new_row({"user_id": user}))],
                            None, False)

    def bad(conn: Any) -> None:
        good(conn, "bad")
        raise RuntimeError("no")

    results: dict[str, Any] = {}

    def run(name: str, fn: Any, *args: Any) -> None:
        try:
            results[name] = writer.run(fn, *args)
        except Exception as exc:  # the failing job's error comes back to its caller
            results[name] = exc

    old = writer_module.BATCH_MS
    writer_module.BATCH_MS = 60_000.0
    try:
        blocker = threading.Thread(target=run, args=("slow", slow))
        blocker.start()
        assert started.wait(5)
        threads = [threading.Thread(target=run, args=args) for args in
                   (("a", good, "a"), ("bad", bad), ("b", good, "b"))]
        for thread in threads:
            thread.start()
        while writer.depth < 3:
            threading.Event().wait(0.01)
        release.set()
        for thread in (blocker, *threads):
            thread.join(10)
    finally:
        writer_module.BATCH_MS = old
    assert isinstance(results["bad"], RuntimeError)
    assert sorted(e[4] for e in entries(app)) == ["a", "b"]
    positions = [e[0] for e in entries(app)]
    # PostgreSQL's sequence does not hand the undone transaction's positions out again.
    assert positions == sorted(positions)
    assert backend_of(app) == "postgresql" or positions == [1, 2]


def test_positions_only_grow_even_after_the_log_was_emptied(app: Any, make: Any) -> None:
    make("alice", 3)
    with app.app_context():
        top = changelog.head_position()
        changelog.trim(DAY_US, now=now_us() - 2 * DAY_US)  # a mark two days ago...
        assert changelog.trim(DAY_US)["deleted"] == 3        # ...so today everything goes
        assert entries(app) == []
        assert changelog.bounds() == changelog.Bounds(floor=top, head=top)
        stored = inserts.create_notifications([{"user_id": "alice"}])
    assert [(e[0], e[2]) for e in entries(app)] == [(top + 1, stored[0]["id"])]


# --- reading the log ------------------------------------------------------------------------


def test_pages_of_every_users_changes(app: Any, make: Any) -> None:
    rows = make("alice", 2, organization_id="acme") + make("bob", 1)
    with app.app_context():
        marks.mark_ids_read(Scope("alice"), [rows[0]["id"]])
        page = changelog.changes_after(0)
        assert [(c.change, c.notification_id) for c in page.changes] == [
            ("created", rows[0]["id"]), ("created", rows[1]["id"]), ("created", rows[2]["id"]),
            ("updated", rows[0]["id"])]
        assert page.position == 4 and not page.more and not page.gap
        first = page.changes[0]
        assert first.row is not None and first.row["id"] == rows[0]["id"]
        # The row as stored now: it was read since.
        assert first.row["read_at"] is not None and first.row["seen_at"] == first.row["read_at"]
        assert first.row["metadata"] == {} and first.row["collapsed_count"] == 0
        assert page.changes[3].row is None and page.changes[3].state.read_at is not None
        assert changelog.changes_after(0, with_rows=False).changes[0].row is None
        small = changelog.changes_after(1, limit=2)
        assert [c.position for c in small.changes] == [2, 3] and small.more
        assert changelog.changes_after(4) == changelog.ChangePage([], 4, False, False)
        # A created row deleted since has no row any more; its deletion follows.
        purge.purge(now_us() + DAY_US)
        later = changelog.changes_after(0)
        assert later.changes[0].row is None
        assert [c.change for c in later.changes[4:]] == ["deleted"] * 3


def test_a_reader_behind_the_floor_is_told_of_the_gap(app: Any, make: Any) -> None:
    make("alice", 4)
    with app.app_context():
        changelog.trim(DAY_US, now=now_us() - 2 * DAY_US)
        make("alice", 1)
        assert changelog.trim(DAY_US, chunk=3) == {"deleted": 4, "floor": 4}
        behind = changelog.changes_after(2)
        assert behind.gap and [c.position for c in behind.changes] == [5]
        at_floor = changelog.changes_after(4)
        assert not at_floor.gap and [c.position for c in at_floor.changes] == [5]
        assert not changelog.changes_after(5).gap
        # Beyond the head (a restored backup holds an older log): start again too.
        assert changelog.changes_after(6).gap


def test_a_replay_is_the_callers_changes_in_scope(app: Any, make: Any) -> None:
    mine = make("alice", 2, organization_id="acme", kind="review.created", dataset_id=DATASET)
    mine += make("alice", 1, kind="api.quota.warning")
    make("alice", 1, organization_id="globex")
    make("bob", 2, organization_id="acme")
    scope = Scope.dataset_api("alice", "acme")
    with app.app_context():
        marks.mark_ids_read(Scope("alice"), [mine[0]["id"]])
        replay = changelog.user_changes_after(scope, 0)
        assert replay.reset is None and replay.head == 7
        assert [(c.change, c.notification_id) for c in replay.changes] == [
            ("created", mine[0]["id"]), ("created", mine[1]["id"]), ("created", mine[2]["id"]),
            ("updated", mine[0]["id"])]
        assert replay.changes[0].row is not None
        assert replay.changes[0].row["title"] == ""
        after_first = changelog.user_changes_after(scope, replay.changes[0].position)
        assert [c.position for c in after_first.changes] == [c.position for c in
                                                             replay.changes[1:]]
        reviews = changelog.user_changes_after(scope, 0, kinds=parse_kinds(["review.*"]))
        assert {c.notification_id for c in reviews.changes} == {mine[0]["id"], mine[1]["id"]}
        in_dataset = changelog.user_changes_after(scope, 0, dataset_id=DATASET, upto=2)
        assert [c.notification_id for c in in_dataset.changes] == [mine[0]["id"], mine[1]["id"]]
        everything = changelog.user_changes_after(Scope("alice"), 0, with_rows=False)
        assert len(everything.changes) == 5 and everything.changes[0].row is None


def test_a_replay_that_cannot_be_whole_says_why(app: Any, make: Any) -> None:
    make("alice", 5)
    scope = Scope("alice")
    with app.app_context():
        assert changelog.user_changes_after(scope, 0, limit=5).reset is None
        too_many = changelog.user_changes_after(scope, 0, limit=4)
        assert too_many.reset == "too_many" and too_many.changes == []
        assert changelog.user_changes_after(scope, 1, limit=4).reset is None
        assert changelog.user_changes_after(scope, 6).reset == "ahead"
        assert changelog.user_changes_after(scope, 5) == changelog.Replay([], None, 5)
        changelog.trim(DAY_US, now=now_us() - 2 * DAY_US)
        make("alice", 1)
        changelog.trim(DAY_US)
        assert changelog.user_changes_after(scope, 4).reset == "gap"
        assert [c.position for c in changelog.user_changes_after(scope, 5).changes] == [6]


# --- retention ------------------------------------------------------------------------------


def test_retention_deletes_only_entries_older_than_a_mark(app: Any, make: Any) -> None:
    now = now_us()
    make("alice", 3)
    with app.app_context():
        # No mark old enough yet: nothing goes, whatever the time.
        assert changelog.trim(7 * DAY_US, now=now - 10 * DAY_US) == {"deleted": 0, "floor": 0}
        make("alice", 2)
        changelog.trim(7 * DAY_US, now=now - 5 * DAY_US)   # marks position 5
        make("alice", 1)
        assert changelog.trim(7 * DAY_US, now=now) == {"deleted": 3, "floor": 3}
        assert [e[0] for e in entries(app)] == [4, 5, 6]
        # Two days later the mark of position 5 is old enough.
        assert changelog.trim(7 * DAY_US, now=now + 2 * DAY_US) == {"deleted": 2, "floor": 5}
        assert changelog.trim(7 * DAY_US, now=now + 2 * DAY_US)["deleted"] == 0
    with raw_connect(app) as conn:
        # Only the marks still needed are kept.
        marked = [tuple(m) for m in
                  conn.execute("SELECT position FROM change_marks ORDER BY 1").fetchall()]
    assert marked == [(5,), (6,)]


def test_retention_goes_in_chunks(app: Any, make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    make("alice", 10)
    with app.app_context():
        changelog.trim(DAY_US, now=now_us() - 2 * DAY_US)
        pauses: list[int] = []
        result = changelog.trim(DAY_US, chunk=3, pause=lambda: pauses.append(1))
    assert result == {"deleted": 10, "floor": 10} and len(pauses) == 3


def test_the_retention_pass_keeps_the_log_to_its_setting(app: Any, make: Any) -> None:
    assert retention.changelog_retention_of(app) == 7 * 86_400
    make("alice", 2)
    with app.app_context():
        changelog.trim(7 * DAY_US, now=now_us() - 8 * DAY_US)
    assert retention.run_changelog_once(app) == {"deleted": 2, "floor": 2,
                                                 "deliveries_deleted": 0}
    assert retention.run_changelog_once(app)["deleted"] == 0


@pytest.mark.parametrize(("value", "seconds"), [("7d", 604_800), ("12h", 43_200),
                                                 ("1d12h", 129_600), ("90m", 5_400)])
def test_the_change_log_retention_setting(value: str, seconds: int, db_url: str) -> None:
    app = create_app({"DATABASE_URL": db_url, "JWT_SECRET": SECRET, "CHANGELOG_RETENTION": value})
    try:
        assert retention.changelog_retention_of(app) == seconds
    finally:
        state(app).store.close()


@pytest.mark.parametrize("value", ["", "off", "7", "0d", "seven days", "-1d"])
def test_a_bad_change_log_retention_stops_the_start(value: str, db_url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app({"DATABASE_URL": db_url, "JWT_SECRET": SECRET, "CHANGELOG_RETENTION": value})
    assert "NOTIFICATIONS_CHANGELOG_RETENTION" in str(caught.value)


# --- the upgrade from version 3 ---------------------------------------------------------------


@pytest.mark.sqlite_only
def test_a_version_3_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((ROOT / "tests" / "fixtures" / "schema_v3.sql").read_text())
        conn.executemany(
            "INSERT INTO notifications (id, user_id, organization_id, kind, title, created_at, "
            "read_at, read_seq, dedupe_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [("r1", "alice", "acme", "review.created", "read", 10, 20, 1, None),
             ("u1", "alice", None, "monitor.alert", "unread", 11, None, None, "k1"),
             ("r2", "bob", None, "x", "read too", 12, 30, 1, None)])
        conn.execute("UPDATE counters SET value = 1 WHERE name = 'read'")
        conn.execute("PRAGMA user_version = 3")
        before = conn.execute("SELECT * FROM notifications ORDER BY seq").fetchall()
    url = f"sqlite:///{path}"
    app = create_app({"DATABASE_URL": url, "JWT_SECRET": SECRET})
    try:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
            after = conn.execute("SELECT * FROM notifications ORDER BY seq").fetchall()
            # Every stored value is kept but read_seq (version 5 dropped it, the last column
            # of version 3); the new columns follow, seen where read, and no collapse key.
            assert [r[:15] for r in after] == [r[:15] for r in before]
            assert [r[15:] for r in after] == [(20, None, 0, None), (None, None, 0, None),
                                               (30, None, 0, None)]
            assert "read_seq" not in columns(conn, "notifications")
            # The backfill wrote no entries: the log starts empty, at position 0.
            assert conn.execute("SELECT count(*) FROM changes").fetchone() == (0,)
            assert dict(conn.execute("SELECT name, value FROM counters")) == {"changes_floor": 0}
            indexes = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'ix_%'")}
            assert not {"ix_notifications_unread", "ix_notifications_read_seq"} & indexes
            assert {"ix_notifications_unread_state", "ix_notifications_user_timeline",
                    "ix_notifications_archived", "ix_changes_user"} <= indexes
            assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name IN "
                                "('ux_notifications_collapse', 'preferences')").fetchone() == (2,)
        with app.app_context():
            assert changelog.bounds() == changelog.Bounds(0, 0)
            scope = Scope("alice")
            assert inbox.counts(scope) == inbox.Counts(total=2, unread=1, unseen=1)
            assert inbox.patch(scope, "u1", update_for([Action.READ]), now=50).changed
            assert [(c.change, c.notification_id, c.state.seen_at) for c in
                    changelog.changes_after(0).changes] == [("updated", "u1", 50)]
            # Ingest still skips the stored dedupe key.
            assert inserts.ingest_notifications([{"user_id": "alice", "dedupe_key": "k1"}])[1] == 0
    finally:
        state(app).store.close()
    # Starting again (another worker, init-db) changes nothing.
    again = create_app({"DATABASE_URL": url, "JWT_SECRET": SECRET})
    state(again).store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM changes").fetchone() == (1,)


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


# --- the upgrade from version 4 ---------------------------------------------------------------


def test_a_version_4_database_loses_the_read_counter_and_read_seq(tmp_path: Path) -> None:
    """Version 5 dropped what the change log replaced; rows, states and the log are kept."""
    path = tmp_path / "v4.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((ROOT / "tests" / "fixtures" / "schema_v4.sql").read_text())
        conn.execute("PRAGMA user_version = 4")
        conn.executemany(
            "INSERT INTO notifications (id, user_id, organization_id, kind, title, created_at, "
            "read_at, read_seq, seen_at, archived_at, collapsed_count, dedupe_key) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [("r1", "alice", "acme", "review.created", "read", 10, 20, 1, 15, None, 0, None),
             ("a1", "alice", None, "monitor.alert", "archived", 11, None, None, 12, 13, 2, "k1"),
             ("u1", "bob", None, "x", "unread", 12, None, None, None, None, 0, None)])
        conn.execute("UPDATE counters SET value = 1 WHERE name = 'read'")
        conn.execute("UPDATE counters SET value = 3 WHERE name = 'purge'")
        before = [dict(zip(columns(conn, "notifications"), row, strict=True)) for row in
                  conn.execute("SELECT * FROM notifications ORDER BY seq")]
        log_before = conn.execute("SELECT * FROM changes ORDER BY position").fetchall()
    assert len(log_before) == 3
    url = f"sqlite:///{path}"
    app = create_app({"DATABASE_URL": url, "JWT_SECRET": SECRET})
    try:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
            names = columns(conn, "notifications")
            assert "read_seq" not in names
            after = [dict(zip(names, row, strict=True)) for row in
                     conn.execute("SELECT * FROM notifications ORDER BY seq")]
            # Every value is kept but read_seq; version 5's collapse key follows, empty.
            assert after == [{**{k: v for k, v in row.items() if k != "read_seq"},
                              "collapse_key": None} for row in before]
            assert conn.execute("SELECT * FROM changes ORDER BY position").fetchall() == log_before
            assert dict(conn.execute("SELECT name, value FROM counters")) == {"changes_floor": 0}
            assert conn.execute("SELECT name FROM sqlite_master WHERE name = "
                                "'ix_notifications_read_seq'").fetchall() == []
            assert set(LOG_TRIGGERS) <= {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        with app.app_context():
            scope = Scope("alice")
            assert inbox.counts(scope) == inbox.Counts(total=1, unread=0, unseen=0)
            assert marks.mark_ids_read(Scope("bob"), ["u1"]) == 1
            assert [(c.change, c.notification_id) for c in
                    changelog.changes_after(3).changes] == [("updated", "u1")]
    finally:
        state(app).store.close()
    # Starting again (another worker, init-db) changes nothing.
    again = create_app({"DATABASE_URL": url, "JWT_SECRET": SECRET})
    state(again).store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM changes").fetchone() == (4,)
        assert "read_seq" not in columns(conn, "notifications")


LOG_TRIGGERS = ("tr_notifications_created", "tr_notifications_updated",
                "tr_notifications_deleted")
