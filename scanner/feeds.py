"""Advisory feeds, read offline: the Debian security tracker JSON, Debian's DSA/DLA lists, Alpine's secdb JSON
and OSV (PyPI, Go), from files, directories or zips. Pure parsing: the import into the database is the
service's."""
from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cvss import CVSS3
from packaging.utils import canonicalize_name

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



# Debian's urgencies, Alpine's absence of any and OSV's GHSA levels and CVSS scores, mapped to Quay's set as in
# Clair's severity mapping (the seed's "Clair severity mapping").
DEBIAN_URGENCY = {"unimportant": "Low", "low": "Low", "medium": "Medium", "high": "High", "critical": "Critical"}
GHSA_SEVERITY = {"low": "Low", "moderate": "Medium", "medium": "Medium", "high": "High", "critical": "Critical"}
PROGRESS_EVERY = 500

Progress = Callable[[str, int], None]


def debian_severity(urgency: str | None) -> str:
    """Tracker urgencies may carry "**" (a guess) or be "not yet assigned" / "end-of-life": Unknown."""
    return DEBIAN_URGENCY.get((urgency or "").strip().rstrip("*").lower(), "Unknown")


def cvss3_severity(score: float) -> str:
    if score == 0:
        return "Negligible"
    if score < 4:
        return "Low"
    if score < 7:
        return "Medium"
    if score < 9:
        return "High"
    return "Critical"


def cvss2_severity(score: float) -> str:
    return "Low" if score < 4 else "Medium" if score < 7 else "High"


def osv_severity(entry: dict, affected: dict) -> str:
    for where in (affected.get("database_specific") or {}, entry.get("database_specific") or {}):
        level = where.get("severity") if isinstance(where, dict) else None
        if isinstance(level, str) and level.lower() in GHSA_SEVERITY:
            return GHSA_SEVERITY[level.lower()]
    for severity in list(affected.get("severity") or []) + list(entry.get("severity") or []):
        kind, score = severity.get("type"), severity.get("score", "")
        try:
            if kind == "CVSS_V3":
                return cvss3_severity(float(CVSS3(score).base_score))
            if kind == "CVSS_V2":
                from cvss import CVSS2

                return cvss2_severity(float(CVSS2(score).base_score))
        except Exception:  # noqa: BLE001 - a malformed vector is "no score", not a broken feed
            continue
    return "Unknown"


def with_digest(advisory: Advisory) -> Advisory:
    """The advisory with its content hash, for an incremental import (unchanged advisories are not rewritten)."""
    fields = asdict(advisory)
    fields.pop("digest")
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=list)
    return replace(advisory, digest=hashlib.sha256(canonical.encode()).hexdigest())


# ---------------------------------------------------------------------------------------------------------------
# Debian


def debian_tracker(data: dict, name: str) -> Iterator[Advisory]:
    """The security tracker's JSON: ``{source: {CVE: {description, releases: {codename: {status, fixed_version,
    urgency}}}}}``. ``resolved`` with a fixed version: fixed there; ``open`` / ``undetermined``: vulnerable with
    no fix; ``not-affected``, or a fixed version of ``0`` (the tracker's "never vulnerable"): no advisory."""
    if not isinstance(data, dict):
        raise FeedError(f"{name}: not a Debian security tracker document")
    for source, issues in data.items():
        if not isinstance(issues, dict):
            raise FeedError(f"{name}: {source!r} is not a map of issues")
        for issue, body in issues.items():
            if not isinstance(body, dict) or not isinstance(body.get("releases", {}), dict):
                raise FeedError(f"{name}: {source} {issue} is not an issue")
            for codename, release in body.get("releases", {}).items():
                status = release.get("status", "")
                fixed = release.get("fixed_version") or None
                if status == "not-affected" or fixed == "0":
                    continue
                if status in ("open", "undetermined"):
                    fixed = None
                elif status != "resolved" or not fixed:
                    continue
                yield with_digest(Advisory(
                    id=issue, ecosystem=f"debian:{codename}", package=source, fixed=fixed,
                    severity=debian_severity(release.get("urgency")),
                    description=body.get("description") or "",
                    link=f"https://security-tracker.debian.org/tracker/{issue}"))


_DSA_HEAD = re.compile(r"^\[(\d\d? \w+ \d{4})\] (D[SL]A-[\w-]+)\s*(.*)$")
_DSA_RELEASE = re.compile(r"^\s+\[(\w[\w-]*)\] - (\S+)(?: (\S+))?(?: .*)?$")


