"""WSGI entry point: ``gunicorn -k gevent app:app``."""
from notifications import create_app

app = create_app()
