"""Repository and tag names: the OCI grammar plus Quay's reserved path segments."""
from __future__ import annotations

import re

from .errors import ManifestInvalid, NameInvalid

COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_PATTERN = rf"{COMPONENT}(?:/{COMPONENT})*"
NAME_RE = re.compile(rf"^{NAME_PATTERN}\Z")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}\Z")
# Quay refuses these as path segments: they collide with its UI and API routes.
RESERVED_SEGMENTS = {"build", "trigger", "tag"}
MAX_NAME_LENGTH = 255


def split_name(name: str) -> tuple[str, str]:
    """Check a full repository name and split it into (namespace, repository)."""
    if len(name) > MAX_NAME_LENGTH:
        raise NameInvalid(f"repository name is longer than {MAX_NAME_LENGTH} characters",
                          detail={"name": name})
    if not NAME_RE.match(name):
        raise NameInvalid(
            f"invalid repository name '{name}': use lowercase letters, digits and separators "
            "(., _, __, -) between them, in path components separated by /",
            detail={"name": name})
    if "/" not in name:
        raise NameInvalid(f"repository name '{name}' has no namespace: push to <namespace>/{name}, "
                          "where the namespace is your username or an organization",
                          detail={"name": name})
    namespace, repository = name.split("/", 1)
    bad = RESERVED_SEGMENTS.intersection(repository.split("/"))
    if bad:
        raise NameInvalid(f"repository name '{name}' may not contain the path segment "
                          f"'{sorted(bad)[0]}' (reserved: build, trigger, tag)",
                          detail={"name": name})
    return namespace, repository


def check_tag(tag: str) -> None:
    if not TAG_RE.match(tag):
        raise ManifestInvalid(f"invalid tag '{tag}': up to 128 characters of letters, digits, '_', '.', '-', "
                              "not starting with '.' or '-'", detail={"tag": tag})
