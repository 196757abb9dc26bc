"""Organization-scoped inbox API (SPEC §5, issue 3) through the test client."""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import DATASET

from notifications import create_app
from notifications.settings import ConfigError

pytestmark = pytest.mark.both_databases

ORG = "/api/v1/org"
ENVELOPE = ["code", "message", "detail", "hint", "details", "request_id"]
NTF_ID = re.compile(r"ntf_[0-9a-f]{32}")
Z_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")
#: Reference payloads of the public API this variant mirrors, kept with the tests.
REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference"


def reference(name: str) -> Any:
    """Load a reference payload from ``tests/fixtures/reference``."""
    return json.loads((REFERENCE / name).read_text())


def inbox(make: Any, user: str = "alice", org: str = "acme", n: int = 1,
          **fields: Any) -> list[dict[str, Any]]:
    defaults = {"organization_id": org, "kind": "review.created",
                "title": "New review on Edge rules project",
                "body": "Ana requested your review on 'Refactor sshd'",
                "link": "/projects/prj_1234/reviews/rev_5678"}
    return make(user=user, n=n, **{**defaults, **fields})


def ntf(row: dict[str, Any]) -> str:
    return "ntf_" + row["id"].replace("-", "")


def get(client: Any, auth: Any, path: str = "/notifications", user: str = "alice",
        org: str | None = "acme", **kwargs: Any) -> Any:
    headers = {**auth.headers(user, org), **kwargs.pop("headers", {})}
    return client.get(ORG + path, headers=headers, **kwargs)


def mark(client: Any, auth: Any, body: Any = None, user: str = "alice", org: str = "acme",
         raw: bytes | str | None = None, **kwargs: Any) -> Any:
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    headers = {**auth.headers(user, org), "Content-Type": "application/json"}
    return client.post(ORG + "/notifications/mark-read", headers=headers, data=data, **kwargs)


