"""The OpenAPI document: valid, complete, configured, and true to what the service answers."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import DATASET
from openapi_spec_validator import validate

from notifications.core import schemas, v2_schemas
from notifications.http import openapi

#: App-level endpoints that are not API operations (the document and its viewer).
NOT_OPERATIONS = {"static", "openapi", "docs", "docs_asset", "metrics",
                  # The inbox page and its sign-in, for browsers rather than API clients.
                  "inbox.page", "inbox.who", "inbox.sign_in", "inbox.sign_out",
                  "inbox_demo.demo_session", "inbox_demo.demo_send"}


def document(client: Any) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


@pytest.fixture(params=["plain", "with ingest"])
def app_config(request: Any, app_config: dict[str, Any]) -> dict[str, Any]:
    """Run the document tests with and without the ingest API enabled."""
    if request.param == "with ingest":
        return {**app_config, "INGEST_TOKEN": "ingest-token-0123456789"}
    return app_config


def test_document_is_valid_openapi_31(client: Any) -> None:
    doc = document(client)
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_ingest_api_is_described_only_when_enabled(app: Any, client: Any) -> None:
    doc = document(client)
    if not app.config["INGEST_TOKEN"]:
        assert "/internal/v1/notifications" not in doc["paths"]
        assert "ingestToken" not in doc["components"]["securitySchemes"]
        return
    op = doc["paths"]["/internal/v1/notifications"]["post"]
    assert op["security"] == [{"ingestToken": []}]
    assert set(op["responses"]) >= {"201", "401", "413", "422"}
    body = op["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert [b["$ref"].rsplit("/", 1)[1] for b in body] == ["IngestNotification", "IngestBatch"]
    one = doc["components"]["schemas"]["IngestNotification"]
    assert one["required"] == ["user_id"]
    assert "message" in one["properties"]  # the accepted alias of body
    assert one["not"] == {"required": ["body", "message"]}
    batch = doc["components"]["schemas"]["IngestBatch"]["properties"]["notifications"]
    assert batch["maxItems"] == 1000


def test_every_served_route_is_described(app: Any, client: Any) -> None:
    """A route added to a variant's table or the app without a description fails here."""
    paths = document(client)["paths"]
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in NOT_OPERATIONS:
            continue
        path = openapi._flask_rule_to_path(rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((path, method.lower()))
            assert method.lower() in paths.get(path, {}), f"{method} {path} is not described"
            assert "not described" not in paths[path][method.lower()]["summary"]
    described = {(p, m) for p, ops in paths.items() for m in ops}
    assert described == served


def test_parameters_carry_the_validated_bounds(client: Any) -> None:
    paths = document(client)["paths"]
    dataset = {p["name"]: p for p in paths["/api/v1/notifications"]["get"]["parameters"]}
    assert dataset["limit"]["schema"] == {"default": 20, "minimum": 1, "maximum": 100,
                                          "type": "integer"}
    assert dataset["offset"]["schema"]["minimum"] == 0
    assert dataset["unread_only"]["schema"]["type"] == "boolean"
    assert dataset["dataset_id"]["schema"] == {"type": "string", "format": "uuid"}
    org = {p["name"]: p for p in paths["/api/v1/org/notifications"]["get"]["parameters"]}
    assert org["limit"]["schema"]["maximum"] == 200
    assert org["limit"]["schema"]["default"] == 50
    path_param = paths["/api/v1/notifications/{notification_id}/read"]["post"]["parameters"][0]
    assert path_param["in"] == "path" and path_param["required"] is True
    body = document(client)["components"]["schemas"]["MarkReadBody"]
    assert body["properties"]["ids"]["anyOf"][0]["maxItems"] == 1000


def test_error_bodies_follow_each_variant(client: Any) -> None:
    paths = document(client)["paths"]

    def schema_of(path: str, method: str, status: str) -> str:
        content = paths[path][method]["responses"][status]["content"]["application/json"]
        return content["schema"]["$ref"].rsplit("/", 1)[-1]

    assert schema_of("/api/v1/notifications", "get", "401") == "DetailError"
    assert schema_of("/api/v1/notifications", "get", "422") == "DetailValidationError"
    assert schema_of("/api/v1/notifications/{notification_id}/read", "post", "404") == "DetailError"
    assert schema_of("/api/v1/org/notifications", "get", "403") == "OrganizationError"
    assert schema_of("/api/v1/org/notifications", "get", "422") == "OrganizationError"
    assert schema_of("/api/v1/org/notifications/mark-read", "post", "413") == "OrganizationError"
    assert schema_of("/healthz", "get", "503") == "DetailError"
    envelope = document(client)["components"]["schemas"]["OrganizationError"]
    assert set(envelope["required"]) == {"code", "message", "detail", "hint", "details",
                                         "request_id"}


def test_security_schemes_follow_configuration(app_config: dict[str, Any]) -> None:
    from notifications import create_app

    app_config["SESSION_COOKIE"] = "sid"
    app = create_app(app_config)
    doc = app.test_client().get("/openapi.json").get_json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["bearerAuth"]["bearerFormat"] == "JWT"
    assert schemes["cookieAuth"] == {**schemes["cookieAuth"], "type": "apiKey", "in": "cookie",
                                     "name": "sid"}
    op = doc["paths"]["/api/v1/notifications"]["get"]
    assert op["security"] == [{"bearerAuth": []}, {"cookieAuth": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []


def test_open_mode_makes_credentials_optional(app_config: dict[str, Any]) -> None:
    from notifications import create_app

    app = create_app({**app_config, "OPEN_USER": "alice"})
    doc = app.test_client().get("/openapi.json").get_json()
    assert {} in doc["paths"]["/api/v1/notifications"]["get"]["security"]


@pytest.mark.parametrize(
    ("settings", "present", "absent"),
    [
        ({"ORGANIZATION_PREFIX": "off"}, "/api/v1/notifications", "/api/v1/org/notifications"),
        ({"DATASET_PREFIX": "off"}, "/api/v1/org/notifications", "/api/v1/notifications"),
        ({"DATASET_PREFIX": "/alerts", "ORGANIZATION_PREFIX": "/inbox"}, "/inbox/notifications",
         "/api/v1/notifications"),
    ],
)
def test_document_follows_prefixes(app_config: dict[str, Any], settings: dict[str, str],
                                   present: str, absent: str) -> None:
    from notifications import create_app

    app = create_app({**app_config, **settings})
    doc = app.test_client().get("/openapi.json").get_json()
    validate(doc)
    assert present in doc["paths"]
    assert absent not in doc["paths"]
    assert not any(p.startswith(absent) for p in doc["paths"])


def test_real_answers_match_the_response_models(client: Any, auth: Any, make: Any) -> None:
    """The serialisers' dicts validate against the models the document is built from."""
    make("alice", n=2, dataset_id=DATASET, metadata={"is_alert": True}, entity_type="saved_view")
    make("alice", n=2, organization_id="acme", kind="review.created", title="t", body="b",
         link="/x")
    h = auth.headers("alice", "acme")
    checks = [
        (client.get("/api/v1/notifications", headers=h), schemas.DatasetNotificationList),
        (client.get("/api/v1/notifications/unread-count", headers=h), schemas.UnreadCount),
        (client.post("/api/v1/notifications/read-all", headers=h), schemas.ReadAllResult),
        (client.get("/api/v1/notifications", headers=h), schemas.DatasetNotificationList),
        (client.get("/api/v1/notifications?limit=0", headers=h), schemas.DetailValidationError),
        (client.get("/api/v1/notifications"), schemas.DetailError),
        (client.post(f"/api/v1/notifications/{DATASET}/read", headers=h), schemas.DetailError),
        (client.get("/api/v1/org/notifications", headers=h), schemas.OrganizationInbox),
        (client.post("/api/v1/org/notifications/mark-read", headers=h, json={"ids": []}),
         schemas.OrganizationInbox),
        (client.get("/api/v1/org/notifications?limit=x", headers=h), schemas.OrganizationError),
        (client.get("/api/v1/org/notifications", headers=auth.headers("bob")),
         schemas.OrganizationError),
        (client.get("/healthz"), schemas.Health),
        (client.put("/api/v2/preferences", headers=h, json={"muted_kinds": ["review.*"],
                                                             "muted_datasets": [DATASET]}),
         v2_schemas.V2Preferences),
        (client.get("/api/v2/preferences", headers=h), v2_schemas.V2Preferences),
        (client.put("/api/v2/preferences", headers=h, json={"muted_kinds": [None]}),
         schemas.OrganizationError),
    ]
    for response, model in checks:
        model.model_validate(response.get_json())
    items = client.get("/api/v1/notifications", headers=h).get_json()["notifications"]
    assert items and all(i["read_at"] is not None for i in items)


def test_docs_page_uses_only_local_assets(client: Any) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html
    for asset in ("/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js", "/docs/docs.js"):
        assert asset in html
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.data) > 100
    assert "SwaggerUIBundle" in client.get("/docs/swagger-ui-bundle.js").get_data(as_text=True)
    assert "validatorUrl: null" in client.get("/docs/docs.js").get_data(as_text=True)
    assert client.get("/docs/../config.py").status_code == 404
    assert client.get("/docs/nothing.js").status_code == 404


def test_package_build_ships_the_docs_assets(built_package: Path) -> None:
    """A non-editable install gets the Swagger UI files (setup.cfg package_data)."""
    built = built_package / "static" / "swagger-ui"
    for name in ("swagger-ui.css", "swagger-ui-bundle.js", "docs.js", "LICENSE", "NOTICE"):
        assert (built / name).is_file(), name
    assert (built_package / "schema.sql").is_file()
