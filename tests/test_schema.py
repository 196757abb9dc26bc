"""Storage: schema.sql and the ORM agree, pragmas, schema versions, indexes on hot paths."""
from __future__ import annotations

import re
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import DATASET, SECRET, active_leases, notifications_command
from sqlalchemy import create_engine, event, inspect

from cli import AppContext, cli
from notifications import create_app
from notifications.core.cursors import Position
from notifications.core.kinds import parse_kinds
from notifications.core.states import ACTION_UPDATES, Action, update_for
from notifications.store import changelog, inbox, inserts, leases, marks, reads
from notifications.store.engine import SCHEMA_VERSION, SchemaError, schema_sql
from notifications.store.inbox import InboxFilter
from notifications.store.models import db
from notifications.store.scope import Scope

ROOT = Path(__file__).resolve().parents[1]


def affinity(declared: str) -> str:
    """SQLite's type affinity rules (https://sqlite.org/datatype3.html, 3.1)."""
    upper = declared.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if not upper or "BLOB" in upper:
        return "BLOB"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def describe(path: Path) -> dict[str, Any]:
    """Tables, columns and indexes of a SQLite file, via the inspector and sqlite_master."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        inspector = inspect(engine)
        tables: dict[str, Any] = {}
        for table in sorted(inspector.get_table_names()):
            if table.startswith("sqlite_"):
                continue
            columns = {
                c["name"]: (affinity(str(c["type"])), bool(c["nullable"]) and not c["primary_key"],
                            int(c["primary_key"]), c["default"])
                for c in inspector.get_columns(table)
            }
            indexes = {
                ix["name"]: (tuple(ix["column_names"]), bool(ix["unique"]))
                for ix in inspector.get_indexes(table)
            }
            tables[table] = {"columns": columns, "indexes": indexes,
                             "pk": tuple(inspector.get_pk_constraint(table)["constrained_columns"])}
    finally:
        engine.dispose()
    with sqlite3.connect(path) as conn:
        wheres = {}
        for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        ):
            match = re.search(r"\bWHERE\b(.*)$", sql, re.S | re.I)
            wheres[name] = " ".join(match.group(1).split()).lower() if match else None
        autoincrement = {
            name
            for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type='table'")
            if sql and "AUTOINCREMENT" in sql.upper()
        }
        declared_nullable = {
            (table, row[1]): not row[3]
            for table in tables
            for row in conn.execute(f"PRAGMA table_info({table})")
        }
    return {"tables": tables, "wheres": wheres, "autoincrement": autoincrement,
            "declared_nullable": declared_nullable}


def test_schema_sql_and_models_describe_the_same_database(tmp_path: Path) -> None:
    from_sql = tmp_path / "from_sql.db"
    with sqlite3.connect(from_sql) as conn:
        conn.executescript((ROOT / "schema.sql").read_text())
    from_models = tmp_path / "from_models.db"
    engine = create_engine(f"sqlite:///{from_models}")
    db.metadata.create_all(engine)
    engine.dispose()

    sql_side, orm_side = describe(from_sql), describe(from_models)
    assert set(sql_side["tables"]) == {"notifications", "counters", "stream_leases", "changes",
                                       "change_marks", "preferences", "webhook_endpoints",
                                       "webhook_deliveries", "webhook_sender_lease"}
    for table in sql_side["tables"]:
        assert sql_side["tables"][table]["columns"] == orm_side["tables"][table]["columns"], table
        assert list(sql_side["tables"][table]["columns"]) == list(
            orm_side["tables"][table]["columns"]), f"column order of {table}"
        assert sql_side["tables"][table]["indexes"] == orm_side["tables"][table]["indexes"], table
        assert sql_side["tables"][table]["pk"] == orm_side["tables"][table]["pk"], table
    assert sql_side["tables"] == orm_side["tables"]
    assert sql_side["wheres"] == orm_side["wheres"]
    assert sql_side["autoincrement"] == orm_side["autoincrement"] == {"notifications", "changes"}
    assert sql_side["declared_nullable"] == orm_side["declared_nullable"]
    # The partial indexes the hot paths rely on are really partial.
    assert sql_side["wheres"]["ix_notifications_unread_state"] == "read_at is null"
    assert sql_side["wheres"]["ix_notifications_archived"] == "archived_at is not null"
    assert sql_side["wheres"]["ux_notifications_dedupe"] == "dedupe_key is not null"
    assert sql_side["wheres"]["ix_webhook_deliveries_pending"] == "status = 'pending'"


def triggers(path: Path) -> dict[str, str]:
    """The triggers of a SQLite file: name -> table."""
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"))


#: The change log's triggers (schema.sql creates them; the models have no triggers).
LOG_TRIGGERS = {"tr_notifications_created": "notifications",
                "tr_notifications_updated": "notifications",
                "tr_notifications_deleted": "notifications"}


def test_schema_sql_creates_the_change_log_triggers(tmp_path: Path) -> None:
    path = tmp_path / "from_sql.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(schema_sql())
        # Running it again (init-db on a database of any version) changes nothing.
        conn.executescript(schema_sql())
    assert triggers(path) == LOG_TRIGGERS
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM counters WHERE name = 'changes_floor'"
                            ).fetchone() == (0,)


def test_packaged_schema_is_the_top_level_file() -> None:
    assert schema_sql() == (ROOT / "schema.sql").read_text()


def test_app_creates_the_schema_of_schema_sql(app: Any, db_url: str, tmp_path: Path) -> None:
    reference = tmp_path / "reference.db"
    with sqlite3.connect(reference) as conn:
        conn.executescript(schema_sql())
    assert describe(Path(db_url[len("sqlite:///"):])) == describe(reference)
    assert triggers(Path(db_url[len("sqlite:///"):])) == LOG_TRIGGERS


# --- pragmas and versions ------------------------------------------------------------


def test_pragmas_on_every_connection(app: Any) -> None:
    with app.app_context():
        connections = [db.engine.connect() for _ in range(3)]
        try:
            for conn in connections:
                pragma = lambda name, c=conn: c.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
                assert pragma("journal_mode") == "wal"
                assert pragma("busy_timeout") >= 5000
                assert pragma("synchronous") == 1  # NORMAL
                assert pragma("foreign_keys") == 1
        finally:
            for conn in connections:
                conn.close()
        db.engine.dispose()
        with db.engine.connect() as fresh:
            assert fresh.exec_driver_sql("PRAGMA synchronous").scalar() == 1
            assert fresh.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_schema_version_is_stored(app: Any, db_url: str) -> None:
    with sqlite3.connect(db_url[len("sqlite:///"):]) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
        assert dict(conn.execute("SELECT name, value FROM counters")) == {"changes_floor": 0}


#: stream_leases as schema version 2 created it (before the per-kind stream caps).
V2_STREAM_LEASES = """
    CREATE TABLE stream_leases (id VARCHAR(32) NOT NULL PRIMARY KEY,
        user_id VARCHAR(255) NOT NULL, owner VARCHAR(128) NOT NULL, expires_at BIGINT NOT NULL);
    CREATE INDEX ix_stream_leases_user ON stream_leases (user_id, expires_at);
    CREATE INDEX ix_stream_leases_owner ON stream_leases (owner);
