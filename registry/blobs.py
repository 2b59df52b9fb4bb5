"""Blob uploads and links: sessions, chunks hashed as they arrive, digest verification, mounts.

An upload session is a row (for its repository and offset) plus staged bytes in
storage, both keyed by the upload id, so it survives a restart and works on any
node. One request at a time writes to a session (``claim``: the storage's writer
lock, across processes). The running sha256 state is kept in memory between
chunks as a shortcut, together with the fingerprint of the staged bytes its
writer left; it is trusted at commit only while the staged bytes still have that
fingerprint. Otherwise (restart, another process, sha512, anything else touched
the bytes) the staged bytes themselves are hashed again at the end.
"""
from __future__ import annotations

import threading
import uuid
from collections import OrderedDict

from peewee import IntegrityError

from slipway.db import database, is_postgres, now_ms

from . import digests
from .errors import DigestInvalid, UploadLocked, blob_unknown, upload_unknown
from .models import Blob, Manifest, ManifestBlob, Repository, RepositoryBlob, Upload
from .storage import Storage, UploadBusy, UploadLock, UploadMissing


class RunningHashes:
    """Running sha256 states of upload sessions between chunks, the newest ``limit`` of them.

    Each is kept with the offset it reached and the fingerprint of the staged bytes its writer left.
    Used from the event loop and from threads (S3 uploads), so every access holds a lock; a state is
    taken out (``take``) by the one request that writes to the session, never shared.
    """

    def __init__(self, limit: int = 1000):
        self.limit = limit
        self._states: "OrderedDict[str, tuple[int, object, object]]" = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, upload_id: str, offset: int, hasher, fingerprint) -> None:
        with self._lock:
            self._states[upload_id] = (offset, hasher, fingerprint)
            self._states.move_to_end(upload_id)
            while len(self._states) > self.limit:
                self._states.popitem(last=False)

    def take(self, upload_id: str) -> tuple[int, object, object] | None:
        """(offset, hasher, fingerprint) of the session, removed from the cache; None if not kept."""
        with self._lock:
            return self._states.pop(upload_id, None)

    def __len__(self) -> int:
        return len(self._states)


#: This process's running hashes (the functions below use it unless given their own).
HASHES = RunningHashes()


def new_upload_id() -> str:
    return str(uuid.uuid4())


def start_upload(storage: Storage, repo: Repository) -> Upload:
    upload_id = new_upload_id()
    storage.upload_create(upload_id)
    return Upload.create(uuid=upload_id, repository=repo)


def find_upload(repo: Repository, upload_id: str) -> Upload:
    upload = Upload.get_or_none((Upload.uuid == upload_id) & (Upload.repository == repo))
    if upload is None:
        raise upload_unknown(upload_id)
    return upload


def claim(storage: Storage, upload_id: str) -> UploadLock:
    """The session's writer lock; a second writer is refused at once (409), never interleaved."""
    try:
        return storage.upload_lock(upload_id)
    except UploadMissing:
        raise upload_unknown(upload_id) from None
    except UploadBusy:
        raise UploadLocked("another request is writing to this upload session; send the next chunk "
                           "when it has finished", detail={"uuid": upload_id}) from None


class ChunkReceiver:
    """Takes one request's body into an upload at ``offset``, hashing on the fly."""

    def __init__(self, storage: Storage, upload_id: str, offset: int, hashes: RunningHashes = HASHES):
        self.storage = storage
        self.hashes = hashes
        self.upload_id = upload_id
        self.offset = offset
        try:
            self.writer = storage.upload_writer(upload_id, offset)
        except UploadMissing:
            raise upload_unknown(upload_id) from None
        cached = hashes.take(upload_id)
        if cached is not None and cached[0] == offset:
            self.hasher = cached[1]
        elif offset == 0:
            self.hasher = digests.new_hasher("sha256")
        else:
            self.hasher = None
        self.received = 0

    def write(self, data: bytes) -> None:
        self.writer.write(data)
        if self.hasher is not None:
            self.hasher.update(data)
        self.received += len(data)

    def close(self) -> int:
        """Make the chunk durable; returns the upload's new size."""
        size = self.writer.close()
        if self.hasher is not None:
            self.hashes.remember(self.upload_id, size, self.hasher, self.writer.fingerprint)
        return size

    def abort(self) -> None:
        self.writer.abort()


def record_progress(upload: Upload, size: int) -> None:
    Upload.update(offset=size, updated_at=now_ms()).where(Upload.id == upload.id).execute()
    upload.offset = size


