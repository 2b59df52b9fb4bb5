"""The repository's Information tab: pull commands, the description (Markdown, safely), recent activity."""
from __future__ import annotations

from .repository import RepositoryTab


class InfoTab(RepositoryTab):
    name = "info"
    label = "Information"
    role = "read"

    async def get(self, page, repo) -> None:
        page.render_tab("repo_info.html")
