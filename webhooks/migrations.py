"""Schema steps for notifications, with tables frozen as they were at each step."""
import json

from peewee import BooleanField, CharField, ForeignKeyField, IntegerField, Model, TextField

from accounts.migrations import AccountV1
from registry.migrations import RepositoryV1
from slipway import crypto, redact
from slipway.db import TimestampField, database, now_ms, param
from slipway.migrate import add_column_if_missing, frozen_meta, rewrite_column


class NotificationV1(Model):
    uuid = CharField(max_length=36, unique=True)
    repository = ForeignKeyField(RepositoryV1, on_delete="CASCADE")
    event = CharField(max_length=32)
    method = CharField(max_length=32)
    title = CharField(max_length=255, null=True)
    config = TextField(default="{}")
    event_config = TextField(default="{}")
    secret_encrypted = TextField(null=True)
    number_of_failures = IntegerField(default=0)
    created_at = TimestampField(default=now_ms)
    Meta = frozen_meta("notification")


class DeliveryV1(Model):
    notification = ForeignKeyField(NotificationV1, on_delete="CASCADE")
    event_id = IntegerField(null=True)
    kind = CharField(max_length=16, default="event")
    payload = TextField()
    status = CharField(max_length=16, default="pending", index=True)
    attempts = IntegerField(default=0)
    next_attempt_at = TimestampField(default=now_ms, index=True)
    last_status_code = IntegerField(null=True)
    last_error = TextField(null=True)
    created_at = TimestampField(default=now_ms)
    completed_at = TimestampField(null=True)
    Meta = frozen_meta("notification_delivery")


class AttemptV1(Model):
    delivery = ForeignKeyField(DeliveryV1, on_delete="CASCADE")
    attempted_at = TimestampField(default=now_ms)
    status_code = IntegerField(null=True)
    error = TextField(null=True)
    duration_ms = IntegerField(default=0)
    Meta = frozen_meta("notification_attempt")


class InAppNotificationV1(Model):
    uuid = CharField(max_length=36, unique=True)
    user = ForeignKeyField(AccountV1, on_delete="CASCADE", index=True)
    kind = CharField(max_length=32)
    metadata = TextField(default="{}")
    created_at = TimestampField(default=now_ms)
    dismissed = BooleanField(default=False)
    Meta = frozen_meta("in_app_notification")


class ExpiryNoticeV1(Model):
    notification = ForeignKeyField(NotificationV1, on_delete="CASCADE")
    tag_id = IntegerField()
    Meta = frozen_meta("expiry_notice", ((("notification", "tag_id"), True),))


class EventCursorV1(Model):
    name = CharField(max_length=64, unique=True)
    last_id = IntegerField(default=0)
    Meta = frozen_meta("event_cursor")


def initial():
    database.create_tables([NotificationV1, DeliveryV1, AttemptV1, InAppNotificationV1, ExpiryNoticeV1,
                            EventCursorV1], safe=True)


def delivery_once():
    """One delivery per notification and event, however often an event is looked at."""
    database.execute_sql("CREATE UNIQUE INDEX IF NOT EXISTS notification_delivery_once ON notification_delivery "
                         "(notification_id, event_id) WHERE event_id IS NOT NULL")


def encrypt_secrets():
    """Notification settings (webhook and Slack URLs are credentials) were plaintext: encrypt them, and
    redact the URLs' secrets from the delivery errors and payloads already stored."""
    urls = {}
    for notification_id, config in database.execute_sql("SELECT id, config FROM notification").fetchall():
        try:
            urls[notification_id] = json.loads(config or "{}").get("url")
        except (ValueError, AttributeError):
            urls[notification_id] = None
    p = param()
    for table, query in (
            ("notification_delivery", "SELECT id, last_error, notification_id FROM notification_delivery "
                                      "WHERE last_error IS NOT NULL"),
            ("notification_attempt", "SELECT a.id, a.error, d.notification_id FROM notification_attempt a "
                                     "JOIN notification_delivery d ON d.id = a.delivery_id WHERE a.error IS NOT NULL")):
        column = "last_error" if table == "notification_delivery" else "error"
        for row_id, text, notification_id in database.execute_sql(query).fetchall():
            redacted = redact.text(text, urls.get(notification_id))
            if redacted != text:
                database.execute_sql(f"UPDATE {table} SET {column} = {p} WHERE id = {p}", (redacted, row_id))
    rewrite_column("notification_delivery", "payload", redact.text, like="%://%@%")
    rewrite_column("notification", "config", crypto.encrypt)


class DeliveryV4(DeliveryV1):
    claimed_by = CharField(max_length=128, null=True)
    Meta = frozen_meta("notification_delivery")


def delivery_claims():
    """Deliveries are claimed by the process that sends them, so several send without doubles."""
    add_column_if_missing(DeliveryV4, "claimed_by")


MIGRATIONS = [
    (1, "notifications", initial),
    (2, "delivery_once", delivery_once),
    (3, "encrypt_secrets", encrypt_secrets),
    (4, "delivery_claims", delivery_claims),
]
