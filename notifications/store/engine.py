"""Engine set-up, SQLite pragmas, schema creation and version checks, and what runs where.

The rule of the store, for every statement the service runs (all of them live in
:mod:`notifications.store`, in modules named by job; see the package's docstring):

- **Reads** run on the caller's thread or greenlet, on a pooled connection of their own
  (:func:`reading`). In WAL mode a read never waits for a writer, and a read never yields
  to another greenlet while it holds its connection, so the pool never has to wait; it
  may also grow past its size rather than make anyone wait (``max_overflow = -1``).
  The hot paths' single statements go straight to the driver (:func:`read_rows`): one
  statement is one snapshot, and SQLAlchemy's statement machinery cost several times
  what SQLite takes to run them. Reads that must agree with each other (the watcher's
  unread counts, an export's pages) run in one transaction on one such connection.
  The watcher's :class:`~.notices.CommitSignal` keeps one connection of its own: for
  ``PRAGMA data_version`` on SQLite (it only means something when asked of the same
  connection), for ``LISTEN`` on PostgreSQL.
- **Writes** are jobs, functions of a connection, handed to the process's one writer
  thread (:func:`write`), which runs them in group-committed ``BEGIN IMMEDIATE``
  transactions on the one connection it owns (see :mod:`.writer`). The CLI's commands
  write through the same functions and a writer of their own. Only three things write
  otherwise, each on a connection of its own: the server's master, which has no writer,
  deletes a dead worker's stream leases in one statement
  (:func:`.leases.release_worker_leases`); ``restore`` replaces the file while it holds
  the lock that keeps servers away (:mod:`.maintenance`); and an import stages its rows
  in a temporary table, which takes no lock on the database, before the writer copies
  them in (:mod:`.importer`).
- **Schema set-up** (``init-db``, and the first start on an empty or older database)
  runs once, before any request: the columns an older database lacks are added one
  ``ALTER TABLE`` each, and those a later version dropped are dropped, then one
  ``BEGIN IMMEDIATE`` script creates what is missing (and fills the new columns of an
  older database's rows, see ``schema.sql``).

Whatever writes to ``notifications`` -- a writer job of the service or of a command, or a
sqlite3 shell -- also writes the change log: SQLite triggers append an entry to
``changes`` in the same transaction as the change (see :mod:`.changelog`).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from typing import Any, TypeVar, cast

from flask import Flask
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, ProgrammingError

from notifications import paths
from notifications.extension import state
from notifications.settings import ConfigError
from notifications.store import listeners as signals
from notifications.store.models import db
from notifications.store.writer import Writer, session_name

#: Version written to ``PRAGMA user_version`` by this code's ``schema.sql``.
SCHEMA_VERSION = 5
#: Columns later versions added to tables an older ``schema.sql`` created; its CREATE TABLE
#: IF NOT EXISTS leaves such a table as it is. (version that added it, table, column DDL)
ADDED_COLUMNS = (
    (3, "stream_leases", "kind VARCHAR(16) NOT NULL DEFAULT 'organization'"),
    (4, "notifications", "seen_at BIGINT"),
    (4, "notifications", "archived_at BIGINT"),
    (4, "notifications", "collapsed_count INTEGER NOT NULL DEFAULT 0"),
    (5, "notifications", "collapse_key VARCHAR(255)"),
)
#: PostgreSQL advisory lock held while the schema is created or upgraded.
SCHEMA_LOCK_KEY = 7022365203857063028
#: Columns later versions dropped, with the indexes on them, which SQLite's DROP COLUMN
#: refuses to drop itself. (version that dropped it, table, column, its indexes)
DROPPED_COLUMNS = (
    (5, "notifications", "read_seq", ("ix_notifications_read_seq",)),
)
#: Milliseconds a reading connection waits on a lock (in WAL mode only in rare cases, such
#: as recovering the WAL after a crash). The writer waits ``WRITE_TIMEOUT`` instead.
BUSY_TIMEOUT_MS = 5_000
#: WAL pages (4 KiB each) after which a commit checkpoints the WAL into the database.
WAL_AUTOCHECKPOINT_PAGES = 16_384

T = TypeVar("T")


class SchemaError(Exception):
    """The database's schema cannot be used by this version of the service."""


