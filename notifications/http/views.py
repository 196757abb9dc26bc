"""The one blueprint that serves both API variants, plus the health check."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, request
from flask.blueprints import BlueprintSetupState

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
from notifications.http.variants import VARIANTS, Variant
from notifications.realtime.hub import hub_of
from notifications.realtime.responses import open_stream
from notifications.store import queries

bp = Blueprint("notifications", __name__)


def current_variant() -> Variant:
    """Return the variant whose registration is serving this request."""
    return current_app.extensions["notifications.variants"][request.blueprint]


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
    return {"count": queries.unread_count(scope, dataset_filter())}


def mark_one_read(notification_id: str) -> dict[str, Any]:
    """Mark one of the caller's unread notifications read."""
    scope = current_variant().authorize()
    path = parse(NotificationPath, {"notification_id": notification_id}, "path")
    if not queries.mark_one_read(scope, str(path.notification_id)):
        raise NotFound("Notification not found")
    return {"ok": True}


def read_all() -> dict[str, Any]:
    """Mark all of the caller's unread notifications read, optionally for one dataset."""
    scope = current_variant().authorize()
    return {"ok": True, "count": queries.mark_all_read(scope, dataset_filter())}


def mark_read() -> dict[str, Any]:
    """Mark the listed (or, with no ids, all) inbox items read and return the inbox."""
    variant = current_variant()
    scope = variant.authorize()
    body = parse_json_body(request.get_data(cache=False), MarkReadBody)
    if body.ids:
        ids = [uid for uid in map(parse_ntf_id, body.ids) if uid is not None]
        queries.mark_ids_read(scope, ids)
    else:
        queries.mark_all_read(scope)
    return variant.list_body(scope, variant.list_query())


def stream() -> Any:
    """Open the caller's live notification stream (Server-Sent Events)."""
    variant = current_variant()
    scope = variant.authorize()
    return open_stream(hub_of(), lambda: variant.stream_response(scope))


VIEWS = {
    "list_notifications": list_notifications,
    "unread_count": unread_count,
    "mark_one_read": mark_one_read,
    "read_all": read_all,
    "mark_read": mark_read,
    "stream": stream,
}


@bp.record
def _add_variant_routes(state: BlueprintSetupState) -> None:
    """Add the URL rules of the variant this registration serves."""
    variant: Variant = state.options["variant"]
    state.app.extensions.setdefault("notifications.variants", {})[state.name] = variant
    for route in variant.routes:
        state.add_url_rule(route.rule, route.endpoint, VIEWS[route.endpoint], methods=route.methods)


def healthz() -> tuple[dict[str, Any], int]:
    """Report whether the database answers; no authentication."""
    try:
        store.ping()
    except Exception as exc:  # any database failure means "not healthy", never a 500
        current_app.logger.warning("health check failed: %s", exc)
        raise Unavailable("database unavailable") from None
    return {"status": "ok"}, 200


def init_app(app: Flask) -> None:
    """Register the blueprint once per enabled variant, and the health check."""
    for name, variant_cls in VARIANTS.items():
        prefix = app.config[f"{name.upper()}_PREFIX"]
        if prefix is not None:
            app.register_blueprint(bp, url_prefix=prefix, name=name, variant=variant_cls(prefix))
    app.add_url_rule("/healthz", "healthz", healthz)
