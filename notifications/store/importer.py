"""The ``import`` command's store side: stage validated rows, then copy them in."""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from notifications.store.engine import run_sql
from notifications.store.inserts import INSERT_FIELDS, insert_tuples
from notifications.store.models import db

#: Staging column types that are not TEXT.
_STAGE_TYPES = {"created_at": "BIGINT", "read_at": "BIGINT", "seen_at": "BIGINT",
                "archived_at": "BIGINT", "collapsed_count": "INTEGER"}


class Importer:
    """Stage validated rows, then copy them into the table, skipping stored ids.

    Staging goes to a temporary table of a connection of the importer's own, which takes
    no lock on the database, so a file that turns out to be invalid half-way leaves
    nothing behind. The copy then goes through the writer in short transactions, in file
    order, with a pause between them in which other processes' writers get their turn.
    """

    def __init__(self) -> None:
        self.conn = db.engine.connect()
        self.staged = 0
        columns = ", ".join(f"{name} {_STAGE_TYPES.get(name, 'TEXT')}" for name in INSERT_FIELDS)
        run_sql(self.conn,
            f"CREATE TEMPORARY TABLE import_staging (line INTEGER PRIMARY KEY, {columns})"
        )
        self.conn.commit()
        mark = "?"
        self._stage_sql = (
            f"INSERT INTO import_staging (line, {', '.join(INSERT_FIELDS)}) "
            f"VALUES ({', '.join([mark] * (len(INSERT_FIELDS) + 1))})"
        )
        self._page_sql = (
            f"SELECT line, {', '.join(INSERT_FIELDS)} FROM import_staging "
            f"WHERE line > {mark} ORDER BY line LIMIT {mark}"
        )

    def stage(self, rows: Sequence[Sequence[Any]]) -> None:
        """Stage rows: the line number, then the values in ``INSERT_FIELDS`` order."""
        if rows:
            with self.conn.begin():
                run_sql(self.conn, self._stage_sql, list(rows))
            self.staged += len(rows)

    def copy(self, chunk: int = 5_000, pause: float = 0.005) -> int:
        """Copy the staged rows into the table; return how many were new.

        ``chunk`` bounds how long one transaction holds the write lock (a few tens of
        milliseconds); ``pause`` is longer than a waiting writer's retry interval.
        """
        inserted = 0
        line = 0
        while True:
            page = run_sql(self.conn, self._page_sql, (line, chunk)).all()
            self.conn.commit()
            if not page:
                return inserted
            line = page[-1][0]
            inserted += insert_tuples([tuple(row[1:]) for row in page], skip_existing=True)
            time.sleep(pause)

    def close(self) -> None:
        """Drop the staging table and release the connection."""
        try:
            self.conn.rollback()
            run_sql(self.conn, "DROP TABLE IF EXISTS import_staging")
            self.conn.commit()
        finally:
            self.conn.close()
