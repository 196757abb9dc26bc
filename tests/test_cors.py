"""CORS: listed origins only, with credentials; preflights answered; nothing when unset."""
from __future__ import annotations

from typing import Any

import pytest

from notifications import create_app
from notifications.settings import ConfigError

ALLOWED = "http://localhost:5173"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "CORS_ORIGINS": f"{ALLOWED}, https://App.Example.com/"}


def cors_headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("Access-Control-")}


def assert_no_cors(client: Any, origin: str, headers: dict[str, str]) -> Any:
    """Assert a request and a preflight from ``origin`` get no CORS header; return the request's."""
    response = client.get("/api/v1/notifications", headers={"Origin": origin, **headers})
    assert response.status_code == 200
    assert cors_headers(response) == {}
    preflight = client.options("/api/v1/notifications", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET"})
    assert cors_headers(preflight) == {}
    return response


@pytest.mark.parametrize("path", ["/api/v1/notifications", "/api/v1/org/notifications",
                                  "/api/v1/notifications/unread-count", "/healthz"])
def test_listed_origin_gets_credentialed_cors(client: Any, auth: Any, path: str) -> None:
    response = client.get(path, headers={"Origin": ALLOWED, **auth.headers("alice", "acme")})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "X-Request-Id" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers.getlist("Vary")[0]


def test_origins_compare_case_insensitively_without_trailing_slash(client: Any) -> None:
    response = client.get("/healthz", headers={"Origin": "https://app.example.com"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"


def test_errors_carry_cors_headers_so_the_browser_can_read_them(client: Any) -> None:
    response = client.get("/api/v1/org/notifications", headers={"Origin": ALLOWED})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.get_json()["code"] == "unauthorized"


@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost:5174", "null",
                                    "http://localhost:5173.evil.example"])
def test_unlisted_origin_gets_no_cors_headers(client: Any, auth: Any, origin: str) -> None:
    assert_no_cors(client, origin, auth.headers())


@pytest.mark.parametrize(("path", "method"), [
    ("/api/v1/notifications", "GET"),
    ("/api/v1/notifications/read-all", "POST"),
    ("/api/v1/org/notifications/mark-read", "POST"),
])
def test_preflight_is_answered_without_credentials(client: Any, path: str, method: str) -> None:
    response = client.options(path, headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, last-event-id",
    })
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert method in response.headers["Access-Control-Allow-Methods"].split(", ")
    allowed = response.headers["Access-Control-Allow-Headers"].split(", ")
    for header in ("Authorization", "Content-Type", "Last-Event-ID", "X-Request-Id", "X-API-Key"):
        assert header in allowed
    assert int(response.headers["Access-Control-Max-Age"]) > 0


def test_preflight_of_unknown_path_is_not_found(client: Any) -> None:
    response = client.options("/nowhere", headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "GET"})
    assert response.status_code == 404


def test_no_cors_headers_at_all_when_unset(app_config: dict[str, Any], auth: Any) -> None:
    client = create_app({**app_config, "CORS_ORIGINS": ""}).test_client()
    response = assert_no_cors(client, ALLOWED, auth.headers())
    assert "Vary" not in response.headers


@pytest.mark.parametrize(("value", "message"), [
    ("*", "cannot be '*'"),
    ("localhost:5173", "is not an origin"),
    ("https://app.example.com/path", "is not an origin"),
])
def test_bad_origin_settings_stop_startup(app_config: dict[str, Any], value: str,
                                          message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_app({**app_config, "CORS_ORIGINS": value})


# --- cross-site requests with the session cookie -----------------------------------------

MARK_ALL = "/api/v1/org/notifications/mark-read"
READ_ALL = "/api/v1/notifications/read-all"


def unread(client: Any, auth: Any) -> int:
    response = client.get("/api/v1/org/notifications", headers=auth.headers("alice", "acme"))
    return response.get_json()["unread"]


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://localhost:5174"},  # another port is another origin
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"},  # Origin decides
])
def test_cookie_request_from_a_foreign_origin_cannot_change_state(client: Any, auth: Any, make: Any,
                                                                  headers: dict[str, str]) -> None:
    make("alice", n=2, organization_id="acme")
    client.set_cookie("session", auth.token("alice", "acme"))
    # A form on another site: text/plain body, the cookie attached by the browser.
    org = client.post(MARK_ALL, data="ids=", content_type="text/plain", headers=headers)
    assert org.status_code == 403
    assert org.get_json()["code"] == "forbidden" and "Cross-site" in org.get_json()["message"]
    assert org.headers["X-Request-Id"] == org.get_json()["request_id"]
    dataset = client.post(READ_ALL, headers=headers)
    assert dataset.status_code == 403
    assert set(dataset.get_json()) == {"detail"} and "Cross-site" in dataset.get_json()["detail"]
    assert unread(client, auth) == 2


@pytest.mark.parametrize("headers", [
    {},  # no Origin: not a browser, or a same-origin GET-like navigation
    {"Origin": ALLOWED},
    {"Origin": "https://app.example.com"},
    {"Origin": "http://localhost"},  # the test client's own host
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "same-site"},
])
def test_cookie_request_from_this_service_or_a_listed_origin_is_served(
        client: Any, auth: Any, make: Any, headers: dict[str, str]) -> None:
    make("alice", n=2, organization_id="acme")
    client.set_cookie("session", auth.token("alice", "acme"))
    assert client.post(MARK_ALL, json={}, headers=headers).status_code == 200
    assert unread(client, auth) == 0


def test_header_authenticated_requests_are_not_origin_checked(client: Any, auth: Any,
                                                              make: Any) -> None:
    make("alice", n=2, organization_id="acme")
    foreign = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    response = client.post(MARK_ALL, json={}, headers={**foreign, **auth.headers("alice", "acme")})
    assert response.status_code == 200 and response.get_json()["unread"] == 0
    assert client.post(READ_ALL, headers={**foreign, **auth.headers("alice")}).status_code == 200


def test_reads_with_the_cookie_from_a_foreign_origin_are_unaffected(client: Any, auth: Any) -> None:
    # The browser withholds the answer (no CORS headers); refusing a GET would protect nothing.
    client.set_cookie("session", auth.token("alice", "acme"))
    response = client.get("/api/v1/notifications", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200


def test_open_mode_refuses_foreign_origins_too(app_config: dict[str, Any], make: Any) -> None:
    client = create_app({**app_config, "OPEN_USER": "alice"}).test_client()
    assert client.post(READ_ALL, headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post(READ_ALL, headers={"Origin": "http://localhost"}).status_code == 200
