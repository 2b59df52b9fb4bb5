"""Turning credentials into an Identity: one entry point for /v2/auth and the API.

Usernames select the kind of credential, as in Quay: ``$app`` (application
token), ``$token`` / ``$oauthtoken`` (API token), ``<namespace>+<name>`` (robot
token), anything else a user's password. Every failure is audited.
"""
from __future__ import annotations

from slipway.db import now_ms

from . import audit, sessions, tokens
from .identity import ANONYMOUS, Identity
from .models import ROBOT, Account
from .robots import DISABLED, check_robot_token
from .users import LoginError, identity_for, login_with_password

__all__ = ["ANONYMOUS", "Authenticator", "LoginError", "authenticate", "identity_for_api_token"]


class Authenticator:
    """What the HTTP layer is handed to turn credentials into an Identity (``slipway.api`` and the
    registry's ``/v2`` use it; neither imports this module's rules).

    ``special`` maps other packages' special logins (``$build`` for build workers) to their check,
    ``check(secret) -> Identity | None``: they register them in their include function, so accounts
    need not know them.
    """

    anonymous = ANONYMOUS

    def __init__(self, special: dict | None = None, robots_enabled: bool = True):
        self.special = dict(special or {})
        self.robots_enabled = robots_enabled

    def authenticate(self, username: str, password: str, client_ip: str = "") -> Identity:
        """Check credentials; raise LoginError with a message fit to show the client."""
        return authenticate(username, password, client_ip, self.robots_enabled, self.special)

    def api_token(self, token: str) -> Identity | None:
        return identity_for_api_token(token)

    def session(self, session_id: str) -> "sessions.SessionInfo | None":
        """A web interface session cookie: its user's identity and the CSRF token that state-changing
        requests it authenticates must carry (``accounts.sessions``), or None."""
        return sessions.resolve(session_id)


def authenticate(username: str, password: str, client_ip: str = "", robots_enabled: bool = True,
                 special: dict | None = None) -> Identity:
    """Check credentials; raise LoginError with a message fit to show the client."""
    special = special or {}
    try:
        return _authenticate(username, password, robots_enabled, special)
    except LoginError as e:
        account = Account.get_or_none(Account.name == username) if username and not username.startswith("$") else None
        audit.record("login_failure", None, namespace=account.owner if account is not None and account.kind == ROBOT
                     else account, ip=client_ip or None,
                     metadata={"username": username, "message": str(e), "kind": _kind(username, special)})
        raise


def _kind(username: str, special: dict) -> str:
    if username in special:
        return username.lstrip("$")
    if username == "$app":
        return "app_token"
    if username in ("$token", "$oauthtoken"):
        return "api_token"
    return "robot" if "+" in username else "user"


def _authenticate(username: str, password: str, robots_enabled: bool, special: dict) -> Identity:
    if not username or not password:
        raise LoginError("Invalid username or password")
    if username in special:
        identity = special[username](password)
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
