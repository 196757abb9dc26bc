"""One client cannot hold the server: slow bodies, oversized headers (real gunicorn server)."""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import LiveServer

INGEST_TOKEN = "ingest-token-0123456789abcdef"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module, with a short body deadline."""
    live = LiveServer(tmp_path_factory.mktemp("abuse"), workers=2, env={
        "NOTIFICATIONS_BODY_TIMEOUT": "1", "NOTIFICATIONS_INGEST_TOKEN": INGEST_TOKEN,
    })
    yield live
    live.stop()


def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length from ``sock``."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        k.strip().lower(): v.strip()
        for k, _, v in (line.partition(":") for line in lines[1:])
    }
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


@pytest.mark.parametrize("path, headers, envelope", [
    ("/internal/v1/notifications", {"Authorization": f"Bearer {INGEST_TOKEN}"}, {"detail"}),
    ("/api/v1/org/notifications/mark-read", None, {"code", "message", "detail", "hint", "details",
                                                   "request_id"}),
])
def test_a_body_sent_slowly_is_cut_off_at_the_deadline(server: LiveServer, path: str,
                                                       headers: dict[str, str] | None,
                                                       envelope: set[str]) -> None:
    headers = headers or server.headers("alice", "acme")
    body = json.dumps({"user_id": "alice", "title": "x" * 200}).encode()
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request)
        # One byte every 0.1 s: the whole body would take 20 s and more.
        sock.setblocking(False)
        answer = b""
        for byte in body:
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            if answer or time.monotonic() - started > 8:
                break
            time.sleep(0.1)
        sock.setblocking(True)
        status, response_headers, raw = read_response_after(sock, answer, 5)
    elapsed = time.monotonic() - started
    assert status == 408, raw
    assert 0.9 <= elapsed < 3.5, elapsed
    payload = json.loads(raw)
    assert set(payload) == envelope
    assert response_headers["content-type"] == "application/json"


def read_response_after(sock: socket.socket, received: bytes, timeout: float) -> Any:
    """Like :func:`read_response`, after ``received`` bytes were already read."""

    class Prefixed:
        def __init__(self) -> None:
            self.pending = received

        def settimeout(self, value: float) -> None:
            sock.settimeout(value)

        def recv(self, size: int) -> bytes:
            if self.pending:
                data, self.pending = self.pending, b""
                return data
            return sock.recv(size)

    return read_response(Prefixed(), timeout)  # type: ignore[arg-type]


def test_a_body_sent_in_time_is_read(server: LiveServer) -> None:
    body = json.dumps({"user_id": "alice"}).encode()
    request = (f"POST /internal/v1/notifications HTTP/1.1\r\nHost: x\r\n"
               f"Content-Length: {len(body)}\r\n"
               f"Authorization: Bearer {INGEST_TOKEN}\r\n"
               "Content-Type: application/json\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request)
        for part in (body[:5], body[5:]):
            time.sleep(0.3)
            sock.sendall(part)
        status, _, raw = read_response(sock, 5)
    assert status == 201, raw


# --- oversized headers ----------------------------------------------------------------------


def long_token(server: LiveServer, size: int) -> str:
    token = server.auth.token("alice", "acme", padding="p" * size)
    return token


def test_a_7_kb_token_is_served(server: LiveServer) -> None:
    import requests

    token = long_token(server, 5200)
    assert 7000 <= len(token) <= 7500
    response = requests.get(server.url("/api/v1/notifications"),
                            headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path, envelope", [
    ("/api/v1/notifications", {"detail"}),
    ("/api/v1/org/notifications", {"code", "message", "detail", "hint", "details", "request_id"}),
    ("/healthz", {"detail"}),
])
@pytest.mark.parametrize("extra", [
    {"X-Request-Id": "r" * 10_000},
    {f"X-Extra-{i}": "x" for i in range(150)},
    {"Authorization": "Bearer " + "a" * 9000},
], ids=["10-kb-request-id", "150-headers", "9-kb-token"])
def test_oversized_headers_get_431_in_the_variants_format(server: LiveServer, path: str,
                                                          envelope: set[str],
                                                          extra: dict[str, str]) -> None:
    import requests

    response = requests.get(server.url(path), headers={**server.headers("alice", "acme"), **extra},
                            timeout=5)
    assert response.status_code == 431, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.json()) == envelope
    assert len(response.headers["X-Request-Id"]) == 32


def test_beyond_gunicorns_own_caps_gunicorn_answers(server: LiveServer) -> None:
    import requests

    from notifications.ops.server import GUNICORN_HEADER_FIELD, GUNICORN_HEADER_FIELDS

    for extra in ({"X-Big": "x" * GUNICORN_HEADER_FIELD},
                  {f"X-Extra-{i}": "x" for i in range(GUNICORN_HEADER_FIELDS + 1)}):
        response = requests.get(server.url("/healthz"), headers=extra, timeout=5)
        assert response.status_code == 431  # gunicorn's page, before the service sees it


# --- file descriptors -----------------------------------------------------------------------

FD_LIMIT = 256


def _low_fd_limit() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def open_stream_socket(server: LiveServer, token: str) -> tuple[socket.socket, int]:
    """Open an organization stream on a raw socket; return it and the answer's status."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(f"GET /api/v1/org/notifications/stream HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: Bearer {token}\r\n\r\n".encode())
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, int(head.split()[1]) if head else 0


@pytest.mark.slow
def test_more_streams_than_open_files_leave_the_server_answering(live_server: Any) -> None:
    import requests

    server = live_server(env={"NOTIFICATIONS_STREAM_LIMIT": "10000",
                              "NOTIFICATIONS_KEEPALIVE_INTERVAL": "1"}, preexec_fn=_low_fd_limit)
    token = server.auth.token("alice", "acme")
    sockets, statuses = [], []
    started = time.monotonic()
    try:
        for _ in range(2 * FD_LIMIT):  # twice what the two workers' limits allow
            sock, status = open_stream_socket(server, token)
            statuses.append(status)
            if status == 200:
                sockets.append(sock)
            else:
                sock.close()
        # Refusals are quick (no connection waits in the backlog for a slot).
        assert time.monotonic() - started < 30
        assert statuses.count(200) >= FD_LIMIT // 2, statuses
        assert set(statuses) == {200, 503}, statuses
        for _ in range(5):
            health = requests.get(server.url("/healthz"), timeout=3)
            assert health.status_code == 200
        counts = requests.get(server.url("/api/v1/org/notifications"),
                              headers=server.headers("bob", "acme"), timeout=3)
        assert counts.status_code == 200
        # The open streams still work: they get their keep-alive comments.
        sockets[0].settimeout(5)
        assert sockets[0].recv(4096)
    finally:
        for sock in sockets:
            sock.close()
    log = server.log()
    assert "Too many open files" not in log and "EMFILE" not in log, log[-3000:]
    # serve says what it got, and sized its workers to it.
    assert f"Open files: soft limit {FD_LIMIT} (hard {FD_LIMIT}); " in log
