#!/usr/bin/env python3
"""On-demand benchmark: Slipway's registry against Debian's docker-registry (CNCF distribution 2.8).

One run starts both servers on loopback ports, each with filesystem storage in a
fresh temporary directory, seeds both identically through the API, then measures
every workload against both, back to back, alternating which server goes first:

* manifest GET by tag (1 and 16 keep-alive connections), 1 MiB blob GET
  (4 connections) and tags/list (16 connections) with ``wrk``;
* 10 MiB blob pushes (monolithic and chunked, 2 concurrent) with the Python
  client below, the same code for both servers, fresh random data per push;
* RSS of each server's process tree when idle after seeding, and its peak
  while under load.

Responses are checked (status codes, digests, bytes per response) so a broken
server cannot win. Not a test: run it by hand, e.g.

    .venv/bin/python bench/registry_bench.py --seconds 10 --json /tmp/bench.json
"""
from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import http.client
import json
import os
import platform
import random
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ROOT = Path(__file__).resolve().parent.parent
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_report.lua"
REPO = "admin/bench"
MIB = 1 << 20
LAYER_SIZE = 1 * MIB
PUSH_SIZE = 10 * MIB
CHUNK_SIZE = 2 * MIB
EXTRA_TAGS = 50
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCTETS = {"Content-Type": "application/octet-stream"}
PEER_NAME = "docker-registry 2.8"


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
    """A registry process in its own session and temporary directory, with the headers its clients send."""

    name = ""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.host, self.port = "127.0.0.1", free_port()
        self.headers: dict[str, str] = {}
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
        """Lines of the server's log that report warnings or errors (the harness prints them)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return [line for line in text.splitlines()
                if any(word in line for word in ("WARNING", "ERROR", "Traceback", "level=error", "panic"))]

    def connect(self) -> "Client":
        return Client(self)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


class Slipway(Server):
    name = "Slipway"
    password = "bench-admin-password"

    def __init__(self, workdir: Path, processes: int):
        super().__init__(workdir)
        self.processes = processes

    def command(self):
        env = dict(os.environ, SLIPWAY_DATA_DIR=str(self.workdir / "data"), SLIPWAY_ADMIN_PASSWORD=self.password,
                   SLIPWAY_SERVER__HOST=self.host, SLIPWAY_SERVER__PORT=str(self.port),
                   SLIPWAY_SERVER__PROCESSES=str(self.processes), SLIPWAY_SERVER__ACCESS_LOG="false",
                   SLIPWAY_LOG_LEVEL="warning")
        return [str(ROOT / ".venv" / "bin" / "slipway"), "serve"], env, ROOT

    def ready(self) -> bool:
        return http_get_status(self, "/health") == 200

    def start(self) -> None:
        """Start, then fetch one bearer token (valid 1 h) for every later request."""
        super().start()
        service = f"{self.host}:{self.port}"
        query = urlencode({"service": service, "scope": f"repository:{REPO}:pull,push"})
        basic = base64.b64encode(f"admin:{self.password}".encode()).decode()
        client = self.connect()
        _, body = client.request("GET", f"/v2/auth?{query}", headers={"Authorization": f"Basic {basic}"})
        client.close()
        self.headers = {"Authorization": f"Bearer {json.loads(body)['token']}"}


class DockerRegistry(Server):
    name = PEER_NAME

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
    """One keep-alive HTTP/1.1 connection to a server, sending the server's auth headers every time."""

    def __init__(self, server: Server):
        self.server = server
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=120)

    def request(self, method: str, target: str, body=None, headers=None, expect=(200,)):
        """Send a request to a path or absolute URL; return (response, body) or raise on an unexpected status."""
        parts = urlsplit(target)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.conn.request(method, path, body=body, headers={**self.server.headers, **(headers or {})})
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
    base = f"/v2/{REPO}/blobs/uploads/"
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
        resp, _ = client.request("POST", f"/v2/{REPO}/blobs/uploads/?{urlencode({'digest': sha256(probe)})}",
                                 probe, OCTETS, expect=(201, 202))
        server.single_post = resp.status == 201
        mode = "post" if server.single_post else "post-put"
        for blob in (self.layer, self.config):
            push_blob(client, blob, sha256(blob), mode)
        for tag in self.tags:
            resp, _ = client.request("PUT", f"/v2/{REPO}/manifests/{tag}", self.manifest,
                                     {"Content-Type": OCI_MANIFEST}, expect=(201,))
            if resp.getheader("Docker-Content-Digest") != sha256(self.manifest):
                raise BenchError(f"{server.name}: manifest digest {resp.getheader('Docker-Content-Digest')}")
        client.close()

    def verify(self, server: Server) -> None:
        """What the wrk workloads fetch must come back byte for byte."""
        client = server.connect()
        _, body = client.request("GET", f"/v2/{REPO}/manifests/latest", headers={"Accept": OCI_MANIFEST})
        if body != self.manifest:
            raise BenchError(f"{server.name}: manifest by tag differs from the one pushed")
        _, body = client.request("GET", f"/v2/{REPO}/blobs/{sha256(self.layer)}")
        if body != self.layer:
            raise BenchError(f"{server.name}: layer blob differs from the one pushed")
        _, body = client.request("GET", f"/v2/{REPO}/tags/list")
        if sorted(json.loads(body)["tags"]) != sorted(self.tags):
            raise BenchError(f"{server.name}: tags/list answered {body[:200]!r}")
        client.close()


