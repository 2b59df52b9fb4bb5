"""Build views as Quay shows them: the trigger (its uuid and service), who ran a build by hand, and the
build's progress in Dockerfile steps. Real git, real buildah builds, the trigger and build APIs."""
from __future__ import annotations

import json
import time

import pytest
import requests

from tests.builder.conftest import FAST_QUEUE, Builds
from tests.conftest import ContainerTools, SlipwayServer
from tests.triggers.test_triggers import GitServer, make_trigger


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("build-views")
    srv = SlipwayServer(base / "srv", extra_env={
        **FAST_QUEUE, "SLIPWAY_TRIGGERS__ALLOW_FILE_URLS": "true",
        "SLIPWAY_NETWORK__ALLOWLIST": "127.0.0.1/32"}).start()
    builds = Builds(srv, ContainerTools(base / "tools", srv.host)).setup(base)
    yield builds, base
    srv.stop()


def queued_events(builds: Builds, repo: str) -> dict:
    rows = builds.server.sql("SELECT payload FROM event WHERE repository = ? AND kind = 'build_queued'", repo)
    return {p["build_id"]: p for p in (json.loads(r[0]) for r in rows)}


def test_trigger_builds_show_the_trigger_and_who_ran_them_by_hand(env):
    builds, base = env
    repo = builds.repo("viewed")
    git = GitServer(base / "git")
    git.commit({"Dockerfile": f"FROM {builds.base}\nLABEL one=1\nLABEL two=2\n"}, "First")
    git.git("push", "-q", "origin", "main")
    trigger = make_trigger(builds, repo, build_source=f"file://{git.origin}")
    expected = {"id": trigger["id"], "service": "custom-git"}

    by_hand = builds.admin.ok("POST", f"/repository/{repo}/trigger/{trigger['id']}/start", {"branch_name": "main"})
    assert by_hand["trigger"] == expected and by_hand["manual_user"] == "admin"
    assert by_hand["status"] == {"total_commands": 0, "current_command": None}  # waiting: nothing read yet
    done = builds.wait(repo, by_hand["id"])
    assert done["phase"] == "complete", done
    assert done["trigger"] == expected and done["manual_user"] == "admin"
    assert done["status"] == {"total_commands": 3, "current_command": 3}

    code = trigger["webhook_url"].split("$token:")[1].split("@")[0]
    sha = git.git("rev-parse", "HEAD").strip()
    pushed = requests.post(f"{builds.server.url}/webhooks/push/trigger/{trigger['id']}", auth=("$token", code),
                           json={"commit": sha, "ref": "refs/heads/main", "default_branch": "main"}, timeout=30)
    assert pushed.json()["status"] == "queued", pushed.text
    by_push = builds.wait(repo, pushed.json()["build"])
    assert by_push["trigger"] == expected and by_push["manual_user"] is None

    history = {b["id"]: b for b in builds.admin.ok("GET", f"/repository/{repo}/build/")["builds"]}
    assert history[by_hand["id"]]["trigger"] == expected and history[by_hand["id"]]["manual_user"] == "admin"
    assert history[by_push["id"]]["manual_user"] is None
    listed = builds.admin.ok("GET", f"/repository/{repo}/trigger/{trigger['id']}/builds")["builds"]
    assert {b["id"]: b["trigger"]["id"] for b in listed} == {by_hand["id"]: trigger["id"], by_push["id"]: trigger["id"]}

    events = queued_events(builds, repo)
    assert events[by_hand["id"]]["trigger_id"] == trigger["id"]
    assert events[by_hand["id"]]["is_manual"] is True and events[by_hand["id"]]["manual_user"] == "admin"
    assert events[by_push["id"]]["trigger_id"] == trigger["id"]
    assert events[by_push["id"]]["is_manual"] is False and events[by_push["id"]]["manual_user"] is None


def test_status_counts_the_steps_of_every_stage_the_build_runs(env):
    builds, _ = env
    repo = builds.repo("staged")
    dockerfile = (f"FROM {builds.base} AS first\nLABEL stage=1\n"
                  f"FROM {builds.base}\nCOPY --from=first /bin/busybox /copied\nLABEL stage=2\n")
    build = builds.start_dockerfile(repo, dockerfile)
    assert build["manual_user"] == "admin" and build["trigger"] is None
    seen = set()
    deadline = time.time() + 180
    while time.time() < deadline:
        view = builds.get(repo, build["id"])
        seen.add((view["status"]["current_command"], view["status"]["total_commands"]))
        if view["phase"] in ("complete", "error", "internalerror"):
            break
        time.sleep(0.05)
    assert view["phase"] == "complete", builds.log_text(repo, build["id"])
    assert view["status"] == {"total_commands": 5, "current_command": 5}
    steps = [e["message"] for e in builds.logs(repo, build["id"])["logs"] if e.get("type") == "command"]
    assert len(steps) == 5 and steps[0].startswith("[1/2] STEP 1/2: FROM"), steps
    # Progress only moves forward, within the total.
    progress = sorted(c for c, t in seen if c is not None)
    assert all(c <= 5 for c in progress) and all(t in (0, 5) for _, t in seen)


def test_a_webhook_url_whose_token_a_shell_emptied_says_so(env):
    builds, _ = env
    repo = builds.repo("quoted")
    trigger = make_trigger(builds, repo, build_source="https://git.example.com/team/app.git")
    code = trigger["webhook_url"].split("$token:")[1].split("@")[0]
    url = f"{builds.server.url}/webhooks/push/trigger/{trigger['id']}"
    body = {"commit": "a" * 40, "ref": "refs/heads/main", "default_branch": "main"}
    # What `curl -X POST http://$token:CODE@host/...` sends when the shell expands $token to nothing.
    emptied = requests.post(url, auth=("", code), json=body, timeout=30)
    assert emptied.status_code == 403
    assert "the user name must be $token" in emptied.json()["detail"] and "single quotes" in emptied.json()["detail"]
    wrong = requests.post(url, auth=("", "not-the-code"), json=body, timeout=30)
    assert wrong.status_code == 403 and wrong.json()["detail"] == "Invalid webhook credentials"
