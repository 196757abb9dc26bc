"""The ingest API: POST /internal/v1/notifications (SPEC section 6)."""
from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest
import requests
from conftest import DATASET

from notifications.http.ingest import INGEST_PATH
from notifications.store import listeners as signals
from notifications.store import reads
from notifications.store.rows import now_us

pytestmark = pytest.mark.both_databases

TOKEN = "ingest-token-0123456789abcdef"
H = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "INGEST_TOKEN": TOKEN}


def post(client: Any, body: Any, headers: dict[str, str] | None = None) -> Any:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(INGEST_PATH, data=data, headers=headers if headers is not None else H,
                       content_type="application/json")


def stored(app: Any, **filters: Any) -> list[dict[str, Any]]:
    with app.app_context():
        return reads.list_for_admin(limit=10_000, **filters)


# --- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, ""])
def test_endpoint_is_absent_without_an_ingest_token(app_config: dict[str, Any], token: Any) -> None:
    from notifications import create_app

    client = create_app({**app_config, "INGEST_TOKEN": token}).test_client()
    for method in (client.post, client.get):
        response = method(INGEST_PATH, json={"user_id": "alice"}, headers=H)
        assert response.status_code == 404
        assert response.get_json() == {"detail": "Not Found"}


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token-0123456789abcde"},  # same length as the real one
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer"},
    {"Authorization": TOKEN},
])
def test_wrong_or_missing_token_is_401_and_stores_nothing(client: Any, app: Any,
                                                          headers: dict[str, str]) -> None:
    response = post(client, {"user_id": "alice"}, headers)
    assert response.status_code == 401
    assert response.get_json() == {"detail": "Invalid or missing ingest token"}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert stored(app) == []


def test_a_user_jwt_is_not_an_ingest_token(client: Any, auth: Any) -> None:
    assert post(client, {"user_id": "alice"}, auth.headers("alice")).status_code == 401


# --- storing ---------------------------------------------------------------------------


def test_one_object_is_stored_with_every_field(client: Any, app: Any) -> None:
    response = post(client, {
        "user_id": "alice", "organization_id": "acme", "dataset_id": DATASET.upper(),
        "kind": "monitor.alert", "entity_type": "saved_view", "entity_id": "v1",
        "title": "3 new results", "body": "Look", "link": "/views/v1",
        "metadata": {"view_name": "icecream", "result_count": 3, "is_alert": True,
                     "nested": [1.5, None]},
        "created_at": "2026-03-31T17:02:12.432489", "dedupe_key": "alert-1",
    })
    assert response.status_code == 201
    body = response.get_json()
    assert body["created"] == 1 and body["duplicates"] == 0
    [new_id] = body["ids"]
    assert str(uuid.UUID(new_id)) == new_id
    [row] = stored(app)
    assert row["id"] == new_id
    assert row["dataset_id"] == DATASET  # canonical lower-case form
    assert row["metadata"] == {"view_name": "icecream", "result_count": 3, "is_alert": True,
                               "nested": [1.5, None]}
    assert row["created_at"] == 1774976532432489  # naive time is UTC, microseconds kept
    assert (row["kind"], row["entity_type"], row["entity_id"], row["title"], row["body"],
            row["link"], row["dedupe_key"], row["read_at"]) == (
        "monitor.alert", "saved_view", "v1", "3 new results", "Look", "/views/v1", "alert-1", None)


def test_minimal_object_gets_defaults(client: Any, app: Any) -> None:
    before = now_us()
    assert post(client, {"user_id": "alice", "title": None, "kind": None}).status_code == 201
    [row] = stored(app)
    assert (row["kind"], row["entity_type"], row["entity_id"], row["title"]) == ("", "", "", "")
    assert (row["body"], row["link"], row["organization_id"], row["dataset_id"]) == (None,) * 4
    assert row["metadata"] == {}
    assert before <= row["created_at"] <= now_us()


def test_message_is_another_name_for_body_and_offsets_become_utc(client: Any, app: Any) -> None:
    assert post(client, {"user_id": "alice", "message": "hello",
                         "created_at": "2026-03-31T19:02:12+02:00"}).status_code == 201
    [row] = stored(app)
    assert row["body"] == "hello"
    assert row["created_at"] == 1774976532000000


