"""Collapse keys (SPEC §12): a new notification replaces its user's unread, unarchived one
with the same key, in one transaction, and every variant sees a delete and an insert."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
import requests
from conftest import DATASET, RawConnection
from test_stream_v2 import Stream, opened

from notifications.core.serialize import ntf_id
from notifications.core.states import ACTION_UPDATES, Action
from notifications.http.ingest import INGEST_PATH
from notifications.realtime.events import dataset_events, organization_events
from notifications.realtime.hub import StreamHub, hub_of
from notifications.store import changelog, inbox
from notifications.store.scope import Scope

pytestmark = pytest.mark.both_databases

TOKEN = "ingest-token-0123456789abcdef"
H = {"Authorization": f"Bearer {TOKEN}"}
V2 = "/api/v2/notifications"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "INGEST_TOKEN": TOKEN}


@pytest.fixture
def hub(app: Any) -> Iterator[StreamHub]:
    hub = hub_of(app)
    hub.start()
    yield hub
    hub.shutdown()


def ingest(client: Any, body: Any) -> dict[str, Any]:
    response = client.post(INGEST_PATH, data=json.dumps(body), headers=H,
                           content_type="application/json")
    assert response.status_code == 201, response.json
    return dict(response.json)


def rows(db_url: str, user: str = "alice") -> list[tuple[Any, ...]]:
    """(id, collapse_key, collapsed_count, read_at, archived_at) of a user, oldest first."""
    with RawConnection(db_url) as conn:
        return [tuple(r) for r in conn.execute(
            "SELECT id, collapse_key, collapsed_count, read_at, archived_at FROM notifications "
            "WHERE user_id = ? ORDER BY seq", (user,)).fetchall()]


def one(client: Any, auth: Any, notification_id: str, user: str = "alice") -> dict[str, Any]:
    response = client.get(f"{V2}/{ntf_id(notification_id)}", headers=auth.headers(user))
    assert response.status_code == 200, response.json
    return dict(response.json)


# --- replacing ----------------------------------------------------------------------------


def test_a_second_notification_with_the_key_replaces_the_unread_one(
        client: Any, auth: Any, db_url: str) -> None:
    first = ingest(client, {"user_id": "alice", "title": "1 build failed", "collapse_key": "b"})
    assert first["created"] == 1
    assert one(client, auth, first["ids"][0])["collapsed_count"] == 0
    second = ingest(client, {"user_id": "alice", "title": "2 builds failed",
                             "collapse_key": "b"})
    assert second == {"created": 1, "duplicates": 0, "muted": 0, "ids": second["ids"]}
    third = ingest(client, {"user_id": "alice", "title": "3 builds failed",
                            "collapse_key": "b"})
    assert rows(db_url) == [(third["ids"][0], "b", 2, None, None)]
    record = one(client, auth, third["ids"][0])
    assert (record["title"], record["collapsed_count"]) == ("3 builds failed", 2)
    missing = client.get(f"{V2}/{ntf_id(first['ids'][0])}", headers=auth.headers("alice"))
    assert missing.status_code == 404
    # Keys are per user; no key collapses nothing.
    ingest(client, {"user_id": "bob", "collapse_key": "b"})
    ingest(client, {"notifications": [{"user_id": "alice"}, {"user_id": "alice"}]})
    assert len(rows(db_url)) == 3 and len(rows(db_url, "bob")) == 1


def test_a_read_or_archived_notification_is_not_replaced(client: Any, auth: Any,
                                                         db_url: str) -> None:
    read = ingest(client, {"user_id": "alice", "collapse_key": "k"})["ids"][0]
    client.patch(f"{V2}/{ntf_id(read)}", json={"read": True}, headers=auth.headers("alice"))
    archived = ingest(client, {"user_id": "alice", "collapse_key": "k"})["ids"][0]
    client.patch(f"{V2}/{ntf_id(archived)}", json={"archived": True},
                 headers=auth.headers("alice"))
    live = ingest(client, {"user_id": "alice", "collapse_key": "k"})["ids"][0]
    assert [(r[0], r[2]) for r in rows(db_url)] == [(read, 0), (archived, 0), (live, 0)]


def test_a_batch_repeating_a_key_is_applied_in_order(client: Any, auth: Any,
                                                     db_url: str) -> None:
    body = ingest(client, {"notifications": [
        {"user_id": "alice", "title": "a", "collapse_key": "k"},
        {"user_id": "alice", "title": "plain"},
        {"user_id": "alice", "title": "b", "collapse_key": "k"},
        {"user_id": "bob", "title": "bob", "collapse_key": "k"},
        {"user_id": "alice", "title": "c", "collapse_key": "k"},
    ]})
    assert body["created"] == 5 and len(body["ids"]) == 5
    stored = rows(db_url)
    assert [(r[0], r[2]) for r in stored] == [(body["ids"][1], 0), (body["ids"][4], 2)]
    assert one(client, auth, body["ids"][4])["title"] == "c"


def test_a_duplicate_dedupe_key_replaces_nothing(client: Any, db_url: str) -> None:
    """Dedupe comes first: an item already stored (by its dedupe key) is a duplicate and
    changes nothing, whatever its collapse key."""
    first = ingest(client, {"user_id": "alice", "dedupe_key": "d1", "collapse_key": "k"})
    again = ingest(client, {"user_id": "alice", "dedupe_key": "d1", "collapse_key": "k"})
    assert again == {"created": 0, "duplicates": 1, "muted": 0, "ids": first["ids"]}
    assert [r[0] for r in rows(db_url)] == first["ids"]
    newer = ingest(client, {"user_id": "alice", "dedupe_key": "d2", "collapse_key": "k"})
    assert [(r[0], r[2]) for r in rows(db_url)] == [(newer["ids"][0], 1)]


@pytest.mark.parametrize("key", ["", "k" * 256, 5])
def test_a_bad_collapse_key_is_422(client: Any, key: Any, db_url: str) -> None:
    response = client.post(INGEST_PATH, json={"user_id": "alice", "collapse_key": key},
                           headers=H)
    assert response.status_code == 422
    assert response.json["detail"][0]["loc"] == ["body", "collapse_key"]


def test_the_table_itself_refuses_a_second_unread_notification_of_a_key(
        client: Any, db_url: str) -> None:
    ingest(client, {"user_id": "alice", "collapse_key": "k"})
    with RawConnection(db_url) as conn, pytest.raises(Exception, match="(?i)unique"):
        conn.execute("INSERT INTO notifications (id, user_id, created_at, collapse_key) "
                     "VALUES ('x', 'alice', 1, 'k')")


# --- bringing an older one back -----------------------------------------------------------


@pytest.mark.parametrize("how", ["patch", "bulk"])
def test_an_older_notification_brought_back_leaves_its_collapse_group(
        client: Any, auth: Any, db_url: str, how: str) -> None:
    """Marked unread (or unarchived) while a newer one with its key is unread, an older
    notification comes back as an ordinary one: its key is cleared, both are unread, and the
    next notification with the key replaces the newer one only."""
    alice = auth.headers("alice")
    old = ingest(client, {"user_id": "alice", "title": "old", "collapse_key": "k"})["ids"][0]
    client.patch(f"{V2}/{ntf_id(old)}", json={"read": True, "archived": True}, headers=alice)
    new = ingest(client, {"user_id": "alice", "title": "new", "collapse_key": "k"})["ids"][0]
    if how == "patch":
        response = client.patch(f"{V2}/{ntf_id(old)}", json={"read": False, "archived": False},
                                headers=alice)
        assert response.status_code == 200 and response.json["read_at"] is None
    else:
        for action in ("unread", "unarchive"):
            response = client.post(f"{V2}/bulk", json={"action": action, "filter": {
                "archived": "all"}}, headers=alice)
            assert response.status_code == 200
    assert rows(db_url) == [(old, None, 0, None, None), (new, "k", 0, None, None)]
    newest = ingest(client, {"user_id": "alice", "collapse_key": "k"})["ids"][0]
    assert rows(db_url) == [(old, None, 0, None, None), (newest, "k", 1, None, None)]


def test_bringing_back_the_only_one_of_a_key_also_leaves_the_group(
        client: Any, auth: Any, db_url: str) -> None:
    """The rule does not depend on what else is stored: a notification a user brought back
    on purpose is never replaced."""
    alice = auth.headers("alice")
    old = ingest(client, {"user_id": "alice", "collapse_key": "k"})["ids"][0]
    client.patch(f"{V2}/{ntf_id(old)}", json={"read": True}, headers=alice)
    client.patch(f"{V2}/{ntf_id(old)}", json={"read": False}, headers=alice)
    new = ingest(client, {"user_id": "alice", "collapse_key": "k"})["ids"][0]
    assert [(r[0], r[1], r[2]) for r in rows(db_url)] == [(old, None, 0), (new, "k", 0)]


def test_an_update_that_brings_nothing_back_keeps_the_key(client: Any, auth: Any,
                                                          db_url: str) -> None:
    """{"seen": true, "read": false} on an unread notification only stamps seen."""
    alice = auth.headers("alice")
    live = ingest(client, {"user_id": "alice", "collapse_key": "k"})["ids"][0]
    client.patch(f"{V2}/{ntf_id(live)}", json={"seen": True, "read": False}, headers=alice)
    assert rows(db_url)[0][1] == "k"
    newer = ingest(client, {"user_id": "alice", "collapse_key": "k"})["ids"][0]
    assert [(r[0], r[2]) for r in rows(db_url)] == [(newer, 1)]


# --- what the streams see -----------------------------------------------------------------


def test_version_2_streams_get_deleted_then_created(app: Any, hub: StreamHub, client: Any,
                                                    auth: Any) -> None:
    scope = Scope.dataset_api("alice", None)
    first = ingest(client, {"user_id": "alice", "title": "one", "collapse_key": "k"})["ids"][0]
    stream, opening = opened(hub, scope)
    assert opening["data"] == {"total": 1, "unread": 1, "unseen": 1}
    second = ingest(client, {"user_id": "alice", "title": "two", "collapse_key": "k"})["ids"][0]
    deleted, created = stream.take(2)
    assert deleted == {"event": "notification.deleted", "id": deleted["id"],
                       "data": {"id": ntf_id(first)}}
    assert created["event"] == "notification.created" and created["id"] == deleted["id"] + 1
    assert created["data"]["id"] == ntf_id(second)
    assert created["data"]["collapsed_count"] == 1 and created["data"]["title"] == "two"
    # Counts did not change: no counts event.
    assert stream.quiet() == []
    # A replaced notification that had been seen: the new one is unseen, so unseen moves.
    client.patch(f"{V2}/{ntf_id(second)}", json={"seen": True}, headers=auth.headers("alice"))
    assert [e["event"] for e in stream.take(2)] == ["notification.updated", "counts"]
    ingest(client, {"user_id": "alice", "collapse_key": "k"})
    events = stream.take(3)
    assert [e["event"] for e in events] == ["notification.deleted", "notification.created",
                                            "counts"]
    assert events[2]["data"] == {"total": 1, "unread": 1, "unseen": 1}
    stream.close()
    # A reconnect gets the counts, then replays what it missed, in order (the creation of
    # a notification that is gone since frames as nothing: its deletion follows).
    replay = Stream(hub, scope, last_event_id=opening["id"])
    got = replay.quiet(1)
    assert [e.get("event") for e in got] == [
        None, "counts", "notification.deleted", "notification.updated",
        "notification.deleted", "notification.created"]
    assert [e["data"]["id"] for e in got[2:]] == [ntf_id(first), ntf_id(second),
                                                   ntf_id(second), events[1]["data"]["id"]]
    replay.close()
    with app.app_context():
        entries = changelog.changes_after(0, with_rows=False).changes
    assert [c.change for c in entries] == ["created", "deleted", "created", "updated",
                                           "deleted", "created"]


def test_the_dataset_stream_shows_the_new_notification(app: Any, hub: StreamHub,
                                                       client: Any) -> None:
    from notifications.http.variants import DATASET_FRAMES

    ingest(client, {"user_id": "alice", "dataset_id": DATASET, "collapse_key": "k"})
    events = dataset_events(hub, Scope("alice"), None, None, frames=DATASET_FRAMES,
                            ping_interval=60, retry_ms=3000, replay_limit=10)
    assert next(events) == "retry: 3000\n\n"
    next(events)  # the position
    second = ingest(client, {"user_id": "alice", "dataset_id": DATASET, "title": "again",
                             "collapse_key": "k"})["ids"][0]
    with gevent.Timeout(5):
        text = next(events)
    assert text.count("event: notification") == 1
    frame = json.loads(text.split("data: ", 1)[1])
    assert frame["id"] == second and frame["title"] == "again"
    events.close()


def test_the_organization_count_stays_the_same(app: Any, hub: StreamHub, client: Any) -> None:
    from notifications.http.variants import ORGANIZATION_FRAMES

    ingest(client, {"user_id": "alice", "organization_id": "acme", "collapse_key": "k"})
    org = organization_events(hub, ("alice", "acme"), frames=ORGANIZATION_FRAMES,
                              keepalive_interval=60)

    def unread() -> int:
        with gevent.Timeout(5):
            return int(json.loads(next(org).split("data: ")[1])["unread"])

    assert unread() == 1
    ingest(client, {"user_id": "alice", "organization_id": "acme", "collapse_key": "k"})
    with app.app_context():
        hub.tick()  # the watcher reads the replacement (a delete and an insert) now
    assert hub.counts[("alice", "acme")] == 1
    ingest(client, {"user_id": "alice", "organization_id": "acme"})
    # The next event is the plain insert's: the replacement sent none (the count stayed).
    assert unread() == 2
    org.close()
    with app.app_context():
        assert inbox.counts(Scope.organization_api("alice", "acme")).unread == 2


# --- notifications send -------------------------------------------------------------------


def test_send_with_a_collapse_key_replaces_and_prints_the_new_one(runner: Any,
                                                                  db_url: str) -> None:
    first = runner.invoke("send", "--user", "alice", "--title", "one", "--collapse-key", "k")
    assert first.exit_code == 0, first.output
    second = runner.invoke("send", "--user", "alice", "--title", "two", "--collapse-key", "k")
    printed = json.loads(second.stdout)
    assert printed["title"] == "two"
    assert rows(db_url) == [(printed["id"], "k", 1, None, None)]
    bad = runner.invoke("send", "--user", "alice", "--collapse-key", "k" * 256)
    assert bad.exit_code != 0 and "--collapse-key" in bad.output


def test_replacing_uses_the_same_state_rules_as_the_store(app: Any, client: Any,
                                                          db_url: str) -> None:
    """A bulk unread through the store (any writer) clears the key of what it brings back."""
    old = ingest(client, {"user_id": "alice", "collapse_key": "k"})["ids"][0]
    with app.app_context():
        inbox.bulk_ids(Scope("alice"), [old], ACTION_UPDATES[Action.READ])
        ingest(client, {"user_id": "alice", "collapse_key": "k"})
        assert inbox.bulk_ids(Scope("alice"), [old], ACTION_UPDATES[Action.UNREAD]) == 1
    assert [r[1] for r in rows(db_url)] == [None, "k"]


# --- concurrent producers against a real server -------------------------------------------


@pytest.mark.slow
def test_concurrent_producers_leave_one_unread_notification_per_key(
        live_server: Any, tmp_path: Path) -> None:
    server = live_server(workers=2, env={"NOTIFICATIONS_INGEST_TOKEN": TOKEN})
    keys = ["build", "deploy"]
    created: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()

    def producer(n: int) -> None:
        with requests.Session() as session:
            for i in range(15):
                key = keys[(n + i) % 2]
                items = [{"user_id": "alice", "title": f"{n}-{i}", "collapse_key": key}]
                if i % 5 == 0:  # now and then a batch repeating the key
                    items.append({"user_id": "alice", "title": f"{n}-{i}b",
                                  "collapse_key": key})
                response = session.post(server.url(INGEST_PATH), json={"notifications": items},
                                        headers=H, timeout=30)
                if response.status_code != 201:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    return
                with lock:
                    created.extend(i for i in response.json()["ids"] if i is not None)

    sends: list[Any] = []
    import subprocess

    from conftest import notifications_command
    for j in range(4):
        sends.append(subprocess.Popen(
            [*notifications_command(), "send", "--user", "alice", "--title", f"send-{j}",
             "--collapse-key", keys[j % 2]], env=server.env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    threads = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for proc in sends:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        created.append(json.loads(out)["id"])
    assert not failures, failures
    assert len(created) == 4 * (15 + 3) + 4

    response = requests.get(server.url(V2) + "?status=unread&limit=100",
                            headers=server.headers("alice"), timeout=10)
    live = response.json()["items"]
    assert response.json()["counts"]["unread"] == 2
    by_key: dict[str, int] = {}
    with server.raw() as conn:
        for key in keys:
            stored = conn.execute(
                "SELECT id, collapsed_count FROM notifications WHERE user_id = 'alice' "
                "AND collapse_key = ? AND read_at IS NULL", (key,)).fetchall()
            assert len(stored) == 1, (key, stored)
            by_key[key] = stored[0][1]
        # Each replacement is one deleted and one created entry of the log.
        deleted = conn.execute(
            "SELECT count(*) FROM changes WHERE change = 'deleted'").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM notifications").fetchone()[0] == 2
    # Every stored notification but the last of each key was replaced.
    assert sum(by_key.values()) == len(created) - 2 == deleted
    assert sorted(item["collapsed_count"] for item in live) == sorted(by_key.values())
