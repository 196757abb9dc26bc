"""End to end over HTTP against a real ``notifications serve`` (gunicorn + gevent workers)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import (
    DATASET,
    OTHER_DATASET,
    SECRET,
    Auth,
    LiveServer,
    free_port,
    notifications_command,
    stop_group,
    wait_healthy,
)

ROOT = Path(__file__).resolve().parents[1]
ENVELOPE = ["code", "message", "detail", "hint", "details", "request_id"]
MONITOR = {"view_name": "icecream", "dataset_name": "Ice cream", "result_count": 3,
           "batch_id": "a863a595-5aaf-45d3-89a9-073a73d59671", "is_alert": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server with two workers for the whole module (starting one takes a while)."""
    live = LiveServer(tmp_path_factory.mktemp("live"), workers=2)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def token(server: LiveServer, user: str, org: str | None = None) -> str:
    args = ["token", "--user", user] + (["--org", org] if org else [])
    return server.cli(*args).stdout.strip()


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def send(server: LiveServer, *args: str) -> list[dict[str, Any]]:
    output = server.cli("send", *args).stdout
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_two_gevent_workers(server: LiveServer) -> None:
    deadline = time.monotonic() + 20
    while server.log().count("Booting worker") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    log = server.log()
    assert log.count("Booting worker") == 2
    assert "gevent" in log.lower()


def test_healthz(server: LiveServer, http: requests.Session) -> None:
    response = http.get(server.url("/healthz"))
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_dataset_variant_end_to_end(server: LiveServer, http: requests.Session) -> None:
    user = f"dataset-{uuid.uuid4().hex[:8]}"
    headers = bearer(token(server, user))
    api = server.url("/api/v1/notifications")

    assert http.get(api, headers=headers).json() == {"notifications": [], "total": 0,
                                                     "has_more": False}
    sent = send(server, "--user", user, "--dataset", DATASET, "--entity-type", "saved_view",
                "--entity-id", str(uuid.uuid4()), "--metadata", json.dumps(MONITOR))
    sent += send(server, "--user", user, "--dataset", DATASET, "--entity-type", "saved_view",
                 "--metadata", json.dumps(MONITOR))
    sent += send(server, "--user", user, "--dataset", OTHER_DATASET, "--title", "other")
    other_user = send(server, "--user", f"{user}-other", "--dataset", DATASET)[0]

    listing = http.get(api, headers=headers)
    assert listing.status_code == 200
    assert listing.headers["Content-Type"].startswith("application/json")
    body = listing.json()
    assert body["total"] == 3 and body["has_more"] is False
    assert [n["id"] for n in body["notifications"]] == [s["id"] for s in reversed(sent)]
    first = body["notifications"][-1]
    assert first["metadata"] == MONITOR and first["dataset_id"] == DATASET
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", first["created_at"])

    page = http.get(api, headers=headers, params={"limit": 2, "offset": 0}).json()
    assert len(page["notifications"]) == 2 and page["has_more"] is True and page["total"] == 3
    beyond = http.get(api, headers=headers, params={"offset": 10}).json()
    assert beyond == {"notifications": [], "total": 3, "has_more": False}

    # The documented Python client, unchanged.
    count = http.get(api + "/unread-count", headers=headers,
                     params={"dataset_id": DATASET}).json()["count"]
    assert count == 2
    alerts = http.get(api, headers=headers,
                      params={"dataset_id": DATASET, "limit": 10, "unread_only": True}).json()
    assert alerts["total"] == 2 and all(n["metadata"]["is_alert"] for n in alerts["notifications"])

    # Mark one read; a second time, an unknown id and another user's id are 404.
    one = http.post(f"{api}/{sent[0]['id']}/read", headers=headers)
    assert one.status_code == 200 and one.json() == {"ok": True}
    for target in (sent[0]["id"], str(uuid.uuid4()), other_user["id"]):
        missing = http.post(f"{api}/{target}/read", headers=headers)
        assert missing.status_code == 404 and missing.json() == {"detail": "Notification not found"}
    bad_id = http.post(f"{api}/not-a-uuid/read", headers=headers)
    assert bad_id.status_code == 422 and bad_id.json()["detail"][0]["loc"] == [
        "path", "notification_id"]
    assert http.get(api + "/unread-count", headers=headers).json() == {"count": 2}

    # Read-all for one dataset, then everything.
    done = http.post(api + "/read-all", headers=headers, params={"dataset_id": DATASET})
    assert done.json() == {"ok": True, "count": 1}
    assert http.post(api + "/read-all", headers=headers).json() == {"ok": True, "count": 1}
    assert http.post(api + "/read-all", headers=headers).json() == {"ok": True, "count": 0}
    assert http.get(api, headers=headers, params={"unread_only": "True"}).json()["total"] == 0
    other_headers = bearer(token(server, f"{user}-other"))
    assert http.get(api + "/unread-count", headers=other_headers).json() == {"count": 1}


