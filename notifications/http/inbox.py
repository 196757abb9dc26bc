"""The live inbox page at ``/``: sign-in into the session cookie, and the demo's helpers."""
from __future__ import annotations

import json
import time
from typing import Any
from uuid import UUID

import jwt
from flask import Blueprint, Flask, Response, current_app, g, jsonify, render_template, request
from pydantic import BaseModel, ConfigDict, Field

from notifications.core import tokens
from notifications.core.errors import ApiError, NotFound, Unauthorized, UnsupportedMediaType
from notifications.core.validation import parse_ingest_body, parse_json_body
from notifications.extension import state
from notifications.http import auth
from notifications.http.auth import current_principal
from notifications.store import demo, inserts

#: The page, the session endpoint and the static files: never part of the API description.
bp = Blueprint("inbox", __name__)
#: Mounted only in demo mode (``serve --demo``).
demo_bp = Blueprint("inbox_demo", __name__)

#: How long a demo sign-in lasts, in seconds.
DEMO_TTL = 86_400
#: The page may load and call nothing but this server; it has no inline script or style.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


class SessionBody(BaseModel):
    """A token to keep in the session cookie."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=8192)


class DemoSessionBody(BaseModel):
    """The demo user to sign in as."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=255)


class DemoNotificationBody(BaseModel):
    """A test notification for the signed-in user: an inbox item, or an alert of a dataset."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    body: str | None = Field(None, max_length=2000)
    dataset_id: UUID | None = None


class UnknownDemoUser(NotFound):
    message = "No such demo user"


class DemoSignInUnavailable(ApiError):
    status, code = 409, "conflict"
    message = ("Demo sign-in needs NOTIFICATIONS_JWT_SECRET and an HS algorithm; "
               "paste a token instead")


# --- helpers --------------------------------------------------------------------------


def api_base(prefix: str | None) -> str | None:
    """Return where a variant answers from the page's point of view, or None when it is off."""
    return None if prefix is None else request.script_root + prefix


def cookie_path() -> str:
    """Return the cookie's Path: the whole service, so it covers both API prefixes."""
    return request.script_root or "/"


def check_same_origin() -> None:
    """Refuse a state-changing request from a page of another, unlisted origin.

    The body must be JSON, which a plain cross-site form cannot send, and a browser's
    Origin must be this service (or a listed CORS origin).
    """
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Send a JSON body (Content-Type: application/json)")
    auth.check_same_site()


def _expiry(token: str) -> int | None:
    """Return seconds until a verified token expires (its ``exp``), for the cookie's Max-Age."""
    exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    if not isinstance(exp, int | float):
        return None
    return max(60, int(exp - time.time()))


def _who(principal: tokens.Principal) -> dict[str, Any]:
    return {"signed_in": True, "user_id": principal.user_id,
            "organization_id": principal.organization_id}


