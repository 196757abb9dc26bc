"""The administrator's CLI (SPEC §8) through click's runner."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner
from conftest import DATASET, OTHER_DATASET, SECRET

from cli import AppContext, cli
from notifications import create_app

pytestmark = pytest.mark.both_databases

INBOX_KINDS = {"review.created", "review.approved", "version.published", "api.quota.warning"}
MONITOR_KEYS = {"view_name", "dataset_name", "result_count", "batch_id", "is_alert"}


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def assert_one_line_error(result: Any, *words: str) -> None:
    """Exit non-zero with exactly one ``Error:`` line and no traceback."""
    assert result.exit_code != 0
    output = result.output  # what a terminal shows: stdout and stderr together
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    for word in words:
        assert word in errors[0], errors[0]


@pytest.fixture
def keyless_runner(db_url: str) -> Any:
    """Invoke the CLI with an app that has no JWT secret (as an operator's shell may)."""
    app = create_app({"DATABASE_URL": db_url, "REQUIRE_KEY": False})

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(cli, list(args), obj=AppContext(app), catch_exceptions=False)

    return invoke


# --- init-db -------------------------------------------------------------------------


def test_init_db(runner: Any) -> None:
    result = runner.invoke("init-db")
    assert result.exit_code == 0
    from notifications.store.engine import SCHEMA_VERSION

    assert f"initialised (schema version 0 -> {SCHEMA_VERSION})" in result.output
    again = runner.invoke("init-db")
    assert again.exit_code == 0 and f"up to date (schema version {SCHEMA_VERSION})" in again.output


# --- token ---------------------------------------------------------------------------


def test_token_verifies_with_the_secret(runner: Any) -> None:
    result = runner.invoke("token", "--user", "alice")
    assert result.exit_code == 0
    token = result.output.strip()
    assert "\n" not in token
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and "organization_id" not in claims
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 60


def test_token_with_org_and_ttl(runner: Any, client: Any) -> None:
    token = runner.invoke(
        "token", "--user", "alice", "--org", "acme", "--ttl", "120"
    ).output.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["organization_id"] == "acme" and claims["exp"] - claims["iat"] == 120
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/org/notifications", headers=headers).status_code == 200
    assert client.get("/api/v1/notifications", headers=headers).status_code == 200


def test_token_follows_configured_claims(db_url: str) -> None:
    app = create_app({"DATABASE_URL": db_url, "JWT_SECRET": SECRET, "ORG_CLAIM": "tenant",
                      "JWT_AUDIENCE": "notifications", "JWT_ISSUER": "me"})
    result = CliRunner().invoke(cli, ["token", "--user", "a", "--org", "o"], obj=AppContext(app),
                                catch_exceptions=False)
    claims = jwt.decode(result.output.strip(), SECRET, algorithms=["HS256"],
                        audience="notifications", issuer="me")
    assert claims["tenant"] == "o"
    response = app.test_client().get("/api/v1/org/notifications",
                                     headers={"Authorization": f"Bearer {result.output.strip()}"})
    assert response.status_code == 200


def test_token_without_secret(keyless_runner: Any) -> None:
    assert_one_line_error(keyless_runner("token", "--user", "alice"), "NOTIFICATIONS_JWT_SECRET")


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (("token",), "--user"),
        (("token", "--user", ""), "--user"),
        (("token", "--user", "x" * 256), "--user"),
        (("token", "--user", "a", "--ttl", "0"), "--ttl"),
        (("token", "--user", "a", "--ttl", "soon"), "--ttl"),
        (("token", "--user", "a", "--org", ""), "--org"),
    ],
)
def test_token_bad_flags(runner: Any, args: tuple[str, ...], word: str) -> None:
    assert_one_line_error(runner.invoke(*args), word)


# --- send ----------------------------------------------------------------------------


