"""Data-management commands: mark-read, purge, export and import."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import DATASET, OTHER_DATASET, SECRET, Runner
from sqlalchemy import text

from notifications import create_app
from notifications.core import records as transfer
from notifications.core import serialize
from notifications.store import changelog
from notifications.store import listeners as signals
from notifications.store import purge as purging
from notifications.store.models import db
from notifications.store.rows import now_us

pytestmark = pytest.mark.both_databases

DAY_US = 86_400 * 1_000_000


def table(app: Any) -> list[dict[str, Any]]:
    """Every stored column of every row (but seq), in storage order."""
    with app.app_context():
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM notifications ORDER BY seq")).mappings().all()
    return [{k: v for k, v in row.items() if k != "seq"} for row in rows]


def log_head(app: Any) -> int:
    with app.app_context():
        return changelog.head_position()


def logged(app: Any, after: int) -> list[tuple[str, str, bool]]:
    """The change log's entries after a position: (change, notification id, unread)."""
    with app.app_context():
        return [(c.change, c.notification_id, c.read_at is None)
                for c in changelog.changes_after(after).changes]


def jsonl(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.fixture
def other_app(tmp_path: Path) -> Any:
    """A second, empty database (the target of an import)."""
    application = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'other.db'}",
                              "JWT_SECRET": SECRET, "TESTING": True})
    yield application
    with application.app_context():
        db.engine.dispose()


# --- mark-read -------------------------------------------------------------------------


def test_mark_read_all_touches_only_that_user(runner: Runner, make: Any, app: Any) -> None:
    make("alice", n=3)
    make("bob", n=2)
    result = runner.invoke("mark-read", "--user", "alice", "--all")
    assert result.exit_code == 0
    assert result.output.strip() == "Marked 3 notifications of alice read."
    rows = table(app)
    assert all(r["read_at"] is not None for r in rows if r["user_id"] == "alice")
    assert all(r["read_at"] is None for r in rows if r["user_id"] == "bob")
    assert (runner.invoke("mark-read", "--user", "alice", "--all", "--json").output.strip()
            == '{"marked": 0}')


