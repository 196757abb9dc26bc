"""One set of commands, two entry points: `notifications COMMAND`, `flask --app app COMMAND`."""
from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import requests
from click.testing import CliRunner
from conftest import SECRET, free_port, notifications_command, stop_group, wait_healthy
from flask.cli import ScriptInfo

import cli
from notifications import commands, create_app
from notifications.extension import state
from notifications.settings import ConfigError
from notifications.store.engine import SCHEMA_VERSION, NoDatabase

ROOT = Path(__file__).resolve().parent.parent


def flask_command() -> list[str]:
    """Flask's own ``flask`` script, as a user runs it (from the checkout, where app.py is)."""
    script = Path(sys.executable).with_name("flask")
    if script.exists():
        return [str(script), "--app", "app"]
    found = shutil.which("flask")
    return [found or sys.executable, *([] if found else ["-m", "flask"]), "--app", "app"]


def shell_env(**settings: str) -> dict[str, str]:
    """An operator's shell: no NOTIFICATIONS_* or FLASK_* settings but the given ones."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NOTIFICATIONS_", "FLASK_"))}
    # No .env or .flaskenv of a parent directory may change what the commands see.
    env["FLASK_SKIP_DOTENV"] = "1"
    env.update({f"NOTIFICATIONS_{name}": value for name, value in settings.items()})
    return env


def run(command: list[str], *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def both(*args: str, env: dict[str, str]) -> tuple[Any, Any]:
    """Run one command line through each entry point; return (notifications, flask)."""
    return run(notifications_command(), *args, env=env), run(flask_command(), *args, env=env)


def same(ours: Any, theirs: Any) -> None:
    assert (ours.returncode, ours.stdout, ours.stderr) == \
        (theirs.returncode, theirs.stdout, theirs.stderr)


def one_error_line(output: str) -> str:
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    return errors[0]


# --- notifications --help stays cheap --------------------------------------------------


def test_the_help_summaries_are_the_commands_own() -> None:
    assert set(cli.COMMANDS) == set(commands.cli.commands)
    for name, command in commands.cli.commands.items():
        summary = click.Command(name, help=cli.COMMANDS[name])
        for limit in (20, 45, 74, 10_000):
            assert summary.get_short_help_str(limit) == command.get_short_help_str(limit), name


@pytest.mark.parametrize("width", [40, 80, 200])
def test_the_help_lists_the_commands_as_click_would(width: int) -> None:
    real = click.Group(cli.cli.name, help=cli.cli.help,
                       commands=list(commands.cli.commands.values()))
    runner = CliRunner()
    ours = runner.invoke(cli.cli, ["--help"], terminal_width=width)
    theirs = runner.invoke(real, ["--help"], terminal_width=width)
    assert ours.exit_code == theirs.exit_code == 0
    assert ours.output == theirs.output


def test_the_help_imports_nothing_of_the_service() -> None:
    code = ("import sys\nimport cli\nsys.argv = ['notifications', '--help']\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('notifications', 'flask', 'sqlalchemy') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "init-db" in result.stdout
    assert result.stdout.splitlines()[-1] == "[]"


def test_serve_patches_gevent_before_the_service_is_imported() -> None:
    # gevent warns when it patches ssl after a module took names from it (the service does).
    code = ("import sys, warnings\nfrom gevent import monkey\n"
            "warnings.simplefilter('error', monkey.MonkeyPatchWarning)\n"
            "import cli\nsys.argv = ['notifications', 'serve', '--help']\n"
            "try:\n    cli.main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(monkey.is_module_patched('socket'), 'notifications' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "True True"


# --- errors: matched by class -----------------------------------------------------------


@pytest.mark.parametrize("error", [ConfigError("bad\nsecond line"), NoDatabase("bad")])
def test_known_errors_become_one_line(error: Exception) -> None:
    with pytest.raises(click.ClickException) as caught, commands.one_line_errors():
        raise error
    assert caught.value.message == "bad"


def test_surrogates_in_arguments_become_one_line() -> None:
    with pytest.raises(click.ClickException) as caught, commands.one_line_errors():
        "\udcff".encode()
    assert caught.value.message == "an argument is not valid UTF-8 text"


def test_other_errors_keep_their_traceback() -> None:
    with pytest.raises(KeyError), commands.one_line_errors():
        raise KeyError("a bug, not bad input")


# --- app.cli and app.test_cli_runner() ------------------------------------------------


def test_every_command_is_on_app_cli(app: Any) -> None:
    assert set(cli.COMMANDS) <= set(app.cli.commands)
    for name in cli.COMMANDS:
        assert app.cli.commands[name] is commands.cli.commands[name]


def test_init_db_through_the_test_cli_runner(app: Any) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    assert f"initialised (schema version 0 -> {SCHEMA_VERSION})" in result.output
    again = runner.invoke(args=["init-db"])
    assert again.exit_code == 0 and f"up to date (schema version {SCHEMA_VERSION})" in again.output


def test_send_and_list_through_the_test_cli_runner(app: Any, client: Any, auth: Any) -> None:
    runner = app.test_cli_runner()
    sent = runner.invoke(args=["send", "--user", "alice", "--user", "bob", "--title", "Hi",
                               "--metadata", '{"n": 1}'])
    assert sent.exit_code == 0, sent.output
    rows = [json.loads(line) for line in sent.output.splitlines()]
    assert [r["user_id"] for r in rows] == ["alice", "bob"]
    # The app handed in is the test's own: no "Database:" line among the JSON lines.
    listed = runner.invoke(args=["list", "--json", "--user", "alice"])
    assert [json.loads(line) for line in listed.output.splitlines()] == rows[:1]
    answer = client.get("/api/v1/notifications", headers=auth.headers("alice")).get_json()
    assert [n["id"] for n in answer["notifications"]] == [rows[0]["id"]]
    assert runner.invoke(args=["stats", "--json"]).exit_code == 0


@pytest.mark.parametrize(("args", "word"), [
    (["list", "--dataset", "x"], "--dataset"),
    (["send", "--user", "a", "--metadata", "[1]"], "--metadata"),
    (["token"], "--user"),
    (["purge"], "--older-than"),
])
def test_bad_flags_through_the_test_cli_runner(app: Any, args: list[str], word: str) -> None:
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 2
    assert word in one_error_line(result.output)


def test_a_missing_database_through_the_test_cli_runner(tmp_path: Path) -> None:
    missing = tmp_path / "missing" / "n.db"
    app = create_app({"DATABASE_URL": f"sqlite:///{missing}", "REQUIRE_KEY": False,
                      "CREATE_SCHEMA": False})
    try:
        result = app.test_cli_runner().invoke(args=["list"])
    finally:
        state(app).store.close()
    assert result.exit_code == 1
    assert "there is no notifications database" in one_error_line(result.output)
    assert not missing.parent.exists()


# --- app.py: the server's app for gunicorn, the commands' app for flask ----------------


def test_app_py_builds_the_servers_app_outside_flask_cli(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "served.db"
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", f"sqlite:///{path}")
    assert not commands.flask_cli_is_loading()
    with pytest.raises(ConfigError, match="NOTIFICATIONS_JWT_SECRET"):
        runpy.run_path(str(ROOT / "app.py"))
    monkeypatch.setenv("NOTIFICATIONS_JWT_SECRET", SECRET)
    app = runpy.run_path(str(ROOT / "app.py"))["app"]
    state(app).store.close()
    assert path.exists()  # the server's app creates its schema at start


def test_app_py_builds_the_commands_app_for_flask_cli(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "later.db"
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", f"sqlite:///{path}")
    with click.Context(click.Command("flask"), obj=ScriptInfo()):
        assert commands.flask_cli_is_loading()
        app = runpy.run_path(str(ROOT / "app.py"))["app"]  # no key needed
    state(app).store.close()
    assert not app.config["REQUIRE_KEY"] and not path.exists()


# --- flask --app app COMMAND, as an operator's shell runs it ----------------------------


def test_flask_runs_the_commands_like_notifications(tmp_path: Path) -> None:
    path = tmp_path / "data" / "n.db"
    env = shell_env(DATABASE_URL=f"sqlite:///{path}")  # and no JWT secret
    # Reading a database that does not exist: one line, nothing created.
    ours, theirs = both("list", env=env)
    same(ours, theirs)
    assert ours.returncode == 1 and "no notifications database" in one_error_line(ours.stderr)
    assert not path.parent.exists()
    where = both("where", "--json", env=env)
    same(*where)
    assert json.loads(where[0].stdout)["path"] == str(path)

    created = run(flask_command(), "init-db", env=env)
    assert created.returncode == 0, created.stderr
    assert created.stdout == (f"Database {path} initialised "
                              f"(schema version 0 -> {SCHEMA_VERSION}).\n")
    assert created.stderr == f"Database: {path}\n"
    same(*both("init-db", env=env))

    sent = run(flask_command(), "send", "--user", "alice", "--org", "acme", "--title", "Hi",
               env=env)
    assert sent.returncode == 0, sent.stderr
    listed = both("list", "--json", env=env)
    same(*listed)
    assert listed[0].stdout == sent.stdout and sent.stderr == f"Database: {path}\n"
    # No key of one's own and no demo secret: token says so, in one line, through both.
    ours, theirs = both("token", "--user", "alice", env=env)
    same(ours, theirs)
    assert ours.returncode == 1 and "NOTIFICATIONS_JWT_SECRET" in one_error_line(ours.stderr)


def test_flask_reports_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    env = shell_env(DATABASE_URL=f"sqlite:///{tmp_path / 'n.db'}", JWT_LEEWAY="abc")
    ours, theirs = both("stats", env=env)
    same(ours, theirs)
    assert ours.returncode == 1
    assert "NOTIFICATIONS_JWT_LEEWAY" in one_error_line(ours.stderr)


def test_flask_serve_is_notifications_serve(tmp_path: Path) -> None:
    # Without a key, serve refuses in one line: the console script's serve answered.
    env = shell_env(DATABASE_URL=f"sqlite:///{tmp_path / 'n.db'}")
    result = run(flask_command(), "serve", "--port", "0", env=env)
    assert result.returncode == 1
    assert "NOTIFICATIONS_JWT_SECRET is not set" in one_error_line(result.stderr)


@pytest.mark.slow
def test_flask_serve_serves(tmp_path: Path) -> None:
    env = shell_env(DATABASE_URL=f"sqlite:///{tmp_path / 'n.db'}", JWT_SECRET=SECRET)
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*flask_command(), "serve", "--port", str(port), "--workers", "1"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc, log_path)
        assert requests.get(base + "/api/v1/notifications", timeout=10).status_code == 401
        # The process flask started is gunicorn's master now (serve replaced it in place).
        assert f"Listening at: {base} ({proc.pid})" in log_path.read_text()
    finally:
        stop_group(proc)
