"""The one permission check: what an identity may do to a repository.

Repository roles are ``read`` (pull, view), ``write`` (read + push, delete tags)
and ``admin`` (write + settings, permissions, delete the repository).
"""
from __future__ import annotations

from accounts.identity import Identity
from accounts.models import Account

from .models import PUBLIC, Repository

RANK = {None: 0, "read": 1, "write": 2, "admin": 3}
# The role each action needs. Registry actions (pull, push, delete, *) and API actions share it.
NEEDS = {"pull": "read", "read": "read", "push": "write", "write": "write", "delete": "write", "*": "write",
         "admin": "admin"}


def best(*roles: str | None) -> str | None:
    return max(roles, key=RANK.__getitem__)


def repository_role(identity: Identity, repo: Repository) -> str | None:
    """The strongest role ``identity`` holds on ``repo`` (None: no access)."""
    public = "read" if repo.visibility == PUBLIC else None
    if identity.anonymous:
        return public
    if identity.repository_id is not None:  # a build credential: its repository only
        return "write" if identity.repository_id == repo.id else None
    if identity.superuser:
        return "admin"
    if identity.kind == "user" and repo.namespace_id == identity.account_id:
        return "admin"
    return public


def can(identity: Identity, action: str, repo: Repository) -> bool:
    needed = NEEDS[action]
    if needed == "write" and repo.state == "read_only":
        return False
    return RANK[repository_role(identity, repo)] >= RANK[needed]


def can_create_in(identity: Identity, namespace: Account | None) -> bool:
    """May ``identity`` create repositories in ``namespace``? (None: the namespace does not exist.)"""
    if namespace is None or identity.anonymous or identity.repository_id is not None:
        return False
    if identity.superuser:
        return namespace.is_namespace
    return identity.kind == "user" and namespace.id == identity.account_id


def visible_repositories(identity: Identity, after: str, limit: int | None) -> list[str]:
    """Full names of the repositories ``identity`` may read, sorted, after ``after`` (for the catalog)."""
    full_name = Account.name.concat("/").concat(Repository.name)
    query = Repository.select(full_name.alias("full")).join(Account)
    if not identity.superuser:
        readable = Repository.visibility == PUBLIC
        if identity.repository_id is not None:
            readable |= Repository.id == identity.repository_id
        elif identity.kind == "user":
            readable |= Repository.namespace == identity.account_id
        query = query.where(readable)
    if after:
        query = query.where(full_name > after)
    query = query.order_by(full_name)
    if limit is not None:
        query = query.limit(limit)
    return [row.full for row in query.objects()]
