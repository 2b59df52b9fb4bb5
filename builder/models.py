"""Build tables: the build itself, its queue item (lease and retries), its numbered log, uploaded contexts."""
from peewee import BigIntegerField, BooleanField, CharField, ForeignKeyField, IntegerField, TextField

from accounts.models import Account
from registry.models import Repository
from slipway.crypto import EncryptedTextField
from slipway.db import BaseModel, TimestampField, now_ms

WAITING, SCHEDULED, UNPACKING, PULLING, BUILDING, PUSHING = (
    "waiting", "build-scheduled", "unpacking", "pulling", "building", "pushing")
COMPLETE, ERROR, INTERNAL_ERROR, CANCELLED = "complete", "error", "internalerror", "cancelled"
TERMINAL = (COMPLETE, ERROR, INTERNAL_ERROR, CANCELLED)
RUNNING = (SCHEDULED, UNPACKING, PULLING, BUILDING, PUSHING)


class Build(BaseModel):
    uuid = CharField(max_length=36, unique=True)
    repository = ForeignKeyField(Repository, backref="builds", on_delete="CASCADE")
    phase = CharField(max_length=16, default=WAITING)
    docker_tags = TextField(default='["latest"]')  # JSON list
    dockerfile_path = CharField(max_length=1024, default="Dockerfile")
    context = CharField(max_length=1024, default="")
    build_args = EncryptedTextField(default="{}")  # JSON object (values may be secrets)
    target = CharField(max_length=255, null=True)
    pull_robot = ForeignKeyField(Account, null=True, on_delete="SET NULL")
    source = CharField(max_length=16, default="upload")  # upload | archive_url | git
    resource_key = CharField(max_length=64, null=True)  # the uploaded context (file drop id)
    archive_url = EncryptedTextField(null=True)  # may hold a password or a presigned query
    trigger_id = IntegerField(null=True)
    trigger_kind = CharField(max_length=32, null=True)
    trigger_metadata = TextField(default="{}")
    requested_by = ForeignKeyField(Account, null=True, on_delete="SET NULL", backref="+")
    requested_by_name = CharField(max_length=255, null=True)
    created_at = TimestampField(default=now_ms)
    started_at = TimestampField(null=True)
    completed_at = TimestampField(null=True)
    error_message = TextField(null=True)
    image_id = CharField(max_length=200, null=True)
    manifest_digests = TextField(default="[]")  # JSON list
    retries_remaining = IntegerField(default=3)
    cancel_requested = BooleanField(default=False)
    log_count = IntegerField(default=0)
    log_bytes = BigIntegerField(default=0)
    log_truncated = BooleanField(default=False)
    credential_hash = CharField(max_length=128, null=True, index=True)  # the $build login, while running
    # Repositories of base images (FROM) the build credential may pull: JSON list of ids.
    base_repositories = TextField(default="[]")
    trigger_uuid = CharField(max_length=36, null=True)  # the trigger's id as the trigger API shows it
    current_step = IntegerField(null=True)  # Dockerfile steps started in this attempt (Quay: current_command)
    total_steps = IntegerField(null=True)  # Dockerfile steps in all (Quay: total_commands)


class BuildJob(BaseModel):
    """The queue item of a build that is waiting or running. Gone once the build ends."""

    build = ForeignKeyField(Build, unique=True, backref="job", on_delete="CASCADE")
    repository_id = IntegerField(index=True)
    namespace_id = IntegerField(index=True)
    created_at = TimestampField(default=now_ms)
    available_at = TimestampField(default=now_ms)
    lease_owner = CharField(max_length=128, null=True)
    lease_expires = TimestampField(null=True)


class BuildLog(BaseModel):
    """Numbered log entries: {"message", "type": phase|command|error (or none), "data"}."""

    build = ForeignKeyField(Build, backref="logs", on_delete="CASCADE")
    seq = IntegerField()
    type = CharField(max_length=8, default="")
    message = TextField()
    data = TextField(null=True)
    created_at = TimestampField(default=now_ms)

    class Meta:
        indexes = ((("build", "seq"), True),)


class FileDrop(BaseModel):
    """An uploaded build context (Quay's /api/v1/filedrop), kept in storage until used or expired."""

    file_id = CharField(max_length=64, unique=True)
    owner = ForeignKeyField(Account, on_delete="CASCADE")
    mime_type = CharField(max_length=255, default="")
    size = BigIntegerField(default=0)
    uploaded = BooleanField(default=False)
    created_at = TimestampField(default=now_ms)
