"""Webhook signatures (beyond Quay): GitHub/Gitea/Bitbucket HMAC-SHA256 headers, GitLab's signing token
(the Standard Webhooks scheme) and its plain secret token, constant-time."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

# Standard Webhooks: a signed timestamp further than this from the clock is refused (its replay window).
TIMESTAMP_TOLERANCE = 300


def verify(secret: str, headers, body: bytes, now: float | None = None) -> str | None:
    """None if the request carries a valid signature for ``secret``; else why not."""
    if headers.get("webhook-signature"):
        return _standard_webhooks(secret, headers, body, time.time() if now is None else now)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    for header in ("X-Hub-Signature-256", "X-Hub-Signature"):
        value = headers.get(header)
        if value:
            scheme, _, given = value.partition("=")
            if scheme != "sha256":
                return f"{header} uses {scheme}; only sha256 signatures are accepted"
            matches = hmac.compare_digest(given.strip().encode(), expected.encode())
            return None if matches else f"{header} does not match"
    for header in ("X-Gitea-Signature", "X-Gogs-Signature"):
        value = headers.get(header)
        if value:
            matches = hmac.compare_digest(value.strip().encode(), expected.encode())
            return None if matches else f"{header} does not match"
    token = headers.get("X-Gitlab-Token")
    if token is not None:
        return None if hmac.compare_digest(token.encode(), secret.encode()) else "X-Gitlab-Token does not match"
    return ("the request is not signed: send X-Hub-Signature-256 (GitHub, Bitbucket), X-Gitea-Signature (Gitea), "
            "webhook-signature (GitLab's signing token) or X-Gitlab-Token (GitLab's secret token)")


def signing_key(secret: str) -> bytes:
    """A Standard Webhooks secret is ``whsec_<base64 key>``; any other secret is used as it is."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[6:], validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def _standard_webhooks(secret: str, headers, body: bytes, now: float) -> str | None:
    message_id, stamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    if not message_id or not stamp:
        return "webhook-signature needs the webhook-id and webhook-timestamp headers"
    try:
        sent = int(stamp)
    except ValueError:
        return "webhook-timestamp is not a number of seconds"
    if abs(now - sent) > TIMESTAMP_TOLERANCE:
        return f"webhook-timestamp is more than {TIMESTAMP_TOLERANCE} s away from the server's clock"
    digest = hmac.new(signing_key(secret), f"{message_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(digest)
    for entry in headers.get("webhook-signature").split():
        version, _, given = entry.partition(",")
        if version == "v1" and hmac.compare_digest(given.encode(), expected):
            return None
    return "webhook-signature does not match"