def test_mark_read_by_id_accepts_both_id_forms(runner: Runner, make: Any, app: Any, client: Any,
                                                auth: Any) -> None:
    first, second, third = make("alice", n=3, organization_id="acme")
    [foreign] = make("bob")
    result = runner.invoke("mark-read", "--user", "alice", "--id", first["id"].upper(),
                           "--id", "ntf_" + second["id"].replace("-", ""), "--id", foreign["id"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Marked 2 of 3 given notifications of alice read; the other 1 ")
    unread = client.get("/api/v1/org/notifications",
                        headers=auth.headers("alice", "acme")).get_json()["unread"]
    assert unread == 1
    assert all(r["read_at"] is None for r in table(app) if r["id"] in (third["id"], foreign["id"]))


def test_mark_read_filters_by_org_and_dataset(runner: Runner, make: Any, app: Any) -> None:
    make("alice", organization_id="acme", dataset_id=DATASET)
    make("alice", organization_id="acme", dataset_id=OTHER_DATASET)
    make("alice", organization_id="other", dataset_id=DATASET)
    make("alice")
    out = runner.invoke("mark-read", "--user", "alice", "--all", "--org", "acme",
                        "--dataset", DATASET, "--json")
    assert json.loads(out.output) == {"marked": 1}
    out = runner.invoke("mark-read", "--user", "alice", "--all", "--org", "acme", "--json")
    assert json.loads(out.output) == {"marked": 1}
    assert sum(r["read_at"] is None for r in table(app)) == 2


def test_mark_read_is_in_the_change_log_for_streams(runner: Runner, make: Any, app: Any) -> None:
    [row] = make("alice")
    before = log_head(app)
    runner.invoke("mark-read", "--user", "alice", "--all")
    assert logged(app, before) == [("updated", row["id"], False)]


@pytest.mark.parametrize("args, message", [
    (["--user", "alice"], "give either --id ID (repeatable) or --all"),
    (["--user", "alice", "--all", "--id", "ntf_" + "0" * 32],
     "give either --id ID (repeatable) or --all"),
    (["--user", "alice", "--id", "42"], "'42' is not a notification id"),
    (["--user", "alice", "--all", "--dataset", "nope"], "'nope' is not a UUID"),
    (["--user", "", "--all"], "must be 1 to 255 characters"),
    (["--all"], "Missing option '--user'"),
])
def test_mark_read_bad_input(runner: Runner, args: list[str], message: str) -> None:
    result = runner.invoke("mark-read", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


# --- purge -----------------------------------------------------------------------------


@pytest.mark.parametrize("text_, seconds", [
    ("30d", 30 * 86_400), ("12h", 43_200), ("90m", 5_400), ("45s", 45), ("2w", 14 * 86_400),
    ("1d12h", 129_600), ("0s", 0), (" 7D ", 7 * 86_400),
])
def test_parse_duration(text_: str, seconds: int) -> None:
    assert transfer.parse_duration(text_) == seconds


@pytest.fixture
def aged(make: Any) -> dict[str, list[dict[str, Any]]]:
    """Notifications 40 days old (read and unread) and 1 day old."""
    now = now_us()
    return {
        "old_read": make("alice", n=3, created_at=now - 40 * DAY_US, read_at=now - 39 * DAY_US),
        "old_unread": make("alice", n=2, created_at=now - 40 * DAY_US, organization_id="acme"),
        "new": make("alice", n=4, created_at=now - DAY_US),
    }


def test_purge_dry_run_counts_and_keeps_everything(runner: Runner, aged: Any, app: Any) -> None:
    result = runner.invoke("purge", "--older-than", "30d", "--dry-run")
    assert result.exit_code == 0
    assert result.output.startswith("Would delete 5 notifications (2 unread) created before ")
    assert len(table(app)) == 9
    data = json.loads(runner.invoke("purge", "--older-than", "30d", "--dry-run", "--read-only",
                                    "--json").output)
    assert (data["deleted"], data["dry_run"], data["read_only"]) == (3, True, True)


def test_purge_deletes_old_rows_and_tells_streams(runner: Runner, aged: Any, app: Any) -> None:
    before = log_head(app)
    result = runner.invoke("purge", "--older-than", "30d")
    assert result.exit_code == 0
    assert result.output.startswith("Deleted 5 notifications (2 unread) created before ")
    assert sorted(r["id"] for r in table(app)) == sorted(r["id"] for r in aged["new"])
    # Every deleted row is in the log, unread ones as unread: streams recount from it.
    assert sorted(logged(app, before)) == sorted(
        [("deleted", r["id"], False) for r in aged["old_read"]]
        + [("deleted", r["id"], True) for r in aged["old_unread"]])
    assert "Deleted 0 notifications" in runner.invoke("purge", "--older-than", "30d").output


def test_purge_read_only_keeps_unread_rows(runner: Runner, aged: Any, app: Any) -> None:
    before = log_head(app)
    result = runner.invoke("purge", "--older-than", "720h", "--read-only", "--json")
    assert json.loads(result.output)["deleted"] == 3
    left = {r["id"] for r in table(app)}
    assert left == {r["id"] for r in aged["old_unread"] + aged["new"]}
    # No unread row went, so no unread count changed.
    assert sorted(logged(app, before)) == sorted(("deleted", r["id"], False)
                                                 for r in aged["old_read"])


def test_purge_works_in_small_transactions(app: Any, make: Any) -> None:
    now = now_us()
    make("alice", n=10, created_at=now - 2 * DAY_US)
    keep = make("alice", n=3, created_at=now)
    make("bob", n=7, created_at=now - 3 * DAY_US)
    with app.app_context():
        assert purging.purge(now - DAY_US, chunk=3) == {"deleted": 17, "unread": 17}
    assert [r["id"] for r in table(app)] == [r["id"] for r in keep]


@pytest.mark.parametrize("value", ["", "30", "30x", "-5d", "d", "5d3", "3 d",
                                   "99999999999999999999d", "1.5h"])
def test_purge_bad_duration_is_a_clear_error(runner: Runner, aged: Any, app: Any,
                                             value: str) -> None:
    result = runner.invoke("purge", "--older-than", value)
    assert result.exit_code == 2
    assert "Invalid value for --older-than" in result.output
    assert "Traceback" not in result.output
    assert len(table(app)) == 9


# --- export / import -------------------------------------------------------------------


def test_export_import_round_trip_is_exact(runner: Runner, app: Any, other_app: Any, tmp_path: Path,
                                           make: Any) -> None:
    runner.invoke("seed", "--users", "4", "--per-user", "25", "--random-seed", "3")
    make("alice", organization_id="acme", dataset_id=DATASET, kind="review.created", link="/r/1",
         title="Ünïcode ✓ \"quoted\"\nnew line", body=None, dedupe_key="k-1",
         metadata={"float": 0.1, "big": 2**70, "nested": {"a": [1, None, True]}, "é": "ü"},
         created_at=1, read_at=1_000_001)
    runner.invoke("mark-read", "--user", "alice", "--all")
    out = tmp_path / "dump.jsonl"
    result = runner.invoke("export", "--output", str(out))
    assert result.exit_code == 0
    assert "Exported 101 notifications" in result.output
    original = table(app)
    assert (any(r["read_at"] is not None for r in original)
            and any(r["read_at"] is None for r in original))

    target = Runner(other_app)
    result = target.invoke("import", str(out))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Imported 101 notifications."
    assert table(other_app) == original
    # And the same file again comes out of the copy.
    again = tmp_path / "again.jsonl"
    target.invoke("export", "-o", str(again))
    strip_seq = lambda path: [  # noqa: E731
        {k: v for k, v in r.items() if k != "seq"} for r in jsonl(path.read_text())
    ]
    assert strip_seq(again) == strip_seq(out)


def test_export_to_stdout_with_filters(runner: Runner, make: Any) -> None:
    now = now_us()
    make("alice", created_at=now - 10 * DAY_US, title="old")
    make("alice", created_at=now - DAY_US, title="recent")
    make("bob", created_at=now, title="bob")
    result = runner.invoke("export", "--user", "alice")
    assert [r["title"] for r in jsonl(result.stdout)] == ["old", "recent"]
    assert ([r["title"] for r in jsonl(runner.invoke("export", "--since", "2d").stdout)]
            == ["recent", "bob"])
    # An ISO time without offset is UTC; with an offset it is converted.
    iso = serialize.iso_naive(now - 5 * DAY_US)
    assert transfer.parse_since(iso, now) == now - 5 * DAY_US
    assert transfer.parse_since(iso + "+01:00", now) == now - 5 * DAY_US - 3_600_000_000
    titles = [r["title"]
              for r in jsonl(runner.invoke("export", "--user", "alice", "--since", iso).stdout)]
    assert titles == ["recent"]
    assert jsonl(runner.invoke("export", "--since", "2100-01-01").stdout) == []


@pytest.mark.parametrize("args, message", [
    (["--since", "yesterday"], "Invalid value for --since"),
    (["--user", "u" * 256], "must be 1 to 255 characters"),
    (["--output", "/nonexistent-dir/x.jsonl"], "cannot write '/nonexistent-dir/x.jsonl'"),
])
def test_export_bad_input(runner: Runner, args: list[str], message: str) -> None:
    result = runner.invoke("export", *args)
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def lines_file(tmp_path: Path, count: int = 10) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(
        json.dumps({"user_id": f"u{i}", "title": f"t{i}",
                    "created_at": f"2026-01-01T00:00:{i:02d}Z"}) + "\n"
        for i in range(count)
    ))
    return path


def test_import_broken_line_7_imports_nothing(runner: Runner, app: Any, tmp_path: Path) -> None:
    path = lines_file(tmp_path)
    lines = path.read_text().splitlines()
    lines[6] = '{"user_id": "u6", "dataset_id": "not-a-uuid"}'
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke("import", str(path))
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: line 7: dataset_id: Input should be a valid UUID, "
        "invalid character: found `n` at 0; "
        "nothing was imported (fix the line, or use --skip-invalid to import the others)"
    )
    assert table(app) == []


@pytest.mark.parametrize("broken, reason", [
    ("{", "not valid JSON (EOF while parsing an object at column 1)"),
    ("[1, 2]", "not a JSON object"),
    ('"text"', "not a JSON object"),
    ('{"title": "no user"}', "user_id: Field required"),
    ('{"user_id": "a", "metadata": {"x": NaN}}',
     "metadata: metadata must not contain NaN or Infinity"),
    ('{"user_id": "a", "created_at": "soon"}', "created_at: Input should be a valid datetime"),
    ('{"user_id": "a", "id": "123"}', "id: Input should be a valid UUID"),
    ('{"user_id": "a", "metadata": []}', "metadata: Input should be an object"),
    ('{"user_id": "a", "read_at": 5}', "read_at: time must be an ISO-8601 string"),
    ("\xff\xfe garbage", "not valid JSON"),
])
def test_import_names_the_reason(runner: Runner, app: Any, tmp_path: Path, broken: str,
                                 reason: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"user_id": "a"}\n\n'
                     + broken.encode("latin-1" if "\xff" in broken else "utf-8") + b"\n")
    result = runner.invoke("import", str(path))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: line 3: {reason}")
    assert "Traceback" not in result.output
    assert table(app) == []


