"""The OpenAPI 3.1 description of the running service, built from the models it validates with.

Paths come from the route tables of the variants that are enabled (``variants.py``) and from
the app's own URL map; parameters, bodies and answers come from the pydantic models in
``validation.py`` and ``schemas.py``. Nothing here repeats a bound or a field list by hand,
so the description cannot drift from what the service checks.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from notifications.core import schemas
from notifications.extension import state
from notifications.http import ingest, operations, views
from notifications.http.limits import (
    MAX_HEADER_FIELD,
    MAX_HEADER_FIELDS,
    MAX_PATH_LENGTH,
    MAX_QUERY_LENGTH,
)
from notifications.http.operations import Operation
from notifications.http.variants import Variant

OPENAPI_VERSION = "3.1.0"
SCHEMA_REF = "#/components/schemas/{model}"

#: Why each error status is answered; the body is the error model of the API that answers.
#: Limits are filled in from the configuration and from :mod:`web`.
ERROR_REASONS = {
    400: "Malformed request.",
    401: "Missing, malformed, expired or otherwise invalid credentials.",
    403: "The credentials are valid but not allowed here (also: a state-changing request "
         "authenticated by the session cookie from a page of a foreign origin).",
    408: "The request body did not arrive within {body_timeout:g} seconds.",
    404: "Not found (a foreign id is indistinguishable from a missing one).",
    413: "The request body is larger than the limit ({max_body} bytes).",
    414: "The query string (at most {max_query} bytes) or the path (at most {max_path} bytes) "
         "is too long.",
    422: "A parameter or the body is invalid.",
    429: "Too many open streams for this user; retry after Retry-After seconds.",
    431: "A header field is longer than {max_header} bytes, or there are more than "
         "{max_headers} header fields.",
    503: "The database does not answer; for a write, another process held its write lock "
         "longer than the write timeout and nothing was changed; for a stream, this worker has "
         "no room for another stream. Retry after Retry-After seconds.",
}
#: Errors any operation can answer before its own checks run.
COMMON_ERRORS = (414, 431)

#: Descriptions of the app-level routes (outside the variants), by their view functions.
APP_OPERATIONS: dict[Callable[..., Any], Operation] = {
    views.healthz: operations.HEALTH,
    ingest.ingest: operations.INGEST,
}


def _flask_rule_to_path(rule: str) -> str:
    """Turn ``/a/<name>`` or ``/a/<conv:name>`` into OpenAPI's ``/a/{name}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


