"""The stale-upload cleanup job, run directly on a database and a filesystem store."""
import os
import time
import uuid

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
    crashed, in_progress = str(uuid.uuid4()), str(uuid.uuid4())
    storage.upload_create(crashed)  # staged bytes without a session row: a push cut short by a crash
    storage.upload_create(in_progress)
    storage.upload_create("filedrop-abc")  # another package's file, not a registry upload
    two_days_ago = time.time() - 2 * 86400
    for name in (crashed, "filedrop-abc"):
        os.utime(storage.uploads / name, (two_days_ago, two_days_ago))

    assert cleanup_stale_uploads(storage, 24 * 3600) == 2
    assert [u.uuid for u in Upload.select()] == [recent.uuid]
    assert sorted(p.name for p in storage.uploads.iterdir()) == sorted([recent.uuid, in_progress, "filedrop-abc"])