def test_batch_is_stored_in_one_go_and_ids_follow_the_request(client: Any, app: Any) -> None:
    items = [{"user_id": f"user{i % 3}", "title": f"n{i}"} for i in range(50)]
    body = post(client, {"notifications": items}).get_json()
    assert body["created"] == 50 and body["duplicates"] == 0
    rows = {r["id"]: r for r in stored(app)}
    assert [rows[i]["title"] for i in body["ids"]] == [f"n{i}" for i in range(50)]
    assert [rows[i]["user_id"] for i in body["ids"]] == [f"user{i % 3}" for i in range(50)]


def test_empty_batch_stores_nothing(client: Any) -> None:
    response = post(client, {"notifications": []})
    assert response.status_code == 201
    assert response.get_json() == {"created": 0, "duplicates": 0, "muted": 0, "ids": []}


def test_full_batch_of_1000_is_accepted(client: Any, app: Any) -> None:
    response = post(client, {"notifications": [{"user_id": "alice"}] * 1000})
    assert response.status_code == 201
    assert response.get_json()["created"] == 1000
    assert len(stored(app)) == 1000


def test_ingest_wakes_local_listeners(client: Any) -> None:
    calls: list[int] = []
    listener = lambda: calls.append(1)  # noqa: E731
    signals.on_change(listener)
    try:
        post(client, {"user_id": "alice"})
    finally:
        signals._listeners.remove(listener)
    assert calls


def test_ingested_notifications_show_in_both_apis(client: Any, auth: Any) -> None:
    post(client, {"notifications": [
        {"user_id": "alice", "organization_id": "acme", "kind": "review.created",
         "title": "Review", "message": "Ana asked", "link": "/r/1"},
        {"user_id": "alice", "dataset_id": DATASET, "entity_type": "saved_view",
         "entity_id": "v1", "title": "", "metadata": {"is_alert": True}},
    ]})
    dataset = client.get("/api/v1/notifications", headers=auth.headers("alice")).get_json()
    assert dataset["total"] == 2
    assert dataset["notifications"][0]["metadata"] == {"is_alert": True}
    org = client.get("/api/v1/org/notifications", headers=auth.headers("alice", "acme")).get_json()
    assert [(i["kind"], i["body"], i["link"]) for i in org["items"]] == [
        ("review.created", "Ana asked", "/r/1")]
    assert org["unread"] == 1


# --- deduplication ---------------------------------------------------------------------


def test_repeated_dedupe_key_is_not_stored_again(client: Any, app: Any) -> None:
    first = post(client, {"user_id": "alice", "title": "one", "dedupe_key": "k1"}).get_json()
    again = post(client, {"user_id": "alice", "title": "changed", "dedupe_key": "k1"})
    assert again.status_code == 201
    assert again.get_json() == {"created": 0, "duplicates": 1, "muted": 0,
                                "ids": first["ids"]}
    [row] = stored(app)
    assert row["title"] == "one"


def test_dedupe_key_is_per_user_and_within_a_batch(client: Any, app: Any) -> None:
    existing = post(client, {"user_id": "alice", "dedupe_key": "k"}).get_json()["ids"][0]
    body = post(client, {"notifications": [
        {"user_id": "alice", "dedupe_key": "k"},   # already stored
        {"user_id": "bob", "dedupe_key": "k"},     # another user: new
        {"user_id": "bob", "dedupe_key": "k"},     # repeats the previous item
        {"user_id": "bob"},                        # no key: always new
        {"user_id": "bob"},
    ]}).get_json()
    assert body["created"] == 3 and body["duplicates"] == 2
    ids = body["ids"]
    assert ids[0] == existing and ids[1] == ids[2] and len({ids[1], ids[3], ids[4], existing}) == 4
    assert len(stored(app)) == 4


def retry_concurrently(open_client: Callable[[], AbstractContextManager[Any]],
                       send: Callable[[Any], tuple[int, str]]) -> None:
    """Send one notification 3 times from each of 20 threads at once; all get the same id.

    Each thread opens its own client; ``send`` answers the status and the first id.
    """
    barrier = threading.Barrier(20)
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def worker() -> None:
        with open_client() as client:
            barrier.wait()
            for _ in range(3):
                result = send(client)
                with lock:
                    results.append(result)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 60
    assert {status for status, _ in results} == {201}
    assert len({id_ for _, id_ in results}) == 1


