"""Advisory feeds, read offline: the Debian security tracker JSON, Debian's DSA/DLA lists, Alpine's secdb JSON
and OSV (PyPI, Go), from files, directories or zips. Pure parsing: the import into the database is the
service's."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SEVERITIES = ("Unknown", "Negligible", "Low", "Medium", "High", "Critical")


class FeedError(Exception):
    """A feed that is truncated or corrupt; ``str(error)`` says which and why."""


@dataclass(frozen=True)
class Advisory:
    id: str  # CVE-..., GHSA-..., GO-..., DSA-..., PYSEC-...
    ecosystem: str  # "debian:bookworm", "alpine:v3.4", "PyPI", "Go"
    package: str  # Debian: the SOURCE package
    fixed: str | None  # the first fixed version, None when there is no fix
    affected_ranges: tuple = ()  # OSV "ranges"/"versions" as JSON-able tuples (see match.vulnerable)
    severity: str = "Unknown"  # one of SEVERITIES
    description: str = ""
    link: str = ""
    digest: str = ""  # a content hash, for incremental import


def read_feeds(paths: list[Path], on_progress: Callable[[str, int], None] | None = None
               ) -> Iterator[tuple[str, Iterator[Advisory]]]:
    raise NotImplementedError
    yield
