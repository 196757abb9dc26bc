"""Benchmark: how soon a write through one node reaches a stream on another node.

Two ``notifications serve --workers 2`` ("node A" and "node B", two ports) share one fresh
PostgreSQL database. Every user of the run (``--users``) opens a version 2 stream
(``/api/v2/notifications/stream``) on node B and one on node A; one client then writes
notifications for them through node A's ingest API at a steady rate (``--rate`` a second
for ``--seconds``), one notification a request, round robin over the users. Each
notification carries its number in its title. For each ``notification.created`` event the
client notes when it arrived and measures the delay:

- **cross-node**: written through A, heard on B's stream: the change log, PostgreSQL's
  ``NOTIFY`` on commit and node B's watcher carry it;
- **same node** (the baseline of the same run): written through A, heard on A's stream,
  whose watcher the writing worker (or its neighbour, through the database) wakes;
- **SQLite, one node** (for reference): the same load and streams on one ``serve
  --workers 2`` with a SQLite file, where the other worker hears of a write by polling.

Delays are counted from the moment the ingest call returned (its 201 read) and, in
brackets, from the moment it was sent. The poll interval is the default (0.25 s): what
makes cross-node delivery fast must be PostgreSQL's notifications, not polling.

    python bench/cross_node.py [--users 5] [--rate 50] [--seconds 20] [--rounds 1]

``--rounds N`` runs the PostgreSQL pair and the SQLite reference N times, interleaved, and
prints each run and the medians of their percentiles. Target: cross-node p99 < 100 ms.
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
from contextlib import ExitStack
from pathlib import Path

from common import Database, bench_token, fresh_database, serving

SECRET = "benchmark-secret-0123456789abcdef0123456789"
INGEST_TOKEN = "bench-ingest-token-0123456789"
STREAM = "/api/v2/notifications/stream"
TARGET_P99_MS = 100.0


class Stream:
    """One open v2 stream in a thread of its own: when each numbered notification arrived."""

    def __init__(self, port: int, user: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request("GET", STREAM, headers={
            "Authorization": f"Bearer {bench_token(SECRET, user)}",
            "Accept": "text/event-stream"})
        self.response = self.conn.getresponse()
        if self.response.status != 200:
            raise SystemExit(f"stream on port {port}: {self.response.status} "
                             f"{self.response.read(300)!r}")
        #: notification number -> time.perf_counter() of its arrival
        self.arrived: dict[int, float] = {}
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        event = ""
        try:
            while True:
                line = self.response.readline()
                if not line:
                    return
                now = time.perf_counter()
                text = line.decode().rstrip("\r\n")
                if text.startswith("event:"):
                    event = text[6:].strip()
                    if event == "counts":
                        self.ready.set()
                elif text.startswith("data:") and event == "notification.created":
                    title = json.loads(text[5:])["title"]
                    if title.startswith("bench "):
                        self.arrived.setdefault(int(title[6:]), now)
                elif not text:
                    event = ""
        except (OSError, ValueError, AttributeError):
            return  # closed at the end of the run (http.client then meets a closed file)

    def close(self) -> None:
        try:
            self.conn.sock.shutdown(2) if self.conn.sock else None
        except OSError:
            pass
        self.conn.close()


def write(port: int, users: list[str], rate: float, seconds: float
          ) -> dict[int, tuple[float, float, str]]:
    """Ingest one notification a request at ``rate`` a second; return n -> (sent, returned,
    user)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {INGEST_TOKEN}", "Content-Type": "application/json"}
    times: dict[int, tuple[float, float, str]] = {}
    count = int(rate * seconds)
    start = time.perf_counter()
    for n in range(count):
        due = start + n / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        user = users[n % len(users)]
        body = json.dumps({"notifications": [{
            "user_id": user, "kind": "bench.cross_node", "title": f"bench {n}",
            "metadata": {"sent_at": time.time()}}]})
        sent = time.perf_counter()
        conn.request("POST", "/internal/v1/notifications", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        returned = time.perf_counter()
        if response.status != 201:
            raise SystemExit(f"ingest: {response.status} {data[:300]!r}")
        times[n] = (sent, returned, user)
    conn.close()
    return times


class Delays:
    """Delays of one kind of delivery, in milliseconds, from return and from send."""

    def __init__(self) -> None:
        self.from_return: list[float] = []
        self.from_send: list[float] = []
        self.missing = 0

    def add(self, streams: dict[str, Stream], times: dict[int, tuple[float, float, str]]
            ) -> None:
        for n, (sent, returned, user) in times.items():
            arrived = streams[user].arrived.get(n)
            if arrived is None:
                self.missing += 1
                continue
            self.from_return.append(max(0.0, (arrived - returned) * 1000))
            self.from_send.append((arrived - sent) * 1000)

    def figures(self) -> dict[str, float]:
        def pct(values: list[float], q: float) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0
        result = {"count": float(len(self.from_return)), "missing": float(self.missing)}
        for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0)):
            result[name] = pct(self.from_return, q)
            result[f"{name}_send"] = pct(self.from_send, q)
        return result


