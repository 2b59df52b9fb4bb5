"""Forge webhooks as the forges send them (issue 18, 11.7): payloads built from each forge's documented shape,
sent with the forge's headers and signatures to a real server that clones a real git repository and builds.

Documented shapes used: GitHub "push" (docs.github.com, webhook-events-and-payloads#push), GitLab "Push Hook"
and "Tag Push Hook" (docs.gitlab.com, user/project/integrations/webhook_events), Bitbucket Cloud "repo:push"
(support.atlassian.com, bitbucket-cloud event-payloads), Bitbucket Data Center "repo:refs_changed"
(confluence.atlassian.com, bitbucketserver event-payload), Gitea "push" (GitHub's shape, X-Gitea-* headers).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from tests.builder.conftest import FAST_QUEUE, Builds
from tests.conftest import ContainerTools, SlipwayServer
from tests.triggers.test_triggers import GitServer, make_trigger, trigger_builds

SECRET = "forge-secret"
ZERO = "0" * 40


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("forges")
    srv = SlipwayServer(base / "srv", extra_env={
        **FAST_QUEUE, "SLIPWAY_TRIGGERS__ALLOW_FILE_URLS": "true",
        "SLIPWAY_NETWORK__ALLOWLIST": "127.0.0.1/32"}).start()
    builds = Builds(srv, ContainerTools(base / "tools", srv.host)).setup(base)
    git = GitServer(base / "git")
    shas = {"main": git.commit({"Dockerfile": f"FROM {builds.base}\nLABEL forge=yes\n", "docs/a.md": "a\n"},
                               "First version")}
    shas["docs"] = git.commit({"docs/a.md": "b\n"}, "Docs only")
    git.git("push", "-q", "origin", "main")
    git.git("tag", "-a", "v1.0", "-m", "Release one")
    git.git("checkout", "-q", "-b", "feature")
    shas["feature"] = git.commit({"src/app.py": "print(1)\n"}, "Feature work")
    git.git("push", "-q", "origin", "feature", "v1.0")
    git.git("checkout", "-q", "main")
    yield builds, git, shas
    srv.stop()


class Hook:
    """One trigger's webhook URL, and the forge's way of signing."""

    def __init__(self, builds: Builds, service: str, secret: str | None = SECRET, **config):
        self.builds = builds
        self.repo = builds.repo(f"{service}-{uuid.uuid4().hex[:6]}")
        self.trigger = make_trigger(builds, self.repo, service=service, secret=secret, **config)
        self.url = f"{builds.server.url}/webhooks/push/trigger/{self.trigger['id']}"
        self.secret = secret

    def post(self, body: bytes, headers: dict, sign: str | None = "hub") -> requests.Response:
        headers = dict(headers)
        if sign == "hub":
            headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(self.secret.encode(), body, "sha256").hexdigest()
        elif sign == "bitbucket":
            headers["X-Hub-Signature"] = "sha256=" + hmac.new(self.secret.encode(), body, "sha256").hexdigest()
        elif sign == "gitea":
            headers["X-Gitea-Signature"] = hmac.new(self.secret.encode(), body, "sha256").hexdigest()
        elif sign == "gitlab":
            headers["X-Gitlab-Token"] = self.secret
        r = requests.post(self.url, data=body, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        return r

    def builds_done(self, count: int, timeout: float = 120) -> list[dict]:
        """The trigger's builds, oldest first, once ``count`` exist and all have ended."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = trigger_builds(self.builds, self.repo, self.trigger["id"])
            if len(found) >= count:
                return [self.builds.wait(self.repo, b["id"]) for b in reversed(found)]
            time.sleep(0.2)
        raise AssertionError(f"expected {count} builds of {self.repo}")

    def count(self) -> int:
        return len(trigger_builds(self.builds, self.repo, self.trigger["id"]))


# -- documented payload shapes ------------------------------------------------------------------------------

