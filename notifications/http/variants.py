"""What differs between the two API variants, one small object each."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from flask import Response, current_app, request
from pydantic import BaseModel

from notifications.core import sse
from notifications.core.errors import (
    ApiError,
    Forbidden,
    TooManyStreams,
    ValidationFailed,
    detail_body,
)
from notifications.core.schemas import DetailError, DetailValidationError, OrganizationError
from notifications.core.serialize import (
    DATASET_FIELDS,
    ORGANIZATION_FIELDS,
    Body,
    dataset_notification,
    dataset_notifications,
    organization_records,
)
from notifications.core.tokens import Principal
from notifications.core.v2_requests import V2ListQuery, V2StreamQuery, parse_v2_query
from notifications.core.validation import (
    ORGANIZATION_MAX_LIMIT,
    DatasetListQuery,
    DatasetStreamQuery,
    OrganizationListQuery,
    Query,
    parse_last_event_id,
    parse_query,
)
from notifications.http import operations, v2_views, views
from notifications.http.auth import current_principal
from notifications.http.operations import Operation
from notifications.realtime.events import (
    change_event,
    dataset_events,
    inbox_events,
    organization_events,
)
from notifications.realtime.hub import StreamHub, hub_of
from notifications.realtime.responses import event_stream
from notifications.store import reads
from notifications.store.changelog import Change
from notifications.store.inbox import Counts
from notifications.store.scope import Scope

#: The slots version 2 streams count against (``NOTIFICATIONS_STREAM_LIMIT`` per user, apart
#: from the organization variant's).
INBOX_LEASES = "inbox"
#: Reconnection delay suggested to stream clients, in milliseconds.
STREAM_RETRY_MS = 3000
#: Most missed notifications replayed on reconnect; a larger gap gets ``event: reset``.
REPLAY_LIMIT = 1000


def acquire_stream_lease(hub: StreamHub, user_id: str, limit: int,
                         kind: str = "organization") -> str:
    """Take one of the user's ``limit`` stream slots of ``kind``; raise 429 when none is free."""
    lease = hub.acquire_lease(user_id, limit, kind)
    if lease.lease_id is None:
        raise TooManyStreams(details={"limit": limit, "active": lease.active},
                             headers={"Retry-After": str(lease.retry_after)})
    return lease.lease_id


def leased_stream(hub: StreamHub, user_id: str, limit: int, kind: str,
                  events: Callable[[], Iterator[str]]) -> Response:
    """Answer with the stream ``events()`` makes, holding one of the user's slots of ``kind``.

    The slot is released when the server closes the response (client gone, or shutdown),
    or at once when the stream cannot be opened.
    """
    lease_id = acquire_stream_lease(hub, user_id, limit, kind)
    try:
        response = event_stream(events())
    except BaseException:
        hub.release_lease(lease_id)
        raise
    response.call_on_close(lambda: hub.release_lease(lease_id))
    return response


def detail_event(message: str, name: str, id: int | None = None) -> str:
    """Frame a dataset-stream event whose data is ``{"detail": message}``."""
    return sse.event(json.dumps({"detail": message}), name=name, id=id)


class DatasetStreamFrames:
    """What a dataset stream sends: ``notification`` events, ``reset``, ``error``, ``ping``."""

    _PING = sse.event("", name="ping")
    _REPLAY_FAILED = detail_event("Could not replay missed notifications", "error")
    _WATCHER_FAILED = detail_event("Internal error while reading notifications; retrying",
                                   "error")

    def notification(self, row: dict[str, Any]) -> str:
        return sse.event(json.dumps(dataset_notification(row)), name="notification",
                         id=row["seq"])

    def reset(self, cursor: int) -> str:
        return detail_event("Missed notifications cannot be replayed; reload the list",
                            "reset", cursor)

    def replay_failed(self) -> str:
        return self._REPLAY_FAILED

    def watcher_failed(self) -> str:
        return self._WATCHER_FAILED

    def ping(self) -> str:
        return self._PING


