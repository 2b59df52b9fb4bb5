"""The registry's read path: manifest GET/HEAD and ``GET /v2/`` answered below tornado's ``RequestHandler``.

A fleet of nodes pulling images mostly sends manifest GETs and HEADs, and most of their cost
was tornado's per-request machinery (routing, handler construction, header bookkeeping), not
the work. ``ReadPath`` sits in front of the application as the HTTP server's delegate: for a
request it can answer completely — ``GET``/``HEAD`` of ``/v2/<name>/manifests/<reference>`` or
``GET /v2/`` with no body, a valid bearer token that grants ``pull`` (or any token, for
``/v2/``), no ``If-None-Match``, a name without escapes, the manifest found — it writes the
same answer the regular handlers write (the same status, headers in the same order, body,
audit entry for a pull, access-log line) through the connection's own ``write_headers`` /
``finish``. Everything else (errors, basic credentials, challenges, escaped names, bodies,
conditional requests, a failure of any kind) goes to the application unchanged, which
answers it as before: the regular handlers stay the one definition of the behaviour, and
this path only takes a shortcut to the same success answers.
"""
from __future__ import annotations

import hashlib
import time

from tornado import httputil

from accounts import audit
from slipway import redact
from slipway.web import client_address

from . import auth, content, digests
from .handlers import API_VERSION

_BASE_BODY = b"{}"
# What tornado's RequestHandler.compute_etag gives the base check's body.
_BASE_ETAG = f'"{hashlib.sha1(_BASE_BODY).hexdigest()}"'
_OK = httputil.ResponseStartLine("", 200, "OK")
_MANIFESTS = "/manifests/"


class _Headers(dict):
    """Response headers for ``HTTP1Connection.write_headers``: names already in tornado's normal form."""

    def get_all(self):
        return self.items()


class _Date:
    """The ``Date`` header's value, formatted once per second (tornado formats it on every request)."""

    second = -1
    text = ""

    @classmethod
    def now(cls) -> str:
        now = time.time()
        second = int(now)
        if second != cls.second:
            cls.text, cls.second = httputil.format_timestamp(now), second
        return cls.text


class _Logged:
    """What ``Application.log_request`` reads of a handler, for the access log line of a read-path answer."""

    __slots__ = ("status", "summary", "started")

    def __init__(self, status: int, summary: str, started: float):
        self.status, self.summary, self.started = status, summary, started

    def get_status(self) -> int:
        return self.status

    def _request_summary(self) -> str:
        return self.summary

    @property
    def request(self) -> "_Logged":
        return self

    def request_time(self) -> float:
        return time.time() - self.started


