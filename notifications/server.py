"""Run the app under gunicorn with gevent workers, from Python."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication


class Server(BaseApplication):
    """A gunicorn application whose workers each build their own Flask app."""

    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        """Apply our options (gunicorn's own config files and env are not read)."""
        for key, value in self.options.items():
            # Settings this gunicorn release does not know (older versions) are skipped.
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> Flask:
        """Build the app inside the worker, after gevent has patched the process."""
        return self.factory()


def end_streams_on_exit(worker: Any) -> None:
    """End a worker's open streams as soon as it is told to stop (gunicorn hook).

    Streams never finish on their own, so without this a graceful shutdown (SIGTERM)
    would wait the whole ``graceful_timeout`` for them.
    """
    import gevent

    def watch() -> None:
        while worker.alive:
            gevent.sleep(0.2)
        hub = getattr(worker.wsgi, "extensions", {}).get("notifications.streams")
        if hub is not None:
            hub.shutdown()

    gevent.spawn(watch)


def run_server(factory: Callable[[], Flask], *, host: str, port: int, workers: int,
               app: Flask | None = None) -> None:
    """Serve until interrupted."""
    if app is not None:
        # Connections opened in this process must not be shared with forked workers.
        from .models import db

        with app.app_context():
            db.engine.dispose()
    Server(factory, {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gevent",
        "worker_connections": 20_000,
        "graceful_timeout": 10,
        "timeout": 60,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        # Several servers may run on one machine (tests, nodes); a shared control socket
        # in the home directory would make them collide.
        "control_socket_disable": True,
        # gunicorn's own request-line limit (4 KiB) would answer long URLs with its plain
        # error page; lifting it (gunicorn still caps the line at 1 MiB) lets the app answer
        # query strings over 8 KiB with a 414 in the variant's error format.
        "limit_request_line": 0,
        "post_worker_init": end_streams_on_exit,
    }).run()
