"""The scanner's service in-process, on a fresh database and a filesystem store, the clock under the test's
control: what garbage collection removes is pruned from the scanner's tables, an advisory a feed drops stops
matching, and a changed severity is announced again (through the notification's level filter)."""
from __future__ import annotations

import json

import pytest

from accounts import orgs
from registry import content, gc, repos
from scanner import jobs, scans
from scanner.models import SCANNED, AdvisoryRow, Announced, LayerIndexRow, ManifestKey, ManifestScan, ScanJob
from slipway.config import Config
from slipway.events import Event
from tests.unit.steps import digest_of, push_image
from webhooks import dispatch, notifications
from webhooks.models import Delivery

from .conftest import layer

pytestmark = pytest.mark.inprocess

OS_RELEASE = b'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'


def debian_layer(*packages: tuple[str, str, str]) -> bytes:
    """An uncompressed layer with a Debian 12 os-release and a dpkg status of (package, version, source)."""
    status = b"".join(f"Package: {name}\nStatus: install ok installed\nVersion: {version}\nSource: {source}\n"
                      f"Architecture: amd64\n\n".encode() for name, version, source in packages)
    return layer({"etc/os-release": OS_RELEASE, "var/lib/dpkg/status": status}, compress=None)


PERL = debian_layer(("perl-base", "5.36.0-7+deb12u3", "perl"))
ZLIB = debian_layer(("zlib1g", "1:1.2.13.dfsg-1", "zlib"))


def tracker(path, entries: dict) -> str:
    """A Debian security tracker JSON: ``{(source, cve): (fixed_version or None, urgency)}``, for bookworm."""
    document: dict = {}
    for (source, cve), (fixed, urgency) in entries.items():
        release = {"status": "resolved" if fixed else "open", "urgency": urgency}
        if fixed:
            release["fixed_version"] = fixed
        document.setdefault(source, {})[cve] = {"description": f"{cve} in {source}",
                                                "releases": {"bookworm": release}}
    path.write_text(json.dumps(document))
    return str(path)


@pytest.fixture
def storage(tmp_path):
    from registry.storage import FilesystemStorage

    return FilesystemStorage(tmp_path / "storage")


@pytest.fixture
def admin(db):
    from accounts import users

    return users.identity_for(users.create_user("admin", None, superuser=True), "password")


@pytest.fixture
def config():
    config = Config()
    config.network.allowlist = ["127.0.0.1/32"]
    return config


def scan_all(storage) -> None:
    """What the background process does after pushes: queue them, run every due scan."""
    scans.queue_pushed()
    limits = scans.ScanLimits(1 << 30, 1 << 30)
    while scans.run_next(storage, limits, "test-holder", 60, batch=16):
        pass


def findings(digest: str) -> dict:
    scan = ManifestScan.get(ManifestScan.digest == digest)
    assert scan.status == SCANNED, scan.reason
    return {f["id"]: f for f in json.loads(scan.findings)}


def announced(kind_filter: str | None = None) -> list[dict]:
    payloads = [json.loads(e.payload) for e in Event.select().where(Event.kind == scans.VULNERABILITY_FOUND)
                .order_by(Event.id)]
    return [p["vulnerability"] for p in payloads if kind_filter is None or p["vulnerability"]["id"] == kind_filter]


