"""Dataset-scoped REST API (SPEC §4) through the test client."""
from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import DATASET, OTHER_DATASET

pytestmark = pytest.mark.both_databases

#: Reference payloads of the public API this variant mirrors, kept with the tests.
REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference"
API = "/api/v1"
NAIVE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}")
MONITOR = {"view_name": "icecream", "dataset_name": "Ice cream", "result_count": 1875,
           "batch_id": "a863a595-5aaf-45d3-89a9-073a73d59671", "is_alert": True}


def reference(name: str) -> Any:
    """Load a reference payload from ``tests/fixtures/reference``."""
    return json.loads((REFERENCE / name).read_text())


def alert(make: Any, user: str = "alice", n: int = 1, **fields: Any) -> list[dict[str, Any]]:
    """Store monitor alerts the way the dataset variant's producers do."""
    defaults = {"dataset_id": DATASET, "entity_type": "saved_view",
                "entity_id": str(uuid.uuid4()), "metadata": MONITOR}
    return make(user=user, n=n, **{**defaults, **fields})


def get(client: Any, auth: Any, path: str, user: str = "alice", **kwargs: Any) -> Any:
    return client.get(API + path, headers=auth.headers(user, kwargs.pop("org", None)), **kwargs)


def post(client: Any, auth: Any, path: str, user: str = "alice", **kwargs: Any) -> Any:
    return client.post(API + path, headers=auth.headers(user, kwargs.pop("org", None)), **kwargs)


# --- list ----------------------------------------------------------------------------


def test_list_shape_matches_reference(client: Any, auth: Any, make: Any) -> None:
    stored = alert(make, title="", body=None)[0]
    response = get(client, auth, "/notifications")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    expected = reference("dataset_list.json")
    assert list(body) == list(expected)
    item = body["notifications"][0]
    assert set(item) == set(expected["notifications"][0])
    assert set(item["metadata"]) == set(expected["notifications"][0]["metadata"])
    assert item["id"] == stored["id"] and item["id"] == item["id"].lower()
    assert uuid.UUID(item["id"]).version == 4
    assert item["user_id"] == "alice"
    assert item["entity_type"] == "saved_view"
    assert item["title"] == "" and item["message"] is None
    assert item["metadata"] == MONITOR
    assert item["dataset_id"] == DATASET
    assert NAIVE_TIME.fullmatch(item["created_at"])
    assert item["read_at"] is None
    assert body["total"] == 1 and body["has_more"] is False


def test_list_empty(client: Any, auth: Any) -> None:
    assert get(client, auth, "/notifications").get_json() == {
        "notifications": [], "total": 0, "has_more": False,
    }


def test_list_newest_first_even_when_inserted_out_of_order(client: Any, auth: Any,
                                                           make: Any) -> None:
    base = 1_760_000_000_000_000
    for offset in (5, 1, 9, 3):
        alert(make, created_at=base + offset, title=str(offset))
    titles = [n["title"] for n in get(client, auth, "/notifications").get_json()["notifications"]]
    assert titles == ["9", "5", "3", "1"]


def test_list_same_timestamp_newest_inserted_first(client: Any, auth: Any, make: Any) -> None:
    for i in range(3):
        alert(make, created_at=1_760_000_000_000_000, title=str(i))
    titles = [n["title"] for n in get(client, auth, "/notifications").get_json()["notifications"]]
    assert titles == ["2", "1", "0"]


@pytest.mark.parametrize(
    ("query", "count", "total", "has_more"),
    [
        ("", 20, 25, True),
        ("?limit=10", 10, 25, True),
        ("?limit=10&offset=10", 10, 25, True),
        ("?limit=10&offset=20", 5, 25, False),
        ("?limit=100", 25, 25, False),
        ("?limit=5&offset=24", 1, 25, False),
        ("?offset=25", 0, 25, False),
        ("?offset=1000", 0, 25, False),
        ("?limit=1&offset=0", 1, 25, True),
    ],
)
def test_pagination(client: Any, auth: Any, make: Any, query: str, count: int, total: int,
                    has_more: bool) -> None:
    alert(make, n=25)
    response = get(client, auth, "/notifications" + query)
    assert response.status_code == 200
    body = response.get_json()
    assert len(body["notifications"]) == count
    assert body["total"] == total
    assert body["has_more"] is has_more


