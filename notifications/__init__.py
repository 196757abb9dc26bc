"""Notifications service: per-user in-app notifications over two HTTP API variants."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Config, Flask

from notifications import commands, extension, settings, store
from notifications.http import (
    auth,
    blueprint,
    cors,
    error_responses,
    inbox,
    ingest,
    jsonio,
    openapi,
    request_log,
)
from notifications.ops import metrics, retention
from notifications.realtime import hub as stream

__all__ = ["create_app"]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then ``NOTIFICATIONS_*`` environment, then ``test_config``."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(settings.defaults())
    environment = Config(app.root_path)
    environment.from_prefixed_env("NOTIFICATIONS", loads=settings.keep_string)
    app.config.update(settings.from_environment(environment))
    if test_config is not None:
        app.config.from_mapping(test_config)
    settings.normalize(app.config)
    extension.init_app(app)
    jsonio.init_app(app)

    store.init_app(app)
    # Before web: its request timer starts first, so every answer is counted.
    metrics.init_app(app)
    retention.init_app(app)
    auth.init_app(app)
    stream.init_app(app)
    request_log.init_app(app)
    error_responses.init_app(app)
    cors.init_app(app)
    blueprint.init_app(app)
    ingest.init_app(app)
    openapi.init_app(app)
    inbox.init_app(app)
    commands.init_app(app)
    return app
