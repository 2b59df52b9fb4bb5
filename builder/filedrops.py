"""File drops: build contexts uploaded before the build that uses them (Quay's two-step flow).

A drop is a row (owner, media type, size, whether its bytes are all there) and the bytes
in the upload area of blob storage under ``worker.filedrop_key``. The worker deletes
drops an hour old.
"""
from __future__ import annotations

import uuid

from slipway.errors import Invalid, NotFound

from .models import FileDrop
from .worker import filedrop_key


def create(owner_id: int, mime_type: str) -> str:
    """A new, empty drop of ``owner_id``; returns its id (the caller makes its storage area)."""
    file_id = uuid.uuid4().hex
    FileDrop.create(file_id=file_id, owner=owner_id, mime_type=mime_type)
    return file_id


def awaiting_upload(file_id: str) -> FileDrop:
    """The drop whose bytes are still to come."""
    drop = FileDrop.get_or_none(FileDrop.file_id == file_id)
    if drop is None or drop.uploaded:
        raise NotFound("No such upload, or it is already done")
    return drop


def mark_uploaded(drop: FileDrop, size: int) -> None:
    FileDrop.update(uploaded=True, size=size).where(FileDrop.id == drop.id).execute()


def store(storage, owner_id: int, data: bytes, mime_type: str, limit: int) -> str:
    """A drop made at once from ``data`` (a build context sent with the build request); returns its id."""
    if len(data) > limit:
        raise Invalid(f"The upload is larger than the limit of {limit} bytes")
    file_id = uuid.uuid4().hex
    storage.upload_create(filedrop_key(file_id))
    writer = storage.upload_writer(filedrop_key(file_id), 0)
    writer.write(data)
    size = writer.close()
    FileDrop.create(file_id=file_id, owner=owner_id, mime_type=mime_type or "", size=size, uploaded=True)
    return file_id
