"""What the bench scripts share: the installed CLI, its environment, and a served database.

A database is a SQLite file (a :class:`~pathlib.Path`) or a service URL (a ``str``, such as
the ``postgresql://`` URL of a database :func:`fresh_database` made for the run); every
helper here takes either. ``--database sqlite|postgresql`` (:func:`add_database_option`)
chooses which a script's fresh databases are.

Imported as ``common`` by scripts run as ``python bench/<name>.py`` (their folder is first
on ``sys.path``); a script that patches with gevent imports it after patching.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The in-process baselines import the package: let them find it in this checkout.
sys.path.insert(0, str(ROOT))


def command() -> list[str]:
    """Return the installed ``notifications`` script next to this Python, else on PATH."""
    script = Path(sys.executable).with_name("notifications")
    if script.exists():
        return [str(script)]
    found = shutil.which("notifications")
    if not found:
        sys.exit("notifications is not installed: pip install -e . first")
    return [found]


#: A database of a run: a SQLite file, or a service URL (``postgresql://...``).
Database = Path | str

#: The PostgreSQL server the benches make their databases on: a URL of any database there
#: that the user may ``CREATE DATABASE`` from (override with NOTIFICATIONS_BENCH_POSTGRES).
POSTGRES_SERVER = os.environ.get("NOTIFICATIONS_BENCH_POSTGRES",
                                 "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASES = ("sqlite", "postgresql")


def database_url(db: Database) -> str:
    """Return the service's NOTIFICATIONS_DATABASE_URL for ``db``."""
    return f"sqlite:///{db}" if isinstance(db, Path) else db


def add_database_option(parser: Any) -> None:
    """Add ``--database sqlite|postgresql`` (default sqlite) to an argparse parser."""
    parser.add_argument("--database", choices=DATABASES, default="sqlite",
                        help="what the run's fresh databases are: SQLite files (the default) "
                             "or databases made on the PostgreSQL server of "
                             f"NOTIFICATIONS_BENCH_POSTGRES ({POSTGRES_SERVER}), dropped after")


def add_changelog_options(parser: Any, when: str, paired: str) -> None:
    """Add ``--without-changelog`` and ``--paired ROUNDS`` (SQLite only; see parse_bench_args).

    ``when`` says when the triggers are dropped, ``paired`` what a pair of runs measures.
    """
    parser.add_argument("--without-changelog", action="store_true",
                        help=f"Drop the change-log triggers of every database {when} "
                             "(the baseline of what the log costs; SQLite).")
    parser.add_argument("--paired", type=int, default=0, metavar="ROUNDS",
                        help=f"Run {paired} with and without the change log, in turn, "
                             "ROUNDS times (SQLite).")


def check_changelog_options(parser: Any, args: Any) -> None:
    """Refuse the change-log options on a database other than SQLite."""
    if args.database != "sqlite" and (args.paired or args.without_changelog):
        parser.error("--paired and --without-changelog run on SQLite only")


_made = 0


