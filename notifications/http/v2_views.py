"""The views of the inbox API version 2 (``/api/v2``): list, counts, one, PATCH, bulk and
preferences.

The stream shares :func:`notifications.http.views.stream` with the seed variants; the
variant object (:class:`notifications.http.variants.InboxV2Variant`) authorises and opens it.
"""
from __future__ import annotations

from typing import Any

from flask import request

from notifications.core.errors import NotFound
from notifications.core.serialize import Body, parse_ntf_id, v2_record, v2_records
from notifications.core.v2_requests import (
    V2BulkBody,
    V2CountsQuery,
    V2ListQuery,
    V2PatchBody,
    V2PreferencesBody,
    parse_v2_query,
)
from notifications.core.validation import parse_json_body
from notifications.http.views import current_variant
from notifications.store import inbox, preferences
from notifications.store.inbox import InboxFilter

NOT_FOUND = "Notification not found"


def _stored_id(notification_id: str) -> str:
    """The stored id behind an ``ntf_`` id; 404 for anything else (as for a foreign id)."""
    stored = parse_ntf_id(notification_id)
    if stored is None:
        raise NotFound(NOT_FOUND)
    return stored


def list_inbox() -> dict[str, Any]:
    """List the caller's notifications, newest first, a page after the cursor."""
    scope = current_variant().authorize()
    query = parse_v2_query(V2ListQuery, request.args)
    page = inbox.list_page(scope, InboxFilter.of(query), limit=query.limit, after=query.after)
    following = page.next
    return Body(
        items=v2_records(page.rows),
        next_cursor=(query.next_cursor(following.created_at, following.seq)
                     if following is not None else None),
        counts=page.counts.as_dict(),
    )


def inbox_counts() -> dict[str, Any]:
    """Count the caller's unarchived notifications (of a kind, a dataset): total, unread, unseen."""
    scope = current_variant().authorize()
    query = parse_v2_query(V2CountsQuery, request.args)
    return Body(**inbox.counts(scope, query.kinds, query.dataset).as_dict())


def get_notification(notification_id: str) -> dict[str, Any]:
    """Return one of the caller's notifications."""
    scope = current_variant().authorize()
    row = inbox.get(scope, _stored_id(notification_id))
    if row is None:
        raise NotFound(NOT_FOUND)
    return Body(v2_record(row))


def patch_notification(notification_id: str) -> dict[str, Any]:
    """Set seen, read or archived on one notification (idempotent); return it as it is now."""
    scope = current_variant().authorize()
    stored = _stored_id(notification_id)
    body = parse_json_body(request.get_data(cache=False), V2PatchBody)
    result = inbox.patch(scope, stored, body.update())
    if result.row is None:
        raise NotFound(NOT_FOUND)
    return Body(v2_record(result.row))


def bulk_change() -> dict[str, Any]:
    """Apply one action to the listed notifications or to those a filter selects."""
    scope = current_variant().authorize()
    body = parse_json_body(request.get_data(cache=False), V2BulkBody)
    if body.filter is not None:
        updated = inbox.bulk_filter(scope, InboxFilter.of(body.filter), body.update())
    else:
        updated = inbox.bulk_ids(scope, body.stored_ids(), body.update())
    return {"updated": updated}


def get_preferences() -> dict[str, Any]:
    """Return the caller's preferences (nothing muted when none are stored)."""
    scope = current_variant().authorize()
    return preferences.get(scope.user_id).as_dict()


def put_preferences() -> dict[str, Any]:
    """Replace the caller's preferences; return them as stored."""
    scope = current_variant().authorize()
    body = parse_json_body(request.get_data(cache=False), V2PreferencesBody, empty_ok=False)
    return preferences.put(scope.user_id, body.preferences()).as_dict()
