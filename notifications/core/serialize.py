"""Serialisers of the two API variants (pure functions over stored rows)."""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, overload

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NTF = re.compile(r"ntf_([0-9a-fA-F]{32})")


def from_datetime(value: datetime) -> int:
    """Turn a datetime (naive means UTC) into stored microseconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_NAIVE_EPOCH = datetime(1970, 1, 1)
_DAY_US = 86_400_000_000
#: ``YYYY-MM-DD`` by day since the epoch: a page's rows share a few days, and the date is
#: the dear part of a datetime's isoformat. Bounded; cleared when full.
_DATES: dict[int, str] = {}


def _date(days: int) -> str:
    date = _DATES.get(days)
    if date is None:
        if len(_DATES) >= 4096:
            _DATES.clear()
        # isoformat, unlike strftime("%Y"), always writes four-digit years.
        date = _DATES[days] = (_NAIVE_EPOCH + timedelta(days=days)).isoformat()[:10]
    return date


#: ``THH:MM:`` by minute of the day, and two-digit seconds: table look-ups instead of
#: formatting (a page of 50 inbox records formats 100 times).
_CLOCK = [f"T{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
_SECONDS = [f"{s:02d}" for s in range(60)]


@overload
def iso_naive(us: int) -> str: ...
@overload
def iso_naive(us: None) -> None: ...
@overload
def iso_naive(us: int | None) -> str | None: ...
def iso_naive(us: int | None) -> str | None:
    """Dataset variant time: naive UTC with exactly six fractional digits."""
    if us is None:
        return None
    days, rest = divmod(us, _DAY_US)
    seconds, fraction = divmod(rest, 1_000_000)
    minutes, seconds = divmod(seconds, 60)
    return f"{_date(days)}{_CLOCK[minutes]}{_SECONDS[seconds]}.{fraction:06d}"


@overload
def iso_z(us: int) -> str: ...
@overload
def iso_z(us: None) -> None: ...
@overload
def iso_z(us: int | None) -> str | None: ...
def iso_z(us: int | None) -> str | None:
    """Organization variant time: UTC with ``Z``; fraction only when not zero."""
    if us is None:
        return None
    days, rest = divmod(us, _DAY_US)
    seconds, fraction = divmod(rest, 1_000_000)
    minutes, seconds = divmod(seconds, 60)
    if fraction:
        return f"{_date(days)}{_CLOCK[minutes]}{_SECONDS[seconds]}.{fraction:06d}Z"
    return f"{_date(days)}{_CLOCK[minutes]}{_SECONDS[seconds]}Z"


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


#: Stored fields :func:`dataset_notifications` reads, in the order of its rows.
DATASET_FIELDS = ("id", "user_id", "entity_type", "entity_id", "title", "body", "metadata",
                  "dataset_id", "created_at", "read_at")
#: Stored fields :func:`organization_records` reads, in the order of its rows.
ORGANIZATION_FIELDS = ("id", "user_id", "organization_id", "kind", "title", "body", "link",
                       "read_at", "created_at")


class ExactFloat(float):
    """A float decoded from stored metadata, written back exactly as :mod:`json` writes it."""

    __slots__ = ()


def _exact_constant(name: str) -> ExactFloat:
    return ExactFloat({"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}[name])


#: Metadata decoder whose floats are :class:`ExactFloat`: :func:`encode_body` can then write
#: them as Flask's encoder would (orjson writes ``1e16`` where :mod:`json` writes ``1e+16``).
_decode = json.JSONDecoder(parse_float=ExactFloat, parse_constant=_exact_constant).decode


class Body(dict[str, Any]):
    """A response body built by these serialisers: its only floats are :class:`ExactFloat`."""

    __slots__ = ()


def _float_json(value: Any) -> Any:
    import orjson

    if isinstance(value, ExactFloat):
        if value != value:
            return orjson.Fragment(b"NaN")
        if value in (float("inf"), float("-inf")):
            return orjson.Fragment(b"Infinity" if value > 0 else b"-Infinity")
        return orjson.Fragment(float.__repr__(value).encode())
    raise TypeError(f"{type(value).__name__} is left to the standard encoder")


def encode_body(body: Body) -> bytes | None:
    """Return ``body`` as the bytes Flask's compact JSON would be, or None to let Flask do it.

    orjson is several times faster than :mod:`json` on a page of records. It writes the same
    bytes for ASCII text, ints, strings' escapes, dict order and :class:`ExactFloat`; where it
    would not (non-ASCII text, which Flask writes as ``\\uXXXX`` escapes, DEL, integers beyond
    64 bits, subclasses and objects Flask's encoder converts), the caller falls back.
    """
    import orjson

    try:
        # A plain dict on top: subclasses are passed through to ``default`` (and refused).
        data = orjson.dumps(dict(body), default=_float_json, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: big ints, lone surrogates, anything odd
        return None
    if not data.isascii() or b"\x7f" in data:
        return None
    return data


_ORJSON_OPTIONS = 0
try:
    import orjson as _orjson

    _ORJSON_OPTIONS = (_orjson.OPT_PASSTHROUGH_SUBCLASS | _orjson.OPT_PASSTHROUGH_DATETIME
                       | _orjson.OPT_PASSTHROUGH_DATACLASS)
except ImportError:  # pragma: no cover - orjson is a dependency; Flask's encoder still works
    pass


def dataset_notifications(rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Render rows of :data:`DATASET_FIELDS` as :func:`dataset_notification` does."""
    return [
        {
            "id": r[0],
            "user_id": r[1],
            "entity_type": r[2],
            "entity_id": r[3],
            "title": r[4],
            "message": r[5],
            "metadata": _decode(r[6]) if r[6] else {},
            "dataset_id": r[7],
            "created_at": iso_naive(r[8]),
            "read_at": iso_naive(r[9]),
        }
        for r in rows
    ]


def organization_records(rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Render rows of :data:`ORGANIZATION_FIELDS` as :func:`organization_record` does."""
    return [
        {
            "id": "ntf_" + r[0].replace("-", ""),
            "user_id": r[1],
            "organization_id": r[2],
            "kind": r[3],
            "title": r[4],
            "body": r[5],
            "link": r[6],
            "read_at": iso_z(r[7]),
            "created_at": iso_z(r[8]),
        }
        for r in rows
    ]


def full_record(row: dict[str, Any]) -> dict[str, Any]:
    """Render every stored field (CLI output, export): exact and round-trippable."""
    record = {
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
        "read_at": _full_time(row["read_at"]),
        "dedupe_key": row.get("dedupe_key"),
    }
    # The version 2 state, when the read selected it (an export does; `list` does not):
    # a column left out is not shown as null, which would say "not seen".
    if "seen_at" in row:
        record["seen_at"] = _full_time(row["seen_at"])
    if "archived_at" in row:
        record["archived_at"] = _full_time(row["archived_at"])
    if "collapsed_count" in row:
        record["collapsed_count"] = row["collapsed_count"] or 0
    return record


def _full_time(us: int | None) -> str | None:
    return (iso_naive(us) + "Z") if us is not None else None


# --- inbox API version 2 ------------------------------------------------------------------


def iso_utc(us: int | None) -> str | None:
    """Version 2 time: RFC 3339 UTC, always six fractional digits, and ``Z``.

    Unlike :func:`iso_z`, a zero fraction is written too: ``2026-04-24T14:00:00.000000Z``.
    """
    if us is None:
        return None
    days, rest = divmod(us, _DAY_US)
    seconds, fraction = divmod(rest, 1_000_000)
    minutes, seconds = divmod(seconds, 60)
    return f"{_date(days)}{_CLOCK[minutes]}{_SECONDS[seconds]}.{fraction:06d}Z"


def _v2_metadata(value: Any) -> dict[str, Any]:
    """Stored metadata as an object: JSON text is decoded; anything but an object is ``{}``."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode()
    if isinstance(value, str):
        value = _decode(value) if value else {}
    return value if isinstance(value, dict) else {}


def v2_record(row: dict[str, Any]) -> dict[str, Any]:
    """Render a stored row as the version 2 record.

    Ids are ``ntf_<32 hex>``; times as :func:`iso_utc`; ``metadata`` is an object (stored
    JSON text is decoded); the empty ``entity_type`` and ``entity_id`` that the table
    stores for "none" are null; ``collapsed_count`` is 0 when the row has none. The state
    columns (``seen_at``, ``archived_at``) may be missing from ``row``: they are then null.
    """
    return {
        "id": ntf_id(row["id"]),
        "user_id": row["user_id"],
        "organization_id": row["organization_id"],
        "dataset_id": row["dataset_id"],
        "kind": row["kind"],
        "entity_type": row["entity_type"] or None,
        "entity_id": row["entity_id"] or None,
        "title": row["title"],
        "body": row["body"],
        "link": row["link"],
        "metadata": _v2_metadata(row["metadata"]),
        "created_at": iso_utc(row["created_at"]),
        "seen_at": iso_utc(row.get("seen_at")),
        "read_at": iso_utc(row.get("read_at")),
        "archived_at": iso_utc(row.get("archived_at")),
        "collapsed_count": row.get("collapsed_count") or 0,
    }


#: Stored fields :func:`v2_records` reads, in the order of its rows (``collapsed_count``
#: may be left off the end: it is then 0).
V2_FIELDS = ("id", "user_id", "organization_id", "dataset_id", "kind", "entity_type",
             "entity_id", "title", "body", "link", "metadata", "created_at", "seen_at",
             "read_at", "archived_at", "collapsed_count")


def v2_records(rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Render rows of :data:`V2_FIELDS` as :func:`v2_record` does (a page of a list)."""
    return [
        {
            "id": "ntf_" + r[0].replace("-", ""),
            "user_id": r[1],
            "organization_id": r[2],
            "dataset_id": r[3],
            "kind": r[4],
            "entity_type": r[5] or None,
            "entity_id": r[6] or None,
            "title": r[7],
            "body": r[8],
            "link": r[9],
            "metadata": _v2_metadata(r[10]),
            "created_at": iso_utc(r[11]),
            "seen_at": iso_utc(r[12]),
            "read_at": iso_utc(r[13]),
            "archived_at": iso_utc(r[14]),
            "collapsed_count": (r[15] or 0) if len(r) > 15 else 0,
        }
        for r in rows
    ]


def v2_state(row: dict[str, Any]) -> dict[str, Any]:
    """Render the data of a ``notification.updated`` event: the id and the state times."""
    return {
        "id": ntf_id(row["id"]),
        "seen_at": iso_utc(row.get("seen_at")),
        "read_at": iso_utc(row.get("read_at")),
        "archived_at": iso_utc(row.get("archived_at")),
    }
