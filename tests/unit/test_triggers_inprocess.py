"""Trigger use cases in-process: a trigger is saved and activated, a webhook is authenticated, parsed,
ruled on and queues a build with templated tags; deliveries are de-duplicated within the replay window,
which the clock is moved past instead of waited for."""
from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import urlsplit

import pytest

from builder.models import Build
from registry import repos
from slipway.errors import Forbidden, Invalid, Unauthenticated
from triggers import service

SHA = "0123456789abcdef0123456789abcdef01234567"
BASE = "https://slipway.example.com"


@pytest.fixture
def repo(admin):
    return repos.create("admin/app", admin)[0]


def trigger_for(repo, admin, kind: str = "custom-git", secret: str | None = None, **config):
    trigger = service.create(repo, kind, {"build_source": "https://git.example.com/acme/app.git", **config}, None,
                             admin)
    return service.activate(trigger, None, secret, admin)


def url_credentials(trigger) -> tuple[str, str]:
    url = urlsplit(service.webhook_url(trigger, BASE))
    return url.username, url.password


def push(message: str = "Change", ref: str = "refs/heads/main") -> bytes:
    return json.dumps({"ref": ref, "after": SHA, "deleted": False,
                       "head_commit": {"id": SHA, "message": message, "timestamp": "2026-11-20T10:00:00Z",
                                       "author": {"username": "ada"}},
                       "repository": {"ssh_url": "git@github.com:acme/app.git", "default_branch": "main"}}).encode()


def receive(trigger, body: bytes, headers: dict, credentials=None, **kwargs) -> dict:
    return service.receive(trigger, {"Content-Type": "application/json", **headers}, body, credentials,
                           max_queued=10, base=BASE, **kwargs)


def test_a_custom_git_push_queues_a_build_with_templated_tags(db, admin, repo):
    trigger = trigger_for(repo, admin, tag_templates=["${parsed_ref.branch}-${commit_info.short_sha}"])
    assert trigger.public_key.startswith("ssh-ed25519 ")
    body = json.dumps({"commit": SHA, "ref": "refs/heads/main", "default_branch": "main",
                       "commit_info": {"message": "First", "date": "2026-11-20T10:00:00Z"}}).encode()
    with pytest.raises(Unauthenticated):
        receive(trigger, body, {})  # the URL's credential is the only one
    with pytest.raises(Forbidden):
        receive(trigger, body, {}, ("$token", "wrong"))
    result = receive(trigger, body, {}, url_credentials(trigger))
    assert result["status"] == "queued" and f"main-{SHA[:7]}" in result["tags"]
    build = Build.get(Build.uuid == result["build"])
    assert json.loads(build.docker_tags) == result["tags"] and build.trigger_uuid == trigger.uuid
    with pytest.raises(Invalid, match="template"):
        service.update(trigger, {"tag_templates": ["${nope"]}, None, None, admin)


def test_signed_deliveries_are_handled_once_within_the_replay_window(db, admin, repo, clock):
    trigger = trigger_for(repo, admin, kind="github", secret="hook-secret")
    body = push()
    signed = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "delivery-1",
              "X-Hub-Signature-256": "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()}
    with pytest.raises(Unauthenticated, match="signature"):
        receive(trigger, body, {**signed, "X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert receive(trigger, body, signed, replay_window_seconds=3600)["status"] == "queued"
    again = receive(trigger, body, {**signed, "X-GitHub-Delivery": "changed"}, replay_window_seconds=3600)
    assert again["status"] == "skipped" and "already handled" in again["reason"]  # the same signed body
    clock.advance(3601)
    assert receive(trigger, body, signed, replay_window_seconds=3600)["status"] == "queued"
    assert Build.select().count() == 2

    skip = push("Docs only [skip build]")
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "delivery-2",
               "X-Hub-Signature-256": "sha256=" + hmac.new(b"hook-secret", skip, hashlib.sha256).hexdigest()}
    skipped = receive(trigger, skip, headers)
    assert skipped["status"] == "skipped" and "[skip build]" in skipped["reason"]
    assert Build.select().count() == 2
