"""Shared fixtures: a real Slipway server on a loopback port, databases, and real container tools."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import urllib3

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

ROOT = Path(__file__).resolve().parent.parent
SLIPWAY = [sys.executable, "-m", "slipway.cli"]
ADMIN_PASSWORD = "admin-password-1"
# SLIPWAY_TEST_DATABASE=postgres runs everything against PostgreSQL; the admin URL names a role
# that may create databases (scripts/test.sh sets both).
PG_ADMIN_URL = os.environ.get("SLIPWAY_TEST_PG_ADMIN_URL", "postgresql://slipway:slipway@127.0.0.1:5432/postgres")
USE_PG = os.environ.get("SLIPWAY_TEST_DATABASE", "sqlite") == "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_database_url(data_dir: Path, template_url: str | None = None) -> str:
    """A fresh database for one server or test: SQLite in ``data_dir`` or a new PostgreSQL database;
    empty, or a copy of the one at ``template_url``."""
    if not USE_PG:
        path = data_dir / "slipway.db"
        if template_url:
            shutil.copyfile(template_url[len("sqlite:///"):], path)
        return f"sqlite:///{path}"
    import psycopg2

    name = f"slipway_test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(PG_ADMIN_URL)
    conn.autocommit = True
    with conn.cursor() as cur:
        template = f' TEMPLATE "{template_url.rsplit("/", 1)[1]}"' if template_url else ""
        cur.execute(f'CREATE DATABASE "{name}"{template}')
    conn.close()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def wait_for(condition, timeout: float = 30, what: str = "condition", interval: float = 0.02):
    """Poll ``condition`` until it returns something true (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def staged_bytes(uploads: Path) -> int:
    """How many bytes a server has staged in its upload directory (files may go away meanwhile)."""
    total = 0
    for path in uploads.iterdir():
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            pass
    return total


class FakeClock:
    """A clock for ``slipway.clock.install``: starts at the wall clock's time and moves only when told."""

    def __init__(self, start: float | None = None):
        self.time = time.time() if start is None else start

    def __call__(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds


@pytest.fixture
def clock():
    """A FakeClock every time rule reads (``slipway.clock``, and the database's clock that leases and
    claims compare) for the duration of the test."""
    from slipway import clock as slipway_clock

    fake = FakeClock()
    previous = slipway_clock.install(fake, database=True)
    yield fake
    slipway_clock.install(previous)


# -- db_agnostic: the tests the PostgreSQL run leaves out ----------------------------------------------------
# A test marked ``db_agnostic`` asserts something the choice of database cannot change (parsers, archive
# and config rules, the build sandbox, TLS): it runs in the SQLite run and is deselected in the PostgreSQL
# run, which would only repeat it. The guard below keeps the mark honest: such a test may not ask for a
# fixture that binds this process to the chosen database, its module may not read the choice, and while it
# runs no database connection can be opened in this process and ``SlipwayServer.sql`` refuses. (Servers it
# starts run on SQLite, the only run it is part of.) See docs/ARCHITECTURE.md, Tests.
DATABASE_FIXTURES = {"db", "migrated_template", "clock"}
DATABASE_CHOICE = ("USE_PG", "SLIPWAY_TEST_DATABASE", "PG_ADMIN_URL")
# Whole modules of plain functions (no database, no server); single tests elsewhere carry the mark itself.
DB_AGNOSTIC_MODULES = {
    "builder/test_contexts.py", "builder/test_dockerfile.py", "builder/test_docker_backend.py",
    "builder/test_sandbox_parts.py", "registry/test_error_mapping.py", "registry/test_token_audience.py",
    "scanner/test_feeds.py", "scanner/test_index.py", "scanner/test_match.py", "slipway/test_config.py",
    "slipway/test_layers.py", "slipway/test_redact.py", "slipway/test_rule_homes.py", "triggers/test_rules.py",
    "webhooks/test_email_message.py",
}


def pytest_collection_modifyitems(config, items):
    wrong, sources = [], {}
    for item in items:
        path = Path(str(item.path)).resolve()
        if path.parent.parent == ROOT / "tests" and f"{path.parent.name}/{path.name}" in DB_AGNOSTIC_MODULES:
            item.add_marker(pytest.mark.db_agnostic)
        if item.get_closest_marker("db_agnostic") is None:
            continue
        used = DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))
        if used:
            wrong.append(f"{item.nodeid} uses {sorted(used)}")
        if path not in sources:
            sources[path] = path.read_text()
        read = [name for name in DATABASE_CHOICE if name in sources[path]]
        if read:
            wrong.append(f"{item.nodeid}: its module reads the database choice ({', '.join(read)})")
    if wrong:
        raise pytest.UsageError("tests marked db_agnostic that depend on the database:\n  " + "\n  ".join(wrong))
    if USE_PG:
        keep = [item for item in items if item.get_closest_marker("db_agnostic") is None]
        left_out = [item for item in items if item.get_closest_marker("db_agnostic") is not None]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = keep


