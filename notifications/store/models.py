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

#: The rows of ``ux_notifications_collapse``: the unread, unarchived ones with a collapse key.
_LIVE_COLLAPSE = "collapse_key IS NOT NULL AND read_at IS NULL AND archived_at IS NULL"

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
    Column("collapse_key", String(255)),
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
    Index(
        "ux_notifications_collapse", "user_id", "collapse_key", unique=True,
        sqlite_where=text(_LIVE_COLLAPSE), postgresql_where=text(_LIVE_COLLAPSE),
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

#: What a user does not want stored unless it is critical (version 2's preferences); lists
#: are JSON arrays of text.
preferences = Table(
    "preferences",
    metadata,
    Column("user_id", String(255), primary_key=True),
    Column("muted_kinds", Text, nullable=False, server_default=text("'[]'")),
    Column("muted_datasets", Text, nullable=False, server_default=text("'[]'")),
    Column("updated_at", BigInteger, nullable=False),
)

# --- outbound webhooks (schema version 5) ----------------------------------------------------

#: An outbound webhook endpoint and how far into the change log its deliveries are made.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("events", String(255), nullable=False),
    Column("secret", String(128), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

#: One change for one endpoint, with its body frozen, and where its attempts stand.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("endpoint_id", String(32), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("type", String(32), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("created_at", BigInteger, nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("last_attempt_at", BigInteger),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("delivered_at", BigInteger),
    Index("ux_webhook_deliveries_position", "endpoint_id", "position", unique=True),
    Index(
        "ix_webhook_deliveries_pending", "endpoint_id", "position",
        sqlite_where=text("status = 'pending'"), postgresql_where=text("status = 'pending'"),
    ),
    Index(
        "ix_webhook_deliveries_delivered", "delivered_at",
        sqlite_where=text("status = 'delivered'"),
        postgresql_where=text("status = 'delivered'"),
    ),
)

#: The one webhook sender of the database: who holds it, until when.
webhook_sender_lease = Table(
    "webhook_sender_lease",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)
