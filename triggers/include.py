"""Everything triggers bring to the application, declared in one place (called by ``slipway.app``)."""
from __future__ import annotations

from builder.hooks import BuildHooks

from . import handlers, migrations, service, settle


def includeme(reg) -> None:
    reg.add_migrations("triggers", migrations.MIGRATIONS)
    reg.add_routes(handlers.default_handlers)
    reg.add_startup(service.install)
    hooks = reg.extension(BuildHooks)
    hooks.set_git_source(settle.git_source)  # the builder clones a trigger's build from what it hands over
    hooks.on_build_end(lambda build, phase: service.record_outcome(build, phase, reg.config))
