"""Prometheus metrics at ``/metrics``, summed over every worker of the server.

``notifications serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a private temporary
directory before anything imports ``prometheus_client``: each worker then keeps its
values in memory-mapped files there, any worker answers a scrape with the sum over all of
them, and the master deletes a dead worker's live gauges (``child_exit``). Without that
variable (the Flask test client, ``gunicorn app:app`` with one worker) the values are this
process's own.

Per request the cost is two ``perf_counter`` calls and two memory-mapped increments on
cached label children. Everything else -- the writer's queue and commits, open streams,
the watcher -- is sampled once a second by a greenlet of each worker, and again by the
worker that answers a scrape, so the hot paths are never touched.
"""
from __future__ import annotations

import hmac
import os
import shutil
import tempfile
import time
from typing import Any

from flask import Flask, Response, current_app, g, request

from notifications.core.errors import Unauthorized
from notifications.extension import state

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Seconds between two samples of a worker's writer and streams.
SAMPLE_INTERVAL = 1.0
PATH = "/metrics"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def prepare_multiprocess() -> str:
    """Give this server a fresh metrics directory (call before importing prometheus_client)."""
    path = tempfile.mkdtemp(prefix="notifications-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def remove_multiprocess(path: str) -> None:
    """Delete a server's metrics directory when the server has stopped."""
    shutil.rmtree(path, ignore_errors=True)


def multiprocess_enabled() -> bool:
    """Tell whether values are shared between worker processes."""
    return bool(os.environ.get(MULTIPROC_ENV))


class _Metrics:
    """The metric objects, created on first use (after the environment is final)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter("notifications_http_requests_total",
                                "HTTP requests answered, by route, method and status.",
                                ["route", "method", "status"])
        self.latency = Histogram("notifications_http_request_duration_seconds",
                                 "Time to answer (for a stream: to send its headers), by route.",
                                 ["route"], buckets=_LATENCY_BUCKETS)
        self.streams = Gauge("notifications_open_streams", "Streams open now, by kind.",
                             ["kind"], multiprocess_mode="livesum")
        self.delivered = Counter("notifications_stream_events_total",
                                 "Events handed to open streams (notifications and counts).")
        self.watcher_lag = Gauge("notifications_watcher_lag_seconds",
                                 "Seconds since the stream watcher of a worker last caught up.",
                                 multiprocess_mode="livemax")
        self.queue = Gauge("notifications_write_queue_depth",
                           "Writes waiting for the writer thread.", multiprocess_mode="livesum")
        self.commit = Gauge("notifications_write_last_commit_seconds",
                            "Duration of the writer's most recent commit.",
                            multiprocess_mode="livemax")
        self.commits = Counter("notifications_write_commits_total", "Transactions committed.")
        self.jobs = Counter("notifications_write_jobs_total", "Writes committed (jobs).")
        self.busy = Counter("notifications_write_busy_total",
                            "Write batches refused because the lock stayed taken (503).")
        self.retention = Counter("notifications_retention_deleted_total",
                                 "Notifications deleted by the retention policy.")
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def children(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        """Return the label children of one route, method and status (cached: labels() is slow)."""
        key = (route, method, status)
        found = self._children.get(key)
        if found is None:
            found = (self.requests.labels(route, method, str(status)), self.latency.labels(route))
            self._children[key] = found
        return found


_metrics: _Metrics | None = None


def metrics() -> _Metrics:
    """Return the process's metric objects."""
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()
    return _metrics


# --- per request --------------------------------------------------------------------------


def _start() -> None:
    g.metrics_started = time.perf_counter()


def _finish(response: Response) -> Response:
    started = g.get("metrics_started")
    if started is not None:
        rule = request.url_rule
        # The rule, never the path: ids in paths would make a series per notification.
        route = rule.rule if rule is not None else "unmatched"
        count, latency = metrics().children(route, request.method, response.status_code)
        count.inc()
        latency.observe(time.perf_counter() - started)
    return response


# --- sampled values -----------------------------------------------------------------------

_seen: dict[str, float] = {}
_seen_pid = 0


def _advance(counter: Any, name: str, total: float) -> None:
    """Add to ``counter`` what ``total`` (a running total of this process) grew by."""
    previous = _seen.get(name, 0.0)
    if total > previous:
        counter.inc(total - previous)
    _seen[name] = total


def sample(app: Flask) -> None:
    """Copy this process's writer and stream figures into the metrics."""
    global _seen_pid
    if _seen_pid != os.getpid():
        # A forked worker starts its own running totals.
        _seen.clear()
        _seen_pid = os.getpid()
    m = metrics()
    store = getattr(state(app), "store", None)
    writer = getattr(store, "_writer", None)
    if writer is not None and writer.pid == os.getpid():
        m.queue.set(writer.depth)
        m.commit.set(writer.last_commit_seconds)
        _advance(m.commits, "commits", writer.commits)
        _advance(m.jobs, "jobs", writer.committed_jobs)
        _advance(m.busy, "busy", writer.busy_failures)
    hub = getattr(state(app), "hub", None)
    if hub is not None and hub.started and hub._pid == os.getpid():
        for kind, count in hub.open_streams_by_kind().items():
            m.streams.labels(kind).set(count)
        _advance(m.delivered, "delivered", getattr(hub, "delivered", 0))
        caught_up = getattr(hub, "last_tick_at", None)
        if caught_up is not None:
            m.watcher_lag.set(max(0.0, time.monotonic() - caught_up))


def count_retention(deleted: int) -> None:
    """Count notifications deleted by a retention pass."""
    if deleted:
        metrics().retention.inc(deleted)


def start_sampler(app: Flask) -> None:
    """Sample this worker's figures once a second, in a greenlet (a gunicorn worker)."""
    import gevent

    def loop() -> None:
        while True:
            try:
                sample(app)
            except Exception:  # a sample is never worth a worker; the next one may work
                app.logger.debug("metrics sample failed", exc_info=True)
            gevent.sleep(SAMPLE_INTERVAL)

    gevent.spawn(loop)


def process_dead(pid: int) -> None:
    """Forget a dead worker's live gauges (the server's ``child_exit`` hook)."""
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


# --- the endpoint -------------------------------------------------------------------------


def _file_collector(app: Flask) -> Any:
    """Return a collector of the database's and WAL's sizes (read at scrape time)."""
    from prometheus_client.core import GaugeMetricFamily

    from notifications import paths
    from notifications.store.maintenance import file_sizes

    class Files:
        def collect(self) -> Any:
            path = paths.sqlite_path(app.config["SQLALCHEMY_DATABASE_URI"])
            if path is None:
                return
            sizes = file_sizes(path)
            yield GaugeMetricFamily("notifications_database_bytes",
                                    "Size of the SQLite database file.", sizes["database_bytes"])
            yield GaugeMetricFamily("notifications_wal_bytes",
                                    "Size of the SQLite write-ahead log.", sizes["wal_bytes"])

    return Files()


def metrics_view() -> Response:
    """Answer a Prometheus scrape."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    token = app.config.get("METRICS_TOKEN")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                 token.encode()):
            raise Unauthorized("A valid metrics token is required",
                               hint="Send 'Authorization: Bearer <NOTIFICATIONS_METRICS_TOKEN>'.")
    sample(app)
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        shared = CollectorRegistry()
        multiprocess.MultiProcessCollector(shared)
    else:
        shared = REGISTRY
    files = CollectorRegistry()
    files.register(_file_collector(app))
    body = generate_latest(shared) + generate_latest(files)
    return Response(body, status=200, content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Count requests and serve ``/metrics``, unless ``NOTIFICATIONS_METRICS`` is off."""
    if not app.config["METRICS"]:
        return
    metrics()
    app.before_request(_start)
    app.after_request(_finish)
    app.add_url_rule(PATH, "metrics", metrics_view)
