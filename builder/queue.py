"""The durable build queue: claims with leases, heartbeats, retries, cancellation.

A waiting or running build has one ``build_job`` row. A worker claims the oldest
job whose repository has no running build (builds of one repository run in
order), if fewer than ``max_concurrent`` builds run, and holds it with a lease
it renews by heartbeat. A lease that runs out means the worker died: the build
becomes ``internalerror`` and, while retries remain, is queued again after a
delay (Quay: 3 tries). Claims are serialized (an IMMEDIATE transaction on
SQLite, as every transaction there; an advisory lock on PostgreSQL), so two workers never take the same
job or two builds of one repository.
"""
from __future__ import annotations

import logging

from peewee import fn

from accounts import audit
from accounts.identity import Identity
from slipway import events, urls
from slipway.db import database, is_postgres, now_ms
from slipway.errors import Invalid

from . import builds
from .hooks import BuildHooks
from .logs import LogWriter
from .models import CANCELLED, INTERNAL_ERROR, PUSHING, RUNNING, SCHEDULED, TERMINAL, WAITING, Build, BuildJob

log = logging.getLogger("slipway.builder.queue")
CLAIM_LOCK = 7_311_977  # the PostgreSQL advisory lock id for claims


def _serialize() -> None:
    """Inside a transaction: queue changes (claim, cancel, failures) happen one at a time.

    SQLite's write lock does this already; PostgreSQL needs the advisory lock.
    """
    if is_postgres():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK,))


def claim(worker_id: str, lease_seconds: int, max_concurrent: int) -> Build | None:
    """Take the next runnable build for ``worker_id``, or None."""
    waiting = BuildJob.select().where(BuildJob.lease_owner.is_null() & (BuildJob.available_at <= now_ms()))
    if not waiting.exists():
        return None  # the idle poll: a read, without the write lock the claim below takes
    with database.atomic():
        _serialize()
        now = now_ms()  # after the lock: a build started here never predates one that ended while we waited
        running = BuildJob.select().where(BuildJob.lease_owner.is_null(False))
        if running.count() >= max_concurrent:
            return None
        busy = BuildJob.select(BuildJob.repository_id).where(BuildJob.lease_owner.is_null(False))
        earlier = BuildJob.alias()
        older_waiting = earlier.select().where(
            (earlier.repository_id == BuildJob.repository_id) & earlier.lease_owner.is_null()
            & ((earlier.created_at < BuildJob.created_at)
               | ((earlier.created_at == BuildJob.created_at) & (earlier.id < BuildJob.id))))
        job = (BuildJob.select()
               .where(BuildJob.lease_owner.is_null() & (BuildJob.available_at <= now)
                      & BuildJob.repository_id.not_in(busy) & ~fn.EXISTS(older_waiting))
               .order_by(BuildJob.created_at, BuildJob.id).first())
        if job is None:
            return None
        taken = BuildJob.update(lease_owner=worker_id, lease_expires=now + lease_seconds * 1000).where(
            (BuildJob.id == job.id) & BuildJob.lease_owner.is_null()).execute()
        if not taken:
            return None
        Build.update(phase=SCHEDULED, started_at=now, cancel_requested=False).where(
            Build.id == job.build_id).execute()
        build = Build.get_by_id(job.build_id)
    return build


def heartbeat(build: Build, worker_id: str, lease_seconds: int) -> tuple[bool, bool]:
    """Renew the lease. Returns (still ours, cancel requested)."""
    renewed = BuildJob.update(lease_expires=now_ms() + lease_seconds * 1000).where(
        (BuildJob.build == build.id) & (BuildJob.lease_owner == worker_id)).execute()
    cancel = Build.select(Build.cancel_requested).where(Build.id == build.id).scalar()
    return bool(renewed), bool(cancel)


def finish(build: Build, worker_id: str, phase: str, writer: LogWriter, base_url: str, hooks: BuildHooks,
           error_message: str | None = None, **fields) -> bool:
    """End a build the worker still holds: final phase, event, queue item removed. False if it lost the lease."""
    with database.atomic():
        held = BuildJob.delete().where((BuildJob.build == build.id) & (BuildJob.lease_owner == worker_id)).execute()
        if not held:
            return False
        Build.update(phase=phase, completed_at=now_ms(), error_message=error_message, credential_hash=None,
                     **fields).where(Build.id == build.id).execute()
        build = Build.get_by_id(build.id)
        writer.phase(phase)
        events.emit(builds.EVENT_FOR_PHASE[phase], build.repository, builds.event_payload(build, base_url))
        hooks.build_ended(build, phase)
    return True


