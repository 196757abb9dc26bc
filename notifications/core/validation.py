"""Request parsing: pydantic models for query strings and bodies (pure, no Flask)."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from itertools import accumulate
from typing import Annotated, Any, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from notifications.core.errors import ValidationFailed
from notifications.core.serialize import from_datetime

M = TypeVar("M", bound=BaseModel)

#: Largest offset accepted: beyond it a page is empty anyway, and SQLite's integers end.
MAX_OFFSET = 2**62
#: Deepest nesting of arrays and objects accepted in a JSON body: real bodies need a few
#: levels; thousands would exhaust the parser's (and the error renderer's) recursion.
MAX_JSON_DEPTH = 64
#: Strings (skipped whole, so brackets inside them do not count) and brackets.
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')
#: JSON strings alone, everything but brackets, and what each bracket does to the depth.
_JSON_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


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


#: Most digits of a position this service hands out as an event id (a SQLite integer).
MAX_EVENT_ID_DIGITS = 19


def parse_last_event_id(header: str | None) -> int | None:
    """Read a ``Last-Event-ID`` header: the position it names, or None when there is none.

    A browser sends the header on its own reconnect. Raises ``ValueError`` for a value that
    is not a position this service hands out (not ASCII digits, or longer than any), which
    the streams answer with ``event: reset``.
    """
    value = (header or "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit() and len(value) <= MAX_EVENT_ID_DIGITS:
        return int(value)
    raise ValueError(f"not an event id of this service: {value[:40]!r}")


class NotificationPath(Query):
    notification_id: UUID


class NtfNotificationPath(Query):
    """The ``ntf_<32 hex>`` id of version 2's paths (anything else is a 404, as a foreign id)."""

    notification_id: str = Field(pattern=r"^ntf_[0-9a-fA-F]{32}$",
                                 examples=["ntf_e94ab07ec0fe4db183d034ea0fd8ee57"])


#: Largest page of the organization inbox.
ORGANIZATION_MAX_LIMIT = 200


class OrganizationListQuery(Query):
    limit: int = Field(50, ge=1, le=ORGANIZATION_MAX_LIMIT)
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
    # Strings out (their brackets nest nothing), then only the brackets, then the deepest
    # running sum: each step in C. A loop over the tokens in Python took 11 % of a worker
    # ingesting batches of 500 (py-spy), more than the parse itself.
    brackets = _JSON_STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(0, max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0))


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
            "type": "json_invalid", "loc": ["body"], "msg": f"JSON decode error: {exc}",
            "input": None,
        }]) from None


def json_object(
    raw: bytes, *, empty_ok: bool = False, loads: Callable[[bytes], Any] = json.loads
) -> dict[str, Any]:
    """Decode a body that must be a JSON object; an empty body is ``{}`` when ``empty_ok``."""
    if not raw.strip():
        if empty_ok:
            return {}
        raise ValidationFailed([
            {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}
        ])
    data = decode_json(raw, loads)
    if not isinstance(data, dict):
        raise ValidationFailed([{
            "type": "model_attributes_type", "loc": ["body"],
            "msg": "Input should be a valid dictionary or object to extract fields from",
            "input": _jsonable(data),
        }])
    return data


def parse_json_body(raw: bytes, model: type[M], *, empty_ok: bool = True) -> M:
    """Decode and validate a JSON object body; an empty body validates as ``{}``."""
    return parse(model, json_object(raw, empty_ok=empty_ok), "body")


# --- producing notifications (ingest API, CLI import) --------------------------------

#: Most notifications one ingest request may carry.
MAX_INGEST_BATCH = 1000


#: Deepest nesting of metadata accepted: enough for any real payload, and far from the
#: recursion limit that encoding it inside a request (or a stream greenlet) would hit.
MAX_METADATA_DEPTH = 32


def _unicode(value: str) -> str:
    """Refuse text with a lone surrogate (a JSON escape such as \\ud800): it cannot be stored."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must not contain unpaired surrogates (\\ud800-\\udfff)") from None
    return value


def _no_nul(value: str) -> str:
    """Refuse text with the NUL character (\\u0000): PostgreSQL cannot store it in text, and
    both databases refuse it alike, so that a producer learns of it on either."""
    if "\x00" in value:
        raise ValueError("text must not contain the NUL character (\\u0000)")
    return value


#: What the API description says of every stored text: no NUL character.
NO_NUL = {"pattern": "^[^\\u0000]*$"}


def _finite_json(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse metadata that has no exact JSON form (NaN, Infinity, lone surrogates) or
    nests too deep."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("metadata must not contain NaN or Infinity")
        elif isinstance(item, str):
            _unicode(item)
        elif isinstance(item, (dict, list)):
            if depth > MAX_METADATA_DEPTH:
                raise ValueError(f"metadata must not nest deeper than {MAX_METADATA_DEPTH} levels")
            children: Iterable[Any]
            if isinstance(item, dict):
                pending.extend((key, depth) for key in item)
                children = item.values()
            else:
                children = item
            pending.extend(
                (child, depth + 1) for child in children
                if isinstance(child, (dict, list, float, str))
            )
    return value


def _utc(value: datetime) -> datetime:
    """Read a time without offset as UTC and bring every time to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time is out of range") from None


#: A number written as text, which pydantic would read as Unix seconds or milliseconds.
_NUMERIC_TEXT = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
#: Earliest year an ingest ``created_at`` may be written with; older times are a unit
#: mix-up or a placeholder, not data. The bound is on the year as written (before the
#: offset is applied), so that the API description can state it exactly, as a pattern.
EARLIEST_INGEST_YEAR = 2000
INGEST_TIME_PATTERN = "^[2-9][0-9]{3}-"


