"""Everything builds bring to the application, declared in one place (called by ``slipway.app``)."""
from __future__ import annotations

from . import builds, handlers, jobs, migrations
from .hooks import BuildHooks


def includeme(reg) -> None:
    reg.add_migrations("builder", migrations.MIGRATIONS)
    reg.add_routes(handlers.default_handlers)
    reg.add_login(builds.BUILD_USER, builds.identity_for_build_secret)
    hooks = reg.extension(BuildHooks)  # filled by the packages above (triggers) in their own includeme
    reg.add_jobs(lambda background: jobs.register(background, hooks))
