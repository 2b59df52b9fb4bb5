"""Notifications with real receivers: an HTTP server on loopback (webhook, Slack), a real SMTP server (aiosmtpd),
in-app inboxes; retries, the stop after 3 failures, durability across a restart, expiry notices."""
from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from aiosmtpd.controller import Controller

from tests.api import Api
from tests.builder.conftest import FAST_QUEUE, Builds
from tests.conftest import ADMIN_PASSWORD, ContainerTools, SlipwayServer, free_port, wait_for
from tests.images import make_oci_layout
from tests.receiver import Receiver

CREDS = f"admin:{ADMIN_PASSWORD}"


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("notify")
    mailbox = Mailbox()
    smtp_port = free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    receiver = Receiver()
    srv = SlipwayServer(base / "srv", extra_env={
        **FAST_QUEUE, "SLIPWAY_NETWORK__ALLOWLIST": "127.0.0.1/32", "SLIPWAY_NOTIFICATIONS__RETRY_DELAYS": "1,1,1,1",
        "SLIPWAY_NOTIFICATIONS__EXPIRY_SCAN_SECONDS": "1", "SLIPWAY_NOTIFICATIONS__SMTP_HOST": "127.0.0.1",
        "SLIPWAY_NOTIFICATIONS__SMTP_PORT": str(smtp_port), "SLIPWAY_NOTIFICATIONS__MAIL_FROM": "slipway@test.local",
    }).start()
    builds = Builds(srv, ContainerTools(base / "tools", srv.host)).setup(base)
    yield builds, receiver, mailbox, base
    srv.stop()
    smtp.stop()
    receiver.httpd.shutdown()


def push(builds: Builds, tmp, ref: str, **labels):
    make_oci_layout(tmp, labels={"stamp": str(time.time()), **labels})
    builds.tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", CREDS, f"oci:{tmp}:latest",
                        f"docker://{builds.server.host}/{ref}")


def notify(builds: Builds, repo: str, event: str, method: str, config: dict, **extra) -> dict:
    return builds.admin.ok("POST", f"/repository/{repo}/notification/",
                           {"event": event, "method": method, "config": config, **extra})


def test_repo_push_webhook_is_signed_and_templated(env, tmp_path):
    builds, receiver, _, _ = env
    repo = builds.repo("pushed")
    created = notify(builds, repo, "repo_push", "webhook", {"url": f"{receiver.url}/push"})
    assert created["number_of_failures"] == 0 and len(created["signing_secret"]) == 40
    notify(builds, repo, "repo_push", "webhook", {"url": f"{receiver.url}/templated",
                                                 "template": '{"text": "${repository} got ${updated_tags}", '
                                                             '"tags": "${updated_tags}", "missing": "${nope.x}"}'})
    push(builds, tmp_path / "a", f"{repo}:v1")
    [hit] = receiver.wait(1, "/push")
    payload = json.loads(hit["body"])
    assert payload["updated_tags"] == ["v1"] and payload["repository"] == repo
    assert payload["namespace"] == "admin" and payload["name"] == "pushed"
    assert payload["docker_url"].endswith(f"/{repo}") and payload["homepage"].endswith(f"/repository/{repo}")
    expected = hmac.new(created["signing_secret"].encode(), hit["body"], hashlib.sha256).hexdigest()
    assert hit["headers"]["X-Slipway-Signature-256"] == f"sha256={expected}"
    assert hit["headers"]["X-Slipway-Event"] == "repo_push"
    [templated] = receiver.wait(1, "/templated")
    assert json.loads(templated["body"]) == {"text": f"{repo} got v1", "tags": ["v1"], "missing": None}


def test_build_notifications_arrive_in_order(env):
    builds, receiver, _, _ = env
    repo = builds.repo("built")
    for event in ("build_queued", "build_start", "build_success"):
        notify(builds, repo, event, "webhook", {"url": f"{receiver.url}/build"})
    build = builds.start_dockerfile(repo, f"FROM {builds.base}\nLABEL n=1\n")
    builds.wait(repo, build["id"])
    hits = receiver.wait(3, "/build")
    assert [h["headers"]["X-Slipway-Event"] for h in hits] == ["build_queued", "build_start", "build_success"]
    final = json.loads(hits[-1]["body"])
    assert final["build_id"] == build["id"] and final["docker_tags"] == ["latest"]
    assert final["image_id"].startswith("sha256:")
    assert final["manifest_digests"][0].startswith(f"localhost:{builds.server.port}/{repo}@sha256:")
    queued = json.loads(hits[0]["body"])
    assert queued["is_manual"] is True and queued["manual_user"] == "admin" and queued["repo"] == "built"


