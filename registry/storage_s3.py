"""S3-compatible object storage (AWS S3, MinIO, Ceph RGW, ...) through boto3.

S3 has no append, so an upload is staged as one object per received chunk
(``uploads/<id>/<offset>``) and composed into the blob object on commit:
a server-side copy for a single chunk, a multipart upload otherwise.
"""
from __future__ import annotations

import tempfile
from typing import Iterator

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from .storage import CHUNK, MARKER, BlobWriter, Storage, UploadMissing, blob_key

PART_SIZE = 16 * 1024 * 1024  # S3 parts must be >= 5 MiB except the last


class _ChunkWriter(BlobWriter):
    """Spools one request's bytes to a temporary file, then stores them as one chunk object."""

    def __init__(self, storage: "S3Storage", upload_id: str, offset: int, earlier: tuple = ()):
        self.storage = storage
        self.upload_id = upload_id
        self.offset = offset
        self.earlier = earlier  # ETags of the chunks before this one
        self.spool = tempfile.TemporaryFile()
        self.written = 0

    def write(self, data: bytes) -> None:
        self.spool.write(data)
        self.written += len(data)

    def close(self) -> int:
        try:
            self.fingerprint = self.earlier
            if self.written:
                self.spool.seek(0)
                response = self.storage.client.put_object(
                    Bucket=self.storage.bucket,
                    Key=self.storage._chunk_key(self.upload_id, self.offset),
                    Body=self.spool, ContentLength=self.written)
                # Our own object's ETag: if another writer's object replaced it, the fingerprints differ.
                self.fingerprint = self.earlier + (response["ETag"],)
        finally:
            self.spool.close()
        return self.offset + self.written

    def abort(self) -> None:
        self.spool.close()


