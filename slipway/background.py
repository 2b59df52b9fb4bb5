"""Work that runs beside the HTTP server: scheduled jobs (APScheduler), notification delivery, build workers.

Packages declare their jobs in their ``includeme`` (``reg.add_jobs(register)``); ``register(background)``
adds them with ``every`` and ``on_stop``. The same machinery, with every package's jobs, runs in
``slipway serve``'s background process and in every ``slipway worker``, on any number of nodes: a job
runs only where its lease is held (``slipway.leases``), so each runs about once per interval across all
of them, never twice at once.
"""
from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler

from . import leases

log = logging.getLogger("slipway.background")


class Background:
    def __init__(self, services, jobs: list):
        self.services = services
        self.jobs = list(jobs)  # register(background) functions, from the packages' registrations
        self.scheduler = BackgroundScheduler(daemon=True, job_defaults={"coalesce": True, "max_instances": 1})
        self.stoppers = []

    def every(self, seconds: float, fn, name: str, *args, exclusive: bool = True) -> None:
        """Run ``fn(*args)`` every ``seconds``; a failure is logged and the next run goes ahead.

        ``exclusive`` (the default): across every process sharing the database, one at a time runs it,
        about once per ``seconds`` (it is looked at every ``seconds``, at most every minute, and runs
        where its lease is taken). Jobs safe to run everywhere at once (they claim their own work) pass
        False.
        """
        poll = min(seconds, 60)

        def run():
            try:
                if not exclusive:
                    fn(*args)
                    return
                with leases.job(name, every=seconds - poll / 2) as held:
                    if held:
                        fn(*args)
            except Exception:
                log.exception("background job %s failed", name)
            finally:
                from .db import database

                database.close()

        self.scheduler.add_job(run, "interval", seconds=poll, id=name, name=name)

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
