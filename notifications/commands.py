"""The administrator's commands, for ``notifications COMMAND`` and ``flask --app app COMMAND``.

One set of click commands serves both entry points: :func:`init_app` registers them on
``app.cli`` and the ``notifications`` console script (``cli.py``) dispatches to
:data:`cli`. Each finds its app through Flask's :class:`~flask.cli.ScriptInfo`: the
console script hands in an :class:`AppLoader`, which builds the app with
:func:`create_cli_app`; under ``flask --app app``, ``app.py`` builds it with that same
function (see :func:`flask_cli_is_loading`). Commands that need no app (``where``,
``serve``) never build it from ``notifications``.
"""
from __future__ import annotations

import functools
import itertools
import json
import os
import signal
import sqlite3
import sys
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
import sqlalchemy.exc
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo
from gevent import monkey

import notifications
from notifications import paths
from notifications.core import records as transfer
from notifications.core import tokens
from notifications.core import webhooks as hooks
from notifications.core.kinds import KindError, check_kind
from notifications.core.serialize import full_record, iso_naive, iso_utc, parse_ntf_id

# The package's __init__ imports this module: create_app is looked up when it is called.
from notifications.extension import state
from notifications.ops import metrics, retention
from notifications.ops.server import raise_fd_limit, run_server
from notifications.settings import ConfigError
from notifications.store import (
    CommitSignal,
    WriteTimeout,
    feed,
    inserts,
    maintenance,
    marks,
    reads,
    seeding,
)
from notifications.store import demo as sample
from notifications.store import engine as store
from notifications.store import export as exporting
from notifications.store import preferences as user_preferences
from notifications.store import purge as purging
from notifications.store import stats as statistics
from notifications.store import webhooks as hook_rows
from notifications.store.engine import SCHEMA_VERSION, NoDatabase, SchemaError, ensure_schema
from notifications.store.importer import Importer
from notifications.store.maintenance import MaintenanceError
from notifications.store.models import db
from notifications.store.rows import now_us

#: Errors that mean "bad configuration, database or input", shown as one line, never a
#: traceback (the driver's errors as SQLAlchemy wraps them, and sqlite3's own for the
#: maintenance commands, which open files directly).
FATAL: tuple[type[BaseException], ...] = (
    ConfigError, SchemaError, NoDatabase, WriteTimeout, MaintenanceError,
    sqlalchemy.exc.ArgumentError, sqlalchemy.exc.DatabaseError, sqlite3.DatabaseError,
)

