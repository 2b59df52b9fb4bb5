#!/usr/bin/env python3
"""On-demand benchmark for issue 6: garbage collection of a large repository, under pull load.

Target: "GC over a repository with 10,000 tags and 1,000 blobs finishes in under
30 s and never blocks pulls."

One run starts Slipway (SQLite, filesystem storage, in a fresh temporary
directory) and seeds ONE repository through the /v2 and /api/v1 APIs, with
several keep-alive connections:

* 1,000 blobs: one image config and 999 small distinct layers (1 – 8 KiB);
* 10,000 OCI image manifests, each with the config, one layer (manifest i has
  layer i × 999 // 10,000, so ~10 manifests share a layer) and an annotation
  making it unique, each pushed by its own tag ``t00000`` .. ``t09999``.

Then it makes 90 % of it garbage the ways users do, with the namespace's time
machine window set to 0 (``PUT /api/v1/user/ {"tag_expiration_s": 0}``): of
the tags from ``t01000`` on, a third expire by themselves (their manifests carry
``quay.expires-after: 1s``), a third are deleted with ``DELETE
/api/v1/repository/<repo>/tag/<tag>`` and a third by deleting their manifest
(``DELETE /v2/<repo>/manifests/<digest>``). The 1,000 surviving tags use 100
layers, so GC must free 9,000 tag rows, 9,000 manifests, 899 blob links and
899 blobs with their files. ``gc.grace_seconds`` (1 h by default: what protects
a push in progress) is set to a few seconds, and the harness waits it out.

Pull load: ``wrk`` on the manifest of a surviving tag (by tag) and on a
surviving layer blob, each connection pausing ``--delay-ms`` between requests
(0: as fast as the server answers). It runs for ``--seconds`` before GC, then
again from 2 s before GC starts until 2 s after it ends; latencies (p50, p99,
max) and errors are compared. GC runs in one of two ways (``--mode``):

* ``cli``: ``slipway admin gc`` as a separate process beside ``slipway serve``
  (the operator's command); its wall time is GC's time.
* ``scheduled``: the job inside ``slipway serve`` (``gc.interval_seconds``), in
  the first HTTP process beside the requests it serves. The server is restarted
  after seeding with the interval set so that the first run comes after the
  "before" measurement; GC's time is from the scheduler's "Running job" to its
  "executed successfully" log line.

Afterwards it checks that the garbage is gone (rows, files; what GC reported)
and that everything kept still pulls (every surviving tag's manifest byte for
byte, every surviving blob by digest, tags/list), that garbage tags and blobs
answer 404, and scans the server log for "database is locked" and errors.

    .venv/bin/python bench/gc_bench.py --mode cli --json /tmp/gc-bench.json
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from registry_bench import (
    OCI_MANIFEST,
    ROOT,
    BenchError,
    Client,
    CpuShare,
    Sampler,
    Slipway,
    image_manifest,
    push_blob,
    put_manifest,
    sha256,
    slipway_commit,
    start_wrk,
    wrk_result,
)

REPO = "admin/gc"
GC_TARGET_S = 30.0
TABLES = ("tag", "manifest", "manifest_label", "blob", "repository_blob", "manifest_blob")
FREED_RE = re.compile(r"removed (\d+) tag\(s\) past their time machine window, (\d+) manifest\(s\), (\d+) blob "
                      r"link\(s\), (\d+) blob\(s\); freed (\d+) bytes")
LOG_TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log(message: str) -> None:
    print(f"# {datetime.datetime.now():%H:%M:%S} {message}", file=sys.stderr, flush=True)


class GcSlipway(Slipway):
    """Slipway whose repository is ``REPO``, with a token that may also delete."""

    repo = REPO

    def setup_access(self) -> None:
        self.headers = self.pull_headers = self.bearer("admin", self.password, "pull,push,delete",
                                                       expect="pull,push,delete")
        basic = base64.b64encode(f"admin:{self.password}".encode()).decode()
        self.api_headers = {"Authorization": f"Basic {basic}"}

    def counts(self) -> dict[str, int]:
        """Rows in the registry's tables (this repository is the only one), read from the database file."""
        with contextlib.closing(sqlite3.connect(f"file:{self.database_path}?mode=ro", uri=True, timeout=30)) as db:
            counts = {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}
            counts["alive_tag"] = db.execute("SELECT count(*) FROM tag WHERE lifetime_end IS NULL "
                                             "OR lifetime_end > ?", (int(time.time() * 1000),)).fetchone()[0]
        return counts

    def stored_blobs(self) -> set[str]:
        """Digests of the blob files in the filesystem storage."""
        root = self.workdir / "data" / "storage" / "blobs"
        return {f"{path.parent.parent.name}:{path.name}" for path in root.glob("*/*/*") if path.is_file()}


