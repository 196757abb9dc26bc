"""Benchmark: the ingest API over HTTP, in batches, against ``notifications serve``.

Starts a real server (gunicorn + gevent workers) on a free port with a fresh SQLite
database, pushes ready-made JSON batches from several client threads, and compares the
rate with the baseline measured in the same run: ``inserts.insert_tuples`` in-process, one
transaction per batch, no HTTP and no validation.

    python bench/ingest_http.py [--total 200000] [--batch 500] [--workers 2] [--clients 4]
                                [--database sqlite|postgresql]

``--database postgresql`` runs the baseline and the HTTP runs on fresh PostgreSQL databases
(dropped after); its floor is psycopg's ``executemany`` of the same tuples.

``--preferences-rounds N`` measures what preferences cost ingest instead: N rounds, each
one run on a database where no user has preferences and one where every user of the
batches has some (mutes that match none of the alerts, so that both runs store the same
rows and the difference is the look-up and the matching alone), in alternating order;
it prints every run and the medians.

What the change log costs ingest: ``--without-changelog`` runs everything on databases
whose change-log triggers were dropped after ``init-db`` (the same build, writing no log);
``--paired 5`` runs the in-process baseline and HTTP ingest (with and without
``dedupe_key``) both ways, in turn (A B, B A, ...) for 5 rounds, and prints every pair and
the medians with the ratio.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from common import (
    PAIRED_HEADER,
    Database,
    add_changelog_options,
    add_database_option,
    check_changelog,
    check_changelog_options,
    database_url,
    fresh_database,
    init_db,
    paired_orders,
    paired_summary,
    serving,
)

TOKEN = "bench-ingest-token"
DATASET = "a981fc0c-2d1f-11f1-a7ca-d2580fa2deac"


def notification(i: int, keyed: bool) -> dict[str, Any]:
    """One realistic monitor alert (about 400 bytes of JSON)."""
    item: dict[str, Any] = {
        "user_id": f"usr_{i % 1000:04d}", "organization_id": f"org_{i % 7}",
        "dataset_id": DATASET, "kind": "monitor.alert", "entity_type": "saved_view",
        "entity_id": str(uuid.UUID(int=i)), "title": f"{i % 5000} new results in 'icecream'",
        "message": "New rows match the saved view",
        "metadata": {"view_name": "icecream", "dataset_name": "Ice cream",
                     "result_count": i % 5000, "batch_id": str(uuid.UUID(int=i // 500)),
                     "is_alert": True},
    }
    if keyed:
        item["dedupe_key"] = f"alert-{i}"
    return item


def stored(i: int) -> dict[str, Any]:
    """Alert ``i`` as ``inserts.new_row`` takes it.

    It has the stored ``body``, not the API's ``message``.
    """
    item = notification(i, False)
    item["body"] = item.pop("message")
    return item


def bodies(total: int, batch: int, keyed: bool) -> list[bytes]:
    return [
        json.dumps({"notifications": [
            notification(i, keyed) for i in range(start, min(start + batch, total))
        ]}).encode()
        for start in range(0, total, batch)
    ]


def push(port: int, payloads: list[bytes], clients: int) -> tuple[float, int]:
    """POST every payload from ``clients`` threads; return seconds and notifications created."""
    queue = list(reversed(payloads))
    lock = threading.Lock()
    created = 0
    failures: list[str] = []

    def client() -> None:
        nonlocal created
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        while True:
            with lock:
                if not queue:
                    break
                body = queue.pop()
            conn.request("POST", "/internal/v1/notifications", body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            if response.status != 201:
                failures.append(f"{response.status} {data[:200]!r}")
                break
            with lock:
                created += json.loads(data)["created"]
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"ingest failed: {failures[0]}")
    return elapsed, created


def baseline(db: Database, total: int, batch: int, changelog: bool = True) -> float:
    """Seconds for inserts.insert_tuples in-process, one transaction per batch."""
    from notifications import create_app
    from notifications.extension import state
    from notifications.store import inserts
    if isinstance(db, Path):
        init_db(db, changelog=changelog)
    app = create_app({"DATABASE_URL": database_url(db), "REQUIRE_KEY": False})
    items = [stored(i) for i in range(total)]
    try:
        with app.app_context():
            started = time.perf_counter()
            for start in range(0, total, batch):
                rows = [inserts.new_row(item) for item in items[start:start + batch]]
                inserts.insert_tuples([inserts.as_tuple(r) for r in rows])
            return time.perf_counter() - started
    finally:
        state(app).store.close()
        if isinstance(db, Path):
            check_changelog(db, changelog)


def raw_baseline(db: Database, total: int, batch: int, changelog: bool = True) -> float:
    """Seconds for plain sqlite3 executemany of ready-made tuples: the floor of any writer."""
    import sqlite3

    if not isinstance(db, Path):
        return raw_baseline_postgresql(db, total, batch)

    from notifications.store.engine import WAL_AUTOCHECKPOINT_PAGES
    from notifications.store.inserts import INSERT_FIELDS, new_row

    init_db(db, changelog=changelog)
    rows = []
    for i in range(total):
        row = new_row(stored(i))
        rows.append(tuple(row[f] for f in INSERT_FIELDS))
    sql = (f"INSERT INTO notifications ({', '.join(INSERT_FIELDS)}) "
           f"VALUES ({', '.join('?' for _ in INSERT_FIELDS)})")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")  # as the service does
    started = time.perf_counter()
    for start in range(0, total, batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[start:start + batch])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def raw_baseline_postgresql(url: str, total: int, batch: int) -> float:
    """Seconds for plain psycopg executemany of ready-made tuples, one transaction a batch.

    Each transaction takes the write lock first, as the service's writer does.
    """
    import psycopg

    from notifications import create_app
    from notifications.store.inserts import INSERT_FIELDS, new_row
    from notifications.store.writer import WRITE_LOCK_KEY

    create_app({"DATABASE_URL": url, "REQUIRE_KEY": False})  # creates the schema
    rows = [tuple(new_row(stored(i))[f] for f in INSERT_FIELDS) for i in range(total)]
    sql = (f"INSERT INTO notifications ({', '.join(INSERT_FIELDS)}) "
           f"VALUES ({', '.join('%s' for _ in INSERT_FIELDS)})")
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for start in range(0, total, batch):
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
                cur.executemany(sql, rows[start:start + batch])
        return time.perf_counter() - started


#: What every user muted in the runs "with preferences": the look-up finds a row for each
#: user, and the matcher checks each alert against kinds, a prefix and datasets.
BENCH_MUTES = (("review.*", "api.quota.warning", "version.published", "billing.*"),
               ("0c5c7fd0-a6a3-4450-a513-270e269e0d37", "9b2d7c1e-6f0a-4a57-8d55-1f6b0a2f3c4d"))


def set_preferences(db: Path, users: int) -> None:
    """Create the schema and give ``users`` users (usr_0000...) the bench's mutes."""
    import sqlite3

    from notifications import create_app
    from notifications.core.preferences import Preferences

    create_app({"DATABASE_URL": f"sqlite:///{db}", "REQUIRE_KEY": False})
    kinds, datasets = Preferences(*BENCH_MUTES).stored()
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO preferences (user_id, muted_kinds, muted_datasets, updated_at) "
            "VALUES (?, ?, ?, 0)", [(f"usr_{i:04d}", kinds, datasets) for i in range(users)])


