"""The repository's Information tab: pull commands, the description (Markdown, safely), recent activity."""
from __future__ import annotations

from accounts import audit
from registry import repos
from slipway.db import now_ms

from .repository import RepositoryTab

DAY_MS = 86_400_000
ACTIVITY_DAYS = 30
#: The audit kinds counted as pulls and pushes (the registry records them for every client).
PULLS, PUSHES = "pull_repo", "push_repo"


def activity(repo, days: int = ACTIVITY_DAYS, now: int | None = None) -> list[dict]:
    """Pulls and pushes per UTC day for the last ``days`` days, oldest first (``audit.daily_counts``,
    what the API's aggregatelogs counts)."""
    now = now_ms() if now is None else now
    start = now // DAY_MS * DAY_MS - (days - 1) * DAY_MS
    counts = audit.daily_counts(start, now + 1, (PULLS, PUSHES), repository_id=repo.id, since=repo.created_at)
    return [{"day": day, "pulls": counts.get((PULLS, day), 0), "pushes": counts.get((PUSHES, day), 0)}
            for day in range(start, start + days * DAY_MS, DAY_MS)]


def chart(days: list[dict], width: int = 600, height: int = 120) -> dict:
    """Bar geometry for a server-rendered SVG: two bars a day (pulls, pushes), scaled to the busiest day."""
    top = max([max(d["pulls"], d["pushes"]) for d in days] + [1])
    slot = width / max(len(days), 1)
    bar = max(slot / 2 - 1, 1)
    bars = []
    for i, d in enumerate(days):
        for j, (kind, value) in enumerate((("pull", d["pulls"]), ("push", d["pushes"]))):
            h = round(value / top * (height - 4), 1)
            bars.append({"x": round(i * slot + j * bar, 1), "y": round(height - h, 1), "w": round(bar, 1),
                         "h": h, "kind": kind, "value": value, "day": d["day"]})
    return {"width": width, "height": height, "bars": bars, "top": top,
            "pulls": sum(d["pulls"] for d in days), "pushes": sum(d["pushes"] for d in days)}


class InfoTab(RepositoryTab):
    name = "info"
    label = "Information"
    role = "read"

    async def get(self, page, repo, errors: dict | None = None, values: dict | None = None) -> None:
        days = await page.in_thread(activity, repo)
        page.render_tab("repo_info.html", chart=chart(days), days=len(days), errors=errors or {},
                        values=values or {})

    async def do_description(self, page, repo) -> str:
        page.repository("admin")
        repos.set_description(repo, page.get_body_argument("description", ""), page.identity, page.client_ip)
        return "Description saved."
