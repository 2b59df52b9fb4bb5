"""The storage a database's blobs are in is recorded at first start and checked by every later process;
`admin gc --orphans` removes stored blobs no row knows about, once past the grace period."""
from __future__ import annotations

import hashlib
import os
import shutil
import time

import pytest

from registry import identity
from registry.gc import remove_orphans
from registry.models import Blob
from registry.storage import MARKER, FilesystemStorage


def test_first_start_records_the_storage_and_later_ones_must_match(db, tmp_path):
    shared = FilesystemStorage(tmp_path / "shared")
    recorded = identity.ensure(shared)
    assert (tmp_path / "shared" / MARKER).read_text().strip() == recorded.marker
    assert (recorded.driver, recorded.location) == ("filesystem", str((tmp_path / "shared").resolve()))
    assert identity.ensure(shared).marker == recorded.marker  # the same storage: fine, nothing rewritten

    # The same storage reached by another path (another mount point): the marker decides, accepted.
    os.symlink(tmp_path / "shared", tmp_path / "mounted-elsewhere")
    identity.ensure(FilesystemStorage(tmp_path / "mounted-elsewhere"))

    identity.StorageIdentity.update(created_at=0).execute()  # not a first start happening right now
    for other in (tmp_path / "elsewhere", tmp_path / "copy"):
        if other.name == "copy":  # another Slipway's storage (its own marker)
            shutil.copytree(tmp_path / "shared", other)
            (other / MARKER).write_text("another-marker\n")
        with pytest.raises(identity.StorageMismatch) as refused:
            identity.ensure(FilesystemStorage(other))
        assert "set storage.path" in str(refused.value) and recorded.location in str(refused.value)


def test_orphaned_blobs_are_removed_only_past_the_grace_period(db, tmp_path):
    storage = FilesystemStorage(tmp_path / "s")

    def store(data: bytes, age: float) -> str:
        digest = stored(storage, data)
        os.utime(storage.blob_path(digest), (time.time() - age, time.time() - age))
        return digest

    known = store(b"known", 7200)
    Blob.create(digest=known, size=5)
    old_orphan, young_orphan = store(b"old orphan", 7200), store(b"young orphan", 10)
    removed, size = remove_orphans(storage, 3600)
    assert removed == [old_orphan] and size == len(b"old orphan")
    assert storage.blob_size(old_orphan) is None
    assert storage.blob_size(known) == 5 and storage.blob_size(young_orphan) is not None


def stored(storage: FilesystemStorage, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    storage.upload_create("u")
    writer = storage.upload_writer("u", 0)
    writer.write(data)
    writer.close()
    storage.upload_commit("u", digest)
    return digest


def test_a_first_start_whose_marker_could_not_be_written_is_recorded_by_the_next(db, tmp_path, monkeypatch):
    """The marker is written before the row commits: a first start that failed to write it (storage
    unreachable, wrong credentials, killed) leaves nothing behind that refuses every later start."""
    shared = FilesystemStorage(tmp_path / "shared")

    def unreachable(text):
        raise OSError("storage unreachable")

    monkeypatch.setattr(shared, "write_marker", unreachable)
    with pytest.raises(OSError):
        identity.ensure(shared)
    assert identity.StorageIdentity.select().count() == 0
    monkeypatch.undo()
    recorded = identity.ensure(FilesystemStorage(tmp_path / "shared"))
    assert (tmp_path / "shared" / MARKER).read_text().strip() == recorded.marker


def test_an_upgraded_deployment_adopts_its_storage_but_not_storage_without_its_blobs(db, tmp_path):
    """The first start after an upgrade in place (blobs, no identity yet) adopts the storage that holds them;
    a process whose storage holds none of them (``admin gc`` without the storage settings) is refused and
    records nothing, so the real nodes still start."""
    real = FilesystemStorage(tmp_path / "real")
    for data in (b"one", b"two"):
        Blob.create(digest=stored(real, data), size=len(data))
    with pytest.raises(identity.StorageMismatch) as refused:
        identity.ensure(FilesystemStorage(tmp_path / "default-path"))
    assert "set storage.path" in str(refused.value)
    assert identity.StorageIdentity.select().count() == 0
    assert not (tmp_path / "default-path" / MARKER).exists()
    recorded = identity.ensure(real)
    assert (tmp_path / "real" / MARKER).read_text().strip() == recorded.marker