def test_concurrent_retries_store_one_row_in_process(app: Any) -> None:
    def send(client: Any) -> tuple[int, str]:
        response = post(client, {"user_id": "alice", "dedupe_key": "retry-me"})
        return response.status_code, response.get_json()["ids"][0]

    retry_concurrently(lambda: nullcontext(app.test_client()), send)
    assert len(stored(app)) == 1


# --- bad input -------------------------------------------------------------------------


INVALID = [
    ({}, ["body", "user_id"], "missing"),
    ({"user_id": ""}, ["body", "user_id"], "string_too_short"),
    ({"user_id": "u" * 256}, ["body", "user_id"], "string_too_long"),
    ({"user_id": 7}, ["body", "user_id"], "string_type"),
    ({"user_id": "a", "organization_id": ""}, ["body", "organization_id"], "string_too_short"),
    ({"user_id": "a", "dataset_id": "not-a-uuid"}, ["body", "dataset_id"], "uuid_parsing"),
    ({"user_id": "a", "kind": "k" * 256}, ["body", "kind"], "string_too_long"),
    ({"user_id": "a", "title": 5}, ["body", "title"], "string_type"),
    ({"user_id": "a", "metadata": [1]}, ["body", "metadata"], "dict_type"),
    ({"user_id": "a", "metadata": "{}"}, ["body", "metadata"], "dict_type"),
    ({"user_id": "a", "created_at": "yesterday"}, ["body", "created_at"],
     "datetime_from_date_parsing"),
    ({"user_id": "a", "created_at": "0001-01-01T00:00:00+01:00"}, ["body", "created_at"],
     "value_error"),
    ({"user_id": "a", "created_at": 1774976532}, ["body", "created_at"], "value_error"),
    # Numbers as text: pydantic would guess seconds or milliseconds from their size.
    ({"user_id": "a", "created_at": "1700000000"}, ["body", "created_at"], "value_error"),
    ({"user_id": "a", "created_at": "1700000000000"}, ["body", "created_at"], "value_error"),
    ({"user_id": "a", "created_at": "17000000000"}, ["body", "created_at"], "value_error"),
    ({"user_id": "a", "created_at": "-1"}, ["body", "created_at"], "value_error"),
    ({"user_id": "a", "created_at": " 1.7e9 "}, ["body", "created_at"], "value_error"),
    # Written with a year before 2000.
    ({"user_id": "a", "created_at": "1999-12-31T23:59:59Z"}, ["body", "created_at"], "value_error"),
    ({"user_id": "a", "created_at": "1970-01-01T00:00:00"}, ["body", "created_at"], "value_error"),
    ({"user_id": "a", "created_at": "0253-08-08T02:35:43+00:32"}, ["body", "created_at"],
     "value_error"),
    ({"user_id": "a", "dedupe_key": ""}, ["body", "dedupe_key"], "string_too_short"),
    ({"user_id": "a", "priority": "high"}, ["body", "priority"], "extra_forbidden"),
    ({"user_id": "a", "body": "x", "message": "y"}, ["body"], "value_error"),
    ({"notifications": {"user_id": "a"}}, ["body", "notifications"], "list_type"),
    ({"notifications": [{"user_id": "a"}] * 1001}, ["body", "notifications"], "too_long"),
    ({"notifications": [], "extra": 1}, ["body", "extra"], "extra_forbidden"),
    ([{"user_id": "a"}], ["body"], "model_attributes_type"),
    ("nope", ["body"], "model_attributes_type"),
]


@pytest.mark.parametrize("body, loc, kind", INVALID)
def test_invalid_object_is_422_naming_the_field(client: Any, app: Any, body: Any, loc: list[Any],
                                                kind: str) -> None:
    response = post(client, json.dumps(body))
    assert response.status_code == 422
    errors = response.get_json()["detail"]
    assert any(e["loc"] == loc and e["type"] == kind for e in errors), errors
    assert all(set(e) >= {"type", "loc", "msg", "input"} for e in errors)
    assert stored(app) == []


@pytest.mark.parametrize("created", ["2000-01-01T00:00:00Z", "2000-01-01T00:30:00+01:00",
                                     "9999-12-31T23:59:59.999999Z"])
def test_created_at_years_2000_to_9999_are_accepted(client: Any, app: Any, created: str) -> None:
    assert post(client, {"user_id": "a", "created_at": created}).status_code == 201
    assert len(stored(app)) == 1


