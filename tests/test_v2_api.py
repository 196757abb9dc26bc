"""The inbox API version 2 (SPEC §11) through the test client: records, lists, cursors,
counts, PATCH and bulk, and what the seed variants' changes look like through it."""
from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import DATASET

pytestmark = pytest.mark.both_databases

V2 = "/api/v2/notifications"
ENVELOPE = ["code", "message", "detail", "hint", "details", "request_id"]
V2_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
RECORD_KEYS = ["id", "user_id", "organization_id", "dataset_id", "kind", "entity_type",
               "entity_id", "title", "body", "link", "metadata", "created_at", "seen_at",
               "read_at", "archived_at", "collapsed_count"]


def ntf(row: dict[str, Any]) -> str:
    return "ntf_" + row["id"].replace("-", "")


@pytest.fixture
def alice(auth: Any) -> dict[str, str]:
    return auth.headers("alice", "acme")


def items(client: Any, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    response = client.get(f"{V2}{query}", headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def test_the_record_has_every_field_in_order_with_six_digit_utc_times(
        client: Any, make: Any, alice: dict[str, str]) -> None:
    make("alice", 1, organization_id="acme", kind="review.created", title="New review",
         link="/reviews/1", created_at=1_776_000_000_000_000)
    body = items(client, alice)
    assert list(body) == ["items", "next_cursor", "counts"]
    record = body["items"][0]
    assert list(record) == RECORD_KEYS
    assert re.fullmatch(r"ntf_[0-9a-f]{32}", record["id"])
    assert record["created_at"] == "2026-04-12T13:20:00.000000Z"
    assert V2_TIME.fullmatch(record["created_at"])
    assert record["seen_at"] is None and record["read_at"] is None
    assert record["archived_at"] is None and record["collapsed_count"] == 0
    assert record["metadata"] == {} and record["entity_type"] is None
    assert body["counts"] == {"total": 1, "unread": 1, "unseen": 1}
    assert body["next_cursor"] is None


def test_scope_is_the_users_organization_and_no_organization(
        client: Any, make: Any, auth: Any) -> None:
    make("alice", 1, organization_id="acme", title="acme")
    make("alice", 1, organization_id=None, title="personal")
    make("alice", 1, organization_id="globex", title="globex")
    make("bob", 1, organization_id="acme", title="bob's")
    titles = {i["title"] for i in items(client, auth.headers("alice", "acme"))["items"]}
    assert titles == {"acme", "personal"}
    everything = {i["title"] for i in items(client, auth.headers("alice"))["items"]}
    assert everything == {"acme", "personal", "globex"}


def test_api_keys_and_missing_tokens_are_refused_in_the_envelope(client: Any) -> None:
    refused = client.get(V2, headers={"X-API-Key": "k"})
    assert refused.status_code == 403 and list(refused.json) == ENVELOPE
    assert refused.headers["X-Request-Id"] == refused.json["request_id"]
    missing = client.get(V2)
    assert missing.status_code == 401 and list(missing.json) == ENVELOPE


def test_a_cursor_walks_every_row_once_while_rows_arrive_and_change(
        client: Any, make: Any, alice: dict[str, str]) -> None:
    rows = make("alice", 7, organization_id="acme")
    seen: list[str] = []
    body = items(client, alice, "?limit=3")
    seen += [i["id"] for i in body["items"]]
    # New rows and state changes between pages move nothing the cursor has not reached.
    make("alice", 2, organization_id="acme")
    client.patch(f"{V2}/{seen[0]}", json={"read": True}, headers=alice)
    while body["next_cursor"]:
        body = items(client, alice, f"?limit=3&cursor={body['next_cursor']}")
        seen += [i["id"] for i in body["items"]]
    assert sorted(seen) == sorted(ntf(r) for r in rows) and len(seen) == len(set(seen))


def test_a_cursor_of_another_filter_or_a_made_up_one_is_422(
        client: Any, make: Any, alice: dict[str, str]) -> None:
    make("alice", 3, organization_id="acme")
    cursor = items(client, alice, "?limit=1")["next_cursor"]
    assert cursor
    for query in (f"?status=unread&cursor={cursor}", "?cursor=abc", f"?cursor={cursor[:-2]}xx"):
        response = client.get(V2 + query, headers=alice)
        assert response.status_code == 422, query
        assert list(response.json) == ENVELOPE and response.json["code"] == "validation_failed"


def test_filters_status_archived_kind_and_dataset(
        client: Any, make: Any, alice: dict[str, str]) -> None:
    review = make("alice", 2, organization_id="acme", kind="review.created")
    make("alice", 1, organization_id="acme", kind="reviews.created")
    make("alice", 1, organization_id="acme", kind="comment", dataset_id=DATASET)
    client.patch(f"{V2}/{ntf(review[0])}", json={"read": True}, headers=alice)
    client.patch(f"{V2}/{ntf(review[1])}", json={"archived": True}, headers=alice)

    def kinds(query: str) -> list[str]:
        return sorted(i["kind"] for i in items(client, alice, query)["items"])

    assert kinds("") == ["comment", "review.created", "reviews.created"]
    assert kinds("?kind=review.*") == ["review.created"]
    assert kinds("?kind=review.*&archived=all") == ["review.created", "review.created"]
    assert kinds("?archived=true") == ["review.created"]
    assert kinds("?status=read") == ["review.created"]
    assert kinds("?status=unread") == ["comment", "reviews.created"]
    assert kinds(f"?dataset_id={DATASET}") == ["comment"]
    assert kinds("?kind=comment&kind=reviews.created") == ["comment", "reviews.created"]
    counts = items(client, alice, "?kind=review.*")["counts"]
    assert counts == {"total": 1, "unread": 0, "unseen": 0}
    assert client.get(f"{V2}/counts", headers=alice).json == {
        "total": 3, "unread": 2, "unseen": 2}
    assert client.get(f"{V2}/counts?kind=comment", headers=alice).json == {
        "total": 1, "unread": 1, "unseen": 1}


def test_get_one_and_404_for_foreign_missing_or_malformed(
        client: Any, make: Any, alice: dict[str, str]) -> None:
    mine = make("alice", 1, organization_id="acme")[0]
    theirs = make("bob", 1, organization_id="acme")[0]
    got = client.get(f"{V2}/{ntf(mine)}", headers=alice)
    assert got.status_code == 200 and got.json["id"] == ntf(mine)
    for other in (ntf(theirs), "ntf_" + "0" * 32, mine["id"], "nope"):
        response = client.get(f"{V2}/{other}", headers=alice)
        assert response.status_code == 404, other
        assert response.json["code"] == "not_found" and list(response.json) == ENVELOPE


def test_patch_is_idempotent_and_reading_implies_seen(
        client: Any, make: Any, alice: dict[str, str]) -> None:
    row = make("alice", 1, organization_id="acme")[0]
    url = f"{V2}/{ntf(row)}"
    first = client.patch(url, json={"read": True}, headers=alice)
    assert first.status_code == 200
    assert first.json["read_at"] and first.json["seen_at"] == first.json["read_at"]
    again = client.patch(url, json={"read": True}, headers=alice)
    assert again.json == first.json
    unread = client.patch(url, json={"read": False}, headers=alice).json
    assert unread["read_at"] is None and unread["seen_at"] == first.json["seen_at"]
    archived = client.patch(url, json={"archived": True, "seen": True}, headers=alice).json
    assert archived["archived_at"] and archived["seen_at"] == first.json["seen_at"]
    assert items(client, alice)["items"] == []
    back = client.patch(url, json={"archived": False}, headers=alice).json
    assert back["archived_at"] is None


@pytest.mark.parametrize("body", [{}, {"seen": False}, {"read": "yes"}, {"colour": "red"},
                                  {"read": True, "extra": 1}])
def test_bad_patches_are_422_and_change_nothing(client: Any, make: Any, alice: dict[str, str],
                                                body: dict[str, Any]) -> None:
    row = make("alice", 1, organization_id="acme")[0]
    response = client.patch(f"{V2}/{ntf(row)}", json=body, headers=alice)
    assert response.status_code == 422 and list(response.json) == ENVELOPE
    record = client.get(f"{V2}/{ntf(row)}", headers=alice).json
    assert record["read_at"] is None and record["seen_at"] is None


def test_bulk_by_ids_counts_only_what_changed(client: Any, make: Any, auth: Any,
                                              alice: dict[str, str]) -> None:
    rows = make("alice", 3, organization_id="acme")
    foreign = make("bob", 1, organization_id="acme")[0]
    ids = [ntf(r) for r in rows] + [ntf(foreign)]
    bulk = client.post(f"{V2}/bulk", json={"action": "read", "ids": ids[:2]}, headers=alice)
    assert bulk.status_code == 200 and bulk.json == {"updated": 2}
    again = client.post(f"{V2}/bulk", json={"action": "read", "ids": ids}, headers=alice)
    assert again.json == {"updated": 1}  # the third; bob's is skipped
    assert client.get(f"{V2}/counts", headers=alice).json["unread"] == 0
    bobs = client.get(f"{V2}/{ntf(foreign)}", headers=auth.headers("bob", "acme")).json
    assert bobs["read_at"] is None


def test_bulk_by_filter_matches_the_list_with_that_filter(
        client: Any, make: Any, alice: dict[str, str]) -> None:
    make("alice", 4, organization_id="acme", kind="review.created")
    make("alice", 3, organization_id="acme", kind="comment")
    listed = items(client, alice, "?kind=review.*&status=unread")["counts"]["total"]
    bulk = client.post(f"{V2}/bulk", headers=alice, json={
        "action": "archive", "filter": {"kind": ["review.*"], "status": "unread"}})
    assert bulk.status_code == 200 and bulk.json == {"updated": listed} == {"updated": 4}
    assert items(client, alice, "?archived=true")["counts"]["total"] == 4
    unarchive = client.post(f"{V2}/bulk", headers=alice, json={
        "action": "unarchive", "filter": {"archived": "true"}})
    assert unarchive.json == {"updated": 4}
    seen = client.post(f"{V2}/bulk", headers=alice, json={"action": "seen", "filter": {}})
    assert seen.json == {"updated": 7}
    assert client.get(f"{V2}/counts", headers=alice).json == {
        "total": 7, "unread": 7, "unseen": 0}


@pytest.mark.parametrize("body", [
    {"action": "read"}, {"action": "read", "ids": [], "filter": {}},
    {"action": "explode", "ids": []}, {"action": "read", "ids": ["x"]},
    {"action": "read", "ids": ["ntf_" + "a" * 32] * 1001},
])
def test_bad_bulk_bodies_are_422(client: Any, alice: dict[str, str],
                                 body: dict[str, Any]) -> None:
    response = client.post(f"{V2}/bulk", json=body, headers=alice)
    assert response.status_code == 422 and list(response.json) == ENVELOPE


def test_the_seed_variants_changes_show_through_version_2(
        client: Any, make: Any, auth: Any, alice: dict[str, str]) -> None:
    dataset_row = make("alice", 1, organization_id="acme", dataset_id=DATASET)[0]
    org_row = make("alice", 1, organization_id="acme")[0]
    read = client.post(f"/api/v1/notifications/{dataset_row['id']}/read",
                       headers=auth.headers("alice", "acme"))
    assert read.status_code == 200
    marked = client.post("/api/v1/org/notifications/mark-read", headers=alice,
                         json={"ids": [ntf(org_row)]})
    assert marked.status_code == 200
    for row in (dataset_row, org_row):
        record = client.get(f"{V2}/{ntf(row)}", headers=alice).json
        assert record["read_at"] and record["seen_at"] == record["read_at"]
    assert client.get(f"{V2}/counts", headers=alice).json == {
        "total": 2, "unread": 0, "unseen": 0}
    # And version 2's changes show through the seed variants.
    client.patch(f"{V2}/{ntf(org_row)}", json={"read": False}, headers=alice)
    inbox = client.get("/api/v1/org/notifications", headers=alice).json
    assert inbox["unread"] == 1


def test_the_api_description_has_version_2(client: Any) -> None:
    document = client.get("/openapi.json").json
    paths = document["paths"]
    assert {"get"} <= set(paths["/api/v2/notifications"])
    assert set(paths["/api/v2/notifications/{notification_id}"]) == {"get", "patch"}
    assert "post" in paths["/api/v2/notifications/bulk"]
    assert "get" in paths["/api/v2/notifications/counts"]


def test_a_browser_may_patch_from_a_listed_origin(app_config: dict[str, Any], auth: Any,
                                                  make: Any) -> None:
    from notifications import create_app

    app = create_app({**app_config, "CORS_ORIGINS": "https://app.example"})
    client = app.test_client()
    with app.app_context():
        from notifications.store import inserts
        row = inserts.create_notifications([{"user_id": "alice", "organization_id": "acme"}])[0]
    preflight = client.options(f"{V2}/{ntf(row)}", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "PATCH"})
    assert preflight.status_code == 204
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"].split(", ")
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"].split(", ")
    patched = client.patch(f"{V2}/{ntf(row)}", json={"read": True},
                           headers={"Origin": "https://app.example",
                                    **auth.headers("alice", "acme")})
    assert patched.status_code == 200
    assert patched.headers["Access-Control-Allow-Origin"] == "https://app.example"
