"""Work that runs beside the HTTP server: scheduled jobs (APScheduler), notification delivery, build workers.

Packages declare their jobs in their ``includeme`` (``reg.add_jobs(register)``); ``register(background)``
adds them with ``every`` and ``on_stop``. The same machinery runs in ``slipway serve``'s background
process (every package's jobs) and in ``slipway worker`` (the per-node jobs: build workers and their
lease reaper).
"""
from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger("slipway.background")


class Background:
    def __init__(self, services, jobs: list, run_build_workers: bool = True):
        self.services = services
        self.jobs = list(jobs)  # register(background) functions, from the packages' registrations
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
        for register in self.jobs:
            register(self)
        self.scheduler.start()
        return self

    def stop(self) -> None:
        self.scheduler.shutdown(wait=False)
        for fn in self.stoppers:
            fn()
