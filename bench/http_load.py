"""What ``python bench/http.py`` runs: throughput and tails under concurrency.

    python bench/http.py            # the full run (about 20 minutes)
    python bench/http.py --quick    # 10 k rows, 2 workers, 32 connections (about a minute)

For each database size (``--rows``: 10 k and 1 M notifications, 1,000 per user, written by
``notifications seed``) and each worker count (``--workers``: 1 and 2) it starts
``notifications serve`` and, beside it, the baseline: ``bench/empty_server.py``, an empty
JSON endpoint on exactly the same gunicorn + gevent settings
(:func:`notifications.ops.server.run_server`) and the same number of workers; the servers of
every size run at once. ``wrk`` (Debian's package) then loads one endpoint at a time at each
of ``--connections`` (8, 32, 128): baseline, the endpoint on each database, baseline, the
next endpoint..., so that each endpoint is compared with the baseline runs just before and
after it, and the sizes with each other seconds apart:

- ``unread-count``, ``list`` (first page of 20), ``list offset=500``, ``org list`` (50) for
  random users of the database, each request with the user's own token;
- ``mark-one-read`` of distinct unread notifications (the ones it marks are set unread again
  before each run, so every run starts from the seeded state; a pool smaller than the run's
  requests wraps around and then answers 404 -- the ``2xx`` column shows the share);
- ``read-all`` of one user's unread rows in one dataset (a few rows: a small set).

It prints req/s, p50, p99 and max latency (as wrk measures them), the share of 2xx answers
and each endpoint's ratio to the baseline's req/s, then checks the targets of
``docs/performance.md`` at 2 workers and 32 connections.

``--database postgresql`` seeds and serves fresh PostgreSQL databases instead (dropped
after the run).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    WRK_REPORT,
    Database,
    Figures,
    add_database_option,
    bench_token,
    command,
    environment,
    free_port,
    fresh_database,
    lua_list,
    serving,
    start_wrk,
    stop,
    wait_ready,
    wrk_figures,
)

SECRET = "benchmark-secret-0123456789abcdef0123456789"
PER_USER = 1000
#: Most notifications one mark-one-read run can mark before its pool wraps around.
MARK_POOL = 40_000

#: Endpoints in the order they are measured; ``baseline`` runs on the empty server.
ENDPOINTS = ("baseline", "unread-count", "list", "list offset=500", "org list",
             "mark-one-read", "read-all", "baseline again")


@dataclass
class Data:
    """What the load scripts need to know about a seeded database."""

    db: Database
    rows: int
    users: list[str]
    orgs: dict[str, str]
    #: (user index, dataset) pairs for read-all, and the seqs of their unread rows.
    sets: list[tuple[int, str]]
    set_seqs: list[int]
    #: (user index, notification id, seq) of unread rows for mark-one-read.
    marks: list[tuple[int, str, int]]


def cli(db: Database, *args: str) -> None:
    """Run the installed CLI on ``db``; exit if it fails."""
    result = subprocess.run([*command(), *args], env=environment(db, JWT_SECRET=SECRET),
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"notifications {' '.join(args)} failed: {result.stderr.strip()}")


class Connection:
    """The benchmark's own DB-API connection to a database: SQLite's or psycopg's.

    Statements are written with ``?`` placeholders; on PostgreSQL they become ``%s``.
    """

    def __init__(self, db: Database, readonly: bool = False) -> None:
        self.sqlite = isinstance(db, Path)
        self.conn: Any
        if self.sqlite:
            self.conn = (sqlite3.connect(f"file:{db}?mode=ro", uri=True) if readonly
                         else sqlite3.connect(db, isolation_level=None, timeout=30))
        else:
            import psycopg

            self.conn = psycopg.connect(str(db), autocommit=True)

    def _sql(self, sql: str) -> str:
        return sql if self.sqlite else sql.replace("?", "%s")

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(self._sql(sql), params)

    def update(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Run ``sql`` for every row in one write transaction."""
        if self.sqlite:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(sql, rows)
            self.conn.execute("COMMIT")
        else:
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)

    def close(self) -> None:
        self.conn.close()