class S3Storage(Storage):
    local = False

    def __init__(self, client, bucket: str, prefix: str = "", redirect: bool = True, redirect_ttl: int = 600):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.redirect = redirect
        self.redirect_ttl = redirect_ttl

    @classmethod
    def from_config(cls, sc) -> "S3Storage":
        if not sc.s3_bucket:
            raise ValueError("storage.s3_bucket must be set for the s3 driver")
        client = boto3.client(
            "s3",
            endpoint_url=sc.s3_endpoint_url or None,
            region_name=sc.s3_region or None,
            aws_access_key_id=sc.s3_access_key_id or None,
            aws_secret_access_key=sc.s3_secret_access_key or None,
            config=BotoConfig(signature_version="s3v4", retries={"max_attempts": 3},
                              s3={"addressing_style": "path"}),
        )
        return cls(client, sc.s3_bucket, sc.s3_prefix, sc.s3_redirect, sc.s3_redirect_ttl)

    # -- keys ------------------------------------------------------------------
    def _blob(self, digest: str) -> str:
        return self.prefix + blob_key(digest)

    def _upload_prefix(self, upload_id: str) -> str:
        return f"{self.prefix}uploads/{upload_id}/"

    def _chunk_key(self, upload_id: str, offset: int) -> str:
        return f"{self._upload_prefix(upload_id)}{offset:020d}"

    def _list(self, prefix: str) -> Iterator[dict]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def _chunks(self, upload_id: str, etags: bool = False) -> list[tuple]:
        """(offset, size, key) of every chunk, in order (with its ETag last if ``etags``)."""
        chunks = []
        prefix = self._upload_prefix(upload_id)
        for obj in self._list(prefix):
            name = obj["Key"][len(prefix):]
            if name == "created":
                continue
            chunks.append((int(name), obj["Size"], obj["Key"]) + ((obj["ETag"],) if etags else ()))
        return sorted(chunks)

    # -- blobs -----------------------------------------------------------------
    def blob_size(self, digest: str) -> int | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._blob(digest))["ContentLength"]
        except ClientError as e:
            if e.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def read_blob(self, digest: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        args = {"Bucket": self.bucket, "Key": self._blob(digest)}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            args["Range"] = f"bytes={start}-{end}"
        body = self.client.get_object(**args)["Body"]
        try:
            while data := body.read(CHUNK):
                yield data
        finally:
            body.close()

    def delete_blob(self, digest: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._blob(digest))

    def list_blobs(self) -> Iterator[str]:
        prefix = self.prefix + "blobs/"
        for obj in self._list(prefix):
            algorithm, _, hexpart = obj["Key"][len(prefix):].split("/", 2)
            yield f"{algorithm}:{hexpart}"

    driver = "s3"
    setting = "storage.s3_bucket / storage.s3_prefix / storage.s3_endpoint_url"

    def location(self) -> str:
        return f"s3://{self.client.meta.endpoint_url.split('://', 1)[-1]}/{self.bucket}/{self.prefix}"

    def read_marker(self) -> str | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + MARKER)["Body"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchBucket"):
                return None
            raise
        try:
            return body.read().decode().strip()
        finally:
            body.close()

    def write_marker(self, text: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + MARKER, Body=(text + "\n").encode())

    def blob_mtime(self, digest: str) -> float | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._blob(digest))["LastModified"].timestamp()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def blob_url(self, digest: str) -> str | None:
        if not self.redirect:
            return None
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._blob(digest)}, ExpiresIn=self.redirect_ttl)

    # -- uploads ---------------------------------------------------------------
    def upload_create(self, upload_id: str) -> None:
        # A marker object, so an upload with no bytes yet still exists.
        self.client.put_object(Bucket=self.bucket, Key=self._upload_prefix(upload_id) + "created", Body=b"")

    def _require(self, upload_id: str) -> list:
        objects = list(self._list(self._upload_prefix(upload_id)))
        if not objects:
            raise UploadMissing(upload_id)
        return objects

    def upload_writer(self, upload_id: str, offset: int) -> BlobWriter:
        self._require(upload_id)
        # Drop chunks at or beyond the offset: a retried chunk replaces what a failed try left.
        earlier = []
        for chunk_offset, _, key, etag in self._chunks(upload_id, etags=True):
            if chunk_offset >= offset:
                self.client.delete_object(Bucket=self.bucket, Key=key)
            else:
                earlier.append(etag)
        return _ChunkWriter(self, upload_id, offset, tuple(earlier))

    def upload_fingerprint(self, upload_id: str) -> object:
        self._require(upload_id)
        return tuple(etag for *_, etag in self._chunks(upload_id, etags=True))

    def upload_read(self, upload_id: str) -> Iterator[bytes]:
        self._require(upload_id)
        for _, _, key in self._chunks(upload_id):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                while data := body.read(CHUNK):
                    yield data
            finally:
                body.close()

    def upload_commit(self, upload_id: str, digest: str) -> None:
        self._require(upload_id)
        chunks = self._chunks(upload_id)
        target = self._blob(digest)
        if len(chunks) == 0:
            self.client.put_object(Bucket=self.bucket, Key=target, Body=b"")
        elif len(chunks) == 1:
            self.client.copy_object(Bucket=self.bucket, Key=target,
                                    CopySource={"Bucket": self.bucket, "Key": chunks[0][2]})
        else:
            self._compose(chunks, target)
        self.upload_delete(upload_id)

    def _compose(self, chunks: list, target: str) -> None:
        mpu = self.client.create_multipart_upload(Bucket=self.bucket, Key=target)
        parts, buffer, number = [], bytearray(), 1
        try:
            for _, _, key in chunks:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
                while data := body.read(CHUNK):
                    buffer += data
                    if len(buffer) >= PART_SIZE:
                        parts.append(self._part(target, mpu["UploadId"], number, bytes(buffer)))
                        buffer.clear()
                        number += 1
                body.close()
            if buffer or not parts:
                parts.append(self._part(target, mpu["UploadId"], number, bytes(buffer)))
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=target, UploadId=mpu["UploadId"], MultipartUpload={"Parts": parts})
        except Exception:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=target, UploadId=mpu["UploadId"])
            raise

    def _part(self, key: str, upload_id: str, number: int, data: bytes) -> dict:
        response = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                           PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": response["ETag"]}

    def upload_delete(self, upload_id: str) -> None:
        keys = [{"Key": obj["Key"]} for obj in self._list(self._upload_prefix(upload_id))]
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys[i:i + 1000]})

    def list_uploads(self) -> Iterator[tuple[str, float]]:
        prefix = self.prefix + "uploads/"
        latest: dict[str, float] = {}
        for obj in self._list(prefix):
            upload_id = obj["Key"][len(prefix):].split("/", 1)[0]
            mtime = obj["LastModified"].timestamp()
            latest[upload_id] = max(latest.get(upload_id, 0), mtime)
        yield from latest.items()

