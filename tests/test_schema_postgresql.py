"""The PostgreSQL schema: the same model as schema.sql, applied and checked like it.

``schema.sql`` (SQLite) and ``schema_postgresql.sql`` are two texts of one model; a database
built from each must have the same tables, columns, keys and indexes (partial ones with the
same condition). ``init-db`` applies the right one, is idempotent, and a database of a newer
version is refused on both. An install moving from SQLite to PostgreSQL exports and imports,
and gets the same rows.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import DATASET, SECRET, RawConnection, notifications_command
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from notifications import create_app
from notifications.extension import state
from notifications.store import engine as store_engine
from notifications.store.engine import SCHEMA_VERSION, SchemaError
from notifications.store.models import metadata
from notifications.store.writer import WRITE_LOCK_KEY


@pytest.fixture
def backend() -> str:
    return "postgresql"


def normalized_where(text: str | None) -> str | None:
    if text is None:
        return None
    text = re.sub(r"::[a-z ]+?(?=[\s)]|$)", "", text.lower())  # PostgreSQL's casts: ::text
    return re.sub(r"[()\s]+", " ", text).strip()


def kind_of(column_type: Any) -> str:
    """The family of a column's type: what both databases must agree on."""
    name = type(column_type).__name__.upper()
    if "INT" in name:
        return "integer"
    if "CHAR" in name or "TEXT" in name or "STRING" in name:
        return f"text({getattr(column_type, 'length', None)})"
    return name.lower()


def describe(url: str) -> dict[str, Any]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        inspector = inspect(engine)
        model: dict[str, Any] = {}
        for table in sorted(inspector.get_table_names()):
            columns = {c["name"]: (kind_of(c["type"]), c["nullable"])
                       for c in inspector.get_columns(table)}
            primary = tuple(inspector.get_pk_constraint(table)["constrained_columns"])
            indexes = {}
            for index in inspector.get_indexes(table):
                options = index.get("dialect_options", {})
                where = options.get("sqlite_where")
                if where is None:
                    where = options.get("postgresql_where")
                indexes[index["name"]] = (tuple(index["column_names"]), bool(index["unique"]),
                                          normalized_where(str(where) if where is not None
                                                           else None))
            model[table] = {"columns": columns, "primary": primary, "indexes": indexes}
        return model
    finally:
        engine.dispose()


def test_both_schemas_describe_the_same_model(db_url: str, tmp_path: Path) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'sqlite.db'}"
    for url in (sqlite_url, db_url):
        app = create_app({"DATABASE_URL": url, "JWT_SECRET": SECRET})
        state(app).store.close()
    on_sqlite = describe(sqlite_url)
    on_postgresql = describe(db_url)
    assert set(on_sqlite) == set(on_postgresql) == set(metadata.tables)
    for table in on_sqlite:
        assert on_postgresql[table] == on_sqlite[table], table
        # And both are what models.py says, column by column.
        declared = metadata.tables[table]
        assert set(on_postgresql[table]["columns"]) == {c.name for c in declared.columns}
        assert {name: nullable for name, (_, nullable)
                in on_postgresql[table]["columns"].items()} == {
            c.name: c.nullable for c in declared.columns}
        assert set(on_postgresql[table]["indexes"]) == {i.name for i in declared.indexes}


def test_the_change_log_triggers_and_the_write_lock_exist(db_url: str) -> None:
    app = create_app({"DATABASE_URL": db_url, "JWT_SECRET": SECRET})
    state(app).store.close()
    with RawConnection(db_url) as conn:
        names = {r[0] for r in conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'notifications'::regclass "
            "AND NOT tgisinternal").fetchall()}
    assert names == {"tr_notifications_write_lock", "tr_notifications_created",
                     "tr_notifications_updated", "tr_notifications_deleted"}


def cli(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"NOTIFICATIONS_DATABASE_URL": url, "NOTIFICATIONS_JWT_SECRET": SECRET,
           "PATH": "/usr/bin:/bin"}
    return subprocess.run([*notifications_command(), *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_init_db_applies_the_postgresql_schema_once_and_keeps_data(db_url: str) -> None:
    first = cli(db_url, "init-db")
    assert first.returncode == 0, first.stderr
    assert f"schema version 0 -> {SCHEMA_VERSION}" in first.stdout
    sent = cli(db_url, "send", "--user", "alice", "--title", "kept")
    assert sent.returncode == 0, sent.stderr
    again = cli(db_url, "init-db")
    assert again.returncode == 0 and "up to date" in again.stdout
    listed = cli(db_url, "list", "--user", "alice")
    assert "kept" in listed.stdout


def test_a_newer_postgresql_schema_is_refused(db_url: str) -> None:
    app = create_app({"DATABASE_URL": db_url, "JWT_SECRET": SECRET})
    state(app).store.close()
    with RawConnection(db_url) as conn:
        conn.execute("UPDATE counters SET value = ? WHERE name = 'schema_version'",
                     (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaError, match="only knows versions up to"):
        create_app({"DATABASE_URL": db_url, "JWT_SECRET": SECRET})
    refused = cli(db_url, "list")
    assert refused.returncode != 0
    assert "only knows versions up to" in refused.stderr and "Traceback" not in refused.stderr


def test_schema_files_are_packaged_side_by_side() -> None:
    text = store_engine.schema_sql("postgresql")
    assert "CREATE TABLE IF NOT EXISTS notifications" in text
    # The trigger takes the same advisory lock as the service's writers.
    assert f"pg_advisory_xact_lock({WRITE_LOCK_KEY})" in text
    root = Path(store_engine.__file__).resolve().parents[1]
    assert (root / "schema_postgresql.sql").is_file()


def every_row(url: str) -> list[dict[str, Any]]:
    with RawConnection(url) as conn:
        rows = conn.rows("SELECT * FROM notifications ORDER BY seq")
    for row in rows:
        del row["seq"]  # each database numbers its rows itself, in the same order
    return rows


def test_export_from_sqlite_and_import_into_postgresql_give_identical_rows(
        db_url: str, tmp_path: Path) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'old.db'}"
    assert cli(sqlite_url, "seed", "--users", "4", "--per-user", "30").returncode == 0
    extra = cli(sqlite_url, "send", "--user", "alice", "--org", "acme", "--dataset", DATASET,
                "--kind", "review.created", "--title", "Ünïcode ✓", "--body", "b",
                "--link", "/r/1", "--metadata", json.dumps({"nested": {"n": [1, 2]}}))
    assert extra.returncode == 0, extra.stderr
    assert cli(sqlite_url, "mark-read", "--user", "alice", "--all").returncode == 0
    exported = cli(sqlite_url, "export")
    assert exported.returncode == 0, exported.stderr
    dump = tmp_path / "dump.jsonl"
    dump.write_text(exported.stdout)

    assert cli(db_url, "init-db").returncode == 0
    imported = cli(db_url, "import", str(dump))
    assert imported.returncode == 0, imported.stderr
    rows = every_row(db_url)
    assert len(rows) == 121
    assert rows == every_row(sqlite_url)
    # And the way back: what PostgreSQL exports is what SQLite exported.
    again = cli(db_url, "export")
    assert again.returncode == 0

    def without_seq(text: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in json.loads(line).items() if k != "seq"}
                for line in text.splitlines()]

    assert without_seq(again.stdout) == without_seq(exported.stdout)