def prepare(db: Database, rows: int) -> Data:
    """Seed a database of ``rows`` notifications and pick users, sets and unread rows."""
    users = max(1, rows // PER_USER)
    started = time.perf_counter()
    cli(db, "init-db")
    cli(db, "seed", "--users", str(users), "--per-user", str(PER_USER), "--orgs", "10",
        "--datasets", "20", "--random-seed", "1")
    print(f"seeded {rows:,} notifications in {time.perf_counter() - started:.1f} s", flush=True)
    rng = random.Random(1)
    # The benchmark's own look at the seeded database, read-only, before any server runs.
    conn = Connection(db, readonly=True)
    try:
        orgs = dict(conn.execute(
            "SELECT user_id, MIN(organization_id) FROM notifications "
            "WHERE organization_id IS NOT NULL GROUP BY user_id"))
        names = sorted(orgs)
        index = {u: i for i, u in enumerate(names)}
        pairs = conn.execute(
            "SELECT user_id, dataset_id, COUNT(*) FROM notifications "
            "WHERE read_at IS NULL AND dataset_id IS NOT NULL GROUP BY user_id, dataset_id"
        ).fetchall()
        small = [(index[u], d) for u, d, n in pairs if n <= 20 and u in index]
        rng.shuffle(small)
        small = small[:2000]
        set_seqs = []
        for user_i, dataset in small:
            set_seqs += [s for (s,) in conn.execute(
                "SELECT seq FROM notifications WHERE user_id = ? AND dataset_id = ? "
                "AND read_at IS NULL", (names[user_i], dataset))]
        unread = conn.execute(
            "SELECT user_id, id, seq FROM notifications WHERE read_at IS NULL").fetchall()
    finally:
        conn.close()
    taken = set(set_seqs)
    marks = [(index[u], i, s) for u, i, s in unread if s not in taken and u in index]
    rng.shuffle(marks)
    return Data(db, rows, names, orgs, small, set_seqs, marks[:MARK_POOL])


def restore(data: Data) -> None:
    """Make the rows the write endpoints mark unread again, as seeded."""
    seqs = data.set_seqs + [s for _, _, s in data.marks]
    conn = Connection(data.db)
    try:
        conn.update("UPDATE notifications SET read_at = NULL WHERE seq = ?",
                    [(s,) for s in seqs])
    finally:
        conn.close()


def token(user: str, org: str | None = None) -> str:
    return bench_token(SECRET, user, org)


def scripts(folder: Path, data: Data) -> dict[str, Path]:
    """Write one wrk script per endpoint; return their paths."""
    tokens = lua_list([token(u) for u in data.users])
    org_tokens = lua_list([token(u, data.orgs[u]) for u in data.users])
    get = """
local tokens = %s
request = function()
  return wrk.format("GET", "%s", {["Authorization"] = "Bearer " .. tokens[math.random(#tokens)]})
end"""
    body = {
        "baseline": get % (tokens, "/empty"),
        "unread-count": get % (tokens, "/api/v1/notifications/unread-count"),
        "list": get % (tokens, "/api/v1/notifications?limit=20"),
        "list offset=500": get % (tokens, "/api/v1/notifications?limit=20&offset=500"),
        "org list": get % (org_tokens, "/api/v1/org/notifications"),
        "mark-one-read": f"""
local tokens = {tokens}
local users = {{{",".join(str(u + 1) for u, _, _ in data.marks)}}}
local paths = {lua_list([f"/api/v1/notifications/{i}/read" for _, i, _ in data.marks])}
local n = 0
request = function()
  n = n %% #paths + 1
  return wrk.format("POST", paths[n], {{["Authorization"] = "Bearer " .. tokens[users[n]]}})
end""".replace("%%", "%"),
        "read-all": f"""
local tokens = {tokens}
local users = {{{",".join(str(u + 1) for u, _ in data.sets)}}}
local paths = {lua_list([f"/api/v1/notifications/read-all?dataset_id={d}" for _, d in data.sets])}
local n = 0
request = function()
  n = n % #paths + 1
  return wrk.format("POST", paths[n], {{["Authorization"] = "Bearer " .. tokens[users[n]]}})
end""",
    }
    body["baseline again"] = body["baseline"]
    paths = {}
    for name, text in body.items():
        paths[name] = folder / f"{data.rows}-{name.replace(' ', '_').replace('=', '')}.lua"
        paths[name].write_text(text + WRK_REPORT)
    return paths


def run_wrk(script: Path, port: int, connections: int, seconds: float) -> Figures:
    """Load ``port`` with one wrk thread and ``connections`` keep-alive connections."""
    return wrk_figures(start_wrk(script, port, connections, seconds))


HEADER = ("| endpoint | rows | req/s | ratio | p50 ms | p99 ms | max ms | p99/p50 | p99/base p99 "
          "| 2xx | 5xx/transport |\n|---|---|---|---|---|---|---|---|---|---|---|")


def row(name: str, rows: str, f: Figures, base: Figures | None) -> str:
    ratio = f"{f.rate / base.rate:.2f}" if base else "1"
    tail = f"{f.p99_ms / base.p99_ms:.1f}" if base else "1"
    ok = f"{f.ok / f.requests:.0%}" if f.requests else "-"
    return (f"| {name} | {rows} | {f.rate:,.0f} | {ratio} | {f.p50_ms:.2f} | {f.p99_ms:.1f} | "
            f"{f.max_ms:.0f} | {f.p99_ms / max(f.p50_ms, 0.001):.1f} | {tail} | {ok} | "
            f"{f.server_errors}/{f.transport_errors} |")


def start_empty(folder: Path, workers: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = folder / f"empty-{workers}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("empty_server.py")), str(port),
             str(workers)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    wait_ready(port, proc, log)
    return proc, port


def combine(runs: list[Figures]) -> Figures:
    """Combine baseline runs: their requests over their seconds, the worst of their tails."""
    return Figures(
        sum(f.requests for f in runs), sum(f.seconds for f in runs),
        sum(f.p50_ms for f in runs) / len(runs), max(f.p99_ms for f in runs),
        max(f.max_ms for f in runs), sum(f.ok for f in runs), 0, 0)


#: Results of one level: for each endpoint, its figures by row count and its baseline.
Level = dict[str, tuple[dict[int, Figures], Figures]]


def measure(folder: Path, datasets: list[Data], workers: int, levels: list[int],
            seconds: float, only: list[str]) -> dict[int, Level]:
    """Serve every database at once beside the baseline and run every endpoint on each.

    The order at each level is baseline, endpoint on each database, baseline, next
    endpoint...: each endpoint is compared with the two baseline runs around it, and the
    databases of different sizes with each other a few seconds apart, so that the load of
    a shared machine, which moves by a factor of two within minutes, falls on all alike.
    """
    paths = {data.rows: scripts(folder, data) for data in datasets}
    any_paths = paths[datasets[0].rows]
    results: dict[int, Level] = {}
    empty, empty_port = start_empty(folder, workers)
    try:
        with ExitStack() as stack:
            served = {data.rows: stack.enter_context(serving(
                data.db, folder / f"serve-{data.rows}-{workers}.log", workers=workers,
                JWT_SECRET=SECRET)) for data in datasets}
            run_wrk(any_paths["baseline"], empty_port, 8, 1)  # warm every server up
            for data in datasets:
                for name in ("list", "org list"):
                    run_wrk(paths[data.rows][name], served[data.rows].port, 8, 1)
            for connections in levels:
                level: Level = {}
                before = run_wrk(any_paths["baseline"], empty_port, connections, seconds)
                for name in ENDPOINTS:
                    if name.startswith("baseline") or name not in only:
                        continue
                    figures = {}
                    for data in datasets:
                        if name in ("mark-one-read", "read-all"):
                            restore(data)
                        figures[data.rows] = run_wrk(paths[data.rows][name],
                                                     served[data.rows].port, connections, seconds)
                    after = run_wrk(any_paths["baseline"], empty_port, connections, seconds)
                    level[name] = (figures, combine([before, after]))
                    before = after
                results[connections] = level
                print(f"\n### {workers} worker(s), {connections} connections "
                      f"(load average {os.getloadavg()[0]:.1f})\n\n{HEADER}")
                for name, (figures, base) in level.items():
                    print(row("baseline (around the next rows)", "-", base, None))
                    for rows, f in figures.items():
                        print(row(name, f"{rows:,}", f, base))
                sys.stdout.flush()
    finally:
        stop(empty)
    return results


#: Target ratios to the baseline's req/s at 2 workers and 32 connections.
RATIO_TARGETS = {"unread-count": 0.75, "list": 0.60, "org list": 0.50}


def check(level: Level) -> None:
    """Print each target at 2 workers and 32 connections: met or missed, and by how much."""
    print("\n### targets (2 workers, 32 connections)\n")
    for name, (figures, base) in level.items():
        for rows, f in figures.items():
            target = RATIO_TARGETS.get(name)
            if target is not None:
                ratio = f.rate / base.rate
                print(f"- {name}, {rows:,} rows: {ratio:.2f} of the baseline's req/s "
                      f"(target >= {target}) {'met' if ratio >= target else 'MISSED'}")
            tail = f.p99_ms <= 4 * f.p50_ms and f.p99_ms <= 2 * base.p99_ms
            print(f"- {name}, {rows:,} rows: p99 {f.p99_ms:.1f} ms = "
                  f"{f.p99_ms / f.p50_ms:.1f} x p50,"
                  f" {f.p99_ms / base.p99_ms:.1f} x the baseline's p99 (targets <= 4, <= 2) "
                  f"{'met' if tail else 'MISSED'}")
        if len(figures) >= 2:
            small, large = min(figures), max(figures)
            share = figures[large].rate / figures[small].rate
            print(f"- {name}: {large:,} rows at {share:.0%} of the req/s of {small:,} rows "
                  f"(target >= 90 %) {'met' if share >= 0.9 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="10 k rows, 2 workers, 32 connections, 3 s a run")
    parser.add_argument("--rows", default="10000,1000000")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--connections", default="8,32,128")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--only", default=",".join(e for e in ENDPOINTS if "baseline" not in e),
                        help="comma-separated endpoints to measure (the baseline always runs)")
    parser.add_argument("--dir", default=None, help="where the databases live (default: temp)")
    add_database_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.workers, args.connections, args.seconds = "10000", "2", "32", 3.0
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    folder = Path(tempfile.mkdtemp(prefix="http-bench-", dir=args.dir))
    only = args.only.split(",")
    print(f"# bench/http.py, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
          f"{args.database}, {args.seconds:g} s a run, wrk -t1")
    try:
        with ExitStack() as stack:
            datasets = [prepare(stack.enter_context(fresh_database(args.database, folder, r)),
                                int(r)) for r in args.rows.split(",")]
            run(folder, datasets, args, only)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(folder: Path, datasets: list[Data], args: argparse.Namespace, only: list[str]) -> None:
    """Measure every worker count on the prepared databases; check the targets at 2 workers."""
    levels = [int(c) for c in args.connections.split(",")]
    for workers in (int(w) for w in args.workers.split(",")):
        results = measure(folder, datasets, workers, levels, args.seconds, only)
        if workers == 2 and 32 in results:
            check(results[32])


if __name__ == "__main__":
    main()
