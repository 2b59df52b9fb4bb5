"""Registry tables: repositories, blobs and their links, manifests, tags (with history), uploads."""
from peewee import BigIntegerField, BlobField, BooleanField, CharField, ForeignKeyField, IntegerField, TextField

from accounts.models import Account, Team
from slipway.db import BaseModel, TimestampField, now_ms

PRIVATE, PUBLIC = "private", "public"


class Repository(BaseModel):
    namespace = ForeignKeyField(Account, backref="repositories", on_delete="CASCADE")
    name = CharField(max_length=255)  # the part after "<namespace>/"
    visibility = CharField(max_length=8, default=PRIVATE)
    state = CharField(max_length=16, default="normal")  # normal | read_only | mirror
    description = TextField(default="")
    created_at = TimestampField(default=now_ms)

    class Meta:
        indexes = ((("namespace", "name"), True),)

    @property
    def full_name(self) -> str:
        return f"{self.namespace.name}/{self.name}"


class Blob(BaseModel):
    """Content stored once per digest, shared by every repository that links it."""

    digest = CharField(max_length=200, unique=True)
    size = BigIntegerField()
    created_at = TimestampField(default=now_ms)


class RepositoryBlob(BaseModel):
    """A blob is visible in a repository only through this link (push or mount)."""

    repository = ForeignKeyField(Repository, on_delete="CASCADE")
    blob = ForeignKeyField(Blob, on_delete="CASCADE")
    created_at = TimestampField(default=now_ms)

    class Meta:
        indexes = ((("repository", "blob"), True),)


class Manifest(BaseModel):
    repository = ForeignKeyField(Repository, backref="manifests", on_delete="CASCADE")
    digest = CharField(max_length=200)
    media_type = CharField(max_length=255)
    artifact_type = CharField(max_length=255, null=True)
    subject_digest = CharField(max_length=200, null=True)
    annotations = TextField(null=True)  # JSON object, for referrers responses
    content = BlobField()
    size = IntegerField()
    created_at = TimestampField(default=now_ms)
    # Set by DELETE .../manifests/<digest>; the row stays for the time machine until GC.
    deleted_at = TimestampField(null=True)

    class Meta:
        indexes = (
            (("repository", "digest"), True),
            (("repository", "subject_digest"), False),
        )


class ManifestBlob(BaseModel):
    """The config and layer blobs a manifest references."""

    manifest = ForeignKeyField(Manifest, backref="blob_links", on_delete="CASCADE")
    blob = ForeignKeyField(Blob, on_delete="CASCADE")

    class Meta:
        indexes = ((("manifest", "blob"), True),)


class ManifestChild(BaseModel):
    """The manifests an index (manifest list) references."""

    manifest = ForeignKeyField(Manifest, backref="child_links", on_delete="CASCADE")
    child = ForeignKeyField(Manifest, backref="parent_links", on_delete="CASCADE")

    class Meta:
        indexes = ((("manifest", "child"), True),)


class Tag(BaseModel):
    """One span of a tag's life; moving or deleting a tag ends its row, so rows are its history.

    A tag is alive while ``lifetime_end`` is null or in the future (expiring tags).
    """

    repository = ForeignKeyField(Repository, backref="tags", on_delete="CASCADE")
    name = CharField(max_length=128)
    manifest = ForeignKeyField(Manifest, backref="tags", on_delete="CASCADE")
    lifetime_start = TimestampField(default=now_ms)
    lifetime_end = TimestampField(null=True)
    # Ended for good (POST .../tag/<tag>/expire): not restorable, collected without waiting for the window.
    final = BooleanField(default=False)

    class Meta:
        indexes = (
            (("repository", "name", "lifetime_end"), False),
            (("repository", "lifetime_end"), False),
        )


def alive(now: int | None = None, tag=Tag):
    """The one alive-tag predicate: ``lifetime_end`` null or in the future. ``tag`` may be an alias
    (``Tag.alias("t")``): ``registry.queries`` renders it into its hand-written SQL."""
    now = now_ms() if now is None else now
    return tag.lifetime_end.is_null() | (tag.lifetime_end > now)


class Upload(BaseModel):
    """A blob upload session; its bytes live in storage under the same id."""

    uuid = CharField(max_length=64, unique=True)
    repository = ForeignKeyField(Repository, on_delete="CASCADE")
    offset = BigIntegerField(default=0)
    created_at = TimestampField(default=now_ms)
    updated_at = TimestampField(default=now_ms)


class ManifestLabel(BaseModel):
    """A key/value on a manifest: from its image config and annotations, or added through the API."""

    uuid = CharField(max_length=36, unique=True)
    manifest = ForeignKeyField(Manifest, backref="labels", on_delete="CASCADE")
    key = CharField(max_length=255, index=True)
    value = TextField()
    source_type = CharField(max_length=16, default="manifest")  # manifest | api
    media_type = CharField(max_length=64, default="text/plain")


class RepositoryPermission(BaseModel):
    """A role on a repository for a user or robot (``account``) or for a ``team``."""

    repository = ForeignKeyField(Repository, backref="permissions", on_delete="CASCADE")
    account = ForeignKeyField(Account, null=True, on_delete="CASCADE")
    team = ForeignKeyField(Team, null=True, on_delete="CASCADE")
    role = CharField(max_length=8)

    class Meta:
        indexes = ((("repository", "account"), False), (("repository", "team"), False))
