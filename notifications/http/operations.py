"""What the API description says about each operation: one object per operation.

The variants' route tables (:mod:`notifications.http.variants`) and the app-level routes
point at these objects, and :mod:`notifications.http.openapi` renders them: nothing joins
a route to its description by a name.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import BaseModel

from notifications.core import schemas, v2_requests, v2_schemas, validation

if TYPE_CHECKING:
    from notifications.http.variants import Variant

ModelRef: TypeAlias = "type[BaseModel] | Callable[[Variant], type[BaseModel]] | None"


@dataclass(frozen=True)
class Operation:
    """What the description says about one route: its inputs, answers and errors."""

    summary: str
    response: type[BaseModel] | None = None
    status: int = 200
    query: ModelRef = None
    path: type[BaseModel] | None = None
    body: Any = None  # a model, a list of models the body may be one of, or a callable
    # returning either
    body_required: bool = False
    errors: tuple[int, ...] = (401, 422)
    stream: str | None = None  # description of the events of a text/event-stream answer
    stream_example: str | None = None
    headers: dict[str, dict[str, Any]] = field(default_factory=dict)  # request headers
    secured: bool = True
    description: str = ""
    #: OpenAPI links of the success answer: name -> (the linked operation, {param: expression}).
    links: dict[str, tuple[Operation, dict[str, str]]] = field(default_factory=dict)
    #: The credentials it takes: a user's (token or cookie) or the ingest token.
    credentials: Literal["user", "ingest"] = "user"
    #: The group it is listed under, for operations outside the variants.
    tag: str = "operations"


_DATASET_EVENTS = (
    "Server-Sent Events. On connect, `retry:` and a bare `id: <sequence>` (the current "
    "position; nothing is dispatched). `event: notification` carries the full notification "
    "object (schema `DatasetNotification`) as JSON in `data` and `id: <sequence>`; `event: ping` "
    "with an empty `data:` line every few seconds; `event: error` with `{\"detail\": ...}` "
    "(schema `DetailError`) when the server hits an internal error (the connection stays "
    "open); `event: reset` when the gap since `Last-Event-ID` is too old to replay."
)
_DATASET_EXAMPLE = (
    "retry: 3000\n\nid: 1041\n\nevent: ping\ndata:\n\nid: 1042\nevent: notification\n"
    'data: {"id": "e94ab07e-c0fe-4db1-83d0-34ea0fd8ee57", "user_id": "alice", '
    '"entity_type": "saved_view", "entity_id": "v1", "title": "", "message": null, '
    '"metadata": {"is_alert": true}, "dataset_id": "a981fc0c-2d1f-11f1-a7ca-d2580fa2deac", '
    '"created_at": "2026-03-31T17:02:12.432489", "read_at": null}\n\n'
)
_ORGANIZATION_EVENTS = (
    "Server-Sent Events. `event: unread` with `data: {\"unread\": N}` (schema `UnreadEvent`) "
    "immediately on connect and then whenever the count changes; a `: keep-alive` comment "
    "line every few seconds."
)
_ORGANIZATION_EXAMPLE = 'event: unread\ndata: {"unread": 3}\n\n: keep-alive\n\n'
_LAST_EVENT_ID = {
    "Last-Event-ID": {
        "description": "Sequence of the last notification event the client saw (browsers "
        "send it on reconnect); the server replays what came after it, and wins over the "
        "last_event_id query parameter. A value that is not a sequence number gets "
        "`event: reset`.",
        "schema": {"type": "string"},
    }
}

DATASET_MARK_ONE_READ = Operation(
    "Mark one unread notification read", schemas.Ok, path=validation.NotificationPath,
    errors=(401, 403, 404, 422, 503),
    description="404 when the notification does not exist, is not the caller's, or is "
    "already read.",
)
DATASET_LIST = Operation(
    "List the caller's notifications, newest first",
    schemas.DatasetNotificationList, query=lambda variant: variant.list_query,
    links={"markFirstRead": (DATASET_MARK_ONE_READ, {
        "notification_id": "$response.body#/notifications/0/id"})},
)
DATASET_UNREAD_COUNT = Operation(
    "Count the caller's unread notifications", schemas.UnreadCount,
    query=validation.DatasetFilterQuery,
)
DATASET_READ_ALL = Operation(
    "Mark all of the caller's unread notifications read", schemas.ReadAllResult,
    query=validation.DatasetFilterQuery, errors=(401, 403, 422, 503),
)
DATASET_STREAM = Operation(
    "Stream the caller's new notifications", query=validation.DatasetStreamQuery,
    stream=_DATASET_EVENTS, stream_example=_DATASET_EXAMPLE, headers=_LAST_EVENT_ID,
    errors=(401, 422, 429, 503),
)
ORGANIZATION_LIST = Operation(
    "List the caller's inbox in the active organization, newest first",
    schemas.OrganizationInbox, query=lambda variant: variant.list_query,
    errors=(401, 403, 422),
)
ORGANIZATION_MARK_READ = Operation(
    "Mark inbox items read (all of them without ids) and return the inbox",
    schemas.OrganizationInbox, body=validation.MarkReadBody,
    errors=(401, 403, 408, 413, 422, 503),
    description="Idempotent; ids that are unknown, malformed or not the caller's are "
    "ignored. An empty body, `{}`, `{\"ids\": []}` or `{\"ids\": null}` marks everything.",
)
ORGANIZATION_STREAM = Operation(
    "Stream the caller's unread count", errors=(401, 403, 429, 503),
    stream=_ORGANIZATION_EVENTS, stream_example=_ORGANIZATION_EXAMPLE,
)
HEALTH = Operation(
    "Report whether the database answers", schemas.Health, errors=(503,), secured=False,
)
INGEST = Operation(
    "Store one notification or a batch, all or none", schemas.IngestResult, status=201,
    # Looked up when the route is described: the models live with the ingest API.
    body=lambda: [validation.IngestNotification, validation.IngestBatch], body_required=True,
    errors=(401, 408, 413, 422, 503), credentials="ingest", tag="ingest",
    description="Send one notification object, or `{\"notifications\": [...]}` with at "
    "most 1000. A batch with any invalid object is refused whole (422) and nothing is "
    "stored. A notification whose `dedupe_key` was already used for the same user is not "
    "stored again: it counts in `duplicates` and its stored id is returned. A notification "
    "that a mute of its user matches (`GET /api/v2/preferences`) is not stored unless it "
    "says `\"critical\": true`: it counts in `muted` and its id is null. A `collapse_key` "
    "replaces the user's unread, unarchived notification with the same key: that one is "
    "deleted and the new one stored with its `collapsed_count` plus one, in one transaction.",
)

# --- the inbox API version 2 ---------------------------------------------------------------

_V2_ERRORS = (401, 403, 422)
V2_GET = Operation(
    "Return one of the caller's notifications", v2_schemas.V2Record,
    path=validation.NtfNotificationPath, errors=(401, 403, 404),
    description="404 `not_found` when it does not exist or is not the caller's.",
)
V2_PATCH = Operation(
    "Set seen, read or archived on one notification; return it", v2_schemas.V2Record,
    path=validation.NtfNotificationPath, body=v2_requests.V2PatchBody, body_required=True,
    errors=(401, 403, 404, 408, 413, 422, 503),
    description="Idempotent: asking for the state the notification has changes nothing. "
    "Reading implies seen; seen cannot be undone (`seen: false` is 422). An empty body or "
    "an unknown key is 422.",
)
V2_LIST = Operation(
    "List the caller's notifications, newest first, a page at a time", v2_schemas.V2List,
    query=v2_requests.V2ListQuery, errors=_V2_ERRORS,
    links={"getFirst": (V2_GET, {"notification_id": "$response.body#/items/0/id"})},
    description="Keyset paging: `next_cursor` continues after the last item whatever is "
    "added or changes state meanwhile; a cursor made for another filter is 422.",
)
V2_COUNTS = Operation(
    "Count the caller's unarchived notifications: total, unread and unseen",
    v2_schemas.V2Counts, query=v2_requests.V2CountsQuery, errors=_V2_ERRORS,
)
V2_BULK = Operation(
    "Apply one action to notifications by ids or by a filter", v2_schemas.V2BulkResult,
    body=v2_requests.V2BulkBody, body_required=True, errors=(401, 403, 408, 413, 422, 503),
    description="Give exactly one of `ids` (at most 1000; ids that are not the caller's are "
    "skipped) and `filter` (the list's filters, and `before`). `updated` counts the "
    "notifications whose state changed.",
)
V2_STREAM = Operation(
    "Stream counts and every change of the caller's notifications", errors=(401, 403, 422, 429,
                                                                         503),
    stream="Server-Sent Events. `retry: 3000`, then `event: counts` at once (schema "
    "`V2Counts`), then, each with `id: <change-log position>`: `notification.created` (the "
    "record, schema `V2Record`), `notification.updated` (schema `V2UpdatedEvent`), "
    "`notification.deleted` (schema `V2DeletedEvent`), `counts` whenever they change, and "
    "`reset` (schema `V2ResetEvent`) when the changes since `Last-Event-ID` cannot be "
    "replayed (more than 1,000, older than the log keeps, or no position of this service); "
    "a `: keep-alive` comment every few seconds.",
    stream_example='retry: 3000\n\nid: 41\nevent: counts\ndata: {"total": 3, "unread": 2, '
    '"unseen": 1}\n\nid: 42\nevent: notification.updated\ndata: {"id": '
    '"ntf_e94ab07ec0fe4db183d034ea0fd8ee57", "seen_at": "2026-04-24T14:00:00.000000Z", '
    '"read_at": "2026-04-24T14:00:00.000000Z", "archived_at": null}\n\n',
    headers={"Last-Event-ID": {
        "description": "The change-log position of the last event the client saw (browsers "
        "send it on reconnect); the stream first sends every change after it.",
        "schema": {"type": "string"}}},
    query=v2_requests.V2StreamQuery,
)

V2_PREFERENCES = Operation(
    "Return the caller's preferences: the kinds and datasets they muted",
    v2_schemas.V2Preferences, errors=(401, 403),
    description="Nothing muted (two empty lists) until the caller stores preferences. "
    "Preferences are the user's, whatever the token's organization.",
)
V2_PUT_PREFERENCES = Operation(
    "Replace the caller's preferences; return them as stored", v2_schemas.V2Preferences,
    body=v2_requests.V2PreferencesBody, body_required=True,
    errors=(401, 403, 408, 413, 422, 503),
    description="Ingest and `notifications send` do not store a notification that a mute "
    "of its user matches unless it is critical. A kind mutes as the list's `kind` filter "
    "matches (`review.*`: a prefix). A list left out is stored empty; at most 100 entries "
    "each; repeats are dropped. `null` and unknown keys are 422.",
)
