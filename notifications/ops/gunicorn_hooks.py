"""gunicorn settings for a plain run: ``gunicorn -c python:notifications.ops.gunicorn_hooks``.

Its hooks end a worker's open streams when the worker is told to stop, as under
``notifications serve``: streams never finish on their own, and a graceful shutdown would
otherwise wait the whole graceful timeout for them. It is a module of the package, so it
is there however the service was installed, whatever the working directory.
"""
from notifications.ops.server import hold_stop_signals, worker_ready

pre_fork = hold_stop_signals
post_worker_init = worker_ready