@pytest.mark.parametrize("raw", [
    b"", b"   ", b"user_id=alice", b"{", b'{"user_id": "a"', b"\xff\xfe",
    b'{"user_id": "a", "metadata": {"x": NaN}}', b'{"user_id": "a", "metadata": {"x": Infinity}}',
    b"[" * 100_000,
])
def test_malformed_body_is_422_never_500(client: Any, app: Any, raw: bytes) -> None:
    response = post(client, raw)
    assert response.status_code == 422
    [error] = response.get_json()["detail"]
    assert error["loc"] == ["body"] and error["type"] in ("json_invalid", "missing")
    assert stored(app) == []


def test_overflowing_number_in_metadata_is_422(client: Any, app: Any) -> None:
    response = post(client, b'{"user_id": "a", "metadata": {"x": 1e400}}')
    assert response.status_code == 422
    assert response.get_json()["detail"][0]["loc"] == ["body", "metadata"]


@pytest.mark.parametrize(("fields", "loc"), [
    ('"title": "\\ud800"', ["body", "title"]),
    ('"body": "a\\udfffb"', ["body", "body"]),
    ('"message": "\\ud800"', ["body", "message"]),
    ('"link": "\\udc00"', ["body", "link"]),
    ('"metadata": {"x": ["\\ud800"]}', ["body", "metadata"]),
    ('"metadata": {"\\ud800": 1}', ["body", "metadata"]),
])
def test_unpaired_surrogate_in_text_is_422(client: Any, app: Any, fields: str,
                                           loc: list[str]) -> None:
    """A lone surrogate has no UTF-8 form: storing it failed with a 500."""
    response = post(client, '{"user_id": "a", ' + fields + "}")
    assert response.status_code == 422
    assert response.get_json()["detail"][0]["loc"] == loc
    assert stored(app) == []


def test_surrogate_pairs_are_text(client: Any, app: Any) -> None:
    response = post(client, '{"user_id": "a", "title": "\\ud83d\\ude00", '
                            '"metadata": {"\\ud83d\\ude00": "\\ud83d\\ude00"}}')
    assert response.status_code == 201
    [row] = stored(app)
    assert row["title"] == "\U0001f600" and row["metadata"] == {"\U0001f600": "\U0001f600"}


