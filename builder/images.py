"""Image references as the builder meets them: FROM lines, and the names under which this Slipway is reached.

References are parsed with ``docker-image-py``, a port of distribution's reference grammar: tags, digests,
tag and digest together, registries with ports, and Docker Hub's ``library/`` default.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from docker_image import reference

from .backends import BuildFailed


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