"""


#: schema.sql of version 3, as it shipped.
V3_SCHEMA = (ROOT / "tests" / "fixtures" / "schema_v3.sql").read_text()


def version_2_database(path: Path) -> str:
    """Write a version-2 database with one live organization lease and one notification."""
    with sqlite3.connect(path) as conn:
        conn.executescript(V3_SCHEMA)
        conn.executescript("DROP TABLE stream_leases;" + V2_STREAM_LEASES + """
            INSERT INTO stream_leases VALUES ('l1', 'alice', 'old-worker', 9000000000000000);
            INSERT INTO notifications (id, user_id, created_at) VALUES ('kept', 'alice', 1);
            PRAGMA user_version = 2;
        """)
    return f"sqlite:///{path}"


def test_a_version_2_database_gets_the_lease_kind_column(tmp_path: Path) -> None:
    url = version_2_database(tmp_path / "v2.db")
    app = create_app({"DATABASE_URL": url, "JWT_SECRET": SECRET})
    with sqlite3.connect(url[len("sqlite:///"):]) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        assert (conn.execute("SELECT id, kind FROM stream_leases").fetchall()
                == [("l1", "organization")])
        assert conn.execute("SELECT id FROM notifications").fetchall() == [("kept",)]
    with app.app_context():
        # The old lease still counts against alice's organization streams, not dataset ones.
        assert active_leases("alice", "organization") == 1
        assert active_leases("alice", "dataset") == 0
        assert leases.acquire_lease("alice", "w", 1, 30_000_000, "dataset").lease_id
        assert leases.acquire_lease("alice", "w", 1, 30_000_000).lease_id is None
        db.engine.dispose()
    # Starting again (another worker, init-db) changes nothing.
    again = create_app({"DATABASE_URL": url, "JWT_SECRET": SECRET})
    with again.app_context():
        assert active_leases("alice", "organization") == 1
        db.engine.dispose()


def test_processes_upgrading_together_add_the_column_once(tmp_path: Path) -> None:
    import os

    url = version_2_database(tmp_path / "v2.db")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NOTIFICATIONS_")},
           "NOTIFICATIONS_DATABASE_URL": url}
    procs = [subprocess.Popen([*notifications_command(), "init-db"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(4)]
    outputs = [proc.communicate(timeout=60)[0].decode() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    with sqlite3.connect(url[len("sqlite:///"):]) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(stream_leases)")]
        assert columns.count("kind") == 1
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.fixture
def newer_db(tmp_path: Path) -> str:
    path = tmp_path / "newer.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(schema_sql())
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    return f"sqlite:///{path}"


def test_newer_schema_is_refused_by_the_app(newer_db: str) -> None:
    with pytest.raises(SchemaError) as caught:
        create_app({"DATABASE_URL": newer_db, "JWT_SECRET": SECRET})
    message = str(caught.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert "upgrade the service" in message
    assert "\n" not in message


def test_newer_schema_is_refused_by_the_cli(newer_db: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", newer_db)
    for args in (["init-db"], ["list"], ["stats"], ["send", "--user", "a"]):
        result = CliRunner().invoke(cli, args, obj=AppContext())
        assert result.exit_code == 1, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and "schema version" in lines[0]


def test_newer_schema_is_refused_by_the_installed_command(newer_db: str) -> None:
    import os

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NOTIFICATIONS_")},
           "NOTIFICATIONS_DATABASE_URL": newer_db, "NOTIFICATIONS_JWT_SECRET": SECRET}
    for args in (["list"], ["serve", "--port", "0"]):
        result = subprocess.run([*notifications_command(), *args], env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr + result.stdout
        error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(error_lines) == 1 and "schema version" in error_lines[0]


def test_init_db_is_idempotent_and_keeps_data(runner: Any, make: Any, app: Any) -> None:
    rows = make(n=3)
    assert runner.invoke("init-db").exit_code == 0
    for _ in range(2):
        result = runner.invoke("init-db")
        assert (result.exit_code == 0
                and f"up to date (schema version {SCHEMA_VERSION})" in result.output)
    with app.app_context():
        assert reads.unread_count(Scope("alice")) == 3
        assert [r["id"] for r in reads.list_for_admin(user_id="alice")] == \
            [r["id"] for r in reversed(rows)]


def test_init_db_on_a_fresh_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sub" / "dir" / "fresh.db"
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", f"sqlite:///{path}")
    result = CliRunner().invoke(cli, ["init-db"], obj=AppContext())
    assert result.exit_code == 0, result.output
    assert f"initialised (schema version 0 -> {SCHEMA_VERSION})" in result.output
    again = CliRunner().invoke(cli, ["init-db"], obj=AppContext())
    assert again.exit_code == 0 and "up to date" in again.output
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- query plans ---------------------------------------------------------------------


@contextmanager
def captured(app: Any) -> Iterator[list[tuple[str, Any]]]:
    """Collect the statements the service runs (SQL and parameters)."""
    statements: list[tuple[str, Any]] = []

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        if not executemany:
            statements.append((statement, parameters))

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", listen)
        try:
            yield statements
        finally:
            event.remove(db.engine, "before_cursor_execute", listen)


def plans(app: Any, statements: list[tuple[str, Any]]) -> list[tuple[str, list[str]]]:
    result = []
    with app.app_context(), db.engine.connect() as conn:
        for statement, parameters in statements:
            if ("notifications" not in statement and "changes" not in statement) or \
                    statement.lstrip().upper().startswith(("BEGIN", "PRAGMA", "COMMIT")):
                continue
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            result.append((statement, [r[-1] for r in rows]))
    return result


@pytest.fixture
def populated(app: Any) -> Any:
    """A few users, organizations and datasets, with statistics as after ANALYZE-free use."""
    from notifications.store import seeding

    with app.app_context():
        seeding.seed(users=20, per_user=50, orgs=3, datasets=4, random_seed=1)
        inserts.create_notifications([
            {"user_id": "alice", "organization_id": "acme", "dataset_id": DATASET}
            for _ in range(5)
        ])
    return app


HOT_PATHS: list[tuple[str, Callable[[], Any]]] = [
    ("dataset first page", lambda: reads.list_notifications(Scope("alice"), limit=20)),
    ("dataset first page with org", lambda: reads.list_notifications(
        Scope.dataset_api("alice", "acme"), limit=20)),
    ("dataset first page of a dataset", lambda: reads.list_notifications(
        Scope("alice"), limit=20, dataset_id=DATASET)),
    ("dataset unread page", lambda: reads.list_notifications(
        Scope("alice"), limit=20, unread_only=True)),
    ("org first page", lambda: reads.list_notifications(
        Scope.organization_api("alice", "acme"), limit=50, with_unread=True)),
    ("unread count", lambda: reads.unread_count(Scope("alice"))),
    ("unread count of a dataset", lambda: reads.unread_count(Scope("alice"), DATASET)),
    ("org unread count", lambda: reads.unread_count(Scope.organization_api("alice", "acme"))),
    ("read all", lambda: marks.mark_all_read(Scope("alice"))),
    ("read all of a dataset", lambda: marks.mark_all_read(Scope("alice"), DATASET)),
    ("org read all", lambda: marks.mark_all_read(Scope.organization_api("alice", "acme"))),
    ("mark one", lambda: marks.mark_one_read(Scope("alice"), DATASET)),
    ("mark ids", lambda: marks.mark_ids_read(Scope.organization_api("alice", "acme"), [DATASET])),
]


@pytest.mark.parametrize("run", [h[1] for h in HOT_PATHS], ids=[h[0] for h in HOT_PATHS])
def test_hot_paths_use_indexes(populated: Any, run: Callable[[], Any]) -> None:
    with captured(populated) as statements:
        with populated.app_context():
            run()
    explained = plans(populated, statements)
    assert explained, "no statement touched notifications"
    for statement, plan in explained:
        assert not any(step.startswith("SCAN notifications") for step in plan), (statement, plan)
        if statement.lstrip().upper().startswith("SELECT") and "ORDER BY" in statement:
            assert not any("TEMP B-TREE" in step for step in plan), (statement, plan)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT seq, id FROM notifications WHERE seq > ? ORDER BY seq LIMIT 100",
        "SELECT max(seq) FROM notifications",
    ],
)
def test_changes_after_sequence_use_indexes(populated: Any, statement: str) -> None:
    explained = plans(populated, [(statement, (5,) if "?" in statement else ())])
    for _, plan in explained:
        assert not any(step.startswith("SCAN notifications") for step in plan), plan
        assert not any("TEMP B-TREE" in step for step in plan), plan


# --- version 2 and the change log -----------------------------------------------------------

ORG_SCOPE = Scope.dataset_api("alice", "acme")
REVIEWS = parse_kinds(["review.*", "api.quota.warning"])
AFTER = Position(2**62, 2**40)

V2_HOT_PATHS: list[tuple[str, Callable[[], Any]]] = [
    ("v2 first page", lambda: inbox.list_page(Scope("alice"), InboxFilter(), limit=25)),
    ("v2 first page with org", lambda: inbox.list_page(ORG_SCOPE, InboxFilter(), limit=25)),
    ("v2 next page", lambda: inbox.list_page(ORG_SCOPE, InboxFilter(), limit=25, after=AFTER)),
    ("v2 unread page", lambda: inbox.list_page(ORG_SCOPE, InboxFilter(status="unread"),
                                               limit=25, after=AFTER)),
    ("v2 read page", lambda: inbox.list_page(ORG_SCOPE, InboxFilter(status="read"), limit=25)),
    ("v2 archived page", lambda: inbox.list_page(ORG_SCOPE, InboxFilter(archived="true"),
                                                 limit=25, after=AFTER)),
    ("v2 every page", lambda: inbox.list_page(ORG_SCOPE, InboxFilter(archived="all"), limit=25)),
    ("v2 kinds page", lambda: inbox.list_page(ORG_SCOPE, InboxFilter(kinds=REVIEWS), limit=25,
                                              after=AFTER)),
    ("v2 dataset page", lambda: inbox.list_page(ORG_SCOPE, InboxFilter(dataset_id=DATASET),
                                                limit=25, after=AFTER)),
    ("v2 counts", lambda: inbox.counts(Scope("alice"))),
    ("v2 counts with org", lambda: inbox.counts(ORG_SCOPE)),
    ("v2 counts of kinds", lambda: inbox.counts(ORG_SCOPE, REVIEWS)),
    ("v2 counts of a dataset", lambda: inbox.counts(ORG_SCOPE, None, DATASET)),
    ("v2 get", lambda: inbox.get(ORG_SCOPE, DATASET)),
    ("v2 patch", lambda: inbox.patch(ORG_SCOPE, DATASET, update_for([Action.READ]))),
    ("v2 bulk ids", lambda: inbox.bulk_ids(ORG_SCOPE, [DATASET, "x"],
                                           ACTION_UPDATES[Action.ARCHIVE])),
    ("v2 bulk seen", lambda: inbox.bulk_filter(ORG_SCOPE, InboxFilter(),
                                               ACTION_UPDATES[Action.SEEN])),
    ("v2 bulk read unread", lambda: inbox.bulk_filter(ORG_SCOPE, InboxFilter(status="unread"),
                                                      ACTION_UPDATES[Action.READ])),
    ("v2 bulk of kinds before", lambda: inbox.bulk_filter(
        ORG_SCOPE, InboxFilter(kinds=REVIEWS, before_us=2**62), ACTION_UPDATES[Action.ARCHIVE])),
    ("v2 bulk unarchive", lambda: inbox.bulk_filter(ORG_SCOPE, InboxFilter(archived="true"),
                                                    ACTION_UPDATES[Action.UNARCHIVE])),
    ("log bounds", changelog.bounds),
    ("log page", lambda: changelog.changes_after(10)),
    ("log replay", lambda: changelog.user_changes_after(ORG_SCOPE, 10)),
    ("log replay filtered", lambda: changelog.user_changes_after(
        ORG_SCOPE, 10, kinds=REVIEWS, dataset_id=DATASET, upto=10**6)),
    ("log retention", lambda: changelog.trim(1, now=2**62)),
]


@pytest.mark.parametrize("run", [h[1] for h in V2_HOT_PATHS], ids=[h[0] for h in V2_HOT_PATHS])
def test_v2_and_change_log_paths_use_indexes(populated: Any, run: Callable[[], Any]) -> None:
    with captured(populated) as statements:
        with populated.app_context():
            run()
    explained = plans(populated, statements)
    assert explained, "no statement touched notifications or the change log"
    for statement, plan in explained:
        assert not any(step.startswith(("SCAN notifications", "SCAN changes", "SCAN n", "SCAN c "))
                       for step in plan), (statement, plan)
        assert not any("TEMP B-TREE" in step for step in plan), (statement, plan)


def test_v2_counts_read_indexes_alone(populated: Any) -> None:
    """The badge counts of a scope with or without an organization touch no table row."""
    for scope in (Scope("alice"), ORG_SCOPE):
        with captured(populated) as statements:
            with populated.app_context():
                inbox.counts(scope)
        [(statement, plan)] = plans(populated, statements)
        searches = [step for step in plan if step.startswith("SEARCH")]
        assert len(searches) == 3 and all("COVERING INDEX" in s for s in searches), plan