class OrganizationStreamFrames:
    """What an organization stream sends: ``unread`` events and keep-alive comments."""

    _KEEP_ALIVE = sse.comment("keep-alive")

    def unread(self, count: int) -> str:
        return sse.event(json.dumps({"unread": count}), name="unread")

    def keep_alive(self) -> str:
        return self._KEEP_ALIVE


class InboxStreamFrames:
    """What a version 2 stream sends: the changes of notifications, counts, resets."""

    _KEEP_ALIVE = sse.comment("keep-alive")

    def created(self, change: Change) -> str:
        assert change.row is not None, "a created change is framed with its row"
        return self._change(change)

    def updated(self, change: Change) -> str:
        return self._change(change)

    def deleted(self, change: Change) -> str:
        return self._change(change)

    @staticmethod
    def _change(change: Change) -> str:
        event = change_event(change)
        assert event is not None
        name, data = event
        return sse.event(json.dumps(data), name=name, id=change.position)

    def counts(self, counts: Counts, position: int | None) -> str:
        return sse.event(json.dumps(counts.as_dict()), name="counts", id=position)

    def reset(self, position: int) -> str:
        return sse.event(json.dumps({"detail": "Missed changes cannot be replayed; reload the "
                                               "list and the counts"}),
                         name="reset", id=position)

    def keep_alive(self) -> str:
        return self._KEEP_ALIVE


DATASET_FRAMES = DatasetStreamFrames()
INBOX_FRAMES = InboxStreamFrames()
ORGANIZATION_FRAMES = OrganizationStreamFrames()


@dataclass(frozen=True)
class Route:
    """One URL rule of a variant: the shared view that serves it and its description."""

    rule: str
    view: Callable[..., Any]
    methods: tuple[str, ...]
    operation: Operation

    @property
    def endpoint(self) -> str:
        """The endpoint name, within the variant's blueprint registration."""
        return self.view.__name__


@dataclass
class Variant:
    """Base of a variant: its mount prefix plus the hooks the shared views call."""

    prefix: str
    name: ClassVar[str]
    routes: ClassVar[tuple[Route, ...]]
    list_query: ClassVar[type[Query]]
    #: Models of the error bodies :meth:`error_body` renders (used by the API description).
    error_model: ClassVar[type[BaseModel]]
    validation_error_model: ClassVar[type[BaseModel]]

    def authorize(self) -> Scope:
        """Authenticate the request and return the rows it may touch through this variant."""
        raise NotImplementedError

    def list_body(self, scope: Scope, query: Any) -> dict[str, Any]:
        """Return the body of a list request."""
        raise NotImplementedError

    def error_body(self, error: ApiError, request_id: str) -> dict[str, Any]:
        """Return the JSON body of an error response."""
        raise NotImplementedError

    def stream_response(self, scope: Scope) -> Response:
        """Open this variant's event stream for an authorised caller."""
        raise NotImplementedError


