"""Ingest API: the other services of an install store notifications over HTTP."""
from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Flask, current_app, request

from notifications.core.errors import Unauthorized
from notifications.core.tokens import AuthError, bearer_token
from notifications.core.validation import parse_ingest_body
from notifications.store import inserts

#: Where the endpoint is mounted (outside both public API prefixes).
INGEST_PATH = "/internal/v1/notifications"

bp = Blueprint("ingest", __name__)


def check_ingest_token() -> None:
    """Accept only ``Authorization: Bearer <NOTIFICATIONS_INGEST_TOKEN>``."""
    expected = current_app.config["INGEST_TOKEN"].encode()
    try:
        given = bearer_token(request.headers.get("Authorization"))
    except AuthError:
        given = None
    # Constant-time comparison: the response time must not reveal how much of a guess matched.
    if given is None or not hmac.compare_digest(given.encode(), expected):
        raise Unauthorized("Invalid or missing ingest token")


@bp.post(INGEST_PATH)
def ingest() -> tuple[dict[str, Any], int]:
    """Store one notification or a batch of them, all or none; repeated dedupe keys are
    skipped, muted items left out, collapse keys replace the live notification of theirs."""
    check_ingest_token()
    items = parse_ingest_body(request.get_data(cache=False))
    ids, created = inserts.ingest_notifications([i.row_fields() for i in items])
    muted = ids.count(None)
    return {"created": created, "duplicates": len(ids) - created - muted, "muted": muted,
            "ids": ids}, 201


def init_app(app: Flask) -> None:
    """Mount the ingest API when an ingest token is configured (otherwise it is a 404)."""
    if app.config["INGEST_TOKEN"]:
        app.register_blueprint(bp)
