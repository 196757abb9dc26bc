"""Against a real ``notifications serve``: fuzzing, request logs, CORS and limits."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import DATASET, SECRET

pytestmark = pytest.mark.both_databases

INGEST_TOKEN = "ingest-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
ORIGIN = "http://localhost:5173"
#: Examples per operation and phase: enough to reach every parameter's bounds and a few
#: random mixes, few enough that the whole run takes seconds.
FUZZ_EXAMPLES = 25
FUZZ_SEED = 20260401


def schemathesis(server: Any, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the schemathesis CLI against ``server`` with every check enabled."""
    return subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", server.url("/openapi.json"),
         "--checks", "all", "--max-examples", str(FUZZ_EXAMPLES), "--seed", str(FUZZ_SEED),
         "--generation-database", "none", "--request-timeout", "10",
         # One worker: hypothesis's concurrent ast.parse can fail on CPython 3.11
         # ("AST constructor recursion depth mismatch"), an error of the tool, not the API.
         "--workers", "1",
         "--no-color", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def test_fuzzing_finds_no_server_error_and_no_answer_outside_the_document(
    live_server: Any, tmp_path: Path,
) -> None:
    server = live_server(workers=2, env={"NOTIFICATIONS_INGEST_TOKEN": INGEST_TOKEN})
    for _ in range(3):
        server.cli("send", "--user", "alice", "--org", "acme", "--dataset", DATASET,
                   "--title", "t", "--metadata", '{"is_alert": true}')
    document = requests.get(server.url("/openapi.json"), timeout=5).json()
    token = server.auth.token("alice", "acme")

    user_api = schemathesis(
        server, tmp_path, "-H", f"Authorization: Bearer {token}",
        # Streams never end, so a request/response fuzzer cannot judge them.
        "--exclude-path-regex", "/stream$|^/internal/",
        "--exclude-operation-id", "v2_list_inbox",
    )
    assert user_api.returncode == 0, user_api.stdout[-6000:] + user_api.stderr[-2000:]
    assert re.search(r"\d+ passed", user_api.stdout)
    # Version 2's list with every check but one: a cursor is opaque and checked (422 when
    # it is not one this service handed out), which no schema can say, so a made-up
    # cursor of the right shape is refused on purpose.
    v2_list = schemathesis(
        server, tmp_path, "-H", f"Authorization: Bearer {token}",
        "--include-operation-id", "v2_list_inbox",
        "--exclude-checks", "positive_data_acceptance",
        # Its one link leads out of this run's selection: nothing stateful to run alone.
        "--phases", "examples,coverage,fuzzing",
    )
    assert v2_list.returncode == 0, v2_list.stdout[-6000:] + v2_list.stderr[-2000:]
    assert re.search(r"\d+ passed", v2_list.stdout)

    if "/internal/v1/notifications" in document["paths"]:
        ingest = schemathesis(
            server, tmp_path, "-H", f"Authorization: Bearer {INGEST_TOKEN}",
            "--include-path", "/internal/v1/notifications",
            # No links lead out of the ingest API, so there is no stateful phase to run.
            "--phases", "examples,coverage,fuzzing",
        )
        assert ingest.returncode == 0, ingest.stdout[-6000:] + ingest.stderr[-2000:]

    log = server.log()
    assert " 500 " not in log and "unhandled error" not in log, log[-4000:]
    assert "Traceback" not in log, log[-4000:]


@pytest.fixture
def logged_server(live_server: Any) -> Any:
    return live_server(workers=1, env={"NOTIFICATIONS_INGEST_TOKEN": INGEST_TOKEN,
                                       "NOTIFICATIONS_CORS_ORIGINS": ORIGIN})


def _tampered(token: str) -> str:
    head, payload, signature = token.split(".")
    return f"{head}.{payload}.{signature[::-1]}"


