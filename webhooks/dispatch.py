"""From events to deliveries, and from deliveries to sent messages, with retries.

Three jobs, all in the background (nothing here runs on a push or in a build):
``fan_out`` turns new events into one delivery per matching notification, in
the same transaction that advances its cursor, so each event is handled once;
``scan_expiring`` announces tags about to expire (each tag once per
notification); ``send_due`` claims what is due (so each delivery is sent once
however many processes send), sends it, records every attempt, retries
with backoff, and stops a notification after ``max_failures`` successive
failed attempts until someone resets it (Quay's rule).
"""
from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait

from peewee import chunked

from registry.content import alive
from registry.models import Repository, Tag
from slipway import events, leases, patterns
from slipway.db import database, database_now_ms, is_postgres, now_ms
from slipway.errors import Invalid

from . import methods
from .models import (
    FAILED,
    PENDING,
    SUCCESS,
    Attempt,
    Delivery,
    EventCursor,
    ExpiryNotice,
    InAppNotification,
    Notification,
)
from .notifications import SEVERITIES, payload_for

log = logging.getLogger("slipway.notifications")
CURSOR = "notifications"
SETTLE_MS = 10_000
INSERT_ROWS = 100  # rows per multi-row INSERT: under 999 parameters, SQLite's limit before 3.32
BUILD_EVENTS = {"build_queued", "build_start", "build_success", "build_failure", "build_cancelled"}


def _matches(notification: Notification, kind: str, data: dict) -> bool:
    event_config = json.loads(notification.event_config or "{}")
    if kind in BUILD_EVENTS and event_config.get("ref-regex"):
        ref = (data.get("trigger_metadata") or {}).get("ref") or ""
        pattern = event_config["ref-regex"]
        try:
            if not (patterns.fullmatch(pattern, ref, "ref-regex")
                    or patterns.fullmatch(pattern, ref.removeprefix("refs/"), "ref-regex")):
                return False
        except Invalid as e:  # saved before patterns were RE2: matches nothing until it is changed
            log.warning("notification %s: %s", notification.uuid, e.message)
            return False
    if kind == "vulnerability_found" and event_config.get("level") is not None:
        level = event_config["level"]
        minimum = SEVERITIES.index(level) if level in SEVERITIES else int(level)
        found = (data.get("vulnerability") or {}).get("priority", "Unknown")
        if (SEVERITIES.index(found) if found in SEVERITIES else 0) < minimum:
            return False
    return True


def fan_out(config, batch: int = 500) -> int:
    """Create deliveries for the events not handled yet.

    The cursor only passes events older than SETTLE_MS: on PostgreSQL an event's id is
    taken when it is written but seen when its transaction commits, so a slow transaction
    can show a lower id after a higher one. Recent events are looked at again each time;
    the unique (notification, event) index makes that harmless, on one node or several.
    SQLite has one writer at a time, so every event it reads is committed and none with a
    lower id can appear later: the cursor passes all of them. (Reading the last 10 s of
    events again every second made pushes wait for the lock ~6 times as long.)

    Events are read and payloads built before the write transaction, which only inserts
    the deliveries and moves the cursor, if nobody moved it meanwhile: pushes wait for
    SQLite's write lock, and the (niced) background process could be preempted holding it.
    """
    settled_before = now_ms() - (SETTLE_MS if is_postgres() else 0)
    cursor, _ = EventCursor.get_or_create(name=CURSOR)
    start = cursor.last_id
    rows = events.since(start, limit=batch)
    if not rows:
        return 0
    watched: dict = {}
    for notification in Notification.select().where(
            Notification.repository.in_({e.repository_id for e in rows if e.repository_id is not None})
            & Notification.event.in_({e.kind for e in rows})):
        watched.setdefault((notification.repository_id, notification.event), []).append(notification)
    deliveries, watermark, settled = [], start, True
    for event in rows:
        settled = settled and event.created_at < settled_before
        if settled:
            watermark = event.id
        matching = watched.get((event.repository_id, event.kind))
        if not matching:
            continue
        data = json.loads(event.payload)
        for notification in matching:
            if _matches(notification, event.kind, data):
                deliveries.append({"notification": notification.id, "event_id": event.id,
                                   "payload": json.dumps(payload_for(event.kind, event.repository, data, config))})
    created = 0
    with database.atomic():
        query = EventCursor.select(EventCursor.last_id).where(EventCursor.id == cursor.id)
        if is_postgres():
            query = query.for_update()  # fan-outs of several nodes take turns
        if query.scalar() != start:
            return 0  # another fan-out handled these events; the next run goes on from its cursor
        if deliveries:  # of notifications that still exist
            alive = {n.id for n in Notification.select(Notification.id).where(
                Notification.id.in_({d["notification"] for d in deliveries}))}
            deliveries = [d for d in deliveries if d["notification"] in alive]
        for rows in chunked(deliveries, INSERT_ROWS):
            created += Delivery.insert_many(rows).on_conflict_ignore().as_rowcount().execute()
        if watermark != start:
            EventCursor.update(last_id=watermark).where(EventCursor.id == cursor.id).execute()
    return created


