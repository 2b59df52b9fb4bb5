"""Turning credentials (basic auth) into an Identity. One entry point for /v2/auth and the API."""
from __future__ import annotations

from .identity import Identity
from .users import LoginError, login_with_password

__all__ = ["LoginError", "authenticate"]


def authenticate(username: str, password: str, client_ip: str = "") -> Identity:
    """Check credentials; raise LoginError with a message fit to show the client."""
    if not username or not password:
        raise LoginError("Invalid username or password")
    return login_with_password(username, password)