class Plan:
    """What is pushed, and what becomes garbage and how."""

    METHODS = ("expires-after label", "API tag delete", "v2 manifest delete")

    def __init__(self, tags: int, blobs: int, keep: int):
        self.tags, self.keep = tags, keep
        self.config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"bench": "gc"}},
                                  "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        rng = random.Random(6)
        self.layers = [rng.randbytes(1024 + rng.randrange(7 * 1024)) for _ in range(blobs - 1)]
        self.layer_digests = [sha256(layer) for layer in self.layers]

    def layer_of(self, i: int) -> int:
        return i * len(self.layers) // self.tags

    @staticmethod
    def tag(i: int) -> str:
        return f"t{i:05d}"

    def method(self, i: int) -> str | None:
        """How tag ``i`` becomes garbage (None: it survives)."""
        return None if i < self.keep else self.METHODS[i % 3]

    def manifest(self, i: int) -> bytes:
        annotations = {"org.example.index": str(i)}
        if self.method(i) == "expires-after label":
            annotations["quay.expires-after"] = "1s"
        layer = self.layer_of(i)
        return image_manifest(self.config, [(self.layer_digests[layer], len(self.layers[layer]))], annotations)

    @property
    def kept_layers(self) -> set[int]:
        return {self.layer_of(i) for i in range(self.keep)}

    def kept_blobs(self) -> set[str]:
        return {sha256(self.config)} | {self.layer_digests[n] for n in self.kept_layers}

    def garbage_blobs(self) -> set[str]:
        return set(self.layer_digests) - self.kept_blobs()

    def expected_freed(self) -> dict[str, int]:
        garbage = self.tags - self.keep
        layers = len(self.garbage_blobs())
        return {"tags": garbage, "manifests": garbage, "links": layers, "blobs": layers,
                "bytes": sum(len(self.layers[n]) for n in range(len(self.layers)) if n not in self.kept_layers)}


def parallel(server: GcSlipway, items: list, work, connections: int, headers: dict | None = None) -> float:
    """``work(client, item)`` for every item, over ``connections`` keep-alive connections; the seconds it took."""
    lock, pending, failures = threading.Lock(), list(reversed(items)), []

    def worker() -> None:
        client = Client(server, headers or server.headers)
        try:
            while not failures:
                with lock:
                    if not pending:
                        return
                    item = pending.pop()
                work(client, item)
        except BaseException as exc:  # reported after the join
            failures.append(exc)
        finally:
            client.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise BenchError(f"{server.name}: {failures[0]}")
    return time.monotonic() - started