def scan_expiring(config) -> int:
    """repo_image_expiry: tags expiring within the notification's days, announced once each."""
    created = 0
    now = now_ms()
    for notification in Notification.select().where(Notification.event == "repo_image_expiry"):
        days = json.loads(notification.event_config or "{}").get("days", 7)
        with database.atomic():
            announced = ExpiryNotice.select(ExpiryNotice.tag_id).where(ExpiryNotice.notification == notification.id)
            soon = list(Tag.select().where((Tag.repository == notification.repository_id) & alive(now)
                                           & Tag.lifetime_end.is_null(False)
                                           & (Tag.lifetime_end <= now + days * 86400 * 1000)
                                           & Tag.id.not_in(announced)).order_by(Tag.name))
            if not soon:
                continue
            ExpiryNotice.insert_many([{"notification": notification.id, "tag_id": t.id} for t in soon]).execute()
            repo = Repository.get_by_id(notification.repository_id)
            payload = payload_for("repo_image_expiry", repo.full_name,
                                  {"tags": [t.name for t in soon], "expiring_in": f"{days} days"}, config)
            Delivery.create(notification=notification, kind="expiry", payload=json.dumps(payload))
            created += 1
    return created


CLAIM_SECONDS = 60  # a claim lapses after this unless renewed (its sender died): the delivery is due again
CLAIM_LOCK = 7_311_979  # the PostgreSQL advisory lock id serializing claims


def claim_due(config, holder: str, limit: int = 50) -> list:
    """Claim up to ``limit`` due deliveries for ``holder`` (of notifications not stopped by failures), oldest
    first, and return them (with their notifications). A claimed delivery is not due for anyone else
    (``next_attempt_at`` moves ``CLAIM_SECONDS`` ahead, ``claimed_by`` names the holder) until it is recorded,
    released, or the claim lapses. Claims are serialized (SQLite's write lock, an advisory lock on
    PostgreSQL, where the rows are also read ``FOR UPDATE SKIP LOCKED``), and a repository with deliveries
    claimed by anyone is left out, so its deliveries still go out in order whichever node sends them."""
    notes = config.notifications
    now = now_ms()

    def due(at):
        return ((Delivery.status == PENDING) & (Delivery.next_attempt_at <= at)
                & (Notification.number_of_failures < notes.max_failures))

    if not Delivery.select().join(Notification).where(due(now)).exists():
        return []  # the idle poll: a read, without the write lock a claim takes
    with database.atomic():
        if is_postgres():
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK,))
        now = database_now_ms()  # claims lapse by one clock, whichever node's runs ahead
        busy = (Delivery.select(Notification.repository).join(Notification)
                .where(Delivery.claimed_by.is_null(False) & (Delivery.status == PENDING)
                       & (Delivery.next_attempt_at > now)))
        query = (Delivery.select(Delivery.id, Delivery.next_attempt_at).join(Notification)
                 .where(due(now) & Notification.repository.not_in(busy))
                 .order_by(Delivery.next_attempt_at, Delivery.id).limit(limit))
        if is_postgres():
            query = query.for_update(of=Delivery, skip_locked=True)
        original = {row.id: row.next_attempt_at for row in query}
        if not original:
            return []
        Delivery.update(claimed_by=holder, next_attempt_at=now + CLAIM_SECONDS * 1000).where(
            Delivery.id.in_(list(original))).execute()
    claimed = {d.id: d for d in Delivery.select(Delivery, Notification).join(Notification)
               .where(Delivery.id.in_(list(original)))}
    for delivery_id, at in original.items():  # as they were due: the order, and what a release restores
        claimed[delivery_id].next_attempt_at = at
    return sorted(claimed.values(), key=lambda d: (d.next_attempt_at, d.id))


def renew_claims(holder: str, ids: list) -> bool:
    """Keep claims alive while their sends run (a repository's batch may wait out several timeouts)."""
    return Delivery.update(next_attempt_at=database_now_ms() + CLAIM_SECONDS * 1000).where(
        Delivery.id.in_(ids) & (Delivery.claimed_by == holder) & (Delivery.status == PENDING)).execute() > 0


def send_due(config, pool: ThreadPoolExecutor | None = None, limit: int = 50,
             mailer: methods.Mailer | None = None) -> int:
    """Claim the deliveries that are due and send them: each is sent once, whichever of any number of
    processes (on any number of nodes) runs this.

    The batch's outcomes are recorded together, in one transaction, once its sends are done
    (``_record``). SMTP connections are kept in ``mailer`` (the caller closes it), or else for
    the batch and closed at its end.
    """
    holder = leases.holder_id()
    due = claim_due(config, holder, limit)
    if not due:
        return 0
    # A repository's deliveries go out in order (queued, then started, then succeeded);
    # different repositories in parallel.
    by_repository: dict = {}
    for delivery in due:
        by_repository.setdefault(delivery.notification.repository_id, []).append(delivery)
    outcomes: list = []
    own_mailer = mailer is None
    mailer = mailer or methods.Mailer()
    work = [lambda group=group: _send_group(group, config, mailer, outcomes) for group in by_repository.values()]
    ids = [d.id for d in due]
    try:
        with leases.renewing(lambda: renew_claims(holder, ids), CLAIM_SECONDS / 3):
            if pool is None:
                for job in work:
                    job()
            else:
                futures = [pool.submit(job) for job in work]
                wait(futures)  # all done (or failed) before their outcomes are recorded
                for future in futures:
                    future.result()
    finally:
        if own_mailer:
            mailer.close()
        _record(outcomes, config, holder, due)
    return len(due)


