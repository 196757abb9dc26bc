"""Oversized and malformed requests get clear 4xx answers in each variant's format."""
from __future__ import annotations

from typing import Any

import pytest

from notifications.core.validation import MAX_JSON_DEPTH, json_depth

MIB = 1024 * 1024
MARK_READ = "/api/v1/org/notifications/mark-read"


def test_body_over_one_mib_is_413_in_the_variants_format(client: Any, auth: Any) -> None:
    big = b'{"ids": ["' + b"x" * (MIB + 10) + b'"]}'
    org = client.post(MARK_READ, data=big, content_type="application/json",
                      headers=auth.headers("alice", "acme"))
    assert org.status_code == 413
    assert org.get_json()["code"] == "payload_too_large"
    assert org.get_json()["message"] == "Request body is too large"
    assert org.get_json()["details"] == {"limit": MIB}
    assert org.get_json()["hint"] == f"Send at most {MIB} bytes."
    assert org.get_json()["request_id"] == org.headers["X-Request-Id"]


def test_credentials_are_checked_before_the_body_size(client: Any) -> None:
    big = b" " * (MIB + 1)
    response = client.post(MARK_READ, data=big, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


def test_endpoints_without_a_body_ignore_one(client: Any, auth: Any) -> None:
    response = client.post("/api/v1/notifications/read-all", data=b" " * (MIB + 1),
                           headers=auth.headers("alice"))
    assert response.status_code == 200


def test_body_just_under_the_limit_is_read(client: Any, auth: Any) -> None:
    ids = ["ntf_" + "0" * 32] * 1000
    response = client.post(MARK_READ, json={"ids": ids, "pad": "x" * (MIB - 50_000)},
                           headers=auth.headers("alice", "acme"))
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/notifications", "/api/v1/org/notifications"])
def test_query_string_over_8_kib_is_414(client: Any, auth: Any, path: str) -> None:
    response = client.get(f"{path}?limit=5&pad={'a' * 8200}", headers=auth.headers("alice", "acme"))
    assert response.status_code == 414
    body = response.get_json()
    if "org" in path:
        assert body["code"] == "uri_too_long" and body["request_id"]
    else:
        assert body == {"detail": "The query string is longer than 8192 bytes"}


def test_query_string_of_8_kib_is_fine(client: Any, auth: Any) -> None:
    query = "limit=5&pad=" + "a" * (8192 - len("limit=5&pad="))
    response = client.get(f"/api/v1/notifications?{query}", headers=auth.headers())
    assert response.status_code == 200


def test_mark_read_refuses_more_than_1000_ids(client: Any, auth: Any) -> None:
    response = client.post(MARK_READ, json={"ids": ["ntf_x"] * 1001},
                           headers=auth.headers("alice", "acme"))
    assert response.status_code == 422
    errors = response.get_json()["details"]["errors"]
    assert errors == [{"loc": ["body", "ids"], "msg": "must contain at most 1000 items"}]


@pytest.mark.parametrize("body", [
    b'{"ids": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b"[" * 100_000,
    b'{"a": ' * 3000 + b"1" + b"}" * 3000,
    b'{"ids": [], "x": ' + b'{"y": ' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 2),
])
def test_deeply_nested_json_is_422_not_500(client: Any, auth: Any, body: bytes) -> None:
    response = client.post(MARK_READ, data=body, content_type="application/json",
                           headers=auth.headers("alice", "acme"))
    assert response.status_code == 422
    assert response.get_json()["details"]["errors"] == [{"loc": ["body"],
                                                         "msg": "must be valid JSON"}]


def test_nesting_up_to_the_bound_is_accepted(client: Any, auth: Any) -> None:
    nested = b'{"y": ' * (MAX_JSON_DEPTH - 1) + b"1" + b"}" * (MAX_JSON_DEPTH - 1)
    response = client.post(MARK_READ, data=b'{"ids": [], "x": ' + nested + b"}",
                           content_type="application/json", headers=auth.headers("alice", "acme"))
    assert response.status_code == 200


def test_huge_integer_is_422_not_500(client: Any, auth: Any) -> None:
    response = client.post(MARK_READ, data=b'{"ids": ' + b"9" * 5000 + b"}",
                           content_type="application/json", headers=auth.headers("alice", "acme"))
    assert response.status_code == 422


@pytest.mark.parametrize(("text", "depth"), [
    (b"{}", 1), (b"[[], [[]]]", 3), (b'"[[[[["', 0), (b'{"a": "\\"[[["}', 1),
    (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH + 1),
])
def test_json_depth(text: bytes, depth: int) -> None:
    found = json_depth(text)
    if depth <= MAX_JSON_DEPTH:
        assert found <= MAX_JSON_DEPTH
        if text.count(b"[") + text.count(b"{") > MAX_JSON_DEPTH:
            assert found == depth
    else:
        assert found > MAX_JSON_DEPTH


def test_ingest_refuses_deep_nesting_with_422(app_config: dict[str, Any]) -> None:
    from notifications import create_app

    client = create_app({**app_config, "INGEST_TOKEN": "ingest-token-0123456789"}).test_client()
    deep = b'{"a": ' * (MAX_JSON_DEPTH + 5) + b"1" + b"}" * (MAX_JSON_DEPTH + 5)
    response = client.post("/internal/v1/notifications",
                           data=b'{"user_id": "alice", "metadata": ' + deep + b"}",
                           headers={"Authorization": "Bearer ingest-token-0123456789"},
                           content_type="application/json")
    assert response.status_code == 422
    assert "nested deeper than" in response.get_json()["detail"][0]["msg"]