def test_import_skip_invalid_imports_the_rest(runner: Runner, app: Any, tmp_path: Path) -> None:
    path = lines_file(tmp_path)
    lines = path.read_text().splitlines()
    lines[2], lines[6] = "not json", '{"user_id": ""}'
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke("import", str(path), "--skip-invalid")
    assert result.exit_code == 0
    assert "skipped line 3: not valid JSON" in result.stderr
    assert "skipped line 7: user_id: String should have at least 1 character" in result.stderr
    assert result.stdout.strip() == "Imported 8 notifications; skipped 2 invalid lines."
    assert [r["title"] for r in table(app)] == [f"t{i}" for i in range(10) if i not in (2, 6)]


def test_import_from_stdin_keeps_file_order(runner: Runner, app: Any, tmp_path: Path) -> None:
    result = runner.invoke("import", "-", "--json", input=lines_file(tmp_path, 5).read_text())
    assert json.loads(result.stdout) == {"imported": 5, "duplicates": 0, "invalid": 0, "lines": 5}
    rows = table(app)
    assert [r["title"] for r in rows] == [f"t{i}" for i in range(5)]
    assert rows[3]["created_at"] == 1767225603000000


def test_import_skips_stored_ids_and_dedupe_keys(runner: Runner, app: Any, make: Any,
                                                 tmp_path: Path) -> None:
    [stored] = make("alice", title="original", dedupe_key="k")
    records = [
        {"id": stored["id"], "user_id": "alice", "title": "same id, other content"},
        {"user_id": "alice", "dedupe_key": "k", "title": "same dedupe key"},
        {"user_id": "alice", "title": "new"},
        {"user_id": "alice", "title": "new"},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    signals_seen: list[int] = []
    listener = lambda: signals_seen.append(1)  # noqa: E731
    signals.on_change(listener)
    try:
        result = runner.invoke("import", str(path))
    finally:
        signals._listeners.remove(listener)
    assert result.output.strip() == (
        "Imported 2 notifications; skipped 2 already stored "
        "(same id, or same user and dedupe_key).")
    assert signals_seen
    assert sorted(r["title"] for r in table(app)) == ["new", "new", "original"]
    # Records without an id are new every time; the others are skipped again.
    data = json.loads(runner.invoke("import", str(path), "--json").output)
    assert (data["imported"], data["duplicates"]) == (2, 2)


def test_import_of_an_empty_file_and_a_missing_file(runner: Runner, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert runner.invoke("import", str(empty)).output.strip() == "Imported 0 notifications."
    result = runner.invoke("import", str(tmp_path / "missing.jsonl"))
    assert result.exit_code == 2 and "No such file or directory" in result.output


def test_import_then_both_apis_show_the_rows(runner: Runner, client: Any, auth: Any,
                                             tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"user_id": "alice", "organization_id": "acme",
                                "kind": "review.created", "message": "imported",
                                "dataset_id": DATASET}) + "\n")
    runner.invoke("import", str(path))
    dataset = client.get("/api/v1/notifications", headers=auth.headers("alice")).get_json()
    assert dataset["notifications"][0]["message"] == "imported"
    org = client.get("/api/v1/org/notifications", headers=auth.headers("alice", "acme")).get_json()
    assert org["items"][0]["body"] == "imported" and org["unread"] == 1


