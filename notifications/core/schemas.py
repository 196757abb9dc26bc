"""Response bodies of both variants as pydantic models: the API description is built from them.

The serialisers in :mod:`serialize` produce plain dicts for speed; these models describe
those dicts (a test validates real answers against them, and the fuzzing run checks every
answer against the document built from them).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Lower-case UUID with dashes, as both variants render ids.
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
#: Dataset variant time: naive UTC, always six fractional digits.
NAIVE_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$"
#: Organization variant time: UTC with ``Z``, fraction only when not zero.
Z_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z$"
NTF_PATTERN = r"^ntf_[0-9a-f]{32}$"


class Body(BaseModel):
    """Base of response models: every key is always present."""

    model_config = ConfigDict(extra="forbid")


# --- dataset variant ----------------------------------------------------------------


class DatasetNotification(Body):
    """A monitoring alert about a dataset."""

    id: str = Field(pattern=UUID_PATTERN)
    user_id: str
    entity_type: str = Field(examples=["saved_view"])
    entity_id: str
    title: str
    message: str | None
    metadata: dict[str, Any] = Field(
        description="Free-form object; monitor alerts carry view_name, dataset_name, "
        "result_count, batch_id and is_alert.",
        examples=[{"view_name": "icecream", "dataset_name": "Ice cream", "result_count": 1875,
                   "batch_id": "a863a595-5aaf-45d3-89a9-073a73d59671", "is_alert": True}],
    )
    dataset_id: str | None = Field(pattern=UUID_PATTERN)
    created_at: str = Field(pattern=NAIVE_TIME_PATTERN, examples=["2026-03-31T17:02:12.432489"])
    read_at: str | None = Field(pattern=NAIVE_TIME_PATTERN)


class DatasetNotificationList(Body):
    """One page of the caller's notifications, newest first."""

    notifications: list[DatasetNotification]
    total: int = Field(ge=0, description="All matching notifications, ignoring limit and offset.")
    has_more: bool = Field(description="offset + len(notifications) < total")


class UnreadCount(Body):
    count: int = Field(ge=0)


class Ok(Body):
    ok: Literal[True]


class ReadAllResult(Body):
    ok: Literal[True]
    count: int = Field(ge=0, description="How many were unread and are now read.")


class ValidationErrorEntry(Body):
    """One invalid field, FastAPI style."""

    type: str = Field(examples=["less_than_equal"])
    loc: list[str | int] = Field(examples=[["query", "limit"]])
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class DetailError(Body):
    """Error of the dataset variant, the ingest API and the health check."""

    detail: str = Field(examples=["Notification not found"])


class DetailValidationError(Body):
    """Validation error (422) of the dataset variant and the ingest API."""

    detail: list[ValidationErrorEntry]


# --- organization variant -------------------------------------------------------------


class OrganizationRecord(Body):
    """An inbox item of the caller in the active organization."""

    id: str = Field(pattern=NTF_PATTERN, examples=["ntf_5f0c6a1e2b7d4c0e9a3b8d1f2e4c6a7b"])
    user_id: str
    organization_id: str | None
    kind: str = Field(examples=["review.created"])
    title: str
    body: str | None
    link: str | None
    read_at: str | None = Field(pattern=Z_TIME_PATTERN)
    created_at: str = Field(pattern=Z_TIME_PATTERN, examples=["2026-04-24T14:00:00Z"])


class OrganizationInbox(Body):
    """The caller's inbox in the active organization, newest first."""

    items: list[OrganizationRecord]
    total: int = Field(ge=0, description="Notifications matching the filter.")
    unread: int = Field(ge=0, description="The caller's unread count in the organization.")


class OrganizationError(Body):
    """The organization variant's one error envelope (``request_id`` equals ``X-Request-Id``)."""

    code: str = Field(examples=["validation_failed", "unauthorized", "forbidden", "not_found",
                                "sse_connection_limit_exceeded"])
    message: str
    detail: str
    hint: str | None
    details: dict[str, Any] = Field(
        description="For validation_failed: {\"errors\": [{\"loc\": [...], \"msg\": \"...\"}]}; "
        "for sse_connection_limit_exceeded: {\"limit\": n, \"active\": n}."
    )
    request_id: str


# --- stream events, health, ingest ------------------------------------------------------


class UnreadEvent(Body):
    """Data of the organization stream's ``unread`` event."""

    unread: int = Field(ge=0)


class Health(Body):
    status: Literal["ok"]


class IngestResult(Body):
    """What an ingest request stored."""

    created: int = Field(ge=0)
    duplicates: int = Field(ge=0, description="Objects skipped because their dedupe_key was seen.")
    muted: int = Field(ge=0, description="Objects not stored because a mute of their user "
                       "matches them (and they are not critical).")
    ids: list[Annotated[str, Field(pattern=UUID_PATTERN)] | None] = Field(
        description="Ids in request order (for a duplicate, the id stored the first time; "
        "null for a muted object)."
    )