def github_push(sha: str, ref: str = "refs/heads/main", before: str = ZERO, commits: list | None = None,
                host: str = "https://github.com", deleted: bool = False) -> dict:
    commit = {"id": sha, "tree_id": "t" * 40, "distinct": True, "message": "Change", "timestamp":
              "2026-11-20T10:00:00Z", "url": f"{host}/acme/app/commit/{sha}",
              "author": {"name": "Ada", "email": "ada@x.io", "username": "ada"},
              "committer": {"name": "Ada", "email": "ada@x.io", "username": "ada"},
              "added": [], "removed": [], "modified": ["Dockerfile"]}
    return {"ref": ref, "before": before, "after": ZERO if deleted else sha, "created": before == ZERO,
            "deleted": deleted, "forced": False, "base_ref": None, "compare": f"{host}/acme/app/compare",
            "commits": [] if deleted else (commits if commits is not None else [commit]),
            "head_commit": None if deleted else commit,
            "repository": {"id": 1, "name": "app", "full_name": "acme/app", "html_url": f"{host}/acme/app",
                           "clone_url": f"{host}/acme/app.git", "ssh_url": "git@example.com:acme/app.git",
                           "default_branch": "main", "master_branch": "main"},
            "pusher": {"name": "ada", "email": "ada@x.io"},
            "sender": {"login": "ada", "avatar_url": f"{host}/avatars/ada", "html_url": f"{host}/ada"}}


def gitlab_push(sha: str, ref: str = "refs/heads/main", before: str = ZERO, tag: bool = False) -> dict:
    web = "https://gitlab.example.com/acme/app"
    commits = [] if tag else [{"id": sha, "message": "Change\n", "title": "Change", "timestamp":
                               "2026-11-20T10:00:00+00:00", "url": f"{web}/-/commit/{sha}",
                               "author": {"name": "Ada", "email": "ada@x.io"},
                               "added": [], "modified": ["Dockerfile"], "removed": []}]
    return {"object_kind": "tag_push" if tag else "push", "event_name": "tag_push" if tag else "push",
            "before": before, "after": sha, "ref": ref, "ref_protected": False, "checkout_sha": sha,
            "user_id": 4, "user_name": "Ada", "user_username": "ada", "user_email": "",
            "user_avatar": "https://gitlab.example.com/uploads/ada.png", "project_id": 15,
            "project": {"id": 15, "name": "app", "web_url": web, "git_ssh_url": "git@gitlab.example.com:acme/app.git",
                        "git_http_url": f"{web}.git", "namespace": "acme", "path_with_namespace": "acme/app",
                        "default_branch": "main", "homepage": web},
            "commits": commits, "total_commits_count": len(commits),
            "repository": {"name": "app", "url": "git@gitlab.example.com:acme/app.git", "homepage": web}}


def bitbucket_change(kind: str, name: str | None, sha: str | None, old_sha: str | None = None,
                     message: str = "Change") -> dict:
    def side(hash_):
        return {"type": kind, "name": name, "target": {
            "type": "commit", "hash": hash_, "message": message, "date": "2026-11-20T10:00:00+00:00",
            "author": {"raw": "Ada <ada@x.io>", "user": {"display_name": "Ada", "nickname": "ada", "links": {
                "avatar": {"href": "https://bitbucket.org/account/ada/avatar/"},
                "html": {"href": "https://bitbucket.org/ada/"}}}},
            "links": {"html": {"href": f"https://bitbucket.org/acme/app/commits/{hash_}"}}}}
    return {"new": side(sha) if sha else None, "old": side(old_sha) if old_sha else None,
            "created": old_sha is None, "closed": sha is None, "forced": False, "truncated": False, "commits": []}


def bitbucket_push(*changes) -> dict:
    # Bitbucket Cloud's repo:push: no repository.mainbranch, no list of changed files.
    return {"actor": {"display_name": "Ada", "nickname": "ada", "type": "user"},
            "repository": {"type": "repository", "name": "app", "full_name": "acme/app", "uuid": "{r}",
                           "links": {"html": {"href": "https://bitbucket.org/acme/app"}}, "is_private": True},
            "push": {"changes": list(changes)}}


