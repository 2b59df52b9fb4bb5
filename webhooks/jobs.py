"""Background notification work: fan events out, look for expiring tags, send what is due."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .dispatch import fan_out, scan_expiring, send_due


def register(background) -> None:
    config = background.services.config
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="notify")
    background.on_stop(lambda: pool.shutdown(wait=False))

    def deliver():
        fan_out(config)
        send_due(config, pool)

    background.every(1, deliver, "webhooks.deliver")
    background.every(config.notifications.expiry_scan_seconds, scan_expiring, "webhooks.scan_expiring", config)
