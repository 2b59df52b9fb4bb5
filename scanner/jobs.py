"""The scanner's background work: queue scans of pushed manifests, run them, update the feeds on schedule."""
from __future__ import annotations

import logging
import threading

from slipway import leases
from slipway.db import database

from . import advisories, scans

log = logging.getLogger("slipway.scanner")
IDLE_POLL_SECONDS = 1  # how often an idle scan thread looks for a queued scan
CLAIM_BATCH = 16  # scans claimed in one transaction when several are due
PRUNE_POLL_SECONDS = 5  # how often the results of what garbage collection removed are looked for


def update_feeds(config, sources=None, on_progress=None) -> advisories.ImportResult:
    """Import the feeds (``scanner.feeds`` unless given), then match the manifests they touch again."""
    result = advisories.import_feeds(sources or config.scanner.feeds, config.network, on_progress)
    result.rematched, result.announced = scans.rematch(result.keys)
    return result


def register(background) -> None:
    config = background.services.config
    if not config.scanner.enabled:
        return
    storage = background.services.storage
    limits = scans.ScanLimits.from_config(config.scanner)

    stop = threading.Event()

    def scan_loop():
        """One scan at a time in this process, back to back while any is due (a thread of its own: a scan may
        take longer than any scheduler interval); idle, a plain read each second."""
        holder = leases.holder_id()
        while not stop.is_set():
            try:
                if scans.run_next(storage, limits, holder, config.scanner.lease_seconds, CLAIM_BATCH):
                    continue
            except Exception:
                log.exception("scanning failed")
            database.close()
            stop.wait(IDLE_POLL_SECONDS)
        database.close()

    def scheduled_update():
        result = update_feeds(config)
        log.info("scanner feeds: %d new, %d changed, %d withdrawn advisories; %d manifests matched again, %d "
                 "vulnerabilities announced", result.added, result.changed, result.withdrawn, result.rematched,
                 result.announced)

    def queue_when_pushed():
        """Every second a plain read; the job's lease (two writes, after which every HTTP process's SQLite
        rereads its pages) only when something was pushed. Manifest GETs with the scanner on vs off
        (bench/registry_bench.py --scanner --only manifest_get_c16): 0.94 with the lease taken every
        second, 1.01 without — single runs on a machine whose absolute figures moved 15 % between runs."""
        if not scans.pushed_since_cursor():
            return
        with leases.job("scanner.queue_pushed") as held:
            if held:
                scans.queue_pushed()

    def prune_when_collected():
        """What garbage collection removed: a plain read, and only then the deletes (idempotent: no lease)."""
        if scans.collected_since_cursor():
            scans.prune_collected()

    background.every(1, queue_when_pushed, "scanner.queue_pushed", exclusive=False)
    background.every(PRUNE_POLL_SECONDS, prune_when_collected, "scanner.prune", exclusive=False)
    # Every background process scans (each claims the scans it runs).
    threading.Thread(target=scan_loop, name="scanner", daemon=True).start()
    background.on_stop(stop.set)
    if config.scanner.feeds:
        background.every(config.scanner.update_interval_seconds, scheduled_update, "scanner.update_feeds")
