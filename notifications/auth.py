"""Who is calling: credentials from the request, checked against the configured keys."""
from __future__ import annotations

from flask import Flask, current_app, g, request

from .config import ConfigError
from .errors import Unauthorized
from .token_cache import verify
from .tokens import AuthError, KeySettings, Principal, bearer_token


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
    app.extensions["notifications.keys"] = settings


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
    if token is not None:
        try:
            principal = verify(token, current_app.extensions["notifications.keys"])
        except AuthError as exc:
            raise Unauthorized(str(exc)) from None
    elif config["OPEN_USER"]:
        principal = Principal(config["OPEN_USER"], config["OPEN_ORGANIZATION"])
    else:
        raise Unauthorized("Not authenticated")
    g.principal = principal
    return principal
