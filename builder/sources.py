"""Which git sources a build may clone: the rule applied when a trigger is saved and again before every clone.

Checked by form only (no DNS), so it can run when a trigger is saved; the
private-address rule (``slipway.outgoing``) is applied to the host when it is
cloned (``builder.clone.check_source``), since a name may resolve differently by then.
"""
from __future__ import annotations

import re
from urllib.parse import urlparse

from slipway.errors import Invalid

SCP_RE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>[^/].*)\Z")
# git's "<transport>::<address>": a remote helper (ext:: runs a command, fd:: uses file descriptors).
HELPER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
NETWORK_SCHEMES = ("https", "http", "ssh", "git+ssh")
USE = "use an https://, ssh:// or git@host:path URL"

FILE, HTTP, SSH = "file", "http", "ssh"


def classify(url, allow_file_urls: bool) -> tuple[str, str | None, int | None]:
    """(kind, host, port) of an acceptable source, or Invalid saying why it is not and what to use."""
    if not isinstance(url, str) or not url:
        raise Invalid(f"The git source must be a URL: {USE}")
    if url.startswith("-"):
        raise Invalid(f"The git source '{url}' looks like a command-line option, not a URL: {USE}")
    if HELPER_RE.match(url):
        raise Invalid(f"The git source '{url}' uses git's <transport>::<address> form (remote helpers such as "
                      f"ext:: run commands on the server), which is not allowed: {USE}")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise Invalid(f"The git source {url!r} contains spaces or control characters: {USE}")
    parsed = urlparse(url)
    if parsed.scheme == "file" or url.startswith("/"):
        if not allow_file_urls:
            raise Invalid(f"Cloning local paths ({url}) is not allowed on this server; its operator can allow "
                          "it with the setting triggers.allow_file_urls")
        return FILE, None, None
    if "://" in url:
        if parsed.scheme not in NETWORK_SCHEMES:
            raise Invalid(f"The git source '{url}' uses the unsupported scheme '{parsed.scheme}': {USE}")
        try:
            host, port = parsed.hostname, parsed.port
        except ValueError as e:
            raise Invalid(f"The git source '{url}' is not a valid URL: {e}") from None
        if not host or host.startswith("-") or (parsed.username or "").startswith("-"):
            raise Invalid(f"The git source '{url}' names no valid host: {USE}")
        if parsed.scheme in ("http", "https"):
            return HTTP, host, port or (443 if parsed.scheme == "https" else 80)
        return SSH, host, port or 22
    match = SCP_RE.match(url)
    if match and not match.group("host").startswith("-") and not (match.group("user") or "").startswith("-"):
        return SSH, match.group("host"), 22
    raise Invalid(f"Cannot clone '{url}': {USE}" + (" (or file://, allowed on this server)" if allow_file_urls
                                                  else ""))