def test_send_stores_one_notification_per_user(runner: Runner, app: Any) -> None:
    result = runner.invoke("send", "--user", "alice", "--user", "bob", "--org", "acme",
                           "--title", "Hi")
    assert result.exit_code == 0
    printed = jsonl(result.stdout)
    assert [r["user_id"] for r in printed] == ["alice", "bob"]
    assert (sorted((r["id"], r["user_id"]) for r in table(app))
            == sorted((r["id"], r["user_id"]) for r in printed))


def test_export_line_copies_metadata_text_exactly() -> None:
    row = {"id": "0c5c7fd0-a6a3-4450-a513-270e269e0d37", "seq": 1, "user_id": "u",
           "organization_id": None, "dataset_id": None, "kind": "", "entity_type": "",
           "entity_id": "", "title": 'tricky "metadata":0, title', "body": '"metadata":0,',
           "link": None, "metadata": '{"a":[1,2.5,null],"é":"\\"q\\""}',
           "created_at": -15_000_000_000_000_000, "read_at": None, "dedupe_key": None}
    record = json.loads(transfer.export_line(row))
    assert record["title"] == 'tricky "metadata":0, title' and record["body"] == '"metadata":0,'
    assert record["metadata"] == {"a": [1, 2.5, None], "é": '"q"'}
    assert record["created_at"] == "1494-09-01T21:20:00.000000Z"
    assert json.loads(transfer.export_line({**row, "metadata": ""}))["metadata"] == {}
    assert (transfer.export_line({**row, "metadata": json.loads(row["metadata"])})
            == transfer.export_line(row))


