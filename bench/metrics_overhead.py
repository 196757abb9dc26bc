"""What the /metrics instrumentation costs a simple endpoint: wrk on /healthz, metrics on and off.

    python bench/metrics_overhead.py [--rounds 3] [--seconds 5] [--connections 16]

Two servers (one worker each, so both runs measure the same code path) take turns, several
rounds each, so that a noisy neighbour on a shared machine hits both alike; the medians of
requests per second and of the mean latency are compared. On a busy machine the wrk
figures vary more between runs than the difference; the last line times the per-request
instrumentation alone, to compare with the mean latency.
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import serving

SECRET = "bench-secret-0123456789-0123456789-0123456789"


def wrk(url: str, seconds: int, connections: int) -> tuple[float, float]:
    """Return requests per second and mean latency (ms) of one wrk run."""
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"Latency\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    latency = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, latency


def direct_cost(n: int = 100_000) -> float:
    """Return microseconds per request of the instrumentation alone (multiprocess mode)."""
    import os
    import time

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
    from notifications.ops import metrics

    count, latency = metrics.metrics().children("/healthz", "GET", 200)
    started = time.perf_counter()
    for _ in range(n):
        begin = time.perf_counter()
        count.inc()
        latency.observe(time.perf_counter() - begin)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    """Run the comparison and print one line per setting and the difference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (Debian package wrk)")
    results: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        for setting in ("on", "off"):
            (Path(tmp) / setting).mkdir()
        with serving(Path(tmp) / "on" / "n.db", Path(tmp) / "on.log", JWT_SECRET=SECRET,
                     METRICS="on") as on, \
             serving(Path(tmp) / "off" / "n.db", Path(tmp) / "off.log", JWT_SECRET=SECRET,
                     METRICS="off") as off:
            for server in (on, off):  # warm up
                wrk(server.url + "/healthz", 1, args.connections)
            for round_ in range(args.rounds):
                # Each goes first every other round: a load that changes meanwhile hits both.
                order = ((("on", on), ("off", off)) if round_ % 2 == 0
                         else (("off", off), ("on", on)))
                for setting, server in order:
                    results[setting].append(wrk(server.url + "/healthz", args.seconds,
                                                args.connections))
    medians = {}
    for setting, runs in results.items():
        rps = statistics.median(r for r, _ in runs)
        latency = statistics.median(lat for _, lat in runs)
        medians[setting] = rps
        print(f"metrics {setting:3}: {rps:8.0f} req/s  mean latency {latency:.2f} ms  "
              f"(runs: {', '.join(f'{r:.0f}' for r, _ in runs)})")
    cost = (medians["off"] - medians["on"]) / medians["off"] * 100
    print(f"instrumentation cost: {cost:+.1f}% of /healthz throughput")
    print(f"instrumentation alone: {direct_cost():.1f} us per request")


if __name__ == "__main__":
    main()
