"""The build queue: cancelling, timeouts, log caps, queue limits and order, a worker process killed mid-build,
and live logs over Server-Sent Events from a separate worker process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.builder.conftest import FAST_QUEUE, Builds
from tests.conftest import ContainerTools, SlipwayServer, wait_for

SLOW = '["/bin/busybox", "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 0.4; done"]'


def make(tmp_path_factory, name: str, **env) -> tuple[SlipwayServer, Builds]:
    base = tmp_path_factory.mktemp(name)
    srv = SlipwayServer(base, extra_env={**FAST_QUEUE, **{f"SLIPWAY_BUILDS__{k.upper()}": str(v)
                                                          for k, v in env.items()}}).start()
    try:
        return srv, Builds(srv, ContainerTools(base / "tools", srv.host)).setup(base)
    except BaseException:
        srv.stop()
        raise


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    # The limit leaves room for the other builds of the module on a busy machine (at 6 s, the chatty build
    # below once ran out of it while pushing, with the load average at 20 on two cores).
    srv, builds = make(tmp_path_factory, "one-worker", workers=1, timeout_seconds=12, max_log_bytes=3000)
    yield builds
    srv.stop()


@pytest.fixture(scope="module")
def no_workers(tmp_path_factory):
    """A server that queues builds but runs none itself: separate `slipway worker` processes do."""
    srv, builds = make(tmp_path_factory, "no-workers", workers=0, max_queued_per_namespace=3)
    yield builds
    srv.stop()


def build_row(builds: Builds, build_id: str) -> dict:
    row = builds.server.sql("SELECT started_at, completed_at, phase, retries_remaining FROM build WHERE uuid = ?",
                            build_id)[0]
    return dict(zip(("started_at", "completed_at", "phase", "retries_remaining"), row))


def start_worker(builds: Builds, log_name: str) -> subprocess.Popen:
    log = open(builds.server.data_dir.parent / log_name, "ab")
    env = {**builds.server.env, "SLIPWAY_SERVER__PUBLIC_URL": builds.server.url}  # a scale-out role needs it
    return subprocess.Popen([sys.executable, "-m", "slipway.cli", "worker"], env=env,
                            cwd=builds.server.env["PYTHONPATH"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def test_cancel_a_running_build_stops_buildah(one_worker):
    repo = one_worker.repo("to-cancel")
    build = one_worker.start_dockerfile(repo, f"FROM {one_worker.base}\nRUN [\"/bin/busybox\", \"sleep\", \"60\"]\n")
    one_worker.wait(repo, build["id"], phases=("building",), timeout=60)
    wait_for(lambda: "STEP 2/2" in one_worker.log_text(repo, build["id"]), timeout=60,
             what="buildah to run the RUN step")
    asked = time.time()
    one_worker.admin.ok("DELETE", f"/repository/{repo}/build/{build['id']}")
    done = one_worker.wait(repo, build["id"], timeout=20)
    assert done["phase"] == "cancelled" and time.time() - asked < 8
    assert subprocess.run(["pgrep", "-f", f"slipway-build-{build['id']}"], capture_output=True).returncode == 1
    assert one_worker.tags(repo) == []
    cancels = one_worker.server.sql("SELECT metadata FROM log_entry WHERE kind = 'cancel_build'")
    assert [json.loads(c[0])["build_uuid"] for c in cancels] == [build["id"]]
    r = one_worker.admin.delete(f"/repository/{repo}/build/{build['id']}")
    assert r.status_code == 400 and "already cancelled" in r.json()["detail"]


def test_a_build_over_the_time_limit_is_stopped(one_worker):
    repo = one_worker.repo("too-slow")
    build = one_worker.start_dockerfile(repo, f"FROM {one_worker.base}\nRUN [\"/bin/busybox\", \"sleep\", \"60\"]\n")
    done = one_worker.wait(repo, build["id"], timeout=60)
    assert done["phase"] == "error" and "longer than the limit of 12 s" in done["error"]
    assert one_worker.tags(repo) == []


def test_a_huge_log_is_capped_with_a_marker(one_worker):
    repo = one_worker.repo("chatty")
    noisy = ('["/bin/busybox", "sh", "-c", '
             '"i=0; while [ $i -lt 400 ]; do echo line-$i-padding-padding; i=$((i+1)); done"]')
    build = one_worker.start_dockerfile(repo, f"FROM {one_worker.base}\nRUN {noisy}\n")
    done = one_worker.wait(repo, build["id"])
    assert done["phase"] == "complete"
    entries = one_worker.logs(repo, build["id"])["logs"]
    markers = [e for e in entries if e["message"].startswith("[log truncated")]
    assert len(markers) == 1 and markers[0]["type"] == "error"
    after = entries[entries.index(markers[0]) + 1:]
    assert all(e.get("type") == "phase" for e in after) and after[-1]["message"] == "complete"
    assert not any("line-399" in e["message"] for e in entries)


def test_waiting_builds_are_dequeued_on_cancel_and_capped_per_namespace(no_workers):
    repo = no_workers.repo("queued")
    first = no_workers.start_dockerfile(repo, f"FROM {no_workers.base}\n")
    no_workers.admin.ok("DELETE", f"/repository/{repo}/build/{first['id']}")
    assert no_workers.get(repo, first["id"])["phase"] == "cancelled"
    assert no_workers.server.sql("SELECT COUNT(*) FROM build_job")[0][0] == 0
    kept = [no_workers.start_dockerfile(repo, f"FROM {no_workers.base}\nLABEL n={i}\n") for i in range(3)]
    r = no_workers.admin.request("POST", f"/repository/{repo}/build/",
                                 files={"file": ("Dockerfile", f"FROM {no_workers.base}\n".encode())})
    assert r.status_code == 429 and r.json()["detail"] == "Maximum queued build rate exceeded."
    for build in kept:
        no_workers.admin.ok("DELETE", f"/repository/{repo}/build/{build['id']}")


def test_builds_of_one_repository_run_in_order_others_in_parallel(no_workers):
    worker = start_worker(no_workers, "worker-order.log")
    second_worker = start_worker(no_workers, "worker-order-2.log")
    try:
        a, b = no_workers.repo("ordered"), no_workers.repo("parallel")
        def slow(n):  # a label first, so no build reuses another's cached RUN step
            return f"FROM {no_workers.base}\nLABEL order={time.time()}-{n}\nRUN {SLOW}\n"

        first = no_workers.start_dockerfile(a, slow(1))
        second = no_workers.start_dockerfile(a, slow(2))
        other = no_workers.start_dockerfile(b, slow(3))
        for repo, build in ((a, first), (a, second), (b, other)):
            assert no_workers.wait(repo, build["id"])["phase"] == "complete"
        r1, r2, r3 = (build_row(no_workers, x["id"]) for x in (first, second, other))
        assert r2["started_at"] >= r1["completed_at"]  # same repository: one after the other
        assert r3["started_at"] < r1["completed_at"]  # another repository: at the same time
    finally:
        for proc in (worker, second_worker):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def test_a_killed_worker_process_leaves_no_build_stuck_running(no_workers):
    repo = no_workers.repo("survivor")
    worker = start_worker(no_workers, "worker-killed.log")
    build = no_workers.start_dockerfile(repo, f"FROM {no_workers.base}\nLABEL run={time.time()}\nRUN {SLOW}\n"
                                        "LABEL survived=yes\n",
                                        docker_tags=["after-crash"])
    no_workers.wait(repo, build["id"], phases=("building",), timeout=60)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    requeued = no_workers.wait(repo, build["id"], phases=("waiting",), timeout=30)
    assert requeued["retries_remaining"] == 2
    assert "The build worker stopped responding" in no_workers.log_text(repo, build["id"])
    replacement = start_worker(no_workers, "worker-replacement.log")
    try:
        done = no_workers.wait(repo, build["id"])
        assert done["phase"] == "complete"
        assert no_workers.inspect(f"{repo}:after-crash")["Labels"]["survived"] == "yes"
        phases = [e["message"] for e in no_workers.logs(repo, build["id"])["logs"] if e.get("type") == "phase"]
        assert phases[-1] == "complete" and "internalerror" in phases and phases.count("build-scheduled") == 2
    finally:
        os.killpg(replacement.pid, signal.SIGTERM)
        replacement.wait(timeout=30)


def read_events(response, stop_after: int | None = None) -> list[dict]:
    events, current = [], {}
    for raw in response.iter_lines(decode_unicode=True):
        if raw == "":
            if current:
                events.append(current)
                current = {}
                if stop_after is not None and len([e for e in events if "id" in e]) >= stop_after:
                    break
            continue
        if raw.startswith(":"):
            continue
        key, _, value = raw.partition(":")
        current[key] = value.lstrip()
    return events


def test_sse_follows_a_build_in_a_worker_process_and_resumes_without_loss(no_workers):
    repo = no_workers.repo("streamed")
    worker = start_worker(no_workers, "worker-sse.log")
    try:
        unique = f"LABEL run={time.time()}\n"  # no cached layer: the RUN step really runs
        build = no_workers.start_dockerfile(repo, f"FROM {no_workers.base}\n{unique}RUN {SLOW}\n")
        url = f"{no_workers.server.url}/api/v1/repository/{repo}/build/{build['id']}/logs/stream"
        auth = no_workers.admin.auth
        with requests.get(url, auth=auth, stream=True, timeout=120) as first:
            assert first.headers["Content-Type"] == "text/event-stream"
            part = read_events(first, stop_after=6)
        seen = [e for e in part if "id" in e]
        last_id = seen[-1]["id"]
        with requests.get(url, auth=auth, stream=True, timeout=120, headers={"Last-Event-ID": last_id}) as rest:
            remainder = read_events(rest)
        received = seen + [e for e in remainder if "id" in e]
        assert remainder[-1].get("event") == "end" and json.loads(remainder[-1]["data"])["phase"] == "complete"
        ids = [int(e["id"]) for e in received]
        assert ids == list(range(len(ids)))  # nothing lost, nothing repeated
        stored = no_workers.logs(repo, build["id"])["logs"]
        assert [json.loads(e["data"]) for e in received] == stored
        assert any("tick 8" in e["message"] for e in stored)
        from_start = requests.get(f"{url}?start=3", auth=auth, stream=True, timeout=60)
        again = [e for e in read_events(from_start) if "id" in e]
        assert int(again[0]["id"]) == 3 and len(again) == len(stored) - 3
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
