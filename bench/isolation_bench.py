#!/usr/bin/env python3
"""On-demand benchmark of sandboxed builds (issue 10). Not a test: run it by hand, e.g.

    .venv/bin/python bench/isolation_bench.py --reps 3 --json /tmp/isolation-bench.json

For each storage driver (overlay, fuse-overlayfs, vfs) one run starts Slipway (SQLite, filesystem storage,
its build worker in the background process: buildah rootless as the build user, ``bud`` in the sandbox),
pushes a busybox base image into it (made locally, no internet) and measures, alternating the sides:

- **cold**: a build + push by Slipway of a Dockerfile FROM that base with ``COPY`` of a 50 MB context
  (random, incompressible) and 3 ``RUN`` steps, a unique LABEL first so no step is cached; wall time from
  the build request to phase ``complete``;
- **plain**: the same context built by plain root ``buildah bud`` + ``buildah push`` into the same registry
  with the same storage driver (chroot isolation, no sandbox, no layers: buildah's defaults);
- **warm**: Slipway rebuilding the cold build's Dockerfile with only the last step changed (the layer cache);
- **warm, second worker**: the same on a worker with an empty local store (Slipway restarted with a new
  ``builds.storage_root``), so every cached step comes from the cache in the registry.

Targets (issue 10): cold <= 1.10 x plain; warm and warm-second-worker <= 0.5 x cold.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_bench import PASSWORD, Slipway, push_base, slipway_build  # noqa: E402
from registry_bench import BenchError, free_port, slipway_commit  # noqa: E402

from builder.backends import DRIVERS  # noqa: E402

CONTEXT_FILES = 5


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def dockerfile(base: str, unique: str, last: str) -> str:
    return "\n".join([
        f"FROM {base}",
        f"LABEL run={unique}",
        "COPY data /data",
        'RUN ["/bin/busybox", "sh", "-c", "cat /data/* | /bin/busybox md5sum > /sum"]',
        'RUN ["/bin/busybox", "sh", "-c", "echo step two > /two"]',
        f'RUN ["/bin/busybox", "sh", "-c", "echo {last} > /last"]', ""])


def context_files(data: dict[str, bytes], base: str, unique: str, last: str) -> dict[str, bytes]:
    return {"Dockerfile": dockerfile(base, unique, last).encode(), **data}


def reachable(path: Path) -> None:
    """The build user must walk down to the data directory (mkdtemp makes it private)."""
    path = path.resolve()
    while path != path.parent and path != Path("/tmp"):
        path.chmod(path.stat().st_mode | 0o711)
        path = path.parent


class SandboxSlipway(Slipway):
    def __init__(self, workdir: Path, port: int, driver: str):
        super().__init__(workdir, port, storage_driver=driver)
        self.storage_root = str(workdir / "build")  # removed with the workdir

    def env(self, workers: int) -> dict:
        env = super().env(workers)
        env["SLIPWAY_BUILDS__STORAGE_ROOT"] = self.storage_root
        return env


def wait_worker_free(slipway: "SandboxSlipway", timeout: float = 300) -> float:
    """When the worker has no build left (its work directory is removed last): the time, polled every 20 ms."""
    work = Path(slipway.storage_root) / "work"
    deadline = time.monotonic() + timeout
    while any(work.glob("build-*")):
        if time.monotonic() > deadline:
            raise BenchError("the build worker did not finish")
        time.sleep(0.02)
    return time.time()


class Plain:
    """Plain root ``buildah bud`` + ``buildah push``: buildah's defaults, the same storage driver."""

    def __init__(self, workdir: Path, slipway: Slipway, driver: str):
        self.workdir, self.slipway = workdir, slipway
        name, options = DRIVERS[driver]
        self.base = ["buildah", "--root", str(workdir / "plain" / "storage"),
                     "--runroot", str(workdir / "plain" / "run"),
                     "--storage-driver", name, *options]
        conf = workdir / "plain-registries.conf"
        conf.write_text(f'unqualified-search-registries = []\n[[registry]]\nlocation = "{slipway.host}"\n'
                        "insecure = true\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_AUTH_FILE", "CONTAINERS_"))}
        self.env.update(BUILDAH_ISOLATION="chroot", CONTAINERS_REGISTRIES_CONF=str(conf), TMPDIR=str(workdir))

    def run(self, args: list[str]) -> None:
        out = subprocess.run(self.base + args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, timeout=900)
        if out.returncode != 0:
            raise BenchError(f"buildah {args[0]} failed ({out.returncode}): {out.stdout.decode()[-1500:]}")

    def build(self, files: dict[str, bytes], tag: str) -> float:
        context = self.workdir / f"plain-{tag}"
        for name, content in files.items():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            (context / name).write_bytes(content)
        image = f"localhost/plain-{uuid.uuid4().hex[:12]}"
        t0 = time.time()
        self.run(["bud", "--isolation", "chroot", "--creds", f"admin:{PASSWORD}", "-f", str(context / "Dockerfile"),
                  "-t", image, str(context)])
        self.run(["push", "--creds", f"admin:{PASSWORD}", image, f"docker://{self.slipway.host}/admin/plain:{tag}"])
        took = time.time() - t0
        self.run(["rmi", "-f", image])
        shutil.rmtree(context, ignore_errors=True)
        return took


