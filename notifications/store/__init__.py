"""The data layer: every SQL statement of the service, and the one write path per process.

- :mod:`.engine` -- engine set-up, schema, the read connections, and the rule of what runs
  where (reads on the caller, writes on the writer thread).
- :mod:`.writer` -- the writer thread: group commit, lock timeout, results back to callers.
- :mod:`.models` -- the tables as SQLAlchemy Core ``Table`` objects (``schema.sql`` is the
  authority).
- :mod:`.scope` -- which rows a caller sees: :class:`~.scope.Scope` and its WHERE clause.
- :mod:`.rows` -- a stored notification as the reads return it (columns, times, metadata).
- :mod:`.reads` -- the REST reads of both variants and the admin commands' list.
- :mod:`.marks` -- marking notifications read (both APIs and the ``mark-read`` command).
- :mod:`.inserts` -- storing new notifications (ingest, send, seeding, imports).
- :mod:`.inbox` -- the inbox API version 2: lists by keyset, counts, PATCH and bulk changes.
- :mod:`.feed` -- what the streams and ``tail`` read besides the log: positions, counts, replays.
- :mod:`.changelog` -- the change log the triggers of ``schema.sql`` write: pages for the
  watcher, per-user replays for the streams, and its retention.
- :mod:`.notices` -- when to read the change log: SQLite's data version, PostgreSQL's
  LISTEN/NOTIFY.
- :mod:`.leases` -- stream leases, the per-user stream limits across workers.
- :mod:`.webhooks` -- outbound webhook endpoints, their deliveries, the sender's lease.
- :mod:`.stats`, :mod:`.purge`, :mod:`.export`, :mod:`.importer` -- the data commands.
- :mod:`.maintenance` -- backup, restore, checks, retention passes and lock files.
- :mod:`.seeding`, :mod:`.demo` -- sample data; :mod:`.listeners` -- in-process change
  notification after each commit.
"""
from __future__ import annotations

from notifications.store.engine import current_store, init_app, ping, reading, write
from notifications.store.notices import CommitSignal
from notifications.store.writer import WriteTimeout

__all__ = ["CommitSignal", "WriteTimeout", "current_store", "init_app", "ping", "reading",
           "write"]