def assert_envelope(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == ENVELOPE
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert body["detail"] == body["message"]
    assert body["hint"] is None or isinstance(body["hint"], str)
    assert isinstance(body["details"], dict)
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body


# --- mounting ------------------------------------------------------------------------


def test_both_variants_served_at_once(client: Any, auth: Any, make: Any) -> None:
    inbox(make, n=2)
    dataset = client.get("/api/v1/notifications", headers=auth.headers("alice", "acme"))
    org = get(client, auth)
    assert dataset.status_code == org.status_code == 200
    assert dataset.get_json()["total"] == org.get_json()["total"] == 2
    assert set(dataset.get_json()) == {"notifications", "total", "has_more"}
    assert set(org.get_json()) == {"items", "total", "unread"}


def test_one_blueprint_registered_twice(app: Any) -> None:
    from notifications.http.blueprint import bp

    assert {name: app.blueprints[name] for name in ("dataset", "organization")} == {
        "dataset": bp, "organization": bp}


@pytest.mark.parametrize("off", ["off", "OFF", "none", ""])
def test_organization_prefix_off(app_config: dict[str, Any], auth: Any, off: str) -> None:
    client = create_app({**app_config, "ORGANIZATION_PREFIX": off}).test_client()
    assert client.get("/api/v1/notifications", headers=auth.headers()).status_code == 200
    response = client.get(ORG + "/notifications", headers=auth.headers("alice", "acme"))
    assert response.status_code == 404
    # The path now falls under the dataset variant's prefix, so its error format applies.
    assert response.get_json() == {"detail": "Not Found"}


def test_dataset_prefix_off(app_config: dict[str, Any], auth: Any) -> None:
    client = create_app({**app_config, "DATASET_PREFIX": "off"}).test_client()
    assert client.get(ORG + "/notifications", headers=auth.headers("a", "o")).status_code == 200
    response = client.get("/api/v1/notifications", headers=auth.headers())
    assert response.status_code == 404 and response.get_json() == {"detail": "Not Found"}


def test_custom_prefixes(app_config: dict[str, Any], auth: Any) -> None:
    client = create_app({**app_config, "DATASET_PREFIX": "/alerts/",
                         "ORGANIZATION_PREFIX": "inbox"}).test_client()
    assert client.get("/alerts/notifications", headers=auth.headers()).status_code == 200
    assert client.get("/inbox/notifications", headers=auth.headers("a", "o")).status_code == 200
    missing = client.get("/inbox/nothing", headers=auth.headers("a", "o"))
    assert_envelope(missing, 404, "not_found")


@pytest.mark.parametrize(("dataset", "organization"),
                         [("/api/v1", "/api/v1"), ("/api/v1/", "api/v1"), ("/", "/")])
def test_equal_prefixes_stop_startup(app_config: dict[str, Any], dataset: str,
                                     organization: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app({**app_config, "DATASET_PREFIX": dataset,
                    "ORGANIZATION_PREFIX": organization})
    message = str(caught.value)
    assert "NOTIFICATIONS_DATASET_PREFIX" in message
    assert "NOTIFICATIONS_ORGANIZATION_PREFIX" in message
    assert "off" in message


# --- list ----------------------------------------------------------------------------


def test_list_shape_matches_reference(client: Any, auth: Any, make: Any) -> None:
    row = inbox(make, created_at=1_777_039_200_000_000)[0]
    response = get(client, auth)
    assert response.status_code == 200
    body = response.get_json()
    expected = reference("org_list.json")
    assert list(body) == list(expected)
    item = body["items"][0]
    assert list(item) == list(expected["items"][0])
    assert item == {
        "id": ntf(row),
        "user_id": "alice",
        "organization_id": "acme",
        "kind": "review.created",
        "title": "New review on Edge rules project",
        "body": "Ana requested your review on 'Refactor sshd'",
        "link": "/projects/prj_1234/reviews/rev_5678",
        "read_at": None,
        "created_at": "2026-04-24T14:00:00Z",
    }
    assert body["total"] == 1 and body["unread"] == 1


def test_ids_and_times(client: Any, auth: Any, make: Any) -> None:
    inbox(make, created_at=1_777_039_200_123_456)
    inbox(make)
    mark(client, auth, {})
    for item in get(client, auth).get_json()["items"]:
        assert NTF_ID.fullmatch(item["id"])
        assert Z_TIME.fullmatch(item["created_at"]) and Z_TIME.fullmatch(item["read_at"])
    oldest = get(client, auth).get_json()["items"][-1]
    assert oldest["created_at"] == "2026-04-24T14:00:00.123456Z"


def test_times_before_year_1000_keep_four_digit_years(client: Any, auth: Any, make: Any) -> None:
    inbox(make, created_at=-60_000_000_000_000_000)  # year 68: strftime("%Y") wrote "68"
    inbox(make, created_at=-31_000_000_000_000_001)
    items = get(client, auth).get_json()["items"]
    assert [i["created_at"] for i in items] == ["0987-08-25T16:53:19.999999Z",
                                                "0068-09-03T13:20:00Z"]


def test_newest_first(client: Any, auth: Any, make: Any) -> None:
    for created in (3, 1, 2):
        inbox(make, created_at=1_777_039_200_000_000 + created, title=str(created))
    assert [i["title"] for i in get(client, auth).get_json()["items"]] == ["3", "2", "1"]


@pytest.mark.parametrize(("query", "count"), [
    ("", 50), ("?limit=1", 1), ("?limit=200", 200), ("?limit=199", 199), ("?limit=60", 60),
])
def test_limit(client: Any, auth: Any, make: Any, query: str, count: int) -> None:
    inbox(make, n=200)
    response = get(client, auth, "/notifications" + query)
    assert response.status_code == 200
    body = response.get_json()
    assert len(body["items"]) == count
    assert body["total"] == 200 and body["unread"] == 200


def test_unread_only_total_and_unread(client: Any, auth: Any, make: Any) -> None:
    rows = inbox(make, n=5)
    mark(client, auth, {"ids": [ntf(rows[0]), ntf(rows[1])]})
    everything = get(client, auth).get_json()
    assert everything["total"] == 5 and everything["unread"] == 3
    for value in ("true", "True", "1"):
        unread = get(client, auth, f"/notifications?unread_only={value}").get_json()
        assert unread["total"] == 3 and unread["unread"] == 3
        assert all(i["read_at"] is None for i in unread["items"])
    for value in ("false", "False", "0"):
        assert get(client, auth, f"/notifications?unread_only={value}").get_json()["total"] == 5
    limited = get(client, auth, "/notifications?unread_only=true&limit=1").get_json()
    assert len(limited["items"]) == 1 and limited["total"] == 3


@pytest.mark.parametrize(
    ("query", "loc", "msg"),
    [
        ("limit=0", ["query", "limit"], "must be between 1 and 200"),
        ("limit=201", ["query", "limit"], "must be between 1 and 200"),
        ("limit=-5", ["query", "limit"], "must be between 1 and 200"),
        ("limit=abc", ["query", "limit"], "must be an integer"),
        ("limit=", ["query", "limit"], "must be an integer"),
        ("unread_only=maybe", ["query", "unread_only"], "must be true or false"),
    ],
)
def test_list_validation(client: Any, auth: Any, query: str, loc: list[str], msg: str) -> None:
    body = assert_envelope(get(client, auth, "/notifications?" + query), 422, "validation_failed")
    assert body["details"] == {"errors": [{"loc": loc, "msg": msg}]}


def test_validation_envelope_matches_reference(client: Any, auth: Any) -> None:
    body = get(client, auth, "/notifications?limit=201").get_json()
    expected = reference("org_error.json")
    assert {k: v for k, v in body.items() if k != "request_id"} == {
        k: v for k, v in expected.items() if k != "request_id"}


# --- mark-read -----------------------------------------------------------------------


def test_mark_read_listed_ids(client: Any, auth: Any, make: Any) -> None:
    rows = inbox(make, n=3)
    response = mark(client, auth, reference("org_mark_read_request.json") | {
        "ids": [ntf(rows[0]), ntf(rows[2])]})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"items", "total", "unread"}
    assert body["total"] == 3 and body["unread"] == 1
    read = {i["id"] for i in body["items"] if i["read_at"] is not None}
    assert read == {ntf(rows[0]), ntf(rows[2])}


@pytest.mark.parametrize(
    "send",
    [
        {"body": {"ids": []}},
        {"body": {}},
        {"body": {"ids": None}},
        {"body": {"other": 1}},
        {"raw": b""},
        {"raw": b"  \n"},
        {},
    ],
    ids=["empty list", "no ids", "ids null", "other keys", "empty body", "blank body", "no body"],
)
def test_mark_read_everything(client: Any, auth: Any, make: Any, send: dict[str, Any]) -> None:
    inbox(make, n=3)
    inbox(make, org="globex", n=2)
    inbox(make, user="bob", n=2)
    body = mark(client, auth, **send).get_json()
    assert body["total"] == 3 and body["unread"] == 0
    assert all(i["read_at"] is not None for i in body["items"])
    assert get(client, auth, org="globex").get_json()["unread"] == 2
    assert get(client, auth, user="bob").get_json()["unread"] == 2


def test_mark_read_without_content_type(client: Any, auth: Any, make: Any) -> None:
    rows = inbox(make, n=2)
    response = client.post(ORG + "/notifications/mark-read", headers=auth.headers("alice", "acme"),
                           data=json.dumps({"ids": [ntf(rows[0])]}))
    assert response.status_code == 200 and response.get_json()["unread"] == 1


def test_mark_read_is_idempotent(client: Any, auth: Any, make: Any) -> None:
    rows = inbox(make, n=2)
    first = mark(client, auth, {"ids": [ntf(rows[0])]}).get_json()
    second = mark(client, auth, {"ids": [ntf(rows[0])]}).get_json()
    assert first == second
    assert first["unread"] == 1
    everything = mark(client, auth, {}).get_json()
    assert mark(client, auth, {}).get_json() == everything


def test_mark_read_ignores_unknown_and_foreign_ids(client: Any, auth: Any, make: Any) -> None:
    mine = inbox(make, n=2)
    other_org = inbox(make, org="globex")[0]
    other_user = inbox(make, user="bob")[0]
    ids = [ntf(mine[0]), ntf(other_org), ntf(other_user), "ntf_" + uuid.uuid4().hex,
           "abc", "", "ntf_xyz", mine[1]["id"]]
    response = mark(client, auth, {"ids": ids})
    assert response.status_code == 200
    assert response.get_json()["unread"] == 1
    assert get(client, auth, org="globex").get_json()["unread"] == 1
    assert get(client, auth, user="bob").get_json()["unread"] == 1


def test_mark_read_only_unknown_ids_marks_nothing(client: Any, auth: Any, make: Any) -> None:
    inbox(make, n=2)
    body = mark(client, auth, {"ids": ["ntf_" + uuid.uuid4().hex, "nonsense"]}).get_json()
    assert body["unread"] == 2


def test_mark_read_accepts_upper_case_hex(client: Any, auth: Any, make: Any) -> None:
    row = inbox(make)[0]
    assert mark(client, auth, {"ids": ["ntf_" + row["id"].replace("-", "").upper()]},
                ).get_json()["unread"] == 0


def test_mark_read_at_most_1000_ids(client: Any, auth: Any, make: Any) -> None:
    rows = inbox(make, n=2)
    ok = mark(client, auth, {"ids": [ntf(rows[0])] + ["ntf_" + uuid.uuid4().hex] * 999})
    assert ok.status_code == 200 and ok.get_json()["unread"] == 1
    too_many = mark(client, auth, {"ids": [ntf(rows[1])] * 1001})
    body = assert_envelope(too_many, 422, "validation_failed")
    assert body["details"] == {"errors": [{"loc": ["body", "ids"],
                                           "msg": "must contain at most 1000 items"}]}
    assert get(client, auth).get_json()["unread"] == 1


@pytest.mark.parametrize(
    ("raw", "loc", "msg"),
    [
        (b'{"ids": "ntf_5f0c6a1e2b7d4c0e9a3b8d1f2e4c6a7b"}', ["body", "ids"], "must be a list"),
        (b'{"ids": {"a": 1}}', ["body", "ids"], "must be a list"),
        (b'{"ids": 5}', ["body", "ids"], "must be a list"),
        (b'{"ids": [1]}', ["body", "ids", 0], "must be a string"),
        (b'{"ids": ["ntf_5f0c6a1e2b7d4c0e9a3b8d1f2e4c6a7b", null]}', ["body", "ids", 1],
         "must be a string"),
        (b'{"ids": [["x"]]}', ["body", "ids", 0], "must be a string"),
        (b"not json", ["body"], "must be valid JSON"),
        (b'{"ids": [', ["body"], "must be valid JSON"),
        (b"\xff\xfe", ["body"], "must be valid JSON"),
        (b"[]", ["body"], "must be a JSON object"),
        (b'"ids"', ["body"], "must be a JSON object"),
        # Decided: a JSON null body is not an object, unlike an empty body.
        (b"null", ["body"], "must be a JSON object"),
    ],
)
def test_mark_read_bad_bodies(client: Any, auth: Any, make: Any, raw: bytes, loc: list[Any],
                              msg: str) -> None:
    inbox(make, n=2)
    body = assert_envelope(mark(client, auth, raw=raw), 422, "validation_failed")
    assert body["details"]["errors"][0] == {"loc": loc, "msg": msg}
    assert get(client, auth).get_json()["unread"] == 2


# --- session rule --------------------------------------------------------------------


def test_token_without_organization_is_403(client: Any, auth: Any, make: Any) -> None:
    inbox(make)
    for response in (get(client, auth, org=None),
                     client.post(ORG + "/notifications/mark-read", headers=auth.headers("alice"))):
        body = assert_envelope(response, 403, "forbidden")
        assert body["message"] == "notifications require a user session"
        assert "user" in body["hint"]
    assert get(client, auth).get_json()["unread"] == 1


@pytest.mark.parametrize("with_token", [True, False])
def test_api_key_is_403(client: Any, auth: Any, make: Any, with_token: bool) -> None:
    inbox(make)
    headers = {"X-API-Key": "key_123", **(auth.headers("alice", "acme") if with_token else {})}
    for response in (client.get(ORG + "/notifications", headers=headers),
                     client.post(ORG + "/notifications/mark-read", headers=headers)):
        body = assert_envelope(response, 403, "forbidden")
        assert body["message"] == "notifications require a user session"
    assert get(client, auth).get_json()["unread"] == 1


def test_unauthenticated_is_401(client: Any) -> None:
    body = assert_envelope(client.get(ORG + "/notifications"), 401, "unauthorized")
    assert body["hint"]
    assert_envelope(client.post(ORG + "/notifications/mark-read"), 401, "unauthorized")


# --- envelope everywhere -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nothing", 404, "not_found"),
        ("GET", "/notifications/unread-count", 404, "not_found"),
        ("GET", "", 404, "not_found"),
        ("POST", "/notifications", 405, "method_not_allowed"),
        ("GET", "/notifications/mark-read", 405, "method_not_allowed"),
        ("DELETE", "/notifications/mark-read", 405, "method_not_allowed"),
    ],
)
def test_routing_errors_use_envelope(client: Any, auth: Any, method: str, path: str,
                                     status: int, code: str) -> None:
    response = client.open(ORG + path, method=method, headers=auth.headers("alice", "acme"))
    assert_envelope(response, status, code)
    if status == 405:
        assert response.headers["Allow"]


