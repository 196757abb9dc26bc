"""Benchmark: ``notifications export`` and ``import`` of a million JSON Lines.

Seeds a fresh SQLite database, runs the two commands as an administrator would (separate
processes, real files), checks the copy, and prints a table with baselines measured in the
same run: the seeding rate (batched raw inserts, no parsing) for import, and a bare
``SELECT`` over every row (no serialising) for export.

    python bench/import_export.py [--rows 1000000]
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import command, environment


def run(db: Path, *args: str) -> float:
    started = time.perf_counter()
    result = subprocess.run([*command(), *args], env=environment(db), capture_output=True,
                            text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {result.stderr}")
    last_line = (result.stdout + result.stderr).strip().splitlines()[-1]
    print(f"  {' '.join(args[:1])}: {last_line}", file=sys.stderr)
    return elapsed


def seed(db: Path, rows: int) -> float:
    from notifications import create_app
    from notifications.store import seeding

    app = create_app({"DATABASE_URL": f"sqlite:///{db}", "REQUIRE_KEY": False})
    per_user = 1000 if rows >= 1000 else rows
    with app.app_context():
        started = time.perf_counter()
        written = seeding.seed(users=max(rows // per_user, 1), per_user=per_user, orgs=20,
                               datasets=50, random_seed=1)
        elapsed = time.perf_counter() - started
    assert written == rows, written
    return elapsed


def bare_select(db: Path) -> float:
    conn = sqlite3.connect(db)
    started = time.perf_counter()
    count = sum(1 for _ in conn.execute("SELECT * FROM notifications ORDER BY seq"))
    elapsed = time.perf_counter() - started
    conn.close()
    assert count > 0
    return elapsed


def digest(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT count(*), sum(read_at IS NULL), total(created_at), total(read_at), "
        "min(id), max(id), sum(length(metadata)), count(DISTINCT user_id) FROM notifications"
    ).fetchall()
    conn.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dir", default=None,
                        help="Where the databases and the file live "
                             "(default: the system temp dir).")
    args = parser.parse_args()
    n = args.rows
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        source, target, dump = (
            Path(tmp) / "source.db", Path(tmp) / "target.db", Path(tmp) / "dump.jsonl"
        )
        print(f"seeding {n:,} rows ...", file=sys.stderr)
        seeded = seed(source, n)
        select = bare_select(source)
        exported = run(source, "export", "--output", str(dump))
        size = dump.stat().st_size
        imported = run(target, "import", str(dump))
        same = digest(source) == digest(target)
    results = [
        ("baseline: seed (batched raw inserts, no parsing)", seeded, None),
        (f"import {n:,} JSON Lines ({size / 1e6:.0f} MB)", imported, 60.0),
        ("baseline: bare SELECT of every row (no serialising)", select, None),
        (f"export {n:,} rows to JSON Lines", exported, 30.0),
    ]
    print(f"\nexport/import benchmark, {os.cpu_count()} CPUs, "
          f"files in {args.dir or tempfile.gettempdir()}, "
          f"load average {os.getloadavg()[0]:.1f} (shared machine: figures are noisy); "
          f"copy identical: {same}\n")
    print(f"| {'step':<52} | {'seconds':>7} | {'rows per second':>15} | {'target':>7} |")
    print(f"|{'-' * 54}|{'-' * 9}|{'-' * 17}|{'-' * 9}|")
    for label, seconds, target_s in results:
        goal = f"< {target_s:.0f} s" if target_s else ""
        print(f"| {label:<52} | {seconds:>7.1f} | {n / seconds:>15,.0f} | {goal:>7} |")
    if not same:
        raise SystemExit("the imported copy differs from the source")


if __name__ == "__main__":
    main()
