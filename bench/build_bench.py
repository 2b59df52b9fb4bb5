#!/usr/bin/env python3
"""On-demand benchmark of Slipway's builds (issue 4). Not a test: run it by hand, e.g.

    .venv/bin/python bench/build_bench.py --reps 5 --json /tmp/build-bench.json

One run starts Slipway (SQLite, filesystem storage) in a fresh temporary
directory, pushes a busybox base image into it (made locally, no internet), and
measures:

1. the same context built and pushed by Slipway (multipart upload, wall time
   from the build request to phase ``complete``) and by plain ``buildah bud`` +
   ``buildah push`` into the same registry, alternating which goes first. Every
   build's Dockerfile has a unique LABEL before its steps, so nothing after FROM
   is ever a cache hit on either side; both sides have the base image in their
   local storage already (a warm-up build of each, not measured, pulled it).
   Two diagnostic lines (no target; --no-diagnostics skips them) say where
   Slipway's extra time goes: plain ``buildah bud --layers``, and plain buildah
   with exactly Slipway's flags (``--layers --cache-from/--cache-to`` a cache
   repository in the same registry);
2. request -> buildah starting: from the build POST returning to the first
   ``buildah`` process of the worker (and to ``buildah bud``), seen by polling
   /proc for new processes every 2 ms; the ``pulling``/``building`` phase entry
   timestamps are reported next to it;
3. live log latency: 50 Server-Sent-Events clients follow one build whose RUN
   prints a line every ~100 ms with the wall-clock time it was printed
   (``busybox adjtimex``, microseconds; busybox ``date`` has no %N); each client
   takes ``receive time - printed time`` for every line;
4. the RSS of a ``slipway worker`` process (its own, not buildah's), idle and
   at its peak during builds (sampled every 50 ms).

1-3 run with the build worker in the ``slipway serve`` process; 2-4 again with
``SLIPWAY_BUILDS__WORKERS=0`` and a separate ``slipway worker`` process.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import io
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from registry_bench import BenchError, Sampler, free_port, machine_busy_seconds, slipway_commit, stop_group  # noqa: E402

from tests.images import make_oci_layout  # noqa: E402

PASSWORD = "bench-admin-password"
TERMINAL = ("complete", "error", "internalerror", "cancelled", "expired")
SSE_CLIENTS = 50
TICKS = 100
# A line every ~100 ms, stamped with the wall clock in microseconds just before it is printed.
TICK_SCRIPT = ("i=0; while [ $i -lt %d ]; do "
               "t=$(busybox adjtimex | busybox awk '/tv_sec/{s=$2} /tv_usec/{u=$2} END{printf \"%%d.%%06d\", s, u}'); "
               "echo \"tick $i $t\"; i=$((i+1)); busybox sleep 0.1; done") % TICKS


# -- processes -------------------------------------------------------------------------------------------

def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


class Proc:
    """A process in its own session (so its whole group can be stopped), output to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict, log_path: Path):
        self.name, self.log_path = name, log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop_group(self.proc, term_wait=15)