def _iso_text(value: Any) -> Any:
    """Take times as ISO-8601 text only: a number is ambiguous (seconds? milliseconds?)."""
    if not isinstance(value, (str, datetime)) or (
        isinstance(value, str) and _NUMERIC_TEXT.fullmatch(value)
    ):
        raise ValueError("time must be an ISO-8601 string, for example 2026-03-31T17:02:12Z")
    return value


def _ingest_time(value: datetime) -> datetime:
    """Refuse ingest times written with a year before 2000."""
    if value.year < EARLIEST_INGEST_YEAR:
        raise ValueError(f"time must be in the years {EARLIEST_INGEST_YEAR} to 9999")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_finite_json)]
UtcDatetime = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_utc)]
IngestDatetime = Annotated[
    datetime, BeforeValidator(_iso_text), AfterValidator(_ingest_time), AfterValidator(_utc),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": INGEST_TIME_PATTERN}),
]
ShortText = Annotated[str, Field(max_length=255, json_schema_extra=NO_NUL),
                     AfterValidator(_no_nul)]
#: Text without a length bound; pydantic checks only bounded strings for lone surrogates.
Text = Annotated[str, Field(json_schema_extra=NO_NUL), AfterValidator(_unicode),
                 AfterValidator(_no_nul)]
#: A key or id of up to 255 characters (a user, an organization, a dedupe or collapse key).
Key = Annotated[str, Field(min_length=1, max_length=255, json_schema_extra=NO_NUL),
                AfterValidator(_no_nul)]


class NotificationFields(BaseModel):
    """The fields of a notification that a producer may set."""

    user_id: Key = Field(description="Recipient (the token's sub).")
    organization_id: Key | None = None
    dataset_id: UUID | None = None
    kind: ShortText | None = Field(None, description="For example review.created.")
    entity_type: ShortText | None = Field(None, description="For example saved_view.")
    entity_id: ShortText | None = None
    title: Text | None = None
    body: Text | None = Field(
        None, validation_alias=AliasChoices("body", "message"),
        description="Body text; `message` is accepted as another name.",
    )
    link: Text | None = None
    metadata: JsonObject = Field(default_factory=dict)
    created_at: UtcDatetime | None = Field(
        None, description="ISO-8601; a time without offset is UTC. Defaults to now."
    )
    dedupe_key: Key | None = Field(
        None, description="A second notification with the same user and key is not stored again.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_body(cls, data: Any) -> Any:
        if isinstance(data, dict) and "body" in data and "message" in data:
            raise ValueError("give either body or message, not both")
        return data

    def row_fields(self) -> dict[str, Any]:
        """Return the fields as :func:`inserts.new_row` takes them."""
        return {
            "user_id": self.user_id,
            "organization_id": self.organization_id,
            "dataset_id": str(self.dataset_id) if self.dataset_id is not None else None,
            "kind": self.kind,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "title": self.title,
            "body": self.body,
            "link": self.link,
            "metadata": self.metadata,
            "created_at": from_datetime(self.created_at) if self.created_at is not None else None,
            "dedupe_key": self.dedupe_key,
        }


class IngestNotification(NotificationFields):
    """One notification sent to the ingest API; unknown fields are refused (typos)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    created_at: IngestDatetime | None = Field(
        None, description="ISO-8601 text (a number, also as a string, is refused) with a year "
        "from 2000 to 9999; a time without offset is UTC. Defaults to now."
    )
    collapse_key: Key | None = Field(
        None, description="Replaces the user's unread, unarchived notification with the same key "
        "(deleted; this one is stored with its collapsed_count plus one).",
    )
    critical: StrictBool = Field(
        False, description="true: stored even when a mute of the user matches it.")

    def row_fields(self) -> dict[str, Any]:
        """The fields as :func:`inserts.ingest_notifications` takes them."""
        fields = super().row_fields()
        fields["collapse_key"] = self.collapse_key
        fields["critical"] = self.critical
        return fields


class IngestBatch(BaseModel):
    """Several notifications sent to the ingest API, stored all or none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notifications: list[IngestNotification] = Field(max_length=MAX_INGEST_BATCH)


class ImportRecord(NotificationFields):
    """One JSON Lines record of ``export``/``import``; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: UUID | None = Field(None, description="Kept when given; a new UUID otherwise.")
    read_at: UtcDatetime | None = None
    seen_at: UtcDatetime | None = Field(
        None, description="When it was first seen; a record without it is seen when read.")
    archived_at: UtcDatetime | None = None
    collapsed_count: int = Field(0, strict=True, ge=0, le=2**31 - 1)

    def row_fields(self) -> dict[str, Any]:
        fields = super().row_fields()
        fields["id"] = str(self.id) if self.id is not None else None
        for name in ("read_at", "seen_at", "archived_at"):
            value = getattr(self, name)
            fields[name] = from_datetime(value) if value is not None else None
        fields["collapsed_count"] = self.collapsed_count
        return fields


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_json(raw: bytes | str) -> Any:
    """Decode strict JSON: no NaN or Infinity, which have no place in stored metadata."""
    return json.loads(raw, parse_constant=_reject_constant)


def parse_ingest_body(raw: bytes) -> list[IngestNotification]:
    """Decode and validate an ingest body: one object or ``{"notifications": [...]}``."""
    data = json_object(raw, loads=load_json)
    if "notifications" in data:
        return list(parse(IngestBatch, data, "body").notifications)
    return [parse(IngestNotification, data, "body")]
