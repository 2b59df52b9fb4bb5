"""/api/v1 for tags (history, retarget, expiry, restore), manifests and their labels (Quay's paths and shapes)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from slipway.errors import Invalid

from . import labels, tags
from .digests import DIGEST_PATTERN
from .handlers_api import REPO_PATH, RepositoryBase
from .hooks import RegistryHooks
from .manifests import INDEX_TYPES
from .names import TAG_PATTERN

if TYPE_CHECKING:  # annotations only: handlers touch no models
    from .models import Manifest

TAG = rf"(?P<tag>{TAG_PATTERN})"
MANIFEST_PATH = rf"{REPO_PATH}/manifest/(?P<digest>{DIGEST_PATTERN})"


class TagListHandler(RepositoryBase):
    async def get(self, namespace: str, repository: str) -> None:
        """Tags, newest first, with history (?onlyActiveTags=false), ?specificTag=, ?page=, ?limit= (at most 100)."""
        repo = self.repository("read")
        only_active = self.get_argument("onlyActiveTags", "false").lower() == "true"
        page = self.int_argument("page", 1, minimum=1, maximum=1_000_000)
        limit = self.int_argument("limit", 50, minimum=1, maximum=100, clamp=True)
        rows, more = tags.list_tags(repo, self.get_argument("specificTag", None), only_active, page, limit)
        self.services.registration.extension(RegistryHooks).tag_list(repo, rows)
        self.send({"tags": rows, "page": page, "has_additional": more})


class TagHandler(RepositoryBase):
    schemas = {"put": {"type": "object", "properties": {
        "manifest_digest": {"type": "string"}, "expiration": {"type": ["integer", "null"]}}}}

    async def put(self, namespace: str, repository: str, tag: str) -> None:
        """Point a tag at a manifest (manifest_digest) and/or set when it expires (expiration, epoch seconds)."""
        repo = self.repository("write")
        body = self.json_body()
        if "manifest_digest" not in body and "expiration" not in body:
            raise Invalid("Give manifest_digest (to move or create the tag) and/or expiration")
        limits = self.config.tags
        tags.update_tag(repo, tag, self.identity, self.client_ip, manifest_digest=body.get("manifest_digest"),
                        expiration=body.get("expiration", tags.UNCHANGED),
                        min_seconds=limits.min_expiration_seconds, max_seconds=limits.max_expiration_seconds)
        self.send(tags.alive_view(repo, tag), 201)

    async def delete(self, namespace: str, repository: str, tag: str) -> None:
        """Delete a tag (restorable within the namespace's time machine window)."""
        tags.delete_tag(self.repository("write"), tag, self.identity, self.client_ip)
        self.send(None, 204)


class TagRestoreHandler(RepositoryBase):
    schemas = {"post": {"type": "object", "required": ["manifest_digest"],
                        "properties": {"manifest_digest": {"type": "string"}}}}

    async def post(self, namespace: str, repository: str, tag: str) -> None:
        """Restore a tag to a manifest it pointed at within the time machine window."""
        repo = self.repository("write")
        tags.restore_tag(repo, tag, self.json_body()["manifest_digest"], self.identity, self.client_ip)
        self.send(tags.alive_view(repo, tag))


class TagExpireHandler(RepositoryBase):
    async def post(self, namespace: str, repository: str, tag: str) -> None:
        """Remove a tag now and for good, skipping the time machine."""
        tags.delete_tag(self.repository("write"), tag, self.identity, self.client_ip, final=True)
        self.send({"success": True})


class ManifestBase(RepositoryBase):
    def manifest(self, action: str = "read") -> Manifest:
        return tags.manifest_in(self.repository(action), self.path_kwargs["digest"])


class ManifestHandler(ManifestBase):
    async def get(self, namespace: str, repository: str, digest: str) -> None:
        """A manifest: its digest, kind and document."""
        manifest = self.manifest()
        self.send({"digest": manifest.digest, "is_manifest_list": manifest.media_type in INDEX_TYPES,
                   "manifest_data": bytes(manifest.content).decode("utf-8", "replace"),
                   "media_type": manifest.media_type, "artifact_type": manifest.artifact_type,
                   "deleted": manifest.deleted_at is not None})


class LabelsHandler(ManifestBase):
    schemas = {"post": {"type": "object", "properties": {
        "key": {"type": "string"}, "value": {"type": "string"}, "label": {"type": "string"},
        "media_type": {"type": ["string", "null"]}}}}

    async def get(self, namespace: str, repository: str, digest: str) -> None:
        """A manifest's labels (?filter= a key prefix)."""
        manifest = self.manifest()
        self.send({"labels": [labels.view(x) for x in labels.list_labels(manifest, self.get_argument("filter", None))]})

    async def post(self, namespace: str, repository: str, digest: str) -> None:
        """Add a label: {"key", "value"} or {"label": "key=value"}."""
        label = labels.add(self.manifest("write"), self.json_body(), self.identity, self.client_ip)
        self.send(labels.view(label), 201)


class LabelHandler(ManifestBase):
    async def get(self, namespace: str, repository: str, digest: str, label_id: str) -> None:
        """One label."""
        self.send(labels.view(labels.get(self.manifest(), label_id)))

    async def delete(self, namespace: str, repository: str, digest: str, label_id: str) -> None:
        """Delete a label."""
        labels.delete(self.manifest("write"), label_id, self.identity, self.client_ip)
        self.send(None, 204)


default_handlers = [
    (rf"{REPO_PATH}/tag/?", TagListHandler),
    (rf"{REPO_PATH}/tag/{TAG}", TagHandler),
    (rf"{REPO_PATH}/tag/{TAG}/restore", TagRestoreHandler),
    (rf"{REPO_PATH}/tag/{TAG}/expire", TagExpireHandler),
    (rf"{MANIFEST_PATH}", ManifestHandler),
    (rf"{MANIFEST_PATH}/labels", LabelsHandler),
    (rf"{MANIFEST_PATH}/labels/(?P<label_id>[0-9a-f-]{{36}})", LabelHandler),
]
