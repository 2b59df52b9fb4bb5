"""Indexing: what a layer holds (packages, os-release, deletions) and what an image holds once its layers are
combined in order. Pure: reads a layer from a stream, never whole in memory, and touches no database."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import BinaryIO

# Bump when what index_layer finds changes: stored layer indexes of another version are re-indexed lazily.
INDEXER_VERSION = "1"


class LayerUnreadable(Exception):
    """A layer the indexer cannot read; ``str(error)`` is a reason fit for the user (not a tar, truncated,
    a decompression bomb, a symlink loop, a package database that does not parse)."""


@dataclass
class Limits:
    max_inflated_bytes_per_layer: int = 4 << 30
    # cap on any one file read for its content: dpkg status files, METADATA, apk installed db, ELF build info
    max_file_bytes: int = 64 << 20


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    kind: str  # "dpkg" | "apk" | "python" | "go" (a Go binary's main module and its deps) | "go-stdlib"
    source: str | None = None  # dpkg's Source: name, else None
    source_version: str | None = None  # dpkg's Source: (version), else None
    added_by: str = ""  # the digest of the layer that added it (filled by combine)
    path: str = ""  # where it was found (the db file, the dist-info directory, the binary)


@dataclass
class LayerIndex:
    packages: list[Package] = field(default_factory=list)
    os_release: dict | None = None  # the parsed os-release, if the layer has one
    whiteouts: list[str] = field(default_factory=list)  # paths this layer deletes (from .wh.<name>)
    opaque_dirs: list[str] = field(default_factory=list)  # directories whose lower content this layer hides
    paths: set[str] = field(default_factory=set)  # the package-relevant paths this layer holds

    def to_json(self) -> str:
        return json.dumps({
            "indexer": INDEXER_VERSION,
            "packages": [asdict(p) for p in self.packages],
            "os_release": self.os_release,
            "whiteouts": self.whiteouts,
            "opaque_dirs": self.opaque_dirs,
            "paths": sorted(self.paths),
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, s: str | bytes) -> LayerIndex:
        data = json.loads(s)
        return cls(
            packages=[Package(**p) for p in data["packages"]],
            os_release=data.get("os_release"),
            whiteouts=list(data.get("whiteouts", [])),
            opaque_dirs=list(data.get("opaque_dirs", [])),
            paths=set(data.get("paths", [])),
        )


@dataclass(frozen=True)
class Distribution:
    id: str  # os-release ID: "debian", "alpine", ...
    version_id: str
    codename: str | None = None  # Debian's VERSION_CODENAME ("bookworm")
    branch: str | None = None  # Alpine's branch from VERSION_ID ("3.4.6" -> "v3.4")
    pretty_name: str | None = None


@dataclass
class ImageIndex:
    distribution: Distribution | None
    packages: list[Package]  # with added_by

    @property
    def supported(self) -> bool:
        """False for what has no package database at all (FROM scratch, an artifact): Quay's "unsupported"."""
        return bool(self.packages) or self.distribution is not None


def index_layer(stream: BinaryIO, media_type: str, limits: Limits) -> LayerIndex:
    raise NotImplementedError


def combine(layers: list[tuple[str, LayerIndex]]) -> ImageIndex:
    raise NotImplementedError
