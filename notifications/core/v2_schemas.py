"""Response bodies of the inbox API version 2 as pydantic models, for the API description.

The serialisers (:func:`serialize.v2_record`, :func:`serialize.v2_records`,
:func:`serialize.v2_state`) produce plain dicts; these models describe them, as
:mod:`schemas` does for the other variants. Errors use the organization envelope,
:class:`schemas.OrganizationError`.
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from notifications.core.schemas import NTF_PATTERN, UUID_PATTERN, Body

#: Version 2 time: RFC 3339 UTC, always six fractional digits, and ``Z``.
V2_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"
NtfId = Annotated[str, Field(pattern=NTF_PATTERN,
                             examples=["ntf_5f0c6a1e2b7d4c0e9a3b8d1f2e4c6a7b"])]


class V2Record(Body):
    """A notification of the caller."""

    id: NtfId
    user_id: str = Field(examples=["alice"])
    organization_id: str | None = Field(examples=["acme"])
    dataset_id: str | None = Field(pattern=UUID_PATTERN)
    kind: str = Field(examples=["review.created"])
    entity_type: str | None = Field(examples=["saved_view"])
    entity_id: str | None
    title: str = Field(examples=["New review"])
    body: str | None
    link: str | None = Field(examples=["/reviews/1"])
    metadata: dict[str, Any] = Field(description="Free-form object set by the producer.")
    created_at: str = Field(pattern=V2_TIME_PATTERN, examples=["2026-04-24T14:00:00.000000Z"])
    seen_at: str | None = Field(
        pattern=V2_TIME_PATTERN, description="When the caller first saw it in a list; "
        "null while it is new. Never cleared.")
    read_at: str | None = Field(pattern=V2_TIME_PATTERN, description="null while unread.")
    archived_at: str | None = Field(pattern=V2_TIME_PATTERN,
                                    description="null unless archived.")
    collapsed_count: int = Field(ge=0, description="How many further notifications were "
                                 "collapsed into this one; 0 when none.")


class V2Counts(Body):
    """Counts of the caller's notifications in scope."""

    total: int = Field(ge=0, description="Notifications the filter matches.")
    unread: int = Field(ge=0, description="Unread, unarchived notifications in scope.")
    unseen: int = Field(ge=0, description="Unseen (new), unarchived notifications in scope.")


class V2List(Body):
    """One page of the caller's notifications, newest first."""

    items: list[V2Record]
    next_cursor: str | None = Field(
        description="Send it as `cursor`, with the same filter, for the next page; null on "
        "the last page. Opaque.")
    counts: V2Counts


class V2BulkResult(Body):
    """What a bulk request changed."""

    updated: int = Field(ge=0, description="Notifications whose state changed.")


class V2Preferences(Body):
    """The caller's preferences: what ingest and `notifications send` do not store for
    them unless the item is critical."""

    muted_kinds: list[str] = Field(examples=[["review.*", "api.quota.warning"]],
                                   description="Exact kinds and `prefix.*` patterns.")
    muted_datasets: list[Annotated[str, Field(pattern=UUID_PATTERN)]] = Field(
        description="Dataset ids.")


class V2UpdatedEvent(Body):
    """Data of the stream's ``notification.updated`` event: the new state times."""

    id: NtfId
    seen_at: str | None = Field(pattern=V2_TIME_PATTERN)
    read_at: str | None = Field(pattern=V2_TIME_PATTERN)
    archived_at: str | None = Field(pattern=V2_TIME_PATTERN)


class V2DeletedEvent(Body):
    """Data of the stream's ``notification.deleted`` event."""

    id: NtfId


class V2ResetEvent(Body):
    """Data of the stream's ``reset`` event: reload lists and counts."""

    detail: str = Field(examples=["the stream fell too far behind; reload the list"])