def signed_in(token: str, principal: tokens.Principal) -> Response:
    """Answer with who signed in, setting the HttpOnly session cookie to ``token``."""
    g.principal = principal  # the request log names who signed in
    response = jsonify(_who(principal))
    response.set_cookie(
        current_app.config["SESSION_COOKIE"], token, max_age=_expiry(token), path=cookie_path(),
        secure=request.is_secure, httponly=True, samesite="Lax",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _page_config() -> dict[str, Any]:
    """Return what the page's script needs: where each variant answers, and the demo's users."""
    config = current_app.config
    page: dict[str, Any] = {
        "dataset": api_base(config["DATASET_PREFIX"]),
        "organization": api_base(config["ORGANIZATION_PREFIX"]),
        "session": request.script_root + "/session",
        "demo": None,
    }
    if config["DEMO"]:
        page["demo"] = {
            "session": request.script_root + "/demo/session",
            "send": request.script_root + "/demo/notifications",
            "users": [{"user_id": u, "organization_id": o} for u, o in demo_users()],
            "datasets": [{"id": d, "name": n} for d, n in demo.DATASETS],
        }
    return page


def demo_users() -> list[tuple[str, str | None]]:
    """Return the users a demo visitor may sign in as."""
    return demo.token_users() or [(u, o) for u, o in demo.USERS]


# --- views ----------------------------------------------------------------------------


@bp.get("/")
def page() -> Response:
    """Serve the live inbox page, with the configured API prefixes in it."""
    html = render_template("inbox.html", config=_page_config(),
                           static=request.script_root + "/static/inbox")
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/session")
def who() -> Response:
    """Tell the page who is signed in (the cookie, a Bearer header or open mode)."""
    try:
        principal = current_principal()
    except Unauthorized as exc:
        body: dict[str, Any] = {"signed_in": False, "user_id": None, "organization_id": None}
        cookie = current_app.config["SESSION_COOKIE"]
        if request.cookies.get(cookie):
            body["detail"] = exc.message  # say why a kept session no longer works
        response = jsonify(body)
        if request.cookies.get(cookie):
            response.delete_cookie(cookie, path=cookie_path(), httponly=True, samesite="Lax")
    else:
        response = jsonify({**_who(principal), "open": request.cookies.get(
            current_app.config["SESSION_COOKIE"]) is None and not request.authorization})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/session")
def sign_in() -> Response:
    """Check a pasted token and keep it in the HttpOnly session cookie."""
    check_same_origin()
    body = parse_json_body(request.get_data(cache=False), SessionBody, empty_ok=False)
    token = body.token.strip()
    try:
        principal = tokens.decode(token, state().keys)
    except tokens.AuthError as exc:
        raise Unauthorized(str(exc)) from None
    return signed_in(token, principal)


@bp.delete("/session")
def sign_out() -> Response:
    """Forget the session cookie."""
    auth.check_same_site()
    response = Response(status=204)
    response.delete_cookie(current_app.config["SESSION_COOKIE"], path=cookie_path(),
                           secure=request.is_secure, httponly=True, samesite="Lax")
    return response


@demo_bp.post("/demo/session")
def demo_sign_in() -> Response:
    """Sign in as one of the demo's users with a token signed by the demo's secret."""
    check_same_origin()
    body = parse_json_body(request.get_data(cache=False), DemoSessionBody, empty_ok=False)
    users = dict(demo_users())
    if body.user_id not in users:
        raise UnknownDemoUser()
    config = current_app.config
    keys: tokens.KeySettings = state().keys
    algorithm = next((a for a in keys.algorithms if a.startswith("HS")), None)
    if algorithm is None or not keys.secret:
        raise DemoSignInUnavailable()
    token = tokens.issue(config["JWT_SECRET"], body.user_id, users[body.user_id], ttl=DEMO_TTL,
                         org_claim=keys.org_claim, audience=keys.audience, issuer=keys.issuer,
                         algorithm=algorithm)
    return signed_in(token, tokens.Principal(body.user_id, users[body.user_id]))


@demo_bp.post("/demo/notifications")
def demo_send() -> tuple[dict[str, Any], int]:
    """Send a test notification to the signed-in user through the ingest path."""
    check_same_origin()
    principal = current_principal()
    body = parse_json_body(request.get_data(cache=False), DemoNotificationBody, empty_ok=False)
    item: dict[str, Any] = {"user_id": principal.user_id, "title": body.title, "body": body.body}
    if body.dataset_id is None:
        item.update(organization_id=principal.organization_id, kind="demo.message",
                    entity_type="demo", link="/")
    else:
        names = dict(demo.DATASETS)
        item.update(dataset_id=str(body.dataset_id), kind="monitor.alert",
                    entity_type="saved_view", entity_id="demo", metadata={
                        "view_name": "demo", "dataset_name": names.get(str(body.dataset_id), ""),
                        "result_count": 1, "batch_id": None, "is_alert": True})
    # The ingest API's own parsing and write: what another service's POST would store.
    items = parse_ingest_body(json.dumps(item).encode())
    ids, created = inserts.ingest_notifications([i.row_fields() for i in items])
    return {"created": created, "ids": ids}, 201


def init_app(app: Flask) -> None:
    """Serve the inbox page and the session endpoint; the demo's helpers in demo mode."""
    app.register_blueprint(bp)
    if app.config["DEMO"]:
        app.register_blueprint(demo_bp)
