"""Benchmark: mixed concurrent load per operation, and single-notification ingest.

Starts ``notifications serve --workers 2`` on a fresh SQLite database (data for 80 users
of both variants) and, in the same run, the baseline: an empty endpoint on exactly the same
gunicorn + gevent settings that parses the same JSON body (``bench/empty_server.py``).
Load comes from ``wrk`` (Debian's package), one instance per operation running at the same
time, so every operation gets its own throughput and latency figures while they all compete:

- the mix at 8, 32 and 128 connections in all: ingest (1-3 notifications a request),
  dataset mark-one-read, read-all, list, unread count and the organization inbox;
- single-notification ingest (one notification a request, as most producers send) at 32
  connections from two wrk threads, beside the empty endpoint given the same body.

Each is measured with ``NOTIFICATIONS_SYNCHRONOUS=full`` and ``normal``.

    python bench/mixed_load.py [--seconds 8] [--clients 8,32,128] [--synchronous full,normal]
                               [--database sqlite|postgresql]

What the change log costs: ``--without-changelog`` drops its triggers from every database
after seeding (the same build, writing no log); ``--paired 5`` serves a fresh database with
and then without the log (or the other way round, every other round) for 5 rounds, runs
the mix at the first ``--clients`` level and single-notification ingest on each, and
prints every operation's medians with the ratio of the pairs.

``--database postgresql`` serves a fresh PostgreSQL database instead (dropped after), once:
``NOTIFICATIONS_SYNCHRONOUS`` is SQLite's, so ``--synchronous`` defaults to ``full`` there.
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
import uuid
from contextlib import ExitStack
from pathlib import Path

from common import (
    PAIRED_HEADER,
    WRK_REPORT,
    Database,
    Figures,
    add_changelog_options,
    add_database_option,
    bench_token,
    check_changelog,
    check_changelog_options,
    command,
    drop_changelog,
    environment,
    free_port,
    fresh_database,
    lua_list,
    paired_orders,
    paired_summary,
    serving,
    start_wrk,
    stop,
    wait_ready,
    wrk_figures,
)

SECRET = "benchmark-secret-0123456789abcdef0123456789"
INGEST_TOKEN = "bench-ingest-token-0123456789"
DATASET = "a981fc0c-2d1f-11f1-a7ca-d2580fa2deac"
DATASET_USERS = [f"ds{i:02d}" for i in range(60)]
ORG_USERS = [f"org{i:02d}" for i in range(20)]
PER_USER = 100
#: Share of the connections each operation of the mix gets.
MIX = {"ingest": 0.30, "mark_one": 0.10, "read_all": 0.05, "list": 0.20,
       "unread_count": 0.20, "org_list": 0.15}

def token(user: str, org: str | None = None) -> str:
    return bench_token(SECRET, user, org)


def scripts(folder: Path, ids: dict[str, list[str]]) -> dict[str, Path]:
    """Write one wrk script per operation (and the baselines); return their paths."""
    ds_tokens = lua_list([token(u) for u in DATASET_USERS])
    org_tokens = lua_list([token(u, "acme") for u in ORG_USERS])
    users = lua_list(DATASET_USERS)
    marks = lua_list([f"/api/v1/notifications/{i}/read" for u in DATASET_USERS for i in ids[u]])
    alert = ('{"user_id":"%s","dataset_id":"' + DATASET + '","kind":"monitor.alert",'
             '"entity_type":"saved_view","title":"12 new results in \'icecream\'",'
             '"metadata":{"view_name":"icecream","dataset_name":"Ice cream","result_count":12,'
             '"batch_id":"6f1c7a52-4d0e-4b4a-8d8e-0c7e2c5e9a11","is_alert":true}}')
    body = {
        "ingest": f"""
