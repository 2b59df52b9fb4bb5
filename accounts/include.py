"""Everything accounts brings to the application, declared in one place (called by ``slipway.app``)."""
from __future__ import annotations

from . import handlers, handlers_logs, handlers_robots, handlers_tokens, migrations, sessions


def includeme(reg) -> None:
    reg.add_migrations("accounts", migrations.MIGRATIONS)
    for module in (handlers, handlers_robots, handlers_tokens, handlers_logs):
        reg.add_routes(module.default_handlers)
    reg.add_jobs(sessions.register)