def test_what_gc_removes_is_pruned_and_what_another_repository_holds_is_kept(storage, admin, config, clock,
                                                                              tmp_path):
    jobs.update_feeds(config, [tracker(tmp_path / "tracker.json",
                                       {("perl", "CVE-2099-0001"): ("5.36.0-7+deb12u4", "low")})])
    app, twin, keep = (repos.create(name, admin)[0] for name in ("admin/app", "admin/twin", "admin/keep"))
    orgs.set_time_machine(app.namespace, 0, admin)  # no time machine: what is deleted is garbage
    shared = push_image(storage, app, "v1", layer=PERL).manifest.digest
    assert push_image(storage, twin, "v1", layer=PERL).manifest.digest == shared  # the same image twice
    kept = push_image(storage, keep, "v1", layer=ZLIB).manifest.digest
    scan_all(storage)
    assert set(findings(shared)) == {"CVE-2099-0001"} and findings(kept) == {}
    assert {a.repository_id for a in Announced.select().where(Announced.digest == shared)} == {app.id, twin.id}
    assert LayerIndexRow.select().where(LayerIndexRow.layer_digest == digest_of(PERL)).exists()

    # Removed from one repository: the scan stays (the other holds the manifest), its announcement there goes.
    content.delete_reference(app, shared, admin)
    clock.advance(61)
    assert gc.collect(storage, grace_seconds=60).manifests == 1
    assert scans.collected_since_cursor()
    scans.prune_collected()
    clock.advance(scans.SETTLE_MS / 1000 + 1)  # on PostgreSQL the cursor passes events once settled
    scans.prune_collected()  # again: idempotent
    assert not scans.collected_since_cursor()
    assert ManifestScan.get(ManifestScan.digest == shared).status == SCANNED
    assert {a.repository_id for a in Announced.select().where(Announced.digest == shared)} == {twin.id}
    assert LayerIndexRow.select().where(LayerIndexRow.layer_digest == digest_of(PERL)).exists()  # twin's blob

    # Removed from the last one: its scan, keys and layer index go; the other image's stay.
    content.delete_reference(twin, shared, admin)
    clock.advance(61)
    freed = gc.collect(storage, grace_seconds=60)
    assert freed.manifests == 1 and digest_of(PERL) in freed.digests
    scans.prune_collected()
    assert not ManifestScan.select().where(ManifestScan.digest == shared).exists()
    assert not ManifestKey.select().where(ManifestKey.digest == shared).exists()
    assert not Announced.select().where(Announced.digest == shared).exists()
    assert not LayerIndexRow.select().where(LayerIndexRow.layer_digest == digest_of(PERL)).exists()
    assert ManifestScan.get(ManifestScan.digest == kept).status == SCANNED
    assert ManifestKey.select().where(ManifestKey.digest == kept).exists()
    assert LayerIndexRow.select().where(LayerIndexRow.layer_digest == digest_of(ZLIB)).exists()

    # Pushed again: scanned afresh (the layer read again), announced again.
    again = push_image(storage, app, "v2", layer=PERL).manifest.digest
    assert again == shared
    scan_all(storage)
    assert set(findings(shared)) == {"CVE-2099-0001"}
    assert LayerIndexRow.select().where(LayerIndexRow.layer_digest == digest_of(PERL)).exists()
    assert [a.repository_id for a in Announced.select().where(Announced.digest == shared)] == [app.id]


def test_a_deleted_repositorys_scans_are_pruned(storage, admin, config):
    app = repos.create("admin/app", admin)[0]
    digest = push_image(storage, app, "v1", layer=PERL).manifest.digest
    scan_all(storage)
    assert ManifestScan.select().where(ManifestScan.digest == digest).exists()
    repos.delete(app, admin)
    scans.prune_collected()
    assert not ManifestScan.select().where(ManifestScan.digest == digest).exists()
    assert not ScanJob.select().exists() and not ManifestKey.select().exists()


def test_an_advisory_dropped_from_its_feed_stops_matching(storage, admin, config, tmp_path):
    feed = tmp_path / "tracker.json"
    both = {("perl", "CVE-2099-0001"): ("5.36.0-7+deb12u4", "low"), ("perl", "CVE-2099-0002"): (None, "medium")}
    jobs.update_feeds(config, [tracker(feed, both)])
    app = repos.create("admin/app", admin)[0]
    digest = push_image(storage, app, "v1", layer=PERL).manifest.digest
    scan_all(storage)
    assert set(findings(digest)) == {"CVE-2099-0001", "CVE-2099-0002"}

    # Another feed giving the same advisory keeps it; the feed that dropped it alone does not.
    other = tmp_path / "other"
    other.mkdir()
    result = jobs.update_feeds(config, [tracker(feed, {("perl", "CVE-2099-0001"): both[("perl", "CVE-2099-0001")]}),
                                        tracker(other / "extra.json", {("perl", "CVE-2099-0002"): (None, "medium")})])
    assert result.withdrawn == 0 and result.added == 0
    result = jobs.update_feeds(config, [tracker(other / "extra.json",
                                                {("zlib", "CVE-2099-0003"): ("1:1.3.dfsg-1", "high")})])
    assert (result.withdrawn, result.added, result.rematched) == (1, 1, 1)
    assert set(findings(digest)) == {"CVE-2099-0001"}
    assert AdvisoryRow.select().where(AdvisoryRow.advisory_id == "CVE-2099-0002").count() == 0
    [summary] = [ManifestScan.get(ManifestScan.digest == digest).summary]
    assert json.loads(summary) == {"Low": 1, "fixable": 1}
    # The same update again: nothing more to withdraw, nothing matched again.
    result = jobs.update_feeds(config, [str(other / "extra.json")])
    assert (result.withdrawn, result.rematched) == (0, 0)


