"""Run the app under gunicorn with gevent workers, from Python."""
from __future__ import annotations

import gc
import os
import resource
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from notifications import extension

if TYPE_CHECKING:
    from notifications.realtime.hub import StreamHub

#: Seconds a thread may hold the GIL while another waits for it (Python's default: 0.005).
SWITCH_INTERVAL = 0.0005

#: gunicorn's own header limits: past them it answers 431 with its HTML page.
GUNICORN_HEADER_FIELD = 16 * 1024
GUNICORN_HEADER_FIELDS = 200

#: Most connections a worker serves at once (most of them streams).
MAX_WORKER_CONNECTIONS = 20_000
#: File descriptors a worker needs besides its connections: database files of its pooled
#: connections (two or three each), the listener, pipes, log files, the event loop.
FD_HEADROOM = 64


@dataclass(frozen=True)
class FdLimits:
    """The open-file limit before and after :func:`raise_fd_limit`, and what it allows."""

    before: int
    soft: int
    hard: int
    connections: int

    def describe(self) -> str:
        """Say in one line what the limit is and how many connections it allows."""
        hard = "unlimited" if self.hard == resource.RLIM_INFINITY else str(self.hard)
        changed = (f"raised from {self.before} to {self.soft}" if self.soft != self.before
                   else f"{self.soft}")
        line = (f"Open files: soft limit {changed} (hard {hard}); "
                f"{self.connections} connections per worker")
        if self.connections < MAX_WORKER_CONNECTIONS:
            line += f" (of {MAX_WORKER_CONNECTIONS}; raise the hard limit, ulimit -Hn, for more)"
        return line


def connections_for(fd_limit: int) -> int:
    """Return the connections a worker may accept within ``fd_limit`` open files."""
    return max(1, min(MAX_WORKER_CONNECTIONS, fd_limit - FD_HEADROOM))


def raise_fd_limit() -> FdLimits:
    """Raise the soft open-file limit toward the hard one, as far as the workers can use.

    A worker past its limit fails in accept() with EMFILE and stops serving everyone;
    gunicorn's gevent worker stops accepting at ``worker_connections`` instead, so that
    setting is sized to the limit this process (and the workers it forks) really has.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_WORKER_CONNECTIONS + FD_HEADROOM
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    new = soft
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            new = target
        except (ValueError, OSError):  # a hard limit above the kernel's nr_open
            new = soft
    usable = wanted if new == resource.RLIM_INFINITY else new
    return FdLimits(soft, new, hard, connections_for(usable))


def stream_capacity(worker_connections: int) -> int:
    """Return how many of a worker's connections streams may take.

    The rest stay for short requests (the health check, lists, counts): a worker whose
    every connection is a stream would otherwise leave them waiting in the backlog.
    """
    return max(1, worker_connections - max(4, worker_connections // 10))


#: A request's turn: any positive sleep is a timer, due at the hub's next loop iteration.
TURN = 1e-6
#: Signals that tell a worker to stop.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


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


# --- stopping: one way a worker's streams end -------------------------------------------
#
# Streams never finish on their own, so a worker told to stop would wait the whole
# graceful_timeout for them. Each stop signal therefore also ends the worker's streams
# (:func:`end_streams_on_stop`); and so that a worker still booting cannot lose one, the
# stop signals are blocked from before its fork until those handlers are in place.

#: The master's signal mask while a worker is forked (None: no fork under way).
_mask_before_fork: set[int | signal.Signals] | None = None
_restore_registered = False


def hold_stop_signals(server: Any, worker: Any) -> None:
    """Block the stop signals across the fork of a worker (gunicorn's ``pre_fork`` hook).

    Until a new worker installs its own handlers it runs the master's, which queue the
    signal in the worker's copy of the master, where nothing reads it: a SIGTERM in that
    window was lost, and the worker lived on until graceful_timeout killed it. Blocked, the
    signal stays pending in the worker until :func:`end_streams_on_stop` takes it; the
    master gets its own mask back as soon as the fork returns.
    """
    global _mask_before_fork, _restore_registered
    if not _restore_registered:
        os.register_at_fork(after_in_parent=_restore_mask)
        _restore_registered = True
    _mask_before_fork = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def _restore_mask() -> None:
    """Give the master its signal mask back after a worker's fork (only that fork's)."""
    global _mask_before_fork
    if _mask_before_fork is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, _mask_before_fork)
        _mask_before_fork = None


def streams_of(worker: Any) -> StreamHub | None:
    """Return the stream hub of a worker's app (None: an app without streams)."""
    service = getattr(worker.wsgi, "extensions", {}).get(extension.KEY)
    hub: StreamHub | None = getattr(service, "hub", None)
    return hub


