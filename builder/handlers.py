"""/api/v1 for builds: uploads (file drop), starting, history, cancelling, logs and live log streams."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid

from tornado.iostream import StreamClosedError
from tornado.web import stream_request_body

from registry.handlers_api import REPO_PATH, RepositoryBase
from registry.permissions import can
from slipway import outgoing
from slipway.api import API, ApiHandler
from slipway.errors import Forbidden, Invalid
from slipway.web import SHORT_BODY_TIMEOUT

from . import builds, filedrops, logs, queue
from .models import TERMINAL
from .worker import filedrop_key, wake

BUILD_PATH = rf"{REPO_PATH}/build/(?P<build_uuid>[0-9a-f-]{{36}})"
SSE_POLL_SECONDS = 0.1
SSE_KEEPALIVE_SECONDS = 15
DROP_TTL_MS = 3600 * 1000


def drop_signature(secret: str, file_id: str, expires: int) -> str:
    return hmac.new(secret.encode(), f"filedrop:{file_id}:{expires}".encode(), hashlib.sha256).hexdigest()


class FileDropHandler(ApiHandler):
    schemas = {"post": {"type": "object", "properties": {"mimeType": {"type": "string"}}}}

    async def post(self) -> None:
        """Get an upload URL for a build context (Quay's two-step flow: PUT the file there, then build)."""
        identity = self.require_login()
        body = self.json_body()
        file_id = filedrops.create(identity.account_id, body.get("mimeType", ""))
        await self.in_thread(self.services.storage.upload_create, filedrop_key(file_id))
        expires = int(time.time() * 1000) + DROP_TTL_MS
        signature = drop_signature(self.config.secret_key(), file_id, expires)
        url = f"{self.base_url()}{API}/filedrop/{file_id}?expires={expires}&signature={signature}"
        self.send({"url": url, "file_id": file_id})


@stream_request_body
class FileDropUploadHandler(ApiHandler):
    """PUT the file itself; the signed URL is the credential (as Quay's presigned storage URLs)."""

    writer = None

    async def prepare(self) -> None:
        file_id = self.path_kwargs["file_id"]
        expires = self.get_query_argument("expires", "0")
        signature = self.get_query_argument("signature", "")
        expected = drop_signature(self.config.secret_key(), file_id, int(expires) if expires.isdigit() else 0)
        if not hmac.compare_digest(signature, expected) or int(expires or 0) < time.time() * 1000:
            raise Forbidden("Invalid or expired upload URL: ask for a new one with POST /api/v1/filedrop/")
        self.drop = filedrops.awaiting_upload(file_id)
        self.limit = self.config.builds.max_context_bytes
        self.request.connection.set_max_body_size(self.limit + 1)
        self.received = 0
        self.writer = await self.in_thread(self.services.storage.upload_writer, filedrop_key(file_id), 0)

    def data_received(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.limit:
            raise Invalid(f"The upload is larger than the limit of {self.limit} bytes")
        self.writer.write(chunk)

    async def put(self, file_id: str) -> None:
        """Upload the build context (a Dockerfile or an archive)."""
        size = await self.in_thread(self.writer.close)
        self.writer = None
        filedrops.mark_uploaded(self.drop, size)
        self.send({"file_id": file_id, "size": size})

    def on_finish(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def build_request(body: dict) -> builds.BuildRequest:
    tags = body.get("docker_tags") or ["latest"]
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    build_args = body.get("build_args") or {}
    if isinstance(build_args, str):
        try:
            build_args = json.loads(build_args)
        except ValueError:
            raise Invalid("build_args must be a JSON object of strings") from None
    if not isinstance(build_args, dict):
        raise Invalid("build_args must be an object of name: value strings")
    return builds.BuildRequest(
        docker_tags=tags, dockerfile_path=body.get("dockerfile_path") or body.get("subdirectory") or "Dockerfile",
        context=body.get("context") or "", build_args=build_args, target=body.get("target") or None,
        pull_robot=body.get("pull_robot") or None, file_id=body.get("file_id") or None,
        archive_url=body.get("archive_url") or None)


class BuildListHandler(RepositoryBase):
    """A build request's context sent as a multipart upload (field "file") is streamed into a file drop as it
    arrives, once the caller's write access to the repository is checked; any other body is gathered as usual
    (this handler takes its body itself, so ``BaseHandler`` does not gather it)."""

    schemas = {"post": {"type": "object", "properties": {
        "file_id": {"type": "string"}, "archive_url": {"type": "string"},
        "docker_tags": {"type": "array", "items": {"type": "string"}}, "dockerfile_path": {"type": "string"},
        "context": {"type": "string"}, "subdirectory": {"type": "string"}, "pull_robot": {"type": ["string", "null"]},
        "build_args": {"type": "object", "additionalProperties": {"type": "string"}},
        "target": {"type": ["string", "null"]}}}}
    upload: filedrops.MultipartStream | None = None
    upload_writer = None
    upload_id: str | None = None
    upload_error: filedrops.MultipartError | None = None

    def __init__(self, application, request, **kwargs):
        super().__init__(application, request, **kwargs)
        self._gathered = bytearray()
        if not self._multipart() and request.connection is not None \
                and hasattr(request.connection, "set_body_timeout"):
            request.connection.set_body_timeout(SHORT_BODY_TIMEOUT)  # as every gathered body

    def _multipart(self) -> bool:
        return self.request.method == "POST" \
            and self.request.headers.get("Content-Type", "").startswith("multipart/form-data")

    def body_limit(self) -> int:
        # A build context sent as a multipart upload may be large; only a logged-in caller may send one.
        if self._multipart() and not self.identity.anonymous:
            return self.config.builds.max_context_bytes
        return super().body_limit()

    async def prepare(self) -> None:
        await super().prepare()
        if self._multipart():
            self.repository("write")  # refused before a byte of the body is read
            file_id = uuid.uuid4().hex
            await self.in_thread(self.services.storage.upload_create, filedrop_key(file_id))
            self.upload_id = file_id
            self.upload_writer = await self.in_thread(self.services.storage.upload_writer, filedrop_key(file_id), 0)
            self.upload = filedrops.MultipartStream(self.request.headers["Content-Type"], self.upload_writer.write)

    def data_received(self, chunk: bytes) -> None:
        if self.upload is not None:
            if self.upload_error is None:  # after an error the rest of the body is read and dropped
                try:
                    self.upload.feed(chunk)
                except filedrops.MultipartError as e:  # answered by post(), in the API's format
                    self.upload_error = e
        else:
            self._gathered += chunk

    async def get(self, namespace: str, repository: str) -> None:
        """Build history, newest first (?limit=, at most 100)."""
        repo = self.repository("read")
        limit = self.int_argument("limit", 25, minimum=1, maximum=100, clamp=True)
        writer = can(self.identity, "write", repo)
        self.send({"builds": [builds.view(b, writer) for b in builds.history(repo, limit)]})

    async def post(self, namespace: str, repository: str) -> None:
        """Start a build from an uploaded file (file_id), an archive_url, or a multipart upload (field "file")."""
        repo = self.repository("write")
        if self.upload is not None:
            upload, self.upload = self.upload, None
            if self.upload_error is not None:
                raise self.upload_error
            if not upload.complete:
                raise Invalid("The multipart upload ended before its closing boundary")
            if upload.file is None:
                raise Invalid("The multipart upload needs a part named 'file' (a Dockerfile or an archive)")
            writer, self.upload_writer = self.upload_writer, None
            size = await self.in_thread(writer.close)
            body = dict(upload.fields)
            body["file_id"] = filedrops.stored(self.identity.account_id, self.upload_id, size,
                                               upload.file["content_type"])
        else:
            self.request.body = bytes(self._gathered)
            body = self.json_body()
        if body.get("archive_url"):
            outgoing.check_url(body["archive_url"], self.config.network)
        build = builds.request_build(repo, self.identity, build_request(body),
                                     self.config.builds.max_queued_per_namespace, self.base_url(),
                                     self.client_ip)
        wake()
        self.send(builds.view(build, True), 201)

    def on_finish(self) -> None:
        if self.upload_writer is not None:  # refused or failed before the drop was kept
            writer, self.upload_writer = self.upload_writer, None
            writer.abort()
            self.services.storage.upload_delete(filedrop_key(self.upload_id))

    on_connection_close = on_finish  # the client went away mid-upload


class BuildBase(RepositoryBase):
    def build(self, action: str = "read"):
        repo = self.repository(action)
        return builds.get_build(repo, self.path_kwargs["build_uuid"])

    def log_build(self):
        """Logs need write permission (or read, if the operator lets readers see them), as Quay."""
        return self.build("read" if self.config.builds.readers_see_logs else "write")


class BuildHandler(BuildBase):
    async def get(self, namespace: str, repository: str, build_uuid: str) -> None:
        """One build: phase, tags, trigger, who started it, timings, result."""
        build = self.build()
        self.send(builds.view(build, can(self.identity, "write", build.repository)))

    async def delete(self, namespace: str, repository: str, build_uuid: str) -> None:
        """Cancel a build: a waiting one leaves the queue, a running one is stopped within seconds."""
        build = self.build("write")
        queue.cancel(build, self.base_url(), self.config.builds.max_log_bytes, self.identity, self.client_ip)
        self.send(None, 204)


class BuildStatusHandler(BuildBase):
    get = BuildHandler.get


class BuildLogsHandler(BuildBase):
    async def get(self, namespace: str, repository: str, build_uuid: str) -> None:
        """Log entries from ?start=N: {"start", "total", "logs"} (Quay's shape)."""
        build = self.log_build()
        start = self.int_argument("start", 0)
        rows = logs.read(build, start, limit=10000)
        self.send({"start": start, "total": logs.total(build.id), "logs": [logs.entry_view(r) for r in rows]})


class BuildLogDownloadHandler(BuildBase):
    async def get(self, namespace: str, repository: str, build_uuid: str) -> None:
        """The whole log as plain text."""
        build = self.log_build()
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="build-{build.uuid}.log"')
        start = 0
        while True:
            rows = logs.read(build, start, limit=5000)
            for row in rows:
                prefix = {"phase": "== phase: ", "error": "ERROR: "}.get(row.type, "")
                self.write(f"{prefix}{row.message}\n")
            if len(rows) < 5000:
                break
            start = rows[-1].seq + 1
            await self.flush()
        self.finish()


class BuildLogStreamHandler(BuildBase):
    """Server-Sent Events: every entry as ``id: N`` + ``data: {...}``, resumable with Last-Event-ID,
    keepalive comments, and a final ``event: end`` when the build is over."""

    closed = False

    async def get(self, namespace: str, repository: str, build_uuid: str) -> None:
        """Follow a build's log live (Server-Sent Events; resume with Last-Event-ID or ?start=N)."""
        build = self.log_build()
        last_id = self.request.headers.get("Last-Event-ID")
        position = (self.int_argument_value(last_id, "Last-Event-ID") + 1 if last_id and last_id.isdigit()
                    else self.int_argument("start", 0))
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        self.write("retry: 1000\n\n")
        await self.flush()
        last_sent = time.monotonic()
        while not self.closed:
            rows = logs.read(build, position, limit=500)
            for row in rows:
                self.write(f"id: {row.seq}\ndata: {json.dumps(logs.entry_view(row))}\n\n")
                position = row.seq + 1
            if rows:
                last_sent = time.monotonic()
                if not await self._flush_or_stop():
                    return
                continue
            phase = builds.phase_of(build.id)
            if phase in TERMINAL and logs.total(build.id) <= position:
                self.write(f"event: end\ndata: {json.dumps({'phase': phase})}\n\n")
                self.finish()
                return
            if time.monotonic() - last_sent > SSE_KEEPALIVE_SECONDS:
                self.write(": keepalive\n\n")
                last_sent = time.monotonic()
                if not await self._flush_or_stop():
                    return
            await asyncio.sleep(SSE_POLL_SECONDS)

    async def _flush_or_stop(self) -> bool:
        try:
            await self.flush()
            return True
        except StreamClosedError:
            self.closed = True
            return False

    def on_connection_close(self) -> None:
        self.closed = True


default_handlers = [
    (rf"{API}/filedrop/?", FileDropHandler),
    (rf"{API}/filedrop/(?P<file_id>[0-9a-f]{{32}})", FileDropUploadHandler),
    (rf"{REPO_PATH}/build/?", BuildListHandler),
    (rf"{BUILD_PATH}/?", BuildHandler),
    (rf"{BUILD_PATH}/status", BuildStatusHandler),
    (rf"{BUILD_PATH}/logs", BuildLogsHandler),
    (rf"{BUILD_PATH}/logs/download", BuildLogDownloadHandler),
    (rf"{BUILD_PATH}/logs/stream", BuildLogStreamHandler),
]
