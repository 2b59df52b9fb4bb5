"""Schema steps for the registry, with tables frozen as they were at each step."""
from peewee import BigIntegerField, BlobField, BooleanField, CharField, ForeignKeyField, IntegerField, Model, TextField

from accounts.migrations import AccountV1, TeamV2
from slipway.db import TimestampField, database, now_ms
from slipway.migrate import add_column_if_missing, frozen_meta


class RepositoryV1(Model):
    namespace = ForeignKeyField(AccountV1, on_delete="CASCADE")
    name = CharField(max_length=255)
    visibility = CharField(max_length=8, default="private")
    state = CharField(max_length=16, default="normal")
    description = TextField(default="")
    created_at = TimestampField(default=now_ms)
    Meta = frozen_meta("repository", ((("namespace", "name"), True),))


class BlobV1(Model):
    digest = CharField(max_length=200, unique=True)
    size = BigIntegerField()
    created_at = TimestampField(default=now_ms)
    Meta = frozen_meta("blob")


class RepositoryBlobV1(Model):
    repository = ForeignKeyField(RepositoryV1, on_delete="CASCADE")
    blob = ForeignKeyField(BlobV1, on_delete="CASCADE")
    created_at = TimestampField(default=now_ms)
    Meta = frozen_meta("repository_blob", ((("repository", "blob"), True),))


class ManifestV1(Model):
    repository = ForeignKeyField(RepositoryV1, on_delete="CASCADE")
    digest = CharField(max_length=200)
    media_type = CharField(max_length=255)
    artifact_type = CharField(max_length=255, null=True)
    subject_digest = CharField(max_length=200, null=True)
    annotations = TextField(null=True)
    content = BlobField()
    size = IntegerField()
    created_at = TimestampField(default=now_ms)
    deleted_at = TimestampField(null=True)
    Meta = frozen_meta("manifest", ((("repository", "digest"), True), (("repository", "subject_digest"), False)))


class ManifestBlobV1(Model):
    manifest = ForeignKeyField(ManifestV1, on_delete="CASCADE")
    blob = ForeignKeyField(BlobV1, on_delete="CASCADE")
    Meta = frozen_meta("manifest_blob", ((("manifest", "blob"), True),))


class ManifestChildV1(Model):
    manifest = ForeignKeyField(ManifestV1, on_delete="CASCADE")
    child = ForeignKeyField(ManifestV1, on_delete="CASCADE")
    Meta = frozen_meta("manifest_child", ((("manifest", "child"), True),))


class TagV1(Model):
    repository = ForeignKeyField(RepositoryV1, on_delete="CASCADE")
    name = CharField(max_length=128)
    manifest = ForeignKeyField(ManifestV1, on_delete="CASCADE")
    lifetime_start = TimestampField(default=now_ms)
    lifetime_end = TimestampField(null=True)
    Meta = frozen_meta("tag", ((("repository", "name", "lifetime_end"), False),
                               (("repository", "lifetime_end"), False)))


class UploadV1(Model):
    uuid = CharField(max_length=64, unique=True)
    repository = ForeignKeyField(RepositoryV1, on_delete="CASCADE")
    offset = BigIntegerField(default=0)
    created_at = TimestampField(default=now_ms)
    updated_at = TimestampField(default=now_ms)
    Meta = frozen_meta("upload")


def initial():
    database.create_tables([RepositoryV1, BlobV1, RepositoryBlobV1, ManifestV1, ManifestBlobV1, ManifestChildV1,
                            TagV1, UploadV1], safe=True)
    # At most one open-ended row per tag name: concurrent pushes of one tag cannot both win.
    database.execute_sql("CREATE UNIQUE INDEX IF NOT EXISTS tag_one_alive ON tag (repository_id, name) "
                         "WHERE lifetime_end IS NULL")


class RepositoryPermissionV2(Model):
    repository = ForeignKeyField(RepositoryV1, on_delete="CASCADE")
    account = ForeignKeyField(AccountV1, null=True, on_delete="CASCADE")
    team = ForeignKeyField(TeamV2, null=True, on_delete="CASCADE")
    role = CharField(max_length=8)
    Meta = frozen_meta("repository_permission", ((("repository", "account"), False), (("repository", "team"), False)))


def permissions():
    """Repository permissions for users, robots and teams."""
    database.create_tables([RepositoryPermissionV2], safe=True)


class ManifestLabelV3(Model):
    uuid = CharField(max_length=36, unique=True)
    manifest = ForeignKeyField(ManifestV1, on_delete="CASCADE")
    key = CharField(max_length=255, index=True)
    value = TextField()
    source_type = CharField(max_length=16, default="manifest")
    media_type = CharField(max_length=64, default="text/plain")
    Meta = frozen_meta("manifest_label")


class TagV3(TagV1):
    final = BooleanField(default=False)
    Meta = frozen_meta("tag")


def labels_and_final_tags():
    """Manifest labels; tags ended for good (expired permanently)."""
    add_column_if_missing(TagV3, "final")
    database.create_tables([ManifestLabelV3], safe=True)


class StorageIdentityV4(Model):
    driver = CharField(max_length=16)
    location = CharField(max_length=1024)
    marker = CharField(max_length=64, unique=True)
    created_at = TimestampField(default=now_ms)
    Meta = frozen_meta("storage_identity")


class NodeAddressV4(Model):
    name = CharField(max_length=300, unique=True)
    seen_at = TimestampField(default=now_ms)
    Meta = frozen_meta("node_address")


def identity():
    """Which storage holds the blobs, and the addresses the nodes serve at (registry.identity)."""
    database.create_tables([StorageIdentityV4, NodeAddressV4], safe=True)


MIGRATIONS = [
    (1, "registry", initial),
    (2, "permissions", permissions),
    (3, "labels", labels_and_final_tags),
    (4, "identity", identity),
]
