"""The one blueprint that serves every API variant: registered once per enabled variant."""
from __future__ import annotations

from flask import Blueprint, Flask
from flask.blueprints import BlueprintSetupState
from werkzeug.routing import BaseConverter

from notifications import extension
from notifications.http import views
from notifications.http.variants import VARIANTS, Variant

bp = Blueprint("notifications", __name__)


class NtfIdConverter(BaseConverter):
    """A version 2 path id, ``ntf_<32 hex>``: so ``/notifications/bulk`` is never taken for
    one, and a method its rule does not serve gets 405 rather than 404."""

    regex = r"ntf_[0-9a-fA-F]{32}"


@bp.record
def _add_variant_routes(state: BlueprintSetupState) -> None:
    """Add the URL rules of the variant this registration serves."""
    variant: Variant = state.options["variant"]
    extension.state(state.app).variants[state.name] = variant
    for route in variant.routes:
        state.add_url_rule(route.rule, route.endpoint, route.view, methods=route.methods)


def init_app(app: Flask) -> None:
    """Register the blueprint once per enabled variant, and the health check."""
    app.url_map.converters["ntf"] = NtfIdConverter
    for name, variant_cls in VARIANTS.items():
        prefix = app.config[f"{name.upper()}_PREFIX"]
        if prefix is not None:
            app.register_blueprint(bp, url_prefix=prefix, name=name, variant=variant_cls(prefix))
    app.add_url_rule("/healthz", "healthz", views.healthz)