def debian_advisory_list(text: str, name: str) -> Iterator[Advisory]:
    """Debian's DSA and DLA lists: ``[date] DSA-N-1 source - title``, then ``{CVE ...}`` and per release
    ``[codename] - source fixed_version``; ``<not-affected>`` gives no advisory, ``<unfixed>`` and the other
    ``<...>`` markers (end-of-life, no-dsa, ignored, postponed) one without a fix."""
    current = None
    cves: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        head = _DSA_HEAD.match(line)
        if head:
            current = head
            cves = []
            continue
        if current is None:
            raise FeedError(f"{name}: line {number} comes before any advisory")
        stripped = line.strip()
        if stripped.startswith("{") and stripped.endswith("}"):
            cves = stripped[1:-1].split()
            continue
        if stripped.startswith("NOTE:"):
            continue
        release = _DSA_RELEASE.match(line)
        if not release:
            raise FeedError(f"{name}: line {number} does not parse: {line[:80]!r}")
        codename, source, version = release.group(1), release.group(2), release.group(3)
        if version == "<not-affected>":
            continue
        fixed = None if (version is None or version.startswith("<")) else version
        description = current.group(3).strip() + (f" ({', '.join(cves)})" if cves else "")
        yield with_digest(Advisory(
            id=current.group(2), ecosystem=f"debian:{codename}", package=source, fixed=fixed,
            severity="Unknown", description=description,
            link=f"https://security-tracker.debian.org/tracker/{current.group(2)}"))


# ---------------------------------------------------------------------------------------------------------------
# Alpine

_ALPINE_ID = re.compile(r"^[A-Z][A-Z0-9]*-[\w.-]+$")


def alpine_secdb(data: dict, name: str) -> Iterator[Advisory]:
    """Alpine's secdb: ``{distroversion, packages: [{pkg: {name, secfixes: {fixed_version: [ids]}}}]}``; a fixed
    version of ``0`` means never affected. Alpine gives no severity: Unknown."""
    branch = data.get("distroversion")
    if not isinstance(branch, str) or not isinstance(data.get("packages") or [], list):
        raise FeedError(f"{name}: not an Alpine secdb document (no distroversion or packages)")
    for entry in data.get("packages") or ():  # an empty repository says "packages": null
        pkg = (entry or {}).get("pkg") if isinstance(entry, dict) else None
        if not isinstance(pkg, dict) or not pkg.get("name"):
            raise FeedError(f"{name}: a package entry without pkg.name")
        for fixed, ids in (pkg.get("secfixes") or {}).items():
            if str(fixed) == "0" or fixed is None:
                continue
            for text in ids or ():
                for token in str(text).split():
                    if not _ALPINE_ID.match(token):
                        continue
                    yield with_digest(Advisory(
                        id=token, ecosystem=f"alpine:{branch}", package=pkg["name"], fixed=str(fixed),
                        severity="Unknown", description="",
                        link=f"https://security.alpinelinux.org/vuln/{token}"))


# ---------------------------------------------------------------------------------------------------------------
# OSV

OSV_ECOSYSTEMS = ("PyPI", "Go")


def osv_package_name(ecosystem: str, name: str) -> str:
    """The name advisories are looked up by: PyPI names normalized as PEP 503 says, Go module paths as they are."""
    return canonicalize_name(name) if ecosystem == "PyPI" else name


def osv_entry(entry: dict, name: str) -> Iterator[Advisory]:
    """One OSV entry: an advisory per affected package of a supported ecosystem, with its ECOSYSTEM / SEMVER
    ranges and ``versions`` list kept as ``(("ECOSYSTEM", ((event, version), ...)), ..., ("versions", (...)))``
    (GIT ranges need the repository's history and are left out)."""
    if not isinstance(entry, dict) or not entry.get("id"):
        raise FeedError(f"{name}: not an OSV entry (no id)")
    if entry.get("withdrawn"):
        return
    grouped: dict[tuple[str, str], list] = {}
    for affected in entry.get("affected") or ():
        package = affected.get("package") or {}
        ecosystem = package.get("ecosystem")
        if ecosystem not in OSV_ECOSYSTEMS or not package.get("name"):
            continue  # strictly the ecosystems matched here: "PyPI" is not "PyPI:something" nor anything else
        key = (ecosystem, osv_package_name(ecosystem, package["name"]))
        grouped.setdefault(key, []).append(affected)
    link = next((r.get("url") for r in entry.get("references") or () if r.get("type") == "ADVISORY"), None)
    for (ecosystem, package_name), affecteds in grouped.items():
        ranges: list = []
        fixes: list[str] = []
        for affected in affecteds:
            for range_ in affected.get("ranges") or ():
                if range_.get("type") not in ("ECOSYSTEM", "SEMVER"):
                    continue
                events = []
                for event in range_.get("events") or ():
                    for kind in ("introduced", "fixed", "last_affected", "limit"):
                        if kind in event:
                            events.append((kind, str(event[kind])))
                            if kind == "fixed":
                                fixes.append(str(event[kind]))
                ranges.append((range_["type"], tuple(events)))
            if affected.get("versions"):
                ranges.append(("versions", tuple(str(v) for v in affected["versions"])))
        if not ranges:
            continue
        yield with_digest(Advisory(
            id=entry["id"], ecosystem=ecosystem, package=package_name,
            fixed=fixes[-1] if fixes else None, affected_ranges=tuple(ranges),
            severity=osv_severity(entry, affecteds[0]),
            description=entry.get("summary") or entry.get("details") or "",
            link=link or f"https://osv.dev/vulnerability/{entry['id']}"))