# -- workloads ---------------------------------------------------------------------------

def run_wrk(server: Server, path: str, connections: int, seconds: int, body_size: int,
            accept: str | None = None) -> dict:
    """One wrk run (1 thread, keep-alive); checks every response was 2xx and about ``body_size`` bytes."""
    headers = {**server.headers, **({"Accept": accept} if accept else {})}
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(WRK_SCRIPT)]
    for key, value in headers.items():
        argv += ["-H", f"{key}: {value}"]
    done = subprocess.run(argv + [server.url(path)], capture_output=True, text=True)
    line = next((l for l in done.stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if done.returncode or line is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stdout} {done.stderr}")
    stats = json.loads(line[len("WRK_JSON "):])
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
    per 10 MiB) happens inside that time, the same for both servers.
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
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    if failures:
        raise BenchError(f"{server.name}: push ({mode}) failed: {failures[0]}")
    verify_pushed(server, pushed)
    return {"pushes": len(pushed), "seconds": wall, "mode": mode,
            "mib_per_s": len(pushed) * PUSH_SIZE / wall / MIB}


def verify_pushed(server: Server, digests: list[str]) -> None:
    """The last pushed blob reads back with its digest; a few others exist with the right size."""
    if not digests:
        raise BenchError(f"{server.name}: no push completed")
    client = server.connect()
    _, body = client.request("GET", f"/v2/{REPO}/blobs/{digests[-1]}")
    if sha256(body) != digests[-1]:
        raise BenchError(f"{server.name}: pushed blob {digests[-1]} reads back as {sha256(body)}")
    for digest in random.sample(digests, min(5, len(digests))):
        resp, _ = client.request("HEAD", f"/v2/{REPO}/blobs/{digest}")
        if resp.getheader("Content-Length") != str(PUSH_SIZE):
            raise BenchError(f"{server.name}: HEAD {digest}: Content-Length {resp.getheader('Content-Length')}")
    client.close()


def workloads(seed: Seed) -> list[tuple[str, str, object]]:
    """(key, table label, measure(server, seconds) -> (figure, details)) for each line of the table."""
    manifest = f"/v2/{REPO}/manifests/latest"
    blob = f"/v2/{REPO}/blobs/{sha256(seed.layer)}"
    tags = f"/v2/{REPO}/tags/list"

    def body_size(server, path):
        """Length of the server's own answer (tags/list JSON is formatted differently by each; verified by Seed)."""
        client = server.connect()
        _, body = client.request("GET", path)
        client.close()
        return len(body)

    def wrk(path, connections, size, unit, accept=None):
        def measure(server, seconds):
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

