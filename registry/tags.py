"""Tags through the API, with history: list, retarget, expire at a time, delete, restore (time machine).

Each change is one use case: it takes the acting identity and the client address and
writes the change and its audit entry in one transaction (the repo_push event of a
retarget is written by ``content.point_tag`` inside it too).
"""
from __future__ import annotations

import json

from accounts import audit
from accounts.audit import quay_date
from accounts.identity import Identity
from accounts.models import DEFAULT_TIME_MACHINE
from slipway.db import database, now_ms
from slipway.errors import Invalid, NotFound

from . import labels
from .content import alive_tag, point_tag, set_tag
from .manifests import INDEX_TYPES
from .models import Blob, Manifest, ManifestBlob, Repository, Tag, alive


def view(tag: Tag, sizes: dict) -> dict:
    manifest = tag.manifest
    result = {"name": tag.name, "reference": manifest.digest, "manifest_digest": manifest.digest,
              "is_manifest_list": manifest.media_type in INDEX_TYPES, "size": sizes.get(manifest.id),
              "last_modified": quay_date(tag.lifetime_start), "start_ts": tag.lifetime_start // 1000}
    if tag.lifetime_end is not None:
        result["end_ts"] = tag.lifetime_end // 1000
        if tag.lifetime_end > now_ms():
            result["expiration"] = quay_date(tag.lifetime_end)
    return result


def _sizes(manifest_ids: list) -> dict:
    sizes: dict = {}
    if manifest_ids:
        rows = (ManifestBlob.select(ManifestBlob.manifest, Blob.size).join(Blob)
                .where(ManifestBlob.manifest.in_(manifest_ids)).tuples())
        for manifest_id, size in rows:
            sizes[manifest_id] = sizes.get(manifest_id, 0) + size
    return sizes


def list_tags(repo: Repository, specific: str | None, only_active: bool, page: int, limit: int) -> tuple[list, bool]:
    """Quay's tag list: newest first, history included unless only_active."""
    # (not the manifests' documents: a page of 100 would read every one of them)
    query = (Tag.select(Tag, Manifest.id, Manifest.digest, Manifest.media_type).join(Manifest)
             .where(Tag.repository == repo.id))
    if specific:
        query = query.where(Tag.name == specific)
    if only_active:
        query = query.where(alive())
    rows = list(query.order_by(Tag.lifetime_start.desc(), Tag.id.desc()).offset((page - 1) * limit)
                .limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    sizes = _sizes([t.manifest_id for t in rows])
    return [view(t, sizes) for t in rows], more


def platforms(repo: Repository, index_digests: list[str]) -> dict[str, list[str]]:
    """The platforms (``os/architecture[/variant]``) each index of ``repo`` lists, by index digest: one query."""
    if not index_digests:
        return {}
    found: dict[str, list[str]] = {}
    for digest, content in (Manifest.select(Manifest.digest, Manifest.content)
                            .where((Manifest.repository == repo.id) & Manifest.digest.in_(list(index_digests))
                                   & Manifest.media_type.in_(list(INDEX_TYPES))).tuples()):
        try:
            entries = json.loads(bytes(content)).get("manifests") or []
        except (ValueError, AttributeError):
            continue
        names = []
        for entry in entries:
            platform = entry.get("platform") if isinstance(entry, dict) else None
            if isinstance(platform, dict) and platform.get("os") and platform.get("architecture"):
                names.append("/".join(str(p) for p in (platform["os"], platform["architecture"],
                                                        platform.get("variant")) if p))
        found[digest] = names
    return found


def alive_tags(repo: Repository, limit: int) -> list[Tag]:
    """Up to ``limit`` alive tags of ``repo`` by name."""
    return list(Tag.select().where((Tag.repository == repo) & alive()).order_by(Tag.name).limit(limit))


def alive_view(repo: Repository, name: str) -> dict:
    """The alive tag ``name`` in Quay's shape."""
    rows, _ = list_tags(repo, name, True, 1, 1)
    if not rows:
        raise NotFound(f"Tag {name} does not exist in {repo.full_name}")
    return rows[0]


def manifest_in(repo: Repository, digest: str) -> Manifest:
    """A manifest of ``repo`` by digest, deleted or not (its ``repository`` is ``repo``)."""
    manifest = Manifest.get_or_none((Manifest.repository == repo.id) & (Manifest.digest == digest))
    if manifest is None:
        raise NotFound(f"Manifest {digest} does not exist in {repo.full_name}")
    manifest.repository = repo
    return manifest


def live_manifest(repo: Repository, digest: str) -> Manifest:
    manifest = Manifest.get_or_none((Manifest.repository == repo.id) & (Manifest.digest == digest)
                                    & Manifest.deleted_at.is_null())
    if manifest is None:
        raise NotFound(f"Manifest {digest} does not exist in {repo.full_name}")
    return manifest


def set_expiration(repo: Repository, name: str, when: int | None, min_seconds: int, max_seconds: int) -> int | None:
    """Expire the alive tag at ``when`` (epoch seconds), clamped into the allowed range; None clears it."""
    tag = alive_tag(repo, name)
    if tag is None:
        raise NotFound(f"Tag {name} does not exist in {repo.full_name}")
    now = now_ms()
    end = None
    if when is not None:
        end = min(max(int(when) * 1000, now + min_seconds * 1000), now + max_seconds * 1000)
    Tag.update(lifetime_end=end).where(Tag.id == tag.id).execute()
    return end


UNCHANGED = object()


def update_tag(repo: Repository, name: str, performer: Identity, ip: str | None, manifest_digest: str | None = None,
               expiration=UNCHANGED, min_seconds: int = 0, max_seconds: int = 0) -> None:
    """Point ``name`` at ``manifest_digest`` and/or set when it expires (epoch seconds, None: never;
    clamped into [min_seconds, max_seconds] from now)."""
    with database.atomic():
        if manifest_digest is not None:
            manifest = live_manifest(repo, manifest_digest)
            _, changed, invalid = point_tag(repo, name, manifest)
            if changed:
                audit.record("move_tag", performer, repo.namespace, repo, ip,
                             {"tag": name, "manifest_digest": manifest.digest})
            if invalid:
                audit.record("invalid_tag_expiration", performer, repo.namespace, repo, ip,
                             {"tag": name, "label": labels.EXPIRES_AFTER, "value": invalid})
        if expiration is not UNCHANGED:
            end = set_expiration(repo, name, expiration, min_seconds, max_seconds)
            audit.record("change_tag_expiration", performer, repo.namespace, repo, ip,
                         {"tag": name, "expiration_date": end // 1000 if end else None})


def delete_tag(repo: Repository, name: str, performer: Identity, ip: str | None = None, final: bool = False) -> None:
    """End the alive tag now (restorable within the time machine window), or with ``final`` for good."""
    with database.atomic():
        row = delete(repo, name, final)
        audit.record("delete_tag", performer, repo.namespace, repo, ip,
                     {"tag": name, "manifest_digest": row.manifest.digest, **({"permanent": True} if final else {})})


def restore_tag(repo: Repository, name: str, digest: str, performer: Identity, ip: str | None = None) -> None:
    """Point ``name`` back at ``digest``, if it pointed there within the namespace's time machine window."""
    window = repo.namespace.time_machine_s if repo.namespace.time_machine_s is not None else DEFAULT_TIME_MACHINE
    with database.atomic():
        restore(repo, name, digest, window)
        audit.record("revert_tag", performer, repo.namespace, repo, ip, {"tag": name, "manifest_digest": digest})


def delete(repo: Repository, name: str, final: bool = False) -> Tag:
    """End the alive tag now; ``final``: for good, outside the time machine."""
    with database.atomic():
        tag = alive_tag(repo, name)
        if tag is None:
            raise NotFound(f"Tag {name} does not exist in {repo.full_name}")
        Tag.update(lifetime_end=now_ms(), final=final).where(Tag.id == tag.id).execute()
        if final:  # its earlier history goes too: nothing of this tag is restorable
            Tag.update(final=True).where((Tag.repository == repo.id) & (Tag.name == name)
                                         & Tag.lifetime_end.is_null(False)).execute()
    return tag


def restore(repo: Repository, name: str, digest: str, window_seconds: int) -> Tag:
    """Point ``name`` back at a manifest it had within the namespace's time machine window."""
    cutoff = now_ms() - window_seconds * 1000
    with database.atomic():
        past = (Tag.select(Tag, Manifest).join(Manifest)
                .where((Tag.repository == repo.id) & (Tag.name == name) & (Manifest.digest == digest)
                       & Tag.lifetime_end.is_null(False) & (Tag.lifetime_end <= now_ms())
                       & (Tag.lifetime_end >= cutoff) & ~Tag.final)
                .order_by(Tag.lifetime_end.desc()).first())
        if past is None:
            raise Invalid(f"Cannot restore {name} to {digest}: it did not point there within the namespace's "
                          f"time machine window ({window_seconds} s)")
        manifest = past.manifest
        if manifest.deleted_at is not None:
            Manifest.update(deleted_at=None).where(Manifest.id == manifest.id).execute()
        tag, _ = set_tag(repo, name, manifest)
    return tag
