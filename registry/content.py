"""Manifests and tags: reading by reference, writing with validation, deleting, listing, referrers."""
from __future__ import annotations

import json
from dataclasses import dataclass

from peewee import IntegrityError

from accounts import audit
from accounts.identity import Identity
from slipway import events
from slipway.db import database, now_ms

from . import labels, queries
from .digests import is_digest
from .errors import InUse, ManifestBlobUnknown, ManifestInvalid, manifest_unknown, name_unknown
from .manifests import ParsedManifest, descriptor_for_referrers
from .models import Blob, Manifest, ManifestBlob, ManifestChild, Repository, RepositoryBlob, Tag, alive
from .names import check_tag, split_name
from .storage import Storage


@dataclass
class StoredManifest:
    digest: str
    media_type: str
    content: bytes
    repository_id: int
    namespace_id: int


def lookup_manifest(full_name: str, reference: str) -> StoredManifest:
    """The manifest a tag or digest names in a repository; MANIFEST_UNKNOWN / NAME_UNKNOWN if none."""
    namespace, name = split_name(full_name)
    if is_digest(reference):
        row = queries.one("manifest_by_digest", namespace, name, reference)
    else:
        row = queries.one("manifest_by_tag", namespace, name, reference, now_ms())
    if row is None:
        if queries.one("repository_id", namespace, name) is None:
            raise name_unknown(full_name)
        raise manifest_unknown(reference)
    return StoredManifest(row[0], row[1], bytes(row[2]), row[3], row[4])


def blob_size(full_name: str, digest: str) -> int | None:
    namespace, name = split_name(full_name)
    row = queries.one("blob_size", namespace, name, digest)
    return row[0] if row else None


def list_tags(full_name: str, n: int | None, last: str) -> list[str]:
    namespace, name = split_name(full_name)
    if queries.one("repository_id", namespace, name) is None:
        raise name_unknown(full_name)
    limit = n if n is not None else 2 ** 62
    return [row[0] for row in queries.run("tags_page", namespace, name, now_ms(), last or "", limit)]


def alive_tag(repo: Repository, name: str) -> Tag | None:
    return (Tag.select().where((Tag.repository == repo) & (Tag.name == name) & alive())
            .order_by(Tag.lifetime_start.desc()).first())


def set_tag(repo: Repository, name: str, manifest: Manifest, now: int | None = None) -> tuple[Tag, bool]:
    """Point tag ``name`` at ``manifest``; returns the alive row and whether anything changed."""
    check_tag(name)
    now = now_ms() if now is None else now
    for attempt in range(3):
        try:
            with database.atomic():
                current = alive_tag(repo, name)
                if current is not None and current.manifest_id == manifest.id:
                    return current, False
                if current is not None:
                    Tag.update(lifetime_end=now).where(Tag.id == current.id).execute()
                return Tag.create(repository=repo, name=name, manifest=manifest, lifetime_start=now), True
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@dataclass
class PushResult:
    manifest: Manifest
    invalid_expiry: str | None = None  # a quay.expires-after value that is not Quay's format


def point_tag(repo: Repository, name: str, manifest: Manifest) -> tuple[Tag, bool, str | None]:
    """Point a tag at a manifest and apply its ``quay.expires-after``: (tag, changed, invalid label value)."""
    with database.atomic():
        # Touching the manifest locks it against garbage collection until the tag exists.
        Manifest.update(created_at=now_ms()).where(Manifest.id == manifest.id).execute()
        tag, changed = set_tag(repo, name, manifest)
        invalid = None
        if changed:
            seconds, invalid = labels.expires_after(manifest)
            if seconds:
                end = tag.lifetime_start + seconds * 1000
                Tag.update(lifetime_end=end).where(Tag.id == tag.id).execute()
                tag.lifetime_end = end
            events.emit(events.REPO_PUSH, repo, {"updated_tags": [name]})
    return tag, changed, invalid


