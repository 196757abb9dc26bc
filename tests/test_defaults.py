"""The default database location, the demo secret's file, and commands without side effects."""
from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner
from conftest import SECRET, notifications_command

from cli import AppContext, cli
from notifications import paths


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home directory, with XDG_DATA_HOME unset: the fallback applies."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DATA_HOME")
    return home


def invoke(*args: str) -> Any:
    """Run the CLI as a user's shell does: the app built from the environment."""
    return CliRunner().invoke(cli, list(args), obj=AppContext())


def test_default_database_follows_xdg_data_home(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "HOME": str(tmp_path / "home")}
    assert (paths.default_database_path(env)
            == tmp_path / "data" / "notifications" / "notifications.db")
    assert paths.default_url(env) == f"sqlite:///{tmp_path}/data/notifications/notifications.db"


def test_default_database_falls_back_to_local_share(home: Path) -> None:
    assert (paths.default_database_path()
            == home / ".local" / "share" / "notifications" / "notifications.db")
    # The XDG specification: a relative XDG_DATA_HOME is ignored.
    assert (paths.data_dir({"XDG_DATA_HOME": "relative/dir"})
            == home / ".local" / "share" / "notifications")


def test_the_database_url_setting_wins(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mine.db'}"
    assert paths.configured_url({"NOTIFICATIONS_DATABASE_URL": url}) == url
    assert paths.demo_secret_path(url) == tmp_path / "mine.db-demo-secret"
    assert paths.describe("postgresql://u:pw@db/n") == "postgresql://u:***@db/n"


def test_where_shows_the_default_and_creates_nothing(home: Path) -> None:
    expected = home / ".local" / "share" / "notifications" / "notifications.db"
    result = invoke("where")
    assert result.exit_code == 0
    assert result.stdout.strip() == str(expected)
    data = json.loads(invoke("where", "--json").stdout)
    assert data["path"] == str(expected) and data["exists"] is False and data["default"] is True
    assert not (home / ".local").exists()


def test_token_leaves_no_database_behind(home: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFICATIONS_JWT_SECRET", SECRET)
    result = invoke("token", "--user", "x")
    assert result.exit_code == 0, result.output
    assert jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])["sub"] == "x"
    assert not (home / ".local").exists()
    # Nor with a database named explicitly: not the file, not its directory.
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", f"sqlite:///{tmp_path / 'sub' / 'n.db'}")
    assert invoke("token", "--user", "x").exit_code == 0
    assert not (tmp_path / "sub").exists()


@pytest.mark.parametrize("args", [["list"], ["stats"], ["export"], ["tail"],
                                  ["mark-read", "--user", "alice", "--all"],
                                  ["purge", "--older-than", "30d"]])
def test_reading_a_missing_database_is_one_line_and_creates_nothing(
        args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "missing" / "n.db"
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", f"sqlite:///{path}")
    result = invoke(*args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: there is no notifications database at {path} yet: create it with "
        "`notifications init-db` or `notifications serve --demo`, or point "
        "NOTIFICATIONS_DATABASE_URL at an existing one"
    ]
    assert not (tmp_path / "missing").exists()


def test_an_empty_file_is_no_database_either(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", f"sqlite:///{path}")
    result = invoke("list")
    assert result.exit_code == 1 and "no notifications database" in result.output
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_writing_commands_create_the_default_database_and_name_it(home: Path) -> None:
    expected = home / ".local" / "share" / "notifications" / "notifications.db"
    result = invoke("send", "--user", "alice", "--title", "hi")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [f"Database: {expected}"]
    assert json.loads(result.stdout)["title"] == "hi"
    assert expected.exists()
    listed = invoke("list", "--json")
    assert f"Database: {expected}" in listed.stderr
    assert [row["title"] for row in map(json.loads, listed.stdout.splitlines())] == ["hi"]


def test_server_and_cli_share_the_default_database(home: Path) -> None:
    """Installed or editable, from any directory: every process uses the same file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFICATIONS_")}
    run = lambda *a, cwd: subprocess.run(  # noqa: E731
        [*notifications_command(), *a], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=60, check=True)
    (home / "a").mkdir()
    run("send", "--user", "alice", cwd=home / "a")
    out = run("stats", "--json", cwd=home)
    assert json.loads(out.stdout)["total"] == 1
    assert str(home / ".local" / "share" / "notifications" / "notifications.db") in out.stderr
    assert not list((home / "a").iterdir())


def test_the_cli_signs_with_the_demo_secret_of_its_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", url)
    assert invoke("token", "--user", "alice").exit_code == 1  # no secret anywhere yet
    secret = paths.demo_secret(url)
    secret_file = tmp_path / "demo.db-demo-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert paths.demo_secret(url) == secret  # kept, not replaced
    result = invoke("token", "--user", "alice", "--org", "acme")
    assert result.exit_code == 0, result.output
    claims = jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["organization_id"] == "acme"
    assert str(secret_file) in result.stderr
    # A secret of one's own wins over the demo's.
    monkeypatch.setenv("NOTIFICATIONS_JWT_SECRET", SECRET)
    own = invoke("token", "--user", "alice")
    assert jwt.decode(own.stdout.strip(), SECRET, algorithms=["HS256"])["sub"] == "alice"
    assert "demo" not in own.stderr