def test_pages_cover_everything_once(client: Any, auth: Any, make: Any) -> None:
    stored = {row["id"] for row in alert(make, n=23)}
    seen: list[str] = []
    offset = 0
    while True:
        body = get(client, auth, f"/notifications?limit=7&offset={offset}").get_json()
        seen += [n["id"] for n in body["notifications"]]
        offset += 7
        if not body["has_more"]:
            break
    assert len(seen) == len(set(seen)) == 23 and set(seen) == stored


@pytest.mark.parametrize(
    ("value", "unread_only"),
    [("True", True), ("true", True), ("1", True), ("False", False), ("false", False),
     ("0", False)],
)
def test_unread_only_booleans(client: Any, auth: Any, make: Any, value: str,
                              unread_only: bool) -> None:
    rows = alert(make, n=3)
    with client.application.app_context():
        from notifications.store import marks
        from notifications.store.scope import Scope

        marks.mark_one_read(Scope("alice"), rows[0]["id"])
    body = get(client, auth, f"/notifications?unread_only={value}").get_json()
    expected = 2 if unread_only else 3
    assert body["total"] == expected and len(body["notifications"]) == expected
    if unread_only:
        assert all(n["read_at"] is None for n in body["notifications"])


def test_dataset_filter(client: Any, auth: Any, make: Any) -> None:
    alert(make, n=2, dataset_id=DATASET)
    alert(make, n=3, dataset_id=OTHER_DATASET)
    make(user="alice", n=1, title="no dataset")
    body = get(client, auth, f"/notifications?dataset_id={DATASET}").get_json()
    assert body["total"] == 2
    assert {n["dataset_id"] for n in body["notifications"]} == {DATASET}
    upper = get(client, auth, f"/notifications?dataset_id={OTHER_DATASET.upper()}").get_json()
    assert upper["total"] == 3
    assert {n["dataset_id"] for n in upper["notifications"]} == {OTHER_DATASET}
    assert get(client, auth, "/notifications").get_json()["total"] == 6


def test_dataset_filter_and_unread_only_combine(client: Any, auth: Any, make: Any) -> None:
    alert(make, n=2, dataset_id=DATASET)
    alert(make, n=2, dataset_id=OTHER_DATASET)
    post(client, auth, f"/notifications/read-all?dataset_id={OTHER_DATASET}")
    body = get(client, auth, f"/notifications?dataset_id={OTHER_DATASET}&unread_only=True",
               ).get_json()
    assert body == {"notifications": [], "total": 0, "has_more": False}
    body = get(client, auth, f"/notifications?dataset_id={DATASET}&unread_only=true&limit=1",
               ).get_json()
    assert body["total"] == 2 and body["has_more"] is True


# --- timestamps ----------------------------------------------------------------------


@pytest.fixture
def local_zone(request: pytest.FixtureRequest) -> Any:
    """Run the test with the process's TZ set to ``request.param``, restored afterwards."""
    import os

    previous = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield request.param
    if previous is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = previous
    time.tzset()


@pytest.mark.parametrize("local_zone", ["UTC", "America/New_York", "Asia/Kolkata",
                                        "Pacific/Chatham"], indirect=True)
