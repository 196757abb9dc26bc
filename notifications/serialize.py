"""Serialisers of the two API variants (pure functions over stored rows)."""
from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NTF = re.compile(r"ntf_([0-9a-fA-F]{32})")


def from_datetime(value: datetime) -> int:
    """Turn a datetime (naive means UTC) into stored microseconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_NAIVE_EPOCH = datetime(1970, 1, 1)


def iso_naive(us: int | None) -> str | None:
    """Dataset variant time: naive UTC with exactly six fractional digits."""
    if us is None:
        return None
    # isoformat, unlike strftime("%Y"), always writes four-digit years, and is faster.
    return (_NAIVE_EPOCH + timedelta(microseconds=us)).isoformat(timespec="microseconds")


def iso_z(us: int | None) -> str | None:
    """Organization variant time: UTC with ``Z``; fraction only when not zero."""
    if us is None:
        return None
    # "auto" leaves out a zero fraction; isoformat writes four-digit years, as in iso_naive.
    return (_NAIVE_EPOCH + timedelta(microseconds=us)).isoformat() + "Z"


def parse_time(value: str) -> int:
    """Parse an ISO-8601 time (naive means UTC, ``Z`` accepted) into microseconds."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return from_datetime(datetime.fromisoformat(text))


def ntf_id(notification_id: str) -> str:
    """Render a UUID as the organization variant's ``ntf_<32 hex>`` id."""
    return "ntf_" + notification_id.replace("-", "")


def parse_ntf_id(value: str) -> str | None:
    """Return the UUID behind an ``ntf_`` id, or None when it is not one."""
    match = _NTF.fullmatch(value)
    return str(uuid.UUID(match.group(1))) if match else None


def dataset_notification(row: dict[str, Any]) -> dict[str, Any]:
    """Render a stored row as the dataset variant's notification object."""
    return {
        "id": row["id"],
        "user_id": row["user_id"],
        "entity_type": row["entity_type"],
        "entity_id": row["entity_id"],
        "title": row["title"],
        "message": row["body"],
        "metadata": row["metadata"],
        "dataset_id": row["dataset_id"],
        "created_at": iso_naive(row["created_at"]),
        "read_at": iso_naive(row["read_at"]),
    }


def organization_record(row: dict[str, Any]) -> dict[str, Any]:
    """Render a stored row as the organization variant's inbox record."""
    return {
        "id": ntf_id(row["id"]),
        "user_id": row["user_id"],
        "organization_id": row["organization_id"],
        "kind": row["kind"],
        "title": row["title"],
        "body": row["body"],
        "link": row["link"],
        "read_at": iso_z(row["read_at"]),
        "created_at": iso_z(row["created_at"]),
    }


def full_record(row: dict[str, Any]) -> dict[str, Any]:
    """Render every stored field (CLI output, export): exact and round-trippable."""
    return {
        "id": row["id"],
        "seq": row["seq"],
        "user_id": row["user_id"],
        "organization_id": row["organization_id"],
        "dataset_id": row["dataset_id"],
        "kind": row["kind"],
        "entity_type": row["entity_type"],
        "entity_id": row["entity_id"],
        "title": row["title"],
        "body": row["body"],
        "link": row["link"],
        "metadata": row["metadata"],
        "created_at": iso_naive(row["created_at"]) + "Z",
        "read_at": (iso_naive(row["read_at"]) + "Z") if row["read_at"] is not None else None,
        "dedupe_key": row.get("dedupe_key"),
    }