class DatasetVariant(Variant):
    """Monitoring alerts about datasets (FastAPI-style errors, naive UTC times)."""

    name = "dataset"
    routes = (
        Route("/notifications", views.list_notifications, ("GET",), operations.DATASET_LIST),
        Route("/notifications/unread-count", views.unread_count, ("GET",),
              operations.DATASET_UNREAD_COUNT),
        Route("/notifications/<notification_id>/read", views.mark_one_read, ("POST",),
              operations.DATASET_MARK_ONE_READ),
        Route("/notifications/read-all", views.read_all, ("POST",), operations.DATASET_READ_ALL),
        Route("/notifications/stream", views.stream, ("GET",), operations.DATASET_STREAM),
    )
    list_query = DatasetListQuery
    error_model = DetailError
    validation_error_model = DetailValidationError

    def authorize(self) -> Scope:
        principal = current_principal()
        return Scope.dataset_api(principal.user_id, principal.organization_id)

    def list_body(self, scope: Scope, query: DatasetListQuery) -> dict[str, Any]:
        rows, total, _ = reads.list_notifications(
            scope,
            fields=DATASET_FIELDS,
            limit=query.limit,
            offset=query.offset,
            dataset_id=str(query.dataset_id) if query.dataset_id else None,
            unread_only=query.unread_only,
        )
        return Body(
            notifications=dataset_notifications(rows),
            total=total,
            has_more=query.offset + len(rows) < total,
        )

    def error_body(self, error: ApiError, request_id: str) -> dict[str, Any]:
        return detail_body(error)

    def stream_response(self, scope: Scope) -> Response:
        """Stream ``notification`` events (replaying after Last-Event-ID) and pings."""
        query = parse_query(DatasetStreamQuery, request.args)
        last_event_id, reset = query.last_event_id, False
        # The header is what a browser sends on its own reconnect: it wins over the query.
        try:
            header = parse_last_event_id(request.headers.get("Last-Event-ID"))
        except ValueError:
            reset = True
        else:
            if header is not None:
                last_event_id = header
        hub = hub_of()
        # Capped like the organization stream (its own slots): each replaying stream costs
        # the worker memory and reads, and one user must not take them all.
        return leased_stream(
            hub, scope.user_id, current_app.config["DATASET_STREAM_LIMIT"], "dataset",
            lambda: dataset_events(
                hub, scope, str(query.dataset_id) if query.dataset_id else None, last_event_id,
                frames=DATASET_FRAMES, ping_interval=current_app.config["PING_INTERVAL"],
                retry_ms=STREAM_RETRY_MS, replay_limit=REPLAY_LIMIT, reset=reset,
                sock=request.environ.get("gunicorn.socket"),
            ))


#: Organization-variant wording of validation failures, by pydantic error type.
_ORG_MESSAGES = {
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "too_long": "must contain at most {max_length} items",
    "json_invalid": "must be valid JSON",
    "model_attributes_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "missing": "is required",
}


def organization_message(error: dict[str, Any]) -> str:
    """Word one validation error the way the organization variant does."""
    ctx = error.get("ctx") or {}
    if error["type"] in ("greater_than_equal", "less_than_equal") and error["loc"][-1] == "limit":
        return f"must be between 1 and {ORGANIZATION_MAX_LIMIT}"
    if error["type"] == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if error["type"] == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    template = _ORG_MESSAGES.get(error["type"])
    return template.format(**ctx) if template else error["msg"]


class OrganizationVariant(Variant):
    """The in-app inbox of a user in an organization (flat error envelope, ``Z`` times)."""

    name = "organization"
    routes: ClassVar[tuple[Route, ...]] = (
        Route("/notifications", views.list_notifications, ("GET",), operations.ORGANIZATION_LIST),
        Route("/notifications/mark-read", views.mark_read, ("POST",),
              operations.ORGANIZATION_MARK_READ),
        Route("/notifications/stream", views.stream, ("GET",), operations.ORGANIZATION_STREAM),
    )
    list_query: ClassVar[type[Query]] = OrganizationListQuery
    error_model = OrganizationError
    validation_error_model = OrganizationError

    #: Why a caller without a user session is refused (403).
    session_hint = ("Sign in as a user and select an organization; "
                    "API keys cannot read notifications.")

    def authorize(self) -> Scope:
        principal = self.user_session()
        if principal.organization_id is None:
            raise Forbidden("notifications require a user session", hint=self.session_hint)
        return Scope.organization_api(principal.user_id, principal.organization_id)

    def user_session(self) -> Principal:
        """The calling user; an API key is refused before any token check (403)."""
        if request.headers.get("X-API-Key") is not None:
            raise Forbidden("notifications require a user session", hint=self.session_hint)
        return current_principal()

    def list_body(self, scope: Scope, query: OrganizationListQuery) -> dict[str, Any]:
        rows, total, unread = reads.list_notifications(
            scope, fields=ORGANIZATION_FIELDS, limit=query.limit, unread_only=query.unread_only,
            with_unread=True,
        )
        return Body(items=organization_records(rows), total=total, unread=unread)

    def error_body(self, error: ApiError, request_id: str) -> dict[str, Any]:
        details = dict(error.details)
        if isinstance(error, ValidationFailed):
            details["errors"] = [
                {"loc": e["loc"], "msg": organization_message(e)} for e in error.errors
            ]
        return {
            "code": error.code,
            "message": error.message,
            "detail": error.message,
            "hint": error.hint,
            "details": details,
            "request_id": request_id,
        }

    def stream_response(self, scope: Scope) -> Response:
        """Stream the unread count (on connect and on change) and keep-alive comments."""
        hub = hub_of()
        return leased_stream(
            hub, scope.user_id, current_app.config["STREAM_LIMIT"], "organization",
            lambda: organization_events(
                hub, (scope.user_id, scope.organization_id), frames=ORGANIZATION_FRAMES,
                keepalive_interval=current_app.config["KEEPALIVE_INTERVAL"],
                sock=request.environ.get("gunicorn.socket"),
            ))


