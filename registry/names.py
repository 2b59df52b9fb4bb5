"""Repository and tag names: the OCI grammar plus Quay's reserved path segments."""
from __future__ import annotations

import re

from .errors import ManifestInvalid, NameInvalid

COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_PATTERN = rf"{COMPONENT}(?:/{COMPONENT})*"
NAME_RE = re.compile(rf"^{NAME_PATTERN}\Z")
# The tag grammar, the one copy: route patterns, pushes, build requests and trigger templates use it.
MAX_TAG_LENGTH = 128
TAG_CHARACTERS = "A-Za-z0-9_.-"
TAG_PATTERN = rf"[A-Za-z0-9_][{TAG_CHARACTERS}]{{0,{MAX_TAG_LENGTH - 1}}}"
TAG_RE = re.compile(rf"^{TAG_PATTERN}\Z")
TAG_RULE = (f"up to {MAX_TAG_LENGTH} characters of letters, digits, '_', '.', '-', "
            "not starting with '.' or '-'")
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


def is_tag(tag) -> bool:
    return isinstance(tag, str) and TAG_RE.match(tag) is not None


def check_tag(tag: str) -> None:
    if not is_tag(tag):
        raise ManifestInvalid(f"invalid tag '{tag}': {TAG_RULE}", detail={"tag": tag})


def as_tag(value: str) -> str | None:
    """Make ``value`` a valid tag: other characters become '-', no leading '.'/'-', cut to the longest tag."""
    cleaned = re.sub(f"[^{TAG_CHARACTERS}]", "-", value).lstrip(".-")[:MAX_TAG_LENGTH]
    return cleaned or None