def _send_group(deliveries: list, config, mailer: methods.Mailer, outcomes: list) -> None:
    failed: set = set()
    try:
        for delivery in deliveries:
            if delivery.notification_id in failed:
                continue  # its retry comes first, later
            if not _attempt(delivery, config, mailer, outcomes):
                failed.add(delivery.notification_id)
    finally:
        database.close()


def _attempt(delivery: Delivery, config, mailer: methods.Mailer, outcomes: list) -> bool:
    """Send one delivery and note its outcome in ``outcomes`` (recorded by ``_record``)."""
    notification = delivery.notification  # read with the batch; a failure stops the rest of its batch
    if notification.number_of_failures >= config.notifications.max_failures:
        return False
    started = time.monotonic()
    rows: list = []
    status_code, error = methods.send(notification, delivery, config, mailer, in_app_rows=rows)
    duration = int((time.monotonic() - started) * 1000)
    outcomes.append((delivery, status_code, error, duration, now_ms(), rows))
    if error is not None:
        log.warning("notification %s (%s) failed: %s", notification.uuid, notification.method, error)
    return error is None


def _record(outcomes: list, config, holder: str, claimed: list) -> None:
    """Record a batch's attempts in one transaction: attempt rows, in-app notifications, deliveries,
    failure counters. (In-app notifications are written here, so a crash before it sends them
    again with the delivery's retry rather than twice.)

    Each attempt is a row (status code, error, duration, when). A success completes its delivery
    and resets its notification's failures; a failure schedules the delivery's retry (or fails it
    when the retries are spent) and adds one to the notification's failures. Deliveries deleted
    meanwhile (with their notification) are left out, and so are any whose claim this holder lost.
    Claimed deliveries not attempted (the rest of a group after a failure) are released as they were.
    """
    delays = [int(d) for d in config.notifications.retry_delays]
    attempted = {o[0].id for o in outcomes}
    with database.atomic():
        query = Delivery.select(Delivery.id).where(Delivery.id.in_([d.id for d in claimed])
                                                   & (Delivery.claimed_by == holder))
        if is_postgres():
            query = query.for_update()  # not deleted under us
        present = {row.id for row in query}
        for delivery in claimed:
            if delivery.id in present and delivery.id not in attempted:
                Delivery.update(claimed_by=None, next_attempt_at=delivery.next_attempt_at).where(
                    Delivery.id == delivery.id).execute()
        outcomes = [o for o in outcomes if o[0].id in present]
        if not outcomes:
            return
        Attempt.insert_many([{"delivery": delivery.id, "attempted_at": at, "status_code": status_code,
                              "error": error, "duration_ms": duration}
                             for delivery, status_code, error, duration, at, _ in outcomes]).execute()
        in_app = [row for *_, rows in outcomes for row in rows]
        for rows in chunked(in_app, INSERT_ROWS):  # the in-app "sends" of the batch
            InAppNotification.insert_many(rows).execute()
        # Per notification, in order: a success resets the count, a failure adds one.
        counts: dict = {}  # notification id -> (reset, failures after the last success)
        succeeded: dict = {}  # status code -> (delivery ids, last completion): one UPDATE each
        for delivery, status_code, error, _duration, at, _ in outcomes:
            attempts = delivery.attempts + 1
            reset, failures = counts.get(delivery.notification_id, (False, 0))
            if error is None:
                ids, last = succeeded.get(status_code, ([], 0))
                succeeded[status_code] = (ids + [delivery.id], max(last, at))
                counts[delivery.notification_id] = (True, 0)
            else:
                done = attempts > len(delays)
                Delivery.update(status=FAILED if done else PENDING, attempts=attempts, claimed_by=None,
                                last_status_code=status_code,
                                last_error=error, completed_at=at if done else None,
                                next_attempt_at=at + (0 if done else delays[attempts - 1] * 1000)).where(
                    Delivery.id == delivery.id).execute()
                counts[delivery.notification_id] = (reset, failures + 1)
        # A batch's successes share its last completion time (each attempt row keeps its own):
        # one statement instead of one per delivery, inside the write lock pushes wait for.
        for status_code, (ids, at) in succeeded.items():
            Delivery.update(status=SUCCESS, attempts=Delivery.attempts + 1, claimed_by=None,
                            last_status_code=status_code, last_error=None, completed_at=at).where(
                Delivery.id.in_(ids)).execute()
        by_change: dict = {}
        for notification_id, change in counts.items():
            by_change.setdefault(change, []).append(notification_id)
        for (reset, failures), ids in by_change.items():
            value = failures if reset else Notification.number_of_failures + failures
            Notification.update(number_of_failures=value).where(Notification.id.in_(ids)).execute()
