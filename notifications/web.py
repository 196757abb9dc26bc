"""Request ids, request logs and the error handlers that render every error."""
from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from .errors import HTTP_ERRORS, ApiError
from .variants import detail_body

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
access_log = logging.getLogger("notifications.access")


def _start_request() -> None:
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    g.started = time.perf_counter()


def request_id() -> str:
    """Return this request's id (echoed from a valid ``X-Request-Id`` or generated)."""
    return g.get("request_id") or uuid.uuid4().hex


def _finish_request(response: Response) -> Response:
    response.headers["X-Request-Id"] = request_id()
    duration_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
    principal = g.get("principal")
    fields = {
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "duration_ms": round(duration_ms, 2),
        "user_id": principal.user_id if principal else None,
        "request_id": request_id(),
    }
    if current_app.config["LOG_FORMAT"] == "json":
        access_log.info(json.dumps(fields))
    else:
        access_log.info(
            "%(method)s %(path)s %(status)s %(duration_ms).1fms user=%(user_id)s request_id=%(request_id)s",
            fields,
        )
    return response


def variant_for_path(path: str) -> Any:
    """Return the variant whose prefix is the longest match for ``path``, if any."""
    best = None
    for variant in current_app.extensions.get("notifications.variants", {}).values():
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


def _handle_api_error(error: ApiError) -> Response:
    return error_response(error)


def _handle_http_error(error: HTTPException) -> Response:
    cls = HTTP_ERRORS.get(error.code or 500, ApiError)
    message = cls.message if cls is not ApiError else (error.name or "Error")
    api_error = cls(message)
    if error.code == 405 and error.valid_methods:
        api_error.headers["Allow"] = ", ".join(error.valid_methods)
    if cls is ApiError:
        api_error.status = error.code or 500
    return error_response(api_error)


def _handle_unexpected(error: Exception) -> Response:
    current_app.logger.exception("unhandled error (request_id=%s)", request_id())
    return error_response(ApiError())


def _configure_logging(app: Flask) -> None:
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False


def init_app(app: Flask) -> None:
    """Install request ids, request logging and error rendering."""
    _configure_logging(app)
    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_error)
    app.register_error_handler(Exception, _handle_unexpected)