def test_send_prints_json_with_id(runner: Any, client: Any, auth: Any) -> None:
    metadata = {"view_name": "icecream", "dataset_name": "Ice cream", "result_count": 3,
                "batch_id": str(uuid.uuid4()), "is_alert": True}
    result = runner.invoke("send", "--user", "alice", "--dataset", DATASET.upper(),
                           "--entity-type", "saved_view", "--entity-id", "v1", "--title", "Hi",
                           "--body", "Body", "--metadata", json.dumps(metadata))
    assert result.exit_code == 0
    [row] = lines(result.output)
    assert uuid.UUID(row["id"]).version == 4
    assert row["user_id"] == "alice" and row["dataset_id"] == DATASET
    assert row["metadata"] == metadata and row["read_at"] is None
    item = client.get(
        "/api/v1/notifications", headers=auth.headers()
    ).get_json()["notifications"][0]
    assert item["id"] == row["id"] and item["message"] == "Body" and item["metadata"] == metadata


def test_send_to_several_users_in_an_org(runner: Any, client: Any, auth: Any) -> None:
    result = runner.invoke("send", "--user", "alice", "--user", "bob", "--org", "acme",
                           "--kind", "review.created", "--title", "New review",
                           "--link", "/reviews/1")
    assert result.exit_code == 0
    rows = lines(result.output)
    assert [r["user_id"] for r in rows] == ["alice", "bob"]
    assert len({r["id"] for r in rows}) == 2
    for user in ("alice", "bob"):
        body = client.get(
            "/api/v1/org/notifications", headers=auth.headers(user, "acme")
        ).get_json()
        assert body["total"] == 1
        assert body["items"][0]["kind"] == "review.created"
        assert body["items"][0]["link"] == "/reviews/1"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--metadata", "{bad"), ("--metadata", "JSON")),
        (("--metadata", "[1, 2]"), ("--metadata", "object")),
        (("--metadata", "null"), ("--metadata", "object")),
        (("--metadata", '"text"'), ("--metadata", "object")),
        (("--dataset", "not-a-uuid"), ("--dataset", "UUID")),
        (("--org", "x" * 256), ("--org",)),
        (("--user", ""), ("--user",)),
        # A byte that is not UTF-8 on the command line arrives as a lone surrogate.
        (("--title", "\udcff"), ("UTF-8",)),
        (("--metadata", '{"x": "\udcff"}'), ("UTF-8",)),
    ],
)
def test_send_bad_input(runner: Any, app: Any, args: tuple[str, ...],
                        words: tuple[str, ...]) -> None:
    assert_one_line_error(runner.invoke("send", "--user", "alice", *args), *words)
    from notifications.store import reads

    with app.app_context():
        assert reads.list_for_admin() == []


def test_send_without_user(runner: Any) -> None:
    assert_one_line_error(runner.invoke("send", "--title", "x"), "--user")


# --- seed ----------------------------------------------------------------------------


def test_seed_counts_and_data_for_both_variants(runner: Any, app: Any, client: Any,
                                                auth: Any) -> None:
    result = runner.invoke("seed", "--users", "4", "--per-user", "60", "--orgs", "2",
                           "--datasets", "3", "--random-seed", "5")
    assert result.exit_code == 0
    assert "Wrote 240 notifications for 4 users" in result.output
    rows = lines(runner.invoke("list", "--json", "--limit", "1000").output)
    assert len(rows) == 240
    assert len({r["user_id"] for r in rows}) == 4
    alerts = [r for r in rows if r["entity_type"] == "saved_view"]
    inbox = [r for r in rows if r["kind"] in INBOX_KINDS]
    assert alerts and inbox and len(alerts) + len(inbox) == 240
    # Alerts belong to datasets; inbox items to organizations.
    assert {r["organization_id"] for r in alerts} == {None}
    assert len({r["organization_id"] for r in inbox}) == 2
    assert len({r["dataset_id"] for r in alerts}) == 3
    for row in alerts:
        assert set(row["metadata"]) == MONITOR_KEYS
        assert isinstance(row["metadata"]["is_alert"], bool)
        assert isinstance(row["metadata"]["result_count"], int)
        uuid.UUID(row["metadata"]["batch_id"])
        uuid.UUID(row["dataset_id"])
        uuid.UUID(row["entity_id"])
    assert {r["kind"] for r in inbox} == INBOX_KINDS
    for row in inbox:
        assert row["title"] and row["body"] and row["link"].startswith("/")
        assert row["dataset_id"] is None
    assert any(r["read_at"] for r in rows) and any(r["read_at"] is None for r in rows)
    # Both APIs serve the seeded data of one user.
    user, org = inbox[0]["user_id"], inbox[0]["organization_id"]
    dataset = client.get("/api/v1/notifications?limit=100", headers=auth.headers(user, org))
    assert dataset.get_json()["total"] == 60
    assert any(n["metadata"].get("is_alert") is not None
               for n in dataset.get_json()["notifications"])
    org_body = client.get("/api/v1/org/notifications", headers=auth.headers(user, org)).get_json()
    assert org_body["total"] == len([r for r in inbox if r["user_id"] == user]) > 0
    assert {i["kind"] for i in org_body["items"]} <= INBOX_KINDS


