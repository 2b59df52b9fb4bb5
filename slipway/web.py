"""What every HTTP handler shares: the services, the client's address, the external URL, basic auth."""
from __future__ import annotations

import base64
import ipaddress
import logging
from functools import lru_cache

from tornado.ioloop import IOLoop
from tornado.web import HTTPError, RequestHandler

from . import redact


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


class BaseHandler(RequestHandler):
    """Base of all Slipway handlers. Handlers parse, authorize, call a plain function and render."""

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
        if self._from_trusted_proxy():
            forwarded = self.request.headers.get("X-Forwarded-For")
            if forwarded:
                trusted = tuple(self.config.server.trusted_proxies)
                hops = [h.strip() for h in forwarded.split(",") if h.strip()]
                for hop in reversed(hops):
                    if not _trusted(hop, trusted):
                        return hop
                return hops[0]
            real = self.request.headers.get("X-Real-Ip")
            if real:
                return real.strip()
        return self.request.remote_ip

    def base_url(self) -> str:
        """The URL clients reach Slipway at: the configured public URL, else what the request says."""
        if self.config.server.public_url:
            return self.config.server.public_url.rstrip("/")
        scheme, host = self.request.protocol, self.request.host
        if self._from_trusted_proxy():
            headers = self.request.headers
            forwarded = _parse_forwarded(headers.get("Forwarded", ""))
            scheme = (headers.get("X-Forwarded-Proto") or forwarded.get("proto") or scheme).split(",")[0].strip()
            host = (headers.get("X-Forwarded-Host") or forwarded.get("host") or host).split(",")[0].strip()
        return f"{scheme}://{host}"

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


def _parse_forwarded(value: str) -> dict:
    """The first element of an RFC 7239 Forwarded header, as a dict."""
    result = {}
    first = value.split(",", 1)[0]
    for part in first.split(";"):
        key, sep, val = part.strip().partition("=")
        if sep:
            result[key.lower()] = val.strip('"')
    return result
