"""Where the service keeps its files: the default database and the demo secret."""
from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

#: Name of the default database file inside :func:`data_dir`.
DATABASE_FILE = "notifications.db"
#: Suffix of the demo secret's file, beside the database (as SQLite's ``-wal`` and ``-shm``).
DEMO_SECRET_SUFFIX = "-demo-secret"


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return ``$XDG_DATA_HOME/notifications``, or ``~/.local/share/notifications``.

    The default must not depend on how the package was installed (Flask's instance
    folder does: ``./instance`` for an editable install, ``<venv>/var`` otherwise), or the
    server and the CLI of one install could silently use two different files.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME", "")
    # The XDG specification says to ignore a relative path.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "share"
    return root / "notifications"


def default_database_path(environ: Mapping[str, str] | None = None) -> Path:
    """Return the path of the default SQLite database file."""
    return data_dir(environ) / DATABASE_FILE


def default_url(environ: Mapping[str, str] | None = None) -> str:
    """Return the SQLAlchemy URL of the default SQLite database file."""
    return "sqlite:///" + str(default_database_path(environ))


def configured_url(environ: Mapping[str, str] | None = None) -> str:
    """Return the database URL the app will use: ``NOTIFICATIONS_DATABASE_URL`` or the default."""
    env = os.environ if environ is None else environ
    return env.get("NOTIFICATIONS_DATABASE_URL") or default_url(env)


def sqlite_path(url: str) -> Path | None:
    """Return the file of a SQLite URL, or None for an in-memory or non-SQLite database."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(os.path.abspath(path))


def describe(url: str) -> str:
    """Return how to name a database to a person: its file, or its URL without a password."""
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by the engine; never print a password
        return url.split("@")[-1]


def demo_secret_path(url: str, environ: Mapping[str, str] | None = None) -> Path:
    """Return the demo secret's file: beside a SQLite database, else in :func:`data_dir`."""
    path = sqlite_path(url)
    if path is None:
        path = data_dir(environ) / DATABASE_FILE
    return path.with_name(path.name + DEMO_SECRET_SUFFIX)


def read_demo_secret(url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Return the secret a demo server keeps for this database, or None if there is none."""
    try:
        text = demo_secret_path(url, environ).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def demo_secret(url: str, environ: Mapping[str, str] | None = None) -> str:
    """Return this database's demo secret, creating its file (mode 0600) on first use.

    The file lets ``notifications token`` in another shell sign tokens the running demo
    accepts, and keeps earlier tokens valid when the demo is restarted.
    """
    existing = read_demo_secret(url, environ)
    if existing:
        return existing
    path = demo_secret_path(url, environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    # O_EXCL: two demos starting at once keep the first one's secret.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        found = read_demo_secret(url, environ)
        if found:
            return found
        # An empty (or unreadable) file: replace it, still readable by its owner only.
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(secret + "\n")
    return secret
