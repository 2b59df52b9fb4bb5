"""Blob storage behind one interface: the local filesystem (default) or S3-compatible object storage.

Blobs are content-addressed and written once. Uploads are staged apart from
blobs, keyed by the upload id, and only ``upload_commit`` (after the digest has
been verified) makes the bytes a blob, so a crash mid-upload never leaves a
visible partial blob.
"""
from __future__ import annotations

import fcntl
import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator

CHUNK = 1024 * 1024


class UploadMissing(Exception):
    """The upload's staged bytes are gone (cancelled, committed or cleaned up)."""


class UploadBusy(Exception):
    """Another request holds the upload's writer lock."""


class UploadLock(ABC):
    @abstractmethod
    def release(self) -> None: ...


class _ProcessLock(UploadLock):
    """A lock held within this process only (the default for drivers without a shared one)."""

    _held: set = set()
    _guard = threading.Lock()

    def __init__(self, upload_id: str):
        with self._guard:
            if upload_id in self._held:
                raise UploadBusy(upload_id)
            self._held.add(upload_id)
        self.upload_id = upload_id

    def release(self) -> None:
        with self._guard:
            self._held.discard(self.upload_id)


class BlobWriter(ABC):
    """Appends to an upload; ``close`` makes the bytes durable and returns the upload's size.

    After ``close``, ``fingerprint`` names the staged bytes as this writer left them; it
    equals ``Storage.upload_fingerprint`` for as long as nothing else changed them.
    """

    fingerprint: object = None

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def close(self) -> int: ...

    @abstractmethod
    def abort(self) -> None: ...


class Storage(ABC):
    #: True when every operation is quick local I/O that may run on the event loop.
    local = False

    # -- blobs ---------------------------------------------------------------
    @abstractmethod
    def blob_size(self, digest: str) -> int | None: ...

    @abstractmethod
    def read_blob(self, digest: str, start: int = 0, length: int | None = None) -> Iterator[bytes]: ...

    @abstractmethod
    def delete_blob(self, digest: str) -> None: ...

    @abstractmethod
    def list_blobs(self) -> Iterator[str]: ...

    def blob_url(self, digest: str) -> str | None:
        """A URL the client may fetch the blob from directly (redirect), or None."""
        return None

    @abstractmethod
    def blob_mtime(self, digest: str) -> float | None:
        """When the blob's bytes were stored (seconds since the epoch), or None if they are not."""

    # -- identity (registry.identity) ----------------------------------------
    #: its ``storage.driver`` name, and the setting that says where it is (for messages)
    driver = ""
    setting = "storage.driver"

    @abstractmethod
    def location(self) -> str:
        """Where the bytes are, as a person would name it (a directory, s3://endpoint/bucket/prefix)."""

    @abstractmethod
    def read_marker(self) -> str | None:
        """The marker object naming this storage (``MARKER``), or None if there is none."""

    @abstractmethod
    def write_marker(self, text: str) -> None: ...

    # -- uploads -------------------------------------------------------------
    @abstractmethod
    def upload_create(self, upload_id: str) -> None: ...

    @abstractmethod
    def upload_writer(self, upload_id: str, offset: int) -> BlobWriter: ...

    @abstractmethod
    def upload_read(self, upload_id: str) -> Iterator[bytes]: ...

    def upload_lock(self, upload_id: str) -> UploadLock:
        """The upload's writer lock, or UploadBusy at once if another request holds it."""
        return _ProcessLock(upload_id)

    def upload_fingerprint(self, upload_id: str) -> object:
        """What the staged bytes are now (cheap: metadata, not content); None if unknown."""
        return None

    @abstractmethod
    def upload_commit(self, upload_id: str, digest: str) -> None: ...

    @abstractmethod
    def upload_delete(self, upload_id: str) -> None: ...

    @abstractmethod
    def list_uploads(self) -> Iterator[tuple[str, float]]:
        """(upload id, last modification time) of every staged upload."""


MARKER = "slipway-storage-id"  # beside blobs/ and uploads/, never listed as either


def blob_key(digest: str) -> str:
    algorithm, hexpart = digest.split(":", 1)
    return f"blobs/{algorithm}/{hexpart[:2]}/{hexpart}"


