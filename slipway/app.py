"""Assembling the application: services shared by handlers, and the Tornado routes of every package."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from tornado.web import Application

from registry.storage import Storage, open_storage
from registry.tokens import TokenService

from . import db, migrate
from .config import Config

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# Each module exports ``default_handlers``; their order is the routing order.
HANDLER_MODULES = ["registry.handlers", "slipway.handlers"]


@dataclass
class Services:
    config: Config
    storage: Storage
    tokens: TokenService


def open_db(config: Config, run_migrations: bool = True) -> None:
    db.bind(db.open_database(config.database_url))
    if run_migrations:
        migrate.migrate()


def build_services(config: Config) -> Services:
    return Services(
        config=config,
        storage=open_storage(config),
        tokens=TokenService(config.secret_key(), config.auth.token_ttl),
    )


def make_app(services: Services) -> Application:
    handlers = []
    for module in HANDLER_MODULES:
        handlers.extend(importlib.import_module(module).default_handlers)
    settings = {
        "services": services,
        "template_path": str(TEMPLATES),
        "xsrf_cookies": False,
    }
    if not services.config.server.access_log:
        settings["log_function"] = lambda handler: None
    return Application(handlers, **settings)