def internal_failure(build: Build, worker_id: str | None, reason: str, writer: LogWriter, base_url: str,
                     retry_delay_seconds: int, hooks: BuildHooks, lease_expired: bool = False) -> str:
    """An internal error (worker lost, crash): queue again while retries remain. Returns the new phase.

    ``lease_expired``: called by the reaper, which acts only if the lease is still out of date.
    """
    with database.atomic():
        _serialize()
        build = Build.get_by_id(build.id)
        condition = BuildJob.build == build.id
        if worker_id is not None:
            condition &= BuildJob.lease_owner == worker_id
        if lease_expired:
            condition &= BuildJob.lease_expires < now_ms()
        job = BuildJob.get_or_none(condition)
        if job is None or build.phase in TERMINAL:
            return build.phase
        if build.cancel_requested:  # it was being cancelled: that is how it ends, not with a retry
            job.delete_instance()
            Build.update(phase=CANCELLED, completed_at=now_ms(), credential_hash=None).where(
                Build.id == build.id).execute()
            writer.phase(CANCELLED)
            build = Build.get_by_id(build.id)
            events.emit(events.BUILD_CANCELLED, build.repository, builds.event_payload(build, base_url))
            return CANCELLED
        writer.phase(INTERNAL_ERROR)
        writer.error(reason)
        remaining = build.retries_remaining - 1
        if remaining > 0:
            BuildJob.update(lease_owner=None, lease_expires=None,
                            available_at=now_ms() + retry_delay_seconds * 1000).where(BuildJob.id == job.id).execute()
            Build.update(phase=WAITING, retries_remaining=remaining, error_message=reason, credential_hash=None,
                         cancel_requested=False).where(Build.id == build.id).execute()
            writer.line(f"The build will be retried in {retry_delay_seconds} s ({remaining} attempt(s) left).")
            writer.phase(WAITING)
            return WAITING
        job.delete_instance()
        Build.update(phase=INTERNAL_ERROR, retries_remaining=0, completed_at=now_ms(), error_message=reason,
                     credential_hash=None).where(Build.id == build.id).execute()
        writer.line("No attempts left: the build has expired.")
        build = Build.get_by_id(build.id)
        events.emit(events.BUILD_FAILURE, build.repository, builds.event_payload(build, base_url))
        hooks.build_ended(build, INTERNAL_ERROR)
        return INTERNAL_ERROR


def reap_expired_leases(config, hooks: BuildHooks) -> int:
    """Builds whose worker stopped renewing its lease become internal errors (and are retried)."""
    now = now_ms()
    count = 0
    for job in BuildJob.select().where(BuildJob.lease_owner.is_null(False) & (BuildJob.lease_expires < now)):
        build = Build.get_by_id(job.build_id)
        writer = LogWriter(build, config.builds.max_log_bytes)
        log.warning("build %s: worker %s stopped responding", build.uuid, job.lease_owner)
        internal_failure(build, job.lease_owner, "The build worker stopped responding (it was stopped or crashed)",
                         writer, urls.base_url(config), config.builds.retry_delay_seconds, hooks, lease_expired=True)
        writer.flush()
        count += 1
    return count


def cancel(build: Build, base_url: str, max_log_bytes: int, performer: Identity, ip: str | None = None) -> str:
    """Cancel a build: a waiting one leaves the queue now; a running one is stopped by its worker.
    Returns the phase it was cancelled in; the audit entry is written with the change."""
    repo = build.repository
    with database.atomic():
        _serialize()
        phase = _cancel(Build.get_by_id(build.id), base_url, max_log_bytes)
        audit.record("cancel_build", performer, repo.namespace, repo, ip, {"build_uuid": build.uuid, "phase": phase})
    return phase


def _cancel(build: Build, base_url: str, max_log_bytes: int) -> str:
    if build.phase in TERMINAL:
        raise Invalid("Build is currently running or has finished" if build.phase != CANCELLED
                      else "Build was already cancelled")
    job = BuildJob.get_or_none(BuildJob.build == build.id)
    if build.phase == WAITING and job is not None and job.lease_owner is None \
            and BuildJob.delete().where((BuildJob.id == job.id) & BuildJob.lease_owner.is_null()).execute():
        Build.update(phase=CANCELLED, completed_at=now_ms()).where(Build.id == build.id).execute()
        writer = LogWriter(build, max_log_bytes)
        writer.phase(CANCELLED)
        events.emit(events.BUILD_CANCELLED, build.repository,
                    builds.event_payload(Build.get_by_id(build.id), base_url))
        return CANCELLED
    if build.phase in RUNNING:
        if build.phase == PUSHING:
            raise Invalid("Build is currently running or has finished: it is already pushing its image")
        Build.update(cancel_requested=True).where(Build.id == build.id).execute()
    return build.phase


def overview() -> dict:
    """What the queue holds now (the superuser's status page): ``waiting`` builds (not yet claimed) and
    ``running`` ones, each with the worker that holds its lease, oldest first."""
    waiting = BuildJob.select().where(BuildJob.lease_owner.is_null()).count()
    running = [{"build": job.build, "worker": job.lease_owner, "lease_expires": job.lease_expires}
               for job in BuildJob.select(BuildJob, Build).join(Build)
               .where(BuildJob.lease_owner.is_null(False)).order_by(BuildJob.created_at, BuildJob.id)]
    return {"waiting": waiting, "running": running}
