"""Scanner tables: layer indexes (a cache keyed by content), manifest scans, the durable scan queue,
advisories, and what was already announced.

Scans are keyed by manifest **digest**, not by repository: a manifest's content is its digest, so the same
image pushed to two repositories is indexed and matched once. Only the announcements
(``vulnerability_found``) are per repository, since notifications are.
"""
from peewee import BigIntegerField, CharField, ForeignKeyField, IntegerField, TextField

from registry.models import Repository
from slipway.db import BaseModel, TimestampField, now_ms

QUEUED, SCANNED, FAILED, UNSUPPORTED = "queued", "scanned", "failed", "unsupported"


class LayerIndexRow(BaseModel):
    """What ``scanner.index.index_layer`` found in a layer blob, for one indexer version."""

    layer_digest = CharField(max_length=200)
    indexer_version = CharField(max_length=32)
    data = TextField()  # LayerIndex.to_json()
    created_at = TimestampField(default=now_ms)

    class Meta:
        table_name = "scanner_layer_index"
        indexes = ((("layer_digest", "indexer_version"), True),)


class ManifestScan(BaseModel):
    """The state of one image manifest's scan, and what is needed to render it without reading a layer."""

    digest = CharField(max_length=200, unique=True)
    status = CharField(max_length=16, default=QUEUED)  # queued | scanned | failed | unsupported
    reason = TextField(null=True)  # why failed / unsupported
    indexer_version = CharField(max_length=32, null=True)
    image = TextField(null=True)  # JSON: {"distribution": {...} | null, "packages": [...], "layers": [...]}
    findings = TextField(null=True)  # JSON: [{"package": i, "id", "ecosystem", "severity", "fixed_by", ...}]
    summary = TextField(null=True)  # JSON: {"High": n, ..., "fixable": n}, for the tag list
    updated_at = TimestampField(default=now_ms)

    class Meta:
        table_name = "scanner_manifest"


class ManifestKey(BaseModel):
    """The (ecosystem, package) keys a scanned manifest's packages are matched by, so a feed update finds the
    manifests it touches without reading every stored index."""

    digest = CharField(max_length=200, index=True)
    ecosystem = CharField(max_length=64)
    package = CharField(max_length=255)

    class Meta:
        table_name = "scanner_manifest_key"
        indexes = ((("ecosystem", "package", "digest"), True),)


class ScanJob(BaseModel):
    """A scan to run. Claimed with a lease (``lease_owner``, ``lease_expires``); a claim whose holder
    stopped renewing it lapses and the scan is taken again; done, the row is deleted."""

    digest = CharField(max_length=200, unique=True)
    available_at = TimestampField(default=now_ms, index=True)
    lease_owner = CharField(max_length=128, null=True)
    lease_expires = TimestampField(null=True)
    attempts = IntegerField(default=0)
    created_at = TimestampField(default=now_ms)

    class Meta:
        table_name = "scanner_job"


class AdvisoryRow(BaseModel):
    """One advisory for one package of one ecosystem, as the feeds gave it (``digest``: its content hash, so
    an unchanged advisory is not written again)."""

    advisory_id = CharField(max_length=128)
    ecosystem = CharField(max_length=64)
    package = CharField(max_length=255)
    digest = CharField(max_length=128)
    data = TextField()  # JSON of scanner.feeds.Advisory
    feed = CharField(max_length=255, null=True, index=True)  # the feed that last gave it (None: before step 2)
    updated_at = TimestampField(default=now_ms)

    class Meta:
        table_name = "scanner_advisory"
        indexes = ((("ecosystem", "package", "advisory_id"), True),)


class Announced(BaseModel):
    """A vulnerability already announced (``vulnerability_found``) for a manifest in a repository."""

    repository = ForeignKeyField(Repository, on_delete="CASCADE")
    digest = CharField(max_length=200)
    advisory_id = CharField(max_length=128)
    package = CharField(max_length=255)
    severity = CharField(max_length=16, null=True)  # as announced: a change is announced again
    created_at = TimestampField(default=now_ms)

    class Meta:
        table_name = "scanner_announced"
        indexes = ((("repository", "digest", "advisory_id", "package"), True),)


class ScanCursor(BaseModel):
    """How far the scanner read the event table (``manifest_pushed``)."""

    name = CharField(max_length=64, unique=True)
    last_id = BigIntegerField(default=0)

    class Meta:
        table_name = "scanner_cursor"
