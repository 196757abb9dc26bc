"""One user's dataset streams cannot starve the others: a per-user cap and paged replay."""
from __future__ import annotations

import socket
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from notifications import create_app
from notifications.http.variants import DATASET_FRAMES
from notifications.realtime.events import dataset_events
from notifications.realtime.history import REPLAY_PAGE
from notifications.realtime.hub import hub_of
from notifications.store import feed, inserts, leases
from notifications.store.scope import Scope

pytestmark = pytest.mark.both_databases

STREAM = "/api/v1/notifications/stream"


# --- the per-user cap -------------------------------------------------------------------


def test_dataset_streams_per_user_are_capped_with_a_429_in_detail_format(client: Any, auth: Any,
                                                                          app: Any) -> None:
    limit = app.config["DATASET_STREAM_LIMIT"]
    assert limit == 10
    with app.app_context():
        # Organization streams have slots of their own: they do not count here.
        for _ in range(5):
            assert leases.acquire_lease("alice", "elsewhere", 5, 30_000_000).lease_id
        for _ in range(limit):
            assert leases.acquire_lease("alice", "elsewhere", limit, 30_000_000,
                                        "dataset").lease_id
    response = client.get(STREAM, headers=auth.headers("alice"))
    assert response.status_code == 429
    assert response.json == {"detail": "Too many open notification streams for this user."}
    assert int(response.headers["Retry-After"]) >= 1
    # Another user is not affected.
    other = client.get(STREAM, headers=auth.headers("bob"), buffered=False)
    assert other.status_code == 200
    other.close()


