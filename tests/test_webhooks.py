"""Outbound webhooks against real servers and a real receiver on a loopback port.

The receiver is a small threaded ``http.server`` that can fail, hang, trickle or redirect,
and records every request, how many were in flight at once (per endpoint, per webhook-id),
and whether each signature verifies -- with a verifier written here from the Standard
Webhooks specification, not the service's signer.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import free_port
from test_stream import wait_for

from notifications.core import webhooks as hooks
from notifications.core.serialize import ntf_id
from notifications.store import changelog
from notifications.store import webhooks as rows

pytestmark = pytest.mark.both_databases

ROOT = Path(__file__).resolve().parent.parent
#: Short retries, a fast watcher, and an ingest API to write through the workers.
QUICK = {"NOTIFICATIONS_WEBHOOK_RETRY_BASE": "0.1", "NOTIFICATIONS_WEBHOOK_RETRY_WINDOW": "120",
         "NOTIFICATIONS_POLL_INTERVAL": "0.05", "NOTIFICATIONS_INGEST_TOKEN": "ingest-token"}
EVENT_OF = {"created": "notification.created", "updated": "notification.updated",
            "deleted": "notification.deleted"}


# --- an independent verifier (Standard Webhooks) ------------------------------------------


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Check ``webhook-signature`` as the specification says: HMAC-SHA256, keyed with the
    base64-decoded secret, over ``id.timestamp.body``; any of the space-separated v1s."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in headers["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


# --- the receiver -----------------------------------------------------------------------------


@dataclass
class Hit:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    started: float
    answer: int | str = 0
    ended: float = 0.0


@dataclass
class Receiver:
    """A webhook receiver on a free loopback port; ``decide(hit)`` says how to answer:
    an HTTP status, ``("hang", seconds)``, ``"trickle"`` or ``("redirect", path)``."""

    decide: Callable[[Hit], Any] = lambda hit: 200
    hits: list[Hit] = field(default_factory=list)
    in_flight: Counter[str] = field(default_factory=Counter)
    max_in_flight: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                hit = Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                          time.monotonic())
                keys = (f"endpoint {self.path}", f"id {hit.headers.get('webhook-id')}")
                with receiver.lock:
                    receiver.hits.append(hit)
                    for key in keys:
                        receiver.in_flight[key] += 1
                        receiver.max_in_flight[key] = max(receiver.max_in_flight[key],
                                                          receiver.in_flight[key])
                try:
                    self.answer(hit, receiver.decide(hit))
                finally:
                    with receiver.lock:
                        for key in keys:
                            receiver.in_flight[key] -= 1
                    hit.ended = time.monotonic()

            def answer(self, hit: Hit, how: Any) -> None:
                hit.answer = how if isinstance(how, (int, str)) else how[0]
                if isinstance(how, tuple) and how[0] == "hang":
                    time.sleep(how[1])
                    if len(how) > 2:  # its sender is gone: this answer reaches nobody
                        return
                    how = hit.answer = 200
                if how == "trickle":
                    try:  # a byte at a time, for far longer than any sender should wait
                        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(0.25)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                if isinstance(how, tuple) and how[0] == "redirect":
                    self.send_response(302)
                    self.send_header("Location", how[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(int(how))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def delivered(self, path: str = "/hook") -> dict[str, Hit]:
        """The hits answered 2xx at ``path``, by webhook-id (the last of each)."""
        with self.lock:
            return {h.headers["webhook-id"]: h for h in self.hits
                    if h.path == path and h.ended and h.answer == 200}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


# --- helpers -------------------------------------------------------------------------------


def add_endpoint(server: Any, url: str, *args: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(server.cli("webhooks", "add", url, *args,
                                                  "--json").stdout)
    return found


def ingest(server: Any, count: int, user: str = "alice", **fields: Any) -> list[str]:
    response = requests.post(
        server.url("/internal/v1/notifications"), timeout=10,
        headers={"Authorization": "Bearer ingest-token"},
        json={"notifications": [{"user_id": user, "title": f"n{n}", **fields}
                                for n in range(count)]})
    assert response.status_code == 201, response.text
    return list(response.json()["ids"])


def make_changes(server: Any) -> None:
    """Created (ingest and the CLI), updated (version 2 PATCH, the CLI) and deleted."""
    ids = ingest(server, 4)
    server.cli("send", "--user", "bob", "--title", "from the CLI")
    response = requests.patch(server.url(f"/api/v2/notifications/{ntf_id(ids[0])}"),
                              json={"read": True, "archived": True},
                              headers=server.headers("alice"), timeout=10)
    assert response.status_code == 200, response.text
    server.cli("mark-read", "--user", "alice", "--id", ids[1])
    server.cli("purge", "--older-than", "0d", "--read-only")


def log_entries(server: Any, after: int = 0) -> dict[int, tuple[str, str]]:
    """The change log after ``after``: position -> (event, ntf id)."""
    with server.raw() as conn:
        return {p: (EVENT_OF[c], ntf_id(n)) for p, c, n in conn.execute(
            "SELECT position, change, notification_id FROM changes WHERE position > ?",
            (after,)).fetchall()}


def delivery_positions(server: Any, endpoint_id: str) -> dict[str, int]:
    """webhook-id -> change-log position, for one endpoint."""
    with server.raw() as conn:
        return dict(conn.execute("SELECT id, position FROM webhook_deliveries "
                                 "WHERE endpoint_id = ?", (endpoint_id,)).fetchall())


def check_every_change_once(server: Any, receiver: Receiver, endpoint: dict[str, Any],
                            start: int, path: str = "/hook", timeout: float = 30) -> None:
    """Every change after ``start`` reached ``path`` (2xx), signed, in order, once per id."""
    wanted = log_entries(server, start)
    wait_for(lambda: len(receiver.delivered(path)) >= len(wanted), "every change delivered",
             timeout)
    delivered = receiver.delivered(path)
    positions = delivery_positions(server, endpoint["id"])
    assert sorted(positions[i] for i in delivered) == sorted(wanted)
    for message_id, hit in delivered.items():
        body = json.loads(hit.body)
        assert (body["type"], body["data"]["id"]) == wanted[positions[message_id]]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["timestamp"])
    with receiver.lock:
        hits = [h for h in receiver.hits if h.path == path]
    for hit in hits:
        assert verify(endpoint["secret"], hit.headers, hit.body), hit.headers
        assert abs(int(hit.headers["webhook-timestamp"]) - time.time()) < 120
    # A retry sends the same bytes under the same id.
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for hit in hits:
        bodies[hit.headers["webhook-id"]].add(hit.body)
    assert all(len(found) == 1 for found in bodies.values())
    # In order: each delivery was first answered 2xx after every earlier one was.
    first_ok: dict[str, float] = {}
    for hit in sorted(hits, key=lambda h: h.ended):
        if hit.answer == 200:
            first_ok.setdefault(hit.headers["webhook-id"], hit.ended)
    by_time = sorted(first_ok, key=first_ok.__getitem__)
    assert by_time == sorted(first_ok, key=positions.__getitem__)


def sender_pid(server: Any) -> int:
    """The pid of the worker holding the sender's lease (waits for one)."""
    found: list[int] = []

    def held() -> bool:
        with server.raw() as conn:
            row = conn.execute("SELECT owner FROM webhook_sender_lease "
                               "WHERE expires_at > ?", (int(time.time() * 1e6),)).fetchone()
        if row:
            found.append(int(row[0].split(":")[1]))
        return bool(row)

    wait_for(held, "a worker to take the sender's lease")
    return found[-1]


