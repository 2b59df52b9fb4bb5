"""What the security API answers (Quay's shapes), from stored scans; no layer is read here."""
from __future__ import annotations

import json

from registry.manifests import INDEX_TYPES
from registry.models import Manifest, ManifestChild

from .index import INDEXER_VERSION
from .models import FAILED, QUEUED, SCANNED, UNSUPPORTED, ManifestScan
from .scans import queue

VERSION_FORMATS = {"dpkg": "dpkg", "apk": "apk", "python": "pypi", "go": "go", "go-stdlib": "go"}


def _indexed_by() -> int | str:
    return int(INDEXER_VERSION) if str(INDEXER_VERSION).isdigit() else INDEXER_VERSION


def layer_data(scan: ManifestScan, vulnerabilities: bool) -> dict:
    """Quay's ``data``: one ``Layer`` (the image) with its ``Features`` and, if asked, their vulnerabilities."""
    image = json.loads(scan.image)
    distribution = image["distribution"]
    namespace = f"{distribution['id']}:{distribution['version_id']}" if distribution else ""
    by_package: dict[int, list] = {}
    for f in json.loads(scan.findings or "[]"):
        by_package.setdefault(f["package"], []).append(f)
    features = []
    for i, package in enumerate(image["packages"]):
        found = sorted(by_package.get(i, []), key=lambda f: f["id"])
        feature = {"Name": package["name"], "Version": package["version"],
                   "VersionFormat": VERSION_FORMATS.get(package["kind"], package["kind"]),
                   "NamespaceName": namespace if package["kind"] in ("dpkg", "apk") else
                   VERSION_FORMATS.get(package["kind"], package["kind"]),
                   "AddedBy": package.get("added_by", ""), "BaseScores": [],
                   "CVEIds": [f["id"] for f in found if f["id"].startswith("CVE-")]}
        if vulnerabilities:
            feature["Vulnerabilities"] = [{
                "Name": f["id"], "NamespaceName": f["ecosystem"], "Severity": f["severity"], "Link": f["link"],
                "FixedBy": f["fixed_by"] or "", "Description": f["description"], "Metadata": {}} for f in found]
        features.append(feature)
    return {"Layer": {"Name": scan.digest, "ParentName": "", "NamespaceName": namespace,
                      "IndexedByVersion": _indexed_by(), "Features": features}}


def status_of(digest: str, vulnerabilities: bool, enabled: bool = True) -> dict:
    scan = ManifestScan.get_or_none(ManifestScan.digest == digest)
    if scan is None:
        if not enabled:
            return {"status": UNSUPPORTED, "data": None, "reason": "the scanner is disabled on this server"}
        return {"status": QUEUED, "data": None}
    if scan.status != SCANNED:
        body = {"status": scan.status, "data": None}
        if scan.reason:
            body["reason"] = scan.reason
        return body
    return {"status": SCANNED, "data": layer_data(scan, vulnerabilities)}


def _children(manifest: Manifest) -> list[tuple[str, dict]]:
    """An index's platform manifests: (digest, platform) in the index's order."""
    document = json.loads(bytes(manifest.content))
    return [(d["digest"], d.get("platform") or {}) for d in document.get("manifests", [])]


def security(manifest: Manifest, vulnerabilities: bool, enabled: bool = True) -> dict:
    """The security report of a manifest of a repository. An index answers for each platform manifest
    (``manifests``: digest, platform and its own report); its own status is the least advanced of theirs."""
    if manifest.media_type not in INDEX_TYPES:
        return status_of(manifest.digest, vulnerabilities, enabled)
    platforms = []
    for digest, platform in _children(manifest):
        platforms.append({"digest": digest, "platform": platform, **status_of(digest, vulnerabilities, enabled)})
    return {"status": least_advanced({p["status"] for p in platforms}), "data": None, "manifests": platforms}


def least_advanced(statuses: set) -> str:
    """The status of an index from its platform manifests': queued, else failed, else scanned, else unsupported."""
    return next((s for s in (QUEUED, FAILED, SCANNED) if s in statuses), UNSUPPORTED)


def rescan(manifest: Manifest) -> list[str]:
    """Queue the manifest (or each platform manifest of an index) again; the digests queued."""
    digests = ([d for d, _ in _children(manifest)] if manifest.media_type in INDEX_TYPES else [manifest.digest])
    for digest in digests:
        queue(digest, force=True)
    return digests


def manifest_in(repo, digest: str) -> Manifest | None:
    return Manifest.get_or_none((Manifest.repository == repo) & (Manifest.digest == digest)
                                & Manifest.deleted_at.is_null())





def _add(total: dict, summary: dict) -> None:
    for key, n in summary.items():
        total[key] = total.get(key, 0) + n


def tag_summaries(repo, rows: list[dict]) -> None:
    """Each tag row gains ``security``: ``{"status", "vulnerabilities": {severity: n}, "fixable": n}``, from
    the summaries stored with each scan (two queries for a page; an index sums its platform manifests)."""
    if not rows:
        return
    digests = {r["manifest_digest"] for r in rows}
    children: dict[str, list[str]] = {}
    lists = {r["manifest_digest"] for r in rows if r.get("is_manifest_list")}
    if lists:
        Child = Manifest.alias()
        for parent, child in (Manifest.select(Manifest.digest, Child.digest)
                              .join(ManifestChild, on=(ManifestChild.manifest == Manifest.id))
                              .join(Child, on=(ManifestChild.child == Child.id))
                              .where((Manifest.repository == repo) & Manifest.digest.in_(list(lists)))
                              .tuples()):
            children.setdefault(parent, []).append(child)
    wanted = digests | {c for cs in children.values() for c in cs}
    scans = {d: (status, json.loads(summary) if summary else None) for d, status, summary in
             ManifestScan.select(ManifestScan.digest, ManifestScan.status, ManifestScan.summary)
             .where(ManifestScan.digest.in_(list(wanted))).tuples()}
    for row in rows:
        parts = children.get(row["manifest_digest"]) if row.get("is_manifest_list") else [row["manifest_digest"]]
        status = least_advanced({scans.get(d, (QUEUED, None))[0] for d in parts or []})
        total: dict = {}
        for d in parts or []:
            _add(total, scans.get(d, (None, None))[1] or {})
        fixable = total.pop("fixable", 0)
        row["security"] = {"status": status, "vulnerabilities": total, "fixable": fixable}