def bitbucket_headers(request_uuid: str | None, hook_uuid: str = "{hook-1}") -> dict:
    headers = {"X-Event-Key": "repo:push", "X-Hook-UUID": hook_uuid, "X-Attempt-Number": "1",
               "Content-Type": "application/json", "User-Agent": "Bitbucket-Webhooks/2.0"}
    if request_uuid:
        headers["X-Request-UUID"] = request_uuid
    return headers


def by_ref(result: dict) -> dict:
    return {b["ref"]: b for b in result.get("builds", [])}


# -- Bitbucket Cloud ----------------------------------------------------------------------------------------

def test_bitbucket_cloud_default_branch_from_the_clone_and_multi_ref_pushes(env):
    builds, git, shas = env
    hook = Hook(builds, "bitbucket", build_source=f"file://{git.origin}", tag_templates=["on-${default_branch}"])

    # A push to the default branch: the payload does not say which branch that is; the clone's HEAD does.
    r = hook.post(json.dumps(bitbucket_push(bitbucket_change("branch", "main", shas["main"]))).encode(),
                  bitbucket_headers(str(uuid.uuid4())), sign="bitbucket")
    assert r.json()["status"] == "queued" and r.json()["tags"] == ["main"], r.json()
    [first] = hook.builds_done(1)
    assert first["phase"] == "complete", builds.log_text(hook.repo, first["id"])
    assert sorted(first["tags"]) == ["latest", "main", "on-main"]
    assert first["trigger_metadata"]["default_branch"] == "main"
    assert {"latest", "main", "on-main"} <= set(builds.tags(hook.repo))
    assert "Default branch of the source: main" in builds.log_text(hook.repo, first["id"])
    view = builds.admin.ok("GET", f"/repository/{hook.repo}/trigger/{hook.trigger['id']}")
    assert view["config"]["default_branch"] == "main"  # learned once, known to later pushes

    # One `git push --follow-tags` of a new branch and a tag, and a deleted branch: one event, three changes.
    body = json.dumps(bitbucket_push(bitbucket_change("branch", "feature", shas["feature"]),
                                     bitbucket_change("tag", "v1.0", shas["main"]),
                                     bitbucket_change("branch", "old", None, old_sha=shas["docs"]))).encode()
    r = hook.post(body, bitbucket_headers(str(uuid.uuid4())), sign="bitbucket").json()
    assert r["status"] == "queued" and set(by_ref(r)) == {"refs/heads/feature", "refs/tags/v1.0"}, r
    assert by_ref(r)["refs/heads/feature"]["tags"] == ["on-main", "feature"]
    assert by_ref(r)["refs/tags/v1.0"]["tags"] == ["on-main", "v1.0"]
    assert r["skipped"] == [{"ref": "refs/heads/old", "reason": "deleted: nothing to build"}]

    # main updated while another branch is deleted: main builds, with latest decided at once.
    body = json.dumps(bitbucket_push(bitbucket_change("branch", "gone", None, old_sha=shas["docs"]),
                                     bitbucket_change("branch", "main", shas["docs"], old_sha=shas["main"]))).encode()
    r = hook.post(body, bitbucket_headers(str(uuid.uuid4())), sign="bitbucket").json()
    assert r["status"] == "queued" and list(by_ref(r)) == ["refs/heads/main"]
    assert sorted(by_ref(r)["refs/heads/main"]["tags"]) == ["latest", "main", "on-main"]
    done = hook.builds_done(4)
    assert [b["phase"] for b in done] == ["complete"] * 4, [builds.log_text(hook.repo, b["id"]) for b in done]
    assert "v1.0" in builds.tags(hook.repo) and "feature" in builds.tags(hook.repo)


