"""The write path: one writer per process, group commit, and a bounded wait for the lock."""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from notifications.extension import state
from notifications.store import WriteTimeout, current_store, inserts, reading, reads, write
from notifications.store import writer as writer_module
from notifications.store.scope import Scope

DATASET = "a981fc0c-2d1f-11f1-a7ca-d2580fa2deac"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "WRITE_TIMEOUT": 0.3, "INGEST_TOKEN": "ingest-token-0123456789"}


@contextmanager
def lock_held(db_url: str) -> Iterator[None]:
    """Hold the database's write lock from another connection, as another process would."""
    holder = sqlite3.connect(db_url[len("sqlite:///"):], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO counters (name, value) VALUES ('holder', 1)")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def count_rows(user_id: str) -> int:
    return len(reads.list_for_admin(user_id=user_id, limit=10_000))


@pytest.fixture
def roomy_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give a batch a minute, so that a loaded machine cannot split the batch a test counts."""
    monkeypatch.setattr(writer_module, "BATCH_MS", 60_000.0)


@contextmanager
def writer_busy(app: Any) -> Iterator[Any]:
    """Keep the writer inside a job, so that the jobs sent meanwhile queue up behind it."""
    started, release = threading.Event(), threading.Event()

    def slow(conn: Any) -> None:
        started.set()
        release.wait(5)

    with app.app_context():
        writer = current_store().writer
    thread = threading.Thread(target=in_app(app, write), args=(slow,))
    thread.start()
    assert started.wait(5)
    try:
        yield writer
    finally:
        release.set()
        thread.join(10)


def in_app(app: Any, fn: Any) -> Any:
    """Wrap ``fn`` to run in an app context of its own (for another thread)."""
    def run(*args: Any) -> Any:
        with app.app_context():
            return fn(*args)
    return run


def wait_for_depth(writer: Any, depth: int) -> None:
    deadline = time.monotonic() + 5
    while writer.depth < depth and time.monotonic() < deadline:
        time.sleep(0.001)
    assert writer.depth == depth


def test_jobs_that_queue_up_meanwhile_share_one_commit(app: Any, roomy_batches: None) -> None:
    titles: dict[int, str] = {}

    def send(i: int) -> None:
        titles[i] = inserts.create_notifications(
            [{"user_id": f"u{i}", "title": str(i)}])[0]["title"]

    with writer_busy(app) as writer:
        commits = writer.commits
        threads = [threading.Thread(target=in_app(app, send), args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        wait_for_depth(writer, 20)
    for thread in threads:
        thread.join(10)
    assert titles == {i: str(i) for i in range(20)}
    # The twenty that queued meanwhile joined the slow job's transaction: one commit.
    assert writer.commits - commits == 1
    with app.app_context():
        assert all(count_rows(f"u{i}") == 1 for i in range(20))


def test_a_failing_job_is_undone_alone(app: Any, roomy_batches: None) -> None:
    outcomes: dict[str, Any] = {}

    def insert_then_fail(conn: Any) -> None:
        inserts._insert_job(conn, [inserts.as_tuple(inserts.new_row({"user_id": "bad"}))],
                            None, False)
        raise ValueError("refused")

    def bad() -> None:
        try:
            write(insert_then_fail)
        except ValueError as exc:
            outcomes["bad"] = exc

    def good() -> None:
        outcomes["good"] = inserts.create_notifications([{"user_id": "good"}])

    with writer_busy(app) as writer:
        commits = writer.commits
        threads = [threading.Thread(target=in_app(app, fn)) for fn in (bad, good)]
        for thread in threads:
            thread.start()
        wait_for_depth(writer, 2)
    for thread in threads:
        thread.join(10)
    assert str(outcomes["bad"]) == "refused"
    assert outcomes["good"][0]["user_id"] == "good"
    # One transaction, undone when the bad job raised and run again with a savepoint each.
    assert writer.commits - commits == 1
    with app.app_context():
        assert count_rows("good") == 1 and count_rows("bad") == 0


def test_a_write_gives_up_on_a_held_lock_within_the_timeout(app: Any, db_url: str) -> None:
    with app.app_context():
        with lock_held(db_url):
            started = time.monotonic()
            with pytest.raises(WriteTimeout, match="nothing was changed"):
                inserts.create_notifications([{"user_id": "alice"}])
            waited = time.monotonic() - started
            # Reads do not wait for the writer.
            assert count_rows("alice") == 0
        assert 0.25 <= waited < 1.5
        assert inserts.create_notifications([{"user_id": "alice"}])
        assert count_rows("alice") == 1


def test_writes_answer_503_while_another_process_holds_the_lock(
        app: Any, client: Any, auth: Any, db_url: str, make: Any) -> None:
    row = make("alice", 1, dataset_id=DATASET, organization_id="acme")[0]
    dataset, org = auth.headers("alice"), auth.headers("alice", "acme")
    ingest = {"Authorization": "Bearer ingest-token-0123456789"}
    with lock_held(db_url):
        answers = {
            "read": client.post(f"/api/v1/notifications/{row['id']}/read", headers=dataset),
            "read_all": client.post("/api/v1/notifications/read-all", headers=dataset),
            "mark_read": client.post("/api/v1/org/notifications/mark-read", headers=org, json={}),
            "ingest": client.post("/internal/v1/notifications", headers=ingest,
                                  json={"user_id": "alice", "title": "t"}),
        }
        for name, response in answers.items():
            assert response.status_code == 503, name
            assert response.headers["Retry-After"] == "1", name
        assert "nothing was changed" in answers["read"].get_json()["detail"]
        assert "nothing was changed" in answers["ingest"].get_json()["detail"]
        envelope = answers["mark_read"].get_json()
        assert envelope["code"] == "database_busy"
        assert envelope["request_id"] == answers["mark_read"].headers["X-Request-Id"]
        assert set(envelope) == {"code", "message", "detail", "hint", "details", "request_id"}
        # Reads keep answering at once.
        started = time.monotonic()
        listed = client.get("/api/v1/notifications", headers=dataset)
        count = client.get("/api/v1/notifications/unread-count", headers=dataset)
        inbox = client.get("/api/v1/org/notifications", headers=org)
        assert time.monotonic() - started < 0.25
        assert listed.status_code == count.status_code == inbox.status_code == 200
        assert count.get_json() == {"count": 1}
    # Nothing was half-written: the row is still unread and no ingest row exists.
    with app.app_context():
        assert reads.unread_count(Scope("alice")) == 1
        assert count_rows("alice") == 1
    assert client.post("/api/v1/notifications/read-all", headers=dataset).get_json() == \
        {"ok": True, "count": 1}


def test_the_cli_says_the_database_is_busy_in_one_line(runner: Any, db_url: str, app: Any) -> None:
    with lock_held(db_url):
        result = runner.invoke("send", "--user", "alice", "--title", "hi")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the database is busy"), result.output
    with app.app_context():
        assert count_rows("alice") == 0


def test_reads_never_wait_for_a_pooled_connection(app: Any, make: Any) -> None:
    """More simultaneous readers than the pool's size all get a connection at once."""
    make("alice", 2)
    with app.app_context():
        held = [reading().__enter__() for _ in range(12)]
        try:
            assert count_rows("alice") == 2
        finally:
            for conn in held:
                conn.close()


def test_synchronous_setting_reaches_the_writer(tmp_path: Path) -> None:
    from notifications import create_app

    for value in ("full", "normal"):
        app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / value}.db",
                          "JWT_SECRET": "x" * 32, "SYNCHRONOUS": value.upper()})
        with app.app_context():
            level = write(lambda conn: conn.exec_driver_sql("PRAGMA synchronous").scalar())
        state(app).store.close()
        assert level == {"full": 2, "normal": 1}[value]
