"""Scans: the durable queue (claims with a lease), indexing a manifest from its layers (each layer once per
indexer version), matching, storing what the security API renders, and announcing new vulnerabilities.

A scan is keyed by the manifest's digest. Queued by the ``manifest_pushed`` events the registry writes with
each stored manifest (``queue_pushed``), by ``POST .../security``, and again when the indexer version
changed. ``claim`` takes the oldest due job: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (workers of several
nodes skip each other's rows), SQLite's write lock otherwise; the holder renews its lease while it scans, so
a scan whose process died is taken again once the lease lapses, and one that kept killing its process is
failed after ``MAX_ATTEMPTS``.
"""
from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from peewee import chunked, fn

from registry.manifests import IMAGE_TYPES, INDEX_TYPES
from registry.models import Blob, Manifest, ManifestChild, Repository, Tag, alive
from slipway import events, leases
from slipway.db import database, database_now_ms, is_postgres, now_ms

from . import advisories
from .index import (
    INDEXER_VERSION,
    Distribution,
    ImageIndex,
    LayerIndex,
    LayerUnreadable,
    Limits,
    Package,
    combine,
    index_layer,
)
from .match import ecosystem_keys, match
from .models import (
    FAILED,
    QUEUED,
    SCANNED,
    UNSUPPORTED,
    Announced,
    LayerIndexRow,
    ManifestKey,
    ManifestScan,
    ScanCursor,
    ScanJob,
)