def test_internal_error_uses_envelope(client: Any, auth: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from notifications.store import reads

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(reads, "list_notifications", broken)
    response = get(client, auth)
    body = assert_envelope(response, 500, "internal_error")
    assert "disk on fire" not in response.get_data(as_text=True)
    dataset = client.get("/api/v1/notifications", headers=auth.headers())
    assert dataset.status_code == 500 and dataset.get_json() == {"detail": "Internal Server Error"}
    assert body["request_id"]


def test_request_id_echoed_when_valid(client: Any, auth: Any) -> None:
    incoming = "req-1234.abc:XYZ_9"
    ok = get(client, auth, headers={"X-Request-Id": incoming})
    assert ok.status_code == 200 and ok.headers["X-Request-Id"] == incoming
    error = client.get(ORG + "/notifications", headers={"X-Request-Id": incoming})
    assert assert_envelope(error, 401, "unauthorized")["request_id"] == incoming


@pytest.mark.parametrize("incoming", ["has space", "x" * 129, "semi;colon", "<script>", "ü"])
def test_invalid_request_id_replaced(client: Any, incoming: str) -> None:
    response = client.get(ORG + "/notifications", headers={"X-Request-Id": incoming})
    body = assert_envelope(response, 401, "unauthorized")
    assert body["request_id"] != incoming
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])


