"""Operating the database: backup, restore, checks, retention passes and lock files.

Backups use SQLite's online backup API from inside one read transaction on the source: in
WAL mode that transaction is a snapshot which writers never wait for, and the backup copies
exactly that snapshot page by page (it never restarts, however busy the service is). A
copy of the file would not do: the newest commits live in the ``-wal`` file until a
checkpoint.

A running ``notifications serve`` holds a shared ``flock`` on the database's lock file
(``<database>.lock``, beside it) for as long as the master or any worker lives; the kernel
drops it when the last of them exits, even after ``kill -9``. ``restore`` asks for the
exclusive lock: it only gets it when no server uses the file, and it holds it while it
writes, so a server cannot start in the middle of a restore.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, text

from notifications import paths
from notifications.store.engine import SCHEMA_VERSION, reading, schema_sql, write
from notifications.store.models import counters, notifications
from notifications.store.purge import delete_chunk_job
from notifications.store.rows import now_us

#: Pages copied per backup step (4 KiB each): a progress bar moves every 4 MiB.
BACKUP_STEP_PAGES = 1024
#: Suffix of the lock file a running server holds beside the database.
LOCK_SUFFIX = ".lock"
#: Milliseconds the short-lived connections here wait for a lock.
BUSY_TIMEOUT_MS = 5_000

_INDEX = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.I)
_TABLE = re.compile(r"CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.I)
_TRIGGER = re.compile(r"CREATE\s+TRIGGER\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.I)


class MaintenanceError(Exception):
    """A maintenance command cannot do what was asked (one line for the administrator)."""


def sqlite_file(url: str) -> Path:
    """Return the database file of a SQLite URL; other databases have their own tools."""
    path = paths.sqlite_path(url)
    if path is None:
        raise MaintenanceError(
            "backup, restore and check work on SQLite databases; use the database's own "
            "tools (pg_dump, pg_restore) for others")
    return path


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def file_sizes(path: Path) -> dict[str, int]:
    """Return the sizes in bytes of the database file and of its WAL (0 when absent)."""

    def size(p: Path) -> int:
        try:
            return p.stat().st_size
        except OSError:
            return 0

    return {"database_bytes": size(path), "wal_bytes": size(Path(str(path) + "-wal"))}


# --- checks -----------------------------------------------------------------------------


def expected_objects() -> tuple[set[str], set[str]]:
    """Return the table and index names that ``schema.sql`` creates."""
    sql = schema_sql()
    return set(_TABLE.findall(sql)), set(_INDEX.findall(sql))


def expected_triggers() -> set[str]:
    """Return the names of the triggers ``schema.sql`` creates (those of the change log)."""
    return set(_TRIGGER.findall(schema_sql()))


@dataclass
class CheckReport:
    """What ``check`` found in one database file."""

    path: str
    integrity: list[str] = field(default_factory=list)
    schema_version: int = 0
    missing_tables: list[str] = field(default_factory=list)
    missing_indexes: list[str] = field(default_factory=list)
    #: A missing change-log trigger would silently keep changes from the streams.
    missing_triggers: list[str] = field(default_factory=list)
    notifications: int = 0
    database_bytes: int = 0
    wal_bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Tell whether nothing is wrong."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain data (the ``--json`` output)."""
        return {
            "path": self.path, "ok": self.ok, "integrity": self.integrity,
            "schema_version": self.schema_version, "expected_schema_version": SCHEMA_VERSION,
            "missing_tables": self.missing_tables, "missing_indexes": self.missing_indexes,
            "missing_triggers": self.missing_triggers,
            "notifications": self.notifications, "database_bytes": self.database_bytes,
            "wal_bytes": self.wal_bytes, "problems": self.problems,
        }


