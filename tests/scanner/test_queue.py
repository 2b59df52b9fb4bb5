"""The scan queue in-process: one claim at a time, a dead holder's lease lapses and the scan is taken again,
a scan that keeps dying fails instead of staying queued, queueing is idempotent."""
from __future__ import annotations

from scanner import scans
from scanner.models import FAILED, QUEUED, ManifestScan, ScanJob
from tests.slipway.test_leases import race

DIGEST = "sha256:" + "a" * 64


def test_queueing_twice_makes_one_job(db):
    scans.queue(DIGEST)
    scans.queue(DIGEST)
    assert ScanJob.select().count() == 1
    assert ManifestScan.get(ManifestScan.digest == DIGEST).status == QUEUED


def test_one_claim_at_a_time_and_a_lapsed_lease_is_taken_again(db, clock):
    scans.queue(DIGEST)
    job = scans.claim("a", lease_seconds=60)
    assert job is not None and job.digest == DIGEST
    assert scans.claim("b", lease_seconds=60) is None  # held
    assert scans.renew(job, "a", 60)
    clock.advance(61)  # a died: its lease lapses
    taken = scans.claim("b", lease_seconds=60)
    assert taken is not None and taken.digest == DIGEST and taken.attempts == 2
    assert not scans.renew(job, "a", 60)
    scans.record([], [job.id], "a")  # not a's any more: nothing happens
    assert ScanJob.select().count() == 1
    scans.record([], [taken.id], "b")
    assert ScanJob.select().count() == 0


def test_concurrent_claims_take_a_job_once(db):
    scans.queue(DIGEST)
    got = race(6, lambda i: scans.claim(f"worker-{i}", 60))
    assert sum(1 for job in got if job is not None) == 1


def test_a_scan_that_keeps_dying_fails_with_a_reason(db, clock):
    scans.queue(DIGEST)
    for _ in range(scans.MAX_ATTEMPTS):
        assert scans.claim("dies", 60) is not None
        clock.advance(61)
    assert scans.claim("next", 60) is None
    scan = ManifestScan.get(ManifestScan.digest == DIGEST)
    assert scan.status == FAILED and "interrupted 3 times" in scan.reason
    assert ScanJob.select().count() == 0


def test_a_forced_rescan_queues_a_scanned_manifest_again(db):
    scans.queue(DIGEST)
    job = scans.claim("a", 60)
    scans.record([scans.Outcome(DIGEST, "unsupported", "nothing there")], [job.id], "a")
    scans.queue(DIGEST)  # already scanned: nothing to do
    assert ScanJob.select().count() == 0
    scans.queue(DIGEST, force=True)
    assert ScanJob.select().count() == 1 and ManifestScan.get(ManifestScan.digest == DIGEST).status == QUEUED


def test_several_due_scans_are_claimed_in_one_go_by_one_holder(db):
    digests = [f"sha256:{c * 64}" for c in "bcd"]
    for digest in digests:
        scans.queue(digest)
    taken = scans.claim_many("a", 60, 2)
    assert [j.digest for j in taken] == digests[:2]
    assert [j.digest for j in scans.claim_many("b", 60, 5)] == digests[2:]
    assert scans.claim_many("c", 60, 5) == []
    assert scans.renew_many(taken, "a", 60) == 2 and scans.renew_many(taken, "b", 60) == 0
