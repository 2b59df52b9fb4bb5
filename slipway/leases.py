"""Leases: background work done by one process at a time, whichever process of whichever node that is.

A scheduled job (garbage collection, the sweeps, the expiry scan) runs only in the process that holds
its row of ``job_lease``: taking it is one conditional UPDATE (free or lapsed, and the job is due), which
both engines apply atomically (SQLite's write lock; on PostgreSQL the second of two concurrent UPDATEs
re-reads the row after the first commits and finds it taken). The holder renews the lease while the job
runs and frees it at the end; a holder that dies stops renewing, and its lease lapses after
``LEASE_SECONDS``. Lease times are the database's clock (``database_now_ms``), never a node's own, so a
node whose clock runs ahead does not see a held lease as lapsed. The row also remembers when the job last
started, so a job scheduled every hour in every process runs about once an hour across all of them, not
once per process.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager

from peewee import CharField

from .db import BaseModel, TimestampField, database, database_now_ms

log = logging.getLogger("slipway.leases")

LEASE_SECONDS = 60  # a dead holder's lease lapses after this; a live one renews it every third of it


class JobLease(BaseModel):
    name = CharField(max_length=128, unique=True)
    holder = CharField(max_length=128, null=True)
    expires_at = TimestampField(null=True)
    started_at = TimestampField(null=True)  # when the job last started (anywhere)

    class Meta:
        table_name = "job_lease"


_HOLDER = None


def holder_id() -> str:
    """This process, as leases and claims name it: host, process id and a random part (a restarted
    process with the same id is another holder)."""
    global _HOLDER
    if _HOLDER is None or not _HOLDER.startswith(f"{socket.gethostname()}:{os.getpid()}:"):
        _HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return _HOLDER


def acquire(name: str, holder: str, seconds: float = LEASE_SECONDS, every: float = 0) -> bool:
    """Take the lease ``name`` for ``seconds`` if it is free or lapsed and, with ``every``, if the job
    last started at least ``every`` seconds ago. True when ``holder`` now holds it."""
    now = database_now_ms()
    condition = (JobLease.name == name) & (JobLease.holder.is_null() | (JobLease.expires_at < now))
    if every > 0:
        condition &= JobLease.started_at.is_null() | (JobLease.started_at <= now - int(every * 1000))
    take = JobLease.update(holder=holder, expires_at=now + int(seconds * 1000), started_at=now).where(condition)
    if take.execute() == 1:
        return True
    if JobLease.select().where(JobLease.name == name).exists():
        return False  # held, or not due
    # A new job is due one interval from now, as a scheduler's first run is (GC not at every start).
    JobLease.insert(name=name, started_at=now).on_conflict_ignore().execute()
    return every <= 0 and take.execute() == 1


def renew(name: str, holder: str, seconds: float = LEASE_SECONDS) -> bool:
    """Extend a held lease; False if ``holder`` no longer holds it (it lapsed and another took it)."""
    return JobLease.update(expires_at=database_now_ms() + int(seconds * 1000)).where(
        (JobLease.name == name) & (JobLease.holder == holder)).execute() == 1


def release(name: str, holder: str) -> None:
    JobLease.update(holder=None, expires_at=None).where(
        (JobLease.name == name) & (JobLease.holder == holder)).execute()


@contextmanager
def renewing(renew_fn, every: float):
    """Call ``renew_fn()`` every ``every`` seconds in a thread while the block runs (a lease or claims
    kept alive through a long job). ``renew_fn`` returning False is logged once; the block goes on."""
    done = threading.Event()

    def loop():
        warned = False
        try:
            while not done.wait(every):
                try:
                    held = renew_fn()
                except Exception:
                    log.exception("renewing a lease failed")
                    continue
                if held is False and not warned:
                    log.warning("a lease was lost while its work ran (the process was stalled for longer "
                                "than the lease)")
                    warned = True
        finally:
            database.close()

    thread = threading.Thread(target=loop, name="lease-renewal", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


@contextmanager
def job(name: str, every: float = 0, seconds: float = LEASE_SECONDS):
    """Hold the lease of job ``name`` while the block runs: yields True if this process took it (then run
    the job), False if another process holds it or the job is not due (then skip it)."""
    holder = holder_id()
    if not acquire(name, holder, seconds, every):
        yield False
        return
    with _holding(name, holder, seconds):
        yield True


@contextmanager
def waiting_for(name: str, waiting=None, poll: float = 1.0, seconds: float = LEASE_SECONDS):
    """Run the block under the lease of job ``name`` whenever it is due (a job run by hand: ``slipway admin
    gc``), once whoever holds it now is done; ``waiting()`` is called once if it has to wait."""
    holder = holder_id()
    while not acquire(name, holder, seconds):
        if waiting is not None:
            waiting()
            waiting = None
        time.sleep(poll)
    with _holding(name, holder, seconds):
        yield


@contextmanager
def _holding(name: str, holder: str, seconds: float):
    try:
        with renewing(lambda: renew(name, holder, seconds), seconds / 3):
            yield
    finally:
        try:
            release(name, holder)
        except Exception:  # it lapses by itself
            log.exception("releasing the lease of %s failed", name)
