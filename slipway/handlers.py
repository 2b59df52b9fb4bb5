"""Shell pages: the landing page and the health check."""
from __future__ import annotations

from slipway import __version__

from .db import database
from .web import BaseHandler


class HomeHandler(BaseHandler):
    def get(self) -> None:
        host = self.request.host
        self.render("home.html", host=host, base_url=self.base_url(), version=__version__)


class HealthHandler(BaseHandler):
    def get(self) -> None:
        database.execute_sql("SELECT 1").fetchone()
        self.finish({"status": "ok", "version": __version__})


default_handlers = [
    (r"/", HomeHandler),
    (r"/health", HealthHandler),
]
