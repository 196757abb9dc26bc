"""Request ids, request logs and the error handlers that render every error."""
from __future__ import annotations

import json
import logging
import re
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import flask
from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from notifications.core import logs
from notifications.core.errors import (
    HTTP_ERRORS,
    ApiError,
    DatabaseBusy,
    HeadersTooLarge,
    PayloadTooLarge,
    RequestTimeout,
    UriTooLong,
)
from notifications.http.variants import detail_body
from notifications.store import WriteTimeout

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

#: Longest query string (and path) accepted, in bytes; longer requests get 414.
MAX_QUERY_LENGTH = 8192
MAX_PATH_LENGTH = 8192
#: Longest header field (name, ": " and value) and most header fields the service answers
#: with 431 in the variant's format. gunicorn's own caps (:mod:`server`) sit above these,
#: so that requests between the two reach the service instead of gunicorn's HTML page.
MAX_HEADER_FIELD = 8192
MAX_HEADER_FIELDS = 100
#: Query parameters whose values are never logged, whatever they hold.
_SECRET_PARAM = re.compile(r"token|secret|password|passwd|key|auth|session|signature|jwt|code",
                           re.IGNORECASE)
#: A JWT, or a piece of one, anywhere in a path or value: its first part is base64url JSON,
#: which always starts with ``eyJ`` (``{"``).
_JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}")
#: Long unbroken base64url/hex runs look like keys; ids and UUIDs (36 characters) and path
#: segments stay readable.
_KEY_LIKE = re.compile(r"[A-Za-z0-9_=-]{48,}")
REDACTED = "[redacted]"
access_log = logging.getLogger("notifications.access")
error_log = logging.getLogger("notifications.errors")


def check_headers(headers: Any) -> None:
    """Refuse more than :data:`MAX_HEADER_FIELDS` fields or one over :data:`MAX_HEADER_FIELD` bytes."""
    count = 0
    for name, value in headers.items():
        count += 1
        if len(name) + 2 + len(value) > MAX_HEADER_FIELD:
            raise HeadersTooLarge(
                f"The {name} header is longer than {MAX_HEADER_FIELD} bytes",
                details={"header": name, "limit": MAX_HEADER_FIELD},
            )
    if count > MAX_HEADER_FIELDS:
        raise HeadersTooLarge(f"More than {MAX_HEADER_FIELDS} header fields",
                              details={"limit": MAX_HEADER_FIELDS})


def _start_request() -> None:
    g.started = time.perf_counter()
    # First, so that neither the request id nor any view looks at an oversized header.
    try:
        check_headers(request.headers)
    except HeadersTooLarge:
        g.request_id = uuid.uuid4().hex
        raise
    incoming = request.headers.get("X-Request-Id", "")
    # A token pasted into X-Request-Id would be echoed and logged: never accept one.
    valid = _REQUEST_ID.fullmatch(incoming) and not _JWT_LIKE.search(incoming)
    g.request_id = incoming if valid else uuid.uuid4().hex
    # Checked here, before any view, so every endpoint answers in its variant's format.
    if len(request.query_string) > MAX_QUERY_LENGTH:
        raise UriTooLong(f"The query string is longer than {MAX_QUERY_LENGTH} bytes")
    if len(request.path) > MAX_PATH_LENGTH:
        raise UriTooLong(f"The path is longer than {MAX_PATH_LENGTH} bytes")


class Request(flask.Request):
    """Flask's request, refusing (rather than truncating) a body without a length."""

    def get_data(self, cache: bool = True, as_text: bool = False,  # type: ignore[override]
                 parse_form_data: bool = False) -> Any:
        """Return the body; raise 413 when it is over the limit, however it was sent.

        A body with a Content-Length over the limit is refused by Werkzeug when it is read;
        one sent without a length (chunked) is silently cut at the limit instead, so a body
        that reaches the limit is refused here. Views read bodies after authenticating, so
        a wrong credential is a 401 even when the body is too large.
        """
        with body_deadline(current_app.config["BODY_TIMEOUT"]):
            data = super().get_data(cache=cache, as_text=False, parse_form_data=parse_form_data)
        limit = self.max_content_length
        if limit is not None and self.content_length is None and len(data) >= limit:
            raise body_too_large(limit)
        return data.decode(errors="replace") if as_text else data