#: Apps built by :func:`create_cli_app` (not handed in by a test): their commands name the
#: database they use on stderr.
_BUILT_FOR_CLI: weakref.WeakSet[Flask] = weakref.WeakSet()


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn configuration, database and input errors into a one-line message (exit 1)."""
    try:
        yield
    except UnicodeEncodeError as exc:
        # Bytes of the command line that are not UTF-8 reach Python as lone surrogates,
        # which no text column (nor query) can take.
        if exc.reason != "surrogates not allowed":
            raise
        raise click.ClickException("an argument is not valid UTF-8 text") from None
    except FATAL as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise click.ClickException(message) from None


def create_cli_app() -> Flask:
    """Build the app the commands use, from the ``NOTIFICATIONS_*`` environment.

    Unlike the server's app it needs no JWT key (most commands verify no token) and leaves
    the database alone: each command creates or checks what it needs (see
    :func:`database`), so ``token`` or ``where`` never leave a file behind. Without a key
    of one's own, tokens are signed with the secret of a ``serve --demo`` on the same
    database, if there is one.
    """
    with one_line_errors():
        settings: dict[str, Any] = {"REQUIRE_KEY": False, "CREATE_SCHEMA": False}
        secret_file = None
        if not (os.environ.get("NOTIFICATIONS_JWT_SECRET")
                or os.environ.get("NOTIFICATIONS_JWT_PUBLIC_KEY")):
            url = paths.configured_url()
            secret = paths.read_demo_secret(url)
            if secret is not None:
                settings["JWT_SECRET"] = secret
                secret_file = str(paths.demo_secret_path(url))
        app = notifications.create_app(settings)
    state(app).demo_secret_file = secret_file
    _BUILT_FOR_CLI.add(app)
    return app


def flask_cli_is_loading() -> bool:
    """Tell whether Flask's command line (``flask --app app ...``) is loading the app now.

    ``app.py`` then builds the app with :func:`create_cli_app`, so that ``flask --app app
    COMMAND`` works wherever ``notifications COMMAND`` does (gunicorn, which runs no click
    command, gets the server's app).
    """
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.find_object(ScriptInfo) is not None


class AppLoader(ScriptInfo):
    """The ``notifications`` command's script info: the app handed in, or the CLI's own."""

    def __init__(self, app: Flask | None = None) -> None:
        super().__init__(create_app=(lambda: app) if app is not None else create_cli_app,
                         set_debug_flag=False)


class Command(click.Command):
    """A command that ends with one ``Error:`` line for bad settings, databases or input."""

    def invoke(self, ctx: click.Context) -> Any:
        with one_line_errors():
            return super().invoke(ctx)


class Commands(AppGroup):
    """The commands, each run in its app's context unless told ``with_appcontext=False``."""

    command_class = Command


@click.group(cls=Commands)
def cli() -> None:
    """Administer and serve the notifications service."""


def init_app(app: Flask) -> None:
    """Register every command on ``app.cli``: ``flask --app app COMMAND``."""
    for command in cli.commands.values():
        app.cli.add_command(command)


def _app() -> Flask:
    """Return the app of the running command (Flask's CLI may have pushed it already)."""
    if current_app:
        return current_app._get_current_object()  # type: ignore[attr-defined]
    return click.get_current_context().ensure_object(ScriptInfo).load_app()


def database(*, create: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make the database usable before the command runs, inside its app context.

    ``create`` is for commands that write new data (the file and schema are created if
    missing); without it, for commands that read or change stored data, a missing
    database is a one-line error and no file is created.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            app = _app()
            store.prepare(app, create=create)
            if app in _BUILT_FOR_CLI:
                # Name the file on every run, so two shells can never silently disagree.
                click.echo(f"Database: {paths.describe(app.config['SQLALCHEMY_DATABASE_URI'])}",
                           err=True)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def echo_json(data: Any) -> None:
    """Print one JSON document on one line."""
    click.echo(json.dumps(data, ensure_ascii=False))


def plural(count: int, noun: str) -> str:
    """Return ``count`` with ``noun``, adding an "s" unless the count is one."""
    return f"{count} {noun}{'s' if count != 1 else ''}"


def uuid_option(value: str | None, name: str) -> str | None:
    """Validate a UUID given on the command line and return its canonical form."""
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a UUID", param_hint=name) from None


def user_option(value: str, name: str = "--user") -> str:
    """Check a user or organization id: 1 to 255 characters."""
    if not value or len(value) > 255:
        raise click.BadParameter("must be 1 to 255 characters", param_hint=name)
    return value


def checked_ids(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Option callback: check one (or each repeated) user or organization id."""
    for item in value if isinstance(value, tuple) else (value,):
        if item is not None:
            user_option(item, param.opts[0])
    return value


def checked_uuid(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Option callback: check a UUID and return its canonical form."""
    return uuid_option(value, param.opts[0])


def checked_metadata(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Option callback: check that --metadata is a JSON object before any database is opened."""
    if value is None:
        return None
    try:
        metadata = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--metadata") from None
    if not isinstance(metadata, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--metadata")
    return value


def checked_collapse_key(ctx: click.Context, param: click.Parameter,
                         value: str | None) -> str | None:
    """Option callback: a collapse key is 1 to 255 characters."""
    if value is not None and not 1 <= len(value) <= 255:
        raise click.BadParameter("must be 1 to 255 characters", param_hint="--collapse-key")
    return value


def checked_kinds(ctx: click.Context, param: click.Parameter,
                  value: tuple[str, ...]) -> tuple[str, ...]:
    """Option callback: each value is a kind or a ``prefix.*`` pattern."""
    for item in value:
        try:
            check_kind(item)
        except KindError as exc:
            raise click.BadParameter(f"{item!r}: {exc}", param_hint=param.opts[0]) from None
    return value


def checked_uuids(ctx: click.Context, param: click.Parameter,
                  value: tuple[str, ...]) -> tuple[str, ...]:
    """Option callback: each value is a UUID; return their canonical forms."""
    return tuple(str(uuid_option(item, param.opts[0])) for item in value)


# --- database -----------------------------------------------------------------------


@cli.command("init-db")
@database(create=True)
def init_db() -> None:
    """Create or upgrade the database schema (idempotent, never deletes data)."""
    previous = ensure_schema(db.engine)
    # Preparing the database already brought the schema up to date: report what it found.
    found, state().schema_found = state().schema_found, None
    previous = found if found is not None else previous
    url = paths.describe(current_app.config["SQLALCHEMY_DATABASE_URI"])
    if previous == SCHEMA_VERSION:
        click.echo(f"Database {url} is up to date (schema version {SCHEMA_VERSION}).")
    else:
        click.echo(f"Database {url} initialised (schema version {previous} -> {SCHEMA_VERSION}).")


@cli.command(with_appcontext=False)
@click.option("--json", "as_json", is_flag=True, help="Print the details as JSON.")
def where(as_json: bool) -> None:
    """Show which database the commands and the server use (its file for SQLite).

    Reads only the settings: nothing is created or opened.
    """
    url = paths.configured_url()
    path = paths.sqlite_path(url)
    secret = paths.demo_secret_path(url)
    if as_json:
        echo_json({
            "database": paths.describe(url),
            "path": str(path) if path is not None else None,
            "exists": path.exists() if path is not None else None,
            "default": not os.environ.get("NOTIFICATIONS_DATABASE_URL"),
            "data_dir": str(paths.data_dir()),
            "demo_secret": str(secret) if secret.exists() else None,
        })
        return
    click.echo(paths.describe(url))
    if path is not None and not path.exists():
        click.echo("(not created yet: `notifications init-db` or `notifications serve --demo` "
                   "creates it)", err=True)


# --- serving ------------------------------------------------------------------------


def _url_host(host: str) -> str:
    """Return how a URL names the listening address (a wildcard as the loopback address)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _demo_banner(app: Flask, host: str, port: int, seeded: int, stored: int,
                 secret_file: str | None) -> None:
    """Print what the demo did, tokens and curl lines that answer, and where to look next."""
    click.echo("Demo mode: for trying the service, not for serving real users.")
    click.echo(f"Database: {paths.describe(app.config['SQLALCHEMY_DATABASE_URI'])}")
    if seeded:
        people = ", ".join(f"{user} ({org})" for user, org in sample.USERS)
        click.echo(f"Seeded {plural(seeded, 'notification')} for {people}: dataset monitor "
                   "alerts and inbox items.")
    else:
        click.echo(f"The database already has {plural(stored, 'notification')}; seeding nothing.")
    if secret_file:
        click.echo(f"Demo secret: {secret_file} (demo only: whoever can read it can sign tokens).")
        click.echo("The CLI in another shell signs with it while NOTIFICATIONS_JWT_SECRET "
                   "is unset.")
    else:
        click.echo("Tokens are signed with NOTIFICATIONS_JWT_SECRET.")
    with app.app_context():
        users = sample.token_users()
    base = f"http://{_url_host(host)}:{port}"
    if not users:
        click.echo(f"\nNo notifications to show yet. Open {base}/docs to explore the API.\n")
        return
    keys = state(app).keys
    click.echo("\nTokens valid for 24 hours; paste one line into the shell where you run curl:")
    for user_id, org_id in users:
        token = tokens.issue(app.config["JWT_SECRET"], user_id, org_id, ttl=86_400,
                             org_claim=keys.org_claim, audience=keys.audience, issuer=keys.issuer)
        who = f"{user_id} in organization {org_id}" if org_id else f"{user_id} (no organization)"
        click.echo(f"  export TOKEN={token}  # {who}")
    if secret_file and users[0][1]:
        user_id, org_id = users[0]
        click.echo("or make one yourself:")
        click.echo(f"  export TOKEN=\"$(notifications token --user {user_id} --org {org_id})\"")
    dataset = app.config["DATASET_PREFIX"]
    org = app.config["ORGANIZATION_PREFIX"]
    click.echo("\nThen try:")
    bearer = '-H "Authorization: Bearer $TOKEN"'
    if dataset is not None:
        click.echo(f'  curl {bearer} "{base}{dataset}/notifications?limit=5"')
        click.echo(f'  curl {bearer} "{base}{dataset}/notifications/unread-count"')
        click.echo(f'  curl -N {bearer} "{base}{dataset}/notifications/stream"')
    # The organization variant answers only tokens that name an organization.
    if org is not None and any(org_id for _, org_id in users):
        click.echo(f'  curl {bearer} "{base}{org}/notifications"')
        click.echo(f'  curl -N {bearer} "{base}{org}/notifications/stream"')
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    click.echo("")
    if "/" in routes:
        click.echo(f"Open {base}/ for the live inbox (pick a demo user to sign in).")
    if "/docs" in routes:
        click.echo(f"Open {base}/docs for the API reference (and to try each call).")
    click.echo("")


@cli.command(with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="gunicorn worker processes (gevent).")
@click.option("--demo", is_flag=True,
              help="Seed sample data, generate a secret if none is set, print tokens.")
def serve(host: str, port: int, workers: int, demo: bool) -> None:
    """Serve the HTTP APIs with gunicorn and gevent workers."""
    if not monkey.is_module_patched("socket"):
        # `notifications serve` patches gevent before it imports the service (cli.py), so
        # that the master and the workers agree on one I/O model. Here (flask --app app
        # serve) the service is imported and an app built already: too late for that and
        # for the workers' shared metrics, so the console script serves in our place.
        _exec_notifications_serve(host, port, workers, demo)
    # Before prometheus_client is imported: the workers share their values through it.
    metrics_dir = metrics.prepare_multiprocess()
    master = os.getpid()
    try:
        _serve(host, port, workers, demo)
    finally:
        # Workers leave through here too (gunicorn forks inside run_server): only the
        # master removes what the whole server shared.
        if os.getpid() == master:
            metrics.remove_multiprocess(metrics_dir)


def _exec_notifications_serve(host: str, port: int, workers: int, demo: bool) -> NoReturn:
    """Replace this process with ``notifications serve`` and the same options."""
    args = ["serve", "--host", host, "--port", str(port), "--workers", str(workers)]
    if demo:
        args.append("--demo")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "cli", *args])


def _serve(host: str, port: int, workers: int, demo: bool) -> None:
    """Build the app once in this process, take the server lock and run gunicorn."""
    overrides: dict[str, Any] = {}
    secret_file = None
    if demo:
        overrides["DEMO"] = True
        if not os.environ.get("NOTIFICATIONS_JWT_SECRET"):
            # Kept beside the database, so the CLI in another shell signs tokens this demo
            # accepts (and tokens survive a restart of the demo).
            url = paths.configured_url()
            path = paths.demo_secret_path(url)
            try:
                overrides["JWT_SECRET"] = paths.demo_secret(url)
            except OSError as exc:
                raise click.ClickException(
                    f"cannot write the demo secret {path}: {exc.strerror or exc}") from None
            secret_file = str(path)
    # Build the app once in this process: a bad setting stops here with one clear line.
    app = notifications.create_app(overrides)
    database = paths.sqlite_path(app.config["SQLALCHEMY_DATABASE_URI"])
    if database is not None:
        # Its file stays open for the life of the master and is inherited by every worker
        # (the kernel drops the lock when the last of them exits): `restore` refuses while
        # it is held.
        maintenance.hold_server_lock(database)
    if demo:
        with app.app_context():
            stored = sample.count()
            seeded = sample.seed() if stored == 0 else 0
        _demo_banner(app, host, port, seeded, stored, secret_file)
        # Out before gunicorn forks: a buffer copied into each worker would print again.
        sys.stdout.flush()
    click.echo(f"Serving on http://{host}:{port} with {workers} gevent worker(s); "
               f"database {paths.describe(app.config['SQLALCHEMY_DATABASE_URI'])}", err=True)
    fd_limits = raise_fd_limit()
    click.echo(fd_limits.describe(), err=True)
    run_server(lambda: notifications.create_app(overrides), host=host, port=port,
               workers=workers, app=app, worker_connections=fd_limits.connections)


@cli.command()
@click.option("--user", "user_id", required=True, callback=checked_ids,
              help="User id (the token's sub).")
@click.option("--org", "org_id", default=None, callback=checked_ids, help="Organization id claim.")
@click.option("--ttl", default=3600, show_default=True, type=click.IntRange(1, 10 * 365 * 86400),
              help="Seconds until the token expires.")
def token(user_id: str, org_id: str | None, ttl: int) -> None:
    """Print a signed JWT for local use (HS256 with NOTIFICATIONS_JWT_SECRET)."""
    secret = current_app.config["JWT_SECRET"]
    keys = state().keys
    hs = [a for a in keys.algorithms if a.startswith("HS")]
    if not secret or not hs:
        raise click.ClickException(
            "token signs with NOTIFICATIONS_JWT_SECRET and an HS* algorithm in "
            "NOTIFICATIONS_JWT_ALGORITHMS (or, unset, with the secret of a "
            "`notifications serve --demo` on the same database); for RS256/ES256 sign "
            "tokens with your private key"
        )
    demo_file = state().demo_secret_file
    if demo_file:
        click.echo(f"Signed with the demo secret in {demo_file} "
                   "(NOTIFICATIONS_JWT_SECRET is not set).", err=True)
    click.echo(tokens.issue(secret, user_id, org_id, ttl=ttl, org_claim=keys.org_claim,
                            audience=keys.audience, issuer=keys.issuer, algorithm=hs[0]))


# --- data ---------------------------------------------------------------------------


@cli.command()
@click.option("--user", "user_ids", required=True, multiple=True, callback=checked_ids,
              help="Recipient; repeat for several (one notification each).")
@click.option("--org", "org_id", default=None, callback=checked_ids, help="Organization id.")
@click.option("--dataset", "dataset_id", default=None, callback=checked_uuid, help="Dataset UUID.")
@click.option("--kind", default="", help="Kind, e.g. review.created.")
@click.option("--entity-type", default="", help="Entity type, e.g. saved_view.")
@click.option("--entity-id", default="", help="Entity id.")
@click.option("--title", default="", help="Title (may be empty).")
@click.option("--body", default=None, help="Body / message text.")
@click.option("--link", default=None, help="Link for the inbox item.")
@click.option("--metadata", "metadata_json", default=None, callback=checked_metadata,
              help="JSON object of extra fields.")
@click.option("--collapse-key", default=None, callback=checked_collapse_key,
              help="Replace the user's unread, unarchived notification with this key.")
@click.option("--critical", is_flag=True, help="Store it even if the user muted its kind "
              "or dataset.")
@database(create=True)
def send(user_ids: tuple[str, ...], org_id: str | None, dataset_id: str | None, kind: str,
         entity_type: str, entity_id: str, title: str, body: str | None, link: str | None,
         metadata_json: str | None, collapse_key: str | None, critical: bool) -> None:
    """Store a notification for each --user and print each as JSON (one per line).

    A user who muted its kind or dataset gets nothing (unless --critical); a line on stderr
    says so. With --collapse-key it replaces the user's unread, unarchived notification
    with the same key, and is stored with that one's collapsed_count plus one.
    """
    metadata: dict[str, Any] = json.loads(metadata_json) if metadata_json is not None else {}
    fields = {
        "organization_id": org_id, "dataset_id": dataset_id,
        "kind": kind, "entity_type": entity_type, "entity_id": entity_id, "title": title,
        "body": body, "link": link, "metadata": metadata, "collapse_key": collapse_key,
        "critical": critical,
    }
    stored, muted = inserts.send_notifications({**fields, "user_id": u} for u in user_ids)
    for row in stored:
        echo_json(full_record(row))
    for item in muted:
        click.echo(f"Not stored for {item['user_id']}: muted by their preferences "
                   "(--critical sends it anyway).", err=True)


@cli.command()
@click.option("--users", default=10, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--per-user", default=20, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--orgs", default=3, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--datasets", default=5, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--random-seed", default=None, type=int, help="Make the data reproducible.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@database(create=True)
def seed(users: int, per_user: int, orgs: int, datasets: int, random_seed: int | None,
         as_json: bool) -> None:
    """Write realistic sample data for both variants (monitor alerts and inbox items)."""
    total = users * per_user
    started = time.perf_counter()
    with click.progressbar(length=total, label="Seeding", file=sys.stderr) as bar:
        written = seeding.seed(users=users, per_user=per_user, orgs=orgs, datasets=datasets,
                               random_seed=random_seed, progress=bar.update)
    elapsed = time.perf_counter() - started
    if as_json:
        echo_json({"written": written, "seconds": round(elapsed, 3)})
    else:
        click.echo(f"Wrote {written} notifications for {users} users in {elapsed:.1f}s.")


def _format_row(row: dict[str, Any]) -> str:
    state = "read  " if row["read_at"] is not None else "UNREAD"
    what = row["kind"] or row["entity_type"] or "-"
    text = row["title"] or row["body"] or ""
    scope = row["organization_id"] or "-"
    if row["dataset_id"]:
        scope += f" dataset={row['dataset_id']}"
    created = (iso_naive(row["created_at"]) or "")[:19]
    return f"{created}  {state}  {row['id']}  {row['user_id']}  {scope}  {what}  {text}"


def _show_row(row: dict[str, Any], as_json: bool) -> None:
    """Print a row as a JSON line (every stored field) or as one readable line."""
    if as_json:
        echo_json(full_record(row))
    else:
        click.echo(_format_row(row))


@cli.command("list")
@click.option("--user", "user_id", default=None, help="Only this user.")
@click.option("--org", "org_id", default=None, help="Only this organization.")
@click.option("--dataset", "dataset_id", default=None, callback=checked_uuid,
              help="Only this dataset (UUID).")
@click.option("--unread", is_flag=True, help="Only unread notifications.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output.")
@database(create=False)
def list_command(user_id: str | None, org_id: str | None, dataset_id: str | None, unread: bool,
                 limit: int, as_json: bool) -> None:
    """Show the newest notifications, optionally for one user, organization or dataset."""
    rows = reads.list_for_admin(
        user_id=user_id, organization_id=org_id, dataset_id=dataset_id, unread_only=unread,
        limit=limit,
    )
    for row in rows:
        _show_row(row, as_json)
    if not rows and not as_json:
        click.echo("No notifications match.", err=True)


def _file_sizes(url: str) -> dict[str, int | None]:
    if url.startswith("postgresql"):
        # The WAL of a PostgreSQL server is the server's, shared by every database.
        return {"database_bytes": statistics.table_bytes(), "wal_bytes": None}
    if not url.startswith("sqlite:///"):
        return {"database_bytes": None, "wal_bytes": None}
    path = url[len("sqlite:///"):]

    def size(p: str) -> int:
        return os.path.getsize(p) if os.path.exists(p) else 0

    return {"database_bytes": size(path), "wal_bytes": size(path + "-wal")}


@cli.command()
@click.option("--top", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="How many users, organizations and datasets to list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@database(create=False)
def stats(top: int, as_json: bool) -> None:
    """Show totals, unread counts, the busiest users/organizations/datasets and file sizes."""
    data = statistics.stats(top=top)
    data.update(_file_sizes(current_app.config["SQLALCHEMY_DATABASE_URI"]))
    data["retention"] = retention.status(current_app)
    if as_json:
        echo_json(data)
        return
    click.echo(f"notifications  {data['total']}  (unread {data['unread']})")
    click.echo(f"users {data['users']}, organizations {data['organizations']}, "
               f"datasets {data['datasets']}")
    if data["wal_bytes"] is not None:
        click.echo(f"database {data['database_bytes'] / 1e6:.1f} MB, "
                   f"WAL {data['wal_bytes'] / 1e6:.1f} MB")
    elif data["database_bytes"] is not None:
        click.echo(f"tables and indexes {data['database_bytes'] / 1e6:.1f} MB")
    kept = data["retention"]
    click.echo(f"retention {kept['policy']}: last run {kept['last_run'] or 'never'}, "
               f"deleted {kept['last_deleted']} then, {kept['deleted']} in all "
               f"({kept['deleted_unread']} unread)")
    for title, key in (("users", "top_users"), ("organizations", "top_organizations"),
                       ("datasets", "top_datasets")):
        if data[key]:
            click.echo(f"\ntop {title}:")
            for entry in data[key]:
                click.echo(f"  {entry['id']}  {entry['total']}  (unread {entry['unread']})")


@cli.command()
@click.option("--user", "user_id", default=None, callback=checked_ids, help="Only this user.")
@click.option("--org", "org_id", default=None, callback=checked_ids, help="Only this organization.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output.")
@click.option("--interval", type=click.FloatRange(0.01, 60), default=None,
              help="Seconds between checks (default NOTIFICATIONS_POLL_INTERVAL).")
@database(create=False)
def tail(user_id: str | None, org_id: str | None, as_json: bool, interval: float | None) -> None:
    """Follow new notifications live, one line each, until Ctrl-C."""
    pause = interval or current_app.config["POLL_INTERVAL"]
    restore = _stop_on_signals()
    try:
        last_seq = feed.newest_seq()
        # An idle tail costs one PRAGMA per interval, not a query.
        counter = CommitSignal(db.engine)
        click.echo("Following new notifications; press Ctrl-C to stop.", err=True)
        while True:
            if not counter.moved():
                time.sleep(pause)
                continue
            head = feed.newest_seq()
            while last_seq < head:
                rows = feed.rows_after(last_seq, head, user_id=user_id, organization_id=org_id)
                for row in rows:
                    _show_row(row, as_json)
                last_seq = rows[-1]["seq"] if len(rows) == feed.CHANGE_BATCH else head
            sys.stdout.flush()
            time.sleep(pause)
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM) is how a tail ends: no traceback, no "Aborted!".
        click.echo("", err=True)
    finally:
        restore()


def _stop_on_signals() -> Callable[[], None]:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt; return what restores the old handlers.

    A shell starts background jobs with SIGINT ignored, and Python then leaves it ignored:
    without its own handler such a tail could only be killed. Once one of them arrived,
    later ones are ignored until the process exits: ``timeout`` sends SIGTERM to its child
    and then to its whole process group, and the second must not kill a tail that is
    already ending cleanly (exit 143 instead of 0).
    """
    stopping = False
    signals = (signal.SIGINT, signal.SIGTERM)

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    try:
        previous = {sig: signal.signal(sig, handler) for sig, handler in (
            (signal.SIGINT, stop), (signal.SIGTERM, stop))}
    except ValueError:
        return lambda: None  # not the main thread (an embedding program): leave its handlers

    def restore() -> None:
        if stopping:
            return  # the command is ending because of a signal: stay deaf to repeats
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    return restore


# --- data management ----------------------------------------------------------------


def notification_id_option(value: str) -> str:
    """Accept a notification id as a UUID or as the organization variant's ``ntf_...``."""
    found = parse_ntf_id(value) if value.startswith("ntf_") else None
    if found is not None:
        return found
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a notification id (a UUID or ntf_<32 hex>)",
                                 param_hint="--id") from None


@cli.command("mark-read")
@click.option("--user", "user_id", required=True, callback=checked_ids,
              help="Whose notifications to mark.")
@click.option("--id", "ids", multiple=True, help="Notification id (UUID or ntf_...); repeatable.")
@click.option("--all", "all_", is_flag=True, help="Every unread notification of the user.")
@click.option("--org", "org_id", default=None, callback=checked_ids,
              help="Only notifications of this organization.")
@click.option("--dataset", "dataset_id", default=None, callback=checked_uuid,
              help="Only notifications of this dataset (UUID).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@database(create=False)
def mark_read(user_id: str, ids: tuple[str, ...], all_: bool, org_id: str | None,
              dataset_id: str | None, as_json: bool) -> None:
    """Mark a user's notifications read: the given --id values, or --all."""
    if bool(ids) == all_:
        raise click.UsageError("give either --id ID (repeatable) or --all")
    wanted = list(dict.fromkeys(notification_id_option(v) for v in ids)) if ids else None
    marked = marks.mark_read_for_user(user_id, wanted, organization_id=org_id,
                                        dataset_id=dataset_id)
    if as_json:
        echo_json({"marked": marked})
    elif wanted is None:
        click.echo(f"Marked {plural(marked, 'notification')} of {user_id} read.")
    else:
        click.echo(f"Marked {marked} of {plural(len(wanted), 'given notification')} "
                   f"of {user_id} read" + (
                       "." if marked == len(wanted)
                       else f"; the other {len(wanted) - marked} are unknown, someone else's, "
                            "outside the filters or already read."))


@cli.command()
@click.option("--user", "user_id", required=True, callback=checked_ids,
              help="Whose preferences to show or change.")
@click.option("--mute-kind", "mute_kinds", multiple=True, callback=checked_kinds,
              help="Mute a kind (review.created) or a prefix (review.*); repeatable.")
@click.option("--unmute-kind", "unmute_kinds", multiple=True, callback=checked_kinds,
              help="Remove a muted kind or prefix; repeatable.")
@click.option("--mute-dataset", "mute_datasets", multiple=True, callback=checked_uuids,
              help="Mute a dataset (UUID); repeatable.")
@click.option("--unmute-dataset", "unmute_datasets", multiple=True, callback=checked_uuids,
              help="Remove a muted dataset; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the preferences as JSON.")
@database(create=True)
def preferences(user_id: str, mute_kinds: tuple[str, ...], unmute_kinds: tuple[str, ...],
                mute_datasets: tuple[str, ...], unmute_datasets: tuple[str, ...],
                as_json: bool) -> None:
    """Show a user's preferences, after muting and unmuting what the options say.

    Ingest and `send` do not store a notification whose kind or dataset the user muted,
    unless it is critical. Removals apply after additions; the change is one transaction.
    """
    try:
        prefs = user_preferences.change(
            user_id, mute_kinds=mute_kinds, unmute_kinds=unmute_kinds,
            mute_datasets=mute_datasets, unmute_datasets=unmute_datasets)
    except ValueError as exc:  # a list would hold more than MAX_MUTES entries
        raise click.ClickException(str(exc)) from None
    if as_json:
        echo_json({"user_id": user_id, **prefs.as_dict()})
        return
    click.echo(f"Preferences of {user_id}:")
    click.echo("  muted kinds:    " + (", ".join(prefs.muted_kinds) or "none"))
    click.echo("  muted datasets: " + (", ".join(prefs.muted_datasets) or "none"))


@cli.command()
@click.option("--older-than", "older_than", required=True, metavar="DURATION",
              help="Age of what to delete, e.g. 30d, 12h, 90m, 45s, 1d12h.")
@click.option("--read-only", is_flag=True, help="Keep unread notifications.")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@database(create=False)
def purge(older_than: str, read_only: bool, dry_run: bool, as_json: bool) -> None:
    """Delete notifications created longer ago than DURATION."""
    try:
        seconds = transfer.parse_duration(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    before = now_us() - seconds * 1_000_000
    result = purging.purge(before, read_only=read_only, dry_run=dry_run)
    cutoff = f"{iso_naive(before)}Z"
    if as_json:
        echo_json({**result, "before": cutoff, "read_only": read_only, "dry_run": dry_run})
        return
    n = result["deleted"]
    what = plural(n, "read notification" if read_only else "notification")
    if not read_only:
        what += f" ({result['unread']} unread)"
    click.echo(f"{'Would delete' if dry_run else 'Deleted'} {what} created before {cutoff}.")


@cli.command()
@click.option("--user", "user_id", default=None, callback=checked_ids,
              help="Only this user's notifications.")
@click.option("--since", default=None, metavar="DATE",
              help="Only notifications created at or after DATE (ISO-8601, UTC) or a duration "
                   "ago (7d).")
@click.option("--output", "-o", default="-", show_default=True, metavar="FILE",
              help="Where to write; - is standard output.")
@database(create=False)
def export(user_id: str | None, since: str | None, output: str) -> None:
    """Write notifications as JSON Lines, oldest stored first (import reads them back exactly)."""
    since_us = None
    if since is not None:
        try:
            since_us = transfer.parse_since(since, now_us())
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    if output != "-" and os.path.isdir(output):
        raise click.BadParameter(f"{output!r} is a directory; name a file", param_hint="--output")
    target = os.path.realpath(output) if output != "-" else output
    # Write a regular file under a temporary name and rename it when complete; anything
    # else (a pipe, /dev/null) is written in place: renaming would replace it.
    atomic = target != "-" and (not os.path.exists(target) or os.path.isfile(target))
    try:
        out = click.open_file(target, "wb", atomic=atomic)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {output!r}: {exc.strerror}",
                                 param_hint="--output") from None
    count = 0
    lines = (transfer.export_line(row) for row in
             exporting.export_rows(user_id=user_id, since_us=since_us, decode_metadata=False))
    try:
        with out:
            # One join and one write per 10,000 lines rather than a write call per line.
            while chunk := list(itertools.islice(lines, 10_000)):
                out.write(("\n".join(chunk) + "\n").encode())
                count += len(chunk)
    except BrokenPipeError:
        # The reader went away (export | head): stop quietly, as shell tools do, and keep
        # Python from complaining about the closed pipe again at exit.
        _silence_stdout()
        sys.exit(1)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"Exported {plural(count, 'notification')}"
               + (f" to {output}." if output != "-" else "."), err=True)


def _silence_stdout() -> None:
    """Point standard output at /dev/null after its reader has gone."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file descriptor (tests): nothing to flush at exit


#: How many skipped lines ``import --skip-invalid`` describes one by one.
_SHOWN_SKIPS = 20


@cli.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--skip-invalid", is_flag=True, help="Import the valid lines and count the others.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@database(create=True)
def import_command(file: Any, skip_invalid: bool, as_json: bool) -> None:
    """Read notifications from a JSON Lines FILE (- for standard input), all or none.

    A record whose id, or whose user and dedupe_key, is already stored is skipped as a
    duplicate, so importing an export twice stores it once. Records without an id get a
    new one.
    """
    skipped = 0
    importer = Importer()
    try:
        batch: list[tuple[Any, ...]] = []
        number = 0
        for number, raw in enumerate(file, 1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark, as some editors write
            if not raw.strip():
                continue
            try:
                row = inserts.new_row(transfer.import_fields(raw))
                batch.append((number, *(row[name] for name in inserts.INSERT_FIELDS)))
            except transfer.LineError as exc:
                if not skip_invalid:
                    raise click.ClickException(
                        f"line {number}: {exc}; nothing was imported "
                        "(fix the line, or use --skip-invalid to import the others)"
                    ) from None
                skipped += 1
                if skipped <= _SHOWN_SKIPS:
                    click.echo(f"skipped line {number}: {exc}", err=True)
                continue
            if len(batch) >= 10_000:
                importer.stage(batch)
                batch = []
        importer.stage(batch)
        imported = importer.copy()
        duplicates = importer.staged - imported
    finally:
        importer.close()
    if skipped > _SHOWN_SKIPS:
        click.echo(f"... and {skipped - _SHOWN_SKIPS} more invalid lines", err=True)
    if as_json:
        echo_json({"imported": imported, "duplicates": duplicates, "invalid": skipped,
                   "lines": number})
        return
    message = f"Imported {plural(imported, 'notification')}"
    if duplicates:
        message += f"; skipped {duplicates} already stored (same id, or same user and dedupe_key)"
    if skipped:
        message += f"; skipped {plural(skipped, 'invalid line')}"
    click.echo(message + ".")


# --- operations: backup, restore, check -------------------------------------------------


class _Progress:
    """A click progress bar on stderr when it is a terminal; silence otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@database(create=False)
def backup(file: str, as_json: bool) -> None:
    """Write a consistent copy of the database to FILE, while the service runs."""
    progress = _Progress("Backing up")
    try:
        source = maintenance.sqlite_file(current_app.config["SQLALCHEMY_DATABASE_URI"])
        result = maintenance.backup(source, Path(file), progress=progress)
    finally:
        progress.close()
    if as_json:
        echo_json(result)
        return
    click.echo(f"Backed up {plural(result['notifications'], 'notification')} "
               f"({result['bytes'] / 1e6:.1f} MB) to {result['file']}.")


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--force", is_flag=True,
              help="Restore even while a server uses the database (restart it afterwards).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def restore(file: str, force: bool, as_json: bool) -> None:
    """Replace the database with the backup FILE, after checking FILE."""
    app = _app()
    target = maintenance.sqlite_file(app.config["SQLALCHEMY_DATABASE_URI"])
    source = Path(file)
    if source.resolve() == target.resolve():
        raise click.ClickException("FILE is the database itself")
    report = maintenance.check(source, allow_older=True)
    if not report.ok:
        raise click.ClickException(f"{file} is not a usable backup: {report.problems[0]}")
    lock = maintenance.take_exclusive(maintenance.lock_path(target))
    if lock is None and not force:
        raise click.ClickException(
            f"a server is using {target} (it holds {maintenance.lock_path(target)}); stop it "
            "first, or pass --force and restart it afterwards")
    progress = _Progress("Restoring")
    try:
        store.current_store().close()
        result = maintenance.restore(source, target, progress=progress)
        # A backup of an older version is upgraded as init-db would.
        store.prepare(app, create=True)
    finally:
        progress.close()
        if lock is not None:
            maintenance.release(lock)
    result["schema_version_found"] = report.schema_version
    result["forced"] = lock is None
    if as_json:
        echo_json(result)
        return
    click.echo(f"Restored {plural(result['notifications'], 'notification')} from {file} "
               f"into {target}.")
    if lock is None:
        click.echo("A server was using the database: restart it now.", err=True)


@cli.command(with_appcontext=False)
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--quick", is_flag=True,
              help="PRAGMA quick_check instead of the full integrity_check.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check(file: str | None, quick: bool, as_json: bool) -> None:
    """Check the database (or the backup FILE): integrity, schema, indexes, sizes."""
    if file is not None:
        path = Path(file)
    else:
        path = maintenance.sqlite_file(_app().config["SQLALCHEMY_DATABASE_URI"])
    report = maintenance.check(path, quick=quick)
    if as_json:
        echo_json(report.as_dict())
    else:
        click.echo(f"database       {report.path}")
        click.echo(f"integrity      {', '.join(report.integrity[:3]) or '-'}")
        click.echo(f"schema         version {report.schema_version}")
        click.echo(f"notifications  {report.notifications}")
        click.echo(f"size           {report.database_bytes / 1e6:.1f} MB, "
                   f"WAL {report.wal_bytes / 1e6:.1f} MB")
        for problem in report.problems:
            click.echo(f"problem: {problem}", err=True)
        if report.ok:
            click.echo("ok")
    if not report.ok:
        sys.exit(1)


# --- outbound webhooks ----------------------------------------------------------------------


@cli.group(cls=Commands)
def webhooks() -> None:
    """Send the change log to other services: endpoints, their deliveries, retries."""


def _when(us: int | None) -> str | None:
    """A stored time as the commands show it (RFC 3339, UTC)."""
    return None if us is None else iso_utc(us)


def _endpoint_or_fail(endpoint_id: str) -> hook_rows.Endpoint:
    found = hook_rows.endpoint(endpoint_id)
    if found is None:
        raise click.ClickException(f"there is no webhook endpoint {endpoint_id!r} "
                                   "(`notifications webhooks list` shows them)")
    return found


def checked_webhook(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback: check an endpoint URL or ``--events`` before any database is opened."""
    try:
        if param.name == "url":
            return hooks.check_url(value)
        return hooks.parse_events(value)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@webhooks.command("add")
@click.argument("url", callback=checked_webhook)
@click.option("--events", "chosen", default=None, metavar="EVENT,...", callback=checked_webhook,
              help=f"Events to send, comma-separated (default: all of {', '.join(hooks.EVENTS)}).")
@click.option("--json", "as_json", is_flag=True, help="Print the endpoint as JSON.")
@database(create=True)
def webhooks_add(url: str, chosen: tuple[str, ...], as_json: bool) -> None:
    """Add an endpoint at URL; print its id and its signing secret (shown this once)."""
    secret = hooks.new_secret()
    endpoint = hook_rows.add_endpoint(url, chosen, secret.removeprefix(hooks.SECRET_PREFIX))
    if as_json:
        echo_json({"id": endpoint.id, "url": endpoint.url, "events": list(endpoint.events),
                   "secret": secret})
        return
    click.echo(f"Added webhook endpoint {endpoint.id} for {endpoint.url}")
    click.echo(f"Events: {', '.join(endpoint.events)}")
    click.echo(f"Secret: {secret}")
    click.echo("The secret is shown only this once: give it to the receiving service now.",
               err=True)


@webhooks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the endpoints as JSON.")
@database(create=False)
def webhooks_list(as_json: bool) -> None:
    """List the endpoints and how many deliveries each has pending, delivered and failed."""
    counts = hook_rows.status_counts()
    found: list[dict[str, Any]] = [
        {"id": e.id, "url": e.url, "events": list(e.events), "created_at": _when(e.created_at),
         **{status: counts.get(e.id, {}).get(status, 0)
            for status in (hook_rows.PENDING, hook_rows.DELIVERED, hook_rows.FAILED)}}
        for e in hook_rows.endpoints()
    ]
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("No webhook endpoints (`notifications webhooks add URL` adds one).")
    for e in found:
        click.echo(f"{e['id']}  {e['url']}  {','.join(e['events'])}  pending {e['pending']}, "
                   f"delivered {e['delivered']}, failed {e['failed']}")


@webhooks.command("remove")
@click.argument("endpoint_id", metavar="ID")
@database(create=False)
def webhooks_remove(endpoint_id: str) -> None:
    """Remove the endpoint ID and its deliveries: nothing more is sent to it."""
    if not hook_rows.remove_endpoint(endpoint_id):
        _endpoint_or_fail(endpoint_id)
    click.echo(f"Removed webhook endpoint {endpoint_id}.")


def _delivery_json(d: hook_rows.Delivery) -> dict[str, Any]:
    return {"id": d.id, "endpoint_id": d.endpoint_id, "position": d.position, "type": d.type,
            "status": d.status, "attempts": d.attempts, "created_at": _when(d.created_at),
            "next_attempt_at": _when(d.next_attempt_at) if d.status == hook_rows.PENDING
            else None,
            "last_attempt_at": _when(d.last_attempt_at), "last_status": d.last_status,
            "last_error": d.last_error, "delivered_at": _when(d.delivered_at)}


@webhooks.command("deliveries")
@click.option("--endpoint", "endpoint_id", default=None, metavar="ID",
              help="Only this endpoint's deliveries.")
@click.option("--failed", is_flag=True, help="Only deliveries that failed for good.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000),
              help="Most deliveries shown, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print the deliveries as JSON.")
@database(create=False)
def webhooks_deliveries(endpoint_id: str | None, failed: bool, limit: int,
                        as_json: bool) -> None:
    """List deliveries, newest first: their status, attempts and last answer."""
    if endpoint_id is not None:
        _endpoint_or_fail(endpoint_id)
    found = [_delivery_json(d) for d in hook_rows.deliveries(endpoint_id, failed=failed,
                                                             limit=limit)]
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("No deliveries.")
    for d in found:
        line = (f"{d['id']}  {d['endpoint_id']}  {d['type']}  {d['status']}  "
                f"{plural(d['attempts'], 'attempt')}")
        if d["last_error"]:
            line += f"  last: {d['last_error']}"
        elif d["last_status"] is not None:
            line += f"  last: HTTP {d['last_status']}"
        if d["next_attempt_at"]:
            line += f"  next {d['next_attempt_at']}"
        click.echo(line)


@webhooks.command("retry")
@click.argument("delivery_id", metavar="DELIVERY_ID")
@database(create=False)
def webhooks_retry(delivery_id: str) -> None:
    """Make the delivery DELIVERY_ID due now, with a new retry window."""
    if not hook_rows.retry(delivery_id):
        raise click.ClickException(
            f"there is no webhook delivery {delivery_id!r} "
            "(`notifications webhooks deliveries` shows them)")
    click.echo(f"Delivery {delivery_id} is due again; the server's sender sends it in order.")
