"""Namespace-level rules: who administers a namespace and who may create repositories in it.

Repository-level rules (read/write/admin on one repository) are in registry/permissions.py.
"""
from __future__ import annotations

from .identity import Identity
from .models import ORG, USER, Account, Team, TeamMember

ORG_RANK = {None: 0, "member": 1, "creator": 2, "admin": 3}


def org_role(identity: Identity, org: Account) -> str | None:
    """The strongest team role ``identity`` (a user or robot) holds in ``org``."""
    if identity.anonymous or identity.account_id is None or org.kind != ORG:
        return None
    roles = (Team.select(Team.role).join(TeamMember)
             .where((Team.org == org.id) & (TeamMember.account == identity.account_id)).tuples())
    return max((r for (r,) in roles), key=ORG_RANK.__getitem__, default=None)


def is_namespace_admin(identity: Identity, namespace: Account) -> bool:
    """Full control of a user namespace (its user) or an organization (its admin teams)."""
    if identity.anonymous or identity.repositories is not None:
        return False
    if identity.superuser:
        return True
    if identity.is_robot:
        return False
    if namespace.kind == USER:
        return namespace.id == identity.account_id
    return org_role(identity, namespace) == "admin"


def can_create_in(identity: Identity, namespace: Account | None) -> bool:
    """May ``identity`` create repositories in ``namespace``? (None: it does not exist.)"""
    if namespace is None or not namespace.is_namespace or identity.anonymous or identity.repositories is not None:
        return False
    if not identity.has_scope("repo:create"):
        return False
    if identity.superuser:
        return True
    if namespace.kind == USER:
        return identity.kind == "user" and namespace.id == identity.account_id
    if identity.is_robot and identity.namespace_id != namespace.id:
        return False
    return ORG_RANK[org_role(identity, namespace)] >= ORG_RANK["creator"]


def is_org_member(identity: Identity, org: Account) -> bool:
    return identity.superuser or org_role(identity, org) is not None
