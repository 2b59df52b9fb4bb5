"""The /v2 HTTP API (OCI Distribution Spec 1.1) and the token endpoint. Thin: parse, authorize, call, render."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from urllib.parse import urlencode

from tornado.iostream import StreamClosedError
from tornado.web import HTTPError, stream_request_body

from accounts import audit, revocation
from accounts.identity import ANONYMOUS
from accounts.login import LoginError
from slipway.api import int_query
from slipway.errors import DomainError
from slipway.web import BaseHandler

from . import auth, basic, blobs, content, digests, manifests, repos
from .errors import NameInvalid, RegistryError, blob_unknown, name_unknown, oci_error
from .names import check_tag, split_name
from .permissions import can, visible_repositories
from .tokens import Claims, parse_scope

API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
MAX_BLOB_BODY = 1 << 40
RANGE_RE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?\Z")
BYTES_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)\Z")


class RegistryHandler(BaseHandler):
    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header(*API_VERSION)

    # -- errors in the OCI format --------------------------------------------
    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, RegistryError):
            error = exc
        elif isinstance(exc, DomainError):  # what the registry's logic raised: its one mapping to the OCI format
            error = oci_error(exc)
        elif isinstance(exc, HTTPError) and exc.status_code == 405:
            error = RegistryError("UNSUPPORTED", "the operation is unsupported")
        elif isinstance(exc, HTTPError) and exc.status_code == 404:
            error = RegistryError("NAME_UNKNOWN", "not found", status=404)
        elif isinstance(exc, HTTPError) and exc.status_code < 500:
            error = RegistryError("UNSUPPORTED", exc.log_message or self._reason, status=exc.status_code)
        else:
            self.set_status(500)
            self.finish({"errors": [{"code": "UNKNOWN", "message": "internal server error"}]})
            return
        self.set_status(error.status)
        for key, value in error.headers.items():
            self.set_header(key, value)
        if self._body_unread():
            # Answered before the request body was read (an upload refused in prepare): tornado closes
            # the connection after this answer, so say so, or the client sends its next request down a
            # closed connection and gets a reset (the conformance suites did, after a 416).
            self.set_header("Connection", "close")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(error.body()))

    def _body_unread(self) -> bool:
        body = getattr(self.request, "_body_future", None)  # only handlers that stream their body have one
        return body is not None and not body.done()

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, (RegistryError, DomainError)):
            return  # the client's mistake, answered in the response
        super().log_exception(typ, value, tb)

    # -- authorization ---------------------------------------------------------
    basic_claims: basic.BasicClaims | None = None

    def prepare(self):
        self.refuse_large_body(_too_large)
        # Only a request with basic credentials gets a coroutine: token users' pulls pay nothing for it.
        if self._sends_basic():
            return self.resolve_basic()
        return None

    def _sends_basic(self) -> bool:
        return self.request.headers.get("Authorization", "")[:6].lower() == "basic "

    async def resolve_basic(self) -> None:
        """Basic credentials sent with the request itself (curl -u, CI scripts): what a token would grant."""
        if not self._sends_basic():
            return
        credentials = self.basic_auth()
        if credentials is None:
            raise RegistryError("UNAUTHORIZED", "malformed basic authorization header",
                                headers={"WWW-Authenticate": self.challenge_header(None)})
        generation = revocation.current()  # read before the check: a revocation meanwhile is not missed
        claims = basic.cached(*credentials, generation)
        if claims is None:
            identity = await self.login(credentials)
            claims = basic.remember(credentials[0], credentials[1], identity, generation)
        self.basic_claims = claims

    async def login(self, credentials: tuple[str, str]):
        """The identity behind basic credentials (user, robot, $app, $token), or 401 in the OCI format."""
        try:
            return await self.in_thread(self.services.authenticator.authenticate, credentials[0], credentials[1],
                                        self.client_ip)
        except LoginError as e:
            raise RegistryError("UNAUTHORIZED", str(e),
                                headers={"WWW-Authenticate": self.challenge_header(None)}) from None

    def claims(self) -> Claims | basic.BasicClaims | None:
        header = self.request.headers.get("Authorization", "")
        if header[:7].lower() != "bearer ":
            return self.basic_claims
        return auth.bearer_claims(self.services.tokens, header)

    def challenge_header(self, scope: str | None, error: str | None = None) -> str:
        header = f'Bearer realm="{self.base_url()}/v2/auth",service="{self.service_name()}"'
        if scope:
            header += f',scope="{scope}"'
        if error:
            header += f',error="{error}"'
        return header

    def service_name(self) -> str:
        """One service for every node when ``server.public_url`` is set (its host); else the host asked."""
        return self.services.tokens.audience or self.request.host

    def authorize(self, name: str, action: str, or_action: str | None = None) -> Claims:
        """The caller's token if it grants ``action`` (or ``or_action``) on repository ``name``; else the
        right challenge (naming ``action``)."""
        split_name(name)  # NAME_INVALID before anything else
        claims = self.claims()
        if claims is not None:
            actions = claims.actions("repository", name)
            if action in actions or "*" in actions or (or_action is not None and or_action in actions):
                return claims
        scope = f"repository:{name}:{'pull,push' if action == 'push' else action}"
        if claims is None or claims.identity.anonymous:
            raise RegistryError("UNAUTHORIZED", "authentication required",
                                headers={"WWW-Authenticate": self.challenge_header(scope)})
        # Authenticated but not allowed (or not asked for): 403, with a challenge naming the
        # scope so clients that asked too narrowly can fetch a wider token and retry.
        raise RegistryError("DENIED", "requested access to the resource is denied",
                            detail={"name": name, "action": action},
                            headers={"WWW-Authenticate": self.challenge_header(scope, "insufficient_scope")})

    def existing_repo(self, name: str):
        repo = repos.find(name)
        if repo is None:
            raise name_unknown(name)
        return repo

    def blocking(self, fn, *args):
        """Run storage work inline for local disks, in a thread for remote stores (awaitable either way)."""
        if self.services.storage.local:
            return _done(fn(*args))
        return self.in_thread(fn, *args)


async def _done(value):
    return value


def _too_large(limit: int) -> RegistryError:
    return RegistryError("SIZE_INVALID", f"the request body is larger than the limit of {limit} bytes", status=413)


class BaseCheckHandler(RegistryHandler):
    def get(self) -> None:
        if self.claims() is None:
            raise RegistryError("UNAUTHORIZED", "authentication required",
                                headers={"WWW-Authenticate": self.challenge_header(None)})
        self.set_header("Content-Type", "application/json")
        self.finish(b"{}")


class TokenHandler(RegistryHandler):
    """GET /v2/auth (Docker token spec) and POST /v2/auth (OAuth2 password grant)."""

    def prepare(self) -> None:
        self.refuse_large_body(_too_large)  # basic credentials here are this endpoint's own business (_answer)

    async def get(self) -> None:
        credentials = self.basic_auth()
        scopes = self.get_arguments("scope")
        await self._answer(credentials, scopes, oauth=False)

    async def post(self) -> None:
        grant_type = self.get_body_argument("grant_type", "")
        if grant_type != "password":
            raise RegistryError("UNSUPPORTED", "only grant_type=password is supported", status=400)
        credentials = (self.get_body_argument("username", ""), self.get_body_argument("password", ""))
        scopes = " ".join(self.get_body_arguments("scope")).split()
        await self._answer(credentials, scopes, oauth=True)

    async def _answer(self, credentials, scope_texts: list[str], oauth: bool) -> None:
        identity = ANONYMOUS
        if credentials is not None:
            identity = await self.login(credentials)
        requested = [s for s in (parse_scope(t) for t in scope_texts) if s is not None]
        generation = revocation.current()  # read before the grant is decided
        granted = await self.in_thread(auth.grant, identity, requested)
        # With a public URL, tokens are for this Slipway's one service whatever a client names (the check on
        # use refuses any other); without one, for the service asked, as before.
        service = self.services.tokens.audience or self.get_argument("service", self.service_name())
        token, ttl = self.services.tokens.issue(identity, granted, service, generation)
        issued = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"token": token, "access_token": token, "expires_in": ttl, "issued_at": issued}
        if oauth:
            body = {"access_token": token, "expires_in": ttl, "issued_at": issued,
                    "scope": " ".join(str(s) for s in granted)}
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


class CatalogHandler(RegistryHandler):
    def get(self) -> None:
        claims = self.claims()
        if claims is None:
            raise RegistryError("UNAUTHORIZED", "authentication required",
                                headers={"WWW-Authenticate": self.challenge_header("registry:catalog:*")})
        n, last = _page_args(self)
        names = visible_repositories(claims.identity, last or "", None if n is None else n + 1)
        more = bool(n) and len(names) > n
        names = names[:n] if n is not None else names
        if more:
            self.set_header("Link", f'</v2/_catalog?{urlencode({"n": n, "last": names[-1]})}>; rel="next"')
        self.finish({"repositories": names})


class TagsHandler(RegistryHandler):
    def get(self, name: str) -> None:
        self.authorize(name, "pull")
        n, last = _page_args(self)
        tags = content.list_tags(name, None if n is None else n + 1, last or "")
        more = bool(n) and len(tags) > n
        tags = tags[:n] if n is not None else tags
        if more:
            self.set_header("Link", f'</v2/{name}/tags/list?{urlencode({"n": n, "last": tags[-1]})}>; rel="next"')
        self.finish({"name": name, "tags": tags})


def _page_args(handler) -> tuple[int | None, str | None]:
    n = int_query(handler.get_query_argument("n", None), "n", None, 0, None, False,
                  lambda message: RegistryError("UNSUPPORTED", message, status=400))
    return n, handler.get_query_argument("last", None)


class ManifestHandler(RegistryHandler):
    def prepare(self):
        if self._sends_basic():
            return self._prepare_with_basic()
        self._may_push()
        return super().prepare()

    async def _prepare_with_basic(self) -> None:
        await self.resolve_basic()
        self._may_push()
        self.refuse_large_body(_too_large)

    def _may_push(self) -> None:
        if self.request.method == "PUT":  # who may push, before a byte of the body is read
            self.authorize(self.path_kwargs["name"], "push")

    def body_limit(self) -> int:
        return self.config.registry.max_manifest_bytes

    def get(self, name: str, reference: str) -> None:
        self._serve(name, reference, with_body=True)

    def head(self, name: str, reference: str) -> None:
        self._serve(name, reference, with_body=False)

    def _serve(self, name: str, reference: str, with_body: bool) -> None:
        claims = self.authorize(name, "pull")
        if digests.is_digest(reference):
            digests.parse(reference)
        manifest = content.lookup_manifest(name, reference)
        if with_body:
            key = "manifest_digest" if digests.is_digest(reference) else "tag"
            audit.record_later("pull_repo", claims.identity, (manifest.namespace_id, name.split("/", 1)[0]),
                               (manifest.repository_id, name), self.client_ip, {key: reference})
        self.set_header("Content-Type", manifest.media_type)
        self.set_header("Docker-Content-Digest", manifest.digest)
        self.set_header("ETag", f'"{manifest.digest}"')
        self.set_header("Content-Length", len(manifest.content))
        if with_body:
            self.write(manifest.content)
        self.finish()

    async def put(self, name: str, reference: str) -> None:
        claims = self.authorize(name, "push")
        limit = self.config.registry.max_manifest_bytes
        if len(self.request.body) > limit:
            raise RegistryError("SIZE_INVALID", f"manifest is larger than the limit of {limit} bytes", status=413)
        parsed = manifests.parse(self.request.body, self.request.headers.get("Content-Type"))
        tag = None
        if digests.is_digest(reference):
            algorithm, _ = digests.parse(reference)
            parsed.digest = digests.of(parsed.raw, algorithm)
            if parsed.digest != reference:
                raise RegistryError("DIGEST_INVALID", f"manifest digest is {parsed.digest}, not {reference}",
                                    detail={"digest": reference})
        else:
            check_tag(reference)
            tag = reference
        repo = repos.find_or_create_for_push(name, claims.identity, self.client_ip)
        result = await self.blocking(content.put_manifest, repo, parsed, tag, self.services.storage)
        metadata = {"manifest_digest": parsed.digest, **({"tag": tag} if tag else {})}
        audit.record_later("push_repo", claims.identity, (repo.namespace_id, repo.namespace.name), repo,
                           self.client_ip, metadata)
        if result.invalid_expiry:
            audit.record_later("invalid_tag_expiration", claims.identity, (repo.namespace_id, repo.namespace.name),
                               repo, self.client_ip, {"tag": tag, "label": "quay.expires-after",
                                                      "value": result.invalid_expiry,
                                                      "note": "ignored: not <number><s|m|h|d|w|y>"})
        self.set_status(201)
        self.set_header("Location", f"/v2/{name}/manifests/{parsed.digest}")
        self.set_header("Docker-Content-Digest", parsed.digest)
        if parsed.subject:
            self.set_header("OCI-Subject", parsed.subject)
        self.finish()

    def delete(self, name: str, reference: str) -> None:
        claims = self.authorize(name, "delete")
        if digests.is_digest(reference):
            digests.parse(reference)
        content.delete_reference(self.existing_repo(name), reference, claims.identity, self.client_ip)
        self.set_status(202)
        self.finish()


class BlobHandler(RegistryHandler):
    async def get(self, name: str, digest: str) -> None:
        await self._serve(name, digest, with_body=True)

    async def head(self, name: str, digest: str) -> None:
        await self._serve(name, digest, with_body=False)

    async def _serve(self, name: str, digest: str, with_body: bool) -> None:
        self.authorize(name, "pull")
        digests.parse(digest)
        size = content.blob_size(name, digest)
        if size is None:
            if repos.find(name) is None:
                raise name_unknown(name)
            raise blob_unknown(digest)
        storage = self.services.storage
        self.set_header("Docker-Content-Digest", digest)
        self.set_header("ETag", f'"{digest}"')
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("Cache-Control", "max-age=31536000")
        if with_body:
            url = storage.blob_url(digest)
            if url:
                self.redirect(url, status=307)
                return
        start, length = 0, size
        byte_range = self.request.headers.get("Range")
        if byte_range:
            start, length = _parse_range(byte_range, size)
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {start}-{start + length - 1}/{size}")
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", length)
        if not with_body or length == 0:
            self.finish()
            return
        try:
            await self._send_body(storage, digest, start, length)
        except StreamClosedError:
            return  # the client went away mid-download (it may resume with Range): nothing to answer

    async def _send_body(self, storage, digest: str, start: int, length: int) -> None:
        # Headers go out on their own: joined to a large first body chunk they would cost a copy of it.
        await self.flush()
        if storage.local:
            with storage.open_blob(digest) as f:
                f.seek(start)
                remaining = length
                while remaining > 0:
                    data = f.read(min(remaining, 4 * 1024 * 1024))
                    if not data:
                        break
                    remaining -= len(data)
                    self.write(data)
                    if remaining:
                        await self.flush()
        else:
            chunks = storage.read_blob(digest, start, length)
            while (data := await self.in_thread(next, chunks, None)) is not None:
                self.write(data)
                await self.flush()
        self.finish()

    def delete(self, name: str, digest: str) -> None:
        self.authorize(name, "delete")
        digests.parse(digest)
        blobs.unlink(self.existing_repo(name), digest)
        self.set_status(202)
        self.finish()


def _parse_range(header: str, size: int) -> tuple[int, int]:
    match = BYTES_RANGE_RE.match(header.strip())
    unsatisfiable = RegistryError("BLOB_UNKNOWN", f"range {header} not satisfiable for size {size}", status=416,
                                  headers={"Content-Range": f"bytes */{size}"})
    if not match or (not match.group(1) and not match.group(2)):
        raise unsatisfiable
    first, last = match.group(1), match.group(2)
    if not first:  # suffix: the last N bytes
        length = min(int(last), size)
        if length == 0:
            raise unsatisfiable
        return size - length, length
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise unsatisfiable
    return start, end - start + 1


@stream_request_body
class UploadStartHandler(RegistryHandler):
    """POST /v2/<name>/blobs/uploads/: a monolithic upload (?digest=), a mount (?mount=&from=), or a session."""

    receiver = None

    async def prepare(self) -> None:
        self.request.connection.set_max_body_size(MAX_BLOB_BODY)
        if self.request.method != "POST":
            return
        await self.resolve_basic()
        name = self.path_kwargs["name"]
        claims = self.authorize(name, "push")
        self.repo = repos.find_or_create_for_push(name, claims.identity, self.client_ip)
        self.digest = self.get_query_argument("digest", None)
        mount, source = self.get_query_argument("mount", None), self.get_query_argument("from", None)
        if mount and source and self.digest is None:
            digests.parse(mount)
            if await self._try_mount(name, claims, mount, source):
                return
        if self.digest is not None:
            digests.parse(self.digest)
            self.upload_id = blobs.new_upload_id()
            await self.blocking(self.services.storage.upload_create, self.upload_id)
            self.receiver = await self.blocking(blobs.ChunkReceiver, self.services.storage, self.upload_id, 0)

    async def _try_mount(self, name: str, claims: Claims, digest: str, source_name: str) -> bool:
        try:
            source = repos.find(source_name)
        except NameInvalid:
            return False
        if source is None or not can(claims.identity, "pull", source):
            return False  # not readable: fall back to a normal upload, as the spec says
        blob = blobs.mount(self.repo, source, digest)
        if blob is None:
            return False
        self._created(name, digest)
        return True

    def data_received(self, chunk: bytes) -> None:
        if self.receiver is not None:
            self.receiver.write(chunk)

    async def post(self, name: str) -> None:
        storage = self.services.storage
        if self.receiver is not None:
            size = await self.blocking(self.receiver.close)
            self.receiver = None
            await self.in_thread(blobs.verify_and_commit, storage, self.repo, self.upload_id, self.digest, size)
            self._created(name, self.digest)
            return
        upload = await self.blocking(blobs.start_upload, storage, self.repo)
        self.set_status(202)
        self.set_header("Location", f"/v2/{name}/blobs/uploads/{upload.uuid}")
        self.set_header("Range", "0-0")
        self.set_header("Docker-Upload-UUID", upload.uuid)
        self.set_header("OCI-Chunk-Min-Length", "0")
        self.set_header("Content-Length", "0")
        self.finish()

    def _created(self, name: str, digest: str) -> None:
        self.set_status(201)
        self.set_header("Location", f"/v2/{name}/blobs/{digest}")
        self.set_header("Docker-Content-Digest", digest)
        self.set_header("Content-Length", "0")
        self.finish()

    def on_connection_close(self) -> None:
        # The client went away mid-body: nothing of a monolithic upload may remain.
        if self.receiver is not None:
            self.receiver.abort()
            blobs.discard(self.services.storage, self.upload_id)
            self.receiver = None

    def on_finish(self) -> None:
        if self.receiver is not None:  # an error answered before the body was used
            self.receiver.abort()
            blobs.discard(self.services.storage, self.upload_id)
            self.receiver = None


@stream_request_body
class UploadHandler(RegistryHandler):
    """PATCH (chunk or stream), PUT (finish), GET (status), DELETE (cancel) of an upload session."""

    receiver = None
    upload = None
    lock = None

    async def prepare(self) -> None:
        self.request.connection.set_max_body_size(MAX_BLOB_BODY)
        await self.resolve_basic()
        name, upload_id = self.path_kwargs["name"], self.path_kwargs["upload_id"]
        # Reading a session's status needs only pull (as distribution): clients check it with the token
        # they pull with, e.g. after a 416. Changing the session needs push; cancelling it push or delete
        # (distribution asks delete for every DELETE; both need the write role here).
        method = self.request.method
        if method in ("GET", "HEAD"):
            self.authorize(name, "pull")
        else:
            self.authorize(name, "push", or_action="delete" if method == "DELETE" else None)
        self.repo = self.existing_repo(name)
        self.upload = blobs.find_upload(self.repo, upload_id)
        method = self.request.method
        if method == "PUT":
            self.digest = self.get_query_argument("digest", None)
            if not self.digest:
                raise RegistryError("DIGEST_INVALID", "the digest query parameter is required to finish an upload")
            digests.parse(self.digest)
        if method in ("PATCH", "PUT", "DELETE"):
            # One writer at a time: the lock is taken before the offset is read, and held until
            # the chunk is recorded (PATCH) or the blob committed (PUT).
            self.lock = await self.blocking(blobs.claim, self.services.storage, self.upload.uuid)
            self.upload = blobs.find_upload(self.repo, upload_id)
        if method in ("PATCH", "PUT"):
            start = self.upload.offset
            content_range = self.request.headers.get("Content-Range")
            if content_range:
                match = RANGE_RE.match(content_range.strip())
                if not match:
                    raise RegistryError("BLOB_UPLOAD_INVALID", f"malformed Content-Range '{content_range}'")
                first, last = int(match.group(1)), int(match.group(2))
                if first != self.upload.offset:
                    raise RegistryError(
                        "BLOB_UPLOAD_INVALID",
                        f"chunk out of order: the upload is at offset {self.upload.offset}, "
                        f"the chunk starts at {first}",
                        status=416, headers=self._progress_headers(name))
                length = self.request.headers.get("Content-Length")
                if last < first or (length is not None and int(length) != last - first + 1):
                    raise RegistryError("BLOB_UPLOAD_INVALID",
                                        f"Content-Range {content_range} does not match Content-Length {length}",
                                        status=416, headers=self._progress_headers(name))
            self.receiver = await self.blocking(blobs.ChunkReceiver, self.services.storage, self.upload.uuid, start)

    def _progress_headers(self, name: str) -> dict:
        end = max(self.upload.offset - 1, 0)
        return {"Location": f"/v2/{name}/blobs/uploads/{self.upload.uuid}", "Range": f"0-{end}",
                "Docker-Upload-UUID": self.upload.uuid}

    def data_received(self, chunk: bytes) -> None:
        if self.receiver is not None:
            self.receiver.write(chunk)

    async def _take_chunk(self) -> int:
        size = await self.blocking(self.receiver.close)
        self.receiver = None
        await self.blocking(blobs.record_progress, self.upload, size)
        return size

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    async def patch(self, name: str, upload_id: str) -> None:
        try:
            await self._take_chunk()
        finally:
            self._release()
        self.set_status(202)
        for key, value in self._progress_headers(name).items():
            self.set_header(key, value)
        self.set_header("Content-Length", "0")
        self.finish()

    async def put(self, name: str, upload_id: str) -> None:
        try:
            size = await self._take_chunk()
            # Off the event loop: without the running hash (another process took a chunk, a restart,
            # sha512) the whole upload is hashed again.
            await self.in_thread(blobs.verify_and_commit, self.services.storage, self.repo, self.upload.uuid,
                                 self.digest, size, self.upload)
        finally:
            self._release()
        self.set_status(201)
        self.set_header("Location", f"/v2/{name}/blobs/{self.digest}")
        self.set_header("Docker-Content-Digest", self.digest)
        self.set_header("Content-Length", "0")
        self.finish()

    def get(self, name: str, upload_id: str) -> None:
        self.set_status(204)
        for key, value in self._progress_headers(name).items():
            self.set_header(key, value)
        self.finish()

    head = get

    async def delete(self, name: str, upload_id: str) -> None:
        try:
            await self.blocking(blobs.discard, self.services.storage, self.upload.uuid, self.upload)
        finally:
            self._release()
        self.set_status(204)
        self.finish()

    def on_connection_close(self) -> None:
        if self.receiver is not None:  # a dropped chunk: the next one starts again at the recorded offset
            self.receiver.abort()
            self.receiver = None
            self._release()  # (a commit under way releases the lock itself when it ends)

    def on_finish(self) -> None:
        if self.receiver is not None:
            self.receiver.abort()
            self.receiver = None
        self._release()


class ReferrersHandler(RegistryHandler):
    def get(self, name: str, digest: str) -> None:
        self.authorize(name, "pull")
        digests.parse(digest)
        # The spec forbids a 404 here: a repository that does not exist (yet) has no referrers.
        # Only a caller whose token grants pull gets this far, so this says nothing about private names.
        repo = repos.find(name)
        artifact_type = self.get_query_argument("artifactType", None)
        entries = content.referrers(repo, digest, artifact_type) if repo is not None else []
        if artifact_type:
            self.set_header("OCI-Filters-Applied", "artifactType")
        self.set_header("Content-Type", manifests.OCI_INDEX)
        self.finish(json.dumps({"schemaVersion": 2, "mediaType": manifests.OCI_INDEX, "manifests": entries}))


class NotFoundHandler(RegistryHandler):
    def prepare(self) -> None:
        raise RegistryError("UNSUPPORTED", f"no such registry endpoint: {self.request.path}", status=404)


NAME = r"(?P<name>[^?#]+?)"
default_handlers = [
    (r"/v2/?", BaseCheckHandler),
    (r"/v2/auth", TokenHandler),
    (r"/v2/_catalog", CatalogHandler),
    (rf"/v2/{NAME}/tags/list", TagsHandler),
    (rf"/v2/{NAME}/manifests/(?P<reference>[^/]+)", ManifestHandler),
    (rf"/v2/{NAME}/blobs/uploads/?", UploadStartHandler),
    (rf"/v2/{NAME}/blobs/uploads/(?P<upload_id>[^/]+)", UploadHandler),
    (rf"/v2/{NAME}/blobs/(?P<digest>[^/]+)", BlobHandler),
    (rf"/v2/{NAME}/referrers/(?P<digest>[^/]+)", ReferrersHandler),
    (r"/v2/.*", NotFoundHandler),
]

