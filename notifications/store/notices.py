"""Knowing when to read the change log: SQLite's data version, PostgreSQL's notifications.

A watcher reads the change log after its position only when something may have been
committed since it last looked; :class:`CommitSignal` tells it so, cheaply:

- On SQLite it asks ``PRAGMA data_version`` of a long-lived connection of its own: the
  value moves only when another connection committed, so polling it costs microseconds
  and no query.
- On PostgreSQL the change-log triggers send the newest position on the channel
  ``notifications_changes`` (see ``schema_postgresql.sql``); the server delivers it when
  the transaction commits, to every listening connection of every node. One connection per
  process listens, in a greenlet of its own (:meth:`CommitSignal.listen`). While it is
  connected, the watcher reads the log only after a notification; while it is not, the
  watcher reads at every poll instead, so a lost connection delays changes by at most a
  poll interval and loses none. Each time it (re)connects, the first check says yes: a
  commit made before LISTEN took effect had no one to tell.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine

log = logging.getLogger("notifications.stream")

#: The channel the change-log triggers notify on PostgreSQL.
CHANNEL = "notifications_changes"
#: Seconds between attempts to open the listening connection again.
RECONNECT_PAUSE = 1.0


class CommitSignal:
    """Whether anyone committed since the last :meth:`moved`, for one process's watcher."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        #: True while the PostgreSQL listening connection is up (always False on SQLite).
        self.listening = False
        self._notified = True
        self._conn: Any = None
        self._version: int | None = None
        self._stopping = False
        self._listener: Any = None

    # --- the watcher's side ---------------------------------------------------------

    def moved(self) -> bool:
        """Tell whether anyone may have committed since the last call (the first says yes)."""
        if not self.sqlite:
            if not self.listening:
                return True  # polling, until the listening connection is back
            notified, self._notified = self._notified, False
            return notified
        if self._conn is None:
            self._conn = self.engine.raw_connection()
            self._version = None
        version = self._conn.dbapi_connection.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version:
            return False
        self._version = version
        return True

    def committed(self) -> None:
        """Note that this process committed (any thread): the next check says yes."""
        self._notified = True

    def reset(self) -> None:
        """Drop the SQLite connection (after an error); the next call opens a new one."""
        if self._conn is not None:
            try:
                self._conn.invalidate()
            except Exception:  # already broken; nothing more to do
                pass
            self._conn = None

    # --- PostgreSQL: the listening greenlet ------------------------------------------

    def listen(self, on_notice: Any) -> None:
        """LISTEN until :meth:`stop`; call ``on_notice()`` at each notification (a greenlet).

        ``on_notice`` is also called when the connection comes up or goes down, so the
        watcher looks at once. Does nothing on SQLite.
        """
        if self.sqlite:
            return
        import gevent

        while not self._stopping:
            try:
                self._listen_once(on_notice)
            except Exception as exc:
                if self._stopping:
                    break
                log.warning("change notifications unavailable (%s); polling every interval "
                            "until the connection is back", exc)
            finally:
                self.listening = False
                self._close_listener()
            if self._stopping:
                break
            on_notice()
            gevent.sleep(RECONNECT_PAUSE)

    def _listen_once(self, on_notice: Any) -> None:
        raw = self.engine.raw_connection()
        # The driver's connection first: a detached connection no longer names it.
        driver: Any = raw.driver_connection
        # Out of the pool for good: the connection is the listener's alone from now on.
        raw.detach()
        self._listener = raw
        driver.rollback()
        driver.autocommit = True
        driver.execute(f"LISTEN {CHANNEL}")
        self.listening = True
        self._notified = True
        on_notice()
        # A timeout lets the loop see stop() within a second even when nothing is written.
        while not self._stopping:
            for _notice in driver.notifies(timeout=1.0):
                self._notified = True
                on_notice()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.close()
            except Exception:  # already broken; nothing more to do
                pass

    def stop(self) -> None:
        """End :meth:`listen` (within a second) and close its connection."""
        self._stopping = True
