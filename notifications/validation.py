"""Request parsing: pydantic models for query strings and bodies (pure, no Flask)."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ValidationFailed

M = TypeVar("M", bound=BaseModel)

#: Largest offset accepted: beyond it a page is empty anyway, and SQLite's integers end.
MAX_OFFSET = 2**62
#: Deepest nesting of arrays and objects accepted in a JSON body: real bodies need a few
#: levels; thousands would exhaust the parser's (and the error renderer's) recursion.
MAX_JSON_DEPTH = 32
#: Strings (skipped whole, so brackets inside them do not count) and brackets.
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class Query(BaseModel):
    """Base for query-string models: unknown parameters are ignored, as HTTP APIs do."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class DatasetListQuery(Query):
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    unread_only: bool = False
    dataset_id: UUID | None = None


class DatasetFilterQuery(Query):
    dataset_id: UUID | None = None


class DatasetStreamQuery(Query):
    dataset_id: UUID | None = None
    last_event_id: int | None = Field(None, ge=0, le=MAX_OFFSET)


class NotificationPath(Query):
    notification_id: UUID


class OrganizationListQuery(Query):
    limit: int = Field(50, ge=1, le=200)
    unread_only: bool = False


class MarkReadBody(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    ids: list[str] | None = Field(None, max_length=1000)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def errors_of(exc: ValidationError, location: str) -> list[dict[str, Any]]:
    """Convert a pydantic error into JSON-safe entries located in ``query``/``path``/``body``."""
    entries = []
    for err in exc.errors(include_url=False):
        entry: dict[str, Any] = {
            "type": err["type"],
            "loc": [location, *err["loc"]],
            "msg": err["msg"],
            "input": _jsonable(err.get("input")),
        }
        if err.get("ctx"):
            entry["ctx"] = _jsonable(err["ctx"])
        entries.append(entry)
    return entries


def parse(model: type[M], data: Mapping[str, Any], location: str = "query") -> M:
    """Validate ``data`` against ``model``; raise :class:`ValidationFailed` on bad input."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise ValidationFailed(errors_of(exc, location)) from None


def query_values(args: Any, names: Any) -> dict[str, str]:
    """Pick the last value of each known parameter from a multi-dict (as FastAPI does)."""
    values = {}
    for name in names:
        found = args.getlist(name)
        if found:
            values[name] = found[-1]
    return values


def parse_query(model: type[M], args: Any) -> M:
    """Validate a query string (a multi-dict) against ``model``."""
    return parse(model, query_values(args, model.model_fields), "query")


def json_depth(raw: bytes) -> int:
    """Return how deeply arrays and objects nest in a JSON text (without parsing it)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return 0  # cannot be too deep: skip the scan for ordinary bodies
    depth = deepest = 0
    for token in _JSON_TOKENS.finditer(raw):
        char = token.group()
        if char in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return depth  # deep enough to refuse: stop scanning
            deepest = max(deepest, depth)
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def decode_json(raw: bytes, loads: Callable[[bytes], Any] = json.loads) -> Any:
    """Decode a JSON body; raise :class:`ValidationFailed` when it is not JSON or too deep."""
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise ValidationFailed([{
            "type": "json_invalid", "loc": ["body"],
            "msg": f"JSON decode error: nested deeper than {MAX_JSON_DEPTH} levels",
            "input": None, "ctx": {"max_depth": MAX_JSON_DEPTH},
        }])
    try:
        return loads(raw)
    # ValueError also covers integers longer than Python converts (4300 digits).
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValidationFailed([{
            "type": "json_invalid", "loc": ["body"], "msg": f"JSON decode error: {exc}", "input": None,
        }]) from None


def parse_json_body(raw: bytes, model: type[M], *, empty_ok: bool = True) -> M:
    """Decode and validate a JSON object body; an empty body validates as ``{}``."""
    if not raw.strip():
        if empty_ok:
            return parse(model, {}, "body")
        raise ValidationFailed([{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}])
    data = decode_json(raw)
    if not isinstance(data, dict):
        raise ValidationFailed([{
            "type": "model_attributes_type", "loc": ["body"],
            "msg": "Input should be a valid dictionary or object to extract fields from",
            "input": _jsonable(data),
        }])
    return parse(model, data, "body")
