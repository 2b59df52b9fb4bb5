"""Triggers end to end: a real git server whose post-receive hook calls Slipway, real builds, real pulls,
GitHub-shaped signed payloads, manual runs, failures, and a clone over SSH against a real sshd."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.builder.conftest import FAST_QUEUE, Builds
from tests.conftest import ContainerTools, SlipwayServer, free_port, wait_for

HOOK = """#!/usr/bin/env python3
# post-receive: tell Slipway about every pushed ref (the custom git trigger's payload)
import json, subprocess, sys, urllib.request, base64, urllib.parse
url = open(__file__ + ".url").read().strip()
parts = urllib.parse.urlsplit(url)
auth = base64.b64encode(f"{urllib.parse.unquote(parts.username)}:{parts.password}".encode()).decode()
clean = urllib.parse.urlunsplit((parts.scheme, parts.hostname + ":" + str(parts.port), parts.path, "", ""))
for line in sys.stdin:
    old, new, ref = line.split()
    if set(new) == {"0"}:
        continue
    show = lambda fmt: subprocess.run(["git", "log", "-1", "--format=" + fmt, new], capture_output=True,
                                      text=True).stdout.strip()
    payload = {"commit": new, "ref": ref, "default_branch": "main",
               "commit_info": {"url": "file://" + new, "message": show("%B"), "date": show("%cI"),
                               "author": {"username": show("%an"), "url": "", "avatar_url": ""}}}
    request = urllib.request.Request(clean, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": "Basic " + auth})
    try:
        print(urllib.request.urlopen(request, timeout=30).read().decode())
    except urllib.error.HTTPError as e:
        print("webhook failed:", e.code, e.read().decode())
"""


class GitServer:
    """A bare repository (the "server") and a working clone to commit and push from."""

    def __init__(self, base: Path):
        base.mkdir(parents=True, exist_ok=True)
        self.origin = base / "origin.git"
        self.work = base / "work"
        self.env = {**os.environ, "GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@x.io",
                    "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@x.io"}
        self.git("init", "--bare", "-b", "main", str(self.origin), cwd=base)
        self.git("init", "-b", "main", str(self.work), cwd=base)
        self.git("remote", "add", "origin", str(self.origin))

    def git(self, *args, cwd=None) -> str:
        result = subprocess.run(["git", *args], cwd=cwd or self.work, env=self.env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout + result.stderr

    def install_hook(self, webhook_url: str) -> None:
        hook = self.origin / "hooks" / "post-receive"
        hook.write_text(HOOK)
        hook.chmod(0o755)
        Path(str(hook) + ".url").write_text(webhook_url)

    def commit(self, files: dict, message: str) -> str:
        for name, content in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD").strip()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("triggers")
    srv = SlipwayServer(base / "srv", extra_env={
        **FAST_QUEUE, "SLIPWAY_TRIGGERS__ALLOW_FILE_URLS": "true", "SLIPWAY_NETWORK__ALLOWLIST": "127.0.0.1/32",
        "SLIPWAY_TRIGGERS__MAX_USER_ERRORS": "2"}).start()
    builds = Builds(srv, ContainerTools(base / "tools", srv.host)).setup(base)
    yield builds, base
    srv.stop()


def trigger_builds(builds: Builds, repo: str, trigger_id: str) -> list[dict]:
    return builds.admin.ok("GET", f"/repository/{repo}/trigger/{trigger_id}/builds")["builds"]


def wait_for_builds(builds: Builds, repo: str, trigger_id: str, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = trigger_builds(builds, repo, trigger_id)
        if len(found) >= count:
            return [builds.wait(repo, b["id"]) for b in found]
        time.sleep(0.2)
    raise AssertionError(f"expected {count} builds, found {len(trigger_builds(builds, repo, trigger_id))}")


def make_trigger(builds: Builds, repo: str, service: str = "custom-git", secret: str | None = None, **config):
    created = builds.admin.ok("POST", f"/repository/{repo}/trigger/", {"service": service, "config": config})
    assert created["is_active"] is False
    body = {"webhook_secret": secret} if secret else {}
    return builds.admin.ok("POST", f"/repository/{repo}/trigger/{created['id']}/activate", body)


def test_git_push_through_a_post_receive_hook_builds_templated_tags(env):
    builds, base = env
    repo = builds.repo("webapp")
    git = GitServer(base / "git1")
    trigger = make_trigger(builds, repo, build_source=f"file://{git.origin}",
                           tag_templates=["${parsed_ref.branch}-${commit_info.short_sha}"])
    assert trigger["webhook_url"].startswith("http://$token:") and trigger["public_key"].startswith("ssh-ed25519 ")
    assert [c["name"] for c in trigger["config"]["credentials"]] == ["SSH Public Key", "Webhook Endpoint"]
    git.install_hook(trigger["webhook_url"])

    sha = git.commit({"Dockerfile": f"FROM {builds.base}\nCOPY hello.txt /hello.txt\nLABEL app=webapp\n",
                      "hello.txt": "v1\n"}, "First version")
    out = git.git("push", "-q", "origin", "main")
    assert '"status": "queued"' in out, out
    [build] = wait_for_builds(builds, repo, trigger["id"], 1)
    assert build["phase"] == "complete", builds.log_text(repo, build["id"])
    assert sorted(build["tags"]) == sorted([f"main-{sha[:7]}", "main", "latest"])
    assert build["trigger_metadata"]["commit"] == sha and build["trigger"]["service"] == "custom-git"
    assert builds.tags(repo) == sorted([f"main-{sha[:7]}", "main", "latest"])
    assert builds.inspect(f"{repo}:main-{sha[:7]}")["Labels"]["app"] == "webapp"

    git.git("tag", "v1.0")
    assert '"status": "queued"' in git.git("push", "-q", "origin", "v1.0")
    tag_build = wait_for_builds(builds, repo, trigger["id"], 2)[0]
    assert tag_build["phase"] == "complete" and tag_build["tags"] == ["v1.0"]  # the branch template is dropped
    assert "v1.0" in builds.tags(repo)

    git.commit({"README.md": "docs only\n"}, "Update the README [skip build]")
    out = git.git("push", "-q", "origin", "main")
    assert '"status": "skipped"' in out and "[skip build]" in out
    # The webhook's answer is the proof: a build is queued in the transaction it answers after.
    assert len(trigger_builds(builds, repo, trigger["id"])) == 2
    kinds = builds.server.sql("SELECT metadata FROM log_entry WHERE kind = 'trigger_webhook' ORDER BY id")
    outcomes = [json.loads(m[0])["status"] for m in kinds]
    assert outcomes[-3:] == ["queued", "queued", "skipped"]


def github_payload(sha: str, ref: str = "refs/heads/main", message: str = "Change") -> dict:
    return {"ref": ref, "after": sha, "deleted": False,
            "head_commit": {"id": sha, "message": message, "timestamp": "2026-11-20T10:00:00Z", "url": "u",
                            "author": {"username": "ada"}, "committer": {"username": "ada"}},
            "commits": [{"id": sha, "added": ["Dockerfile"], "modified": [], "removed": []}],
            "repository": {"ssh_url": "git@github.com:acme/app.git", "default_branch": "main"}}


def test_github_payload_with_signature_builds_and_bad_requests_are_refused(env):
    builds, base = env
    repo = builds.repo("signed")
    git = GitServer(base / "git2")
    sha = git.commit({"Dockerfile": f"FROM {builds.base}\nLABEL signed=yes\n"}, "Signed change")
    git.git("push", "-q", "origin", "main")
    trigger = make_trigger(builds, repo, service="github", secret="hook-secret", build_source=f"file://{git.origin}")
    hook = f"{builds.server.url}/webhooks/push/trigger/{trigger['id']}"
    body = json.dumps(github_payload(sha)).encode()
    signature = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "delivery-1", "Content-Type": "application/json"}

    bad = requests.post(hook, data=body, headers={**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert bad.status_code == 401 and "signature" in bad.json()["detail"]
    missing = requests.post(hook, data=body, headers=headers)
    assert missing.status_code == 401 and "not signed" in missing.json()["detail"]
    ok = requests.post(hook, data=body, headers={**headers, "X-Hub-Signature-256": signature})
    assert ok.status_code == 200 and ok.json()["status"] == "queued", ok.text
    again = requests.post(hook, data=body, headers={**headers, "X-Hub-Signature-256": signature})
    assert again.json()["status"] == "skipped" and "already handled" in again.json()["reason"]
    [build] = wait_for_builds(builds, repo, trigger["id"], 1)
    assert build["phase"] == "complete" and sorted(build["tags"]) == ["latest", "main"]
    ping = json.dumps({"zen": "hi", "hook_id": 1}).encode()
    pinged = requests.post(hook, data=ping, headers={"X-GitHub-Event": "ping", "X-Hub-Signature-256":
                                                     "sha256=" + hmac.new(b"hook-secret", ping, "sha256").hexdigest()})
    assert pinged.status_code == 200
    assert pinged.json() == {"status": "skipped", "reason": "ping event: nothing to build"}
    assert len(trigger_builds(builds, repo, trigger["id"])) == 1


def test_webhook_errors(env):
    builds, base = env
    repo = builds.repo("errors")
    trigger = make_trigger(builds, repo, build_source="file:///nonexistent/repo.git")
    url = trigger["webhook_url"]
    plain = f"{builds.server.url}/webhooks/push/trigger/{trigger['id']}"
    code = url.split("$token:")[1].split("@")[0]
    payload = {"commit": "a" * 40, "ref": "refs/heads/main", "default_branch": "main"}
    assert requests.post(f"{builds.server.url}/webhooks/push/trigger/{'0' * 36}", json=payload).status_code == 404
    assert requests.post(plain, json=payload).status_code == 401
    assert requests.post(plain, json=payload, auth=("$token", "wrong")).status_code == 403
    r = requests.post(plain, data=b"{broken", auth=("$token", code))
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
    r = requests.post(plain, json={"hello": 1}, auth=("$token", code))
    assert r.status_code == 400 and "matches no known format" in r.json()["detail"]
    r = requests.post(plain, json=payload, auth=("$token", code))
    assert r.status_code == 200 and r.json()["status"] == "queued"
    [failed] = wait_for_builds(builds, repo, trigger["id"], 1)
    assert failed["phase"] == "error" and "Could not clone file:///nonexistent/repo.git" in failed["error"]
    assert builds.tags(repo) == []
    builds.admin.ok("PUT", f"/repository/{repo}/trigger/{trigger['id']}", {"enabled": False})
    r = requests.post(plain, json=payload, auth=("$token", code))
    assert r.status_code == 400 and "This trigger is disabled: Disabled by admin" in r.json()["detail"]
    r = builds.admin.put(f"/repository/{repo}/trigger/{trigger['id']}",
                         {"config": {"tag_templates": ["ok-${commit}", "x-${parsed_ref.nope}"]}})
    assert r.status_code == 400 and "unknown variable '${parsed_ref.nope}'" in r.json()["detail"]


def test_missing_commit_manual_runs_and_auto_disable(env):
    builds, base = env
    repo = builds.repo("manual")
    git = GitServer(base / "git3")
    git.commit({"Dockerfile": f"FROM {builds.base}\nRUN [\"/bin/busybox\", \"false\"]\n"}, "Broken build")
    git.git("push", "-q", "origin", "main")
    trigger = make_trigger(builds, repo, build_source=f"file://{git.origin}")
    code = trigger["webhook_url"].split("$token:")[1].split("@")[0]
    plain = f"{builds.server.url}/webhooks/push/trigger/{trigger['id']}"
    ghost = {"commit": "b" * 40, "ref": "refs/heads/main", "default_branch": "main"}
    assert requests.post(plain, json=ghost, auth=("$token", code)).json()["status"] == "queued"
    [missing] = wait_for_builds(builds, repo, trigger["id"], 1)
    assert missing["phase"] == "error" and f"The commit {'b' * 40} does not exist" in missing["error"]

    started = builds.admin.ok("POST", f"/repository/{repo}/trigger/{trigger['id']}/start", {"branch_name": "main"})
    assert started["trigger"]["id"] and started["tags"] == ["main", "latest"]
    second = builds.wait(repo, started["id"])
    assert second["phase"] == "error" and "exit status 1" in second["error"]
    disabled = builds.admin.ok("GET", f"/repository/{repo}/trigger/{trigger['id']}")
    assert not disabled["enabled"] and "after 2 successive failed builds" in disabled["disabled_reason"]
    r = builds.admin.post(f"/repository/{repo}/trigger/{trigger['id']}/start", {"branch_name": "nope"})
    assert r.status_code == 404 and "refs/heads/nope does not exist" in r.json()["detail"]
    enabled = builds.admin.ok("PUT", f"/repository/{repo}/trigger/{trigger['id']}", {"enabled": True})
    assert enabled["enabled"] and enabled["successive_failures"] == {"user": 0, "internal": 0}
    fixed = git.commit({"Dockerfile": f"FROM {builds.base}\nLABEL fixed=1\n"}, "Fix")
    git.git("tag", "v2")
    git.git("push", "-q", "origin", "main", "v2")
    by_tag = builds.admin.ok("POST", f"/repository/{repo}/trigger/{trigger['id']}/start",
                             {"refs": {"kind": "tag", "name": "v2"}})
    assert builds.wait(repo, by_tag["id"])["phase"] == "complete" and by_tag["tags"] == ["v2"]
    by_sha = builds.admin.ok("POST", f"/repository/{repo}/trigger/{trigger['id']}/start", {"commit_sha": fixed})
    assert builds.wait(repo, by_sha["id"])["phase"] == "complete" and by_sha["tags"] == [fixed[:7]]


class Sshd:
    def __init__(self, base: Path):
        base.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.port = free_port()
        self.keys = base / "authorized_keys"
        self.keys.write_text("")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host_key")], check=True)
        config = base / "sshd_config"
        config.write_text(f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\n"
                          f"PidFile {base / 'sshd.pid'}\nAuthorizedKeysFile {self.keys}\nPasswordAuthentication no\n"
                          "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
                          "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n")
        Path("/run/sshd").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                                     stdout=open(base / "sshd.log", "wb"), stderr=subprocess.STDOUT)
        wait_for(self.listening, timeout=10, what="sshd to listen")

    def listening(self) -> bool:
        assert self.proc.poll() is None, (self.base / "sshd.log").read_text()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def test_clone_over_ssh_with_the_generated_deploy_key(env):
    builds, base = env
    repo = builds.repo("over-ssh")
    git = GitServer(base / "git4")
    sub = GitServer(base / "git4sub")
    sub.commit({"data.txt": "from a submodule\n"}, "Submodule content")
    sub.git("push", "-q", "origin", "main")
    sshd = Sshd(base / "sshd")
    try:
        ssh_url = f"ssh://root@127.0.0.1:{sshd.port}{git.origin}"
        sub_url = f"ssh://root@127.0.0.1:{sshd.port}{sub.origin}"
        git.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub.origin), "vendored")
        (git.work / ".gitmodules").write_text(f'[submodule "vendored"]\n\tpath = vendored\n\turl = {sub_url}\n')
        sha = git.commit({"Dockerfile": f"FROM {builds.base}\nCOPY vendored/data.txt /data.txt\nLABEL via=ssh\n"},
                         "Build over SSH")
        git.git("push", "-q", "origin", "main")
        trigger = make_trigger(builds, repo, build_source=ssh_url)
        code = trigger["webhook_url"].split("$token:")[1].split("@")[0]
        plain = f"{builds.server.url}/webhooks/push/trigger/{trigger['id']}"
        payload = {"commit": sha, "ref": "refs/heads/main", "default_branch": "main"}

        denied = requests.post(plain, json=payload, auth=("$token", code)).json()  # key not installed yet
        [failed] = wait_for_builds(builds, repo, trigger["id"], 1)
        assert failed["phase"] == "error" and "Permission denied" in failed["error"], failed["error"]
        assert denied["status"] == "queued"

        sshd.keys.write_text(trigger["public_key"] + "\n")  # install the deploy key at the "git host"
        requests.post(plain, json={**payload, "commit": sha}, auth=("$token", code))
        done = wait_for_builds(builds, repo, trigger["id"], 2)[0]
        assert done["phase"] == "complete", builds.log_text(repo, done["id"])
        assert builds.inspect(f"{repo}:main")["Labels"]["via"] == "ssh"
        assert "Updating submodules" in builds.log_text(repo, done["id"])
    finally:
        sshd.stop()


def test_a_repository_admin_cannot_redirect_a_trigger_that_builds_with_a_robot(env):
    builds, _ = env
    from tests.api import Api

    admin = builds.admin
    admin.ok("POST", "/organization/", {"name": "robotorg", "email": "r@r.io"})
    admin.ok("PUT", "/organization/robotorg/robots/puller", {})
    admin.ok("POST", "/repository", {"namespace": "robotorg", "repository": "app", "visibility": "private"})
    admin.ok("POST", "/superuser/users/", {"username": "repoadmin", "password": "password-123"})
    admin.ok("PUT", "/repository/robotorg/app/permissions/user/repoadmin", {"role": "admin"})
    created = admin.ok("POST", "/repository/robotorg/app/trigger/",
                       {"service": "custom-git", "pull_robot": "robotorg+puller",
                        "config": {"build_source": "https://git.example.com/app.git"}})
    repo_admin = Api(builds.server, ("repoadmin", "password-123"))
    r = repo_admin.put(f"/repository/robotorg/app/trigger/{created['id']}",
                       {"config": {"build_source": "https://evil.example.com/x.git"}})
    assert r.status_code == 403 and "robotorg+puller" in r.json()["detail"]
    ok = repo_admin.put(f"/repository/robotorg/app/trigger/{created['id']}",
                        {"config": {"tag_templates": ["v-${commit}"]}})
    assert ok.status_code == 200  # what it builds stays; how it tags may change
    r = repo_admin.post("/repository/robotorg/app/trigger/", {"service": "custom-git", "pull_robot": "robotorg+puller",
                                                             "config": {"build_source": "https://evil.example.com"}})
    assert r.status_code == 403
