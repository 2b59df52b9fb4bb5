"""Triggers under attack by an ordinary account: catastrophic regexes, submodules that reach private
addresses, huge signed payloads, and sources or notifications that could only fail later."""
from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time

import pytest
import requests

from tests.api import Api
from tests.builder.conftest import FAST_QUEUE
from tests.conftest import ADMIN_PASSWORD, SlipwayServer
from tests.triggers.test_triggers import GitServer


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = SlipwayServer(tmp_path_factory.mktemp("trigsec"), extra_env={
        **FAST_QUEUE, "SLIPWAY_TRIGGERS__ALLOW_FILE_URLS": "true"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(srv):
    return Api(srv, ("admin", ADMIN_PASSWORD))


def new_repo(admin: Api, name: str) -> str:
    admin.ok("POST", "/repository", {"repository": name, "visibility": "private"})
    return f"admin/{name}"


def activated_trigger(admin: Api, repo: str, secret: str | None = None, **config) -> dict:
    created = admin.ok("POST", f"/repository/{repo}/trigger/", {"service": "custom-git", "config": config})
    return admin.ok("POST", f"/repository/{repo}/trigger/{created['id']}/activate",
                    {"webhook_secret": secret} if secret else {})


def webhook_auth(trigger: dict) -> tuple[str, str]:
    return "$token", trigger["webhook_url"].split("$token:")[1].split("@")[0]


def test_a_catastrophic_branchtag_regex_does_not_stall_the_server(srv, admin):
    """`heads/(a*)*b` against a long ref backtracks exponentially in Python's re (9.4 s at 27 characters,
    x2.2 per character, on the event loop); RE2 matches it in linear time."""
    repo = new_repo(admin, "redos")
    trigger = activated_trigger(admin, repo, build_source="file:///nowhere.git", branchtag_regex="heads/(a*)*b")
    assert trigger["config"]["branchtag_regex"] == "heads/(a*)*b"
    hook = f"{srv.url}/webhooks/push/trigger/{trigger['id']}"
    payload = {"commit": "a" * 40, "ref": "refs/heads/" + "a" * 30, "default_branch": "main"}
    answer: dict = {}

    def post() -> None:
        answer["response"] = requests.post(hook, json=payload, auth=webhook_auth(trigger), timeout=120)

    sender = threading.Thread(target=post)
    started = time.monotonic()
    sender.start()
    slowest = 0.0
    while sender.is_alive():
        t = time.monotonic()
        try:
            assert requests.get(f"{srv.url}/health", timeout=3).status_code == 200
        except requests.Timeout:
            raise AssertionError("/health did not answer within 3 s while the webhook's regex was matched") from None
        slowest = max(slowest, time.monotonic() - t)
        assert time.monotonic() - started < 10, "the webhook took more than 10 s"
    sender.join()
    r = answer["response"]
    assert r.status_code == 200 and r.json()["status"] == "skipped", r.text
    assert "does not match the branch/tag regex" in r.json()["reason"]
    assert slowest < 3


@pytest.mark.parametrize("pattern, fragment", [
    (r"heads/(\w+)-\1", "invalid escape sequence"),  # a backreference
    (r"heads/(?!wip).*", "invalid perl operator"),  # a lookahead
    ("heads/(", "missing )"),
])
def test_patterns_re2_cannot_run_are_refused_when_saved(admin, pattern, fragment):
    repo = "admin/regexes"
    if admin.get(f"/repository/{repo}").status_code == 404:
        new_repo(admin, "regexes")
    r = admin.post(f"/repository/{repo}/trigger/", {"service": "custom-git", "config": {"branchtag_regex": pattern}})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error_type"] == "invalid_request" and "Invalid branchtag_regex" in body["detail"], body
    assert fragment in body["detail"] and body["detail"] == body["error_message"]
    ok = admin.ok("POST", f"/repository/{repo}/trigger/", {"service": "custom-git",
                                                            "config": {"branchtag_regex": "heads/(main|release-.*)"}})
    r = admin.put(f"/repository/{repo}/trigger/{ok['id']}", {"config": {"branchtag_regex": pattern}})
    assert r.status_code == 400 and fragment in r.json()["detail"]
    r = admin.post(f"/repository/{repo}/notification/", {"event": "build_success", "method": "quay_notification",
                                                         "config": {"target": {"kind": "user", "name": "admin"}},
                                                         "eventConfig": {"ref-regex": pattern}})
    assert r.status_code == 400 and "Invalid ref-regex" in r.json()["detail"] and fragment in r.json()["detail"]


class Listener:
    """An HTTP server on 127.0.0.1 that records every request (and answers 404)."""

    def __init__(self):
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                seen.append(self.path)
                self.send_error(404)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def commit_submodule(git: GitServer, path: str, url: str, commit: str) -> str:
    """Commit a submodule at ``path`` pointing at ``url`` (a gitlink to ``commit``), without fetching it."""
    (git.work / ".gitmodules").write_text(f'[submodule "{path}"]\n\tpath = {path}\n\turl = {url}\n')
    git.git("add", ".gitmodules")
    git.git("update-index", "--add", "--cacheinfo", f"160000,{commit},{path}")
    git.git("commit", "-q", "-m", f"Add the submodule {path}")
    return git.git("rev-parse", "HEAD").strip()


def wait_build_end(admin: Api, repo: str, trigger_id: str, timeout: float = 90) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        builds = admin.ok("GET", f"/repository/{repo}/trigger/{trigger_id}/builds")["builds"]
        if builds and builds[0]["phase"] in ("complete", "error", "internalerror", "cancelled", "expired"):
            return builds[0]
        time.sleep(0.2)
    raise AssertionError(f"no finished build of trigger {trigger_id}")


def test_a_nested_submodule_at_a_private_address_is_refused_before_it_is_fetched(srv, admin, tmp_path):
    """top (file://) -> child (file://, allowed here) -> grandchild at http://127.0.0.1:<port>: the grandchild's
    URL is checked after the child is fetched and before the grandchild is; the listener sees nothing."""
    listener = Listener()
    try:
        child = GitServer(tmp_path / "child")
        child_sha = child.commit({"child.txt": "child\n"}, "Child")
        child_sha = commit_submodule(child, "grandchild", f"{listener.url}/grandchild.git", child_sha)
        child.git("push", "-q", "origin", "main")
        top = GitServer(tmp_path / "top")
        top.commit({"Dockerfile": "FROM scratch\n"}, "Top")
        sha = commit_submodule(top, "child", f"file://{child.origin}", child_sha)
        top.git("push", "-q", "origin", "main")

        repo = new_repo(admin, "submodules")
        trigger = activated_trigger(admin, repo, build_source=f"file://{top.origin}")
        r = requests.post(f"{srv.url}/webhooks/push/trigger/{trigger['id']}", auth=webhook_auth(trigger),
                          json={"commit": sha, "ref": "refs/heads/main", "default_branch": "main"}, timeout=30)
        assert r.status_code == 200 and r.json()["status"] == "queued", r.text
        build = wait_build_end(admin, repo, trigger["id"])
        assert listener.seen == [], f"the grandchild was fetched: {listener.seen}"
        assert build["phase"] == "error", build
        assert "Submodule source refused" in build["error"] and f"{listener.url}/grandchild.git" in build["error"]
        assert "non-public address (127.0.0.1)" in build["error"], build["error"]
    finally:
        listener.close()


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """Default source rules (no file:// clones), no SMTP server, fast notification retries, loopback allowed."""
    server = SlipwayServer(tmp_path_factory.mktemp("strict"), extra_env={
        "SLIPWAY_NETWORK__ALLOWLIST": "127.0.0.1/32", "SLIPWAY_NOTIFICATIONS__RETRY_DELAYS": "1,1,1,1"}).start()
    yield server
    server.stop()


@pytest.mark.parametrize("source, fragment", [
    ("file:///srv/git/app.git", "triggers.allow_file_urls"),
    ("/srv/git/app.git", "triggers.allow_file_urls"),
    ("ext::sh -c touch% /tmp/pwned", "<transport>::<address>"),
    ("https://git.example.com/app.git\n", "spaces or control characters"),
    ("ext::ssh-helper", "<transport>::<address>"),
    ("fd::3", "<transport>::<address>"),
    ("-uhelp", "command-line option"),
    ("--upload-pack=touch /tmp/pwned", "command-line option"),
    ("ssh://-oProxyCommand=x/app.git", "no valid host"),
    ("git://git.example.com/app.git", "unsupported scheme 'git'"),
    ("ftp://git.example.com/app.git", "unsupported scheme 'ftp'"),
    ("just-a-name", "Cannot clone"),
])
def test_unusable_sources_are_refused_when_the_trigger_is_saved(strict, source, fragment):
    admin = Api(strict, ("admin", ADMIN_PASSWORD))
    if admin.get("/repository/admin/sources").status_code == 404:
        new_repo(admin, "sources")
    r = admin.post("/repository/admin/sources/trigger/", {"service": "custom-git", "config": {"build_source": source}})
    assert r.status_code == 400, r.text
    assert r.json()["error_type"] == "invalid_request" and fragment in r.json()["detail"], r.json()
    ok = admin.ok("POST", "/repository/admin/sources/trigger/",
                  {"service": "custom-git", "config": {"build_source": "git@git.example.com:team/app.git"}})
    r = admin.put(f"/repository/admin/sources/trigger/{ok['id']}", {"config": {"build_source": source}})
    assert r.status_code == 400 and fragment in r.json()["detail"], r.text
    r = admin.post(f"/repository/admin/sources/trigger/{ok['id']}/activate", {"config": {"build_source": source}})
    assert r.status_code == 400 and fragment in r.json()["detail"], r.text
    assert admin.ok("GET", f"/repository/admin/sources/trigger/{ok['id']}")["build_source"] == \
        "git@git.example.com:team/app.git"


def test_usable_sources_are_accepted(strict):
    admin = Api(strict, ("admin", ADMIN_PASSWORD))
    if admin.get("/repository/admin/goodsources").status_code == 404:
        new_repo(admin, "goodsources")
    for source in ("https://git.example.com/team/app.git", "ssh://git@git.example.com:2222/team/app.git",
                   "git@git.example.com:team/app.git", "http://git.example.com/app"):
        admin.ok("POST", "/repository/admin/goodsources/trigger/",
                 {"service": "custom-git", "config": {"build_source": source}})


def test_email_notifications_need_an_smtp_server(strict):
    admin = Api(strict, ("admin", ADMIN_PASSWORD))
    repo = new_repo(admin, "mailless")
    r = admin.post(f"/repository/{repo}/notification/",
                   {"event": "repo_push", "method": "email", "config": {"email": "ops@example.com"}})
    assert r.status_code == 400, r.text
    assert r.json()["error_type"] == "invalid_request" and "notifications.smtp_host" in r.json()["detail"]
    assert admin.ok("GET", f"/repository/{repo}/notification/")["notifications"] == []
    # One made while an SMTP server was configured (the operator removed it since): its test is refused too.
    strict.sql("INSERT INTO notification (uuid, repository_id, event, method, config, event_config, "
               "number_of_failures, created_at) SELECT ?, r.id, 'repo_push', 'email', ?, '{}', 0, 0 "
               "FROM repository r WHERE r.name = 'mailless'", "0" * 8 + "-0000-0000-0000-" + "0" * 12,
               strict.encrypt(json.dumps({"email": "ops@example.com"})))  # notification settings are encrypted
    r = admin.post(f"/repository/{repo}/notification/{'0' * 8}-0000-0000-0000-{'0' * 12}/test")
    assert r.status_code == 400 and "notifications.smtp_host" in r.json()["detail"], r.text
    assert strict.sql("SELECT COUNT(*) FROM notification_delivery")[0][0] == 0


def test_a_notification_stopped_by_failures_says_so_and_why(strict):
    admin = Api(strict, ("admin", ADMIN_PASSWORD))
    repo = new_repo(admin, "failing")
    listener = Listener()  # answers 404 to everything
    try:
        created = admin.ok("POST", f"/repository/{repo}/notification/",
                           {"event": "repo_push", "method": "webhook", "config": {"url": f"{listener.url}/hook"}})
        assert created["suspended"] is False and created["suspended_reason"] is None
        admin.ok("POST", f"/repository/{repo}/notification/{created['uuid']}/test")
        deadline = time.time() + 30
        while time.time() < deadline:
            view = admin.ok("GET", f"/repository/{repo}/notification/{created['uuid']}")
            if view["number_of_failures"] >= 3:
                break
            time.sleep(0.2)
        assert view["suspended"] is True, view
        assert "Stopped after 3 successive failed attempts" in view["suspended_reason"]
        assert "404" in view["suspended_reason"], view["suspended_reason"]
        [listed] = admin.ok("GET", f"/repository/{repo}/notification/")["notifications"]
        assert listed["suspended"] is True and listed["suspended_reason"] == view["suspended_reason"]
        admin.ok("POST", f"/repository/{repo}/notification/{created['uuid']}")  # reset
        view = admin.ok("GET", f"/repository/{repo}/notification/{created['uuid']}")
        assert view["suspended"] is False and view["number_of_failures"] == 0
    finally:
        listener.close()


def signed(secret: str, body: bytes) -> dict:
    return {"X-GitHub-Event": "push", "Content-Type": "application/json",
            "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def test_a_huge_signed_commit_message_is_stored_truncated(srv, admin):
    repo = new_repo(admin, "hugemessage")
    trigger = activated_trigger(admin, repo, secret="hook-secret", build_source="file:///nowhere/app.git")
    message = "Fix everything\n\n" + "x" * (3 * 1024 * 1024)  # 3 MiB: under the body cap, far over the message cap
    payload = {"ref": "refs/heads/main", "after": "c" * 40, "deleted": False,
               "head_commit": {"id": "c" * 40, "message": message, "timestamp": "2026-11-20T10:00:00Z",
                               "url": "u", "author": {"username": "ada"}},
               "repository": {"default_branch": "main"}}
    body = json.dumps(payload).encode()
    r = requests.post(f"{srv.url}/webhooks/push/trigger/{trigger['id']}", data=body,
                      headers=signed("hook-secret", body), timeout=60)
    assert r.status_code == 200 and r.json()["status"] == "queued", r.text
    build = wait_build_end(admin, repo, trigger["id"])
    stored = build["trigger_metadata"]["commit_info"]["message"]
    assert stored.startswith("Fix everything\n\nxxx") and stored.endswith("… [truncated]")
    assert len(stored) == 16 * 1024
    [[row]] = srv.sql("SELECT trigger_metadata FROM build WHERE uuid = ?", build["id"])
    assert len(row) < 20_000 and json.loads(row)["commit_info"]["message"] == stored
    events = srv.sql("SELECT kind, payload FROM event WHERE repository = ?", repo)
    assert {kind for kind, _ in events} >= {"build_queued", "build_start", "build_failure"}, events
    for kind, event_payload in events:
        assert len(event_payload) < 20_000, kind
        assert json.loads(event_payload)["trigger_metadata"]["commit_info"]["message"] == stored


def test_an_over_cap_webhook_body_is_refused_before_it_is_parsed(srv, admin):
    repo = new_repo(admin, "hugebody")
    trigger = activated_trigger(admin, repo, secret="hook-secret", build_source="file:///nowhere/app.git")
    hook = f"{srv.url}/webhooks/push/trigger/{trigger['id']}"
    body = b"{" + b" " * (6 * 1024 * 1024)  # not JSON, not signed: the size is what is refused
    r = requests.post(hook, data=body, headers={"X-GitHub-Event": "push"}, timeout=60)
    assert r.status_code == 413, r.text
    error = r.json()
    assert error["status"] == 413 and error["error_type"] == "request_too_large"
    assert "at most 5242880 bytes" in error["detail"] and error["detail"] == error["error_message"]
    small = b"{broken"
    r = requests.post(hook, data=small, headers=signed("hook-secret", small), timeout=60)
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]  # under the cap: parsed as before


def test_a_pattern_saved_before_re2_matches_nothing_and_says_why():
    """Triggers and notifications saved with Python's re may hold patterns RE2 refuses: they match nothing."""
    from triggers import rules
    from triggers.payloads import Push
    from webhooks import dispatch
    from webhooks.models import Notification

    push = Push(commit="a" * 40, ref="refs/heads/main", default_branch="main", git_url=None)
    reason = rules.skip_reason(push, r"heads/(main)\1?", [], [])
    assert reason and "Invalid branchtag_regex" in reason and "change the trigger's branchtag_regex" in reason
    assert rules.skip_reason(push, r"heads/(main|dev)", [], []) is None
    notification = Notification(uuid="n", event="build_success", event_config=json.dumps({"ref-regex": r"(?=x)"}))
    data = {"trigger_metadata": {"ref": "refs/heads/main"}}
    assert dispatch._matches(notification, "build_success", data) is False
    notification.event_config = json.dumps({"ref-regex": "heads/ma.*"})
    assert dispatch._matches(notification, "build_success", data) is True


def test_a_huge_ref_is_not_kept_whole_in_the_audit_log(srv, admin):
    repo = new_repo(admin, "hugeref")
    trigger = activated_trigger(admin, repo, build_source="file:///nowhere/app.git", branchtag_regex="heads/main")
    ref = "refs/heads/" + "r" * (1024 * 1024)
    r = requests.post(f"{srv.url}/webhooks/push/trigger/{trigger['id']}", auth=webhook_auth(trigger), timeout=60,
                      json={"commit": "d" * 40, "ref": ref, "default_branch": "main"})
    assert r.status_code == 200 and r.json()["status"] == "skipped", r.text[:300]
    [[metadata]] = srv.sql("SELECT metadata FROM log_entry WHERE kind = 'trigger_webhook' AND repository = ?",
                           "admin/hugeref")
    assert len(metadata) < 20_000 and json.loads(metadata)["ref"].endswith("… [truncated]")
