"""Image references as the builder meets them: FROM lines, and the names under which this Slipway is reached.

References are parsed with ``docker-image-py``, a port of distribution's reference grammar: tags, digests,
tag and digest together, registries with ports, and Docker Hub's ``library/`` default.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3
from docker_image import reference

from .backends import BuildFailed

log = logging.getLogger("slipway.builder.images")
# What buildah accepts when it pulls: the registry answers the digest of the manifest it stores.
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"])


@dataclass(frozen=True)
class ImageRef:
    name: str  # as written in the Dockerfile (after ARG substitution): what buildah pulls and looks up
    domain: str  # registry host[:port], docker.io for Docker Hub
    path: str  # repository path inside the registry
    tag: str | None
    digest: str | None


def parse(image: str) -> ImageRef:
    try:
        ref = reference.Reference.parse_normalized_named(image)
    except Exception as e:  # the library raises a family of exceptions, all about the format
        raise BuildFailed(f"Invalid base image reference '{image}': {e}") from None
    domain, path = ref.split_hostname()
    return ImageRef(name=image, domain=domain, path=path, tag=ref["tag"], digest=ref["digest"])


def local_registry_names(config) -> set[str]:
    """Every host[:port] under which a Dockerfile may name this Slipway."""
    port = config.server.port
    names = {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
    for url in (config.build_registry_url, config.server.public_url):
        if url:
            parts = urlsplit(url if "://" in url else f"http://{url}")
            if parts.hostname:
                host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
                names.add(f"{host}:{parts.port}" if parts.port else host)
    return names


def readable_digest(registry_url: str, ref: ImageRef, credential: tuple[str, str] | None,
                    timeout: float = 10) -> str | None:
    """The digest of the manifest this Slipway's registry serves for ``ref`` to ``credential`` (user or robot
    name and secret; None: anonymous), asked with a HEAD as a pull would ask; None when it does not answer
    200 with a digest (no read access, no such image, unreachable). The registry is reached as the build's
    pulls reach it (``build_registry_url``; TLS without verification, as registries.conf marks it insecure)."""
    url = f"{registry_url.rstrip('/')}/v2/{ref.path}/manifests/{ref.digest or ref.tag or 'latest'}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            r = requests.head(url, auth=credential, headers={"Accept": MANIFEST_TYPES}, timeout=timeout,
                              allow_redirects=False, verify=False)
    except requests.RequestException as e:
        log.info("HEAD %s failed: %s", url, e)
        return None
    digest = r.headers.get("Docker-Content-Digest", "")
    if r.status_code != 200 or not digest.startswith("sha256:"):
        return None
    if ref.digest and digest != ref.digest:
        return None
    return digest
