"""Stream building blocks without a server: change queries, leases, early refusals, tail."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from typing import Any

import pytest
from conftest import active_leases, notifications_command

from notifications.store import feed, leases, marks
from notifications.store.scope import Scope


def test_unread_counts_count_each_pair_exactly(app: Any, make: Any) -> None:
    with app.app_context():
        rows = make("alice", 2, organization_id="acme") + make("bob", 1) + make("alice", 1)
        marks.mark_ids_read(Scope.organization_api("alice", "acme"), [rows[0]["id"]])
        assert feed.unread_counts([("alice", "acme"), ("bob", None), ("alice", None)]) == {
            ("alice", "acme"): 1, ("bob", None): 1, ("alice", None): 1,
        }
        assert feed.newest_seq() == rows[-1]["seq"]


def test_replay_is_scoped_filtered_and_bounded(app: Any, make: Any) -> None:
    dataset = "a981fc0c-2d1f-11f1-a7ca-d2580fa2deac"
    with app.app_context():
        mine = make("alice", 3, dataset_id=dataset)
        make("alice", 1, organization_id="other")
        make("bob", 1, dataset_id=dataset)
        head = feed.newest_seq()
        scope = Scope.dataset_api("alice", "acme")
        replayed = feed.replay(scope, dataset, mine[0]["seq"], head, 10)
        assert [r["id"] for r in replayed] == [r["id"] for r in mine[1:]]
        assert len(feed.replay(scope, None, 0, head, 2)) == 2


def test_leases_count_across_owners_and_expire(app: Any) -> None:
    with app.app_context():
        first = leases.acquire_lease("alice", "worker-a", 2, 30_000_000)
        second = leases.acquire_lease("alice", "worker-b", 2, 30_000_000)
        assert first.lease_id and second.lease_id and second.active == 2
        refused = leases.acquire_lease("alice", "worker-a", 2, 30_000_000)
        assert refused.lease_id is None and refused.active == 2
        assert 1 <= refused.retry_after <= 30
        assert leases.acquire_lease("bob", "worker-a", 2, 30_000_000).lease_id
        leases.release_leases([first.lease_id])
        assert active_leases("alice") == 1
        # A lease that was not renewed (its worker died) stops counting.
        short = leases.acquire_lease("alice", "dead", 2, 1)
        time.sleep(0.01)
        assert active_leases("alice") == 1 and short.lease_id
        assert leases.acquire_lease("alice", "worker-a", 2, 30_000_000).lease_id
        assert leases.renew_leases("worker-a", 60_000_000) == 2
        assert leases.release_owner("worker-a") == 2
        assert active_leases("alice") == 1


def test_schema_and_model_agree_on_stream_leases(app: Any, db_url: str) -> None:
    from notifications.store.models import stream_leases as table

    conn = sqlite3.connect(db_url[len("sqlite:///"):])
    columns = {row[1]: (row[2].upper(), bool(row[3])) for row in
               conn.execute("PRAGMA table_info(stream_leases)")}
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(stream_leases)")
               if not row[1].startswith("sqlite_autoindex")}
    conn.close()
    assert set(columns) == {c.name for c in table.columns}
    for column in table.columns:
        assert columns[column.name][1] == (not column.nullable or column.primary_key)
    assert indexes == {i.name for i in table.indexes}


def test_streams_refuse_before_the_first_byte(client: Any, auth: Any, app: Any) -> None:
    assert client.get("/api/v1/notifications/stream").status_code == 401
    response = client.get("/api/v1/notifications/stream?dataset_id=nope", headers=auth.headers())
    assert response.status_code == 422
    assert response.json["detail"][0]["loc"] == ["query", "dataset_id"]
    response = client.get("/api/v1/notifications/stream?last_event_id=-1", headers=auth.headers())
    assert response.status_code == 422
    response = client.get("/api/v1/org/notifications/stream", headers=auth.headers("alice"))
    assert response.status_code == 403 and response.json["code"] == "forbidden"
    response = client.get("/api/v1/org/notifications/stream")
    assert response.status_code == 401 and response.json["code"] == "unauthorized"
    with app.app_context():
        for _ in range(app.config["STREAM_LIMIT"]):
            assert leases.acquire_lease("alice", "elsewhere", 5, 30_000_000).lease_id
    response = client.get("/api/v1/org/notifications/stream", headers=auth.headers("alice", "acme"))
    assert response.status_code == 429
    assert response.json["code"] == "sse_connection_limit_exceeded"
    assert response.json["details"] == {"limit": 5, "active": 5}
    assert int(response.headers["Retry-After"]) >= 1


def _ignore_stop_signals() -> None:
    """Start a child as a shell starts a background job, and more: SIGINT and SIGTERM ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@pytest.mark.parametrize("stop, times", [(signal.SIGINT, 1), (signal.SIGTERM, 1),
                                         (signal.SIGTERM, 2)],
                         ids=["ctrl-c", "sigterm", "sigterm-twice"])