def test_slack_email_and_in_app(env, tmp_path):
    builds, receiver, mailbox, _ = env
    repo = builds.repo("multi")
    notify(builds, repo, "repo_push", "slack", {"url": f"{receiver.url}/slack"})
    notify(builds, repo, "repo_push", "email", {"email": "ops@example.com"}, title="Pushed!")
    notify(builds, repo, "repo_push", "quay_notification", {"target": {"kind": "user", "name": "admin"}})
    push(builds, tmp_path / "m", f"{repo}:release")
    [slack] = receiver.wait(1, "/slack")
    message = json.loads(slack["body"])
    assert message["text"] == f"Repository {repo} has been pushed to (release)"
    fields = {f["title"]: f["value"] for f in message["attachments"][0]["fields"]}
    assert fields["Tags"] == "release" and repo in fields["Repository"]
    deadline = time.time() + 20
    while not mailbox.messages and time.time() < deadline:
        time.sleep(0.1)
    [mail] = mailbox.messages
    text = mail.content.decode()
    assert mail.rcpt_tos == ["ops@example.com"] and "Subject: [Slipway] Pushed!" in text
    assert "Tags pushed: release" in text and "text/html" in text and "<a href=" in text

    def in_app():  # sent after the e-mail (a repository's deliveries go in order), so maybe not yet
        inbox = builds.admin.ok("GET", "/user/notifications")["notifications"]
        return [n for n in inbox if n["metadata"].get("repository") == repo]

    deadline = time.time() + 20
    while not in_app() and time.time() < deadline:
        time.sleep(0.1)
    [item] = in_app()
    assert item["kind"] == "repo_push" and not item["dismissed"]
    builds.admin.ok("PUT", f"/user/notifications/{item['id']}", {"dismissed": True})
    assert item["id"] not in [n["id"] for n in builds.admin.ok("GET", "/user/notifications")["notifications"]]


def test_failing_receiver_is_retried_then_stopped_until_reset(env, tmp_path):
    builds, receiver, _, _ = env
    repo = builds.repo("flaky")
    created = notify(builds, repo, "repo_push", "webhook", {"url": f"{receiver.url}/flaky"})
    receiver.status = 500
    try:
        push(builds, tmp_path / "f1", f"{repo}:one")
        receiver.wait(3, "/flaky")
        # The third failure is recorded once its answer is in: wait for that, not only for the request.
        def recorded():
            found = builds.admin.ok("GET", f"/repository/{repo}/notification/{created['uuid']}")
            return found if found["number_of_failures"] >= 3 else None

        detail = wait_for(recorded, what="the third failure recorded")
        assert detail["number_of_failures"] == 3
        deliveries = builds.admin.ok("GET", f"/repository/{repo}/notification/{created['uuid']}/deliveries")
        [delivery] = deliveries["deliveries"]
        assert delivery["status"] == "suspended" and [a["status_code"] for a in delivery["attempts"]] == [500] * 3
        assert "HTTP 500" in delivery["attempts"][0]["error"]
        # A marker that proves, without waiting a fixed time, that nothing more went to /flaky: a second
        # notification of the repository that fails once and is retried 1 s later. Its retry is due
        # after the retry /flaky's third failure would have had (its first attempt came in a later run
        # of the job), and due deliveries of a repository go out in order, so had /flaky been retried,
        # that request would have arrived before the marker's retry.
        receiver.scripted["/marker"] = [500]
        notify(builds, repo, "repo_push", "webhook", {"url": f"{receiver.url}/marker"})
        push(builds, tmp_path / "f2", f"{repo}:two")  # queued for /flaky, not sent while stopped
        receiver.wait(2, "/marker")
        assert len([r for r in receiver.requests if r["path"] == "/flaky"]) == 3
    finally:
        receiver.status = 200
    builds.admin.ok("POST", f"/repository/{repo}/notification/{created['uuid']}")
    hits = receiver.wait(5, "/flaky")
    assert {tuple(json.loads(h["body"])["updated_tags"]) for h in hits[3:]} == {("one",), ("two",)}
    assert builds.admin.ok("GET", f"/repository/{repo}/notification/{created['uuid']}")["number_of_failures"] == 0


