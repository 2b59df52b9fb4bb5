"""The build and automation pages (issue 15): the Builds, Triggers, Notifications and Usage logs tabs of the
repository page, the build page, and the forms they post to. Called from ``ui.include``."""
from __future__ import annotations

from . import tabs_builds, tabs_logs, tabs_notifications, tabs_triggers
from .repository import RepositoryTabs


def includeme(reg) -> None:
    reg.add_routes(tabs_builds.default_handlers)
    tabs = reg.extension(RepositoryTabs)
    tabs.add(tabs_builds.BuildsTab())
    tabs.add(tabs_triggers.TriggersTab())
    tabs.add(tabs_notifications.NotificationsTab())
    tabs.add(tabs_logs.LogsTab())
