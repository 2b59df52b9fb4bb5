"""Application tokens (``$app`` registry logins) and API tokens (bearer tokens with scopes).

A token is ``<prefix><secret>``: the prefix finds the row, the hash of the whole
token proves it. Neither the token nor the secret is stored.
"""
from __future__ import annotations

from slipway import crypto
from slipway.db import database, now_ms
from slipway.errors import Forbidden, Invalid, NotFound

from . import audit, revocation
from .identity import Identity
from .models import Account, Token

PREFIX_LENGTH = 8
SECRET_LENGTH = 40
APP, API = "app", "api"
SCOPES = {
    "repo:read": "read repositories the user can read",
    "repo:write": "push to repositories the user can write",
    "repo:admin": "administer repositories the user administers",
    "repo:create": "create repositories where the user can",
    "user:read": "read the user's account",
    "user:admin": "change the user's account, tokens and robots",
    "org:admin": "administer organizations the user administers",
    "super:user": "superuser operations (superusers only)",
}
# A scope implies the weaker ones of its family.
IMPLIED = {"repo:admin": {"repo:write", "repo:read"}, "repo:write": {"repo:read"}, "user:admin": {"user:read"}}


def expand(scopes: set[str]) -> frozenset:
    result = set(scopes)
    for scope in scopes:
        result |= IMPLIED.get(scope, set())
    return frozenset(result)


def create(owner: Account, kind: str, title: str, scopes: list[str] | None, performer: Identity,
           ip: str | None = None) -> tuple[Token, str]:
    """A new token for ``owner``; returns the row and the token (shown this once).

    A caller that is itself a scoped token cannot mint more than it has: no application
    tokens (they carry the user's full registry rights), no API token with other scopes.
    """
    title = (title or "").strip()
    if not title:
        raise Invalid("A token needs a title")
    scopes = sorted(set(scopes or [])) if kind == API else []
    if kind == API:
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown:
            raise Invalid(f"Unknown scope(s) {', '.join(unknown)}: use {', '.join(SCOPES)}")
        if not scopes:
            raise Invalid("An API token needs at least one scope")
        if "super:user" in scopes and not owner.superuser:
            raise Invalid("Only superusers can create tokens with the super:user scope")
    if performer.scopes is not None:
        if kind == APP:
            raise Forbidden("Application tokens can only be created with the account's password, not with a token")
        wider = sorted(set(scopes) - performer.scopes)
        if wider:
            raise Forbidden(f"A token cannot create a token with scopes it does not have: {', '.join(wider)}")
    prefix = crypto.new_token(PREFIX_LENGTH)
    token = prefix + crypto.new_token(SECRET_LENGTH)
    with database.atomic():
        row = Token.create(owner=owner, kind=kind, title=title, prefix=prefix, token_hash=crypto.hash_token(token),
                           scopes=" ".join(scopes))
        audit.record("create_app_specific_token" if kind == APP else "create_api_token", performer,
                     namespace=owner, ip=ip, metadata={"title": title, "token_id": row.id, "scopes": scopes})
    return row, token


def find(token: str, kind: str) -> Token | None:
    """The live token row matching ``token`` (constant-time comparison), else None."""
    if len(token) != PREFIX_LENGTH + SECRET_LENGTH:
        return None
    row = Token.get_or_none((Token.prefix == token[:PREFIX_LENGTH]) & (Token.kind == kind))
    if row is None or row.revoked_at is not None or not crypto.same(row.token_hash, crypto.hash_token(token)):
        return None
    Token.update(last_used=now_ms()).where(Token.id == row.id).execute()
    return row


def list_tokens(owner: Account, kind: str) -> list[Token]:
    return list(Token.select().where((Token.owner == owner.id) & (Token.kind == kind) & Token.revoked_at.is_null())
                .order_by(Token.created_at))


def get(owner: Account, kind: str, token_id: int) -> Token:
    row = Token.get_or_none((Token.id == token_id) & (Token.owner == owner.id) & (Token.kind == kind)
                            & Token.revoked_at.is_null())
    if row is None:
        raise NotFound(f"Token {token_id} does not exist")
    return row


def revoke(row: Token, performer: Identity, ip: str | None = None) -> None:
    with database.atomic():
        Token.update(revoked_at=now_ms()).where(Token.id == row.id).execute()
        revocation.bump()
        audit.record("revoke_app_specific_token" if row.kind == APP else "revoke_api_token", performer,
                     namespace=row.owner, ip=ip, metadata={"title": row.title, "token_id": row.id})
