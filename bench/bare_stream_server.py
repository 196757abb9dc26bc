"""Baseline for the stream bench: the same gunicorn + gevent setup, a stream of comments only.

Usage: python bench/bare_stream_server.py PORT INTERVAL
"""
from __future__ import annotations

import sys

from gevent import monkey

monkey.patch_all()

import gevent  # noqa: E402
from flask import Flask, Response  # noqa: E402

from notifications.ops.server import Server  # noqa: E402


def create_app(interval: float) -> Flask:
    """Build a Flask app whose one endpoint streams a comment every ``interval`` seconds."""
    app = Flask(__name__)

    @app.get("/stream")
    def stream() -> Response:
        """Stream comments forever."""

        def comments():
            while True:
                yield ": keep-alive\n\n"
                gevent.sleep(interval)

        return Response(comments(), content_type="text/event-stream",
                        headers={"Cache-Control": "no-cache"})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Answer that the server is up."""
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    port, interval = int(sys.argv[1]), float(sys.argv[2])
    Server(lambda: create_app(interval), {
        "bind": f"127.0.0.1:{port}", "workers": 1, "worker_class": "gevent",
        "worker_connections": 20_000, "graceful_timeout": 2, "timeout": 120,
        "errorlog": "-", "loglevel": "warning", "control_socket_disable": True,
        "backlog": 4096,
    }).run()