def seed(server: GcSlipway, plan: Plan, connections: int) -> dict:
    """Push everything, then make the garbage; returns how long each step took."""
    timings = {}
    server.api("PUT", "user/", {"tag_expiration_s": 0})
    blobs = [plan.config] + plan.layers
    timings["blobs"] = parallel(server, blobs, lambda c, b: push_blob(c, b, sha256(b), "post"), connections)
    log(f"pushed {len(blobs)} blobs in {timings['blobs']:.1f} s")
    timings["manifests"] = parallel(server, list(range(plan.tags)),
                                    lambda c, i: put_manifest(c, plan.tag(i), plan.manifest(i)), connections)
    log(f"pushed {plan.tags} manifests, each by a tag, in {timings['manifests']:.1f} s")

    def api_delete(client: Client, i: int) -> None:
        client.request("DELETE", f"/api/v1/repository/{REPO}/tag/{plan.tag(i)}", expect=(204,))

    def v2_delete(client: Client, i: int) -> None:
        client.request("DELETE", f"/v2/{REPO}/manifests/{sha256(plan.manifest(i))}", expect=(202,))

    doomed = [i for i in range(plan.tags) if plan.method(i) == "API tag delete"]
    timings["api_deletes"] = parallel(server, doomed, api_delete, connections, server.api_headers)
    doomed = [i for i in range(plan.tags) if plan.method(i) == "v2 manifest delete"]
    timings["v2_deletes"] = parallel(server, doomed, v2_delete, connections)
    log(f"deleted tags through the API in {timings['api_deletes']:.1f} s and manifests through /v2 in "
        f"{timings['v2_deletes']:.1f} s")
    return timings


def check_seeded(server: GcSlipway, plan: Plan) -> dict:
    counts = server.counts()
    expected = {"tag": plan.tags, "manifest": plan.tags, "blob": len(plan.layers) + 1,
                "repository_blob": len(plan.layers) + 1, "manifest_blob": 2 * plan.tags, "alive_tag": plan.keep}
    wrong = {k: (counts[k], v) for k, v in expected.items() if counts[k] != v}
    if wrong:
        raise BenchError(f"after seeding, (found, expected) rows: {wrong}")
    if len(server.stored_blobs()) != len(plan.layers) + 1:
        raise BenchError(f"after seeding, {len(server.stored_blobs())} blob files")
    return counts


# -- pull load --------------------------------------------------------------------------------------

class PullLoad:
    """Two wrk processes: manifest GETs by a surviving tag, and GETs of a surviving layer blob."""

    def __init__(self, server: GcSlipway, plan: Plan, args):
        self.server, self.args = server, args
        self.manifest_path, self.manifest_size = f"/v2/{REPO}/manifests/{plan.tag(0)}", len(plan.manifest(0))
        layer = plan.layer_of(0)
        self.blob_path, self.blob_size = f"/v2/{REPO}/blobs/{plan.layer_digests[layer]}", len(plan.layers[layer])

    def start(self, seconds: float) -> None:
        self.cpu = CpuShare(self.server).__enter__()
        self.started = time.time()
        self.wrks = [
            start_wrk(self.server, self.manifest_path, self.args.manifest_connections, seconds, OCI_MANIFEST,
                      self.args.delay_ms),
            start_wrk(self.server, self.blob_path, self.args.blob_connections, seconds, None, self.args.delay_ms)]

    def stop(self, early: bool) -> dict:
        """wrk's summaries (ended early by SIGINT if ``early``), with the CPU used meanwhile."""
        if early:
            for wrk in self.wrks:
                wrk.send_signal(2)
        manifest = wrk_result(self.server, self.manifest_path, self.wrks[0], self.manifest_size)
        blob = wrk_result(self.server, self.blob_path, self.wrks[1], self.blob_size)
        self.cpu.__exit__(None, None, None)
        return {"manifest": summary(manifest), "blob": summary(blob), "seconds": time.time() - self.started,
                "server_cores": self.cpu.server_cores, "other_cores": self.cpu.other_cores}


