"""What the /metrics instrumentation costs a simple endpoint: wrk on /healthz, metrics on and off.

    python bench/metrics_overhead.py [--rounds 3] [--seconds 5] [--connections 16]

Two servers (one worker each, so both runs measure the same code path) take turns, several
rounds each, so that a noisy neighbour on a shared machine hits both alike; the medians of
requests per second and of the mean latency are compared.
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
            for _ in range(args.rounds):
                for setting, server in (("on", on), ("off", off)):
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


if __name__ == "__main__":
    main()
