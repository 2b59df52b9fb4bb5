"""Turning credentials into an Identity: one entry point for /v2/auth and the API.

Usernames select the kind of credential, as in Quay: ``$app`` (application
token), ``$token`` / ``$oauthtoken`` (API token), ``<namespace>+<name>`` (robot
token), anything else a user's password. Every failure is audited.
"""
from __future__ import annotations

from slipway.db import now_ms

from . import audit, tokens
from .identity import Identity
from .models import ROBOT, Account
from .robots import DISABLED, check_robot_token
from .users import LoginError, identity_for, login_with_password

__all__ = ["LoginError", "authenticate", "identity_for_api_token", "register"]

# Other packages' special logins (``$build`` for build workers), so accounts need not know them.
_SPECIAL: dict = {}


def register(username: str, check) -> None:
    """``check(secret) -> Identity | None`` answers logins as ``username``."""
    _SPECIAL[username] = check


def authenticate(username: str, password: str, client_ip: str = "", robots_enabled: bool = True) -> Identity:
    """Check credentials; raise LoginError with a message fit to show the client."""
    try:
        return _authenticate(username, password, robots_enabled)
    except LoginError as e:
        account = Account.get_or_none(Account.name == username) if username and not username.startswith("$") else None
        audit.record("login_failure", None, namespace=account.owner if account is not None and account.kind == ROBOT
                     else account, ip=client_ip or None,
                     metadata={"username": username, "message": str(e), "kind": _kind(username)})
        raise


def _kind(username: str) -> str:
    if username in _SPECIAL:
        return username.lstrip("$")
    if username == "$app":
        return "app_token"
    if username in ("$token", "$oauthtoken"):
        return "api_token"
    return "robot" if "+" in username else "user"


def _authenticate(username: str, password: str, robots_enabled: bool) -> Identity:
    if not username or not password:
        raise LoginError("Invalid username or password")
    if username in _SPECIAL:
        identity = _SPECIAL[username](password)
        if identity is None:
            raise LoginError("Invalid or expired credential")
        return identity
    if username == "$app":
        row = tokens.find(password, tokens.APP)
        if row is None or not row.owner.enabled:
            raise LoginError("Invalid application token")
        return identity_for(row.owner, "app_token", token_id=row.id)
    if username in ("$token", "$oauthtoken"):
        identity = identity_for_api_token(password)
        if identity is None:
            raise LoginError("Invalid or revoked token")
        return identity
    if "+" in username:
        if not robots_enabled:
            raise LoginError(DISABLED)
        robot = Account.get_or_none((Account.name == username) & (Account.kind == ROBOT))
        if robot is None or not robot.enabled or not check_robot_token(robot, password):
            raise LoginError("Invalid robot account or token")
        Account.update(last_accessed=now_ms()).where(Account.id == robot.id).execute()
        return identity_for(robot, "robot_token")
    return login_with_password(username, password)


def identity_for_api_token(token: str) -> Identity | None:
    row = tokens.find(token, tokens.API)
    if row is None or not row.owner.enabled:
        return None
    return identity_for(row.owner, "api_token", scopes=tokens.expand(set(row.scopes.split())), token_id=row.id)