def preferences_rounds(args: argparse.Namespace, tmp: Path) -> None:
    """Interleaved runs without and with preferences; print each and the medians."""
    import statistics

    payloads = bodies(args.total, args.batch, False)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(args.preferences_rounds):
        order = (False, True) if round_ % 2 == 0 else (True, False)
        for with_prefs in order:
            db = tmp / f"prefs-{round_}-{with_prefs}.db"
            if with_prefs:
                set_preferences(db, min(args.total, 1000))
            with serving(db, db.with_suffix(".log"), args.workers, JWT_SECRET="x" * 40,
                         INGEST_TOKEN=TOKEN) as server:
                seconds, created = push(server.port, payloads, args.clients)
            assert created == args.total, (created, args.total)
            rates[with_prefs].append(created / seconds)
            print(f"round {round_ + 1}, {'with' if with_prefs else 'without'} preferences: "
                  f"{created / seconds:,.0f}/s", flush=True)
    store_rates = store_job_rounds(args, tmp)
    without, with_ = (statistics.median(rates[False]), statistics.median(rates[True]))
    print(f"\npreferences benchmark: {args.preferences_rounds} interleaved rounds of "
          f"{args.total:,} notifications in batches of {args.batch}, {args.workers} gevent "
          f"worker(s), {args.clients} client threads, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| scenario | median per second | runs |")
    print("|---|---|---|")
    print(f"| no user has preferences | {without:,.0f} | "
          + ", ".join(f"{r:,.0f}" for r in rates[False]) + " |")
    print(f"| every user has preferences (matching none) | {with_:,.0f} | "
          + ", ".join(f"{r:,.0f}" for r in rates[True]) + " |")
    print(f"\nwith preferences: {with_ / without - 1:+.1%} against without")
    store_without = statistics.median(store_rates[False])
    store_with = statistics.median(store_rates[True])
    print(f"\nthe store job alone (inserts.ingest_notifications in-process, batches of "
          f"{args.batch}, alternating batches, medians of {len(store_rates[False])}):")
    print(f"| no user has preferences | {store_without:,.0f}/s |")
    print(f"| every user has preferences (matching none) | {store_with:,.0f}/s |")
    print(f"with preferences: {store_with / store_without - 1:+.1%} against without")


