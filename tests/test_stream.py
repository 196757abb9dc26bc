"""Live streams against a real `notifications serve` (gunicorn + gevent workers)."""
from __future__ import annotations

import json
import os
import queue
import signal
import socket
import sqlite3
import threading
import time
from typing import Any

import pytest
import requests
from conftest import DATASET, OTHER_DATASET

pytestmark = pytest.mark.both_databases

FAST = {
    "NOTIFICATIONS_PING_INTERVAL": "0.2",
    "NOTIFICATIONS_KEEPALIVE_INTERVAL": "0.3",
    "NOTIFICATIONS_POLL_INTERVAL": "0.05",
}


class SSEClient:
    """A stream read as the documented Python client does: requests, stream=True, lines."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> None:
        self.response = requests.get(url, headers=headers, stream=True, timeout=(5, 30), **kwargs)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.raw_lines: list[str] = []
        if self.response.status_code == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        block: dict[str, Any] = {}
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                self.raw_lines.append(line)
                if line == "":
                    if block:
                        self.events.put(block)
                    block = {}
                elif line.startswith(":"):
                    self.events.put({"comment": line[1:].strip(), "at": time.monotonic()})
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "data":
                        block["data"] = block["data"] + "\n" + value if "data" in block else value
                    else:
                        block[name] = value
                    block["at"] = time.monotonic()
        except Exception:  # the test closed the response
            pass
        self.events.put({"closed": True, "at": time.monotonic()})

    def next(self, timeout: float = 5.0,
             skip: tuple[str, ...] = ("ping", "keep-alive")) -> dict[str, Any]:
        """Return the next event that is not a ping or keep-alive (or ``closed``)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no event within {timeout}s; lines so far: {self.raw_lines[-20:]}")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event.get("event") in skip or event.get("comment") in skip:
                continue
            if set(event) == {"id", "at"} and "id" in skip:
                continue
            return event

    def next_of(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        """Return the next event named ``name``, dropping everything before it."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(max(0.01, deadline - time.monotonic()), skip=())
            if event.get("event") == name or event.get("comment") == name:
                return event

    def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Collect the non-ping events that arrive within ``seconds``."""
        found = []
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                break
            if (event.get("event") != "ping" and event.get("comment") != "keep-alive"
                    and set(event) != {"id", "at"}):
                found.append(event)
        return found

    def close(self) -> None:
        self.response.close()


def wait_for(condition: Any, what: str, timeout: float = 20) -> None:
    """Wait until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        time.sleep(0.02)


def connection_owners(server: Any) -> dict[int, int]:
    """Map the client port of each connection a worker accepted to that worker's pid."""
    from pathlib import Path

    peers = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == server.port and fields[3] == "01":
                peers[fields[9]] = int(fields[2].rsplit(":", 1)[1], 16)
    owners = {}
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    for pid in map(int, children):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in peers:
                owners[peers[target[8:-1]]] = pid
    return owners


def workers_with_streams(server: Any) -> set[int]:
    """Return the pids of the server's workers that hold an established client connection."""
    return set(connection_owners(server).values())


def wait_for_workers(server: Any, count: int = 2) -> None:
    """Wait until ``count`` workers accept connections (the server answers once one does)."""
    seen: set[int] = set()

    def another_worker_accepts() -> bool:
        with socket.create_connection(("127.0.0.1", server.port)) as probe:
            port = probe.getsockname()[1]
            wait_for(lambda: port in connection_owners(server), "a worker to accept")
            seen.add(connection_owners(server)[port])
        return len(seen) >= count

    wait_for(another_worker_accepts, f"{count} workers to accept connections")


def send(server: Any, user: str = "alice", *args: str) -> dict[str, Any]:
    """Store a notification through the CLI (another process) and return it."""
    return json.loads(server.cli("send", "--user", user, *args).stdout.splitlines()[0])


def open_stream(server: Any, path: str, user: str = "alice", org: str | None = None,
                **kwargs: Any) -> SSEClient:
    headers = {**server.headers(user, org), **kwargs.pop("headers", {})}
    return SSEClient(server.url(path), headers, **kwargs)


def connect_dataset(server: Any, user: str = "alice", query: str = "",
                    **kwargs: Any) -> tuple[SSEClient, int]:
    """Open a dataset stream and return it with the cursor it announced."""
    stream = open_stream(server, "/api/v1/notifications/stream" + query, user, **kwargs)
    assert stream.response.status_code == 200, stream.response.text
    assert stream.next(skip=("ping",)) .get("retry") == "3000"
    cursor = stream.next(skip=("ping",))
    return stream, int(cursor["id"])


def test_dataset_stream_delivers_across_processes_with_filters(live_server: Any) -> None:
    # Up to 22 streams of alice until both workers hold one: more than the default cap.
    server = live_server(workers=2, env={**FAST, "NOTIFICATIONS_DATASET_STREAM_LIMIT": "50"})
    wait_for_workers(server)
    alice, _ = connect_dataset(server)
    response = alice.response
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    # Pings: named, with an empty data line, on the configured interval.
    first, second = alice.next_of("ping"), alice.next_of("ping")
    assert first["data"] == "" and 0.1 < second["at"] - first["at"] < 1.0
    assert "data:" in alice.raw_lines and "data: " not in alice.raw_lines

    filtered, _ = connect_dataset(server, query=f"?dataset_id={DATASET}")
    bob, _ = connect_dataset(server, user="bob")
    # Several streams of one user, until both workers hold some: every write below is
    # then delivered by two watchers in two processes.
    extra = [connect_dataset(server)[0] for _ in range(2)]
    while len(workers_with_streams(server)) < 2 and len(extra) < 20:
        extra.append(connect_dataset(server)[0])
    assert len(workers_with_streams(server)) == 2

    metadata = {"view_name": "icecream", "dataset_name": "Ice cream", "result_count": 3,
                "batch_id": "b1", "is_alert": True}
    other = send(server, "alice", "--dataset", OTHER_DATASET, "--title", "other dataset")
    sent = send(server, "alice", "--dataset", DATASET, "--entity-type", "saved_view",
                "--entity-id", "v1", "--metadata", json.dumps(metadata), "--body", "line")

    event = alice.next()
    assert event["event"] == "notification" and int(event["id"]) == other["seq"]
    event = alice.next()
    assert int(event["id"]) == sent["seq"]
    body = json.loads(event["data"])
    assert body == {
        "id": sent["id"], "user_id": "alice", "entity_type": "saved_view", "entity_id": "v1",
        "title": "", "message": "line", "metadata": metadata, "dataset_id": DATASET,
        "created_at": sent["created_at"][:-1], "read_at": None,
    }
    for stream in extra:
        assert ([json.loads(stream.next()["data"])["id"] for _ in range(2)]
                == [other["id"], sent["id"]])
    # Both watchers have delivered both rows by now. The dataset filter drops the other
    # dataset; bob sees nothing of alice's.
    assert json.loads(filtered.next()["data"])["id"] == sent["id"]
    assert filtered.quiet(0.4) == []
    assert bob.quiet(0.3) == []
    for stream in (alice, filtered, bob, *extra):
        stream.close()


def test_reconnect_replays_exactly_what_was_missed(live_server: Any) -> None:
    server = live_server(workers=2, env=FAST)
    stream, cursor = connect_dataset(server)
    seen = send(server, "alice", "--title", "seen")
    assert json.loads(stream.next()["data"])["id"] == seen["id"]
    stream.close()
    last_id = seen["seq"]

    # One CLI run: three for alice and, between them, one for bob.
    made = [json.loads(line) for line in server.cli(
        "send", "--user", "alice", "--user", "alice", "--user", "bob", "--user", "alice",
        "--title", "missed").stdout.splitlines()]
    missed = [m for m in made if m["user_id"] == "alice"]
    assert len(missed) == 3

    # Header, as a browser's EventSource sends it on reconnect.
    again = open_stream(server, "/api/v1/notifications/stream",
                        headers={"Last-Event-ID": str(last_id)})
    assert again.next().get("retry") == "3000"
    replayed = [again.next() for _ in range(3)]
    assert [int(e["id"]) for e in replayed] == [m["seq"] for m in missed]
    assert [json.loads(e["data"])["id"] for e in replayed] == [m["id"] for m in missed]
    live = send(server, "alice", "--title", "live")
    assert json.loads(again.next()["data"])["id"] == live["id"]
    assert again.quiet(0.3) == []
    again.close()

    # Query parameter, for clients that cannot set headers; with a dataset filter.
    in_dataset = send(server, "alice", "--dataset", DATASET, "--title", "in dataset")
    by_query = open_stream(server, f"/api/v1/notifications/stream?last_event_id={live['seq']}"
                           f"&dataset_id={DATASET}")
    by_query.next()
    assert json.loads(by_query.next()["data"])["id"] == in_dataset["id"]
    by_query.close()

    # Nothing missed: only the cursor, no duplicates.
    caught_up = open_stream(server, "/api/v1/notifications/stream",
                            headers={"Last-Event-ID": str(in_dataset["seq"])})
    caught_up.next()
    assert caught_up.quiet(0.3) == []
    caught_up.close()


def test_gap_too_large_or_unknown_id_sends_reset(live_server: Any) -> None:
    server = live_server(workers=1, env=FAST)
    watching, cursor = connect_dataset(server)
    server.cli("send", *(["--user", "alice"] * 1001), "--title", "flood")
    # Reconnect once the worker's watcher has seen the whole flood: a client that comes
    # back before gets what the watcher has seen replayed and the rest live, not a reset.
    while int(watching.next(skip=("ping",)).get("id", 0)) < cursor + 1001:
        pass
    watching.close()
    for headers in ({"Last-Event-ID": str(cursor)}, {"Last-Event-ID": "not-an-id"},
                    {"Last-Event-ID": str(10**9)}):
        stream = open_stream(server, "/api/v1/notifications/stream", headers=headers)
        stream.next()  # retry
        reset = stream.next()
        assert reset["event"] == "reset", headers
        assert "detail" in json.loads(reset["data"])
        assert int(reset["id"]) >= cursor + 1001 or headers["Last-Event-ID"] != str(cursor)
        assert stream.quiet(0.2) == []
        stream.close()


def test_dataset_stream_reports_internal_errors_and_stays_open(live_server: Any) -> None:
    server = live_server(workers=1, env=FAST)
    stream, _ = connect_dataset(server)
    db = server.raw(autocommit=True)
    db.execute("ALTER TABLE notifications RENAME TO notifications_away")
    try:
        db.execute("INSERT INTO notifications_away (id, user_id, created_at) VALUES ('x', 'z', 1)")
        error = stream.next_of("error")
        assert json.loads(error["data"]) == {
            "detail": "Internal error while reading notifications; retrying"
        }
    finally:
        db.execute("ALTER TABLE notifications_away RENAME TO notifications")
        db.close()
    # Same connection, still open: the next notification arrives.
    after = send(server, "alice", "--title", "after")
    assert json.loads(stream.next_of("notification")["data"])["id"] == after["id"]
    stream.close()


def org_stream(server: Any, user: str = "alice", org: str = "acme") -> SSEClient:
    return open_stream(server, "/api/v1/org/notifications/stream", user, org)


def test_organization_stream_follows_the_unread_count(live_server: Any) -> None:
    server = live_server(workers=2, env={**FAST, "NOTIFICATIONS_STREAM_LIMIT": "20"})
    wait_for_workers(server)
    first = send(server, "alice", "--org", "acme", "--title", "one")
    streams = [org_stream(server) for _ in range(3)]
    while len(workers_with_streams(server)) < 2 and len(streams) < 20:
        streams.append(org_stream(server))
    assert len(workers_with_streams(server)) == 2
    for stream in streams:
        assert stream.response.status_code == 200
        assert stream.response.headers["Content-Type"].startswith("text/event-stream")
        event = stream.next()
        assert (event["event"], event["data"]) == ("unread", '{"unread": 1}')
    assert streams[0].next_of("keep-alive")["comment"] == "keep-alive"

    # A new notification (CLI process) raises it everywhere.
    send(server, "alice", "--org", "acme", "--title", "two")
    for stream in streams:
        assert json.loads(stream.next()["data"]) == {"unread": 2}
    # Another organization's or user's notification does not change it: no event.
    send(server, "alice", "--org", "other", "--title", "elsewhere")
    send(server, "bob", "--org", "acme", "--title", "bob's")
    assert streams[0].quiet(0.4) == []

    # A read through the API (one worker) lowers it on every stream (both workers).
    ids = {"ids": ["ntf_" + first["id"].replace("-", "")]}
    response = requests.post(server.url("/api/v1/org/notifications/mark-read"), json=ids,
                             headers=server.headers("alice", "acme"), timeout=5)
    assert response.status_code == 200 and response.json()["unread"] == 1
    for stream in streams:
        assert json.loads(stream.next()["data"]) == {"unread": 1}
    # A read from the dataset variant counts too (any read, any client).
    response = requests.post(server.url("/api/v1/notifications/read-all"),
                             headers=server.headers("alice", "acme"), timeout=5)
    assert response.json()["count"] >= 1
    for stream in streams:
        assert json.loads(stream.next()["data"]) == {"unread": 0}
    # Marking again changes nothing: no repeated event.
    requests.post(server.url("/api/v1/org/notifications/mark-read"),
                  headers=server.headers("alice", "acme"), timeout=5)
    assert streams[1].quiet(0.4) == []
    # A purge of unread rows (the CLI, another process) is counted too.
    send(server, "alice", "--org", "acme", "--title", "to purge")
    for stream in streams:
        assert json.loads(stream.next()["data"]) == {"unread": 1}
    server.cli("purge", "--older-than", "0d")
    for stream in streams:
        assert json.loads(stream.next()["data"]) == {"unread": 0}
    for stream in streams:
        stream.close()


def test_stream_limit_spans_workers_and_frees_slots(live_server: Any) -> None:
    server = live_server(workers=2, env={**FAST, "NOTIFICATIONS_STREAM_LIMIT": "2"})
    # A lease left by a worker that died: expired, so it does not count.
    db = server.raw(autocommit=True)
    db.execute("INSERT INTO stream_leases (id, user_id, owner, expires_at) "
               "VALUES ('dead', 'alice', 'gone:1:x', 1)")
    db.close()
    held = [org_stream(server) for _ in range(2)]
    assert [s.response.status_code for s in held] == [200, 200]
    for stream in held:
        stream.next()

    over = requests.get(server.url("/api/v1/org/notifications/stream"),
                        headers=server.headers("alice", "acme"), timeout=5)
    assert over.status_code == 429
    body = over.json()
    assert set(body) == {"code", "message", "detail", "hint", "details", "request_id"}
    assert body["code"] == "sse_connection_limit_exceeded"
    assert body["details"] == {"limit": 2, "active": 2}
    assert body["request_id"] == over.headers["X-Request-Id"]
    assert 1 <= int(over.headers["Retry-After"]) <= 30
    # Another user is not affected.
    bob = org_stream(server, "bob")
    assert bob.response.status_code == 200
    bob.close()

    held[0].close()
    deadline = time.monotonic() + 3
    while True:
        again = org_stream(server)
        if again.response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert again.response.status_code == 200, "a closed stream must free its slot"
    assert json.loads(again.next()["data"]) == {"unread": 0}
    again.close()
    held[1].close()


@pytest.mark.sqlite_only
def test_sqlite_lock_held_elsewhere_never_stalls_the_worker(live_server: Any) -> None:
    """Another process holds the write lock for 2 s: pings stay on time, /healthz is fast."""
    server = live_server(workers=1, env=FAST)
    streams = [connect_dataset(server)[0] for _ in range(3)]
    for stream in streams:
        stream.next_of("ping")
    locker = sqlite3.connect(server.db_path, isolation_level=None, timeout=5)
    locker.execute("BEGIN IMMEDIATE")
    lock_started = time.monotonic()
    writes: list[tuple[int, float]] = []

    def write() -> None:
        # Writes on the same worker now wait for the lock (in the threadpool).
        started = time.monotonic()
        status = requests.post(server.url("/api/v1/notifications/read-all"),
                               headers=server.headers(), timeout=10).status_code
        writes.append((status, time.monotonic() - started))

    threads = [threading.Thread(target=write) for _ in range(2)]
    for thread in threads:
        thread.start()
    lease = threading.Thread(target=lambda: writes.append(
        (org_stream(server).response.status_code, time.monotonic() - lock_started)))
    lease.start()
    health = []
    try:
        while time.monotonic() - lock_started < 2.0:
            started = time.monotonic()
            assert requests.get(server.url("/healthz"), timeout=5).status_code == 200
            health.append(time.monotonic() - started)
            time.sleep(0.1)
        window_end = time.monotonic()
        # Still holding the lock: every stream kept getting its pings all along.
        for stream in streams:
            pings = [lock_started]
            while not stream.events.empty():
                event = stream.events.get_nowait()
                if event.get("event") == "ping" and event["at"] >= lock_started:
                    pings.append(event["at"])
            pings.append(window_end)
            gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
            assert len(pings) - 2 >= 5 and max(gaps) < 1.0, gaps
        assert not any(status for status, _ in writes), "a write got through a held lock"
    finally:
        locker.execute("COMMIT")
        locker.close()
    for thread in (*threads, lease):
        thread.join(10)
    assert max(health) < 0.1, health
    for stream in streams:
        stream.close()
    assert [status for status, _ in writes] == [200, 200, 200]
    assert all(waited >= 1.5 for _, waited in writes), "the writes did wait for the lock"


def test_sigterm_ends_open_streams_quickly(live_server: Any) -> None:
    server = live_server(workers=2, env=FAST)
    streams = [connect_dataset(server)[0] for _ in range(2)] + [org_stream(server)]
    streams[-1].next()
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5, "graceful shutdown waited for open streams"
    for stream in streams:
        # The server ended the response: the client sees the end of the stream.
        assert stream.next(timeout=2, skip=("ping", "keep-alive", "id")).get("closed")


#: Installed as ``sitecustomize`` in the server: the second worker stops at the very start of
#: its boot, before it has signal handlers of its own, until the test lets it go on.
HOLD_SECOND_WORKER = """
import os, pathlib, time
from gunicorn.workers.ggevent import GeventWorker

boot = GeventWorker.init_process

def init_process(self):
    if self.age == 2:
        hold = pathlib.Path(os.environ["HOLD_DIR"])
        (hold / "held").touch()
        deadline = time.monotonic() + 20
        while not (hold / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    boot(self)

GeventWorker.init_process = init_process
"""


def test_a_worker_still_booting_does_not_lose_sigterm(live_server: Any, tmp_path: Any) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "sitecustomize.py").write_text(HOLD_SECOND_WORKER)
    server = live_server(workers=2, env={
        "PYTHONPATH": os.pathsep.join(filter(None, [str(hold), os.environ.get("PYTHONPATH")])),
        "HOLD_DIR": str(hold),
    })
    wait_for(lambda: (hold / "held").exists(), "the second worker to start booting")
    started = time.monotonic()
    os.killpg(server.proc.pid, signal.SIGTERM)
    # Both the test's SIGTERM and the one the arbiter passes on reach the held worker.
    wait_for(lambda: "Handling signal: term" in server.log_path.read_text(), "the arbiter")
    time.sleep(0.3)
    (hold / "go").touch()
    server.proc.wait(timeout=15)
    assert time.monotonic() - started < 5, "a worker that was booting waited for graceful_timeout"
    assert server.log_path.read_text().count("Worker exiting") == 2


