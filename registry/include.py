"""Everything the registry brings to the application, declared in one place (called by ``slipway.app``)."""
from __future__ import annotations

from . import handlers, handlers_api, handlers_grants, handlers_tags, jobs, migrations


def includeme(reg) -> None:
    reg.add_migrations("registry", migrations.MIGRATIONS)
    reg.add_routes(handlers.default_handlers)
    reg.add_routes(handlers_api.default_handlers, fallback=handlers_api.fallback_handlers)
    reg.add_routes(handlers_tags.default_handlers)
    reg.add_routes(handlers_grants.default_handlers)
    reg.add_jobs(jobs.register)
