"""The composition root: every package's registration, the services shared by handlers, the Tornado routes.

This module (with ``server.py`` and ``cli.py``, which run what it assembles) is the only place
that names every package; the core (the rest of ``slipway``) and the domain packages never import
it. Packages are included in dependency order, which is also the order their migrations run in.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tornado.web import Application

import accounts.include
import builder.include
import registry.include
import scanner.include
import triggers.include
import ui.include
import webhooks.include
from accounts.login import Authenticator
from registry.drivers import open_storage
from registry.readpath import ReadPath
from registry.storage import Storage
from registry.tokens import TokenService, service_of

from . import api, crypto, db, migrate
from .config import Config
from .include import includeme as core_includeme
from .registration import Registration
from .web import SlipwayApplication

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

# Dependency order: a package's tables and hooks are in place before those of the packages above it.
PACKAGES = [core_includeme, accounts.include.includeme, registry.include.includeme,
            builder.include.includeme, triggers.include.includeme, webhooks.include.includeme,
            scanner.include.includeme, ui.include.includeme]


def registration(config: Config | None = None) -> Registration:
    """Every package's declarations (routes, migrations, jobs, logins, hooks), made once per process."""
    reg = Registration(config)
    for includeme in PACKAGES:
        reg.include(includeme)
    return reg


def migrations() -> list:
    """``[(component, steps)]`` of every package, in the order they migrate."""
    return registration().migrations


@dataclass
class Services:
    config: Config
    storage: Storage
    tokens: TokenService
    authenticator: Authenticator  # handed to the HTTP layer (slipway.api, /v2): it imports no account rules
    registration: Registration


def open_db(config: Config, run_migrations: bool = True) -> None:
    db.bind(db.open_database(config.database_url))
    crypto.configure(config.secret_key())  # migrations encrypt what older versions stored in plaintext
    if run_migrations:
        migrate.migrate(migrations())


def build_services(config: Config) -> Services:
    crypto.configure(config.secret_key())
    reg = registration(config)
    for start in reg.startup:
        start(config)
    return Services(
        config=config,
        storage=open_storage(config),
        tokens=TokenService(config.secret_key(), config.auth.token_ttl, service_of(config.server.public_url)),
        authenticator=Authenticator(reg.logins, config.auth.robots_enabled),
        registration=reg,
    )


def routes(reg: Registration) -> list:
    """Every package's routes in registration order, then the catch-alls, then the API's own last resorts."""
    return reg.routes + reg.fallback_routes + [(rf"{api.API}/openapi.json", api.OpenApiHandler),
                                               (rf"{api.API}/discovery", api.OpenApiHandler),
                                               (rf"{api.API}/.*", api.ApiNotFoundHandler)]


def http_delegate(app: Application, services: Services):
    """What the HTTP server hands each request to: the registry's read path in front of ``app``
    (``server.read_path``), or ``app`` itself."""
    return ReadPath(app, services) if services.config.server.read_path else app


def make_app(services: Services) -> Application:
    handlers = routes(services.registration)
    settings = {
        "services": services,
        "routes": handlers,
        "template_path": str(TEMPLATES),
        "xsrf_cookies": False,
    }
    if not services.config.server.access_log:
        settings["log_function"] = lambda handler: None
    return SlipwayApplication(handlers, **settings)
