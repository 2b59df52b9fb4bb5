"""Webhook signatures (beyond Quay): GitHub/Gitea/Bitbucket HMAC-SHA256 headers, GitLab's token."""
from __future__ import annotations

import hashlib
import hmac


def verify(secret: str, headers, body: bytes) -> str | None:
    """None if the request carries a valid signature for ``secret``; else why not."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    for header in ("X-Hub-Signature-256", "X-Hub-Signature"):
        value = headers.get(header)
        if value:
            scheme, _, given = value.partition("=")
            if scheme != "sha256":
                return f"{header} uses {scheme}; only sha256 signatures are accepted"
            return None if hmac.compare_digest(given.strip().encode(), expected.encode()) else f"{header} does not match"
    for header in ("X-Gitea-Signature", "X-Gogs-Signature"):
        value = headers.get(header)
        if value:
            return None if hmac.compare_digest(value.strip().encode(), expected.encode()) else f"{header} does not match"
    token = headers.get("X-Gitlab-Token")
    if token is not None:
        return None if hmac.compare_digest(token.encode(), secret.encode()) else "X-Gitlab-Token does not match"
    return ("the request is not signed: send X-Hub-Signature-256 (GitHub, Bitbucket), X-Gitea-Signature (Gitea) "
            "or X-Gitlab-Token (GitLab)")