def test_generated_request_ids_differ(client: Any) -> None:
    ids = {client.get(ORG + "/notifications").headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3


# --- isolation -----------------------------------------------------------------------


def test_same_user_two_organizations_two_inboxes(client: Any, auth: Any, make: Any) -> None:
    acme = inbox(make, org="acme", n=2, title="acme")
    inbox(make, org="globex", n=3, title="globex")
    inbox(make, org=None, n=1, dataset_id=DATASET)  # a dataset alert belongs to no inbox
    a = get(client, auth, org="acme").get_json()
    g = get(client, auth, org="globex").get_json()
    assert (a["total"], a["unread"], g["total"], g["unread"]) == (2, 2, 3, 3)
    assert {i["title"] for i in a["items"]} == {"acme"}
    assert {i["organization_id"] for i in g["items"]} == {"globex"}
    # Ids of another organization are ignored, even the caller's own.
    body = mark(client, auth, {"ids": [ntf(acme[0])]}, org="globex").get_json()
    assert body["unread"] == 3
    assert get(client, auth, org="acme").get_json()["unread"] == 2


def test_mark_all_never_touches_other_organizations_or_users(client: Any, auth: Any,
                                                             make: Any) -> None:
    inbox(make, org="acme", n=2)
    inbox(make, org="globex", n=2)
    inbox(make, user="bob", org="acme", n=2)
    make(user="alice", n=2)  # no organization
    assert mark(client, auth, {"ids": []}, org="acme").get_json()["unread"] == 0
    assert get(client, auth, org="globex").get_json()["unread"] == 2
    assert get(client, auth, user="bob", org="acme").get_json()["unread"] == 2
    dataset_count = client.get("/api/v1/notifications/unread-count", headers=auth.headers())
    assert dataset_count.get_json() == {"count": 4}
