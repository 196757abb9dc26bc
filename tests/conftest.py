"""Shared fixtures: a fresh database per test, tokens, the CLI runner and real servers."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from cli import AppContext, cli
from notifications import create_app
from notifications.extension import state
from notifications.store import inserts
from notifications.store.rows import now_us

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
DATASET = "a981fc0c-2d1f-11f1-a7ca-d2580fa2deac"
OTHER_DATASET = "0c5c7fd0-a6a3-4450-a513-270e269e0d37"
#: Set (as .ci/run does) to turn every "service not available" skip into a failure.
STRICT_ENV = "NOTIFICATIONS_TEST_REQUIRE_SERVICES"


def require(condition: bool, reason: str) -> None:
    """Skip with a visible reason when an outside service is missing (fail in CI)."""
    if condition:
        return
    if os.environ.get(STRICT_ENV):
        pytest.fail(f"{reason} ({STRICT_ENV} is set, so this cannot be skipped)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _alone_when_slow(request: pytest.FixtureRequest,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run a ``slow`` test (load and fault tests, which measure time) with nothing beside it.

    The suite runs in two processes at once (pytest-xdist, see setup.cfg). Every test holds a
    shared lock while it runs; a slow one holds it exclusively, so the other process waits
    until it is done. A test about to wait for the exclusive lock first takes the turnstile,
    which every test passes through before its own lock, so it is not starved by a stream of
    short tests. Without xdist the locks are uncontended.
    """
    import fcntl

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of one run
    alone = request.node.get_closest_marker("slow") is not None
    with open(root / "turnstile.lock", "a") as turnstile, open(root / "run.lock", "a") as run:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(run, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(run, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the developer's own NOTIFICATIONS_* settings and data directory out of the tests."""
    for name in list(os.environ):
        if name.startswith("NOTIFICATIONS_") and name != STRICT_ENV:
            monkeypatch.delenv(name)
    # Anything that falls back to the default database location (this process or the
    # servers and commands it starts) writes under the test's own directory, never
    # into the developer's ~/.local/share.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


#: The PostgreSQL server the PostgreSQL cases run against (a run creates a database of its own
#: there and drops it at the end).
POSTGRES_SERVER = os.environ.get("NOTIFICATIONS_TEST_POSTGRES",
                                 "postgresql://postgres@127.0.0.1:5432/postgres")
#: The databases a module marked ``both_databases`` runs its tests on.
BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test of a module marked ``both_databases`` on SQLite and on PostgreSQL."""
    if ("backend" in metafunc.fixturenames
            and metafunc.definition.get_closest_marker("both_databases")
            and not metafunc.definition.get_closest_marker("sqlite_only")):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The database of this test: ``sqlite``, or ``postgresql`` when parametrised so."""
    return str(getattr(request, "param", "sqlite"))


class PostgresDatabase:
    """A database of this run on the PostgreSQL server; each test gets a schema of its own."""

    def __init__(self) -> None:
        import psycopg

        self.psycopg = psycopg
        self.name = f"ntf_test_{os.getpid()}_{int(time.time())}"
        self.error: str | None = None
        self.count = 0
        try:
            with psycopg.connect(POSTGRES_SERVER, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
        except psycopg.Error as exc:
            self.error = (f"no PostgreSQL server at {POSTGRES_SERVER} "
                          f"(set NOTIFICATIONS_TEST_POSTGRES): {str(exc).strip()}")
        base = POSTGRES_SERVER.rsplit("/", 1)[0]
        self.conninfo = f"{base}/{self.name}"

    def new_url(self) -> str:
        """Create an empty schema and return the service URL whose search path is it."""
        require(self.error is None, self.error or "")
        self.count += 1
        schema = f"t{self.count}"
        with self.psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = self.conninfo.replace("postgresql://", "postgresql+psycopg://", 1)
        return f"{url}?options=-csearch_path%3D{schema}"

    def drop(self) -> None:
        if self.error is None:
            with self.psycopg.connect(POSTGRES_SERVER, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabase]:
    database = PostgresDatabase()
    yield database
    database.drop()


def new_database_url(backend: str, path: Path, request: pytest.FixtureRequest) -> str:
    """Return the URL of a new, empty database of ``backend`` (a file at ``path`` for SQLite)."""
    if backend == "sqlite":
        return f"sqlite:///{path}"
    postgres_database: PostgresDatabase = request.getfixturevalue("postgres")
    return postgres_database.new_url()


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return new_database_url(backend, tmp_path / "notifications.db", request)


class RawConnection:
    """A plain DB-API connection to a service database, outside the service.

    What a ``sqlite3`` shell or a ``psql`` session is to an administrator: tests write
    through it to show that the database itself (its triggers) does what the service
    promises, whoever writes. Statements take ``?`` placeholders on both databases. Used as a
    context manager it commits at the end, like ``sqlite3``'s connections.
    """

    def __init__(self, url: str, *, autocommit: bool = False) -> None:
        self.postgresql = url.startswith("postgresql")
        if self.postgresql:
            import psycopg
            from sqlalchemy.engine import make_url

            parsed = make_url(url)
            options = parsed.query.get("options")
            self.conn: Any = psycopg.connect(
                parsed.set(drivername="postgresql", query={})
                .render_as_string(hide_password=False),
                autocommit=autocommit, **({"options": options} if options else {}))
        else:
            import sqlite3

            self.conn = sqlite3.connect(url[len("sqlite:///"):],
                                        isolation_level=None if autocommit else "")

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if self.postgresql:
            if not params:
                return self.conn.execute(sql)
            sql = sql.replace("%", "%%").replace("?", "%s")
        return self.conn.execute(sql, params)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Run ``sql`` and return its rows as dicts."""
        cursor = self.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]

    def begin_write(self) -> None:
        """Open a transaction that writes (``BEGIN IMMEDIATE`` on SQLite)."""
        self.execute("BEGIN" if self.postgresql else "BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        try:
            if kind is None:
                self.conn.commit()
            else:
                self.conn.rollback()
        finally:
            self.conn.close()


def raw_connect(app: Any, *, autocommit: bool = False) -> RawConnection:
    """A :class:`RawConnection` to ``app``'s database."""
    return RawConnection(app.config["SQLALCHEMY_DATABASE_URI"], autocommit=autocommit)


@pytest.fixture
def app_config(db_url: str) -> dict[str, Any]:
    """Settings for the test app; tests may change them before asking for ``app``."""
    return {"DATABASE_URL": db_url, "JWT_SECRET": SECRET, "TESTING": True}


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Any]:
    application = create_app(app_config)
    yield application
    state(application).store.close()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


class Runner:
    """Invoke the click CLI against the test app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.runner = CliRunner()

    def invoke(self, *args: str, input: str | None = None) -> Any:
        return self.runner.invoke(cli, list(args), obj=AppContext(self.app), input=input,
                                  catch_exceptions=False)


@pytest.fixture
def runner(app: Any) -> Runner:
    return Runner(app)


class Auth:
    """Mint tokens and headers for test users."""

    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret

    def token(self, user: str = "alice", org: str | None = None, **claims: Any) -> str:
        import jwt

        now = int(time.time())
        payload: dict[str, Any] = {"sub": user, "iat": now, "exp": now + 600}
        if org is not None:
            payload["organization_id"] = org
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, self.secret, algorithm="HS256")

    def headers(self, user: str = "alice", org: str | None = None, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, org, **claims)}"}


@pytest.fixture
def auth() -> Auth:
    return Auth()


@pytest.fixture
def make(app: Any) -> Any:
    """Store notifications directly: ``make(user="alice", n=3, **fields)`` -> stored rows."""

    def _make(user: str = "alice", n: int = 1, **fields: Any) -> list[dict[str, Any]]:
        with app.app_context():
            return inserts.create_notifications({"user_id": user, **fields} for _ in range(n))

    return _make


def active_leases(user_id: str, kind: str | None = None) -> int:
    """Count a user's unexpired stream leases (of one kind, or of every kind)."""
    from sqlalchemy import func, select

    from notifications.store import reading
    from notifications.store.models import stream_leases as leases

    conditions = [leases.c.user_id == user_id, leases.c.expires_at > now_us()]
    if kind is not None:
        conditions.append(leases.c.kind == kind)
    with reading() as conn:
        return conn.execute(
            select(func.count()).select_from(leases).where(*conditions)
        ).scalar_one()


@pytest.fixture(scope="session")
def built_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the package as a non-editable install would (``build_py``); return its folder."""
    target = tmp_path_factory.mktemp("build")
    result = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py",
         "-d", str(target)],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return target / "notifications"


# --- real servers ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def notifications_command() -> list[str]:
    """The installed ``notifications`` console script, as a user runs it."""
    script = Path(sys.executable).with_name("notifications")
    if script.exists():
        return [str(script)]
    found = shutil.which("notifications")
    return [found] if found else [sys.executable, "-m", "cli"]


class LiveServer:
    """``notifications serve`` in a subprocess on a free port, with its own database."""

    def __init__(self, tmp: Path, workers: int = 2, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), preexec_fn: Any = None,
                 db_url: str | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.db_path = tmp / "live.db"
        self.db_url = db_url or f"sqlite:///{self.db_path}"
        self.log_path = tmp / f"server-{self.port}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFICATIONS_")},
            "NOTIFICATIONS_DATABASE_URL": self.db_url,
            "NOTIFICATIONS_JWT_SECRET": SECRET,
            **(env or {}),
        }
        self.auth = Auth(self.env["NOTIFICATIONS_JWT_SECRET"])
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [*notifications_command(), "serve", "--port", str(self.port), "--workers",
             str(workers), *args],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=preexec_fn,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        try:
            wait_healthy(self.base_url, self.proc, self.log_path, timeout)
        except AssertionError:
            self.stop()
            raise

    def url(self, path: str) -> str:
        return self.base_url + path

    def headers(self, user: str = "alice", org: str | None = None, **claims: Any) -> dict[str, str]:
        return self.auth.headers(user, org, **claims)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the CLI as a separate process against this server's database."""
        result = subprocess.run([*notifications_command(), *args], env=self.env,
                                capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"CLI {args} failed: {result.stderr}")
        return result

    def raw(self, *, autocommit: bool = False) -> RawConnection:
        """A plain connection to this server's database (see :class:`RawConnection`)."""
        return RawConnection(self.db_url, autocommit=autocommit)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_group(self.proc)
        self._log.close()


@pytest.fixture
def live_server(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Factory: ``live_server(workers=2, env={...})`` starts a real server, stopped after.

    Its database is a new one of the test's backend (``db_url=`` shares one instead).
    """
    servers: list[LiveServer] = []

    def start(workers: int = 2, env: dict[str, str] | None = None,
              args: tuple[str, ...] = (), preexec_fn: Any = None,
              db_url: str | None = None) -> LiveServer:
        if db_url is None and backend != "sqlite":
            db_url = new_database_url(backend, tmp_path / "live.db", request)
        server = LiveServer(tmp_path, workers=workers, env=env, args=args, preexec_fn=preexec_fn,
                            db_url=db_url)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def wait_healthy(base_url: str, proc: subprocess.Popen[bytes], log_path: Path,
                 timeout: float = 30) -> None:
    """Wait until ``base_url``'s /healthz answers 200; fail with the log if ``proc`` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text(errors="replace")
        try:
            if requests.get(base_url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(
        f"{base_url} did not become ready:\n{log_path.read_text(errors='replace')}"
    )


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """End a process started with ``start_new_session=True`` and its children: TERM, then KILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