def test_seed_json_summary(runner: Any) -> None:
    result = runner.invoke("seed", "--users", "2", "--per-user", "3", "--json")
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["written"] == 6 and summary["seconds"] >= 0


def test_seed_is_reproducible(tmp_path: Path) -> None:
    from datetime import datetime

    def seeded(name: str, seed: str) -> list[dict[str, Any]]:
        app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / name}", "JWT_SECRET": SECRET})
        invoke = lambda *a: CliRunner().invoke(cli, list(a), obj=AppContext(app),  # noqa: E731
                                               catch_exceptions=False)
        assert invoke("seed", "--users", "3", "--per-user", "10", "--random-seed", seed,
                      ).exit_code == 0
        return lines(invoke("list", "--json", "--limit", "100").output)

    first, second = seeded("a.db", "42"), seeded("b.db", "42")
    assert len(first) == len(second) == 30
    strip = lambda r: {k: v for k, v in r.items() if k not in ("created_at", "read_at")}  # noqa: E731
    assert [strip(r) for r in first] == [strip(r) for r in second]
    assert [r["read_at"] is None for r in first] == [r["read_at"] is None for r in second]
    # Times are relative to "now": between two runs they all shift by the same amount.
    at = lambda r: datetime.fromisoformat(r["created_at"])  # noqa: E731
    assert len({at(b) - at(a) for a, b in zip(first, second, strict=True)}) == 1
    other = seeded("c.db", "43")
    assert {r["id"] for r in other}.isdisjoint({r["id"] for r in first})


@pytest.mark.parametrize("args", [("--users", "0"), ("--per-user", "-1"), ("--users", "many"),
                                  ("--random-seed", "x")])
def test_seed_bad_flags(runner: Any, args: tuple[str, ...]) -> None:
    assert_one_line_error(runner.invoke("seed", *args), args[0])


# --- list ----------------------------------------------------------------------------


@pytest.fixture
def listed(runner: Any, make: Any, app: Any) -> Any:
    make(user="alice", n=2, organization_id="acme", dataset_id=DATASET, title="a-acme-d1")
    make(user="alice", n=1, organization_id="globex", dataset_id=OTHER_DATASET, title="a-globex")
    bob = make(user="bob", n=3, organization_id="acme", title="b-acme")
    from notifications.store import marks
    from notifications.store.scope import Scope

    with app.app_context():
        marks.mark_one_read(Scope("bob"), bob[0]["id"])
    return runner


@pytest.mark.parametrize(
    ("args", "count"),
    [
        ((), 6),
        (("--user", "alice"), 3),
        (("--org", "acme"), 5),
        (("--user", "alice", "--org", "acme"), 2),
        (("--dataset", DATASET), 2),
        (("--dataset", DATASET.upper()), 2),
        (("--unread",), 5),
        (("--user", "bob", "--unread"), 2),
        (("--limit", "4"), 4),
        (("--user", "nobody"), 0),
    ],
)
def test_list_filters(listed: Any, args: tuple[str, ...], count: int) -> None:
    result = listed.invoke("list", "--json", *args)
    assert result.exit_code == 0
    rows = lines(result.output)
    assert len(rows) == count
    times = [r["created_at"] for r in rows]
    assert times == sorted(times, reverse=True)
    human = listed.invoke("list", *args)
    assert human.exit_code == 0
    if count:
        assert len(human.output.strip().splitlines()) == count
        assert "{" not in human.output
    else:
        assert "No notifications match" in human.output


