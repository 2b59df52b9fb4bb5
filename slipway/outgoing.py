"""Outgoing HTTP requests (callbacks, webhooks, archive downloads) and the private-address rule.

By default Slipway refuses to connect to loopback, private, link-local and other
non-public addresses, so a user cannot point it at the operator's internal
network. ``network.allow_private`` lifts the rule; ``network.allowlist`` names
hosts or CIDR ranges allowed anyway.
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlparse

import requests

from . import redact
from .errors import Invalid

TIMEOUT = 10


def allowlisted(host: str, addresses: list, allowlist: list) -> bool:
    for entry in allowlist:
        if entry == host:
            return True
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue
        if addresses and all(ip in network for ip in addresses):
            return True
    return False


def check_url(url: str, network) -> None:
    """Raise Invalid if ``url`` is not http(s) or reaches a non-public address the operator did not allow."""
    parsed = urlparse(url)
    shown = redact.url(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise Invalid(f"URL '{shown}' must be an http:// or https:// URL with a host")
    check_host(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80), network, url)


def check_host(host: str, port: int, network, url: str) -> None:
    """The one private-address rule (HTTP here, git over SSH in triggers): raise Invalid if ``host``
    resolves to a loopback, private, link-local, multicast or otherwise non-public address that
    ``network.allow_private`` / ``network.allowlist`` do not allow. ``url`` is named in the message,
    without its credentials."""
    shown = redact.url(url)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as e:
        raise Invalid(f"Cannot resolve host '{host}' of {shown}: {getattr(e, 'strerror', None) or e}") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if network.allow_private or allowlisted(host, addresses, network.allowlist):
        return
    for ip in addresses:
        if not ip.is_global or ip.is_multicast:
            raise Invalid(f"URL '{shown}' points at a non-public address ({ip}); the server's operator has not "
                          "allowed requests to private networks (network.allow_private / network.allowlist)")


def post(url: str, network, timeout: float = TIMEOUT, session: requests.Session | None = None,
         **kwargs) -> requests.Response:
    """POST after checking the address rule; redirects are not followed (they could lead anywhere).

    With ``session`` (keep-alive), the rule is still checked on every request, before a pooled
    connection can be reused: a reused connection only ever carries a request whose URL passed.
    """
    check_url(url, network)
    return (session or requests).post(url, timeout=timeout, allow_redirects=False, **kwargs)


def get(url: str, network, timeout: float = TIMEOUT, **kwargs) -> requests.Response:
    check_url(url, network)
    return requests.get(url, timeout=timeout, allow_redirects=False, **kwargs)
