"""The superuser's pages (``/superuser``): users (create, enable/disable, give or take superuser rights), every
organization, and the system's status (version, database, storage, build workers with their current builds,
queue lengths). Users are changed with the functions of ``/api/v1/superuser/users`` (``accounts.users``);
anyone else gets the 403 page."""
from __future__ import annotations

import secrets

from accounts import orgs, users
from builder import queue
from scanner import scans
from slipway import __version__
from slipway.db import database, is_postgres
from slipway.errors import Forbidden

from .tabbed import TabbedPage


class SuperuserPage(TabbedPage):
    tabs = (("users", "Users", False), ("organizations", "Organizations", False), ("status", "System status", False))
    template_prefix = "superuser"
    action_fields = {"create_user": "new_username"}

    def load(self) -> None:
        if not self.identity.superuser:
            raise Forbidden("Only superusers see the superuser pages")

    def show_users(self) -> dict:
        return {"users": users.list_users()}

    async def do_create_user(self) -> tuple:
        name, email = self.form("new_username"), self.form("new_email")
        password = self.get_body_argument("new_password", "")
        generated = None if password else secrets.token_urlsafe(12)
        user = await self.in_thread(users.create_user, name, password or generated, email or None,
                                    self.get_body_argument("new_superuser", "") == "on", self.identity,
                                    self.client_ip)
        return (f"User {user.name} created.", {"generated": {"name": user.name, "password": generated}}
                if generated else {})

    def _set(self, **change) -> str:
        user = users.set_status(users.get_user(self.form("username")), self.identity, self.client_ip, **change)
        state = ("enabled" if user.enabled else "disabled") if "enabled" in change else \
            ("a superuser" if user.superuser else "no longer a superuser")
        return f"{user.name} is {state}."

    def do_enable(self) -> str:
        return self._set(enabled=True)

    def do_disable(self) -> str:
        return self._set(enabled=False)

    def do_make_superuser(self) -> str:
        return self._set(superuser=True)

    def do_revoke_superuser(self) -> str:
        return self._set(superuser=False)

    def show_organizations(self) -> dict:
        return {"organizations": orgs.list_orgs()}

    def show_status(self) -> dict:
        config = self.services.config
        database.execute_sql("SELECT 1")  # the page fails loudly if the database does not answer
        storage = config.storage
        return {
            "version": __version__,
            "database": "PostgreSQL" if is_postgres() else "SQLite",
            "storage": storage.driver + (f" ({storage.path})" if storage.driver == "filesystem" and storage.path
                                         else ""),
            "workers_configured": config.builds.workers if config.server.workers else 0,
            "max_concurrent": config.builds.max_concurrent,
            "queue": queue.overview(),
            "scans_queued": scans.queue_length() if config.scanner.enabled else None,
        }


default_handlers = [(r"/superuser/?", SuperuserPage)]
