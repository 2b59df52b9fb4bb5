"""The clock every time rule reads: tag expiry and the time machine, garbage collection's grace,
stale uploads, notification retries and expiry notices, every stored timestamp (``db.now_ms``).

It is the wall clock; tests install another source (``install``) to move time on instead of
sleeping, and drive the jobs in-process. Nothing outside tests installs one, and no setting or
route does: a server always runs on the wall clock.
"""
from __future__ import annotations

import time
from typing import Callable

_source: Callable[[], float] = time.time


def now() -> float:
    """Seconds since the epoch."""
    return _source()


def now_ms() -> int:
    """Milliseconds since the epoch, as an integer: how every timestamp is stored."""
    return int(_source() * 1000)


def install(source: Callable[[], float]) -> Callable[[], float]:
    """Read time from ``source`` (seconds since the epoch) from now on; returns the previous source."""
    global _source
    previous, _source = _source, source
    return previous
