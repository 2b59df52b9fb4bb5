"""What every HTTP handler shares: the services, the client's address, the external URL, basic auth."""
from __future__ import annotations

import base64
import ipaddress
import logging
from functools import lru_cache

from tornado import httputil
from tornado.ioloop import IOLoop
from tornado.web import Application, HTTPError, RequestHandler, stream_request_body

from . import redact, urls

#: The body every handler takes unless it says otherwise (API JSON, forms): bodies are capped per route.
DEFAULT_MAX_BODY = 1024 * 1024
#: How long a capped (non-upload) body may take to arrive.
SHORT_BODY_TIMEOUT = 60
#: The web interface's session cookie (``ui``), also accepted by /api/v1 (``slipway.api``).
SESSION_COOKIE = "slipway_session"
#: The header a script sends a session's CSRF token in (forms send it as the ``_csrf`` field).
CSRF_HEADER = "X-CSRF-Token"
#: Methods that change nothing: a session cookie alone authenticates them.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@lru_cache(maxsize=64)
def _networks(cidrs: tuple) -> tuple:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


@lru_cache(maxsize=4096)  # on every request (the audit log's client address): parse each address once
def _trusted(address: str, cidrs: tuple) -> bool:
    if not cidrs:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _networks(cidrs))


def client_address(remote_ip: str, headers, trusted_proxies: tuple) -> str:
    """The client's address (``BaseHandler.client_ip``, and the registry's read path): X-Forwarded-For /
    X-Real-IP count only when ``remote_ip`` is one of the ``trusted_proxies``."""
    if _trusted(remote_ip, trusted_proxies):
        forwarded = headers.get("X-Forwarded-For")
        if forwarded:
            hops = [h.strip() for h in forwarded.split(",") if h.strip()]
            for hop in reversed(hops):
                if not _trusted(hop, trusted_proxies):
                    return hop
            return hops[0]
        real = headers.get("X-Real-Ip")
        if real:
            return real.strip()
    return remote_ip


@stream_request_body
class BaseHandler(RequestHandler):
    """Base of all Slipway handlers. Handlers parse, authorize, call a plain function and render.

    No body is read before ``prepare()`` has run: every handler streams, so a handler
    authenticates from the headers and may refuse (401/403/404/413) with the body still
    unread. Handlers that do not take their body themselves (``data_received``) get it
    gathered into ``request.body`` (and form arguments parsed) as Tornado would, capped
    at ``max_body`` bytes (``body_limit()``) with a short body timeout; ``refuse_large_body()``
    answers 413 for a declared ``Content-Length`` over the cap.
    """

    max_body = DEFAULT_MAX_BODY

    def __init__(self, application, request, **kwargs):
        super().__init__(application, request, **kwargs)
        self._gathering = type(self).data_received is BaseHandler.data_received
        connection = request.connection
        if connection is not None and hasattr(connection, "set_max_body_size"):
            connection.set_max_body_size(self.max_body)
            if self._gathering:
                connection.set_body_timeout(SHORT_BODY_TIMEOUT)
        if self._gathering and getattr(request, "_body_future", None) is not None:
            self._body = bytearray()
            # Registered before Tornado awaits this future after prepare(), so the body is in place
            # before the method runs (callbacks run in the order they were added).
            request._body_future.add_done_callback(self._body_complete)

    def data_received(self, chunk: bytes) -> None:
        self._body += chunk

    def _body_complete(self, future) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        self.request.body = bytes(self._body)
        self._body = bytearray()
        try:
            self.request._parse_body()
        except httputil.HTTPInputError:
            pass  # a malformed form body: the handler sees no arguments and says what is missing

    def body_limit(self) -> int:
        """The largest body this request may carry (after authentication: may depend on the caller)."""
        return self.max_body

    def refuse_large_body(self, error) -> None:
        """Set this request's body cap; raise ``error(limit)`` if the declared Content-Length exceeds it."""
        limit = self.body_limit()
        if self.request.connection is not None and hasattr(self.request.connection, "set_max_body_size"):
            self.request.connection.set_max_body_size(limit)
        length = self.request.headers.get("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > limit:
            raise error(limit)

    @property
    def services(self):
        return self.application.settings["services"]

    @property
    def config(self):
        return self.services.config

    def set_default_headers(self) -> None:
        self.set_header("Server", "Slipway")
        self.set_header("X-Content-Type-Options", "nosniff")

    def _request_summary(self) -> str:
        """How the access log and error logs name a request: secret query values (a file drop's
        ``signature``) hidden (tornado's own summary writes the whole URI)."""
        return f"{self.request.method} {redact.request_uri(self.request.uri or '')} ({self.request.remote_ip})"

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, HTTPError):
            super().log_exception(typ, value, tb)
            return
        # tornado adds repr(request), which holds the whole URI: the summary says enough.
        logging.getLogger("tornado.application").error("Uncaught exception %s", self._request_summary(),
                                                        exc_info=(typ, value, tb))

    def _from_trusted_proxy(self) -> bool:
        return _trusted(self.request.remote_ip, tuple(self.config.server.trusted_proxies))

    @property
    def client_ip(self) -> str:
        """The client's address; X-Forwarded-For / X-Real-IP count only when a trusted proxy sends them."""
        return client_address(self.request.remote_ip, self.request.headers, tuple(self.config.server.trusted_proxies))

    def base_url(self) -> str:
        """The URL clients reach Slipway at (``slipway.urls.base_url``: the configured public URL, else
        what this request says)."""
        return urls.base_url(self.config, self.request, self._from_trusted_proxy())

    def basic_auth(self) -> tuple[str, str] | None:
        header = self.request.headers.get("Authorization", "")
        if header[:6].lower() != "basic ":
            return None
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        username, sep, password = decoded.partition(":")
        return (username, password) if sep else None

    async def in_thread(self, fn, *args):
        """Run blocking work (password hashing, remote storage) off the event loop."""
        return await IOLoop.current().run_in_executor(None, fn, *args)


def _has_body(request) -> bool:
    length = request.headers.get("Content-Length")
    return "Transfer-Encoding" in request.headers or (length is not None and length.strip() not in ("", "0"))


_BUFFERED: dict = {}


def _buffered(cls: type) -> type:
    """``cls`` without body streaming, for requests that carry no body."""
    variant = _BUFFERED.get(cls)
    if variant is None:
        variant = _BUFFERED[cls] = type(cls.__name__, (cls,), {"_stream_request_body": False,
                                                              "__module__": cls.__module__})
    return variant


class SlipwayApplication(Application):
    """Routes a request without a body to a non-streaming copy of its handler.

    Streaming handlers answer from ``prepare()`` before the body is read, and Tornado then closes
    the connection (the only way not to read the body). A request with no body has nothing to
    refuse unread, so it keeps its keep-alive connection whatever the answer (a 401 on a GET).
    """

    def get_handler_delegate(self, request, target_class, target_kwargs=None, path_args=None, path_kwargs=None):
        if getattr(target_class, "_stream_request_body", False) and not _has_body(request):
            target_class = _buffered(target_class)
        return super().get_handler_delegate(request, target_class, target_kwargs, path_args, path_kwargs)

