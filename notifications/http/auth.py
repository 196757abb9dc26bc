"""Who is calling: credentials from the request, checked against the configured keys."""
from __future__ import annotations

from flask import Flask, current_app, g, request

from notifications.core.errors import Forbidden, Unauthorized
from notifications.core.token_cache import verify
from notifications.core.tokens import AuthError, KeySettings, Principal, bearer_token
from notifications.extension import state
from notifications.http.cors import UNSAFE_METHODS, foreign_origin
from notifications.settings import ConfigError


def init_app(app: Flask) -> None:
    """Load the verification keys; refuse to run without one unless told otherwise."""
    settings = KeySettings.from_config(app.config)
    settings.check_public_key()
    missing = settings.missing_keys()
    if missing and app.config["REQUIRE_KEY"]:
        raise ConfigError(
            f"{' and '.join(missing)} is not set, so tokens cannot be verified. Set it, "
            "for example: export NOTIFICATIONS_JWT_SECRET=\"$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')\", or try the service with "
            "`notifications serve --demo`."
        )
    if app.config["OPEN_USER"]:
        app.logger.warning(
            "open mode: requests without credentials act as user %r%s; only run this behind "
            "a gateway that authenticates callers",
            app.config["OPEN_USER"],
            f" in organization {app.config['OPEN_ORGANIZATION']!r}"
            if app.config["OPEN_ORGANIZATION"] else "",
        )
    state(app).keys = settings


def check_same_site() -> None:
    """Refuse a request sent by a page of an origin that is neither this service nor listed."""
    if foreign_origin(request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"),
                      request.host, state().cors_origins):
        raise Forbidden(
            "Cross-site request refused: this origin may not change notifications with the "
            "session cookie",
            hint="Call from this service's own origin or one listed in "
                 "NOTIFICATIONS_CORS_ORIGINS, or send the token in the Authorization header.",
        )


def current_principal() -> Principal:
    """Return the caller, from the Bearer header, the session cookie or open mode."""
    if "principal" in g:
        return g.principal
    config = current_app.config
    try:
        token = bearer_token(request.headers.get("Authorization"))
    except AuthError as exc:
        raise Unauthorized(str(exc)) from None
    if token is None:
        token = request.cookies.get(config["SESSION_COOKIE"]) or None
        # A browser attaches the cookie (and an open-mode install needs nothing) to a form
        # another site submits: such a request must not change anything. A request with an
        # Authorization header cannot be forged that way.
        if request.method in UNSAFE_METHODS and (token is not None or config["OPEN_USER"]):
            check_same_site()
    if token is not None:
        try:
            principal = verify(token, state().keys)
        except AuthError as exc:
            raise Unauthorized(str(exc)) from None
    elif config["OPEN_USER"]:
        principal = Principal(config["OPEN_USER"], config["OPEN_ORGANIZATION"])
    else:
        raise Unauthorized("Not authenticated")
    g.principal = principal
    return principal
