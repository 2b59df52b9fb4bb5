"""Background work exactly once among any number of processes: job leases, delivery claims, and migrations
started together on one database."""
from __future__ import annotations

import subprocess
import threading
import time
import uuid

from accounts.models import Account
from registry.models import Repository
from slipway import clock, leases
from slipway.config import Config
from slipway.db import database, now_ms
from tests.conftest import ROOT, SLIPWAY, USE_PG, new_database_url
from webhooks import dispatch, methods
from webhooks.models import SUCCESS, Attempt, Delivery, Notification


def race(n: int, fn) -> list:
    """Run ``fn(i)`` in ``n`` threads (each with its own database connection) released at once."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        finally:
            database.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_one_holder_at_a_time_and_a_dead_holders_lease_lapses(db, clock):
    assert leases.acquire("gc", "a", seconds=60)
    assert not leases.acquire("gc", "b", seconds=60)
    leases.release("gc", "b")  # not b's to release
    assert not leases.acquire("gc", "b", seconds=60)
    assert leases.renew("gc", "a") and not leases.renew("gc", "b")
    leases.release("gc", "a")
    assert leases.acquire("gc", "b", seconds=0.2)
    clock.advance(0.3)  # b died without releasing: its lease lapses
    assert leases.acquire("gc", "c", seconds=60)
    assert not leases.renew("gc", "b")


def test_a_job_runs_once_per_interval_wherever_it_is_looked_at(db):
    with leases.job("sweep", every=3600) as held:
        assert not held  # a new job first runs an interval later, as a scheduler's would
    leases.JobLease.update(started_at=now_ms() - 3601 * 1000).execute()
    ran = []
    for holder in ("a", "b", "a", "b"):
        with leases.job("sweep", every=3600) as held:
            if held:
                ran.append(holder)
    assert len(ran) == 1
    leases.JobLease.update(started_at=now_ms() - 3601 * 1000).execute()
    with leases.job("sweep", every=3600) as held:
        assert held


def test_of_many_claimers_racing_for_a_lease_exactly_one_wins(db):
    for round_ in range(5):
        winners = race(6, lambda i, job=f"job-{round_}": leases.acquire(job, f"holder-{i}"))
        assert winners.count(True) == 1, winners


def make_deliveries(repos: int, per_repo: int) -> list:
    owner = Account.create(name=f"ns{uuid.uuid4().hex[:6]}")
    made = []
    for r in range(repos):
        repo = Repository.create(namespace=owner, name=f"app{r}")
        n = Notification.create(uuid=str(uuid.uuid4()), repository=repo, event="repo_push", method="webhook",
                                config='{"url": "http://127.0.0.1:1/x"}')
        for i in range(per_repo):
            made.append(Delivery.create(notification=n, payload='{"n": %d}' % i, next_attempt_at=now_ms() - 1000))
    return made


def test_claimers_racing_take_disjoint_deliveries_and_one_repository_at_a_time(db):
    make_deliveries(repos=3, per_repo=4)
    claimed = race(4, lambda i: [(d.id, d.notification.repository_id) for d in
                                 dispatch.claim_due(Config(), f"holder-{i}", limit=50)])
    ids = [d for batch in claimed for d, _ in batch]
    assert len(ids) == len(set(ids)) == 12  # nobody took a delivery twice; all were taken
    for batch in claimed:  # a repository's deliveries went to one claimer (its order is kept)
        for other in claimed:
            if other is not batch:
                assert not {r for _, r in batch} & {r for _, r in other}
    assert dispatch.claim_due(Config(), "late") == []  # claimed: not due for anyone else


def test_many_senders_send_each_delivery_exactly_once(db, monkeypatch):
    made = make_deliveries(repos=4, per_repo=10)
    sent, guard = [], threading.Lock()

    def fake_send(notification, delivery, config, mailer, in_app_rows):
        time.sleep(0.002)
        with guard:
            sent.append(delivery.id)
        return 200, None

    monkeypatch.setattr(methods, "send", fake_send)

    def sender(i):
        deadline = time.time() + 20
        while time.time() < deadline and dispatch.send_due(Config(), limit=5):
            pass

    race(4, sender)
    assert sorted(sent) == sorted(d.id for d in made)  # each once
    assert Delivery.select().where(Delivery.status != SUCCESS).count() == 0
    assert Delivery.select().where(Delivery.claimed_by.is_null(False)).count() == 0
    assert Attempt.select().count() == len(made)


def test_a_group_stopped_by_a_failure_releases_the_rest_as_they_were(db, monkeypatch):
    made = make_deliveries(repos=1, per_repo=3)
    before = {d.id: d.next_attempt_at for d in Delivery.select()}
    monkeypatch.setattr(methods, "send", lambda *a, **k: (500, "server error"))
    assert dispatch.send_due(Config()) == 3
    first, *rest = sorted(Delivery.select(), key=lambda d: d.id)
    assert first.id == made[0].id and first.attempts == 1 and first.next_attempt_at > now_ms()
    assert [(d.claimed_by, d.next_attempt_at, d.attempts) for d in rest] == \
        [(None, before[d.id], 0) for d in rest]


def test_processes_migrating_one_empty_database_at_once_all_succeed(tmp_path):
    """Nodes started together on an empty database: one migrates, the others wait and go on."""
    url = new_database_url(tmp_path)
    env = {"SLIPWAY_DATABASE_URL": url, "SLIPWAY_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT),
           "SLIPWAY_AUTH__SECRET_KEY": "k" * 40, "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen(SLIPWAY + ["migrate"], env=env, cwd=str(ROOT), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n---\n".join(outputs)
    if USE_PG:
        assert not any("already exists" in o or "duplicate key" in o for o in outputs)


def test_a_job_run_by_hand_waits_for_the_holder_then_runs_under_the_lease(db):
    assert leases.acquire("registry.gc", "a scheduled gc on another node")
    log = []
    in_block = threading.Event()

    def by_hand():
        try:
            with leases.waiting_for("registry.gc", lambda: log.append("waiting"), poll=0.05):
                log.append("ran")
                assert not leases.acquire("registry.gc", "another")  # held while it runs
                in_block.set()
        finally:
            database.close()

    thread = threading.Thread(target=by_hand)
    thread.start()
    deadline = time.monotonic() + 30
    while not log and time.monotonic() < deadline:  # it looked, found the lease held, and said so
        time.sleep(0.01)
    assert log == ["waiting"]
    leases.release("registry.gc", "a scheduled gc on another node")
    thread.join(30)
    assert in_block.is_set() and log == ["waiting", "ran"]
    assert leases.JobLease.get(leases.JobLease.name == "registry.gc").holder is None  # given back


def test_admin_gc_runs_under_the_gc_lease(db, tmp_path, monkeypatch, capsys):
    """``slipway admin gc`` and the scheduled GC of any node never run at the same time."""
    from registry import gc
    from slipway import cli

    config = Config()
    config.data_dir = str(tmp_path / "data")
    holders = []
    monkeypatch.setattr(gc, "collect", lambda *a, **k: holders.append(
        leases.JobLease.get(leases.JobLease.name == "registry.gc").holder) or gc.Freed())
    assert cli._gc(config, 0) == 0
    assert holders == [leases.holder_id()]
    assert leases.JobLease.get(leases.JobLease.name == "registry.gc").holder is None


def test_a_node_whose_clock_runs_ahead_sees_leases_and_claims_held(db, monkeypatch):
    """Leases and claims lapse by the database's clock: a node five minutes ahead (NTP broken) takes
    neither a held job lease nor deliveries another node is sending."""
    make_deliveries(repos=1, per_repo=2)
    assert leases.acquire("gc", "node-a", seconds=60)
    assert len(dispatch.claim_due(Config(), "node-a")) == 2
    real = time.time
    # This node's clock (every rule reads slipway.clock, and time.time for good measure) is five minutes
    # ahead; the database's stays the real one.
    previous = clock.install(lambda: real() + 300)
    try:
        with monkeypatch.context() as ahead:
            ahead.setattr(time, "time", lambda: real() + 300)
            assert not leases.acquire("gc", "node-b", seconds=60)
            assert dispatch.claim_due(Config(), "node-b") == []
    finally:
        clock.install(previous)