def open_streams(port: int, users: list[str]) -> dict[str, Stream]:
    streams = {user: Stream(port, user) for user in users}
    for stream in streams.values():
        if not stream.ready.wait(10):
            raise SystemExit(f"no counts event on port {port} within 10 s")
    return streams


def drain(streams: list[dict[str, Stream]], times: dict[int, tuple[float, float, str]]) -> None:
    """Wait (up to 2 s) for every written notification to reach every stream."""
    deadline = time.perf_counter() + 2
    while time.perf_counter() < deadline:
        if all(n in group[user].arrived for group in streams for n, (_, _, user) in times.items()):
            return
        time.sleep(0.02)


def run(db: Database, folder: Path, name: str, args: argparse.Namespace, two_nodes: bool
        ) -> dict[str, dict[str, float]]:
    """One run on ``db``: node A (and node B); return the figures of each delivery kind."""
    users = [f"user{i:02d}" for i in range(args.users)]
    settings = {"JWT_SECRET": SECRET, "INGEST_TOKEN": INGEST_TOKEN}
    with ExitStack() as stack:
        node_a = stack.enter_context(serving(db, folder / f"{name}-a.log", workers=2,
                                             **settings))
        node_b = (stack.enter_context(serving(db, folder / f"{name}-b.log", workers=2,
                                              **settings)) if two_nodes else None)
        same = open_streams(node_a.port, users)
        groups = [same]
        other = open_streams(node_b.port, users) if node_b else None
        if other:
            groups.append(other)
        time.sleep(1)  # let every stream settle on its worker
        write(node_a.port, users, args.rate, 1)  # warm up (not counted)
        drain(groups, {})
        for group in groups:
            for stream in group.values():
                stream.arrived.clear()
        times = write(node_a.port, users, args.rate, args.seconds)
        drain(groups, times)
        results = {}
        kinds = [("same node", same)] + ([("cross-node", other)] if other else [])
        for kind, group in kinds:
            delays = Delays()
            delays.add(group, times)
            results[kind] = delays.figures()
        for group in groups:
            for stream in group.values():
                stream.close()
    return results


def line(label: str, f: dict[str, float]) -> str:
    missing = f" ({f['missing']:.0f} missing)" if f["missing"] else ""
    return (f"| {label} | {f['count']:.0f}{missing} | {f['p50']:.1f} ({f['p50_send']:.1f}) | "
            f"{f['p90']:.1f} ({f['p90_send']:.1f}) | {f['p99']:.1f} ({f['p99_send']:.1f}) | "
            f"{f['max']:.1f} ({f['max_send']:.1f}) |")


HEADER = ("| delivery | events | p50 ms | p90 ms | p99 ms | max ms |\n"
          "|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--rate", type=float, default=50.0, help="notifications a second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite reference")
    args = parser.parse_args()
    print(f"# bench/cross_node.py, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
          f"{args.users} users, {args.rate:g} notifications/s for {args.seconds:g} s, "
          f"default poll interval; delays from the ingest call's return (from its send)\n")
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for round_ in range(args.rounds):
            order = ["postgresql", "sqlite"] if round_ % 2 == 0 else ["sqlite", "postgresql"]
            for kind in order:
                if kind == "sqlite" and args.no_sqlite:
                    continue
                with fresh_database(kind, folder, f"cross-{round_}") as db:
                    results = run(db, folder, f"{kind}-{round_}", args, kind == "postgresql")
                print(f"round {round_ + 1}, {kind} (load average {os.getloadavg()[0]:.1f})\n"
                      f"\n{HEADER}")
                for label, figures in results.items():
                    full = f"{kind}, {label}" if kind == "postgresql" else "SQLite, one node"
                    runs.setdefault(full, []).append(figures)
                    print(line(full, figures))
                print(flush=True)
    if args.rounds > 1:
        print(f"medians of {args.rounds} rounds\n\n{HEADER}")
        for label, figures_list in runs.items():
            median = {key: statistics.median(f[key] for f in figures_list)
                      for key in figures_list[0]}
            print(line(label, median))
        print()
    cross = runs.get("postgresql, cross-node")
    if cross:
        p99 = statistics.median(f["p99"] for f in cross)
        print(f"cross-node p99 {p99:.1f} ms (target < {TARGET_P99_MS:.0f} ms): "
              f"{'met' if p99 < TARGET_P99_MS else 'MISSED'}")


if __name__ == "__main__":
    main()
