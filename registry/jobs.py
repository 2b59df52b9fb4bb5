"""Scheduled registry work: discarding uploads that were abandoned (client gone, crash mid-push)."""
from __future__ import annotations

import logging
import uuid

from slipway import clock
from slipway.db import now_ms

from .models import Upload
from .storage import Storage

log = logging.getLogger("slipway.registry.jobs")


def cleanup_stale_uploads(storage: Storage, max_age_seconds: float) -> int:
    """Delete upload sessions and staged bytes untouched for ``max_age_seconds``; returns how many."""
    cutoff_ms = now_ms() - int(max_age_seconds * 1000)
    removed = 0
    for upload in Upload.select().where(Upload.updated_at < cutoff_ms):
        storage.upload_delete(upload.uuid)
        upload.delete_instance()
        removed += 1
    known = {u.uuid for u in Upload.select(Upload.uuid)}
    cutoff = clock.now() - max_age_seconds
    for upload_id, mtime in list(storage.list_uploads()):
        # Staged bytes with no session row: a monolithic push cut short by a crash. Only registry
        # upload ids (UUIDs) count: other packages keep their own files here (builder's file drops).
        if upload_id not in known and mtime < cutoff and _is_uuid(upload_id):
            storage.upload_delete(upload_id)
            removed += 1
    if removed:
        log.info("discarded %d abandoned upload(s)", removed)
    return removed


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
        return True
    except ValueError:
        return False


GC_JOB = "registry.gc"  # the lease every GC runs under, scheduled or by hand (``slipway admin gc``)


def run_gc(storage: Storage, config) -> None:
    from .gc import collect

    collect(storage, config.gc.grace_seconds, config.gc.batch)


def register(background) -> None:
    config = background.services.config
    background.every(3600, cleanup_stale_uploads, "registry.cleanup_stale_uploads",
                     background.services.storage, config.registry.stale_upload_hours * 3600)
    background.every(config.gc.interval_seconds, run_gc, GC_JOB, background.services.storage, config)
