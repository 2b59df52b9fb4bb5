"""Assembling the application: services shared by handlers, and the Tornado routes of every package."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from tornado.web import Application

from registry.storage import Storage, open_storage
from registry.tokens import TokenService, service_of

from . import api, crypto, db, migrate
from .config import Config
from .web import SlipwayApplication

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# Each module exports ``default_handlers`` (routed in this order) and may export
# ``fallback_handlers``: catch-all routes placed after every module's own.
HANDLER_MODULES = [
    "registry.handlers",
    "registry.handlers_api",
    "registry.handlers_tags",
    "accounts.handlers",
    "accounts.handlers_robots",
    "accounts.handlers_tokens",
    "accounts.handlers_logs",
    "builder.handlers",
    "triggers.handlers",
    "webhooks.handlers",
    "slipway.handlers",
]


# Packages that hook into others (triggers count build outcomes) install their hooks per process.
INSTALL_MODULES = ["triggers.service"]


@dataclass
class Services:
    config: Config
    storage: Storage
    tokens: TokenService


def open_db(config: Config, run_migrations: bool = True) -> None:
    db.bind(db.open_database(config.database_url))
    crypto.configure(config.secret_key())  # migrations encrypt what older versions stored in plaintext
    if run_migrations:
        migrate.migrate()


def build_services(config: Config) -> Services:
    crypto.configure(config.secret_key())
    for name in INSTALL_MODULES:
        importlib.import_module(name).install(config)
    return Services(
        config=config,
        storage=open_storage(config),
        tokens=TokenService(config.secret_key(), config.auth.token_ttl, service_of(config.server.public_url)),
    )


def make_app(services: Services) -> Application:
    handlers, fallbacks = [], []
    for name in HANDLER_MODULES:
        module = importlib.import_module(name)
        handlers.extend(module.default_handlers)
        fallbacks.extend(getattr(module, "fallback_handlers", []))
    handlers += fallbacks + [(rf"{api.API}/openapi.json", api.OpenApiHandler),
                             (rf"{api.API}/discovery", api.OpenApiHandler),
                             (rf"{api.API}/.*", api.ApiNotFoundHandler)]
    settings = {
        "services": services,
        "routes": handlers,
        "template_path": str(TEMPLATES),
        "xsrf_cookies": False,
    }
    if not services.config.server.access_log:
        settings["log_function"] = lambda handler: None
    return SlipwayApplication(handlers, **settings)
