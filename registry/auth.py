"""Token grants: which of the requested actions an identity gets (the Docker token spec's downscoping)."""
from __future__ import annotations

from dataclasses import replace

from accounts import revocation
from accounts.identity import Identity
from accounts.models import Account, Token
from accounts.permissions import can_create_in

from . import repos
from .errors import NameInvalid
from .names import split_name
from .permissions import can
from .tokens import Claims, Scope, TokenService

REPOSITORY_ACTIONS = ("pull", "push", "delete", "*")


def grant(identity: Identity, requested: list[Scope]) -> list[Scope]:
    """The granted subset of each requested scope; a scope granting nothing is still listed, empty."""
    granted = []
    for scope in requested:
        if scope.type == "repository":
            granted.append(Scope("repository", scope.name, _repository_actions(identity, scope)))
        elif scope.type == "registry" and scope.name == "catalog":
            # The catalog is filtered to what the caller may see, so anyone may ask.
            granted.append(Scope("registry", "catalog", tuple(a for a in scope.actions if a == "*")))
    return granted


def _repository_actions(identity: Identity, scope: Scope) -> tuple:
    wanted = [a for a in scope.actions if a in REPOSITORY_ACTIONS]
    try:
        namespace, _ = split_name(scope.name)
    except NameInvalid:
        return ()
    repo = repos.find(scope.name)
    if repo is not None:
        return tuple(a for a in wanted if can(identity, a, repo))
    # A missing repository: whoever may create it may push (creating it) and pull (finding nothing).
    if can_create_in(identity, repos.namespace_account(namespace)):
        return tuple(wanted)
    return ()


def recheck(claims: Claims, generation: int) -> Claims | None:
    """A token issued before a revocation, checked again: None if its identity is gone (deleted,
    disabled, credentials replaced, API token revoked), else its access narrowed to what the
    identity may still do. Runs once per token per revocation, never per request."""
    identity = claims.identity
    if identity.kind in ("user", "robot"):
        account = Account.get_or_none(Account.id == identity.account_id)
        if (account is None or account.kind != identity.kind or account.name != identity.name
                or not account.enabled or account.credential_epoch != identity.epoch):
            return None
        if identity.token_id is not None:
            row = Token.get_or_none(Token.id == identity.token_id)
            if row is None or row.revoked_at is not None or row.owner_id != account.id:
                return None
        identity = replace(identity, superuser=identity.superuser and account.superuser)
    held = [Scope(type_, name, tuple(actions)) for (type_, name), actions in claims.access.items()]
    access = {}
    for scope in grant(identity, held):
        access[(scope.type, scope.name)] = frozenset(scope.actions) & claims.access[(scope.type, scope.name)]
    return replace(claims, access=access, identity=identity, generation=generation)


def bearer_claims(tokens: TokenService, authorization: str) -> Claims | None:
    """The claims of the bearer token in an ``Authorization`` header value (None: not a bearer token, or
    not a valid one). A token issued before the last revocation is checked again (``recheck``) and
    remembered with the result, so this happens once per token per revocation."""
    if authorization[:7].lower() != "bearer ":
        return None
    token = authorization[7:].strip()
    claims = tokens.verify(token)
    if claims is not None:
        generation = revocation.current()
        if claims.generation < generation:  # something was revoked since: check this token once more
            claims = recheck(claims, generation)
            tokens.remember(token, claims)
    return claims