@pytest.fixture(autouse=True)
def _db_agnostic_guard(request):
    """While a ``db_agnostic`` test runs, opening a database in this process fails the test."""
    if request.node.get_closest_marker("db_agnostic") is None:
        yield
        return
    import sqlite3

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} is marked db_agnostic but opened a database")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sqlite3, "connect", refuse)
        patch.setattr(SlipwayServer, "sql", refuse)
        try:
            import psycopg2
        except ImportError:
            pass
        else:
            patch.setattr(psycopg2, "connect", refuse)
        yield


_STARTED: list = []


def build_user_can_reach(path: Path) -> None:
    """Build workers run buildah as the unprivileged build user, which must walk down to a server's data
    directory (pytest makes its temporary directories private): make the way traversable, not listable."""
    path = path.resolve()
    while path != path.parent and path != Path("/tmp"):
        path.chmod(path.stat().st_mode | 0o711)
        path = path.parent


@pytest.fixture(scope="session", autouse=True)
def stop_leftover_servers():
    """Servers a failing fixture could not stop are stopped when the session ends."""
    yield
    for srv in _STARTED:
        srv.stop()


class SlipwayServer:
    """A ``slipway serve`` process with its own data directory, database and port."""

    def __init__(self, base: Path, extra_env: dict | None = None, processes: int = 1, tls: bool = False):
        self.place(base, tls)
        # A copy of the session's migrated database: the server finds nothing to migrate (migrating an
        # empty database took a second or two of every server start, more on PostgreSQL). What the first
        # start does on its own (the administrator, the secret key) it still does.
        self.database_url = new_database_url(self.data_dir, migrated_template_url())
        self.env = dict(os.environ)
        self.env.update({
            "SLIPWAY_DATA_DIR": str(self.data_dir),
            "SLIPWAY_DATABASE_URL": self.database_url,
            "SLIPWAY_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "SLIPWAY_SERVER__HOST": "127.0.0.1",
            "SLIPWAY_SERVER__PORT": str(self.port),
            "SLIPWAY_SERVER__PROCESSES": str(processes),
            "PYTHONPATH": str(ROOT),
            "SLIPWAY_BUILDS__STORAGE_ROOT": str(self.build_root),
        })
        if tls:
            self.env["SLIPWAY_SERVER__TLS_SELF_SIGNED"] = "true"
        self.env.update(extra_env or {})
        self.log_path = base / "server.log"
        self.proc = None

    def place(self, base: Path, tls: bool = False) -> None:
        """Its own data directory, build storage and work directories (removed with the test's temporary
        directory) and port."""
        self.data_dir = base / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.build_root = base / "build"
        build_user_can_reach(self.data_dir)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        self.verify = False
    def start(self, timeout: float = 30) -> "SlipwayServer":
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(SLIPWAY + ["serve"], env=self.env, cwd=str(ROOT), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _STARTED.append(self)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slipway exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if requests.get(f"{self.url}/health", timeout=1, verify=False).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"slipway did not start:\n{self.log_text()}")

    def stop(self, sig: int = 15) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(SLIPWAY + list(args), env=self.env, cwd=str(ROOT), input=input, text=True,
                              capture_output=True, check=check, timeout=120)

    def sql(self, statement: str, *params) -> list:
        """Run SQL against the server's database (test setup only; '?' placeholders)."""
        from slipway.db import open_database

        db = open_database(self.database_url)
        try:
            if "postgres" in self.database_url:
                statement = statement.replace("?", "%s")
            cursor = db.execute_sql(statement, params)
            return cursor.fetchall() if cursor.description else []
        finally:
            db.close()

    def encrypt(self, plaintext: str) -> str:
        """What the server stores in an encrypted column (``crypto.EncryptedTextField``) for ``plaintext``:
        for tests that write such rows with ``sql``."""
        from slipway import crypto

        crypto.configure((self.data_dir / "secret.key").read_text().strip())
        return crypto.encrypt(plaintext)

    def create_user(self, name: str, password: str, *extra: str) -> None:
        self.cli("admin", "create-user", name, "--password", password, *extra)

    # -- registry helpers --------------------------------------------------------
    def token(self, scopes: list[str] | str, auth: tuple[str, str] | None = ("admin", ADMIN_PASSWORD)) -> str:
        if isinstance(scopes, str):
            scopes = [scopes]
        r = requests.get(f"{self.url}/v2/auth", params=[("service", self.host)] + [("scope", s) for s in scopes],
                         auth=auth, timeout=30, verify=self.verify)
        r.raise_for_status()
        return r.json()["token"]

    def v2(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("verify", self.verify)
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=60, **kwargs)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = SlipwayServer(tmp_path_factory.mktemp("slipway")).start()
    yield srv
    srv.stop()