def test_logs_and_error_bodies_never_hold_credentials(logged_server: Any) -> None:
    server = logged_server
    token = server.auth.token("alice", "acme")
    cookie_token = server.auth.token("carol", "acme")
    bad_token = _tampered(server.auth.token("mallory", "acme"))
    wrong_ingest = "wrong-ingest-secret-abcdefghijklmnopqrstuvwxyz-0123"
    base = server.url("")
    calls = [
        ("GET", "/api/v1/notifications", {"headers": {"Authorization": f"Bearer {token}"}}),
        ("GET", "/api/v1/org/notifications", {"cookies": {"session": cookie_token}}),
        ("GET", "/api/v1/notifications", {"headers": {"Authorization": f"Bearer {bad_token}"}}),
        ("GET", "/api/v1/org/notifications", {"cookies": {"session": bad_token}}),
        ("GET", "/api/v1/org/notifications", {"headers": {"Authorization": f"Token {token}"}}),
        ("GET", f"/api/v1/notifications?access_token={token}&limit=1", {}),
        ("GET", f"/api/v1/notifications?limit=1&x={bad_token}",
         {"headers": {"Authorization": f"Bearer {token}"}}),
        ("POST", f"/api/v1/notifications/{token}/read", {}),
        ("GET", "/api/v1/notifications", {"headers": {"Authorization": f"Bearer {token}",
                                                      "X-Request-Id": token[:120]}}),
        ("POST", "/internal/v1/notifications", {
            "headers": {"Authorization": f"Bearer {INGEST_TOKEN}"},
            "json": {"user_id": "alice", "title": "from ingest"}}),
        ("POST", "/internal/v1/notifications", {
            "headers": {"Authorization": f"Bearer {wrong_ingest}"},
            "json": {"user_id": "alice"}}),
        ("POST", f"/internal/v1/notifications?token={INGEST_TOKEN}", {"json": {"user_id": "a"}}),
    ]
    bodies, request_ids = [], []
    for method, path, kwargs in calls:
        response = requests.request(method, base + path, timeout=10, **kwargs)
        assert response.status_code < 500, (path, response.text)
        bodies.append(response.text)
        request_ids.append(response.headers["X-Request-Id"])
    assert request_ids[8] != token[:120]  # a token-like request id is replaced

    time.sleep(0.3)
    log = server.log()
    secrets = {
        "token": token, "cookie token": cookie_token, "bad token": bad_token,
        "ingest token": INGEST_TOKEN, "wrong ingest token": wrong_ingest, "JWT secret": SECRET,
    }
    for name, secret in secrets.items():
        pieces = [secret, *[p for p in secret.split(".") if len(p) >= 20]]
        for piece in pieces:
            assert piece not in log, f"{name} found in the server log"
            for index, body in enumerate(bodies[:7] + bodies[8:]):
                # Call 7 puts the token in the path on purpose; the 422 echoes its input.
                assert piece not in body, f"{name} found in the error body of call {index}"

    lines = [line for line in log.splitlines() if "request_id=" in line]
    for (method, path, _), request_id in zip(calls, request_ids, strict=True):
        matching = [line for line in lines if f"request_id={request_id}" in line]
        assert len(matching) == 1, (request_id, lines)
        assert f" {method} {path.split('?')[0].split('/eyJ')[0]}" in matching[0]
    first = next(line for line in lines if f"request_id={request_ids[0]}" in line)
    assert re.search(r" GET /api/v1/notifications 200 \d+\.\dms user=alice request_id=", first)
    assert "user=carol" in next(line for line in lines if request_ids[1] in line)
    assert " 401 " in next(line for line in lines if request_ids[2] in line)


def test_json_request_logs(live_server: Any) -> None:
    server = live_server(workers=1, env={"NOTIFICATIONS_LOG_FORMAT": "json"})
    token = server.auth.token("alice", "acme")
    ok = requests.get(server.url("/api/v1/org/notifications?limit=3&unread_only=true"),
                      headers={"Authorization": f"Bearer {token}"}, timeout=5)
    bad = requests.get(server.url(f"/api/v1/notifications?limit=0&token={token}"), timeout=5)
    time.sleep(0.3)
    records = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    by_id = {r.get("request_id"): r for r in records}
    first = by_id[ok.headers["X-Request-Id"]]
    assert first["method"] == "GET" and first["path"] == "/api/v1/org/notifications"
    assert first["query"] == "limit=3&unread_only=true"
    assert first["status"] == 200 and first["user_id"] == "alice"
    assert isinstance(first["duration_ms"], float) and first["time"].endswith("Z")
    second = by_id[bad.headers["X-Request-Id"]]
    assert second["status"] == 401 and second["user_id"] is None
    assert second["query"] == "limit=0&token=[redacted]"
    assert token not in server.log()