class Slipway:
    """``slipway serve`` (with or without in-process build workers) and, optionally, a ``slipway worker``."""

    def __init__(self, workdir: Path, port: int, access_log: bool = False, storage_driver: str = "vfs"):
        self.workdir, self.port, self.access_log = workdir, port, access_log
        self.storage_driver = storage_driver
        self.host = f"127.0.0.1:{port}"
        self.url = f"http://{self.host}"
        self.data = workdir / "data"
        self.buildah_root = (self.data / "buildah").resolve()
        self.serve: Proc | None = None
        self.worker: Proc | None = None
        self.session = requests.Session()
        self.session.auth = ("admin", PASSWORD)
        self.log_paths = [workdir / "serve.log", workdir / "worker.log"]

    def env(self, workers: int) -> dict:
        return dict(os.environ, PYTHONPATH=str(ROOT), SLIPWAY_DATA_DIR=str(self.data),
                    SLIPWAY_ADMIN_PASSWORD=PASSWORD, SLIPWAY_SERVER__HOST="127.0.0.1",
                    SLIPWAY_SERVER__PORT=str(self.port), SLIPWAY_SERVER__ACCESS_LOG=str(self.access_log).lower(),
                    SLIPWAY_LOG_LEVEL="info" if self.access_log else "warning", SLIPWAY_BUILDS__WORKERS=str(workers),
                    SLIPWAY_BUILDS__ISOLATION="chroot", SLIPWAY_BUILDS__STORAGE_DRIVER=self.storage_driver)

    def start(self, separate_worker: bool) -> None:
        python = str(ROOT / ".venv" / "bin" / "python")
        self.serve = Proc("serve", [python, "-m", "slipway.cli", "serve"], self.env(0 if separate_worker else 1),
                          self.log_paths[0])
        deadline = time.monotonic() + 60
        while True:
            if self.serve.proc.poll() is not None:
                raise BenchError(f"slipway serve exited with {self.serve.proc.returncode}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise BenchError("slipway serve not ready after 60 s")
            time.sleep(0.1)
        if separate_worker:
            self.worker = Proc("worker", [python, "-m", "slipway.cli", "worker"],
                               dict(self.env(1), SLIPWAY_SERVER__PUBLIC_URL=self.url), self.log_paths[1])
            time.sleep(3)  # imports, database, first claim poll
            if self.worker.proc.poll() is not None:
                raise BenchError(f"slipway worker exited with {self.worker.proc.returncode}")

    def stop(self) -> None:
        for proc in (self.worker, self.serve):
            if proc is not None:
                proc.stop()
        self.worker = self.serve = None

    @property
    def worker_pid(self) -> int:
        return (self.worker or self.serve).pid

    def api(self, method: str, path: str, expect=(200, 201), **kwargs):
        r = self.session.request(method, f"{self.url}/api/v1{path}", timeout=120, **kwargs)
        if r.status_code not in expect:
            raise BenchError(f"{method} {path} answered {r.status_code}: {r.text[:300]}")
        return r.json() if r.content else None

    def log_errors(self) -> list[str]:
        out = []
        for path in self.log_paths:
            if path.exists():
                out += [f"{path.name}: {line}" for line in path.read_text(errors="replace").splitlines()
                        if any(w in line for w in ("WARNING", "ERROR", "Traceback", "Exception", "CRITICAL"))
                        and "tornado.access" not in line]
        return out


# -- contexts ---------------------------------------------------------------------------------------------

def work_dockerfile(base: str) -> str:
    """A few steps of real work: a COPY, writing and compressing a few MB, checksums, an archive."""
    return "\n".join([
        f"FROM {base}",
        'LABEL bench.run="{run}"',
        "COPY files/ /data/files/",
        'RUN ["/bin/busybox", "sh", "-c", "busybox mkdir -p /work && busybox dd if=/dev/urandom '
        'of=/work/random.bin bs=1M count=6 2>&1 && busybox sha256sum /work/random.bin /data/files/*"]',
        'RUN ["/bin/busybox", "sh", "-c", "busybox seq 1 400000 | busybox gzip -9 > /work/seq.gz && '
        'busybox gzip -c /work/random.bin > /work/random.gz && busybox ls -l /work"]',
        'RUN ["/bin/busybox", "sh", "-c", "busybox tar -cf - /data/files | busybox gzip -9 > /work/files.tgz && '
        'busybox rm /work/random.bin && busybox du -sk /work /data"]',
        'CMD ["/bin/busybox", "sh"]',
        "",
    ])


def tick_dockerfile(base: str) -> str:
    return "\n".join([f"FROM {base}", 'LABEL bench.run="{run}"',
                      f"RUN {TICK_SCRIPT}", ""])


class Context:
    """A build context (Dockerfile + files) with a fresh unique LABEL each time it is made."""

    def __init__(self, dockerfile_template: str, with_files: bool):
        self.template = dockerfile_template
        self.files = {}
        if with_files:
            rng = random.Random(4)
            for i in range(4):  # ~1 MiB each: half random, half text
                text = "".join(f"line {j} of file {i}: {rng.random()}\n" for j in range(14000)).encode()
                self.files[f"files/f{i}.dat"] = rng.randbytes(512 * 1024) + text[:512 * 1024]

    def make(self) -> tuple[str, dict[str, bytes]]:
        run = uuid.uuid4().hex
        return run, {"Dockerfile": self.template.replace("{run}", run).encode(), **self.files}

    @staticmethod
    def tar_gz(files: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    @staticmethod
    def write(files: dict[str, bytes], directory: Path) -> None:
        for name, data in files.items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


# -- watching the worker's processes ----------------------------------------------------------------------

class BuildahWatch(Sampler):
    """Polls /proc every ``interval`` s for new processes: the first ``buildah`` of Slipway's storage root,
    and the first ``buildah ... bud``. Only processes that did not exist at the start are looked at."""

    def __init__(self, storage_root: Path, interval: float = 0.002):
        self.marker = str(storage_root)
        self.interval = interval
        self.first_buildah: float | None = None
        self.first_bud: float | None = None
        self._seen = {int(p) for p in os.listdir("/proc") if p.isdigit()}  # pids wrap: no "above the max" test
        super().__init__()

    def _run(self) -> None:
        while not self._stop.is_set() and self.first_bud is None:
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                pid = int(entry)
                if pid in self._seen:
                    continue
                argv = cmdline(pid)
                if not argv or not argv[0] or "python" in argv[0]:
                    continue  # gone, or forked but not exec'd yet (still the worker's argv): look again
                self._seen.add(pid)
                if not argv[0].endswith("buildah") or self.marker not in " ".join(argv):
                    continue
                now = time.time()
                if self.first_buildah is None:
                    self.first_buildah = now
                if "bud" in argv and self.first_bud is None:
                    self.first_bud = now
            self._stop.wait(self.interval)


class RssSampler(Sampler):
    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval = pid, interval
        self.peak = 0.0
        super().__init__()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mib(self.pid))


# -- the two ways to build --------------------------------------------------------------------------------

def iso_ts(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def slipway_build(slipway: Slipway, repo: str, files: dict[str, bytes], tag: str, watch: bool = True,
                  timeout: float = 600) -> dict:
    """Upload ``files`` as a .tar.gz and build; returns timings (seconds, wall clock)."""
    archive = Context.tar_gz(files)
    watcher = BuildahWatch(slipway.buildah_root) if watch else None
    if watcher:
        watcher.__enter__()
    try:
        t0 = time.time()
        build = slipway.api("POST", f"/repository/{repo}/build/", expect=(201,),
                            files={"file": ("context.tar.gz", archive, "application/gzip")},
                            data={"docker_tags": tag})
        t_posted = time.time()
        deadline = time.monotonic() + timeout
        while True:
            view = slipway.api("GET", f"/repository/{repo}/build/{build['id']}")
            if view["phase"] in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"build {build['id']} still {view['phase']} after {timeout} s")
            time.sleep(0.25)  # the end is taken from the 'complete' phase entry, not from this poll
        t_seen = time.time()
    finally:
        if watcher:
            watcher.__exit__(None, None, None)
    logs = slipway.api("GET", f"/repository/{repo}/build/{build['id']}/logs?start=0")["logs"]
    if view["phase"] != "complete":
        tail = "\n".join(e["message"] for e in logs[-15:])
        raise BenchError(f"build {build['id']} ended {view['phase']}: {view.get('error')}\n{tail}")
    phases = {}
    for entry in logs:
        if entry.get("type") == "phase" and entry["message"] not in phases:
            phases[entry["message"]] = iso_ts(entry["data"]["datetime"])
    result = {"id": build["id"], "t0": t0, "posted": t_posted, "post_s": t_posted - t0,
              "total_s": phases["complete"] - t0, "seen_complete_s": t_seen - t0,
              "phases_s": {k: round(v - t0, 4) for k, v in phases.items()}, "log_entries": len(logs)}
    if watcher:
        result["to_buildah_s"] = watcher.first_buildah - t_posted if watcher.first_buildah else None
        result["to_bud_s"] = watcher.first_bud - t_posted if watcher.first_bud else None
    result["to_pulling_phase_s"] = phases["pulling"] - t_posted
    result["to_building_phase_s"] = phases["building"] - t_posted
    return result


class PlainBuildah:
    """``buildah bud`` + ``buildah push`` by hand: same isolation and storage driver as Slipway's worker."""

    def __init__(self, workdir: Path, slipway: Slipway, name: str, layers: bool, cache_repo: str | None = None):
        self.workdir = workdir
        self.root = workdir / name
        self.slipway = slipway
        self.layers = layers
        self.cache = [] if not cache_repo else ["--cache-from", f"{slipway.host}/{cache_repo}",
                                                "--cache-to", f"{slipway.host}/{cache_repo}"]
        conf = workdir / "registries.conf"
        conf.write_text(f'unqualified-search-registries = []\n[[registry]]\nlocation = "{slipway.host}"\n'
                        "insecure = true\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_AUTH_FILE", "CONTAINERS_"))}
        self.env.update(BUILDAH_ISOLATION="chroot", CONTAINERS_REGISTRIES_CONF=str(conf), TMPDIR=str(workdir))
        self.count = 0

    def _base(self) -> list[str]:
        return ["buildah", "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
                "--storage-driver", self.slipway.storage_driver]

    def _run(self, args: list[str]) -> None:
        out = subprocess.run(self._base() + args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, timeout=600)
        if out.returncode != 0:
            raise BenchError(f"buildah {args[0]} failed ({out.returncode}): {out.stdout.decode()[-1500:]}")

    def build(self, files: dict[str, bytes], repo: str, tag: str) -> dict:
        self.count += 1
        context = self.workdir / f"plain-ctx-{self.count}"
        Context.write(files, context)
        image = f"localhost/plain-build-{uuid.uuid4().hex[:12]}"
        bud = ["bud", "--isolation", "chroot"] + (["--layers"] if self.layers else []) + [
            "--creds", f"admin:{PASSWORD}", "-f", str(context / "Dockerfile"), "-t", image] + self.cache + [
            str(context)]
        t0 = time.time()
        self._run(bud)
        t_built = time.time()
        self._run(["push", "--creds", f"admin:{PASSWORD}", image, f"docker://{self.slipway.host}/{repo}:{tag}"])
        t_pushed = time.time()
        self._run(["rmi", "-f", image])  # as Slipway's worker does after a build; not timed
        shutil.rmtree(context, ignore_errors=True)
        return {"t0": t0, "total_s": t_pushed - t0, "bud_s": t_built - t0, "push_s": t_pushed - t_built}


