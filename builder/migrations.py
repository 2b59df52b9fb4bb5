"""Schema steps for builds, with tables frozen as they were at each step."""
from peewee import BigIntegerField, BooleanField, CharField, ForeignKeyField, IntegerField, Model, TextField

from accounts.migrations import AccountV1
from registry.migrations import RepositoryV1
from slipway import crypto, redact
from slipway.db import TimestampField, database, now_ms
from slipway.migrate import add_column_if_missing, frozen_meta, rewrite_column


class BuildV1(Model):
    uuid = CharField(max_length=36, unique=True)
    repository = ForeignKeyField(RepositoryV1, on_delete="CASCADE")
    phase = CharField(max_length=16, default="waiting")
    docker_tags = TextField(default='["latest"]')
    dockerfile_path = CharField(max_length=1024, default="Dockerfile")
    context = CharField(max_length=1024, default="")
    build_args = TextField(default="{}")
    target = CharField(max_length=255, null=True)
    pull_robot = ForeignKeyField(AccountV1, null=True, on_delete="SET NULL")
    source = CharField(max_length=16, default="upload")
    resource_key = CharField(max_length=64, null=True)
    archive_url = TextField(null=True)
    trigger_id = IntegerField(null=True)
    trigger_kind = CharField(max_length=32, null=True)
    trigger_metadata = TextField(default="{}")
    requested_by = ForeignKeyField(AccountV1, null=True, on_delete="SET NULL", backref="+")
    requested_by_name = CharField(max_length=255, null=True)
    created_at = TimestampField(default=now_ms)
    started_at = TimestampField(null=True)
    completed_at = TimestampField(null=True)
    error_message = TextField(null=True)
    image_id = CharField(max_length=200, null=True)
    manifest_digests = TextField(default="[]")
    retries_remaining = IntegerField(default=3)
    cancel_requested = BooleanField(default=False)
    log_count = IntegerField(default=0)
    log_bytes = BigIntegerField(default=0)
    log_truncated = BooleanField(default=False)
    credential_hash = CharField(max_length=128, null=True, index=True)
    Meta = frozen_meta("build")


class BuildJobV1(Model):
    build = ForeignKeyField(BuildV1, unique=True, on_delete="CASCADE")
    repository_id = IntegerField(index=True)
    namespace_id = IntegerField(index=True)
    created_at = TimestampField(default=now_ms)
    available_at = TimestampField(default=now_ms)
    lease_owner = CharField(max_length=128, null=True)
    lease_expires = TimestampField(null=True)
    Meta = frozen_meta("build_job")


class BuildLogV1(Model):
    build = ForeignKeyField(BuildV1, on_delete="CASCADE")
    seq = IntegerField()
    type = CharField(max_length=8, default="")
    message = TextField()
    data = TextField(null=True)
    created_at = TimestampField(default=now_ms)
    Meta = frozen_meta("build_log", ((("build", "seq"), True),))


class FileDropV1(Model):
    file_id = CharField(max_length=64, unique=True)
    owner = ForeignKeyField(AccountV1, on_delete="CASCADE")
    mime_type = CharField(max_length=255, default="")
    size = BigIntegerField(default=0)
    uploaded = BooleanField(default=False)
    created_at = TimestampField(default=now_ms)
    Meta = frozen_meta("file_drop")


def initial():
    database.create_tables([BuildV1, BuildJobV1, BuildLogV1, FileDropV1], safe=True)


class BuildV2(BuildV1):
    # Repositories named in the Dockerfile's FROM lines that the build credential may pull (JSON list of ids).
    base_repositories = TextField(default="[]")
    Meta = frozen_meta("build")


def base_repositories():
    add_column_if_missing(BuildV2, "base_repositories")


class BuildV3(BuildV2):
    trigger_uuid = CharField(max_length=36, null=True)
    current_step = IntegerField(null=True)
    total_steps = IntegerField(null=True)
    Meta = frozen_meta("build")


def build_status():
    """The trigger's uuid on its builds; the build's current and total Dockerfile steps.

    Builds of existing triggers get their uuid in the triggers package's step 3 (the trigger table is theirs).
    """
    for name in ("trigger_uuid", "current_step", "total_steps"):
        add_column_if_missing(BuildV3, name)


def encrypt_secrets():
    """build_args and archive_url were plaintext: encrypt them. A manual trigger run copied the
    trigger's source, password and all, into the build's metadata and its events: redact it there."""
    rewrite_column("build", "build_args", crypto.encrypt)
    rewrite_column("build", "archive_url", crypto.encrypt)
    rewrite_column("build", "trigger_metadata", redact.text, like="%://%@%")
    rewrite_column("event", "payload", redact.text, like="%://%@%")


MIGRATIONS = [
    (1, "builds", initial),
    (2, "build base repositories", base_repositories),
    (3, "build status", build_status),
    (4, "encrypt_secrets", encrypt_secrets),
]
