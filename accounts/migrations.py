"""Schema steps for accounts. Each step creates tables as they were at that step (frozen
definitions below), so upgrading an old database and installing fresh give the same schema."""
from peewee import BooleanField, CharField, ForeignKeyField, IntegerField, Model, TextField

from slipway.db import TimestampField, database, now_ms
from slipway.migrate import add_column_if_missing, frozen_meta, sqlite_autoincrement

from . import models


class AccountV1(Model):
    name = CharField(max_length=255, unique=True)
    kind = CharField(max_length=8, default="user")
    email = CharField(max_length=255, null=True)
    password_hash = CharField(max_length=255, null=True)
    superuser = BooleanField(default=False)
    enabled = BooleanField(default=True)
    owner = ForeignKeyField("self", null=True, on_delete="CASCADE")
    description = TextField(default="")
    created_at = TimestampField(default=now_ms)
    Meta = frozen_meta("account")


def initial():
    database.create_tables([AccountV1], safe=True)


class TeamV2(Model):
    org = ForeignKeyField(AccountV1, on_delete="CASCADE")
    name = CharField(max_length=255)
    role = CharField(max_length=8, default="member")
    description = TextField(default="")
    created_at = TimestampField(default=now_ms)
    Meta = frozen_meta("team", ((("org", "name"), True),))


class TeamMemberV2(Model):
    team = ForeignKeyField(TeamV2, on_delete="CASCADE")
    account = ForeignKeyField(AccountV1, on_delete="CASCADE")
    Meta = frozen_meta("team_member", ((("team", "account"), True),))


class TokenV2(Model):
    owner = ForeignKeyField(AccountV1, on_delete="CASCADE")
    kind = CharField(max_length=8)
    title = CharField(max_length=255)
    prefix = CharField(max_length=16, unique=True)
    token_hash = CharField(max_length=128)
    scopes = TextField(default="")
    created_at = TimestampField(default=now_ms)
    last_used = TimestampField(null=True)
    revoked_at = TimestampField(null=True)
    Meta = frozen_meta("token")


class PrototypeV2(Model):
    uuid = CharField(max_length=36, unique=True)
    org = ForeignKeyField(AccountV1, on_delete="CASCADE")
    activating_user = ForeignKeyField(AccountV1, null=True, on_delete="CASCADE")
    delegate_account = ForeignKeyField(AccountV1, null=True, on_delete="CASCADE")
    delegate_team = ForeignKeyField(TeamV2, null=True, on_delete="CASCADE")
    role = CharField(max_length=8)
    Meta = frozen_meta("prototype")


class LogEntryV2(Model):
    kind = CharField(max_length=64)
    namespace_id = IntegerField(null=True)
    namespace = CharField(max_length=255, null=True)
    performer_id = IntegerField(null=True)
    performer = CharField(max_length=255, null=True)
    performer_kind = CharField(max_length=16, null=True)
    repository_id = IntegerField(null=True)
    repository = CharField(max_length=255, null=True)
    created_at = TimestampField(default=now_ms, index=True)
    ip = CharField(max_length=64, null=True)
    metadata = TextField(default="{}")
    Meta = frozen_meta("log_entry", ((("namespace_id", "created_at"), False), (("repository_id", "created_at"), False),
                               (("performer_id", "created_at"), False)))


def tenancy():
    """Organizations, teams, robots' tokens, app and API tokens, default permissions, audit log."""
    for column in ("token_hash", "token_encrypted", "time_machine_s", "last_accessed"):
        add_column_if_missing(models.Account, column)
    database.create_tables([TeamV2, TeamMemberV2, TokenV2, PrototypeV2, LogEntryV2], safe=True)


class AuthGenerationV3(Model):
    value = IntegerField(default=0)
    Meta = frozen_meta("auth_generation")


def revocation():
    """Credential epochs, the revocation counter, and account ids that never come back.

    SQLite gives a new row the highest deleted id unless the table is AUTOINCREMENT; the
    sequence starts above every account id the audit log remembers, so an upgraded database
    does not hand out an id a deleted account once had.
    """
    add_column_if_missing(models.Account, "credential_epoch")
    database.create_tables([AuthGenerationV3], safe=True)
    if not AuthGenerationV3.select().exists():
        AuthGenerationV3.create(id=1, value=0)
    sqlite_autoincrement("account", [("log_entry", "namespace_id"), ("log_entry", "performer_id")])


class SessionV4(Model):
    id_hash = CharField(max_length=64, unique=True)
    account = ForeignKeyField(AccountV1, on_delete="CASCADE")
    csrf_token = CharField(max_length=64)
    created_at = TimestampField(default=now_ms)
    expires_at = TimestampField(index=True)
    last_seen = TimestampField(default=now_ms)
    ip = CharField(max_length=64, null=True)
    user_agent = CharField(max_length=255, default="")
    Meta = frozen_meta("web_session")


def sessions():
    """The web interface's sign-in sessions (only a hash of each session id is stored)."""
    database.create_tables([SessionV4], safe=True)


MIGRATIONS = [
    (1, "accounts", initial),
    (2, "tenancy", tenancy),
    (3, "revocation", revocation),
    (4, "sessions", sessions),
]
