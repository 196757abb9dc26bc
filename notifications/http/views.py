"""The views the variants share, and the health check; each view asks the serving variant."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import current_app, request

from notifications import store
from notifications.core.errors import NotFound, Unavailable
from notifications.core.serialize import parse_ntf_id
from notifications.core.validation import (
    DatasetFilterQuery,
    MarkReadBody,
    NotificationPath,
    parse,
    parse_json_body,
    parse_query,
)
from notifications.extension import state
from notifications.realtime.hub import hub_of
from notifications.realtime.responses import open_stream
from notifications.store import marks, reads

if TYPE_CHECKING:
    from notifications.http.variants import Variant


def current_variant() -> Variant:
    """Return the variant whose registration is serving this request."""
    return state().variants[request.blueprint or ""]


def list_notifications() -> dict[str, Any]:
    """List the caller's notifications, newest first."""
    variant = current_variant()
    scope = variant.authorize()
    return variant.list_body(scope, parse_query(variant.list_query, request.args))


def dataset_filter() -> str | None:
    """Return the request's optional ``dataset_id`` filter as a canonical UUID string."""
    if not request.query_string:
        return None  # what the model gives for no parameters, without building it
    query = parse_query(DatasetFilterQuery, request.args)
    return str(query.dataset_id) if query.dataset_id else None


def unread_count() -> dict[str, Any]:
    """Count the caller's unread notifications, optionally for one dataset."""
    scope = current_variant().authorize()
    return {"count": reads.unread_count(scope, dataset_filter())}


def mark_one_read(notification_id: str) -> dict[str, Any]:
    """Mark one of the caller's unread notifications read."""
    scope = current_variant().authorize()
    path = parse(NotificationPath, {"notification_id": notification_id}, "path")
    if not marks.mark_one_read(scope, str(path.notification_id)):
        raise NotFound("Notification not found")
    return {"ok": True}


def read_all() -> dict[str, Any]:
    """Mark all of the caller's unread notifications read, optionally for one dataset."""
    scope = current_variant().authorize()
    return {"ok": True, "count": marks.mark_all_read(scope, dataset_filter())}


def mark_read() -> dict[str, Any]:
    """Mark the listed (or, with no ids, all) inbox items read and return the inbox."""
    variant = current_variant()
    scope = variant.authorize()
    body = parse_json_body(request.get_data(cache=False), MarkReadBody)
    if body.ids:
        ids = [uid for uid in map(parse_ntf_id, body.ids) if uid is not None]
        marks.mark_ids_read(scope, ids)
    else:
        marks.mark_all_read(scope)
    return variant.list_body(scope, variant.list_query())


def stream() -> Any:
    """Open the caller's live notification stream (Server-Sent Events)."""
    variant = current_variant()
    scope = variant.authorize()
    return open_stream(hub_of(), lambda: variant.stream_response(scope))


def healthz() -> tuple[dict[str, Any], int]:
    """Report whether the database answers; no authentication."""
    try:
        store.ping()
    except Exception as exc:  # any database failure means "not healthy", never a 500
        current_app.logger.warning("health check failed: %s", exc)
        raise Unavailable("database unavailable") from None
    return {"status": "ok"}, 200
