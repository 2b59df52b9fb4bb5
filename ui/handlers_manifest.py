"""A manifest's vulnerabilities: ``/repository/<ns>/<name>/manifest/<digest>`` (the tags tab links here).

The report is ``scanner.security.security`` — what ``GET /api/v1/repository/.../manifest/<digest>/security``
answers — shown as packages with their vulnerabilities (advisory links, fixed-by versions) and the layer that
added each package, filtered by ``?severity=`` (that level or worse) and ``?fixable=1``; or the state of a
manifest not scanned yet, unsupported, or failed. An index lists its platform manifests, each linking to its
own page.
"""
from __future__ import annotations

from scanner import security
from scanner.feeds import SEVERITIES

from .repository import REPO_PATH, RepositoryHandler

DIGEST = r"(?P<digest>sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})"


def packages(report: dict, minimum: str | None, fixable_only: bool) -> tuple[list, dict]:
    """(packages shown, counts by severity over the whole image) from a scanned report: each package
    ``{name, version, kind, added_by, vulnerabilities: [...]}`` with only the vulnerabilities the filters keep,
    the most severe first. Without a filter every package is listed."""
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    floor = rank.get(minimum or "", 0)
    counts: dict = {}
    shown = []
    for feature in report["data"]["Layer"]["Features"]:
        vulns = feature.get("Vulnerabilities", [])
        for v in vulns:
            counts[v["Severity"]] = counts.get(v["Severity"], 0) + 1
        kept = [v for v in vulns if rank.get(v["Severity"], 0) >= floor and (v["FixedBy"] or not fixable_only)]
        kept.sort(key=lambda v: (-rank.get(v["Severity"], 0), v["Name"]))
        if kept or not (minimum or fixable_only):
            shown.append({"name": feature["Name"], "version": feature["Version"], "kind": feature["VersionFormat"],
                          "added_by": feature["AddedBy"], "vulnerabilities": kept})
    # the worst first: by the highest severity a package has, then how many, then by name
    shown.sort(key=lambda p: (-max((rank.get(v["Severity"], 0) + 1 for v in p["vulnerabilities"]), default=0),
                              -len(p["vulnerabilities"]), p["name"]))
    return shown, counts


class ManifestPage(RepositoryHandler):
    async def get(self, namespace: str, repository: str, digest: str) -> None:
        repo = self.repository("read")
        manifest = security.manifest_in(repo, digest)
        if manifest is None:
            raise self.not_found(f"There is no manifest {digest} in {repo.full_name}")
        report = security.security(manifest, True, self.services.config.scanner.enabled)
        minimum = self.get_argument("severity", "")
        if minimum not in SEVERITIES:
            minimum = ""
        fixable_only = self.get_argument("fixable", "") in ("1", "on", "true")
        shown, counts = ([], {})
        if report["status"] == "scanned" and report.get("data"):
            shown, counts = packages(report, minimum, fixable_only)
        self.render("manifest.html", repo=repo, digest=digest, report=report, packages=shown, counts=counts,
                    severities=list(reversed(SEVERITIES)), minimum=minimum, fixable_only=fixable_only,
                    repo_url=lambda tab=None: self.repo_url(repo, tab))


default_handlers = [(rf"{REPO_PATH}/manifest/{DIGEST}/?", ManifestPage)]
