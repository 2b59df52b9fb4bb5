"""Work that runs beside the HTTP server: scheduled jobs (APScheduler) and the in-process build workers.

Each package in ``JOB_MODULES`` has a ``jobs.py`` with ``register(background)`` that adds its jobs
(``builder.jobs`` also starts the build worker threads). It runs in the background process of
``slipway serve`` (its last child, ``server.run_background``), not beside an event loop; with
``server.workers: false`` (an API-only node) nothing runs it. ``slipway worker`` does not use it:
it runs its own build workers and lease reaper (``server.run_worker``).
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
