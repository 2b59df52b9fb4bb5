"""Internal events: durable rows written with the change that caused them, consumed later by jobs.

``emit`` is called inside the transaction of the change (a push, a build phase),
so an event exists exactly when its cause does. Consumers (notifications, tag
expiry, scans) read events in id order and remember how far they got, so
nothing on the push or build path waits for them.
"""
from __future__ import annotations

import json

from peewee import CharField, IntegerField, TextField

from .db import BaseModel, TimestampField, now_ms

REPO_PUSH = "repo_push"
# A manifest stored in a repository (new, or pushed again after a delete), with its digest and media type;
# read by the scanner to queue a scan. Internal: no notification subscribes to it.
MANIFEST_PUSHED = "manifest_pushed"
# What garbage collection deleted, written in the transaction that deletes it; read by the scanner to prune
# what it keeps by those digests. Internal. ``manifests_collected``: {"manifests": [[repository id, digest],
# ...]} (candidates of one batch: a reader checks which are really gone); ``blobs_collected``: {"digests": [...]}.
MANIFESTS_COLLECTED = "manifests_collected"
BLOBS_COLLECTED = "blobs_collected"
BUILD_QUEUED, BUILD_START, BUILD_SUCCESS, BUILD_FAILURE, BUILD_CANCELLED = (
    "build_queued", "build_start", "build_success", "build_failure", "build_cancelled")


class Event(BaseModel):
    kind = CharField(max_length=64, index=True)
    repository_id = IntegerField(null=True, index=True)
    namespace = CharField(max_length=255, null=True)
    repository = CharField(max_length=255, null=True)
    payload = TextField()
    created_at = TimestampField(default=now_ms)


def emit(kind: str, repository, payload: dict) -> Event:
    """Record an event about ``repository`` (a registry Repository, or None)."""
    return Event.create(
        kind=kind,
        repository_id=repository.id if repository is not None else None,
        namespace=repository.namespace.name if repository is not None else None,
        repository=repository.full_name if repository is not None else None,
        payload=json.dumps(payload, sort_keys=True),
    )


def since(after_id: int, kinds: tuple | None = None, limit: int = 500) -> list[Event]:
    query = Event.select().where(Event.id > after_id)
    if kinds:
        query = query.where(Event.kind.in_(list(kinds)))
    return list(query.order_by(Event.id).limit(limit))
