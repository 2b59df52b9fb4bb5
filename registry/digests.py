"""Content digests: sha256 and sha512, as the OCI image spec registers them."""
from __future__ import annotations

import hashlib
import re

from .errors import DigestInvalid

ALGORITHMS = {"sha256": 64, "sha512": 128}
DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})\Z")
# What a digest may look like in a URL; validated further by parse().
DIGEST_PATTERN = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"


def parse(digest: str) -> tuple[str, str]:
    """Split a digest into (algorithm, hex); raise DIGEST_INVALID if it is not one we verify."""
    if DIGEST_RE.match(digest or ""):
        algorithm, hexpart = digest.split(":", 1)
        return algorithm, hexpart
    algorithm = (digest or "").split(":", 1)[0]
    if ":" in (digest or "") and algorithm not in ALGORITHMS:
        raise DigestInvalid(f"unsupported digest algorithm '{algorithm}' (use sha256 or sha512)",
                            detail={"digest": digest})
    raise DigestInvalid(f"invalid digest '{digest}'", detail={"digest": digest})


def is_digest(reference: str) -> bool:
    return ":" in reference


def new_hasher(algorithm: str = "sha256"):
    return hashlib.new(algorithm)


def of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
