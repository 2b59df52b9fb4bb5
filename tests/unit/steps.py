"""Registry steps for in-process tests: what a client's push does, through the registry's own functions."""
from __future__ import annotations

import hashlib
import json

from registry import blobs, content, manifests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(storage, repo, data: bytes, chunk: int = 0) -> str:
    """An upload session, in chunks of ``chunk`` bytes (0: one), committed under its digest."""
    upload = blobs.start_upload(storage, repo)
    size, step = 0, chunk or max(len(data), 1)
    for start in range(0, len(data), step):
        receiver = blobs.ChunkReceiver(storage, upload.uuid, size)
        receiver.write(data[start:start + step])
        size = receiver.close()
        blobs.record_progress(upload, size)
    blobs.verify_and_commit(storage, repo, upload.uuid, digest_of(data), size, upload)
    return digest_of(data)


def push_image(storage, repo, tag: str | None, layer: bytes = b"layer", labels: dict | None = None):
    """Config and layer blobs, then the manifest (tagged ``tag``); returns the PushResult."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": labels or {}},
                         "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]}}).encode()
    config_digest, layer_digest = push_blob(storage, repo, config), push_blob(storage, repo, layer)
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                      "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer)}]}).encode()
    return content.put_manifest(repo, manifests.parse(raw, OCI_MANIFEST), tag, storage)
