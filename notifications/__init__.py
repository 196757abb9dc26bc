"""Notifications service: per-user in-app notifications over two HTTP API variants."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from . import auth, config, cors, ingest, jsonio, openapi, store, stream, views, web

__all__ = ["create_app"]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then ``NOTIFICATIONS_*`` environment, then ``test_config``."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(config.DEFAULTS)
    app.config.from_prefixed_env("NOTIFICATIONS", loads=config.keep_string)
    if test_config is not None:
        app.config.from_mapping(test_config)
    config.normalize(app.config)
    jsonio.init_app(app)

    store.init_app(app)
    auth.init_app(app)
    stream.init_app(app)
    web.init_app(app)
    cors.init_app(app)
    views.init_app(app)
    ingest.init_app(app)
    openapi.init_app(app)
    return app
