#!/usr/bin/env python3
"""On-demand benchmark of the web interface (issue 15): server time of the heaviest list pages.

Starts a Slipway server (one HTTP process, no background workers) on a loopback port with a fresh
data directory, seeds through the API, signs in through the sign-in form as a browser does, and
measures:

* ``/``: the repository list of a user who can see ``--repos`` repositories (first page);
* ``/repository/admin/bench?tab=tags``: the tags tab of a repository with ``--tags`` tags (first page,
  100 tags, with sizes, security summaries, labels);
* ``/repository/admin/bench``: the information tab (description and the 30-day activity chart);
* ``/repository/admin/bench?tab=history``: the first 100 spans of its tag history.

Server time is what Tornado's access log says for each request (from the request's arrival to
its answer, in the server); the client's time is shown beside it. Not a test: run it by hand, e.g.

    .venv/bin/python bench/ui_bench.py --requests 200
    .venv/bin/python bench/ui_bench.py --database-url postgresql://slipway:slipway@127.0.0.1:5432/uibench

(a PostgreSQL database given by URL must exist and be empty).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.images import make_oci_layout  # noqa: E402 - the tests' small busybox image

PASSWORD = "bench-password-1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LOG_LINE = re.compile(r" (\d{3}) GET (\S+) \([^)]*\) ([0-9.]+)ms")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data: Path, database_url: str | None) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, SLIPWAY_DATA_DIR=str(data), SLIPWAY_ADMIN_PASSWORD=PASSWORD,
               SLIPWAY_SERVER__HOST="127.0.0.1", SLIPWAY_SERVER__PORT=str(port), SLIPWAY_SERVER__PROCESSES="1",
               SLIPWAY_SERVER__WORKERS="false", SLIPWAY_SERVER__PUBLIC_URL=url, PYTHONPATH=str(ROOT),
               SLIPWAY_BUILDS__STORAGE_ROOT=str(data / "builds"))
    env["SLIPWAY_DATABASE_URL"] = database_url or f"sqlite:///{data}/slipway.db"
    log = data / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "slipway.cli", "serve"], env=env, cwd=str(ROOT),
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url, log
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit(f"slipway did not start:\n{log.read_text()}")


def seed(url: str, repos: int, tags: int, work: Path) -> None:
    api = requests.Session()
    api.auth = ("admin", PASSWORD)
    for i in range(repos):
        name = "bench" if i == 0 else f"repo{i:05d}"
        r = api.post(f"{url}/api/v1/repository", json={"namespace": "admin", "repository": name,
                                                      "visibility": "private", "description": f"Repository {i}"})
        assert r.status_code == 201, r.text
    host = url.split("://")[1]
    token = requests.get(f"{url}/v2/auth", params={"service": host, "scope": "repository:admin/bench:push,pull"},
                         auth=("admin", PASSWORD), timeout=30).json()["token"]
    v2 = requests.Session()
    v2.headers["Authorization"] = f"Bearer {token}"
    image = make_oci_layout(work / "image", labels={"org.example.bench": "yes"})
    blobs = work / "image" / "blobs" / "sha256"
    manifest = (blobs / image["manifest_digest"].split(":")[1]).read_bytes()
    for descriptor in json.loads(manifest)["layers"] + [json.loads(manifest)["config"]]:
        data = (blobs / descriptor["digest"].split(":")[1]).read_bytes()
        r = v2.post(f"{url}/v2/admin/bench/blobs/uploads/?digest={descriptor['digest']}", data=data)
        assert r.status_code == 201, r.text
    for i in range(tags):
        r = v2.put(f"{url}/v2/admin/bench/manifests/t{i:05d}", data=manifest,
                   headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text


def sign_in(url: str) -> requests.Session:
    browser = requests.Session()
    page = browser.get(f"{url}/signin").text
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page).group(1)
    r = browser.post(f"{url}/signin", data={"_csrf": csrf, "username": "admin", "password": PASSWORD},
                     allow_redirects=False)
    assert r.status_code == 302, r.text
    return browser


def measure(browser: requests.Session, url: str, log: Path, path: str, count: int, expect: str) -> dict:
    for _ in range(5):  # warm up
        browser.get(url + path)
    time.sleep(0.2)  # the warm-up's log lines written
    offset = log.stat().st_size
    client = []
    for _ in range(count):
        t0 = time.perf_counter()
        r = browser.get(url + path)
        client.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200 and expect in r.text, (path, r.status_code)
    time.sleep(0.2)
    with open(log, "rb") as f:
        f.seek(offset)
        lines = f.read().decode("utf-8", "replace").splitlines()
    server = [float(m.group(3)) for m in map(LOG_LINE.search, lines) if m and m.group(2) == path][-count:]
    assert len(server) == count, (len(server), count)
    return {"path": path, "requests": count, "bytes": len(r.content), **stats("server", server),
            **stats("client", client)}


def stats(name: str, values: list[float]) -> dict:
    values = sorted(values)
    return {f"{name}_p50_ms": round(statistics.median(values), 1),
            f"{name}_p95_ms": round(values[min(len(values) - 1, int(len(values) * 0.95))], 1),
            f"{name}_max_ms": round(values[-1], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", default=None, help="write the results here too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ui-bench-") as tmp:
        work = Path(tmp)
        proc, url, log = start(work, args.database_url)
        try:
            t0 = time.time()
            seed(url, args.repos, args.tags, work)
            print(f"seeded {args.repos} repositories and {args.tags} tags in {time.time() - t0:.0f} s")
            browser = sign_in(url)
            results = [
                measure(browser, url, log, "/", args.requests, "admin/bench"),
                measure(browser, url, log, "/repository/admin/bench?tab=tags", args.requests, "t00999"
                        if args.tags >= 1000 else "t00000"),
                measure(browser, url, log, "/repository/admin/bench", args.requests, "Activity"),
                measure(browser, url, log, "/repository/admin/bench?tab=history", args.requests, "was created"),
            ]
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
    print(f"{'page':45} {'server p50':>10} {'p95':>7} {'max':>7} {'client p50':>11} {'p95':>7} {'KiB':>6}")
    for r in results:
        print(f"{r['path']:45} {r['server_p50_ms']:>10} {r['server_p95_ms']:>7} {r['server_max_ms']:>7} "
              f"{r['client_p50_ms']:>11} {r['client_p95_ms']:>7} {r['bytes'] / 1024:>6.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
