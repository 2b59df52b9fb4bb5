"""File drops: build contexts uploaded before the build that uses them (Quay's two-step flow).

A drop is a row (owner, media type, size, whether its bytes are all there) and the bytes
in the upload area of blob storage under ``worker.filedrop_key``. The worker deletes
drops an hour old.
"""
from __future__ import annotations

import uuid

from tornado import httputil

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


def stored(owner_id: int, file_id: str, size: int, mime_type: str) -> str:
    """A drop whose bytes were written to storage as they arrived (a build request's multipart upload)."""
    FileDrop.create(file_id=file_id, owner=owner_id, mime_type=mime_type or "", size=size, uploaded=True)
    return file_id


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


class MultipartError(Invalid):
    """A malformed multipart/form-data body."""


class MultipartStream:
    """A ``multipart/form-data`` body parsed as it arrives: the part named ``file`` goes to ``sink`` (a
    storage writer) chunk by chunk, the other parts (small form fields) are kept in ``fields``.

    The build request's context used to be gathered whole, copied and split by Tornado's parser, then
    written to storage; streamed, it is written once, while it arrives."""

    MAX_HEADERS = 16 * 1024  # the headers of one part
    MAX_FIELDS = 256 * 1024  # all form fields together

    def __init__(self, content_type: str, sink):
        kind, params = httputil._parse_header(content_type)
        boundary = params.get("boundary", "")  # unquoted by the parser
        if kind.lower() != "multipart/form-data" or not boundary:
            raise MultipartError("A multipart upload needs a Content-Type multipart/form-data with a boundary")
        self.delimiter = b"\r\n--" + boundary.encode("latin-1")
        self.sink = sink
        self.buffer = b"\r\n"  # the first boundary then reads as every other one
        self.state = "preamble"
        self.fields: dict[str, str] = {}
        self.field_bytes = 0
        self.file: dict | None = None  # {"filename", "content_type", "size"} of the part named "file"
        self._part: bytearray | None = None  # the field being read
        self._part_name = ""
        self._to_sink = False

    @property
    def complete(self) -> bool:
        return self.state == "done"

    def feed(self, chunk: bytes) -> None:
        if self.state == "done":
            return  # the epilogue: ignored
        self.buffer += chunk
        while self._step():
            pass

    def _step(self) -> bool:
        """Consume what the buffer allows; True if another step may make progress."""
        buffer = self.buffer
        if self.state in ("preamble", "body"):
            at = buffer.find(self.delimiter)
            if at < 0:
                keep = len(self.delimiter) - 1
                if len(buffer) > keep:
                    self._emit(buffer[:len(buffer) - keep])
                    self.buffer = buffer[len(buffer) - keep:]
                return False
            self._emit(buffer[:at])
            self._end_part()
            self.buffer = buffer[at + len(self.delimiter):]
            self.state = "boundary"
            return True
        if self.state == "boundary":
            if len(buffer) < 2:
                return False
            if buffer[:2] == b"--":
                self.state, self.buffer = "done", b""
                return False
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > 256:
                    raise MultipartError("Malformed multipart upload: a boundary line does not end")
                return False
            if buffer[:end].strip(b" \t"):
                raise MultipartError("Malformed multipart upload: text after a boundary")
            self.buffer, self.state = buffer[end + 2:], "headers"
            return True
        if self.state == "headers":
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self.MAX_HEADERS:
                    raise MultipartError("Malformed multipart upload: a part's headers are too long")
                return False
            self._start_part(buffer[:end])
            self.buffer, self.state = buffer[end + 4:], "body"
            return True
        return False

    def _start_part(self, raw: bytes) -> None:
        try:
            headers = httputil.HTTPHeaders.parse(raw.decode("utf-8") + "\r\n")
        except (UnicodeDecodeError, httputil.HTTPInputError):
            raise MultipartError("Malformed multipart upload: unreadable part headers") from None
        disposition, params = httputil._parse_header(headers.get("Content-Disposition", ""))
        if disposition != "form-data" or not params.get("name"):
            raise MultipartError("Malformed multipart upload: a part without Content-Disposition: form-data; name=")
        name = params["name"]
        if name == "file" and "filename" in params and self.file is None:
            self.file = {"filename": params["filename"], "size": 0,
                         "content_type": headers.get("Content-Type", "application/unknown")}
            self._to_sink = True
        elif name == "file" or "filename" in params:
            self._part = None  # another file: not read (Tornado's parser kept only the first one too)
        else:
            self._part, self._part_name = bytearray(), name

    def _emit(self, data: bytes) -> None:
        if not data or self.state != "body":
            return
        if self._to_sink:
            self.file["size"] += len(data)
            self.sink(data)
        elif self._part is not None:
            self.field_bytes += len(data)
            if self.field_bytes > self.MAX_FIELDS:
                raise MultipartError(f"The form fields of the upload are larger than {self.MAX_FIELDS} bytes")
            self._part += data

    def _end_part(self) -> None:
        if self.state != "body":
            return
        if self._part is not None and self._part_name not in self.fields:
            self.fields[self._part_name] = self._part.decode("utf-8", "replace")
        self._part, self._to_sink = None, False
