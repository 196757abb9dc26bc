"""Request models of the inbox API version 2 (pure: no Flask).

Query strings go through :func:`parse_v2_query`, which is :func:`validation.parse_query`
with repeatable parameters (``kind``); JSON bodies through :func:`validation.parse_json_body`
(an empty body validates as ``{}``). Either raises :class:`errors.ValidationFailed` (422)
with entries located in ``query`` or ``body``, as the other variants do.

Decisions the contract leaves open:

- Unknown query parameters are ignored (as everywhere in the service); unknown body keys,
  in the PATCH body, the bulk body and its filter, are refused.
- Every value of a query parameter must be valid: an empty ``kind=``, ``dataset_id=`` or
  ``cursor=`` is a 422, not "no filter".
- ``archived`` takes ``false``, ``true`` or ``all``; in a JSON body the booleans ``false``
  and ``true`` as well. The PATCH booleans are JSON booleans only (``1``, ``"true"`` and
  ``null`` are refused).
- Bulk ``ids``: a malformed id (anything but ``ntf_`` and 32 hex digits, either case) is a
  422 naming its index, unlike the organization variant's mark-read, which skips it: a
  malformed id is a client bug, not a notification that went away. Well-formed ids that
  name no notification of the caller are skipped (not counted in ``updated``), so that a
  foreign id cannot be told from a missing one. An empty list is valid and updates
  nothing (it never means "all": that is ``"filter": {}``).
- In the bulk body and its filter, a key whose value is ``null`` counts as left out (the
  schemas do not show ``null``); in the PATCH body ``null`` is refused.
- The bulk ``filter`` has the list's defaults (``status`` all, ``archived`` false): it
  selects what the list with the same filter shows, so ``unarchive`` needs
  ``"archived": true`` (or ``all``) to find anything. ``before`` is an RFC 3339 time with
  ``Z`` or an offset (a time without one is refused); it selects notifications created
  strictly before it.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from notifications.core.cursors import (
    InvalidCursor,
    Position,
    decode_cursor,
    encode_cursor,
    filter_fingerprint,
)
from notifications.core.kinds import MAX_KINDS, KindFilter, KindValue, parse_kinds
from notifications.core.preferences import MAX_MUTES, Preferences
from notifications.core.serialize import from_datetime, parse_ntf_id
from notifications.core.states import Action, RowUpdate, patch_actions, update_for
from notifications.core.validation import Query, parse, query_values

M = TypeVar("M", bound=BaseModel)

#: Default and largest page of a version 2 list.
V2_DEFAULT_LIMIT = 25
V2_MAX_LIMIT = 100
#: Most ids one bulk request may name.
MAX_BULK_IDS = 1000
#: Longest cursor accepted in a query (today's cursors have 40 characters).
MAX_CURSOR_TEXT = 64
#: A version 2 id as requests may write it (the hex digits in either case).
NTF_ID_PATTERN = r"^ntf_[0-9a-fA-F]{32}$"

StatusFilter = Literal["unread", "read", "all"]
ArchivedText = Literal["false", "true", "all"]


def _archived(value: Any) -> Any:
    """Read the booleans of a JSON body as their text; the text itself passes on."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


#: ``archived`` of a query string: the text false, true or all.
ArchivedQuery = Annotated[ArchivedText, Field(description="false (default), true or all.")]
#: ``archived`` of a JSON body: also the booleans false and true, read as the text.
ArchivedBody = Annotated[
    ArchivedText, BeforeValidator(_archived),
    WithJsonSchema({"anyOf": [{"type": "boolean"},
                              {"type": "string", "enum": ["false", "true", "all"]}],
                    "default": "false", "description": "false (default), true or all."}),
]

_KINDS_DESCRIPTION = (
    f"Repeatable, at most {MAX_KINDS}: an exact kind, or a prefix pattern ending in `.*` "
    "(`review.*` matches review.created and review.x.y, not review itself). Any value may match."
)
_DATASET_DESCRIPTION = "Only notifications about this dataset."


