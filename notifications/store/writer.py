"""The write path: one native thread per process owns the write connection.

SQLite has one writer at a time. Instead of letting every request wait for the write lock
on its own (in a pool of threads, where the holder of the lock could end up queued behind
the requests that wait for it), each process has exactly one writer thread. Callers hand it
a *job* -- a function of a connection -- and wait for the result:

- The writer takes every job already queued (up to :data:`BATCH_JOBS`, and only while the
  transaction has been open less than :data:`BATCH_MS`) and runs them in one
  ``BEGIN IMMEDIATE`` transaction, each inside its own savepoint, so one job's error undoes
  only that job. One commit (and, with ``synchronous = FULL``, one fsync) serves them all.
- A caller learns its result only after the commit: an acknowledged write is stored.
- Only the writer ever waits for another process's lock, for at most the write timeout;
  then every job waiting for that lock fails with :class:`WriteTimeout`, having changed
  nothing. The gevent hub never waits for a lock: a greenlet parks on a gevent event that
  the hub sets when the writer signals (an async watcher, the thread-safe way into the hub).
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

log = logging.getLogger("notifications.store")

T = TypeVar("T")

#: Most jobs committed in one transaction.
BATCH_JOBS = 200
#: The PostgreSQL advisory lock every writer holds for its whole transaction (the same
#: number as in ``schema_postgresql.sql``).
WRITE_LOCK_KEY = 7022365203857063029
#: PostgreSQL's "lock not available" (``lock_timeout`` expired).
LOCK_TIMEOUT_SQLSTATE = "55P03"
#: A transaction takes in further queued jobs only while it has been open less than this.
BATCH_MS = 20.0


class WriteTimeout(Exception):
    """The write lock could not be had in time (another process holds it); nothing changed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the database is busy: another process held the write lock for more than "
            f"{seconds:g}s; nothing was changed, try again"
        )
        self.seconds = seconds


def _native(module: str, name: str) -> Any:
    """Return the unpatched object even when gevent has monkey-patched the process."""
    from gevent import monkey

    return monkey.get_original(module, name)


def on_hub() -> bool:
    """Tell whether this code runs in greenlets on a monkey-patched gevent hub."""
    from gevent import monkey
    from gevent._hub_local import get_hub_if_exists

    if not monkey.is_module_patched("threading"):
        return False
    hub = get_hub_if_exists()
    return hub is not None and hub.main_hub


#: A sleep of the writer thread alone (gevent's would need a hub in this thread).
_sleep = _native("time", "sleep")


class Job:
    """One unit of work for the writer and the way back to the caller waiting for it."""

    __slots__ = ("fn", "args", "ok", "value", "queued", "_lock", "_event")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], hub: bool) -> None:
        self.fn = fn
        self.args = args
        self.ok = False
        self.value: Any = None
        self.queued = time.monotonic()
        self._lock: Any = None
        self._event: Any = None
        if hub:
            from gevent.event import Event

            self._event = Event()
        else:
            self._lock = _native("_thread", "allocate_lock")()
            self._lock.acquire()

    def finish(self, ok: bool, value: Any) -> None:
        """Record the outcome (on the writer thread)."""
        self.ok, self.value = ok, value

    def wake(self) -> None:
        """Let the waiting caller go on (on the hub for a greenlet, else from the writer)."""
        if self._event is not None:
            self._event.set()
        else:
            self._lock.release()

    def wait(self) -> Any:
        """Block the caller (a greenlet yields to the hub) until the job is done."""
        if self._event is not None:
            self._event.wait()
        else:
            self._lock.acquire()
        if self.ok:
            return self.value
        raise self.value