log = logging.getLogger("slipway.scanner")
VULNERABILITY_FOUND = "vulnerability_found"
READ_BUFFER = 256 << 10  # bytes read from a layer's blob at a time
WRITE_BEFORE_BYTES = 64 << 20  # a scan reading more layer bytes than this starts with the batch's results written
WRITE_AFTER_SECONDS = 1.0  # the batch's results are written once they have waited this long
MAX_ATTEMPTS = 3  # claims of one scan (each a process that died or stalled while scanning) before it fails
SETTLE_MS = 10_000  # on PostgreSQL an event id is seen when its transaction commits (see webhooks.dispatch)
IMAGE_CONFIGS = {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
}
FOREIGN_LAYERS = {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                  "application/vnd.oci.image.layer.nondistributable.v1.tar",
                  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"}


# -- the queue -------------------------------------------------------------------------------------------

def queue(digest: str, force: bool = False) -> None:
    """Queue a scan of ``digest`` unless it was scanned by this indexer version (``force``: again anyway)."""
    queue_many([digest], force)


def queue_many(digests, force: bool = False, announce_scanned: bool = False) -> None:
    """Queue a scan of each of ``digests`` not scanned by this indexer version yet (``force``: each again
    anyway), in a few statements for the lot (under load, one batch of pushes at a time).
    ``announce_scanned``: for a manifest scanned already, announce what it has in the repositories holding it
    (it was just pushed to one more)."""
    wanted = list(dict.fromkeys(digests))
    if not wanted:
        return
    with database.atomic():
        known = {}
        for part in chunked(wanted, 200):
            known.update((s.digest, s) for s in ManifestScan.select(
                ManifestScan.id, ManifestScan.digest, ManifestScan.status, ManifestScan.indexer_version).where(
                ManifestScan.digest.in_(part)))
        new = [d for d in wanted if d not in known]
        again, jobs = [], list(new)
        for digest in wanted:
            scan = known.get(digest)
            if scan is None:
                continue
            if force or scan.indexer_version not in (None, INDEXER_VERSION):
                again.append(scan.id)
                jobs.append(digest)
            elif scan.status == QUEUED:
                jobs.append(digest)  # its job, should it be gone
            elif announce_scanned and scan.status == SCANNED:
                announce(ManifestScan.get_by_id(scan.id))
        for part in chunked(new, 100):
            ManifestScan.insert_many([{"digest": d, "status": QUEUED} for d in part]).on_conflict_ignore().execute()
        for part in chunked(again, 200):
            ManifestScan.update(status=QUEUED, reason=None, updated_at=now_ms()).where(
                ManifestScan.id.in_(part)).execute()
        for part in chunked(jobs, 100):
            ScanJob.insert_many([{"digest": d} for d in part]).on_conflict_ignore().execute()
        if force:  # a job waiting already (for a retry, say) is due now
            ScanJob.update(available_at=now_ms(), attempts=0).where(
                ScanJob.digest.in_(wanted) & ScanJob.lease_owner.is_null()).execute()


def pushed_since_cursor() -> bool:
    """Whether a ``manifest_pushed`` event waits to be queued (a plain read: what an idle poll costs)."""
    cursor = ScanCursor.get_or_none(ScanCursor.name == "manifest_pushed")
    return bool(events.since(cursor.last_id if cursor else 0, (events.MANIFEST_PUSHED,), limit=1))


def queue_pushed(batch: int = 500) -> int:
    """Queue a scan for each image manifest the registry stored since the last run (``manifest_pushed``);
    announce what an already scanned manifest has in a repository it was just pushed to."""
    cursor, _ = ScanCursor.get_or_create(name="manifest_pushed")
    rows = events.since(cursor.last_id, (events.MANIFEST_PUSHED,), limit=batch)
    if not rows:
        return 0
    settled_before = _settled_before()
    with database.atomic():  # one write transaction for the batch (pushes wait for SQLite's lock less)
        _queue_events(cursor, rows, settled_before)
    return len(rows)


def _queue_events(cursor: ScanCursor, rows: list, settled_before: int | None) -> None:
    digests = []
    for event in rows:
        data = json.loads(event.payload)
        if data.get("media_type") not in INDEX_TYPES:  # each platform manifest of an index is pushed on its own
            digests.append(data["digest"])
    queue_many(digests, announce_scanned=True)
    _advance(cursor, rows, settled_before)


def _settled_before() -> int | None:
    """Events written before this are all visible (PostgreSQL: SETTLE_MS ago); None: every event read is (SQLite
    has one writer at a time, so none with a lower id can appear later; as ``webhooks.dispatch.fan_out``)."""
    return now_ms() - SETTLE_MS if is_postgres() else None


def _advance(cursor: ScanCursor, rows: list, settled_before: int | None) -> None:
    """Move ``cursor`` past ``rows`` up to the first event not settled yet (read again next time), unless another
    process moved it meanwhile."""
    watermark = cursor.last_id
    for event in rows:
        if settled_before is not None and event.created_at >= settled_before:
            break
        watermark = event.id
    if watermark != cursor.last_id:
        ScanCursor.update(last_id=watermark).where(
            (ScanCursor.id == cursor.id) & (ScanCursor.last_id == cursor.last_id)).execute()


# -- pruning: what garbage collection (or a repository's deletion) removed -------------------------------

COLLECTED = (events.MANIFESTS_COLLECTED, events.BLOBS_COLLECTED)


def collected_since_cursor() -> bool:
    """Whether the registry removed manifests or blobs since the last prune (a plain read)."""
    cursor = ScanCursor.get_or_none(ScanCursor.name == "collected")
    return bool(events.since(cursor.last_id if cursor else 0, COLLECTED, limit=1))


def prune_collected(batch: int = 200) -> int:
    """Delete the scans of manifests no repository holds any more, the announcements of a manifest in a
    repository that no longer holds it, and the indexes of layers whose blob is gone; idempotent (each is
    checked again in the statement that deletes it: a digest pushed again meanwhile keeps its rows)."""
    cursor, _ = ScanCursor.get_or_create(name="collected")
    rows = events.since(cursor.last_id, COLLECTED, limit=batch)
    if not rows:
        return 0
    settled_before = _settled_before()
    manifests, blobs = set(), set()
    for event in rows:
        data = json.loads(event.payload)
        manifests.update((repository, digest) for repository, digest in data.get("manifests", []))
        blobs.update(data.get("digests", []))
    with database.atomic():
        prune(manifests, blobs)
        _advance(cursor, rows, settled_before)
    return len(rows)


def prune(manifests: set[tuple[int, str]], blobs: set[str]) -> None:
    for part in chunked(sorted({digest for _, digest in manifests}), 200):
        for model in (ManifestScan, ManifestKey, ScanJob):
            held = Manifest.select(Manifest.id).where(Manifest.digest == model.digest)
            model.delete().where(model.digest.in_(part) & ~fn.EXISTS(held)).execute()
    for repository, digest in sorted(manifests):
        held = Manifest.select(Manifest.id).where((Manifest.repository == repository) & (Manifest.digest == digest))
        Announced.delete().where((Announced.repository == repository) & (Announced.digest == digest)
                                 & ~fn.EXISTS(held)).execute()
    for part in chunked(sorted(blobs), 200):
        stored = Blob.select(Blob.id).where(Blob.digest == LayerIndexRow.layer_digest)
        LayerIndexRow.delete().where(LayerIndexRow.layer_digest.in_(part) & ~fn.EXISTS(stored)).execute()


def claim(holder: str, lease_seconds: int) -> ScanJob | None:
    """Take the oldest due scan for ``holder`` (free, or its lease lapsed), or None."""
    jobs = claim_many(holder, lease_seconds, 1)
    return jobs[0] if jobs else None


def claim_many(holder: str, lease_seconds: int, limit: int) -> list[ScanJob]:
    """Take up to ``limit`` due scans, oldest first, in one transaction (under load, one claim for several
    pushes' scans). A scan claimed ``MAX_ATTEMPTS`` times already is failed instead."""
    while True:
        now = database_now_ms()  # leases lapse by one clock, whichever node's runs ahead (slipway.leases)
        due = (ScanJob.available_at <= now) & (ScanJob.lease_owner.is_null() | (ScanJob.lease_expires < now))
        if not ScanJob.select(ScanJob.id).where(due).exists():  # idle: a plain read, no lock
            return []
        with database.atomic():
            query = ScanJob.select().where(due).order_by(ScanJob.id).limit(limit)
            if is_postgres():
                query = query.for_update("FOR UPDATE SKIP LOCKED")
            found = list(query)
            if not found:
                return []
            jobs = []
            for job in found:
                if job.attempts >= MAX_ATTEMPTS:
                    _set(job.digest, FAILED, f"the scan was interrupted {job.attempts} times (its process "
                                             "stopped or stalled while scanning)")
                    ScanJob.delete().where(ScanJob.id == job.id).execute()
                    continue
                if ScanJob.update(lease_owner=holder, lease_expires=now + lease_seconds * 1000,
                                  attempts=ScanJob.attempts + 1).where((ScanJob.id == job.id) & due).execute():
                    job.lease_owner, job.attempts = holder, job.attempts + 1
                    jobs.append(job)
        if jobs:
            return jobs


def renew(job: ScanJob, holder: str, lease_seconds: int) -> bool:
    return renew_many([job], holder, lease_seconds) == 1


def renew_many(jobs: list[ScanJob], holder: str, lease_seconds: int) -> int:
    return ScanJob.update(lease_expires=database_now_ms() + lease_seconds * 1000).where(
        ScanJob.id.in_([j.id for j in jobs]) & (ScanJob.lease_owner == holder)).execute()


def run_next(storage, limits: ScanLimits, holder: str | None = None, lease_seconds: int = 60,
             batch: int = 1) -> int:
    """Claim up to ``batch`` scans and run them one after the other; how many ran (0: nothing was due).
    The batch's manifests and stored layer indexes are read in one query each, and its results are written
    together (one SQLite write lock for several scans, which pushes wait for), but never held back for long:
    before a scan that has more than ``WRITE_BEFORE_BYTES`` of layers to read (it may take long, or take its
    process down: what is done is neither delayed by it nor lost with it), once results have waited
    ``WRITE_AFTER_SECONDS``, and at the end. The claims of those still waiting are renewed with the running
    one's."""
    holder = holder or leases.holder_id()
    jobs = claim_many(holder, lease_seconds, batch)
    if not jobs:
        return 0
    pending = list(jobs)
    with leases.renewing(lambda: not pending or renew_many(pending, holder, lease_seconds) > 0, lease_seconds / 3):
        try:
            stored: dict | None = _manifests([job.digest for job in jobs])
            known = _stored_layers(stored.values())
        except Exception:  # one that does not load: each is read on its own, in its own scan below
            log.exception("reading a batch of %d scans failed; reading each on its own", len(jobs))
            stored, known = None, {}
        results: list[tuple[ScanJob, Outcome]] = []
        read: dict[str, LayerIndex] = {}  # layers indexed by this batch, stored with the next results written
        since = time.monotonic()

        def write() -> None:
            _record_all(results, read, holder)
            for done_job, _ in results:
                pending.remove(done_job)
            results.clear()
            read.clear()
            nonlocal since
            since = time.monotonic()

        for job in jobs:
            try:
                manifest = stored.get(job.digest) if stored is not None else _manifests([job.digest]).get(job.digest)
                if results and (time.monotonic() - since >= WRITE_AFTER_SECONDS
                                or _unread_bytes(manifest, known) > WRITE_BEFORE_BYTES):
                    write()
                outcome = _examine(job.digest, manifest, storage, limits, known, read)
            except Exception as e:  # a bug: the rest of the registry goes on; the scan says so
                log.exception("scan of %s failed", job.digest)
                outcome = Outcome(job.digest, FAILED, f"internal error: {type(e).__name__}: {e}")
            results.append((job, outcome))
        write()
    return len(jobs)


def _record_all(results: list[tuple[ScanJob, Outcome]], read: dict[str, LayerIndex], holder: str) -> None:
    """Write scans' results and the layer indexes read, and remove their jobs, in one transaction; should that
    fail (a result the database refuses), the layers and each result on its own, and a result refused again is
    recorded as failed with the error."""
    try:
        record([outcome for _, outcome in results], [job.id for job, _ in results], holder, read)
        return
    except Exception:
        log.exception("recording %d scan results together failed; recording each on its own", len(results))
    try:
        record([], layers=read)
    except Exception:
        log.exception("storing the indexes of %d layers failed (they are read again by their next scan)", len(read))
    for job, outcome in results:
        try:
            record([outcome], [job.id], holder)
        except Exception as e:
            log.exception("recording the scan of %s failed", outcome.digest)
            record([Outcome(outcome.digest, FAILED, f"internal error: {type(e).__name__}: {e}")], [job.id], holder)


# -- indexing --------------------------------------------------------------------------------------------

class ScanLimits:
    def __init__(self, max_inflated_bytes_per_layer: int, max_inflated_bytes_per_scan: int,
                 max_file_bytes: int = 64 << 20):
        self.per_layer = max_inflated_bytes_per_layer
        self.per_scan = max_inflated_bytes_per_scan
        self.max_file_bytes = max_file_bytes

    @classmethod
    def from_config(cls, scanner_config) -> ScanLimits:
        return cls(scanner_config.max_inflated_mb_per_layer << 20, scanner_config.max_inflated_mb_per_scan << 20)


class _ChunkReader(io.RawIOBase):
    """A read-only binary stream over an iterator of byte chunks (a stored blob, read as it streams)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk).cast("B")  # a view: each byte copied once, into ``buffer``
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


@dataclass
class Outcome:
    """What a scan found, before it is written: its status, and what to store with it."""
    digest: str
    status: str
    reason: str | None = None
    image: ImageIndex | None = None
    findings: list = field(default_factory=list)
    children: list[str] = field(default_factory=list)  # an index's platform manifests, to queue


def _manifests(digests) -> dict[str, tuple[str, dict]]:
    """The stored manifests among ``digests``: media type and parsed document, by digest (one query)."""
    found: dict[str, tuple[str, dict]] = {}
    for part in chunked(sorted(set(digests)), 200):
        for row in Manifest.select(Manifest.digest, Manifest.media_type, Manifest.content).where(
                Manifest.digest.in_(part) & Manifest.deleted_at.is_null()):
            if row.digest not in found:
                found[row.digest] = (row.media_type, json.loads(bytes(row.content)))
    return found


def _layer_digests(document: dict) -> list[str]:
    layers = document.get("layers")
    return [layer["digest"] for layer in layers if isinstance(layer, dict) and isinstance(layer.get("digest"), str)
            ] if isinstance(layers, list) else []


def _unread_bytes(stored: tuple[str, dict] | None, known: dict[str, LayerIndex]) -> int:
    """How many (compressed) bytes of layers scanning this manifest (a value of ``_manifests``) reads, as its
    layer descriptors state them."""
    if stored is None or stored[0] in INDEX_TYPES or not isinstance(stored[1].get("layers"), list):
        return 0
    return sum(layer["size"] for layer in stored[1]["layers"] if isinstance(layer, dict)
               and isinstance(layer.get("size"), int) and layer.get("digest") not in known)


def _stored_layers(manifests) -> dict[str, LayerIndex]:
    """The stored indexes (this indexer version) of the layers of ``manifests`` (values of ``_manifests``); one
    that does not load is left out (read again from its blob)."""
    digests = sorted({digest for _, document in manifests for digest in _layer_digests(document)})
    found = {}
    for part in chunked(digests, 200):
        for row in LayerIndexRow.select(LayerIndexRow.layer_digest, LayerIndexRow.data).where(
                LayerIndexRow.layer_digest.in_(part) & (LayerIndexRow.indexer_version == INDEXER_VERSION)):
            try:
                found[row.layer_digest] = LayerIndex.from_json(row.data)
            except (ValueError, TypeError, KeyError):
                log.warning("the stored index of layer %s does not load; it is read again", row.layer_digest)
    return found


def _read_layer(digest: str, media_type: str, storage, limits: Limits) -> LayerIndex:
    """Index a layer from its blob, streamed. Small buffers: a layer that is not a tar fails after its first
    block, and the buffers are reused rather than allocated (1 MiB buffers, freshly mapped by the allocator for
    each scan, made a failing scan 4 ms instead of 0.1)."""
    stream = io.BufferedReader(_ChunkReader(storage.read_blob(digest)), READ_BUFFER)
    try:
        return index_layer(stream, media_type, limits)
    except FileNotFoundError:
        raise LayerUnreadable("the layer's blob is missing from storage") from None


def _examine(digest: str, stored: tuple[str, dict] | None, storage, limits: ScanLimits,
             known: dict[str, LayerIndex], read: dict[str, LayerIndex]) -> Outcome:
    """Index and match the manifest ``digest`` (``stored``: its media type and document, None if no repository
    holds it); reads its layers not in ``known`` (they go into ``known`` and ``read``, whatever the scan's end)
    and the advisories, writes nothing."""
    if stored is None:
        return Outcome(digest, FAILED, "the manifest is no longer stored in any repository")
    media_type, document = stored
    if media_type in INDEX_TYPES:
        return Outcome(digest, UNSUPPORTED, "an index: each of its platform manifests is scanned on its own",
                        children=[child["digest"] for child in document.get("manifests", [])])
    config_type = (document.get("config") or {}).get("mediaType")
    if media_type not in IMAGE_TYPES or config_type not in IMAGE_CONFIGS:
        return Outcome(digest, UNSUPPORTED, f"not a container image (config media type {config_type})")
    layers = [d for d in document.get("layers", []) if d.get("mediaType") not in FOREIGN_LAYERS]
    unknown = [d.get("mediaType") for d in layers if d.get("mediaType") not in LAYER_TYPES]
    if unknown:
        return Outcome(digest, UNSUPPORTED, f"not a container image (layer media type {unknown[0]})")
    budget = limits.per_scan
    indexed = []
    for number, layer in enumerate(layers, 1):
        found = known.get(layer["digest"])
        if found is None:
            layer_limits = Limits(max_inflated_bytes_per_layer=max(0, min(limits.per_layer, budget)),
                                  max_file_bytes=limits.max_file_bytes)
            try:
                found = _read_layer(layer["digest"], layer["mediaType"], storage, layer_limits)
            except LayerUnreadable as e:
                reason = f"layer {number} ({layer['digest']}): {e}"
                if budget < limits.per_layer:
                    reason += f" (the scan's inflated bytes are capped at {limits.per_scan >> 20} MB)"
                return Outcome(digest, FAILED, reason)
            known[layer["digest"]] = read[layer["digest"]] = found
        indexed.append((layer["digest"], found))
        budget -= int(layer.get("size") or 0)  # the compressed size: a lower bound of what it inflated to
    image = combine(indexed)
    if not image.supported:
        return Outcome(digest, UNSUPPORTED, "no package database found (an image FROM scratch, or not an OS image)")
    return Outcome(digest, SCANNED, image=image, findings=match(image, advisories.lookup_for(image)))


def record(outcomes: list[Outcome], job_ids: list[int] = (), holder: str | None = None,
           layers: dict[str, LayerIndex] | None = None) -> None:
    """Store scans' results, the indexes of the ``layers`` they read, their announcements and the removal of
    their jobs (``job_ids``, still held by ``holder``), in one transaction."""
    layers = layers or {}
    with database.atomic():
        for part in chunked(list(job_ids), 200):
            ScanJob.delete().where(ScanJob.id.in_(part) & (ScanJob.lease_owner == holder)).execute()
        for part in chunked(sorted(layers), 50):
            LayerIndexRow.insert_many([{"layer_digest": d, "indexer_version": INDEXER_VERSION,
                                        "data": layers[d].to_json()} for d in part]).on_conflict_ignore().execute()
        ended = [o for o in outcomes if o.status != SCANNED]
        for part in chunked(sorted({o.digest for o in ended}), 200):
            ManifestKey.delete().where(ManifestKey.digest.in_(part)).execute()
        for o in ended:
            updated = ManifestScan.update(status=o.status, reason=o.reason, image=None, findings=None, summary=None,
                                          indexer_version=INDEXER_VERSION, updated_at=now_ms()).where(
                ManifestScan.digest == o.digest).execute()
            if not updated:
                ManifestScan.insert(digest=o.digest, status=o.status, reason=o.reason,
                                    indexer_version=INDEXER_VERSION).on_conflict_ignore().execute()
        for o in outcomes:
            if o.status == SCANNED:
                store(o.digest, o.image, o.findings)
                scan = ManifestScan.get_or_none(ManifestScan.digest == o.digest)
                if scan is not None:  # None: its manifest was collected (its scan pruned) while it was scanned
                    announce(scan)
        # An index's platform manifests last, once every status of this batch is written (a platform manifest
        # scanned in it is not queued again).
        queue_many([child for o in outcomes for child in o.children])


def _set(digest: str, status: str, reason: str | None) -> None:
    """Record a scan's end without findings."""
    record([Outcome(digest, status, reason)])


def scan_manifest(digest: str, storage, limits: ScanLimits) -> str:
    """Index and match the image manifest ``digest`` now; stores and returns its status."""
    stored = _manifests([digest])
    read: dict[str, LayerIndex] = {}
    outcome = _examine(digest, stored.get(digest), storage, limits, _stored_layers(stored.values()), read)
    record([outcome], layers=read)
    return outcome.status


# -- results ---------------------------------------------------------------------------------------------

def image_json(image: ImageIndex) -> str:
    return json.dumps({"distribution": asdict(image.distribution) if image.distribution else None,
                       "packages": [asdict(p) for p in image.packages]}, separators=(",", ":"))


def image_from_json(text: str) -> ImageIndex:
    data = json.loads(text)
    distribution = Distribution(**data["distribution"]) if data["distribution"] else None
    return ImageIndex(distribution, [Package(**p) for p in data["packages"]])


def findings_json(image: ImageIndex, findings) -> str:
    position = {p: i for i, p in enumerate(image.packages)}
    return json.dumps([{"package": position[f.package], "id": f.advisory.id, "ecosystem": f.advisory.ecosystem,
                        "severity": f.advisory.severity, "fixed_by": f.fixed_by, "link": f.advisory.link,
                        "description": f.advisory.description} for f in findings if f.package in position],
                      separators=(",", ":"))


def summary_json(findings: str) -> str:
    """Counts per severity and how many have a fix: what the tag list shows, computed once per match."""
    counts: dict = {}
    fixable = 0
    for f in json.loads(findings):
        counts[f["severity"]] = counts.get(f["severity"], 0) + 1
        fixable += bool(f["fixed_by"])
    return json.dumps({**counts, "fixable": fixable}, sort_keys=True)


def store(digest: str, image: ImageIndex, findings) -> None:
    keys = {key for p in image.packages for key in ecosystem_keys(p, image.distribution)}
    found = findings_json(image, findings)
    with database.atomic():
        ManifestScan.update(status=SCANNED, reason=None, indexer_version=INDEXER_VERSION, image=image_json(image),
                            findings=found, summary=summary_json(found), updated_at=now_ms()).where(
            ManifestScan.digest == digest).execute()
        ManifestKey.delete().where(ManifestKey.digest == digest).execute()
        for rows in chunked([{"digest": digest, "ecosystem": e, "package": n} for e, n in sorted(keys)], 100):
            ManifestKey.insert_many(rows).on_conflict_ignore().execute()


def rematch(keys: set[tuple[str, str]]) -> tuple[int, int]:
    """Match again, from their stored indexes, the scanned manifests holding a package of ``keys``
    (ecosystem, package); announce what is new. Returns (manifests matched, vulnerabilities announced)."""
    digests = set()
    by_ecosystem: dict[str, list[str]] = {}
    for ecosystem, name in keys:
        by_ecosystem.setdefault(ecosystem, []).append(name)
    for ecosystem, names in by_ecosystem.items():
        for part in chunked(sorted(set(names)), 500):
            digests.update(k.digest for k in ManifestKey.select(ManifestKey.digest).where(
                (ManifestKey.ecosystem == ecosystem) & ManifestKey.package.in_(part)))
    announced = 0
    for digest in sorted(digests):
        scan = ManifestScan.get_or_none((ManifestScan.digest == digest) & (ManifestScan.status == SCANNED))
        if scan is None or not scan.image:
            continue
        image = image_from_json(scan.image)
        found = findings_json(image, match(image, advisories.lookup_for(image)))
        with database.atomic():
            if found != scan.findings:
                ManifestScan.update(findings=found, summary=summary_json(found), updated_at=now_ms()).where(
                    ManifestScan.id == scan.id).execute()
                scan.findings = found
            announced += announce(scan)
    return len(digests), announced


def announce(scan: ManifestScan) -> int:
    """Write a ``vulnerability_found`` event, once per repository holding the manifest, for each of its
    vulnerabilities not announced there yet, or announced with another severity (the feed changed it: announced
    again with the new one, which the notification's level filter sees). Returns how many events were written."""
    findings = json.loads(scan.findings or "[]")
    if not findings:
        return 0
    image = json.loads(scan.image)
    packages = image["packages"]
    written = 0
    with database.atomic():
        holders = list(Manifest.select(Manifest.id, Manifest.repository).where(
            (Manifest.digest == scan.digest) & Manifest.deleted_at.is_null()))
        for holder in holders:
            repo = Repository.get_by_id(holder.repository_id)
            announced = {(a.advisory_id, a.package): (a.id, a.severity) for a in Announced.select(
                Announced.id, Announced.advisory_id, Announced.package, Announced.severity).where(
                (Announced.repository == repo.id) & (Announced.digest == scan.digest))}
            tags = None
            for f in findings:
                package = packages[f["package"]]["name"]
                before = announced.get((f["id"], package))
                if before is None:
                    if not Announced.insert(repository=repo.id, digest=scan.digest, advisory_id=f["id"],
                                            package=package, severity=f["severity"]
                                            ).on_conflict_ignore().as_rowcount().execute():
                        continue  # announced meanwhile by another process
                elif before[1] == f["severity"]:
                    continue
                elif before[1] is None:  # announced before severities were kept: not again for that
                    Announced.update(severity=f["severity"]).where(Announced.id == before[0]).execute()
                    continue
                elif not Announced.update(severity=f["severity"]).where(
                        (Announced.id == before[0]) & (Announced.severity == before[1])).execute():
                    continue
                if tags is None:
                    parents = ManifestChild.select(ManifestChild.manifest).where(ManifestChild.child == holder.id)
                    tags = sorted({t.name for t in Tag.select(Tag.name).where(
                        (Tag.repository == repo.id) & alive()
                        & (Tag.manifest.in_(parents) | (Tag.manifest == holder.id)))})
                events.emit(VULNERABILITY_FOUND, repo, {
                    "tags": tags, "manifest_digest": scan.digest, "image": f"{repo.full_name}@{scan.digest}",
                    "vulnerability": {"id": f["id"], "description": f["description"], "link": f["link"],
                                      "priority": f["severity"], "has_fix": bool(f["fixed_by"]),
                                      "package": package}})
                written += 1
    return written


def queue_length() -> int:
    """Scans waiting or running (the superuser's status page)."""
    return ScanJob.select().count()
