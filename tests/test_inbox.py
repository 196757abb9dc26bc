"""The inbox page's server side: the page, its configuration, the session cookie, demo helpers."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import DATASET

from notifications.extension import state

pytestmark = pytest.mark.both_databases


@pytest.fixture
def make_app(app_config: dict[str, Any]) -> Any:
    """Factory: the test app with some settings changed; its store is closed after the test."""
    from notifications import create_app

    built: list[Any] = []

    def make(**settings: Any) -> Any:
        built.append(create_app({**app_config, **settings}))
        return built[-1]

    yield make
    for application in built:
        state(application).store.close()


def page_config(client: Any) -> dict[str, Any]:
    """Return the configuration the page's script reads, as the page carries it."""
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    found = re.search(r'<script type="application/json" id="inbox-config">(.*?)</script>', html)
    assert found, html
    return json.loads(found.group(1))


def cookie_of(response: Any, name: str = "session") -> str:
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "=")]
    assert len(headers) == 1, response.headers
    return headers[0]


def test_page_is_served_with_a_strict_policy_and_its_files(client: Any) -> None:
    response = client.get("/")
    assert response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy
    html = response.get_data(as_text=True)
    assert 'src="/static/inbox/inbox.js"' in html and 'href="/static/inbox/inbox.css"' in html
    assert "https://" not in html  # nothing from another host
    for name, kind in (("inbox.js", "javascript"), ("inbox.css", "css")):
        with client.get(f"/static/inbox/{name}") as asset:
            assert asset.status_code == 200 and kind in asset.mimetype
            if name == "inbox.js":
                assert "EventSource" in asset.get_data(as_text=True)


def test_page_carries_the_configured_prefixes(make_app: Any) -> None:
    assert page_config(make_app().test_client()) == {
        "dataset": "/api/v1", "organization": "/api/v1/org", "session": "/session", "demo": None,
    }
    moved = make_app(DATASET_PREFIX="/alerts/", ORGANIZATION_PREFIX="off")
    config = page_config(moved.test_client())
    assert config["dataset"] == "/alerts" and config["organization"] is None


def test_page_names_the_prefixes_under_the_script_root(client: Any) -> None:
    config = page_config_at(client, "/notify")
    assert config["dataset"] == "/notify/api/v1" and config["session"] == "/notify/session"


def page_config_at(client: Any, script_root: str) -> dict[str, Any]:
    html = client.get("/", base_url=f"http://localhost{script_root}").get_data(as_text=True)
    assert f'src="{script_root}/static/inbox/inbox.js"' in html
    found = re.search(r'id="inbox-config">(.*?)</script>', html)
    assert found
    return json.loads(found.group(1))


def test_sign_in_keeps_the_token_in_an_http_only_cookie(client: Any, auth: Any) -> None:
    token = auth.token("alice", "acme")
    assert client.get("/session").json == {
        "signed_in": False, "user_id": None, "organization_id": None}
    response = client.post("/session", json={"token": token})
    assert response.status_code == 200
    assert response.json == {"signed_in": True, "user_id": "alice", "organization_id": "acme"}
    assert token not in response.get_data(as_text=True)
    cookie = cookie_of(response)
    assert cookie.startswith(f"session={token};")
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain http here; https sets it
    # The cookie alone authenticates the APIs (what EventSource relies on).
    assert client.get("/api/v1/notifications").status_code == 200
    assert client.get("/api/v1/org/notifications").status_code == 200
    assert client.get("/session").json["user_id"] == "alice"

    response = client.delete("/session")
    assert response.status_code == 204
    assert "Max-Age=0" in cookie_of(response)
    assert client.get("/api/v1/notifications").status_code == 401


def test_cookie_name_follows_the_setting(make_app: Any, auth: Any) -> None:
    client = make_app(SESSION_COOKIE="jwt").test_client()
    response = client.post("/session", json={"token": auth.token("bob", "acme")},
                           base_url="https://notify.example")
    cookie = cookie_of(response, "jwt")
    assert "Secure" in cookie


@pytest.mark.parametrize("body, status", [
    ({"token": "not-a-token"}, 401),
    ({"token": ""}, 422),
    ({}, 422),
    ({"token": "x", "extra": 1}, 422),
])
def test_sign_in_refuses_bad_tokens_without_a_cookie(client: Any, body: Any, status: int) -> None:
    response = client.post("/session", json=body)
    assert response.status_code == status
    assert "Set-Cookie" not in response.headers


