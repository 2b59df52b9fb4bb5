"""The repository's Tags tab: the alive tags, 100 a page, with size, expiry, security, platforms and labels;
delete, retag and set or clear an expiry, through the same functions as ``/api/v1/repository/.../tag``."""
from __future__ import annotations

from datetime import datetime, timezone

from registry import labels, tags
from registry.hooks import RegistryHooks
from slipway.errors import Invalid

from .repository import RepositoryTab

TAGS_PER_PAGE = 100
SEVERITIES = ("Critical", "High", "Medium", "Low", "Negligible", "Unknown")


def parse_expiry(text: str) -> int:
    """A ``datetime-local`` value (``YYYY-MM-DDTHH:MM``, read as UTC) as epoch seconds."""
    try:
        when = datetime.strptime(text.strip()[:16], "%Y-%m-%dT%H:%M").replace(tzinfo=timezone.utc)
    except ValueError:
        raise Invalid(f"'{text[:40]}' is not a date and time (YYYY-MM-DD HH:MM, UTC)") from None
    return int(when.timestamp())


def security_view(summary: dict | None) -> dict:
    """The tag list's ``security`` field as the page shows it: a status word and counts in severity order."""
    if not summary:
        return {"status": "not scanned", "counts": [], "fixable": 0}
    counts = summary.get("vulnerabilities") or {}
    ordered = [(s, counts[s]) for s in SEVERITIES if counts.get(s)]
    ordered += [(s, n) for s, n in sorted(counts.items()) if s not in SEVERITIES and n]
    status = {"queued": "not scanned yet", "failed": "scan failed", "unsupported": "unsupported"}.get(
        summary.get("status"), summary.get("status") or "not scanned")
    return {"status": status, "counts": ordered, "fixable": summary.get("fixable", 0)}


class TagsTab(RepositoryTab):
    """Each row links to ``?manage=<tag>``, which shows that row's forms (expiry, add tag, delete): a page
    of 100 tags stays small, and works without JavaScript."""

    name = "tags"
    label = "Tags"
    role = "read"

    async def get(self, page, repo, errors: dict | None = None, values: dict | None = None) -> None:
        pager = page.pager(TAGS_PER_PAGE)
        rows, pager.has_next = tags.list_tags(repo, None, True, pager.page, TAGS_PER_PAGE)
        page.services.registration.extension(RegistryHooks).tag_list(repo, rows)
        lists = [r["manifest_digest"] for r in rows if r["is_manifest_list"]]
        for row in rows:
            row["security_view"] = security_view(row.get("security"))
        manage = (values or {}).get("tag") or page.get_argument("manage", "")
        closed = page.url_with(manage=None)
        manage_prefix = closed + ("&" if "?" in closed else "?") + "manage="
        page.render_tab("repo_tags.html", rows=rows, pager=pager, platforms=tags.platforms(repo, lists), manage=manage,
                        manage_prefix=manage_prefix,
                        labels=labels.by_digest(repo, list({r["manifest_digest"] for r in rows})),
                        errors=errors or {}, values=values or {})

    def _tag(self, page) -> str:
        name = page.form("tag")
        if not name:
            raise Invalid("No tag named")
        return name

    async def do_delete(self, page, repo) -> str:
        repo = page.repository("write")
        name = self._tag(page)
        tags.delete_tag(repo, name, page.identity, page.client_ip)
        return f"Tag {name} deleted: it can be restored from the tag history within the time machine window."

    async def do_retag(self, page, repo) -> str:
        repo = page.repository("write")
        new = page.form("new_tag")
        if not new:
            raise Invalid("Enter the name of the new tag")
        digest = page.form("digest")
        self._update(page, repo, new, manifest_digest=digest)
        return f"Tag {new} now points at {digest[:19]}."

    async def do_expiry(self, page, repo) -> str:
        repo = page.repository("write")
        name = self._tag(page)
        if page.form("clear"):
            self._update(page, repo, name, expiration=None)
            return f"Tag {name} no longer expires."
        when = page.form("expires")
        if not when:
            raise Invalid("Choose when the tag expires")
        self._update(page, repo, name, expiration=parse_expiry(when))
        return f"Expiry of {name} set."

    def _update(self, page, repo, name: str, **change) -> None:
        limits = page.services.config.tags
        tags.update_tag(repo, name, page.identity, page.client_ip, min_seconds=limits.min_expiration_seconds,
                        max_seconds=limits.max_expiration_seconds, **change)