def test_a_changed_severity_is_announced_again_through_the_level_filter(storage, admin, config, tmp_path):
    feed = tmp_path / "tracker.json"
    jobs.update_feeds(config, [tracker(feed, {("perl", "CVE-2099-0001"): ("5.36.0-7+deb12u4", "low")})])
    app = repos.create("admin/app", admin)[0]
    for level in (None, "High"):
        notifications.create(app, {"event": "vulnerability_found", "method": "webhook",
                                   "config": {"url": "http://127.0.0.1:9/x"},
                                   "eventConfig": {"level": level} if level else {}}, admin, config.network)
    push_image(storage, app, "v1", layer=PERL)
    scan_all(storage)
    assert [v["priority"] for v in announced()] == ["Low"]
    assert dispatch.fan_out(config) == 1  # to the notification without a level only

    result = jobs.update_feeds(config, [tracker(feed, {("perl", "CVE-2099-0001"): ("5.36.0-7+deb12u4", "high")})])
    assert (result.changed, result.announced) == (1, 1)
    assert [v["priority"] for v in announced()] == ["Low", "High"]
    assert dispatch.fan_out(config) == 2  # now to both
    levels = {json.loads(d.payload)["vulnerability"]["priority"] for d in Delivery.select()}
    assert levels == {"Low", "High"} and Delivery.select().count() == 3

    # The same feed again: nothing changed, nothing announced.
    result = jobs.update_feeds(config, [str(feed)])
    assert (result.changed, result.announced) == (0, 0) and len(announced()) == 2


def test_a_batch_of_pushes_is_queued_and_recorded_together_each_with_its_own_result(storage, admin, config,
                                                                                      tmp_path):
    """Pushes queued as one batch and scanned as one claim: each manifest ends with its own status and reason,
    no job is left, a layer read once serves the batch; pushing a scanned manifest to another repository
    announces it there without a new scan, and one scanned by an older indexer version is queued again."""
    from scanner.index import INDEXER_VERSION

    jobs.update_feeds(config, [tracker(tmp_path / "tracker.json",
                                       {("perl", "CVE-2099-0001"): ("5.36.0-7+deb12u4", "low")})])
    app, other = repos.create("admin/app", admin)[0], repos.create("admin/other", admin)[0]
    vulnerable = push_image(storage, app, "perl", layer=PERL).manifest.digest
    twin = push_image(storage, app, "perl-again", layer=PERL, labels={"b": "1"}).manifest.digest  # same layer
    bare = push_image(storage, app, "bare", layer=layer({"bin/true": b"x"}, compress=None)).manifest.digest
    broken = push_image(storage, app, "broken", layer=b"not a tar at all" * 64).manifest.digest
    assert scans.queue_pushed() == 4
    assert ScanJob.select().count() == 4
    ran = scans.run_next(storage, scans.ScanLimits(1 << 30, 1 << 30), "holder", 60, batch=16)
    assert ran == 4 and ScanJob.select().count() == 0
    assert set(findings(vulnerable)) == set(findings(twin)) == {"CVE-2099-0001"}
    status = {s.digest: (s.status, s.reason) for s in ManifestScan.select()}
    assert status[bare] == ("unsupported", "no package database found (an image FROM scratch, or not an OS image)")
    assert status[broken][0] == "failed"
    assert status[broken][1].startswith(f"layer 1 ({digest_of(b'not a tar at all' * 64)}): ")
    assert "not a tar archive" in status[broken][1]
    assert LayerIndexRow.select().where(LayerIndexRow.layer_digest == digest_of(PERL)).count() == 1
    assert [a["id"] for a in announced()] == ["CVE-2099-0001"] * 2  # in app, once per manifest

    # Pushed to another repository: announced there from the stored result, no new scan.
    assert push_image(storage, other, "perl", layer=PERL).manifest.digest == vulnerable
    scans.queue_pushed()  # (on PostgreSQL it reads the unsettled events before it again: idempotent)
    assert ScanJob.select().count() == 0
    assert {a.repository_id for a in Announced.select().where(Announced.digest == vulnerable)} == {app.id, other.id}

    # Scanned by an older indexer: a push queues it again; a failed one of this version is not queued again.
    ManifestScan.update(indexer_version=INDEXER_VERSION + "-older").where(ManifestScan.digest == twin).execute()
    push_image(storage, other, "perl-again", layer=PERL, labels={"b": "1"})
    push_image(storage, other, "broken", layer=b"not a tar at all" * 64)
    scans.queue_pushed()
    assert [j.digest for j in ScanJob.select()] == [twin]
    assert ManifestScan.get(ManifestScan.digest == twin).status == "queued"


