"""Everything the web interface brings to the application, declared in one place (called by ``slipway.app``).

Pages of a new module: ``reg.add_routes(module.default_handlers)``; a new repository tab:
``reg.extension(RepositoryTabs).add(module.SomeTab())``; a link in the header:
``reg.extension(Navigation).add(label, href, who=, menu=)`` (``ui.navigation``). ``ui`` is included
last, so its catch-all 404 page comes after every package's routes.
"""
from __future__ import annotations

from . import (
    handlers_account,
    handlers_home,
    handlers_manifest,
    handlers_orgs,
    handlers_session,
    handlers_superuser,
    templates,
)
from .navigation import Navigation
from .repository import REPO_PATH, RepositoryPage, RepositoryTabs
from .tabs_history import HistoryTab
from .tabs_info import InfoTab
from .tabs_settings import SettingsTab
from .tabs_tags import TagsTab


def includeme(reg) -> None:
    reg.add_routes([(r"/static/ui/(.*)", templates.StaticHandler)])
    reg.add_routes(handlers_session.default_handlers)
    reg.add_routes(handlers_home.default_handlers)
    for module in (handlers_orgs, handlers_account, handlers_superuser, handlers_manifest):
        reg.add_routes(module.default_handlers)
    nav = reg.extension(Navigation)
    nav.add("Organizations", "/organizations")
    nav.add("Superuser", "/superuser", who="superuser")
    nav.add("Account settings", "/account", menu="user")
    nav.add("New organization", "/organization/new", menu="user")
    tabs = reg.extension(RepositoryTabs)
    for tab in (InfoTab(), TagsTab(), HistoryTab()):
        tabs.add(tab)
    # (the builds, triggers, notifications and usage-logs tabs go here, before settings)
    from . import include_builds  # the build and automation pages (their own registration)
    include_builds.includeme(reg)
    tabs.add(SettingsTab())
    # The repository page's pattern would also match deeper pages' paths (.../build/<uuid>): last.
    reg.add_routes([], fallback=[(rf"{REPO_PATH}/?", RepositoryPage)] + handlers_home.fallback_handlers)