# ---------------------------------------------------------------------------------------------------------------
# Files, directories, zips; which format is which


def _json(data: bytes, name: str):
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise FeedError(f"{name}: not valid JSON, truncated or corrupt ({error})") from None


def _json_format(document, name: str) -> str:
    if isinstance(document, dict):
        if "distroversion" in document and "packages" in document:
            return "alpine-secdb"
        if "id" in document and ("affected" in document or "modified" in document):
            return "osv"
        first = next(iter(document.values()), None)
        if first is None or (isinstance(first, dict) and all(isinstance(v, dict) and "releases" in v
                                                           for v in list(first.values())[:3])):
            return "debian-tracker"
    if isinstance(document, list) and all(isinstance(e, dict) and "id" in e for e in document[:3]):
        return "osv"
    raise FeedError(f"{name}: JSON of no known feed format (Debian tracker, Alpine secdb, OSV)")


def _document_advisories(data: bytes, name: str) -> tuple[str, Iterator[Advisory]]:
    """The format and advisories of one file's bytes."""
    stripped = data.lstrip()
    if re.match(rb"^\[\d\d? \w+ \d{4}\] D[SL]A-", stripped):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        return "debian-" + stripped[15:18].decode(errors="replace").strip().lower(), debian_advisory_list(text, name)
    if stripped[:1] in (b"{", b"["):
        document = _json(data, name)
        kind = _json_format(document, name)
        if kind == "alpine-secdb":
            return kind, alpine_secdb(document, name)
        if kind == "debian-tracker":
            return kind, debian_tracker(document, name)
        entries = document if isinstance(document, list) else [document]
        return kind, (a for e in entries for a in osv_entry(e, name))
    raise FeedError(f"{name}: not a known feed format (Debian tracker JSON, DSA/DLA list, Alpine secdb, OSV)")


def _zip_advisories(path: Path, name: str, on_progress: Progress | None) -> Iterator[Advisory]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise FeedError(f"{name}: not a readable zip, truncated or corrupt ({error})") from None
    with archive:
        for info in archive.infolist():
            if info.is_dir() or info.filename.startswith("__MACOSX/"):
                continue
            try:
                data = archive.read(info)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
                raise FeedError(f"{name}: {info.filename} cannot be read, truncated or corrupt ({error})") from None
            yield from _document_advisories(data, f"{name}:{info.filename}")[1]


def _counted(name: str, advisories: Iterable[Advisory], on_progress: Progress | None) -> Iterator[Advisory]:
    count = 0
    for advisory in advisories:
        count += 1
        if on_progress and count % PROGRESS_EVERY == 0:
            on_progress(name, count)
        yield advisory
    if on_progress:
        on_progress(name, count)


def _looks_like_feed(file: Path) -> bool:
    """In a directory, the files worth reading: JSON, zips and DSA/DLA lists (not fixtures, licences, notes)."""
    if file.name.startswith(".") or file.suffix in (".json", ".zip"):
        return not file.name.startswith(".")
    with open(file, "rb") as handle:
        return re.match(rb"^\[\d\d? \w+ \d{4}\] D[SL]A-", handle.read(64)) is not None


def _files(paths: list[Path]) -> Iterator[tuple[Path, str]]:
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if _looks_like_feed(file):
                    yield file, str(file.relative_to(path.parent))
        elif path.exists():
            yield path, path.name
        else:
            raise FeedError(f"{path}: no such file or directory")


def read_feeds(paths: list[Path], on_progress: Progress | None = None
               ) -> Iterator[tuple[str, Iterator[Advisory]]]:
    """The feeds under ``paths`` (files, directories, zips), each as ``(name, advisories)``: the name is the file's
    path relative to the argument's parent (``vulndata/osv/PyPI-all.zip``). The advisories are read lazily; a
    truncated or corrupt feed raises FeedError, saying which and why, while they are read (an import that
    stops there changes nothing). ``on_progress(name, count)`` is called every few hundred advisories."""
    for file, label in _files(paths):
        with open(file, "rb") as handle:
            magic = handle.read(4)
        if magic.startswith(b"PK"):
            yield label, _counted(label, _zip_advisories(file, label, on_progress), on_progress)
        else:
            yield label, _counted(label, _lazy_file(file, label), on_progress)


def _lazy_file(file: Path, name: str) -> Iterator[Advisory]:
    yield from _document_advisories(file.read_bytes(), name)[1]
