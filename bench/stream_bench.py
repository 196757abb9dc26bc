"""Stream bench: memory per open stream, delivery latency and idle database work.

Runs everything on this machine, against real servers in subprocesses:

1. Memory: N concurrent streams on ONE gevent worker, resident memory per stream of
   ``/api/v1/notifications/stream`` next to a bare gevent endpoint that only streams
   comments (same gunicorn settings, same Flask), measured in the same run. Pings are
   checked for lateness on a sample of the streams.
2. Idle database work: the watcher's checks and queries per second with few and with N
   idle streams (read from the worker's shutdown statistics line).
3. Latency from commit to the client's receipt with 1,000 streams open: writes made by
   another process (this one, through the service's own query functions) and by the
   worker itself (the ingest API) reach dataset streams; reads made inside the worker
   (POST mark-read) reach organization streams as a new unread count.

Usage: python bench/stream_bench.py [--streams 10000] [--latency-streams 1000] [--samples 200]
                                    [--database sqlite|postgresql]

``--database postgresql`` runs each part on a fresh PostgreSQL database (dropped after).
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import jwt  # noqa: E402
from common import (  # noqa: E402
    ROOT,
    add_database_option,
    database_url,
    free_port,
    fresh_database,
    serving,
    stop,
    wait_ready,
)
from gevent.pool import Pool  # noqa: E402

SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"
#: Client sockets come from several loopback addresses so 20,000+ connections in one run
#: do not run out of ephemeral ports.
SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]


def token(user: str, org: str | None = None) -> str:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 3600}
    if org:
        claims["organization_id"] = org
    return jwt.encode(claims, SECRET, algorithm="HS256")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def worker_pid(master: int) -> int:
    """Return the pid of the (single) gunicorn worker of a master process."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("worker did not start")


class Stream:
    """One client connection; a greenlet reads it and notes when events arrive."""

    __slots__ = ("sock", "pings", "events", "waiter", "reader", "marker")

    def __init__(self, port: int, path: str, bearer: str | None, source: str,
                 marker: bytes = b"", track: bool = False) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60,
                                             source_address=(source, 0))
        auth = f"Authorization: Bearer {bearer}\r\n" if bearer else ""
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError("connection closed before headers")
            head += chunk
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
        self.sock.settimeout(None)
        self.pings: list[float] | None = [] if track else None
        self.events: list[float] = []
        self.waiter: gevent.event.Event | None = None
        self.marker = marker
        self.reader = gevent.spawn(self._read)

    def _read(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return
                now = time.monotonic()
                if self.pings is not None and (b"ping" in data or b"keep-alive" in data):
                    self.pings.append(now)
                if self.marker and self.marker in data:
                    self.events.append(now)
                    if self.waiter is not None:
                        self.waiter.set()
        except OSError:
            return

    def close(self) -> None:
        self.reader.kill(block=False)
        try:
            self.sock.close()
        except OSError:
            pass


def open_many(count: int, factory, concurrency: int = 200) -> list[Stream]:
    pool = Pool(concurrency)
    streams = pool.map(factory, range(count))
    return streams


def ping_lateness(streams: list[Stream], interval: float, since: float) -> float:
    """Return the worst gap between consecutive pings after ``since``, minus the interval, in ms.

    Only pings after every stream is connected count: while thousands of connections are
    being accepted, the worker is busy with that, not idle.
    """
    worst = 0.0
    for stream in streams:
        pings = [p for p in stream.pings or [] if p >= since]
        for a, b in zip(pings, pings[1:], strict=False):
            worst = max(worst, b - a - interval)
    return worst * 1000


def watcher_stats(log: Path) -> dict[str, float]:
    text = log.read_text(errors="replace")
    found = re.findall(r"stream watcher stats: uptime=([\d.]+)s ticks=(\d+) checks=(\d+) "
                       r"queries=(\d+) peak_streams=(\d+)", text)
    if not found:
        raise RuntimeError(f"no statistics line in {log}")
    uptime, ticks, checks, queries, peak = map(float, found[-1])
    return {"uptime": uptime, "checks": checks, "queries": queries, "peak": peak,
            "per_second": (checks + queries) / uptime}


def hold(port: int, pid: int, n: int, interval: float, path: str,
         bearer: Callable[[int], str | None], name: str) -> tuple[dict[str, float], list[Stream]]:
    """Warm the worker up, then open n streams on it and let them settle.

    Return the connect time, the resident memory per stream and the worst ping lateness
    (keys prefixed with ``name``), and the open streams.
    """
    def connect(i: int, track: bool = False) -> Stream:
        return Stream(port, path, bearer(i), SOURCES[i % len(SOURCES)], track=track)

    for s in open_many(200, connect):
        s.close()
    time.sleep(1)
    before = rss_kb(pid)
    t0 = time.monotonic()
    streams = open_many(n, lambda i: connect(i, track=i % 100 == 0))
    steady = time.monotonic()
    time.sleep(max(3 * interval, 3))
    return {
        f"{name}_connect_s": steady - t0,
        f"{name}_kb": (rss_kb(pid) - before) / n,
        f"{name}_late_ms": ping_lateness([s for s in streams if s.pings is not None], interval,
                                         steady),
    }, streams


def measure_memory(tmp: Path, n: int, interval: float, kind: str) -> dict[str, float]:
    """Open n streams on the bare server and on the service; return KB per stream each."""
    port = free_port()
    bare = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare_stream_server.py"),
                             str(port), str(interval)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, bare)
        results, streams = hold(port, worker_pid(bare.pid), n, interval, "/stream",
                                lambda i: None, "bare")
        for s in streams:
            s.close()
    finally:
        stop(bare)

    log = tmp / "memory.log"
    # Tokens are made before timing; the 200 warm-up streams use the first ones too.
    tokens = [token(f"user-{i}") for i in range(max(n, 200))]
    with fresh_database(kind, tmp, "memory") as db, \
            serving(db, log, JWT_SECRET=SECRET, PING_INTERVAL=str(interval)) as server:
        service, streams = hold(server.port, worker_pid(server.pid), n, interval,
                                "/api/v1/notifications/stream", tokens.__getitem__, "service")
        results.update(service)
        # Idle: nothing is written; the watcher's work is what the log line reports.
        time.sleep(5)
        for s in streams:
            s.close()
    stats = watcher_stats(log)
    results["idle_db_per_s_many"] = stats["per_second"]
    results["idle_queries_many"] = stats["queries"]
    return results