def test_bitbucket_retry_key_is_x_request_uuid_never_the_hook_uuid(env):
    builds, git, shas = env
    hook = Hook(builds, "bitbucket", build_source=f"file://{git.origin}")
    first = json.dumps(bitbucket_push(bitbucket_change("branch", "main", shas["main"]))).encode()
    request_id = str(uuid.uuid4())
    assert hook.post(first, bitbucket_headers(request_id), sign="bitbucket").json()["status"] == "queued"
    retry = hook.post(first, {**bitbucket_headers(request_id), "X-Attempt-Number": "2"}, sign="bitbucket").json()
    assert retry["status"] == "skipped" and f"delivery {request_id} was already handled" in retry["reason"]
    # A different push, same X-Hook-UUID (it is the same on every delivery of the hook): it builds.
    second = json.dumps(bitbucket_push(bitbucket_change("branch", "main", shas["docs"], old_sha=shas["main"]))).encode()
    assert hook.post(second, bitbucket_headers(str(uuid.uuid4())), sign="bitbucket").json()["status"] == "queued"
    # ... and so do two distinct pushes without X-Request-UUID at all.
    third = json.dumps(bitbucket_push(bitbucket_change("branch", "feature", shas["feature"]))).encode()
    assert hook.post(third, bitbucket_headers(None), sign="bitbucket").json()["status"] == "queued"
    third_b = json.dumps(bitbucket_push(bitbucket_change("tag", "v1.0", shas["main"]))).encode()
    assert hook.post(third_b, bitbucket_headers(None), sign="bitbucket").json()["status"] == "queued"
    assert hook.count() == 4
    # The default branch set by the user: latest is decided when the webhook arrives.
    builds.admin.ok("PUT", f"/repository/{hook.repo}/trigger/{hook.trigger['id']}",
                    {"config": {"default_branch": "feature"}})
    fourth = json.dumps(bitbucket_push(bitbucket_change("branch", "feature", shas["feature"],
                                                        message="again"))).encode()
    assert hook.count() == 4
    r = hook.post(fourth, bitbucket_headers(str(uuid.uuid4())), sign="bitbucket").json()
    assert r["status"] == "queued" and r["tags"] == ["feature", "latest"], r
    bad = builds.admin.put(f"/repository/{hook.repo}/trigger/{hook.trigger['id']}",
                           {"config": {"default_branch": "no good"}})
    assert bad.status_code == 400 and "Invalid default_branch" in bad.json()["detail"]


def test_bitbucket_path_filters_are_decided_from_the_clone(env):
    builds, git, shas = env
    hook = Hook(builds, "bitbucket", build_source=f"file://{git.origin}", included_paths=["src/*"])
    docs = json.dumps(bitbucket_push(bitbucket_change("branch", "main", shas["docs"], old_sha=shas["main"]))).encode()
    assert hook.post(docs, bitbucket_headers(str(uuid.uuid4())), sign="bitbucket").json()["status"] == "queued"
    [skipped] = hook.builds_done(1)
    assert skipped["phase"] == "cancelled" and "no changed file matches included_paths" in skipped["error"]
    log = builds.log_text(hook.repo, skipped["id"])
    assert f"Changed files ({shas['main'][:12]}..{shas['docs'][:12]}): docs/a.md" in log, log
    # A new branch: its changes are counted from where it left the default branch.
    feature = json.dumps(bitbucket_push(bitbucket_change("branch", "feature", shas["feature"]))).encode()
    assert hook.post(feature, bitbucket_headers(str(uuid.uuid4())), sign="bitbucket").json()["status"] == "queued"
    built = hook.builds_done(2)[1]
    assert built["phase"] == "complete", builds.log_text(hook.repo, built["id"])
    log = builds.log_text(hook.repo, built["id"])
    assert f"Changed files (since main at {shas['docs'][:12]}): src/app.py" in log, log
    assert built["tags"] == ["feature"]


# -- GitHub -------------------------------------------------------------------------------------------------