def test_a_stalled_client_does_not_delay_the_others(live_server: Any) -> None:
    server = live_server(workers=1, env=FAST)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", server.port))
    token = server.headers()["Authorization"]
    stalled.sendall(f"GET /api/v1/notifications/stream HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: {token}\r\n\r\n".encode())
    assert stalled.recv(12) == b"HTTP/1.1 200"  # then it never reads again
    reader, _ = connect_dataset(server)
    body = "x" * 20_000  # 6 MB in all: more than the socket buffers of the stalled client hold
    server.cli("send", *(["--user", "alice"] * 300), "--body", body)
    started = time.monotonic()
    received = [reader.next(timeout=5) for _ in range(300)]
    assert all(json.loads(e["data"])["message"] == body for e in received)
    assert time.monotonic() - started < 3
    assert requests.get(server.url("/healthz"), timeout=1).status_code == 200
    reader.close()
    stalled.close()


def test_writes_in_the_same_process_wake_the_watcher_at_once(live_server: Any) -> None:
    """With a 5 s poll, only the in-process signal can deliver within a second."""
    server = live_server(workers=1, env={**FAST, "NOTIFICATIONS_POLL_INTERVAL": "5",
                                         "NOTIFICATIONS_INGEST_TOKEN": "ingest-token"})
    stream, _ = connect_dataset(server)
    inbox = org_stream(server)
    assert json.loads(inbox.next()["data"]) == {"unread": 0}
    started = time.monotonic()
    response = requests.post(server.url("/internal/v1/notifications"),
                             headers={"Authorization": "Bearer ingest-token"},
                             json={"user_id": "alice", "organization_id": "acme", "title": "now"},
                             timeout=5)
    assert response.status_code == 201, response.text
    assert json.loads(stream.next(timeout=1)["data"])["title"] == "now"
    assert json.loads(inbox.next(timeout=1)["data"]) == {"unread": 1}
    requests.post(server.url("/api/v1/org/notifications/mark-read"),
                  headers=server.headers("alice", "acme"), timeout=5)
    assert json.loads(inbox.next(timeout=1)["data"]) == {"unread": 0}
    assert time.monotonic() - started < 2
    stream.close()
    inbox.close()
