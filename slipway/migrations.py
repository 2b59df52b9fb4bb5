"""Schema steps for the shell's own tables (the event queue, job leases), frozen as they were at each step."""
from peewee import CharField, IntegerField, Model, TextField

from .db import TimestampField, database, now_ms
from .migrate import frozen_meta


class EventV1(Model):
    kind = CharField(max_length=64, index=True)
    repository_id = IntegerField(null=True, index=True)
    namespace = CharField(max_length=255, null=True)
    repository = CharField(max_length=255, null=True)
    payload = TextField()
    created_at = TimestampField(default=now_ms)
    Meta = frozen_meta("event")


class JobLeaseV1(Model):
    name = CharField(max_length=128, unique=True)
    holder = CharField(max_length=128, null=True)
    expires_at = TimestampField(null=True)
    started_at = TimestampField(null=True)
    Meta = frozen_meta("job_lease")


def events():
    database.create_tables([EventV1], safe=True)


def job_leases():
    """Scheduled jobs run where their lease is held (slipway.leases)."""
    database.create_tables([JobLeaseV1], safe=True)


MIGRATIONS = [
    (1, "events", events),
    (2, "job_leases", job_leases),
]