def test_round_trip_keeps_odd_values(runner: Runner, make: Any, other_app: Any, app: Any,
                                     tmp_path: Path) -> None:
    make("alice", title='x","metadata":0,"y', created_at=-60_000_000_000_000_000,  # year 68
         metadata={"tricky": '"metadata":0,'}, read_at=0)
    out = tmp_path / "odd.jsonl"
    runner.invoke("export", "-o", str(out))
    assert Runner(other_app).invoke("import", str(out)).exit_code == 0
    assert table(other_app) == table(app)


def test_round_trip_keeps_every_version_2_state(runner: Runner, make: Any, other_app: Any,
                                                app: Any, client: Any, auth: Any,
                                                tmp_path: Path) -> None:
    t = now_us() - DAY_US
    make("alice", title="new")
    make("alice", title="seen", seen_at=t + 1)
    make("alice", title="read", seen_at=t + 2, read_at=t + 3)
    make("alice", title="read, seen long before", seen_at=t + 4, read_at=t + 9_000_000_001)
    make("alice", title="archived unread", archived_at=t + 5)
    make("alice", title="archived read", seen_at=t + 6, read_at=t + 7, archived_at=t + 8)
    make("alice", title="collapsed", collapsed_count=3, organization_id="acme")
    make("alice", title="collapsed, read, archived", collapsed_count=2_147_483_647,
         seen_at=t + 10, read_at=t + 10, archived_at=t + 11)
    # And states set through the API, as users set them.
    [patched] = make("alice", title="patched")
    v2 = f"/api/v2/notifications/ntf_{patched['id'].replace('-', '')}"
    for body in ({"seen": True}, {"read": True}, {"archived": True}, {"read": False}):
        assert client.patch(v2, json=body, headers=auth.headers()).status_code == 200
    original = table(app)
    states = {(r["seen_at"] is not None, r["read_at"] is not None, r["archived_at"] is not None,
               r["collapsed_count"] > 0) for r in original}
    assert len(states) == 8
    out = tmp_path / "states.jsonl"
    runner.invoke("export", "-o", str(out))
    records = jsonl(out.read_text())
    assert all({"seen_at", "archived_at", "collapsed_count"} <= set(r) for r in records)
    assert {r["collapsed_count"] for r in records} == {0, 3, 2_147_483_647}
    target = Runner(other_app)
    result = target.invoke("import", str(out))
    assert result.exit_code == 0, result.output
    assert table(other_app) == original
    again = tmp_path / "again.jsonl"
    target.invoke("export", "-o", str(again))
    assert ([{k: v for k, v in r.items() if k != "seq"} for r in jsonl(again.read_text())]
            == [{k: v for k, v in r.items() if k != "seq"} for r in records])


