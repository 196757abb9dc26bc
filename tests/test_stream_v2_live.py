"""Version 2 streams against a real `notifications serve --workers 2`: every tab converges.

A client keeps what the stream tells it (each notification's state times, the counts) and
applies each event as it comes; the tests compare that with the database.
"""
from __future__ import annotations

import json
import queue
from typing import Any

import pytest
import requests
from conftest import DATASET
from test_stream import (
    FAST,
    SSEClient,
    connect_dataset,
    org_stream,
    send,
    wait_for,
    wait_for_workers,
    workers_with_streams,
)

from notifications.core.serialize import iso_utc, ntf_id

pytestmark = pytest.mark.both_databases

V2_STREAM = "/api/v2/notifications/stream"
INGEST = {"NOTIFICATIONS_INGEST_TOKEN": "ingest-token", "NOTIFICATIONS_STREAM_LIMIT": "30"}
STATES = ("seen_at", "read_at", "archived_at")


class Inbox:
    """What one tab knows: the state of each notification and the counts, event by event."""

    def __init__(self, server: Any, user: str = "alice") -> None:
        self.server = server
        self.user = user
        self.items: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, int] | None = None
        self.last_id: int | None = None
        self.resets = 0
        self.changes = 0
        self.stream = self.connect()

    def connect(self, last_id: int | None = None) -> SSEClient:
        headers = self.server.headers(self.user)
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        stream = SSEClient(self.server.url(V2_STREAM), headers)
        assert stream.response.status_code == 200, stream.response.text
        assert stream.response.headers["Content-Type"].startswith("text/event-stream")
        assert stream.next(skip=("keep-alive",)).get("retry") == "3000"
        counts = stream.next(skip=("keep-alive",))
        assert counts.get("event") == "counts", counts
        self.apply(counts)
        return stream

    def reconnect(self) -> None:
        """Connect again with the last id seen, as EventSource does."""
        self.stream = self.connect(self.last_id)

    def catch_up(self) -> None:
        """Apply every event received so far."""
        while True:
            try:
                event = self.stream.events.get_nowait()
            except queue.Empty:
                return
            self.apply(event)

    def apply(self, event: dict[str, Any]) -> None:
        """Apply one event as a client would."""
        name = event.get("event")
        if name is None:
            return
        if "id" in event:
            self.last_id = int(event["id"])
        data = json.loads(event["data"])
        if name == "notification.created":
            self.items[data["id"]] = {k: data[k] for k in STATES}
            self.changes += 1
        elif name == "notification.updated":
            # One the tab does not hold (not on the pages it loaded, or created and deleted
            # before the stream read it: it gets no created event) is left out.
            if data["id"] in self.items:
                self.items[data["id"]] = {k: data[k] for k in STATES}
            self.changes += 1
        elif name == "notification.deleted":
            self.items.pop(data["id"], None)
            self.changes += 1
        elif name == "counts":
            self.counts = data
        elif name == "reset":
            self.resets += 1

    def state(self) -> tuple[dict[str, dict[str, Any]], dict[str, int] | None]:
        self.catch_up()
        return self.items, self.counts

    def close(self) -> None:
        self.stream.close()


def stored(server: Any, user: str = "alice") -> tuple[dict[str, dict[str, Any]],
                                                         dict[str, int]]:
    """What the database holds for ``user``, as a tab would know it."""
    db = server.raw()
    try:
        rows = db.execute("SELECT id, seen_at, read_at, archived_at FROM notifications "
                          "WHERE user_id = ?", (user,)).fetchall()
    finally:
        db.close()
    items = {ntf_id(r[0]): dict(zip(STATES, map(iso_utc, r[1:]), strict=True)) for r in rows}
    live = [r for r in rows if r[3] is None]
    counts = {"total": len(live), "unread": sum(r[2] is None for r in live),
              "unseen": sum(r[1] is None and r[2] is None for r in live)}
    return items, counts


def converge(server: Any, tabs: list[Inbox], what: str) -> None:
    """Wait until every tab knows exactly what the database holds."""
    wait_for(lambda: all(tab.state() == stored(server) for tab in tabs), what)
    assert all(tab.resets == 0 for tab in tabs)


def ingest(server: Any, *items: dict[str, Any]) -> list[str]:
    response = requests.post(server.url("/internal/v1/notifications"),
                             headers={"Authorization": "Bearer ingest-token"},
                             json={"notifications": list(items)}, timeout=5)
    assert response.status_code == 201, response.text
    return list(response.json()["ids"])