def store_job_rounds(args: argparse.Namespace, tmp: Path) -> dict[bool, list[float]]:
    """Rates of the store job alone, in-process: batches alternate between a database
    without and one with preferences, so both see the same load of the machine."""
    from notifications import create_app
    from notifications.store import inserts

    apps = {}
    for with_prefs in (False, True):
        db = tmp / f"store-{with_prefs}.db"
        if with_prefs:
            set_preferences(db, min(args.total, 1000))
        apps[with_prefs] = create_app({"DATABASE_URL": f"sqlite:///{db}", "REQUIRE_KEY": False})
    items = [stored(i) for i in range(args.total)]
    rates: dict[bool, list[float]] = {False: [], True: []}
    for number, start in enumerate(range(0, args.total, args.batch)):
        batch = items[start:start + args.batch]
        order = (False, True) if number % 2 == 0 else (True, False)
        for with_prefs in order:
            with apps[with_prefs].app_context():
                started = time.perf_counter()
                ids, created = inserts.ingest_notifications(batch)
                rates[with_prefs].append(created / (time.perf_counter() - started))
            assert created == len(batch)
    return rates


def http_ingest(db: Database, log: Path, payloads: list[bytes], args: argparse.Namespace,
                changelog: bool = True) -> float:
    """Seconds for HTTP ingest of every payload into a fresh database."""
    if isinstance(db, Path):
        init_db(db, changelog=changelog)
    with serving(db, log, args.workers, JWT_SECRET="x" * 40, INGEST_TOKEN=TOKEN) as server:
        seconds, created = push(server.port, payloads, args.clients)
    assert created == args.total, (created, args.total)
    if isinstance(db, Path):
        check_changelog(db, changelog)
    return seconds