# -- SSE clients --------------------------------------------------------------------------------------------

async def sse_client(host: str, port: int, path: str, auth: str, out: dict) -> None:
    """Follow one SSE log stream to its end. ``auth``: the Authorization header's value. Tick lines go to
    ``out["samples"]``; if ``out`` has an ``entries`` list, every entry goes there as (time received, entry)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {auth}\r\n"
                  "Accept: text/event-stream\r\n\r\n").encode())
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise BenchError(f"SSE answered {status!r}")
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
            chunked = True
    out["connected"] = time.time()
    buf = b""
    samples = out["samples"]
    while True:
        if chunked:
            size_line = await reader.readline()
            if not size_line:
                break
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            data = await reader.readexactly(size + 2)
            data = data[:-2]
        else:
            data = await reader.read(65536)
            if not data:
                break
        now = time.time()
        buf += data
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            kind, payload = "message", None
            for field in event.decode(errors="replace").split("\n"):
                if field.startswith("event:"):
                    kind = field[6:].strip()
                elif field.startswith("data:"):
                    payload = field[5:].strip()
            if kind == "end":
                out["end"] = now
                writer.close()
                return
            if payload:
                out["events"] += 1
                entry = json.loads(payload)
                if "entries" in out:
                    out["entries"].append((now, entry))
                message = entry.get("message", "")
                if message.startswith("tick "):
                    parts = message.split()
                    samples.append((int(parts[1]), float(parts[2]), now))
    writer.close()


def run_sse_clients(slipway: Slipway, repo: str, build_id: str, results: list) -> None:
    auth = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    path = f"/api/v1/repository/{repo}/build/{build_id}/logs/stream"

    async def main():
        outs = [{"samples": [], "events": 0} for _ in range(SSE_CLIENTS)]
        tasks = [asyncio.create_task(sse_client("127.0.0.1", slipway.port, path, auth, o)) for o in outs]
        done = await asyncio.gather(*tasks, return_exceptions=True)
        for o, d in zip(outs, done):
            if isinstance(d, Exception):
                o["error"] = repr(d)
        results.extend(outs)

    asyncio.run(main())


def sse_latency(slipway: Slipway, repo: str, ctx: Context) -> dict:
    _, files = ctx.make()
    results: list = []
    build = slipway.api("POST", f"/repository/{repo}/build/", expect=(201,),
                        files={"file": ("Dockerfile", files["Dockerfile"], "text/plain")}, data={"docker_tags": "t"})
    thread = threading.Thread(target=run_sse_clients, args=(slipway, repo, build["id"], results))
    thread.start()
    thread.join(timeout=600)
    if thread.is_alive():
        raise BenchError("SSE clients did not finish in 600 s")
    view = slipway.api("GET", f"/repository/{repo}/build/{build['id']}")
    errors = [o["error"] for o in results if "error" in o]
    if view["phase"] != "complete" or errors:
        raise BenchError(f"SSE build {view['phase']} {view.get('error')}; client errors: {errors[:3]}")
    last_connect = max(o["connected"] for o in results)
    latencies, complete_clients, late = [], 0, 0
    for o in results:
        ticks = sorted(s[0] for s in o["samples"])
        if ticks == list(range(TICKS)):
            complete_clients += 1
        for _i, printed, received in o["samples"]:
            if printed < last_connect:
                late += 1  # printed before every client was connected: not a live line
                continue
            latencies.append(received - printed)
    if not latencies:
        raise BenchError("no tick lines were received live")
    # The first of the 50 clients to get each line: close to when the line became readable in the database.
    first_rx = {}
    for o in results:
        for i, printed, received in o["samples"]:
            first_rx[i] = min(first_rx.get(i, (received, printed)), (received, printed))
    first_latencies = [received - printed for received, printed in first_rx.values()]
    return {"build_id": build["id"], "clients": len(results), "clients_with_all_ticks": complete_clients,
            "samples": len(latencies), "excluded_before_all_connected": late,
            **stats_ms(latencies), "first_client_ms": stats_ms(first_latencies)}


# -- statistics and output ----------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def stats_ms(values: list[float]) -> dict:
    return {"p50_ms": round(pct(values, 0.5) * 1000, 1), "p95_ms": round(pct(values, 0.95) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1), "min_ms": round(min(values) * 1000, 1)}


def machine_note() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} x {cpu}, Python {platform.python_version()}"


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process plus those of its children it has waited for (buildah runs)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class Busy:
    """CPU used during a stretch, in cores: by the whole machine, and by everything that is not this
    benchmark (Slipway's processes and the buildah runs they and this harness waited for): other work."""

    def __init__(self, slipway: "Slipway"):
        self.slipway = slipway

    def _ours(self) -> float:
        t = os.times()
        return (t.user + t.system + t.children_user + t.children_system
                + sum(proc_cpu_seconds(p.pid) for p in (self.slipway.serve, self.slipway.worker) if p))

    def __enter__(self):
        self.start = (time.monotonic(), machine_busy_seconds(), self._ours())
        return self

    def __exit__(self, *exc):
        wall = time.monotonic() - self.start[0]
        busy = machine_busy_seconds() - self.start[1]
        self.cores = busy / wall
        self.other_cores = max(0.0, busy - (self._ours() - self.start[2])) / wall


# -- the run ---------------------------------------------------------------------------------------------------

def push_base(slipway: Slipway, workdir: Path) -> str:
    """A busybox base image (made locally) pushed as the public ``admin/base:1``; returns its reference."""
    layout = workdir / "base-layout"
    make_oci_layout(layout, labels={"from": "base"})
    base = f"{slipway.host}/admin/base:1"
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", f"admin:{PASSWORD}",
                    f"oci:{layout}:latest", f"docker://{base}"], check=True, capture_output=True, timeout=120)
    slipway.api("POST", "/repository/admin/base/changevisibility", json={"visibility": "public"})
    return base