class Writer:
    """The write thread of one process and the connection only it uses."""

    def __init__(self, engine: Engine, *, timeout: float, synchronous: str) -> None:
        self.engine = engine
        self.timeout = timeout
        self.synchronous = synchronous
        self.pid = os.getpid()
        self.commits = 0
        self.committed_jobs = 0
        self.busy_failures = 0
        #: Seconds the last commit took (the metrics read it).
        self.last_commit_seconds = 0.0
        self.after_commit: list[Callable[[], None]] = []
        # The C queue: its get() blocks the writer thread only, whatever gevent patched.
        self._queue = _native("_queue", "SimpleQueue")()
        self._done: deque[Job] = deque()
        self._async: Any = None
        self._conn: Connection | None = None
        self._sqlite: Any = None
        self._postgresql = False
        self._thread: Any = None
        self._start_lock = _native("_thread", "allocate_lock")()
        self._stopped = _native("_thread", "allocate_lock")()

    # --- the caller's side ---------------------------------------------------------

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` in the writer's next transaction and return its result."""
        self._ensure_started()
        hub = on_hub()
        if hub and self._async is None:
            self._start_async()
        job = Job(fn, args, hub)
        self._queue.put(job)
        return job.wait()

    @property
    def depth(self) -> int:
        """How many jobs wait for the writer (approximately)."""
        return self._queue.qsize()

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        # Checked out here, on the caller's thread: SQLAlchemy's pool guards itself with
        # (possibly gevent-patched) locks. From now on only the writer thread uses it.
        # Connecting may yield to other greenlets (PostgreSQL talks to a server), so it
        # happens before the native lock below, which a greenlet must never hold across a
        # yield: another greenlet asking for it would block the whole hub.
        conn = connection_of_its_own(self.engine)
        spare: Connection | None = conn
        with self._start_lock:
            if self._thread is None:
                self._adopt(conn)
                spare = None
        if spare is not None:  # another caller started the writer meanwhile
            spare.close()

    def _adopt(self, conn: Connection) -> None:
        """Make ``conn`` the writer's connection and start the thread (nothing here yields)."""
        if conn.dialect.name == "sqlite":
            raw = conn.connection.dbapi_connection
            assert raw is not None  # a connection just checked out of the pool
            # The writer waits for the lock in :meth:`_lock`, not in SQLite's busy
            # handler, whose sleeps grow to 100 ms and would miss short gaps.
            raw.execute("PRAGMA busy_timeout = 0")
            raw.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            self._sqlite = raw
        elif conn.dialect.name == "postgresql":
            self._postgresql = True
        self._conn = conn.execution_options(immediate=True)
        self._stopped.acquire()
        start = _native("_thread", "start_new_thread")
        self._thread = start(self._loop, ())

    def _start_async(self) -> None:
        import gevent

        watcher = gevent.get_hub().loop.async_()
        watcher.start(self._deliver)
        self._async = watcher

    def _deliver(self) -> None:
        """Wake the greenlets whose jobs are done (runs on the hub)."""
        while self._done:
            self._done.popleft().wake()

    # --- the writer thread ---------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                self._batch(first)
        finally:
            self._stopped.release()

    def _batch(self, first: Job) -> None:
        jobs = [first]
        deadline = first.queued + self.timeout
        try:
            self._lock(deadline)
            try:
                notify = self._transaction(jobs, careful=False)
            except _JobFailed:
                # Undone whole; now each job in a savepoint of its own, so that only the
                # failing one is left out. The rollback gave the lock up: take it again.
                self._lock(deadline)
                notify = self._transaction(jobs, careful=True)
            self.commits += 1
            self.committed_jobs += len(jobs)
        except (OperationalError, _Busy) as exc:
            if isinstance(exc, OperationalError) and not _is_busy(exc):
                self._fail(jobs, exc)
                return
            self.busy_failures += 1
            # Everyone queued meanwhile has waited for the same lock: answer them all now
            # rather than let each wait a full timeout of its own.
            while (job := self._take_queued()) is not None:
                jobs.append(job)
            log.warning("write lock not available within %gs; %d write(s) refused",
                        self.timeout, len(jobs))
            self._fail(jobs, WriteTimeout(self.timeout))
            return
        except Exception as exc:
            self._fail(jobs, exc)
            return
        if notify:
            for listener in self.after_commit:
                try:
                    listener()
                except Exception:  # a listener must never keep callers from their results
                    log.exception("a commit listener failed")
        self._hand_back(jobs)

    def _transaction(self, jobs: list[Job], *, careful: bool) -> bool:
        """Run ``jobs`` (taking in more while allowed) in one transaction and commit it.

        Return whether a job changed notifications. Without ``careful`` the first failing
        job raises :class:`_JobFailed`, which undoes the transaction.
        """
        conn = self._conn
        assert conn is not None
        started = time.monotonic()
        with conn.begin():
            conn.info["changed"] = False
            index = 0
            while index < len(jobs):
                self._run_one(conn, jobs[index], careful)
                index += 1
                if (index == len(jobs) and len(jobs) < BATCH_JOBS
                        and (time.monotonic() - started) * 1000 < BATCH_MS
                        and (pending := self._take_queued()) is not None):
                    jobs.append(pending)
            notify = bool(conn.info.get("changed"))
            commit_started = time.monotonic()
        self.last_commit_seconds = time.monotonic() - commit_started
        return notify

    def _take_queued(self) -> Job | None:
        """Return the next queued job without waiting; None when there is none or on closing."""
        if self._queue.empty():
            return None
        job = self._queue.get()
        if job is None:
            self._queue.put(None)  # closing: leave the sentinel for the loop
        return job

    def _lock(self, deadline: float) -> None:
        """Take SQLite's write lock (``BEGIN IMMEDIATE``), retrying until ``deadline``.

        Retries come every 0.1-2 ms, so a lock another process releases between two of its
        transactions is taken within about a millisecond.
        """
        if self._postgresql:
            self._lock_postgresql(deadline)
            return
        raw = self._sqlite
        if raw is None:
            return
        pause = 0.0001
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except Exception as exc:
                if not _is_busy(exc):
                    raise
            if time.monotonic() >= deadline:
                raise _Busy()
            _sleep(pause)
            pause = min(pause * 2, 0.002)

    def _lock_postgresql(self, deadline: float) -> None:
        """Open the transaction with the one write lock of the database (see its schema).

        Every writer of every node takes this advisory lock first, so transactions that
        change notifications commit one after another, in the order of their change-log
        positions. Waiting for it ends at ``deadline`` (``lock_timeout``), as SQLite's wait.
        """
        conn = self._conn
        assert conn is not None
        for attempt in (1, 2):
            # The driver's connection of the moment: SQLAlchemy opens a new one after the
            # old one was invalidated (the server restarted, or ended the session).
            raw: Any = conn.connection.dbapi_connection
            wait_ms = max(1, int((deadline - time.monotonic()) * 1000))
            try:
                raw.execute(f"SET LOCAL lock_timeout = {wait_ms}")
                raw.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
                return
            except Exception as exc:
                if getattr(exc, "sqlstate", None) == LOCK_TIMEOUT_SQLSTATE:
                    raw.rollback()
                    raise _Busy() from None
                if not getattr(raw, "closed", False):
                    raw.rollback()
                    raise
                # The connection is gone. Nothing of this transaction ran yet: take a new
                # connection and try once more, so that a restart of the database server
                # costs the first write after it nothing.
                conn.invalidate()
                if attempt == 2:
                    raise

    def _run_one(self, conn: Connection, job: Job, careful: bool) -> None:
        savepoint = conn.begin_nested() if careful else None
        try:
            value = job.fn(conn, *job.args)
        except Exception as exc:
            if isinstance(exc, OperationalError) and _is_busy(exc):
                raise  # the transaction itself is in trouble: fail the batch
            job.finish(False, exc)
            if savepoint is None:
                raise _JobFailed() from exc
            savepoint.rollback()
        else:
            if savepoint is not None:
                savepoint.commit()
            job.finish(True, value)

    def _fail(self, jobs: list[Job], exc: Exception) -> None:
        for job in jobs:
            job.finish(False, exc)
        self._hand_back(jobs)

    def _hand_back(self, jobs: list[Job]) -> None:
        hub_jobs = False
        for job in jobs:
            if job._event is not None:
                self._done.append(job)
                hub_jobs = True
            else:
                job.wake()
        if hub_jobs and self._async is not None:
            self._async.send()

    def close(self) -> None:
        """Stop the thread after the queued jobs and close the connection.

        A process that forks (the server's master after ``serve --demo`` seeded) closes its
        writer first: a child must never inherit, and one day close, an open SQLite file.
        """
        if self._thread is None or self.pid != os.getpid():
            return
        self._queue.put(None)
        self._stopped.acquire(timeout=10)
        self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def connection_of_its_own(engine: Engine) -> Connection:
    """Return a connection for one long-lived user (the writer, a listener).

    On PostgreSQL it is opened outside the engine's pool, which is bounded and kept for
    reads: a connection held for the life of the process must not take one of its places.
    On SQLite the pool grows as needed, and the engine's connection set-up (its pragmas)
    applies.
    """
    if engine.dialect.name != "postgresql":
        return engine.connect()
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    own = create_engine(engine.url, poolclass=NullPool,
                        connect_args={"application_name": session_name()})
    return own.connect()


def session_name() -> str:
    """The name of this process's PostgreSQL sessions (``pg_stat_activity.application_name``)."""
    return f"notifications:{os.getpid()}"


class _Busy(Exception):
    """The write lock stayed taken until the deadline."""


class _JobFailed(Exception):
    """A job raised while its transaction ran without savepoints."""


def _is_busy(exc: Exception) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database is busy" in text


def mark_changed(conn: Connection) -> None:
    """Tell the writer, from inside a job, that notifications or their state changed."""
    conn.info["changed"] = True