# --- the pure parts ----------------------------------------------------------------------------


def test_the_signature_is_the_one_the_specification_describes() -> None:
    secret = hooks.new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    body = b'{"type":"notification.created"}'
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1700000000",
               "webhook-signature": hooks.sign(hooks.secret_key(secret), "msg_1", 1700000000,
                                               body)}
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body + b" ")
    assert not verify(hooks.new_secret(), headers, body)


@pytest.mark.parametrize("url", ["ftp://example.com/", "example.com/hook", "http://", "",
                                 "http://exa mple.com/", "http://x:99999/", "javascript:x"])
def test_endpoint_urls_must_be_http(url: str) -> None:
    with pytest.raises(ValueError):
        hooks.check_url(url)


def test_events_are_the_v2_stream_events() -> None:
    assert hooks.parse_events(None) == hooks.EVENTS
    assert hooks.parse_events("notification.deleted, notification.created") == (
        "notification.created", "notification.deleted")
    for bad in ("notification.read", ",", "counts"):
        with pytest.raises(ValueError):
            hooks.parse_events(bad)


def test_the_retry_schedule_backs_off_and_ends_at_the_window() -> None:
    attempts = hooks.schedule(5, 86400)
    delays = [a.delay for a in attempts[1:]]
    assert delays[:4] == [5, 10, 20, 40]
    assert max(delays) == 6 * 3600 and attempts[-1].at == 86400
    assert all(b.at > a.at for a, b in zip(attempts, attempts[1:], strict=False))


