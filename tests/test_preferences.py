"""Preferences (SPEC §12): GET/PUT /api/v2/preferences, what ingest and `send` leave out,
and `notifications preferences`."""
from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import requests
from conftest import DATASET, OTHER_DATASET

from notifications.core.preferences import MAX_MUTES, Preferences
from notifications.http.ingest import INGEST_PATH
from notifications.store import reads

pytestmark = pytest.mark.both_databases

PREFS = "/api/v2/preferences"
TOKEN = "ingest-token-0123456789abcdef"
H = {"Authorization": f"Bearer {TOKEN}"}
ENVELOPE = ["code", "message", "detail", "hint", "details", "request_id"]


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "INGEST_TOKEN": TOKEN}


def put(client: Any, headers: dict[str, str], body: Any) -> Any:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.put(PREFS, data=data, headers=headers, content_type="application/json")


def ingest(client: Any, body: Any) -> Any:
    response = client.post(INGEST_PATH, data=json.dumps(body), headers=H,
                           content_type="application/json")
    assert response.status_code == 201, response.json
    return response


def stored(app: Any, **filters: Any) -> list[dict[str, Any]]:
    with app.app_context():
        return reads.list_for_admin(limit=10_000, **filters)


# --- the API ------------------------------------------------------------------------------


def test_nothing_is_muted_until_preferences_are_stored(client: Any, auth: Any) -> None:
    response = client.get(PREFS, headers=auth.headers("alice"))
    assert response.status_code == 200
    assert response.json == {"muted_kinds": [], "muted_datasets": []}


def test_put_replaces_the_preferences_and_get_reads_them_back(client: Any, auth: Any) -> None:
    alice = auth.headers("alice", "acme")
    body = {"muted_kinds": ["review.*", "api.quota.warning", "review.*"],
            "muted_datasets": [DATASET.upper(), DATASET]}
    response = put(client, alice, body)
    assert response.status_code == 200
    # As given, repeats dropped, dataset ids as lower-case text.
    expected = {"muted_kinds": ["review.*", "api.quota.warning"], "muted_datasets": [DATASET]}
    assert response.json == expected
    assert list(response.json) == ["muted_kinds", "muted_datasets"]
    assert client.get(PREFS, headers=alice).json == expected
    # Per user, whatever the token's organization; another user has their own.
    assert client.get(PREFS, headers=auth.headers("alice", "globex")).json == expected
    assert client.get(PREFS, headers=auth.headers("alice")).json == expected
    assert client.get(PREFS, headers=auth.headers("bob", "acme")).json == {
        "muted_kinds": [], "muted_datasets": []}
    # PUT replaces: a list left out is stored empty.
    assert put(client, alice, {"muted_datasets": [OTHER_DATASET]}).json == {
        "muted_kinds": [], "muted_datasets": [OTHER_DATASET]}
    assert put(client, alice, {}).json == {"muted_kinds": [], "muted_datasets": []}
    assert client.get(PREFS, headers=alice).json == {"muted_kinds": [], "muted_datasets": []}


def test_a_hundred_entries_each_are_accepted(client: Any, auth: Any) -> None:
    kinds = [f"kind.{i}" for i in range(MAX_MUTES)]
    datasets = [f"00000000-0000-4000-8000-{i:012d}" for i in range(MAX_MUTES)]
    response = put(client, auth.headers("alice"),
                   {"muted_kinds": kinds, "muted_datasets": datasets})
    assert response.status_code == 200
    assert response.json == {"muted_kinds": kinds, "muted_datasets": datasets}


@pytest.mark.parametrize(("body", "where"), [
    ({"muted_kinds": [f"k{i}" for i in range(MAX_MUTES + 1)]}, ["body", "muted_kinds"]),
    ({"muted_datasets": [DATASET] * (MAX_MUTES + 1)}, ["body", "muted_datasets"]),
    ({"muted_kinds": ["review*"]}, ["body", "muted_kinds", 0]),
    ({"muted_kinds": ["*"]}, ["body", "muted_kinds", 0]),
    ({"muted_kinds": [""]}, ["body", "muted_kinds", 0]),
    ({"muted_kinds": [7]}, ["body", "muted_kinds", 0]),
    ({"muted_kinds": "review.*"}, ["body", "muted_kinds"]),
    ({"muted_datasets": ["not-a-uuid"]}, ["body", "muted_datasets", 0]),
    ({"muted_kinds": None}, ["body"]),
    ({"muted_kinds": [], "muted": []}, ["body", "muted"]),
    ([], ["body"]),
    ("", ["body"]),
    ("{not json", ["body"]),
])
def test_bad_preferences_are_422_in_the_envelope_and_change_nothing(
        client: Any, auth: Any, body: Any, where: list[Any]) -> None:
    alice = auth.headers("alice")
    put(client, alice, {"muted_kinds": ["kept.kind"]})
    response = put(client, alice, body)
    assert response.status_code == 422, response.json
    assert list(response.json) == ENVELOPE
    assert response.json["code"] == "validation_failed"
    assert response.headers["X-Request-Id"] == response.json["request_id"]
    assert response.json["details"]["errors"][0]["loc"] == where
    assert client.get(PREFS, headers=alice).json["muted_kinds"] == ["kept.kind"]