class ReadPath(httputil.HTTPServerConnectionDelegate):
    """The HTTP server's delegate: the read path first, the application (``app``) for everything else."""

    def __init__(self, app, services):
        self.app = app
        self.tokens = services.tokens
        self.trusted_proxies = tuple(services.config.server.trusted_proxies)
        self.access_log = services.config.server.access_log
        self.answered = 0  # requests this path answered

    def start_request(self, server_conn, request_conn) -> httputil.HTTPMessageDelegate:
        return _Request(self, server_conn, request_conn)

    def on_close(self, server_conn) -> None:
        self.app.on_close(server_conn)

    def respond(self, start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders,
                remote_ip: str) -> tuple[_Headers, bytes | None] | None:
        """The answer (headers, body) if the request is one this path serves, else None. Nothing is
        written here; a pull's audit entry is queued once the answer is certain."""
        if start_line.method not in ("GET", "HEAD") or "If-None-Match" in headers or "Transfer-Encoding" in headers:
            return None
        length = headers.get("Content-Length")
        if length is not None and length.strip() not in ("", "0"):
            return None
        path = start_line.path.partition("?")[0]
        if "%" in path or "#" in path:
            return None
        if path == "/v2/" or path == "/v2":
            return self._base_check(headers) if start_line.method == "GET" else None
        if not path.startswith("/v2/"):
            return None
        name, sep, reference = path[4:].rpartition(_MANIFESTS)
        if not sep or not name or not reference or "/" in reference:
            return None
        return self._manifest(start_line.method == "GET", headers, name, reference, remote_ip)

    def _base_check(self, headers) -> tuple[_Headers, bytes] | None:
        if auth.bearer_claims(self.tokens, headers.get("Authorization", "")) is None:
            return None
        return _Headers(_BASE_HEADERS, Date=_Date.now()), _BASE_BODY

    def _manifest(self, with_body: bool, headers, name: str, reference: str,
                  remote_ip: str) -> tuple[_Headers, bytes | None] | None:
        claims = auth.bearer_claims(self.tokens, headers.get("Authorization", ""))
        if claims is None:
            return None
        actions = claims.actions("repository", name)
        if "pull" not in actions and "*" not in actions:
            return None
        by_digest = digests.is_digest(reference)
        if by_digest:
            digests.parse(reference)
        manifest = content.lookup_manifest(name, reference)  # the name is checked by the lookup (split_name)
        if with_body:
            ip = client_address(remote_ip, headers, self.trusted_proxies)
            audit.record_later("pull_repo", claims.identity, (manifest.namespace_id, name.split("/", 1)[0]),
                               (manifest.repository_id, name), ip,
                               {"manifest_digest" if by_digest else "tag": reference})
        response = _Headers({"Server": "Slipway", "Content-Type": manifest.media_type, "Date": _Date.now(),
                             "X-Content-Type-Options": "nosniff", _API_VERSION_NAME: API_VERSION[1],
                             "Docker-Content-Digest": manifest.digest, "Etag": f'"{manifest.digest}"',
                             "Content-Length": str(len(manifest.content))})
        return response, manifest.content if with_body else None

    def send(self, connection, start_line, response: _Headers, body: bytes | None, started: float) -> None:
        connection.write_headers(_OK, response, body)
        connection.finish()
        self.answered += 1
        if self.access_log:
            summary = f"{start_line.method} {redact.request_uri(start_line.path)} ({connection.context.remote_ip})"
            self.app.log_request(_Logged(200, summary, started))


# The regular handlers' headers, in the order tornado writes them (RequestHandler.clear, then
# set_default_headers, then the handler's own).
_API_VERSION_NAME = API_VERSION[0].title()
_BASE_HEADERS = {"Server": "Slipway", "Content-Type": "application/json", "Date": "",
                 "X-Content-Type-Options": "nosniff", _API_VERSION_NAME: API_VERSION[1], "Etag": _BASE_ETAG,
                 "Content-Length": str(len(_BASE_BODY))}


class _Request(httputil.HTTPMessageDelegate):
    """One request on a connection: answered by the read path, or handed whole to the application.

    The answer is decided when the headers are in and written in ``finish``, once the connection
    has read the whole request (written earlier, tornado would close the connection after it)."""

    __slots__ = ("read_path", "server_conn", "connection", "fallback", "answer", "start_line", "started")

    def __init__(self, read_path: ReadPath, server_conn, connection):
        self.read_path, self.server_conn, self.connection = read_path, server_conn, connection
        self.fallback = self.answer = None

    def headers_received(self, start_line, headers):
        self.started = time.time()
        try:
            self.answer = self.read_path.respond(start_line, headers, self.connection.context.remote_ip)
        except Exception:  # noqa: BLE001 - not answered here: the regular path answers (the right error)
            self.answer = None
        if self.answer is not None:
            self.start_line = start_line
            return None
        self.fallback = self.read_path.app.start_request(self.server_conn, self.connection)
        return self.fallback.headers_received(start_line, headers)

    def data_received(self, chunk: bytes):
        if self.fallback is not None:
            return self.fallback.data_received(chunk)
        return None

    def finish(self) -> None:
        if self.fallback is not None:
            self.fallback.finish()
        else:
            self.read_path.send(self.connection, self.start_line, *self.answer, self.started)

    def on_connection_close(self) -> None:
        if self.fallback is not None:
            self.fallback.on_connection_close()
