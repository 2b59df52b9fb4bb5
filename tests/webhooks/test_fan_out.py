"""fan_out on a database, without HTTP: one delivery per matching notification and event, built
before the write transaction, which checks that nothing changed under it."""
from __future__ import annotations

import uuid

from accounts.models import Account
from registry.models import Repository
from slipway import events
from slipway.config import Config
from webhooks import dispatch
from webhooks.models import Delivery, EventCursor, Notification


def notification(repo: Repository, method: str, event: str = events.REPO_PUSH) -> Notification:
    return Notification.create(uuid=str(uuid.uuid4()), repository=repo, event=event, method=method)


def test_each_event_reaches_each_matching_notification_once(db, monkeypatch):
    monkeypatch.setattr(dispatch, "INSERT_ROWS", 1)  # one INSERT per delivery: the counts still add up
    repo = Repository.create(namespace=Account.create(name="ns"), name="app")
    quiet = Repository.create(namespace=Account.get(name="ns"), name="quiet")
    hook, mail = notification(repo, "webhook"), notification(repo, "email")
    notification(repo, "webhook", event=events.BUILD_SUCCESS)  # another event: not this one
    first = events.emit(events.REPO_PUSH, repo, {"updated_tags": ["v1"]})
    events.emit(events.REPO_PUSH, quiet, {"updated_tags": ["v1"]})  # nobody watches it
    assert dispatch.fan_out(Config()) == 2
    assert dispatch.fan_out(Config()) == 0  # the cursor moved past both events
    deliveries = list(Delivery.select().order_by(Delivery.id))
    assert sorted(d.notification_id for d in deliveries) == sorted([hook.id, mail.id])
    assert all(d.event_id == first.id for d in deliveries)
    assert '"updated_tags": ["v1"]' in deliveries[0].payload and '"repository": "ns/app"' in deliveries[0].payload


def test_a_notification_deleted_while_deliveries_are_built_gets_none(db, monkeypatch):
    repo = Repository.create(namespace=Account.create(name="ns"), name="app")
    kept, gone = notification(repo, "webhook"), notification(repo, "email")
    events.emit(events.REPO_PUSH, repo, {"updated_tags": ["v1"]})
    real = dispatch.payload_for

    def deleting(*args):  # runs after the events were read, before the write transaction
        Notification.delete().where(Notification.id == gone.id).execute()
        return real(*args)

    monkeypatch.setattr(dispatch, "payload_for", deleting)
    assert dispatch.fan_out(Config()) == 1
    assert [d.notification_id for d in Delivery.select()] == [kept.id]


def test_events_handled_meanwhile_by_another_fan_out_are_not_handled_again(db, monkeypatch):
    repo = Repository.create(namespace=Account.create(name="ns"), name="app")
    notification(repo, "webhook")
    event = events.emit(events.REPO_PUSH, repo, {"updated_tags": ["v1"]})
    real = dispatch.payload_for

    def overtaken(*args):  # another node's fan-out finishes first
        EventCursor.update(last_id=event.id).where(EventCursor.name == dispatch.CURSOR).execute()
        return real(*args)

    monkeypatch.setattr(dispatch, "payload_for", overtaken)
    assert dispatch.fan_out(Config()) == 0
    assert Delivery.select().count() == 0
