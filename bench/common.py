"""What the bench scripts share: the installed CLI, its environment, and a served database.

Imported as ``common`` by scripts run as ``python bench/<name>.py`` (their folder is first
on ``sys.path``); a script that patches with gevent imports it after patching.
"""
from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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


def environment(db: Path, **settings: str) -> dict[str, str]:
    """Return this process's environment without NOTIFICATIONS_*, pointed at ``db``.

    Each keyword becomes a setting: ``JWT_SECRET="..."`` -> ``NOTIFICATIONS_JWT_SECRET``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFICATIONS_")}
    env["NOTIFICATIONS_DATABASE_URL"] = f"sqlite:///{db}"
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


@dataclass(frozen=True)
class Served:
    """A running ``notifications serve``: its port and its gunicorn master's pid."""

    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serving(db: Path, log: Path, workers: int = 1, **settings: str) -> Iterator[Served]:
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