def put_manifest(repo: Repository, parsed: ParsedManifest, tag: str | None, storage: Storage) -> PushResult:
    """Store a validated manifest (and tag); every blob and child it names must be in the repository."""
    blob_ids = {}
    if parsed.blobs:
        wanted = set(parsed.blobs)
        rows = (Blob.select(Blob.id, Blob.digest, Blob.size)
                .join(RepositoryBlob, on=(RepositoryBlob.blob == Blob.id))
                .where((RepositoryBlob.repository == repo) & (Blob.digest.in_(list(wanted)))))
        blob_ids, stored = {}, {}
        for b in rows:
            blob_ids[b.digest], stored[b.digest] = b.id, b.size
        for digest in parsed.blobs:
            if digest not in blob_ids:
                raise ManifestBlobUnknown(f"manifest references blob {digest}, which is not in repository "
                                          f"{repo.full_name}: push the blob first", detail={"digest": digest})
            _check_size(parsed, digest, stored[digest], "blob")
    child_ids = {}
    if parsed.children:
        rows = Manifest.select(Manifest.id, Manifest.digest, Manifest.size).where(
            (Manifest.repository == repo) & Manifest.digest.in_(list(set(parsed.children)))
            & Manifest.deleted_at.is_null())
        child_ids, stored = {}, {}
        for m in rows:
            child_ids[m.digest], stored[m.digest] = m.id, m.size
        for digest in parsed.children:
            if digest not in child_ids:
                raise ManifestBlobUnknown(f"index references manifest {digest}, which is not in repository "
                                          f"{repo.full_name}: push it first", detail={"digest": digest})
            _check_size(parsed, digest, stored[digest], "manifest")
    if tag is not None:
        check_tag(tag)
    found_labels = labels.extract(parsed, storage) if parsed.blobs or parsed.annotations else {}

    now = now_ms()
    with database.atomic():
        # Garbage collection spares what is younger than its grace period: refreshing the links and
        # manifests this one uses (and locking those rows) keeps them, and re-checks they still exist.
        if blob_ids:
            ids = set(blob_ids.values())
            kept = RepositoryBlob.update(created_at=now).where(
                (RepositoryBlob.repository == repo) & RepositoryBlob.blob.in_(list(ids))).execute()
            if kept != len(ids):
                raise ManifestBlobUnknown("a blob of this manifest was just removed from "
                                          f"repository {repo.full_name}: push it again")
        if child_ids:
            ids = set(child_ids.values())
            kept = Manifest.update(created_at=now).where(Manifest.id.in_(list(ids))
                                                         & Manifest.deleted_at.is_null()).execute()
            if kept != len(ids):
                raise ManifestBlobUnknown("a manifest this index names was just removed from "
                                          f"repository {repo.full_name}: push it again")
        Manifest.update(created_at=now).where((Manifest.repository == repo)
                                              & (Manifest.digest == parsed.digest)).execute()
        manifest = Manifest.get_or_none((Manifest.repository == repo) & (Manifest.digest == parsed.digest))
        if manifest is None:
            manifest = Manifest.create(
                repository=repo, digest=parsed.digest, media_type=parsed.media_type,
                artifact_type=parsed.artifact_type, subject_digest=parsed.subject,
                annotations=json.dumps(parsed.annotations) if parsed.annotations else None,
                content=parsed.raw, size=len(parsed.raw))
            if blob_ids:
                ManifestBlob.insert_many(
                    [{"manifest": manifest.id, "blob": blob_id} for blob_id in set(blob_ids.values())]).execute()
            if child_ids:
                ManifestChild.insert_many(
                    [{"manifest": manifest.id, "child": cid} for cid in set(child_ids.values())]).execute()
            if found_labels:
                labels.store(manifest, found_labels)
            events.emit(events.MANIFEST_PUSHED, repo, {"digest": parsed.digest, "media_type": parsed.media_type})
        elif manifest.deleted_at is not None:
            Manifest.update(deleted_at=None).where(Manifest.id == manifest.id).execute()
            manifest.deleted_at = None
            events.emit(events.MANIFEST_PUSHED, repo, {"digest": parsed.digest, "media_type": parsed.media_type})
        result = PushResult(manifest)
        if tag is not None:
            _, _, result.invalid_expiry = point_tag(repo, tag, manifest)
    return result