def paired(args: argparse.Namespace) -> None:
    """Run each scenario with and without the change log, in turn; print pairs and medians."""
    payloads = {keyed: bodies(args.total, args.batch, keyed) for keyed in (False, True)}
    scenarios = {
        "in-process inserts.insert_tuples": lambda db, log: baseline(
            db, args.total, args.batch, log),
        f"HTTP ingest, batches of {args.batch}": lambda db, log: http_ingest(
            db, db.with_suffix(".log"), payloads[False], args, log),
        f"HTTP ingest, batches of {args.batch}, every item with dedupe_key": lambda db, log: (
            http_ingest(db, db.with_suffix(".log"), payloads[True], args, log)),
    }
    pairs: dict[str, list[tuple[float, float]]] = {name: [] for name in scenarios}
    loads = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for number, order in enumerate(paired_orders(args.paired), 1):
            for name, run in scenarios.items():
                rate = {}
                for changelog in order:
                    db = Path(tmp) / f"r{number}-{len(pairs[name])}-{changelog}.db"
                    rate[changelog] = args.total / run(db, changelog)
                    for leftover in Path(tmp).glob(db.name + "*"):
                        leftover.unlink()
                pairs[name].append((rate[True], rate[False]))
                loads.append(os.getloadavg()[0])
                print(f"round {number} ({'with first' if order[0] else 'without first'}) "
                      f"{name}: {rate[True]:,.0f}/s with, {rate[False]:,.0f}/s without, "
                      f"ratio {rate[True] / rate[False]:.3f}", flush=True)
    print(f"\ningest, with and without the change log: {args.paired} rounds of {args.total:,} "
          f"notifications, {args.workers} gevent worker(s), {args.clients} client threads, "
          f"{os.cpu_count()} CPUs, databases in {args.dir or tempfile.gettempdir()}, "
          f"load average {min(loads):.1f}-{max(loads):.1f} (median "
          f"{statistics.median(loads):.1f})\n")
    print(PAIRED_HEADER)
    for name, found in pairs.items():
        print(paired_summary(name, found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--dir", default=None,
                        help="Where the databases live (default: the system temp dir; try /dev/shm "
                             "to take the disk out of the figures).")
    parser.add_argument("--preferences-rounds", type=int, default=0, metavar="N",
                        help="Measure what preferences cost instead: N interleaved rounds "
                             "without and with preferences set for every user.")
    add_changelog_options(parser, "after init-db",
                          "each scenario (printing the medians and their ratio)")
    add_database_option(parser)
    args = parser.parse_args()
    if args.preferences_rounds and args.database != "sqlite":
        parser.error("--preferences-rounds runs on SQLite only")
    if args.preferences_rounds:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            preferences_rounds(args, Path(tmp))
        return
    check_changelog_options(parser, args)
    if args.paired:
        paired(args)
        return
    changelog = not args.without_changelog

    results: list[tuple[str, int, float]] = []
    driver = "sqlite3" if args.database == "sqlite" else "psycopg"
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        with fresh_database(args.database, Path(tmp), "baseline") as db:
            base = baseline(db, args.total, args.batch, changelog)
        results.append(("baseline: inserts.insert_tuples in-process", args.total, base))
        with fresh_database(args.database, Path(tmp), "raw") as db:
            raw = raw_baseline(db, args.total, args.batch, changelog)
        results.append((f"floor: {driver} executemany of ready tuples", args.total, raw))
        for keyed in (False, True):
            payloads = bodies(args.total, args.batch, keyed)
            with fresh_database(args.database, Path(tmp), f"ingest-{keyed}") as db:
                seconds = http_ingest(db, Path(tmp) / f"ingest-{keyed}.log", payloads, args,
                                      changelog)
            label = f"HTTP ingest, batches of {args.batch}" + (
                ", every item with dedupe_key" if keyed else "")
            results.append((label, args.total, seconds))

    base_rate = args.total / base
    where = (f"databases in {args.dir or tempfile.gettempdir()}" if args.database == "sqlite"
             else "PostgreSQL databases")
    print(f"\ningest benchmark{'' if changelog else ' WITHOUT the change log (triggers dropped)'}"
          f": {args.workers} gevent worker(s), {args.clients} client threads, "
          f"{os.cpu_count()} CPUs, {where}, "
          f"load average {os.getloadavg()[0]:.1f} (shared machine: figures are noisy)\n")
    print(f"| {'scenario':<58} | {'notifications':>13} | {'seconds':>7} "
          f"| {'per second':>10} | {'vs baseline':>11} |")
    print(f"|{'-' * 60}|{'-' * 15}|{'-' * 9}|{'-' * 12}|{'-' * 13}|")
    for label, count, seconds in results:
        rate = count / seconds
        print(f"| {label:<58} | {count:>13,} | {seconds:>7.2f} | {rate:>10,.0f} "
              f"| {rate / base_rate:>10.0%} |")


if __name__ == "__main__":
    main()
