"""Scheduled build work: in-process workers, taking builds back from dead workers, old uploads."""
from __future__ import annotations

from .worker import WorkerPool, drop_stale_filedrops, reap

FILEDROP_MAX_AGE = 24 * 3600


def register(background, hooks) -> None:
    config, storage = background.services.config, background.services.storage
    background.every(max(1, config.builds.lease_seconds // 3), reap, "builder.reap_expired_leases", config, hooks)
    background.every(3600, drop_stale_filedrops, "builder.drop_stale_filedrops", storage, FILEDROP_MAX_AGE)
    if config.builds.workers > 0:
        pool = WorkerPool(config, storage, config.builds.workers, hooks).start()
        background.on_stop(pool.stop)
