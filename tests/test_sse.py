"""SSE framing: the pure wire format of both streams."""
from __future__ import annotations

import json

import pytest

from notifications.core import sse


def parse(text: str) -> list[dict[str, str]]:
    """Parse wire text the way a browser's EventSource does (enough for these tests)."""
    events, fields, data = [], {}, []
    for line in text.split("\n"):
        if line == "":
            if fields or data:
                events.append({**fields, "data": "\n".join(data)})
            fields, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        else:
            fields[name] = value
    return events


def test_event_with_name_id_and_json() -> None:
    text = sse.event(json.dumps({"a": 1}), name="notification", id=1042)
    assert text == 'id: 1042\nevent: notification\ndata: {"a": 1}\n\n'
    assert parse(text) == [{"id": "1042", "event": "notification", "data": '{"a": 1}'}]


def test_multi_line_data_becomes_several_data_lines() -> None:
    text = sse.event("one\ntwo\r\nthree\rfour")
    assert text == "data: one\ndata: two\ndata: three\ndata: four\n\n"
    assert parse(text)[0]["data"] == "one\ntwo\nthree\nfour"


def test_empty_data_is_a_bare_data_line() -> None:
    assert sse.event("", name="ping") == "event: ping\ndata:\n\n"
    assert sse.event("a\n\nb") == "data: a\ndata:\ndata: b\n\n"


def test_ids_and_names_cannot_break_the_frame() -> None:
    with pytest.raises(ValueError):
        sse.event("x", id="1\n2")
    with pytest.raises(ValueError):
        sse.event("x", name="evil\ndata: injected")


def test_comment_retry_and_bare_id() -> None:
    assert sse.comment("keep-alive") == ": keep-alive\n\n"
    assert sse.comment("a\nb") == ": a\n: b\n\n"
    assert sse.retry(3000) == "retry: 3000\n\n"
    assert sse.last_id(7) == "id: 7\n\n"
    assert parse(sse.comment("keep-alive") + sse.retry(5)) == [{"retry": "5", "data": ""}]
    with pytest.raises(ValueError):
        sse.retry(-1)


def test_documented_python_client_skips_pings() -> None:
    """The client reads `data: ...` lines, skipping exactly `data:`; pings must not break it."""
    wire = sse.event("", name="ping") + sse.event(json.dumps({"metadata": {"is_alert": True}}),
                                                  name="notification", id=1)
    payloads = [json.loads(line[6:]) for line in wire.splitlines()
                if line.startswith("data: ") and line != "data:"]
    assert payloads == [{"metadata": {"is_alert": True}}]
