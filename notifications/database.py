"""Engine set-up, SQLite pragmas, schema creation and version checks."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, ProgrammingError

from .config import ConfigError
from .models import db

#: Version written to ``PRAGMA user_version`` by this code's ``schema.sql``.
SCHEMA_VERSION = 3
#: Columns later versions added to tables an older ``schema.sql`` created; its CREATE TABLE
#: IF NOT EXISTS leaves such a table as it is. (version that added it, table, column DDL)
ADDED_COLUMNS = (
    (3, "stream_leases", "kind VARCHAR(16) NOT NULL DEFAULT 'organization'"),
)
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
        if immediate:
            # The only statement that waits for another process's write lock (inside
            # SQLite's busy handler, a C sleep): keep it off the gevent hub.
            blocking(connection.connection.dbapi_connection.execute, "BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


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
    if found:
        _add_columns(engine, found)
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
            for name in ("read", "purge"):
                conn.execute(
                    text("INSERT INTO counters (name, value) SELECT :n, 0 WHERE NOT EXISTS "
                         "(SELECT 1 FROM counters WHERE name = :n)"), {"n": name}
                )
    return found


def _add_columns(engine: Engine, found: int) -> None:
    """Add the columns of :data:`ADDED_COLUMNS` that a version-``found`` database lacks."""
    for version, table, column in ADDED_COLUMNS:
        if found >= version:
            continue
        try:
            with engine.connect() as conn:
                conn.execution_options(immediate=True)
                with conn.begin():
                    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column}")
        except OperationalError as exc:
            # Another worker starting at the same moment added it first, or the table is
            # not there yet (schema.sql creates it whole).
            message = str(exc.orig).lower()
            if "duplicate column" not in message and "no such table" not in message:
                raise
        except ProgrammingError as exc:  # PostgreSQL's words for the same two cases
            if getattr(exc.orig, "sqlstate", None) not in ("42701", "42P01"):
                raise


# --- keeping the gevent hub free ------------------------------------------------------
#
# Under gunicorn's gevent worker every request is a greenlet on one OS thread, and a
# sqlite3 call is a C call that does not yield: a write waiting for another process's
# lock would freeze every stream of the worker. Such calls run in gevent's threadpool.
# SQLAlchemy's pool guards itself with (monkey-patched) threading locks, so connections
# are always checked out and returned on the hub's thread; only the driver-level work
# crosses to a native thread.


def _native(module: str, name: str) -> Any:
    from gevent import monkey

    return monkey.get_original(module, name)


def on_hub() -> bool:
    """Tell whether this code runs on a monkey-patched gevent hub shared by greenlets."""
    from gevent import monkey
    from gevent._hub_local import get_hub_if_exists

    if not monkey.is_module_patched("threading"):
        return False
    # Threadpool threads have no hub of their own; the main thread's hub is "main".
    hub = get_hub_if_exists()
    return hub is not None and hub.main_hub


_lock_pool: Any = None
_lock_pool_pid = 0


def _lock_waiters() -> Any:
    """Return this process's threadpool for statements that wait for the write lock.

    It is separate from the hub's threadpool (used by :func:`run`), so reads are never
    queued behind writes that wait for another process's lock.
    """
    global _lock_pool, _lock_pool_pid
    if _lock_pool is None or _lock_pool_pid != os.getpid():
        from gevent.threadpool import ThreadPool

        _lock_pool, _lock_pool_pid = ThreadPool(8), os.getpid()
    return _lock_pool


def _capture(fn: Callable[..., T], *args: Any) -> tuple[bool, Any]:
    # Exceptions come back as values: gevent would print a traceback for every one that
    # escapes a threadpool task, although the caller handles it.
    try:
        return True, fn(*args)
    except Exception as exc:
        return False, exc


def _outcome(result: tuple[bool, Any]) -> Any:
    ok, value = result
    if ok:
        return value
    raise value


def blocking(fn: Callable[..., T], *args: Any) -> T:
    """Call a function that may block in C; on the gevent hub, in a threadpool."""
    if not on_hub():
        return fn(*args)
    return _outcome(_lock_waiters().apply(_capture, (fn, *args)))


_bound = _native("_thread", "_local")()


@contextmanager
def reading() -> Iterator[Connection]:
    """Yield a connection for reads that share one snapshot; never holds a write lock."""
    conn = getattr(_bound, "conn", None)
    if conn is not None:
        # A read nested in another block of the same function shares its transaction.
        outer = conn.in_transaction()
        try:
            yield conn
        finally:
            if not outer and conn.in_transaction():
                conn.rollback()
        return
    with db.engine.connect() as conn:
        yield conn


@contextmanager
def writing() -> Iterator[Connection]:
    """Yield a connection inside a write transaction that commits on success."""
    conn = getattr(_bound, "conn", None)
    if conn is not None:
        if getattr(_bound, "in_write", False):
            yield conn  # nested: part of the enclosing write transaction
            return
        if conn.in_transaction():
            conn.rollback()  # an enclosing read's snapshot cannot be upgraded safely
        conn.execution_options(immediate=True)
        _bound.in_write = True
        try:
            with conn.begin():
                yield conn
        finally:
            _bound.in_write = False
            conn.execution_options(immediate=False)
        return
    with db.engine.connect() as conn:
        conn.execution_options(immediate=True)
        with conn.begin():
            yield conn
            if on_hub() and conn.dialect.name == "sqlite":
                # COMMIT may run a WAL checkpoint (disk writes and fsync): off the hub
                # too. The driver then sees no open transaction, so SQLAlchemy's own
                # commit that follows is a no-op.
                blocking(conn.connection.dbapi_connection.execute, "COMMIT")


def _run_bound(conn: Connection, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    _bound.conn = conn
    try:
        return fn(*args, **kwargs)
    finally:
        _bound.conn = None


def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a database function; on the gevent hub, whole, in the threadpool.

    The connection is checked out here (on the hub's thread) and lent to ``fn``, whose
    ``reading()`` / ``writing()`` blocks use it instead of the pool.
    """
    if not on_hub():
        return fn(*args, **kwargs)
    import gevent

    with db.engine.connect() as conn:
        return _outcome(
            gevent.get_hub().threadpool.apply(_capture, (_run_bound, conn, fn, args, kwargs))
        )