def test_an_export_without_the_state_fields_still_imports(runner: Runner, app: Any,
                                                          tmp_path: Path) -> None:
    """Files written before version 2: read rows are seen when read, none is archived."""
    path = tmp_path / "old.jsonl"
    path.write_text(
        json.dumps({"user_id": "alice", "title": "read", "created_at": "2026-01-02T03:04:05Z",
                    "read_at": "2026-01-02T03:04:06.000007Z"}) + "\n"
        + json.dumps({"user_id": "alice", "title": "unread",
                      "created_at": "2026-01-02T03:04:05Z", "read_at": None}) + "\n")
    assert runner.invoke("import", str(path)).exit_code == 0
    rows = {r["title"]: r for r in table(app)}
    assert rows["read"]["seen_at"] == rows["read"]["read_at"] == 1_767_323_046_000_007
    assert rows["unread"]["seen_at"] is None and rows["unread"]["read_at"] is None
    assert all(r["archived_at"] is None and r["collapsed_count"] == 0 for r in rows.values())


@pytest.mark.parametrize("broken, reason", [
    ('{"user_id": "a", "collapsed_count": -1}', "collapsed_count: Input should be greater"),
    ('{"user_id": "a", "collapsed_count": "3"}', "collapsed_count: Input should be a valid int"),
    ('{"user_id": "a", "collapsed_count": 1.5}', "collapsed_count: Input should be a valid int"),
    ('{"user_id": "a", "collapsed_count": true}', "collapsed_count: Input should be a valid int"),
    ('{"user_id": "a", "collapsed_count": null}', "collapsed_count: Input should be a valid int"),
    ('{"user_id": "a", "collapsed_count": 2147483648}', "collapsed_count: Input should be less"),
    ('{"user_id": "a", "seen_at": "soon"}', "seen_at: Input should be a valid datetime"),
    ('{"user_id": "a", "archived_at": 5}', "archived_at: time must be an ISO-8601 string"),
])
def test_import_checks_the_state_fields(runner: Runner, app: Any, tmp_path: Path, broken: str,
                                        reason: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(broken + "\n")
    result = runner.invoke("import", str(path))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: line 1: {reason}"), result.output
    assert table(app) == []


def test_export_writes_into_a_pipe_and_through_a_symlink(runner: Runner, make: Any,
                                                         tmp_path: Path) -> None:
    import os
    import threading

    make("alice", n=3)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = runner.invoke("export", "-o", str(fifo))
    reader.join(timeout=10)
    assert result.exit_code == 0
    assert fifo.is_fifo()  # written into, not replaced by a regular file
    assert len(jsonl(received[0].decode())) == 3

    real = tmp_path / "real.jsonl"
    real.write_text("old")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    assert runner.invoke("export", "-o", str(link)).exit_code == 0
    assert link.is_symlink() and len(jsonl(real.read_text())) == 3


def test_export_refuses_a_directory(runner: Runner, tmp_path: Path) -> None:
    result = runner.invoke("export", "-o", str(tmp_path))
    assert result.exit_code == 2 and "is a directory; name a file" in result.output
