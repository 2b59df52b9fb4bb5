"""Registry use cases in-process: uploads, manifests, tags, deletion, expiry, the time machine and garbage
collection, with the clock moved on instead of waited for."""
from __future__ import annotations

import os

import pytest

from accounts import orgs
from registry import blobs, content, gc, repos, tags
from registry.errors import oci_error
from registry.jobs import cleanup_stale_uploads
from registry.models import Blob, Upload
from slipway.errors import DomainError, Invalid

from .steps import digest_of, push_blob, push_image


@pytest.fixture
def repo(admin):
    return repos.create("admin/app", admin)[0]


def test_a_chunked_upload_becomes_a_blob_and_a_wrong_digest_leaves_nothing(storage, repo):
    data = os.urandom(300_000)
    digest = push_blob(storage, repo, data, chunk=100_000)
    assert content.blob_size("admin/app", digest) == len(data)
    assert b"".join(storage.read_blob(digest, 0, len(data))) == data
    assert list(storage.uploads.iterdir()) == [] and Upload.select().count() == 0

    upload = blobs.start_upload(storage, repo)
    receiver = blobs.ChunkReceiver(storage, upload.uuid, 0)
    receiver.write(b"not what the digest says")
    size = receiver.close()
    with pytest.raises(DomainError) as refused:
        blobs.verify_and_commit(storage, repo, upload.uuid, digest_of(b"something else"), size, upload)
    assert oci_error(refused.value).code == "DIGEST_INVALID"
    assert list(storage.uploads.iterdir()) == [] and Upload.select().count() == 0
    assert Blob.select().count() == 1


def test_a_manifest_is_found_by_tag_and_digest_and_needs_its_blobs(storage, repo, admin):
    pushed = push_image(storage, repo, "v1")
    digest = pushed.manifest.digest
    assert content.lookup_manifest("admin/app", "v1").digest == digest
    assert content.lookup_manifest("admin/app", digest).content == pushed.manifest.content
    assert content.list_tags("admin/app", None, "") == ["v1"]
    with pytest.raises(DomainError) as unknown:
        content.lookup_manifest("admin/app", "v2")
    assert oci_error(unknown.value).code == "MANIFEST_UNKNOWN"

    other = repos.create("admin/other", admin)[0]  # the blobs are not linked there
    raw = pushed.manifest.content
    from registry import manifests

    with pytest.raises(DomainError) as missing:
        content.put_manifest(other, manifests.parse(bytes(raw), pushed.manifest.media_type), "v1", storage)
    assert oci_error(missing.value).code == "MANIFEST_BLOB_UNKNOWN"


def test_a_blob_a_tag_holds_is_not_deleted_and_deleting_a_tag_ends_it(storage, repo, admin):
    pushed = push_image(storage, repo, "v1", layer=b"held")
    with pytest.raises(DomainError) as held:
        blobs.unlink(repo, digest_of(b"held"))
    assert oci_error(held.value).code == "UNSUPPORTED" and "tag 'v1'" in held.value.message
    assert content.delete_reference(repo, "v1", admin) == ["v1"]
    assert content.list_tags("admin/app", None, "") == []
    blobs.unlink(repo, digest_of(b"held"))  # nothing holds it now
    assert content.blob_size("admin/app", digest_of(b"held")) is None
    with pytest.raises(DomainError):
        content.lookup_manifest("admin/app", "v1")
    assert content.lookup_manifest("admin/app", pushed.manifest.digest)  # the manifest stays until deleted


def test_a_tag_from_an_expiring_image_ends_at_its_time(storage, repo, clock):
    pushed = push_image(storage, repo, "short", labels={"quay.expires-after": "2h"})
    assert pushed.manifest.digest == content.lookup_manifest("admin/app", "short").digest
    clock.advance(2 * 3600 - 1)
    assert content.list_tags("admin/app", None, "") == ["short"]
    clock.advance(1.001)
    assert content.list_tags("admin/app", None, "") == []
    with pytest.raises(DomainError):
        content.lookup_manifest("admin/app", "short")


def test_the_time_machine_restores_within_its_window_only(storage, repo, clock):
    one = push_image(storage, repo, "v1", layer=b"one").manifest
    push_image(storage, repo, "v1", layer=b"two")  # v1 moves on; its first span ends now
    clock.advance(3599)
    tags.restore(repo, "v1", one.digest, window_seconds=3600)
    assert content.lookup_manifest("admin/app", "v1").digest == one.digest
    tags.delete(repo, "v1")
    clock.advance(3601)
    with pytest.raises(Invalid, match="time machine window"):
        tags.restore(repo, "v1", one.digest, window_seconds=3600)


def test_gc_spares_what_is_younger_than_the_grace_and_frees_the_rest(storage, repo, admin, clock):
    orgs.set_time_machine(repo.namespace, 0, admin)  # no time machine: what is deleted is garbage
    pushed = push_image(storage, repo, "v1", layer=b"doomed")
    content.delete_reference(repo, pushed.manifest.digest, admin)
    stray = push_blob(storage, repo, b"uploaded for a manifest not pushed yet")
    assert gc.collect(storage, grace_seconds=60).blobs == 0  # all of it is younger than the grace
    clock.advance(30)
    kept = push_blob(storage, repo, b"a push going on")
    clock.advance(31)  # the first pushes are now past the grace, the last one is not
    freed = gc.collect(storage, grace_seconds=60)
    assert digest_of(b"doomed") in freed.digests and stray in freed.digests and freed.manifests == 1
    assert storage.blob_size(digest_of(b"doomed")) is None  # the bytes are gone
    assert storage.blob_size(kept) is not None and content.blob_size("admin/app", kept) is not None


def test_abandoned_uploads_go_after_their_age(storage, repo, clock):
    upload = blobs.start_upload(storage, repo)
    assert cleanup_stale_uploads(storage, 24 * 3600) == 0
    clock.advance(24 * 3600 + 1)
    fresh = blobs.start_upload(storage, repo)
    assert cleanup_stale_uploads(storage, 24 * 3600) == 1
    assert [u.uuid for u in Upload.select()] == [fresh.uuid]
    assert sorted(p.name for p in storage.uploads.iterdir()) == [fresh.uuid] != [upload.uuid]
