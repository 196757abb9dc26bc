"""Errors the service raises; each variant renders them in its own envelope."""
from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """A setting is missing or has a value the service cannot use."""


class ApiError(Exception):
    """An error with an HTTP status that a client should see."""

    status = 500
    code = "internal_error"
    message = "Internal Server Error"
    hint: str | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        hint: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.hint = hint if hint is not None else self.hint
        self.details = details or {}
        self.headers = headers or {}


class BadRequest(ApiError):
    status, code, message = 400, "bad_request", "Bad Request"


class Unauthorized(ApiError):
    status, code, message = 401, "unauthorized", "Not authenticated"
    hint = "Send 'Authorization: Bearer <token>' or the session cookie."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class Forbidden(ApiError):
    status, code, message = 403, "forbidden", "Forbidden"


class NotFound(ApiError):
    status, code, message = 404, "not_found", "Not Found"


class MethodNotAllowed(ApiError):
    status, code, message = 405, "method_not_allowed", "Method Not Allowed"


class RequestTimeout(ApiError):
    status, code, message = 408, "request_timeout", "The request body did not arrive in time"


class PayloadTooLarge(ApiError):
    status, code, message = 413, "payload_too_large", "Request body is too large"


class UriTooLong(ApiError):
    status, code, message = 414, "uri_too_long", "Request URI is too long"


class HeadersTooLarge(ApiError):
    status, code, message = (
        431, "request_header_fields_too_large", "Request header fields too large"
    )


class UnsupportedMediaType(ApiError):
    status, code, message = 415, "unsupported_media_type", "Unsupported Media Type"


class TooManyStreams(ApiError):
    status, code = 429, "sse_connection_limit_exceeded"
    message = "Too many open notification streams for this user."
    hint = "Reuse the open connection, or retry after the number of seconds in Retry-After."


class Unavailable(ApiError):
    status, code, message = 503, "unavailable", "Service Unavailable"


class DatabaseBusy(Unavailable):
    code = "database_busy"
    message = "The database is busy with another writer; nothing was changed."
    hint = "Retry after the number of seconds in Retry-After."


class ValidationFailed(ApiError):
    """One or more request fields are invalid.

    ``errors`` holds pydantic-style entries: ``type``, ``loc``, ``msg``, ``input`` and
    optionally ``ctx``; each variant picks what it shows.
    """

    status, code = 422, "validation_failed"
    message = "Please review the submitted fields and try again."
    hint = "Check the type and format of each field."

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__()
        self.errors = errors


HTTP_ERRORS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed,
                RequestTimeout, PayloadTooLarge, UriTooLong, UnsupportedMediaType, Unavailable)
}


def detail_body(error: ApiError) -> dict[str, Any]:
    """Render an error as ``{"detail": ...}`` (dataset variant, ingest API, health check)."""
    if isinstance(error, ValidationFailed):
        return {"detail": error.errors}
    return {"detail": error.message}