local users = {users}
request = function()
  local items = {{}}
  for i = 1, math.random(3) do
    items[i] = string.format([[{alert}]], users[math.random(#users)])
  end
  return wrk.format("POST", "/internal/v1/notifications",
    {{["Authorization"] = "Bearer {INGEST_TOKEN}", ["Content-Type"] = "application/json"}},
    '{{"notifications":[' .. table.concat(items, ",") .. ']}}')
end""",
        "single": f"""
local users = {users}
request = function()
  return wrk.format("POST", "{{path}}",
    {{["Authorization"] = "Bearer {INGEST_TOKEN}", ["Content-Type"] = "application/json"}},
    string.format([[{alert}]], users[math.random(#users)]))
end""",
        "mark_one": f"""
local tokens = {ds_tokens}
local paths = {marks}
request = function()
  local i = math.random(#paths)
  local user = math.floor((i - 1) / {PER_USER}) + 1
  return wrk.format("POST", paths[i], {{["Authorization"] = "Bearer " .. tokens[user]}})
end""",
        "read_all": f"""
local tokens = {ds_tokens}
request = function()
  return wrk.format("POST", "/api/v1/notifications/read-all?dataset_id={DATASET}",
    {{["Authorization"] = "Bearer " .. tokens[math.random(#tokens)]}})
end""",
        "list": f"""
local tokens = {ds_tokens}
request = function()
  return wrk.format("GET", "/api/v1/notifications?limit=20",
    {{["Authorization"] = "Bearer " .. tokens[math.random(#tokens)]}})
end""",
        "unread_count": f"""
local tokens = {ds_tokens}
request = function()
  return wrk.format("GET", "/api/v1/notifications/unread-count",
    {{["Authorization"] = "Bearer " .. tokens[math.random(#tokens)]}})
end""",
        "org_list": f"""
local tokens = {org_tokens}
request = function()
  return wrk.format("GET", "/api/v1/org/notifications",
    {{["Authorization"] = "Bearer " .. tokens[math.random(#tokens)]}})
end""",
    }
    paths = {}
    for name, text in body.items():
        if name == "single":
            for target, path in (("single", "/internal/v1/notifications"), ("empty", "/empty")):
                paths[target] = folder / f"{target}.lua"
                paths[target].write_text(text.replace("{path}", path) + WRK_REPORT)
            continue
        paths[name] = folder / f"{name}.lua"
        paths[name].write_text(text + WRK_REPORT)
    # The mix's baseline: the ingest body, posted to the empty endpoint.
    paths["empty_mix"] = folder / "empty_mix.lua"
    paths["empty_mix"].write_text(
        body["ingest"].replace("/internal/v1/notifications", "/empty") + WRK_REPORT)
    return paths


def split(total: int) -> dict[str, int]:
    """Share ``total`` connections out over the operations of the mix (at least one each)."""
    shares = {name: max(1, round(total * weight)) for name, weight in MIX.items()}
    while sum(shares.values()) > total:
        biggest = max(shares, key=lambda n: shares[n])
        shares[biggest] -= 1
    while sum(shares.values()) < total:
        shares[max(MIX, key=lambda n: MIX[n] * total - shares[n])] += 1
    return shares


def run_mix(port: int, paths: dict[str, Path], total: int, seconds: float) -> dict[str, Figures]:
    procs = {name: start_wrk(paths[name], port, connections, seconds)
             for name, connections in split(total).items()}
    return {name: wrk_figures(proc) for name, proc in procs.items()}


def seed(db: Database, folder: Path, changelog: bool = True) -> dict[str, list[str]]:
    """Import PER_USER notifications for every user; return each dataset user's ids."""
    ids: dict[str, list[str]] = {u: [str(uuid.uuid4()) for _ in range(PER_USER)]
                                 for u in DATASET_USERS}
    lines = []
    for user in DATASET_USERS:
        lines += [json.dumps({"id": i, "user_id": user, "dataset_id": DATASET, "title": "seed",
                              "metadata": {"is_alert": True}}) for i in ids[user]]
    for user in ORG_USERS:
        lines += [json.dumps({"user_id": user, "organization_id": "acme", "kind": "review.created",
                              "title": "seed"}) for _ in range(PER_USER)]
    source = folder / "seed.jsonl"
    source.write_text("\n".join(lines) + "\n")
    env = environment(db, JWT_SECRET=SECRET)
    subprocess.run([*command(), "import", str(source)], env=env, check=True,
                   capture_output=True)
    if not changelog:
        assert isinstance(db, Path), "the change log is dropped from SQLite databases only"
        drop_changelog(db)
    return ids


def row(name: str, f: Figures, base: Figures | None = None) -> str:
    ratio = f"{f.rate / base.rate:.2f}" if base else "1"
    errors = f"{f.server_errors}/{f.transport_errors}"
    return (f"| {name} | {f.rate:,.0f} | {ratio} | {f.p50_ms:.1f} | {f.p99_ms:.1f} | "
            f"{f.max_ms:.0f} | {errors} |")


HEADER = ("| operation | req/s | ratio to baseline | p50 ms | p99 ms | max ms | 5xx/transport |\n"
          "|---|---|---|---|---|---|---|")


def paired(args: argparse.Namespace, folder: Path) -> None:
    """Serve fresh databases with and without the change log, in turn; print the medians."""
    total = int(args.clients.split(",")[0])
    synchronous = args.synchronous.split(",")[0]
    pairs: dict[str, list[tuple[float, float]]] = {}
    loads = []
    for number, order in enumerate(paired_orders(args.paired), 1):
        rates: dict[bool, dict[str, float]] = {}
        for changelog in order:
            db = folder / f"r{number}-{changelog}.db"
            ids = seed(db, folder, changelog)
            paths = scripts(folder, ids)
            with serving(db, db.with_suffix(".log"), workers=2, JWT_SECRET=SECRET,
                         INGEST_TOKEN=INGEST_TOKEN, SYNCHRONOUS=synchronous) as served:
                wrk_figures(start_wrk(paths["list"], served.port, 8, 1))  # warm up
                mix = run_mix(served.port, paths, total, args.seconds)
                single = wrk_figures(start_wrk(paths["single"], served.port, 32, args.seconds,
                                               threads=2))
            check_changelog(db, changelog)
            for leftover in folder.glob(db.name + "*"):
                leftover.unlink()
            if any(f.server_errors or f.transport_errors for f in [*mix.values(), single]):
                sys.exit(f"round {number}: errors under load, see {db.with_suffix('.log')}")
            rates[changelog] = {
                **{f"mix at {total}: {name} ({split(total)[name]} conn.)": f.rate
                   for name, f in mix.items()},
                f"mix at {total}: all operations together": sum(f.rate for f in mix.values()),
                "single-notification ingest (32 conn.)": single.rate,
            }
            loads.append(os.getloadavg()[0])
        for name in rates[True]:
            pairs.setdefault(name, []).append((rates[True][name], rates[False][name]))
        ingest = next(n for n in rates[True] if ": ingest" in n)
        print(f"round {number} ({'with first' if order[0] else 'without first'}): "
              f"mix ingest {rates[True][ingest]:,.0f} with / {rates[False][ingest]:,.0f} "
              f"without, single ingest {rates[True]['single-notification ingest (32 conn.)']:,.0f}"
              f" / {rates[False]['single-notification ingest (32 conn.)']:,.0f} req/s",
              flush=True)
    print(f"\nmixed load, with and without the change log: {args.paired} rounds of "
          f"{args.seconds:g} s, synchronous = {synchronous}, 2 workers, {os.cpu_count()} CPUs, "
          f"load average {min(loads):.1f}-{max(loads):.1f} "
          f"(median {statistics.median(loads):.1f})\n")
    print(PAIRED_HEADER.replace("scenario", "operation (req/s)"))
    for name, found in pairs.items():
        print(paired_summary(name, found, unit=""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", default="8,32,128")
    parser.add_argument("--synchronous", default=None,
                        help="full,normal on SQLite (the default there), full on PostgreSQL")
    parser.add_argument("--dir", default=None, help="Where the databases live (default: temp).")
    add_changelog_options(parser, "after seeding",
                          "the mix at the first --clients level and single ingest")
    add_database_option(parser)
    args = parser.parse_args()
    if args.synchronous is None:
        args.synchronous = "full,normal" if args.database == "sqlite" else "full"
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    levels = [int(c) for c in args.clients.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="mixed-load-", dir=args.dir))
    check_changelog_options(parser, args)
    if args.paired:
        paired(args, folder)
        shutil.rmtree(folder, ignore_errors=True)
        return
    changelog = not args.without_changelog
    empty_port = free_port()
    empty_log = folder / "empty.log"
    with open(empty_log, "wb") as out:
        empty = subprocess.Popen([sys.executable, str(Path(__file__).with_name("empty_server.py")),
                                  str(empty_port), "2"], stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        wait_ready(empty_port, empty, empty_log)
        for synchronous in args.synchronous.split(","):
            with ExitStack() as stack:
                db = stack.enter_context(fresh_database(args.database, folder, synchronous))
                ids = seed(db, folder, changelog)
                paths = scripts(folder, ids)
                served = stack.enter_context(serving(
                    db, folder / f"{synchronous}.log", workers=2, JWT_SECRET=SECRET,
                    INGEST_TOKEN=INGEST_TOKEN, SYNCHRONOUS=synchronous))
                wrk_figures(start_wrk(paths["list"], served.port, 8, 1))  # warm up
                print(f"\n## {args.database}, synchronous = {synchronous}"
                      f"{'' if changelog else ', WITHOUT the change log (triggers dropped)'}\n")
                for total in levels:
                    base = wrk_figures(start_wrk(paths["empty_mix"], empty_port, total,
                                                 args.seconds))
                    mix = run_mix(served.port, paths, total, args.seconds)
                    print(f"\n### mix at {total} connections (2 workers)\n\n{HEADER}")
                    print(row("empty endpoint, same body as ingest (baseline)", base))
                    for name, f in mix.items():
                        print(row(f"{name} ({split(total)[name]} conn.)", f))
                    combined = sum(f.rate for f in mix.values())
                    print(f"\nall operations together: {combined:,.0f} req/s")
                base = wrk_figures(start_wrk(paths["empty"], empty_port, 32, args.seconds,
                                             threads=2))
                single = wrk_figures(start_wrk(paths["single"], served.port, 32, args.seconds,
                                           threads=2))
                print("\n### single-notification ingest, 32 connections, 2 wrk threads\n\n"
                      f"{HEADER}")
                print(row("empty endpoint, same body (baseline)", base))
                print(row("ingest, one notification a request", single, base))
                sys.stdout.flush()
    finally:
        stop(empty)
    print(f"\n(databases and logs in {folder})")


if __name__ == "__main__":
    main()