def schema_sql(dialect: str = "sqlite") -> str:
    """Return the text of the packaged schema of ``dialect`` (``sqlite`` or ``postgresql``)."""
    name = "schema.sql" if dialect == "sqlite" else f"schema_{dialect}.sql"
    return resources.files("notifications").joinpath(name).read_text(encoding="utf-8")


def default_url() -> str:
    """Return the SQLite URL of the default database file (see :mod:`notifications.paths`)."""
    return paths.default_url()


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
        # Only the writer's connection commits; it sets its own (NOTIFICATIONS_SYNCHRONOUS).
        cursor.execute("PRAGMA synchronous = NORMAL")
        # Checkpoint every 64 MB of WAL instead of 4 MB: a batch of inserts dirties pages all
        # over the per-user indexes, and with the default nearly every commit paid a
        # checkpoint and its fsyncs (measured: about 40 % more inserts per second on disk).
        cursor.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # The writer's connection takes the write lock up front; it is the only statement
        # that waits for another process, and only the writer thread runs it.
        immediate = connection.get_execution_options().get("immediate", False)
        dbapi = connection.connection.dbapi_connection
        if immediate and dbapi is not None and dbapi.in_transaction:
            return  # the writer took the lock itself (Writer._lock)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _name_connections(engine: Engine) -> None:
    """Name each PostgreSQL session after the process (``pg_stat_activity.application_name``).

    An administrator sees which worker holds which connection; the writer's and the
    listener's connections, opened outside this engine's pool, carry the same name.
    """

    @event.listens_for(engine, "do_connect")
    def _on_connect(_dialect: Any, _record: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        kwargs.setdefault("application_name", session_name())


def is_sqlite(engine: Engine | None = None) -> bool:
    """Tell whether the bound database is SQLite."""
    return (engine or db.engine).dialect.name == "sqlite"


def init_app(app: Flask) -> None:
    """Bind the database to the app and, unless told not to, create or check its schema.

    The CLI builds its app with ``CREATE_SCHEMA`` set to False and lets each command
    call :func:`prepare` as it needs: a command such as ``token`` leaves no file behind.
    (It is not an environment setting: only a real False turns it off.)
    """
    url = app.config.get("DATABASE_URL") or default_url()
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    options: dict[str, Any] = {"pool_pre_ping": False}
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        # Reads never wait for a connection (see the module's rule): the pool grows instead.
        options.update(pool_size=4, max_overflow=-1)
    elif url.startswith("postgresql"):
        # A bounded pool: a PostgreSQL read yields to other greenlets while the server
        # works, so many can be in flight; beyond the pool they queue for a connection
        # (cooperatively: gevent patched the pool's locks) instead of opening one each.
        # No stream holds one while it waits for changes, and the writer and the listener
        # have connections of their own, so a read never waits for something that needs
        # a connection of this pool.
        options.update(pool_size=int(app.config.get("DATABASE_POOL_SIZE") or 10),
                       max_overflow=0, pool_timeout=30, pool_pre_ping=True)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", options)
    try:
        db.init_app(app)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        # An unknown scheme or a driver that is not installed is a setting to fix.
        raise ConfigError(f"NOTIFICATIONS_DATABASE_URL cannot be used: {exc}") from None
    with app.app_context():
        engine = db.engine
        if is_sqlite(engine):
            _configure_sqlite(engine)
        elif engine.dialect.name == "postgresql":
            _name_connections(engine)
    state(app).store = Store(app)
    if app.config.get("CREATE_SCHEMA", True) is not False:
        prepare(app, create=True)


class NoDatabase(Exception):
    """The database a command reads from does not exist yet."""


def prepare(app: Flask, *, create: bool) -> int:
    """Make the database usable and return the schema version found in it.

    With ``create`` a missing SQLite file (and its directory) and the schema are created;
    without it a database that does not exist yet, or has no schema, raises
    :class:`NoDatabase` and nothing is written.
    """
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    path = paths.sqlite_path(url)
    if path is not None and not path.exists():
        if not create:
            raise NoDatabase(_no_database(path))
        try:
            os.makedirs(path.parent, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"NOTIFICATIONS_DATABASE_URL: cannot create the directory {path.parent}: "
                f"{exc.strerror or exc}"
            ) from None
    with app.app_context():
        engine = db.engine
        if not create and schema_version(engine) == 0:
            raise NoDatabase(_no_database(path or paths.describe(url)))
        found = ensure_schema(engine)
    if state(app).schema_found is None:
        state(app).schema_found = found
    return found


def _no_database(where: object) -> str:
    return (f"there is no notifications database at {where} yet: create it with "
            "`notifications init-db` or `notifications serve --demo`, or point "
            "NOTIFICATIONS_DATABASE_URL at an existing one")


def schema_version(engine: Engine) -> int:
    """Return the schema version stored in the database (0 for an empty database)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
        exists = conn.execute(
            text("SELECT 1 FROM information_schema.tables WHERE table_name = 'counters' "
                 "AND table_schema = current_schema()")
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
            f"{SCHEMA_VERSION}; upgrade the service (or point NOTIFICATIONS_DATABASE_URL at "
            "another database)"
        )
    if found == SCHEMA_VERSION:
        return found
    if found:
        _add_columns(engine, found)
        _drop_columns(engine, found)
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()
        try:
            # One script in one IMMEDIATE transaction: workers starting together serialise
            # here, and every statement is IF NOT EXISTS, so the second one changes nothing.
            driver = raw.driver_connection
            assert driver is not None  # a connection just checked out of the pool
            driver.executescript(
                "BEGIN IMMEDIATE;\n" + schema_sql()
                + f"\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
            )
        finally:
            raw.close()
    else:
        _apply_postgresql_schema(engine)
    return found


def _apply_postgresql_schema(engine: Engine) -> None:
    """Run ``schema_postgresql.sql`` and record the version, in one transaction.

    Nodes starting together take turns on an advisory lock; every statement of the file is
    idempotent, so the second one changes nothing.
    """
    raw = engine.raw_connection()
    try:
        driver = cast(Any, raw.driver_connection)
        with driver.transaction():
            driver.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
            driver.execute(schema_sql("postgresql"))
            driver.execute(
                "INSERT INTO counters (name, value) VALUES ('schema_version', %s) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (SCHEMA_VERSION,))
    finally:
        raw.close()


def _add_columns(engine: Engine, found: int) -> None:
    """Add the columns of :data:`ADDED_COLUMNS` that a version-``found`` database lacks."""
    for version, table, column in ADDED_COLUMNS:
        if found < version:
            # Another worker starting at the same moment added it first, or the table is
            # not there yet (schema.sql creates it whole).
            _alter_once(engine, [f"ALTER TABLE {table} ADD COLUMN {column}"],
                        ("duplicate column", "no such table"), ("42701", "42P01"))


def _drop_columns(engine: Engine, found: int) -> None:
    """Drop the columns of :data:`DROPPED_COLUMNS` that a version-``found`` database has.

    Each goes in one transaction with its indexes. SQLite rewrites the table to drop a
    column: on a large database the first start of the new version takes that long, once.
    """
    sqlite = engine.dialect.name == "sqlite"
    for version, table, column, indexes in DROPPED_COLUMNS:
        if found < version:
            # Another worker starting at the same moment dropped it first, or the database
            # never had it (or the table: schema.sql creates it whole).
            _alter_once(engine, [
                *(f"DROP INDEX IF EXISTS {index}" for index in indexes),
                f"ALTER TABLE {table} DROP COLUMN {column if sqlite else 'IF EXISTS ' + column}",
            ], ("no such column", "no such table"), ("42P01",))


def _alter_once(engine: Engine, statements: Sequence[str], done_words: Sequence[str],
                done_states: Sequence[str]) -> None:
    """Run ``statements`` in one write transaction, unless the database says it is done.

    ``done_words`` (in SQLite's message) and ``done_states`` (PostgreSQL's SQLSTATE) name
    the errors that mean the change is there already or cannot apply yet; others raise.
    """
    try:
        with engine.connect() as conn:
            conn.execution_options(immediate=True)
            with conn.begin():
                for statement in statements:
                    conn.exec_driver_sql(statement)
    except OperationalError as exc:
        message = str(exc.orig).lower()
        if not any(words in message for words in done_words):
            raise
    except ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) not in done_states:
            raise


class Store:
    """The app's database: its engine and this process's writer (a new one after a fork)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._writer: Writer | None = None

    @property
    def engine(self) -> Engine:
        """Return the engine bound to the app."""
        with self.app.app_context():
            return db.engine

    @property
    def writer(self) -> Writer:
        """Return this process's writer, starting it on first use."""
        writer = self._writer
        if writer is None or writer.pid != os.getpid():
            writer = Writer(self.engine, timeout=self.app.config["WRITE_TIMEOUT"],
                            synchronous=self.app.config["SYNCHRONOUS"])
            # Looked up at each commit, so that a listener added later is called too.
            writer.after_commit = [lambda: signals.changed()]
            self._writer = writer
        return writer

    def close(self) -> None:
        """Stop this process's writer and close every pooled connection (before a fork, tests)."""
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        self.engine.dispose()


def current_store() -> Store:
    """Return the store of the current app."""
    return state().store


@contextmanager
def reading() -> Iterator[Connection]:
    """Yield a pooled connection for reads that share one snapshot; it never writes.

    On PostgreSQL its transactions are REPEATABLE READ: every statement of one reads the
    same snapshot, as on SQLite (READ COMMITTED would take a new one per statement).
    """
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        yield conn


@lru_cache(maxsize=1024)
def _pyformat(sql: str) -> str:
    """Return a ``?``-placeholder statement in the ``%s`` style of psycopg."""
    return sql.replace("%", "%%").replace("?", "%s")


def driver_sql(sql: str, conn: Connection | Engine) -> str:
    """Return a ``?``-placeholder statement in the placeholder style of ``conn``'s driver."""
    return sql if conn.dialect.paramstyle == "qmark" else _pyformat(sql)


def run_sql(conn: Connection, sql: str, params: Any = ()) -> Any:
    """Run a ``?``-placeholder statement on ``conn`` through its driver; return the result."""
    return conn.exec_driver_sql(driver_sql(sql, conn), params)


def read_rows(sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Run one read statement (``?`` placeholders) on a pooled connection; return its rows.

    It goes through the driver's own cursor, with no transaction: a single statement reads
    one snapshot. When anyone listens for cursor events on the engine (statement logging,
    metrics, the tests' query-plan checks), it runs through SQLAlchemy instead, so that
    they see it.
    """
    engine = db.engine
    sql = driver_sql(sql, engine)
    dispatch = engine.dispatch
    if dispatch.before_cursor_execute or dispatch.after_cursor_execute:
        with engine.connect() as conn:
            return list(conn.exec_driver_sql(sql, tuple(params)).all())
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            cursor.execute(sql, params)
            return cast(list[Any], cursor.fetchall())
        finally:
            cursor.close()
    finally:
        raw.close()


def write(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(connection, *args)`` on this process's writer and return its result."""
    return current_store().writer.run(fn, *args)


def ping() -> None:
    """Run the cheapest statement there is (the health check)."""
    with reading() as conn:
        conn.exec_driver_sql("SELECT 1").scalar()
