"""Parsing and validating manifests: Docker schema 2 and OCI image manifests, lists and indexes, artifacts."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import digests
from .errors import DigestInvalid, ManifestInvalid

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
IMAGE_TYPES = {DOCKER_MANIFEST, OCI_MANIFEST}
INDEX_TYPES = {DOCKER_LIST, OCI_INDEX}
MANIFEST_TYPES = IMAGE_TYPES | INDEX_TYPES
GENERIC_TYPES = {"", "application/json", "application/octet-stream", "text/plain"}


@dataclass
class ParsedManifest:
    raw: bytes
    digest: str
    media_type: str
    blobs: list = field(default_factory=list)  # digests of config + layers that must be in the repository
    children: list = field(default_factory=list)  # digests of manifests an index references
    sizes: dict = field(default_factory=dict)  # digest -> the size its descriptors state
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict | None = None
    config_digest: str | None = None
    document: dict = field(default_factory=dict)


def invalid(message: str) -> ManifestInvalid:
    return ManifestInvalid(f"manifest invalid: {message}")


def _descriptor(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise invalid(f"{where} must be a descriptor object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise invalid(f"{where}.mediaType is missing")
    digest = value.get("digest")
    if not isinstance(digest, str):
        raise invalid(f"{where}.digest is missing")
    try:
        digests.parse(digest)
    except DigestInvalid:
        raise invalid(f"{where}.digest '{digest}' is not a valid sha256/sha512 digest") from None
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise invalid(f"{where}.size must be a non-negative integer")
    return value


def _state_size(parsed: ParsedManifest, descriptor: dict, where: str) -> None:
    stated = parsed.sizes.setdefault(descriptor["digest"], descriptor["size"])
    if stated != descriptor["size"]:
        raise invalid(f"{where} gives {descriptor['digest']} size {descriptor['size']}, "
                      f"another descriptor gives it size {stated}")


def parse(raw: bytes, content_type: str | None) -> ParsedManifest:
    """Parse and check the structure of a pushed manifest; raise MANIFEST_INVALID with the reason."""
    content_type = (content_type or "").split(";", 1)[0].strip()
    if content_type in DOCKER_SCHEMA1:
        raise ManifestInvalid("Docker schema 1 manifests are not supported: push with a current client "
                              "(Docker schema 2 or OCI)")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise invalid(f"not valid JSON ({e})") from None
    except RecursionError:
        raise invalid("the JSON document is nested too deeply") from None
    if not isinstance(doc, dict):
        raise invalid("the document must be a JSON object")
    if doc.get("schemaVersion") != 2:
        if doc.get("schemaVersion") == 1:
            raise invalid("Docker schema 1 manifests are not supported: push with a current client")
        raise invalid("schemaVersion must be 2")

    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise invalid("mediaType must be a string")
    if content_type and content_type not in GENERIC_TYPES:
        if content_type not in MANIFEST_TYPES:
            raise invalid(f"unsupported manifest media type '{content_type}'")
        if body_type and body_type != content_type:
            raise invalid(f"Content-Type '{content_type}' does not match the manifest's mediaType '{body_type}'")
        media_type = content_type
    elif body_type:
        if body_type not in MANIFEST_TYPES:
            raise invalid(f"unsupported manifest media type '{body_type}'")
        media_type = body_type
    elif "manifests" in doc:
        media_type = OCI_INDEX
    elif "config" in doc:
        media_type = OCI_MANIFEST
    else:
        raise invalid("cannot tell the manifest's media type: send a Content-Type or a mediaType field")

    parsed = ParsedManifest(raw=raw, digest=digests.of(raw), media_type=media_type, document=doc)
    annotations = doc.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            raise invalid("annotations must be an object of strings")
        parsed.annotations = annotations
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise invalid("artifactType must be a string")

    if media_type in IMAGE_TYPES:
        config = _descriptor(doc.get("config"), "config")
        _state_size(parsed, config, "config")
        parsed.config_digest = config["digest"]
        parsed.blobs.append(config["digest"])
        layers = doc.get("layers", [])
        if not isinstance(layers, list):
            raise invalid("layers must be a list")
        for i, layer in enumerate(layers):
            layer = _descriptor(layer, f"layers[{i}]")
            if layer.get("urls"):  # non-distributable (foreign) layers live elsewhere
                continue
            _state_size(parsed, layer, f"layers[{i}]")
            parsed.blobs.append(layer["digest"])
        parsed.artifact_type = artifact_type or config["mediaType"]
    else:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise invalid("manifests must be a list")
        for i, child in enumerate(children):
            child = _descriptor(child, f"manifests[{i}]")
            _state_size(parsed, child, f"manifests[{i}]")
            parsed.children.append(child["digest"])
        parsed.artifact_type = artifact_type

    subject = doc.get("subject")
    if subject is not None:
        parsed.subject = _descriptor(subject, "subject")["digest"]
    return parsed


def descriptor_for_referrers(media_type: str, digest: str, size: int, artifact_type: str | None,
                             annotations: str | None) -> dict:
    entry = {"mediaType": media_type, "digest": digest, "size": size}
    if artifact_type:
        entry["artifactType"] = artifact_type
    if annotations:
        entry["annotations"] = json.loads(annotations)
    return entry
