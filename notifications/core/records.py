"""Pure helpers of the data-management commands: durations, and JSON Lines in and out."""
from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from notifications.core.serialize import full_record, parse_time
from notifications.core.validation import ImportRecord
from notifications.store.inserts import INSERT_FIELDS, new_row

_DURATION = re.compile(r"(\d+)([wdhms])")
_UNIT_SECONDS = {"w": 7 * 86_400, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
#: Longest duration accepted (about 1000 years): beyond it times leave the stored range.
MAX_DURATION_SECONDS = 1000 * 366 * 86_400

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def parse_duration(text: str) -> int:
    """Turn ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or ``1d12h`` into seconds."""
    value = text.strip().lower()
    parts = _DURATION.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise ValueError(
            f"{text!r} is not a duration; use a number and a unit, for example 30d, 12h, 90m, "
            "45s or 1d12h (w=weeks, d=days, h=hours, m=minutes, s=seconds)"
        )
    seconds = sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{text!r} is too long; the most is 1000 years")
    return seconds


def parse_since(text: str, now_us: int) -> int:
    """Turn an ISO-8601 date or time (naive is UTC), or a duration ago, into microseconds."""
    try:
        return now_us - parse_duration(text) * 1_000_000
    except ValueError:
        pass
    try:
        return parse_time(text)
    except (ValueError, OverflowError):
        raise ValueError(
            f"{text!r} is neither an ISO-8601 date or time (2026-03-31, 2026-03-31T17:02:12Z) "
            "nor a duration ago (7d, 12h)"
        ) from None


def export_line(row: dict[str, Any]) -> str:
    """Render a stored row as one JSON Lines record (without the newline).

    ``metadata`` may be the stored JSON text: it is then copied verbatim, which is exact
    and saves decoding and encoding it again.
    """
    record = full_record(row)
    raw = record["metadata"]
    if not isinstance(raw, str):
        return _encode(record)
    record["metadata"] = 0
    # Inside a JSON string every quote is escaped, so this key only matches the real one.
    return _encode(record).replace('"metadata":0,', '"metadata":' + (raw or "{}") + ",", 1)


_AT_LINE_1 = re.compile(r"at line 1 column")


class LineError(ValueError):
    """A JSON Lines record that cannot be imported, with a one-line reason."""


def _describe(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        reason = first["ctx"]["error"] if first.get("ctx") else first["msg"]
        # The record is one line, so the parser's "line 1" would only confuse.
        return f"not valid JSON ({_AT_LINE_1.sub('at column', reason)})"
    if first["type"] == "model_type":
        return "not a JSON object"
    where = ".".join(str(part) for part in first["loc"])
    text = first["msg"].removeprefix("Value error, ")
    message = f"{where}: {text}" if where else text
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return message


def import_row(raw: bytes | str) -> tuple[Any, ...]:
    """Validate one JSON Lines record; return its values in ``INSERT_FIELDS`` order."""
    try:
        record = ImportRecord.model_validate_json(raw.rstrip(b"\r\n") if isinstance(raw, bytes) else raw)
    except ValidationError as exc:
        raise LineError(_describe(exc)) from None
    row = new_row(record.row_fields())
    return tuple(row[name] for name in INSERT_FIELDS)
