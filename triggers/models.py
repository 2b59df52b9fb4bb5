"""Trigger tables: the trigger and its configuration, and the webhook deliveries already seen."""
from peewee import BooleanField, CharField, ForeignKeyField, IntegerField, TextField

from accounts.models import Account
from registry.models import Repository
from slipway.crypto import EncryptedTextField
from slipway.db import BaseModel, TimestampField, now_ms

KINDS = ("custom-git", "github", "gitlab", "bitbucket", "gitea")


class Trigger(BaseModel):
    uuid = CharField(max_length=36, unique=True)
    repository = ForeignKeyField(Repository, backref="triggers", on_delete="CASCADE")
    kind = CharField(max_length=16, default="custom-git")
    enabled = BooleanField(default=True)
    disabled_reason = TextField(null=True)
    activated = BooleanField(default=False)
    build_source = EncryptedTextField(default="")  # the git URL builds clone (it may hold a password)
    dockerfile_path = CharField(max_length=1024, default="Dockerfile")
    context = CharField(max_length=1024, default="")
    branchtag_regex = TextField(null=True)
    tag_templates = TextField(default="[]")  # JSON list
    default_tag_from_ref = BooleanField(default=True)
    latest_for_default_branch = BooleanField(default=True)
    pull_robot = ForeignKeyField(Account, null=True, on_delete="SET NULL")
    build_args = EncryptedTextField(default="{}")  # JSON object (values may be secrets)
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
    # The source's default branch when pushes do not say (Bitbucket): set by the user, or learned from the
    # clone's HEAD by the first build.
    default_branch = CharField(max_length=255, null=True)


class Delivery(BaseModel):
    """A delivery already handled, so a retry or a replay does not build twice (kept for a window).

    ``delivery_id`` is ``retry:<forge>:<the forge's retry key>`` or ``body:<sha256 of the signed body>``.
    """

    trigger = ForeignKeyField(Trigger, on_delete="CASCADE")
    delivery_id = CharField(max_length=255)
    received_at = TimestampField(default=now_ms)
    build_uuid = CharField(max_length=36, null=True)
    build_uuids = TextField(default="[]")  # JSON: every build the delivery queued (one per ref)

    class Meta:
        indexes = ((("trigger", "delivery_id"), True),)