def test_image_expiry_notices_come_once_per_tag(env, tmp_path):
    builds, receiver, _, _ = env
    repo = builds.repo("expiring")
    notify(builds, repo, "repo_image_expiry", "webhook", {"url": f"{receiver.url}/expiry"}, eventConfig={"days": 1})
    push(builds, tmp_path / "e1", f"{repo}:soon", **{"quay.expires-after": "12h"})
    push(builds, tmp_path / "e2", f"{repo}:later", **{"quay.expires-after": "3d"})
    [first] = receiver.wait(1, "/expiry")
    assert json.loads(first["body"])["tags"] == ["soon"] and json.loads(first["body"])["expiring_in"] == "1 days"
    assert len(receiver.wait(1, "/expiry")) == 1
    push(builds, tmp_path / "e3", f"{repo}:also", **{"quay.expires-after": "2h"})
    # The scans since the first notice announced nothing new: the next notice is the new tag alone
    # (repeated scans with the clock moved on: tests/unit/test_webhooks_inprocess.py).
    hits = receiver.wait(2, "/expiry")
    assert json.loads(hits[1]["body"])["tags"] == ["also"]


def test_test_notification_and_bad_input(env):
    builds, receiver, _, _ = env
    repo = builds.repo("testing")
    created = notify(builds, repo, "build_failure", "webhook", {"url": f"{receiver.url}/test"})
    builds.admin.ok("POST", f"/repository/{repo}/notification/{created['uuid']}/test")
    [hit] = receiver.wait(1, "/test")
    assert json.loads(hit["body"])["build_id"] and json.loads(hit["body"])["repository"] == repo
    for body, message in (({"event": "nope", "method": "webhook", "config": {"url": receiver.url}}, "Unknown event"),
                          ({"event": "repo_push", "method": "fax", "config": {}}, "Unknown method"),
                          ({"event": "repo_push", "method": "webhook", "config": {}}, "needs config.url"),
                          ({"event": "repo_push", "method": "webhook",
                            "config": {"url": receiver.url, "template": "{not json"}}, "not valid JSON"),
                          ({"event": "repo_push", "method": "webhook", "config": {"url": "http://10.0.0.9/x"}},
                           "non-public address"),
                          ({"event": "repo_push", "method": "email", "config": {"email": "nobody"}}, "e-mail address"),
                          ({"event": "repo_push", "method": "quay_notification",
                            "config": {"target": {"kind": "user", "name": "ghost"}}}, "does not exist")):
        r = builds.admin.post(f"/repository/{repo}/notification/", body)
        assert r.status_code in (400, 404) and message in r.json()["detail"], (body, r.text)
    builds.admin.ok("DELETE", f"/repository/{repo}/notification/{created['uuid']}")
    assert builds.admin.get(f"/repository/{repo}/notification/{created['uuid']}").status_code == 404
    assert Api(builds.server).get(f"/repository/{repo}/notification/").status_code == 401


def test_deliveries_survive_a_restart(tmp_path):
    receiver = Receiver()
    srv = SlipwayServer(tmp_path / "srv", extra_env={"SLIPWAY_NETWORK__ALLOWLIST": "127.0.0.1/32",
                                                     "SLIPWAY_SERVER__WORKERS": "false"})
    srv.env["SLIPWAY_SERVER__PUBLIC_URL"] = srv.url  # an API-only node needs it
    srv.start()
    try:
        tools = ContainerTools(tmp_path / "tools", srv.host)
        builds = Builds(srv, tools)
        repo = builds.repo("durable")
        notify(builds, repo, "repo_push", "webhook", {"url": f"{receiver.url}/durable"})
        push(builds, tmp_path / "d", f"{repo}:v1")
        # No background work in this server: one process, which forks no background process (that is
        # decided before it serves), so the event waits in the database.
        assert open(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read().split() == []
        srv.stop()
        assert receiver.requests == [] and srv.sql("SELECT COUNT(*) FROM delivery") == [(0,)]
        assert srv.sql("SELECT COUNT(*) FROM event WHERE kind = 'repo_push'") == [(1,)]
        srv.env["SLIPWAY_SERVER__WORKERS"] = "true"
        srv.start()
        [hit] = receiver.wait(1, "/durable")
        assert json.loads(hit["body"])["updated_tags"] == ["v1"]
    finally:
        srv.stop()
        receiver.httpd.shutdown()
