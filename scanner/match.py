"""Matching a package against advisories, each ecosystem by its own version ordering, from maintained libraries:
python-debian for dpkg, univers for apk and Go's semantic versions, packaging for PEP 440. Pure: advisories come
from a ``lookup`` the caller provides (the database, in the service)."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from debian.debian_support import Version as DebianVersion
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion
from packaging.version import Version as Pep440Version
from univers.versions import AlpineLinuxVersion, SemverVersion

from scanner.feeds import Advisory
from scanner.index import Distribution, ImageIndex, Package

# os-release IDs whose dpkg packages are matched against the Debian tracker of their codename
DEBIAN_LIKE = ("debian",)


@dataclass
class Finding:
    package: Package
    advisory: Advisory
    fixed_by: str | None


def ecosystem_keys(package: Package, distribution: Distribution | None) -> list[tuple[str, str]]:
    """The (ecosystem, package name) pairs advisories for ``package`` are filed under: a dpkg package by its
    source package in its release (``debian:bookworm``), an apk package by its name and origin in its branch
    (``alpine:v3.4``), a Python distribution by its normalized name in ``PyPI``, a Go module in ``Go``."""
    if package.kind == "dpkg":
        if distribution and distribution.id in DEBIAN_LIKE and distribution.codename:
            return [(f"{distribution.id}:{distribution.codename}", package.source or package.name)]
        return []
    if package.kind == "apk":
        if distribution and distribution.id == "alpine" and distribution.branch:
            ecosystem = f"alpine:{distribution.branch}"
            names = [package.name] + ([package.source] if package.source and package.source != package.name else [])
            return [(ecosystem, name) for name in names]
        return []
    if package.kind == "python":
        return [("PyPI", canonicalize_name(package.name))]
    if package.kind == "go":
        return [("Go", package.name)]
    return []


# ---------------------------------------------------------------------------------------------------------------
# Version orderings: a parse returning None means "not comparable" (never matched by range)

@lru_cache(maxsize=65536)
def _debian(version: str):
    try:
        return DebianVersion(version)
    except ValueError:
        return None


@lru_cache(maxsize=65536)
def _alpine(version: str):
    try:
        return AlpineLinuxVersion(version)
    except Exception:  # noqa: BLE001 - univers raises several kinds for an invalid version
        return None


@lru_cache(maxsize=65536)
def _pep440(version: str):
    try:
        return Pep440Version(version)
    except InvalidVersion:
        return None


_GO_RELEASE = re.compile(r"^go(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:(rc|beta|alpha)(\d+))?$")


def go_semver(version: str) -> str | None:
    """Go's versions as OSV writes them (semver, no "v"): a module's "v1.2.3+incompatible" or pseudo-version
    as it is without its "v"; the toolchain's "go1.21.3" -> "1.21.3", "go1.21rc2" -> "1.21.0-rc.2"."""
    version = version.split()[0] if version.strip() else ""
    match = _GO_RELEASE.match(version)
    if match:
        major, minor, patch, pre, number = match.groups()
        core = f"{major}.{minor or 0}.{patch or 0}"
        return f"{core}-{pre}.{number}" if pre else core
    if version.startswith("v"):
        return version[1:]
    return version or None


@lru_cache(maxsize=65536)
def _semver(version: str):
    normal = go_semver(version)
    if not normal:
        return None
    try:
        return SemverVersion(normal)
    except Exception:  # noqa: BLE001 - univers raises several kinds for an invalid version
        return None


ORDERING: dict[str, Callable[[str], object]] = {"dpkg": _debian, "apk": _alpine, "python": _pep440, "go": _semver}


def _installed_version(package: Package) -> str:
    """The version compared with a fix: a dpkg package's source version (``Source: name (version)``, which a
    binNMU's ``+bN`` binary version is built from), else its own version."""
    if package.kind == "dpkg" and package.source_version:
        return package.source_version
    return package.version


# ---------------------------------------------------------------------------------------------------------------
# Matching