def check(path: Path, *, quick: bool = False, allow_older: bool = False) -> CheckReport:
    """Check a database file: integrity, schema version, tables and indexes, sizes.

    ``allow_older`` accepts an older schema version (``restore`` upgrades it afterwards).
    """
    sizes = file_sizes(path)
    report = CheckReport(str(path), database_bytes=sizes["database_bytes"],
                         wal_bytes=sizes["wal_bytes"])
    if not path.exists():
        report.problems.append(f"{path} does not exist")
        return report
    try:
        conn = _connect(path, readonly=True)
        try:
            pragma = "quick_check" if quick else "integrity_check"
            report.integrity = [r[0] for r in conn.execute(f"PRAGMA {pragma}")]
            report.schema_version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            found = {(kind, name) for kind, name in conn.execute(
                "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'index', 'trigger')")}
            tables, indexes = expected_objects()
            report.missing_tables = sorted(n for n in tables if ("table", n) not in found)
            report.missing_indexes = sorted(n for n in indexes if ("index", n) not in found)
            report.missing_triggers = sorted(n for n in expected_triggers()
                                             if ("trigger", n) not in found)
            if "notifications" not in report.missing_tables:
                report.notifications = int(
                    conn.execute("SELECT count(*) FROM notifications").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"{path} cannot be read as a SQLite database: {exc}")
        return report
    if report.integrity != ["ok"]:
        report.problems.append("integrity check failed: " + "; ".join(report.integrity[:5]))
    version = report.schema_version
    if version > SCHEMA_VERSION:
        report.problems.append(
            f"schema version {version} is newer than this service knows ({SCHEMA_VERSION})")
    elif version < SCHEMA_VERSION and not (allow_older and version > 0):
        report.problems.append(
            f"schema version {version}, expected {SCHEMA_VERSION}"
            + (": run `notifications init-db`" if version > 0
               else ": not a notifications database"))
    if version == SCHEMA_VERSION:
        # An older schema lacks newer objects by design; init-db adds them.
        if report.missing_tables:
            report.problems.append("missing tables: " + ", ".join(report.missing_tables))
        if report.missing_indexes:
            report.problems.append("missing indexes: " + ", ".join(report.missing_indexes))
        if report.missing_triggers:
            report.problems.append("missing triggers: " + ", ".join(report.missing_triggers))
    return report


# --- backup and restore -----------------------------------------------------------------

Progress = Callable[[int, int], None]


def _pages_done(progress: Progress | None) -> Callable[[int, int, int], None]:
    """Adapt ``progress(done, total)`` to what sqlite3's backup calls after each step."""
    def step(_status: int, remaining: int, total: int) -> None:
        if progress is not None:
            progress(total - remaining, total)
    return step