def test_preferences_need_a_user(client: Any) -> None:
    assert client.get(PREFS).status_code == 401
    assert put(client, {}, {"muted_kinds": []}).status_code == 401
    assert client.get(PREFS, headers={"X-API-Key": "k"}).status_code == 403


# --- what ingest leaves out ---------------------------------------------------------------


def test_ingest_leaves_out_what_the_user_muted_and_counts_it(client: Any, app: Any,
                                                            auth: Any) -> None:
    put(client, auth.headers("alice"), {"muted_kinds": ["review.*", "api.quota.warning"],
                                        "muted_datasets": [DATASET]})
    batch = [
        {"user_id": "alice", "kind": "review.created"},                 # prefix: muted
        {"user_id": "alice", "kind": "review.x.y"},                     # prefix: muted
        {"user_id": "alice", "kind": "review"},                         # not the prefix
        {"user_id": "alice", "kind": "reviews.created"},                # not the prefix
        {"user_id": "alice", "kind": "api.quota.warning"},              # exact: muted
        {"user_id": "alice", "kind": "API.quota.warning"},              # case counts
        {"user_id": "alice", "dataset_id": DATASET},                    # dataset: muted
        {"user_id": "alice", "dataset_id": OTHER_DATASET},
        {"user_id": "alice", "kind": "review.created", "critical": True},  # stored anyway
        {"user_id": "bob", "kind": "review.created"},                   # bob muted nothing
    ]
    body = ingest(client, {"notifications": batch}).json
    assert list(body) == ["created", "duplicates", "muted", "ids"]
    assert (body["created"], body["duplicates"], body["muted"]) == (6, 0, 4)
    assert [i is None for i in body["ids"]] == [True, True, False, False, True, False, True,
                                                False, False, False]
    rows = {r["id"]: r for r in stored(app)}
    assert set(rows) == {i for i in body["ids"] if i is not None}
    assert rows[body["ids"][8]]["kind"] == "review.created"


def test_a_single_muted_object_gets_a_null_id(client: Any, app: Any, auth: Any) -> None:
    put(client, auth.headers("alice"), {"muted_kinds": ["review.created"]})
    response = ingest(client, {"user_id": "alice", "kind": "review.created"})
    assert response.get_data() == b'{"created":0,"duplicates":0,"muted":1,"ids":[null]}\n'
    assert stored(app) == []


def test_muted_wins_over_a_dedupe_key_and_a_collapse_key(client: Any, app: Any,
                                                         auth: Any) -> None:
    first = ingest(client, {"user_id": "alice", "kind": "review.created", "dedupe_key": "d",
                            "collapse_key": "c"}).json
    put(client, auth.headers("alice"), {"muted_kinds": ["review.*"]})
    again = ingest(client, {"user_id": "alice", "kind": "review.created", "dedupe_key": "d",
                            "collapse_key": "c"}).json
    assert again == {"created": 0, "duplicates": 0, "muted": 1, "ids": [None]}
    # The muted item replaced nothing.
    assert [r["id"] for r in stored(app)] == first["ids"]


@pytest.mark.parametrize("value", [1, "true", None])
def test_critical_is_a_json_boolean(client: Any, value: Any) -> None:
    response = client.post(INGEST_PATH, json={"user_id": "a", "critical": value}, headers=H)
    assert response.status_code == 422
    assert response.json["detail"][0]["loc"] == ["body", "critical"]


def test_a_put_that_answered_is_seen_by_every_later_ingest(client: Any, app: Any,
                                                           auth: Any) -> None:
    """The mutes are read inside the writer job: a PUT and ingests from other threads run
    against each other, and no item sent after the PUT's 200 is stored."""
    alice = auth.headers("alice")
    stop = threading.Event()
    after_put: list[str | None] = []
    put_done = threading.Event()
    errors: list[Any] = []

    def producer() -> None:
        local = app.test_client()
        while not stop.is_set():
            late = put_done.is_set()
            response = local.post(INGEST_PATH, json={"user_id": "alice", "kind": "x.y"},
                                  headers=H)
            if response.status_code != 201:
                errors.append(response.json)
                return
            if late:
                after_put.extend(response.json["ids"])

    threads = [threading.Thread(target=producer) for _ in range(3)]
    for thread in threads:
        thread.start()
    assert put(client, alice, {"muted_kinds": ["x.*"]}).status_code == 200
    put_done.set()
    while len(after_put) < 30 and not errors:
        threading.Event().wait(0.01)
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors
    assert after_put and all(i is None for i in after_put)


# --- notifications send and notifications preferences -------------------------------------