def _kind_filter(kind: Sequence[str]) -> KindFilter:
    # The values passed the field's pattern and bound, so this cannot fail.
    return parse_kinds(kind)


class _KindAndDataset:
    """What a model with ``kind`` and ``dataset_id`` fields hands the store."""

    kind: list[str]
    dataset_id: UUID | None

    @property
    def kinds(self) -> KindFilter:
        """The ``kind`` values as exact kinds and prefixes."""
        return _kind_filter(self.kind)

    @property
    def dataset(self) -> str | None:
        """``dataset_id`` as the stored text (lower-case UUID), or None."""
        return str(self.dataset_id) if self.dataset_id is not None else None


class V2Query(Query):
    """Base of version 2 query models: ``repeated`` names parameters taken as lists."""

    repeated: ClassVar[frozenset[str]] = frozenset()


def query_data(model: type[V2Query], args: Any) -> dict[str, Any]:
    """Pick a model's parameters from a multi-dict (anything with ``getlist``).

    A parameter in ``model.repeated`` gives the list of all its values; any other gives
    its last value, as :func:`validation.query_values` does.
    """
    data: dict[str, Any] = query_values(
        args, [name for name in model.model_fields if name not in model.repeated])
    for name in model.repeated:
        values = args.getlist(name)
        if values:
            data[name] = list(values)
    return data


def parse_v2_query(model: type[M], args: Any) -> M:
    """Validate a query string (a multi-dict) against a :class:`V2Query` model; 422 if bad."""
    if not issubclass(model, V2Query):
        raise TypeError(f"{model.__name__} is not a V2Query")
    return parse(model, query_data(model, args), "query")


class V2ScopeQuery(_KindAndDataset, V2Query):
    """The ``kind`` and ``dataset_id`` filter shared by counts and the stream."""

    repeated: ClassVar[frozenset[str]] = frozenset({"kind"})

    kind: list[KindValue] = Field(default_factory=list, max_length=MAX_KINDS,
                                  description=_KINDS_DESCRIPTION)
    dataset_id: UUID | None = Field(None, description=_DATASET_DESCRIPTION)


class V2CountsQuery(V2ScopeQuery):
    """Query of ``GET /notifications/counts``."""


class V2StreamQuery(V2ScopeQuery):
    """Query of ``GET /notifications/stream``."""