def test_the_dataset_cap_is_a_setting(app_config: dict[str, Any], auth: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFICATIONS_DATASET_STREAM_LIMIT", "2")
    app = create_app(app_config)
    assert app.config["DATASET_STREAM_LIMIT"] == 2
    with pytest.raises(Exception, match="NOTIFICATIONS_DATASET_STREAM_LIMIT"):
        create_app({**app_config, "DATASET_STREAM_LIMIT": "0"})


def test_the_cap_holds_across_workers(live_server: Any) -> None:
    server = live_server(workers=2, env={"NOTIFICATIONS_DATASET_STREAM_LIMIT": "3"})
    opened = []
    try:
        for _ in range(3):
            response = requests.get(server.url(STREAM), headers=server.headers("alice"),
                                    stream=True, timeout=5)
            assert response.status_code == 200
            opened.append(response)
        # Over new connections, whichever worker takes them.
        for _ in range(4):
            refused = requests.get(server.url(STREAM), headers=server.headers("alice"), timeout=5)
            assert refused.status_code == 429 and set(refused.json()) == {"detail"}
            assert int(refused.headers["Retry-After"]) >= 1
        organization = requests.get(server.url("/api/v1/org/notifications/stream"),
                                    headers=server.headers("alice", "acme"), stream=True, timeout=5)
        assert organization.status_code == 200
        organization.close()
        opened.pop().close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            again = requests.get(server.url(STREAM), headers=server.headers("alice"),
                                 stream=True, timeout=5)
            if again.status_code == 200:
                opened.append(again)
                break
            again.close()
            time.sleep(0.2)
        else:
            raise AssertionError("a closed stream's slot was not given back")
    finally:
        for response in opened:
            response.close()


# --- paged replay -----------------------------------------------------------------------


def drain(events: Any, until: str) -> list[str]:
    frames = []
    for frame in events:
        frames.append(frame)
        if until in frame:
            break
    return frames


def test_replay_is_read_and_sent_in_pages(app: Any, make: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    hub = hub_of(app)
    hub.start()
    assert 250 % REPLAY_PAGE == 0 and 250 // REPLAY_PAGE >= 3
    rows = make("alice", 250)
    make("bob", 5)
    calls: list[tuple[int, int]] = []
    replay = feed.replay

    def counted(scope: Scope, dataset_id: Any, after: int, upto: int, limit: int) -> Any:
        calls.append((after, limit))
        return replay(scope, dataset_id, after, upto, limit)

    monkeypatch.setattr(feed, "replay", counted)
    with app.app_context():
        hub.tick()
    events = dataset_events(hub, Scope("alice"), None, 0, frames=DATASET_FRAMES,
                            ping_interval=60, retry_ms=3000, replay_limit=1000)
    assert next(events) == "retry: 3000\n\n"
    page = REPLAY_PAGE
    frames = []
    for n in range(250 // page):
        frames.append(next(events))
        # One page per frame, read only when the previous one has been taken.
        assert frames[-1].count("event: notification") == page
        cursors = [0] + [rows[k * page - 1]["seq"] for k in range(1, n + 1)]
        assert calls == [(cursor, page) for cursor in cursors]
    ids = [line[4:] for frame in frames for line in frame.splitlines()
           if line.startswith("id: ")]
    assert ids == [str(r["seq"]) for r in rows]
    events.close()
    hub.shutdown()


@pytest.mark.parametrize("missed, reset", [(1000, False), (1001, True)])
def test_a_gap_over_the_limit_is_a_reset_without_reading_it(app: Any, make: Any, missed: int,
                                                             reset: bool) -> None:
    hub = hub_of(app)
    hub.start()
    make("alice", missed)
    with app.app_context():
        hub.tick()
    events = dataset_events(hub, Scope("alice"), None, 0, frames=DATASET_FRAMES,
                            ping_interval=60, retry_ms=3000, replay_limit=1000)
    next(events)
    frames = [next(events)]
    if reset:
        assert "event: reset" in frames[0] and "event: notification" not in frames[0]
    else:
        while sum(f.count("event: notification") for f in frames) < missed:
            frames.append(next(events))
        assert len(frames) == missed // REPLAY_PAGE
        assert not any("event: reset" in f for f in frames)
    events.close()
    hub.shutdown()


# --- load: replaying streams of one user against a real server ----------------------------

REPLAYING_STREAMS = 200


def worker_pids(server: Any) -> list[int]:
    """The gunicorn workers: children of the ``notifications serve`` process."""
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def unread_count_times(server: Any, n: int) -> list[float]:
    """Time ``n`` unread-count requests of another user, each on a new connection."""
    headers = server.headers("other")
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = requests.get(server.url("/api/v1/notifications/unread-count"), headers=headers,
                                timeout=10)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200 and response.json() == {"count": 20}
    return times


@pytest.mark.slow
def test_replaying_streams_of_one_user_slow_only_that_user(live_server: Any) -> None:
    server = live_server(workers=2, env={"NOTIFICATIONS_DATASET_STREAM_LIMIT": "1000"})
    app = create_app({"DATABASE_URL": server.db_url, "REQUIRE_KEY": False})
    metadata = {"view_name": "Orders over 1000", "dataset_name": "sales_2026", "result_count": 17,
                "batch_id": "a863a595-5aaf-45d3-89a9-073a73d59671", "is_alert": True}
    with app.app_context():
        inserts.create_notifications(
            {"user_id": "replayer", "title": f"Alert {i}: " + "x" * 200, "body": "y" * 300,
             "entity_type": "saved_view", "entity_id": str(i), "metadata": metadata}
            for i in range(1000))
        inserts.create_notifications({"user_id": "other", "title": "t"} for _ in range(20))
        from notifications.store.models import db

        db.engine.dispose()

    replayer = server.headers("replayer")["Authorization"]
    request = (f"GET {STREAM} HTTP/1.1\r\nHost: x\r\nAuthorization: {replayer}\r\n"
               f"Last-Event-ID: 0\r\n\r\n").encode()
    # Warm both workers up (imports, pools, one full replay read) before the baseline.
    unread_count_times(server, 20)
    for _ in range(4):
        with requests.get(server.url(STREAM), headers={"Authorization": replayer,
                                                       "Last-Event-ID": "0"},
                          stream=True, timeout=10) as warm:
            assert warm.status_code == 200
            next(warm.iter_content(65536))
    time.sleep(1)
    pids = worker_pids(server)
    assert len(pids) == 2
    before = {pid: rss_mb(pid) for pid in pids}

    sockets = []
    try:
        for _ in range(REPLAYING_STREAMS):
            sock = socket.socket()
            # A client that reads nothing: its receive buffer fills, then the server's.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(request)
            sockets.append(sock)
        # Every stream admitted and replaying (the answer has begun; nothing is consumed).
        for sock in sockets:
            sock.settimeout(30)
            assert sock.recv(16, socket.MSG_PEEK).startswith(b"HTTP/1.1 200")
        times = unread_count_times(server, 200)
        p99 = statistics.quantiles(times, n=100)[98]
        time.sleep(0.5)
        after = {pid: rss_mb(pid) for pid in pids}
    finally:
        for sock in sockets:
            sock.close()
    assert p99 < 0.1, f"p99 {p99 * 1000:.1f} ms; slowest {max(times) * 1000:.1f} ms"
    growth = {pid: after[pid] - before[pid] for pid in pids}
    assert all(g < 50 for g in growth.values()), f"worker RSS grew by {growth} MB (from {before})"
    assert "Traceback" not in server.log()
