"""One registration point per package, in the spirit of warehouse's ``includeme``.

Each package has one function, ``<package>.include.includeme(reg)``, that declares everything the
package brings: its HTTP routes, its schema migrations, its background jobs, its special logins
(``$build``) and its hooks into packages below it. The composition root (``slipway.app``) makes one
``Registration`` per process, calls every package's ``includeme`` in dependency order, and reads the
result; nothing is registered as a side effect of importing a module.

Hooks are typed: a package below defines a hooks class (``builder.hooks.BuildHooks``), and every
package that uses it asks ``reg.extension(BuildHooks)`` for the one instance of this registration.
"""
from __future__ import annotations

from typing import Callable


class Registration:
    def __init__(self, config=None):
        self.config = config  # None when only the migrations are wanted
        self.routes: list = []
        self.fallback_routes: list = []
        self.migrations: list[tuple[str, list]] = []
        self.jobs: list[Callable] = []
        self.logins: dict[str, Callable] = {}
        self.startup: list[Callable] = []
        self._extensions: dict[type, object] = {}

    def include(self, includeme: Callable) -> "Registration":
        includeme(self)
        return self

    def add_routes(self, routes: list, fallback: list = ()) -> None:
        """Tornado routes, in order; ``fallback`` routes (catch-alls) go after every package's own."""
        self.routes.extend(routes)
        self.fallback_routes.extend(fallback)

    def add_migrations(self, component: str, steps: list) -> None:
        """``steps = [(number, name, fn)]``; components migrate in the order they are included."""
        if any(name == component for name, _ in self.migrations):
            raise RuntimeError(f"migrations of {component} registered twice")
        self.migrations.append((component, steps))

    def add_jobs(self, register: Callable) -> None:
        """``register(background)`` adds the package's scheduled jobs to a ``slipway.background.Background``
        (in ``slipway serve``'s background process and in every ``slipway worker``)."""
        self.jobs.append(register)

    def add_login(self, username: str, check: Callable) -> None:
        """A special login: ``check(secret) -> Identity | None`` answers logins as ``username``."""
        if username in self.logins:
            raise RuntimeError(f"the login {username} is registered twice")
        self.logins[username] = check

    def add_startup(self, fn: Callable) -> None:
        """``fn(config)``, called once per process when its services are built."""
        self.startup.append(fn)

    def extension(self, cls: type):
        """The one instance of the hooks class ``cls`` for this registration (made on first use)."""
        if cls not in self._extensions:
            self._extensions[cls] = cls()
        return self._extensions[cls]

    def job_registrars(self) -> list[Callable]:
        return list(self.jobs)