def _file_fingerprint(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class _FileLock(UploadLock):
    """flock(2) on the staged file: across processes, released by the kernel if the holder dies."""

    def __init__(self, path: Path):
        try:
            self.fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise UploadMissing(path.name) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise UploadBusy(path.name) from None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None


class _FileWriter(BlobWriter):
    def __init__(self, path: Path, offset: int):
        self.path = path
        self.file = open(path, "r+b")
        self.file.truncate(offset)
        self.file.seek(offset)

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def close(self) -> int:
        size = self.file.tell()
        self.file.flush()
        self.fingerprint = _file_fingerprint(os.fstat(self.file.fileno()))
        self.file.close()
        return size

    def abort(self) -> None:
        self.file.close()


class FilesystemStorage(Storage):
    local = True

    def __init__(self, root: Path):
        self.root = Path(root)
        self.uploads = self.root / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        return self.root / blob_key(digest)

    def blob_size(self, digest: str) -> int | None:
        try:
            return os.stat(self.blob_path(digest)).st_size
        except FileNotFoundError:
            return None

    driver = "filesystem"
    setting = "storage.path"

    def location(self) -> str:
        return str(self.root.resolve())

    def read_marker(self) -> str | None:
        try:
            return (self.root / MARKER).read_text().strip()
        except FileNotFoundError:
            return None

    def write_marker(self, text: str) -> None:
        staged = self.root / f"{MARKER}.{os.getpid()}"
        staged.write_text(text + "\n")
        os.replace(staged, self.root / MARKER)

    def blob_mtime(self, digest: str) -> float | None:
        try:
            return os.stat(self.blob_path(digest)).st_mtime
        except FileNotFoundError:
            return None

    def open_blob(self, digest: str):
        return open(self.blob_path(digest), "rb")

    def read_blob(self, digest: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        with self.open_blob(digest) as f:
            f.seek(start)
            remaining = length
            while remaining is None or remaining > 0:
                data = f.read(CHUNK if remaining is None else min(CHUNK, remaining))
                if not data:
                    return
                if remaining is not None:
                    remaining -= len(data)
                yield data

    def delete_blob(self, digest: str) -> None:
        try:
            os.unlink(self.blob_path(digest))
        except FileNotFoundError:
            pass

    def list_blobs(self) -> Iterator[str]:
        base = self.root / "blobs"
        for algorithm_dir in base.iterdir():
            for prefix_dir in algorithm_dir.iterdir():
                for path in prefix_dir.iterdir():
                    yield f"{algorithm_dir.name}:{path.name}"

    def _upload_path(self, upload_id: str) -> Path:
        return self.uploads / upload_id

    def upload_create(self, upload_id: str) -> None:
        self._upload_path(upload_id).touch(exist_ok=False)

    def upload_writer(self, upload_id: str, offset: int) -> BlobWriter:
        try:
            return _FileWriter(self._upload_path(upload_id), offset)
        except FileNotFoundError:
            raise UploadMissing(upload_id) from None

    def upload_lock(self, upload_id: str) -> UploadLock:
        return _FileLock(self._upload_path(upload_id))

    def upload_fingerprint(self, upload_id: str) -> object:
        try:
            return _file_fingerprint(os.stat(self._upload_path(upload_id)))
        except FileNotFoundError:
            raise UploadMissing(upload_id) from None

    def upload_read(self, upload_id: str) -> Iterator[bytes]:
        try:
            f = open(self._upload_path(upload_id), "rb")
        except FileNotFoundError:
            raise UploadMissing(upload_id) from None
        with f:
            while data := f.read(CHUNK):
                yield data

    def upload_commit(self, upload_id: str, digest: str) -> None:
        target = self.blob_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Atomic on one filesystem: the blob appears whole or not at all.
            os.replace(self._upload_path(upload_id), target)
        except FileNotFoundError:
            raise UploadMissing(upload_id) from None

    def upload_delete(self, upload_id: str) -> None:
        try:
            os.unlink(self._upload_path(upload_id))
        except FileNotFoundError:
            pass

    def list_uploads(self) -> Iterator[tuple[str, float]]:
        for path in self.uploads.iterdir():
            try:
                yield path.name, path.stat().st_mtime
            except FileNotFoundError:
                continue