def test_the_command_mutes_and_unmutes_and_prints_the_preferences(runner: Any) -> None:
    result = runner.invoke("preferences", "--user", "alice", "--mute-kind", "review.*",
                           "--mute-kind", "api.quota.warning", "--mute-dataset",
                           DATASET.upper(), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "user_id": "alice", "muted_kinds": ["review.*", "api.quota.warning"],
        "muted_datasets": [DATASET]}
    result = runner.invoke("preferences", "--user", "alice", "--unmute-kind", "review.*",
                           "--unmute-dataset", DATASET, "--mute-kind", "version.*")
    assert result.exit_code == 0
    assert result.output == ("Preferences of alice:\n"
                             "  muted kinds:    api.quota.warning, version.*\n"
                             "  muted datasets: none\n")
    shown = runner.invoke("preferences", "--user", "alice", "--json")
    assert json.loads(shown.output)["muted_kinds"] == ["api.quota.warning", "version.*"]


def test_the_command_and_the_api_share_the_preferences(runner: Any, client: Any,
                                                       auth: Any) -> None:
    put(client, auth.headers("alice"), {"muted_kinds": ["review.*"]})
    result = runner.invoke("preferences", "--user", "alice", "--mute-kind", "x", "--json")
    assert json.loads(result.output)["muted_kinds"] == ["review.*", "x"]
    assert client.get(PREFS, headers=auth.headers("alice")).json["muted_kinds"] == [
        "review.*", "x"]


@pytest.mark.parametrize(("args", "words"), [
    (("--mute-kind", "review*"), ["--mute-kind", "review*"]),
    (("--unmute-kind", ""), ["--unmute-kind"]),
    (("--mute-dataset", "nope"), ["--mute-dataset"]),
    (tuple(a for i in range(MAX_MUTES + 1) for a in ("--mute-kind", f"k{i}")),
     [f"at most {MAX_MUTES}"]),
])
def test_bad_command_input_is_one_line(runner: Any, args: tuple[str, ...],
                                       words: list[str]) -> None:
    from test_cli import assert_one_line_error

    result = runner.invoke("preferences", "--user", "alice", *args)
    assert_one_line_error(result, *words)
    shown = runner.invoke("preferences", "--user", "alice", "--json")
    assert json.loads(shown.output)["muted_kinds"] == []


def test_send_leaves_out_a_muted_notification_unless_critical(runner: Any, app: Any) -> None:
    runner.invoke("preferences", "--user", "alice", "--mute-kind", "review.*")
    result = runner.invoke("send", "--user", "alice", "--user", "bob", "--kind",
                           "review.created")
    assert result.exit_code == 0
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["user_id"] for p in printed] == ["bob"]
    assert "Not stored for alice: muted" in result.stderr
    assert [r["user_id"] for r in stored(app)] == ["bob"]
    critical = runner.invoke("send", "--user", "alice", "--kind", "review.created",
                             "--critical")
    assert json.loads(critical.stdout)["user_id"] == "alice"
    assert sorted(r["user_id"] for r in stored(app)) == ["alice", "bob"]


# --- the pure matcher ---------------------------------------------------------------------


def test_the_matcher_follows_the_kind_filter() -> None:
    prefs = Preferences(("review.*", "a.b"), (DATASET,))
    assert prefs.mutes("review.created", None) and prefs.mutes("a.b", None)
    assert not prefs.mutes("review", None) and not prefs.mutes("a.b.c", None)
    assert not prefs.mutes("", None) and prefs.mutes("", DATASET)
    assert not Preferences().mutes("anything", DATASET)
    assert not Preferences((), (DATASET,)).mutes("anything", OTHER_DATASET)
    with pytest.raises(ValueError):
        Preferences(tuple(f"k{i}" for i in range(MAX_MUTES + 1)))


# --- a real server ------------------------------------------------------------------------


@pytest.mark.slow
def test_every_worker_applies_a_new_mute_at_once(live_server: Any) -> None:
    server = live_server(workers=2, env={"NOTIFICATIONS_INGEST_TOKEN": TOKEN})
    alice = server.headers("alice")
    assert requests.put(server.url(PREFS), json={"muted_kinds": ["x.*"]}, headers=alice,
                        timeout=10).json() == {"muted_kinds": ["x.*"], "muted_datasets": []}
    for _ in range(20):  # new connections: both workers answer some
        body = requests.post(server.url(INGEST_PATH), json={"user_id": "alice", "kind": "x.y"},
                             headers=H, timeout=10).json()
        assert body == {"created": 0, "duplicates": 0, "muted": 1, "ids": [None]}
    requests.put(server.url(PREFS), json={}, headers=alice, timeout=10)
    for _ in range(4):
        body = requests.post(server.url(INGEST_PATH), json={"user_id": "alice", "kind": "x.y"},
                             headers=H, timeout=10).json()
        assert body["created"] == 1
    shown = server.cli("preferences", "--user", "alice", "--mute-kind", "x.*", "--json")
    assert json.loads(shown.stdout)["muted_kinds"] == ["x.*"]
    assert requests.get(server.url(PREFS), headers=alice, timeout=10).json()["muted_kinds"] == [
        "x.*"]