def measure_idle_few(tmp: Path, interval: float, kind: str, few: int = 10,
                     seconds: float = 8) -> dict[str, float]:
    log = tmp / "idle.log"
    with fresh_database(kind, tmp, "idle") as db, \
            serving(db, log, JWT_SECRET=SECRET, PING_INTERVAL=str(interval)) as server:
        streams = [Stream(server.port, "/api/v1/notifications/stream", token(f"user-{i}"),
                          SOURCES[i % len(SOURCES)]) for i in range(few)]
        time.sleep(seconds)
        for s in streams:
            s.close()
    stats = watcher_stats(log)
    return {"idle_db_per_s_few": stats["per_second"], "idle_queries_few": stats["queries"]}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def post(port: int, path: str, bearer: str, body: str = "") -> float:
    """Send one POST on a fresh connection, read the answer; return when it was sent."""
    kind = "Content-Type: application/json\r\n" if body else ""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sent = time.monotonic()
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {bearer}\r\n"
                     f"{kind}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                     f"{body}".encode())
        while sock.recv(65536):
            pass
    return sent


def delivery(stream: Stream, act: Callable[[], float], timeout: float = 5) -> float | None:
    """Return seconds from the moment ``act`` reports to ``stream``'s next marker, or None."""
    stream.waiter = gevent.event.Event()
    try:
        start = act()
        return stream.events[-1] - start if stream.waiter.wait(timeout) else None
    finally:
        stream.waiter = None


def measure_latency(tmp: Path, n: int, samples: int, kind: str) -> dict[str, float]:
    """With n streams open (half dataset, half organization), time commit -> receipt."""
    with fresh_database(kind, tmp, "latency") as db:
        return _measure_latency(db, tmp, n, samples)