@pytest.mark.parametrize(
    ("stored_us", "rendered"),
    [
        (1_774_976_532_432_489, "2026-03-31T17:02:12.432489"),
        (1_774_976_532_000_000, "2026-03-31T17:02:12.000000"),
        (1_774_976_532_000_001, "2026-03-31T17:02:12.000001"),
        (1_774_976_532_999_999, "2026-03-31T17:02:12.999999"),
    ],
)
def test_timestamps_naive_utc_six_digits(client: Any, auth: Any, make: Any, local_zone: str,
                                         stored_us: int, rendered: str) -> None:
    from datetime import UTC, datetime

    # The zone really is in force (tzdata is installed), so the test can fail.
    assert (time.localtime(stored_us // 1_000_000).tm_gmtoff == 0) == (local_zone == "UTC")
    row = alert(make, created_at=stored_us)[0]
    item = get(client, auth, "/notifications").get_json()["notifications"][0]
    assert item["created_at"] == rendered
    post(client, auth, f"/notifications/{row['id']}/read")
    read_at = get(client, auth, "/notifications").get_json()["notifications"][0]["read_at"]
    assert NAIVE_TIME.fullmatch(read_at)
    # read_at is "now" in UTC, not in the process's local zone.
    now = datetime.now(UTC).replace(tzinfo=None)
    assert abs((datetime.fromisoformat(read_at) - now).total_seconds()) < 60


def test_send_time_is_utc_whatever_the_zone(client: Any, auth: Any, make: Any) -> None:
    """A notification created now is rendered as UTC now, in a zone far from UTC."""
    import os
    from datetime import UTC, datetime

    previous = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Kiritimati"  # UTC+14
    time.tzset()
    try:
        alert(make)
        created = get(client, auth, "/notifications").get_json()["notifications"][0]["created_at"]
    finally:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()
    now = datetime.now(UTC).replace(tzinfo=None)
    assert abs((datetime.fromisoformat(created) - now).total_seconds()) < 60


# --- unread count --------------------------------------------------------------------


def test_unread_count(client: Any, auth: Any, make: Any) -> None:
    assert get(client, auth, "/notifications/unread-count").get_json() == {"count": 0}
    alert(make, n=3, dataset_id=DATASET)
    alert(make, n=2, dataset_id=OTHER_DATASET)
    alert(make, user="bob", n=4)
    response = get(client, auth, "/notifications/unread-count")
    assert response.status_code == 200
    assert response.get_json() == {"count": 5}
    assert list(response.get_json()) == list(reference("dataset_unread_count.json"))
    assert get(client, auth, f"/notifications/unread-count?dataset_id={DATASET}").get_json() == {
        "count": 3}
    assert get(client, auth, f"/notifications/unread-count?dataset_id={DATASET.upper()}",
               ).get_json() == {"count": 3}


# --- mark one read -------------------------------------------------------------------


def test_mark_one_read(client: Any, auth: Any, make: Any) -> None:
    rows = alert(make, n=2)
    response = post(client, auth, f"/notifications/{rows[0]['id']}/read")
    assert response.status_code == 200
    assert response.get_json() == reference("dataset_mark_read.json") == {"ok": True}
    items = {n["id"]: n for n in get(client, auth, "/notifications").get_json()["notifications"]}
    assert NAIVE_TIME.fullmatch(items[rows[0]["id"]]["read_at"])
    assert items[rows[1]["id"]]["read_at"] is None
    assert get(client, auth, "/notifications/unread-count").get_json() == {"count": 1}


def test_mark_one_read_accepts_upper_case_id(client: Any, auth: Any, make: Any) -> None:
    row = alert(make)[0]
    assert post(client, auth, f"/notifications/{row['id'].upper()}/read").status_code == 200
    assert get(client, auth, "/notifications/unread-count").get_json() == {"count": 0}


@pytest.mark.parametrize("case", ["missing", "other_user", "already_read", "other_org"])
def test_mark_one_read_not_found(client: Any, auth: Any, make: Any, case: str) -> None:
    mine = alert(make)[0]
    if case == "missing":
        target = str(uuid.uuid4())
    elif case == "other_user":
        target = alert(make, user="bob")[0]["id"]
    elif case == "other_org":
        target = alert(make, organization_id="globex")[0]["id"]
    else:
        target = mine["id"]
        assert post(client, auth, f"/notifications/{target}/read", org="acme").status_code == 200
    response = post(client, auth, f"/notifications/{target}/read", org="acme")
    assert response.status_code == 404
    assert response.get_json() == reference("dataset_error.json") == {
        "detail": "Notification not found"}
    if case == "other_user":
        # Bob's notification is untouched.
        bob = get(client, auth, "/notifications", user="bob").get_json()["notifications"][0]
        assert bob["read_at"] is None
    if case == "other_org":
        assert get(client, auth, "/notifications/unread-count").get_json() == {"count": 2}


@pytest.mark.parametrize("bad", ["not-a-uuid", "123", "ntf_5f0c6a1e2b7d4c0e9a3b8d1f2e4c6a7b",
                                 "e94ab07e-c0fe-4db1-83d0-34ea0fd8ee5"])
def test_mark_one_read_rejects_non_uuid(client: Any, auth: Any, bad: str) -> None:
    response = post(client, auth, f"/notifications/{bad}/read")
    assert response.status_code == 422
    detail = response.get_json()["detail"]
    assert detail[0]["loc"] == ["path", "notification_id"]
    assert detail[0]["type"] == "uuid_parsing"
    assert detail[0]["input"] == bad


# --- read all ------------------------------------------------------------------------


def test_read_all(client: Any, auth: Any, make: Any) -> None:
    alert(make, n=5)
    alert(make, user="bob", n=2)
    response = post(client, auth, "/notifications/read-all")
    assert response.status_code == 200
    assert response.get_json() == {"ok": True, "count": 5}
    assert list(response.get_json()) == list(reference("dataset_read_all.json"))
    assert post(client, auth, "/notifications/read-all").get_json() == {"ok": True, "count": 0}
    assert get(client, auth, "/notifications/unread-count").get_json() == {"count": 0}
    assert get(client, auth, "/notifications/unread-count", user="bob").get_json() == {"count": 2}


def test_read_all_logs_and_signals_only_what_was_marked(app: Any, client: Any, auth: Any,
                                                       make: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Streams learn of a mark-read from the change log; a mark-read of nothing wakes none."""
    from notifications.store import changelog
    from notifications.store import listeners as signals

    rows = alert(make, n=2)
    signalled: list[None] = []
    monkeypatch.setattr(signals, "changed", lambda: signalled.append(None))
    with app.app_context():
        before = changelog.head_position()
    assert post(client, auth, "/notifications/read-all").get_json()["count"] == 2
    with app.app_context():
        logged = changelog.changes_after(before).changes
        assert sorted((c.change, c.notification_id, c.user_id, c.read_at is not None)
                      for c in logged) == sorted(("updated", r["id"], "alice", True) for r in rows)
        after = changelog.head_position()
    assert len(signalled) == 1
    assert post(client, auth, "/notifications/read-all").get_json()["count"] == 0
    assert post(client, auth, f"/notifications/{rows[0]['id']}/read").status_code == 404
    with app.app_context():
        assert changelog.head_position() == after
    assert len(signalled) == 1


def test_read_all_for_one_dataset_leaves_others(client: Any, auth: Any, make: Any) -> None:
    alert(make, n=3, dataset_id=DATASET)
    alert(make, n=2, dataset_id=OTHER_DATASET)
    make(user="alice", n=1)
    body = post(client, auth, f"/notifications/read-all?dataset_id={DATASET}").get_json()
    assert body == {"ok": True, "count": 3}
    assert get(client, auth, f"/notifications/unread-count?dataset_id={OTHER_DATASET}",
               ).get_json() == {"count": 2}
    assert get(client, auth, "/notifications/unread-count").get_json() == {"count": 3}
    assert post(client, auth, f"/notifications/read-all?dataset_id={DATASET}").get_json() == {
        "ok": True, "count": 0}


def test_documented_python_workflow(client: Any, auth: Any, make: Any) -> None:
    alert(make, n=4, dataset_id=DATASET)
    alert(make, n=1, dataset_id=OTHER_DATASET)
    count = get(client, auth, "/notifications/unread-count",
                query_string={"dataset_id": DATASET}).get_json()["count"]
    assert count == 4
    listing = get(client, auth, "/notifications", query_string={
        "dataset_id": DATASET, "limit": 10, "unread_only": True}).get_json()
    assert listing["total"] == 4
    assert all(n["metadata"]["is_alert"] for n in listing["notifications"])
    done = post(client, auth, "/notifications/read-all", query_string={"dataset_id": DATASET})
    assert done.get_json()["count"] == 4


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "loc", "type_"),
    [
        ("/notifications?limit=0", ["query", "limit"], "greater_than_equal"),
        ("/notifications?limit=101", ["query", "limit"], "less_than_equal"),
        ("/notifications?limit=abc", ["query", "limit"], "int_parsing"),
        ("/notifications?limit=", ["query", "limit"], "int_parsing"),
        ("/notifications?limit=1.5", ["query", "limit"], "int_parsing"),
        ("/notifications?offset=-1", ["query", "offset"], "greater_than_equal"),
        ("/notifications?offset=abc", ["query", "offset"], "int_parsing"),
        ("/notifications?offset=99999999999999999999999", ["query", "offset"], "less_than_equal"),
        ("/notifications?unread_only=maybe", ["query", "unread_only"], "bool_parsing"),
        ("/notifications?dataset_id=not-a-uuid", ["query", "dataset_id"], "uuid_parsing"),
        ("/notifications/unread-count?dataset_id=not-a-uuid", ["query", "dataset_id"],
         "uuid_parsing"),
    ],
)
def test_list_and_count_validation(client: Any, auth: Any, path: str, loc: list[str],
                                   type_: str) -> None:
    response = get(client, auth, path)
    assert response.status_code == 422
    detail = response.get_json()["detail"]
    assert len(detail) == 1
    assert detail[0]["loc"] == loc
    assert detail[0]["type"] == type_
    assert isinstance(detail[0]["msg"], str) and detail[0]["msg"]


def test_read_all_validation(client: Any, auth: Any, make: Any) -> None:
    alert(make, n=2)
    response = post(client, auth, "/notifications/read-all?dataset_id=not-a-uuid")
    assert response.status_code == 422
    assert response.get_json()["detail"][0]["loc"] == ["query", "dataset_id"]
    # Nothing was marked read.
    assert get(client, auth, "/notifications/unread-count").get_json() == {"count": 2}


def test_validation_body_is_exactly_fastapi_shape(client: Any, auth: Any) -> None:
    expected = reference("dataset_validation_error.json")
    response = get(client, auth, "/notifications?limit=101")
    assert response.status_code == 422
    assert response.get_json() == expected


def test_several_validation_errors_reported_together(client: Any, auth: Any) -> None:
    detail = get(client, auth, "/notifications?limit=0&offset=-1").get_json()["detail"]
    assert [d["loc"] for d in detail] == [["query", "limit"], ["query", "offset"]]
    assert all(set(d) <= {"type", "loc", "msg", "input", "ctx"} for d in detail)


def test_unknown_parameters_are_ignored(client: Any, auth: Any, make: Any) -> None:
    alert(make)
    assert get(client, auth, "/notifications?foo=bar").get_json()["total"] == 1


def test_unknown_route_and_method(client: Any, auth: Any) -> None:
    missing = get(client, auth, "/nothing-here")
    assert missing.status_code == 404 and missing.get_json() == {"detail": "Not Found"}
    wrong = client.delete(API + "/notifications", headers=auth.headers())
    assert wrong.status_code == 405 and wrong.get_json() == {"detail": "Method Not Allowed"}
    assert "GET" in wrong.headers["Allow"]


def test_unauthenticated_before_validation(client: Any) -> None:
    response = client.get(API + "/notifications?limit=0")
    assert response.status_code == 401
    assert response.get_json() == {"detail": "Not authenticated"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


# --- isolation -----------------------------------------------------------------------


def test_users_are_isolated(client: Any, auth: Any, make: Any) -> None:
    alert(make, user="alice", n=2)
    bob_rows = alert(make, user="bob", n=3)
    alice = get(client, auth, "/notifications").get_json()
    assert alice["total"] == 2 and {n["user_id"] for n in alice["notifications"]} == {"alice"}
    assert get(client, auth, "/notifications/unread-count").get_json() == {"count": 2}
    assert post(client, auth, "/notifications/read-all").get_json()["count"] == 2
    assert post(client, auth, f"/notifications/{bob_rows[0]['id']}/read").status_code == 404
    bob = get(client, auth, "/notifications", user="bob").get_json()
    assert bob["total"] == 3 and all(n["read_at"] is None for n in bob["notifications"])


def test_organizations_are_isolated(client: Any, auth: Any, make: Any) -> None:
    """A token's organization limits the rows to that organization (or none)."""
    alert(make, n=2, organization_id="acme")
    alert(make, n=3, organization_id="globex")
    alert(make, n=1)  # no organization
    assert get(client, auth, "/notifications", org="acme").get_json()["total"] == 3
    assert get(client, auth, "/notifications", org="globex").get_json()["total"] == 4
    assert get(client, auth, "/notifications/unread-count", org="acme").get_json() == {"count": 3}
    assert post(client, auth, "/notifications/read-all", org="acme").get_json()["count"] == 3
    assert get(client, auth, "/notifications/unread-count", org="globex").get_json() == {
        "count": 3}
    # Without an organization in the token, the user sees all of their own rows.
    assert get(client, auth, "/notifications").get_json()["total"] == 6


def test_user_id_is_opaque(client: Any, auth: Any, make: Any) -> None:
    user = "ユーザー/with spaces%and'quotes\"" + "x" * 200
    alert(make, user=user, n=1)
    alert(make, user="alice", n=1)
    body = get(client, auth, "/notifications", user=user).get_json()
    assert body["total"] == 1 and body["notifications"][0]["user_id"] == user


# --- health --------------------------------------------------------------------------


def test_healthz(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_healthz_when_the_database_fails(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from contextlib import contextmanager

    from sqlalchemy.exc import OperationalError

    from notifications.store import engine

    @contextmanager
    def broken() -> Any:
        raise OperationalError("SELECT 1", {}, Exception("disk I/O error"))
        yield

    monkeypatch.setattr(engine, "reading", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"detail": "database unavailable"}
