"""Work that runs beside the HTTP server: scheduled jobs (APScheduler) and, later, build workers.

Each package's ``jobs.py`` exposes ``register(background)`` to add its jobs. Only
one process per node runs this (the first HTTP process, or ``slipway worker``).
"""
from __future__ import annotations

import importlib
import logging

from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger("slipway.background")

JOB_MODULES = ["registry.jobs", "builder.jobs", "webhooks.jobs"]


class Background:
    def __init__(self, services, run_build_workers: bool = True):
        self.services = services
        self.run_build_workers = run_build_workers
        self.scheduler = BackgroundScheduler(daemon=True, job_defaults={"coalesce": True, "max_instances": 1})
        self.stoppers = []

    def every(self, seconds: float, fn, name: str, *args) -> None:
        """Run ``fn(*args)`` every ``seconds``; a failure is logged and the next run goes ahead."""
        def run():
            try:
                fn(*args)
            except Exception:
                log.exception("background job %s failed", name)
            finally:
                from .db import database

                database.close()

        self.scheduler.add_job(run, "interval", seconds=seconds, id=name, name=name)

    def on_stop(self, fn) -> None:
        self.stoppers.append(fn)

    def start(self) -> "Background":
        for module in JOB_MODULES:
            importlib.import_module(module).register(self)
        self.scheduler.start()
        return self

    def stop(self) -> None:
        self.scheduler.shutdown(wait=False)
        for fn in self.stoppers:
            fn()
