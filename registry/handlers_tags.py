"""/api/v1 for tags (history, retarget, expiry, restore), manifests and their labels (Quay's paths and shapes)."""
from __future__ import annotations

from accounts import audit
from accounts.models import DEFAULT_TIME_MACHINE
from slipway.errors import Invalid, NotFound

from . import labels, tags
from .content import point_tag
from .digests import DIGEST_PATTERN
from .handlers_api import REPO_PATH, RepositoryBase
from .manifests import INDEX_TYPES
from .models import Manifest
from .names import TAG_PATTERN

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
        if "manifest_digest" in body:
            manifest = tags.live_manifest(repo, body["manifest_digest"])
            row, changed, invalid = point_tag(repo, tag, manifest)
            if changed:
                audit.record("move_tag", self.identity, repo.namespace, repo, self.client_ip,
                             {"tag": tag, "manifest_digest": manifest.digest})
            if invalid:
                audit.record("invalid_tag_expiration", self.identity, repo.namespace, repo, self.client_ip,
                             {"tag": tag, "label": labels.EXPIRES_AFTER, "value": invalid})
        if "expiration" in body:
            limits = self.config.tags
            end = tags.set_expiration(repo, tag, body["expiration"], limits.min_expiration_seconds,
                                      limits.max_expiration_seconds)
            audit.record("change_tag_expiration", self.identity, repo.namespace, repo, self.client_ip,
                         {"tag": tag, "expiration_date": end // 1000 if end else None})
        self.send(_alive_view(repo, tag), 201)

    async def delete(self, namespace: str, repository: str, tag: str) -> None:
        """Delete a tag (restorable within the namespace's time machine window)."""
        repo = self.repository("write")
        row = tags.delete(repo, tag)
        audit.record("delete_tag", self.identity, repo.namespace, repo, self.client_ip,
                     {"tag": tag, "manifest_digest": row.manifest.digest})
        self.send(None, 204)


def _alive_view(repo, name: str) -> dict:
    rows, _ = tags.list_tags(repo, name, True, 1, 1)
    if not rows:
        raise NotFound(f"Tag {name} does not exist in {repo.full_name}")
    return rows[0]


class TagRestoreHandler(RepositoryBase):
    schemas = {"post": {"type": "object", "required": ["manifest_digest"],
                        "properties": {"manifest_digest": {"type": "string"}}}}

    async def post(self, namespace: str, repository: str, tag: str) -> None:
        """Restore a tag to a manifest it pointed at within the time machine window."""
        repo = self.repository("write")
        digest = self.json_body()["manifest_digest"]
        window = repo.namespace.time_machine_s if repo.namespace.time_machine_s is not None else DEFAULT_TIME_MACHINE
        tags.restore(repo, tag, digest, window)
        audit.record("revert_tag", self.identity, repo.namespace, repo, self.client_ip,
                     {"tag": tag, "manifest_digest": digest})
        self.send(_alive_view(repo, tag))


class TagExpireHandler(RepositoryBase):
    async def post(self, namespace: str, repository: str, tag: str) -> None:
        """Remove a tag now and for good, skipping the time machine."""
        repo = self.repository("write")
        row = tags.delete(repo, tag, final=True)
        audit.record("delete_tag", self.identity, repo.namespace, repo, self.client_ip,
                     {"tag": tag, "manifest_digest": row.manifest.digest, "permanent": True})
        self.send({"success": True})


class ManifestBase(RepositoryBase):
    def manifest(self, action: str = "read") -> Manifest:
        repo = self.repository(action)
        manifest = Manifest.get_or_none((Manifest.repository == repo.id)
                                        & (Manifest.digest == self.path_kwargs["digest"]))
        if manifest is None:
            raise NotFound(f"Manifest {self.path_kwargs['digest']} does not exist in {repo.full_name}")
        manifest.repository = repo
        return manifest


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
        manifest = self.manifest("write")
        label = labels.add(manifest, self.json_body())
        audit.record("manifest_label_add", self.identity, manifest.repository.namespace, manifest.repository,
                     self.client_ip, {"key": label.key, "value": label.value, "manifest_digest": manifest.digest})
        self.send(labels.view(label), 201)


class LabelHandler(ManifestBase):
    async def get(self, namespace: str, repository: str, digest: str, label_id: str) -> None:
        """One label."""
        self.send(labels.view(labels.get(self.manifest(), label_id)))

    async def delete(self, namespace: str, repository: str, digest: str, label_id: str) -> None:
        """Delete a label."""
        manifest = self.manifest("write")
        label = labels.get(manifest, label_id)
        label.delete_instance()
        audit.record("manifest_label_delete", self.identity, manifest.repository.namespace, manifest.repository,
                     self.client_ip, {"key": label.key, "manifest_digest": manifest.digest})
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