def backup(source: Path, target: Path, *, progress: Progress | None = None,
           step_pages: int = BACKUP_STEP_PAGES) -> dict[str, Any]:
    """Copy one consistent snapshot of ``source`` to ``target``; return what it holds.

    ``progress(done_pages, total_pages)`` is called after each step. The copy is written
    beside ``target`` and renamed into place once complete and checked, so ``target`` is
    never a half-written file.
    """
    if not source.exists():
        raise MaintenanceError(f"there is no database at {source}")
    if target.exists() and target.resolve() == source.resolve():
        raise MaintenanceError("the backup file cannot be the database itself")
    if target.is_dir():
        raise MaintenanceError(f"{target} is a directory; name the backup file")
    partial = target.with_name(target.name + ".partial")
    try:
        partial.unlink(missing_ok=True)
        src = _connect(source)
    except (OSError, sqlite3.Error) as exc:
        raise MaintenanceError(f"cannot open {source}: {exc}") from None
    try:
        # The snapshot starts with this read; every page the backup copies comes from it.
        src.execute("BEGIN")
        seq, count = src.execute(
            "SELECT coalesce(max(seq), 0), count(*) FROM notifications").fetchone()
        try:
            dst = sqlite3.connect(partial, isolation_level=None)
        except sqlite3.Error as exc:
            raise MaintenanceError(f"cannot write {target}: {exc}") from None
        try:
            src.backup(dst, pages=step_pages, progress=_pages_done(progress))
            # A backup is one self-contained file: no -wal beside it.
            dst.execute("PRAGMA journal_mode = DELETE")
            result = dst.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            dst.close()
        src.execute("COMMIT")
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise MaintenanceError(f"backup failed: {exc}") from None
    finally:
        src.close()
    if result != "ok":
        partial.unlink(missing_ok=True)
        raise MaintenanceError(f"the copy failed its check ({result}); nothing was written")
    with open(partial, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(partial, target)
    return {"file": str(target), "bytes": target.stat().st_size, "notifications": count,
            "last_seq": seq}


def restore(source: Path, target: Path, *, progress: Progress | None = None) -> dict[str, Any]:
    """Replace the database at ``target`` with the backup ``source`` (already checked).

    The pages go through SQLite's backup API into the live file, so SQLite keeps its WAL and
    any reader consistent; the caller holds the server lock (or was told to force).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        src = _connect(source, readonly=True)
        dst = _connect(target)
    except sqlite3.Error as exc:
        raise MaintenanceError(f"cannot open the database files: {exc}") from None
    try:
        src.backup(dst, pages=BACKUP_STEP_PAGES, progress=_pages_done(progress))
        dst.execute("PRAGMA journal_mode = WAL")
        count = dst.execute("SELECT count(*) FROM notifications").fetchone()[0]
    except sqlite3.Error as exc:
        raise MaintenanceError(f"restore failed: {exc}") from None
    finally:
        src.close()
        dst.close()
    return {"file": str(target), "notifications": count}


# --- the server's lock file -------------------------------------------------------------


def lock_path(database: Path) -> Path:
    """Return the lock file of a database (beside it, as SQLite's ``-wal`` and ``-shm``)."""
    return Path(str(database) + LOCK_SUFFIX)


def _lock(path: Path, mode: int) -> int | None:
    """Take an flock without waiting; return its descriptor, or None when it is held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def hold_server_lock(database: Path) -> int:
    """Take the shared lock of a serving process; raise while a restore holds it."""
    fd = _lock(lock_path(database), fcntl.LOCK_SH)
    if fd is None:
        raise MaintenanceError(
            f"a restore of {database} is in progress; start the server when it has finished")
    return fd


def take_exclusive(path: Path) -> int | None:
    """Take an exclusive lock file without waiting; None when another process holds it."""
    return _lock(path, fcntl.LOCK_EX)


def release(fd: int) -> None:
    """Give a lock back."""
    os.close(fd)


# --- retention --------------------------------------------------------------------------

#: Names of the counters rows where retention records its runs.
RETENTION_COUNTERS = ("retention_last_run_us", "retention_last_deleted",
                      "retention_deleted", "retention_deleted_unread")


def _retention_filter(read_before: int | None, unread_before: int | None) -> Any:
    read_at, created_at = notifications.c.read_at, notifications.c.created_at
    parts = []
    if read_before is not None:
        parts.append(and_(read_at.is_not(None), created_at < read_before))
    if unread_before is not None:
        parts.append(and_(read_at.is_(None), created_at < unread_before))
    return or_(*parts)


def _record_retention_job(conn: Connection, ran_at: int, deleted: int, unread: int) -> None:
    for name, value, add in (("retention_last_run_us", ran_at, False),
                             ("retention_last_deleted", deleted, False),
                             ("retention_deleted", deleted, True),
                             ("retention_deleted_unread", unread, True)):
        conn.execute(text("INSERT INTO counters (name, value) VALUES (:n, 0) "
                          "ON CONFLICT (name) DO NOTHING"), {"n": name})
        new = counters.c.value + value if add else value
        conn.execute(counters.update().where(counters.c.name == name).values(value=new))


def apply_retention(read_before: int | None, unread_before: int | None, *, chunk: int = 500,
                    pause: Callable[[], None] | None = None) -> dict[str, int]:
    """Delete what the retention policy no longer keeps, ``chunk`` rows per transaction.

    Each chunk is found by a read (no lock held) and deleted by the writer with purge's
    job, so streams hear of it as of a purge. ``pause()`` runs between chunks, letting the
    service's own writes through.
    """
    deleted = unread = 0
    if read_before is not None or unread_before is not None:
        condition = _retention_filter(read_before, unread_before)
        seq = notifications.c.seq
        cursor = 0
        while True:
            with reading() as conn:
                page = select(seq).where(seq > cursor, condition) \
                    .order_by(seq).limit(chunk).subquery()
                last = conn.execute(select(func.max(page.c.seq))).scalar()
            if last is None:
                break
            # Bounded by the read's last row: the writer's own scan stays this short range.
            _, count, gone_unread = write(delete_chunk_job, [condition, seq <= last], cursor,
                                          chunk)
            deleted += count
            unread += gone_unread
            cursor = last
            if pause is not None:
                pause()
    write(_record_retention_job, now_us(), deleted, unread)
    return {"deleted": deleted, "unread": unread}


def retention_status() -> dict[str, int | None]:
    """Return when retention last ran (µs, or None) and what it deleted then and in all."""
    with reading() as conn:
        rows = dict(conn.execute(
            select(counters.c.name, counters.c.value).where(counters.c.name.in_(RETENTION_COUNTERS))
        ).all())
    return {
        "last_run_us": rows.get("retention_last_run_us"),
        "last_deleted": int(rows.get("retention_last_deleted", 0)),
        "deleted": int(rows.get("retention_deleted", 0)),
        "deleted_unread": int(rows.get("retention_deleted_unread", 0)),
    }