class InboxV2Variant(OrganizationVariant):
    """The inbox API version 2: seen, read and archived, cursor paging, bulk changes.

    Errors in the organization envelope; the caller's rows are the token's user's, of the
    token's organization and of none (all of the user's when the token names none).
    """

    name = "v2"
    session_hint = "Sign in as a user; API keys cannot read notifications."
    routes = (
        Route("/notifications", v2_views.list_inbox, ("GET",), operations.V2_LIST),
        Route("/notifications/counts", v2_views.inbox_counts, ("GET",), operations.V2_COUNTS),
        Route("/notifications/bulk", v2_views.bulk_change, ("POST",), operations.V2_BULK),
        Route("/notifications/stream", views.stream, ("GET",), operations.V2_STREAM),
        Route("/notifications/<ntf:notification_id>", v2_views.get_notification, ("GET",),
              operations.V2_GET),
        Route("/notifications/<ntf:notification_id>", v2_views.patch_notification, ("PATCH",),
              operations.V2_PATCH),
        Route("/preferences", v2_views.get_preferences, ("GET",), operations.V2_PREFERENCES),
        Route("/preferences", v2_views.put_preferences, ("PUT",), operations.V2_PUT_PREFERENCES),
    )
    list_query = V2ListQuery

    def authorize(self) -> Scope:
        principal = self.user_session()
        return Scope.dataset_api(principal.user_id, principal.organization_id)

    def list_body(self, scope: Scope, query: Any) -> dict[str, Any]:
        raise TypeError("version 2 lists through its own view (cursor and counts)")

    def stream_response(self, scope: Scope) -> Response:
        """Stream counts and every change of the caller's notifications, by log position."""
        query = parse_v2_query(V2StreamQuery, request.args)
        reset = False
        try:
            last_event_id = parse_last_event_id(request.headers.get("Last-Event-ID"))
        except ValueError:
            last_event_id, reset = None, True
        hub = hub_of()
        return leased_stream(
            hub, scope.user_id, current_app.config["STREAM_LIMIT"], INBOX_LEASES,
            lambda: inbox_events(
                hub, scope, kinds=query.kinds, dataset_id=query.dataset,
                last_event_id=last_event_id, reset=reset, frames=INBOX_FRAMES,
                keepalive_interval=current_app.config["KEEPALIVE_INTERVAL"],
                retry_ms=STREAM_RETRY_MS, replay_limit=REPLAY_LIMIT,
                sock=request.environ.get("gunicorn.socket"),
            ))


VARIANTS: dict[str, type[Variant]] = {
    v.name: v for v in (DatasetVariant, OrganizationVariant, InboxV2Variant)
}