class _Builder:
    """Collect component schemas while operations are described."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.models: set[type[BaseModel]] = set()

    # -- schemas -------------------------------------------------------------------------

    def ref(self, model: type[BaseModel]) -> dict[str, str]:
        """Return a ``$ref`` to ``model``'s component schema."""
        self.models.add(model)
        return {"$ref": SCHEMA_REF.format(model=model.__name__)}

    def components(self) -> dict[str, Any]:
        """Render every referenced model (and the models they use) as component schemas."""
        models = sorted(self.models, key=lambda m: m.__name__)
        # Request models are described as validated, response models as serialised.
        pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [
            (m, "serialization" if issubclass(m, schemas.Body) else "validation")
            for m in models
        ]
        _, top = models_json_schema(pairs, ref_template=SCHEMA_REF)
        defs = top.get("$defs", {})
        for model in models:
            if model.__name__ in defs and not issubclass(model, schemas.Body):
                _add_alias_choices(model, defs[model.__name__])
        return defs

    # -- parameters ----------------------------------------------------------------------

    @staticmethod
    def _parameter_schema(schema: dict[str, Any]) -> dict[str, Any]:
        """Drop the ``null`` branch of an optional field: an absent parameter is the null."""
        schema = copy.deepcopy(schema)
        schema.pop("title", None)
        branches = schema.get("anyOf")
        if branches:
            kept = [b for b in branches if b != {"type": "null"}]
            if len(kept) == 1:
                del schema["anyOf"]
                schema.update(kept[0])
            else:
                schema["anyOf"] = kept
        if schema.get("default", 0) is None:
            del schema["default"]
        return schema

    def parameters(self, model: type[BaseModel], location: str) -> list[dict[str, Any]]:
        """Describe each field of a query or path model as one parameter."""
        model_schema = model.model_json_schema()
        required = set(model_schema.get("required", ()))
        params = []
        for name, prop in model_schema["properties"].items():
            info = model.model_fields[name]
            param: dict[str, Any] = {
                "name": name,
                "in": location,
                "required": location == "path" or name in required,
                "schema": self._parameter_schema(prop),
            }
            if info.description:
                param["description"] = info.description
            params.append(param)
        return params

    # -- operations ----------------------------------------------------------------------

    def _error_response(self, status: int, error_model: type[BaseModel],
                        validation_model: type[BaseModel]) -> dict[str, Any]:
        model = validation_model if status == 422 else error_model
        response: dict[str, Any] = {
            "description": ERROR_REASONS.get(status, "Error.").format(
                max_body=self.app.config["MAX_CONTENT_LENGTH"], max_query=MAX_QUERY_LENGTH,
                max_path=MAX_PATH_LENGTH, body_timeout=self.app.config["BODY_TIMEOUT"],
                max_header=MAX_HEADER_FIELD, max_headers=MAX_HEADER_FIELDS),
            "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
            "content": {"application/json": {"schema": self.ref(model)}},
        }
        if status == 401:
            response["headers"]["WWW-Authenticate"] = {
                "description": "Always `Bearer`.", "schema": {"type": "string"}}
        if status in (429, 503):
            response["headers"]["Retry-After"] = {
                "description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
        return response

    def operation(self, op: Operation, *, variant: Variant | None, tag: str,
                  operation_id: str, security: list[dict[str, list[str]]] | None,
                  error_model: type[BaseModel],
                  validation_model: type[BaseModel]) -> dict[str, Any]:
        """Render one operation object."""
        out: dict[str, Any] = {"tags": [tag], "summary": op.summary, "operationId": operation_id}
        if op.description:
            out["description"] = op.description
        params: list[dict[str, Any]] = []
        if op.path is not None:
            params += self.parameters(op.path, "path")
        query = op.query
        if query is not None and not isinstance(query, type):
            # Only the variants' operations choose their query model by variant.
            assert variant is not None, f"{operation_id}: a query chosen by variant needs one"
            query = query(variant)
        if query is not None:
            params += self.parameters(query, "query")
        for name, header in op.headers.items():
            params.append({"name": name, "in": "header", "required": False, **header})
        if params:
            out["parameters"] = params
        if op.body is not None:
            body = op.body() if callable(op.body) and not isinstance(op.body, type) else op.body
            bodies = body if isinstance(body, list) else [body]
            schema = (self.ref(bodies[0]) if len(bodies) == 1
                      else {"oneOf": [self.ref(b) for b in bodies]})
            out["requestBody"] = {
                "required": op.body_required,
                "content": {"application/json": {"schema": schema}},
            }
        ok: dict[str, Any] = {
            "description": op.response.__doc__.strip().splitlines()[0]
            if op.response is not None and op.response.__doc__ else "OK",
            "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
        }
        if op.stream is not None:
            ok["description"] = op.stream
            ok["content"] = {"text/event-stream": {
                "schema": {"type": "string"},
                **({"example": op.stream_example} if op.stream_example else {}),
            }}
        elif op.response is not None:
            ok["content"] = {"application/json": {"schema": self.ref(op.response)}}
        if op.links and variant is not None:
            ok["links"] = {
                name: {"operationId": f"{variant.name}_{route.endpoint}", "parameters": values}
                for name, (target, values) in op.links.items()
                for route in variant.routes if route.operation is target
            }
        responses: dict[str, Any] = {str(op.status): ok}
        for status in sorted({*op.errors, *COMMON_ERRORS}):
            if status == 401 and not op.secured:
                continue
            responses[str(status)] = self._error_response(status, error_model, validation_model)
        out["responses"] = responses
        out["security"] = security if op.secured else []
        return out

    # -- document ------------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """Build the whole document for the app as configured."""
        config = self.app.config
        user_security: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"cookieAuth": []}]
        if config.get("OPEN_USER"):
            # Open mode: a request without credentials acts as the configured user.
            user_security.append({})
        paths: dict[str, dict[str, Any]] = {}
        tags = []
        variants: dict[str, Variant] = state(self.app).variants
        for name, variant in variants.items():
            tag = f"{name} variant"
            tags.append({"name": tag, "description": (type(variant).__doc__ or "").strip()
                         + f" Mounted at `{variant.prefix or '/'}`."})
            for route in variant.routes:
                path = _flask_rule_to_path(variant.prefix + route.rule)
                for method in route.methods:
                    paths.setdefault(path, {})[method.lower()] = self.operation(
                        route.operation, variant=variant, tag=tag,
                        operation_id=f"{name}_{route.endpoint}",
                        security=user_security,
                        error_model=variant.error_model,
                        validation_model=variant.validation_error_model,
                    )
        ingest_mounted = False
        for rule in self.app.url_map.iter_rules():
            view = self.app.view_functions.get(rule.endpoint)
            op = APP_OPERATIONS.get(view) if view is not None else None
            if op is None:
                continue
            ingest_mounted = ingest_mounted or op.credentials == "ingest"
            security = [{"ingestToken": []}] if op.credentials == "ingest" else user_security
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                paths.setdefault(_flask_rule_to_path(rule.rule), {})[method.lower()] = (
                    self.operation(
                        op, variant=None, tag=op.tag,
                        operation_id=rule.endpoint.replace(".", "_"), security=security,
                        error_model=schemas.DetailError,
                        validation_model=schemas.DetailValidationError,
                    )
                )
        security_schemes: dict[str, Any] = {
            "bearerAuth": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A JWT whose `sub` is the user id and whose "
                f"`{config['ORG_CLAIM']}` claim is the organization; `exp` is required. "
                f"Accepted algorithms: {', '.join(config['JWT_ALGORITHMS'])}.",
            },
            "cookieAuth": {
                "type": "apiKey", "in": "cookie", "name": config["SESSION_COOKIE"],
                "description": "The same JWT in a cookie, for EventSource(url, "
                "{withCredentials: true}).",
            },
        }
        if ingest_mounted:
            security_schemes["ingestToken"] = {
                "type": "http", "scheme": "bearer",
                "description": "The shared secret NOTIFICATIONS_INGEST_TOKEN.",
            }
            tags.append({"name": "ingest", "description": "Notifications from the other "
                         "services of an install."})
        tags.append({"name": "operations", "description": "Health check."})
        return {
            "openapi": OPENAPI_VERSION,
            "info": {
                "title": "Notifications service",
                "version": _version(),
                "description": "Per-user in-app notifications over two API variants, with "
                "Server-Sent Event streams. This document describes this server as configured: "
                "a disabled variant is absent.",
            },
            "servers": [{"url": "/"}],
            "tags": tags,
            "paths": dict(sorted(paths.items())),
            "components": {
                "schemas": self.components(),
                "headers": {
                    "X-Request-Id": {
                        "description": "The request id: a valid incoming X-Request-Id is "
                        "echoed, otherwise one is generated. Also in every log line.",
                        "schema": {"type": "string"},
                    }
                },
                "securitySchemes": security_schemes,
            },
        }


