"""A real browser page on another origin calls the service with the session cookie (CORS)."""
from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import DATASET, require, stop_group

#: The page: set the session cookie (cookies ignore ports, so the service on another port of
#: the same host receives it), call the APIs with credentials, open both streams, and post
#: what happened back to the page's own server.
PAGE = """<!doctype html>
<html><body><script>
const API = %(api)s;
function firstEvent(url, name) {
  return new Promise((resolve, reject) => {
    const source = new EventSource(url, {withCredentials: true});
    const timer = setTimeout(() => { source.close(); reject(new Error("no " + name)); }, 10000);
    source.addEventListener(name, (event) => {
      clearTimeout(timer); source.close(); resolve(JSON.parse(event.data));
    });
  });
}
(async () => {
  const out = {};
  try {
    document.cookie = "session=" + %(token)s + "; path=/; SameSite=Lax";
    let r = await fetch(API + "/api/v1/org/notifications", {credentials: "include"});
    out.org = {status: r.status, body: await r.json(), requestId: r.headers.get("X-Request-Id")};
    r = await fetch(API + "/api/v1/notifications?limit=5", {credentials: "include"});
    out.dataset = {status: r.status, body: await r.json()};
    r = await fetch(API + "/api/v1/org/notifications/mark-read", {
      method: "POST", credentials: "include",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({ids: []}),
    });
    out.markRead = {status: r.status, body: await r.json()};
    r = await fetch(API + "/api/v1/org/notifications?limit=0", {credentials: "include"});
    out.error = {status: r.status, body: await r.json()};
    out.unread = await firstEvent(API + "/api/v1/org/notifications/stream", "unread");
    out.notification = await firstEvent(
      API + "/api/v1/notifications/stream?last_event_id=0", "notification");
  } catch (e) {
    out.failure = String(e);
  }
  await fetch("/result", {method: "POST", body: JSON.stringify(out)});
})();
</script></body></html>
"""


def headless(profile: Path, *args: str) -> list[str]:
    """Return a headless Chromium command line with its own profile directory."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", *args]


class PageServer:
    """Serve one page on its own origin and collect what it reports."""

    def __init__(self) -> None:
        self.page = ""
        self.results: queue.Queue[dict[str, Any]] = queue.Queue()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                body = owner.page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                owner.results.put(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def open(self, server: Any, token: str, tmp_path: Path) -> dict[str, Any]:
        """Load the page in headless Chromium and return what it reported."""
        self.page = PAGE % {"api": json.dumps(server.base_url), "token": json.dumps(token)}
        browser = subprocess.Popen(
            headless(tmp_path / "chromium", self.origin + "/"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            return self.results.get(timeout=45)
        finally:
            stop_group(browser, timeout=10)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chromium() -> None:
    """Skip (or fail where outside programs are required) when Chromium is missing."""
    require(shutil.which("chromium") is not None or shutil.which("chromium-browser") is not None,
            "Chromium is not installed (apt-get install chromium)")


@pytest.fixture
def pages(chromium: None) -> Any:
    """Factory of page servers, each on its own origin, closed after the test."""
    opened: list[PageServer] = []

    def make() -> PageServer:
        opened.append(PageServer())
        return opened[-1]

    yield make
    for page in opened:
        page.close()


def test_page_on_an_allowed_origin_lists_marks_and_streams_with_the_cookie(
    pages: Any, live_server: Any, tmp_path: Path,
) -> None:
    allowed, other = pages(), pages()
    server = live_server(workers=1, env={"NOTIFICATIONS_CORS_ORIGINS": allowed.origin})
    server.cli("send", "--user", "alice", "--org", "acme", "--title", "hello",
               "--dataset", DATASET, "--metadata", '{"is_alert": true}')
    token = server.auth.token("alice", "acme")

    result = allowed.open(server, token, tmp_path / "allowed")
    assert "failure" not in result, result
    assert result["org"]["status"] == 200
    assert result["org"]["body"]["items"][0]["title"] == "hello"
    assert result["org"]["requestId"]  # readable thanks to Access-Control-Expose-Headers
    assert result["dataset"]["status"] == 200 and result["dataset"]["body"]["total"] == 1
    # A JSON POST is preflighted; the browser only sends it because the preflight allowed it.
    assert result["markRead"]["status"] == 200 and result["markRead"]["body"]["unread"] == 0
    assert result["error"]["status"] == 422
    assert result["error"]["body"]["code"] == "validation_failed"
    assert result["unread"] == {"unread": 0}
    assert result["notification"]["title"] == "hello"

    refused = other.open(server, token, tmp_path / "other")
    assert refused == {"failure": "TypeError: Failed to fetch"}


def test_docs_page_renders_every_operation_from_local_files(
    chromium: None, live_server: Any, tmp_path: Path,
) -> None:
    server = live_server(workers=1)
    paths = requests.get(server.url("/openapi.json"), timeout=5).json()["paths"]
    dom = subprocess.run(
        headless(tmp_path / "chromium", "--virtual-time-budget=15000", "--dump-dom",
                 server.url("/docs")),
        capture_output=True, text=True, timeout=90,
    ).stdout
    for path in paths:
        assert f'data-path="{path}"' in dom, f"{path} not rendered"
    log = server.log()
    for asset in ("/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/docs.js",
                  "/openapi.json"):
        assert f"GET {asset} 200" in log
