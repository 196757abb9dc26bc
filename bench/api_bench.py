"""Benchmark: seeding a million rows, and HTTP latency on 10 k vs 1 M rows.

Run from a checkout with the package installed (``pip install -e .``)::

    python bench/api_bench.py                  # the full run (about two minutes)
    python bench/api_bench.py --users 100      # a quicker, smaller run

It seeds two SQLite databases in a temporary directory -- a small one (10 users x
1000 notifications) and a large one (``--users`` x ``--per-user``, one million rows by
default) -- timing the large ``notifications seed``. Then it starts a warm
``notifications serve --workers 1`` on each and measures, alternating between the two
servers request by request so that both see the same machine load, the end-to-end
latency of the unread count and of the first list page for one user over a keep-alive
HTTP connection. Every user has the same number of rows in both databases, so any
difference comes from the size of the table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from common import command, environment, serving

SECRET = "benchmark-secret-0123456789abcdef0123456789"


def cli(db_path: Path, *args: str) -> str:
    """Run the installed CLI on ``db_path`` and return its output; exit if it fails."""
    result = subprocess.run([*command(), *args], env=environment(db_path, JWT_SECRET=SECRET),
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"notifications {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def seed(db_path: Path, users: int, per_user: int) -> float:
    """Seed a fresh database and return the wall time of the command, in seconds."""
    cli(db_path, "init-db")
    started = time.perf_counter()
    cli(db_path, "seed", "--users", str(users), "--per-user", str(per_user), "--orgs", "10",
        "--datasets", "20", "--random-seed", "1", "--json")
    return time.perf_counter() - started


def some_user(db_path: Path) -> tuple[str, str]:
    """Return a user with inbox items, and their organization."""
    for line in cli(db_path, "list", "--json", "--limit", "100").splitlines():
        row = json.loads(line)
        if row["organization_id"]:
            return row["user_id"], row["organization_id"]
    sys.exit("no seeded user with an organization")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


ENDPOINTS = {
    "unread-count": "/api/v1/notifications/unread-count",
    "first page (20)": "/api/v1/notifications",
    "org first page (50)": "/api/v1/org/notifications",
}


def measure(targets: dict[str, tuple[str, dict[str, str]]], requests_per: int,
            warmup: int) -> dict[tuple[str, str], list[float]]:
    """Time each endpoint on each target, alternating targets request by request."""
    sessions = {name: requests.Session() for name in targets}
    timings: dict[tuple[str, str], list[float]] = {}
    for endpoint, path in ENDPOINTS.items():
        for round_index in range(warmup + requests_per):
            for name, (base, headers) in targets.items():
                started = time.perf_counter()
                response = sessions[name].get(base + path, headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    sys.exit(f"{name} {path}: HTTP {response.status_code} {response.text}")
                if round_index >= warmup:
                    timings.setdefault((endpoint, name), []).append(elapsed)
    for session in sessions.values():
        session.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000, help="users in the large database")
    parser.add_argument("--per-user", type=int, default=1000, help="notifications per user")
    parser.add_argument("--small-users", type=int, default=10, help="users in the small database")
    parser.add_argument("--requests", type=int, default=500, help="timed requests per endpoint")
    parser.add_argument("--warmup", type=int, default=100, help="untimed requests first")
    parser.add_argument("--keep", action="store_true", help="keep the temporary databases")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="notifications-bench-"))
    small, large = workdir / "small.db", workdir / "large.db"
    small_rows, large_rows = args.small_users * args.per_user, args.users * args.per_user
    try:
        print(f"seeding {small_rows:,} rows ...", file=sys.stderr)
        seed(small, args.small_users, args.per_user)
        print(f"seeding {large_rows:,} rows ...", file=sys.stderr)
        seed_seconds = seed(large, args.users, args.per_user)
        size_mb = large.stat().st_size / 1e6

        with serving(small, small.with_suffix(".log"), JWT_SECRET=SECRET) as small_server, \
                serving(large, large.with_suffix(".log"), JWT_SECRET=SECRET) as large_server:
            targets = {}
            for name, base, path in ((f"{small_rows:,} rows", small_server.url, small),
                                     (f"{large_rows:,} rows", large_server.url, large)):
                user, org = some_user(path)
                token = cli(path, "token", "--user", user, "--org", org).strip()
                targets[name] = (base, {"Authorization": f"Bearer {token}"})
            print(f"measuring {args.requests} requests per endpoint and database ...",
                  file=sys.stderr)
            timings = measure(targets, args.requests, args.warmup)

        load = os.getloadavg()
        print()
        print(f"seed --users {args.users} --per-user {args.per_user}: {large_rows:,} rows in "
              f"{seed_seconds:.1f} s ({large_rows / seed_seconds:,.0f} rows/s), "
              f"database {size_mb:,.0f} MB")
        print()
        names = list(targets)
        header = f"{'endpoint (one user, ' + str(args.per_user) + ' rows)':<36}"
        header += "".join(f"{n + ' median':>24}{'p95':>10}" for n in names)
        print(header)
        print("-" * len(header))
        for endpoint in ENDPOINTS:
            line = f"{endpoint:<36}"
            for name in names:
                values = timings[(endpoint, name)]
                line += f"{statistics.median(values):>21.2f} ms{percentile(values, 0.95):>7.2f} ms"
            print(line)
        print()
        print(f"load average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
              f"({os.cpu_count()} cores)")
    finally:
        if args.keep:
            print(f"databases kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