def end_streams_on_stop(hub: StreamHub | None) -> None:
    """Have every stop signal also end the worker's open streams, then take those held back.

    gunicorn's own handlers stay in charge of the worker (SIGTERM: stop accepting and let
    the requests finish within graceful_timeout; SIGINT, SIGQUIT: exit at once); each is
    wrapped so that it also ends the open streams, whose connections then close. A stop
    signal that came while the worker was booting is taken now (see
    :func:`hold_stop_signals`). Called last by the worker's ``post_worker_init`` hook, once
    gunicorn's handlers are installed and the app is built.
    """
    if hub is not None:
        import gevent

        shutdown = hub.shutdown
        for signum in STOP_SIGNALS:
            previous = signal.getsignal(signum)

            def on_stop(sig: int, frame: Any, previous: Any = previous) -> None:
                if callable(previous):
                    previous(sig, frame)
                # Not in the handler itself: the shutdown waits for the hub's greenlets.
                gevent.spawn(shutdown)

            signal.signal(signum, on_stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def worker_ready(worker: Any) -> None:
    """``post_worker_init`` of a plain gunicorn run (``gunicorn.conf.py``): streams end on stop."""
    end_streams_on_stop(streams_of(worker))


def worker_started(worker: Any) -> None:
    """Set up a worker of ``notifications serve`` (gunicorn's ``post_worker_init`` hook).

    It runs once the worker's own signal handlers are installed and its app is built.
    """
    # The benchmarks' baseline serves a plain Flask app with these same settings: only the
    # service's own app has streams, metrics and retention to start.
    hub = streams_of(worker)
    if hub is not None:
        hub.stream_capacity = stream_capacity(worker.cfg.worker_connections)
        from notifications.ops import metrics, retention, webhooks

        if worker.wsgi.config.get("METRICS"):
            metrics.start_sampler(worker.wsgi)
        retention.start(worker.wsgi)
        # Every worker stands by; the one holding the lease in the database sends.
        webhooks.start(worker.wsgi)
    # The writer thread needs the GIL back after every SQLite call; with the default 5 ms
    # switch interval each of those may wait behind the request greenlets.
    sys.setswitchinterval(SWITCH_INTERVAL)
    # What exists now (the app; SQLAlchemy's, pydantic's and Flask's structures) lives as
    # long as the worker. Frozen, it is out of the collector's way: a full collection,
    # which stops the hub, walked it all (measured: 65 ms, against 0.1 ms frozen).
    gc.freeze()
    worker.wsgi = take_turns(worker.wsgi)
    end_streams_on_stop(hub)


def take_turns(app: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a WSGI app so that each request first lets the other greenlets run.

    A keep-alive connection whose next request is already waiting would otherwise be
    served again and again without the hub ever getting back control: the other
    connections, the streams and the results of the writer would wait behind it.

    The turn is a timer, not ``sleep(0)``: gevent runs the greenlets that ``sleep(0)``
    queued, and those they queue meanwhile, for up to 50 at a time before it looks at the
    sockets again, so under saturation the connections whose next request was already read
    kept their lane while those that had to wait for theirs waited rounds (measured at 32
    connections: p99 0.6-1.7 s with ``sleep(0)`` against 0.2-0.45 s with the timer). An
    expired timer wakes in the loop's next iteration together with every ready socket
    and the writer's results: one request per connection per round.
    """
    import gevent

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        gevent.sleep(TURN)
        return app(environ, start_response)

    return wsgi


def worker_exited(url: str | None) -> Callable[[Any, Any], None]:
    """Return the master's ``child_exit`` hook: free a dead worker's stream slots at once,
    and its webhook sender's lease.

    Without it a worker killed with its streams open kept their slots for the lease
    lifetime (30 s), and its users got 429; a killed sender's webhooks waited as long. The
    master learns of the death from SIGCHLD.
    """

    def child_exit(server: Any, worker: Any) -> None:
        from notifications.ops import metrics
        from notifications.realtime.leases import owner_prefix
        from notifications.store import leases, webhooks

        try:
            metrics.process_dead(worker.pid)
            if url is not None:
                freed = leases.release_worker_leases(url, owner_prefix(worker.pid))
                if freed:
                    server.log.info("freed %d stream slot(s) of worker %s", freed, worker.pid)
        except Exception as exc:  # the leases still expire on their own
            server.log.warning("could not free the stream slots of worker %s: %s",
                               worker.pid, exc)
        try:
            # A dead worker sends nothing: another may take over the webhooks at once.
            if url is not None and webhooks.release_dead_lease(url, owner_prefix(worker.pid)):
                server.log.info("worker %s sent the webhooks; another takes over", worker.pid)
        except Exception as exc:  # the lease lapses on its own
            server.log.warning("could not free the webhook sender lease of worker %s: %s",
                               worker.pid, exc)

    return child_exit


def run_server(factory: Callable[[], Flask], *, host: str, port: int, workers: int,
               app: Flask | None = None,
               worker_connections: int = MAX_WORKER_CONNECTIONS) -> None:
    """Serve until interrupted."""
    url = None
    if app is not None:
        # Connections opened in this process must not be shared with forked workers.
        from notifications.store import current_store

        with app.app_context():
            current_store().close()
        url = app.config["SQLALCHEMY_DATABASE_URI"]
    Server(factory, {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gevent",
        "worker_connections": worker_connections,
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
        # Likewise for headers: gunicorn's defaults (8190 bytes a field, 100 fields) would
        # answer a long token or X-Request-Id with its own 431 page. Its caps sit above the
        # service's (web.MAX_HEADER_FIELD, MAX_HEADER_FIELDS), which answers in JSON; they
        # also bound what one connection may make a worker buffer (fields x size, ~3 MiB).
        "limit_request_field_size": GUNICORN_HEADER_FIELD,
        "limit_request_fields": GUNICORN_HEADER_FIELDS,
        "pre_fork": hold_stop_signals,
        "post_worker_init": worker_started,
        "child_exit": worker_exited(url),
    }).run()
