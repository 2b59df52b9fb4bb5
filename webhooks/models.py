"""Notification tables: what to notify, the durable delivery queue, every attempt, in-app inboxes."""
from peewee import BooleanField, CharField, ForeignKeyField, IntegerField, TextField

from accounts.models import Account
from registry.models import Repository
from slipway.crypto import EncryptedTextField
from slipway.db import BaseModel, TimestampField, now_ms

EVENTS = ("repo_push", "build_queued", "build_start", "build_success", "build_failure", "build_cancelled",
          "repo_image_expiry", "vulnerability_found")
METHODS = ("webhook", "slack", "email", "quay_notification")
PENDING, SUCCESS, FAILED = "pending", "success", "failed"


class Notification(BaseModel):
    uuid = CharField(max_length=36, unique=True)
    repository = ForeignKeyField(Repository, backref="notifications", on_delete="CASCADE")
    event = CharField(max_length=32)
    method = CharField(max_length=32)
    title = CharField(max_length=255, null=True)
    config = EncryptedTextField(default="{}")  # JSON: url (webhook and Slack URLs are credentials), template, ...
    event_config = TextField(default="{}")  # JSON: ref-regex, level, days
    secret_encrypted = TextField(null=True)  # signs webhook bodies (X-Slipway-Signature-256)
    number_of_failures = IntegerField(default=0)
    created_at = TimestampField(default=now_ms)


class Delivery(BaseModel):
    """One message to send for one notification; retried until it succeeds or runs out of attempts."""

    notification = ForeignKeyField(Notification, backref="deliveries", on_delete="CASCADE")
    event_id = IntegerField(null=True)
    kind = CharField(max_length=16, default="event")  # event | test | expiry
    payload = TextField()
    status = CharField(max_length=16, default=PENDING, index=True)
    attempts = IntegerField(default=0)
    next_attempt_at = TimestampField(default=now_ms, index=True)  # while claimed: when the claim lapses
    claimed_by = CharField(max_length=128, null=True)  # the process sending it now (slipway.leases.holder_id)
    last_status_code = IntegerField(null=True)
    last_error = TextField(null=True)
    created_at = TimestampField(default=now_ms)
    completed_at = TimestampField(null=True)

    class Meta:
        table_name = "notification_delivery"


class Attempt(BaseModel):
    delivery = ForeignKeyField(Delivery, backref="attempt_rows", on_delete="CASCADE")
    attempted_at = TimestampField(default=now_ms)
    status_code = IntegerField(null=True)
    error = TextField(null=True)
    duration_ms = IntegerField(default=0)

    class Meta:
        table_name = "notification_attempt"


class InAppNotification(BaseModel):
    """A Quay notification in a user's inbox."""

    uuid = CharField(max_length=36, unique=True)
    user = ForeignKeyField(Account, on_delete="CASCADE", index=True)
    kind = CharField(max_length=32)
    metadata = TextField(default="{}")
    created_at = TimestampField(default=now_ms)
    dismissed = BooleanField(default=False)


class ExpiryNotice(BaseModel):
    """A tag already announced by a repo_image_expiry notification (each tag is announced once)."""

    notification = ForeignKeyField(Notification, on_delete="CASCADE")
    tag_id = IntegerField()

    class Meta:
        indexes = ((("notification", "tag_id"), True),)


class EventCursor(BaseModel):
    """How far a consumer of the event table has read."""

    name = CharField(max_length=64, unique=True)
    last_id = IntegerField(default=0)