def test_tail_follows_new_notifications_and_stops_on_ctrl_c(db_url: str, app: Any, make: Any,
                                                           stop: signal.Signals,
                                                           times: int) -> None:
    """Twice, as ``timeout`` does: to its child, then to its whole process group."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NOTIFICATIONS_")},
           "NOTIFICATIONS_DATABASE_URL": db_url}
    make("alice", 1, title="old")
    # Started with both signals ignored, as under `bash -c 'trap "" INT; ...'` or any
    # background job: tail must install its own handlers to stop at all.
    proc = subprocess.Popen(
        [*notifications_command(), "tail", "--user", "alice", "--json", "--interval", "0.05"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_ignore_stop_signals,
    )
    try:
        # Lines before this one name the database; "Following" comes once the handlers are in.
        for _ in range(5):
            if "Following" in proc.stderr.readline():
                break
        else:
            pytest.fail("tail did not say it is following")
        make("bob", 1, title="not alice")
        made = make("alice", 2, title="new", organization_id="acme")
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert [line["id"] for line in lines] == [row["id"] for row in made]
        assert lines[0]["title"] == "new" and lines[0]["organization_id"] == "acme"
    finally:
        for _ in range(times):
            proc.send_signal(stop)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()  # never leave an orphan behind, even when the test fails
            proc.communicate()
            raise
    assert proc.returncode == 0
    assert "Traceback" not in err and "Aborted" not in err


def test_tail_prints_human_lines(runner: Any, app: Any) -> None:
    result = runner.invoke("tail", "--user", "")
    assert result.exit_code != 0 and "--user" in result.output


def test_a_stalled_stream_keeps_a_bounded_backlog_then_resets(app: Any, make: Any) -> None:
    from notifications.http.variants import DATASET_FRAMES
    from notifications.realtime.events import dataset_events
    from notifications.realtime.hub import hub_of
    from notifications.realtime.subscriptions import MAX_PENDING, OVERFLOW, Delivery

    hub = hub_of(app)
    events = dataset_events(hub, Scope("alice"), None, None, frames=DATASET_FRAMES,
                            ping_interval=60, retry_ms=3000, replay_limit=10)
    assert next(events) == "retry: 3000\n\n"
    assert next(events).startswith("id: ")
    (sub,) = hub.dataset_subs["alice"]
    for seq in range(1, MAX_PENDING + 50):
        sub.push(Delivery(seq, f"frame {seq}"))
    assert list(sub.items) == [OVERFLOW]
    reset = next(events)
    assert "event: reset" in reset and "frame" not in reset
    events.close()
    assert "alice" not in hub.dataset_subs
    hub.shutdown()


def test_an_id_ahead_of_this_workers_watcher_is_not_a_reset(app: Any, make: Any) -> None:
    """A client reconnecting to a worker whose watcher has not polled yet loses nothing."""
    from notifications.http.variants import DATASET_FRAMES
    from notifications.realtime.events import dataset_events
    from notifications.realtime.hub import hub_of

    hub = hub_of(app)
    hub.start()
    seen = make("alice", 2)  # committed, but this watcher has not looked yet
    events = dataset_events(hub, Scope("alice"), None, seen[-1]["seq"], frames=DATASET_FRAMES,
                            ping_interval=60, retry_ms=3000, replay_limit=10)
    assert next(events) == "retry: 3000\n\n"
    assert next(events) == f"id: {seen[-1]['seq']}\n\n"
    later = make("alice", 1)
    with app.app_context():
        hub.tick()  # delivers all three; the two the client has are skipped
    frame = next(events)
    assert frame.startswith(f"id: {later[0]['seq']}\n") and frame.count("event: notification") == 1
    events.close()

    bogus = dataset_events(hub, Scope("alice"), None, 10**9, frames=DATASET_FRAMES,
                           ping_interval=60, retry_ms=3000, replay_limit=10)
    next(bogus)
    assert "event: reset" in next(bogus)
    bogus.close()
    hub.shutdown()


def test_a_version_1_database_is_upgraded_with_the_stream_tables(tmp_path: Any) -> None:
    """Version 2 added stream_leases; init-db adds them, keeping data and dropping the old
    read counter and ``read_seq`` (version 5)."""
    from notifications import create_app
    from notifications.store.engine import SCHEMA_VERSION

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE notifications (seq INTEGER PRIMARY KEY AUTOINCREMENT, id VARCHAR(36) NOT NULL,
            user_id VARCHAR(255) NOT NULL, organization_id VARCHAR(255), dataset_id VARCHAR(36),
            kind VARCHAR(255) NOT NULL DEFAULT '', entity_type VARCHAR(255) NOT NULL DEFAULT '',
            entity_id VARCHAR(255) NOT NULL DEFAULT '', title TEXT NOT NULL DEFAULT '', body TEXT,
            link TEXT, metadata TEXT NOT NULL DEFAULT '{}', dedupe_key VARCHAR(255),
            created_at BIGINT NOT NULL, read_at BIGINT, read_seq BIGINT);
        CREATE TABLE counters (name VARCHAR(64) PRIMARY KEY, value BIGINT NOT NULL DEFAULT 0);
        INSERT INTO counters VALUES ('read', 7);
        INSERT INTO notifications (id, user_id, created_at) VALUES ('kept', 'alice', 1);
        PRAGMA user_version = 1;
    """)
    conn.close()
    create_app({"DATABASE_URL": f"sqlite:///{path}", "REQUIRE_KEY": False})
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM stream_leases").fetchone()[0] == 0
    assert dict(conn.execute("SELECT name, value FROM counters")) == {"changes_floor": 0}
    assert "read_seq" not in {row[1] for row in conn.execute("PRAGMA table_info(notifications)")}
    assert conn.execute("SELECT id FROM notifications").fetchall() == [("kept",)]
    conn.close()


