"""Notification use cases in-process, with a receiver on loopback and the clock under the test's control:
deliveries, retries when due and not before, the stop after repeated failures, expiry notices once per
tag. "Nothing is sent" is proved by moving the clock past every retry, not by waiting."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from registry import repos, tags
from slipway import events
from slipway.config import Config
from tests.receiver import Receiver
from webhooks import dispatch, notifications
from webhooks.models import Attempt, Delivery

from .steps import push_image


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.httpd.shutdown()


@pytest.fixture
def config():
    config = Config()
    config.network.allowlist = ["127.0.0.1/32"]
    config.notifications.retry_delays = [30, 30, 30, 30]
    return config


@pytest.fixture
def repo(admin):
    return repos.create("admin/app", admin)[0]


def webhook(repo, admin, config, url: str, event: str = "repo_push", **extra):
    body = {"event": event, "method": "webhook", "config": {"url": url}, **extra}
    return notifications.create(repo, body, admin, config.network)


def hits(receiver: Receiver, path: str) -> int:
    return len([r for r in receiver.requests if r["path"] == path])


def test_a_push_is_delivered_signed_and_a_failure_is_retried_when_due_and_not_before(
        db, admin, repo, config, receiver, clock):
    notification, secret = webhook(repo, admin, config, f"{receiver.url}/hook")
    receiver.scripted["/hook"] = [500, 500]
    events.emit(events.REPO_PUSH, repo, {"updated_tags": ["v1"]})
    assert dispatch.fan_out(config) == 1
    assert dispatch.send_due(config) == 1 and hits(receiver, "/hook") == 1
    assert dispatch.send_due(config) == 0
    clock.advance(29.9)
    assert dispatch.send_due(config) == 0 and hits(receiver, "/hook") == 1  # not due yet
    clock.advance(0.1)
    assert dispatch.send_due(config) == 1 and hits(receiver, "/hook") == 2
    clock.advance(30)
    assert dispatch.send_due(config) == 1 and hits(receiver, "/hook") == 3  # the third attempt succeeds
    clock.advance(86400)
    assert dispatch.send_due(config) == 0 and hits(receiver, "/hook") == 3  # done: never sent again

    last = receiver.requests[-1]
    assert json.loads(last["body"])["updated_tags"] == ["v1"]
    expected = hmac.new(secret.encode(), last["body"], hashlib.sha256).hexdigest()
    assert last["headers"]["X-Slipway-Signature-256"] == f"sha256={expected}"
    [delivery] = Delivery.select()
    assert (delivery.status, delivery.attempts) == ("success", 3)
    assert [a.status_code for a in Attempt.select().order_by(Attempt.id)] == [500, 500, 200]
    notification = notifications.get(repo, notification.uuid)
    assert notification.number_of_failures == 0


def test_repeated_failures_stop_a_notification_until_it_is_reset(db, admin, repo, config, receiver, clock):
    notification, _ = webhook(repo, admin, config, f"{receiver.url}/flaky")
    receiver.status = 500
    events.emit(events.REPO_PUSH, repo, {"updated_tags": ["one"]})
    dispatch.fan_out(config)
    for _ in range(3):
        assert dispatch.send_due(config) == 1
        clock.advance(30)
    assert hits(receiver, "/flaky") == 3
    view = notifications.view(notifications.get(repo, notification.uuid), max_failures=3)
    assert view["number_of_failures"] == 3 and view["suspended"] is True
    events.emit(events.REPO_PUSH, repo, {"updated_tags": ["two"]})
    assert dispatch.fan_out(config) == 1  # queued ...
    clock.advance(7 * 86400)
    assert dispatch.send_due(config) == 0 and hits(receiver, "/flaky") == 3  # ... but nothing is sent

    receiver.status = 200
    notifications.reset(notifications.get(repo, notification.uuid), admin)
    assert dispatch.send_due(config) == 2
    sent = [json.loads(r["body"])["updated_tags"] for r in receiver.requests[3:]]
    assert sorted(sent) == [["one"], ["two"]]
    assert notifications.get(repo, notification.uuid).number_of_failures == 0


def test_expiry_notices_come_once_per_tag_however_often_the_scan_runs(db, admin, repo, config, receiver,
                                                                      storage, clock):
    webhook(repo, admin, config, f"{receiver.url}/expiry", event="repo_image_expiry", eventConfig={"days": 1})
    hour = 3600
    push_image(storage, repo, "soon", layer=b"soon")
    push_image(storage, repo, "later", layer=b"later")
    tags.set_expiration(repo, "soon", int(clock() + 12 * hour), 60, 10 * 86400)
    tags.set_expiration(repo, "later", int(clock() + 3 * 86400), 60, 10 * 86400)
    assert dispatch.scan_expiring(config) == 1
    for _ in range(5):  # several scans later, an hour apart: nothing new
        clock.advance(hour)
        assert dispatch.scan_expiring(config) == 0
    push_image(storage, repo, "also", layer=b"also")
    tags.set_expiration(repo, "also", int(clock() + 2 * hour), 60, 10 * 86400)
    assert dispatch.scan_expiring(config) == 1
    assert dispatch.send_due(config) == 2
    assert [json.loads(r["body"])["tags"] for r in receiver.requests] == [["soon"], ["also"]]
