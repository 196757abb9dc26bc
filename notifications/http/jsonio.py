"""Flask's JSON provider, writing the serialisers' bodies with orjson (same bytes, less time)."""
from __future__ import annotations

from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from werkzeug.sansio.response import Response

from notifications.core.serialize import Body, encode_body


class JSONProvider(DefaultJSONProvider):
    """Flask's default provider; a :class:`serialize.Body` in compact mode goes through orjson."""

    #: Installed on a Flask app only (:func:`init_app`), whose response class takes bytes.
    _app: Flask

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """Serialise the view's data into a JSON response."""
        body = args[0] if len(args) == 1 and not kwargs else None
        if (type(body) is Body and self.ensure_ascii and not self.sort_keys
                and not (self.compact is False or (self.compact is None and self._app.debug))):
            data = encode_body(body)
            if data is not None:
                # What Flask writes: the compact text and a newline.
                return self._app.response_class(data + b"\n", mimetype=self.mimetype)
        return super().response(*args, **kwargs)


def init_app(app: Flask) -> None:
    """Install the provider, keeping the service's key order."""
    app.json = JSONProvider(app)
    app.json.sort_keys = False
