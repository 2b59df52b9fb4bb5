"""The stale-upload cleanup job, run directly on a database and a filesystem store."""
import os
import time

from accounts.models import Account
from registry import blobs
from registry.jobs import cleanup_stale_uploads
from registry.models import Repository, Upload
from registry.storage import FilesystemStorage


def test_abandoned_uploads_are_discarded_and_recent_ones_kept(db, tmp_path):
    storage = FilesystemStorage(tmp_path / "storage")
    repo = Repository.create(namespace=Account.create(name="ns"), name="r")
    old = blobs.start_upload(storage, repo)
    recent = blobs.start_upload(storage, repo)
    Upload.update(updated_at=0).where(Upload.id == old.id).execute()
    storage.upload_create("orphan-after-crash")  # staged bytes without a session row
    two_days_ago = time.time() - 2 * 86400
    os.utime(storage.uploads / "orphan-after-crash", (two_days_ago, two_days_ago))
    storage.upload_create("orphan-in-progress")

    assert cleanup_stale_uploads(storage, 24 * 3600) == 2
    assert [u.uuid for u in Upload.select()] == [recent.uuid]
    assert sorted(p.name for p in storage.uploads.iterdir()) == sorted([recent.uuid, "orphan-in-progress"])
