"""Everything the scanner brings to the application, declared in one place (called by ``slipway.app``)."""
from __future__ import annotations

from registry.hooks import RegistryHooks

from . import handlers, jobs, migrations, security


def includeme(reg) -> None:
    reg.add_migrations("scanner", migrations.MIGRATIONS)
    reg.add_routes(handlers.default_handlers)
    reg.add_jobs(jobs.register)
    reg.extension(RegistryHooks).on_tag_list(security.tag_summaries)
