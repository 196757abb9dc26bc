"""Request log lines: redaction and escaping (pure helpers) and one line per request."""
from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from werkzeug.datastructures import MultiDict

from notifications.http import request_log as web

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9."
       "c2lnbmF0dXJlLXRoYXQtaXMtbG9uZy1lbm91Z2g")
UUID = "e94ab07e-c0fe-4db1-83d0-34ea0fd8ee57"


@pytest.mark.parametrize(("path", "logged"), [
    (f"/api/v1/notifications/{UUID}/read", f"/api/v1/notifications/{UUID}/read"),
    (f"/api/v1/notifications/{JWT}/read", "/api/v1/notifications/[redacted]/read"),
    ("/api/v1/notifications/ntf_5f0c6a1e2b7d4c0e9a3b8d1f2e4c6a7b", None),
    ("/a\nb c", "/a%0Ab%20c"),
    ("/x/" + "k" * 60, "/x/[redacted]"),
])
def test_safe_path(path: str, logged: str | None) -> None:
    assert web.safe_path(path, []) == (logged or path)


def test_safe_path_removes_the_requests_own_credentials() -> None:
    assert web.safe_path("/api/v1/s3cr3t-value/read", ["s3cr3t-value"]) == "/api/v1/[redacted]/read"


@pytest.mark.parametrize(("args", "logged"), [
    ({"limit": "10", "unread_only": "True"}, "limit=10&unread_only=True"),
    ({"dataset_id": UUID}, f"dataset_id={UUID}"),
    ({"access_token": "short"}, "access_token=[redacted]"),
    ({"api_key": "abc", "Session": "x"}, "api_key=[redacted]&Session=[redacted]"),
    ({"q": JWT}, "q=[redacted]"),
    ({"q": f"a {JWT[:40]}"}, "q=a%20[redacted]"),
    ({"a\nb": "1\r\n2"}, "a%0Ab=1%0D%0A2"),
])
def test_safe_query(args: dict[str, str], logged: str) -> None:
    assert web.safe_query(MultiDict(args), []) == logged


def test_safe_query_is_capped() -> None:
    assert len(web.safe_query(MultiDict({"q": "a b" * 1000}), [])) <= 515


@pytest.fixture
def log_lines() -> Any:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect()
    web.access_log.addHandler(handler)
    yield lines
    web.access_log.removeHandler(handler)


def test_one_text_line_per_request(client: Any, auth: Any, log_lines: list[str]) -> None:
    response = client.get("/api/v1/notifications?limit=3", headers=auth.headers("alice"))
    client.get("/api/v1/notifications")
    assert len(log_lines) == 2
    request_id = response.headers["X-Request-Id"]
    assert log_lines[0].endswith(f" GET /api/v1/notifications?limit=3 200 "
                                 f"{log_lines[0].split(' ')[4]} user=alice request_id={request_id}")
    assert " 401 " in log_lines[1] and "user=- " in log_lines[1]


def test_user_ids_cannot_forge_lines(client: Any, auth: Any, log_lines: list[str]) -> None:
    client.get("/api/v1/notifications", headers=auth.headers("eve\n2026 GET / 200 user=root"))
    assert len(log_lines) == 1 and "\n" not in log_lines[0]
    assert 'user="eve\\n2026 GET / 200 user=root"' in log_lines[0]


def test_json_format(app_config: dict[str, Any], auth: Any, log_lines: list[str]) -> None:
    from notifications import create_app

    client = create_app({**app_config, "LOG_FORMAT": "json"}).test_client()
    response = client.post(f"/api/v1/notifications/{UUID}/read", headers=auth.headers("bob"),
                           query_string={"token": "abc"})
    record = json.loads(log_lines[-1])
    assert record == {**record, "method": "POST", "path": f"/api/v1/notifications/{UUID}/read",
                      "query": "token=[redacted]", "status": 404, "user_id": "bob",
                      "request_id": response.headers["X-Request-Id"]}
    assert set(record) == {"time", "method", "path", "query", "status", "duration_ms",
                           "user_id", "request_id", "remote_addr"}


def test_request_id_is_echoed_unless_token_like(client: Any) -> None:
    assert client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers[
        "X-Request-Id"] == "abc-123"
    assert client.get("/healthz", headers={"X-Request-Id": JWT[:100]}).headers[
        "X-Request-Id"] != JWT[:100]
    assert client.get("/healthz", headers={"X-Request-Id": "a b"}).headers["X-Request-Id"] != "a b"


@pytest.mark.parametrize("setting, secret", [
    ("JWT_SECRET", "hunter2-jwt"),
    ("JWT_SECRET", "xyz"),
    ("INGEST_TOKEN", "tok"),
    ("INGEST_TOKEN", "a-short-ingest-token"),
])
def test_configured_secrets_never_reach_the_log(app_config: dict[str, Any], log_lines: list[str],
                                                setting: str, secret: str) -> None:
    from notifications import create_app

    client = create_app({**app_config, setting: secret}).test_client()
    client.get(f"/api/v1/notifications/{secret}/x", query_string={"q": f"({secret})"})
    client.get("/healthz", query_string={"q": secret, secret: "1"})
    assert len(log_lines) == 2
    assert all(secret not in line for line in log_lines), log_lines
    assert "q=%28[redacted]%29" in log_lines[0]