@contextmanager
def fresh_database(kind: str, folder: Path, name: str) -> Iterator[Database]:
    """Make an empty database of ``kind`` for the block; a PostgreSQL one is dropped after.

    SQLite: the (not yet existing) file ``folder/name.db``, left in ``folder``. PostgreSQL:
    a new database on :data:`POSTGRES_SERVER`, named after this process and ``name``,
    dropped (closing any connection still open to it) when the block ends.
    """
    global _made
    if kind == "sqlite":
        yield folder / f"{name}.db"
        return
    if kind != "postgresql":
        raise ValueError(f"unknown database kind {kind!r}")
    import psycopg

    _made += 1
    label = "".join(c if c.isalnum() else "_" for c in name.lower())[:30]
    dbname = f"ntf_bench_{os.getpid()}_{_made}_{label}"
    try:
        with psycopg.connect(POSTGRES_SERVER, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
    except psycopg.Error as exc:
        sys.exit(f"cannot make a database on {POSTGRES_SERVER} "
                 f"(set NOTIFICATIONS_BENCH_POSTGRES): {str(exc).strip()}")
    try:
        yield f"{POSTGRES_SERVER.rsplit('/', 1)[0]}/{dbname}"
    finally:
        with psycopg.connect(POSTGRES_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def environment(db: Database, **settings: str) -> dict[str, str]:
    """Return this process's environment without NOTIFICATIONS_*, pointed at ``db``.

    Each keyword becomes a setting: ``JWT_SECRET="..."`` -> ``NOTIFICATIONS_JWT_SECRET``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFICATIONS_")}
    env["NOTIFICATIONS_DATABASE_URL"] = database_url(db)
    env.update({f"NOTIFICATIONS_{name}": value for name, value in settings.items()})
    return env


def free_port() -> int:
    """Return a TCP port on the loopback address that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, log: Path | None = None,
               timeout: float = 60) -> None:
    """Poll ``/healthz`` until it answers 200; exit with the server's log if it dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = log.read_text(errors="replace") if log else ""
            sys.exit(f"server on port {port} exited: {output}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    stop(proc)
    sys.exit(f"server on port {port} did not start within {timeout:.0f} s")


def stop(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Stop a server started in its own session: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --- the change log's cost: the same build with and without its triggers -------------

#: The triggers of ``schema.sql`` that write the change log.
CHANGELOG_TRIGGERS = ("tr_notifications_created", "tr_notifications_updated",
                      "tr_notifications_deleted")


def drop_changelog(db: Path) -> None:
    """Drop the change-log triggers from a bench database: the baseline of the log's cost.

    The service only runs ``schema.sql`` on a database of an older schema version, so a
    server started on this file afterwards leaves the triggers dropped (it logs nothing,
    and its streams see no change: a baseline for writes only).
    """
    conn = sqlite3.connect(db)
    try:
        for name in CHANGELOG_TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        conn.commit()
    finally:
        conn.close()


def changelog_triggers(db: Path) -> set[str]:
    """Return the change-log triggers a database has (to check a run measured what it says)."""
    conn = sqlite3.connect(db)
    try:
        return {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")} & set(CHANGELOG_TRIGGERS)
    finally:
        conn.close()


def init_db(db: Path, *, changelog: bool = True) -> None:
    """Create a bench database with ``notifications init-db`` (without the log if told)."""
    subprocess.run([*command(), "init-db"], env=environment(db), check=True,
                   capture_output=True)
    if not changelog:
        drop_changelog(db)


def check_changelog(db: Path, changelog: bool) -> None:
    """Exit if a database's triggers are not what the run claims to have measured."""
    found = changelog_triggers(db)
    if found != (set(CHANGELOG_TRIGGERS) if changelog else set()):
        sys.exit(f"{db}: change-log triggers {sorted(found)}, expected "
                 f"{'all three' if changelog else 'none'}")


def paired_orders(rounds: int) -> list[tuple[bool, bool]]:
    """Return the order of each round's two runs, with the log first every other round.

    (A B, B A, A B, ...): a drift of the machine's speed within a round then favours
    neither side over the run.
    """
    return [(True, False) if r % 2 == 0 else (False, True) for r in range(rounds)]


def paired_summary(label: str, pairs: list[tuple[float, float]], unit: str = "/s") -> str:
    """One Markdown row: the medians with and without the log, and the median pair ratio."""
    with_log = statistics.median(p[0] for p in pairs)
    without = statistics.median(p[1] for p in pairs)
    ratios = [a / b for a, b in pairs]
    ratio = statistics.median(ratios)
    return (f"| {label} | {with_log:,.0f}{unit} | {without:,.0f}{unit} | {ratio:.3f} "
            f"({min(ratios):.3f}-{max(ratios):.3f}) | {1 - ratio:+.1%} |")


PAIRED_HEADER = ("| scenario | with the change log | without (triggers dropped) | "
                 "ratio, median of pairs (range) | throughput lost |\n|---|---|---|---|---|")


@dataclass(frozen=True)
class Served:
    """A running ``notifications serve``: its port and its gunicorn master's pid."""

    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serving(db: Database, log: Path, workers: int = 1, **settings: str) -> Iterator[Served]:
    """Run ``notifications serve`` on ``db`` and a free port until the block ends.

    The server's output goes to ``log``, complete once the block has ended.
    """
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*command(), "serve", "--port", str(port), "--workers", str(workers)],
            env=environment(db, **settings), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            wait_ready(port, proc, log)
            yield Served(port, proc.pid)
        finally:
            stop(proc)


# --- wrk: load from Debian's wrk, one machine-readable line per run ------------------

#: Appended to every wrk script: counts 2xx and 5xx answers per thread and prints one line.
WRK_REPORT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function response(status, headers, body)
  if status < 300 then ok = (ok or 0) + 1 end
  if status >= 500 then server_errors = (server_errors or 0) + 1 end
end
function done(summary, latency, requests)
  local good, fivexx = 0, 0
  for _, t in ipairs(threads) do
    good = good + (t:get("ok") or 0)
    fivexx = fivexx + (t:get("server_errors") or 0)
  end
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99), latency.max, good,
    fivexx, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass
class Figures:
    """What one wrk run reported."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    ok: int
    server_errors: int
    transport_errors: int

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


def start_wrk(script: Path, port: int, connections: int, seconds: float,
              threads: int = 1) -> subprocess.Popen[str]:
    """Start wrk on ``port`` with a script that ends in :data:`WRK_REPORT`."""
    return subprocess.Popen(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
         "--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wrk_figures(proc: subprocess.Popen[str]) -> Figures:
    """Wait for a wrk run and return its figures; exit with its output if it printed none."""
    out, _ = proc.communicate(timeout=600)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            n, us, p50, p99, mx, ok, fivexx, transport = map(int, line.split()[1:])
            return Figures(n, us / 1e6, p50 / 1000, p99 / 1000, mx / 1000, ok, fivexx, transport)
    sys.exit(f"wrk printed no result:\n{out}")


def lua_list(values: list[str]) -> str:
    """Write strings as a Lua table literal."""
    return "{" + ",".join(json.dumps(v) for v in values) + "}"


def bench_token(secret: str, user: str, org: str | None = None) -> str:
    """Sign a two-hour HS256 token for ``user`` (and ``org``)."""
    import jwt

    now = int(time.time())
    claims: dict[str, object] = {"sub": user, "iat": now, "exp": now + 7200}
    if org:
        claims["organization_id"] = org
    return jwt.encode(claims, secret, algorithm="HS256")
