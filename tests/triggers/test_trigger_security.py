"""Triggers under attack by an ordinary account: catastrophic regexes, submodules that reach private
addresses, huge signed payloads, and sources or notifications that could only fail later."""
from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from tests.api import Api
from tests.builder.conftest import FAST_QUEUE
from tests.conftest import ADMIN_PASSWORD, SlipwayServer


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
            raise AssertionError("/health did not answer within 3 s while the webhook's regex was matched")
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