def _check_size(parsed: ParsedManifest, digest: str, size: int, what: str) -> None:
    stated = parsed.sizes.get(digest)
    if stated is not None and stated != size:
        raise ManifestInvalid(f"manifest invalid: the descriptor of {what} {digest} gives size "
                              f"{stated}, the stored {what} has {size} bytes",
                              detail={"digest": digest, "size": stated, "stored_size": size})


def held_by_tag(repo: Repository, manifest_ids: set) -> tuple[str, str] | None:
    """(tag, manifest digest) of an alive tag that keeps one of ``manifest_ids`` in use: a tag on
    one of them, or on an index that references one of them (at any depth); None if nothing does."""
    now = now_ms()
    seen, frontier = set(), set(manifest_ids)
    while frontier:
        tag = (Tag.select(Tag.name, Manifest.digest).join(Manifest)
               .where((Tag.repository == repo) & Tag.manifest.in_(list(frontier)) & alive(now)).first())
        if tag is not None:
            return tag.name, tag.manifest.digest
        seen |= frontier
        parents = (ManifestChild.select(ManifestChild.manifest)
                   .join(Manifest, on=(ManifestChild.manifest == Manifest.id))
                   .where(ManifestChild.child.in_(list(frontier)) & Manifest.deleted_at.is_null()))
        frontier = {p.manifest_id for p in parents} - seen
    return None


def in_use(what: str, digest: str, holder: tuple[str, str]) -> InUse:
    """The refusal to delete what an alive tag still needs; it says which tag holds it."""
    tag, manifest = holder
    return InUse(f"{what} {digest} is in use: tag '{tag}' ({manifest}) references it; "
                 "delete or move that tag first", detail={"digest": digest, "tag": tag})


def delete_reference(repo: Repository, reference: str, performer: Identity, ip: str | None = None) -> list[str]:
    """DELETE .../manifests/<reference>: a tag ends; a digest ends its tags and hides the manifest.

    Returns the names of the tags that ended; the audit entry is written with the change.
    Rows stay for the time machine until GC.
    """
    now = now_ms()
    with database.atomic():
        if is_digest(reference):
            manifest = Manifest.get_or_none((Manifest.repository == repo) & (Manifest.digest == reference)
                                            & Manifest.deleted_at.is_null())
            if manifest is None:
                raise manifest_unknown(reference)
            parents = {c.manifest_id for c in ManifestChild.select(ManifestChild.manifest)
                       .join(Manifest, on=(ManifestChild.manifest == Manifest.id))
                       .where((ManifestChild.child == manifest.id) & Manifest.deleted_at.is_null())}
            holder = held_by_tag(repo, parents) if parents else None
            if holder is not None:  # its own tags end with it; an index's would dangle
                raise in_use("manifest", reference, holder)
            tags = list(Tag.select().where((Tag.manifest == manifest) & alive(now)))
            Manifest.update(deleted_at=now).where(Manifest.id == manifest.id).execute()
        else:
            tags = [t for t in [alive_tag(repo, reference)] if t is not None]
            if not tags:
                raise manifest_unknown(reference)
        if tags:
            Tag.update(lifetime_end=now).where(Tag.id.in_([t.id for t in tags])).execute()
        ended = [t.name for t in tags]
        if is_digest(reference):
            audit.record("delete_manifest", performer, repo.namespace, repo, ip,
                         {"manifest_digest": reference, "tags": ended})
        else:
            audit.record("delete_tag", performer, repo.namespace, repo, ip, {"tag": reference})
    return ended


def referrers(repo: Repository, subject: str, artifact_type: str | None) -> list[dict]:
    query = Manifest.select(Manifest.media_type, Manifest.digest, Manifest.size, Manifest.artifact_type,
                            Manifest.annotations).where(
        (Manifest.repository == repo) & (Manifest.subject_digest == subject) & Manifest.deleted_at.is_null())
    if artifact_type:
        query = query.where(Manifest.artifact_type == artifact_type)
    return [descriptor_for_referrers(m.media_type, m.digest, m.size, m.artifact_type, m.annotations)
            for m in query.order_by(Manifest.created_at, Manifest.id)]