def test_sign_in_refuses_an_expired_token(client: Any, auth: Any) -> None:
    response = client.post("/session", json={"token": auth.token("alice", exp=1)})
    assert response.status_code == 401 and "expired" in response.json["detail"]


def test_sign_in_only_from_this_origin_and_as_json(client: Any, auth: Any) -> None:
    token = auth.token("alice", "acme")
    # A plain cross-site form cannot send JSON.
    form = client.post("/session", data={"token": token})
    assert form.status_code == 415 and "Set-Cookie" not in form.headers
    foreign = client.post("/session", json={"token": token},
                          headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "Set-Cookie" not in foreign.headers
    assert client.delete("/session", headers={"Origin": "https://evil.example"}).status_code == 403
    same = client.post("/session", json={"token": token}, headers={"Origin": "http://localhost"})
    assert same.status_code == 200


def test_a_listed_cors_origin_may_sign_in(make_app: Any, auth: Any) -> None:
    client = make_app(CORS_ORIGINS="http://localhost:5173").test_client()
    response = client.post("/session", json={"token": auth.token("alice", "acme")},
                           headers={"Origin": "http://localhost:5173"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"


def test_a_stale_cookie_is_reported_and_cleared(client: Any, auth: Any) -> None:
    client.set_cookie("session", auth.token("alice", exp=1))
    response = client.get("/session")
    assert response.json["signed_in"] is False and "expired" in response.json["detail"]
    assert "Max-Age=0" in cookie_of(response)


def test_open_mode_needs_no_sign_in(make_app: Any) -> None:
    client = make_app(OPEN_USER="ops", OPEN_ORGANIZATION="acme").test_client()
    assert client.get("/session").json == {
        "signed_in": True, "user_id": "ops", "organization_id": "acme", "open": True}


def test_demo_helpers_exist_only_in_demo_mode(client: Any) -> None:
    assert client.post("/demo/session", json={"user_id": "alice"}).status_code == 404
    assert client.post("/demo/notifications", json={"title": "x"}).status_code == 404
    assert page_config(client)["demo"] is None


@pytest.fixture
def demo_client(make_app: Any) -> Any:
    return make_app(DEMO=True).test_client()


def test_demo_sign_in_and_send_through_the_ingest_path(demo_client: Any) -> None:
    config = page_config(demo_client)["demo"]
    assert {"user_id": "alice", "organization_id": "acme"} in config["users"]
    assert config["datasets"][0]["id"] == DATASET
    assert demo_client.post("/demo/notifications", json={"title": "x"}).status_code == 401
    assert demo_client.post("/demo/session", json={"user_id": "mallory"}).status_code == 404

    response = demo_client.post("/demo/session", json={"user_id": "bob"})
    assert response.status_code == 200 and response.json["organization_id"] == "acme"
    assert "HttpOnly" in cookie_of(response)

    sent = demo_client.post("/demo/notifications", json={"title": "Hello", "body": "there"})
    assert sent.status_code == 201 and sent.json["created"] == 1
    inbox = demo_client.get("/api/v1/org/notifications").json
    assert inbox["unread"] == 1 and inbox["items"][0]["title"] == "Hello"
    assert inbox["items"][0]["body"] == "there"

    alert = demo_client.post("/demo/notifications", json={"title": "Rows", "dataset_id": DATASET})
    assert alert.status_code == 201
    listed = demo_client.get(f"/api/v1/notifications?dataset_id={DATASET}").json["notifications"]
    assert listed[0]["title"] == "Rows" and listed[0]["metadata"]["is_alert"] is True
    assert listed[0]["metadata"]["dataset_name"] == "Ice cream"
    assert demo_client.get("/api/v1/org/notifications").json["unread"] == 1  # not an inbox item

    bad = demo_client.post("/demo/notifications", json={"title": "", "dataset_id": "nope"})
    assert bad.status_code == 422
    locations = [e["loc"] for e in bad.json["detail"]]
    assert ["body", "title"] in locations and ["body", "dataset_id"] in locations


def test_package_build_ships_the_page(built_package: Path) -> None:
    """A non-editable install serves the page (setup.cfg package_data)."""
    package = built_package
    for name in ("static/inbox/inbox.js", "static/inbox/inbox.css", "templates/inbox.html"):
        assert (package / name).is_file(), name