_TEMPLATE: dict = {}


@pytest.fixture(scope="session", autouse=True)
def _session_temp(tmp_path_factory):
    """Where ``migrated_template_url`` makes the session's template (servers are made outside fixtures too)."""
    _TEMPLATE["factory"] = tmp_path_factory
    yield


def migrated_template_url() -> str:
    """A database migrated once per session (on first use); every ``db`` and every ``SlipwayServer`` starts
    from a copy of it (migrating took most of an in-process test's time, on PostgreSQL seconds)."""
    if "url" not in _TEMPLATE:
        from slipway import crypto, migrate
        from slipway import db as slipway_db
        from slipway.app import migrations

        crypto.configure("test-secret")  # nothing is encrypted in an empty database: any key will do
        url = new_database_url(_TEMPLATE["factory"].mktemp("template"))
        database = slipway_db.bind(slipway_db.open_database(url))
        migrate.migrate(migrations())
        database.close()  # SQLite folds its write-ahead log into the file; PostgreSQL copies need no session on it
        _TEMPLATE["url"] = url
    return _TEMPLATE["url"]


@pytest.fixture(scope="session")
def migrated_template() -> str:
    return migrated_template_url()


@pytest.fixture
def db(tmp_path, migrated_template):
    """A fresh, migrated database bound in this process, for tests of plain logic without HTTP."""
    from slipway import crypto
    from slipway import db as slipway_db

    crypto.configure("test-secret")  # encrypted columns (as slipway.app.open_db does with the server secret)
    database = slipway_db.bind(slipway_db.open_database(new_database_url(tmp_path, migrated_template)))
    yield database
    database.close()


@pytest.fixture(scope="module")
def set_visibility(server):
    def set_(full_name: str, visibility: str) -> None:
        namespace, name = full_name.split("/", 1)
        server.sql("UPDATE repository SET visibility = ? WHERE name = ? AND namespace_id = "
                   "(SELECT id FROM account WHERE name = ?)", visibility, name, namespace)
    return set_


class ContainerTools:
    """podman, skopeo and buildah with private storage, auth file and an insecure-registry config."""

    def __init__(self, base: Path, registry_host: str):
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.root = base / "storage"
        self.runroot = base / "run"
        self.authfile = base / "auth.json"
        self.authfile.write_text("{}")
        conf = base / "registries.conf"
        conf.write_text(f'[[registry]]\nlocation = "{registry_host}"\ninsecure = true\n')
        self.env = dict(os.environ)
        self.env.update({
            "REGISTRY_AUTH_FILE": str(self.authfile),
            "CONTAINERS_REGISTRIES_CONF": str(conf),
            "STORAGE_DRIVER": "vfs",
            "BUILDAH_ISOLATION": "chroot",
            "TMPDIR": str(base),
        })
        storage_conf = base / "storage.conf"
        storage_conf.write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{self.runroot}"\ngraphroot = "{self.root}"\n')
        self.env["CONTAINERS_STORAGE_CONF"] = str(storage_conf)

    def run(self, tool: str, *args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
        cmd = [tool, *args]
        result = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def podman(self, *args, **kw):
        return self.run("podman", *args, **kw)

    def skopeo(self, *args, **kw):
        return self.run("skopeo", *args, **kw)

    def buildah(self, *args, **kw):
        return self.run("buildah", *args, **kw)


@pytest.fixture
def tools(tmp_path, server):
    base = tmp_path / "containers"
    base.mkdir()
    t = ContainerTools(base, server.host)
    yield t
    shutil.rmtree(base, ignore_errors=True)
