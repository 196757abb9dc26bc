"""The ``notifications`` command: administer and serve the notifications service.

The commands live in :mod:`notifications.commands`, which ``flask --app app COMMAND`` runs
as well. This console script only dispatches to them, and imports them only once a command
is chosen: ``notifications --help`` then lists them from :data:`COMMANDS` without loading
the service (which takes a second or more), and ``serve`` can patch the standard library
for gevent before any module of the service is imported.
"""
from __future__ import annotations

from typing import Any

import click

#: The summary ``--help`` shows for each command: the first sentence of its docstring
#: (tests/test_cli_entry_points.py keeps the two equal).
COMMANDS: dict[str, str] = {
    "backup": "Write a consistent copy of the database to FILE, while the service runs.",
    "check": "Check the database (or the backup FILE): integrity, schema, indexes, sizes.",
    "export": "Write notifications as JSON Lines, oldest stored first (import reads them "
              "back exactly).",
    "import": "Read notifications from a JSON Lines FILE (- for standard input), all or none.",
    "init-db": "Create or upgrade the database schema (idempotent, never deletes data).",
    "list": "Show the newest notifications, optionally for one user, organization or dataset.",
    "mark-read": "Mark a user's notifications read: the given --id values, or --all.",
    "preferences": "Show a user's preferences, after muting and unmuting what the options say.",
    "purge": "Delete notifications created longer ago than DURATION.",
    "restore": "Replace the database with the backup FILE, after checking FILE.",
    "seed": "Write realistic sample data for both variants (monitor alerts and inbox items).",
    "send": "Store a notification for each --user and print each as JSON (one per line).",
    "serve": "Serve the HTTP APIs with gunicorn and gevent workers.",
    "stats": "Show totals, unread counts, the busiest users/organizations/datasets and file "
             "sizes.",
    "tail": "Follow new notifications live, one line each, until Ctrl-C.",
    "token": "Print a signed JWT for local use (HS256 with NOTIFICATIONS_JWT_SECRET).",
    "webhooks": "Send the change log to other services: endpoints, their deliveries, retries.",
    "where": "Show which database the commands and the server use (its file for SQLite).",
}


class Notifications(click.Group):
    """The commands of :mod:`notifications.commands`, imported when one of them is run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if cmd_name == "serve":
            _patch_for_gevent()
        # Imported here, not at the top, so that listing the commands costs nothing.
        from notifications import commands

        return commands.cli.get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        summaries = [click.Command(name, help=text) for name, text in COMMANDS.items()]
        click.Group(commands=summaries).format_commands(ctx, formatter)


def _patch_for_gevent() -> None:
    """Patch the standard library for gevent, before the service's modules are imported.

    gunicorn's gevent worker would patch on its own; patching first, in the master, lets
    the master and the workers agree on one I/O model (locks, sockets, threads).
    """
    # Imported here: only `serve` needs gevent before the service loads it.
    from gevent import monkey

    monkey.patch_all()


@click.group(cls=Notifications)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Administer and serve the notifications service.

    Every command reads the same NOTIFICATIONS_* environment variables as the server.
    """
    # Already imported by get_command: a group runs its callback after finding the command.
    from notifications.commands import AppLoader

    ctx.ensure_object(AppLoader)


def __getattr__(name: str) -> Any:
    """``cli.AppContext``: the script info to hand to :data:`cli` (``AppContext(app)`` for a
    test's app, ``AppContext()`` for the one the commands build from the environment)."""
    if name == "AppContext":
        # Imported on first use, for the same reason as in Notifications.get_command.
        from notifications.commands import AppLoader

        return AppLoader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