def webhooks_doc() -> str:
    return (ROOT / "docs" / "webhooks.md").read_text()


def test_the_docs_give_the_schedule_of_the_defaults() -> None:
    assert hooks.schedule_table(5, 86400) in webhooks_doc()


def test_the_docs_verification_snippet_accepts_what_the_service_signs() -> None:
    snippet = re.search(r"```python\n(.*?)```", webhooks_doc(), re.S)
    assert snippet is not None
    scope: dict[str, Any] = {}
    exec(snippet.group(1), scope)
    secret = hooks.new_secret()
    body = b'{"type":"notification.deleted","timestamp":"x","data":{"id":"ntf_1"}}'
    now = int(time.time())
    headers = {"webhook-id": "msg_abc", "webhook-timestamp": str(now),
               "webhook-signature": hooks.sign(hooks.secret_key(secret), "msg_abc", now, body)}
    assert scope["verify_webhook"](secret, headers, body) == json.loads(body)
    for tampered in ({**headers, "webhook-id": "msg_other"},
                     {**headers, "webhook-timestamp": str(now - 3600),
                      "webhook-signature": hooks.sign(hooks.secret_key(secret), "msg_abc",
                                                      now - 3600, body)}):
        with pytest.raises(ValueError):
            scope["verify_webhook"](secret, tampered, body)
    with pytest.raises(ValueError):
        scope["verify_webhook"](secret, headers, body.replace(b"ntf_1", b"ntf_2"))


# --- the commands and the store -------------------------------------------------------------


def test_add_list_remove_and_errors(runner: Any) -> None:
    added = runner.invoke("webhooks", "add", "https://hooks.example/in",
                          "--events", "notification.created")
    assert added.exit_code == 0, added.output
    endpoint_id = re.search(r"(ep_[0-9a-f]+)", added.output).group(1)  # type: ignore[union-attr]
    secret = re.search(r"Secret: (whsec_\S+)", added.output).group(1)  # type: ignore[union-attr]
    assert len(base64.b64decode(secret[6:])) == 32
    listed = runner.invoke("webhooks", "list", "--json")
    [shown] = json.loads(listed.output)
    assert shown["id"] == endpoint_id and shown["events"] == ["notification.created"]
    assert secret not in listed.output and secret[6:] not in listed.output
    for args in (("webhooks", "add", "ftp://x"), ("webhooks", "add", "http://x", "--events", "no"),
                 ("webhooks", "remove", "ep_nope"), ("webhooks", "retry", "msg_nope"),
                 ("webhooks", "deliveries", "--endpoint", "ep_nope")):
        result = runner.invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert runner.invoke("webhooks", "remove", endpoint_id).exit_code == 0
    assert json.loads(runner.invoke("webhooks", "list", "--json").output) == []