class V2ListQuery(_KindAndDataset, V2Query):
    """Query of ``GET /notifications``.

    A ``cursor`` is checked against the filter it comes with (``status``, ``archived``,
    ``kind``, ``dataset_id``): one made for another filter, damaged or made up is a 422
    ``cursor_invalid`` on ``cursor``. :attr:`after` is the position to continue after
    (``(created_at, seq)`` of the previous page's last row); :meth:`next_cursor` makes the
    cursor of the next page.
    """

    repeated: ClassVar[frozenset[str]] = frozenset({"kind"})

    status: StatusFilter = Field("all", description="unread, read or all (default).")
    archived: ArchivedQuery = "false"
    kind: list[KindValue] = Field(default_factory=list, max_length=MAX_KINDS,
                                  description=_KINDS_DESCRIPTION)
    dataset_id: UUID | None = Field(None, description=_DATASET_DESCRIPTION)
    limit: int = Field(V2_DEFAULT_LIMIT, ge=1, le=V2_MAX_LIMIT)
    cursor: str | None = Field(
        None, json_schema_extra={"maxLength": MAX_CURSOR_TEXT},
        description="`next_cursor` of the previous page, sent with the same filter.",
    )

    @field_validator("cursor")
    @classmethod
    def _cursor_fits(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        data = info.data
        if not {"status", "archived", "kind", "dataset_id"} <= data.keys():
            return value  # a filter field is invalid: that error is the one to report
        dataset = data["dataset_id"]
        fingerprint = _fingerprint(data["status"], data["archived"], data["kind"],
                                   str(dataset) if dataset is not None else None)
        try:
            decode_cursor(value, fingerprint)
        except InvalidCursor as exc:
            raise PydanticCustomError("cursor_invalid", str(exc), {"reason": exc.reason}) from None
        return value


    def fingerprint(self) -> bytes:
        """The fingerprint of this list's filter (see :func:`cursors.filter_fingerprint`)."""
        return _fingerprint(self.status, self.archived, self.kind, self.dataset)

    @property
    def after(self) -> Position | None:
        """The position the page continues after (the rows older than it), or None: the start."""
        return decode_cursor(self.cursor, self.fingerprint()) if self.cursor else None

    def next_cursor(self, created_at: int, seq: int) -> str:
        """The cursor of the page after one whose last (oldest) row is ``(created_at, seq)``."""
        return encode_cursor(created_at, seq, self.fingerprint())


def _fingerprint(status: str, archived: str, kind: Sequence[str], dataset: str | None) -> bytes:
    # The canonical kind filter: values that say the same (review.* and review.x.*) agree.
    kinds = _kind_filter(kind)
    return filter_fingerprint(status, archived, (*kinds.exact, *(p + "*" for p in kinds.prefixes)),
                              dataset)


# --- bodies -------------------------------------------------------------------------------


def _described_keys(schema: dict[str, Any]) -> None:
    """Describe an optional key as one to leave out: no ``null`` branch, no ``null`` default."""
    for prop in schema.get("properties", {}).values():
        branches = prop.get("anyOf")
        if branches and {"type": "null"} in branches:
            kept = [b for b in branches if b != {"type": "null"}]
            del prop["anyOf"]
            if len(kept) == 1:
                prop.update(kept[0])
            else:
                prop["anyOf"] = kept
        if "default" in prop and prop["default"] is None:
            del prop["default"]


def _patch_schema(schema: dict[str, Any]) -> None:
    _described_keys(schema)
    schema["minProperties"] = 1  # an empty PATCH is refused


def _bulk_schema(schema: dict[str, Any]) -> None:
    _described_keys(schema)
    schema["oneOf"] = [{"required": ["ids"]}, {"required": ["filter"]}]


class V2Body(BaseModel):
    """Base of version 2 bodies: unknown keys are refused (typos would do nothing).

    Their schemas describe an optional key as one to leave out (``null`` is not shown).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_described_keys)


def _not_null(value: Any) -> Any:
    if value is None:
        raise PydanticCustomError("bool_type", "Input should be a valid boolean")
    return value


#: A boolean of the PATCH body: a JSON boolean, or the key left out (``null`` is refused).
PatchBool = Annotated[StrictBool | None, BeforeValidator(_not_null),
                      WithJsonSchema({"type": "boolean"})]


class V2PatchBody(V2Body):
    """Body of ``PATCH /notifications/<id>``: at least one of ``seen``, ``read``, ``archived``."""

    model_config = ConfigDict(json_schema_extra=_patch_schema)

    seen: Annotated[Literal[True] | None, WithJsonSchema({"type": "boolean", "const": True})] = (
        Field(None, description="true marks the notification seen; seen cannot be undone."))
    read: PatchBool = Field(None, description="true marks it read (and seen); false, unread.")
    archived: PatchBool = Field(None, description="true archives it; false brings it back.")

    @field_validator("seen", mode="before")
    @classmethod
    def _seen_only_true(cls, value: Any) -> Any:
        if value is False:
            raise PydanticCustomError(
                "seen_irreversible", "seen cannot be undone: send true or leave seen out")
        if value is not True:
            raise PydanticCustomError("literal_error", "Input should be true")
        return value

    @model_validator(mode="after")
    def _asks_for_something(self) -> V2PatchBody:
        if not self.model_fields_set:
            raise PydanticCustomError(
                "empty_patch", "give at least one of seen, read and archived")
        return self

    def actions(self) -> tuple[Action, ...]:
        """The actions this body asks for (see :func:`states.patch_actions`)."""
        return patch_actions(seen=self.seen, read=self.read, archived=self.archived)

    def update(self) -> RowUpdate:
        """The one row update doing all of :meth:`actions`."""
        return update_for(self.actions())


_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: Any) -> datetime:
    """Read an RFC 3339 time with ``Z`` or an offset; return it in UTC."""
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise PydanticCustomError(
            "datetime_format", "time must be RFC 3339 with Z or an offset, for example "
            "2026-04-24T14:00:00Z")
    try:
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError):
        raise PydanticCustomError("datetime_range", "time is not a valid date and time") from None


#: An RFC 3339 time in a body, as an aware UTC datetime.
Rfc3339Time = Annotated[
    datetime, BeforeValidator(_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time",
                    "examples": ["2026-04-24T14:00:00Z"]}),
]
NtfIdValue = Annotated[str, Field(pattern=NTF_ID_PATTERN,
                                  examples=["ntf_5f0c6a1e2b7d4c0e9a3b8d1f2e4c6a7b"])]


def _left_out_not_null(data: Any) -> Any:
    """Refuse ``null`` for a key of a bulk body: the schema says to leave the key out."""
    if isinstance(data, dict):
        nulls = sorted(key for key, value in data.items() if value is None)
        if nulls:
            raise PydanticCustomError(
                "null_refused", "leave {keys} out instead of sending null",
                {"keys": ", ".join(nulls)})
    return data


class V2BulkFilter(_KindAndDataset, V2Body):
    """Which notifications a bulk request changes: what the list with this filter shows.

    A key is given or left out; ``null`` is refused (422), as the schema says.
    """

    status: StatusFilter = Field("all", description="unread, read or all (default).")
    archived: ArchivedBody = "false"
    kind: list[KindValue] = Field(default_factory=list, max_length=MAX_KINDS,
                                  description=_KINDS_DESCRIPTION)
    dataset_id: UUID | None = Field(None, description=_DATASET_DESCRIPTION)
    before: Rfc3339Time | None = Field(
        None, description="Only notifications created before this time (RFC 3339).")

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        return _left_out_not_null(data)


    @property
    def before_us(self) -> int | None:
        """``before`` in stored microseconds, or None."""
        return from_datetime(self.before) if self.before is not None else None


class V2BulkBody(V2Body):
    """Body of ``POST /notifications/bulk``: an action and either ``ids`` or ``filter``."""

    model_config = ConfigDict(json_schema_extra=_bulk_schema)

    action: Action = Field(description="seen, read, unread, archive or unarchive.")
    ids: list[NtfIdValue] | None = Field(
        None, max_length=MAX_BULK_IDS,
        description=f"At most {MAX_BULK_IDS} ids; ids of no notification of yours are skipped.")
    filter: V2BulkFilter | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        return _left_out_not_null(data)

    @model_validator(mode="after")
    def _ids_or_filter(self) -> V2BulkBody:
        if (self.ids is None) == (self.filter is None):
            raise PydanticCustomError("ids_or_filter", "give exactly one of ids and filter")
        return self

    def stored_ids(self) -> list[str]:
        """The ids as stored (lower-case UUIDs with dashes), in order, without repeats."""
        found = (parse_ntf_id(value) for value in self.ids or ())
        return list(dict.fromkeys(uid for uid in found if uid is not None))

    def update(self) -> RowUpdate:
        """The row update of :attr:`action` (see :data:`states.ACTION_UPDATES`)."""
        return update_for([self.action])


class V2PreferencesBody(V2Body):
    """Body of ``PUT /preferences``: the whole preferences, replacing the stored ones.

    A list left out is stored empty (PUT replaces); ``null`` is refused, as are unknown keys.
    """

    muted_kinds: list[KindValue] = Field(
        default_factory=list, max_length=MAX_MUTES,
        description=f"At most {MAX_MUTES}: exact kinds, or prefix patterns ending in `.*` "
        "(`review.*` mutes review.created and review.x.y, not review itself).")
    muted_datasets: list[UUID] = Field(
        default_factory=list, max_length=MAX_MUTES,
        description=f"At most {MAX_MUTES} dataset ids: their notifications are muted.")

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        return _left_out_not_null(data)

    def preferences(self) -> Preferences:
        """The preferences this body stores (repeats dropped, ids as lower-case text)."""
        return Preferences(tuple(self.muted_kinds), tuple(str(d) for d in self.muted_datasets))
