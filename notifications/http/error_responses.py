"""Every failure answered in the error format of the variant the request was addressed to."""
from __future__ import annotations

import json
import traceback
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from notifications.core.errors import HTTP_ERRORS, ApiError, DatabaseBusy, detail_body
from notifications.extension import state
from notifications.http.limits import body_too_large
from notifications.http.request_log import error_log, redact, request_id, secrets_to_redact
from notifications.store import WriteTimeout


def variant_for_path(path: str) -> Any:
    """Return the variant whose prefix is the longest match for ``path``, if any."""
    best = None
    for variant in state().variants.values():
        prefix = variant.prefix
        if (path == prefix or path.startswith(prefix + "/")) and (
            best is None or len(prefix) > len(best.prefix)
        ):
            best = variant
    return best


def error_response(error: ApiError) -> Response:
    """Render an error in the envelope of the variant the request was addressed to."""
    variant = variant_for_path(request.path)
    body = variant.error_body(error, request_id()) if variant else detail_body(error)
    response = jsonify(body)
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def _handle_http_error(error: HTTPException) -> Response:
    if isinstance(error, RequestEntityTooLarge):
        return error_response(body_too_large(current_app.config["MAX_CONTENT_LENGTH"]))
    cls = HTTP_ERRORS.get(error.code or 500, ApiError)
    message = cls.message if cls is not ApiError else (error.name or "Error")
    api_error = cls(message)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        api_error.headers["Allow"] = ", ".join(error.valid_methods)
    if cls is ApiError:
        api_error.status = error.code or 500
    return error_response(api_error)


#: Seconds a client is asked to wait after a write found the database busy.
BUSY_RETRY_AFTER = 1


def _handle_busy(error: WriteTimeout) -> Response:
    # Expected under an outside writer (a long import, a backup): one line, no traceback.
    error_log.warning("write refused, database busy for %gs (request_id=%s)",
                      error.seconds, request_id())
    return error_response(DatabaseBusy(headers={"Retry-After": str(BUSY_RETRY_AFTER)}))


def _handle_unexpected(error: Exception) -> Response:
    secrets = secrets_to_redact()
    trace = redact(traceback.format_exc(), secrets)
    if current_app.config["LOG_FORMAT"] == "json":
        error_log.error(json.dumps({
            "level": "error",
            "event": "unhandled_error",
            "request_id": request_id(),
            "error": redact(f"{type(error).__name__}: {error}", secrets),
            "traceback": trace,
        }))
    else:
        error_log.error("unhandled error (request_id=%s)\n%s", request_id(), trace.rstrip())
    return error_response(ApiError())


def init_app(app: Flask) -> None:
    """Render errors in the variants' envelopes; log unexpected ones with a redacted trace."""
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(HTTPException, _handle_http_error)
    app.register_error_handler(WriteTimeout, _handle_busy)
    app.register_error_handler(Exception, _handle_unexpected)