def test_form_content_type_is_read_as_json_anyway(client: Any) -> None:
    response = client.post(INGEST_PATH, data='{"user_id": "a"}', headers=H,
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 201


def test_one_bad_object_rejects_the_whole_batch(client: Any, app: Any) -> None:
    items: list[dict[str, Any]] = [{"user_id": f"u{i}", "dedupe_key": f"k{i}"} for i in range(6)]
    items[3] = {"title": "no user"}
    response = post(client, {"notifications": items})
    assert response.status_code == 422
    [error] = response.get_json()["detail"]
    assert error["loc"] == ["body", "notifications", 3, "user_id"]
    assert error["type"] == "missing" and error["msg"] == "Field required"
    assert stored(app) == []


def test_every_failing_index_is_reported(client: Any) -> None:
    items = [{"user_id": "a"}, {"user_id": ""}, {"user_id": "a", "dataset_id": "x"}]
    errors = post(client, {"notifications": items}).get_json()["detail"]
    assert [e["loc"] for e in errors] == [["body", "notifications", 1, "user_id"],
                                          ["body", "notifications", 2, "dataset_id"]]


def test_body_over_one_megabyte_is_413(client: Any, app: Any) -> None:
    item = {"user_id": "alice", "body": "x" * 2000}
    response = post(client, {"notifications": [item] * 600})
    assert response.status_code == 413
    assert response.get_json() == {"detail": "Request body is too large"}
    assert stored(app) == []


def test_wrong_token_wins_over_a_large_body(client: Any) -> None:
    response = post(client, b"x" * (2 * 1024 * 1024), {"Authorization": "Bearer nope"})
    assert response.status_code == 401


# --- through a real server -------------------------------------------------------------


def test_producer_over_http_reaches_both_apis(live_server: Any) -> None:
    server = live_server(workers=2, env={"NOTIFICATIONS_INGEST_TOKEN": TOKEN})
    url = server.url(INGEST_PATH)
    batch = {"notifications": [
        {"user_id": "alice", "organization_id": "acme", "kind": "review.created",
         "title": "New review", "body": "Ana asked", "dedupe_key": "rev-1"},
        {"user_id": "alice", "dataset_id": DATASET, "entity_type": "saved_view",
         "entity_id": "v1", "message": "3 results", "metadata": {"is_alert": True}},
    ]}
    response = requests.post(url, json=batch, headers=H, timeout=10)
    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    # A retry stores the keyed item only once (the item without a key is new every time).
    retry = requests.post(url, json=batch, headers=H, timeout=10).json()
    assert retry["created"] == 1 and retry["duplicates"] == 1 and retry["ids"][0] == ids[0]
    ids.append(retry["ids"][1])

    dataset = requests.get(server.url("/api/v1/notifications"), params={"dataset_id": DATASET},
                           headers=server.headers("alice"), timeout=10).json()
    assert [n["id"] for n in dataset["notifications"]] == [ids[2], ids[1]]
    assert dataset["notifications"][0]["message"] == "3 results"
    org = requests.get(server.url("/api/v1/org/notifications"),
                       headers=server.headers("alice", "acme"), timeout=10).json()
    assert [i["id"] for i in org["items"]] == ["ntf_" + ids[0].replace("-", "")]
    assert org["unread"] == 1

    too_big = requests.post(url, data=b"{" + b" " * (1024 * 1024 + 10) + b"}", headers=H,
                            timeout=10)
    assert too_big.status_code == 413 and too_big.json() == {"detail": "Request body is too large"}
    assert requests.post(url, json={"user_id": "a"}, timeout=10).status_code == 401


def test_concurrent_retries_over_http_store_exactly_one_row(live_server: Any) -> None:
    server = live_server(workers=2, env={"NOTIFICATIONS_INGEST_TOKEN": TOKEN})
    url = server.url(INGEST_PATH)

    def send(session: requests.Session) -> tuple[int, str]:
        response = session.post(url, json={"user_id": "alice", "dedupe_key": "once",
                                           "title": "deploy finished"}, headers=H, timeout=30)
        return response.status_code, response.json()["ids"][0]

    retry_concurrently(requests.Session, send)
    listed = [json.loads(line)
              for line in server.cli("list", "--json", "--limit", "100").stdout.splitlines()]
    assert len(listed) == 1 and listed[0]["dedupe_key"] == "once"


def test_metadata_nesting_is_bounded(client: Any, app: Any) -> None:
    def nested(depth: int) -> dict[str, Any]:
        value: Any = 1
        for _ in range(depth - 1):
            value = [value]
        return {"a": value}

    assert post(client, {"user_id": "a", "metadata": nested(32)}).status_code == 201
    response = post(client, {"user_id": "a", "metadata": nested(33)})
    assert response.status_code == 422
    [error] = response.get_json()["detail"]
    assert error["loc"] == ["body", "metadata"]
    assert "deeper than 32 levels" in error["msg"]


def test_body_limit_is_configurable(app_config: dict[str, Any]) -> None:
    from notifications import create_app
    from notifications.settings import ConfigError

    app = create_app({**app_config, "MAX_CONTENT_LENGTH": "2048"})  # as the environment gives it
    assert app.config["MAX_CONTENT_LENGTH"] == 2048
    client = app.test_client()
    assert post(client, {"user_id": "a", "body": "x" * 1500}).status_code == 201
    assert post(client, {"user_id": "a", "body": "x" * 2100}).status_code == 413
    with pytest.raises(ConfigError,
                       match="NOTIFICATIONS_MAX_CONTENT_LENGTH must be a whole number"):
        create_app({**app_config, "MAX_CONTENT_LENGTH": "1MB"})


@pytest.mark.parametrize("field", ["user_id", "organization_id", "title", "body", "kind",
                                   "dedupe_key", "collapse_key"])
def test_text_with_the_nul_character_is_refused_on_every_database(client: Any,
                                                                   field: str) -> None:
    """PostgreSQL cannot store U+0000 in text; both databases refuse it with a 422 alike."""
    item = {"user_id": "alice", field: "a\u0000b"}
    response = post(client, {"notifications": [item]})
    assert response.status_code == 422, response.json
    (error,) = response.json["detail"]
    assert error["loc"] == ["body", "notifications", 0, field]
    assert "NUL" in error["msg"]
    assert post(client, {"notifications": [{"user_id": "alice", "title": "ok"}]}).status_code == 201