def test_browser_on_an_allowed_origin_lists_with_the_session_cookie(logged_server: Any) -> None:
    server = logged_server
    server.cli("send", "--user", "alice", "--org", "acme", "--title", "hello")
    cookies = {"session": server.auth.token("alice", "acme")}
    preflight = requests.options(server.url("/api/v1/org/notifications/mark-read"), headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"}, timeout=5)
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    response = requests.get(server.url("/api/v1/org/notifications"), cookies=cookies,
                            headers={"Origin": ORIGIN}, timeout=5)
    assert response.status_code == 200
    assert response.json()["items"][0]["title"] == "hello"
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    other = requests.get(server.url("/api/v1/org/notifications"), cookies=cookies,
                         headers={"Origin": "http://evil.example"}, timeout=5)
    assert "Access-Control-Allow-Origin" not in other.headers


def test_oversized_requests_through_gunicorn(logged_server: Any) -> None:
    server = logged_server
    headers = {"Authorization": f"Bearer {server.auth.token('alice', 'acme')}"}
    long_query = requests.get(server.url("/api/v1/notifications?pad=" + "a" * 9000),
                              headers=headers, timeout=5)
    assert long_query.status_code == 414
    assert long_query.json() == {"detail": "The query string is longer than 8192 bytes"}
    org_query = requests.get(server.url("/api/v1/org/notifications?pad=" + "a" * 9000),
                             headers=headers, timeout=5)
    assert org_query.status_code == 414 and org_query.json()["code"] == "uri_too_long"

    def chunks() -> Any:
        for _ in range(80):
            yield b" " * 16384  # 1.25 MiB without a Content-Length

    chunked = requests.post(server.url("/api/v1/org/notifications/mark-read"), data=chunks(),
                            headers={**headers, "Content-Type": "application/json"}, timeout=10)
    assert chunked.status_code == 413
    assert chunked.json()["code"] == "payload_too_large"
    sized = requests.post(server.url("/api/v1/org/notifications/mark-read"),
                          data=b" " * (1024 * 1024 + 1), headers=headers, timeout=10)
    assert sized.status_code == 413
    nested = requests.post(server.url("/api/v1/org/notifications/mark-read"),
                           data=b"[" * 50_000, headers=headers, timeout=10)
    assert nested.status_code == 422
    assert " 500 " not in server.log()


def test_streams_answer_as_described_cross_origin(logged_server: Any) -> None:
    """A page on an allowed origin opens both streams with the cookie; errors match the document."""
    server = logged_server
    document = requests.get(server.url("/openapi.json"), timeout=5).json()
    for path in ("/api/v1/notifications/stream", "/api/v1/org/notifications/stream"):
        content = document["paths"][path]["get"]["responses"]["200"]["content"]
        assert list(content) == ["text/event-stream"]
    cookies = {"session": server.auth.token("alice", "acme")}
    preflight = requests.options(server.url("/api/v1/notifications/stream"), headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "last-event-id"}, timeout=5)
    assert preflight.status_code == 204
    assert "Last-Event-ID" in preflight.headers["Access-Control-Allow-Headers"]
    for path, first in (("/api/v1/org/notifications/stream", "event: unread"),
                        ("/api/v1/notifications/stream", "retry:")):
        with requests.get(server.url(path), cookies=cookies, stream=True, timeout=10,
                          headers={"Origin": ORIGIN, "Accept": "text/event-stream"}) as stream:
            assert stream.status_code == 200
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            assert stream.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert stream.headers["Access-Control-Allow-Credentials"] == "true"
            assert stream.headers["X-Request-Id"]
            line = next(stream.iter_lines(decode_unicode=True))
            assert line.startswith(first), line
            request_id = stream.headers["X-Request-Id"]
    bad = requests.get(server.url("/api/v1/notifications/stream?dataset_id=nope"),
                       cookies=cookies, timeout=5)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "dataset_id"]
    forbidden = requests.get(server.url("/api/v1/org/notifications/stream"), timeout=5,
                             cookies={"session": server.auth.token("alice")})
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"
    # A stream's log line is written when it closes, with the user and the request id.
    deadline = time.monotonic() + 5
    while f"request_id={request_id}" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next(x for x in server.log().splitlines() if f"request_id={request_id}" in x)
    assert " GET /api/v1/notifications/stream 200 " in line and "user=alice" in line
