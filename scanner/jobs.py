"""The scanner's background work: queue scans of pushed manifests, run them, update the feeds on schedule."""
from __future__ import annotations

import logging
import time

from slipway import leases

from . import advisories, scans

log = logging.getLogger("slipway.scanner")
SCAN_BUDGET_SECONDS = 5  # no new scan after this in one run; the next run (a second later) goes on


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

    def work():
        deadline = time.monotonic() + SCAN_BUDGET_SECONDS
        holder = leases.holder_id()
        while scans.run_next(storage, limits, holder, config.scanner.lease_seconds) and time.monotonic() < deadline:
            pass

    def scheduled_update():
        result = update_feeds(config)
        log.info("scanner feeds: %d new, %d changed advisories; %d manifests matched again, %d vulnerabilities "
                 "announced", result.added, result.changed, result.rematched, result.announced)

    background.every(1, scans.queue_pushed, "scanner.queue_pushed")
    # Every background process scans (each claims the scans it runs).
    background.every(1, work, "scanner.scan", exclusive=False)
    if config.scanner.feeds:
        background.every(config.scanner.update_interval_seconds, scheduled_update, "scanner.update_feeds")
