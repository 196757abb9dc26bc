"""Bounds on what a request may send: header fields, path and query length, body size and time.

Each is checked before any view runs, or as the view reads the body, and answered in the
variant's own error format.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import flask
from flask import current_app, request

from notifications.core.errors import HeadersTooLarge, PayloadTooLarge, RequestTimeout, UriTooLong

#: Longest query string (and path) accepted, in bytes; longer requests get 414.
MAX_QUERY_LENGTH = 8192
MAX_PATH_LENGTH = 8192
#: Longest header field (name, ": " and value) and most header fields the service answers
#: with 431 in the variant's format. gunicorn's own caps (:mod:`server`) sit above these,
#: so that requests between the two reach the service instead of gunicorn's HTML page.
MAX_HEADER_FIELD = 8192
MAX_HEADER_FIELDS = 100


def check_headers(headers: Any) -> None:
    """Refuse more than :data:`MAX_HEADER_FIELDS` fields or one over
    :data:`MAX_HEADER_FIELD` bytes."""
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


def check_url() -> None:
    """Refuse a query string or a path over its bound (414)."""
    if len(request.query_string) > MAX_QUERY_LENGTH:
        raise UriTooLong(f"The query string is longer than {MAX_QUERY_LENGTH} bytes")
    if len(request.path) > MAX_PATH_LENGTH:
        raise UriTooLong(f"The path is longer than {MAX_PATH_LENGTH} bytes")


class Request(flask.Request):
    """Flask's request, refusing (rather than truncating) a body without a length."""

    def get_data(self, cache: bool = True, as_text: bool = False,
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