def setup_registry(slipway: Slipway, workdir: Path) -> str:
    base = push_base(slipway, workdir)
    for name in ("app", "plain", "plainlayers", "plaincache", "ticks", "app2", "ticks2"):
        slipway.api("POST", "/repository", json={"repository": name, "visibility": "private"}, expect=(200, 201))
    return base


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def comparison(slipway: Slipway, plains: dict, ctx: Context, reps: int) -> dict:
    """Alternating Slipway / plain buildah builds of the same context (the order reverses every repetition)."""
    rows = {"slipway": [], **{name: [] for name in plains}}
    sides = [("slipway", lambda n, f: slipway_build(slipway, "admin/app", f, f"r{n}"))]
    for name, (plain, repo) in plains.items():
        sides.append((name, lambda n, f, plain=plain, repo=repo: plain.build(f, repo, f"r{n}")))
    for n in range(reps):
        order = sides if n % 2 == 0 else sides[::-1]
        for name, fn in order:
            _, files = ctx.make()
            subprocess.run(["sync"])
            with Busy(slipway) as busy:
                result = fn(n, files)
            result["machine_cores"], result["other_cores"] = round(busy.cores, 2), round(busy.other_cores, 2)
            rows[name].append(result)
            log(f"  rep {n + 1}/{reps} {name}: {result['total_s']:.2f} s "
                f"(machine {busy.cores:.2f} cores busy, {busy.other_cores:.2f} not this benchmark)")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="measured builds per side (default 5)")
    parser.add_argument("--worker-builds", type=int, default=3,
                        help="builds of the work context with the separate worker (default 3)")
    parser.add_argument("--no-diagnostics", action="store_true",
                        help="skip the plain 'bud --layers' and 'bud --layers --cache-from/--cache-to' lines "
                             "(they attribute Slipway's extra time; not targets)")
    parser.add_argument("--storage-driver", default="vfs",
                        help="buildah storage driver for both sides (Slipway's default: vfs; e.g. overlay)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--access-log", action="store_true", help="diagnosis: servers log every request (with --keep)")
    parser.add_argument("--json", help="save all figures to this file")
    args = parser.parse_args()
    if args.reps < 1 or args.worker_builds < 1:
        parser.error("--reps and --worker-builds must be at least 1")

    workdir = Path(tempfile.mkdtemp(prefix="slipway-build-bench-", dir=os.environ.get("BENCH_TMP")))
    slipway = Slipway(workdir, free_port(), access_log=args.access_log, storage_driver=args.storage_driver)
    report: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "machine": machine_note(), "slipway_rev": slipway_commit(),
                    "buildah": subprocess.run(["buildah", "--version"], capture_output=True, text=True).stdout.strip(),
                    "reps": args.reps, "storage_driver": args.storage_driver, "isolation": "chroot"}
    try:
        # --- A: the build worker inside `slipway serve` ---
        log(f"A: slipway serve with its in-process build worker ({workdir})")
        slipway.start(separate_worker=False)
        base = setup_registry(slipway, workdir)
        work = Context(work_dockerfile(base), with_files=True)
        ticks = Context(tick_dockerfile(base), with_files=False)
        plains = {"plain": (PlainBuildah(workdir, slipway, "plain", layers=False), "admin/plain")}
        if not args.no_diagnostics:
            plains["plain_layers"] = (PlainBuildah(workdir, slipway, "plain-layers", layers=True), "admin/plainlayers")
            plains["plain_slipway_flags"] = (PlainBuildah(workdir, slipway, "plain-cache", layers=True,
                                                          cache_repo="admin/plaincache/buildcache"),
                                             "admin/plaincache")
        log("warm-up builds (base image into each storage; not measured)")
        slipway_build(slipway, "admin/app", work.make()[1], "warmup", watch=False)
        for plain, repo in plains.values():
            plain.build(work.make()[1], repo, "warmup")
        log(f"comparison: {args.reps} builds per side, alternating order")
        rows = comparison(slipway, plains, work, args.reps)
        report["comparison"] = rows
        log("SSE: 50 clients following a ticking build (in-process worker)")
        with Busy(slipway) as busy:
            report["sse_inprocess"] = sse_latency(slipway, "admin/ticks", ticks)
        report["sse_inprocess"].update(machine_cores=round(busy.cores, 2), other_cores=round(busy.other_cores, 2))
        log(f"  {report['sse_inprocess']}")
        slipway.stop()

        # --- B: serve without workers + a separate `slipway worker` ---
        log("B: slipway serve (workers=0) + slipway worker")
        slipway.start(separate_worker=True)
        pid = slipway.worker_pid
        time.sleep(2)
        idle_start = rss_mib(pid)
        worker_runs = []
        with RssSampler(pid) as sampler:
            for n in range(args.worker_builds):
                subprocess.run(["sync"])
                with Busy(slipway) as busy:
                    result = slipway_build(slipway, "admin/app2", work.make()[1], f"w{n}")
                result["machine_cores"], result["other_cores"] = round(busy.cores, 2), round(busy.other_cores, 2)
                worker_runs.append(result)
                log(f"  worker build {n + 1}: {result['total_s']:.2f} s, to buildah {result['to_buildah_s']} s")
            with Busy(slipway) as busy:
                report["sse_worker"] = sse_latency(slipway, "admin/ticks2", ticks)
            report["sse_worker"].update(machine_cores=round(busy.cores, 2), other_cores=round(busy.other_cores, 2))
            log(f"  {report['sse_worker']}")
        time.sleep(2)
        report["worker_builds"] = worker_runs
        report["worker_rss_mib"] = {"idle_start": round(idle_start, 1), "peak": round(sampler.peak, 1),
                                    "idle_after": round(rss_mib(pid), 1)}
        slipway.stop()
    finally:
        slipway.stop()
        report["server_log_problems"] = slipway.log_errors()
        if sys.exc_info()[0] is not None and report["server_log_problems"]:
            print("\n".join(["server log warnings/errors:"] + report["server_log_problems"][:20]))
        if not args.keep:
            subprocess.run(["rm", "-rf", str(workdir)])
        else:
            log(f"kept {workdir}")

    summarize(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        log(f"saved {args.json}")
    return 0


def summarize(report: dict) -> None:
    rows = report["comparison"]
    med = {k: statistics.median(r["total_s"] for r in v) for k, v in rows.items() if v}
    ratio = med["slipway"] / med["plain"]
    a_buildah = [r["to_buildah_s"] for r in rows["slipway"]]
    a_bud = [r["to_bud_s"] for r in rows["slipway"]]
    b_buildah = [r["to_buildah_s"] for r in report["worker_builds"]]
    a_phase = [r["to_pulling_phase_s"] for r in rows["slipway"]]
    b_phase = [r["to_pulling_phase_s"] for r in report["worker_builds"]]
    sse_a, sse_b = report["sse_inprocess"], report.get("sse_worker")
    rss = report["worker_rss_mib"]
    table = [
        ("1. build+push wall time, Slipway (median s)", f"{med['slipway']:.2f}", "", ""),
        ("1. build+push wall time, plain buildah (median s)", f"{med['plain']:.2f}", "", ""),
        ("1. ratio Slipway / plain", f"{ratio:.2f}", "<= 1.15", ratio <= 1.15),
    ]
    if "plain_layers" in med:
        table.append(("   diagnostic: plain, bud --layers (median s; ratio)",
                      f"{med['plain_layers']:.2f}; {med['slipway'] / med['plain_layers']:.2f}", "", ""))
        table.append(("   diagnostic: plain, Slipway's bud flags + remote cache (median s; ratio)",
                      f"{med['plain_slipway_flags']:.2f}; {med['slipway'] / med['plain_slipway_flags']:.2f}",
                      "", ""))
    for label, values in (("in-process worker", a_buildah), ("separate worker", b_buildah)):
        seen = [v for v in values if v is not None]  # None: the /proc poll missed the process
        table.append((f"2. POST -> first buildah process, {label} (p50 / max s)",
                      f"{statistics.median(seen):.3f} / {max(seen):.3f}" + ("" if len(seen) == len(values) else
                                                                          f" ({len(values) - len(seen)} missed)"),
                      "< 1", max(seen) < 1 and len(seen) == len(values)))
    seen = [v for v in a_bud if v is not None]
    table.append(("   POST -> buildah bud, in-process (p50 / max s)",
                  f"{statistics.median(seen):.3f} / {max(seen):.3f}", "", ""))
    table.append(("   POST -> 'pulling' phase entry, in-process / separate (p50 s)",
                  f"{statistics.median(a_phase):.3f} / {statistics.median(b_phase):.3f}", "", ""))
    for label, sse in (("in-process worker", sse_a), ("separate worker", sse_b)):
        if sse:
            table.append((f"3. SSE line latency, 50 clients, {label} (p50 / p95 / max ms)",
                          f"{sse['p50_ms']:.0f} / {sse['p95_ms']:.0f} / {sse['max_ms']:.0f}", "p95 < 250",
                          sse["p95_ms"] < 250))
    table.append(("4. slipway worker RSS idle (MiB)", f"{rss['idle_start']:.1f}", "< 200", rss["idle_start"] < 200))
    table.append(("4. slipway worker RSS peak during builds (MiB)", f"{rss['peak']:.1f}", "< 200", rss["peak"] < 200))
    width = max(len(r[0]) for r in table)
    print()
    print(f"{report['machine']}; {report['buildah']}; storage driver {report['storage_driver']}, isolation chroot; "
          f"Slipway {report['slipway_rev']}; {report['reps']} builds per side")
    print(f"{'figure'.ljust(width)} | {'value':>20} | {'target':>10} | result")
    print("-" * (width + 48))
    for name, value, target, ok in table:
        verdict = "" if ok == "" else ("PASS" if ok else "FAIL")
        print(f"{name.ljust(width)} | {value:>20} | {target:>10} | {verdict}")
    print()
    for side, values in rows.items():
        if values:
            print(f"{side}: " + ", ".join(f"{r['total_s']:.2f}" for r in values) + " s")
    phases = [r["phases_s"] for r in rows["slipway"]]
    keys = [k for k in phases[0] if k != "waiting"]
    print("Slipway phase starts (median s after request): "
          + ", ".join(f"{k} {statistics.median(p[k] for p in phases if k in p):.2f}" for k in keys))
    print(f"Slipway: before bud {statistics.median(p['building'] for p in phases):.2f} s, "
          f"bud {statistics.median(p['pushing'] - p['building'] for p in phases):.2f} s, "
          f"push + image id {statistics.median(p['complete'] - p['pushing'] for p in phases):.2f} s (medians)")
    for side, values in rows.items():
        if side != "slipway" and values:
            print(f"{side}: bud {statistics.median(r['bud_s'] for r in values):.2f} s, "
                  f"push {statistics.median(r['push_s'] for r in values):.2f} s (medians)")
    other = [r["other_cores"] for v in rows.values() for r in v]
    print(f"CPU used by other work during the comparison builds: median {statistics.median(other):.2f}, "
          f"max {max(other):.2f} cores (of {os.cpu_count()}); during the SSE runs: "
          + " / ".join(f"{report[k]['other_cores']:.2f}" for k in ('sse_inprocess', 'sse_worker') if k in report))
    if report["server_log_problems"]:
        print(f"server log warnings/errors ({len(report['server_log_problems'])}):")
        for line in report["server_log_problems"][:20]:
            print("  " + line)
    report["table"] = [{"figure": n, "value": v, "target": t, "pass": None if ok == "" else bool(ok)}
                       for n, v, t, ok in table]


if __name__ == "__main__":
    sys.exit(main())
