"""The core's own registration: its migrations (the event table) and the shell pages."""
from __future__ import annotations

from . import handlers, migrations


def includeme(reg) -> None:
    reg.add_migrations("slipway", migrations.MIGRATIONS)
    reg.add_routes(handlers.default_handlers)
