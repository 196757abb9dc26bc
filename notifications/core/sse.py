"""Server-Sent Events framing (pure: strings in, wire text out)."""
from __future__ import annotations

import re

#: Line breaks the SSE grammar recognises inside a field value.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _field_value(name: str, value: str) -> str:
    if _LINE_BREAK.search(value):
        raise ValueError(f"an SSE {name} cannot contain a line break: {value!r}")
    return value


def event(data: str = "", name: str | None = None, id: int | str | None = None) -> str:
    """Frame one event; multi-line data becomes one ``data:`` line per line."""
    lines = []
    if id is not None:
        lines.append(f"id: {_field_value('id', str(id))}")
    if name is not None:
        lines.append(f"event: {_field_value('event name', name)}")
    for line in _LINE_BREAK.split(data):
        # An empty line is sent as a bare "data:", which clients that split on "data: "
        # skip, and which still dispatches the event in a browser.
        lines.append(f"data: {line}" if line else "data:")
    return "\n".join(lines) + "\n\n"


def comment(text: str = "") -> str:
    """Frame a comment (ignored by clients; keeps proxies from closing an idle stream)."""
    return "".join(f": {line}\n" if line else ":\n" for line in _LINE_BREAK.split(text)) + "\n"


def retry(milliseconds: int) -> str:
    """Frame a reconnection-delay hint."""
    if milliseconds < 0:
        raise ValueError("retry must be a non-negative number of milliseconds")
    return f"retry: {int(milliseconds)}\n\n"


def last_id(value: int | str) -> str:
    """Frame a bare ``id:`` that moves the client's Last-Event-ID without an event."""
    return f"id: {_field_value('id', str(value))}\n\n"
