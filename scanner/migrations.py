"""Schema steps for the scanner, with tables frozen as they were at each step."""
from peewee import BigIntegerField, CharField, ForeignKeyField, IntegerField, Model, TextField

from registry.migrations import RepositoryV1
from slipway.db import TimestampField, database, now_ms
from slipway.migrate import add_column_if_missing, frozen_meta


class LayerIndexV1(Model):
    layer_digest = CharField(max_length=200)
    indexer_version = CharField(max_length=32)
    data = TextField()
    created_at = TimestampField(default=now_ms)
    Meta = frozen_meta("scanner_layer_index", ((("layer_digest", "indexer_version"), True),))


class ManifestScanV1(Model):
    digest = CharField(max_length=200, unique=True)
    status = CharField(max_length=16, default="queued")
    reason = TextField(null=True)
    indexer_version = CharField(max_length=32, null=True)
    image = TextField(null=True)
    findings = TextField(null=True)
    summary = TextField(null=True)
    updated_at = TimestampField(default=now_ms)
    Meta = frozen_meta("scanner_manifest")


class ManifestKeyV1(Model):
    digest = CharField(max_length=200, index=True)
    ecosystem = CharField(max_length=64)
    package = CharField(max_length=255)
    Meta = frozen_meta("scanner_manifest_key", ((("ecosystem", "package", "digest"), True),))


class ScanJobV1(Model):
    digest = CharField(max_length=200, unique=True)
    available_at = TimestampField(default=now_ms, index=True)
    lease_owner = CharField(max_length=128, null=True)
    lease_expires = TimestampField(null=True)
    attempts = IntegerField(default=0)
    created_at = TimestampField(default=now_ms)
    Meta = frozen_meta("scanner_job")


class AdvisoryV1(Model):
    advisory_id = CharField(max_length=128)
    ecosystem = CharField(max_length=64)
    package = CharField(max_length=255)
    digest = CharField(max_length=128)
    data = TextField()
    updated_at = TimestampField(default=now_ms)
    Meta = frozen_meta("scanner_advisory", ((("ecosystem", "package", "advisory_id"), True),))


class AnnouncedV1(Model):
    repository = ForeignKeyField(RepositoryV1, on_delete="CASCADE")
    digest = CharField(max_length=200)
    advisory_id = CharField(max_length=128)
    package = CharField(max_length=255)
    created_at = TimestampField(default=now_ms)
    Meta = frozen_meta("scanner_announced", ((("repository", "digest", "advisory_id", "package"), True),))


class ScanCursorV1(Model):
    name = CharField(max_length=64, unique=True)
    last_id = BigIntegerField(default=0)
    Meta = frozen_meta("scanner_cursor")


def initial():
    database.create_tables([LayerIndexV1, ManifestScanV1, ManifestKeyV1, ScanJobV1, AdvisoryV1, AnnouncedV1,
                            ScanCursorV1])


class AdvisoryV2(AdvisoryV1):
    feed = CharField(max_length=255, null=True)
    Meta = frozen_meta("scanner_advisory", ((("ecosystem", "package", "advisory_id"), True),))


class AnnouncedV2(AnnouncedV1):
    severity = CharField(max_length=16, null=True)
    Meta = frozen_meta("scanner_announced", ((("repository", "digest", "advisory_id", "package"), True),))


def feeds_and_announced_severities():
    """Which feed last gave an advisory (one it drops is withdrawn); the severity each announcement had (a
    change is announced again). Rows from before: no feed until their feed is imported again, no severity
    (an announcement made before is not repeated for that reason)."""
    add_column_if_missing(AdvisoryV2, "feed")
    add_column_if_missing(AnnouncedV2, "severity")
    database.execute_sql("CREATE INDEX IF NOT EXISTS scanner_advisory_feed ON scanner_advisory (feed)")


MIGRATIONS = [
    (1, "scanner", initial),
    (2, "scanner feeds and announced severities", feeds_and_announced_severities),
]
