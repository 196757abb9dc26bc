"""Request ids and the request log: one line per request, with secrets redacted."""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, current_app, g, request

from notifications.core import logs
from notifications.core.errors import HeadersTooLarge
from notifications.http import limits

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
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


def _start_request() -> None:
    g.started = time.perf_counter()
    # First, so that neither the request id nor any view looks at an oversized header.
    try:
        limits.check_headers(request.headers)
    except HeadersTooLarge:
        g.request_id = uuid.uuid4().hex
        raise
    incoming = request.headers.get("X-Request-Id", "")
    # A token pasted into X-Request-Id would be echoed and logged: never accept one.
    valid = _REQUEST_ID.fullmatch(incoming) and not _JWT_LIKE.search(incoming)
    g.request_id = incoming if valid else uuid.uuid4().hex
    # Checked here, before any view, so every endpoint answers in its variant's format.
    limits.check_url()


def request_id() -> str:
    """Return this request's id (echoed from a valid ``X-Request-Id`` or generated)."""
    return g.get("request_id") or uuid.uuid4().hex


#: Settings whose values are secrets: never written to a log, whatever their length.
SECRET_SETTINGS = ("JWT_SECRET", "INGEST_TOKEN")


def secrets_to_redact() -> list[str]:
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
    return quote(redact(path, secrets)[:limits.MAX_PATH_LENGTH], safe="/[]:@!$&'()*+,;=")


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
                                            (), None))


class _LineHandler(logging.StreamHandler):
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
    if (len(path) <= limits.MAX_PATH_LENGTH and _PLAIN_PATH.fullmatch(path)
            and not _KEY_LIKE.search(path)
            and not any(secret and secret in path for secret in secrets)):
        return path
    return safe_path(path, secrets)


def _finish_request(response: Response) -> Response:
    rid = request_id()
    response.headers["X-Request-Id"] = rid
    secrets = secrets_to_redact()
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


def _configure_logging(app: Flask) -> None:
    for logger in (access_log, error_log):
        logs.to_stderr(logger, _LineHandler)


def init_app(app: Flask) -> None:
    """Install request ids, the request bounds and the request log."""
    _configure_logging(app)
    app.request_class = limits.Request
    app.before_request(_start_request)
    app.after_request(_finish_request)
