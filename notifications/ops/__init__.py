"""Running the service: the gunicorn server, metrics and the retention pass."""
