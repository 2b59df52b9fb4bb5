"""Basic credentials on /v2 requests: exactly what a registry token for the same identity would grant.

Simple clients (curl, CI scripts, benchmarks) send ``Authorization: Basic`` on every request instead
of fetching a token from /v2/auth. The credentials are checked as /v2/auth checks them
(``accounts.login.authenticate``: password, robot, ``$app``, ``$token``), and the actions granted on a
repository come from ``auth.grant``, the function that fills a token's ``access`` claim.

A verified credential is remembered for ``TTL`` seconds under an HMAC of username and password (a
per-process random key, so no password or usable hash is kept), together with the actions it was
granted per repository: a repeated request costs one HMAC and two dict lookups, like a cached token.
Failures are never remembered (each is checked and audited). A remembered credential ends as soon as
anything is revoked (``accounts.revocation``'s counter moved since it was verified: a password change, a
removed grant or membership, a deleted account), and at the latest after ``TTL``.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import time

from accounts.identity import Identity

from .auth import REPOSITORY_ACTIONS, grant
from .tokens import Scope

TTL = 60
CACHE_LIMIT = 10000
REPOS_PER_CREDENTIAL = 1000
_KEY = os.urandom(32)
_cache: dict[bytes, "BasicClaims"] = {}


class BasicClaims:
    """What ``tokens.Claims`` offers (``identity``, ``subject``, ``expires``, ``actions``) for basic credentials."""

    def __init__(self, identity: Identity, expires: float, generation: int = 0):
        self.identity = identity
        self.generation = generation
        self.subject = identity.name
        self.expires = expires
        self._granted: dict[tuple, frozenset] = {}

    def actions(self, type_: str, name: str) -> frozenset:
        key = (type_, name)
        found = self._granted.get(key)
        if found is None:
            found = frozenset()
            if type_ == "repository":
                scopes = grant(self.identity, [Scope("repository", name, REPOSITORY_ACTIONS)])
                found = frozenset(scopes[0].actions) if scopes else frozenset()
            if len(self._granted) >= REPOS_PER_CREDENTIAL:
                self._granted.clear()
            self._granted[key] = found
        return found


def _key(username: str, password: str) -> bytes:
    return hmac.new(_KEY, f"{username}\0{password}".encode(), hashlib.sha256).digest()


def cached(username: str, password: str, generation: int = 0) -> BasicClaims | None:
    """The claims of credentials verified less than ``TTL`` seconds ago and since the revocation counter was
    last at ``generation``, else None."""
    key = _key(username, password)
    claims = _cache.get(key)
    if claims is None:
        return None
    if claims.expires > time.time() and claims.generation >= generation:
        return claims
    _cache.pop(key, None)
    return None


def remember(username: str, password: str, identity: Identity, generation: int = 0) -> BasicClaims:
    """Claims for credentials verified as ``identity`` when the revocation counter was ``generation``
    (read before the check), kept for ``TTL`` seconds."""
    if len(_cache) >= CACHE_LIMIT:
        _cache.clear()
    claims = _cache[_key(username, password)] = BasicClaims(identity, time.time() + TTL, generation)
    return claims