def test_a_lease_whose_release_failed_is_released_again(app: Any, monkeypatch: Any) -> None:
    """Otherwise the worker would renew it with its live leases, holding the slot for good."""
    import gevent
    from sqlalchemy.exc import OperationalError

    from notifications.realtime.hub import hub_of

    hub = hub_of(app)
    with app.app_context():
        lease = hub.acquire_lease("alice", 5)
    release, calls = leases.release_leases, []

    def fails_once(lease_ids: list[str]) -> int:
        calls.append(lease_ids)
        if len(calls) == 1:
            raise OperationalError("DELETE FROM stream_leases", {}, Exception("disk I/O error"))
        return release(lease_ids)

    monkeypatch.setattr(leases, "release_leases", fails_once)
    hub.release_lease(lease.lease_id)
    deadline = time.monotonic() + 5
    with app.app_context():
        while active_leases("alice") and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert active_leases("alice") == 0
    assert calls == [[lease.lease_id]] * 2
    hub.shutdown()


def test_streams_opened_after_shutdown_end_at_once(app: Any) -> None:
    """A worker told to stop before its first stream: a stream request still being served
    must not hold up the exit until gunicorn's graceful_timeout."""
    from itertools import islice

    from notifications.http.variants import DATASET_FRAMES, ORGANIZATION_FRAMES
    from notifications.realtime.events import dataset_events, organization_events
    from notifications.realtime.hub import hub_of

    hub = hub_of(app)
    hub.shutdown()
    events = dataset_events(hub, Scope("alice"), None, None, frames=DATASET_FRAMES,
                            ping_interval=0.01, retry_ms=3000, replay_limit=10)
    assert [e.split("\n")[0] for e in islice(events, 5)] == ["retry: 3000", "id: 0"]
    inbox = organization_events(hub, ("alice", "acme"), frames=ORGANIZATION_FRAMES,
                                keepalive_interval=0.01)
    assert list(islice(inbox, 5)) == []
    assert not hub.dataset_subs and not hub.org_subs


def test_a_last_event_id_header_no_id_could_have_gets_a_reset(client: Any, auth: Any) -> None:
    """A browser sends back whatever id it last saw; one of thousands of digits is no 500."""
    for header in ("1" * 5000, "9" * 20, "12a"):
        response = client.get("/api/v1/notifications/stream",
                              headers={**auth.headers(), "Last-Event-ID": header})
        assert response.status_code == 200
        frames = response.iter_encoded()
        assert next(frames) == b"retry: 3000\n\n"
        assert next(frames).startswith(b"id: 0\nevent: reset\n")
        response.close()


def test_workers_forked_from_one_app_hold_leases_under_their_own_names(
        app: Any, monkeypatch: Any) -> None:
    """gunicorn --preload builds the app before the fork: one worker's shutdown must not
    drop (nor its renewals keep) the other workers' leases."""
    from notifications.realtime.hub import hub_of

    hub = hub_of(app)
    built_by = hub.owner
    worker_pid = os.getpid() + 1
    monkeypatch.setattr(os, "getpid", lambda: worker_pid)
    with app.app_context():
        lease = hub.acquire_lease("alice", 5)
    assert hub.owner != built_by and f":{worker_pid}:" in hub.owner
    with app.app_context():
        assert leases.release_owner(built_by) == 0
        assert leases.release_owner(hub.owner) == 1 and lease.lease_id
    hub.shutdown()


def test_a_stopping_worker_leaves_no_lease_behind(app: Any) -> None:
    """Streams opened or ended while a worker stops (a reload) never hold a slot after it."""
    from notifications.realtime.hub import hub_of

    hub = hub_of(app)
    with app.app_context():
        before = hub.acquire_lease("alice", 5, "dataset")
        assert active_leases("alice") == 1
        hub.shutdown()
        # The shutdown released the worker's leases; a stream ending now gives its slot back
        # at once, and one opened now (it ends at once) takes none.
        hub.release_lease(before.lease_id)
        during = [hub.acquire_lease("alice", 5, "dataset") for _ in range(10)]
        assert all(lease.lease_id is not None for lease in during)
        for lease in during:
            hub.release_lease(lease.lease_id)
        assert active_leases("alice") == 0
