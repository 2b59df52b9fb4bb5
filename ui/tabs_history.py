"""The repository's Tag history tab: what happened to each tag (created, moved, deleted, expired), newest
first, with "restore" and "revert to this digest" within the namespace's time machine window
(``registry.tags.restore_tag``, as ``POST /api/v1/repository/.../tag/<tag>/restore``)."""
from __future__ import annotations

import json

from accounts import audit
from accounts.models import DEFAULT_TIME_MACHINE
from registry import tags
from slipway.db import now_ms
from slipway.errors import Invalid

from .repository import RepositoryTab

SPANS_PER_PAGE = 100
#: How far apart a tag's end and its ``delete_tag`` audit entry may be (the same transaction).
SAME_MOMENT_MS = 2000


def timeline(rows: list[dict], deletions: list[tuple[str, int]], now: int, window_s: int) -> list[dict]:
    """Events from a page of tag spans (newest first): a span's start is a creation or a move (when the
    same tag's previous span ended at that moment); its end, when past and not a move, is a deletion
    (a ``delete_tag`` audit entry at that moment) or an expiry. Ends within the window are restorable."""
    ends = {(r["name"], r["end_ts"] * 1000): r for r in rows if r.get("end_ts")}
    starts = {(r["name"], r["start_ts"] * 1000): r for r in rows}
    alive = {r["name"]: r["manifest_digest"] for r in rows if not r.get("end_ts") or r["end_ts"] * 1000 > now}
    events = []
    for r in rows:
        start = r["start_ts"] * 1000
        previous = ends.get((r["name"], start))  # (the list gives whole seconds: a move ends and starts at once)
        if previous is not None and previous is not r:
            events.append({"kind": "moved", "at": start, "tag": r["name"], "digest": r["manifest_digest"],
                           "from": previous["manifest_digest"]})
        else:
            events.append({"kind": "created", "at": start, "tag": r["name"], "digest": r["manifest_digest"]})
        if not r.get("end_ts"):
            continue
        end = r["end_ts"] * 1000
        if end > now:
            events.append({"kind": "expires", "at": end, "tag": r["name"], "digest": r["manifest_digest"]})
            continue
        successor = starts.get((r["name"], end))
        moved = successor is not None and successor is not r
        restorable = end >= now - window_s * 1000 and alive.get(r["name"]) != r["manifest_digest"]
        if not moved:
            deleted = any(name == r["name"] and abs(at - end) <= SAME_MOMENT_MS for name, at in deletions)
            events.append({"kind": "deleted" if deleted else "expired", "at": end, "tag": r["name"],
                           "digest": r["manifest_digest"], "restore": restorable})
        elif restorable:
            events.append({"kind": "revertible", "at": end, "tag": r["name"], "digest": r["manifest_digest"],
                           "restore": True})
    events.sort(key=lambda e: e["at"], reverse=True)
    return events


class HistoryTab(RepositoryTab):
    name = "history"
    label = "Tag history"
    role = "read"

    async def get(self, page, repo, errors: dict | None = None, values: dict | None = None) -> None:
        pager = page.pager(SPANS_PER_PAGE)
        rows, pager.has_next = tags.list_tags(repo, page.get_argument("tag", None) or None, False, pager.page,
                                              SPANS_PER_PAGE)
        now = now_ms()
        window = repo.namespace.time_machine_s if repo.namespace.time_machine_s is not None else DEFAULT_TIME_MACHINE
        deletions = []
        ended = [r["end_ts"] * 1000 for r in rows if r.get("end_ts")]
        if ended:
            for entry in audit.entries_of_kind("delete_tag", min(ended) - SAME_MOMENT_MS, max(ended) + SAME_MOMENT_MS,
                                               repository_id=repo.id, since=repo.created_at):
                deletions.append((json.loads(entry.metadata or "{}").get("tag"), entry.created_at))
        page.render_tab("repo_history.html", events=timeline(rows, deletions, now, window), pager=pager,
                        window_s=window, tag_filter=page.get_argument("tag", ""), errors=errors or {},
                        values=values or {})

    async def do_restore(self, page, repo) -> str:
        repo = page.repository("write")
        name, digest = page.form("tag"), page.form("digest")
        if not name or not digest:
            raise Invalid("Name the tag and the digest to restore")
        tags.restore_tag(repo, name, digest, page.identity, page.client_ip)
        return f"Tag {name} points at {digest[:19]} again."
