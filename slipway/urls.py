"""Slipway's public base URL: the one rule for links, the registry's auth realm and image names."""
from __future__ import annotations


def base_url(config, request=None, trusted_proxy: bool = False) -> str:
    """The URL clients reach Slipway at.

    ``server.public_url`` when it is set. Otherwise what ``request`` says: its scheme and host, or
    ``X-Forwarded-Proto``/``X-Forwarded-Host`` (or RFC 7239 ``Forwarded``) when ``trusted_proxy`` says
    the request came through a trusted proxy. With no request (a worker, a background job),
    ``http://localhost:<server.port>``.
    """
    if config.server.public_url:
        return config.server.public_url.rstrip("/")
    if request is None:
        return f"http://localhost:{config.server.port}"
    scheme, host = request.protocol, request.host
    if trusted_proxy:
        headers = request.headers
        forwarded = _parse_forwarded(headers.get("Forwarded", ""))
        scheme = (headers.get("X-Forwarded-Proto") or forwarded.get("proto") or scheme).split(",")[0].strip()
        host = (headers.get("X-Forwarded-Host") or forwarded.get("host") or host).split(",")[0].strip()
    return f"{scheme}://{host}"


def host(base: str) -> str:
    """The host (and port) of a base URL: what image names start with."""
    return base.split("://", 1)[-1]


def _parse_forwarded(value: str) -> dict:
    """The first element of an RFC 7239 Forwarded header, as a dict."""
    result = {}
    first = value.split(",", 1)[0]
    for part in first.split(";"):
        key, sep, val = part.strip().partition("=")
        if sep:
            result[key.lower()] = val.strip('"')
    return result
