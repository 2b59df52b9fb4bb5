#!/usr/bin/env python3
"""On-demand benchmark: Slipway's registry against Debian's docker-registry (CNCF distribution 2.8).

One run starts both servers on loopback ports, each with filesystem storage in a
fresh temporary directory, seeds both identically through the API, then measures
every workload against both, back to back, rotating which server goes first:

* manifest GET by tag (1 and 16 keep-alive connections), 1 MiB blob GET
  (4 connections) and tags/list (16 connections) with ``wrk``;
* 10 MiB blob pushes (monolithic and chunked, 2 concurrent) with the Python
  client below, the same code for both servers, fresh random data per push;
* RSS of each server's process tree when idle after seeding, and its peak
  while under load.

Responses are checked (status codes, digests, bytes per response) so a broken
server cannot win. A measurement during which other processes on the machine
used more than ``--max-other`` CPU cores is repeated (``--retries``), keeping
the quietest attempt. Not a test: run it by hand, e.g.

    .venv/bin/python bench/registry_bench.py --seconds 10 --json /tmp/bench.json

With ``--baseline-rev REV`` (issue 3: "no more than 10 % lost with organizations,
teams and robots in play") the run also checks REV out into a temporary ``git
worktree`` and starts that Slipway as the baseline, with the admin user in its
own namespace as before. The current Slipway then serves an organization
repository instead: the admin seeds it and pushes to it, and every pull workload
is done by a robot account whose only access is a team's read permission. The
table shows HEAD / baseline per line, with the peer alongside.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import hashlib
import http.client
import json
import os
import platform
import random
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ROOT = Path(__file__).resolve().parent.parent
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_report.lua"
ADMIN_REPO = "admin/bench"
ORG, TEAM, ROBOT = "benchorg", "pullers", "reader"
ORG_REPO = f"{ORG}/bench"
MIB = 1 << 20
LAYER_SIZE = 1 * MIB
PUSH_SIZE = 10 * MIB
CHUNK_SIZE = 2 * MIB
EXTRA_TAGS = 50
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCTETS = {"Content-Type": "application/octet-stream"}
PEER_NAME = "docker-registry 2.8"
MAX_LOSS = 0.10  # issue 3: HEAD with organizations in play must reach 0.90 × the baseline on every line


class BenchError(Exception):
    """A server answered wrongly, or a measurement cannot be trusted."""


# -- processes and memory ------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from the parent ids in /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_rss_mib(root: int) -> float:
    """Sum of VmRSS over the process tree of ``root``, in MiB."""
    total_kib = 0
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of the live processes in the tree of ``root``."""
    ticks = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """Non-idle CPU time of the whole machine, from the first line of /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuShare:
    """CPU used while measuring, in cores: by the server's processes, and by anything else on the machine.

    "Other" excludes this harness and the wrk runs it waited for; what remains is
    other users' processes and kernel threads (e.g. writeback), i.e. noise.
    """

    def __init__(self, server: "Server"):
        self.server = server

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self):
        self.start = (time.monotonic(), machine_busy_seconds(), tree_cpu_seconds(self.server.proc.pid), self._own())
        return self

    def __exit__(self, *exc) -> None:
        wall, busy, server, own = (after - before for after, before in zip(
            (time.monotonic(), machine_busy_seconds(), tree_cpu_seconds(self.server.proc.pid), self._own()),
            self.start))
        self.server_cores, self.other_cores = server / wall, max(busy - server - own, 0) / wall


class PeakRss:
    """Samples the RSS of several servers' process trees every ``interval`` seconds, keeping each peak."""

    def __init__(self, servers, interval: float = 0.2):
        self.servers, self.interval = servers, interval
        self.peak = {s.name: 0.0 for s in servers}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for server in self.servers:
                self.peak[server.name] = max(self.peak[server.name], tree_rss_mib(server.proc.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# -- servers -----------------------------------------------------------------------

class Server:
    """A registry process in its own session and temporary directory, with the headers its clients send.

    ``headers`` serve seeding and pushes; ``pull_headers`` the pull workloads
    (manifest and blob GETs, tags/list) and the checks of what they fetch.
    ``short`` abbreviates ``name`` in the table's CPU column.
    """

    name, short = "", ""
    repo = ADMIN_REPO

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.host, self.port = "127.0.0.1", free_port()
        self.headers: dict[str, str] = {}
        self.pull_headers: dict[str, str] = {}
        self.proc: subprocess.Popen | None = None
        self.single_post = False  # does POST ?digest= with a body complete an upload (201)?

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        """argv, environment and working directory of the server."""
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        argv, env, cwd = self.command()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.ready():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise BenchError(f"{self.name} not ready after 30 s: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def error_lines(self) -> list[str]:
        """Lines of the server's log that report warnings or errors, and the exception ending each traceback."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return [line for line in text.splitlines()
                if any(word in line for word in ("WARNING", "ERROR", "Traceback", "level=error", "panic"))
                or re.match(r"[\w.]+(Error|Exception)\b", line)]

    def connect(self, pull: bool = False) -> "Client":
        """A connection sending ``pull_headers`` if ``pull``, else ``headers``."""
        return Client(self, self.pull_headers if pull else self.headers)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


class Slipway(Server):
    """Slipway from a source tree (this checkout, or a worktree of another revision), run with this venv.

    The working directory and PYTHONPATH are the source tree, so its packages are
    imported rather than the editable install's (``check_source`` verifies it).
    The admin user pulls and pushes in its own namespace.
    """

    name, short = "Slipway", "S"
    password = "bench-admin-password"

    def __init__(self, workdir: Path, processes: int, source: Path = ROOT, name: str | None = None,
                 short: str | None = None):
        super().__init__(workdir)
        self.processes, self.source = processes, source
        self.name, self.short = name or self.name, short or self.short

    def command(self):
        env = dict(os.environ, PYTHONPATH=str(self.source), SLIPWAY_DATA_DIR=str(self.workdir / "data"),
                   SLIPWAY_ADMIN_PASSWORD=self.password, SLIPWAY_SERVER__HOST=self.host,
                   SLIPWAY_SERVER__PORT=str(self.port), SLIPWAY_SERVER__PROCESSES=str(self.processes),
                   SLIPWAY_SERVER__ACCESS_LOG="false", SLIPWAY_LOG_LEVEL="warning")
        return [str(ROOT / ".venv" / "bin" / "python"), "-m", "slipway.cli", "serve"], env, self.source

    def check_source(self) -> None:
        """The server's packages come from ``source``, not from the checkout the venv was installed from."""
        argv, env, cwd = self.command()
        probe = "import accounts, registry, slipway; print(accounts.__file__, registry.__file__, slipway.__file__)"
        files = subprocess.run([argv[0], "-c", probe], env=env, cwd=cwd, capture_output=True, text=True,
                               check=True).stdout.split()
        stray = [f for f in files if not Path(f).resolve().is_relative_to(self.source.resolve())]
        if stray:
            raise BenchError(f"{self.name} would import {stray} from outside {self.source}")

    def ready(self) -> bool:
        return http_get_status(self, "/health") == 200

    def start(self) -> None:
        self.check_source()
        super().start()
        self.setup_access()

    def setup_access(self) -> None:
        """One admin bearer token (valid 1 h) for every later request."""
        self.headers = self.pull_headers = self.bearer("admin", self.password, "pull,push")

    def bearer(self, user: str, password: str, actions: str, expect: str | None = None) -> dict[str, str]:
        """Headers with a registry token for ``user`` on ``self.repo``; if ``expect``, check those are the actions granted."""
        query = urlencode({"service": f"{self.host}:{self.port}", "scope": f"repository:{self.repo}:{actions}"})
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        client = Client(self, {"Authorization": f"Basic {basic}"})
        _, body = client.request("GET", f"/v2/auth?{query}")
        client.close()
        token = json.loads(body)["token"]
        if expect is not None:
            payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
            granted = [a for entry in payload["access"] if entry["name"] == self.repo for a in entry["actions"]]
            if granted != expect.split(","):
                raise BenchError(f"{self.name}: {user} was granted {granted} on {self.repo}, expected {expect}")
        return {"Authorization": f"Bearer {token}"}


class RobotSlipway(Slipway):
    """Slipway with organizations: the admin owns ``ORG_REPO``; a robot pulls through a team's read permission.

    Setup goes through the Quay-compatible /api/v1 as the admin: organization,
    team (role member), robot (added to the team), private repository, and the
    team's read permission on it. The robot's token must grant exactly pull.
    """

    repo = ORG_REPO

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        basic = base64.b64encode(f"admin:{self.password}".encode()).decode()
        client = Client(self, {"Authorization": f"Basic {basic}", "Content-Type": "application/json"})
        _, data = client.request(method, f"/api/v1/{path}", None if body is None else json.dumps(body),
                                 expect=(200, 201, 204))
        client.close()
        return json.loads(data) if data else {}

    def setup_access(self) -> None:
        self.api("POST", "organization/", {"name": ORG, "email": "bench@example.com"})
        self.api("PUT", f"organization/{ORG}/team/{TEAM}", {"role": "member"})
        robot_token = self.api("PUT", f"organization/{ORG}/robots/{ROBOT}", {"description": "bench"})["token"]
        self.api("PUT", f"organization/{ORG}/team/{TEAM}/members/{ORG}+{ROBOT}")
        self.api("POST", "repository", {"namespace": ORG, "repository": self.repo.split("/")[1],
                                        "visibility": "private", "description": ""})
        self.api("PUT", f"repository/{self.repo}/permissions/team/{TEAM}", {"role": "read"})
        self.headers = self.bearer("admin", self.password, "pull,push", expect="pull,push")
        self.pull_headers = self.bearer(f"{ORG}+{ROBOT}", robot_token, "pull,push", expect="pull")

    def check_audit(self, pulls: int) -> None:
        """At least ``pulls`` pull_repo entries reached the organization's audit log (flushed each second)."""
        aggregated = self.api("GET", f"organization/{ORG}/aggregatelogs")["aggregated"]
        logged = sum(entry["count"] for entry in aggregated if entry["kind"] == "pull_repo")
        if logged < pulls:
            raise BenchError(f"{self.name}: {logged} pull_repo audit entries for {pulls} measured manifest GETs")


@contextlib.contextmanager
def worktree(rev: str, path: Path):
    """``rev`` checked out (detached) at ``path`` for the duration, then removed from the repository's worktrees."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--quiet", "--detach", str(path), rev], check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=True)


class DockerRegistry(Server):
    name, short = PEER_NAME, "P"

    def command(self):
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: error, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.workdir / 'storage'}}}, delete: {{enabled: true}}, "
            "cache: {blobdescriptor: inmemory}}\n"
            f"http: {{addr: '{self.host}:{self.port}'}}\n")
        return ["/usr/bin/docker-registry", "serve", str(config)], dict(os.environ), self.workdir

    def ready(self) -> bool:
        return http_get_status(self, "/v2/") == 200


def http_get_status(server: Server, path: str) -> int:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=2)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


# -- the Python client (seeding, checks, pushes) -------------------------------------------

class Client:
    """One keep-alive HTTP/1.1 connection to a server, sending the same auth headers every time."""

    def __init__(self, server: Server, headers: dict[str, str]):
        self.server, self.headers = server, headers
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=120)

    def request(self, method: str, target: str, body=None, headers=None, expect=(200,)):
        """Send a request to a path or absolute URL; return (response, body) or raise on an unexpected status."""
        parts = urlsplit(target)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status not in expect:
            raise BenchError(f"{self.server.name}: {method} {path} answered {resp.status}: {data[:300]!r}")
        return resp, data

    def close(self) -> None:
        self.conn.close()


def with_digest(location: str, digest: str) -> str:
    return location + ("&" if "?" in location else "?") + urlencode({"digest": digest})


def push_blob(client: Client, data, digest: str, mode: str) -> None:
    """Push one blob; ``mode``: 'post' (one POST ?digest= with the body), 'post-put' or 'chunked'."""
    base = f"/v2/{client.server.repo}/blobs/uploads/"
    if mode == "post":
        resp, _ = client.request("POST", f"{base}?{urlencode({'digest': digest})}", data, OCTETS, expect=(201,))
    else:
        resp, _ = client.request("POST", base, b"", expect=(202,))
        location = resp.getheader("Location")
        body = data
        if mode == "chunked":
            view = memoryview(data)
            for start in range(0, len(data), CHUNK_SIZE):
                piece = view[start:start + CHUNK_SIZE]
                headers = {**OCTETS, "Content-Range": f"{start}-{start + len(piece) - 1}"}
                resp, _ = client.request("PATCH", location, piece, headers, expect=(202,))
                location = resp.getheader("Location")
            body = b""
        resp, _ = client.request("PUT", with_digest(location, digest), body, OCTETS, expect=(201,))
    answered = resp.getheader("Docker-Content-Digest")
    if answered not in (None, digest):
        raise BenchError(f"{client.server.name}: push of {digest} answered digest {answered}")


_ZEROS = bytes(PUSH_SIZE)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fresh_blob() -> tuple[bytes, str]:
    """New pseudo-random 10 MiB (AES-CTR keystream under a random key, ~5 ms) and its digest."""
    encryptor = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16))).encryptor()
    data = encryptor.update(_ZEROS)
    return data, sha256(data)


class Seed:
    """The same image for both servers: a 1 MiB layer, a config and an OCI manifest, tagged 51 times."""

    def __init__(self):
        self.layer = random.Random(2).randbytes(LAYER_SIZE)
        self.config = json.dumps({"architecture": "amd64", "os": "linux",
                                  "rootfs": {"type": "layers", "diff_ids": [sha256(self.layer)]}}).encode()
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256(self.config), "size": len(self.config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha256(self.layer), "size": len(self.layer)}],
        }, sort_keys=True).encode()
        self.tags = ["latest"] + [f"v{i:03d}" for i in range(EXTRA_TAGS)]

    def push(self, server: Server) -> None:
        """Seed ``server``, learning on the way whether it takes a monolithic POST ?digest= with the body."""
        client = server.connect()
        probe = os.urandom(1024)
        resp, _ = client.request("POST", f"/v2/{server.repo}/blobs/uploads/?{urlencode({'digest': sha256(probe)})}",
                                 probe, OCTETS, expect=(201, 202))
        server.single_post = resp.status == 201
        mode = "post" if server.single_post else "post-put"
        for blob in (self.layer, self.config):
            push_blob(client, blob, sha256(blob), mode)
        for tag in self.tags:
            resp, _ = client.request("PUT", f"/v2/{server.repo}/manifests/{tag}", self.manifest,
                                     {"Content-Type": OCI_MANIFEST}, expect=(201,))
            if resp.getheader("Docker-Content-Digest") != sha256(self.manifest):
                raise BenchError(f"{server.name}: manifest digest {resp.getheader('Docker-Content-Digest')}")
        client.close()

    def verify(self, server: Server) -> None:
        """What the wrk workloads fetch must come back byte for byte, with the headers they send."""
        client = server.connect(pull=True)
        _, body = client.request("GET", f"/v2/{server.repo}/manifests/latest", headers={"Accept": OCI_MANIFEST})
        if body != self.manifest:
            raise BenchError(f"{server.name}: manifest by tag differs from the one pushed")
        _, body = client.request("GET", f"/v2/{server.repo}/blobs/{sha256(self.layer)}")
        if body != self.layer:
            raise BenchError(f"{server.name}: layer blob differs from the one pushed")
        _, body = client.request("GET", f"/v2/{server.repo}/tags/list")
        if sorted(json.loads(body)["tags"]) != sorted(self.tags):
            raise BenchError(f"{server.name}: tags/list answered {body[:200]!r}")
        client.close()


# -- workloads ---------------------------------------------------------------------------

def connections_per_process(port: int) -> list[int]:
    """Established connections to ``port`` per server process (from ``ss``), largest first."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    return sorted(Counter(re.findall(r"pid=(\d+)", out)).values(), reverse=True)


def run_wrk(server: Server, path: str, connections: int, seconds: int, body_size: int,
            accept: str | None = None) -> dict:
    """One wrk run (1 thread, keep-alive) with the server's pull headers.

    Checks every response was 2xx and about ``body_size`` bytes. Halfway
    through, notes how the connections are spread over the server's processes.
    """
    headers = {**server.pull_headers, **({"Accept": accept} if accept else {})}
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(WRK_SCRIPT)]
    for key, value in headers.items():
        argv += ["-H", f"{key}: {value}"]
    wrk = subprocess.Popen(argv + [server.url(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(seconds / 2)
    spread = connections_per_process(server.port)
    stdout, stderr = wrk.communicate()
    line = next((l for l in stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if wrk.returncode or line is None:
        raise BenchError(f"wrk failed ({wrk.returncode}): {stdout} {stderr}")
    stats = json.loads(line[len("WRK_JSON "):])
    stats["connections_per_process"] = spread
    if stats["requests"] == 0 or stats["status"] or stats["timeout"]:
        raise BenchError(f"{server.name}: wrk {path}: {stats}")
    per_response = stats["bytes"] / stats["requests"]
    if not body_size <= per_response <= body_size + 4096:
        raise BenchError(f"{server.name}: wrk {path}: {per_response:.0f} bytes per response, body is {body_size}")
    stats["seconds"] = stats["duration_us"] / 1e6
    stats["req_per_s"] = stats["requests"] / stats["seconds"]
    stats["mib_per_s"] = stats["requests"] * body_size / stats["seconds"] / MIB
    return stats


def run_pushes(server: Server, mode: str, concurrency: int, seconds: float) -> dict:
    """``concurrency`` threads push fresh 10 MiB blobs until ``seconds`` pass; MiB/s over the wall time.

    Each thread starts pushes until the deadline and finishes the one in flight,
    so the wall time runs to the last completed push. Making a payload (~12 ms
    per 10 MiB) happens inside that time, the same for both servers. Halfway
    through, notes how the connections are spread over the server's processes.
    """
    if mode == "post" and not server.single_post:
        mode = "post-put"  # the server answers 202 to a POST ?digest= and drops its body
    pushed: list[str] = []
    failures: list[BaseException] = []
    deadline = time.monotonic() + seconds

    def worker() -> None:
        client = server.connect()
        try:
            while time.monotonic() < deadline:
                data, digest = fresh_blob()
                push_blob(client, data, digest, mode)
                pushed.append(digest)
        except BaseException as exc:  # reported after the join
            failures.append(exc)
        finally:
            client.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(seconds / 2)
    spread = connections_per_process(server.port)
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    if failures:
        raise BenchError(f"{server.name}: push ({mode}) failed: {failures[0]}")
    verify_pushed(server, pushed)
    discard_pushed(server, pushed)
    return {"pushes": len(pushed), "seconds": wall, "mode": mode, "connections_per_process": spread,
            "mib_per_s": len(pushed) * PUSH_SIZE / wall / MIB}


def verify_pushed(server: Server, digests: list[str]) -> None:
    """The last pushed blob reads back with its digest; a few others exist with the right size."""
    if not digests:
        raise BenchError(f"{server.name}: no push completed")
    client = server.connect()
    _, body = client.request("GET", f"/v2/{server.repo}/blobs/{digests[-1]}")
    if sha256(body) != digests[-1]:
        raise BenchError(f"{server.name}: pushed blob {digests[-1]} reads back as {sha256(body)}")
    for digest in random.sample(digests, min(5, len(digests))):
        resp, _ = client.request("HEAD", f"/v2/{server.repo}/blobs/{digest}")
        if resp.getheader("Content-Length") != str(PUSH_SIZE):
            raise BenchError(f"{server.name}: HEAD {digest}: Content-Length {resp.getheader('Content-Length')}")
    client.close()


def discard_pushed(server: Server, digests: list[str]) -> None:
    """Delete the pushed blobs' files from the server's storage, behind its back, to keep the disk from filling.

    10 s of pushing stores 2–4 GB and a 3-round run pushes 50–80 GB. Every push
    has a fresh digest and is checked before this, so nothing reads these files
    again. Both layouts are covered: Slipway's ``blobs/sha256/ab/<hex>`` and
    distribution's ``blobs/sha256/ab/<hex>/data``.
    """
    wanted = {digest.split(":", 1)[1] for digest in digests}
    found = set()
    for dirpath, _, filenames in os.walk(server.workdir):
        for name in filenames:
            hexpart = name if name in wanted else Path(dirpath).name if name == "data" else None
            if hexpart in wanted:
                os.unlink(os.path.join(dirpath, name))
                found.add(hexpart)
    if found != wanted:
        raise BenchError(f"{server.name}: {len(wanted - found)} pushed blob(s) not found in its storage")


def workloads(seed: Seed) -> list[tuple[str, str, object]]:
    """(key, table label, measure(server, seconds) -> (figure, details)) for each line of the table."""
    manifest = "/v2/{repo}/manifests/latest"
    blob = "/v2/{repo}/blobs/" + sha256(seed.layer)
    tags = "/v2/{repo}/tags/list"

    def body_size(server, path):
        """Length of the server's own answer (tags/list JSON is formatted differently by each; verified by Seed)."""
        client = server.connect(pull=True)
        _, body = client.request("GET", path)
        client.close()
        return len(body)

    def wrk(path_template, connections, size, unit, accept=None):
        def measure(server, seconds):
            path = path_template.format(repo=server.repo)
            stats = run_wrk(server, path, connections, seconds, size or body_size(server, path), accept)
            return stats[unit], stats
        return measure

    def push(mode):
        def measure(server, seconds):
            stats = run_pushes(server, mode, 2, seconds)
            return stats["mib_per_s"], stats
        return measure

    return [
        ("manifest_get_c1", "manifest GET by tag, 1 conn (req/s)",
         wrk(manifest, 1, len(seed.manifest), "req_per_s", OCI_MANIFEST)),
        ("manifest_get_c16", "manifest GET by tag, 16 conns (req/s)",
         wrk(manifest, 16, len(seed.manifest), "req_per_s", OCI_MANIFEST)),
        ("blob_get_1mib_c4", "1 MiB blob GET, 4 conns (MiB/s)", wrk(blob, 4, LAYER_SIZE, "mib_per_s")),
        ("push_monolithic", "10 MiB push, monolithic POST ?digest=, 2 concurrent (MiB/s) [a]", push("post")),
        ("push_post_put", "10 MiB push, POST + PUT ?digest= with body, 2 concurrent (MiB/s)", push("post-put")),
        ("push_chunked", "10 MiB push, chunked 5 × 2 MiB PATCH + PUT, 2 concurrent (MiB/s)", push("chunked")),
        ("tags_list_c16", f"tags/list ({len(seed.tags)} tags), 16 conns (req/s)",
         wrk(tags, 16, None, "req_per_s")),
    ]


# -- report ---------------------------------------------------------------------------------

def short_commit(rev: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True, text=True,
                          check=True).stdout.strip()


def machine_facts(args, slipway: Slipway) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--",
                            ".", ":!bench", ":!docs"],
                           capture_output=True, text=True).stdout.strip()
    peer = subprocess.run(["/usr/bin/docker-registry", "--version"], capture_output=True, text=True).stdout
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "python": platform.python_version(), "slipway_processes": slipway.processes,
        "slipway_commit": short_commit("HEAD") + (" (with uncommitted changes)" if dirty else ""),
        "baseline_commit": args.baseline_rev and short_commit(args.baseline_rev),
        "peer_version": peer.strip(), "seconds": args.seconds, "warmup": args.warmup, "rounds": args.rounds,
        "max_other": args.max_other, "retries": args.retries,
    }


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def render(facts: dict, lines: list[dict], rss: dict, notes: list[str], servers: list[Server],
           subject: Server, reference: Server) -> str:
    """Markdown: one column per server, then ``subject`` / ``reference``, then each server's CPU."""
    baseline = (f"; baseline {facts['baseline_commit']} from a temporary git worktree, same settings"
                if facts["baseline_commit"] else "")
    shorts = " / ".join(s.short for s in servers)
    out = [f"Command: `{facts['command']}`",
           f"Date: {facts['date']}; machine: {facts['nproc']} × {facts['cpu']}, Linux {facts['kernel']}, "
           f"Python {facts['python']}; Slipway {facts['slipway_commit']} with {facts['slipway_processes']} "
           f"HTTP processes{baseline}; peer: {facts['peer_version']}; {facts['seconds']} s per line after "
           f"{facts['warmup']} s warm-up, median of {facts['rounds']} round(s)", "",
           f"| workload | {' | '.join(s.name for s in servers)} | ratio {subject.short} / {reference.short} "
           f"| server CPU cores {shorts} |",
           "| --- |" + " ---: |" * (len(servers) + 2)]
    for line in lines:
        figures = " | ".join(f"{line[s.name]:,.1f}" for s in servers)
        cores = " / ".join(f"{line[f'{s.name} CPU cores']:.2f}" for s in servers)
        out.append(f"| {line['label']} | {figures} | {ratio(line[subject.name], line[reference.name])} | {cores} |")
    for key, label in (("idle", "idle RSS after start + seeding (MiB)"), ("peak", "peak RSS under load (MiB)")):
        figures = " | ".join(f"{rss[key][s.name]:.1f}" for s in servers)
        out.append(f"| {label} | {figures} | {ratio(rss[key][subject.name], rss[key][reference.name])} | |")
    out += ["", *notes]
    return "\n".join(out)


def spread_notes(results: list[dict], servers: list[Server]) -> list[str]:
    """How each Slipway's connections were spread over its processes in the multi-connection wrk runs."""
    notes = []
    for server in servers:
        if not isinstance(server, Slipway) or server.processes < 2:
            continue
        runs = []
        for line in results:
            spreads = [d["connections_per_process"] for d in line["details"][server.name]
                       if "connections_per_process" in d and sum(d["connections_per_process"]) > 1]
            if spreads:
                shown = ", ".join("/".join(map(str, s + [0] * (server.processes - len(s)))) for s in spreads)
                runs.append(f"{line['key']} {shown}")
        notes.append(f"{server.name}: connections per process halfway through each run: {'; '.join(runs)}.")
    return notes


def target_note(results: list[dict], head: Server, baseline: Server) -> str:
    """Issue 3: does HEAD reach (1 - MAX_LOSS) × the baseline on every throughput line?"""
    floor = 1 - MAX_LOSS
    missed = [f"{line['label']} ({line[head.name] / line[baseline.name]:.2f})" for line in results
              if line[head.name] < floor * line[baseline.name]]
    if not missed:
        return f"Target {head.short} ≥ {floor:.2f} × {baseline.short}: met on every throughput line."
    return f"Target {head.short} ≥ {floor:.2f} × {baseline.short}: MISSED on {'; '.join(missed)}."


def measure_once(label: str, measure, server: Server, args) -> dict:
    """Warm up, then measure; while other CPU on the machine exceeds ``--max-other``, try again
    (up to ``--retries`` times) and keep the quietest attempt."""
    attempts = []
    for _ in range(1 + args.retries):
        os.sync()  # start from a clean page cache: no writeback left over from an earlier push
        measure(server, args.warmup)
        os.sync()
        with CpuShare(server) as cpu:
            figure, details = measure(server, args.seconds)
        details.update(figure=figure, server_cpu_cores=cpu.server_cores, other_cpu_cores=cpu.other_cores)
        attempts.append(details)
        spread = "/".join(map(str, details.get("connections_per_process", [])))
        print(f"# {label}: {server.name} {figure:,.1f} (server {cpu.server_cores:.2f} cores, "
              f"other {cpu.other_cores:.2f} cores{', connections ' + spread if spread else ''})", file=sys.stderr)
        if cpu.other_cores <= args.max_other:
            break
    quietest = min(attempts, key=lambda d: d["other_cpu_cores"])
    quietest["attempts"] = len(attempts)
    return quietest


def measure_line(index: int, workload, servers: list[Server], args) -> dict:
    """One table line: each round measures every server back to back, rotating which goes first.

    The figure is the median over the rounds; every round's details are kept.
    """
    key, label, measure = workload
    line = {"key": key, "label": label, "details": {s.name: [] for s in servers}}
    for round_ in range(args.rounds):
        first = (index + round_) % len(servers)
        for server in servers[first:] + servers[:first]:
            line["details"][server.name].append(measure_once(label, measure, server, args))
    for server in servers:
        line[server.name] = statistics.median(d["figure"] for d in line["details"][server.name])
        line[f"{server.name} CPU cores"] = statistics.median(
            d["server_cpu_cores"] for d in line["details"][server.name])
    return line


def manifest_gets(results: list[dict], server: Server) -> int:
    """Manifest GETs wrk completed against ``server`` in the measured runs (warm-ups not counted)."""
    return sum(d["requests"] for line in results if line["key"].startswith("manifest_get")
               for d in line["details"][server.name])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per workload and server")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds before each measurement")
    parser.add_argument("--rounds", type=int, default=1, help="measurements per line and server; the median is shown")
    parser.add_argument("--max-other", type=float, default=0.25,
                        help="measure again when other processes used more CPU cores than this (default 0.25)")
    parser.add_argument("--retries", type=int, default=2, help="how often to measure again at most (default 2)")
    parser.add_argument("--slipway-processes", type=int, default=2, help="Slipway HTTP processes (default 2)")
    parser.add_argument("--baseline-rev", metavar="REV",
                        help="also run Slipway at REV (admin user) and compare HEAD with a robot pulling via a team")
    parser.add_argument("--json", type=Path, help="also save the results as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="slipway-bench-") as tmp, contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        peer = DockerRegistry(tmp / "peer")
        if args.baseline_rev:
            source = stack.enter_context(worktree(args.baseline_rev, tmp / "baseline-src"))
            baseline = Slipway(tmp / "baseline", args.slipway_processes, source=source,
                               name=f"baseline ({short_commit(args.baseline_rev)})", short="B")
            slipway = RobotSlipway(tmp / "head", args.slipway_processes, name="HEAD, robot via team", short="H")
            servers, reference = [baseline, slipway, peer], baseline
        else:
            slipway = Slipway(tmp / "slipway", args.slipway_processes)
            servers, reference = [slipway, peer], peer
        try:
            for server in servers:
                server.workdir.mkdir()
                server.start()
            seed = Seed()
            for server in servers:
                seed.push(server)
                seed.verify(server)
            time.sleep(1)
            rss = {"idle": {s.name: tree_rss_mib(s.proc.pid) for s in servers}}
            facts = machine_facts(args, slipway)
            print("# " + ", ".join(f"{s.name} on :{s.port}" for s in servers) + "; seeded", file=sys.stderr)
            with PeakRss(servers) as sampler:
                results = [measure_line(index, workload, servers, args) for index, workload in enumerate(workloads(seed))]
            rss["peak"] = sampler.peak
            if args.baseline_rev:
                slipway.check_audit(manifest_gets(results, slipway))
        finally:
            for server in servers:
                server.stop()
            errors = {s.name: s.error_lines() for s in servers}
            for name, lines in errors.items():  # here, so a failed run shows them before the logs are deleted
                for line in lines[:40]:
                    print(f"# {name} log: {line}", file=sys.stderr)

    noisiest = max(((d["other_cpu_cores"], f"{line['key']}/{name}") for line in results
                    for name, rounds in line["details"].items() for d in rounds), key=lambda pair: pair[0])
    repeated = sum(d["attempts"] - 1 for line in results for rounds in line["details"].values() for d in rounds)
    notes = [f"Other CPU on the machine while measuring (other users' processes, kernel threads): "
             f"at most {noisiest[0]:.2f} cores ({noisiest[1]}), after {repeated} noisy measurement(s) were repeated"
             + ("; figures may be noisy, run again on a quiet machine." if noisiest[0] > args.max_other else ".")]
    if args.baseline_rev:
        notes.append(target_note(results, slipway, reference))
        notes.append(f"{slipway.short}: pulls by robot {ORG}+{ROBOT} (team {TEAM}, read) from private {ORG_REPO}; "
                     f"seeding and pushes by the admin; every measured manifest GET found in the audit log.")
    if not peer.single_post:
        notes.append(f"[a] {PEER_NAME} answers a POST ?digest= with 202 and drops the body, "
                     "so against it this line uses POST, then PUT ?digest= with the body.")
    notes += spread_notes(results, servers)
    for name, lines in errors.items():
        if lines:
            notes.append(f"{name} logged {len(lines)} error line(s), e.g.: {lines[0][:300]}")
    print(render(facts, results, rss, notes, servers, slipway, reference))
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "results": results, "rss_mib": rss,
                                         "server_errors": errors, "notes": notes}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
