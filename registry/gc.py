"""Garbage collection: tags past the time machine window, then unreferenced manifests, blob links, blobs and bytes.

Safe beside pushes: everything younger than ``gc.grace_seconds`` is kept (blobs
uploaded for a manifest not pushed yet, manifests pushed by digest a moment ago),
and a blob's row and bytes are deleted in one transaction holding the row, the
same lock a push takes to link it, so a blob is never freed under a push that
just found it. Work is done in small batches, so pulls (readers) never wait and
pushes wait at most one batch.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from peewee import JOIN, fn

from accounts.models import Account
from slipway import events
from slipway.db import database, now_ms

from .blobs import locked_blob
from .models import Blob, Manifest, ManifestBlob, ManifestChild, Repository, RepositoryBlob, Tag
from .storage import Storage

log = logging.getLogger("slipway.registry.gc")


@dataclass
class Freed:
    tags: int = 0
    manifests: int = 0
    links: int = 0
    blobs: int = 0
    bytes: int = 0
    digests: list = field(default_factory=list)

    def __str__(self) -> str:
        return (f"removed {self.tags} tag(s) past their time machine window, {self.manifests} manifest(s), "
                f"{self.links} blob link(s), {self.blobs} blob(s); freed {self.bytes} bytes")


def collect(storage: Storage, grace_seconds: int, batch: int = 500, repository_id: int | None = None) -> Freed:
    freed = Freed()
    now = now_ms()
    grace_cutoff = now - grace_seconds * 1000
    _expired_tags(freed, now, batch, repository_id)
    _manifests(freed, grace_cutoff, batch, repository_id)
    _links(freed, grace_cutoff, batch, repository_id)
    _blobs(freed, storage, grace_cutoff, batch)
    if freed.tags or freed.manifests or freed.blobs:
        log.info("garbage collection: %s", freed)
    return freed


def _expired_tags(freed: Freed, now: int, batch: int, repository_id: int | None) -> None:
    """Tag rows that ended longer ago than their namespace's window (or ended for good)."""
    window_ms = Account.time_machine_s * 1000
    while True:
        query = (Tag.select(Tag.id).join(Repository).join(Account, on=(Repository.namespace == Account.id))
                 .where(Tag.lifetime_end.is_null(False) & (Tag.lifetime_end <= now)
                        & (Tag.final | (Tag.lifetime_end < now - window_ms))))
        if repository_id is not None:
            query = query.where(Tag.repository == repository_id)
        ids = [t.id for t in query.limit(batch)]
        if not ids:
            return
        with database.atomic():
            freed.tags += Tag.delete().where(Tag.id.in_(ids)).execute()


def _manifests(freed: Freed, cutoff: int, batch: int, repository_id: int | None) -> None:
    """Manifests nothing keeps: no tag row (alive or restorable), no parent index, no subject still here.

    Repeated until nothing changes: deleting an index frees its children.
    """
    while True:
        tagged = Tag.select(Tag.manifest)
        parent = ManifestChild.select(ManifestChild.child)
        subject = Manifest.alias()
        has_subject = (subject.select(subject.id)
                       .where((subject.repository == Manifest.repository)
                              & (subject.digest == Manifest.subject_digest)))
        unkept = (Manifest.id.not_in(tagged) & Manifest.id.not_in(parent) & (Manifest.created_at < cutoff)
                  & (Manifest.subject_digest.is_null() | ~fn.EXISTS(has_subject)))
        query = Manifest.select(Manifest.id, Manifest.repository, Manifest.digest).where(unkept)
        if repository_id is not None:
            query = query.where(Manifest.repository == repository_id)
        found = list(query.limit(batch))
        if not found:
            return
        with database.atomic():  # the condition again: a push may have used one meanwhile
            deleted = Manifest.delete().where(Manifest.id.in_([m.id for m in found]) & unkept).execute()
            freed.manifests += deleted
            if deleted:  # for what other packages keep by digest (the scanner's results)
                events.emit(events.MANIFESTS_COLLECTED, None,
                            {"manifests": [[m.repository_id, m.digest] for m in found]})


def _links(freed: Freed, cutoff: int, batch: int, repository_id: int | None) -> None:
    """Blob links no manifest of their repository uses, older than the grace period."""
    used = (ManifestBlob.select(ManifestBlob.blob).join(Manifest)
            .where(Manifest.repository == RepositoryBlob.repository))
    unused = (RepositoryBlob.created_at < cutoff) & RepositoryBlob.blob.not_in(used)
    while True:
        query = RepositoryBlob.select(RepositoryBlob.id).where(unused)
        if repository_id is not None:
            query = query.where(RepositoryBlob.repository == repository_id)
        ids = [r.id for r in query.limit(batch)]
        if not ids:
            return
        with database.atomic():  # the condition again: a manifest push may have refreshed one meanwhile
            freed.links += RepositoryBlob.delete().where(RepositoryBlob.id.in_(ids) & unused).execute()


def _blobs(freed: Freed, storage: Storage, cutoff: int, batch: int) -> None:
    """Blobs with no link and no manifest: row and bytes go together, each under the blob's lock."""
    seen: set = set()
    while True:
        candidates = list(Blob.select(Blob.id, Blob.digest)
                          .join(RepositoryBlob, JOIN.LEFT_OUTER, on=(RepositoryBlob.blob == Blob.id))
                          .where(RepositoryBlob.id.is_null() & (Blob.created_at < cutoff)
                                 & Blob.id.not_in(ManifestBlob.select(ManifestBlob.blob))
                                 & Blob.id.not_in(list(seen) or [0]))
                          .limit(batch))
        if not candidates:
            return
        for candidate in candidates:
            seen.add(candidate.id)
            with database.atomic():
                blob = locked_blob(candidate.digest)
                if blob is None or RepositoryBlob.select().where(RepositoryBlob.blob == blob.id).exists() \
                        or ManifestBlob.select().where(ManifestBlob.blob == blob.id).exists():
                    continue  # linked again meanwhile: a push found it
                size = storage.blob_size(blob.digest) or 0
                blob.delete_instance()
                events.emit(events.BLOBS_COLLECTED, None, {"digests": [blob.digest]})
                storage.delete_blob(blob.digest)
            freed.blobs += 1
            freed.bytes += size
            freed.digests.append(blob.digest)


def remove_orphans(storage: Storage, grace_seconds: int) -> tuple[list[str], int]:
    """Delete stored blobs no ``blob`` row knows about (a crash between storing and recording them), once
    older than ``grace_seconds`` (a push stores the bytes a moment before it records them). Returns the
    digests removed and their bytes."""
    removed, size = [], 0
    for digest in orphaned_files(storage):
        mtime = storage.blob_mtime(digest)
        if mtime is None or time.time() - mtime < grace_seconds:
            continue
        if Blob.select().where(Blob.digest == digest).exists():
            continue  # recorded meanwhile
        size += storage.blob_size(digest) or 0
        storage.delete_blob(digest)
        removed.append(digest)
    if removed:
        log.info("removed %d orphaned blob(s), %d bytes", len(removed), size)
    return removed, size


def orphaned_files(storage: Storage) -> list[str]:
    """Stored blobs with no row (left by a crash between the rename and the commit); for `slipway admin gc`."""
    known = {b.digest for b in Blob.select(Blob.digest)}
    return [digest for digest in storage.list_blobs() if digest not in known]