def verify_and_commit(storage: Storage, repo: Repository, upload_id: str, digest: str, size: int,
                      upload: Upload | None = None, hashes: RunningHashes = HASHES) -> Blob:
    """Check the staged bytes against ``digest``; if they match, they become a blob linked to ``repo``.

    On a mismatch the staged bytes are discarded and DIGEST_INVALID is raised, so
    a bad push leaves nothing behind. The caller holds the session's writer lock (or
    the session is private to its request), so the bytes checked are the bytes committed.
    """
    algorithm, hexpart = digests.parse(digest)
    cached = hashes.take(upload_id)
    if (algorithm == "sha256" and cached is not None and cached[0] == size and cached[2] is not None
            and cached[2] == _fingerprint(storage, upload_id)):
        actual = cached[1].hexdigest()
    else:
        hasher = digests.new_hasher(algorithm)
        try:
            for data in storage.upload_read(upload_id):
                hasher.update(data)
        except UploadMissing:
            raise upload_unknown(upload_id) from None
        actual = hasher.hexdigest()
    if actual != hexpart:
        discard(storage, upload_id, upload, hashes)
        raise DigestInvalid(f"the uploaded content has digest {algorithm}:{actual}, not the {digest} given; "
                            "the upload was discarded", detail={"digest": digest})
    # The bytes become a blob inside the transaction that links them, with the blob row locked:
    # garbage collection deletes a blob (row and bytes) the same way, so the two never interleave.
    with database.atomic():
        blob = locked_blob(digest)
        if blob is None:  # two pushes of a new blob may race here: one inserts, both then lock that row
            Blob.insert(digest=digest, size=size).on_conflict_ignore().execute()
            blob = locked_blob(digest)
        # Always the verified bytes, even when a blob of that digest is already stored: a stored
        # copy is never trusted to be intact, a re-push repairs it.
        storage.upload_commit(upload_id, digest)
        link(repo, blob)
        if upload is not None:
            Upload.delete().where(Upload.id == upload.id).execute()
    return blob


def _fingerprint(storage: Storage, upload_id: str) -> object:
    try:
        return storage.upload_fingerprint(upload_id)
    except UploadMissing:
        raise upload_unknown(upload_id) from None


def locked_blob(digest: str) -> Blob | None:
    """The blob row, locked until the transaction ends (PostgreSQL; SQLite's write lock covers it)."""
    query = Blob.select().where(Blob.digest == digest)
    if is_postgres():
        query = query.for_update()
    return query.first()


def link(repo: Repository, blob: Blob) -> None:
    try:
        with database.atomic():
            RepositoryBlob.create(repository=repo, blob=blob)
    except IntegrityError:
        pass  # already linked


def discard(storage: Storage, upload_id: str, upload: Upload | None = None, hashes: RunningHashes = HASHES) -> None:
    hashes.take(upload_id)
    storage.upload_delete(upload_id)
    if upload is not None:
        Upload.delete().where(Upload.id == upload.id).execute()


def mount(repo: Repository, source: Repository, digest: str) -> Blob | None:
    """Link a blob of ``source`` into ``repo`` without copying; None if ``source`` does not have it."""
    with database.atomic():
        blob = locked_blob(digest)
        if blob is None or not RepositoryBlob.select().where(
                (RepositoryBlob.repository == source) & (RepositoryBlob.blob == blob)).exists():
            return None
        link(repo, blob)
    return blob


def unlink(repo: Repository, digest: str) -> None:
    """DELETE .../blobs/<digest>: the blob leaves the repository, unless a tagged manifest uses it."""
    from .content import held_by_tag, in_use

    with database.atomic():
        blob = Blob.get_or_none(Blob.digest == digest)
        deleted = 0
        if blob is not None:
            users = {m.id for m in Manifest.select(Manifest.id)
                     .join(ManifestBlob, on=(ManifestBlob.manifest == Manifest.id))
                     .where((ManifestBlob.blob == blob.id) & (Manifest.repository == repo)
                            & Manifest.deleted_at.is_null())}
            holder = held_by_tag(repo, users) if users else None
            if holder is not None:
                raise in_use("blob", digest, holder)
            deleted = RepositoryBlob.delete().where(
                (RepositoryBlob.repository == repo) & (RepositoryBlob.blob == blob)).execute()
        if not deleted:
            raise blob_unknown(digest)
