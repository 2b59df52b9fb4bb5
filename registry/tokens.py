"""Registry bearer tokens (Docker registry token spec): JWTs naming the granted actions.

Tokens are signed with the server secret (HS256). Only Slipway verifies them;
clients treat them as opaque. A verified token is cached until it expires, so
each token costs one signature check however many requests carry it.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import jwt

from accounts.identity import ANONYMOUS, Identity

ISSUER = "slipway"
ALGORITHM = "HS256"
CACHE_LIMIT = 20000


@dataclass(frozen=True)
class Scope:
    type: str
    name: str
    actions: tuple

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def parse_scope(text: str) -> Scope | None:
    """``repository:ns/repo:pull,push`` -> Scope; None for text that is not a scope."""
    head, sep, actions = text.rpartition(":")
    if not sep:
        return None
    type_, sep, name = head.partition(":")
    if not sep or not type_ or not name:
        return None
    if "(" in type_:  # resource class, e.g. repository(plugin)
        type_ = type_.split("(", 1)[0]
    wanted = tuple(a for a in (x.strip() for x in actions.split(",")) if a)
    return Scope(type_, name, wanted)


@dataclass(frozen=True)
class Claims:
    subject: str
    access: dict  # (type, name) -> frozenset(actions)
    expires: int
    identity: Identity
    generation: int = 0  # accounts.revocation's counter when these claims were last checked

    def actions(self, type_: str, name: str) -> frozenset:
        return self.access.get((type_, name), frozenset())


def service_of(public_url: str) -> str | None:
    """The registry service all nodes share: the host[:port] of ``server.public_url``, else None."""
    return (urlsplit(public_url).netloc or None) if public_url else None


class TokenService:
    def __init__(self, secret: str, ttl: int = 3600, audience: str | None = None):
        self.secret = secret
        self.ttl = ttl
        # With server.public_url, every node of this Slipway is one service named by it (``service_of``):
        # tokens are issued for it, and a token for another service (another Slipway with the same secret)
        # is refused. Without it the service is whatever host a request names, and ``aud`` is not checked.
        self.audience = audience
        self._cache: dict[str, Claims] = {}

    def issue(self, identity: Identity, granted: list[Scope], service: str, generation: int = 0) -> tuple[str, int]:
        """A signed token; ``generation`` is the revocation counter read before ``granted`` was decided."""
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": service,
            "sub": identity.name,
            "iat": now,
            "nbf": now - 5,
            "exp": now + self.ttl,
            "jti": uuid.uuid4().hex,
            "access": [{"type": s.type, "name": s.name, "actions": list(s.actions)} for s in granted],
            "context": {
                "kind": identity.kind,
                "aid": identity.account_id,
                "via": identity.via,
                "su": identity.superuser,
                "rid": list(identity.repositories) if identity.repositories is not None else None,
                "tid": identity.token_id,
                "ns": identity.namespace_id,
                "sc": sorted(identity.scopes) if identity.scopes is not None else None,
                "ep": identity.epoch,
                "gen": generation,
            },
        }
        return jwt.encode(payload, self.secret, algorithm=ALGORITHM), self.ttl

    def verify(self, token: str) -> Claims | None:
        """The token's claims if it is ours, intact and current; else None."""
        claims = self._cache.get(token)
        if claims is not None:
            if claims is _REVOKED:
                return None
            if claims.expires > time.time():
                return claims
            self._cache.pop(token, None)
            return None
        try:
            payload = jwt.decode(token, self.secret, algorithms=[ALGORITHM], issuer=ISSUER, audience=self.audience,
                                 options={"verify_aud": self.audience is not None,
                                          "require": ["exp", "iss", "access"]})
        except jwt.PyJWTError:
            return None
        claims = _claims_from(payload)
        self.remember(token, claims)
        return claims

    def remember(self, token: str, claims: Claims | None) -> None:
        """Cache ``claims`` (checked again after a revocation) for ``token``; None forgets it for good."""
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[token] = claims if claims is not None else _REVOKED


def _claims_from(payload: dict) -> Claims:
    access = {}
    for entry in payload.get("access") or []:
        key = (entry.get("type", ""), entry.get("name", ""))
        access[key] = access.get(key, frozenset()) | frozenset(entry.get("actions") or ())
    ctx = payload.get("context") or {}
    if ctx.get("kind", "anonymous") == "anonymous":
        identity = ANONYMOUS
    else:
        identity = Identity(kind=ctx["kind"], account_id=ctx.get("aid"), name=payload.get("sub", ""),
                            superuser=bool(ctx.get("su")), via=ctx.get("via", ""),
                            repositories=tuple(ctx["rid"]) if ctx.get("rid") is not None else None,
                            scopes=frozenset(ctx["sc"]) if ctx.get("sc") is not None else None, token_id=ctx.get("tid"),
                            namespace_id=ctx.get("ns"), epoch=int(ctx.get("ep") or 0))
    return Claims(subject=payload.get("sub", ""), access=access, expires=int(payload["exp"]), identity=identity,
                  generation=int(ctx.get("gen") or 0))


_REVOKED = Claims(subject="", access={}, expires=0, identity=ANONYMOUS)
