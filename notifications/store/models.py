"""The tables, as SQLAlchemy Core ``Table`` objects; ``schema.sql`` is the authority.

A test builds a database from these definitions and one from ``schema.sql`` and checks that
the two agree, column by column and index by index. Beyond that the definitions serve two
purposes: the Core statements of the colder paths (the change feed, stream leases, stats,
purge and retention, the rows an insert hands back) name their columns through them, and
on a database other than SQLite ``metadata.create_all`` creates the schema.

Why Core and no ORM: every write is a job that the one writer thread runs in a
group-committed transaction (:mod:`notifications.store.writer`), and every read is a single
statement whose rows go straight to the serialisers. There are no objects to load, track
and flush, and an ORM session would add its identity map and unit of work to statements
that must cost as little as SQLite takes to run them. The hot paths even bypass Core's
statement compiler and run plain SQL (see :mod:`notifications.store.scope`).

Flask-SQLAlchemy stays for one job: it binds an engine to each app from its config
(``SQLALCHEMY_DATABASE_URI``, ``SQLALCHEMY_ENGINE_OPTIONS``, with its SQLite defaults for
in-memory and relative paths) and hands it out as ``db.engine`` inside that app's context.
Its session and its ``Model`` base are never used.
"""
from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text, text

#: Every table of the service.
metadata = MetaData()

#: The app's engine (``db.engine``) and :data:`metadata` (``db.metadata``).
db = SQLAlchemy(metadata=metadata)

#: One in-app notification for one user.
notifications = Table(
    "notifications",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("organization_id", String(255)),
    Column("dataset_id", String(36)),
    Column("kind", String(255), nullable=False, server_default=text("''")),
    Column("entity_type", String(255), nullable=False, server_default=text("''")),
    Column("entity_id", String(255), nullable=False, server_default=text("''")),
    Column("title", Text, nullable=False, server_default=text("''")),
    Column("body", Text),
    Column("link", Text),
    Column("metadata", Text, nullable=False, server_default=text("'{}'")),
    Column("dedupe_key", String(255)),
    Column("created_at", BigInteger, nullable=False),
    Column("read_at", BigInteger),
    Column("seen_at", BigInteger),
    Column("archived_at", BigInteger),
    Column("collapsed_count", Integer, nullable=False, server_default=text("0")),
    Index("ux_notifications_id", "id", unique=True),
    Index("ix_notifications_user_timeline", "user_id", "created_at", "seq", "archived_at"),
    Index("ix_notifications_user_dataset_created", "user_id", "dataset_id", "created_at", "seq"),
    Index("ix_notifications_user_org_timeline", "user_id", "organization_id", "created_at", "seq",
          "archived_at"),
    Index(
        "ix_notifications_unread_state", "user_id", "organization_id", "dataset_id",
        "archived_at", "seen_at", "read_at",
        sqlite_where=text("read_at IS NULL"), postgresql_where=text("read_at IS NULL"),
    ),
    Index(
        "ix_notifications_archived", "user_id", "created_at", "seq",
        sqlite_where=text("archived_at IS NOT NULL"),
        postgresql_where=text("archived_at IS NOT NULL"),
    ),
    Index(
        "ux_notifications_dedupe", "user_id", "dedupe_key", unique=True,
        sqlite_where=text("dedupe_key IS NOT NULL"),
        postgresql_where=text("dedupe_key IS NOT NULL"),
    ),
    sqlite_autoincrement=True,
)

#: Named values: the change log's floor, retention's runs (and on PostgreSQL the schema version).
counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False, server_default=text("0")),
)

#: The change log: one entry per change to a notification, appended by triggers on SQLite
#: (``schema.sql``; ``metadata.create_all`` creates no triggers).
changes = Table(
    "changes",
    metadata,
    Column("position", Integer, primary_key=True, autoincrement=True),
    Column("change", String(16), nullable=False),
    Column("notification_id", String(36), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("organization_id", String(255)),
    Column("dataset_id", String(36)),
    Column("kind", String(255), nullable=False, server_default=text("''")),
    Column("seen_at", BigInteger),
    Column("read_at", BigInteger),
    Column("archived_at", BigInteger),
    Index("ix_changes_user", "user_id", "position"),
    sqlite_autoincrement=True,
)

#: The change log's head as the retention pass saw it, and when.
change_marks = Table(
    "change_marks",
    metadata,
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("marked_at", BigInteger, nullable=False),
)

#: One open stream, counted against its user's limit for streams of its kind.
stream_leases = Table(
    "stream_leases",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(255), nullable=False),
    Column("owner", String(128), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False, server_default=text("'organization'")),
    Index("ix_stream_leases_user", "user_id", "expires_at"),
    Index("ix_stream_leases_owner", "owner"),
)
