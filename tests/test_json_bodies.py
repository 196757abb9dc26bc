"""List bodies written through orjson are byte for byte what Flask's own encoder writes."""
from __future__ import annotations

import json
from typing import Any

import pytest

from notifications.core.serialize import Body, _decode, encode_body

METADATA = [
    '{}', '{"a":1,"b":[true,false,null],"c":{"d":"e"}}', '{"f":1e16,"g":0.1,"h":1e-7,"i":-0.0}',
    '{"n":NaN,"p":Infinity,"m":-Infinity}', '{"big":123456789012345678901234567890}',
    '{"u":"\\u00fc\\ud83d\\ude00"}', '{ "spaced" : 1.50 , "a" : [ 1 , 2 ] }',
    '{"x":1.7976931348623157e308}',
]
TEXTS = ["plain", "".join(chr(i) for i in range(128)), "Glace à la crème", "emoji 😀", "\u2028"]


def flask_bytes(app: Any, body: Any) -> bytes:
    with app.app_context():
        # Flask's own provider, as the service used it before: compact, ASCII, unsorted.
        return (json.dumps(body, separators=(",", ":"), ensure_ascii=True, sort_keys=False)
                + "\n").encode()


@pytest.mark.parametrize("metadata", METADATA)
@pytest.mark.parametrize("text", TEXTS)
def test_same_bytes_as_flask(app: Any, metadata: str, text: str) -> None:
    body = Body(items=[{"title": text, "metadata": _decode(metadata), "n": 2**40, "none": None}],
                total=1, has_more=False)
    with app.app_context():
        served = app.json.response(body).get_data()
    assert served == flask_bytes(app, body)
    fast = encode_body(body)
    if fast is not None:
        assert fast + b"\n" == served


def test_ascii_bodies_take_the_fast_path() -> None:
    body = Body(items=[{"title": "plain", "metadata": _decode(METADATA[2])}], total=1)
    assert encode_body(body) == json.dumps(body, separators=(",", ":")).encode()


def test_other_bodies_are_left_to_flask(app: Any) -> None:
    with app.app_context():
        assert app.json.response({"f": 1e16}).get_data() == b'{"f":1e+16}\n'