def test_retention_keeps_the_changes_an_endpoint_has_not_taken(app: Any, make: Any) -> None:
    with app.app_context():
        endpoint = rows.add_endpoint("http://127.0.0.1:1/", hooks.EVENTS, "a2V5")
        make("alice", 3)
        later = 10 * 86400 * 1_000_000
        changelog.trim(1, now=rows.now_us() + later)
        assert changelog.trim(1, now=rows.now_us() + 2 * later)["deleted"] == 0
        assert len(changelog.changes_after(endpoint.position).changes) == 3
        assert rows.add_deliveries(endpoint.id, endpoint.position, endpoint.position + 2, [])
        # A second sender that read the same entries makes nothing: the position moved.
        assert not rows.add_deliveries(endpoint.id, endpoint.position, endpoint.position + 2, [])
        assert changelog.trim(1, now=rows.now_us() + 3 * later)["deleted"] == 2
        rows.remove_endpoint(endpoint.id)
        assert changelog.trim(1, now=rows.now_us() + 4 * later)["deleted"] == 1


# --- real servers --------------------------------------------------------------------------


def test_every_change_arrives_once_signed_and_in_order_after_failures(
        live_server: Any, receiver: Receiver) -> None:
    attempts: Counter[str] = Counter()

    def flaky(hit: Hit) -> int:
        attempts[hit.headers["webhook-id"]] += 1
        return 500 if attempts[hit.headers["webhook-id"]] <= 2 else 200

    receiver.decide = flaky
    server = live_server(workers=2, env=QUICK)
    only_created = add_endpoint(server, receiver.url("/created"), "--events",
                                "notification.created")
    endpoint = add_endpoint(server, receiver.url())
    start = changelog_head(server)
    make_changes(server)
    check_every_change_once(server, receiver, endpoint, start)
    wanted = {p for p, (event, _) in log_entries(server, start).items()
              if event == "notification.created"}
    wait_for(lambda: len(receiver.delivered("/created")) >= len(wanted), "the created ones")
    positions = delivery_positions(server, only_created["id"])
    assert {positions[i] for i in receiver.delivered("/created")} == wanted
    assert all(attempts[i] == 3 for i in receiver.delivered())
    assert max(receiver.max_in_flight[k] for k in receiver.max_in_flight) == 1
    listed = json.loads(server.cli("webhooks", "deliveries", "--endpoint", endpoint["id"],
                                   "--json").stdout)
    assert {d["status"] for d in listed} == {"delivered"}
    assert {d["attempts"] for d in listed} == {3}
    log = server.log()
    assert "Traceback" not in log
    assert endpoint["secret"] not in log and endpoint["secret"][6:] not in log


def changelog_head(server: Any) -> int:
    with server.raw() as conn:
        return int(conn.execute("SELECT coalesce(max(position), 0) FROM changes").fetchone()[0])


def test_a_killed_sender_and_a_restart_lose_nothing(live_server: Any,
                                                    receiver: Receiver) -> None:
    hung = threading.Event()
    state = {"refuse": False}

    def decide(hit: Hit) -> Any:
        if state["refuse"]:
            return 503
        if not hung.is_set() and len(receiver.hits) >= 3:
            hung.set()
            return ("hang", 3.0, "lost")  # in flight while its sender is killed
        return 200

    receiver.decide = decide
    server = live_server(workers=2, env=QUICK)
    endpoint = add_endpoint(server, receiver.url())
    start = changelog_head(server)
    ingest(server, 8)
    wait_for(hung.is_set, "a delivery in flight")
    os.kill(sender_pid(server), signal.SIGKILL)
    ingest(server, 3)
    check_every_change_once(server, receiver, endpoint, start)
    [lost] = [h for h in receiver.hits if h.answer == "hang"]
    assert lost.headers["webhook-id"] in receiver.delivered(), "the delivery in flight was lost"

    # Stopped with deliveries due, and more changes while it is down.
    state["refuse"] = True
    ingest(server, 2)
    wait_for(lambda: receiver.hits[-1].answer == 503, "a refused delivery")
    server.stop()
    server.cli("send", "--user", "carol", "--title", "while the service was down")
    state["refuse"] = False
    again = live_server(workers=2, env=QUICK, db_url=server.db_url)
    again.cli("send", "--user", "carol", "--title", "after the restart")
    check_every_change_once(again, receiver, endpoint, start)
    assert "Traceback" not in again.log()


