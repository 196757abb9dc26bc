"""WSGI entry point: ``gunicorn -k gevent app:app``.

``flask --app app COMMAND`` imports this module too; for it the app is built as the
``notifications`` command builds its own (no JWT key required, the database left alone until
a command needs it), so that both run the same commands alike.
"""
from notifications import create_app
from notifications.commands import create_cli_app, flask_cli_is_loading

app = create_cli_app() if flask_cli_is_loading() else create_app()