def machine_facts(args, slipway: Slipway) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    git = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--",
                            ".", ":!bench", ":!docs"],
                           capture_output=True, text=True).stdout.strip()
    peer = subprocess.run(["/usr/bin/docker-registry", "--version"], capture_output=True, text=True).stdout
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "python": platform.python_version(), "slipway_processes": slipway.processes,
        "slipway_commit": git.stdout.strip() + (" (with uncommitted changes)" if dirty else ""),
        "peer_version": peer.strip(), "seconds": args.seconds, "warmup": args.warmup, "rounds": args.rounds,
    }


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def render(facts: dict, lines: list[dict], rss: dict, notes: list[str]) -> str:
    out = [f"Command: `{facts['command']}`",
           f"Date: {facts['date']}; machine: {facts['nproc']} × {facts['cpu']}, Linux {facts['kernel']}, "
           f"Python {facts['python']}; Slipway {facts['slipway_commit']} with {facts['slipway_processes']} "
           f"HTTP processes; peer: {facts['peer_version']}; {facts['seconds']} s per line after "
           f"{facts['warmup']} s warm-up, median of {facts['rounds']} round(s)", "",
           f"| workload | Slipway | {PEER_NAME} | ratio | server CPU cores S / P |",
           "| --- | ---: | ---: | ---: | ---: |"]
    for line in lines:
        cores = " / ".join(f"{line[f'{name} CPU cores']:.2f}" for name in ("Slipway", PEER_NAME))
        out.append(f"| {line['label']} | {line['Slipway']:,.1f} | {line[PEER_NAME]:,.1f} | "
                   f"{ratio(line['Slipway'], line[PEER_NAME])} | {cores} |")
    for key, label in (("idle", "idle RSS after start + seeding (MiB)"), ("peak", "peak RSS under load (MiB)")):
        out.append(f"| {label} | {rss[key]['Slipway']:.1f} | {rss[key][PEER_NAME]:.1f} | "
                   f"{ratio(rss[key]['Slipway'], rss[key][PEER_NAME])} | |")
    out += ["", *notes]
    return "\n".join(out)


def measure_line(index: int, workload, servers: list[Server], args) -> dict:
    """One table line: each round measures both servers back to back, alternating which goes first.

    The figure is the median over the rounds; every round's details are kept.
    """
    key, label, measure = workload
    line = {"key": key, "label": label, "details": {s.name: [] for s in servers}}
    for round_ in range(args.rounds):
        for server in (servers if (index + round_) % 2 == 0 else servers[::-1]):
            os.sync()  # start from a clean page cache: no writeback left over from an earlier push
            measure(server, args.warmup)
            os.sync()
            with CpuShare(server) as cpu:
                figure, details = measure(server, args.seconds)
            details.update(figure=figure, server_cpu_cores=cpu.server_cores, other_cpu_cores=cpu.other_cores)
            line["details"][server.name].append(details)
            print(f"# {label}: {server.name} {figure:,.1f} (server {cpu.server_cores:.2f} cores, "
                  f"other {cpu.other_cores:.2f} cores)", file=sys.stderr)
    for server in servers:
        line[server.name] = statistics.median(d["figure"] for d in line["details"][server.name])
        line[f"{server.name} CPU cores"] = statistics.median(
            d["server_cpu_cores"] for d in line["details"][server.name])
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per workload and server")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds before each measurement")
    parser.add_argument("--rounds", type=int, default=1, help="measurements per line and server; the median is shown")
    parser.add_argument("--slipway-processes", type=int, default=2, help="Slipway HTTP processes (default 2)")
    parser.add_argument("--json", type=Path, help="also save the results as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="slipway-bench-") as tmp:
        slipway = Slipway(Path(tmp) / "slipway", args.slipway_processes)
        peer = DockerRegistry(Path(tmp) / "peer")
        servers = [slipway, peer]
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
            print(f"# Slipway on :{slipway.port}, {PEER_NAME} on :{peer.port}; seeded", file=sys.stderr)
            with PeakRss(servers) as sampler:
                results = [measure_line(index, workload, servers, args) for index, workload in enumerate(workloads(seed))]
            rss["peak"] = sampler.peak
        finally:
            for server in servers:
                server.stop()
        errors = {s.name: s.error_lines() for s in servers}

    noisiest = max(((d["other_cpu_cores"], f"{line['key']}/{name}") for line in results
                    for name, rounds in line["details"].items() for d in rounds), key=lambda pair: pair[0])
    notes = [f"Other CPU on the machine while measuring (other users' processes, kernel threads): "
             f"at most {noisiest[0]:.2f} cores ({noisiest[1]})"
             + ("; figures may be noisy, run again on a quiet machine." if noisiest[0] > 0.2 else ".")]
    if not peer.single_post:
        notes.append(f"[a] {PEER_NAME} answers a POST ?digest= with 202 and drops the body, "
                     "so against it this line uses POST, then PUT ?digest= with the body.")
    for name, lines in errors.items():
        if lines:
            notes.append(f"{name} logged {len(lines)} error line(s), e.g.: {lines[0][:300]}")
    print(render(facts, results, rss, notes))
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "results": results, "rss_mib": rss,
                                         "server_errors": errors, "notes": notes}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
