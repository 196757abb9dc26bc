"""Operating the service: backup, restore, check, retention and metrics (in process)."""
from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRET, Runner
from sqlalchemy import text

from notifications import create_app
from notifications.extension import state
from notifications.ops import retention
from notifications.settings import ConfigError
from notifications.store import changelog, maintenance, marks
from notifications.store.models import db
from notifications.store.rows import now_us
from notifications.store.scope import Scope

DAY_US = 86_400 * 1_000_000


def db_file(app: Any) -> Path:
    return maintenance.sqlite_file(app.config["SQLALCHEMY_DATABASE_URI"])


def rows(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT id, user_id, title, read_at FROM notifications ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


# --- backup, check, restore ---------------------------------------------------------------


def test_backup_is_a_checked_self_contained_copy(runner: Runner, make: Any, app: Any,
                                                 tmp_path: Path) -> None:
    make("alice", n=3, title="kept")
    target = tmp_path / "copy.db"
    result = runner.invoke("backup", str(target))
    assert result.exit_code == 0, result.output
    assert "Backed up 3 notifications" in result.output
    assert rows(target) == rows(db_file(app))
    assert not Path(str(target) + "-wal").exists()
    conn = sqlite3.connect(target)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    data = json.loads(runner.invoke("backup", str(target), "--json").output)
    assert data["notifications"] == 3 and data["bytes"] > 0


def test_backup_refuses_the_database_itself_and_directories(runner: Runner, app: Any,
                                                            tmp_path: Path) -> None:
    result = runner.invoke("backup", str(db_file(app)))
    assert result.exit_code == 1
    assert "cannot be the database itself" in result.output
    assert runner.invoke("backup", str(tmp_path)).exit_code == 2


def test_check_reports_and_fails_on_problems(runner: Runner, make: Any, app: Any,
                                             tmp_path: Path) -> None:
    make("alice", n=2)
    result = runner.invoke("check")
    assert result.exit_code == 0, result.output
    assert "integrity      ok" in result.output and result.output.rstrip().endswith("ok")
    report = json.loads(runner.invoke("check", "--json").output)
    assert report["ok"] and report["notifications"] == 2
    assert report["schema_version"] == report["expected_schema_version"]
    assert report["database_bytes"] > 0 and "wal_bytes" in report

    assert report["missing_triggers"] == []

    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_notifications_unread_state"))
            conn.execute(text("DROP TRIGGER tr_notifications_updated"))
    broken = json.loads(runner.invoke("check", "--json").output)
    assert not broken["ok"] and broken["missing_indexes"] == ["ix_notifications_unread_state"]
    assert broken["missing_triggers"] == ["tr_notifications_updated"]
    assert any("missing triggers: tr_notifications_updated" in p for p in broken["problems"])
    assert runner.invoke("check").exit_code == 1

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    result = runner.invoke("check", str(garbage))
    assert result.exit_code == 1 and "cannot be read as a SQLite database" in result.output
    assert runner.invoke("check", str(tmp_path / "missing.db")).exit_code == 1


def test_check_sees_a_corrupt_page(runner: Runner, make: Any, app: Any, tmp_path: Path) -> None:
    make("alice", n=2000, title="x" * 200)
    copy = tmp_path / "copy.db"
    assert runner.invoke("backup", str(copy)).exit_code == 0
    data = bytearray(copy.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 4096 * 4):
        data[offset] = 0x5A
    copy.write_bytes(bytes(data))
    result = runner.invoke("check", str(copy))
    assert result.exit_code == 1
    assert "problem:" in result.output


def test_restore_brings_back_the_backup(runner: Runner, make: Any, app: Any,
                                        tmp_path: Path) -> None:
    make("alice", n=2, title="before")
    copy = tmp_path / "copy.db"
    assert runner.invoke("backup", str(copy)).exit_code == 0
    saved = rows(copy)
    make("bob", n=3, title="after")
    result = runner.invoke("restore", str(copy))
    assert result.exit_code == 0, result.output
    assert "Restored 2 notifications" in result.output
    assert rows(db_file(app)) == saved
    # The service goes on writing to the restored database.
    make("carol", n=1)
    assert len(rows(db_file(app))) == 3
    assert runner.invoke("check").exit_code == 0


def test_restore_checks_the_file_first(runner: Runner, make: Any, app: Any,
                                       tmp_path: Path) -> None:
    make("alice", n=1)
    before = rows(db_file(app))
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"x" * 8192)
    result = runner.invoke("restore", str(bad))
    assert result.exit_code == 1 and "is not a usable backup" in result.output
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    result = runner.invoke("restore", str(other))
    assert result.exit_code == 1 and "not a notifications database" in result.output
    newer = tmp_path / "newer.db"
    assert runner.invoke("backup", str(newer)).exit_code == 0
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    result = runner.invoke("restore", str(newer))
    assert result.exit_code == 1 and "newer than this service knows" in result.output
    assert rows(db_file(app)) == before


