"""The data layer: every SQL statement of the service, and the one write path per process.

- :mod:`.engine` -- engine set-up, schema, the read connections, and the rule of what runs
  where (reads on the caller, writes on the writer thread).
- :mod:`.writer` -- the writer thread: group commit, lock timeout, results back to callers.
- :mod:`.queries` -- the reads and the writer jobs of the APIs, streams and commands.
- :mod:`.models` -- the table definitions (``schema.sql`` is the authority).
"""
from __future__ import annotations

from notifications.store.engine import ChangeCounter, current_store, init_app, ping, reading, write
from notifications.store.writer import WriteTimeout

__all__ = ["ChangeCounter", "WriteTimeout", "current_store", "init_app", "ping", "reading",
           "write"]