def test_a_result_the_database_refuses_fails_that_scan_alone(storage, admin, config, monkeypatch):
    """The results of a batch are written in one transaction; when it fails, each is written on its own and the
    one that fails again is recorded as failed with the error (not left queued, not retried as a crash)."""
    app = repos.create("admin/app", admin)[0]
    good = push_image(storage, app, "good", layer=PERL).manifest.digest
    bad = push_image(storage, app, "bad", layer=ZLIB).manifest.digest
    store = scans.store

    def refusing(digest, image, found):
        if digest == bad:
            raise ValueError("refused by the test")
        return store(digest, image, found)

    monkeypatch.setattr(scans, "store", refusing)
    scans.queue_pushed()
    assert scans.run_next(storage, scans.ScanLimits(1 << 30, 1 << 30), "holder", 60, batch=16) == 2
    assert ScanJob.select().count() == 0
    assert ManifestScan.get(ManifestScan.digest == good).status == SCANNED
    refused = ManifestScan.get(ManifestScan.digest == bad)
    assert refused.status == "failed" and refused.reason == "internal error: ValueError: refused by the test"


LIMITS = scans.ScanLimits(1 << 30, 1 << 30)


def push_index(storage, repo, child, extra: dict | None = None) -> str:
    from registry import manifests
    from registry.manifests import OCI_INDEX, OCI_MANIFEST

    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, **(extra or {}), "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child.digest, "size": child.size}]}).encode()
    return content.put_manifest(repo, manifests.parse(raw, OCI_INDEX), "multi", storage).manifest.digest


def test_an_index_and_its_platform_manifest_in_one_batch_leave_no_job(storage, admin):
    app = repos.create("admin/app", admin)[0]
    child = push_image(storage, app, "perl", layer=PERL).manifest
    index = push_index(storage, app, child)
    scans.queue_pushed()
    scans.queue(index)
    assert scans.run_next(storage, LIMITS, "holder", 60, batch=16) == 2
    assert list(ScanJob.select()) == []  # the platform manifest, scanned in the batch, is not queued again


def test_a_finished_scan_is_written_before_the_next_one_reads_large_layers(storage, admin, monkeypatch):
    """A scan that reads large layers may take long: what the batch finished before it is visible meanwhile
    (here every layer counts as large)."""
    monkeypatch.setattr(scans, "WRITE_BEFORE_BYTES", 0)
    app = repos.create("admin/app", admin)[0]
    first = push_image(storage, app, "a", layer=PERL).manifest.digest
    push_image(storage, app, "b", layer=ZLIB)
    scans.queue_pushed()
    seen, read_blob = [], storage.read_blob

    def reading(digest, *args, **kwargs):
        if digest == digest_of(ZLIB):
            seen.append(ManifestScan.get(ManifestScan.digest == first).status)
        return read_blob(digest, *args, **kwargs)

    storage.read_blob = reading
    scans.run_next(storage, LIMITS, "holder", 60, batch=16)
    assert seen == [SCANNED]


class Died(BaseException):
    """What the process's death (killed while reading a layer) looks like to the code after it: nothing runs."""


