"""Default permissions (Quay's "prototypes"): roles granted automatically on repository creation in an org.

Applying them belongs to repository creation (registry/repos.py); this module manages the rules.
"""
from __future__ import annotations

import uuid

from slipway.db import database
from slipway.errors import Invalid, NotFound

from . import audit
from .identity import Identity
from .models import ROBOT, USER, Account, Prototype, Team

ROLES = ("read", "write", "admin")


def list_prototypes(org: Account) -> list[Prototype]:
    return list(Prototype.select().where(Prototype.org == org.id).order_by(Prototype.id))


def get(org: Account, prototype_id: str) -> Prototype:
    proto = Prototype.get_or_none((Prototype.org == org.id) & (Prototype.uuid == prototype_id))
    if proto is None:
        raise NotFound(f"Default permission '{prototype_id}' does not exist")
    return proto


def _delegate(org: Account, delegate: dict) -> tuple[Account | None, Team | None]:
    kind, name = delegate.get("kind"), delegate.get("name")
    if kind == "team":
        team = Team.get_or_none((Team.org == org.id) & (Team.name == name))
        if team is None:
            raise NotFound(f"Team '{name}' does not exist in organization '{org.name}'")
        return None, team
    if kind == "user":
        account = Account.get_or_none((Account.name == name) & (Account.kind.in_([USER, ROBOT])))
        if account is None:
            raise NotFound(f"User or robot '{name}' does not exist")
        if account.kind == ROBOT and account.owner_id != org.id:
            raise Invalid(f"Robot '{name}' belongs to another namespace")
        return account, None
    raise Invalid("delegate.kind must be 'user' (users and robots) or 'team'")


def create(org: Account, role: str, delegate: dict, activating_user: str | None, performer: Identity,
           ip: str | None = None) -> Prototype:
    if role not in ROLES:
        raise Invalid(f"Invalid role '{role}': use one of {', '.join(ROLES)}")
    account, team = _delegate(org, delegate or {})
    activator = None
    if activating_user:
        activator = Account.get_or_none((Account.name == activating_user) & (Account.kind == USER))
        if activator is None:
            raise NotFound(f"User '{activating_user}' does not exist")
    with database.atomic():
        proto = Prototype.create(uuid=str(uuid.uuid4()), org=org, activating_user=activator,
                                 delegate_account=account, delegate_team=team, role=role)
        audit.record("create_prototype_permission", performer, namespace=org, ip=ip, metadata={
            "role": role, "delegate": delegate.get("name"), "delegate_kind": delegate.get("kind"),
            "activating_user": activating_user})
    return proto


def update(proto: Prototype, role: str, performer: Identity, ip: str | None = None) -> Prototype:
    if role not in ROLES:
        raise Invalid(f"Invalid role '{role}': use one of {', '.join(ROLES)}")
    with database.atomic():
        Prototype.update(role=role).where(Prototype.id == proto.id).execute()
        audit.record("modify_prototype_permission", performer, namespace=proto.org, ip=ip,
                     metadata={"id": proto.uuid, "role": role, "previous_role": proto.role})
    proto.role = role
    return proto


def delete(proto: Prototype, performer: Identity, ip: str | None = None) -> None:
    with database.atomic():
        audit.record("delete_prototype_permission", performer, namespace=proto.org, ip=ip,
                     metadata={"id": proto.uuid, "role": proto.role})
        proto.delete_instance()
