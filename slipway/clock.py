"""The clock every time rule reads: tag expiry and the time machine, garbage collection's grace,
stale uploads, notification retries and expiry notices, every stored timestamp (``db.now_ms``).

It is the wall clock; tests install another source (``install``) to move time on instead of
sleeping, and drive the jobs in-process. Nothing outside tests installs one, and no setting or
route does: a server always runs on the wall clock.

Leases and delivery claims compare the *database's* clock (``db.database_now_ms``), so that nodes whose
clocks disagree agree on when a lease lapses. A test that moves the whole world's time on installs its
source for that clock too (``install(source, database=True)``); one that puts a single node ahead of the
others installs only this one.
"""
from __future__ import annotations

import time
from typing import Callable

_source: Callable[[], float] = time.time
_database_source: Callable[[], float] | None = None  # None: ask the database


def now() -> float:
    """Seconds since the epoch."""
    return _source()


def now_ms() -> int:
    """Milliseconds since the epoch, as an integer: how every timestamp is stored."""
    return int(_source() * 1000)


def install(source: Callable[[], float], database: bool = False) -> Callable[[], float]:
    """Read time from ``source`` (seconds since the epoch) from now on; returns the previous source.
    ``database``: the database's clock follows ``source`` too (until ``install`` is called without it)."""
    global _source, _database_source
    previous, _source = _source, source
    _database_source = source if database else None
    return previous


def database_override_ms() -> int | None:
    """The database clock a test installed (``install(..., database=True)``), else None."""
    return None if _database_source is None else int(_database_source() * 1000)
