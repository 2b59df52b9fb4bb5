"""Schema steps for triggers, with tables frozen as they were at each step."""
from peewee import BooleanField, CharField, ForeignKeyField, IntegerField, Model, TextField

from accounts.migrations import AccountV1
from registry.migrations import RepositoryV1
from slipway import crypto, redact
from slipway.db import TimestampField, database, now_ms
from slipway.migrate import add_column_if_missing, frozen_meta, rewrite_column


class TriggerV1(Model):
    uuid = CharField(max_length=36, unique=True)
    repository = ForeignKeyField(RepositoryV1, on_delete="CASCADE")
    kind = CharField(max_length=16, default="custom-git")
    enabled = BooleanField(default=True)
    disabled_reason = TextField(null=True)
    activated = BooleanField(default=False)
    build_source = TextField(default="")  # the git URL builds clone
    dockerfile_path = CharField(max_length=1024, default="Dockerfile")
    context = CharField(max_length=1024, default="")
    branchtag_regex = TextField(null=True)
    tag_templates = TextField(default="[]")  # JSON list
    default_tag_from_ref = BooleanField(default=True)
    latest_for_default_branch = BooleanField(default=True)
    pull_robot = ForeignKeyField(AccountV1, null=True, on_delete="SET NULL")
    build_args = TextField(default="{}")  # JSON object
    included_paths = TextField(default="[]")  # JSON list of globs
    ignored_paths = TextField(default="[]")
    # Secrets, encrypted with the server secret (they are shown again to administrators):
    credential_encrypted = TextField(null=True)  # the $token:<code> in the webhook URL
    webhook_secret_encrypted = TextField(null=True)  # signs payloads (GitHub, Gitea, GitLab token)
    private_key_encrypted = TextField(null=True)  # the deploy key builds clone with
    public_key = TextField(null=True)
    created_by_name = CharField(max_length=255, null=True)
    created_at = TimestampField(default=now_ms)
    successive_user_errors = IntegerField(default=0)
    successive_internal_errors = IntegerField(default=0)
    Meta = frozen_meta("trigger")


class DeliveryV1(Model):
    trigger = ForeignKeyField(TriggerV1, on_delete="CASCADE")
    delivery_id = CharField(max_length=255)
    received_at = TimestampField(default=now_ms)
    build_uuid = CharField(max_length=36, null=True)
    Meta = frozen_meta("delivery", ((("trigger", "delivery_id"), True),))


def initial():
    database.create_tables([TriggerV1, DeliveryV1], safe=True)


class TriggerDefaultBranchV2(TriggerV1):
    default_branch = CharField(max_length=255, null=True)
    Meta = frozen_meta("trigger")


class DeliveryBuildsV2(DeliveryV1):
    build_uuids = TextField(default="[]")
    Meta = frozen_meta("delivery", ((("trigger", "delivery_id"), True),))


def default_branch_and_delivery_builds():
    add_column_if_missing(TriggerDefaultBranchV2, "default_branch")
    add_column_if_missing(DeliveryBuildsV2, "build_uuids")


def builds_know_their_trigger():
    """Builds started by a trigger before builder step 3 get the trigger's uuid (their views show it)."""
    database.execute_sql('UPDATE "build" SET trigger_uuid = (SELECT t.uuid FROM "trigger" t WHERE t.id = '
                         '"build".trigger_id) WHERE trigger_id IS NOT NULL AND trigger_uuid IS NULL')


def encrypt_secrets():
    """build_source (a git URL may hold a password) and build_args were plaintext: encrypt them, and
    redact the sources earlier versions copied into the audit log."""
    rewrite_column("trigger", "build_source", crypto.encrypt)
    rewrite_column("trigger", "build_args", crypto.encrypt)
    rewrite_column("log_entry", "metadata", redact.text,
                   "kind IN ('setup_repo_trigger', 'update_repo_trigger')", like="%://%")


MIGRATIONS = [
    (1, "triggers", initial),
    (2, "trigger default branch, builds per delivery", default_branch_and_delivery_builds),
    (3, "build trigger uuids", builds_know_their_trigger),
    (4, "encrypt_secrets", encrypt_secrets),
]