@pytest.mark.parametrize(
    ("query", "loc"),
    [("limit=0", "limit"), ("limit=101", "limit"), ("limit=abc", "limit"),
     ("offset=-1", "offset"), ("offset=abc", "offset"), ("unread_only=maybe", "unread_only"),
     ("dataset_id=not-a-uuid", "dataset_id")],
)
def test_dataset_validation_over_http(server: LiveServer, http: requests.Session, query: str,
                                      loc: str) -> None:
    response = http.get(server.url(f"/api/v1/notifications?{query}"),
                        headers=server.headers("v"))
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["query", loc] and set(detail[0]) >= {"type", "loc", "msg"}


def test_dataset_auth_over_http(server: LiveServer, http: requests.Session) -> None:
    api = server.url("/api/v1/notifications")
    user = f"cookie-{uuid.uuid4().hex[:8]}"
    send(server, "--user", user)
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic eA=="},
                    server.headers(user, exp=int(time.time()) - 3600)):
        response = http.get(api, headers=headers)
        assert response.status_code == 401 and set(response.json()) == {"detail"}
    # A browser's EventSource sends the session cookie instead of a header.
    response = requests.get(api, cookies={"session": token(server, user)})
    assert response.status_code == 200 and response.json()["total"] == 1


def test_organization_variant_end_to_end(server: LiveServer, http: requests.Session) -> None:
    user = f"org-{uuid.uuid4().hex[:8]}"
    api = server.url("/api/v1/org/notifications")
    acme, globex = bearer(token(server, user, "acme")), bearer(token(server, user, "globex"))
    rows = [send(server, "--user", user, "--org", "acme", "--kind", "review.created",
                 "--title", f"t{i}", "--body", "b", "--link", "/r/1")[0] for i in range(3)]
    send(server, "--user", user, "--org", "globex", "--kind", "api.quota.warning")

    body = http.get(api, headers=acme).json()
    assert list(body) == ["items", "total", "unread"]
    assert (body["total"], body["unread"]) == (3, 3)
    item = body["items"][0]
    assert list(item) == ["id", "user_id", "organization_id", "kind", "title", "body", "link",
                          "read_at", "created_at"]
    assert item["id"] == "ntf_" + rows[-1]["id"].replace("-", "")
    assert item["created_at"].endswith("Z")
    assert http.get(api, headers=globex).json()["total"] == 1

    ids = ["ntf_" + rows[0]["id"].replace("-", ""), "ntf_" + uuid.uuid4().hex]
    marked = http.post(api + "/mark-read", headers=acme, json={"ids": ids})
    assert marked.status_code == 200 and marked.json()["unread"] == 2
    assert http.post(api + "/mark-read", headers=acme, json={"ids": ids}).json()["unread"] == 2
    everything = http.post(api + "/mark-read", headers=acme)
    assert everything.json()["unread"] == 0 and everything.json()["total"] == 3
    assert http.get(api, headers=globex).json()["unread"] == 1
    assert http.get(api, headers=acme, params={"unread_only": "true"}).json()["total"] == 0
    assert http.get(api, headers=acme, params={"limit": 1}).json()["total"] == 3


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("GET", "/notifications", {"auth": None}, 401, "unauthorized"),
        ("GET", "/notifications", {"auth": "no-org"}, 403, "forbidden"),
        ("GET", "/notifications", {"headers": {"X-API-Key": "k"}}, 403, "forbidden"),
        ("GET", "/nothing", {}, 404, "not_found"),
        ("PUT", "/notifications", {}, 405, "method_not_allowed"),
        ("GET", "/notifications?limit=201", {}, 422, "validation_failed"),
        ("POST", "/notifications/mark-read", {"data": "not json"}, 422, "validation_failed"),
        ("POST", "/notifications/mark-read", {"json": {"ids": ["x"] * 1001}}, 422,
         "validation_failed"),
        ("POST", "/notifications/mark-read", {"json": {"ids": [1]}}, 422, "validation_failed"),
    ],
)
def test_organization_errors_over_http(server: LiveServer, http: requests.Session, method: str,
                                       path: str, kwargs: dict[str, Any], status: int,
                                       code: str) -> None:
    kwargs = dict(kwargs)
    auth = kwargs.pop("auth", "ok")
    headers = dict(kwargs.pop("headers", {}))
    if auth == "ok":
        headers.update(server.headers("e", "acme"))
    elif auth == "no-org":
        headers.update(server.headers("e"))
    response = http.request(method, server.url("/api/v1/org" + path), headers=headers, **kwargs)
    assert response.status_code == status
    body = response.json()
    assert list(body) == ENVELOPE and body["code"] == code
    assert response.headers["X-Request-Id"] == body["request_id"]
    if status == 422:
        assert body["details"]["errors"] and set(body["details"]["errors"][0]) == {"loc", "msg"}