def test_list_human_output(listed: Any) -> None:
    output = listed.invoke("list", "--user", "bob").output
    assert output.count("UNREAD") == 2 and output.count("read  ") == 1
    assert "b-acme" in output and "acme" in output


@pytest.mark.parametrize(("args", "word"), [(("--dataset", "nope"), "--dataset"),
                                            (("--user", "\udcff"), "UTF-8"),
                                            (("--limit", "0"), "--limit")])
def test_list_bad_flags(runner: Any, args: tuple[str, ...], word: str) -> None:
    assert_one_line_error(runner.invoke("list", *args), word)


# --- stats ---------------------------------------------------------------------------


def test_stats(listed: Any, backend: str) -> None:
    result = listed.invoke("stats", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert set(data) == {"total", "unread", "users", "organizations", "datasets", "top_users",
                         "top_organizations", "top_datasets", "database_bytes", "wal_bytes",
                         "retention"}
    assert (data["total"], data["unread"], data["users"], data["organizations"],
            data["datasets"]) == (6, 5, 2, 2, 2)
    assert data["top_users"] == [{"id": "alice", "total": 3, "unread": 3},
                                 {"id": "bob", "total": 3, "unread": 2}]
    assert {e["id"]: e["total"] for e in data["top_organizations"]} == {"acme": 5, "globex": 1}
    assert {e["id"]: e["unread"] for e in data["top_datasets"]} == {DATASET: 2, OTHER_DATASET: 1}
    assert data["database_bytes"] > 0
    human = listed.invoke("stats").output
    assert "notifications  6  (unread 5)" in human
    if backend == "sqlite":
        assert isinstance(data["wal_bytes"], int) and "WAL" in human
    else:  # a PostgreSQL server's WAL is not the database's own
        assert data["wal_bytes"] is None and "tables and indexes" in human
    assert "top organizations" in human and "acme" in human


def test_stats_empty(runner: Any) -> None:
    data = json.loads(runner.invoke("stats", "--json").output)
    assert data["total"] == 0 and data["unread"] == 0 and data["top_users"] == []


# --- configuration errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "word"),
    [
        ({"NOTIFICATIONS_JWT_LEEWAY": "abc"}, "NOTIFICATIONS_JWT_LEEWAY"),
        ({"NOTIFICATIONS_DATABASE_URL": "foo://x"}, "NOTIFICATIONS_DATABASE_URL"),
        ({"NOTIFICATIONS_DATABASE_URL": "not a url"}, "NOTIFICATIONS_DATABASE_URL"),
        ({"NOTIFICATIONS_DATABASE_URL": "sqlite:////proc/no/such/dir/x.db"},
         "NOTIFICATIONS_DATABASE_URL"),
        ({"NOTIFICATIONS_DATASET_PREFIX": "/a", "NOTIFICATIONS_ORGANIZATION_PREFIX": "/a"},
         "PREFIX"),
    ],
)
def test_bad_configuration_is_one_line(monkeypatch: pytest.MonkeyPatch, db_url: str,
                                       env: dict[str, str], word: str) -> None:
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", db_url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["list"], obj=AppContext())
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert_one_line_error(result, word)


def test_not_a_database_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", f"sqlite:///{path}")
    result = CliRunner().invoke(cli, ["stats"], obj=AppContext())
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert_one_line_error(result, "not a database")


def test_help_needs_no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", "foo://x")
    result = CliRunner().invoke(cli, ["--help"], obj=AppContext())
    assert result.exit_code == 0
    for command in ("init-db", "serve", "token", "send", "seed", "list", "stats"):
        assert command in result.output
