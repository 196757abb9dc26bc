"""Baseline server for the HTTP benchmarks: the service's own gunicorn settings, empty endpoints.

``GET /empty`` answers ``{}``; ``POST /empty`` parses the JSON body, as ingest does, and
answers 201. Both run under exactly the gunicorn + gevent settings of ``notifications serve``
(:func:`notifications.ops.server.run_server`), so any difference from the real endpoints is
the service's own work.

Usage: python bench/empty_server.py PORT WORKERS
"""
from __future__ import annotations

import sys

from gevent import monkey

monkey.patch_all()

from flask import Flask, request  # noqa: E402

from notifications.ops.server import run_server  # noqa: E402


def create_app() -> Flask:
    """Build a Flask app with the empty endpoints and a health check."""
    app = Flask(__name__)

    @app.get("/empty")
    def empty() -> dict[str, object]:
        """Answer an empty JSON object."""
        return {}

    @app.post("/empty")
    def parse() -> tuple[dict[str, object], int]:
        """Parse the JSON body and answer how many items it held."""
        body = request.get_json(force=True)
        items = body.get("notifications", [body]) if isinstance(body, dict) else []
        return {"created": len(items)}, 201

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Answer that the server is up."""
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    run_server(create_app, host="127.0.0.1", port=int(sys.argv[1]), workers=int(sys.argv[2]))