def _within(ordering, installed, ranges) -> tuple[bool, str | None]:
    """OSV's evaluation of ``affected_ranges``: affected when listed in a ``versions`` list, or within a range
    (from an ``introduced`` up to, not including, the next ``fixed``, or up to and including ``last_affected``).
    The fix is the ``fixed`` event ending the range the version is in."""
    version = ordering(installed)
    listed = False
    for range_ in ranges:
        kind, body = range_[0], range_[1]
        if kind == "versions":
            if installed in body or (version is not None and any(ordering(v) == version for v in body)):
                listed = True
            continue
        if version is None:
            continue
        affected, fix = _in_range(ordering, version, body)
        if affected:
            return True, fix
    return listed, None


def _in_range(ordering, version, events) -> tuple[bool, str | None]:
    """OSV's walk over one range's events in version order: an ``introduced`` at or below the version makes it
    affected, a ``fixed`` at or below it (or a ``last_affected`` below it) unaffected again."""
    parsed = []
    for kind, value in events:
        if kind == "limit":
            continue
        if kind == "introduced" and value == "0":
            parsed.append(((0,), kind, value, None))
            continue
        at = ordering(value)
        if at is None:
            return False, None  # an event this ordering cannot read: no judgement on this range
        parsed.append(((1,), kind, value, at))
    parsed.sort(key=_EventOrder)
    affected = False
    for _, kind, _, at in parsed:
        if kind == "introduced" and (at is None or at <= version):
            affected = True
        elif kind == "fixed" and at <= version:
            affected = False
        elif kind == "last_affected" and at < version:
            affected = False
    if not affected:
        return False, None
    fixes = [value for _, kind, value, at in parsed if kind == "fixed" and version < at]
    return True, (fixes[0] if fixes else None)


class _EventOrder:
    """Sort key of a parsed event: introduced "0" first, then by version (the orderings compare only among
    themselves, so no tuple of mixed types)."""

    def __init__(self, event):
        self.rank, self.at = event[0], event[3]

    def __lt__(self, other: _EventOrder) -> bool:
        if self.rank != other.rank:
            return self.rank < other.rank
        return self.at is not None and other.at is not None and self.at < other.at


def _assess(package: Package, distribution: Distribution | None, advisory: Advisory) -> tuple[bool, str | None]:
    if (advisory.ecosystem, advisory.package) not in ecosystem_keys(package, distribution):
        return False, None  # strictly within the package's own ecosystem and release
    ordering = ORDERING.get(package.kind)
    if ordering is None:
        return False, None
    installed = _installed_version(package)
    if advisory.affected_ranges:
        return _within(ordering, installed, advisory.affected_ranges)
    if advisory.fixed is None:
        return True, None  # open, no fix yet: every version is vulnerable
    version, fixed = ordering(installed), ordering(advisory.fixed)
    if version is None or fixed is None:
        return False, None
    return (True, advisory.fixed) if version < fixed else (False, None)


def vulnerable(package: Package, distribution: Distribution | None, advisory: Advisory) -> bool:
    return _assess(package, distribution, advisory)[0]


def fixed_by(package: Package, distribution: Distribution | None, advisory: Advisory) -> str | None:
    """The version that fixes ``advisory`` for ``package`` (Quay's FixedBy), None when there is none yet."""
    return _assess(package, distribution, advisory)[1]


def image_keys(image: ImageIndex) -> set[tuple[str, str]]:
    """Every (ecosystem, package name) the image's packages are looked up by: one query for all of them."""
    return {key for package in image.packages for key in ecosystem_keys(package, image.distribution)}


def match(image: ImageIndex, lookup: Callable[[str, str], Iterable[Advisory]]) -> list[Finding]:
    """Every (package, advisory) the image is vulnerable to, once each, in package order."""
    findings = []
    for package in image.packages:
        seen: set[str] = set()
        for ecosystem, name in ecosystem_keys(package, image.distribution):
            for advisory in lookup(ecosystem, name):
                if advisory.id in seen:
                    continue
                affected, fix = _assess(package, image.distribution, advisory)
                if affected:
                    seen.add(advisory.id)
                    findings.append(Finding(package=package, advisory=advisory, fixed_by=fix))
    return findings