def test_restore_refuses_while_a_server_holds_the_lock(runner: Runner, make: Any, app: Any,
                                                       tmp_path: Path) -> None:
    make("alice", n=1)
    copy = tmp_path / "copy.db"
    assert runner.invoke("backup", str(copy)).exit_code == 0
    make("bob", n=1)
    held = maintenance.hold_server_lock(db_file(app))
    try:
        result = runner.invoke("restore", str(copy))
        assert result.exit_code == 1
        assert "a server is using" in result.output and "--force" in result.output
        assert len(rows(db_file(app))) == 2
        forced = runner.invoke("restore", str(copy), "--force")
        assert forced.exit_code == 0, forced.output
        assert "restart it now" in forced.output
        assert len(rows(db_file(app))) == 1
    finally:
        maintenance.release(held)


def test_a_server_cannot_start_during_a_restore(app: Any) -> None:
    lock = maintenance.lock_path(db_file(app))
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(maintenance.MaintenanceError, match="restore .* is in progress"):
            maintenance.hold_server_lock(db_file(app))
    finally:
        os.close(fd)
    maintenance.release(maintenance.hold_server_lock(db_file(app)))


def test_operations_need_sqlite(tmp_path: Path) -> None:
    with pytest.raises(maintenance.MaintenanceError, match="pg_dump"):
        maintenance.sqlite_file("postgresql://u@h/db")


# --- retention ------------------------------------------------------------------------------


@pytest.mark.parametrize("value, read, unread", [
    (None, None, None), ("", None, None), ("off", None, None),
    ("read=30d", 30 * 86400, None), ("unread=180d", None, 180 * 86400),
    ("read=30d,unread=180d", 30 * 86400, 180 * 86400), (" READ = 12h , unread=1w", 43200, 604800),
])
def test_retention_policy_parses(value: str | None, read: int | None, unread: int | None) -> None:
    policy = retention.parse_policy(value)
    assert (policy.read, policy.unread) == (read, unread)
    assert retention.parse_policy(policy.describe()) == policy


@pytest.mark.parametrize("value", ["30d", "read=", "read=30x", "seen=30d", "read=1d,read=2d",
                                   "read=0s"])
def test_retention_policy_rejects(value: str, db_url: str) -> None:
    with pytest.raises(ConfigError, match="NOTIFICATIONS_RETENTION"):
        retention.parse_policy(value)
    with pytest.raises(ConfigError):
        create_app({"DATABASE_URL": db_url, "JWT_SECRET": SECRET, "RETENTION": value})


@pytest.fixture
def aged(app: Any, make: Any) -> dict[str, list[str]]:
    """Read and unread rows of several ages (days)."""
    now = now_us()
    made: dict[str, list[str]] = {}
    for label, days, read in (("read_old", 40, True), ("read_new", 10, True),
                              ("unread_old", 200, False), ("unread_mid", 40, False)):
        stored = make("alice", n=3, title=label, created_at=now - days * DAY_US)
        ids = [r["id"] for r in stored]
        if read:
            with app.app_context():
                marks.mark_ids_read(Scope("alice"), ids)
        made[label] = ids
    return made


@pytest.mark.parametrize("app_config", [{"RETENTION": "read=30d,unread=180d"}], indirect=True)
def test_retention_deletes_what_the_policy_no_longer_keeps(app: Any, aged: Any, runner: Runner,
                                                           db_url: str) -> None:
    with app.app_context():
        head_before = changelog.head_position()
    result = retention.run_once(app)
    assert result == {"deleted": 6, "unread": 3}
    left = {title for _, _, title, _ in rows(db_file(app))}
    assert left == {"read_new", "unread_mid"}
    with app.app_context():
        # Open streams learn of every deleted row (and recount) from the change log.
        deleted = [c for c in changelog.changes_after(head_before).changes
                   if c.change == "deleted"]
        assert len(deleted) == 6 and sum(c.read_at is None for c in deleted) == 3
    stats = json.loads(runner.invoke("stats", "--json").output)["retention"]
    assert stats["policy"] == "read=30d,unread=180d"
    assert stats["last_deleted"] == 6 and stats["deleted"] == 6 and stats["deleted_unread"] == 3
    assert stats["last_run"].endswith("Z")
    assert retention.run_once(app) == {"deleted": 0, "unread": 0}
    again = json.loads(runner.invoke("stats", "--json").output)["retention"]
    assert again["last_deleted"] == 0 and again["deleted"] == 6
    assert "retention read=30d,unread=180d: last run" in runner.invoke("stats").output


