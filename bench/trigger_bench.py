#!/usr/bin/env python3
"""On-demand benchmark of Slipway's build triggers (issue 5). Not a test: run it by hand, e.g.

    .venv/bin/python bench/trigger_bench.py --json /tmp/trigger-bench.json

One run starts Slipway (the embedded default: SQLite, filesystem storage, one HTTP
process with its in-process build worker) in a fresh temporary directory, pushes a
busybox base image into it (made locally, no internet), makes a bare git repository
(``file://``) holding a Dockerfile ``FROM`` that image, and a custom-git trigger on
``admin/trig`` building from it. Then:

A. latency: ``--reps`` webhook POSTs one after the other, each for a new commit (committed
   and pushed to the bare repository before the clock starts; no hook: the harness POSTs
   the custom-git payload itself, with the ``$token`` credential of the webhook URL, on a
   new connection). Timed from just before the POST to the build's first log entry as a
   client sees it: through the build's SSE log stream opened as soon as the POST answers
   (``--observe sse``, the default), or by polling ``GET .../logs`` every 10 ms
   (``--observe poll``). The server's own timestamps (the build row, the queue claim, every
   log entry's ``created_at``, phase entries' ``datetime``) break the time down. Each build
   runs to its end, and the next POST waits until the worker has no child process left,
   so every build meets an idle queue. One warm-up build (not measured) comes first.
B. burst: while a paced pull load (a separate process: ``--pull-connections`` keep-alive
   connections, ``--pull-rate`` manifest GETs by tag per second in total, bearer token)
   runs against the registry, ``--burst`` threads POST the webhook at once (released by a
   barrier, each on its own connection, each for a distinct commit in the repository; 30 s
   timeout). Every answer is tallied (status code, the body's ``status``: queued/skipped,
   errors, timeouts); pull latency is compared before / during / after the burst, and the
   longest time no pull completed during it is reported. Afterwards the queued builds are
   cancelled (``DELETE`` on each build), and the server log is checked.

The harness also reports the CPU used by other processes on the machine during A and B.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_bench import (  # noqa: E402
    PASSWORD,
    TERMINAL,
    BenchError,
    Busy,
    Slipway,
    cmdline,
    free_port,
    iso_ts,
    log,
    machine_note,
    pct,
    push_base,
    sse_client,
    stats_ms,
)
from registry_bench import OCI_MANIFEST, process_tree, slipway_commit  # noqa: E402

from tests.triggers.test_triggers import GitServer  # noqa: E402

REPO = "admin/trig"
TARGET_FIRST_LINE_S = 1.0
STALL_LIMIT_S = 1.0  # the harness's reading of "must not block the server": no pull waits this long
BURST_TIMEOUT_S = 30


class TriggerSlipway(Slipway):
    """build_bench's Slipway, allowed to clone file:// sources, with an optional queued-build cap."""

    def __init__(self, *args, max_queued: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_queued = max_queued

    def env(self, workers: int) -> dict:
        env = dict(super().env(workers), SLIPWAY_TRIGGERS__ALLOW_FILE_URLS="true",
                   SLIPWAY_NETWORK__ALLOWLIST="127.0.0.1/32")
        if self.max_queued is not None:
            env["SLIPWAY_BUILDS__MAX_QUEUED_PER_NAMESPACE"] = str(self.max_queued)
        return env

    @property
    def db_path(self) -> Path:
        return self.data / "slipway.db"


# -- server-side timestamps --------------------------------------------------------------------------------

def server_record(slipway: TriggerSlipway, build_uuid: str) -> dict:
    """The build row's times and every log entry (with created_at, ms), read straight from SQLite (read-only)."""
    con = sqlite3.connect(f"file:{slipway.db_path}?mode=ro", uri=True, timeout=30)
    try:
        build_id, created, started, completed, phase = con.execute(
            "SELECT id, created_at, started_at, completed_at, phase FROM build WHERE uuid = ?",
            (build_uuid,)).fetchone()
        rows = con.execute("SELECT seq, type, message, data, created_at FROM build_log WHERE build_id = ? "
                           "ORDER BY seq", (build_id,)).fetchall()
    finally:
        con.close()
    entries = []
    for seq, kind, message, data, created_at in rows:
        entry = {"seq": seq, "type": kind, "message": message, "t": created_at / 1000}
        if kind == "phase" and data:
            entry["t"] = iso_ts(json.loads(data)["datetime"])  # microseconds, rather than created_at's ms
        entries.append(entry)
    return {"created": created / 1000, "started": started / 1000 if started else None,
            "completed": completed / 1000 if completed else None, "phase": phase, "entries": entries}


# -- following a build's log as a client ------------------------------------------------------------------

def follow_sse(slipway: TriggerSlipway, token: str, build_uuid: str) -> list[tuple[float, dict]]:
    """(time received, entry) for every entry of the build's SSE stream, until its end event."""
    out = {"samples": [], "events": 0, "entries": []}
    path = f"/api/v1/repository/{REPO}/build/{build_uuid}/logs/stream"
    asyncio.run(asyncio.wait_for(sse_client("127.0.0.1", slipway.port, path, f"Bearer {token}", out), 600))
    return out["entries"]


def follow_poll(slipway: TriggerSlipway, token: str, build_uuid: str, interval: float = 0.01) -> list:
    """The same by polling GET .../logs?start=N every ``interval`` s (one keep-alive connection)."""
    conn = http.client.HTTPConnection("127.0.0.1", slipway.port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    entries, position, deadline = [], 0, time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            conn.request("GET", f"/api/v1/repository/{REPO}/build/{build_uuid}/logs?start={position}", headers=headers)
            resp = conn.getresponse()
            body = json.loads(resp.read())
            now = time.time()
            if resp.status != 200:
                raise BenchError(f"logs answered {resp.status}: {body}")
            for entry in body["logs"]:
                entries.append((now, entry))
            position += len(body["logs"])
            if entries and entries[-1][1].get("type") == "phase" and entries[-1][1]["message"] in TERMINAL:
                return entries
            time.sleep(interval)
    finally:
        conn.close()
    raise BenchError(f"build {build_uuid} did not end within 600 s")


def wait_idle(slipway: TriggerSlipway, settle: float = 0.3, timeout: float = 120) -> None:
    """Until ``slipway serve`` has no working child process (buildah rmi after a build), then ``settle`` s more.

    Idle ``git cat-file`` processes do not count: GitPython keeps them for a clone's Repo object until it is
    closed or garbage-collected (closed since builder/clone.py uses ``with repo``)."""
    deadline = time.monotonic() + timeout
    while True:
        working = [argv for argv in (cmdline(p) for p in process_tree(slipway.serve.pid)[1:])
                   if argv and argv[:2] != ["git", "cat-file"]]
        if not working:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"the build worker still has child processes after {timeout} s: {working}")
        time.sleep(0.05)
    time.sleep(settle)


# -- git ---------------------------------------------------------------------------------------------------

def dockerfile(base: str, n: int) -> str:
    return f"FROM {base}\nLABEL bench.change=\"{n}\"\n"


def payload(git: GitServer, sha: str) -> dict:
    """The custom-git trigger's body, as tests/triggers' post-receive hook sends it."""
    show = git.git("log", "-1", "--format=%cI%n%an%n%B", sha).split("\n", 2)
    author = {"username": show[1], "url": "", "avatar_url": ""}
    return {"commit": sha, "ref": "refs/heads/main", "default_branch": "main",
            "commit_info": {"url": f"file://{sha}", "date": show[0], "author": author, "message": show[2].strip()}}


class Hook:
    """Where and how to POST the webhook: the URL without its credential, and the $token credential."""

    def __init__(self, webhook_url: str, port: int):
        credential, _, rest = webhook_url.split("://", 1)[1].partition("@")
        self.code = credential.split(":", 1)[1]
        self.path = "/" + rest.split("/", 1)[1]
        self.port = port
        self.url = f"http://127.0.0.1:{port}{self.path}"
        self.auth = ("$token", self.code)
        self.basic = "Basic " + base64.b64encode(f"$token:{self.code}".encode()).decode()


# -- A: latency ----------------------------------------------------------------------------------------------

def first(entries: list, predicate) -> float | None:
    return next((t for t, e in entries if predicate(e)), None)


def latency_rep(slipway: TriggerSlipway, git: GitServer, hook: Hook, token: str, base: str, n: int,
                observe: str) -> dict:
    sha = git.commit({"Dockerfile": dockerfile(base, n)}, f"Change {n}")
    git.git("push", "-q", "origin", "main")
    body = json.dumps(payload(git, sha))
    wait_idle(slipway)
    t0 = time.time()
    r = requests.post(hook.url, data=body, auth=hook.auth, headers={"Content-Type": "application/json"}, timeout=30)
    t_posted = time.time()
    answer = r.json()
    if r.status_code != 200 or answer.get("status") != "queued":
        raise BenchError(f"webhook answered {r.status_code}: {r.text[:300]}")
    seen = (follow_sse if observe == "sse" else follow_poll)(slipway, token, answer["build"])
    server = server_record(slipway, answer["build"])
    if server["phase"] != "complete":
        tail = "\n".join(e["message"] for e in server["entries"][-15:])
        raise BenchError(f"build {answer['build']} ended {server['phase']}\n{tail}")
    entries = server["entries"]

    def s_first(predicate) -> float | None:
        return next((e["t"] - t0 for e in entries if predicate(e)), None)

    def s_phase(name: str) -> float | None:
        return s_first(lambda e: e["type"] == "phase" and e["message"] == name)

    def is_text(e) -> bool:
        return not e.get("type")

    def clone_line(e) -> bool:
        return e["message"].startswith("Cloning ")

    c_first = seen[0][0] - t0 if seen else None
    c_text = first(seen, is_text)
    return {
        "commit": sha, "build": answer["build"], "post_s": t_posted - t0,
        "first_entry": entries[0]["type"] + ":" + entries[0]["message"],
        "client_first_entry_s": c_first,
        "client_first_line_s": c_text - t0 if c_text else None,
        "server": {
            "queued_s": server["created"] - t0,  # the build row (ms)
            "claimed_s": server["started"] - t0,  # the queue claim (ms)
            "first_entry_s": entries[0]["t"] - t0,
            "unpacking_s": s_phase("unpacking"),
            "clone_start_s": s_first(clone_line),  # the "Cloning <url> at <sha>" line
            "clone_done_s": s_first(lambda e: e["message"].startswith("Checked out ")),
            "context_ready_s": s_first(lambda e: e["message"].startswith("Build context ready")),
            "pulling_s": s_phase("pulling"), "building_s": s_phase("building"), "pushing_s": s_phase("pushing"),
            "complete_s": s_phase("complete"),
        },
        "entries": len(entries),
    }


def latency_phase(slipway: TriggerSlipway, git: GitServer, hook: Hook, token: str, base: str, reps: int,
                  warmup: int, observe: str) -> dict:
    for n in range(warmup):
        result = latency_rep(slipway, git, hook, token, base, -1 - n, observe)
        log(f"  warm-up build: first entry after {result['client_first_entry_s'] * 1000:.0f} ms, "
            f"complete after {result['server']['complete_s']:.2f} s")
    runs = []
    with Busy(slipway) as busy:
        for n in range(reps):
            result = latency_rep(slipway, git, hook, token, base, n, observe)
            runs.append(result)
            log(f"  {n + 1}/{reps}: POST {result['post_s'] * 1000:.0f} ms, first entry client "
                f"{result['client_first_entry_s'] * 1000:.0f} / server {result['server']['first_entry_s'] * 1000:.0f}"
                f" ms, 'Cloning' line client {result['client_first_line_s'] * 1000:.0f} ms, complete "
                f"{result['server']['complete_s']:.2f} s")
    return {"observe": observe, "runs": runs, "machine_cores": round(busy.cores, 2),
            "other_cores": round(busy.other_cores, 2)}


# -- B: burst ------------------------------------------------------------------------------------------------

def pull_client(spec: dict) -> None:
    """Hidden mode (--pull-client): paced manifest GETs on keep-alive connections until stdin closes;
    prints [scheduled, sent, received, status] per request as JSON (status -1: error, -2: wrong body)."""
    connections, interval = spec["connections"], spec["connections"] / spec["rate"]
    headers = {"Authorization": f"Bearer {spec['token']}", "Accept": OCI_MANIFEST}
    stop = threading.Event()
    samples: list = []
    start = time.time() + 0.05

    def run(k: int) -> None:
        conn, i = None, 0
        while not stop.is_set():
            scheduled = start + (i + k / connections) * interval  # a fixed schedule: a stall shows as lateness
            i += 1
            delay = scheduled - time.time()
            if delay > 0 and stop.wait(delay):
                break
            sent = time.time()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(spec["host"], spec["port"], timeout=BURST_TIMEOUT_S)
                conn.request("GET", spec["path"], headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status if resp.status != 200 or len(data) == spec["size"] else -2
            except (OSError, http.client.HTTPException):
                status = -1
                if conn is not None:
                    conn.close()
                conn = None
            samples.append((scheduled, sent, time.time(), status))

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(connections)]
    for thread in threads:
        thread.start()
    sys.stdin.read()
    stop.set()
    for thread in threads:
        thread.join(BURST_TIMEOUT_S + 5)
    print(json.dumps(samples))


def pull_stats(samples: list, start: float, end: float) -> dict:
    """Pulls due in [start, end) (by their schedule: one held up by a stall counts where it was due): count,
    failures, latency from sending; latency from the schedule; the longest time no pull completed."""
    inside = [s for s in samples if start <= s[0] < end]
    ok = [s for s in inside if s[3] == 200]
    stats = {"requests": len(inside), "failed": len(inside) - len(ok),
             "statuses": dict(Counter(str(s[3]) for s in inside)), "seconds": round(end - start, 3)}
    if ok:
        stats.update(stats_ms([s[2] - s[1] for s in ok]))
        stats["p99_ms"] = round(pct([s[2] - s[1] for s in ok], 0.99) * 1000, 1)
        late = [s[2] - s[0] for s in ok]  # from when it should have been sent: includes waiting behind a stall
        stats["from_schedule_p99_ms"] = round(pct(late, 0.99) * 1000, 1)
        stats["from_schedule_max_ms"] = round(max(late) * 1000, 1)
    done = sorted([start] + [s[2] for s in samples if start <= s[2] < end and s[3] == 200] + [end])
    stats["longest_gap_ms"] = round(max(b - a for a, b in zip(done, done[1:])) * 1000, 1)
    return stats


def burst_build_ids(slipway: TriggerSlipway, since: float) -> list[str]:
    """Every build created since ``since`` (the burst's release), from the database (read-only)."""
    con = sqlite3.connect(f"file:{slipway.db_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("SELECT uuid FROM build WHERE created_at >= ?", (int(since * 1000) - 1,)).fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


def listen_drops() -> int:
    """The kernel's count of connections refused because a listen queue was full (TcpExt ListenDrops,
    machine-wide): a client whose SYN was dropped tries again after 1 s."""
    header, values = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()
                      if line.startswith("TcpExt:")][:2]
    return int(values[header.index("ListenDrops")])


def registry_token(slipway: TriggerSlipway, repo: str) -> str:
    r = requests.get(f"{slipway.url}/v2/auth", params={"service": slipway.host, "scope": f"repository:{repo}:pull"},
                     auth=("admin", PASSWORD), timeout=30)
    r.raise_for_status()
    return r.json()["token"]


def send_burst(hook: Hook, bodies: list[bytes]) -> tuple[list[dict], float]:
    """POST every body at once, one thread and one connection each; returns the answers and the release time."""
    barrier = threading.Barrier(len(bodies) + 1)
    results: list = [None] * len(bodies)

    def one(i: int) -> None:
        barrier.wait()
        t0 = time.time()
        result = {"sent": t0}
        conn = http.client.HTTPConnection("127.0.0.1", hook.port, timeout=BURST_TIMEOUT_S)
        try:
            conn.request("POST", hook.path, body=bodies[i],
                         headers={"Content-Type": "application/json", "Authorization": hook.basic})
            resp = conn.getresponse()
            data = resp.read()
            result.update(code=resp.status, body=data.decode(errors="replace")[:500])
            try:
                result["status"] = json.loads(data).get("status")
            except ValueError:
                result["status"] = None
        except TimeoutError:
            result.update(code="timeout")
        except (OSError, http.client.HTTPException) as e:
            result.update(code="error", error=repr(e))
        finally:
            conn.close()
        result["received"] = time.time()
        results[i] = result

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    barrier.wait()
    released = time.time()
    for thread in threads:
        thread.join(BURST_TIMEOUT_S + 10)
    return [r or {"code": "no answer", "sent": released, "received": time.time()} for r in results], released


def cancel_all(slipway: TriggerSlipway, build_ids: list[str], timeout: float = 300) -> dict:
    """DELETE every build (a waiting one leaves the queue, a running one is stopped) and wait until all ended."""
    answers = Counter()
    for build_id in build_ids:
        r = slipway.session.delete(f"{slipway.url}/api/v1/repository/{REPO}/build/{build_id}", timeout=60)
        answers[r.status_code] += 1
    deadline = time.monotonic() + timeout
    pending = list(build_ids)
    while pending:
        pending = [b for b in pending if slipway.api("GET", f"/repository/{REPO}/build/{b}")["phase"] not in TERMINAL]
        if pending and time.monotonic() > deadline:
            raise BenchError(f"{len(pending)} builds still not ended {timeout} s after cancelling")
        if pending:
            time.sleep(0.5)
    phases = Counter(slipway.api("GET", f"/repository/{REPO}/build/{b}")["phase"] for b in build_ids)
    return {"delete_answers": {str(k): v for k, v in answers.items()}, "final_phases": dict(phases)}


def burst_phase(slipway: TriggerSlipway, git: GitServer, hook: Hook, base: str, args) -> dict:
    log(f"B: {args.burst} commits for the burst")
    git.commit({"Dockerfile": dockerfile(base, 10_000)}, "Burst base")
    for i in range(args.burst - 1):
        git.git("commit", "-q", "--allow-empty", "-m", f"Burst change {i}")
    shas = git.git("rev-list", f"-{args.burst}", "HEAD").split()[::-1]
    git.git("push", "-q", "origin", "main")
    bodies = [json.dumps(payload(git, sha)).encode() for sha in shas]
    wait_idle(slipway)

    token = registry_token(slipway, "admin/base")
    manifest = requests.get(f"{slipway.url}/v2/admin/base/manifests/1", timeout=30, headers={
        "Authorization": f"Bearer {token}", "Accept": OCI_MANIFEST})
    manifest.raise_for_status()
    spec = {"host": "127.0.0.1", "port": slipway.port, "path": "/v2/admin/base/manifests/1",
            "token": token, "size": len(manifest.content),
            "connections": args.pull_connections, "rate": args.pull_rate}
    log(f"B: pull load ({args.pull_connections} connections, {args.pull_rate} manifest GETs/s); "
        f"{args.pull_before} s before the burst")
    with Busy(slipway) as busy:
        pulls = subprocess.Popen([sys.executable, __file__, "--pull-client", json.dumps(spec)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
        pull_start = time.time()
        time.sleep(args.pull_before)
        drops = listen_drops()
        answers, released = send_burst(hook, bodies)
        drops = listen_drops() - drops
        burst_end = max(a["received"] for a in answers)
        time.sleep(args.pull_after)
        out, _ = pulls.communicate(b"", timeout=BURST_TIMEOUT_S + 30)
        pull_end = time.time()
    samples = json.loads(out)
    codes = Counter(str(a["code"]) for a in answers)
    statuses = Counter(str(a.get("status")) for a in answers if a["code"] == 200)
    latencies = [a["received"] - a["sent"] for a in answers]
    queued = [json.loads(a["body"])["build"] for a in answers if a["code"] == 200 and a.get("status") == "queued"]
    sample_429 = next((a["body"] for a in answers if a["code"] == 429), None)
    result = {
        "webhooks": len(answers), "codes": dict(codes), "body_status": dict(statuses), "queued": len(queued),
        "wall_s": round(burst_end - released, 3), "latency": stats_ms(latencies),
        "latencies_ms": sorted(round(x * 1000, 1) for x in latencies), "listen_drops": drops,
        "first_answer_ms": round((min(a["received"] for a in answers) - released) * 1000, 1),
        "sample_429": sample_429,
        "errors": [a for a in answers if a["code"] not in (200, 201, 202, 429)][:5],
        "pulls": {"before": pull_stats(samples, pull_start + 1, released),
                  "during": pull_stats(samples, released, burst_end),
                  "after": pull_stats(samples, burst_end, pull_end)},
        "machine_cores": round(busy.cores, 2), "other_cores": round(busy.other_cores, 2),
        "pull_samples_relative": {"released": released, "samples": [  # [due, sent, received] s after release
            [round(x - released, 4) for x in s[:3]] + [s[3]] for s in samples]},
    }
    log(f"  answers {dict(codes)}, body status {dict(statuses)}, wall {result['wall_s']} s, "
        f"latency {result['latency']}")
    for window, stats in result["pulls"].items():
        log(f"  pulls {window}: {stats}")
    burst_builds = burst_build_ids(slipway, released)
    result["builds_created"] = len(burst_builds)
    log(f"  {len(queued)} queued answers, {len(burst_builds)} builds created; cancelling them")
    result["cancel"] = cancel_all(slipway, sorted(set(burst_builds) | set(queued)))
    log(f"  {result['cancel']}")
    return result


# -- the run ---------------------------------------------------------------------------------------------------

def setup(slipway: TriggerSlipway, workdir: Path) -> tuple[GitServer, Hook, str, str]:
    base = push_base(slipway, workdir)
    slipway.api("POST", "/repository", json={"repository": REPO.split("/")[1], "visibility": "private"})
    token = slipway.api("POST", "/user/apitokens", json={"title": "bench", "scopes": ["repo:admin"]},
                        expect=(201,))["token"]["token_code"]
    # From here on the harness's API calls use the token: no Argon2 password check per request on the server.
    slipway.session.auth = None
    slipway.session.headers["Authorization"] = f"Bearer {token}"
    git = GitServer(workdir / "git")
    git.commit({"Dockerfile": dockerfile(base, 0)}, "First version")
    git.git("push", "-q", "origin", "main")
    created = slipway.api("POST", f"/repository/{REPO}/trigger/", expect=(201,),
                          json={"service": "custom-git", "config": {"build_source": f"file://{git.origin}"}})
    active = slipway.api("POST", f"/repository/{REPO}/trigger/{created['id']}/activate", json={})
    return git, Hook(active["webhook_url"], slipway.port), token, base


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--pull-client":
        pull_client(json.loads(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20, help="measured webhook builds, one after another (20)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured webhook builds first (1)")
    parser.add_argument("--observe", choices=("sse", "poll"), default="sse",
                        help="how the client sees the first log entry: the SSE stream (default) or polling "
                             "GET .../logs every 10 ms")
    parser.add_argument("--burst", type=int, default=200, help="webhook POSTs sent at once (200; 0 skips B)")
    parser.add_argument("--max-queued", type=int, default=None,
                        help="builds.max_queued_per_namespace for the server (default: Slipway's, 25)")
    parser.add_argument("--pull-connections", type=int, default=4, help="pull load: keep-alive connections (4)")
    parser.add_argument("--pull-rate", type=float, default=100, help="pull load: manifest GETs per second (100)")
    parser.add_argument("--pull-before", type=float, default=5, help="seconds of pull load before the burst (5)")
    parser.add_argument("--pull-after", type=float, default=2, help="seconds of pull load after the burst (2)")
    parser.add_argument("--storage-driver", default="vfs", help="buildah storage driver (Slipway's default: vfs)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--access-log", action="store_true", help="diagnosis: the server logs every request")
    parser.add_argument("--json", help="save all figures to this file")
    args = parser.parse_args()
    if args.reps < 1 or args.burst < 0 or args.pull_rate <= 0 or args.pull_connections < 1:
        parser.error("--reps and --pull-connections must be at least 1, --burst at least 0, --pull-rate positive")

    workdir = Path(tempfile.mkdtemp(prefix="slipway-trigger-bench-", dir=os.environ.get("BENCH_TMP")))
    slipway = TriggerSlipway(workdir, free_port(), access_log=args.access_log, storage_driver=args.storage_driver,
                             max_queued=args.max_queued)
    report: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "machine": machine_note(), "slipway_rev": slipway_commit(),
                    "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
                    "args": {k: v for k, v in vars(args).items() if k not in ("json", "keep")}}
    ok = False
    try:
        log(f"slipway serve with its in-process build worker ({workdir})")
        slipway.start(separate_worker=False)
        git, hook, token, base = setup(slipway, workdir)
        log(f"A: {args.warmup} warm-up + {args.reps} webhook builds, observed by {args.observe}")
        report["latency"] = latency_phase(slipway, git, hook, token, base, args.reps, args.warmup, args.observe)
        if args.burst:
            report["burst"] = burst_phase(slipway, git, hook, base, args)
        ok = True
    finally:
        slipway.stop()
        report["server_log_problems"] = slipway.log_errors()
        if not ok and report["server_log_problems"]:
            print("\n".join(["server log warnings/errors:"] + report["server_log_problems"][:20]))
        if not args.keep:
            subprocess.run(["rm", "-rf", str(workdir)])
        else:
            log(f"kept {workdir}")
    report["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    summarize(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        log(f"saved {args.json}")
    return 0 if all(row["pass"] is not False for row in report["table"]) else 1


def triple(values: list[float]) -> str:
    s = stats_ms(values)
    return f"{s['p50_ms']:.0f} / {s['p95_ms']:.0f} / {s['max_ms']:.0f}"


def summarize(report: dict) -> None:
    lat = report["latency"]
    runs = lat["runs"]
    how = "SSE" if lat["observe"] == "sse" else "polling /logs every 10 ms"
    client_first = [r["client_first_entry_s"] for r in runs]
    server_first = [r["server"]["first_entry_s"] for r in runs]
    client_line = [r["client_first_line_s"] for r in runs]
    server_line = [r["server"]["clone_start_s"] for r in runs]
    table = [
        (f"A. POST -> first log entry ('{runs[0]['first_entry']}'), client via {how} (p50 / p95 / max ms)",
         triple(client_first), "p95 < 1000", pct(client_first, 0.95) < TARGET_FIRST_LINE_S),
        ("A. POST -> first log entry, server timestamp (p50 / p95 / max ms)",
         triple(server_first), "p95 < 1000", pct(server_first, 0.95) < TARGET_FIRST_LINE_S),
        (f"A. POST -> first output line ('Cloning ...'), client via {how} (p50 / p95 / max ms)",
         triple(client_line), "p95 < 1000", pct(client_line, 0.95) < TARGET_FIRST_LINE_S),
        ("A. POST -> first output line, server timestamp (p50 / p95 / max ms)", triple(server_line), "", ""),
    ]
    for label, key in (("webhook POST answered", None), ("build row created", "queued_s"),
                       ("queue claim", "claimed_s"), ("clone done", "clone_done_s"),
                       ("context ready", "context_ready_s"), ("'pulling' phase", "pulling_s"),
                       ("build complete", "complete_s")):
        values = [r["post_s"] if key is None else r["server"][key] for r in runs]
        table.append((f"   breakdown: POST -> {label} (p50 / p95 / max ms)", triple(values), "", ""))
    burst = report.get("burst")
    if burst:
        answered = sum(v for k, v in burst["codes"].items() if k in ("200", "201", "202", "429"))
        bad = burst["webhooks"] - answered
        table += [
            (f"B. {burst['webhooks']} webhooks at once: answered 2xx or 429",
             f"{answered} / {burst['webhooks']}", "all", bad == 0),
            ("   answers: HTTP codes; body status of the 200s",
             ", ".join(f"{k}: {v}" for k, v in sorted(burst["codes"].items())) + "; "
             + ", ".join(f"{k}: {v}" for k, v in sorted(burst["body_status"].items())), "", ""),
            ("   5xx / connection errors / timeouts",
             f"{sum(v for k, v in burst['codes'].items() if k.startswith('5'))} / {burst['codes'].get('error', 0)}"
             f" / {burst['codes'].get('timeout', 0) + burst['codes'].get('no answer', 0)}", "0 / 0 / 0", bad == 0),
            ("   burst wall time, release -> last answer (s)", f"{burst['wall_s']:.2f}", "", ""),
            ("   connections dropped by a full listen queue (TcpExt ListenDrops, machine-wide)",
             str(burst.get("listen_drops", "-")), "", ""),
            ("   per-webhook answer time (p50 / p95 / max ms)",
             f"{burst['latency']['p50_ms']:.0f} / {burst['latency']['p95_ms']:.0f} / {burst['latency']['max_ms']:.0f}",
             "", ""),
        ]
        for window in ("before", "during", "after"):
            p = burst["pulls"][window]
            value = (f"{p['requests']} / {p['failed']} / " + (f"{p['p50_ms']:.0f} / {p['p99_ms']:.0f} / "
                                                              f"{p['max_ms']:.0f}" if "p50_ms" in p else "-"))
            target, verdict = ("0 failed", p["failed"] == 0 and p["requests"] > 0) if window == "during" else ("", "")
            table.append((f"B. pulls due {window} the burst: n / failed / p50 / p99 / max ms", value, target, verdict))
        during = burst["pulls"]["during"]
        table.append(("B. longest time without a completed pull during the burst (ms)",
                      f"{during['longest_gap_ms']:.0f}", f"< {STALL_LIMIT_S * 1000:.0f}",
                      during["longest_gap_ms"] < STALL_LIMIT_S * 1000))
        table.append(("   pulls due during the burst, latency from when due (p99 / max ms)",
                      f"{during.get('from_schedule_p99_ms', '-')} / {during.get('from_schedule_max_ms', '-')}", "", ""))
        table.append(("   queued builds cancelled afterwards: final phases",
                      ", ".join(f"{k}: {v}" for k, v in sorted(burst["cancel"]["final_phases"].items())), "", ""))
    problems = report["server_log_problems"]
    table.append(("server log warnings / errors / tracebacks", str(len(problems)), "0", not problems))
    width = max(len(r[0]) for r in table)
    vwidth = max(20, max(len(r[1]) for r in table))
    print()
    print(f"{report['machine']}; Slipway {report['slipway_rev']}; {len(runs)} latency builds; "
          f"load average {' '.join(report['loadavg_start'])} at start")
    print(f"{'figure'.ljust(width)} | {'value'.rjust(vwidth)} | {'target':>10} | result")
    print("-" * (width + vwidth + 26))
    for name, value, target, verdict in table:
        print(f"{name.ljust(width)} | {value.rjust(vwidth)} | {target:>10} | "
              f"{'' if verdict == '' else ('PASS' if verdict else 'FAIL')}")
    print()
    print("A, per build (ms after the POST started): " + "; ".join(
        f"{r['client_first_entry_s'] * 1000:.0f}/{r['server']['first_entry_s'] * 1000:.0f}" for r in runs)
        + "  (client / server, first entry)")
    print(f"CPU used by other work: during A {lat['other_cores']:.2f} cores (machine {lat['machine_cores']:.2f})"
          + (f", during B {burst['other_cores']:.2f} cores (machine {burst['machine_cores']:.2f})" if burst else "")
          + f" of {os.cpu_count()}")
    if burst and burst["errors"]:
        print("burst errors (first 5):")
        for e in burst["errors"]:
            print("  ", e)
    if burst and burst["sample_429"]:
        print(f"a 429 answer: {burst['sample_429']}")
    if problems:
        print(f"server log warnings/errors ({len(problems)}):")
        for line in problems[:20]:
            print("  " + line)
    report["table"] = [{"figure": n, "value": v, "target": t, "pass": None if ok == "" else bool(ok)}
                       for n, v, t, ok in table]


if __name__ == "__main__":
    sys.exit(main())