def run_driver(driver: str, reps: int, context_mb: int, keep: bool) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"isolation-bench-{driver}-"))
    reachable(workdir)
    slipway = SandboxSlipway(workdir, free_port(), driver)
    rows: dict[str, list[float]] = {"cold": [], "plain": [], "warm": [], "warm_second_worker": []}
    phases: dict[str, list[dict]] = {"cold": [], "warm": [], "warm_second_worker": []}

    def timed(kind: str, result: dict) -> float:
        """Keep where a Slipway build's time went: request to start, context and pull, build, push; and when
        its worker was free again (after publishing the layer cache; not part of the build's time)."""
        p = result["phases_s"]
        free = wait_worker_free(slipway) - result["t0"]
        phases[kind].append({"queued_s": p["build-scheduled"],
                             "context_and_pull_s": p["building"] - p["build-scheduled"],
                             "build_s": p["pushing"] - p["building"], "push_s": p["complete"] - p["pushing"],
                             "worker_free_after_s": free})
        return result["total_s"]

    try:
        slipway.start(separate_worker=False)
        base = push_base(slipway, workdir)
        for name in ("app", "plain"):
            slipway.api("POST", "/repository", json={"repository": name, "visibility": "private"}, expect=(200, 201))
        size = context_mb * 1024 * 1024 // CONTEXT_FILES
        data = {f"data/part{i}": os.urandom(size) for i in range(CONTEXT_FILES)}
        plain = Plain(workdir, slipway, driver)
        # Warm-up (not measured): both sides have the base image locally.
        slipway_build(slipway, "admin/app", context_files(data, base, "warmup", "x"), "warmup", watch=False)
        plain.build(context_files(data, base, "warmup-plain", "x"), "warmup")
        used = slipway.api("GET", "/repository/admin/app/build/?limit=1")["builds"][0]
        driver_line = next((e["message"] for e in slipway.api(
            "GET", f"/repository/admin/app/build/{used['id']}/logs")["logs"] if "storage driver" in e["message"]), "")
        log(f"{driver}: {driver_line}")
        for n in range(reps):
            unique = uuid.uuid4().hex
            cold_files = context_files(data, base, unique, "first")
            sides = [("cold", lambda n=n, cold_files=cold_files: timed(
                         "cold", slipway_build(slipway, "admin/app", cold_files, f"cold{n}", watch=False))),
                     ("plain", lambda n=n: plain.build(context_files(data, base, uuid.uuid4().hex, "first"), f"p{n}"))]
            for name, fn in (sides if n % 2 == 0 else sides[::-1]):
                subprocess.run(["sync"])
                rows[name].append(fn())
                log(f"  {driver} rep {n + 1}/{reps} {name}: {rows[name][-1]:.2f} s")
            subprocess.run(["sync"])
            rows["warm"].append(timed("warm", slipway_build(slipway, "admin/app", context_files(
                data, base, unique, "second"), f"warm{n}", watch=False)))
            log(f"  {driver} rep {n + 1}/{reps} warm: {rows['warm'][-1]:.2f} s")
            # A second worker with an empty local store: the same database and registry, new build storage.
            slipway.stop()
            slipway.storage_root = str(workdir / f"second-worker-{n}")
            slipway.start(separate_worker=False)
            subprocess.run(["sync"])
            rows["warm_second_worker"].append(timed("warm_second_worker", slipway_build(
                slipway, "admin/app", context_files(data, base, unique, "third"), f"warm2-{n}", watch=False)))
            log(f"  {driver} rep {n + 1}/{reps} warm, second worker: {rows['warm_second_worker'][-1]:.2f} s")
            slipway.stop()
            slipway.storage_root = str(workdir / "build")
            slipway.start(separate_worker=False)
        medians = {k: statistics.median(v) for k, v in rows.items()}
        breakdown = {kind: {part: statistics.median(r[part] for r in runs) for part in runs[0]}
                     for kind, runs in phases.items() if runs}
        return {"driver": driver, "driver_line": driver_line, "runs_s": rows, "median_s": medians,
                "slipway_parts_median_s": breakdown,
                "ratios": {"cold/plain": medians["cold"] / medians["plain"],
                           "warm/cold": medians["warm"] / medians["cold"],
                           "warm_second_worker/cold": medians["warm_second_worker"] / medians["cold"]},
                "errors": slipway.log_errors()[-10:]}
    finally:
        slipway.stop()
        if not keep:
            subprocess.run(["rm", "-rf", str(workdir)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--drivers", default="overlay,fuse-overlayfs,vfs")
    parser.add_argument("--context-mb", type=int, default=50)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: builds run as the build user, plain buildah as root", file=sys.stderr)
        return 2
    report = {"commit": slipway_commit(), "machine": f"{platform.node()} {os.cpu_count()} cores",
              "reps": args.reps, "context_mb": args.context_mb, "drivers": []}
    fuse = Path("/dev/fuse")
    fuse_mode = fuse.stat().st_mode & 0o777 if fuse.exists() else None
    try:
        if "fuse-overlayfs" in args.drivers and fuse_mode is not None and fuse_mode != 0o666:
            # Debian's udev makes /dev/fuse 0666; a machine without udev leaves it 0600, and rootless
            # fuse-overlayfs cannot open it. Measured as on a stock host, put back afterwards.
            log(f"/dev/fuse is {oct(fuse_mode)}: 0666 (Debian's default) while fuse-overlayfs is measured")
            fuse.chmod(0o666)
        for driver in args.drivers.split(","):
            report["drivers"].append(run_driver(driver, args.reps, args.context_mb, args.keep))
    finally:
        if fuse_mode is not None:
            fuse.chmod(fuse_mode)
    print()
    print(f"Slipway {report['commit']}, {report['machine']}, {args.reps} reps, {args.context_mb} MB context")
    print(f"{'driver':16} {'cold':>7} {'plain':>7} {'warm':>7} {'warm 2nd':>8} {'cold/plain':>10} {'warm/cold':>9} "
          f"{'warm2/cold':>10}")
    for d in report["drivers"]:
        m, r = d["median_s"], d["ratios"]
        print(f"{d['driver']:16} {m['cold']:7.2f} {m['plain']:7.2f} {m['warm']:7.2f} {m['warm_second_worker']:8.2f} "
              f"{r['cold/plain']:10.2f} {r['warm/cold']:9.2f} {r['warm_second_worker/cold']:10.2f}")
    for d in report["drivers"]:
        for kind, parts in d["slipway_parts_median_s"].items():
            print(f"{d['driver']} {kind}: " + ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in parts.items()))
    for d in report["drivers"]:
        met = d["ratios"]["cold/plain"] <= 1.10 and d["ratios"]["warm/cold"] <= 0.5 \
            and d["ratios"]["warm_second_worker/cold"] <= 0.5
        print(f"{d['driver']}: targets (cold <= 1.10 x plain, warm <= 0.5 x cold) {'met' if met else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