def test_request_id_over_http(server: LiveServer, http: requests.Session) -> None:
    url = server.url("/api/v1/org/notifications")
    echoed = http.get(url, headers={"X-Request-Id": "trace-42"})
    assert echoed.headers["X-Request-Id"] == "trace-42" == echoed.json()["request_id"]
    replaced = http.get(url, headers={"X-Request-Id": "bad id with spaces"})
    assert replaced.headers["X-Request-Id"] != "bad id with spaces"
    assert replaced.json()["request_id"] == replaced.headers["X-Request-Id"]
    assert "request_id=trace-42" in server.log()


def test_writes_from_both_workers_and_the_cli_interleave(server: LiveServer) -> None:
    """Concurrent marks through two workers while the CLI writes: no lost or failed write."""
    from concurrent.futures import ThreadPoolExecutor

    user = f"busy-{uuid.uuid4().hex[:8]}"
    rows = [json.loads(line) for line in server.cli(
        "send", *sum((["--user", user] for _ in range(40)), [])).stdout.splitlines()]
    headers = server.headers(user)

    def mark(row: dict[str, Any]) -> int:
        url = server.url(f"/api/v1/notifications/{row['id']}/read")
        return requests.post(url, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        writer = pool.submit(server.cli, "send", "--user", user, "--title", "late")
        statuses = list(pool.map(mark, rows))
        writer.result()
    assert statuses == [200] * 40
    count = requests.get(server.url("/api/v1/notifications/unread-count"), headers=headers)
    assert count.json() == {"count": 1}


# --- starting and not starting -------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFICATIONS_")}
    env.update(extra)
    return env


def test_serve_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    env = clean_env(NOTIFICATIONS_DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    # A demo's secret beside the database is for the demo and the CLI, never for a real server.
    (tmp_path / "x.db-demo-secret").write_text("left-behind-by-a-demo-0123456789abcdef\n")
    result = subprocess.run([*notifications_command(), "serve", "--port", str(free_port())],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert "NOTIFICATIONS_JWT_SECRET is not set" in errors[0] and "--demo" in errors[0]


DEMO_TOKEN = re.compile(r"^  export TOKEN=(\S+)  # (\S+) in organization (\S+)$", re.MULTILINE)


def test_serve_demo_prints_tokens_that_work(live_server: Any) -> None:
    server = live_server(workers=1, env={"NOTIFICATIONS_JWT_SECRET": ""}, args=("--demo",))
    log = server.log()
    found = [(user, org, token) for token, user, org in DEMO_TOKEN.findall(log)]
    # The users and organizations the README's examples use.
    assert [(user, org) for user, org, _ in found] == [("alice", "acme"), ("bob", "acme"),
                                                       ("carol", "globex")], log
    assert "Seeded 23 notifications" in log and f"{server.base_url}/docs" in log
    assert "<" not in log.split("Serving on")[0]  # no placeholders in what is pasted
    for user, org, demo_token in found:
        headers = bearer(demo_token)
        dataset = requests.get(server.url("/api/v1/notifications"), headers=headers, timeout=10)
        assert dataset.status_code == 200 and dataset.json()["total"] > 0
        assert all(n["user_id"] == user for n in dataset.json()["notifications"])
        inbox = requests.get(server.url("/api/v1/org/notifications"), headers=headers, timeout=10)
        assert inbox.status_code == 200 and inbox.json()["total"] > 0
        assert {i["organization_id"] for i in inbox.json()["items"]} == {org}
    assert "curl" in log
    # The generated secret is not the test secret: the suite's own tokens are refused.
    from conftest import Auth

    assert requests.get(server.url("/api/v1/notifications"), headers=Auth(SECRET).headers("x"),
                        timeout=10).status_code == 401


def test_demo_data_has_both_variants_in_full(live_server: Any) -> None:
    server = live_server(workers=1, env={"NOTIFICATIONS_JWT_SECRET": ""}, args=("--demo",))
    token = DEMO_TOKEN.findall(server.log())[0][0]
    listed = requests.get(server.url("/api/v1/notifications?limit=100"), headers=bearer(token),
                          timeout=10).json()["notifications"]
    alerts = [n for n in listed if n["dataset_id"]]
    assert alerts and all(set(n["metadata"]) == {"view_name", "dataset_name", "result_count",
                                                 "batch_id", "is_alert"} for n in alerts)
    assert DATASET in {n["dataset_id"] for n in alerts}
    inbox = requests.get(server.url("/api/v1/org/notifications"), headers=bearer(token),
                         timeout=10).json()
    assert {"review.created", "review.approved", "version.published",
            "api.quota.warning"} <= {item["kind"] for item in inbox["items"]}
    assert 0 < inbox["unread"] < inbox["total"]


def test_the_cli_in_another_shell_works_against_the_demo(live_server: Any) -> None:
    """As the README says: serve --demo in one shell, token and send in another."""
    server = live_server(workers=1, env={"NOTIFICATIONS_JWT_SECRET": ""}, args=("--demo",))
    assert (server.db_path.parent / "live.db-demo-secret").exists()
    env = {k: v for k, v in server.env.items() if k != "NOTIFICATIONS_JWT_SECRET"}
    run = lambda *a: subprocess.run([*notifications_command(), *a], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=60, check=True)
    token = run("token", "--user", "alice", "--org", "acme").stdout.strip()
    before = requests.get(server.url("/api/v1/org/notifications"), headers=bearer(token),
                          timeout=10)
    assert before.status_code == 200, before.text
    run("send", "--user", "alice", "--org", "acme", "--kind", "review.created", "--title", "Hi")
    after = requests.get(server.url("/api/v1/org/notifications"), headers=bearer(token),
                         timeout=10).json()
    assert after["total"] == before.json()["total"] + 1 and after["items"][0]["title"] == "Hi"


def test_demo_on_a_database_with_data_says_so_and_prints_lines_that_work(
        live_server: Any, tmp_path: Path) -> None:
    env = clean_env(NOTIFICATIONS_DATABASE_URL=f"sqlite:///{tmp_path / 'live.db'}")
    # Someone else's data: a user with only dataset alerts, and one with an organization.
    for args in (["--user", "dave", "--dataset", DATASET],
                 ["--user", "erin", "--org", "initech", "--kind", "review.created"]):
        subprocess.run([*notifications_command(), "send", *args], env=env, check=True,
                       capture_output=True, timeout=60)
    server = live_server(workers=1, env={"NOTIFICATIONS_JWT_SECRET": ""}, args=("--demo",))
    log = server.log()
    assert "The database already has 2 notifications; seeding nothing." in log
    assert "Seeded" not in log
    found = DEMO_TOKEN.findall(log)
    assert [(user, org) for _, user, org in found] == [("erin", "initech")], log
    token = found[0][0]
    urls = re.findall(r'curl (?:-N )?-H "Authorization: Bearer \$TOKEN" "(\S+)"', log)
    assert len(urls) == 5
    for url in urls:
        with requests.get(url, headers=bearer(token), timeout=10, stream=True) as answer:
            assert answer.status_code == 200, (url, answer.text)


def test_open_mode_over_http(live_server: Any) -> None:
    server = live_server(workers=1, env={"NOTIFICATIONS_OPEN_USER": "operator",
                                         "NOTIFICATIONS_OPEN_ORGANIZATION": "acme"})
    assert "open mode" in server.log() and "operator" in server.log()
    send(server, "--user", "operator", "--org", "acme", "--kind", "review.created")
    send(server, "--user", "someone-else", "--org", "acme")
    dataset = requests.get(server.url("/api/v1/notifications"), timeout=10)
    assert dataset.status_code == 200 and dataset.json()["total"] == 1
    inbox = requests.get(server.url("/api/v1/org/notifications"), timeout=10)
    assert inbox.status_code == 200 and inbox.json()["items"][0]["user_id"] == "operator"
    bad = requests.get(server.url("/api/v1/notifications"), headers={"Authorization": "Bearer x"},
                       timeout=10)
    assert bad.status_code == 401


def test_gunicorn_serves_app_module(tmp_path: Path) -> None:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [str(gunicorn)] if gunicorn.exists() else [shutil.which("gunicorn") or "gunicorn"]
    port = free_port()
    db_url = f"sqlite:///{tmp_path / 'g.db'}"
    env = clean_env(NOTIFICATIONS_DATABASE_URL=db_url, NOTIFICATIONS_JWT_SECRET=SECRET)
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*command, "-c", "python:notifications.ops.gunicorn_hooks",
                                 "-k", "gevent", "-w", "2", "-b", f"127.0.0.1:{port}",
                                 "app:app"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc, log_path)
        subprocess.run([*notifications_command(), "send", "--user", "g", "--org", "acme"],
                       env=env, check=True, capture_output=True, timeout=60)
        headers = Auth().headers("g", "acme")
        assert requests.get(base + "/api/v1/notifications", headers=headers).json()["total"] == 1
        assert requests.get(base + "/api/v1/org/notifications",
                            headers=headers).json()["unread"] == 1
        assert requests.get(base + "/api/v1/notifications").status_code == 401
        # The hooks of notifications.ops.gunicorn_hooks: a stream ends on SIGTERM.
        stream = requests.get(base + "/api/v1/notifications/stream", headers=headers,
                              stream=True, timeout=10)
        assert stream.status_code == 200
        # Kept: a chunk iterator let go of closes the connection, which ends the stream too.
        chunks = stream.iter_content(None)
        assert next(chunks) == b"retry: 3000\n\n"
        started = time.monotonic()
        stop_group(proc)
        assert time.monotonic() - started < 5, "graceful shutdown waited for an open stream"
        # The server ended the response (a cut connection would raise here).
        b"".join(chunks)
    finally:
        stop_group(proc)