@pytest.fixture
def app_config(db_url: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    extra = getattr(request, "param", {})
    return {"DATABASE_URL": db_url, "JWT_SECRET": SECRET, "TESTING": True, **extra}


def test_retention_in_small_chunks_and_read_only(app: Any, make: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    now = now_us()
    old = make("alice", n=25, created_at=now - 50 * DAY_US)
    make("alice", n=5, created_at=now - 50 * DAY_US, title="unread")
    with app.app_context():
        marks.mark_ids_read(Scope("alice"), [r["id"] for r in old])
    state(app).retention = retention.parse_policy("read=30d")
    monkeypatch.setattr(retention, "CHUNK", 4)
    calls = []
    real = maintenance.apply_retention

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["chunk"])
        return real(*args, **kwargs)

    monkeypatch.setattr(maintenance, "apply_retention", spy)
    assert retention.run_once(app) == {"deleted": 25, "unread": 0}
    assert calls == [4]
    assert {title for *_, title, _ in rows(db_file(app))} == {"unread"}


def test_stats_shows_retention_off_by_default(runner: Runner, make: Any) -> None:
    make("alice")
    data = json.loads(runner.invoke("stats", "--json").output)["retention"]
    assert data == {"policy": "off", "last_run": None, "last_deleted": 0, "deleted": 0,
                    "deleted_unread": 0}


def test_one_process_holds_the_retention_lock(app: Any, tmp_path: Path) -> None:
    path = retention.lock_file(app.config["SQLALCHEMY_DATABASE_URI"])
    assert path.name == "notifications.db.retention.lock"
    first = maintenance.take_exclusive(path)
    assert first is not None
    # flock locks belong to open files: a second open (another worker) is refused.
    assert maintenance.take_exclusive(path) is None
    maintenance.release(first)
    again = maintenance.take_exclusive(path)
    assert again is not None
    maintenance.release(again)


# --- metrics ----------------------------------------------------------------------------------


def test_metrics_in_prometheus_text(client: Any, auth: Any, make: Any) -> None:
    make("alice", n=2)
    assert client.get("/api/v1/notifications", headers=auth.headers()).status_code == 200
    client.get("/api/v1/notifications/not-a-uuid/read", headers=auth.headers())
    client.get("/no/such/path")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    body = response.get_data(as_text=True)
    assert ('notifications_http_requests_total{method="GET",route="/api/v1/notifications",'
            'status="200"}') in body
    assert 'route="unmatched",status="404"' in body
    assert ('notifications_http_request_duration_seconds_bucket{le="0.005",'
            'route="/api/v1/notifications"}') in body
    for name in ("notifications_write_queue_depth", "notifications_write_commits_total",
                 "notifications_write_last_commit_seconds", "notifications_database_bytes",
                 "notifications_wal_bytes", "notifications_stream_events_total"):
        assert f"\n{name} " in body, name


@pytest.mark.parametrize("app_config", [{"METRICS_TOKEN": "scrape-token-0123456789"}],
                         indirect=True)
def test_metrics_token(client: Any) -> None:
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.get_json() == {"detail": "A valid metrics token is required"}
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"})
    assert ok.status_code == 200 and b"notifications_http_requests_total" in ok.data


@pytest.mark.parametrize("app_config", [{"METRICS": "off"}], indirect=True)
def test_metrics_off(client: Any) -> None:
    assert client.get("/metrics").status_code == 404


def test_metrics_setting_is_checked(db_url: str) -> None:
    with pytest.raises(ConfigError, match="NOTIFICATIONS_METRICS"):
        create_app({"DATABASE_URL": db_url, "JWT_SECRET": SECRET, "METRICS": "maybe"})


def test_a_non_editable_install_has_the_store_package(built_package: Path) -> None:
    """`pip install .` (the systemd set-up) must ship notifications.store too."""
    for name in ("engine.py", "reads.py", "writer.py", "maintenance.py"):
        assert (built_package / "store" / name).is_file(), name
