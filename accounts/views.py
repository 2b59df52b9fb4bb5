"""Accounts rendered in Quay's JSON shapes (shared by the API handlers)."""
from __future__ import annotations

import hashlib

from .audit import quay_date
from .models import ORG, ROBOT, Account, Team, Token

COLORS = ["#969696", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd"]


def avatar(name: str, kind: str) -> dict:
    digest = hashlib.md5(name.encode()).hexdigest()
    return {"name": name, "hash": digest, "color": COLORS[int(digest[:2], 16) % len(COLORS)], "kind": kind}


def account_kind(account: Account) -> str:
    return {ORG: "org", ROBOT: "robot"}.get(account.kind, "user")


def entity(account: Account) -> dict:
    """A user or robot as an entity in member and permission lists."""
    return {"name": account.name, "kind": "user", "is_robot": account.kind == ROBOT,
            "avatar": avatar(account.name, account_kind(account))}


def public_user(account: Account) -> dict:
    return {"anonymous": False, "username": account.name, "avatar": avatar(account.name, "user"),
            "super_user": account.superuser}


def team(team: Team, member_count: int | None = None, repo_count: int | None = None) -> dict:
    view = {"name": team.name, "description": team.description, "role": team.role,
            "avatar": avatar(team.name, "team"), "can_view": True, "is_synced": False}
    if member_count is not None:
        view["member_count"] = member_count
    if repo_count is not None:
        view["repo_count"] = repo_count
    return view


def robot(account: Account, token: str | None = None) -> dict:
    view = {"name": account.name, "description": account.description,
            "created": quay_date(account.created_at),
            "last_accessed": quay_date(account.last_accessed) if account.last_accessed else None,
            "unstructured_metadata": {}}
    if token is not None:
        view["token"] = token
    return view


def token(row: Token, secret: str | None = None) -> dict:
    view = {"uuid": str(row.id), "title": row.title, "created": quay_date(row.created_at),
            "last_accessed": quay_date(row.last_used) if row.last_used else None, "expiration": None}
    if row.scopes:
        view["scopes"] = row.scopes.split()
    if secret is not None:
        view["token_code"] = secret
    return view


def repo_ref(repository, role: str) -> dict:
    return {"repository": {"name": repository.name, "namespace": repository.namespace.name,
                           "is_public": repository.visibility == "public"}, "role": role}