@contextmanager
def body_deadline(seconds: float) -> Iterator[None]:
    """Raise 408 when reading the body takes longer than ``seconds`` in all.

    A client that trickles its body would otherwise hold its connection (and the greenlet
    that waits for it) for as long as it likes. Under gevent the read is interrupted where
    it waits; elsewhere (the test client reads from memory) there is nothing to bound.
    """
    from gevent import Timeout, monkey

    if not monkey.is_module_patched("socket"):
        yield
        return
    timer = Timeout(seconds)
    timer.start()
    try:
        yield
    except Timeout as exc:
        if exc is not timer:
            raise
        raise RequestTimeout(f"The request body did not arrive within {seconds:g} seconds",
                             hint="Send the whole body at once.",
                             details={"timeout": seconds}) from None
    finally:
        timer.close()


def body_too_large(limit: int) -> PayloadTooLarge:
    """Return the 413 error, naming the limit where the variant's envelope has room for it."""
    return PayloadTooLarge(hint=f"Send at most {limit} bytes.", details={"limit": limit})


def request_id() -> str:
    """Return this request's id (echoed from a valid ``X-Request-Id`` or generated)."""
    return g.get("request_id") or uuid.uuid4().hex


#: Settings whose values are secrets: never written to a log, whatever their length.
SECRET_SETTINGS = ("JWT_SECRET", "INGEST_TOKEN")


def _secrets() -> list[str]:
    """Return the credentials this request carries and every configured secret."""
    found = []
    authorization = request.headers.get("Authorization", "")
    _, _, credential = authorization.partition(" ")
    if credential.strip():
        found.append(credential.strip())
    cookie = request.cookies.get(current_app.config["SESSION_COOKIE"])
    if cookie:
        found.append(cookie)
    # A request's own credential shorter than 4 characters is no secret anyone relies on,
    # and removing it would blank out ordinary words; a configured secret goes whatever
    # its length.
    found = [value for value in found if len(value) >= 4]
    found.extend(value for key in SECRET_SETTINGS if (value := current_app.config.get(key)))
    return found


def redact(text: str, secrets: list[str]) -> str:
    """Remove the given secrets, JWT-like and key-like runs from text bound for a log line."""
    # Longest first, so a secret that contains another is removed whole.
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    text = _JWT_LIKE.sub(REDACTED, text)
    return _KEY_LIKE.sub(REDACTED, text)


def safe_query(args: Any, secrets: list[str], limit: int = 512) -> str:
    """Render the query string for a log line: secret-looking values replaced, length capped.

    Names and values are percent-encoded again, so a newline or a control character sent
    by a client can never start a forged log line.
    """
    parts = []
    for name, value in args.items(multi=True):
        if _SECRET_PARAM.search(name):
            value = REDACTED
        name, value = redact(name, secrets), redact(value, secrets)
        parts.append(f"{quote(name, safe='[]')}={quote(value, safe='[]')}")
    text = "&".join(parts)
    return text if len(text) <= limit else text[:limit] + "..."


def safe_path(path: str, secrets: list[str]) -> str:
    """Render the path for a log line: credentials removed, unprintable bytes encoded."""
    return quote(redact(path, secrets)[:MAX_PATH_LENGTH], safe="/[]:@!$&'()*+,;=")


_PLAIN = re.compile(r"[\x21-\x7e]+")


def _text_value(value: Any) -> str:
    """Show a value in a text log line as one token (JSON-quoted when it is not plain)."""
    if value is None:
        return "-"
    text = str(value)
    return text if _PLAIN.fullmatch(text) else json.dumps(text)


