"""gunicorn's settings for ``gunicorn -k gevent app:app`` run from this directory.

gunicorn reads this file by default. Its hooks end a worker's open streams when the worker
is told to stop, as under ``notifications serve``: streams never finish on their own, and
a graceful shutdown would otherwise wait the whole graceful timeout for them.
"""
from notifications.ops.server import hold_stop_signals, worker_ready

pre_fork = hold_stop_signals
post_worker_init = worker_ready
