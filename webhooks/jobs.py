"""Background notification work: fan events out, look for expiring tags, send what is due."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from .dispatch import fan_out, scan_expiring, send_due
from .methods import Mailer

SEND_BATCH = 50  # deliveries sent, then recorded in one transaction (a crash may send them again)
SEND_BUDGET_SECONDS = 0.5  # no new batch after this, so a run mostly ends before the next is due


def register(background) -> None:
    config = background.services.config
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="notify")
    background.on_stop(lambda: pool.shutdown(wait=False))

    def deliver():
        fan_out(config)
        # Batches until nothing is due or the budget is spent (the next run goes on): one batch a
        # second capped delivery at 50 a second, so a burst of pushes left its notifications
        # queued for longer than the burst lasted. The run's batches share SMTP connections.
        deadline = time.monotonic() + SEND_BUDGET_SECONDS
        mailer = Mailer()
        try:
            while (send_due(config, pool, limit=SEND_BATCH, mailer=mailer) == SEND_BATCH
                   and time.monotonic() < deadline):
                pass
        finally:
            mailer.close()

    # Every background process sends (each claims the deliveries it sends); scans run under a lease.
    background.every(1, deliver, "webhooks.deliver", exclusive=False)
    background.every(config.notifications.expiry_scan_seconds, scan_expiring, "webhooks.scan_expiring", config)