def test_a_hanging_receiver_slows_no_request(live_server: Any, receiver: Receiver) -> None:
    trickled = threading.Event()

    def decide(hit: Hit) -> Any:
        if not trickled.is_set():
            trickled.set()
            return "trickle"
        return 200

    receiver.decide = decide
    server = live_server(workers=2, env=QUICK)
    endpoint = add_endpoint(server, receiver.url())
    start = changelog_head(server)
    ingest(server, 1)
    wait_for(trickled.is_set, "the trickling answer")
    latencies = []
    while not receiver.hits[0].ended:
        began = time.monotonic()
        response = requests.get(server.url("/api/v2/notifications"), timeout=5,
                                headers=server.headers("alice"))
        latencies.append(time.monotonic() - began)
        assert response.status_code == 200
        assert time.monotonic() - receiver.hits[0].started < 15, "the attempt was not cut off"
        time.sleep(0.05)
    # Cut off at 10 s, though a byte came every 0.25 s; no request waited meanwhile.
    assert 9.5 < receiver.hits[0].ended - receiver.hits[0].started < 12.5
    assert len(latencies) > 50 and max(latencies) < 0.5, max(latencies)
    check_every_change_once(server, receiver, endpoint, start)
    listed = json.loads(server.cli("webhooks", "deliveries", "--json").stdout)
    assert listed[0]["status"] == "delivered" and listed[0]["attempts"] == 2


def test_two_nodes_of_two_workers_never_send_at_once(live_server: Any,
                                                     receiver: Receiver) -> None:
    receiver.decide = lambda hit: ("hang", 0.05)
    first = live_server(workers=2, env=QUICK)
    second = live_server(workers=2, env=QUICK,  # another node on the same database
                         db_url=first.db_url)
    one = add_endpoint(first, receiver.url("/one"))
    two = add_endpoint(first, receiver.url("/two"))
    start = changelog_head(first)
    ingest(first, 10)
    ingest(second, 10)
    wait_for(lambda: len(receiver.delivered("/one")) >= 5, "deliveries under way")
    owner = sender_pid(first)
    # The node whose worker sends stops; the other takes over.
    sending, survivor = (first, second) if owner in children(first) else (second, first)
    sending.stop()
    ingest(survivor, 5)
    check_every_change_once(survivor, receiver, one, start, "/one", timeout=60)
    check_every_change_once(survivor, receiver, two, start, "/two", timeout=60)
    assert all(receiver.max_in_flight[k] == 1 for k in receiver.max_in_flight), \
        receiver.max_in_flight


def children(server: Any) -> set[int]:
    """The pids of a server's workers."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == server.proc.pid:
                found.add(int(entry.name))
    return found


def test_a_redirect_is_a_failure_and_retry_sends_again(live_server: Any,
                                                       receiver: Receiver) -> None:
    state = {"redirect": True}
    receiver.decide = lambda hit: (("redirect", "/elsewhere") if state["redirect"] else 200)
    server = live_server(workers=2, env={**QUICK, "NOTIFICATIONS_WEBHOOK_RETRY_WINDOW": "1"})
    endpoint = add_endpoint(server, receiver.url())
    start = changelog_head(server)
    ingest(server, 1)

    def failed() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = json.loads(server.cli(
            "webhooks", "deliveries", "--failed", "--json").stdout)
        return found

    wait_for(lambda: bool(failed()), "the delivery to fail")
    [delivery] = failed()
    assert delivery["last_status"] == 302 and delivery["attempts"] >= 2
    assert "redirect" in delivery["last_error"]
    assert not [h for h in receiver.hits if h.path != "/hook"], "the redirect was followed"
    state["redirect"] = False
    assert "due again" in server.cli("webhooks", "retry", delivery["id"]).stdout
    check_every_change_once(server, receiver, endpoint, start)
    assert failed() == []