def _measure_latency(db: Path | str, tmp: Path, n: int, samples: int) -> dict[str, float]:
    from notifications import create_app
    from notifications.store import inserts

    app = create_app({"DATABASE_URL": database_url(db), "JWT_SECRET": SECRET})
    half = n // 2
    with app.app_context():
        # One unread inbox item per organization user, so a mark-read changes a count.
        inserts.create_notifications({"user_id": f"org-user-{i}", "organization_id": "acme",
                                      "title": "seed"} for i in range(half))

    def write(user: str) -> float:
        """Store one notification from this process; return when it was committed."""
        with app.app_context():
            inserts.create_notifications([{"user_id": user, "title": "bench"}])
        return time.monotonic()

    with serving(db, tmp / "latency.log", JWT_SECRET=SECRET, STREAM_LIMIT="5",
                 INGEST_TOKEN="bench-ingest") as server:
        port = server.port
        dataset = open_many(half, lambda i: Stream(
            port, "/api/v1/notifications/stream", token(f"ds-user-{i}"),
            SOURCES[i % len(SOURCES)], marker=b"event: notification"))
        org = open_many(half, lambda i: Stream(
            port, "/api/v1/org/notifications/stream", token(f"org-user-{i}", "acme"),
            SOURCES[i % len(SOURCES)], marker=b'{"unread": 0}'))
        time.sleep(2)

        other: list[float | None] = []
        for k in range(samples):
            i = (k * 7919) % half
            other.append(delivery(dataset[i], lambda i=i: write(f"ds-user-{i}")))
            # A random pause, so writes are not in step with the watcher's polls.
            gevent.sleep(random.uniform(0.01, 0.3))

        ingest: list[float | None] = []
        for k in range(samples):
            i = (k * 7919 + 1) % half
            ingest.append(delivery(dataset[i], lambda i=i: post(
                port, "/internal/v1/notifications", "bench-ingest",
                f'{{"user_id": "ds-user-{i}", "title": "bench"}}')))
            gevent.sleep(random.uniform(0.01, 0.05))

        same: list[float | None] = []
        for k in range(min(samples, half)):
            i = (k * 7919) % half
            same.append(delivery(org[i], lambda i=i: post(
                port, "/api/v1/org/notifications/mark-read", token(f"org-user-{i}", "acme"))))
            gevent.sleep(0.01)
        for s in dataset + org:
            s.close()
    results: dict[str, float] = {}
    for name, timed in (("other", other), ("same", same), ("ingest", ingest)):
        values = [v for v in timed if v is not None]
        results[f"{name}_n"] = len(values)
        results[f"{name}_p50_ms"] = percentile(values, 50) * 1000
        results[f"{name}_p99_ms"] = percentile(values, 99) * 1000
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--latency-streams", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--ping", type=float, default=3.0, help="ping interval, seconds")
    add_database_option(parser)
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, args.streams * 2 + 1000))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if args.streams + 500 > wanted:
        sys.exit(f"open-file limit {wanted} is too low for {args.streams} streams")

    tmp = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    try:
        memory = measure_memory(tmp, args.streams, args.ping, args.database)
        few = measure_idle_few(tmp, args.ping, args.database)
        latency = measure_latency(tmp, args.latency_streams, args.samples, args.database)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ratio = memory["service_kb"] / memory["bare_kb"] if memory["bare_kb"] > 0 else float("nan")
    rows = [
        ("streams held on one gevent worker", f"{args.streams}", ""),
        ("RSS per stream, bare comment stream", f"{memory['bare_kb']:.1f} KB",
         f"connect {memory['bare_connect_s']:.1f}s, "
         f"worst ping lateness {memory['bare_late_ms']:.0f} ms"),
        ("RSS per stream, /api/v1/notifications/stream", f"{memory['service_kb']:.1f} KB",
         f"{ratio:.2f}x bare; connect {memory['service_connect_s']:.1f}s, "
         f"worst ping lateness {memory['service_late_ms']:.0f} ms"),
        ("DB statements/s, 10 idle streams", f"{few['idle_db_per_s_few']:.2f}",
         f"real queries: {few['idle_queries_few']:.0f} (the rest: PRAGMA data_version on "
         "SQLite; on PostgreSQL a look at the listener's flag, no statement)"),
        (f"DB statements/s, {args.streams} idle streams", f"{memory['idle_db_per_s_many']:.2f}",
         f"real queries: {memory['idle_queries_many']:.0f}"),
        (f"latency, other-process write ({args.latency_streams} streams open)",
         f"p50 {latency['other_p50_ms']:.0f} ms / p99 {latency['other_p99_ms']:.0f} ms",
         f"{latency['other_n']:.0f} samples; dataset streams; poll interval 250 ms"),
        (f"latency, same-process write ({args.latency_streams} streams open)",
         f"p50 {latency['ingest_p50_ms']:.0f} ms / p99 {latency['ingest_p99_ms']:.0f} ms",
         f"{latency['ingest_n']:.0f} samples; ingest API -> dataset streams, from request start"),
        (f"latency, same-process read ({args.latency_streams} streams open)",
         f"p50 {latency['same_p50_ms']:.0f} ms / p99 {latency['same_p99_ms']:.0f} ms",
         f"{latency['same_n']:.0f} samples; mark-read -> organization unread, from request start"),
    ]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'value'.ljust(vwidth)}  notes")
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value.ljust(vwidth)}  {note}")


if __name__ == "__main__":
    main()
