"""The one object the service keeps on a Flask app: ``app.extensions["notifications"]``.

Each room's ``init_app`` fills in its part when ``create_app`` builds the app; code that
runs later reads them through :func:`state`. Nothing else of the service is kept on the app.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app
from flask.sansio.app import App

if TYPE_CHECKING:  # types only: the rooms import this module, not the other way round
    from notifications.core.tokens import KeySettings
    from notifications.http.variants import Variant
    from notifications.ops.retention import Policy
    from notifications.realtime.hub import StreamHub
    from notifications.store.engine import Store

KEY = "notifications"


@dataclass
class Notifications:
    """What the service keeps per app, one attribute per part."""

    # Set by their rooms' init_app (not by the constructor): reading one before is a bug,
    # and raises AttributeError rather than handing out None.
    #: The database binding and this process's writer (``store.engine``).
    store: Store = field(init=False)
    #: What a token must satisfy (``http.auth``).
    keys: KeySettings = field(init=False)
    #: This worker's stream hub (``realtime.hub``).
    hub: StreamHub = field(init=False)
    #: The retention policy (``ops.retention``).
    retention: Policy = field(init=False)
    #: Seconds the change log keeps an entry (``ops.retention``).
    changelog_retention: int = field(init=False)
    #: Schema version found when the app was built (0: a new database), for ``init-db``.
    schema_found: int | None = None
    #: Browser origins allowed to call with credentials, lower-cased (``http.cors``).
    cors_origins: frozenset[str] = frozenset()
    #: The enabled API variants by blueprint name (``http.blueprint``).
    variants: dict[str, Variant] = field(default_factory=dict)
    #: The API description, built on first request (``http.openapi``).
    openapi: dict[str, Any] | None = None
    #: Where the demo keeps its generated secret, when the CLI uses one.
    demo_secret_file: str | None = None


def init_app(app: App) -> Notifications:
    """Give ``app`` its (empty) state; the rooms' ``init_app`` fill it in."""
    return app.extensions.setdefault(KEY, Notifications())


def state(app: App | None = None) -> Notifications:
    """The service's state on ``app`` (default: the current app)."""
    return (app if app is not None else current_app).extensions[KEY]
