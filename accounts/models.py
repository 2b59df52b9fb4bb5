"""Tables of people and machines that act, and of how they are grouped: accounts, teams, tokens, the audit log."""
from peewee import BooleanField, CharField, ForeignKeyField, IntegerField, TextField

from slipway.db import BaseModel, TimestampField, now_ms

USER, ORG, ROBOT = "user", "org", "robot"
TEAM_ROLES = ("member", "creator", "admin")
# Quay's choices for the time machine window, in seconds: 0s, 1d, 7d, 14d (default), 4w.
TIME_MACHINE_CHOICES = (0, 86400, 7 * 86400, 14 * 86400, 28 * 86400)
DEFAULT_TIME_MACHINE = 14 * 86400


class Account(BaseModel):
    """A user, an organization or a robot. Users and organizations are namespaces.

    A robot is named ``<namespace>+<name>`` and belongs to its namespace (``owner``).
    Its token is kept twice: hashed, to check logins, and encrypted with the
    server secret, so an administrator can show it again (as Quay does).
    """

    name = CharField(max_length=255, unique=True)
    kind = CharField(max_length=8, default=USER)
    email = CharField(max_length=255, null=True)
    password_hash = CharField(max_length=255, null=True)
    superuser = BooleanField(default=False)
    enabled = BooleanField(default=True)
    owner = ForeignKeyField("self", null=True, backref="robots", on_delete="CASCADE")
    description = TextField(default="")
    created_at = TimestampField(default=now_ms)
    token_hash = CharField(max_length=128, null=True)
    token_encrypted = TextField(null=True)
    time_machine_s = IntegerField(default=DEFAULT_TIME_MACHINE)
    last_accessed = TimestampField(null=True)
    # Raised when the account's credentials are replaced (a robot's token regenerated): registry
    # tokens carry the epoch they were issued under and stop counting when it moves.
    credential_epoch = IntegerField(default=0)

    @property
    def is_namespace(self) -> bool:
        return self.kind in (USER, ORG)


class Team(BaseModel):
    org = ForeignKeyField(Account, backref="teams", on_delete="CASCADE")
    name = CharField(max_length=255)
    role = CharField(max_length=8, default="member")
    description = TextField(default="")
    created_at = TimestampField(default=now_ms)

    class Meta:
        indexes = ((("org", "name"), True),)


class TeamMember(BaseModel):
    team = ForeignKeyField(Team, backref="members", on_delete="CASCADE")
    account = ForeignKeyField(Account, backref="team_memberships", on_delete="CASCADE")

    class Meta:
        indexes = ((("team", "account"), True),)


class Token(BaseModel):
    """An application token (``$app`` logins) or an API token (``Authorization: Bearer``, with scopes).

    The token is shown once; only its prefix (to find the row) and a hash are kept.
    """

    owner = ForeignKeyField(Account, backref="tokens", on_delete="CASCADE")
    kind = CharField(max_length=8)  # app | api
    title = CharField(max_length=255)
    prefix = CharField(max_length=16, unique=True)
    token_hash = CharField(max_length=128)
    scopes = TextField(default="")  # space-separated; empty for app tokens
    created_at = TimestampField(default=now_ms)
    last_used = TimestampField(null=True)
    revoked_at = TimestampField(null=True)


class Prototype(BaseModel):
    """A default permission: on repository creation in ``org``, grant ``role`` to a delegate.

    ``activating_user`` null means any creator; else only repositories that user creates.
    """

    uuid = CharField(max_length=36, unique=True)
    org = ForeignKeyField(Account, backref="prototypes", on_delete="CASCADE")
    activating_user = ForeignKeyField(Account, null=True, on_delete="CASCADE")
    delegate_account = ForeignKeyField(Account, null=True, on_delete="CASCADE")
    delegate_team = ForeignKeyField(Team, null=True, on_delete="CASCADE")
    role = CharField(max_length=8)


class LogEntry(BaseModel):
    """One audit log entry. Names are copied so entries outlive what they name."""

    kind = CharField(max_length=64)
    namespace_id = IntegerField(null=True)
    namespace = CharField(max_length=255, null=True)
    performer_id = IntegerField(null=True)
    performer = CharField(max_length=255, null=True)
    performer_kind = CharField(max_length=16, null=True)  # user | robot | token | anonymous | build
    repository_id = IntegerField(null=True)
    repository = CharField(max_length=255, null=True)
    created_at = TimestampField(default=now_ms, index=True)
    ip = CharField(max_length=64, null=True)
    metadata = TextField(default="{}")

    class Meta:
        indexes = (
            (("namespace_id", "created_at"), False),
            (("repository_id", "created_at"), False),
            (("performer_id", "created_at"), False),
        )


class AuthGeneration(BaseModel):
    """One row: raised by every change that takes rights away (``accounts.revocation``)."""

    value = IntegerField(default=0)

    class Meta:
        table_name = "auth_generation"


class Session(BaseModel):
    """A browser session of the web interface (``accounts.sessions``). Only a hash of the session id is
    kept, so a copy of the table signs no one in; ``csrf_token`` is what its forms must send back."""

    id_hash = CharField(max_length=64, unique=True)
    account = ForeignKeyField(Account, backref="sessions", on_delete="CASCADE")
    csrf_token = CharField(max_length=64)
    created_at = TimestampField(default=now_ms)
    expires_at = TimestampField(index=True)
    last_seen = TimestampField(default=now_ms)
    ip = CharField(max_length=64, null=True)
    user_agent = CharField(max_length=255, default="")

    class Meta:
        table_name = "web_session"
