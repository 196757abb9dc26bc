"""Several nodes on one PostgreSQL database: two real `notifications serve` on two ports.

Each node is a whole service (here with two workers each), as a load balancer would see
them; they share nothing but the database. What one node writes reaches the streams of the
other through the change log and PostgreSQL's notifications; the per-user stream limit
counts the streams of every node; and under many concurrent writers on both nodes no
stream ever misses or repeats a notification, across reconnects with Last-Event-ID.
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import pytest
import requests
from test_stream import FAST, SSEClient, wait_for
from test_stream_v2_live import V2_STREAM

from notifications.core.serialize import ntf_id

TOKEN = "ingest-token"
ENV = {**FAST, "NOTIFICATIONS_INGEST_TOKEN": TOKEN, "NOTIFICATIONS_STREAM_LIMIT": "3"}


@pytest.fixture
def backend() -> str:
    """Every test here needs PostgreSQL (it skips with the reason without a server)."""
    return "postgresql"


@pytest.fixture
def nodes(live_server: Any) -> tuple[Any, Any]:
    first = live_server(workers=2, env=ENV)
    second = live_server(workers=2, env=ENV, db_url=first.db_url)
    return first, second


def ingest(node: Any, *items: dict[str, Any]) -> list[str]:
    response = requests.post(node.url("/internal/v1/notifications"),
                             headers={"Authorization": f"Bearer {TOKEN}"},
                             json={"notifications": list(items)}, timeout=10)
    assert response.status_code == 201, response.text
    return [ntf_id(i) if not i.startswith("ntf_") else i for i in response.json()["ids"]]


def v2_stream(node: Any, user: str, last_id: int | None = None) -> SSEClient:
    headers = node.headers(user)
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    stream = SSEClient(node.url(V2_STREAM), headers)
    assert stream.response.status_code == 200, stream.response.text
    assert stream.next(skip=("keep-alive",)).get("retry") == "3000"
    assert stream.next(skip=("keep-alive",)).get("event") == "counts"
    return stream


def test_a_write_on_one_node_reaches_streams_on_the_other(nodes: tuple[Any, Any]) -> None:
    first, second = nodes
    on_second = v2_stream(second, "alice")
    dataset_on_first = SSEClient(first.url("/api/v1/notifications/stream"),
                                 first.headers("alice"))
    assert dataset_on_first.next(skip=("ping",)).get("retry") == "3000"
    dataset_on_first.next(skip=("ping",))  # the cursor
    org_on_second = SSEClient(second.url("/api/v1/org/notifications/stream"),
                              second.headers("alice", "acme"))
    assert json.loads(org_on_second.next(skip=("keep-alive",))["data"]) == {"unread": 0}

    # Written through the first node: the second node's streams hear of it.
    (made,) = ingest(first, {"user_id": "alice", "organization_id": "acme", "title": "one"})
    created = on_second.next_of("notification.created")
    assert json.loads(created["data"])["id"] == made
    assert json.loads(org_on_second.next(skip=("keep-alive",))["data"]) == {"unread": 1}
    assert json.loads(dataset_on_first.next_of("notification")["data"])["title"] == "one"

    # Written through the second node: the first node's dataset stream gets the row.
    (other,) = ingest(second, {"user_id": "alice", "organization_id": "acme", "title": "two"})
    row = dataset_on_first.next_of("notification")
    assert json.loads(row["data"])["title"] == "two"
    assert json.loads(org_on_second.next(skip=("keep-alive",))["data"]) == {"unread": 2}

    # A read through the first node updates the unread streams on the second.
    response = requests.post(first.url("/api/v1/org/notifications/mark-read"),
                             json={"ids": [made]}, headers=first.headers("alice", "acme"),
                             timeout=5)
    assert response.status_code == 200 and response.json()["unread"] == 1
    assert json.loads(org_on_second.next(skip=("keep-alive",))["data"]) == {"unread": 1}
    updated = json.loads(on_second.next_of("notification.updated")["data"])
    assert updated["id"] == made and updated["read_at"] is not None
    # And the CLI, a third process on either node's database, reaches both.
    first.cli("mark-read", "--user", "alice", "--all")
    assert json.loads(org_on_second.next(skip=("keep-alive",))["data"]) == {"unread": 0}
    assert json.loads(on_second.next_of("notification.updated")["data"])["id"] == other
    for stream in (on_second, dataset_on_first, org_on_second):
        stream.close()


def test_postgresql_notifications_carry_a_write_to_the_other_node_not_polling(
        live_server: Any) -> None:
    # Polling would take up to a minute here: what arrives within a second came by the
    # listening connection's notification, on every worker of the other node.
    slow = {**ENV, "NOTIFICATIONS_POLL_INTERVAL": "60"}
    first = live_server(workers=2, env=slow)
    second = live_server(workers=2, env=slow, db_url=first.db_url)
    streams = [v2_stream(second, "alice") for _ in range(3)]
    time.sleep(0.5)  # the watchers' first ticks (LISTEN is up before a stream subscribes)
    delays = []
    for title in ("one", "two", "three"):
        (made,) = ingest(first, {"user_id": "alice", "title": title})
        returned = time.monotonic()
        for stream in streams:
            created = stream.next_of("notification.created", timeout=5)
            assert json.loads(created["data"])["id"] == made
            delays.append(created["at"] - returned)
    # Without the listening connection the watchers would only look again when it is
    # retried (every second), so the warning is what tells the two apart for certain.
    for node in (first, second):
        assert "change notifications unavailable" not in node.log_path.read_text()
    assert sorted(delays)[len(delays) // 2] < 0.5, delays


def test_the_stream_limit_counts_the_streams_of_every_node(nodes: tuple[Any, Any]) -> None:
    first, second = nodes
    held = [v2_stream(first, "alice"), v2_stream(second, "alice"), v2_stream(first, "alice")]
    for node in (second, first):
        refused = requests.get(node.url(V2_STREAM), headers=node.headers("alice"), timeout=5)
        assert refused.status_code == 429
        assert refused.json()["code"] == "sse_connection_limit_exceeded"
        assert int(refused.headers["Retry-After"]) >= 1
    # Another user is not limited by alice's streams.
    other = v2_stream(second, "bob")
    # A slot freed on one node can be taken on the other.
    held.pop(0).close()

    def reopened() -> bool:
        stream = SSEClient(second.url(V2_STREAM), second.headers("alice"))
        if stream.response.status_code != 200:
            return False
        held.append(stream)
        return True

    wait_for(reopened, "the freed slot to be taken through the other node", timeout=10)
    for stream in (*held, other):
        stream.close()


def events_until(stream: SSEClient, want: set[str], got: dict[str, list[int]],
                 timeout: float = 60) -> None:
    """Collect created ids (with their event ids) until every id of ``want`` came."""
    deadline = time.monotonic() + timeout
    while not want <= set(got):
        left = deadline - time.monotonic()
        assert left > 0, f"{len(want - set(got))} of {len(want)} notifications never came"
        event = stream.next_of("notification.created", timeout=left)
        got.setdefault(json.loads(event["data"])["id"], []).append(int(event["id"]))


@pytest.mark.slow
def test_concurrent_writers_on_two_nodes_miss_and_repeat_nothing(
        nodes: tuple[Any, Any]) -> None:
    """Writers on both nodes commit concurrently; each stream gets every row exactly once.

    With a sequence, transactions that take their numbers in one order can commit in
    another: a stream that moved past a higher number could miss a lower one committed
    later. Every acknowledged notification must come to every stream of its user once, in
    one order that both nodes agree on, also after a reconnect with Last-Event-ID.
    """
    first, second = nodes
    users = ["alice", "bob"]
    streams = {(user, node.port): v2_stream(node, user) for user in users
               for node in (first, second)}
    acknowledged: dict[str, set[str]] = {user: set() for user in users}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(node: Any, index: int) -> None:
        try:
            for batch in range(20):
                items = [{"user_id": users[(index + batch + k) % 2],
                          "title": f"{index}-{batch}-{k}"} for k in range(3)]
                ids = ingest(node, *items)
                with lock:
                    for item, made in zip(items, ids, strict=True):
                        acknowledged[item["user_id"]].add(made)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(node, i))
               for i, node in enumerate([first, second] * 6)]
    for thread in threads:
        thread.start()
    # Half-way, one stream of alice on the second node drops and comes back with its last id.
    roaming_key = ("alice", second.port)
    roaming_got: dict[str, list[int]] = {}
    roaming = streams[roaming_key]
    last_id = None
    for _ in range(40):
        event = roaming.next_of("notification.created", timeout=30)
        got_id = json.loads(event["data"])["id"]
        roaming_got.setdefault(got_id, []).append(int(event["id"]))
        last_id = int(event["id"])
    roaming.close()
    time.sleep(0.3)  # changes keep coming while it is away
    streams[roaming_key] = v2_stream(second, "alice", last_id)
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert sum(len(v) for v in acknowledged.values()) == 12 * 20 * 3

    orders: dict[str, list[list[str]]] = {user: [] for user in users}
    for (user, port), stream in streams.items():
        got = roaming_got if (user, port) == roaming_key else {}
        events_until(stream, acknowledged[user], got)
        stream.close()
        assert set(got) == acknowledged[user], f"{user} on {port}: extra notifications"
        repeated = {i: p for i, p in got.items() if len(p) > 1}
        assert not repeated, f"{user} on {port} got these more than once: {repeated}"
        ordered = sorted(got, key=lambda i: got[i][0])
        positions = [got[i][0] for i in ordered]
        assert positions == sorted(set(positions))
        orders[user].append(ordered)
    for user in users:
        # Both nodes' streams (and the one that reconnected) saw one order.
        assert orders[user][0] == orders[user][1]


def test_open_streams_hold_no_database_connection(live_server: Any) -> None:
    """With two pooled connections per worker, forty open streams leave reads free."""
    server = live_server(workers=2, env={**ENV, "NOTIFICATIONS_STREAM_LIMIT": "50",
                                         "NOTIFICATIONS_DATABASE_POOL_SIZE": "2"})
    streams = [v2_stream(server, "alice") for _ in range(40)]
    started = time.monotonic()
    for _ in range(20):
        response = requests.get(server.url("/api/v2/notifications/counts"),
                                headers=server.headers("bob"), timeout=10)
        assert response.status_code == 200
    assert time.monotonic() - started < 5
    (made,) = ingest(server, {"user_id": "alice", "title": "to every stream"})
    for stream in streams:
        assert json.loads(stream.next_of("notification.created")["data"])["id"] == made
    # Apps this test process built (other tests') keep sessions of their own.
    mine = f"notifications:{os.getpid()}"

    def sessions() -> int:
        with server.raw() as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'notifications:%' AND application_name <> ?",
                (mine,)).fetchone()
        return int(count)

    # Per worker: two pooled, the writer's and the listener's (sessions of servers that
    # ended before may take a moment to leave the list).
    def by_process() -> list[tuple[Any, ...]]:
        with server.raw() as conn:
            return [tuple(r) for r in conn.execute(
                "SELECT application_name, state, left(query, 40), count(*) "
                "FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'notifications:%' AND application_name <> ? "
                "GROUP BY 1, 2, 3", (mine,)).fetchall()]

    try:
        wait_for(lambda: sessions() <= 2 * 4, "at most four sessions per worker", timeout=10)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {by_process()}") from None
    for stream in streams:
        stream.close()


def test_a_dropped_listening_connection_delays_nothing_beyond_a_poll(
        nodes: tuple[Any, Any]) -> None:
    """Kill every listener: streams keep receiving (by polling), and again once it is back."""
    first, second = nodes
    stream = v2_stream(second, "alice")

    def listeners() -> list[int]:
        with first.raw() as conn:
            return [r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'LISTEN %'").fetchall()]

    # A worker's watcher (and its listener) starts with the worker's first stream.
    wait_for(lambda: len(listeners()) >= 1, "the stream's worker to listen")
    with first.raw(autocommit=True) as conn:
        for pid in listeners():
            conn.execute("SELECT pg_terminate_backend(?)", (pid,))
    for title in ("while down", "after"):
        (made,) = ingest(first, {"user_id": "alice", "title": title})
        event = stream.next_of("notification.created", timeout=5)
        assert json.loads(event["data"])["id"] == made
        wait_for(lambda: len(listeners()) >= 1, "the listener to come back")
    assert "change notifications unavailable" in second.log()
    stream.close()


def test_writes_go_on_after_the_database_ended_every_session(nodes: tuple[Any, Any]) -> None:
    """The server ends every connection (a restart, an administrator): the next write works."""
    first, second = nodes
    stream = v2_stream(second, "alice")
    ingest(first, {"user_id": "alice", "title": "before"})
    stream.next_of("notification.created")
    with first.raw(autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    (made,) = ingest(first, {"user_id": "alice", "title": "after"})
    event = stream.next_of("notification.created", timeout=10)
    assert json.loads(event["data"])["id"] == made
    response = requests.get(second.url("/api/v2/notifications/counts"),
                            headers=second.headers("alice"), timeout=10)
    assert response.status_code == 200 and response.json()["unread"] == 2
    stream.close()


def test_a_node_of_one_worker_serves(live_server: Any) -> None:
    # The webhook sender, the stream leases and the first request all start the writer at
    # once; connecting to PostgreSQL switches greenlets, which must not deadlock the worker.
    node = live_server(workers=1, env=ENV)
    stream = v2_stream(node, "alice")
    (made,) = ingest(node, {"user_id": "alice", "title": "one"})
    assert json.loads(stream.next_of("notification.created")["data"])["id"] == made
