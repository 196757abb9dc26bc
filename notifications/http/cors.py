"""CORS for browser clients on other origins: listed origins only, with credentials."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request

from notifications.extension import state
from notifications.settings import ConfigError

#: Request headers a browser may send cross-origin (credentials, stream resume, tracing).
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Last-Event-ID", "X-Request-Id", "X-API-Key")
#: Response headers a browser script may read.
EXPOSED_HEADERS = ("X-Request-Id", "Retry-After")
#: How long a browser may cache a preflight answer, in seconds.
MAX_AGE = 600


def parse_origins(values: list[str]) -> frozenset[str]:
    """Check configured origins (``scheme://host[:port]``) and return them normalised."""
    origins = set()
    for value in values:
        if value == "*":
            raise ConfigError(
                "NOTIFICATIONS_CORS_ORIGINS cannot be '*': credentials are allowed, so list "
                "each origin, e.g. https://app.example.com,http://localhost:5173"
            )
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or (
            parts.query or parts.fragment
        ):
            raise ConfigError(
                f"NOTIFICATIONS_CORS_ORIGINS entry {value!r} is not an origin; "
                "write scheme://host[:port], e.g. https://app.example.com"
            )
        origins.add(f"{parts.scheme}://{parts.netloc}".lower())
    return frozenset(origins)


#: Methods that change state: refused cross-site when a cookie (or open mode) authenticates.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def foreign_origin(origin: str | None, fetch_site: str | None, host: str,
                   listed: frozenset[str]) -> bool:
    """Tell whether a request comes from a page that is neither this service nor listed.

    ``Origin`` decides when present (``null``, sent by sandboxed and privacy-sensitive
    contexts, is foreign); without it, ``Sec-Fetch-Site: cross-site`` does. The scheme is
    not compared for this service's own host, so a TLS-terminating proxy in front of it
    does not turn its own pages foreign.
    """
    if origin is not None:
        origin = origin.strip().lower()
        if origin in listed:
            return False
        parts = urlsplit(origin)
        return parts.scheme not in ("http", "https") or parts.netloc != host.lower()
    return (fetch_site or "").strip().lower() == "cross-site"


def allowed_origin() -> str | None:
    """Return the request's Origin when it is listed, else None."""
    origin = request.headers.get("Origin")
    if origin and origin.lower() in state().cors_origins:
        return origin
    return None


def _preflight() -> Response | None:
    """Answer a CORS preflight for a listed origin before any authentication."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    if allowed_origin() is None or request.url_rule is None:
        return None  # unlisted origin or unknown path: the ordinary answer, no CORS headers
    response = Response(status=204)
    del response.headers["Content-Type"]
    # Every rule of the path counts: version 2 serves GET and PATCH of one URL by two views.
    adapter = current_app.create_url_adapter(request)
    allowed = adapter.allowed_methods() if adapter is not None else request.url_rule.methods
    methods = sorted(set(allowed or ()) | {"OPTIONS"})
    response.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
    response.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_HEADERS)
    response.headers["Access-Control-Max-Age"] = str(MAX_AGE)
    return response


def _add_headers(response: Response) -> Response:
    """Mark answers to listed origins readable, with credentials (streams included)."""
    # Answers differ by Origin, so caches must key on it even for unlisted origins.
    response.vary.add("Origin")
    origin = allowed_origin()
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
    return response


def init_app(app: Flask) -> None:
    """Enable CORS for NOTIFICATIONS_CORS_ORIGINS; with none listed, send no CORS headers."""
    origins = parse_origins(app.config["CORS_ORIGINS"])
    state(app).cors_origins = origins
    if not origins:
        return
    app.before_request(_preflight)
    app.after_request(_add_headers)