@pytest.mark.slow
def test_tabs_on_both_workers_converge_whatever_made_the_change(live_server: Any) -> None:
    server = live_server(workers=2, env={**FAST, **INGEST})
    wait_for_workers(server)
    tabs = [Inbox(server) for _ in range(2)]
    while len(workers_with_streams(server)) < 2 and len(tabs) < 20:
        tabs.append(Inbox(server))
    assert len(workers_with_streams(server)) == 2

    # Created: by the CLI (another process) and by ingest (one of the workers).
    first = send(server, "alice", "--org", "acme", "--kind", "review.created", "--title", "one")
    alert = send(server, "alice", "--dataset", DATASET, "--kind", "monitor.alert")
    ingested = ingest(server, *({"user_id": "alice", "organization_id": "acme",
                                 "kind": "version.published", "title": f"i{n}"}
                                for n in range(3)))
    send(server, "bob", "--org", "acme", "--title", "not alice's")
    converge(server, tabs, "the created notifications")
    assert all(len(tab.items) == 5 and tab.counts == {"total": 5, "unread": 5, "unseen": 5}
               for tab in tabs)

    # Read: through the dataset variant, the organization variant, and the CLI.
    response = requests.post(server.url(f"/api/v1/notifications/{alert['id']}/read"),
                             headers=server.headers("alice"), timeout=5)
    assert response.status_code == 200, response.text
    response = requests.post(server.url("/api/v1/org/notifications/mark-read"),
                             json={"ids": [ntf_id(first["id"])]},
                             headers=server.headers("alice", "acme"), timeout=5)
    assert response.status_code == 200, response.text
    server.cli("mark-read", "--user", "alice", "--id", ingested[0])
    converge(server, tabs, "the reads")
    assert all(tab.counts == {"total": 5, "unread": 2, "unseen": 2} for tab in tabs)

    # Deleted: a purge of the read ones (the CLI), then what is left.
    server.cli("purge", "--older-than", "0d", "--read-only")
    converge(server, tabs, "the purge of read notifications")
    assert all(len(tab.items) == 2 for tab in tabs)
    server.cli("purge", "--older-than", "0d")
    send(server, "alice", "--title", "after the purge")
    converge(server, tabs, "the purge of everything")
    assert all(len(tab.items) == 1 and tab.counts == {"total": 1, "unread": 1, "unseen": 1}
               for tab in tabs)
    for tab in tabs:
        tab.close()
    assert "Traceback" not in server.log()


@pytest.mark.slow
def test_a_tab_that_missed_50_changes_catches_up_on_reconnect(live_server: Any) -> None:
    server = live_server(workers=2, env={**FAST, **INGEST})
    steady, roaming = Inbox(server), Inbox(server)
    server.cli("send", *(["--user", "alice"] * 5), "--org", "acme", "--title", "seed")
    converge(server, [steady, roaming], "the seed")
    roaming.close()
    missed_from = roaming.last_id
    assert missed_from is not None

    # 50 changes of alice's while the tab is away (and bob's, which it never sees): 20
    # created, 15 read (the CLI, the organization variant), the 15 read ones purged.
    made = [json.loads(line) for line in server.cli(
        "send", *(["--user", "alice", "--user", "bob"] * 20), "--org", "acme",
        "--title", "missed").stdout.splitlines()]
    mine = [m for m in made if m["user_id"] == "alice"]
    assert len(mine) == 20
    server.cli("mark-read", "--user", "alice", *[a for m in mine[:10] for a in ("--id", m["id"])])
    response = requests.post(server.url("/api/v1/org/notifications/mark-read"),
                             json={"ids": [ntf_id(m["id"]) for m in mine[10:15]]},
                             headers=server.headers("alice", "acme"), timeout=5)
    assert response.status_code == 200 and response.json()["unread"] == 10
    server.cli("purge", "--older-than", "0d", "--read-only")
    db = server.raw()
    try:
        (missed,) = db.execute("SELECT count(*) FROM changes WHERE position > ? "
                               "AND user_id = 'alice'", (missed_from,)).fetchone()
        # A notification created and deleted since has no record to send: its created
        # entry is left out, its updates and deletion are sent.
        (unsendable,) = db.execute(
            "SELECT count(*) FROM changes AS c WHERE position > ? AND user_id = 'alice' "
            "AND change = 'created' AND NOT EXISTS "
            "(SELECT 1 FROM notifications AS n WHERE n.seq = c.seq)", (missed_from,)).fetchone()
    finally:
        db.close()
    assert missed == 50 and unsendable == 15

    converge(server, [steady], "the tab that stayed")
    roaming.changes = 0
    roaming.reconnect()
    converge(server, [steady, roaming], "the tab that came back")
    # Exactly what it missed, in order, with no reset.
    assert roaming.changes == missed - unsendable and roaming.resets == 0
    assert roaming.state() == steady.state() and len(roaming.items) == 10
    # And it goes on live.
    send(server, "alice", "--title", "live")
    converge(server, [steady, roaming], "a change after the reconnect")
    steady.close()
    roaming.close()


# --- /metrics ---------------------------------------------------------------------------------


def open_streams(server: Any) -> dict[str, float]:
    """``notifications_open_streams`` by kind, as a scrape of any worker sums them."""
    body = requests.get(server.url("/metrics"), timeout=10).text
    found = {}
    for line in body.splitlines():
        if line.startswith("notifications_open_streams{"):
            labels, value = line.rsplit(" ", 1)
            found[labels.split('kind="', 1)[1].split('"', 1)[0]] = float(value)
    return found


def test_metrics_count_the_version_2_streams_of_every_worker(live_server: Any) -> None:
    server = live_server(workers=2, env={**FAST, **INGEST})
    wait_for_workers(server)
    tabs = [Inbox(server) for _ in range(2)]
    while len(workers_with_streams(server)) < 2 and len(tabs) < 20:
        tabs.append(Inbox(server))
    assert len(workers_with_streams(server)) == 2
    dataset, _ = connect_dataset(server)
    organization = org_stream(server)
    assert organization.response.status_code == 200
    expected = {"dataset": 1.0, "organization": 1.0, "v2": float(len(tabs))}
    wait_for(lambda: open_streams(server) == expected, f"the metrics to show {expected}")

    # Closed streams leave the gauge, on whichever worker held them.
    for tab in tabs[1:]:
        tab.close()
    dataset.close()
    expected = {"dataset": 0.0, "organization": 1.0, "v2": 1.0}
    wait_for(lambda: open_streams(server) == expected, f"the metrics to show {expected}")
    tabs[0].close()
    organization.close()
