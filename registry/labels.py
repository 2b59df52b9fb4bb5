"""Manifest labels (from image config labels and manifest annotations, or added through the API),
and ``quay.expires-after``, the label that gives a pushed tag an expiry."""
from __future__ import annotations

import json
import re
import uuid

from accounts import audit
from accounts.identity import Identity
from slipway.db import database
from slipway.errors import Invalid, NotFound

from .manifests import IMAGE_TYPES, INDEX_TYPES
from .models import Manifest, ManifestChild, ManifestLabel
from .storage import Storage

EXPIRES_AFTER = "quay.expires-after"
DURATION_RE = re.compile(r"^(\d+)([smhdwy])\Z")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
CONFIG_TYPES = {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
KEY_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._/-]{0,254}\Z")
MAX_CONFIG_BYTES = 4 * 1024 * 1024


def parse_duration(text: str) -> int | None:
    """``2s``, ``3d``, ``1w`` ... as seconds; None if it is not Quay's format."""
    match = DURATION_RE.match((text or "").strip())
    if not match or int(match.group(1)) == 0:
        return None
    return int(match.group(1)) * UNITS[match.group(2)]


def extract(parsed, storage: Storage) -> dict:
    """The labels a pushed image manifest carries: its config's Labels, then its annotations."""
    labels: dict = {}
    if parsed.media_type in IMAGE_TYPES:
        config_type = parsed.document.get("config", {}).get("mediaType")
        stored = storage.blob_size(parsed.config_digest)  # the real size: the descriptor's is the client's word
        if config_type in CONFIG_TYPES and stored is not None and stored <= MAX_CONFIG_BYTES:
            try:
                raw = b"".join(storage.read_blob(parsed.config_digest, 0, MAX_CONFIG_BYTES))
                config = json.loads(raw).get("config") or {}
                labels.update({k: str(v) for k, v in (config.get("Labels") or {}).items()})
            except (OSError, ValueError, AttributeError):
                pass  # an unreadable config has no labels; the manifest itself is valid
    labels.update(parsed.annotations or {})
    return labels


def store(manifest: Manifest, labels: dict) -> None:
    rows = [{"uuid": str(uuid.uuid4()), "manifest": manifest.id, "key": k[:255], "value": v,
             "source_type": "manifest", "media_type": "text/plain"} for k, v in labels.items()]
    for i in range(0, len(rows), 100):
        ManifestLabel.insert_many(rows[i:i + 100]).execute()


def expires_after(manifest: Manifest) -> tuple[int | None, str | None]:
    """Seconds from ``quay.expires-after`` (None if absent), and the invalid value if there is one.

    For an index or manifest list, it counts only if every child carries the same value.
    """
    if manifest.media_type in INDEX_TYPES:
        children = [link.child for link in ManifestChild.select().where(ManifestChild.manifest == manifest.id)]
        values = {_value(child) for child in children}
        if not children or len(values) != 1:
            return None, None
        value = values.pop()
    else:
        value = _value(manifest)
    if value is None:
        return None, None
    seconds = parse_duration(value)
    return (seconds, None) if seconds else (None, value)


def _value(manifest: Manifest) -> str | None:
    row = (ManifestLabel.select(ManifestLabel.value)
           .where((ManifestLabel.manifest == manifest.id) & (ManifestLabel.key == EXPIRES_AFTER))
           .order_by(ManifestLabel.id.desc()).first())
    return row.value if row else None


# -- the labels API ----------------------------------------------------------------------------------------

def view(label: ManifestLabel) -> dict:
    return {"id": label.uuid, "key": label.key, "value": label.value, "source_type": label.source_type,
            "media_type": label.media_type}


def list_labels(manifest: Manifest, prefix: str | None = None) -> list[ManifestLabel]:
    query = ManifestLabel.select().where(ManifestLabel.manifest == manifest.id)
    if prefix:
        query = query.where(ManifestLabel.key.startswith(prefix))
    return list(query.order_by(ManifestLabel.id))


def add(manifest: Manifest, body: dict, performer: Identity, ip: str | None = None) -> ManifestLabel:
    """Add a label from ``{"key", "value"}`` or ``{"label": "key=value"}`` (``manifest.repository`` loaded)."""
    if "label" in body:
        key, sep, value = str(body["label"]).partition("=")
        if not sep:
            raise Invalid("Invalid label format, must be key value separated by =")
    else:
        key, value = body.get("key"), body.get("value")
        if not isinstance(key, str) or not isinstance(value, str):
            raise Invalid("Invalid label format, must be key value separated by =")
    key = key.strip()
    if not KEY_RE.match(key):
        raise Invalid(f"Invalid label key '{key}': letters, digits, '.', '_', '-', '/', "
                      "starting with a letter or digit")
    media_type = body.get("media_type") or "text/plain"
    if media_type not in ("text/plain", "application/json"):
        raise Invalid(f"Invalid label media type '{media_type}': use text/plain or application/json")
    if media_type == "application/json":
        try:
            json.loads(value)
        except ValueError:
            raise Invalid("The label's value is not valid JSON (media_type application/json)") from None
    repo = manifest.repository
    with database.atomic():
        label = ManifestLabel.create(uuid=str(uuid.uuid4()), manifest=manifest, key=key, value=value,
                                     source_type="api", media_type=media_type)
        audit.record("manifest_label_add", performer, repo.namespace, repo, ip,
                     {"key": label.key, "value": label.value, "manifest_digest": manifest.digest})
    return label


def delete(manifest: Manifest, label_id: str, performer: Identity, ip: str | None = None) -> None:
    """Delete a label (``manifest.repository`` loaded)."""
    repo = manifest.repository
    with database.atomic():
        label = get(manifest, label_id)
        label.delete_instance()
        audit.record("manifest_label_delete", performer, repo.namespace, repo, ip,
                     {"key": label.key, "manifest_digest": manifest.digest})


def get(manifest: Manifest, label_id: str) -> ManifestLabel:
    label = ManifestLabel.get_or_none((ManifestLabel.manifest == manifest.id) & (ManifestLabel.uuid == label_id))
    if label is None:
        raise NotFound(f"Label {label_id} does not exist on this manifest")
    return label


def by_digest(repo, digests: list[str]) -> dict[str, list[ManifestLabel]]:
    """The labels of several manifests of ``repo`` (a page of the tag list), by manifest digest: one query."""
    if not digests:
        return {}
    found: dict[str, list[ManifestLabel]] = {}
    rows = (ManifestLabel.select(ManifestLabel, Manifest.digest).join(Manifest)
            .where((Manifest.repository == repo.id) & Manifest.digest.in_(list(digests)))
            .order_by(ManifestLabel.id))
    for label in rows:
        found.setdefault(label.manifest.digest, []).append(label)
    return found