class Probe(Sampler):
    """One more connection, in this process: a manifest GET by tag every ``interval`` seconds, each timed, so
    a stall shows when it happened (wrk only tells how long the slowest request took)."""

    def __init__(self, server: GcSlipway, path: str, interval: float = 0.01):
        super().__init__()
        self.server, self.path, self.interval = server, path, interval
        self.samples: list[tuple[float, float]] = []  # (start, seconds), time.time()
        self.failures: list[str] = []

    def _run(self) -> None:
        client = self.server.connect(pull=True)
        while not self._stop.is_set():
            start = time.time()
            try:
                client.request("GET", self.path, headers={"Accept": OCI_MANIFEST})
            except Exception as exc:  # counted as an error of the probe
                self.failures.append(str(exc)[:200])
                client.close()
                client = self.server.connect(pull=True)
            self.samples.append((start, time.time() - start))
            time.sleep(self.interval)
        client.close()

    def report(self, slow: float, origin: float) -> dict:
        """Probes slower than ``slow`` seconds, with their start relative to ``origin`` (GC's start)."""
        slow_ones = [(round(start - origin, 2), round(seconds * 1000, 1)) for start, seconds in self.samples
                     if seconds > slow]
        latencies = sorted(seconds for _, seconds in self.samples)
        return {"requests": len(self.samples), "errors": len(self.failures), "max_ms": latencies[-1] * 1000,
                "p50_ms": latencies[len(latencies) // 2] * 1000, "slow": slow_ones,
                "slow_total_s": sum(ms for _, ms in slow_ones) / 1000}


def summary(stats: dict) -> dict:
    errors = sum(stats[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {"requests": stats["requests"], "req_per_s": stats["req_per_s"], "errors": errors,
            "p50_ms": stats["p50_us"] / 1000, "p99_ms": stats["p99_us"] / 1000, "max_ms": stats["max_us"] / 1000,
            "wrk": stats}


# -- garbage collection -----------------------------------------------------------------------------

def parse_freed(text: str) -> dict[str, int]:
    match = FREED_RE.search(text)
    if match is None:
        raise BenchError(f"no garbage collection summary in: {text[-500:]}")
    return dict(zip(("tags", "manifests", "links", "blobs", "bytes"), map(int, match.groups())))


def gc_cli(server: GcSlipway) -> dict:
    """``slipway admin gc`` beside the server; its wall time and what it printed."""
    argv, env, cwd = server.command("admin", "gc")
    started = time.time()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    ended = time.time()
    if done.returncode:
        raise BenchError(f"slipway admin gc exited with {done.returncode}: {done.stderr[-2000:]}")
    return {"start": started, "end": ended, "seconds": ended - started, "freed": parse_freed(done.stdout),
            "output": done.stdout.splitlines()[:3] + done.stderr.splitlines()[-20:]}


def log_time(line: str) -> float:
    match = LOG_TIME_RE.match(line)
    return datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def gc_scheduled(server: GcSlipway, timeout: float) -> dict:
    """Wait for the scheduled GC job's run in ``slipway serve`` to finish; its times from the log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        lines = server.log_path.read_text(errors="replace").splitlines()
        started = [line for line in lines if "Running job" in line and '"registry.gc' in line]
        ended = [line for line in lines if '"registry.gc' in line and "executed successfully" in line]
        if ended:
            freed = next((line for line in lines if "garbage collection: removed" in line), "")
            start, end = log_time(started[0]), log_time(ended[0])
            return {"start": start, "end": end, "seconds": end - start, "freed": parse_freed(freed),
                    "output": [freed]}
        if any('"registry.gc' in line and ("raised an exception" in line or "failed" in line) for line in lines):
            raise BenchError(f"scheduled GC failed: {server.log_tail(40)}")
        time.sleep(0.05)
    raise BenchError(f"scheduled GC did not finish within {timeout} s")


# -- checks after GC --------------------------------------------------------------------------------

def check_collected(server: GcSlipway, plan: Plan, freed: dict, connections: int) -> dict:
    """Garbage gone (GC's report, rows, files), everything kept still pulls; returns the row counts."""
    expected = plan.expected_freed()
    if freed != expected:
        raise BenchError(f"GC freed {freed}, expected {expected}")
    counts = server.counts()
    kept_blobs = plan.kept_blobs()
    want = {"tag": plan.keep, "alive_tag": plan.keep, "manifest": plan.keep, "manifest_blob": 2 * plan.keep,
            "blob": len(kept_blobs), "repository_blob": len(kept_blobs)}
    wrong = {k: (counts[k], v) for k, v in want.items() if counts[k] != v}
    if wrong:
        raise BenchError(f"after GC, (found, expected) rows: {wrong}")
    stored = server.stored_blobs()
    if stored != kept_blobs:
        raise BenchError(f"after GC, blob files: {len(stored - kept_blobs)} garbage left, "
                         f"{len(kept_blobs - stored)} kept ones missing")

    def pull_tag(client: Client, i: int) -> None:
        _, body = client.request("GET", f"/v2/{REPO}/manifests/{plan.tag(i)}", headers={"Accept": OCI_MANIFEST})
        if body != plan.manifest(i):
            raise BenchError(f"tag {plan.tag(i)} answers another manifest after GC")

    def pull_blob(client: Client, digest: str) -> None:
        _, body = client.request("GET", f"/v2/{REPO}/blobs/{digest}")
        if sha256(body) != digest:
            raise BenchError(f"blob {digest} reads back as {sha256(body)} after GC")

    rng = random.Random(7)
    garbage_tags = rng.sample(range(plan.keep, plan.tags), 100)
    garbage_blobs = rng.sample(sorted(plan.garbage_blobs()), 50)
    parallel(server, list(range(plan.keep)), pull_tag, connections)
    parallel(server, sorted(kept_blobs), pull_blob, connections)
    parallel(server, garbage_tags, lambda c, i: c.request("GET", f"/v2/{REPO}/manifests/{plan.tag(i)}",
                                                          headers={"Accept": OCI_MANIFEST}, expect=(404,)), connections)
    parallel(server, garbage_blobs, lambda c, d: c.request("GET", f"/v2/{REPO}/blobs/{d}", expect=(404,)), connections)
    client = server.connect(pull=True)
    _, body = client.request("GET", f"/v2/{REPO}/tags/list")
    client.close()
    if json.loads(body)["tags"] != [plan.tag(i) for i in range(plan.keep)]:
        raise BenchError("tags/list after GC is not exactly the surviving tags")
    return counts


# -- one run ----------------------------------------------------------------------------------------

def run(args, workdir: Path) -> dict:
    plan = Plan(args.tags, args.blobs, args.keep)
    env = {"SLIPWAY_GC__GRACE_SECONDS": str(args.grace), "SLIPWAY_GC__INTERVAL_SECONDS": "86400",
           "SLIPWAY_BUILDS__WORKERS": "0"}
    server = GcSlipway(workdir, args.processes, source=args.source or ROOT, name="Slipway", env=env)
    workdir.mkdir()
    result = {"mode": args.mode, "blob_bytes": len(plan.layers[plan.layer_of(0)])}
    logs = []  # the server's log before a restart
    try:
        server.start()
        seeding_started = time.monotonic()
        result["seeding"] = seed(server, plan, args.connections)
        result["seeding"]["total"] = time.monotonic() - seeding_started
        time.sleep(args.grace + 2)  # past the grace period, and the 1 s expiry of the labelled tags
        result["rows_before"] = check_seeded(server, plan)
        result["db_mib_before"] = server.database_path.stat().st_size / (1 << 20)
        log(f"seeded in {result['seeding']['total']:.1f} s: {result['rows_before']}")
        if args.mode == "scheduled":
            # The job runs first one interval after the scheduler starts: after the "before" measurement.
            server.stop()
            logs.append(server.log_path.read_text(errors="replace"))
            interval = args.seconds + 8
            server.env.update(SLIPWAY_GC__INTERVAL_SECONDS=str(interval), SLIPWAY_LOG_LEVEL="info")
            gc_due = time.time() + interval
            server.start()
        load = PullLoad(server, plan, args)
        load.start(args.seconds)
        result["before"] = load.stop(early=False)
        log(f"before GC: {json.dumps({k: result['before'][k]['max_ms'] for k in ('manifest', 'blob')})} max ms")
        if args.mode == "scheduled":
            time.sleep(max(0.0, gc_due - 2 - time.time()))
        load.start(600)
        with Probe(server, load.manifest_path) as probe:
            if args.mode == "cli":
                time.sleep(2)
            result["gc"] = gc_cli(server) if args.mode == "cli" else gc_scheduled(server, 300)
            time.sleep(max(0.0, result["gc"]["end"] + 2 - time.time()))
        result["during"] = load.stop(early=True)
        result["probe"] = probe.report(args.blocked_ms / 1000, result["gc"]["start"])
        log(f"probe: {json.dumps(result['probe'])[:600]}")
        result["during"]["gc_share"] = result["gc"]["seconds"] / result["during"]["seconds"]
        log(f"GC took {result['gc']['seconds']:.2f} s and freed {result['gc']['freed']}")
        result["rows_after"] = check_collected(server, plan, result["gc"]["freed"], args.connections)
        result["db_mib_after"] = server.database_path.stat().st_size / (1 << 20)
    finally:
        server.stop()
        text = "\n".join(logs + [server.log_path.read_text(errors="replace") if server.log_path.exists() else ""])
        result["locked"] = text.count("database is locked") + sum(
            line.count("database is locked") for line in result.get("gc", {}).get("output", []))
        server.log_path.write_text(text)
        result["server_errors"] = [line for line in server.error_lines()
                                   if "maximum number of running instances" not in line]
        result["skipped_jobs"] = text.count("maximum number of running instances")
    return result


# -- report -----------------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def render(facts: dict, results: list[dict], args) -> str:
    out = [f"Command: `{facts['command']}`",
           f"Date: {facts['date']}; machine: {facts['nproc']} cores, Python {facts['python']}; Slipway "
           f"{facts['commit']}{' from ' + str(args.source) if args.source else ''} with {args.processes} HTTP "
           f"process(es), SQLite, filesystem storage; "
           f"{args.tags:,} tags, {args.blobs:,} blobs, {args.keep:,} tags kept; pull load: manifest GET by tag × "
           f"{args.manifest_connections} conns + {results[0]['blob_bytes']:,}-byte blob GET × {args.blob_connections} "
           f"conns, " + (f"{args.delay_ms} ms pause between a connection's requests" if args.delay_ms
                         else "as fast as answered"), ""]
    head = ("| figure | " + " | ".join(f"run {n + 1} ({r['mode']})" for n, r in enumerate(results))
            + " | target | result |")
    out += [head, "|" + " --- |" * (len(results) + 3)]

    def row(label: str, cells: list[str], target: str = "", ok: bool | None = None) -> None:
        out.append(f"| {label} | " + " | ".join(cells) + f" | {target} | {'' if ok is None else verdict(ok)} |")

    gc_s = [r["gc"]["seconds"] for r in results]
    row("GC time (s)", [f"{s:.2f}" for s in gc_s], f"< {GC_TARGET_S:.0f}", max(gc_s) < GC_TARGET_S)
    row("freed: tag rows / manifests / blob links / blobs", [
        "{tags:,} / {manifests:,} / {links} / {blobs}".format(**r["gc"]["freed"]) for r in results], "all garbage",
        True)
    for kind in ("manifest", "blob"):
        for phase in ("before", "during"):
            row(f"{kind} GET {phase} GC: req/s; p50 / p99 / max latency (ms)", [
                f"{r[phase][kind]['req_per_s']:,.0f}; {r[phase][kind]['p50_ms']:.2f} / {r[phase][kind]['p99_ms']:.2f}"
                f" / {r[phase][kind]['max_ms']:.1f}" for r in results])
    errors = [sum(r[p][k]["errors"] for p in ("before", "during") for k in ("manifest", "blob")) for r in results]
    row("pull errors (non-2xx, timeouts, socket errors)", [str(e) for e in errors], "0", not any(errors))
    worst = [max(r["during"][k]["max_ms"] for k in ("manifest", "blob")) for r in results]
    row("longest pull during GC (ms)", [f"{w:.1f}" for w in worst], f"< {args.blocked_ms:.0f}",
        max(worst) < args.blocked_ms)
    row(f"probe (1 conn, GET every 10 ms): pulls over {args.blocked_ms:.0f} ms during GC, at s after GC start (ms)",
        [", ".join(f"{at:+.1f} s ({ms:.0f})" for at, ms in r["probe"]["slow"]) or "none" for r in results], "none",
        not any(r["probe"]["slow"] or r["probe"]["errors"] for r in results))
    locked = [r["locked"] for r in results]
    row('"database is locked" in the logs', [str(n) for n in locked], "0", not any(locked))
    row("server CPU cores before / during", [f"{r['before']['server_cores']:.2f} / {r['during']['server_cores']:.2f}"
                                             for r in results])
    row("other CPU on the machine before / during (cores)",
        [f"{r['before']['other_cores']:.2f} / {r['during']['other_cores']:.2f}" for r in results])
    row("seeding: blobs / manifests / API deletes / v2 deletes (s)", [
        "{blobs:.1f} / {manifests:.1f} / {api_deletes:.1f} / {v2_deletes:.1f}".format(**r["seeding"])
        for r in results])
    row("database file before / after GC (MiB)", [f"{r['db_mib_before']:.1f} / {r['db_mib_after']:.1f}"
                                                  for r in results])
    notes = ["", "Every run: GC freed exactly the garbage (GC's own report, the rows left, the blob files left); "
             "every surviving tag pulled its manifest byte for byte, every surviving blob its digest, tags/list "
             "listed exactly the survivors, and sampled garbage tags and blobs answered 404."]
    for n, r in enumerate(results):
        if r["server_errors"] or r["skipped_jobs"]:
            notes.append(f"Run {n + 1}: server log: {len(r['server_errors'])} error line(s)"
                         + (f", e.g. `{r['server_errors'][0][:200]}`" if r["server_errors"] else "")
                         + f"; {r['skipped_jobs']} skipped scheduler run(s).")
    return "\n".join(out + notes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mode", choices=("cli", "scheduled", "both"), default="both",
                        help="how GC runs: `slipway admin gc`, the job in `slipway serve`, or one run of each")
    parser.add_argument("--runs", type=int, default=1, help="runs per mode, each with a fresh server")
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--blobs", type=int, default=1_000, help="blobs in all: one config and the rest layers")
    parser.add_argument("--keep", type=int, default=None, help="tags that survive (default: a tenth)")
    parser.add_argument("--processes", type=int, default=1, help="Slipway HTTP processes (default 1, its default)")
    parser.add_argument("--connections", type=int, default=8, help="connections used for seeding and checks")
    parser.add_argument("--grace", type=int, default=5, help="gc.grace_seconds (waited out before GC)")
    parser.add_argument("--seconds", type=int, default=10, help="pull load measured before GC")
    parser.add_argument("--manifest-connections", type=int, default=4)
    parser.add_argument("--blob-connections", type=int, default=2)
    parser.add_argument("--delay-ms", type=float, default=5.0,
                        help="pause between a pull connection's requests (default 5; 0: as fast as answered)")
    parser.add_argument("--blocked-ms", type=float, default=100.0,
                        help="a pull taking longer than this during GC counts as blocked (default 100)")
    parser.add_argument("--source", type=Path,
                        help="run Slipway from this source tree (a copy with a change to try) instead of this one")
    parser.add_argument("--json", type=Path, help="also save the results as JSON here")
    args = parser.parse_args()
    args.keep = args.tags // 10 if args.keep is None else args.keep

    modes = ["cli", "scheduled"] if args.mode == "both" else [args.mode]
    facts = {"command": " ".join([sys.executable, *sys.argv]),
             "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "nproc": os.cpu_count(), "python": sys.version.split()[0], "commit": slipway_commit()}
    results = []
    with tempfile.TemporaryDirectory(prefix="slipway-gc-bench-") as tmp:
        for n in range(args.runs):
            for mode in modes:
                args.mode = mode
                log(f"run {n + 1}, mode {mode}")
                results.append(run(args, Path(tmp) / f"{mode}-{n}"))
    report = render(facts, results, args)
    print(report)
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "args": vars(args), "results": results}, indent=2,
                                        default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
