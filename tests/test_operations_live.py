"""Operating real servers: backups under load, killed workers, reloads, nginx and systemd."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import free_port, notifications_command, require
from test_stream import FAST, SSEClient

INGEST_TOKEN = "ingest-token-for-operations-0123456789"
ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def program(name: str) -> str | None:
    """Find an outside program, also in the sbin directories a user's PATH may lack."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


class Burst:
    """Threads posting ingest batches until stopped; remembers what was acknowledged (201)."""

    def __init__(self, server: Any, threads: int = 2, batch: int = 10, user: str = "burst") -> None:
        self.server = server
        self.batch = batch
        self.user = user
        self.acked: list[tuple[float, str]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {INGEST_TOKEN}"}
        n = 0
        while not self._stop.is_set():
            n += 1
            body = {"notifications": [{"user_id": self.user, "title": f"n{n}-{i}"}
                                      for i in range(self.batch)]}
            try:
                response = session.post(self.server.url("/internal/v1/notifications"),
                                        json=body, headers=headers, timeout=10)
            except requests.RequestException:
                self.errors += 1
                session = requests.Session()
                continue
            if response.status_code == 201:
                at = time.monotonic()
                with self._lock:
                    self.acked.extend((at, i) for i in response.json()["ids"])
            else:
                self.errors += 1

    def acked_before(self, moment: float) -> set[str]:
        with self._lock:
            return {i for at, i in self.acked if at < moment}

    def stop(self) -> set[str]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        return {i for _, i in self.acked}


def stored_ids(path: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM notifications")}
    finally:
        conn.close()


def integrity(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def lease_pids(server: Any, user: str) -> list[int]:
    conn = sqlite3.connect(server.db_path)
    try:
        owners = [r[0] for r in conn.execute("SELECT owner FROM stream_leases WHERE user_id = ?",
                                             (user,))]
    finally:
        conn.close()
    return [int(owner.split(":")[-2]) for owner in owners]


@pytest.mark.slow
def test_backup_under_concurrent_ingest(live_server: Any, tmp_path: Path) -> None:
    server = live_server(workers=2, env={"NOTIFICATIONS_INGEST_TOKEN": INGEST_TOKEN})
    server.cli("seed", "--users", "40", "--per-user", "250", "--random-seed", "1")
    burst = Burst(server)
    time.sleep(1.0)
    started = time.monotonic()
    target = tmp_path / "backup.db"
    result = server.cli("backup", str(target), "--json")
    time.sleep(0.5)
    every = burst.stop()
    before = burst.acked_before(started)
    assert len(before) > 50, "the load did not run"
    assert len(every) > len(before), "nothing was written while the backup ran"
    assert integrity(target) == "ok"
    in_backup = stored_ids(target)
    assert before <= in_backup, f"{len(before - in_backup)} acknowledged notifications missing"
    assert json.loads(result.stdout)["notifications"] == len(in_backup)
    check = server.cli("check", str(target), "--json")
    assert json.loads(check.stdout)["ok"] is True
    # The backup restores into a database a new server can use.
    assert server.cli("restore", str(target), check=False).returncode == 1, \
        "restore must refuse while the server runs"


@pytest.mark.slow
def test_sigkill_of_a_worker_loses_nothing_and_frees_its_stream_slots(live_server: Any) -> None:
    server = live_server(workers=2, env={**FAST, "NOTIFICATIONS_INGEST_TOKEN": INGEST_TOKEN,
                                         "NOTIFICATIONS_STREAM_LIMIT": "4"})
    path = "/api/v1/org/notifications/stream"
    streams = [SSEClient(server.url(path), server.headers("capped", "acme")) for _ in range(4)]
    assert [s.response.status_code for s in streams] == [200] * 4
    for stream in streams:
        stream.next_of("unread")
    over = requests.get(server.url(path), headers=server.headers("capped", "acme"), timeout=5)
    assert over.status_code == 429
    victim = lease_pids(server, "capped")[0]

    burst = Burst(server)
    time.sleep(1.0)
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    while True:
        again = requests.get(server.url(path), headers=server.headers("capped", "acme"),
                             stream=True, timeout=5)
        if again.status_code == 200:
            break
        again.close()
        assert time.monotonic() - killed < 2.0, "the dead worker's stream slots stayed taken"
        time.sleep(0.05)
    recovered = time.monotonic() - killed
    again.close()
    time.sleep(1.0)
    acked = burst.stop()
    for stream in streams:
        stream.close()
    assert recovered < 2.0
    assert len(acked) > 50
    assert victim not in lease_pids(server, "capped")
    missing = acked - stored_ids(server.db_path)
    assert not missing, f"{len(missing)} acknowledged notifications lost"
    assert json.loads(server.cli("check", "--json").stdout)["integrity"] == ["ok"]
    assert "freed" in server.log() and "stream slot" in server.log()


def titles_of(events: list[dict[str, Any]]) -> list[str]:
    return [json.loads(e["data"])["title"] for e in events if e.get("event") == "notification"]


@pytest.mark.slow
def test_reload_during_a_stream_loses_nothing(live_server: Any) -> None:
    server = live_server(workers=2, env={**FAST, "NOTIFICATIONS_INGEST_TOKEN": INGEST_TOKEN})
    url = server.url("/api/v1/notifications/stream")
    sent: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            response = requests.post(server.url("/internal/v1/notifications"),
                                     json={"user_id": "alice", "title": f"t{n}"},
                                     headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
                                     timeout=10)
            if response.status_code == 201:
                sent.append(f"t{n}")
            time.sleep(0.02)

    received: list[str] = []
    last_id: str | None = None
    reconnects = 0
    stream = SSEClient(url, server.headers("alice"))
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    reloaded_at = time.monotonic() + 1.0
    reloaded = False
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        if not reloaded and time.monotonic() >= reloaded_at:
            os.kill(server.proc.pid, signal.SIGHUP)
            reloaded = True
        if reloaded and not stop.is_set() and time.monotonic() > reloaded_at + 3:
            stop.set()
            producer.join(timeout=15)
        try:
            event = stream.next(timeout=1.0, skip=("ping",))
        except AssertionError:
            if stop.is_set() and set(sent) <= set(received):
                break
            continue
        if event.get("closed"):
            reconnects += 1
            headers = {**server.headers("alice"), "Last-Event-ID": last_id or "0"}
            stream = SSEClient(url, headers)
            continue
        if "id" in event:
            last_id = event["id"]
        if event.get("event") == "notification":
            received.append(json.loads(event["data"])["title"])
    stream.close()
    assert reloaded and reconnects >= 1, "the reload did not end the stream"
    assert len(sent) > 20
    assert sorted(set(received)) == sorted(set(sent)), \
        f"missed {sorted(set(sent) - set(received))[:10]}"
    assert len(received) == len(set(received)), "an event was delivered twice"
    assert "Handling signal: hup" in server.log()


# --- systemd ----------------------------------------------------------------------------------


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = program("systemd-analyze")
    require(analyze is not None, "systemd-analyze is not installed (Debian package systemd)")
    unit = (DEPLOY / "notifications.service").read_text()
    assert "Restart=on-failure" in unit and "EnvironmentFile=" in unit
    for option in ("ProtectSystem=strict", "ReadWritePaths=", "NoNewPrivileges=true",
                   "PrivateTmp=true"):
        assert option in unit
    # verify checks that the programs exist: point them at this checkout's console script.
    installed = notifications_command()[0]
    assert "/opt/notifications/.venv/bin/notifications" in unit
    copy = tmp_path / "notifications.service"
    copy.write_text(unit.replace("/opt/notifications/.venv/bin/notifications", installed))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                            timeout=60)
    output = "\n".join(line for line in (result.stdout + result.stderr).splitlines()
                       if "notifications.service" in line)
    assert result.returncode == 0 and not output, output


# --- nginx ------------------------------------------------------------------------------------


class Nginx:
    """nginx on loopback with deploy/nginx.conf in front of ``upstream_port``."""

    def __init__(self, tmp: Path, upstream_port: int, read_timeout: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        prefix = tmp / "nginx"
        (prefix / "logs").mkdir(parents=True)
        site = (DEPLOY / "nginx.conf").read_text()
        for old, new in (("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
                         ("listen 80;", f"listen 127.0.0.1:{self.port};"),
                         ("proxy_read_timeout 60s;", f"proxy_read_timeout {read_timeout};")):
            assert old in site, old
            site = site.replace(old, new)
        (prefix / "site.conf").write_text(site)
        temp = "".join(f"    {kind}_temp_path {prefix}/{kind};\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (prefix / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"worker_processes 1;\npid {prefix}/nginx.pid;\n"
            f"error_log {prefix}/logs/error.log info;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n    access_log {prefix}/logs/access.log;\n{temp}"
            f"    include {prefix}/site.conf;\n}}\n"
        )
        self.prefix = prefix
        self.log_path = prefix / "logs" / "output.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [program("nginx") or "nginx", "-p", str(prefix), "-c",
                 str(prefix / "nginx.conf"), "-g", "daemon off;"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, self.log_path.read_text(errors="replace")
            try:
                if requests.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)

    def url(self, path: str) -> str:
        return self.base_url + path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def proxied(live_server: Any, tmp_path: Path) -> Any:
    require(program("nginx") is not None, "nginx is not installed (Debian package nginx)")
    server = live_server(workers=2, env={
        "NOTIFICATIONS_INGEST_TOKEN": INGEST_TOKEN, "NOTIFICATIONS_POLL_INTERVAL": "0.05",
        "NOTIFICATIONS_KEEPALIVE_INTERVAL": "0.5", "NOTIFICATIONS_PING_INTERVAL": "10",
    })
    proxy = Nginx(tmp_path, server.port, "2s")
    yield server, proxy
    proxy.stop()


def ingest(server: Any, **fields: Any) -> None:
    response = requests.post(server.url("/internal/v1/notifications"), json=fields,
                             headers={"Authorization": f"Bearer {INGEST_TOKEN}"}, timeout=10)
    assert response.status_code == 201, response.text


@pytest.mark.slow
def test_events_pass_nginx_at_once_with_gzip(proxied: Any) -> None:
    server, proxy = proxied
    listed = requests.get(proxy.url("/api/v1/notifications"), timeout=5,
                          headers={**server.headers("alice"), "Accept-Encoding": "gzip"})
    assert listed.status_code == 200
    stream = SSEClient(proxy.url("/api/v1/notifications/stream"),
                       {**server.headers("alice"), "Accept-Encoding": "gzip"})
    assert stream.response.status_code == 200
    assert stream.response.headers.get("Content-Encoding") == "gzip"
    assert stream.next(skip=()).get("retry") == "3000"
    stream.next(skip=())  # the cursor
    for n in range(3):
        sent = time.monotonic()
        ingest(server, user_id="alice", title=f"through nginx {n}")
        event = stream.next(timeout=3)
        assert json.loads(event["data"])["title"] == f"through nginx {n}"
        assert event["at"] - sent < 1.0, "nginx held the event back"
    stream.close()


@pytest.mark.slow
def test_keep_alives_hold_an_idle_stream_past_the_proxy_read_timeout(proxied: Any) -> None:
    server, proxy = proxied
    inbox = SSEClient(proxy.url("/api/v1/org/notifications/stream"),
                      server.headers("alice", "acme"))
    # The dataset stream pings only every 10 s: nginx's 2 s read timeout ends it.
    quiet = SSEClient(proxy.url("/api/v1/notifications/stream"), server.headers("alice"))
    assert inbox.response.status_code == 200 and quiet.response.status_code == 200
    assert json.loads(inbox.next_of("unread")["data"]) == {"unread": 0}
    opened = time.monotonic()
    end = None
    while True:
        event = quiet.next(timeout=8, skip=("ping", "id", "retry"))
        if event.get("closed"):
            end = event["at"]
            break
    assert end is not None and 1.5 < end - opened < 6, "nginx's read timeout did not apply"
    beats = 0
    while time.monotonic() - opened < 5:
        event = inbox.next(timeout=3, skip=())
        assert not event.get("closed"), "the idle stream was cut"
        beats += event.get("comment") == "keep-alive"
    assert beats >= 6
    ingest(server, user_id="alice", organization_id="acme", title="after the quiet")
    assert json.loads(inbox.next_of("unread", timeout=3)["data"]) == {"unread": 1}
    inbox.close()
    quiet.close()


@pytest.mark.slow
def test_retention_runs_in_the_background_of_one_worker(live_server: Any) -> None:
    server = live_server(workers=2, env={
        **FAST, "NOTIFICATIONS_INGEST_TOKEN": INGEST_TOKEN,
        "NOTIFICATIONS_RETENTION": "unread=30d", "NOTIFICATIONS_RETENTION_INTERVAL": "0.3",
    })
    inbox = SSEClient(server.url("/api/v1/org/notifications/stream"), server.headers("old", "acme"))
    assert json.loads(inbox.next_of("unread")["data"]) == {"unread": 0}
    ingest(server, user_id="old", organization_id="acme", title="ancient",
           created_at="2020-01-01T00:00:00Z")
    ingest(server, user_id="old", organization_id="acme", title="recent")
    # The open inbox sees the count go up, then down again when retention deletes the old one.
    counts = [json.loads(inbox.next_of("unread", timeout=5)["data"])["unread"]]
    while counts[-1] != 1 or len(counts) < 2:
        counts.append(json.loads(inbox.next_of("unread", timeout=5)["data"])["unread"])
    inbox.close()
    conn = sqlite3.connect(server.db_path)
    try:
        titles = {row[0] for row in conn.execute(
            "SELECT title FROM notifications WHERE user_id = 'old'")}
    finally:
        conn.close()
    assert titles == {"recent"}
    stats = json.loads(server.cli("stats", "--json").stdout)["retention"]
    assert stats["policy"] == "unread=30d" and stats["deleted"] == 1
    assert stats["deleted_unread"] == 1 and stats["last_run"] is not None
    assert "retention (unread=30d) deleted 1 notification(s)" in server.log()