def _log_line(fields: dict[str, Any], log_format: str) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    if log_format == "json":
        line = json.dumps(fields, ensure_ascii=False)
    else:
        query = f"?{fields['query']}" if fields["query"] else ""
        line = "%s %s %s%s %s %.1fms user=%s request_id=%s" % (
            fields["time"], _text_value(fields["method"]), fields["path"], query,
            fields["status"], fields["duration_ms"], _text_value(fields["user_id"]),
            fields["request_id"],
        )
    handlers = access_log.handlers
    if (len(handlers) == 1 and type(handlers[0]) is _LineHandler and not access_log.filters
            and handlers[0].level <= logging.INFO and not handlers[0].filters):
        # Only our own stderr handler, whose format is the message itself: write the line.
        # A LogRecord, the handler's lock and the formatter cost more than the line.
        if handlers[0].write_line(line):
            return
    # A record made here rather than by Logger.info, which also walks the stack for the
    # caller's file and line (unused by the format).
    access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, "", 0, line,
                                            None, None))


class _LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stderr handler of the service's own loggers (``%(message)s`` lines)."""

    def write_line(self, line: str) -> bool:
        """Write one line as :meth:`emit` would; False when it failed (then log it the slow way)."""
        try:
            self.stream.write(line + self.terminator)
            self.stream.flush()
        except Exception:  # the slow way reports it through handleError
            return False
        return True


#: Paths that redaction and percent-encoding leave as they are, unless a credential of the
#: request occurs in them: safe characters only, no JWT-like or key-like run.
_PLAIN_PATH = re.compile(r"(?!.*eyJ)[A-Za-z0-9/._~:@!$&'()*+,;=-]*")
_second: tuple[int, str] = (0, "")


def _log_time() -> str:
    """Return the current UTC time with milliseconds and ``Z`` (the date part once a second)."""
    global _second
    now = time.time()
    whole = int(now)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((now - whole) * 1000):03d}Z"


def _log_path(path: str, secrets: list[str]) -> str:
    """Return :func:`safe_path` of ``path``, without its work for the usual plain path."""
    if (len(path) <= MAX_PATH_LENGTH and _PLAIN_PATH.fullmatch(path)
            and not _KEY_LIKE.search(path)
            and not any(secret and secret in path for secret in secrets)):
        return path
    return safe_path(path, secrets)


def _finish_request(response: Response) -> Response:
    rid = request_id()
    response.headers["X-Request-Id"] = rid
    secrets = _secrets()
    principal = g.get("principal")
    started = g.get("started", time.perf_counter())
    fields: dict[str, Any] = {
        "time": _log_time(),
        "method": request.method,
        "path": _log_path(request.path, secrets),
        "query": safe_query(request.args, secrets) if request.query_string else "",
        "status": response.status_code,
        "duration_ms": 0.0,
        "user_id": principal.user_id if principal else None,
        "request_id": rid,
        "remote_addr": request.remote_addr,
    }
    log_format = current_app.config["LOG_FORMAT"]

    def log() -> None:
        fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
        _log_line(fields, log_format)

    if response.is_streamed and response.mimetype == "text/event-stream":
        # A stream's line is written when it ends, with how long it was open.
        response.call_on_close(log)
    else:
        log()
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


def _handle_http_error(error: HTTPException) -> Response:
    if isinstance(error, RequestEntityTooLarge):
        return error_response(body_too_large(current_app.config["MAX_CONTENT_LENGTH"]))
    cls = HTTP_ERRORS.get(error.code or 500, ApiError)
    message = cls.message if cls is not ApiError else (error.name or "Error")
    api_error = cls(message)
    if error.code == 405 and error.valid_methods:
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
    secrets = _secrets()
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


def _configure_logging(app: Flask) -> None:
    for logger in (access_log, error_log):
        logs.to_stderr(logger, _LineHandler)


def init_app(app: Flask) -> None:
    """Install request ids, request logging and error rendering."""
    _configure_logging(app)
    app.request_class = Request
    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(HTTPException, _handle_http_error)
    app.register_error_handler(WriteTimeout, _handle_busy)
    app.register_error_handler(Exception, _handle_unexpected)