def _add_alias_choices(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """Describe the other accepted names of a field (``AliasChoices``) as properties too.

    pydantic's schema names only the first choice, but the service accepts each of them;
    a document without them would call a valid body invalid.
    """
    properties = schema.get("properties", {})
    exclusive = []
    for name, info in model.model_fields.items():
        choices = [c for c in getattr(info.validation_alias, "choices", None) or ()
                   if isinstance(c, str)]
        if not choices or name not in properties:
            continue
        for choice in choices:
            if choice not in properties:
                alias = copy.deepcopy(properties[name])
                alias["title"] = choice
                alias["description"] = f"Another name for `{name}` (give one of them, not both)."
                properties[choice] = alias
        if len(choices) > 1:
            exclusive.append({"not": {"required": choices}})
    if len(exclusive) == 1:
        schema.update(exclusive[0])
    elif exclusive:
        schema["allOf"] = exclusive


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("notifications-service")
    except Exception:  # not installed (a plain checkout): the document still needs a version
        return "0.0.0"


def build_document(app: Flask) -> dict[str, Any]:
    """Return the OpenAPI document of ``app`` as configured."""
    return _Builder(app).document()


def openapi_json() -> Response:
    """Serve the OpenAPI document (built once per process)."""
    document = state().openapi
    if document is None:
        document = state().openapi = build_document(current_app)
    return jsonify(document)


_ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
}


def _asset(name: str) -> bytes:
    return resources.files("notifications").joinpath("static", "swagger-ui", name).read_bytes()


def docs_page() -> Response:
    """Serve the browsable documentation page (Swagger UI, assets served locally)."""
    base = request.script_root
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Notifications service API</title>
<link rel="stylesheet" href="{base}/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-url="{base}/openapi.json"></div>
<script src="{base}/docs/swagger-ui-bundle.js"></script>
<script src="{base}/docs/docs.js"></script>
</body>
</html>
"""
    response = Response(html, mimetype="text/html")
    # The page may load and call nothing but this server (Swagger UI styles some elements
    # inline, and draws its icons as data: images).
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
    )
    return response


def docs_asset(name: str) -> Response:
    """Serve one of the packaged Swagger UI files."""
    if name not in _ASSETS:
        from notifications.core.errors import NotFound

        raise NotFound()
    response = Response(_asset(name), content_type=_ASSETS[name])
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


def init_app(app: Flask) -> None:
    """Serve ``/openapi.json`` and the ``/docs`` page."""
    app.add_url_rule("/openapi.json", "openapi", openapi_json)
    app.add_url_rule("/docs", "docs", docs_page)
    app.add_url_rule("/docs/<name>", "docs_asset", docs_asset)
