"""Credentials out of what people read: logs, audit entries, error texts, API answers.

The one rule, used everywhere a URL or a message that may hold one is shown:
a URL's user information becomes ``***`` (``https://***@host/path``) and its
query values become ``***`` (``?token=***``). For URLs users give (webhooks,
archives, git sources) every query value is hidden, since any name may carry a
secret; for Slipway's own request URIs (the access log) only the parameters it
knows to be secret (``SECRET_PARAMS``). A Slack incoming-webhook URL is a
credential in its path (``/services/T…/B…/<secret>``): its path is hidden too.
``text`` applies the rule to every URL
in a message, and also hides the secrets of the URLs it is given wherever they
appear (a client library's error may quote only the path and query).
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

MASK = "***"
# Query parameters of Slipway's own URLs (and common ones) whose values are credentials.
SECRET_PARAMS = frozenset({"signature", "sig", "token", "access_token", "refresh_token", "secret", "password",
                           "code", "key", "api_key", "apikey", "x-amz-signature", "x-amz-credential",
                           "x-amz-security-token"})
URL_RE = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>`]+""")
# A value this short is not searched for in free text (it would hide ordinary words and numbers).
MIN_SECRET_LENGTH = 4
# Hosts whose URLs carry the credential in the path.
SECRET_PATH_HOSTS = frozenset({"hooks.slack.com"})
TRAILING = ".,;:!?)]}"


def url(value: str | None, only_secret_params: bool = False) -> str | None:
    """``value`` with its user information and query values replaced by ``***``."""
    if not value:
        return value
    try:
        parts = urlsplit(value)
    except ValueError:  # not parseable (a broken IPv6 host): show nothing of it
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        # "ssh://git@host" names an account, not a secret; a password or an HTTP user name
        # (GitHub's https://<token>@github.com) may be one.
        if ":" in userinfo or parts.scheme.lower() in ("http", "https"):
            netloc = f"{MASK}@{host}"
    query = parts.query
    if query:
        query = _query(query, only_secret_params)
    path = parts.path
    if (parts.hostname or "").lower() in SECRET_PATH_HOSTS and path.strip("/"):
        path = "/" + path.strip("/").split("/")[0] + "/" + MASK
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def _query(query: str, only_secret_params: bool) -> str:
    pairs = []
    for item in query.split("&"):
        name, sep, val = item.partition("=")
        if sep and val and (not only_secret_params or unquote(name).lower() in SECRET_PARAMS):
            val = MASK
        pairs.append(f"{name}{sep}{val}")
    return "&".join(pairs)


def secrets_of(value: str | None) -> list[str]:
    """The parts of a URL that ``url`` hides: its password (or HTTP user name) and its query values."""
    if not value:
        return []
    try:
        parts = urlsplit(value)
    except ValueError:
        return [value]
    found = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, sep, password = userinfo.partition(":")
        found += [password] if sep else ([user] if parts.scheme.lower() in ("http", "https") else [])
    if (parts.hostname or "").lower() in SECRET_PATH_HOSTS:
        found += [segment for segment in parts.path.split("/")[2:] if segment]
    found += [v for _, v in parse_qsl(parts.query, keep_blank_values=False)]
    found += [v for _, _, v in (item.partition("=") for item in parts.query.split("&"))]
    variants = set()
    for secret in found:
        if len(secret) >= MIN_SECRET_LENGTH:
            variants |= {secret, unquote(secret), quote(secret, safe="")}
    return sorted(variants, key=len, reverse=True)


def text(value: str | None, *urls: str | None) -> str | None:
    """A message with every URL in it redacted, and the secrets of ``urls`` hidden wherever they appear."""
    if not value:
        return value
    value = URL_RE.sub(_url_in_text, value)
    for source in urls:
        for secret in secrets_of(source):
            value = value.replace(secret, MASK)
    return value


def _url_in_text(match: re.Match) -> str:
    found = match.group(0)
    stripped = found.rstrip(TRAILING)  # "see https://host/x." ends the sentence, not the URL
    return url(stripped) + found[len(stripped):]


def request_uri(uri: str) -> str:
    """A request's path and query for the access log: the values of ``SECRET_PARAMS`` hidden."""
    path, sep, query = uri.partition("?")
    return f"{path}{sep}{_query(query, True)}" if sep else uri