def test_github_form_encoded_tag_push_deletion_and_replays(env):
    builds, git, shas = env
    hook = Hook(builds, "github", build_source=f"file://{git.origin}", tag_templates=["${commit_info.date}"])
    # GitHub's default content type: application/x-www-form-urlencoded, payload=<json>, signed as sent.
    form = urlencode({"payload": json.dumps(github_push(shas["main"]))}).encode()
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()),
               "Content-Type": "application/x-www-form-urlencoded", "User-Agent": "GitHub-Hookshot/abc"}
    r = hook.post(form, headers).json()
    assert r["status"] == "queued" and sorted(r["tags"]) == ["2026-11-20T10-00-00Z", "latest", "main"], r
    # A captured delivery replayed with its delivery id changed, or removed: the signed body was seen.
    for changed in ({**headers, "X-GitHub-Delivery": str(uuid.uuid4())},
                    {k: v for k, v in headers.items() if k != "X-GitHub-Delivery"}):
        again = hook.post(form, changed).json()
        assert again["status"] == "skipped" and "same signed payload was already handled" in again["reason"], again
        assert again["build"] == r["build"]
    # A tag push (GitHub: no commits, head_commit is the tagged commit), as JSON this time.
    tag = github_push(shas["main"], ref="refs/tags/v1.0", commits=[])
    tag["base_ref"] = "refs/heads/main"
    r = hook.post(json.dumps(tag).encode(), {**headers, "X-GitHub-Delivery": str(uuid.uuid4()),
                                              "Content-Type": "application/json"}).json()
    assert r["status"] == "queued" and sorted(r["tags"]) == ["2026-11-20T10-00-00Z", "v1.0"]
    deleted = github_push(shas["feature"], ref="refs/heads/feature", before=shas["feature"], deleted=True)
    r = hook.post(json.dumps(deleted).encode(), {**headers, "X-GitHub-Delivery": str(uuid.uuid4()),
                                                  "Content-Type": "application/json"}).json()
    assert r["status"] == "skipped" and "deleted" in r["reason"]
    # A form whose signature does not cover it is refused before anything is read.
    bad = requests.post(hook.url, data=form, headers={**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert bad.status_code == 401
    assert hook.count() == 2


# -- GitLab -------------------------------------------------------------------------------------------------

def gitlab_headers(idempotency_key: str, event_uuid: str, tag: bool = False) -> dict:
    return {"X-Gitlab-Event": "Tag Push Hook" if tag else "Push Hook", "X-Gitlab-Event-UUID": event_uuid,
            "X-Gitlab-Webhook-UUID": "hook-uuid-1", "Idempotency-Key": idempotency_key,
            "X-Gitlab-Instance": "https://gitlab.example.com", "Content-Type": "application/json"}


def test_gitlab_retries_by_idempotency_key_and_tag_pushes_from_the_clone(env):
    builds, git, shas = env
    hook = Hook(builds, "gitlab", build_source=f"file://{git.origin}", tag_templates=["${commit_info.message}"])
    push = json.dumps(gitlab_push(shas["main"])).encode()
    key, shared_uuid = str(uuid.uuid4()), str(uuid.uuid4())
    first = hook.post(push, gitlab_headers(key, shared_uuid), sign="gitlab").json()
    assert first["status"] == "queued"
    # A retry: the same Idempotency-Key, a new event UUID: not built twice.
    retry = hook.post(push, gitlab_headers(key, str(uuid.uuid4())), sign="gitlab").json()
    assert retry["status"] == "skipped" and f"delivery {key} was already handled" in retry["reason"]
    # A different push that shares the X-Gitlab-Event-UUID (recursive webhooks do): it builds.
    other = json.dumps(gitlab_push(shas["docs"], before=shas["main"])).encode()
    assert hook.post(other, gitlab_headers(str(uuid.uuid4()), shared_uuid), sign="gitlab").json()["status"] == "queued"
    # A tag push lists no commits: message and date come from the tagged commit in the clone.
    tag = json.dumps(gitlab_push(shas["main"], ref="refs/tags/v1.0", tag=True)).encode()
    r = hook.post(tag, gitlab_headers(str(uuid.uuid4()), str(uuid.uuid4()), tag=True), sign="gitlab").json()
    assert r["status"] == "queued" and r["tags"] == ["v1.0"]  # the message template waits for the clone
    done = hook.builds_done(3)
    assert [b["phase"] for b in done] == ["complete"] * 3
    tagged = done[2]
    assert tagged["tags"] == ["First-version", "v1.0"], tagged["tags"]
    info = tagged["trigger_metadata"]["commit_info"]
    assert info["message"] == "First version" and info["date"].startswith("20")
    assert info["url"] == f"https://gitlab.example.com/acme/app/-/commit/{shas['main']}"
    assert info["author"]["url"] == "https://gitlab.example.com/ada"


def standard_webhook_headers(key: bytes, body: bytes, message_id: str, stamp: int | None = None) -> dict:
    stamp = int(time.time()) if stamp is None else stamp
    signature = base64.b64encode(hmac.new(key, f"{message_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
    return {"webhook-id": message_id, "webhook-timestamp": str(stamp), "webhook-signature": f"v1,{signature.decode()}",
            "Idempotency-Key": message_id, "X-Gitlab-Event": "Push Hook", "Content-Type": "application/json"}


def test_gitlab_signing_token(env):
    builds, git, shas = env
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    hook = Hook(builds, "gitlab", secret=secret, build_source=f"file://{git.origin}")
    body = json.dumps(gitlab_push(shas["main"])).encode()
    message_id = str(uuid.uuid4())
    wrong = standard_webhook_headers(b"x" * 32, body, message_id)
    r = requests.post(hook.url, data=body, headers=wrong)
    assert r.status_code == 401 and "webhook-signature does not match" in r.json()["detail"]
    stale = standard_webhook_headers(key, body, message_id, stamp=int(time.time()) - 3600)
    r = requests.post(hook.url, data=body, headers=stale)
    assert r.status_code == 401 and "webhook-timestamp" in r.json()["detail"]
    ok = requests.post(hook.url, data=body, headers=standard_webhook_headers(key, body, message_id))
    assert ok.status_code == 200 and ok.json()["status"] == "queued", ok.text
    assert hook.count() == 1


# -- Gitea and Bitbucket Data Center ------------------------------------------------------------------------

def test_gitea_form_body_absolute_author_url_and_retry(env):
    builds, git, shas = env
    hook = Hook(builds, "gitea", build_source=f"file://{git.origin}")
    doc = github_push(shas["main"], host="https://gitea.example.com")
    form = urlencode({"payload": json.dumps(doc)}).encode()
    delivery = str(uuid.uuid4())
    headers = {"X-Gitea-Event": "push", "X-Gitea-Delivery": delivery, "X-GitHub-Event": "push",
               "X-GitHub-Delivery": delivery, "Content-Type": "application/x-www-form-urlencoded"}
    r = hook.post(form, headers, sign="gitea").json()
    assert r["status"] == "queued", r
    build = builds.get(hook.repo, r["build"])
    assert build["trigger_metadata"]["commit_info"]["author"]["url"] == "https://gitea.example.com/ada"
    retry = hook.post(form, headers, sign="gitea").json()
    assert retry["status"] == "skipped" and "already handled" in retry["reason"]
    assert hook.count() == 1


def test_bitbucket_data_center_refs_changed(env):
    builds, git, shas = env
    hook = Hook(builds, "bitbucket", build_source=f"file://{git.origin}")
    doc = {"eventKey": "repo:refs_changed", "date": "2026-11-20T10:00:00+0000",
           "actor": {"name": "ada", "emailAddress": "ada@x.io", "id": 1, "displayName": "Ada", "slug": "ada",
                     "type": "NORMAL"},
           "repository": {"slug": "app", "id": 84, "name": "app", "scmId": "git", "state": "AVAILABLE",
                          "forkable": True, "project": {"key": "ACME", "id": 84, "name": "Acme", "public": False,
                                                        "type": "NORMAL"}, "public": False},
           "changes": [{"ref": {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"},
                        "refId": "refs/heads/main", "fromHash": shas["main"], "toHash": shas["docs"],
                        "type": "UPDATE"},
                       {"ref": {"id": "refs/heads/old", "displayId": "old", "type": "BRANCH"},
                        "refId": "refs/heads/old", "fromHash": shas["main"], "toHash": ZERO, "type": "DELETE"}]}
    body = json.dumps(doc).encode()
    headers = {"X-Event-Key": "repo:refs_changed", "X-Request-Id": str(uuid.uuid4()),
               "Content-Type": "application/json; charset=utf-8"}
    r = hook.post(body, headers, sign="bitbucket").json()
    assert r["status"] == "queued" and list(by_ref(r)) == ["refs/heads/main"], r
    assert r["skipped"] == [{"ref": "refs/heads/old", "reason": "deleted: nothing to build"}]
    [built] = hook.builds_done(1)
    assert built["phase"] == "complete" and sorted(built["tags"]) == ["latest", "main"]  # HEAD of the clone
    pr = json.dumps({"eventKey": "pr:opened", "date": "2026-11-20T10:00:00+0000"}).encode()
    r = hook.post(pr, {"X-Event-Key": "pr:opened", "X-Request-Id": str(uuid.uuid4())}, sign="bitbucket").json()
    assert r["status"] == "skipped" and "'pr:opened' events do not start builds" in r["reason"]


# -- the custom git payload through the README's post-receive hook ----------------------------------------

def readme_hook() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("#!/bin/sh\n# hooks/post-receive")
    return readme[start:readme.index("```", start)]


def test_the_readme_post_receive_hook_queues_builds(env, tmp_path):
    builds, _, _ = env
    git = GitServer(tmp_path / "hooked")
    repo = builds.repo("hooked")
    trigger = make_trigger(builds, repo, build_source=f"file://{git.origin}",
                           tag_templates=["${commit_info.message}"])
    hook = readme_hook()
    placeholder = "https://$token:CODE@slipway.example.com/webhooks/push/trigger/TRIGGER_ID"
    assert placeholder in hook
    path = git.origin / "hooks" / "post-receive"
    path.write_text(hook.replace(placeholder, trigger["webhook_url"]))
    path.chmod(0o755)

    git.commit({"Dockerfile": f"FROM {builds.base}\nLABEL hooked=yes\n"}, 'Say "hello" \\ there')
    out = git.git("push", "origin", "main")
    assert '"status": "queued"' in out, out
    git.git("tag", "-a", "v2", "-m", "annotated")
    out = git.git("push", "origin", "v2")
    assert '"status": "queued"' in out, out
    first, second = reversed(trigger_builds(builds, repo, trigger["id"]))
    first, second = builds.wait(repo, first["id"]), builds.wait(repo, second["id"])
    assert first["phase"] == "complete", builds.log_text(repo, first["id"])
    assert sorted(first["tags"]) == ["Say--hello----there", "latest", "main"], first["tags"]
    assert first["trigger_metadata"]["commit_info"]["message"] == 'Say "hello" \\ there'
    assert second["phase"] == "complete" and second["tags"] == ["Say--hello----there", "v2"], second["tags"]
    assert builds.inspect(f"{repo}:v2")["Labels"]["hooked"] == "yes"


@pytest.mark.parametrize("service,sign,headers,id_header", [
    ("github", "hub", {"X-GitHub-Event": "push"}, "X-GitHub-Delivery"),
    ("gitlab", "gitlab", {"X-Gitlab-Event": "Push Hook"}, "Idempotency-Key"),
    ("bitbucket", "bitbucket", {"X-Event-Key": "repo:push"}, "X-Request-UUID"),
    ("bitbucket", "bitbucket", {"X-Event-Key": "repo:refs_changed"}, "X-Request-Id"),
    ("gitea", "gitea", {"X-Gitea-Event": "push"}, "X-Gitea-Delivery"),
])
def test_a_replayed_delivery_with_its_id_changed_or_removed_builds_nothing(env, service, sign, headers, id_header):
    builds, git, shas = env
    hook = Hook(builds, service, build_source=f"file://{git.origin}")
    if service == "gitlab":
        doc = gitlab_push(shas["docs"], before=shas["main"])
    elif headers.get("X-Event-Key") == "repo:push":
        doc = bitbucket_push(bitbucket_change("branch", "main", shas["docs"], old_sha=shas["main"]))
    elif headers.get("X-Event-Key"):
        doc = {"eventKey": "repo:refs_changed", "changes": [{"refId": "refs/heads/main", "fromHash": shas["main"],
                                                             "toHash": shas["docs"], "type": "UPDATE"}]}
    else:
        doc = github_push(shas["docs"], before=shas["main"])
    body = json.dumps(doc).encode()
    first = hook.post(body, {**headers, id_header: str(uuid.uuid4()), "Content-Type": "application/json"}, sign=sign)
    assert first.json()["status"] == "queued", first.text
    for replay in ({**headers, id_header: str(uuid.uuid4())}, headers):
        again = hook.post(body, {**replay, "Content-Type": "application/json"}, sign=sign).json()
        assert again["status"] == "skipped" and again["build"] == first.json()["build"], again
    assert hook.count() == 1


@pytest.mark.parametrize("service,sign,event,tag_event,retry_header,hook_header", [
    ("github", "hub", {"X-GitHub-Event": "push"}, {"X-GitHub-Event": "push"}, "X-GitHub-Delivery",
     "X-GitHub-Hook-ID"),
    ("gitea", "gitea", {"X-Gitea-Event": "push"}, {"X-Gitea-Event": "push"}, "X-Gitea-Delivery", "X-Gitea-Hook-ID"),
    ("gitlab", "gitlab", {"X-Gitlab-Event": "Push Hook"}, {"X-Gitlab-Event": "Tag Push Hook"}, "Idempotency-Key",
     "X-Gitlab-Webhook-UUID"),
])
def test_each_forge_push_tag_deletion_retry_and_reused_hook_id(env, service, sign, event, tag_event, retry_header,
                                                                hook_header):
    builds, git, shas = env
    hook = Hook(builds, service, build_source=f"file://{git.origin}")
    gitlab = service == "gitlab"

    def send(doc, headers, retry_key=None):
        headers = {**headers, hook_header: "same-hook-for-every-delivery", "Content-Type": "application/json",
                   retry_header: retry_key or str(uuid.uuid4())}
        return hook.post(json.dumps(doc).encode(), headers, sign=sign).json()

    key = str(uuid.uuid4())
    push = gitlab_push(shas["main"]) if gitlab else github_push(shas["main"])
    r = send(push, event, key)
    assert r["status"] == "queued" and sorted(r["tags"]) == ["latest", "main"], r
    assert "already handled" in send(push, event, key)["reason"]  # the forge's retry of that delivery
    update = (gitlab_push(shas["docs"], before=shas["main"]) if gitlab
              else github_push(shas["docs"], before=shas["main"]))
    assert send(update, event)["status"] == "queued"  # another push, the same hook id
    tag = (gitlab_push(shas["main"], ref="refs/tags/v1.0", tag=True) if gitlab
           else github_push(shas["main"], ref="refs/tags/v1.0", commits=[]))
    r = send(tag, tag_event)
    assert r["status"] == "queued" and r["tags"] == ["v1.0"], r
    deleted = ({**gitlab_push(ZERO, ref="refs/heads/feature", before=shas["feature"]), "checkout_sha": None}
               if gitlab else github_push(shas["feature"], ref="refs/heads/feature", before=shas["feature"],
                                          deleted=True))
    r = send(deleted, event)
    assert r["status"] == "skipped" and "deleted" in r["reason"], r
    done = hook.builds_done(3)
    assert [b["phase"] for b in done] == ["complete"] * 3
    assert "v1.0" in builds.tags(hook.repo) and "latest" in builds.tags(hook.repo)
