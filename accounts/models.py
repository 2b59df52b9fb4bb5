"""Tables of people and machines that act: users, organizations and robots."""
from peewee import BooleanField, CharField, ForeignKeyField, TextField

from slipway.db import BaseModel, TimestampField, now_ms

USER, ORG, ROBOT = "user", "org", "robot"


class Account(BaseModel):
    """A user, an organization or a robot. Users and organizations are namespaces."""

    name = CharField(max_length=255, unique=True)
    kind = CharField(max_length=8, default=USER)
    email = CharField(max_length=255, null=True)
    password_hash = CharField(max_length=255, null=True)
    superuser = BooleanField(default=False)
    enabled = BooleanField(default=True)
    # A robot's namespace (user or organization).
    owner = ForeignKeyField("self", null=True, backref="robots", on_delete="CASCADE")
    description = TextField(default="")
    created_at = TimestampField(default=now_ms)

    @property
    def is_namespace(self) -> bool:
        return self.kind in (USER, ORG)
