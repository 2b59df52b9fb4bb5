"""The repository's Usage logs tab: audit entries of a date range (and kind), a chart of actions per day drawn
on the server (SVG), and an export of the range (``?export=csv`` or ``?export=json``: JSON lines, as the API's
``exportlogs``). Administrators only, as ``/api/v1/repository/<repo>/logs``; the entries come from
``accounts.audit`` (``page``, ``aggregate``, ``export_lines``) with the same scope as that API."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

from accounts import audit
from slipway.db import now_ms
from slipway.errors import Invalid

from .repository import RepositoryTab

DAY_MS = 86400 * 1000
MAX_DAYS = 366
CHART_WIDTH, CHART_HEIGHT = 600, 140


def day_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d")


def per_day(aggregated: list[dict], start: int, end: int, kind: str | None) -> list[tuple[str, int]]:
    """Actions per UTC day of the range (days without any included, so the chart's gaps are real)."""
    counts: dict[str, int] = {}
    for row in aggregated:
        if kind and row["kind"] != kind:
            continue
        day = datetime.strptime(row["datetime"][5:16], "%d %b %Y").strftime("%Y-%m-%d")  # Quay's date, UTC
        counts[day] = counts.get(day, 0) + row["count"]
    first = start // DAY_MS * DAY_MS
    return [(day_text(ms), counts.get(day_text(ms), 0)) for ms in range(first, end + 1, DAY_MS)]


def chart(days: list[tuple[str, int]]) -> dict:
    """Bars for an SVG (coordinates only: the template draws them, with a title per bar)."""
    top = max([count for _, count in days] + [1])
    width = CHART_WIDTH / max(len(days), 1)
    bars = []
    for i, (day, count) in enumerate(days):
        height = round(count / top * (CHART_HEIGHT - 20), 1)
        bars.append({"day": day, "count": count, "x": round(i * width + 1, 1), "w": round(max(width - 2, 1), 1),
                     "y": round(CHART_HEIGHT - 14 - height, 1), "h": height})
    return {"bars": bars, "top": top, "width": CHART_WIDTH, "height": CHART_HEIGHT}


class LogsTab(RepositoryTab):
    name = "logs"
    label = "Usage logs"
    role = "admin"

    def date_range(self, page) -> tuple[int, int]:
        end = audit.parse_day(page.get_argument("end", None), now_ms(), end_of_day=True)
        start = audit.parse_day(page.get_argument("start", None), end - 7 * DAY_MS + 1)
        if start > end:
            raise Invalid("The start date is after the end date")
        if end - start > MAX_DAYS * DAY_MS:
            raise Invalid(f"Choose a range of at most {MAX_DAYS} days")
        return start, end

    async def get(self, page, repo, errors: dict | None = None, values: dict | None = None) -> None:
        start, end = self.date_range(page)
        kind = page.get_argument("kind", "")[:64] or None
        scope = {"repository_id": repo.id, "since": repo.created_at}
        export = page.get_argument("export", "")
        if export:
            await self.export(page, repo, export, start, end, {**scope, "kind": kind})
            return
        rows, next_page = await page.in_thread(
            lambda: audit.page(start, end, page.get_argument("next_page", None), kind=kind, **scope))
        aggregated = await page.in_thread(lambda: audit.aggregate(start, end, **scope))
        kinds = sorted({row["kind"] for row in aggregated} | ({kind} if kind else set()))
        entries = [{"row": r, "view": audit.view(r)} for r in rows]
        page.render_tab("repo_logs.html", entries=entries, next_page=next_page, kinds=kinds, kind=kind or "",
                        start=day_text(start), end=day_text(end), chart=chart(per_day(aggregated, start, end, kind)))

    async def export(self, page, repo, export: str, start: int, end: int, scope: dict) -> None:
        if export not in ("csv", "json"):
            raise Invalid("Export as csv or json")
        lines = await page.in_thread(lambda: list(audit.export_lines(start, end, **scope)))
        name = f"{repo.full_name.replace('/', '_')}-logs-{day_text(start)}-{day_text(end)}"
        if export == "json":
            page.set_header("Content-Type", "application/x-ndjson; charset=UTF-8")
            page.set_header("Content-Disposition", f'attachment; filename="{name}.jsonl"')
            page.finish("".join(lines))
            return
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["datetime", "kind", "performer", "ip", "metadata"])
        for line in lines:
            entry = json.loads(line)
            writer.writerow([entry["datetime"], entry["kind"], (entry.get("performer") or {}).get("name", ""),
                             entry.get("ip") or "", json.dumps(entry["metadata"], sort_keys=True)])
        page.set_header("Content-Type", "text/csv; charset=UTF-8")
        page.set_header("Content-Disposition", f'attachment; filename="{name}.csv"')
        page.finish(out.getvalue())
