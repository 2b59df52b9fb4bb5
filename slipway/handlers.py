"""The health check (the pages, ``/`` included, are the web interface's: package ``ui``)."""
from __future__ import annotations

from slipway import __version__

from .db import database
from .web import BaseHandler


class HealthHandler(BaseHandler):
    def get(self) -> None:
        database.execute_sql("SELECT 1").fetchone()
        self.finish({"status": "ok", "version": __version__})


default_handlers = [
    (r"/health", HealthHandler),
]
