"""ORM models; ``schema.sql`` is the authority and a test keeps the two in agreement."""
from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, Index, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base shared by every model."""


db = SQLAlchemy(model_class=Base)


class Notification(db.Model):
    """One in-app notification for one user."""

    __tablename__ = "notifications"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), nullable=False)
    user_id: Mapped[str] = mapped_column(String(255), nullable=False)
    organization_id: Mapped[str | None] = mapped_column(String(255))
    dataset_id: Mapped[str | None] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(255), nullable=False, server_default=text("''"))
    entity_type: Mapped[str] = mapped_column(String(255), nullable=False, server_default=text("''"))
    entity_id: Mapped[str] = mapped_column(String(255), nullable=False, server_default=text("''"))
    title: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("''"))
    body: Mapped[str | None] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(Text)
    # "metadata" is reserved on declarative classes, so the attribute has another name.
    meta: Mapped[str] = mapped_column("metadata", Text, nullable=False, server_default=text("'{}'"))
    dedupe_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    read_at: Mapped[int | None] = mapped_column(BigInteger)
    read_seq: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ux_notifications_id", "id", unique=True),
        Index("ix_notifications_user_created", "user_id", "created_at", "seq"),
        Index("ix_notifications_user_dataset_created", "user_id", "dataset_id", "created_at", "seq"),
        Index("ix_notifications_user_org_created", "user_id", "organization_id", "created_at", "seq"),
        Index(
            "ix_notifications_unread", "user_id", "organization_id", "dataset_id",
            sqlite_where=text("read_at IS NULL"), postgresql_where=text("read_at IS NULL"),
        ),
        Index(
            "ix_notifications_read_seq", "read_seq",
            sqlite_where=text("read_seq IS NOT NULL"), postgresql_where=text("read_seq IS NOT NULL"),
        ),
        Index(
            "ux_notifications_dedupe", "user_id", "dedupe_key", unique=True,
            sqlite_where=text("dedupe_key IS NOT NULL"), postgresql_where=text("dedupe_key IS NOT NULL"),
        ),
        {"sqlite_autoincrement": True},
    )


class Counter(db.Model):
    """A named monotonic counter (``read`` moves when a mark-read or purge changes unread rows)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))


class StreamLease(db.Model):
    """One open stream, counted against its user's limit for streams of its kind."""

    __tablename__ = "stream_leases"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), nullable=False)
    owner: Mapped[str] = mapped_column(String(128), nullable=False)
    expires_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False,
                                      server_default=text("'organization'"))

    __table_args__ = (
        Index("ix_stream_leases_user", "user_id", "expires_at"),
        Index("ix_stream_leases_owner", "owner"),
    )


notifications_table = Notification.__table__
counters_table = Counter.__table__
stream_leases_table = StreamLease.__table__