def test_a_scan_that_kills_its_process_does_not_take_the_batchs_earlier_scans_with_it(storage, admin, clock,
                                                                                        monkeypatch):
    """(A scan of large layers: every layer counts as large here.)"""
    monkeypatch.setattr(scans, "WRITE_BEFORE_BYTES", 0)
    app = repos.create("admin/app", admin)[0]
    first = push_image(storage, app, "a", layer=PERL).manifest.digest
    second = push_image(storage, app, "b", layer=ZLIB).manifest.digest
    scans.queue_pushed()
    read_blob = storage.read_blob

    def reading(digest, *args, **kwargs):
        if digest == digest_of(ZLIB):
            raise Died()
        return read_blob(digest, *args, **kwargs)

    storage.read_blob = reading
    for _ in range(scans.MAX_ATTEMPTS):
        with pytest.raises(Died):
            scans.run_next(storage, LIMITS, "holder", 60, batch=16)
        clock.advance(61)
    scans.run_next(storage, LIMITS, "holder", 60, batch=16)
    assert ManifestScan.get(ManifestScan.digest == first).status == SCANNED
    killer = ManifestScan.get(ManifestScan.digest == second)
    assert killer.status == "failed" and "interrupted 3 times" in killer.reason


def test_a_manifest_that_does_not_load_with_its_batch_fails_alone(storage, admin):
    """An index whose ``layers`` is not a list (the registry checks layers of images only) fails the batch's
    shared read; each is then read on its own and the rest of the batch is scanned."""
    app = repos.create("admin/app", admin)[0]
    child = push_image(storage, app, "perl", layer=PERL).manifest
    index = push_index(storage, app, child, {"layers": 5})
    scans.queue_pushed()
    scans.queue(index)
    assert scans.run_next(storage, LIMITS, "holder", 60, batch=16) == 2
    assert ManifestScan.get(ManifestScan.digest == child.digest).status == SCANNED
    assert ManifestScan.get(ManifestScan.digest == index).status == "unsupported"


def test_a_layer_read_by_a_scan_that_failed_is_stored_all_the_same(storage, admin, monkeypatch):
    app = repos.create("admin/app", admin)[0]
    push_image(storage, app, "a", layer=PERL)
    push_image(storage, app, "b", layer=PERL, labels={"b": "1"})
    scans.queue_pushed()
    match, calls = scans.match, []

    def failing_once(image, found):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("advisories went away")
        return match(image, found)

    monkeypatch.setattr(scans, "match", failing_once)
    scans.run_next(storage, LIMITS, "holder", 60, batch=16)
    assert LayerIndexRow.select().where(LayerIndexRow.layer_digest == digest_of(PERL)).count() == 1


def test_small_scans_are_written_together_unless_results_have_waited(storage, admin, monkeypatch):
    """Scans of small layers share one write (the results of the first are not visible while the second reads
    its layer), unless the first results have waited ``WRITE_AFTER_SECONDS`` (then they are)."""
    app = repos.create("admin/app", admin)[0]
    first = push_image(storage, app, "a", layer=PERL).manifest.digest
    push_image(storage, app, "b", layer=ZLIB)
    scans.queue_pushed()
    seen, read_blob = [], storage.read_blob

    def reading(digest, *args, **kwargs):
        if digest == digest_of(ZLIB):
            seen.append(ManifestScan.get(ManifestScan.digest == first).status)
        return read_blob(digest, *args, **kwargs)

    storage.read_blob = reading
    scans.run_next(storage, LIMITS, "holder", 60, batch=16)
    assert seen == ["queued"] and ManifestScan.get(ManifestScan.digest == first).status == SCANNED

    monkeypatch.setattr(scans, "WRITE_AFTER_SECONDS", 0)
    again = push_image(storage, app, "c", layer=debian_layer(("perl-base", "5.36.0-7+deb12u9", "perl"))).manifest
    push_image(storage, app, "d", layer=ZLIB, labels={"d": "1"})
    LayerIndexRow.delete().where(LayerIndexRow.layer_digest == digest_of(ZLIB)).execute()  # read again
    scans.queue_pushed()
    seen.clear()
    first = again.digest
    scans.run_next(storage, LIMITS, "holder", 60, batch=16)
    assert seen == [SCANNED]
